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
import time
from collections.abc import Mapping

# Marks, timeouts and the health port of the mesh: constants.py (one place).
from . import alloc, compose
from .constants import CONNTRACK_TIMEOUTS, DEVICE_PREFIX, FWMARK_BASE, FWMARK_BITS, HEALTH_PORT, IPVS_TIMEOUTS


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


# The default VIP range: a /22 (1,022 VIPs) where the subnet is large enough
# (/18 or larger) and node ranges are smaller than it; otherwise one node range,
# the layout from before vip_prefix existed (docs/description.md, "Overlays").
VIP_PREFIX_DEFAULT = 22
VIP_PREFIX_MIN_SUBNET = 18
# How long a gone node's slot or a gone service's VIP and mark stay held for its return.
HOLD_DEFAULT = '24h'


def default_vip_prefix(prefixlen, node_prefix):
    """The VIP range's prefix when ``vip_prefix`` is not set."""
    if node_prefix > VIP_PREFIX_DEFAULT and prefixlen <= VIP_PREFIX_MIN_SUBNET:
        return VIP_PREFIX_DEFAULT
    return node_prefix


class Geometry:
    """An overlay subnet cut into equal node ranges ("slots").

    Slot 0 holds the anycast gateway; the VIP range is the top ``vip_prefix``
    of the subnet, sized on its own; the slots below it belong to one node each.
    """

    def __init__(self, subnet, node_prefix, vip_prefix=None):
        self.network = ipaddress.IPv4Network(subnet)
        self.node_prefix = node_prefix
        if vip_prefix is None:
            vip_prefix = default_vip_prefix(self.network.prefixlen, node_prefix)
        self.vip_prefix = vip_prefix
        self.slots = 2 ** (node_prefix - self.network.prefixlen)
        self.range_size = 2 ** (32 - node_prefix)
        base = int(self.network.network_address)
        vip_size = 2 ** (32 - vip_prefix)
        self.vip_range = ipaddress.IPv4Network((int(self.network.broadcast_address) + 1 - vip_size, vip_prefix))
        # Node slots end where the VIP range starts (a VIP range smaller than a
        # node range still takes that whole slot).
        self._vip_start_slot = (int(self.vip_range.network_address) - base) // self.range_size

    @property
    def usable(self):
        return max(self._vip_start_slot - 1, 0)

    @property
    def vip_count(self):
        """VIPs in the range: never its network or broadcast address."""
        return max(self.vip_range.num_addresses - 2, 0)

    def slot_range(self, slot):
        base = int(self.network.network_address) + slot * self.range_size
        return ipaddress.IPv4Network((base, self.node_prefix))

    def first_host(self, slot):
        return ipaddress.IPv4Address(int(self.network.network_address) + slot * self.range_size + 1)

    @property
    def gateway(self):
        return self.first_host(0)

    def hashed_slot(self, host):
        return 1 + stable_hash(host) % self.usable

    def vip_address(self, offset):
        return self.vip_range.network_address + 1 + offset

    def vip_offset(self, address):
        """The offset of a VIP in the range; None when it is not one of the range's VIPs."""
        offset = int(ipaddress.IPv4Address(address)) - int(self.vip_range.network_address) - 1
        return offset if 0 <= offset < self.vip_count else None

    def hashed_offset(self, service):
        return stable_hash(service) % self.vip_count


def _slot_parser(geometry):
    def parse(value):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= geometry.usable:
            return None
        return value
    return parse


def _mark_low(value):
    if isinstance(value, bool) or not isinstance(value, int) or value & ~((1 << FWMARK_BITS) - 1) != FWMARK_BASE:
        return None
    return value & ((1 << FWMARK_BITS) - 1)


