"""vxlan_overlay with a scripted run_command: exact argv, call counts, changed.

The live state is three reads (links, addresses, FDB); every later call is a
write, or the re-read after a failed address removal.
"""

import ipaddress
import itertools
import json
from unittest import mock

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from conftest import Docker, load_module

vxlan_overlay = load_module('vxlan_overlay')

DEVICE, SHIM = 'sf-appnet', 'sf-appnet-h'
READS = [['ip', '-j', '-d', 'link', 'show'], ['ip', '-j', 'addr', 'show'],
         ['bridge', '-j', 'fdb', 'show', 'dev', DEVICE]]


class Exit(Exception):
    pass


class Fail(Exception):
    pass


def args(**extra):
    base = {'name': 'appnet', 'device': DEVICE, 'vni': 300, 'port': 4789, 'local': '172.30.0.11',
            'peers': ['172.30.0.12'], 'mtu': 'auto', 'address': '10.20.1.1', 'gateway': '10.20.0.1',
            'prefixlen': 16, 'socket': '/nonexistent/docker.sock'}
    base.update(extra)
    return base


def links(device=True, shim=True):
    out = [{'ifname': 'eth0', 'mtu': 1500, 'flags': ['UP']}]
    if device:
        out.append({'ifname': DEVICE, 'mtu': 1450, 'flags': ['UP'], 'linkinfo': {
            'info_kind': 'vxlan', 'info_data': {'id': 300, 'port': 4789, 'local': '172.30.0.11',
                                                'learning': False}}})
    if shim:
        out.append({'ifname': SHIM, 'mtu': 1450, 'flags': ['UP'], 'link': DEVICE,
                    'linkinfo': {'info_kind': 'macvlan', 'info_data': {'mode': 'bridge'}}})
    return out


def inet(*cidrs):
    return [{'family': 'inet', 'local': c.split('/')[0], 'prefixlen': int(c.split('/')[1])} for c in cidrs]


def addrs(*shim_cidrs):
    return [{'ifname': 'eth0', 'addr_info': inet('172.30.0.11/24')}, {'ifname': SHIM, 'addr_info': inet(*shim_cidrs)}]


FDB = [{'mac': '00:00:00:00:00:00', 'dst': '172.30.0.12'}]


def ok(data=''):
    return (0, json.dumps(data) if not isinstance(data, str) else data, '')


def run(module_args, replies, check=False, diff=False):
    """Run the module; return (result, argv of every call)."""
    calls = []
    replies = list(replies)

    def run_command(self, argv, **kwargs):
        calls.append([argv[0].rsplit('/', 1)[-1], *argv[1:]])
        return replies.pop(0) if replies else (0, '', '')

    def exit_json(self, **kw):
        raise Exit(kw)

    def fail_json(self, **kw):
        raise Fail(kw)

    full = dict(module_args, _ansible_check_mode=check, _ansible_diff=diff)
    with patch_module_args(full), \
            mock.patch.object(basic.AnsibleModule, 'run_command', run_command), \
            mock.patch.object(basic.AnsibleModule, 'get_bin_path', lambda self, name, **kw: f'/usr/sbin/{name}'), \
            mock.patch.object(basic.AnsibleModule, 'exit_json', exit_json), \
            mock.patch.object(basic.AnsibleModule, 'fail_json', fail_json):
        try:
            vxlan_overlay.main()
        except (Exit, Fail) as exc:
            return exc.args[0], calls
    raise AssertionError('module returned without exit_json or fail_json')


def live(*shim_cidrs):
    return [ok(links()), ok(addrs(*shim_cidrs)), ok(FDB)]


def addr(verb, cidr):
    return ['ip', 'addr', verb, cidr, 'dev', SHIM]


