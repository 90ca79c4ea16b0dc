"""A service in the Compose shape (issue 14): every supported field's exact Engine API
ServiceSpec, every refused field, v1 key and bad value with its exact path and rule, and the
flat view that diffs are made of. Expected values are written out, never recomputed."""

import ast
import sys

import pytest
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st
from swarmfabric.compose import FIELDS as FIELD_NAMES
from swarmfabric.compose import Lines, check_service, diff_fields, service_fields, service_spec
from swarmfabric.duration import format_ns

IMAGE = 'swarmfabric/task:1'
S = 10 ** 9
WHERE = 'swarm.services.web'


def spec(container=None, task=None, **top):
    """The ServiceSpec of service web with image IMAGE, plus the literal parts a test names."""
    body = {'Name': 'web', 'TaskTemplate': {'ContainerSpec': {'Image': IMAGE, **(container or {})}, **(task or {})},
            'Mode': {'Replicated': {}}}
    body.update(top)
    return body


def problems(service, **known):
    report = Lines()
    check_service('web', service, ['swarm', 'services', 'web'], report, **known)
    return sorted(report.lines)


# ---------------------------------------------------------------- each field's ServiceSpec

FIELDS = {
    'image only': ({}, spec()),
    'command, a string split like a shell': (
        {'command': 'redis-server --save "" --appendonly yes'},
        spec({'Args': ['redis-server', '--save', '', '--appendonly', 'yes']})),
    'command, a list': ({'command': ['sleep', '60']}, spec({'Args': ['sleep', '60']})),
    'entrypoint is the ContainerSpec Command': (
        {'entrypoint': '/bin/sh -c', 'command': ['echo hi']},
        spec({'Command': ['/bin/sh', '-c'], 'Args': ['echo hi']})),
    'environment, a map (null: the name only, numbers as text)': (
        {'environment': {'B': 'two', 'A': 1, 'FROM_HOST': None, 'ON': True}},
        spec({'Env': ['A=1', 'B=two', 'FROM_HOST', 'ON=true']})),
    'environment, a list': (
        {'environment': ['B=x=y', 'A=', 'FROM_HOST']},
        spec({'Env': ['A=', 'B=x=y', 'FROM_HOST']})),
    'secrets, short and long': (
        {'secrets': ['db_password', {'source': 'tls', 'target': '/etc/tls/key', 'uid': '100', 'gid': '101',
                                     'mode': 0o400}]},
        spec({'Secrets': [
            {'File': {'Name': 'db_password', 'UID': '0', 'GID': '0', 'Mode': 0o444}, 'SecretName': 'db_password'},
            {'File': {'Name': '/etc/tls/key', 'UID': '100', 'GID': '101', 'Mode': 0o400}, 'SecretName': 'tls'},
        ]})),
    'configs, short and long': (
        {'configs': [{'source': 'nginx', 'target': '/etc/nginx/nginx.conf'}, 'app']},
        spec({'Configs': [
            {'File': {'Name': 'app', 'UID': '0', 'GID': '0', 'Mode': 0o444}, 'ConfigName': 'app'},
            {'File': {'Name': '/etc/nginx/nginx.conf', 'UID': '0', 'GID': '0', 'Mode': 0o444}, 'ConfigName': 'nginx'},
        ]})),
    'volumes, short syntax': (
        {'volumes': ['data:/var/lib/data', '/srv/www:/usr/share/nginx/html:ro', '/cache',
                     'cache:/cache2:nocopy', '/mnt:/mnt:rshared']},
        spec({'Mounts': [
            {'Type': 'volume', 'Source': 'data', 'Target': '/var/lib/data'},
            {'Type': 'bind', 'Source': '/srv/www', 'Target': '/usr/share/nginx/html', 'ReadOnly': True},
            {'Type': 'volume', 'Target': '/cache'},
            {'Type': 'volume', 'Source': 'cache', 'Target': '/cache2', 'VolumeOptions': {'NoCopy': True}},
            {'Type': 'bind', 'Source': '/mnt', 'Target': '/mnt', 'BindOptions': {'Propagation': 'rshared'}},
        ]})),
    'volumes, long syntax': (
        {'volumes': [
            {'type': 'volume', 'source': 'data', 'target': '/data', 'read_only': True, 'volume': {'nocopy': True}},
            {'type': 'bind', 'source': '/var/log', 'target': '/logs', 'bind': {'propagation': 'rslave'}},
            {'type': 'tmpfs', 'target': '/tmp', 'tmpfs': {'size': '64m', 'mode': 0o1777}},
            {'type': 'tmpfs', 'target': '/run', 'tmpfs': {'size': 1000}},
        ]},
        spec({'Mounts': [
            {'Type': 'volume', 'Source': 'data', 'Target': '/data', 'ReadOnly': True,
             'VolumeOptions': {'NoCopy': True}},
            {'Type': 'bind', 'Source': '/var/log', 'Target': '/logs', 'BindOptions': {'Propagation': 'rslave'}},
            {'Type': 'tmpfs', 'Target': '/tmp', 'TmpfsOptions': {'SizeBytes': 67108864, 'Mode': 0o1777}},
            {'Type': 'tmpfs', 'Target': '/run', 'TmpfsOptions': {'SizeBytes': 1000}},
        ]})),
    'ports, short syntax (sorted by published port, as docker stack deploy does)': (
        {'ports': ['8080:80', '53:5353/udp', '9000', 7000, '6000-6001:7000-7001']},
        spec(EndpointSpec={'Ports': [
            {'Protocol': 'tcp', 'TargetPort': 7000, 'PublishMode': 'ingress'},
            {'Protocol': 'tcp', 'TargetPort': 9000, 'PublishMode': 'ingress'},
            {'Protocol': 'udp', 'TargetPort': 5353, 'PublishedPort': 53, 'PublishMode': 'ingress'},
            {'Protocol': 'tcp', 'TargetPort': 7000, 'PublishedPort': 6000, 'PublishMode': 'ingress'},
            {'Protocol': 'tcp', 'TargetPort': 7001, 'PublishedPort': 6001, 'PublishMode': 'ingress'},
            {'Protocol': 'tcp', 'TargetPort': 80, 'PublishedPort': 8080, 'PublishMode': 'ingress'},
        ]})),
    'ports, long syntax': (
        {'ports': [{'target': 443, 'published': 8443, 'protocol': 'tcp', 'mode': 'host'},
                   {'target': 53, 'published': '5300', 'protocol': 'udp'}, {'target': 80}]},
        spec(EndpointSpec={'Ports': [
            {'Protocol': 'tcp', 'TargetPort': 80, 'PublishMode': 'ingress'},
            {'Protocol': 'udp', 'TargetPort': 53, 'PublishedPort': 5300, 'PublishMode': 'ingress'},
            {'Protocol': 'tcp', 'TargetPort': 443, 'PublishedPort': 8443, 'PublishMode': 'host'},
        ]})),
    'networks, a list (sorted by target)': (
        {'networks': ['dbnet', 'appnet']},
        spec(task={'Networks': [{'Target': 'appnet'}, {'Target': 'dbnet'}]})),
    'networks, a map with aliases': (
        {'networks': {'appnet': {'aliases': ['cache', 'redis']}, 'dbnet': None}},
        spec(task={'Networks': [{'Target': 'appnet', 'Aliases': ['cache', 'redis']}, {'Target': 'dbnet'}]})),
    'deploy.mode replicated with replicas': (
        {'deploy': {'mode': 'replicated', 'replicas': 3}}, spec(Mode={'Replicated': {'Replicas': 3}})),
    'deploy.replicas 0': ({'deploy': {'replicas': 0}}, spec(Mode={'Replicated': {'Replicas': 0}})),
    'deploy.mode global': ({'deploy': {'mode': 'global'}}, spec(Mode={'Global': {}})),
    'deploy.mode replicated-job': (
        {'deploy': {'mode': 'replicated-job', 'replicas': 4}},
        spec(Mode={'ReplicatedJob': {'MaxConcurrent': 4, 'TotalCompletions': 4}})),
    'deploy.mode replicated-job without replicas': (
        {'deploy': {'mode': 'replicated-job'}}, spec(Mode={'ReplicatedJob': {}})),
    'deploy.mode global-job': ({'deploy': {'mode': 'global-job'}}, spec(Mode={'GlobalJob': {}})),
    'deploy.endpoint_mode': ({'deploy': {'endpoint_mode': 'dnsrr'}}, spec(EndpointSpec={'Mode': 'dnsrr'})),
    'deploy.endpoint_mode dnsrr with a host port': (
        {'deploy': {'endpoint_mode': 'dnsrr'}, 'ports': [{'target': 80, 'published': 8080, 'mode': 'host'}]},
        spec(EndpointSpec={'Mode': 'dnsrr', 'Ports': [
            {'Protocol': 'tcp', 'TargetPort': 80, 'PublishedPort': 8080, 'PublishMode': 'host'}]})),
    'deploy.placement': (
        {'deploy': {'placement': {'constraints': ['node.labels.db == true', 'node.role!=manager'],
                                  'preferences': [{'spread': 'node.labels.zone'}, {'spread': 'node.id'}],
                                  'max_replicas_per_node': 2}}},
        spec(task={'Placement': {
            'Constraints': ['node.labels.db == true', 'node.role!=manager'],
            'Preferences': [{'Spread': {'SpreadDescriptor': 'node.labels.zone'}},
                            {'Spread': {'SpreadDescriptor': 'node.id'}}],
            'MaxReplicas': 2}})),
    'deploy.resources': (
        {'deploy': {'resources': {'limits': {'cpus': '0.5', 'memory': '512m', 'pids': 200},
                                  'reservations': {'cpus': 0.25, 'memory': '1.5gb'}}}},
        spec(task={'Resources': {'Limits': {'NanoCPUs': 500000000, 'MemoryBytes': 536870912, 'Pids': 200},
                                 'Reservations': {'NanoCPUs': 250000000, 'MemoryBytes': 1610612736}}})),
    'deploy.resources, memory in bytes and other units': (
        {'deploy': {'resources': {'limits': {'memory': 1048576, 'cpus': 2},
                                  'reservations': {'memory': '1G'}}}},
        spec(task={'Resources': {'Limits': {'NanoCPUs': 2000000000, 'MemoryBytes': 1048576},
                                 'Reservations': {'MemoryBytes': 1073741824}}})),
    'deploy.restart_policy': (
        {'deploy': {'restart_policy': {'condition': 'on-failure', 'delay': '5s', 'max_attempts': 3,
                                       'window': '1m30s'}}},
        spec(task={'RestartPolicy': {'Condition': 'on-failure', 'Delay': 5 * S, 'MaxAttempts': 3,
                                     'Window': 90 * S}})),
    'deploy.update_config': (
        {'deploy': {'update_config': {'parallelism': 2, 'delay': '10s', 'failure_action': 'rollback',
                                      'monitor': '500ms', 'max_failure_ratio': 0.25, 'order': 'start-first'}}},
        spec(UpdateConfig={'Parallelism': 2, 'Delay': 10 * S, 'FailureAction': 'rollback', 'Monitor': 500000000,
                           'MaxFailureRatio': 0.25, 'Order': 'start-first'})),
    'deploy.update_config, parallelism 1 by default (docker stack deploy)': (
        {'deploy': {'update_config': {'order': 'stop-first'}}},
        spec(UpdateConfig={'Parallelism': 1, 'Order': 'stop-first'})),
    'deploy.rollback_config': (
        {'deploy': {'rollback_config': {'parallelism': 0, 'delay': '1.5s', 'failure_action': 'pause',
                                        'monitor': '2h', 'max_failure_ratio': 1, 'order': 'stop-first'}}},
        spec(RollbackConfig={'Parallelism': 0, 'Delay': 1500000000, 'FailureAction': 'pause',
                             'Monitor': 7200 * S, 'MaxFailureRatio': 1, 'Order': 'stop-first'})),
    'deploy.labels go on the service': (
        {'deploy': {'labels': {'team': 'db', 'tier': 2}}}, spec(Labels={'team': 'db', 'tier': '2'})),
    'deploy.labels, a list': (
        {'deploy': {'labels': ['team=db', 'flag']}}, spec(Labels={'team': 'db', 'flag': ''})),
    'healthcheck, a string test': (
        {'healthcheck': {'test': 'redis-cli ping', 'interval': '10s', 'timeout': '2s', 'retries': 3,
                         'start_period': '1m', 'start_interval': '500ms'}},
        spec({'Healthcheck': {'Test': ['CMD-SHELL', 'redis-cli ping'], 'Interval': 10 * S, 'Timeout': 2 * S,
                              'Retries': 3, 'StartPeriod': 60 * S, 'StartInterval': 500000000}})),
    'healthcheck, a list test': (
        {'healthcheck': {'test': ['CMD', 'curl', '-f', 'http://localhost/']}},
        spec({'Healthcheck': {'Test': ['CMD', 'curl', '-f', 'http://localhost/']}})),
    'healthcheck, disable': (
        {'healthcheck': {'disable': True}}, spec({'Healthcheck': {'Test': ['NONE']}})),
    'labels go on the container': (
        {'labels': {'com.example.tier': 'cache'}}, spec({'Labels': {'com.example.tier': 'cache'}})),
    'labels, a list': ({'labels': ['a=1', 'b']}, spec({'Labels': {'a': '1', 'b': ''}})),
    'user': ({'user': '999:999'}, spec({'User': '999:999'})),
    'working_dir': ({'working_dir': '/data'}, spec({'Dir': '/data'})),
    'hostname': ({'hostname': 'cache-{{.Task.Slot}}'}, spec({'Hostname': 'cache-{{.Task.Slot}}'})),
    'init true': ({'init': True}, spec({'Init': True})),
    'init false is sent (a pointer in the API)': ({'init': False}, spec({'Init': False})),
    'read_only': ({'read_only': True}, spec({'ReadOnly': True})),
    'read_only false is left out': ({'read_only': False}, spec()),
    'cap_add and cap_drop (docker/cli normalises them)': (
        {'cap_add': ['net_admin', 'CAP_SYS_TIME', 'NET_ADMIN'], 'cap_drop': ['mknod', 'net_admin']},
        spec({'CapabilityAdd': ['CAP_NET_ADMIN', 'CAP_SYS_TIME'], 'CapabilityDrop': ['CAP_MKNOD']})),
    'cap_drop ALL stands alone': ({'cap_drop': ['mknod', 'all']}, spec({'CapabilityDrop': ['ALL']})),
    'sysctls, a map': (
        {'sysctls': {'net.core.somaxconn': 1024, 'net.ipv4.tcp_keepalive_time': '600'}},
        spec({'Sysctls': {'net.core.somaxconn': '1024', 'net.ipv4.tcp_keepalive_time': '600'}})),
    'sysctls, a list': (
        {'sysctls': ['net.core.somaxconn=1024']}, spec({'Sysctls': {'net.core.somaxconn': '1024'}})),
    'ulimits (sorted by name)': (
        {'ulimits': {'nproc': 65535, 'nofile': {'soft': 20000, 'hard': 40000}}},
        spec({'Ulimits': [{'Name': 'nofile', 'Soft': 20000, 'Hard': 40000},
                          {'Name': 'nproc', 'Soft': 65535, 'Hard': 65535}]})),
    'stop_grace_period': ({'stop_grace_period': '1m30s'}, spec({'StopGracePeriod': 90 * S})),
    'stop_signal': ({'stop_signal': 'SIGQUIT'}, spec({'StopSignal': 'SIGQUIT'})),
    'logging': (
        {'logging': {'driver': 'json-file', 'options': {'max-size': '10m', 'max-file': 3}}},
        spec(task={'LogDriver': {'Name': 'json-file', 'Options': {'max-size': '10m', 'max-file': '3'}}})),
    'logging, a driver only': (
        {'logging': {'driver': 'none'}}, spec(task={'LogDriver': {'Name': 'none'}})),
    'dns, a string': ({'dns': '10.0.0.2'}, spec({'DNSConfig': {'Nameservers': ['10.0.0.2']}})),
    'dns, a list': (
        {'dns': ['10.0.0.2', '10.0.0.3']}, spec({'DNSConfig': {'Nameservers': ['10.0.0.2', '10.0.0.3']}})),
    'extra_hosts, a list (host:ip and host=ip)': (
        {'extra_hosts': ['db:10.0.0.5', 'v6=fd00::5']}, spec({'Hosts': ['10.0.0.5 db', 'fd00::5 v6']})),
    'extra_hosts, a map (sorted by host)': (
        {'extra_hosts': {'web': '10.0.0.6', 'db': '10.0.0.5'}}, spec({'Hosts': ['10.0.0.5 db', '10.0.0.6 web']})),
    'x-swarmfabric is not sent to Docker': (
        {'x-swarmfabric': {'vip': '10.20.255.10', 'traffic_policy': {8443: 'local'}}}, spec()),
}


