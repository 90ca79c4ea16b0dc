"""The plan: the contract of docs/architecture.md, stable allocation, no overlaps, speed."""

import copy
import ipaddress
import itertools
import time

import pytest
import yaml
from conftest import REPO
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from swarmfabric.plan import FWMARK_BASE, PlanError, build_plan, host_view, stable_hash, underlay_address

LAB = yaml.safe_load((REPO / 'inventory/lab/group_vars/all/swarm.yml').read_text())['swarm']
NOW = 1_800_000_000
LAB_VARS = {f'node{i}': {'swarm_advertise_addr': f'172.30.0.1{i}'} for i in range(1, 6)}


def describe(managers, workers=(), subnet='10.0.0.0/8', node_prefix=24, services=None, **extra):
    return {
        'name': 'prop',
        'managers': list(managers),
        'workers': list(workers),
        'overlays': {'appnet': {'vni': 300, 'subnet': subnet, 'node_prefix': node_prefix, 'encrypted': False}},
        'services': services or {},
        **extra,
    }


def underlays(hosts):
    return {h: {'swarm_advertise_addr': f'192.0.2.{i % 250 + 1}'} for i, h in enumerate(sorted(hosts))}


# ---------------------------------------------------------------- the contract


def test_lab_plan_follows_the_contract():
    plan = build_plan(LAB, LAB_VARS)
    assert plan['name'] == 'lab'
    assert plan['first_manager'] == 'node1'
    assert plan['managers'] == ['node1', 'node2', 'node3']
    assert plan['workers'] == ['node4', 'node5']
    assert (plan['prune_services'], plan['autolock']) == (False, False)
    assert plan['nodes']['node3']['availability'] == 'drain'
    assert plan['nodes']['node4'] == {
        'role': 'worker', 'labels': {'zone': 'a', 'disk': 'ssd'}, 'availability': 'active',
        'advertise_addr': '172.30.0.14', 'slot': plan['overlays']['appnet']['members']['node4']['slot'],
    }
    appnet = plan['overlays']['appnet']
    assert {k: v for k, v in appnet.items() if k != 'members'} == {
        'vni': 300, 'port': 4789, 'encrypted': False, 'mtu': 'auto', 'subnet': '10.20.0.0/16',
        'prefixlen': 16, 'node_prefix': 24, 'device': 'sf-appnet', 'gateway': '10.20.0.1',
        'vip_prefix': 22, 'vip_range': '10.20.252.0/22',
    }
    assert list(appnet['members']) == sorted(appnet['members'])
    for host, member in appnet['members'].items():
        slot = member['slot']
        assert 1 <= slot <= 251
        assert member == {'underlay': LAB_VARS[host]['swarm_advertise_addr'], 'slot': slot,
                          'address': f'10.20.{slot}.1', 'range': f'10.20.{slot}.0/24'}
    web = plan['services']['web']
    assert web['mode'] == 'replicated' and web['replicas'] == 3 and web['endpoint_mode'] == 'vip'
    assert web['publish'] == [{'published': 8080, 'target': 80, 'protocol': 'tcp', 'mode': 'ingress',
                               'traffic_policy': 'cluster'}]
    assert web['backends'] == [] and web['overlays'] == web['networks'] == ['appnet']
    # The service itself, as written (Compose's shape), for the services role; no v1 fields.
    assert web['compose'] == LAB['services']['web'] and web['stack'] is None and web['short_name'] is None
    assert sorted(web) == ['backends', 'compose', 'endpoint_mode', 'fwmark', 'hosts', 'image', 'mode', 'networks',
                           'overlays', 'publish', 'replicas', 'short_name', 'stack', 'vip', 'volumes']
    assert ipaddress.IPv4Address(web['vip']) in ipaddress.IPv4Network('10.20.252.0/22')
    assert web['fwmark'] & 0xFFFF0000 == FWMARK_BASE
    assert plan['mesh'] == {'backend': 'auto', 'scheduler': 'rr', 'health_port': 10256,
                            'ipvs_timeouts': {'tcp': 7500, 'tcpfin': 120, 'udp': 300},
                            'conntrack_timeouts': {'tcp_established': 86400}}


