# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation of the swarm description, format v1 (docs/description.md).

Controller only: it needs jsonschema. The schema checks the structure; the
cross-reference rules below it check what a schema cannot (inventory,
networks, allocation). Every problem becomes one line
``<yaml.path>: <value> <rule>``.
"""

from __future__ import annotations

import ipaddress
import json

from jsonschema import Draft202012Validator

from .plan import Geometry, allocate_fwmarks, allocate_slots, allocate_vips, plain

# ---------------------------------------------------------------- schema


def _obj(properties, required=()):
    return {'type': 'object', 'properties': properties, 'required': list(required), 'additionalProperties': False}


def _map(pattern, rule, values):
    names = {'pattern': pattern, 'description': rule}
    return {'type': 'object', 'propertyNames': names, 'additionalProperties': values}


def _int(low, high=None):
    schema = {'type': 'integer', 'minimum': low}
    if high is not None:
        schema['maximum'] = high
    return schema


def _enum(*choices):
    return {'enum': list(choices)}


def _list(items, **extra):
    return {'type': 'array', 'items': items, **extra}


BOOL = {'type': 'boolean'}
STRING = {'type': 'string', 'minLength': 1}
PORT = _int(1, 65535)
HOSTS = _list(STRING, uniqueItems=True)

NODE = _obj({
    'labels': _map(
        r'^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$',
        'must be letters, digits, ".", "_", "/" or "-", starting and ending with a letter or digit',
        {'type': 'string'},
    ),
    'availability': _enum('active', 'pause', 'drain'),
    'slot': _int(1),
})

OVERLAY = _obj({
    'vni': _int(1, 16777215),
    'subnet': {'type': 'string'},
    'encrypted': BOOL,
    'port': PORT,
    'mtu': {'anyOf': [{'const': 'auto'}, _int(1280, 9000)], 'description': 'must be auto or an integer in 1280..9000'},
    'node_prefix': _int(2, 30),
}, required=['vni', 'subnet'])

SERVICE = _obj({
    'image': STRING,
    'command': _list({'type': 'string'}),
    'mode': _enum('replicated', 'global'),
    'replicas': _int(0),
    'overlays': _list(STRING, uniqueItems=True),
    'endpoint_mode': _enum('vip', 'dnsrr'),
    'vip': {'type': 'string'},
    'publish': _list(_obj({
        'published': PORT,
        'target': PORT,
        'protocol': _enum('tcp', 'udp'),
        'mode': _enum('ingress', 'host'),
    }, required=['published'])),
    'backends': _list({'type': 'string'}, minItems=1, uniqueItems=True),
    'update': _obj({
        'parallelism': _int(0),
        'delay': {
            'type': 'string',
            'pattern': r'^([0-9]+(ns|us|ms|s|m|h))+$',
            'description': 'is not a duration like 5s, 500ms, 1m or 1m30s',
        },
    }),
})

MESH = _obj({
    'backend': _enum('auto', 'ipvs', 'nftables'),
    'scheduler': _enum('rr', 'wrr', 'lc', 'sh', 'mh'),
    'ipvs_timeouts': _obj({'tcp': _int(1), 'tcpfin': _int(1), 'udp': _int(1)}),
    'preserve_client_ip': BOOL,
})

SCHEMA = _obj({
    'name': {
        'type': 'string',
        'pattern': '^[a-z][a-z0-9-]{0,31}$',
        'description': 'must be 1 to 32 lowercase letters, digits or "-", starting with a letter',
    },
    'managers': {**HOSTS, 'minItems': 1},
    'workers': HOSTS,
    'advertise_interface': {
        'type': 'string',
        'pattern': r'^[A-Za-z0-9_.:@-]{1,15}$',
        'description': 'is not an interface name (1 to 15 characters)',
    },
    'prune_services': BOOL,
    'autolock': BOOL,
    'nodes': {'type': 'object', 'additionalProperties': NODE},
    'overlays': _map(
        '^[a-z][a-z0-9-]{0,9}$',
        'must be 1 to 10 lowercase letters, digits or "-", starting with a letter (it is part of interface names)',
        OVERLAY,
    ),
    'services': _map(
        '^[a-z][a-z0-9-]{0,62}$',
        'must be 1 to 63 lowercase letters, digits or "-", starting with a letter',
        SERVICE,
    ),
    'mesh': MESH,
}, required=['name', 'managers'])

_VALIDATOR = Draft202012Validator(SCHEMA)

_TYPE_NAMES = {
    'object': 'a mapping',
    'array': 'a list',
    'string': 'a string',
    'integer': 'an integer',
    'boolean': 'a boolean (write true or false, unquoted)',
}

# Ports the swarm itself listens on, so a published port may not take them.
_RESERVED = {(2377, 'tcp'): 'swarm management', (7946, 'tcp'): 'swarm gossip', (7946, 'udp'): 'swarm gossip',
             (4789, 'udp'): 'the VXLAN data path'}

# ---------------------------------------------------------------- messages


def show(value):
    """Render a value the way it would be written in YAML, briefly."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (int, float)):
        return str(value)
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + '...'


