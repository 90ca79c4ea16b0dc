"""The fabric role fails closed by its order: the plaintext guard (boot copy,
unit, live table) goes in before any VXLAN device, and SAs and policies only
after the devices. The kernel lab and the netns tests prove what each piece
does; this keeps a reordering of roles/fabric/tasks/main.yml from undoing it."""

import pathlib

import jinja2
import pytest
import yaml

ROLE = pathlib.Path(__file__).resolve().parents[2] / 'roles' / 'fabric'


def flat(tasks):
    for task in tasks:
        yield task
        yield from flat(task.get('block', []))


def first(tasks, module):
    return next(i for i, t in enumerate(tasks) if module in t)


def test_guard_before_devices_before_sas():
    tasks = list(flat(yaml.safe_load((ROLE / 'tasks' / 'main.yml').read_text())))
    probe = first(tasks, 'fabric_capabilities')
    boot = next(i for i, t in enumerate(tasks)
                if any('fabric-guard.nft.j2' in str(f.get('content'))
                       for f in t.get('host_files', {}).get('files', [])))
    live = first(tasks, 'nft_table')
    devices = first(tasks, 'vxlan_overlay')
    sas = first(tasks, 'xfrm_tunnel')
    networks = first(tasks, 'swarm_network')
    assert probe < boot < live < devices < sas < networks
    assert tasks[live]['nft_table']['definition'] == "{{ lookup('ansible.builtin.template', 'fabric.nft.j2') }}"


def render(template, overlays):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / 'templates'), undefined=jinja2.StrictUndefined,
                             trim_blocks=True)
    env.filters['dirname'] = lambda path: str(pathlib.PurePosixPath(path).parent)
    return env.get_template(template).render(fabric_table='swarmfabric_fabric',
                                             fabric_guard_file='/etc/swarmfabric/fabric-guard.nft',
                                             fabric_guard_unit='swarmfabric-fabric-guard.service',
                                             swarmfabric_host={'overlays': overlays})


OVERLAYS = [{'name': 'appnet', 'vni': 300, 'port': 4789, 'encrypted': True},
            {'name': 'open', 'vni': 301, 'port': 4790, 'encrypted': False}]


def test_each_encrypted_overlay_is_guarded_both_ways():
    table = render('fabric.nft.j2', OVERLAYS)
    assert ('udp dport 4789 @th,96,24 0x12c meta ipsec missing counter drop comment "plaintext vxlan appnet"'
            in table)
    assert ('udp dport 4789 @th,96,24 0x12c rt ipsec missing counter drop comment "unencrypted vxlan appnet"'
            in table)
    assert 'type filter hook input' in table and 'type filter hook output' in table
    assert '0x12d' not in table  # the plain overlay


@pytest.mark.parametrize('overlays, guarded', [(OVERLAYS, True), (OVERLAYS[1:], False), ([], False)])
def test_boot_copy_replaces_the_table_in_one_transaction(overlays, guarded):
    text = render('fabric-guard.nft.j2', overlays)
    lines = [line for line in text.splitlines() if line and not line.startswith('#')]
    # Created (if missing) and deleted first, so loading it twice never doubles it.
    assert lines[:2] == ['table inet swarmfabric_fabric {}', 'delete table inet swarmfabric_fabric']
    assert ('table inet swarmfabric_fabric {' in lines) is guarded
    if guarded:
        assert render('fabric.nft.j2', overlays).strip() in text


def test_unit_loads_the_boot_copy_before_docker_and_any_network():
    unit = render('swarmfabric-fabric-guard.service.j2', OVERLAYS).splitlines()
    assert 'ExecStart=/usr/sbin/nft -f /etc/swarmfabric/fabric-guard.nft' in unit
    before = next(line for line in unit if line.startswith('Before=')).split('=', 1)[1].split()
    assert {'network-pre.target', 'docker.service'} <= set(before)
    assert 'DefaultDependencies=no' in unit and 'Type=oneshot' in unit and 'RemainAfterExit=yes' in unit
    assert 'WantedBy=sysinit.target' in unit