@pytest.mark.parametrize('live_cidrs, want, steps', [
    ([], ['10.20.1.1/16', '10.20.0.1/16'], [('add', '10.20.1.1/16'), ('add', '10.20.0.1/16')]),
    (['10.20.1.1/16', '10.20.0.1/16'], ['10.20.1.1/16', '10.20.0.1/16'], []),
    (['10.20.1.1/16'], ['10.20.1.1/16', '10.20.0.1/16'], [('add', '10.20.0.1/16')]),
    # A new slot: the subnet's primary moves, so the subnet is cleared secondaries first.
    (['10.20.1.1/16', '10.20.0.1/16'], ['10.20.5.1/16', '10.20.0.1/16'],
     [('del', '10.20.0.1/16'), ('del', '10.20.1.1/16'), ('add', '10.20.5.1/16'), ('add', '10.20.0.1/16')]),
    # Only the gateway is left (the host address was removed by hand).
    (['10.20.0.1/16'], ['10.20.1.1/16', '10.20.0.1/16'],
     [('del', '10.20.0.1/16'), ('add', '10.20.1.1/16'), ('add', '10.20.0.1/16')]),
    # A new gateway: the primary stays, add before remove.
    (['10.20.1.1/16', '10.20.0.1/16'], ['10.20.1.1/16', '10.20.0.254/16'],
     [('add', '10.20.0.254/16'), ('del', '10.20.0.1/16')]),
    # A new subnet: the new one is added first (its own primary), the old one goes secondaries first.
    (['10.20.1.1/16', '10.20.0.1/16'], ['10.30.1.1/16', '10.30.0.1/16'],
     [('add', '10.30.1.1/16'), ('add', '10.30.0.1/16'), ('del', '10.20.0.1/16'), ('del', '10.20.1.1/16')]),
    # A new prefix length is another subnet for the kernel.
    (['10.20.1.1/16', '10.20.0.1/16'], ['10.20.1.1/17', '10.20.0.1/17'],
     [('add', '10.20.1.1/17'), ('add', '10.20.0.1/17'), ('del', '10.20.0.1/16'), ('del', '10.20.1.1/16')]),
])
def test_plan_addresses(live_cidrs, want, steps):
    assert vxlan_overlay.plan_addresses(live_cidrs, want) == steps


def test_plan_never_deletes_a_primary_before_its_secondaries():
    """Replaying each plan on a model of the kernel (no promote_secondaries):
    no removal ever fails and the result is want, in order."""
    pool = ['10.20.1.1/16', '10.20.5.1/16', '10.20.0.1/16', '10.30.1.1/16', '10.20.1.1/17']
    for n in range(4):
        for live_cidrs in itertools.permutations(pool, n):
            state = []
            for c in live_cidrs:  # build a kernel list: primaries first
                if not any(ipaddress.ip_interface(c).network == ipaddress.ip_interface(s).network for s, _ in state):
                    state.insert(sum(1 for s in state if not s[1]), (c, False))
                else:
                    state.append((c, True))
            kernel = [c for c, _ in state]
            secondary = {c for c, sec in state if sec}
            for want in (['10.20.5.1/16', '10.20.0.1/16'], ['10.20.1.1/16', '10.20.0.1/16']):
                cur, sec = list(kernel), set(secondary)
                for verb, cidr in vxlan_overlay.plan_addresses(cur, want):
                    net = ipaddress.ip_interface(cidr).network
                    peers = [c for c in cur if ipaddress.ip_interface(c).network == net]
                    if verb == 'add':
                        assert cidr not in cur
                        cur.append(cidr)
                        if peers:
                            sec.add(cidr)
                    else:
                        assert cidr in cur, (live_cidrs, want, cidr)
                        cur.remove(cidr)
                        if cidr not in sec:  # a primary takes its secondaries along
                            assert not [c for c in peers if c != cidr], (live_cidrs, want, cidr)
                        sec.discard(cidr)
                assert [c for c in cur if ipaddress.ip_interface(c).network
                        == ipaddress.ip_interface(want[0]).network] == want
                assert want[0] not in sec


def test_slot_change_argv_in_order():
    res, calls = run(args(address='10.20.5.1'), live('10.20.1.1/16', '10.20.0.1/16', '10.20.99.7/32'))
    assert calls[:3] == READS
    assert calls[3:] == [addr('del', '10.20.0.1/16'), addr('del', '10.20.1.1/16'),
                         addr('add', '10.20.5.1/16'), addr('add', '10.20.0.1/16')]
    assert res['changed'] is True
    assert res['actions'] == ['remove address 10.20.0.1/16 from sf-appnet-h', 'remove address 10.20.1.1/16 from '
                              'sf-appnet-h', 'add address 10.20.5.1/16 on sf-appnet-h',
                              'add address 10.20.0.1/16 on sf-appnet-h']
    # The mesh's VIP (/32) is not ours: never removed.
    assert not any('10.20.99.7' in ' '.join(c) for c in calls[3:])


def test_slot_change_in_check_mode_writes_nothing():
    res, calls = run(args(address='10.20.5.1'), live('10.20.1.1/16', '10.20.0.1/16'), check=True, diff=True)
    assert calls == READS
    assert res['changed'] is True
    assert res['diff']['before']['addresses'] == ['10.20.1.1/16', '10.20.0.1/16']
    assert res['diff']['after']['addresses'] == ['10.20.5.1/16', '10.20.0.1/16']


def test_no_change_is_three_reads():
    res, calls = run(args(), live('10.20.1.1/16', '10.20.0.1/16', '10.20.99.7/32'))
    assert calls == READS
    assert res['changed'] is False and res['actions'] == []