def allocate_slots(overlay, hosts, pins, geometry, entries=None, now=0, hold=0):
    """Each host's slot on one overlay; return (slots, record entries, errors).

    ``entries`` are the record's {host: (slot, released)}: a slot that exists never moves.
    """
    if geometry.usable < 1:
        return {}, {}, [f'swarm.overlays.{overlay}.subnet: {geometry.network} holds no node range '
                        f'of /{geometry.node_prefix} below its VIP range {geometry.vip_range}']
    values, record, conflicts = alloc.allocate(hosts, pins, entries or {}, geometry.usable, geometry.hashed_slot,
                                               now, hold, low=1)
    errors = []
    for c in conflicts:
        if c.kind == 'full':
            errors.append(f'swarm.overlays.{overlay}.subnet: {geometry.network} holds {c.size} node ranges of '
                          f'/{geometry.node_prefix} (below the gateway and the VIP range {geometry.vip_range}); '
                          f'{c.needed} nodes need {c.needed}: use a larger subnet or a longer node_prefix')
        elif c.kind == 'pins':
            errors.append(f'swarm.nodes.{c.name}.slot: {c.value} on overlay {overlay} is also pinned for {c.other}; '
                          f'pin one of them to another slot')
        else:
            errors.append(f'swarm.nodes.{c.name}.slot: {c.value} on overlay {overlay} is the slot of {c.other} '
                          f'(its allocation, kept in the swarm, never moves); pin {c.name} to a free slot, or pin '
                          f'{c.other} to another one as well')
    return values, record, errors


def allocate_vips(overlay, wanted, geometry, entries=None, now=0, hold=0):
    """Give each VIP service an address in the overlay's VIP range.

    ``wanted`` maps service name to its explicit VIP or None; ``entries`` are the record's
    {service: (offset, released)}. Return (vips, record entries, errors).
    """
    errors, pins = [], {}

    def vip_key(name):
        return f'swarm.services.{name}.{compose.EXTENSION}.vip'

    for name, explicit in sorted(wanted.items()):
        if explicit is None:
            continue
        offset = geometry.vip_offset(explicit)
        if offset is None:
            errors.append(f'{vip_key(name)}: {explicit} is not in the VIP range {geometry.vip_range} '
                          f'of overlay {overlay}')
            continue
        pins[name] = offset
    names = [n for n in wanted if wanted[n] is None or n in pins]
    if geometry.vip_count < 1:
        return {}, {}, [*errors, f'swarm.overlays.{overlay}.vip_prefix: the VIP range {geometry.vip_range} '
                                 'holds no VIP']
    values, record, conflicts = alloc.allocate(names, pins, entries or {}, geometry.vip_count,
                                               geometry.hashed_offset, now, hold)
    for c in conflicts:
        if c.kind == 'full':
            shorter = geometry.vip_prefix - 1
            errors.append(f'swarm.overlays.{overlay}.vip_prefix: the VIP range {geometry.vip_range} holds '
                          f'{c.size} VIPs; {c.needed} VIP services on overlay {overlay} need {c.needed}: '
                          f'use a shorter vip_prefix (/{shorter} holds {2 ** (32 - shorter) - 2})')
        elif c.kind == 'pins':
            errors.append(f'{vip_key(c.name)}: {geometry.vip_address(c.value)} on overlay {overlay} is '
                          f'also the vip of service {c.other}; set {vip_key(c.name)} to a free address '
                          f'in {geometry.vip_range}')
        else:
            errors.append(f'{vip_key(c.name)}: {geometry.vip_address(c.value)} on overlay {overlay} is '
                          f'the VIP of service {c.other} (its allocation, kept in the swarm, never moves); set '
                          f'{vip_key(c.name)} to a free address in {geometry.vip_range}, or set '
                          f'{vip_key(c.other)} to another one as well')
    vips = {name: str(geometry.vip_address(offset)) for name, offset in values.items()}
    shown = alloc.record_of(record, lambda offset: str(geometry.vip_address(offset)))
    return vips, shown, errors


