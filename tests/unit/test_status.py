"""The status report's pure parts: the drift comparison and the DOT picture (swarmfabric.status)."""

import copy
import json
import os
import shutil
import subprocess

import pytest
import yaml
from conftest import REPO
from swarmfabric.plan import build_plan, plain
from swarmfabric.status import _q, compare, desired_state, dot, fdb_peers, gather, parse_read, report, sa_ages, summary

SWARM = yaml.safe_load((REPO / 'molecule/default/group_vars/all/swarm.yml').read_text())['swarm']
HOSTS = [f'sf-cp-node{i}' for i in range(1, 6)]
ADDR = {h: f'172.31.78.1{i}' for i, h in enumerate(HOSTS, 1)}


@pytest.fixture(scope='module')
def plan():
    return plain(build_plan(SWARM, {h: {'swarm_advertise_addr': a} for h, a in ADDR.items()}, []))


def converged(plan):
    """What status.yml reads from a cluster that is exactly as described."""
    nodes = []
    for host in HOSTS:
        want = plan['nodes'][host]
        labels = dict(want['labels'], **{'io.swarmfabric.host': host, 'io.swarmfabric.backends': '{}'})
        nodes.append({'ID': f'id-{host}', 'Description': {'Hostname': f'c-{host}'},
                      'Spec': {'Role': want['role'], 'Availability': want['availability'], 'Labels': labels},
                      'Status': {'State': 'ready', 'Addr': ADDR[host]}})
    services, tasks = [], []
    for name, s in plan['services'].items():
        mode = {'Replicated': {'Replicas': s['replicas']}} if s['mode'] == 'replicated' else {'Global': {}}
        services.append({'ID': f'sid-{name}', 'Spec': {
            'Name': name, 'Mode': mode,
            'TaskTemplate': {'ContainerSpec': {'Image': s['image'] + '@sha256:0123'}}},
            'Endpoint': {'Ports': [] if s['overlays'] else [{'PublishedPort': p['published']} for p in s['publish']],
                         'VirtualIPs': [{'Addr': '10.0.0.5/24'}]}})  # Docker's ingress VIP, not the mesh's
        placed = HOSTS[:s['replicas']] if s['mode'] == 'replicated' else HOSTS
        tasks += [{'ServiceID': f'sid-{name}', 'NodeID': f'id-{h}', 'Status': {'State': 'running'}} for h in placed]
    hosts = {}
    for host in HOSTS:
        links, fdb = [], {}
        for o in plan['overlays'].values():
            links.append({'ifname': o['device'], 'linkinfo': {'info_kind': 'vxlan', 'info_data': {'id': o['vni']}}})
            fdb[o['device']] = [{'mac': '00:00:00:00:00:00', 'dst': ADDR[p]} for p in HOSTS if p != host]
            fdb[o['device']].append({'mac': '02:42:0a:14:00:05', 'dst': ADDR[host]})  # a learned entry
        hosts[host] = {'links': links, 'fdb': fdb, 'sas': {}, 'mesh': True}
    return {'nodes': nodes, 'services': services, 'tasks': tasks, 'hosts': hosts}


def test_a_converged_cluster_has_no_drift(plan):
    status = report(plan, converged(plan), HOSTS)
    assert status['drift'] == []
    assert status['lines'] == [] and status['drifted_hosts'] == [] and status['drifted_objects'] == []
    assert status['actual']['nodes']['sf-cp-node4']['labels'] == {'zone': 'a', 'disk': 'ssd'}  # ours left out
    assert status['actual']['services']['web']['image'] == 'swarmfabric/task:1'  # digest left out


def test_a_deleted_fdb_entry_and_a_changed_label_are_named(plan):
    actual = converged(plan)
    fdb = actual['hosts']['sf-cp-node2']['fdb']['sf-appnet']
    fdb.remove({'mac': '00:00:00:00:00:00', 'dst': ADDR['sf-cp-node1']})
    actual['nodes'][3]['Spec']['Labels']['zone'] = 'c'
    status = report(plan, actual, HOSTS)
    assert status['drift'] == [
        {'host': 'sf-cp-node4', 'object': 'node sf-cp-node4', 'field': 'labels.zone', 'desired': 'a', 'actual': 'c'},
        {'host': 'sf-cp-node2', 'object': 'overlay appnet on sf-cp-node2', 'field': 'fdb',
         'desired': {'missing': ['172.31.78.11']}, 'actual': {'extra': []}},
    ]
    assert status['drifted_hosts'] == ['sf-cp-node2', 'sf-cp-node4']
    assert status['lines'] == [
        'node sf-cp-node4 labels.zone: desired a, actual c',
        'overlay appnet on sf-cp-node2 fdb: desired missing [172.31.78.11], actual extra []',
    ]