def test_host_view_follows_the_contract():
    plan = build_plan(LAB, LAB_VARS)
    view = host_view(plan, 'node2')
    slot = plan['nodes']['node2']['slot']
    assert view['role'] == 'manager' and view['slot'] == slot and view['advertise_addr'] == '172.30.0.12'
    (appnet,) = view['overlays']
    assert appnet == {
        'name': 'appnet', 'vni': 300, 'port': 4789, 'encrypted': False, 'mtu': 'auto', 'device': 'sf-appnet',
        'subnet': '10.20.0.0/16', 'prefixlen': 16, 'node_prefix': 24, 'gateway': '10.20.0.1',
        'local': '172.30.0.12', 'address': f'10.20.{slot}.1', 'range': f'10.20.{slot}.0/24',
        'peers': [{'host': f'node{i}', 'underlay': f'172.30.0.1{i}'} for i in (1, 3, 4, 5)],
    }


def test_host_view_of_a_stranger_is_an_error():
    with pytest.raises(PlanError, match='node9: is not a node of swarm lab'):
        host_view(build_plan(LAB, LAB_VARS), 'node9')


def test_explicit_vip_and_defaults():
    services = {
        'api': {'image': 'x', 'networks': ['appnet'], 'x-swarmfabric': {'vip': '10.255.255.7'}},
        'db': {'image': 'x', 'networks': ['appnet'], 'deploy': {'endpoint_mode': 'dnsrr'}},
        'ext': {'x-swarmfabric': {'backends': ['192.0.2.1:80']}},
        'agent': {'image': 'x', 'deploy': {'mode': 'global'}},
    }
    plan = build_plan(describe(['a'], services=services), {})
    assert plan['services']['api']['vip'] == '10.255.255.7'
    assert plan['services']['api']['compose'] == {'image': 'x', 'networks': ['appnet']}  # without x-swarmfabric
    assert plan['services']['db']['vip'] is None
    assert plan['services']['ext']['vip'] is None
    assert plan['services']['ext']['mode'] is None and plan['services']['ext']['replicas'] is None
    assert plan['services']['agent']['replicas'] is None
    assert plan['nodes']['a']['advertise_addr'] is None


def test_pinned_slot_is_used_on_every_overlay():
    swarm = describe(['a'], nodes={'a': {'slot': 9}})
    swarm['overlays']['dbnet'] = {'vni': 301, 'subnet': '172.16.0.0/20', 'node_prefix': 26}
    plan = build_plan(swarm, {})
    assert plan['nodes']['a']['slot'] == 9
    assert plan['overlays']['appnet']['members']['a']['range'] == '10.0.9.0/24'
    assert plan['overlays']['dbnet']['members']['a']['range'] == '172.16.2.64/26'


def test_no_overlays_means_no_slot():
    plan = build_plan({'name': 'x', 'managers': ['a']}, {})
    assert plan['nodes']['a']['slot'] is None and plan['overlays'] == {}


# ---------------------------------------------------------------- collisions


def test_hashed_slots_that_meet_take_the_next_free_one_and_two_pins_on_one_slot_are_an_error():
    # On a /22 cut into /24s (the VIP range is its last /24) only slots 1 and 2 are usable;
    # "a" and "b" both hash to 1: "b" (later in name order) takes 2.
    plan = build_plan(describe(['a', 'b', 'd'][:2], subnet='10.0.0.0/22'), {})
    assert {h: m['slot'] for h, m in plan['overlays']['appnet']['members'].items()} == {'a': 1, 'b': 2}
    with pytest.raises(PlanError) as caught:
        build_plan(describe(['a', 'b', 'd'], subnet='10.0.0.0/22'), {})
    assert caught.value.errors == [
        'swarm.overlays.appnet.subnet: 10.0.0.0/22 holds 2 node ranges of /24 (below the gateway and the VIP '
        'range 10.0.3.0/24); 3 nodes need 3: use a larger subnet or a longer node_prefix'
    ]
    with pytest.raises(PlanError) as caught:
        build_plan(describe(['a', 'b'], subnet='10.0.0.0/22', nodes={'a': {'slot': 2}, 'b': {'slot': 2}}), {})
    assert caught.value.errors == [
        'swarm.nodes.b.slot: 2 on overlay appnet is also pinned for a; pin one of them to another slot'
    ]