@pytest.mark.parametrize(('service', 'expected'), FIELDS.values(), ids=FIELDS.keys())
def test_each_field_maps_to_the_exact_service_spec(service, expected):
    assert problems({'image': IMAGE, **service}) == []
    assert service_spec('web', {'image': IMAGE, **service}) == expected


def test_the_mappings_name_networks_secrets_configs_and_volumes():
    service = {'image': IMAGE, 'networks': ['appnet'], 'secrets': ['db_password'], 'configs': ['app'],
               'volumes': ['data:/data']}
    assert service_spec('web', service, networks={'appnet': 'n1d'},
                        secrets={'db_password': {'name': 'db_password.v3', 'id': 's1d'}},
                        configs={'app': {'name': 'app.v2', 'id': 'c1d'}}, volumes={'data': 'data_2'}) == spec(
        {'Secrets': [{'File': {'Name': 'db_password', 'UID': '0', 'GID': '0', 'Mode': 0o444},
                      'SecretName': 'db_password.v3', 'SecretID': 's1d'}],
         'Configs': [{'File': {'Name': 'app', 'UID': '0', 'GID': '0', 'Mode': 0o444},
                      'ConfigName': 'app.v2', 'ConfigID': 'c1d'}],
         'Mounts': [{'Type': 'volume', 'Source': 'data_2', 'Target': '/data'}]},
        {'Networks': [{'Target': 'n1d'}]})