def allocate_fwmarks(names, entries=None, now=0, hold=0):
    """Map each service name to its firewall mark; return (marks, record entries, errors).

    Marks are internal (no user ever types one): a new service takes the first free mark
    from its hash upward; a mark that exists never moves.
    """
    space = 1 << FWMARK_BITS
    values, record, conflicts = alloc.allocate(list(names), {}, entries or {}, space,
                                               lambda name: stable_hash(name) % space, now, hold)
    if conflicts:
        return {}, {}, [f'swarm.services: {len(list(names))} services is more than the {space} firewall marks '
                        'of the mesh']
    return ({name: FWMARK_BASE | low for name, low in values.items()},
            alloc.record_of(record, lambda low: FWMARK_BASE | low), [])


def normalize(swarm, stacks=None):
    """Return a plain copy of a valid description with every default filled in; ``stacks`` are
    the stacks read from their compose files (stack.plan_input), whose services join the others."""
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
    overlays, networks = {}, {}
    for name, overlay in (swarm.get('overlays') or {}).items():
        driver = overlay.get('driver', 'fabric')
        if driver == 'docker':
            # Docker's own overlay: VXLAN, VIPs, DNS and ingress by Docker (docs/description.md).
            networks[name] = {
                'driver': 'overlay',
                'subnet': overlay.get('subnet'),
                'encrypted': overlay.get('encrypted', True),
                'attachable': overlay.get('attachable', False),
            }
            continue
        overlays[name] = {
            'vni': overlay['vni'],
            'port': overlay.get('port', 4789),
            'encrypted': overlay.get('encrypted', True),
            'mtu': overlay.get('mtu', 'auto'),
            'subnet': overlay['subnet'],
            'node_prefix': overlay.get('node_prefix', 24),
            'vip_prefix': overlay.get('vip_prefix'),
        }
    volumes = {name: (volume or {}).get('name') or name for name, volume in (swarm.get('volumes') or {}).items()}
    volumes = {name: docker for name, docker in volumes.items() if docker != name}
    services = {name: normalize_service(service, overlays, volumes=volumes)
                for name, service in (swarm.get('services') or {}).items()}
    objects = [object_entry(kind, name, obj) for kind in ('secret', 'config')
               for name, obj in sorted((swarm.get(kind + 's') or {}).items())]
    for stack in stacks or ():
        for name, item in stack['services'].items():
            services[name] = normalize_service(item['service'], overlays, stack['name'], item['short_name'],
                                               item['volumes'])
        objects += stack['objects']
    mesh = swarm.get('mesh') or {}
    allocation = swarm.get('allocation') or {}
    return {
        'name': swarm['name'],
        'managers': managers,
        'workers': workers,
        'advertise_interface': swarm.get('advertise_interface'),
        'prune_services': swarm.get('prune_services', False),
        'autolock': swarm.get('autolock', False),
        'nodes': nodes,
        'overlays': overlays,
        'networks': networks,
        'services': services,
        'objects': objects,
        'volumes': {name: dict(volume or {}) for name, volume in (swarm.get('volumes') or {}).items()},
        'stacks': {name: dict(stack) for name, stack in (swarm.get('stacks') or {}).items()},
        'allocation': {'hold': allocation.get('hold', HOLD_DEFAULT)},
        'mesh': {
            'backend': mesh.get('backend', 'auto'),
            'scheduler': mesh.get('scheduler', 'rr'),
            'ipvs_timeouts': {**IPVS_TIMEOUTS, **(mesh.get('ipvs_timeouts') or {})},
            'conntrack_timeouts': {**CONNTRACK_TIMEOUTS, **(mesh.get('conntrack_timeouts') or {})},
            'health_port': mesh.get('health_port', HEALTH_PORT),
        },
    }


def object_entry(kind, key, obj, stack=None, labels=None):
    """One secret or config to converge (swarm_object): where its content comes from, never the
    content of a secret. ``name`` is the object's name before its version (``<stack>_<key>`` in a
    stack, as docker stack deploy names it); an external one is used under its own name."""
    obj = obj or {}
    external = bool(obj.get('external'))
    name = obj.get('name') or (f'{stack}_{key}' if stack else key)
    return {'kind': kind, 'key': key, 'stack': stack, 'name': name, 'external': external,
            'file': obj.get('file'), 'content': obj.get('content') if kind == 'config' and stack else None,
            'labels': dict(labels or {})}


