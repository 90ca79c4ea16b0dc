"""Stacks and Docker's overlays in the description and the plan (issue 14, points 3 and 4):
validation names the compose file and the path in it; the plan gives stack services
docker stack deploy's names, aliases (as hosts entries) and labelled objects."""

import pathlib

from swarmfabric.description import validate
from swarmfabric.plan import build_plan
from swarmfabric.stack import load_stack, plan_input

REPO = pathlib.Path(__file__).resolve().parents[2]
HOSTS = ['node1', 'node2', 'node3']
HOSTVARS = {h: {'swarm_advertise_addr': f'172.30.0.{11 + i}'} for i, h in enumerate(HOSTS)}
VARIABLES = {'APP_REPLICAS': 2, 'GREETING': 'hello'}


def description(**extra):
    return {'name': 'lab', 'managers': HOSTS,
            'overlays': {'appnet': {'vni': 300, 'subnet': '10.20.0.0/16', 'encrypted': False}},
            'stacks': {'shop': {'compose': 'docs/examples/stack/shop.yml', 'variables': dict(VARIABLES)}},
            **extra}


def plan_of(swarm):
    stack = load_stack('shop', 'docs/examples/stack/shop.yml', VARIABLES, base_dir=str(REPO), overlays={'appnet'})
    assert stack.errors == []
    return build_plan(swarm, HOSTVARS, stacks=[plan_input(stack)])


def test_the_sample_stack_is_valid_and_read_only_with_the_inventory_directory():
    assert validate(description(), base_dir=str(REPO)) == []
    # Without base_dir no file is read: nothing to say about the stack.
    assert validate(description()) == []


def test_a_stack_problem_names_the_file_and_the_path_inside_it(tmp_path):
    (tmp_path / 'shop.yml').write_text('services:\n  app:\n    image: x\n    networks: [appnet]\n'
                                       '    deploy: {replicas: -1}\nnetworks:\n  appnet: {external: true}\n')
    swarm = description(stacks={'shop': {'compose': 'shop.yml'}})
    assert validate(swarm, base_dir=str(tmp_path)) == [
        'shop.yml: services.app.deploy.replicas: -1 is out of range 0..10000']


def test_a_stack_port_taken_by_a_description_service_is_refused():
    swarm = description(services={'web': {'image': 'x', 'networks': ['appnet'], 'ports': ['8082:80']}})
    assert validate(swarm, base_dir=str(REPO)) == [
        'docs/examples/stack/shop.yml: services.app.ports[0].published: 8082/tcp is already taken by service web']


def test_stack_services_get_stack_names_short_name_hosts_and_labelled_objects():
    plan = plan_of(description())
    app, kv = plan['services']['shop_app'], plan['services']['shop_kv']
    assert (app['stack'], app['short_name'], app['overlays']) == ('shop', 'app', ['appnet'])
    assert f'kv:{kv["vip"]}' in app['hosts'] and f'shop_kv:{kv["vip"]}' in app['hosts']
    assert [p['published'] for p in app['publish']] == [8082]
    secret, config = plan['objects']
    assert (secret['kind'], secret['name'], secret['labels']) == (
        'secret', 'shop_kv_password', {'com.docker.stack.namespace': 'shop'})
    assert secret['file'] == str(REPO / 'docs/examples/stack/kv_password.txt') and secret['content'] is None
    assert config['name'] == 'shop_index' and 'hello' in config['content']


def test_docker_overlays_are_networks_of_the_plan_and_ingress_services_need_ipvs():
    swarm = description(overlays={'appnet': {'vni': 300, 'subnet': '10.20.0.0/16'},
                                  'backend': {'driver': 'docker', 'subnet': '10.30.0.0/24'}},
                        services={'api': {'image': 'x', 'networks': ['backend'], 'ports': ['9000:80']},
                                  'job': {'image': 'x', 'networks': ['backend'], 'deploy': {'endpoint_mode': 'dnsrr'}},
                                  'web': {'image': 'x', 'networks': ['appnet', 'backend'], 'ports': ['8080:80']}})
    assert validate(swarm, base_dir=str(REPO)) == []
    plan = plan_of(swarm)
    assert plan['networks'] == {'backend': {'driver': 'overlay', 'subnet': '10.30.0.0/24', 'encrypted': True,
                                            'attachable': False}}
    assert 'backend' not in plan['overlays']
    # api: Docker's ingress publishes 9000; job: dnsrr, no port; web: the mesh publishes 8080.
    assert plan['docker_ingress'] == ['api']
    assert plan['services']['web']['overlays'] == ['appnet'] and plan['services']['web']['networks'] == [
        'appnet', 'backend']


def test_docker_overlay_keys_of_the_other_driver_are_refused():
    swarm = description(overlays={'appnet': {'vni': 300, 'subnet': '10.20.0.0/16'},
                                  'backend': {'driver': 'docker', 'vni': 9},
                                  'bad': {'subnet': '10.40.0.0/16', 'encrypted': False}})
    assert validate(swarm) == [
        'swarm.overlays.backend.vni: is only for driver fabric (the default); this overlay\'s driver is docker',
        'swarm.overlays.bad.vni: is required (driver fabric, the default)']