def test_a_stack_names_and_labels_what_docker_stack_deploy_does():
    service = {'image': 'redis:7', 'labels': {'tier': 'cache'}, 'deploy': {'labels': {'team': 'db'}},
               'networks': {'appnet': {'aliases': ['cache']}, 'dbnet': None}, 'secrets': ['pw'], 'configs': ['conf'],
               'volumes': ['data:/data', '/srv:/srv']}
    assert service_spec('redis', service, stack='shop', networks={'dbnet': 'dbnet'}) == {
        'Name': 'shop_redis',
        'Labels': {'team': 'db', 'com.docker.stack.namespace': 'shop', 'com.docker.stack.image': 'redis:7'},
        'Mode': {'Replicated': {}},
        'TaskTemplate': {
            'ContainerSpec': {
                'Image': 'redis:7',
                'Labels': {'tier': 'cache', 'com.docker.stack.namespace': 'shop'},
                'Secrets': [{'File': {'Name': 'pw', 'UID': '0', 'GID': '0', 'Mode': 0o444}, 'SecretName': 'shop_pw'}],
                'Configs': [{'File': {'Name': 'conf', 'UID': '0', 'GID': '0', 'Mode': 0o444},
                             'ConfigName': 'shop_conf'}],
                'Mounts': [{'Type': 'volume', 'Source': 'shop_data', 'Target': '/data',
                            'VolumeOptions': {'Labels': {'com.docker.stack.namespace': 'shop'}}},
                           {'Type': 'bind', 'Source': '/srv', 'Target': '/srv'}],
            },
            # The service's name in the file is an alias on every network, as docker stack deploy adds it.
            'Networks': [{'Target': 'dbnet', 'Aliases': ['redis']},
                         {'Target': 'shop_appnet', 'Aliases': ['cache', 'redis']}],
        },
    }


def test_a_service_with_problems_is_not_converted():
    with pytest.raises(ValueError, match=r'^Cannot convert service web: services\.web\.restart: is ignored by swarm '
                                         r'mode \(docker stack deploy\); use deploy\.restart_policy$'):
        service_spec('web', {'image': IMAGE, 'restart': 'always'})


def test_a_backends_service_has_no_service_spec():
    with pytest.raises(ValueError, match=r'^Cannot convert service web: it has x-swarmfabric\.backends and no image'):
        service_spec('web', {'x-swarmfabric': {'backends': ['10.21.9.1:80']}})


def test_a_valid_backends_service_passes():
    assert problems({'x-swarmfabric': {'backends': ['10.21.9.1:80'], 'vip': '10.20.255.9'},
                     'ports': ['5432:5432'], 'networks': ['dbnet']}) == []


def test_a_compose_file_path_is_its_own():
    report = Lines()
    check_service('web', {'image': IMAGE, 'links': ['db']}, ['services', 'web'], report)
    assert report.lines == ['services.web.links: is ignored by swarm mode (docker stack deploy); use networks '
                            '(services on a shared network resolve each other by name)']


# ---------------------------------------------------------------- refused fields and v1 keys

IGNORED = [
    ('build', '.', 'build and push the image first, then give image'),
    ('depends_on', ['db'], 'swarm starts services in any order: give the dependent one a healthcheck and retries'),
    ('container_name', 'web', 'swarm names the tasks itself (<service>.<slot>.<id>)'),
    ('restart', 'always', 'use deploy.restart_policy'),
    ('links', ['db'], 'use networks (services on a shared network resolve each other by name)'),
    ('external_links', ['db'], 'use networks (services on a shared network resolve each other by name)'),
    ('network_mode', 'host', 'use networks'),
    ('privileged', True, 'use cap_add'),
    ('devices', ['/dev/fuse'], None),
    ('pid', 'host', None),
    ('ipc', 'host', None),
    ('cgroup_parent', 'x', None),
    ('cgroupns_mode', 'host', None),
    ('mem_limit', '1g', 'use deploy.resources.limits.memory'),
    ('mem_reservation', '1g', 'use deploy.resources.reservations.memory'),
    ('memswap_limit', '1g', None),
    ('mem_swappiness', 0, None),
    ('cpus', 0.5, 'use deploy.resources.limits.cpus'),
    ('cpu_shares', 512, 'use deploy.resources.reservations.cpus'),
    ('cpu_quota', 50000, 'use deploy.resources.limits.cpus'),
    ('cpu_period', 100000, 'use deploy.resources.limits.cpus'),
    ('cpu_count', 2, 'use deploy.resources.limits.cpus'),
    ('cpu_percent', 50, 'use deploy.resources.limits.cpus'),
    ('cpuset', '0-1', None),
    ('pids_limit', 100, 'use deploy.resources.limits.pids'),
    ('scale', 3, 'use deploy.replicas'),
    ('profiles', ['debug'], None),
    ('expose', ['80'], 'services on a shared network reach each other on any port'),
    ('security_opt', ['no-new-privileges'], None),
    ('userns_mode', 'host', None),
    ('shm_size', '64m', 'use a tmpfs volume on /dev/shm'),
    ('tmpfs', ['/run'], 'use volumes with type: tmpfs'),
    ('domainname', 'example.com', 'use hostname'),
    ('mac_address', '02:42:ac:11:00:02', None),
    ('oom_kill_disable', True, None),
    ('oom_score_adj', 500, None),
    ('env_file', '.env', 'use environment'),
    ('extends', {'service': 'base'}, None),
    ('volumes_from', ['other'], 'use a named volume in each service'),
    ('volume_driver', 'local', None),
]


