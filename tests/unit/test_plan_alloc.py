"""The plan with the allocation record kept in the swarm (issue 13): what the record holds
never moves, through any sequence of adds and removes with the record written back and read
again as JSON (as swarm_allocations stores it); gone ones are held, then released; the VIP
range is sized on its own (vip_prefix); 250 nodes and 1,000 services plan with nothing pinned."""

import ipaddress
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from swarmfabric import alloc
from swarmfabric.description import validate
from swarmfabric.plan import FWMARK_BASE, PlanError, build_plan

NOW = 1_800_000_000
HOUR = 3600


def describe(hosts, services=(), subnet='10.20.0.0/20', node_prefix=24, vip_prefix=28, hold='1h', **extra):
    overlay = {'vni': 300, 'subnet': subnet, 'node_prefix': node_prefix, 'encrypted': False}
    if vip_prefix is not None:
        overlay['vip_prefix'] = vip_prefix
    return {'name': 'prop', 'managers': list(hosts[:1]), 'workers': list(hosts[1:]),
            'overlays': {'appnet': overlay}, 'allocation': {'hold': hold},
            'services': {name: {'image': 'x', 'networks': ['appnet']} for name in services}, **extra}


def addresses(hosts):
    return {h: {'swarm_advertise_addr': f'192.0.2.{i + 1}'} for i, h in enumerate(sorted(hosts))}


def stored(plan):
    """The record as the swarm gives it back: canonical JSON, decoded."""
    return json.loads(json.dumps(plan['allocations'], sort_keys=True))


def allocated(plan):
    """Every allocation in use: (pool, name) -> value."""
    out = {}
    for host, member in plan['overlays']['appnet']['members'].items():
        out['slot', host] = member['slot']
    for name, service in plan['services'].items():
        out['vip', name] = service['vip']
        out['mark', name] = service['fwmark']
    return out


def test_the_record_round_trips_and_a_second_plan_from_it_is_the_same():
    hosts, services = ['m1', 'w1', 'w2'], ['web', 'api']
    first = build_plan(describe(hosts, services), addresses(hosts), now=NOW)
    record = stored(first)
    assert record['version'] == alloc.RECORD_VERSION and record['swarm'] == 'prop'
    appnet = record['overlays']['appnet']
    assert (appnet['subnet'], appnet['node_prefix'], appnet['vip_range']) == ('10.20.0.0/20', 24, '10.20.15.240/28')
    assert appnet['slots'] == {h: {'value': first['overlays']['appnet']['members'][h]['slot']} for h in hosts}
    assert appnet['vips'] == {s: {'value': first['services'][s]['vip']} for s in services}
    assert record['fwmarks'] == {s: {'value': first['services'][s]['fwmark']} for s in services}
    again = build_plan(describe(hosts, services), addresses(hosts), record=record, now=NOW + 10)
    assert again == first


def test_a_kept_allocation_wins_over_a_newcomer_that_hashes_onto_it():
    # On 14 slots "a" and "e" both hash to slot 5: whoever is in the record first keeps it.
    for first, second in (('a', 'e'), ('e', 'a')):
        plan = build_plan(describe(['m', first]), addresses(['m', first]), now=NOW)
        assert plan['overlays']['appnet']['members'][first]['slot'] == 5
        both = build_plan(describe(['m', first, second]), addresses(['m', 'a', 'e']), record=stored(plan), now=NOW)
        members = both['overlays']['appnet']['members']
        assert members[first]['slot'] == 5 and members[second]['slot'] == 6