def normalize_service(service, overlays, stack=None, short_name=None, volumes=None):
    """The plan's view of one Compose-shaped service (format v2): what the mesh, the fabric's DNS and
    the services role read, next to the service itself (``compose``, without the extension key).

    ``overlays`` are the fabric's overlays: a service on one of them has its ports published by the
    mesh (and a VIP in the first one); its other networks are Docker's."""
    extension = service.get(compose.EXTENSION) or {}
    deploy = service.get('deploy') or {}
    backends = list(extension.get('backends') or [])
    mode = None if backends else deploy.get('mode', 'replicated')
    attached = list(compose.networks(service))
    policies = {(str(port) if '/' in str(port) else f'{port}/tcp'): policy
                for port, policy in (extension.get('traffic_policy') or {}).items()}
    publish = []
    for port in compose.ports(service):
        if 'published' not in port:
            continue  # Docker picks the published port (only off the fabric; the validator says so)
        policy = policies.get(f'{port["published"]}/{port["protocol"]}', 'cluster')
        publish.append({**port, 'traffic_policy': policy if port['mode'] == 'ingress' else 'local'})
    return {
        'compose': {key: value for key, value in service.items() if key != compose.EXTENSION},
        'stack': stack,
        'short_name': short_name,
        'volumes': dict(volumes or {}),
        'image': service.get('image'),
        'mode': mode,
        'replicas': deploy.get('replicas', 1) if mode in ('replicated', 'replicated-job') else None,
        'overlays': [name for name in attached if name in overlays],
        'networks': attached,
        'endpoint_mode': deploy.get('endpoint_mode', 'vip'),
        'vip': extension.get('vip'),
        'publish': publish,
        'backends': backends,
    }


def docker_ingress(services, networks):
    """The services that need Docker's IPVS: an ingress port Docker publishes (off the fabric), or
    a VIP on one of Docker's own overlays."""
    out = []
    for name, service in sorted(services.items()):
        if not service['image'] or service['overlays']:
            continue
        ingress = any(port['mode'] == 'ingress' for port in compose.ports(service['compose']))
        vip = service['endpoint_mode'] == 'vip' and any(n in networks for n in service['networks'])
        if ingress or vip:
            out.append(name)
    return out


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


def _pool(raw, key):
    found = raw.get(key) if isinstance(raw, Mapping) else None
    return found if isinstance(found, Mapping) else {}


def read_record(record, name):
    """The record read from the swarm (swarm_allocations state=query), checked; {} for none."""
    record = plain(record or {})
    if not isinstance(record, dict) or not record:
        return {}
    version = record.get('version')
    if isinstance(version, int) and version > alloc.RECORD_VERSION:
        raise PlanError([f'Cannot read the allocation record of swarm {name}: it is version {version}, '
                         f'newer than this toolkit\'s {alloc.RECORD_VERSION}; use a newer Swarmfabric'])
    if record.get('swarm') not in (None, name):
        return {}
    return record