@pytest.mark.parametrize(('key', 'value', 'instead'), IGNORED, ids=[row[0] for row in IGNORED])
def test_a_field_swarm_mode_ignores_is_refused(key, value, instead):
    rule = 'is ignored by swarm mode (docker stack deploy)' + (f'; {instead}' if instead else '')
    assert problems({'image': IMAGE, key: value}) == [f'{WHERE}.{key}: {rule}']


V1 = [
    ('overlays', ['appnet'], 'networks'),
    ('publish', [{'published': 8080}], 'ports'),
    ('update', {'parallelism': 1}, 'deploy.update_config'),
    ('mode', 'global', 'deploy.mode'),
    ('replicas', 3, 'deploy.replicas'),
    ('endpoint_mode', 'dnsrr', 'deploy.endpoint_mode'),
    ('vip', '10.20.255.10', 'x-swarmfabric.vip'),
    ('backends', ['10.21.9.1:80'], 'x-swarmfabric.backends'),
]


@pytest.mark.parametrize(('key', 'value', 'spelling'), V1, ids=[row[0] for row in V1])
def test_a_v1_key_names_its_v2_spelling(key, value, spelling):
    assert problems({'image': IMAGE, key: value}) == [
        f"{WHERE}.{key}: is format v1; in format v2 (Compose's shape) write {spelling}"]


def test_a_v1_traffic_policy_on_a_port_names_its_v2_spelling():
    assert problems({'image': IMAGE, 'ports': [{'target': 80, 'published': 8080, 'traffic_policy': 'local'}]}) == [
        f'{WHERE}.ports[0].traffic_policy: is x-swarmfabric.traffic_policy in format v2 (a map of '
        '"published/protocol" to cluster or local)']


# ---------------------------------------------------------------- bad values

ALL_KEYS = ('image, command, entrypoint, environment, secrets, configs, volumes, ports, networks, deploy, '
            'healthcheck, labels, user, working_dir, hostname, init, read_only, cap_add, cap_drop, sysctls, '
            'ulimits, stop_grace_period, stop_signal, logging, dns, extra_hosts, x-swarmfabric')
VOLUME_NAME = 'is not a volume name (letters, digits, "_", "." or "-", starting with a letter or digit)'
IMAGE_RULE = 'is not an image reference (1 to 255 printable ASCII characters, no spaces)'
DURATION = 'is not a duration like 5s, 1.5s, 500ms, 1m30s or 24h'
SIZE = 'is not a size like 512m, 1g, 1.5gb or a number of bytes'
PORT = 'is not a port like "8080:80", "8080:80/udp" or "80"'