@pytest.mark.parametrize('mutate, expected', [
    (lambda a: a['nodes'][2]['Spec'].update(Availability='active'),
     ('node sf-cp-node3', 'availability', 'drain', 'active')),
    (lambda a: a['nodes'][3]['Spec'].update(Role='manager'), ('node sf-cp-node4', 'role', 'worker', 'manager')),
    (lambda a: a['nodes'][4]['Status'].update(State='down'), ('node sf-cp-node5', 'state', 'ready', 'down')),
    (lambda a: a['nodes'][4]['Spec']['Labels'].pop('zone'), ('node sf-cp-node5', 'labels.zone', 'b', None)),
    (lambda a: a['nodes'].pop(4), ('node sf-cp-node5', 'member', True, False)),
    (lambda a: a['nodes'].append({'ID': 'x', 'Description': {'Hostname': 'stray'}, 'Spec': {}, 'Status': {}}),
     ('node stray', 'member', False, True)),
    (lambda a: a['services'][0]['Spec']['Mode']['Replicated'].update(Replicas=4), ('service web', 'replicas', 3, 4)),
    (lambda a: a['tasks'].pop(0), ('service web', 'running', 3, 2)),
    (lambda a: a['services'].pop(0), ('service web', 'exists', True, False)),
    (lambda a: a['services'][0]['Spec']['TaskTemplate']['ContainerSpec'].update(Image='swarmfabric/task:2'),
     ('service web', 'image', 'swarmfabric/task:1', 'swarmfabric/task:2')),
    (lambda a: a['hosts']['sf-cp-node1'].update(links=[]),
     ('overlay appnet on sf-cp-node1', 'device', 'sf-appnet', None)),
    (lambda a: a['hosts']['sf-cp-node1']['links'][0]['linkinfo']['info_data'].update(id=301),
     ('overlay appnet on sf-cp-node1', 'vni', 300, 301)),
    (lambda a: a['hosts']['sf-cp-node3'].update(mesh=False), ('mesh on sf-cp-node3', 'table', True, False)),
    (lambda a: a['services'][1]['Endpoint'].update(Ports=[]), ('service echo', 'ports', [8081], [])),
    (lambda a: a['services'][0]['Endpoint'].update(Ports=[{'PublishedPort': 8080}]),
     ('service web', 'ports', [], [8080])),
])
def test_each_kind_of_drift_is_found_alone(plan, mutate, expected):
    actual = converged(plan)
    mutate(actual)
    drift = report(plan, actual, HOSTS)['drift']
    assert [(d['object'], d['field'], d['desired'], d['actual']) for d in drift] == [expected]


def test_an_extra_fdb_peer_is_drift(plan):
    actual = converged(plan)
    actual['hosts']['sf-cp-node1']['fdb']['sf-appnet'].append({'mac': '00:00:00:00:00:00', 'dst': '172.31.78.99'})
    (d,) = report(plan, actual, HOSTS)['drift']
    assert (d['field'], d['desired'], d['actual']) == ('fdb', {'missing': []}, {'extra': ['172.31.78.99']})


def test_an_unreachable_host_is_named_and_nothing_is_claimed_about_its_kernel(plan):
    actual = converged(plan)
    del actual['hosts']['sf-cp-node5']
    drift = report(plan, actual, HOSTS[:4])['drift']
    assert [(d['object'], d['field']) for d in drift] == [('overlay appnet on sf-cp-node5', 'reachable')]


def test_an_encrypted_overlay_needs_two_sas_per_peer(plan):
    encrypted = copy.deepcopy(plan)
    encrypted['overlays']['appnet']['encrypted'] = True
    actual = converged(encrypted)
    for host in HOSTS:
        actual['hosts'][host]['sas'] = {'appnet': [{'peer': ADDR[p], 'direction': d, 'epoch': 1}
                                                   for p in HOSTS if p != host for d in ('in', 'out')]}
    assert report(encrypted, actual, HOSTS)['drift'] == []
    actual['hosts']['sf-cp-node2']['sas']['appnet'].pop()
    drift = report(encrypted, actual, HOSTS)['drift']
    assert [(d['object'], d['field'], d['desired'], d['actual']) for d in drift] == [
        ('overlay appnet on sf-cp-node2', 'sas', 8, 7)]
    assert report(encrypted, actual, HOSTS)['actual']['hosts']['sf-cp-node2']['overlays']['appnet']['epochs'] == [1]