def yaml_path(parts, root='swarm'):
    path = root
    for part in parts:
        path += f'[{part}]' if isinstance(part, int) else f'.{part}'
    return path


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _schema_errors(swarm):
    for error in _VALIDATOR.iter_errors(swarm):
        yield from _explain(error)


def _explain(error):
    """Turn one jsonschema error into lines a person can act on."""
    parts, value, schema = list(error.absolute_path), error.instance, error.schema
    kind, arg = error.validator, error.validator_value
    if 'propertyNames' in error.absolute_schema_path:
        yield f'{yaml_path([*parts, value])}: {show(value)} is not a valid name: {schema["description"]}'
    elif kind == 'additionalProperties':
        allowed = ', '.join(schema['properties'])
        for key in sorted(set(value) - set(schema['properties']), key=str):
            yield f'{yaml_path([*parts, key])}: unknown key (allowed: {allowed})'
    elif kind == 'required':
        for key in arg:
            if key not in value:
                yield f'{yaml_path([*parts, key])}: is required'
    elif kind == 'type':
        hint = ' (write it unquoted)' if arg == 'integer' and isinstance(value, str) and value.isdigit() else ''
        yield f'{yaml_path(parts)}: {show(value)} is not {_TYPE_NAMES.get(arg, arg)}{hint}'
    elif kind in ('minimum', 'maximum'):
        low, high = schema.get('minimum'), schema.get('maximum')
        rule = f'is out of range {low}..{high}' if high is not None else f'must be {low} or more'
        yield f'{yaml_path(parts)}: {show(value)} {rule}'
    elif kind == 'enum':
        yield f'{yaml_path(parts)}: {show(value)} is not one of: {", ".join(arg)}'
    elif kind == 'uniqueItems':
        dups = sorted({show(item) for i, item in enumerate(value) if item in value[:i]})
        yield f'{yaml_path(parts)}: {show(value)} has duplicates: {", ".join(dups)}'
    elif kind in ('minItems', 'minLength'):
        yield f'{yaml_path(parts)}: {show(value)} must not be empty'
    elif 'description' in schema:
        yield f'{yaml_path(parts)}: {show(value)} {schema["description"]}'
    else:
        yield f'{yaml_path(parts)}: {error.message}'


# ---------------------------------------------------------------- cross-references


def _strings(value):
    """The (index, string) items of a list, skipping what the schema rejects."""
    return [(i, item) for i, item in enumerate(value)] if isinstance(value, list) else []


def _dict(value):
    return value if isinstance(value, dict) else {}


def _network(text):
    """Parse an IPv4 CIDR; return (network, problem)."""
    if not isinstance(text, str):
        return None, None
    try:
        if '/' not in text:
            raise ValueError(text)
        return ipaddress.IPv4Network(text), None
    except ValueError:
        try:
            fixed = ipaddress.IPv4Network(text, strict=False)
        except ValueError:
            return None, 'is not an IPv4 network in CIDR form, like 10.20.0.0/16'
        return None, f'has host bits set; did you mean {fixed}?'


def _address(text):
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