BAD = {
    'unknown key, with a guess': (
        {'imgae': 'x'}, [f'{WHERE}.imgae: unknown key (a service takes: {ALL_KEYS}); did you mean image?',
                         f'{WHERE}: needs image (container tasks) or x-swarmfabric.backends (static addresses)']),
    'unknown key': ({'color': 'red'}, [f'{WHERE}.color: unknown key (a service takes: {ALL_KEYS})']),
    'a misspelt extension key': (
        {'x-swarmfabrik': {'vip': '10.20.255.10'}, 'x-swarm-fabric': {}},
        [f'{WHERE}.x-swarm-fabric: is not x-swarmfabric (the extension key of this toolkit); did you mean it?',
         f'{WHERE}.x-swarmfabrik: is not x-swarmfabric (the extension key of this toolkit); did you mean it?']),
    'not a mapping': ('redis', [f'{WHERE}: "redis" is not a mapping']),
    'image and backends': (
        {'x-swarmfabric': {'backends': ['10.21.9.1:80']}},
        [f'{WHERE}.x-swarmfabric.backends: is not allowed together with image (a service runs either containers '
         'or static backends)']),
    'image, a number': ({'image': 7}, [f'{WHERE}.image: 7 is not a string; quote it']),
    'image, empty': ({'image': ''}, [f'{WHERE}.image: "" {IMAGE_RULE}']),
    'image, a space': ({'image': 'redis 7'}, [f'{WHERE}.image: "redis 7" {IMAGE_RULE}']),
    'command, a number': ({'command': 3}, [f'{WHERE}.command: 3 is not a string or a list of strings']),
    'command, a list of numbers': ({'command': ['sleep', 60]}, [f'{WHERE}.command[1]: 60 is not a string; quote it']),
    'command, an open quote': (
        {'command': 'sh -c "echo'}, [f'{WHERE}.command: "sh -c \\"echo" cannot be split like a shell command: '
                                     'No closing quotation']),
    'entrypoint, a mapping': ({'entrypoint': {'a': 1}}, [f'{WHERE}.entrypoint: {{"a": 1}} is not a string or a '
                                                         'list of strings']),
    'environment, a string': (
        {'environment': 'A=1'}, [f'{WHERE}.environment: "A=1" is not a mapping or a list of "NAME=value" strings']),
    'environment, a list item twice': (
        {'environment': ['A=1', 'A=2']},
        [f'{WHERE}.environment[1]: sets A again (already set in {WHERE}.environment[0])']),
    'environment, a list item without a name': (
        {'environment': ['=1']}, [f'{WHERE}.environment[0]: "=1" is not a "NAME=value" string']),
    'environment, a nested value': (
        {'environment': {'A': [1]}}, [f'{WHERE}.environment.A: [1] is not a string, a number or null']),
    'secrets, an unknown one': (
        {'secrets': ['tls', {'source': 'nope'}]},
        [f'{WHERE}.secrets[0]: "tls" is not a declared secret (declared: db_password)',
         f'{WHERE}.secrets[1].source: "nope" is not a declared secret (declared: db_password)']),
    'secrets, long syntax without source and with bad keys': (
        {'secrets': [{'target': '/x', 'uid': 0, 'mode': 0o1000, 'owner': 'me'}]},
        [f'{WHERE}.secrets[0].mode: 512 is out of range 0..511',
         f'{WHERE}.secrets[0].owner: unknown key (allowed: source, target, uid, gid, mode)',
         f'{WHERE}.secrets[0].source: is required',
         f'{WHERE}.secrets[0].uid: 0 is not a string; quote it']),
    'secrets, a mapping': (
        {'secrets': {'db_password': None}}, [f'{WHERE}.secrets: {{"db_password": null}} is not a list']),
    'configs, an unknown one': (
        {'configs': ['nginx']}, [f'{WHERE}.configs[0]: "nginx" is not a declared config (declared: none)']),
    'volumes, short syntax': (
        {'volumes': ['./data:/data', 'data:rel', 'a:b:c:d', 'data:/data:z', '/srv:/srv:nocopy', 7]},
        [f'{WHERE}.volumes[0]: "./data:/data" is not an absolute path: a bind mount is a path on the node that '
         'runs the task, and a relative one has nothing to be relative to there',
         f'{WHERE}.volumes[1]: "data:rel" is not an absolute path in the container',
         f'{WHERE}.volumes[2]: "a:b:c:d" is not a volume like "data:/var/lib/data", "/srv:/srv:ro" or "/cache"',
         f'{WHERE}.volumes[3]: "data:/data:z" has the option z, which a volume cannot take here (ro, rw, nocopy)',
         f'{WHERE}.volumes[4]: "/srv:/srv:nocopy" has the option nocopy, which a bind cannot take here (ro, rw, '
         'rprivate, private, rshared, shared, rslave, slave)',
         f'{WHERE}.volumes[5]: 7 is not a mapping']),
    'volumes, long syntax': (
        {'volumes': [{'type': 'bind', 'target': '/x'}, {'type': 'nfs', 'source': 'a', 'target': '/a'},
                     {'type': 'bind', 'source': '/x', 'target': '/y', 'volume': {'nocopy': True}},
                     {'type': 'tmpfs', 'source': 'x', 'target': '/t', 'tmpfs': {'size': '1q', 'mode': 0o10000}},
                     {'type': 'volume', 'source': 'a', 'target': '/a', 'read_only': 'yes',
                      'volume': {'nocopy': 1, 'subpath': 'x'}},
                     {'type': 'bind', 'source': '/a', 'target': '/a', 'bind': {'propagation': 'up'}},
                     {'source': 'a'}, {'type': 'volume', 'source': 'my data', 'target': '/d'}, '-x:/x']},
        [f'{WHERE}.volumes[0].source: is required for a bind mount',
         f'{WHERE}.volumes[1].type: "nfs" is not one of: volume, bind, tmpfs',
         f'{WHERE}.volumes[2].volume: is only allowed with type volume',
         f'{WHERE}.volumes[3].source: "x" is not allowed with type tmpfs',
         f'{WHERE}.volumes[3].tmpfs.mode: 4096 is out of range 0..4095',
         f'{WHERE}.volumes[3].tmpfs.size: "1q" {SIZE}',
         f'{WHERE}.volumes[4].read_only: "yes" is not a boolean (write true or false, unquoted)',
         f'{WHERE}.volumes[4].volume.nocopy: 1 is not a boolean (write true or false, unquoted)',
         f'{WHERE}.volumes[4].volume.subpath: unknown key (allowed: nocopy)',
         f'{WHERE}.volumes[5].bind.propagation: "up" is not one of: rprivate, private, rshared, shared, rslave, '
         'slave',
         f'{WHERE}.volumes[6].target: is required',
         f'{WHERE}.volumes[6].type: is required',
         f'{WHERE}.volumes[7].source: "my data" {VOLUME_NAME}',
         f'{WHERE}.volumes[8]: "-x:/x" {VOLUME_NAME}']),
    'ports, short syntax': (
        {'ports': ['127.0.0.1:8080:80', '80:80/sctp', 'http', '8080-8081:80', '70000', '80:80/tcp/x', 80.5]},
        [f'{WHERE}.ports[0]: "127.0.0.1:8080:80" has a host IP: swarm mode publishes a port on every address of '
         'the node; remove it',
         f'{WHERE}.ports[1]: "80:80/sctp" has the protocol sctp; use tcp or udp',
         f'{WHERE}.ports[2]: "http" {PORT}',
         f'{WHERE}.ports[3]: "8080-8081:80" has ranges of different lengths (or an empty range); give as many '
         'published ports as targets',
         f'{WHERE}.ports[4]: "70000" has a port out of range 1..65535',
         f'{WHERE}.ports[5]: "80:80/tcp/x" {PORT}',
         f'{WHERE}.ports[6]: 80.5 {PORT}']),
    # The last one is 80 in Arabic-Indic digits: not an integer, and shown escaped.
    'ports, long syntax': (
        {'ports': [{'published': 8080}, {'target': 0, 'published': 'x', 'protocol': 'icmp', 'mode': 'routed'},
                   {'target': 80, 'host_ip': '127.0.0.1'}, {'target': 80, 'published': '\u0668\u0660'}]},
        [f'{WHERE}.ports[0].target: is required',
         f'{WHERE}.ports[1].mode: "routed" is not one of: ingress, host',
         f'{WHERE}.ports[1].protocol: "icmp" is not one of: tcp, udp',
         f'{WHERE}.ports[1].published: "x" is not an integer',
         f'{WHERE}.ports[3].published: "\\u0668\\u0660" is not an integer',
         f'{WHERE}.ports[1].target: 0 is out of range 1..65535',
         f'{WHERE}.ports[2].host_ip: is ignored by swarm mode, which publishes a port on every address of the '
         'node; remove it']),
    'networks, unknown ones': (
        {'networks': ['nonet']}, [f'{WHERE}.networks[0]: "nonet" is not a declared network (declared: appnet)']),
    'networks, a map': (
        {'networks': {'nonet': {'aliases': 'x', 'ipv4_address': '10.0.0.1'}}},
        [f'{WHERE}.networks.nonet: "nonet" is not a declared network (declared: appnet)',
         f'{WHERE}.networks.nonet.aliases: "x" is not a list of strings',
         f'{WHERE}.networks.nonet.ipv4_address: unknown key (allowed: aliases)']),
    'networks, a string': (
        {'networks': 'appnet'}, [f'{WHERE}.networks: "appnet" is not a list of network names or a mapping of them']),
    'deploy, unknown key': (
        {'deploy': {'replica': 3}},
        [f'{WHERE}.deploy.replica: unknown key (allowed: mode, replicas, endpoint_mode, placement, resources, '
         'restart_policy, update_config, rollback_config, labels); did you mean replicas?']),
    'deploy.mode and replicas': (
        {'deploy': {'mode': 'global', 'replicas': 2}},
        [f'{WHERE}.deploy.replicas: is only allowed with mode replicated or replicated-job (mode is global)']),
    'deploy.mode, unknown': (
        {'deploy': {'mode': 'daemonset'}},
        [f'{WHERE}.deploy.mode: "daemonset" is not one of: replicated, global, replicated-job, global-job']),
    'deploy.replicas, a string and out of range': (
        {'deploy': {'replicas': '3'}}, [f'{WHERE}.deploy.replicas: "3" is not an integer (write it unquoted)']),
    'deploy.replicas, too many': (
        {'deploy': {'replicas': 10001}}, [f'{WHERE}.deploy.replicas: 10001 is out of range 0..10000']),
    'deploy.endpoint_mode dnsrr with ingress ports': (
        {'deploy': {'endpoint_mode': 'dnsrr'}, 'ports': ['8080:80', {'target': 81, 'mode': 'ingress'},
                                                        {'target': 82, 'mode': 'host', 'published': 82}]},
        [f'{WHERE}.ports[0].mode: ingress (the default) is not allowed with deploy.endpoint_mode dnsrr (Docker '
         'refuses ingress ports without a VIP); use mode: host or deploy.endpoint_mode: vip',
         f'{WHERE}.ports[1].mode: ingress is not allowed with deploy.endpoint_mode dnsrr (Docker refuses ingress '
         'ports without a VIP); use mode: host or deploy.endpoint_mode: vip']),
    'keys YAML did not read as strings': (
        {'environment': {0: 'x', 'A': 'y'}, 'labels': {True: 'x'}, 'ulimits': {1: 2}},
        [f'{WHERE}.environment.0: key 0 is not a string; quote it',
         f'{WHERE}.labels.True: key true is not a string; quote it',
         f'{WHERE}.ulimits.1: key 1 is not a string; quote it']),
    'deploy.endpoint_mode': (
        {'deploy': {'endpoint_mode': 'ipvs'}}, [f'{WHERE}.deploy.endpoint_mode: "ipvs" is not one of: vip, dnsrr']),
    'deploy.placement': (
        {'deploy': {'placement': {'constraints': 'node.role==manager', 'preferences': [{'pack': 'x'}],
                                  'max_replicas_per_node': 0}}},
        [f'{WHERE}.deploy.placement.constraints: "node.role==manager" is not a list of strings',
         f'{WHERE}.deploy.placement.max_replicas_per_node: 0 is out of range 1..10000',
         f'{WHERE}.deploy.placement.preferences[0].pack: unknown key (allowed: spread)',
         f'{WHERE}.deploy.placement.preferences[0].spread: is required']),
    'deploy.resources': (
        {'deploy': {'resources': {'limits': {'cpus': 'half', 'memory': '1q', 'pids': 0},
                                  'reservations': {'cpus': 0, 'memory': -1, 'pids': 1}, 'devices': []}}},
        [f'{WHERE}.deploy.resources.devices: unknown key (allowed: limits, reservations)',
         f'{WHERE}.deploy.resources.limits.cpus: "half" is not a number of CPUs like 0.5 or 2 (more than 0, at most '
         '9 decimals)',
         f'{WHERE}.deploy.resources.limits.memory: "1q" {SIZE}',
         f'{WHERE}.deploy.resources.limits.pids: 0 is out of range 1..9223372036854775807',
         f'{WHERE}.deploy.resources.reservations.cpus: 0 is not a number of CPUs like 0.5 or 2 (more than 0, at '
         'most 9 decimals)',
         f'{WHERE}.deploy.resources.reservations.memory: -1 is out of range 0..9223372036854775807',
         f'{WHERE}.deploy.resources.reservations.pids: unknown key (allowed: cpus, memory)']),
    'deploy.restart_policy': (
        {'deploy': {'restart_policy': {'condition': 'always', 'delay': 5, 'window': '1d', 'max_attempts': -1}}},
        [f'{WHERE}.deploy.restart_policy.condition: "always" is not one of: none, on-failure, any',
         f'{WHERE}.deploy.restart_policy.delay: 5 is not a duration string; give its unit, like 5s',
         f'{WHERE}.deploy.restart_policy.max_attempts: -1 is out of range 0..9223372036854775807',
         f'{WHERE}.deploy.restart_policy.window: "1d" {DURATION}']),
    'deploy.update_config': (
        {'deploy': {'update_config': {'parallelism': -1, 'delay': '5 sec', 'failure_action': 'retry',
                                      'monitor': '1:30', 'max_failure_ratio': 1.5, 'order': 'first'}}},
        [f'{WHERE}.deploy.update_config.delay: "5 sec" {DURATION}',
         f'{WHERE}.deploy.update_config.failure_action: "retry" is not one of: continue, pause, rollback',
         f'{WHERE}.deploy.update_config.max_failure_ratio: 1.5 is not a number in 0..1',
         f'{WHERE}.deploy.update_config.monitor: "1:30" {DURATION}',
         f'{WHERE}.deploy.update_config.order: "first" is not one of: start-first, stop-first',
         f'{WHERE}.deploy.update_config.parallelism: -1 is out of range 0..10000']),
    'deploy.rollback_config cannot roll back': (
        {'deploy': {'rollback_config': {'failure_action': 'rollback', 'max_failure_ratio': True}}},
        [f'{WHERE}.deploy.rollback_config.failure_action: "rollback" is not one of: continue, pause',
         f'{WHERE}.deploy.rollback_config.max_failure_ratio: true is not a number in 0..1']),
    'deploy.labels': (
        {'deploy': {'labels': {'a': None, 'b': {}}}},
        [f'{WHERE}.deploy.labels.a: null is not a string or a number',
         f'{WHERE}.deploy.labels.b: {{}} is not a string or a number']),
    'healthcheck': (
        {'healthcheck': {'test': ['ping'], 'interval': '1', 'timeout': 30, 'retries': -1, 'start_period': 'soon',
                         'start_interval': '1s', 'disable': 'no', 'every': '1s'}},
        [f'{WHERE}.healthcheck.disable: "no" is not a boolean (write true or false, unquoted)',
         f'{WHERE}.healthcheck.every: unknown key (allowed: test, interval, timeout, retries, start_period, '
         'start_interval, disable)',
         f'{WHERE}.healthcheck.interval: "1" {DURATION}',
         f'{WHERE}.healthcheck.retries: -1 is out of range 0..2147483647',
         f'{WHERE}.healthcheck.start_period: "soon" {DURATION}',
         f'{WHERE}.healthcheck.test[0]: "ping" is not NONE, CMD or CMD-SHELL (the first item of a test list)',
         f'{WHERE}.healthcheck.timeout: 30 is not a duration string; give its unit, like 30s']),
    'healthcheck, disable with a test': (
        {'healthcheck': {'test': 'true', 'disable': True}},
        [f'{WHERE}.healthcheck.disable: true is not allowed together with test (disable means test: [NONE])']),
    'healthcheck, an empty test': ({'healthcheck': {'test': []}}, [f'{WHERE}.healthcheck.test: [] must not be empty']),
    'labels, a string': (
        {'labels': 'a=1'}, [f'{WHERE}.labels: "a=1" is not a mapping or a list of "label=value" strings']),
    'user, working_dir, hostname, stop_signal': (
        {'user': 999, 'working_dir': '', 'hostname': ['a'], 'stop_signal': None},
        [f'{WHERE}.hostname: ["a"] is not a string',
         f'{WHERE}.stop_signal: null is not a string',
         f'{WHERE}.user: 999 is not a string; quote it',
         f'{WHERE}.working_dir: "" must not be empty']),
    'init and read_only': (
        {'init': 'yes', 'read_only': 1},
        [f'{WHERE}.init: "yes" is not a boolean (write true or false, unquoted)',
         f'{WHERE}.read_only: 1 is not a boolean (write true or false, unquoted)']),
    'cap_add and cap_drop': (
        {'cap_add': 'NET_ADMIN', 'cap_drop': [1]},
        [f'{WHERE}.cap_add: "NET_ADMIN" is not a list of strings',
         f'{WHERE}.cap_drop[0]: 1 is not a string; quote it']),
    'sysctls': (
        {'sysctls': {'kernel.panic': '1', 'Net': 1, 'net.core.somaxconn': True}},
        [f'{WHERE}.sysctls.Net: "Net" is not a sysctl name, like net.ipv4.tcp_keepalive_time',
         f'{WHERE}.sysctls.kernel.panic: "kernel.panic" is not a sysctl a task has its own copy of (Docker allows '
         "net.*, fs.mqueue.* and kernel's IPC ones; the others are the host's)",
         f'{WHERE}.sysctls.net.core.somaxconn: true is not a string or an integer']),
    'sysctls, a list': (
        {'sysctls': ['net.core.somaxconn=1', 'net.core.somaxconn=2', 'vm.swappiness=1']},
        [f'{WHERE}.sysctls[1]: sets net.core.somaxconn again (already set in {WHERE}.sysctls[0])',
         f'{WHERE}.sysctls[2]: "vm.swappiness" is not a sysctl a task has its own copy of (Docker allows net.*, '
         "fs.mqueue.* and kernel's IPC ones; the others are the host's)"]),
    'ulimits': (
        {'ulimits': {'nofile': {'soft': 3, 'hard': 1}, 'nproc': '1', 'core': {'soft': 1}, 'stack': -1}},
        [f'{WHERE}.ulimits.core.hard: is required',
         f'{WHERE}.ulimits.nofile.soft: 3 is more than hard (1)',
         f'{WHERE}.ulimits.nproc: "1" is not a mapping',
         f'{WHERE}.ulimits.stack: -1 is out of range 0..9223372036854775807']),
    'stop_grace_period': (
        {'stop_grace_period': '10 s'}, [f'{WHERE}.stop_grace_period: "10 s" {DURATION}']),
    'stop_grace_period, a number': (
        {'stop_grace_period': 10},
        [f'{WHERE}.stop_grace_period: 10 is not a duration string; give its unit, like 10s']),
    'logging': (
        {'logging': {'driver': '', 'options': {'max-size': ['10m']}, 'format': 'x'}},
        [f'{WHERE}.logging.driver: "" must not be empty',
         f'{WHERE}.logging.format: unknown key (allowed: driver, options)',
         f'{WHERE}.logging.options.max-size: ["10m"] is not a string, a number or null']),
    'dns': ({'dns': 8}, [f'{WHERE}.dns: 8 is not a string or a list of strings']),
    'dns, not addresses': (
        {'dns': ['10.0.0.2', 'dns.example.com', 5]},
        [f'{WHERE}.dns[1]: "dns.example.com" is not an IP address (a nameserver)',
         f'{WHERE}.dns[2]: 5 is not a string; quote it']),
    'dns, one not an address': (
        {'dns': '10.0.0.300'}, [f'{WHERE}.dns: "10.0.0.300" is not an IP address (a nameserver)']),
    'extra_hosts': (
        {'extra_hosts': ['db 10.0.0.1', 'db:']},
        [f'{WHERE}.extra_hosts[0]: "db 10.0.0.1" is not a "host=ip" or "host:ip" string',
         f'{WHERE}.extra_hosts[1]: "db:" is not a "host=ip" or "host:ip" string']),
    'x-swarmfabric': (
        {'x-swarmfabric': {'vip': 10, 'backends': '10.0.0.1:80', 'traffic_policy': {'http': 'local', 8443: 'nearest'},
                           'fwmark': 1}},
        [f'{WHERE}.x-swarmfabric.backends: "10.0.0.1:80" is not a list of strings',
         f'{WHERE}.x-swarmfabric.backends: is not allowed together with image (a service runs either containers '
         'or static backends)',
         f'{WHERE}.x-swarmfabric.fwmark: unknown key (allowed: vip, backends, traffic_policy)',
         f'{WHERE}.x-swarmfabric.traffic_policy.8443: "nearest" is not one of: cluster, local',
         f'{WHERE}.x-swarmfabric.traffic_policy.http: is not a published port like 8443 or 8443/tcp',
         f'{WHERE}.x-swarmfabric.vip: 10 is not a string; quote it']),
}