def build_plan(swarm, hostvars, swarm_nodes=None, record=None, now=None, stacks=None):
    """Compute the whole plan (docs/architecture.md); raise PlanError on what cannot be allocated.

    ``swarm_nodes`` is the swarm's node list as a live manager reports it; it
    gives the underlay of hosts that have neither an address variable nor facts.
    ``record`` is the allocation record kept in the swarm (swarm_allocations
    state=query; None or {} before the first converge): what it allocated never
    moves. ``now`` (epoch seconds) dates the holds; the plan's ``allocations``
    is the record to write back.
    """
    desc = normalize(swarm, stacks)
    now = int(time.time() if now is None else now)
    hold = alloc.seconds(desc['allocation']['hold'])
    record = read_record(record, desc['name'])
    kept = _pool(record, 'overlays')
    hosts = desc['managers'] + desc['workers']
    pins = {host: node['slot'] for host, node in desc['nodes'].items() if node['slot'] is not None}
    known = swarm_addresses(swarm_nodes)
    underlay = {host: underlay_address(_host_vars(hostvars, host), desc['advertise_interface']) or known.get(host)
                for host in hosts}
    errors = []
    allocations = {'version': alloc.RECORD_VERSION, 'swarm': desc['name'], 'overlays': {}, 'fwmarks': {}}

    overlays, geometries = {}, {}
    for name, overlay in desc['overlays'].items():
        geometry = Geometry(overlay['subnet'], overlay['node_prefix'], overlay['vip_prefix'])
        geometries[name] = geometry
        old = kept.get(name) if isinstance(kept.get(name), Mapping) else {}
        same = old.get('subnet') == str(geometry.network) and old.get('node_prefix') == geometry.node_prefix
        entries = alloc.entries_of(_pool(old, 'slots'), _slot_parser(geometry)) if same else {}
        slots, slot_record, problems = allocate_slots(name, hosts, pins, geometry, entries, now, hold)
        errors += problems
        allocations['overlays'][name] = {'subnet': str(geometry.network), 'node_prefix': geometry.node_prefix,
                                         'vip_range': str(geometry.vip_range), 'slots': slot_record, 'vips': {}}
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
            'vip_prefix': geometry.vip_prefix,
            'prefixlen': geometry.network.prefixlen,
            'device': f'{DEVICE_PREFIX}{name}',
            'gateway': str(geometry.gateway),
            'vip_range': str(geometry.vip_range),
            'members': members,
        }

    services = desc['services']
    marks, mark_record, problems = allocate_fwmarks(services, alloc.entries_of(_pool(record, 'fwmarks'), _mark_low),
                                                    now, hold)
    errors += problems
    allocations['fwmarks'] = mark_record
    for name, service in services.items():
        service['fwmark'] = marks.get(name)
    for overlay_name, geometry in geometries.items():
        wanted = {
            name: service['vip']
            for name, service in services.items()
            if service['endpoint_mode'] == 'vip' and service['overlays'][:1] == [overlay_name]
        }
        old = kept.get(overlay_name) if isinstance(kept.get(overlay_name), Mapping) else {}
        entries = alloc.entries_of(_pool(old, 'vips'), geometry.vip_offset)
        vips, vip_record, problems = allocate_vips(overlay_name, wanted, geometry, entries, now, hold)
        errors += problems
        allocations['overlays'][overlay_name]['vips'] = vip_record
        for name, vip in vips.items():
            services[name]['vip'] = vip
    # An overlay taken out of the description: its allocations are held too.
    for name, old in sorted(kept.items()):
        if name in overlays or not isinstance(old, Mapping):
            continue
        gone = {key: alloc.release_all(_pool(old, key), now, hold) for key in ('slots', 'vips')}
        if any(gone.values()):
            allocations['overlays'][name] = {**{k: old.get(k) for k in ('subnet', 'node_prefix', 'vip_range')},
                                             **gone}
    if errors:
        raise PlanError(errors)
    # Discovery by name: a service resolves every VIP service that shares one
    # of its overlays through hosts entries (Docker gives macvlan services no VIP).
    by_overlay = {}
    for other, peer in sorted(services.items()):
        if peer['vip']:
            for overlay_name in peer['overlays']:
                by_overlay.setdefault(overlay_name, set()).add(other)
    for service in services.values():
        peers = set().union(*(by_overlay.get(o, set()) for o in service['overlays']))
        service['hosts'] = [f'{other}:{services[other]["vip"]}' for other in sorted(peers)]
        # In a stack, a service also finds the others by their names in the file, as with docker stack deploy.
        service['hosts'] += [f'{services[other]["short_name"]}:{services[other]["vip"]}' for other in sorted(peers)
                             if service['stack'] and services[other]['stack'] == service['stack']]

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
        'networks': desc['networks'],
        'docker_ingress': docker_ingress(services, desc['networks']),
        'objects': desc['objects'],
        'volumes': desc['volumes'],
        'stacks': desc['stacks'],
        'mesh': desc['mesh'],
        'allocations': allocations,
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