def test_an_explicit_vip_wins_over_a_hashed_one_but_not_over_a_kept_one():
    services = {'api': {'image': 'x', 'networks': ['appnet']}}
    first = build_plan(describe(['a'], services=services), {}, now=NOW)
    vip = first['services']['api']['vip']
    services['web'] = {'image': 'x', 'networks': ['appnet'], 'x-swarmfabric': {'vip': vip}}
    # Without a record (validation, a first run) api simply takes the next free address.
    moved = build_plan(describe(['a'], services=services), {}, now=NOW)['services']
    assert moved['web']['vip'] == vip and moved['api']['vip'] != vip
    # With the record api's VIP is live: it never moves, the pin is refused.
    with pytest.raises(PlanError, match=f'swarm.services.web.x-swarmfabric.vip: {vip} on overlay appnet is the VIP '
                                        r'of service api \(its allocation, kept in the swarm, never moves\)'):
        build_plan(describe(['a'], services=services), {}, record=first['allocations'], now=NOW)


def test_fwmark_collision_takes_the_next_free_mark():
    # svc-375 and svc-438 hash to the same 16 bits: the later name moves on.
    services = {name: {'image': 'i'} for name in ('svc-375', 'svc-438')}
    plan = build_plan(describe(['m1'], services=services), underlays(['m1']))
    first, second = plan['services']['svc-375']['fwmark'], plan['services']['svc-438']['fwmark']
    assert first & 0xFFFF == stable_hash('svc-375') & 0xFFFF
    assert second == FWMARK_BASE | ((first + 1) & 0xFFFF)


def test_a_thousand_services_get_distinct_marks():
    services = {f'svc-{i}': {'image': 'i'} for i in range(1000)}
    plan = build_plan(describe(['m1'], services=services), underlays(['m1']))
    assert len({s['fwmark'] for s in plan['services'].values()}) == 1000


# ---------------------------------------------------------------- underlay


@pytest.mark.parametrize(('host_vars', 'expected'), [
    ({'swarm_advertise_addr': '10.9.9.9', 'ansible_facts': {'eth1': {'ipv4': {'address': '1.1.1.1'}}}}, '10.9.9.9'),
    ({'ansible_facts': {'eth1': {'ipv4': {'address': '1.1.1.1'}}, 'default_ipv4': {'address': '2.2.2.2'}}},
     '1.1.1.1'),
    ({'ansible_facts': {'eth0': {'ipv4': {'address': '1.1.1.1'}}, 'default_ipv4': {'address': '2.2.2.2'}}},
     '2.2.2.2'),
    ({'ansible_facts': {'eth1': {}}}, None),
    ({}, None),
])
def test_underlay_address_priority(host_vars, expected):
    assert underlay_address(host_vars, 'eth1') == expected


def test_underlay_interface_with_dash_uses_the_fact_spelling():
    assert underlay_address({'ansible_facts': {'br_lan': {'ipv4': {'address': '1.2.3.4'}}}}, 'br-lan') == '1.2.3.4'


# ---------------------------------------------------------------- properties

HOSTNAMES = st.text('abcdefghijklmnopqrstuvwxyz0123456789-', min_size=1, max_size=12)
SERVICE_NAMES = st.from_regex(r'[a-z][a-z0-9-]{0,10}', fullmatch=True)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


def plan_or_reject(swarm, hostvars):
    try:
        return build_plan(swarm, hostvars)
    except PlanError:
        assume(False)  # a hash collision: the plan refuses, which is tested above
        raise


@PROPERTY
@given(hosts=st.lists(HOSTNAMES, min_size=2, max_size=30, unique=True),
       services=st.lists(SERVICE_NAMES, min_size=1, max_size=8, unique=True),
       data=st.data())
def test_adding_a_node_changes_nothing_else_but_peers(hosts, services, data):
    extra = data.draw(st.sampled_from(hosts[1:]))
    rest = [h for h in hosts if h != extra]
    svc = {name: {'image': 'x', 'networks': ['appnet']} for name in services}
    hostvars = underlays(hosts)
    small = plan_or_reject(describe(rest[:1], rest[1:], services=svc), hostvars)
    big = plan_or_reject(describe(rest[:1], [*rest[1:], extra], services=svc), hostvars)
    assert small['services'] == big['services']
    for host in rest:
        assert small['nodes'][host] == big['nodes'][host]
        assert small['overlays']['appnet']['members'][host] == big['overlays']['appnet']['members'][host]
        before, after = host_view(small, host), host_view(big, host)
        peers_before = before['overlays'][0].pop('peers')
        peers_after = after['overlays'][0].pop('peers')
        assert before == after
        assert [p for p in peers_after if p['host'] != extra] == peers_before


@PROPERTY
@given(hosts=st.lists(HOSTNAMES, min_size=1, max_size=40, unique=True),
       services=st.lists(SERVICE_NAMES, max_size=10, unique=True),
       prefixes=st.sampled_from([(8, 24), (16, 24), (16, 28), (20, 26), (12, 30)]))