@pytest.mark.parametrize(('service', 'expected'), BAD.values(), ids=BAD.keys())
def test_a_bad_service_is_refused_with_path_and_rule(service, expected):
    if isinstance(service, dict) and 'imgae' not in service:  # a sample's own image wins
        service = {'image': IMAGE, **service}
    # Every line, and nothing else: each sample breaks exactly the rules it names.
    assert problems(service, networks={'appnet'}, secrets={'db_password'}, configs=set()) == sorted(expected)


def test_another_tools_extension_field_is_ignored_as_compose_ignores_it():
    service = {'image': IMAGE, 'x-traefik': {'rule': 'Host(`a`)'}, 'x-common': 1}
    assert problems(service) == []
    assert service_spec('web', service) == spec()
    assert service_fields(service) == {'image': IMAGE, 'deploy.mode': 'replicated', 'deploy.replicas': 1,
                                       'deploy.endpoint_mode': 'vip'}


def test_references_are_not_checked_without_the_declared_names():
    assert problems({'image': IMAGE, 'networks': ['any'], 'secrets': ['any'], 'configs': ['any']}) == []


# ---------------------------------------------------------------- the user's view and its diff


def test_service_fields_speak_compose():
    service = {
        'image': 'redis:7', 'command': 'redis-server --appendonly yes', 'environment': ['A=1', 'B'],
        'secrets': ['db_password', {'source': 'tls', 'target': 'key', 'mode': 0o400}], 'configs': ['app'],
        'volumes': ['data:/data:ro', {'type': 'tmpfs', 'target': '/tmp', 'tmpfs': {'size': 67108864, 'mode': 0o1777}}],
        'ports': ['8080:80', {'target': 53, 'protocol': 'udp', 'mode': 'host'}],
        'networks': {'dbnet': None, 'appnet': {'aliases': ['cache']}},
        'deploy': {'replicas': 3, 'resources': {'limits': {'memory': 536870912, 'cpus': 0.5}},
                   'update_config': {'delay': '90s'}, 'restart_policy': {'window': '1500ms'},
                   'placement': {'preferences': [{'spread': 'node.labels.zone'}]}, 'labels': ['team=db']},
        'healthcheck': {'test': 'redis-cli ping', 'interval': '1m0s', 'retries': 3},
        'cap_add': ['net_admin'], 'sysctls': {'net.core.somaxconn': 1024}, 'ulimits': {'nofile': 1024},
        'stop_grace_period': '2h', 'logging': {'driver': 'local', 'options': {'max-file': 3}},
        'dns': '10.0.0.2', 'extra_hosts': {'db': '10.0.0.5'},
        'x-swarmfabric': {'vip': '10.20.255.10', 'traffic_policy': {8080: 'local', '53/udp': 'cluster'}},
    }
    assert service_fields(service) == {
        'image': 'redis:7',
        'command': ['redis-server', '--appendonly', 'yes'],
        'environment.A': '1',
        'environment.B': None,
        'secrets[0]': 'db_password -> /run/secrets/db_password uid=0 gid=0 mode=0444',
        'secrets[1]': 'tls -> /run/secrets/key uid=0 gid=0 mode=0400',
        'configs[0]': 'app -> /app uid=0 gid=0 mode=0444',
        'volumes[0]': 'volume data:/data ro',
        'volumes[1]': 'tmpfs /tmp size=64m mode=1777',
        'ports[0]': '53/udp host',
        'ports[1]': '8080:80/tcp ingress',
        'networks': ['appnet', 'dbnet'],
        'networks.appnet.aliases': ['cache'],
        'deploy.mode': 'replicated',
        'deploy.replicas': 3,
        'deploy.endpoint_mode': 'vip',
        'deploy.placement.preferences': ['spread=node.labels.zone'],
        'deploy.resources.limits.memory': '512m',
        'deploy.resources.limits.cpus': '0.5',
        'deploy.restart_policy.window': '1.5s',
        'deploy.update_config.delay': '1m30s',
        'deploy.update_config.parallelism': 1,
        'deploy.labels.team': 'db',
        'healthcheck.test': ['CMD-SHELL', 'redis-cli ping'],
        'healthcheck.interval': '1m',
        'healthcheck.retries': 3,
        'cap_add': ['CAP_NET_ADMIN'],
        'cap_drop': [],
        'sysctls.net.core.somaxconn': '1024',
        'ulimits.nofile': '1024:1024',
        'stop_grace_period': '2h',
        'logging.driver': 'local',
        'logging.options.max-file': '3',
        'dns': ['10.0.0.2'],
        'extra_hosts': ['db=10.0.0.5'],
        'x-swarmfabric.vip': '10.20.255.10',
        'x-swarmfabric.traffic_policy.8080/tcp': 'local',
        'x-swarmfabric.traffic_policy.53/udp': 'cluster',
    }