def test_already_gone_address_counts_as_removed_after_a_re_read():
    replies = [*live('10.20.1.1/16', '10.20.0.1/16'),
               (2, '', 'Error: ipv4: Address not found.'),  # del 10.20.0.1/16: gone meanwhile
               ok([{'ifname': SHIM, 'addr_info': inet('10.20.1.1/16')}])]
    res, calls = run(args(address='10.20.5.1'), replies)
    assert calls[3:] == [addr('del', '10.20.0.1/16'), ['ip', '-j', 'addr', 'show', 'dev', SHIM],
                         addr('del', '10.20.1.1/16'), addr('add', '10.20.5.1/16'), addr('add', '10.20.0.1/16')]
    assert res['changed'] is True and not res.get('failed')


def test_failed_removal_of_a_present_address_fails():
    replies = [*live('10.20.1.1/16', '10.20.0.1/16'), (2, '', 'Error: Operation not permitted.'),
               ok([{'ifname': SHIM, 'addr_info': inet('10.20.1.1/16', '10.20.0.1/16')}])]
    res, calls = run(args(address='10.20.5.1'), replies)
    assert res['msg'].startswith('Cannot configure overlay appnet: ip addr del 10.20.0.1/16 dev sf-appnet-h failed')
    assert 'Operation not permitted' in res['msg']
    assert len(calls) == 5  # nothing after the failure


def test_failed_add_is_not_forgiven():
    replies = [*live(), (2, '', 'Error: File exists.')]
    res, calls = run(args(), replies)
    assert res['msg'].startswith('Cannot configure overlay appnet: ip addr add 10.20.1.1/16 dev sf-appnet-h failed')
    assert len(calls) == 4


def test_fresh_host_argv():
    replies = [ok(links(device=False, shim=False)), ok(addrs())]
    res, calls = run(args(), replies)
    assert calls[:2] == READS[:2]  # no FDB read for a missing device
    assert calls[2:] == [
        ['ip', 'link', 'add', DEVICE, 'mtu', '1450', 'type', 'vxlan', 'id', '300', 'dstport', '4789',
         'local', '172.30.0.11', 'nolearning'],
        ['ip', 'link', 'set', 'dev', DEVICE, 'up'],
        ['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', DEVICE, 'dst', '172.30.0.12'],
        ['ip', 'link', 'add', SHIM, 'mtu', '1450', 'link', DEVICE, 'type', 'macvlan', 'mode', 'bridge'],
        ['ip', 'link', 'set', 'dev', SHIM, 'up'],
        addr('add', '10.20.1.1/16'), addr('add', '10.20.0.1/16'),
    ]
    assert res['changed'] is True


def test_subnet_change_adds_new_before_removing_old():
    res, calls = run(args(address='10.30.1.1', gateway='10.30.0.1'), live('10.20.1.1/16', '10.20.0.1/16'))
    assert calls[3:] == [addr('add', '10.30.1.1/16'), addr('add', '10.30.0.1/16'),
                         addr('del', '10.20.0.1/16'), addr('del', '10.20.1.1/16')]
    assert res['overlay']['addresses'] == ['10.30.1.1/16', '10.30.0.1/16']


# --- on the shared harness: the Docker check at its socket, state absent, check mode ---------


def test_a_vni_that_a_docker_overlay_network_uses_is_refused_before_any_write(run_module, tmp_path):
    sock = tmp_path / 'docker.sock'
    sock.touch()
    docker = Docker({'/networks': [{'Name': 'ingress', 'Options': {vxlan_overlay.DOCKER_VNI_OPTION: '4096'}},
                                   {'Name': 'legacy', 'Options': {vxlan_overlay.DOCKER_VNI_OPTION: '4097,300'}}]})
    done = run_module(vxlan_overlay, args(socket=str(sock)), docker=docker,
                      commands=[ok(links(device=False, shim=False)), ok(addrs())])
    assert done.failed and done.msg.startswith('Cannot create overlay appnet: VNI 300 is already used by Docker '
                                               'overlay network legacy')
    assert docker.calls == [('GET', '/networks', {'filters': {'driver': ['overlay']}}, None)]
    assert len(done.commands.calls) == 2  # the two reads, no write


@pytest.mark.parametrize('check', [False, True])
def test_absent_deletes_the_shim_then_the_device(run_module, check):
    done = run_module(vxlan_overlay, {'name': 'appnet', 'device': DEVICE, 'state': 'absent'}, check=check,
                      commands=live())
    writes = done.commands.argvs[3:]
    assert writes == ([] if check else [['/usr/sbin/ip', 'link', 'del', 'dev', SHIM],
                                        ['/usr/sbin/ip', 'link', 'del', 'dev', DEVICE]])
    assert done.result == {'changed': True, 'actions': [f'delete {SHIM}', f'delete {DEVICE}']}