def test_sa_ages_and_generation_come_from_the_filtered_xfrm_lines(plan):
    assert sa_ages(['0x00100002 2026-12-02 00:10:11', '0x00200001 2026-12-01 23:10:11', 'garbage',
                    '0xzz 2026-12-02 00:00:00'], '2026-12-02 00:12:11') == {0x00100002: 120, 0x00200001: 3720}
    assert sa_ages(['0x1 2026-12-02 00:10:11'], '') == {}
    encrypted = copy.deepcopy(plan)
    encrypted['overlays']['appnet']['encrypted'] = True
    actual = converged(encrypted)
    for host in HOSTS:
        actual['hosts'][host]['sas'] = {'appnet': [
            {'peer': ADDR[p], 'direction': d, 'epoch': e, 'spi': 0x100000 * e + i, 'fingerprint': '3f09a1c2'}
            for i, p in enumerate(h for h in HOSTS if h != host) for d in ('in', 'out') for e in (1, 2)]}
    actual['hosts']['sf-cp-node1'].update(sa_added=['0x00100000 2026-12-02 00:00:00', '0x00200000 2026-12-02 00:10:00'],
                                          now='2026-12-02 00:10:30')
    status = report(encrypted, actual, HOSTS)
    assert status['drift'] == []
    have = status['actual']['hosts']['sf-cp-node1']['overlays']['appnet']
    assert (have['generation'], have['sa_age'], have['epochs']) == (2, 630, [1, 2])
    assert {sa['spi']: sa['age'] for sa in have['sa_list'] if sa['age'] is not None} == {0x100000: 630, 0x200000: 30}
    assert all(set(sa) == {'peer', 'direction', 'epoch', 'spi', 'age'} for sa in have['sa_list'])
    (row,) = [r for r in summary(status) if r.startswith('overlay appnet on sf-cp-node1')]
    assert '4 peers, 16 SAs, generation 2, oldest 630s' in row


def test_fdb_peers_are_the_flood_entries_only():
    assert fdb_peers([{'mac': '00:00:00:00:00:00', 'dst': '10.0.0.2'}, {'mac': '00:00:00:00:00:00', 'dst': '10.0.0.1'},
                      {'mac': 'aa:bb:cc:dd:ee:ff', 'dst': '10.0.0.3'}, {'mac': '00:00:00:00:00:00'}]) == [
        '10.0.0.1', '10.0.0.2']


def test_compare_lists_the_desired_peers_of_every_member(plan):
    desired = desired_state(plan)
    members = desired['overlays']['appnet']['members']
    assert members['sf-cp-node1']['peers'] == [ADDR[h] for h in HOSTS[1:]]
    assert compare(desired, {'nodes': {}, 'services': {}, 'hosts': {}}, set())[0]['field'] == 'member'


def test_the_picture_draws_roles_overlays_services_placement_and_drift(plan):
    actual = converged(plan)
    actual['hosts']['sf-cp-node2']['fdb']['sf-appnet'].remove({'mac': '00:00:00:00:00:00', 'dst': ADDR['sf-cp-node1']})
    text = dot(report(plan, actual, HOSTS))
    assert text.startswith('graph "swarm sfcp" {')
    assert '"cluster_managers"' in text and '"cluster_workers"' in text
    assert '"n:sf-cp-node1" [label="sf-cp-node1\\n172.31.78.11\\nactive", shape=box3d, color=black];' in text
    assert '"n:sf-cp-node4" [label="sf-cp-node4\\n172.31.78.14\\nactive", shape=box, color=black];' in text
    assert '"n:sf-cp-node1" -- "n:sf-cp-node2" [tooltip="appnet vni 300", style=dashed, color=red];' in text
    assert '"n:sf-cp-node1" -- "n:sf-cp-node3" [tooltip="appnet vni 300", style=dashed, color=steelblue];' in text
    assert ('"o:appnet" [label="overlay appnet\\nvni 300, plain\\n5 members, dashed links", shape=note, '
            'color=steelblue, fontcolor=steelblue];') in text
    vip = plan['services']['web']['vip']
    assert f'"s:web" [label="web\\nswarmfabric/task:1\\n3 replicas, VIP {vip}\\nports 8080", shape=ellipse' in text
    assert '"s:web" -- "n:sf-cp-node1" [label="", color=gray50];' in text
    assert '"s:echo" [label="echo\\nswarmfabric/task:1\\nglobal, no VIP\\nports 8081"' in text
    # every overlay pair, the tasks of web (3), echo (global: 5), kv (1) and app (2)
    assert text.count(' -- ') == 10 + 3 + 5 + 1 + 2


