"""swarm_backends and the merge in playbooks/mesh.yml: which addresses become backends."""

from conftest import Docker, Status, load_module
from swarmfabric.ruleset import merge_backends

backends = load_module('swarm_backends')

WANTED = {'web': '10.20.0.0/16', 'api': '10.20.0.0/16'}


def container(service, state='running', **networks):
    return {
        'Labels': {'com.docker.swarm.service.name': service},
        'State': state,
        'NetworkSettings': {'Networks': {name: {'IPAddress': ip} for name, ip in networks.items()}},
    }


def test_only_running_tasks_of_wanted_services_on_the_overlay():
    containers = [
        container('web', appnet='10.20.5.3', ingress='10.0.0.7'),
        container('web', appnet='10.20.5.10'),
        container('web', state='exited', appnet='10.20.5.4'),
        container('other', appnet='10.20.5.5'),
        container('api', appnet=''),
    ]
    assert backends.local_backends(containers, WANTED, '') == {'web': ['10.20.5.3', '10.20.5.10'], 'api': []}


def test_name_prefix_is_stripped():
    containers = [container('lab_web', appnet='10.20.5.3'), container('web', appnet='10.20.5.4')]
    assert backends.local_backends(containers, {'web': '10.20.0.0/16'}, 'lab_') == {'web': ['10.20.5.3']}


def test_merge_sorts_numerically_and_dedupes():
    merged = merge_backends([{'web': ['10.20.9.2']}, {'web': ['10.20.10.2', '10.20.9.2'], 'api': []}, {}])
    assert merged == {'api': [], 'web': ['10.20.9.2', '10.20.10.2']}


def test_main_is_one_filtered_request_and_never_a_change(run_module):
    docker = Docker({'/containers/json': [container('web', appnet='10.20.5.3')]})
    done = run_module(backends, {'services': {'web': '10.20.0.0/16'}}, check=True, docker=docker)
    assert done.result == {'changed': False, 'actions': [], 'backends': {'web': ['10.20.5.3']}}
    assert docker.calls == [('GET', '/containers/json', {'filters': {'label': ['com.docker.swarm.service.name']}},
                             None)]


def test_main_fails_with_the_daemons_words(run_module):
    docker = Docker({'/containers/json': Status(500, 'daemon is shutting down')})
    done = run_module(backends, {'services': {'web': '10.20.0.0/16'}}, docker=docker)
    assert done.failed and done.msg == 'Cannot read the local swarm tasks: daemon is shutting down (HTTP 500)'