def test_a_gone_node_and_service_are_held_then_released_after_the_hold():
    hosts = ['m1', 'w1', 'w2']
    full = build_plan(describe(hosts, ['web', 'api']), addresses(hosts), now=NOW)
    slot, vip, mark = (full['overlays']['appnet']['members']['w2']['slot'], full['services']['api']['vip'],
                       full['services']['api']['fwmark'])
    gone = build_plan(describe(hosts[:2], ['web']), addresses(hosts), record=stored(full), now=NOW + 60)
    record = stored(gone)
    held = alloc.timestamp(NOW + 60)
    assert record['overlays']['appnet']['slots']['w2'] == {'value': slot, 'released': held}
    assert record['overlays']['appnet']['vips']['api'] == {'value': vip, 'released': held}
    assert record['fwmarks']['api'] == {'value': mark, 'released': held}
    # Within the hold, a later plan keeps them held as they were (the record does not change).
    later = build_plan(describe(hosts[:2], ['web']), addresses(hosts), record=record, now=NOW + 60 + HOUR - 1)
    assert stored(later) == record
    # A quick re-add gets them back.
    back = build_plan(describe(hosts, ['web', 'api']), addresses(hosts), record=record, now=NOW + 120)
    assert back['overlays']['appnet']['members']['w2']['slot'] == slot
    assert (back['services']['api']['vip'], back['services']['api']['fwmark']) == (vip, mark)
    assert stored(back) == stored(full)
    # After the hold they are released.
    after = build_plan(describe(hosts[:2], ['web']), addresses(hosts), record=record, now=NOW + 60 + HOUR)
    assert 'w2' not in stored(after)['overlays']['appnet']['slots']
    assert 'api' not in stored(after)['overlays']['appnet']['vips'] and 'api' not in stored(after)['fwmarks']


def test_an_overlay_taken_out_is_held_and_one_with_another_subnet_is_allocated_afresh():
    hosts = ['m1', 'w1']
    plan = build_plan(describe(hosts, ['web']), addresses(hosts), now=NOW)
    swarm = describe(hosts, ['web'])
    swarm['overlays'] = {'other': {'vni': 301, 'subnet': '10.30.0.0/16', 'encrypted': False}}
    swarm['services']['web']['overlays'] = ['other']
    moved = build_plan(swarm, addresses(hosts), record=stored(plan), now=NOW + 5)
    kept = stored(moved)['overlays']['appnet']
    assert kept['slots']['m1'] == {'value': plan['overlays']['appnet']['members']['m1']['slot'],
                                   'released': alloc.timestamp(NOW + 5)}
    assert kept['vips']['web']['released'] == alloc.timestamp(NOW + 5)
    # The same overlay name on a new subnet: its old slot numbers mean nothing there.
    renumbered = describe(hosts, ['web'], subnet='10.40.0.0/20')
    record = stored(plan)
    record['overlays']['appnet']['slots'] = {'m1': {'value': 14}, 'w1': {'value': 13}}
    fresh = build_plan(renumbered, addresses(hosts), record=record, now=NOW)
    assert fresh == build_plan(renumbered, addresses(hosts), now=NOW)


def test_a_record_newer_than_the_toolkit_is_refused_and_another_swarms_is_ignored():
    with pytest.raises(PlanError, match='it is version 2, newer than this toolkit'):
        build_plan(describe(['m1']), addresses(['m1']), record={'version': 2, 'swarm': 'prop'}, now=NOW)
    plan = build_plan(describe(['m1']), addresses(['m1']), now=NOW)
    other = {'version': 1, 'swarm': 'elsewhere', 'overlays': {'appnet': {'slots': {'m1': {'value': 3}}}}}
    assert build_plan(describe(['m1']), addresses(['m1']), record=other, now=NOW) == plan


# ---------------------------------------------------------------- no sequence of adds and removes moves a live one

NODES = [f'n{i}' for i in range(16)]
SERVICES = [f's{i}' for i in range(16)]
STEPS = st.lists(st.tuples(st.sets(st.sampled_from(NODES), min_size=1, max_size=13),
                           st.sets(st.sampled_from(SERVICES), max_size=14),
                           st.integers(0, 2 * HOUR)), min_size=2, max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS)