def test_labels_are_quoted_for_dot():
    assert _q('a"b', 'c\\d') == '"a\\"b\\nc\\\\d"'


@pytest.mark.skipif(shutil.which('dot') is None, reason='Graphviz (dot) is not installed')
def test_graphviz_renders_the_picture(plan, tmp_path):
    source = tmp_path / 'topology.dot'
    source.write_text(dot(report(plan, converged(plan), HOSTS)))
    svg = subprocess.run(['dot', '-Tsvg', str(source)], capture_output=True, text=True, check=True).stdout
    assert '<svg' in svg and 'node5' in svg and 'web' in svg


def test_the_table_has_a_row_per_object_with_its_drift(plan):
    actual = converged(plan)
    actual['nodes'][3]['Spec']['Labels']['zone'] = 'c'
    rows = summary(report(plan, actual, HOSTS))
    assert rows[0].split() == ['object', 'desired', 'actual', 'drift']
    assert len(rows) == 1 + 5 + 4 + 5  # the header, the nodes, the services (web, echo, kv, app), appnet on each host
    (node4,) = [r for r in rows if r.startswith('node sf-cp-node4')]
    assert node4.split() == ['node', 'sf-cp-node4', 'worker', 'active', 'zone', 'a,', 'disk', 'ssd',
                             'worker', 'active', 'ready', 'zone', 'c,', 'disk', 'ssd', 'labels.zone']
    (web,) = [r for r in rows if r.startswith('service web')]
    assert web.split()[-4:] == ['3', '(3', 'running)', '-']


def test_without_a_vip_or_a_published_port_no_mesh_is_expected(plan):
    bare = copy.deepcopy(plan)
    for service in bare['services'].values():
        service['vip'], service['publish'] = None, []
    actual = converged(bare)
    actual['hosts']['sf-cp-node1']['mesh'] = False
    assert report(bare, actual, HOSTS)['drift'] == []


def as_read(actual, reader='sf-cp-node1'):
    """converged()'s data as each host's script prints it (status.yml)."""
    reads = {}
    for host, seen in actual['hosts'].items():
        lines = ['@now 2026-12-02 00:10:30', '@links ' + json.dumps(seen['links'])]
        lines += [f'@fdb {dev} ' + json.dumps(entries) for dev, entries in seen['fdb'].items()]
        on = '1' if seen['mesh'] else '0'
        lines.append(f'@mesh nft={on} filter={on} nft_dnat=2 nft_backends=6 ipvs_services=0 ipvs_servers=0')
        lines.append('@answer port 8080 -> c-1234 (HTTP 200)')
        if host == reader:
            lines += ['@node ' + json.dumps(n) for n in actual['nodes']]
            lines += ['@service ' + json.dumps(s) for s in actual['services']]
            lines += ['@task ' + json.dumps(t) for t in actual['tasks']]
        reads[host] = '\n'.join(lines) + '\n'
    return reads


def test_the_hosts_reads_are_parsed_into_the_actual_state(plan):
    actual = converged(plan)
    gathered = gather(as_read(actual), {h: [] for h in HOSTS})
    assert gathered['nodes'] == actual['nodes'] and gathered['services'] == actual['services']
    assert gathered['tasks'] == actual['tasks']
    assert gathered['answers']['sf-cp-node3'] == ['port 8080 -> c-1234 (HTTP 200)']
    host = gathered['hosts']['sf-cp-node2']
    assert host['fdb'] == actual['hosts']['sf-cp-node2']['fdb'] and host['mesh'] is True
    assert host['mesh_detail'] == {'backend': 'nftables', 'rules': 2, 'backends': 6}
    status = report(plan, gathered, HOSTS)
    assert status['drift'] == [] and len(status['actual']['nodes']) == 5


def test_a_read_without_the_mesh_or_with_broken_json_is_named(plan):
    actual = converged(plan)
    reads = as_read(actual)
    reads['sf-cp-node4'] = reads['sf-cp-node4'].replace('@mesh nft=1 filter=1', '@mesh nft=0 filter=0')
    drift = report(plan, gather(reads, {}), HOSTS)['drift']
    assert [(d['object'], d['field']) for d in drift] == [('mesh on sf-cp-node4', 'table')]
    assert parse_read('h', '@mesh nft=0 filter=1 ipvs_services=3 ipvs_servers=9')['mesh_detail'] == {
        'backend': 'ipvs', 'rules': 3, 'backends': 9}
    with pytest.raises(ValueError, match='sf-cp-node2: its @fdb sf-appnet line is not JSON'):
        parse_read('sf-cp-node2', '@fdb sf-appnet [{"mac":')