def test_a_written_default_and_a_left_out_one_are_the_same_fields():
    written = {'image': IMAGE, 'ports': [{'target': 80, 'published': 8080, 'protocol': 'tcp', 'mode': 'ingress'}],
               'secrets': [{'source': 'pw', 'target': 'pw', 'uid': '0', 'gid': '0', 'mode': 0o444}],
               'deploy': {'mode': 'replicated', 'replicas': 1, 'endpoint_mode': 'vip'}}
    left_out = {'image': IMAGE, 'ports': ['8080:80'], 'secrets': ['pw']}
    assert diff_fields(service_fields(written), service_fields(left_out)) == []


def test_a_global_service_has_no_replicas_field():
    assert service_fields({'image': IMAGE, 'deploy': {'mode': 'global'}}) == {
        'image': IMAGE, 'deploy.mode': 'global', 'deploy.endpoint_mode': 'vip'}


def test_diff_fields_lists_each_changed_field_sorted():
    before = service_fields({'image': 'app:1', 'environment': {'A': '1', 'GONE': 'x'}, 'ports': ['8080:80'],
                             'deploy': {'replicas': 2, 'update_config': {'delay': '5s'}}})
    after = service_fields({'image': 'app:2', 'environment': {'A': '1', 'NEW': 'y'}, 'ports': ['8080:80/udp'],
                            'deploy': {'replicas': 3, 'update_config': {'delay': '5000ms'}}})
    assert diff_fields(before, after) == [
        ('deploy.replicas', 2, 3),
        ('environment.GONE', 'x', None),
        ('environment.NEW', None, 'y'),
        ('image', 'app:1', 'app:2'),
        ('ports[0]', '8080:80/tcp ingress', '8080:80/udp ingress'),
    ]