def test_no_sequence_of_adds_and_removes_moves_a_live_allocation(steps):
    # 13 of 14 slots and 14 of 14 VIPs (vip_prefix 28): hashed values meet all the time.
    record, live, now = None, {}, NOW
    for nodes, services, elapsed in steps:
        now += elapsed
        hosts = sorted(nodes)
        plan = build_plan(describe(hosts, sorted(services)), addresses(hosts), record=record, now=now)
        values = allocated(plan)
        for key, value in values.items():
            if key in live:
                assert live[key] == value, key
        slots = [m['slot'] for m in plan['overlays']['appnet']['members'].values()]
        vips = [s['vip'] for s in plan['services'].values()]
        marks = [s['fwmark'] for s in plan['services'].values()]
        assert len(set(slots)) == len(slots) and len(set(vips)) == len(vips) and len(set(marks)) == len(marks)
        new = stored(plan)
        # A re-added object whose allocation the record still held takes it back.
        before = (record or {}).get('overlays', {}).get('appnet', {})
        for pool, key, names in (('slot', 'slots', hosts), ('vip', 'vips', services)):
            for name in names:
                old = before.get(key, {}).get(name)
                if old is not None and 'released' in old:
                    assert values[pool, name] == old['value'], (pool, name)
                assert 'released' not in new['overlays']['appnet'][key][name]
        # Held entries are within their hold; the rest were released.
        for pool in (new['overlays']['appnet']['slots'], new['overlays']['appnet']['vips'], new['fwmarks']):
            for entry in pool.values():
                if 'released' in entry:
                    assert now - alloc.epoch(entry['released']) < HOUR
        record, live = new, values


# ---------------------------------------------------------------- the VIP range and the size of issue 13


def big_swarm(nodes=250, overlays=5, per_overlay=200):
    hosts = [f'node{i:03d}' for i in range(nodes)]
    names = [f'ov{k}' for k in range(overlays)]
    services = {f'svc-{k}-{i:03d}': {'image': 'x', 'networks': [names[k]]}
                for k in range(overlays) for i in range(per_overlay)}
    swarm = {'name': 'big', 'managers': hosts[:3], 'workers': hosts[3:],
             'overlays': {name: {'vni': 1000 + k, 'subnet': f'10.{100 + k}.0.0/16', 'encrypted': False}
                          for k, name in enumerate(names)},
             'services': services}
    hostvars = {h: {'swarm_advertise_addr': str(ipaddress.IPv4Address('172.16.0.1') + i)} for i, h in enumerate(hosts)}
    return swarm, hostvars


def test_250_nodes_and_1000_services_on_5_overlays_validate_and_plan_with_nothing_pinned():
    swarm, hostvars = big_swarm()
    start = time.perf_counter()
    assert validate(swarm, list(hostvars), hostvars) == []
    plan = build_plan(swarm, hostvars, now=NOW)
    elapsed = time.perf_counter() - start
    assert len(plan['services']) == 1000
    for name, overlay in plan['overlays'].items():
        assert overlay['vip_prefix'] == 22 and overlay['vip_range'].endswith('.252.0/22')
        assert len(overlay['members']) == 250 and len({m['slot'] for m in overlay['members'].values()}) == 250
        assert all(1 <= m['slot'] <= 251 for m in overlay['members'].values())
        vips = [s['vip'] for s in plan['services'].values() if s['overlays'] == [name]]
        assert len(vips) == len(set(vips)) == 200
        assert all(ipaddress.IPv4Address(v) in ipaddress.IPv4Network(overlay['vip_range']) for v in vips)
    marks = {s['fwmark'] for s in plan['services'].values()}
    assert len(marks) == 1000 and all(m & 0xFFFF0000 == FWMARK_BASE for m in marks)
    # The record fits a swarm config (swarmkit's 1000 KiB) with room to spare.
    assert len(json.dumps(plan['allocations'], sort_keys=True, separators=(',', ':'))) < 300 * 1024
    # And planned again from its own record, nothing moves.
    again = build_plan(swarm, hostvars, record=stored(plan), now=NOW + 1)
    assert allocated_all(again) == allocated_all(plan)
    assert elapsed < 20, elapsed


