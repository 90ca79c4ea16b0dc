# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan: a pure function from the swarm description and the inventory.

Standard library only, so that modules on managed hosts can import it as
``ansible.module_utils.swarmfabric.plan``. See docs/architecture.md for the
contract and docs/description.md for the stable-allocation rule.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping

# Marks, timeouts and the health port of the mesh: constants.py (one place).
from .constants import CONNTRACK_TIMEOUTS, FWMARK_BASE, FWMARK_BITS, HEALTH_PORT, IPVS_TIMEOUTS


class PlanError(Exception):
    """The description cannot be planned; ``errors`` holds one line per problem."""

    def __init__(self, errors):
        self.errors = sorted(set(errors))
        super().__init__('\n'.join(self.errors))


def plain(value):
    """Copy Ansible's tagged or lazy containers into plain Python values."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def stable_hash(text):
    """A hash of ``text`` that is the same on every run and every machine."""
    return int.from_bytes(hashlib.sha256(text.encode('utf-8')).digest()[:8], 'big')


class Geometry:
    """An overlay subnet cut into equal node ranges ("slots").

    Slot 0 holds the anycast gateway, the last slot holds the VIPs, and the
    slots in between belong to one node each.
    """

    def __init__(self, subnet, node_prefix):
        self.network = ipaddress.IPv4Network(subnet)
        self.node_prefix = node_prefix
        self.slots = 2 ** (node_prefix - self.network.prefixlen)
        self.range_size = 2 ** (32 - node_prefix)

    @property
    def usable(self):
        return max(self.slots - 2, 0)

    def slot_range(self, slot):
        base = int(self.network.network_address) + slot * self.range_size
        return ipaddress.IPv4Network((base, self.node_prefix))

    def first_host(self, slot):
        return ipaddress.IPv4Address(int(self.network.network_address) + slot * self.range_size + 1)

    @property
    def gateway(self):
        return self.first_host(0)

    @property
    def vip_range(self):
        return self.slot_range(self.slots - 1)

    def hashed_slot(self, host):
        return 1 + stable_hash(host) % self.usable

    def hashed_vip(self, service):
        # The VIP range's network and broadcast addresses are never handed out.
        count = self.range_size - 2
        return self.first_host(self.slots - 1) + stable_hash(service) % count


def allocate_slots(overlay, hosts, pins, geometry):
    """Map each host to its slot on one overlay; return (slots, errors)."""
    slots, owner, errors = {}, {}, []
    if geometry.usable < 1:
        return slots, errors
    # Pinned hosts first: a pin always keeps its slot.
    for host in sorted(hosts, key=lambda h: (h not in pins, h)):
        pinned = pins.get(host)
        slot = pinned if pinned is not None else geometry.hashed_slot(host)
        other = owner.get(slot)
        if other is not None:
            errors.append(
                f'swarm.nodes.{host}.slot: {slot} on overlay {overlay} is already taken by {other}; '
                f'pin one of them to a free slot with swarm.nodes.{host}.slot or swarm.nodes.{other}.slot'
            )
            continue
        owner[slot] = host
        slots[host] = slot
    return slots, errors


def allocate_vips(overlay, wanted, geometry):
    """Give each VIP service an address in the overlay's VIP range.

    ``wanted`` maps service name to its explicit VIP or None; return (vips, errors).
    """
    vips, owner, errors = {}, {}, []
    # Explicit VIPs first, so that a hashed VIP never takes a pinned one's place.
    order = sorted(wanted, key=lambda name: (wanted[name] is None, name))
    for name in order:
        explicit = wanted[name]
        vip = ipaddress.IPv4Address(explicit) if explicit is not None else geometry.hashed_vip(name)
        other = owner.get(vip)
        if other is not None:
            errors.append(
                f'swarm.services.{name}.vip: {vip} on overlay {overlay} is already taken by service {other}; '
                f'set swarm.services.{name}.vip to a free address in {geometry.vip_range}'
            )
            continue
        owner[vip] = name
        vips[name] = str(vip)
    return vips, errors


def allocate_fwmarks(names):
    """Map each service name to its firewall mark; return (marks, errors).

    Marks are internal (no user ever types one), so a hash collision is not
    an error: in name order, the later service takes the next free mark. Only
    a service added next to a colliding one can see its mark move.
    """
    space = 1 << FWMARK_BITS
    if len(names) > space:
        return {}, [f'swarm.services: {len(names)} services is more than the {space} firewall marks of the mesh']
    marks, taken = {}, set()
    for name in sorted(names):
        low = stable_hash(name) % space
        while low in taken:
            low = (low + 1) % space
        taken.add(low)
        marks[name] = FWMARK_BASE | low
    return marks, []


def normalize(swarm):
    """Return a plain copy of a valid description with every default filled in."""
    swarm = plain(swarm)
    managers = list(swarm['managers'])
    workers = list(swarm.get('workers') or [])
    settings = swarm.get('nodes') or {}
    nodes = {}
    for host in managers + workers:
        node = settings.get(host) or {}
        nodes[host] = {
            'role': 'manager' if host in managers else 'worker',
            'labels': dict(node.get('labels') or {}),
            'availability': node.get('availability', 'active'),
            'slot': node.get('slot'),
        }
    overlays = {}
    for name, overlay in (swarm.get('overlays') or {}).items():
        overlays[name] = {
            'vni': overlay['vni'],
            'port': overlay.get('port', 4789),
            'encrypted': overlay.get('encrypted', True),
            'mtu': overlay.get('mtu', 'auto'),
            'subnet': overlay['subnet'],
            'node_prefix': overlay.get('node_prefix', 24),
        }
    services = {name: _normalize_service(service) for name, service in (swarm.get('services') or {}).items()}
    mesh = swarm.get('mesh') or {}
    return {
        'name': swarm['name'],
        'managers': managers,
        'workers': workers,
        'advertise_interface': swarm.get('advertise_interface'),
        'prune_services': swarm.get('prune_services', False),
        'autolock': swarm.get('autolock', False),
        'nodes': nodes,
        'overlays': overlays,
        'services': services,
        'mesh': {
            'backend': mesh.get('backend', 'auto'),
            'scheduler': mesh.get('scheduler', 'rr'),
            'ipvs_timeouts': {**IPVS_TIMEOUTS, **(mesh.get('ipvs_timeouts') or {})},
            'conntrack_timeouts': {**CONNTRACK_TIMEOUTS, **(mesh.get('conntrack_timeouts') or {})},
            'health_port': mesh.get('health_port', HEALTH_PORT),
        },
    }


def sysctl_map(sysctls):
    """Compose's sysctls, a map or ["name=value"], as Docker's map of strings."""
    if isinstance(sysctls, list):
        sysctls = dict(entry.partition('=')[::2] for entry in sysctls)
    return {str(name): str(value) for name, value in sorted((sysctls or {}).items())}


def _normalize_service(service):
    static = bool(service.get('backends'))
    mode = None if static else service.get('mode', 'replicated')
    update = service.get('update') or {}
    return {
        'image': service.get('image'),
        'command': list(service.get('command') or []),
        'sysctls': {} if static else sysctl_map(service.get('sysctls')),
        'mode': mode,
        'replicas': service.get('replicas', 1) if mode == 'replicated' else None,
        'overlays': list(service.get('overlays') or []),
        'endpoint_mode': service.get('endpoint_mode', 'vip'),
        'vip': service.get('vip'),
        'publish': [
            {
                'published': port['published'],
                'target': port.get('target', port['published']),
                'protocol': port.get('protocol', 'tcp'),
                'mode': port.get('mode', 'ingress'),
                # Meaningless for mode host (always local); the validator refuses it there.
                'traffic_policy': port.get('traffic_policy', 'cluster') if port.get('mode', 'ingress') == 'ingress'
                else 'local',
            }
            for port in service.get('publish') or []
        ],
        'backends': list(service.get('backends') or []),
        'update': {'parallelism': update.get('parallelism', 1), 'delay': update.get('delay', '5s')},
    }


def underlay_address(host_vars, advertise_interface):
    """The address a host uses on the underlay, from its variables and facts."""
    address = host_vars.get('swarm_advertise_addr')
    if address:
        return str(address)
    facts = host_vars.get('ansible_facts') or {}
    if advertise_interface:
        # Fact names spell '-' and ':' in interface names as '_'.
        key = advertise_interface.replace('-', '_').replace(':', '_')
        iface = facts.get(advertise_interface) or facts.get(key) or {}
        address = (iface.get('ipv4') or {}).get('address')
        if address:
            return str(address)
    address = (facts.get('default_ipv4') or {}).get('address')
    return str(address) if address else None


def _host_vars(hostvars, host):
    try:
        found = hostvars[host]
    except (KeyError, TypeError):
        return {}
    return found if isinstance(found, Mapping) else {}


def swarm_addresses(nodes):
    """Identity label -> address from the swarm's node list (swarm_node return_nodes).

    A host the run cannot reach has no facts; the managers still know the
    address it uses (``Status.Addr``). A ready node wins over a stale entry.
    """
    found = {}
    for node in sorted(plain(nodes or []), key=lambda n: n.get('state') == 'ready'):
        if node.get('host') and node.get('addr') and node.get('addr') != '0.0.0.0':
            found[node['host']] = node['addr']
    return found


def build_plan(swarm, hostvars, swarm_nodes=None):
    """Compute the whole plan (docs/architecture.md); raise PlanError on collisions.

    ``swarm_nodes`` is the swarm's node list as a live manager reports it; it
    gives the underlay of hosts that have neither an address variable nor facts.
    """
    desc = normalize(swarm)
    hosts = desc['managers'] + desc['workers']
    pins = {host: node['slot'] for host, node in desc['nodes'].items() if node['slot'] is not None}
    known = swarm_addresses(swarm_nodes)
    underlay = {host: underlay_address(_host_vars(hostvars, host), desc['advertise_interface']) or known.get(host)
                for host in hosts}
    errors = []

    overlays = {}
    for name, overlay in desc['overlays'].items():
        geometry = Geometry(overlay['subnet'], overlay['node_prefix'])
        slots, problems = allocate_slots(name, hosts, pins, geometry)
        errors += problems
        members = {}
        for host in sorted(slots):
            members[host] = {
                'underlay': underlay[host],
                'slot': slots[host],
                'address': str(geometry.first_host(slots[host])),
                'range': str(geometry.slot_range(slots[host])),
            }
        overlays[name] = {
            **overlay,
            'prefixlen': geometry.network.prefixlen,
            'device': f'sf-{name}',
            'gateway': str(geometry.gateway),
            'vip_range': str(geometry.vip_range),
            'members': members,
            '_geometry': geometry,
        }

    services = desc['services']
    marks, problems = allocate_fwmarks(services)
    errors += problems
    for name, service in services.items():
        service['fwmark'] = marks.get(name)
    for overlay_name, overlay in overlays.items():
        wanted = {
            name: service['vip']
            for name, service in services.items()
            if service['endpoint_mode'] == 'vip' and service['overlays'][:1] == [overlay_name]
        }
        vips, problems = allocate_vips(overlay_name, wanted, overlay.pop('_geometry'))
        errors += problems
        for name, vip in vips.items():
            services[name]['vip'] = vip
    if errors:
        raise PlanError(errors)
    # Discovery by name: a service resolves every VIP service that shares one
    # of its overlays through hosts entries (Docker gives macvlan services no VIP).
    for service in services.values():
        service['hosts'] = [
            f'{other}:{peer["vip"]}'
            for other, peer in sorted(services.items())
            if peer['vip'] and set(peer['overlays']) & set(service['overlays'])
        ]

    first_overlay = next(iter(overlays.values()), None)
    nodes = {}
    for host, node in desc['nodes'].items():
        slot = node['slot']
        if slot is None and first_overlay is not None:
            slot = first_overlay['members'][host]['slot']
        nodes[host] = {
            'role': node['role'],
            'labels': node['labels'],
            'availability': node['availability'],
            'advertise_addr': underlay[host],
            'slot': slot,
        }
    return {
        'name': desc['name'],
        'first_manager': desc['managers'][0],
        'managers': desc['managers'],
        'workers': desc['workers'],
        'prune_services': desc['prune_services'],
        'autolock': desc['autolock'],
        'nodes': nodes,
        'overlays': overlays,
        'services': services,
        'mesh': desc['mesh'],
    }


_OVERLAY_KEYS = ('vni', 'port', 'encrypted', 'mtu', 'device', 'subnet', 'prefixlen', 'node_prefix', 'gateway')


def host_view(plan, host):
    """What one host's modules need; built from references, not a copy of the plan."""
    node = plan['nodes'].get(host)
    if node is None:
        raise PlanError([f'{host}: is not a node of swarm {plan["name"]}'])
    overlays = []
    for name, overlay in plan['overlays'].items():
        members = overlay['members']
        mine = members[host]
        view = {'name': name}
        view.update((key, overlay[key]) for key in _OVERLAY_KEYS)
        view.update(
            local=node['advertise_addr'],
            address=mine['address'],
            range=mine['range'],
            peers=[{'host': peer, 'underlay': members[peer]['underlay']} for peer in sorted(members) if peer != host],
        )
        overlays.append(view)
    return {'role': node['role'], 'slot': node['slot'], 'advertise_addr': node['advertise_addr'], 'overlays': overlays}
