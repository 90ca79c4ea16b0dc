"""The status summary that ends ./swarmfabric lab (swarmfabric.status.brief), as exact text."""

import copy

import pytest
from swarmfabric.plan import build_plan, plain
from swarmfabric.status import brief, report
from test_status import ADDR, HOSTS, SWARM, converged

REFUSED = 'Status code was -1 and not [200]: Request failed: <urlopen error [Errno 111] Connection refused>'


@pytest.fixture(scope='module')
def status():
    plan = plain(build_plan(SWARM, {h: {'swarm_advertise_addr': a} for h, a in ADDR.items()}, []))
    return report(plan, converged(plan), HOSTS)


def answers(hosts, content='web.1 on c0ffee12\n'):
    """What status.yml's uri task registers on each host: one result per published port."""
    return {h: [{'item': 8080, 'url': f'http://{ADDR[h]}:8080/', 'status': 200, 'content': content},
                {'item': 8081, 'status': -1, 'msg': REFUSED}] for h in hosts}


def test_a_converged_swarm_is_summed_up_in_a_few_lines(status):
    assert brief(status, answers(HOSTS[:2])) == [
        'swarm sfcp: 5 nodes, 1 overlay, 4 services; no drift',
        'nodes:',
        '  sf-cp-node1  manager  active  ready  172.31.78.11',
        '  sf-cp-node2  manager  active  ready  172.31.78.12',
        '  sf-cp-node3  manager  drain   ready  172.31.78.13',
        '  sf-cp-node4  worker   active  ready  172.31.78.14 disk=ssd zone=a',
        '  sf-cp-node5  worker   active  ready  172.31.78.15 zone=b',
        'overlays:',
        '  appnet  10.20.0.0/16  vni 300  not encrypted  5 members, each with its 4 peers',
        'services:',
        '  app   2/2 running        VIP 10.20.253.34   port 8090  on sf-cp-node1, sf-cp-node2',
        '  echo  global, 5 running  VIP 10.0.0.5       port 8081  on 5 nodes',
        '  kv    1/1 running        VIP 10.0.0.5       no port    on sf-cp-node1',
        '  web   3/3 running        VIP 10.20.253.164  port 8080  on sf-cp-node1, sf-cp-node2, sf-cp-node3',
        'what each node answers, asked from the controller:',
        '  sf-cp-node1  http://172.31.78.11:8080/ -> HTTP 200 "web.1 on c0ffee12"',
        '  sf-cp-node1  http://172.31.78.11:8081/ -> no answer (Connection refused)',
        '  sf-cp-node2  http://172.31.78.12:8080/ -> HTTP 200 "web.1 on c0ffee12"',
        '  sf-cp-node2  http://172.31.78.12:8081/ -> no answer (Connection refused)',
    ]


def test_drift_a_missing_peer_a_lost_node_and_a_stopped_task_show(status):
    status = copy.deepcopy(status)
    status['drift'] = [{'host': 'sf-cp-node2', 'object': 'overlay appnet on sf-cp-node2', 'field': 'fdb',
                        'desired': {'missing': ['172.31.78.11']}, 'actual': {'extra': []}}] * 2
    status['actual']['hosts']['sf-cp-node2']['overlays']['appnet']['peers'].pop()
    del status['actual']['hosts']['sf-cp-node5']
    del status['actual']['nodes']['sf-cp-node5']
    status['actual']['services']['web']['tasks'] = {'sf-cp-node1': 2}
    del status['actual']['services']['echo']
    status['desired']['overlays']['appnet']['encrypted'] = True
    status['actual']['hosts']['sf-cp-node1']['overlays']['appnet']['generation'] = 3
    long = 'x' * 50
    lines = brief(status, {'sf-cp-node1': [{'item': 8080, 'status': 503, 'content': long}],
                           'sf-cp-node5': [{'item': 8080, 'status': -1, 'msg': 'timed out'}]})
    assert lines == [
        'swarm sfcp: 5 nodes, 1 overlay, 4 services; 2 drifts (listed above)',
        'nodes:',
        '  sf-cp-node1  manager  active  ready         172.31.78.11',
        '  sf-cp-node2  manager  active  ready         172.31.78.12',
        '  sf-cp-node3  manager  drain   ready         172.31.78.13',
        '  sf-cp-node4  worker   active  ready         172.31.78.14 disk=ssd zone=a',
        '  sf-cp-node5  worker   active  not a member',
        'overlays:',
        '  appnet  10.20.0.0/16  vni 300  encrypted (ESP, generation 3)  peers sf-cp-node1 4/4, sf-cp-node2 3/4, '
        'sf-cp-node3 4/4, sf-cp-node4 4/4, sf-cp-node5 no device',
        'services:',
        '  app   2/2 running  VIP 10.20.253.34   port 8090  on sf-cp-node1, sf-cp-node2',
        '  echo  absent',
        '  kv    1/1 running  VIP 10.0.0.5       no port    on sf-cp-node1',
        '  web   2/3 running  VIP 10.20.253.164  port 8080  on sf-cp-node1 x2',
        'what each node answers, asked from the controller:',
        f'  sf-cp-node1  http://172.31.78.11:8080/ -> HTTP 503 "{"x" * 40}..."',
        '  sf-cp-node5  http://sf-cp-node5:8080/ -> no answer (timed out)',
    ]


def test_a_swarm_without_ports_says_so(status):
    assert brief(status, {})[-1] == 'published ports: none'
    assert brief(status, {'sf-cp-node1': []})[-1] == 'published ports: none'