def allocated_all(plan):
    return ({(o, h): m['slot'] for o, ov in plan['overlays'].items() for h, m in ov['members'].items()},
            {n: (s['vip'], s['fwmark']) for n, s in plan['services'].items()})


def test_capacity_errors_give_how_many_there_are_and_how_many_are_needed():
    swarm, hostvars = big_swarm(nodes=3, overlays=1, per_overlay=30)
    swarm['overlays']['ov0']['vip_prefix'] = 27
    assert validate(swarm, list(hostvars), hostvars) == []  # 30 VIPs for 30 services: full, and fine
    swarm['services']['svc-0-extra'] = {'image': 'x', 'networks': ['ov0']}
    errors = validate(swarm, list(hostvars), hostvars)
    assert errors == ['swarm.overlays.ov0.vip_prefix: the VIP range 10.100.255.224/27 holds 30 VIPs; 31 VIP services '
                      'on overlay ov0 need 31: use a shorter vip_prefix (/26 holds 62)']
    with pytest.raises(PlanError) as caught:
        build_plan(swarm, hostvars, now=NOW)
    assert caught.value.errors == errors
    # Nodes: a /16 cut into /24s under the default /22 VIP range holds 251 node ranges.
    swarm, hostvars = big_swarm(nodes=252, overlays=1, per_overlay=1)
    assert validate(swarm, list(hostvars), hostvars) == [
        'swarm.overlays.ov0.subnet: "10.100.0.0/16" is too small: it holds 251 node ranges of /24 (after the '
        'gateway range and the VIP range 10.100.252.0/22, vip_prefix /22 (the default)) for 252 nodes; use a larger '
        'subnet, a longer node_prefix or a longer vip_prefix']
    swarm['overlays']['ov0']['vip_prefix'] = 24
    assert validate(swarm, list(hostvars), hostvars) == []


@pytest.mark.parametrize(('subnet', 'node_prefix', 'vip_range'), [
    ('10.20.0.0/16', 24, '10.20.252.0/22'),   # the default /22 holds 1,022 VIPs
    ('10.0.0.0/8', 24, '10.255.252.0/22'),
    ('10.20.0.0/16', 20, '10.20.240.0/20'),   # node ranges of /22 or larger: one node range, as before
    ('10.20.0.0/20', 24, '10.20.15.0/24'),    # subnets smaller than /18: one node range, as before
    ('10.20.0.0/24', 28, '10.20.0.240/28'),
])
def test_the_default_vip_range(subnet, node_prefix, vip_range):
    swarm = describe(['m1'], ['web'], subnet=subnet, node_prefix=node_prefix, vip_prefix=None)
    plan = build_plan(swarm, addresses(['m1']), now=NOW)
    assert plan['overlays']['appnet']['vip_range'] == vip_range
    assert ipaddress.IPv4Address(plan['services']['web']['vip']) in ipaddress.IPv4Network(vip_range)
    assert validate(swarm) == []


def test_vip_prefix_and_hold_are_checked():
    swarm = describe(['m1'], subnet='10.20.0.0/16', vip_prefix=16, hold='soon')
    assert validate(swarm) == [
        'swarm.allocation.hold: "soon" is not a duration like 5s, 1.5s, 500ms, 1m30s or 24h',
        'swarm.overlays.appnet.vip_prefix: 16 must be longer than the subnet prefix /16 (the VIP range is the top of '
        'the subnet; the gateway and the node ranges live below it)']
    swarm = describe(['m1'], subnet='10.20.0.0/16', vip_prefix=31)
    assert any(e.startswith('swarm.overlays.appnet.vip_prefix: 31 ') for e in validate(swarm))