def _check_hosts(swarm, inventory, errors):
    managers = [(i, h) for i, h in _strings(swarm.get('managers')) if isinstance(h, str)]
    workers = [(i, h) for i, h in _strings(swarm.get('workers')) if isinstance(h, str)]
    manager_names = {h for _, h in managers}
    if managers and len(managers) % 2 == 0:
        errors.append(f'swarm.managers: {len(managers)} managers is an even count; use an odd count (1, 3, 5, 7...) '
                      'so that a majority survives the loss of a manager')
    for i, host in workers:
        if host in manager_names:
            errors.append(f'swarm.workers[{i}]: {show(host)} is also listed in swarm.managers')
    if inventory is not None:
        known = set(inventory)
        for key, listed in (('managers', managers), ('workers', workers)):
            for i, host in listed:
                if host not in known:
                    errors.append(f'swarm.{key}[{i}]: {show(host)} is not in the inventory')
    hosts = manager_names | {h for _, h in workers}
    for host in _dict(swarm.get('nodes')):
        if host not in hosts:
            errors.append(f'swarm.nodes.{host}: {show(host)} is not listed in swarm.managers or swarm.workers')
    pins = {h: n.get('slot') for h, n in _dict(swarm.get('nodes')).items() if h in hosts and isinstance(n, dict)}
    return sorted(hosts), {h: s for h, s in pins.items() if _is_int(s) and s >= 1}


def _check_overlays(swarm, hosts, pins, errors):
    """Return {name: Geometry} for the overlays whose network rules hold."""
    geometries, vnis = {}, {}
    for name, overlay in sorted(_dict(swarm.get('overlays')).items()):
        if not isinstance(overlay, dict):
            continue
        where = f'swarm.overlays.{name}'
        vni = overlay.get('vni')
        if _is_int(vni):
            if vni in vnis:
                errors.append(f'{where}.vni: {vni} is already used by overlay {vnis[vni]}')
            vnis.setdefault(vni, name)
        network, problem = _network(overlay.get('subnet'))
        if problem:
            errors.append(f'{where}.subnet: {show(overlay["subnet"])} {problem}')
        node_prefix = overlay.get('node_prefix', 24)
        if network is None or not _is_int(node_prefix) or not 2 <= node_prefix <= 30:
            continue
        if node_prefix <= network.prefixlen:
            if 'node_prefix' in overlay:
                errors.append(f'{where}.node_prefix: {node_prefix} must be longer than the subnet prefix '
                              f'/{network.prefixlen}')
            else:
                errors.append(f'{where}.subnet: {show(str(network))} must be larger than the default node range '
                              f'/24; use a shorter prefix or set node_prefix')
            continue
        for other, taken in geometries.items():
            if network.overlaps(taken.network):
                errors.append(f'{where}.subnet: {show(str(network))} overlaps overlay {other} ({taken.network})')
        geometry = Geometry(str(network), node_prefix)
        geometries[name] = geometry
        if geometry.usable < len(hosts):
            errors.append(
                f'{where}.subnet: {show(str(network))} is too small: it holds {geometry.usable} node ranges of '
                f'/{node_prefix} (after the gateway and VIP ranges) for {len(hosts)} nodes; '
                f'use a larger subnet or a longer node_prefix'
            )
            continue
        in_range = {}
        for host, slot in sorted(pins.items()):
            if slot > geometry.usable:
                errors.append(f'swarm.nodes.{host}.slot: {slot} is out of range 1..{geometry.usable} '
                              f'(the node slots of overlay {name})')
            else:
                in_range[host] = slot
        usable_hosts = [h for h in hosts if h not in pins or h in in_range]
        errors += allocate_slots(name, usable_hosts, in_range, geometry)[1]
    return geometries


def _check_backends(where, backends, errors):
    for i, backend in _strings(backends):
        if not isinstance(backend, str):
            errors.append(f'{where}.backends[{i}]: {show(backend)} is not a string')
            continue
        host, _, port = backend.rpartition(':')
        if _address(host) is None or not port.isdigit() or not 1 <= int(port) <= 65535:
            errors.append(f'{where}.backends[{i}]: {show(backend)} is not an "ipv4:port" address, like 10.20.9.1:80')