def test_a_vip_entry_without_an_address_is_left_out(plan):
    actual = converged(plan)
    actual['services'][0]['Endpoint']['VirtualIPs'].append({'NetworkID': 'n-appnet'})  # seen on the lab
    assert report(plan, actual, HOSTS)['actual']['services']['web']['vips'] == ['10.0.0.5/24']


def test_sa_queries_are_keyed_by_overlay_and_skipped_items_left_out():
    results = [{'item': {'name': 'appnet'}, 'live_sas': [{'spi': 1}]}, {'skipped': True, 'item': {'name': 'x'}}]
    hosts = gather({'h': '@now 2026-12-02 00:00:00\n'}, {'h': results})['hosts']
    assert hosts['h']['sas'] == {'appnet': [{'spi': 1}]}


def status_script():
    play = yaml.safe_load((REPO / 'playbooks/status.yml').read_text().replace('!unsafe', ''))[1]
    return play['vars']['__sf_script']


KEY = '0x0102030405060708091011121314151617181920'
XFRM = f"""src 172.31.78.11 dst 172.31.78.12
\tproto esp spi 0x00100002(1048578) reqid 33(0x00000021) mode transport
\treplay-window 0 seq 0x00000000 flag  (0x00000000)
\taead rfc4106(gcm(aes)) {KEY} (160 bits) 128
\tanti-replay context: seq 0x0, oseq 0x0, bitmap 0x00000000
\tlifetime config:
\t  limit: soft (INF)(bytes), hard (INF)(bytes)
\t  expire add: soft 0(sec), hard 0(sec)
\tlifetime current:
\t  0(bytes), 0(packets)
\t  add 2026-12-02 00:10:11 use -
\tstats:
\t  replay-window 0 replay 0 failed 0
"""


@pytest.fixture
def fake_tools(tmp_path):
    """ip, bridge, nft, iptables, ipvsadm, curl and docker as scripts that print what the lab's would."""
    tools = {
        'ip': 'case "$*" in "-s xfrm state") printf "%s" "$XFRM";; *link*) echo \'[{"ifname":"sf-appnet"}]\';; esac',
        'bridge': 'echo \'[{"mac":"00:00:00:00:00:00","dst":"172.31.78.12"}]\'',
        'nft': 'printf "table ip swarmfabric_mesh {\\n tcp dport 8080 dnat ip to numgen inc mod 2'
               ' map { 0 : a . 80, 1 : b . 80 }\\n}\\n"',
        'iptables': 'exit 0', 'ipvsadm': 'exit 1',
        'curl': 'printf "c-5e1f\\n 200"',
        'docker': 'case "$1 $2" in "node ls") echo n1;; "node inspect") echo \'@node {"ID":"n1"}\';;'
                  ' "service ls") echo s1;; "service inspect") echo \'@service {"ID":"s1"}\';;'
                  ' "service ps") echo t1;; "inspect --type") echo \'@task {"ServiceID":"s1"}\';; esac',
    }
    for name, body in tools.items():
        path = tmp_path / name
        path.write_text('#!/bin/sh\n' + body + '\n')
        path.chmod(0o755)
    return tmp_path


@pytest.mark.parametrize('reader', ['0', '1'])
def test_the_read_script_prints_spi_ages_and_never_a_key(fake_tools, reader):
    env = dict(os.environ, PATH=f'{fake_tools}:{os.environ["PATH"]}', XFRM=XFRM, SF_DEVICES='sf-appnet',
               SF_PORTS='8080', SF_ADDR='172.31.78.11', SF_READER=reader)
    out = subprocess.run(['sh', '-c', status_script()], env=env, capture_output=True, text=True, check=True).stdout
    assert KEY[2:12] not in out and 'aead' not in out
    seen = parse_read('sf-cp-node1', out)
    assert seen['sa_added'] == ['0x00100002 2026-12-02 00:10:11']
    assert sa_ages(seen['sa_added'], '2026-12-02 00:12:11') == {0x00100002: 120}
    assert seen['fdb'] == {'sf-appnet': [{'mac': '00:00:00:00:00:00', 'dst': '172.31.78.12'}]}
    assert seen['mesh'] is True and seen['mesh_detail'] == {'backend': 'nftables', 'rules': 1, 'backends': 2}
    assert seen['answers'] == ['port 8080 -> c-5e1f (HTTP 200)']
    assert (seen['nodes'], seen['services'], seen['tasks']) == (
        ([{'ID': 'n1'}], [{'ID': 's1'}], [{'ServiceID': 's1'}]) if reader == '1' else ([], [], []))