def test_a_secret_change_shows_object_names_only():
    before = service_fields({'image': IMAGE, 'secrets': ['db_password']})
    after = service_fields({'image': IMAGE, 'secrets': [{'source': 'db_password', 'mode': 0o400}]})
    assert diff_fields(before, after) == [
        ('secrets[0]', 'db_password -> /run/secrets/db_password uid=0 gid=0 mode=0444',
         'db_password -> /run/secrets/db_password uid=0 gid=0 mode=0400')]


@pytest.mark.parametrize(('ns', 'text'), [
    (0, '0s'), (500000000, '500ms'), (1500000000, '1.5s'), (90 * S, '1m30s'), (7200 * S, '2h'),
    (3600 * S + 1, '1h0.000000001s'), (1000, '1us'), (7, '7ns'), (61 * S + 500000000, '1m1.5s'),
])
def test_format_ns(ns, text):
    assert format_ns(ns) == text


@pytest.mark.parametrize(('memory', 'count'), [
    (0, 0), (1, 1), ('1', 1), ('100b', 100), ('1k', 1024), ('1K', 1024), ('1kb', 1024), ('512m', 536870912),
    ('512MB', 536870912), ('1g', 1073741824), ('1.5gb', 1610612736), ('0.5k', 512), ('1.0001k', 1024),
])
def test_memory_sizes_use_composes_byte_grammar(memory, count):
    service = {'image': IMAGE, 'deploy': {'resources': {'limits': {'memory': memory}}}}
    assert service_spec('web', service)['TaskTemplate']['Resources'] == {'Limits': {'MemoryBytes': count}}


@pytest.mark.parametrize('memory', ['1t', '1 g', '1gib', '-1m', '.5g', '1e3', '', True, 1.5, '\uff11g'])
def test_a_size_outside_the_grammar_is_refused(memory):
    rendered = {True: 'true', 1.5: '1.5', '\uff11g': '"\\uff11g"'}.get(memory, f'"{memory}"')
    assert problems({'image': IMAGE, 'deploy': {'resources': {'limits': {'memory': memory}}}}) == [
        f'{WHERE}.deploy.resources.limits.memory: {rendered} {SIZE}']


@pytest.mark.parametrize(('cpus', 'nano'), [
    ('0.000000001', 1), ('1.5', 1500000000), (2, 2000000000), (0.1, 100000000), ('16', 16000000000)])
def test_cpus_are_exact_nano_cpus(cpus, nano):
    service = {'image': IMAGE, 'deploy': {'resources': {'reservations': {'cpus': cpus}}}}
    assert service_spec('web', service)['TaskTemplate']['Resources'] == {'Reservations': {'NanoCPUs': nano}}


@given(published=st.integers(1, 65535), target=st.integers(1, 65535), protocol=st.sampled_from(['tcp', 'udp']),
       short=st.booleans())
def test_a_port_is_the_same_in_both_syntaxes(published, target, protocol, short):
    port = f'{published}:{target}/{protocol}' if short else {'published': published, 'target': target,
                                                             'protocol': protocol}
    assert problems({'image': IMAGE, 'ports': [port]}) == []
    assert service_spec('web', {'image': IMAGE, 'ports': [port]})['EndpointSpec'] == {'Ports': [
        {'Protocol': protocol, 'TargetPort': target, 'PublishedPort': published, 'PublishMode': 'ingress'}]}
    assert service_fields({'image': IMAGE, 'ports': [port]})['ports[0]'] == f'{published}:{target}/{protocol} ingress'


def test_compose_imports_only_the_standard_library():
    # Modules load it on managed hosts, where neither Ansible's controller packages nor PyYAML are.
    tree = ast.parse((REPO / 'plugins/module_utils/swarmfabric/compose.py').read_text())
    imported = {alias.name.split('.')[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split('.')[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.level == 0}
    relative = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}
    assert imported <= set(sys.stdlib_module_names) | {'__future__'}, imported
    assert relative <= {None, 'constants'}, relative


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=12)
    | st.sampled_from(['8080:80', '1s', 'a=b', '512m', '/x:/y:ro', 'CMD', 'NONE', 'volume', 'bind', 'tmpfs']),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=8) | st.integers(0, 9) | st.sampled_from(['source', 'target', 'type', 'soft', 'hard', 'mode',
                                                                  'test', 'limits', 'cpus', 'memory', 'aliases']),
        inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(sorted(FIELD_NAMES)), value=VALUES)
def test_any_value_of_any_field_gets_lines_not_an_exception(key, value):
    lines = problems({'image': IMAGE, key: value}, networks={'appnet'}, secrets=set(), configs=set())
    assert all(line.startswith(f'{WHERE}') and line.isascii() and '\n' not in line for line in lines), lines
    if not lines:  # whatever check_service accepts converts and views without an error
        service_spec('web', {'image': IMAGE, key: value})
        service_fields({'image': IMAGE, key: value})


def test_a_file_mode_may_be_an_octal_string():
    service = {'image': 'x', 'secrets': [{'source': 'pw', 'mode': '0440'}],
               'volumes': [{'type': 'tmpfs', 'target': '/t', 'tmpfs': {'mode': '01777'}}]}
    spec = service_spec('web', service, secrets={'pw': {'name': 'pw-1', 'id': 'i'}})
    container = spec['TaskTemplate']['ContainerSpec']
    assert container['Secrets'][0]['File']['Mode'] == 0o440
    assert container['Mounts'][0]['TmpfsOptions'] == {'Mode': 0o1777}
    lines = Lines()
    check_service('web', {'image': 'x', 'secrets': [{'source': 'pw', 'mode': '0999'}]}, ['services', 'web'], lines)
    assert lines.lines == ['services.web.secrets[0].mode: "0999" is not a file mode (octal digits, like "0440")']