def _check_vip(where, service, geometries, overlay_names, errors):
    """Return the explicit VIP when it is usable, else None."""
    vip = service['vip']
    if service.get('endpoint_mode', 'vip') != 'vip':
        errors.append(f'{where}.vip: {show(vip)} is only allowed with endpoint_mode vip')
        return None
    if not overlay_names:
        errors.append(f'{where}.vip: {show(vip)} needs at least one overlay (the VIP lives in the first one)')
        return None
    address = _address(vip) if isinstance(vip, str) else None
    if address is None:
        errors.append(f'{where}.vip: {show(vip)} is not an IPv4 address')
        return None
    geometry = geometries.get(overlay_names[0])
    if geometry is None:
        return None
    vip_range = geometry.vip_range
    if address not in geometry.network:
        errors.append(f'{where}.vip: {show(vip)} is outside the subnet {geometry.network} '
                      f'of overlay {overlay_names[0]}')
    elif address not in vip_range or address in (vip_range.network_address, vip_range.broadcast_address):
        errors.append(f'{where}.vip: {show(vip)} is not in the VIP range of overlay {overlay_names[0]}: '
                      f'{vip_range.network_address + 1}..{vip_range.broadcast_address - 1} '
                      '(node and gateway addresses live below it)')
    else:
        return vip
    return None


def _check_services(swarm, geometries, errors):
    declared = sorted(_dict(swarm.get('overlays')))
    ports = {}
    for overlay in _dict(swarm.get('overlays')).values():
        if isinstance(overlay, dict) and _is_int(overlay.get('port', 4789)):
            ports[(overlay.get('port', 4789), 'udp')] = 'the VXLAN data path'
    wanted = {name: {} for name in geometries}
    for name, service in sorted(_dict(swarm.get('services')).items()):
        if not isinstance(service, dict):
            continue
        where = f'swarm.services.{name}'
        if 'image' in service and 'backends' in service:
            errors.append(f'{where}.backends: not allowed together with image (a service runs either containers '
                          'or static backends)')
        elif 'image' not in service and 'backends' not in service:
            errors.append(f'{where}: needs image (container tasks) or backends (static addresses)')
        elif 'backends' in service:
            _check_backends(where, service['backends'], errors)
            errors.extend(f'{where}.{key}: not allowed with backends (static backends run no containers)'
                          for key in ('command', 'mode', 'replicas', 'update') if key in service)
        if 'replicas' in service and service.get('mode') == 'global':
            errors.append(f'{where}.replicas: only allowed with mode replicated (mode is global)')
        overlay_names = [n for _, n in _strings(service.get('overlays')) if isinstance(n, str)]
        for i, overlay in _strings(service.get('overlays')):
            if isinstance(overlay, str) and overlay not in declared:
                errors.append(f'{where}.overlays[{i}]: {show(overlay)} is not a declared overlay '
                              f'(declared: {", ".join(declared) or "none"})')
        vip = _check_vip(where, service, geometries, overlay_names, errors) if 'vip' in service else None
        if service.get('endpoint_mode', 'vip') == 'vip' and overlay_names and overlay_names[0] in wanted:
            if vip is not None or 'vip' not in service:
                wanted[overlay_names[0]][name] = vip
        for i, port in _strings(service.get('publish')):
            if not isinstance(port, dict) or not _is_int(port.get('published')):
                continue
            key = (port['published'], port.get('protocol', 'tcp'))
            label = f'{where}.publish[{i}].published: {key[0]}/{key[1]}'
            if key in ports:
                errors.append(f'{label} is already taken by {ports[key]}')
            elif key in _RESERVED:
                errors.append(f'{label} is reserved for {_RESERVED[key]}')
            ports.setdefault(key, f'service {name}')
    for overlay, services in wanted.items():
        errors += allocate_vips(overlay, services, geometries[overlay])[1]
    errors += allocate_fwmarks(_dict(swarm.get('services')))[1]


def validate(swarm, inventory=None):
    """Return every problem of the description as sorted lines; [] when it is valid.

    ``inventory`` is the list of inventory host names, or None to skip that check.
    """
    if swarm is None:
        return ['swarm: is required (define it in inventory/<env>/group_vars/all/swarm.yml)']
    swarm = plain(swarm)
    if not isinstance(swarm, dict):
        return [f'swarm: {show(swarm)} is not a mapping']
    errors = list(_schema_errors(swarm))
    hosts, pins = _check_hosts(swarm, inventory, errors)
    geometries = _check_overlays(swarm, hosts, pins, errors)
    _check_services(swarm, geometries, errors)
    if _dict(swarm.get('mesh')).get('preserve_client_ip') is True:
        errors.append('swarm.mesh.preserve_client_ip: true is not supported yet: the mesh uses NAT mode, '
                      'which replaces the client source address, as Docker\'s routing mesh does')
    return sorted(set(errors))