def test_no_overlap_of_ranges_addresses_and_vips(hosts, services, prefixes):
    prefixlen, node_prefix = prefixes
    subnet = str(ipaddress.IPv4Network(('10.0.0.0', prefixlen)))
    svc = {name: {'image': 'x', 'networks': ['appnet']} for name in services}
    plan = plan_or_reject(describe(hosts[:1], hosts[1:], subnet, node_prefix, services=svc), underlays(hosts))
    appnet = plan['overlays']['appnet']
    network = ipaddress.IPv4Network(subnet)
    gateway = ipaddress.IPv4Address(appnet['gateway'])
    vip_range = ipaddress.IPv4Network(appnet['vip_range'])
    assert gateway == network.network_address + 1 and vip_range.broadcast_address == network.broadcast_address
    ranges = sorted(ipaddress.IPv4Network(m['range']) for m in appnet['members'].values())
    assert len(ranges) == len(hosts)
    for member in appnet['members'].values():
        node_range = ipaddress.IPv4Network(member['range'])
        assert node_range.subnet_of(network) and node_range.prefixlen == node_prefix
        assert ipaddress.IPv4Address(member['address']) == node_range.network_address + 1
        assert gateway not in node_range and not node_range.overlaps(vip_range)
    for low, high in itertools.pairwise(ranges):
        assert low.broadcast_address < high.network_address
    vips = [ipaddress.IPv4Address(s['vip']) for s in plan['services'].values()]
    assert len(set(vips)) == len(vips)
    assert all(v in vip_range and v not in (vip_range.network_address, vip_range.broadcast_address) for v in vips)
    marks = [s['fwmark'] for s in plan['services'].values()]
    assert len(set(marks)) == len(marks) and all(m & 0xFFFF0000 == FWMARK_BASE for m in marks)


@PROPERTY
@given(hosts=st.lists(HOSTNAMES, min_size=3, max_size=20, unique=True), seed=st.randoms())
def test_plan_is_deterministic_and_pure(hosts, seed):
    swarm = describe(hosts[:1], hosts[1:], services={'web': {'image': 'x', 'networks': ['appnet']}})
    hostvars = underlays(hosts)
    frozen = copy.deepcopy(swarm)
    plan = plan_or_reject(swarm, hostvars)
    assert swarm == frozen
    assert build_plan(copy.deepcopy(swarm), copy.deepcopy(hostvars)) == plan
    shuffled = hosts[1:]
    seed.shuffle(shuffled)
    again = build_plan(describe(hosts[:1], shuffled, services=swarm['services']), hostvars)
    assert again['overlays'] == plan['overlays'] and again['nodes'] == plan['nodes']


# ---------------------------------------------------------------- speed


def test_a_thousand_nodes_plan_fast():
    hosts = [f'node{i:04d}' for i in range(1000)]
    # Pinned slots: a thousand hashed names would collide somewhere in 65534 slots.
    swarm = describe(hosts[:3], hosts[3:], nodes={h: {'slot': i + 1} for i, h in enumerate(hosts)},
                     services={f'svc{i}': {'image': 'x', 'networks': ['appnet']} for i in range(5)})
    start = time.perf_counter()
    plan = build_plan(swarm, underlays(hosts))
    views = [host_view(plan, host) for host in hosts]
    elapsed = time.perf_counter() - start
    assert len(views[0]['overlays'][0]['peers']) == 999
    assert 'members' not in views[0]['overlays'][0] and 'services' not in views[0]
    assert elapsed < 10, elapsed


def test_services_resolve_the_vips_of_services_sharing_an_overlay():
    services = {
        'web': {'image': 'i', 'networks': ['appnet']},
        'api': {'image': 'i', 'networks': ['appnet'], 'x-swarmfabric': {'vip': '10.255.255.7'}},
        'db': {'image': 'i', 'networks': ['appnet'], 'deploy': {'endpoint_mode': 'dnsrr'}},
        'lone': {'image': 'i'},
    }
    plan = build_plan(describe(['m1'], services=services), underlays(['m1']))
    web_vip = plan['services']['web']['vip']
    expected = ['api:10.255.255.7', f'web:{web_vip}']
    assert plan['services']['web']['hosts'] == expected
    assert plan['services']['db']['hosts'] == expected  # dnsrr: no VIP of its own, but resolves the others
    assert plan['services']['lone']['hosts'] == []
