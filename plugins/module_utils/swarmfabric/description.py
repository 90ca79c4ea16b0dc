# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation of the swarm description, format v2 (docs/description.md).

Controller only: it needs jsonschema and PyYAML. Three passes:

1. reading: the value is copied into plain Python (Ansible's tagged and lazy
   values included), refusing non-string keys, self-referencing aliases and
   values that cannot be templated;
2. the schema: structure and strict types (an int is never a float or a
   bool, every integer has bounds, every pattern is anchored with ``\\Z``);
3. cross-references in Python: inventory, networks, names the kernel and
   Docker derive from ours, ports and allocation.

Every problem becomes one line ``<yaml.path>: <value> <rule>``.
"""

from __future__ import annotations

import datetime
import difflib
import ipaddress
import json
import os
import re
from collections.abc import Mapping

import yaml
from jsonschema import Draft202012Validator
from jsonschema.validators import extend

from . import compose, duration
from .constants import DEVICE_PREFIX, FWMARK_ENDPOINT_MAX, HEALTH_PORT
from .plan import Geometry, allocate_fwmarks, allocate_slots, allocate_vips, plain

# ---------------------------------------------------------------- schema

# Linux's IFNAMSIZ is 16 bytes with the trailing NUL.
IFNAMSIZ = 15
# The deepest description path is 5 levels (swarm.services.web.publish[0].published).
MAX_DEPTH = 32
# The largest slot: a /8 cut into /30 node ranges, less the gateway and VIP slots.
MAX_SLOT = 2 ** 22 - 2


def _obj(properties, required=()):
    return {'type': 'object', 'properties': properties, 'required': list(required), 'additionalProperties': False}


def _map(pattern, rule, values):
    names = {'pattern': pattern, 'description': rule}
    return {'type': 'object', 'propertyNames': names, 'additionalProperties': values}


def _int(low, high):
    """Every integer has both bounds: nothing unbounded reaches the plan or the kernel."""
    return {'type': 'integer', 'minimum': low, 'maximum': high}


def _enum(*choices):
    return {'enum': list(choices)}


def _list(items, **extra):
    return {'type': 'array', 'items': items, **extra}


def _text(pattern, rule, noun=None):
    schema = {'type': 'string', 'pattern': pattern, 'description': rule}
    if noun:
        schema['x-noun'] = noun
    return schema


BOOL = {'type': 'boolean'}
STRING = {'type': 'string', 'minLength': 1}
PORT = _int(1, 65535)
HOSTS = _list(STRING, uniqueItems=True)

# Docker's service-name rule (swarmkit's controlapi: [a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*, at most
# 63 characters), narrowed to lowercase without "_" because the name is also a DNS name.
SERVICE_NAME = r'\A[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?\Z'
OVERLAY_NAME = r'\A[a-z][a-z0-9-]{0,9}\Z'
SWARM_NAME = r'\A[a-z][a-z0-9-]{0,31}\Z'
LABEL_KEY = r'\A[A-Za-z0-9](?:[A-Za-z0-9._/-]*[A-Za-z0-9])?\Z'
INTERFACE = r'\A[A-Za-z0-9_.:@-]{1,15}\Z'
DURATION = duration.PATTERN
IMAGE = r'\A[\x21-\x7e]{1,255}\Z'

NODE = _obj({
    'labels': _map(
        LABEL_KEY,
        'must be letters, digits, ".", "_", "/" or "-", starting and ending with a letter or digit',
        {'type': 'string'},
    ),
    'availability': _enum('active', 'pause', 'drain'),
    'slot': _int(1, MAX_SLOT),
})

OVERLAY = _obj({
    # fabric: the toolkit's own VXLAN and ESP; docker: Docker's overlay driver (its VIPs, DNS, ingress).
    'driver': _enum('fabric', 'docker'),
    'vni': _int(1, 16777215),
    'subnet': {'type': 'string'},
    'encrypted': BOOL,
    'attachable': BOOL,
    'port': PORT,
    'mtu': {'anyOf': [{'const': 'auto'}, _int(1280, 9000)], 'description': 'must be auto or an integer in 1280..9000'},
    'node_prefix': _int(9, 30),
    'vip_prefix': _int(9, 30),
})
# Keys of a fabric overlay only, and those it must have.
FABRIC_ONLY = ('vni', 'port', 'mtu', 'node_prefix', 'vip_prefix')
DOCKER_ONLY = ('attachable',)

# A service is Compose's (format v2): compose.check_service checks it, naming each field.
SERVICE = {}

# Docker's rule for a secret's or config's name, less the "-<version>" the toolkit appends
# (13 characters of Docker's 64).
OBJECT_NAME = r'\A[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,49}[A-Za-z0-9])?\Z'
OBJECT_RULE = ('must be 1 to 51 letters, digits, "_", "." or "-", starting and ending with a letter or digit '
               '(Docker\'s rule, less the version suffix of 13 characters)')


def _object(*sources):
    return _obj({'external': BOOL, 'name': STRING, **{source: STRING for source in sources}})


SECRET = _object('file', 'content')
CONFIG = _object('file', 'content')
VOLUME = _obj({'external': BOOL, 'name': STRING,
               'labels': _map(LABEL_KEY, 'is not a label name', {'type': 'string'})})
STACK = _obj({
    'compose': STRING,
    'variables': _map(r'\A[A-Za-z_][A-Za-z0-9_]*\Z', 'is not a variable name (letters, digits and "_", not '
                      'starting with a digit)', {'type': ['string', 'integer', 'boolean']}),
}, required=['compose'])

MESH = _obj({
    'backend': _enum('auto', 'ipvs', 'nftables'),
    'scheduler': _enum('rr', 'wrr', 'lc', 'sh', 'mh'),
    'ipvs_timeouts': _obj({'tcp': _int(1, 86400), 'tcpfin': _int(1, 86400), 'udp': _int(1, 86400)}),
    'conntrack_timeouts': _obj({'tcp_established': _int(1, 30 * 86400)}),
    'health_port': PORT,
    # Retired: the client's address is kept per published port (traffic_policy).
    'preserve_client_ip': BOOL,
})

SCHEMA = _obj({
    'name': _text(SWARM_NAME, 'must be 1 to 32 lowercase letters, digits or "-", starting with a letter'),
    'managers': {**HOSTS, 'minItems': 1},
    'workers': HOSTS,
    'advertise_interface': _text(INTERFACE, f'is not an interface name (1 to {IFNAMSIZ} letters, digits, '
                                            '".", "_", ":", "@" or "-")'),
    'prune_services': BOOL,
    'autolock': BOOL,
    'nodes': {'type': 'object', 'additionalProperties': NODE},
    'overlays': _map(
        OVERLAY_NAME,
        'must be 1 to 10 lowercase letters, digits or "-", starting with a letter (it is part of interface names)',
        OVERLAY,
    ),
    'services': _map(
        SERVICE_NAME,
        'must be 1 to 63 lowercase letters, digits or "-", starting with a letter and ending with a letter or '
        'digit (Docker\'s service-name rule)',
        SERVICE,
    ),
    'secrets': _map(OBJECT_NAME, OBJECT_RULE, SECRET),
    'configs': _map(OBJECT_NAME, OBJECT_RULE, CONFIG),
    'volumes': _map(r'\A[A-Za-z0-9][A-Za-z0-9_.-]*\Z', 'is not a volume name (Docker\'s rule: letters, digits, '
                    '"_", "." or "-", starting with a letter or digit)', {'anyOf': [{'type': 'null'}, VOLUME]}),
    'stacks': _map(SWARM_NAME, 'must be 1 to 32 lowercase letters, digits or "-", starting with a '
                   'letter (docker stack deploy prefixes its objects with it)', STACK),
    'mesh': MESH,
    'allocation': _obj({
        'hold': _text(DURATION, f'is not a duration like {duration.EXAMPLES}', noun='a duration string'),
    }),
}, required=['name', 'managers'])


def _strict_int(_checker, value):
    return isinstance(value, int) and not isinstance(value, bool)


# jsonschema counts 8080.0 as an integer (JSON has one number type); a description does not.
_Validator = extend(Draft202012Validator,
                    type_checker=Draft202012Validator.TYPE_CHECKER.redefine('integer', _strict_int))
_VALIDATOR = _Validator(SCHEMA)

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
# Ports an overlay's VXLAN socket may not take: the swarm's control plane.
_SWARM_PORTS = {2377: 'swarm management (2377/tcp)', 7946: 'swarm gossip (7946/tcp and udp)'}
# Docker's predefined networks: an overlay of that name could not get its Docker network.
_DOCKER_NETWORKS = ('bridge', 'host', 'none', 'ingress')
# Label prefixes that are not the user's: the toolkit's own node labels (identity, lock, backends)
# and the namespaces Docker reserves for internal use.
_RESERVED_LABELS = {'io.swarmfabric.': "the toolkit's own node labels", 'com.docker.': 'Docker',
                    'io.docker.': 'Docker', 'org.dockerproject.': 'Docker'}
# Ranges no overlay subnet may touch.
_SPECIAL = [
    (ipaddress.IPv4Network('0.0.0.0/8'), 'the "this network" range 0.0.0.0/8'),
    (ipaddress.IPv4Network('127.0.0.0/8'), 'the loopback range 127.0.0.0/8'),
    (ipaddress.IPv4Network('169.254.0.0/16'), 'the link-local range 169.254.0.0/16'),
    (ipaddress.IPv4Network('224.0.0.0/4'), 'the multicast range 224.0.0.0/4'),
    (ipaddress.IPv4Network('240.0.0.0/4'), 'the reserved range 240.0.0.0/4'),
]

# ---------------------------------------------------------------- reading YAML


class DescriptionSyntaxError(ValueError):
    """A description file is not valid YAML; the message names the file and line."""


class Source:
    """A YAML file as written: its data, duplicate keys and the text of each scalar.

    ``duplicates`` holds (path, first line, second line); ``written`` maps a
    path to (text, value) for every scalar value, ``written_keys`` a path to
    the text of its key. Paths are tuples of keys and list indexes.
    """

    def __init__(self, filename, data, duplicates, written, written_keys):
        self.filename, self.data = filename, data
        self.duplicates, self.written, self.written_keys = duplicates, written, written_keys

    def under(self, key):
        """The same notes for the value under one top-level key, paths relative to it."""
        def strip(items):
            return {p[1:]: v for p, v in items.items() if p[:1] == (key,)}
        duplicates = [(p[1:], a, b) for p, a, b in self.duplicates if p[:1] == (key,) and len(p) > 1]
        return Source(self.filename, None, duplicates, strip(self.written), strip(self.written_keys))


def _mark(mark):
    return f'line {mark.line + 1}, column {mark.column + 1}'


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that reads Ansible's own tags (!vault, !unsafe) as the plain value under them."""


def _untagged(loader, _suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


_Loader.add_multi_constructor('!', _untagged)


def load_source(text, filename='<description>'):
    """Parse one YAML document strictly; raise DescriptionSyntaxError naming file and line."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        where = _mark(exc.problem_mark) if exc.problem_mark else 'somewhere'
        context = f' ({exc.context} at {_mark(exc.context_mark)})' if exc.context and exc.context_mark else ''
        raise DescriptionSyntaxError(f'{filename}: {where}: {exc.problem}{context}') from None
    except yaml.YAMLError as exc:
        raise DescriptionSyntaxError(f'{filename}: {exc}') from None
    except RecursionError:
        raise DescriptionSyntaxError(f'{filename}: nests too deep to read') from None
    except (ValueError, TypeError, OverflowError) as exc:  # a scalar of a YAML type that cannot be built: 2024-13-45
        raise DescriptionSyntaxError(f'{filename}: {exc}') from None
    finally:
        loader.dispose()
    duplicates, written, written_keys = [], {}, {}
    constructor = _Loader('')

    def scalar(node):
        try:
            return constructor.construct_object(node, deep=True)
        except Exception:  # built once already by construct_document; this is only for messages
            return None

    def walk(node, parts, active):
        if id(node) in active or len(parts) > MAX_DEPTH:
            return
        active = active | {id(node)}
        if isinstance(node, yaml.ScalarNode):
            written[parts] = (node.value, scalar(node))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*parts, i), active)
        elif isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, value_node in node.value:
                if key_node.tag == 'tag:yaml.org,2002:merge' or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = scalar(key_node)
                try:
                    hash(key)
                except TypeError:
                    continue
                path = (*parts, key)
                if key in seen:
                    duplicates.append((path, seen[key], key_node.start_mark.line + 1))
                seen.setdefault(key, key_node.start_mark.line + 1)
                written_keys[path] = key_node.value
                walk(value_node, path, active)

    if node is not None:
        walk(node, (), frozenset())
    return Source(filename, data, duplicates, written, written_keys)


def load_file(path):
    """load_source() of a file on disk."""
    with open(path, encoding='utf-8') as handle:
        return load_source(handle.read(), str(path))


# ---------------------------------------------------------------- messages


def _escape(text):
    """Non-ASCII and control characters as \\uXXXX, so look-alike letters show."""
    return ''.join(c if ' ' <= c <= '~' else json.dumps(c)[1:-1] for c in text)


def _json_default(value):
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return f'<{type(value).__name__}>'


def show(value):
    """Render a value the way it would be written in YAML, briefly."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=' ')
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return '{' + ', '.join(sorted(show(item) for item in value)) + '} (a set)'
    if isinstance(value, (bytes, bytearray)):
        return f'{len(value)} bytes of !!binary data'
    text = json.dumps(value, sort_keys=True, default=_json_default)
    return text if len(text) <= 60 else text[:57] + '...'


def _kind(value):
    """What YAML made of an unquoted scalar, when it is not a string."""
    if isinstance(value, bool):
        return 'a boolean'
    if isinstance(value, int):
        return 'a number'
    if isinstance(value, float):
        return 'a number'
    if isinstance(value, datetime.datetime):
        return 'a timestamp'
    if isinstance(value, datetime.date):
        return 'a date'
    if value is None:
        return 'null'
    return None


def yaml_path(parts, root='swarm'):
    path = root
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            path += f'[{part}]'
        else:
            path += f'.{_escape(part) if isinstance(part, str) else show(part)}'
    return path


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


class _Report:
    """The problems found so far, and what is known of how the user wrote each value."""

    def __init__(self, source=None):
        self.errors, self.first = [], []
        self.suppressed = set()
        self.written = source.written if source is not None else {}
        self.written_keys = source.written_keys if source is not None else {}

    def add(self, line):
        self.errors.append(line)

    def refuse(self, parts, line, root='swarm'):
        """A problem that makes every other message about this value noise."""
        self.first.append(line)
        self.suppressed.add(yaml_path(parts, root))

    def show(self, parts, value):
        """The value, and how YAML read it when that differs from what was written."""
        text = show(value)
        written = self.written.get(tuple(parts))
        kind = _kind(value)
        if written is not None and written[1] == value and type(written[1]) is type(value) and kind:
            if written[0] != text and value is not None:
                return f'{text} (YAML read {written[0]} as {kind})'
        if kind in ('a date', 'a timestamp'):
            return f'{text} ({kind})'
        return text

    def lines(self):
        def hidden(line):
            path = line.split(': ', 1)[0]
            return any(path == p or path.startswith((p + '.', p + '[')) for p in self.suppressed)
        return sorted(set(self.first) | {line for line in self.errors if not hidden(line)})


# ---------------------------------------------------------------- reading values


def _scalar(item):
    """A scalar as its plain Python type; raises for Ansible's markers of templates that failed."""
    if item is None or isinstance(item, (bool, str, int, float)):
        return plain(item)  # a tagged str or int as its plain type, as the plan copies it
    if isinstance(item, datetime.datetime):
        return datetime.datetime.fromisoformat(item.isoformat())
    if isinstance(item, datetime.date):
        return datetime.date(item.year, item.month, item.day)
    str(item)  # a marker of a failed template raises its error here
    return item


def _plain(value, report, identity=id):
    """Copy a value into plain dict/list/str/int/float/bool/None/date, refusing what YAML should not give.

    ``identity`` tells two views of one container apart from two containers:
    Ansible hands each nested container out as a new lazy wrapper, so id() alone
    cannot see a cycle there.
    """

    def key_problem(parts, key):
        # The path and the key as the user typed them (on:, not True), when the source is known.
        written = _escape(report.written_keys.get(tuple(parts)) or show(key))
        path = f'{yaml_path(parts[:-1])}.{written}'
        if isinstance(key, bool):
            return (f'{path}: key {written} is not a string: YAML 1.1 reads an unquoted yes, no, on, off, true or '
                    f'false as a boolean; quote it ("{written}":)')
        kind = _kind(key) or f'a {type(key).__name__}'
        return f'{path}: key {written} is not a string (YAML read it as {kind}); quote it ("{written}":)'

    def copy(item, parts, active):
        if len(parts) > MAX_DEPTH:
            report.refuse(parts, f'{yaml_path(parts)}: nests deeper than {MAX_DEPTH} levels '
                                 '(a YAML alias that refers to itself?)')
            return None
        if not isinstance(item, (Mapping, list, tuple)):
            try:
                return _scalar(item)
            except Exception as exc:
                report.refuse(parts, f'{yaml_path(parts)}: cannot be templated: {message(exc)}')
                return None
        if isinstance(item, (Mapping, list, tuple)):
            ident = identity(item)
            if ident in active:
                report.refuse(parts, f'{yaml_path(parts)}: refers to itself (a YAML alias used inside its own '
                                     'anchor); write the value out')
                return None
            active = active | {ident}
            if isinstance(item, Mapping):
                out = {}
                for raw in _read(lambda: list(item.keys()), parts):
                    here = [*parts, raw]
                    if not isinstance(raw, str):
                        report.refuse(here, key_problem(here, raw))
                        continue
                    key = str(raw)
                    try:
                        value = item[raw]
                    except Exception as exc:  # a template that fails, reported as the user's problem
                        report.refuse(here, f'{yaml_path(here)}: cannot be templated: {message(exc)}')
                        continue
                    out[key] = copy(value, here, active)
                return out
            out = []
            for i in range(len(item)):
                try:
                    value = item[i]
                except Exception as exc:
                    report.refuse([*parts, i], f'{yaml_path([*parts, i])}: cannot be templated: {message(exc)}')
                    continue
                out.append(copy(value, [*parts, i], active))
            return out
        return item

    def _read(get, parts):
        try:
            return get()
        except Exception as exc:
            report.refuse(parts, f'{yaml_path(parts)}: cannot be templated: {message(exc)}')
            return []

    return copy(value, [], frozenset())


_INTERNAL = re.compile(r'<class \'[^\']*\'>|\b_?Ansible[A-Za-z]*(?:Tagged|Lazy|Marker)[A-Za-z]*\b|\bMarkerError\b')


def message(exc):
    """An exception's text without Ansible's internal class names."""
    text = _INTERNAL.sub('value', str(exc)).strip()
    return text or 'the value cannot be read'


# ---------------------------------------------------------------- schema messages


def _schema_errors(swarm, report):
    for error in _VALIDATOR.iter_errors(swarm):
        for line in _explain(error, report):
            report.add(line)


def _explain(error, report):
    """Turn one jsonschema error into lines a person can act on."""
    parts, value, schema = list(error.absolute_path), error.instance, error.schema
    kind, arg = error.validator, error.validator_value
    if 'propertyNames' in error.absolute_schema_path:
        yield f'{yaml_path([*parts, value])}: {show(value)} is not a valid name: {schema["description"]}'
    elif kind == 'additionalProperties':
        allowed = list(schema['properties'])
        for key in sorted(set(value) - set(allowed), key=str):
            hint = ''
            if isinstance(key, str) and not key.isascii():
                hint = f'; it has non-ASCII characters: {_escape(key)}'
            close = difflib.get_close_matches(str(key), allowed, n=1) if isinstance(key, str) else []
            if close:
                hint += f'; did you mean {close[0]}?'
            yield f'{yaml_path([*parts, key])}: unknown key (allowed: {", ".join(allowed)}){hint}'
    elif kind == 'required':
        for key in arg:
            if key not in value:
                yield f'{yaml_path([*parts, key])}: is required'
    elif kind == 'type':
        noun = schema.get('x-noun') or _TYPE_NAMES.get(arg, arg)
        shown = report.show(parts, value)
        hint = _type_hint(arg, value)
        if 'x-noun' in schema and _is_int(value) and value >= 60 and shown == str(value):
            # The source is not known: say how YAML 1.1 may have made this number.
            hint += f' (YAML 1.1 reads an unquoted {_sexagesimal(value)} as the number {value})'
        yield f'{yaml_path(parts)}: {shown} is not {noun}{hint}'
    elif kind in ('minimum', 'maximum'):
        low, high = schema.get('minimum'), schema.get('maximum')
        yield f'{yaml_path(parts)}: {report.show(parts, value)} is out of range {low}..{high}'
    elif kind == 'enum':
        yield f'{yaml_path(parts)}: {report.show(parts, value)} is not one of: {", ".join(arg)}'
    elif kind == 'uniqueItems':
        dups = sorted({show(item) for i, item in enumerate(value) if item in value[:i]})
        yield f'{yaml_path(parts)}: {show(value)} has duplicates: {", ".join(dups)}'
    elif kind in ('minItems', 'minLength'):
        yield f'{yaml_path(parts)}: {show(value)} must not be empty'
    elif 'description' in schema:
        yield f'{yaml_path(parts)}: {report.show(parts, value)} {schema["description"]}'
    else:
        yield f'{yaml_path(parts)}: {show(value)} is not valid here'


def _sexagesimal(value):
    digits = []
    while value:
        value, rest = divmod(value, 60)
        digits.append(rest)
    return ':'.join([str(digits[-1])] + [f'{d:02d}' for d in reversed(digits[:-1])])


def _type_hint(wanted, value):
    if wanted == 'integer':
        if isinstance(value, str) and re.fullmatch(r'[0-9]+', value):
            return ' (write it unquoted)'
        if isinstance(value, float) and value.is_integer():
            return f' (write {int(value)})'
    if wanted == 'string' and _kind(value) and value is not None:
        return '; quote it'
    return ''


# ---------------------------------------------------------------- cross-references


def _strings(value):
    """The (index, string) items of a list, skipping what the schema rejects."""
    return [(i, item) for i, item in enumerate(value)] if isinstance(value, list) else []


def _dict(value):
    return value if isinstance(value, dict) else {}


def _network(text):
    """Parse an overlay subnet; return (network, problem)."""
    if not isinstance(text, str):
        return None, None
    try:
        if '/' not in text:
            raise ValueError(text)
        network = ipaddress.IPv4Network(text)
    except ValueError:
        try:
            fixed = ipaddress.IPv4Network(text, strict=False)
        except ValueError:
            return None, 'is not an IPv4 network in CIDR form, like 10.20.0.0/16'
        return None, f'has host bits set; did you mean {fixed}?'
    if str(network) != text:
        # 10.20.0.0/255.255.0.0, a hostmask, or a prefix with leading zeros
        return None, f'is not in canonical CIDR form; write {network}'
    if network.prefixlen < 8:
        return None, f'is too large: /{network.prefixlen} is shorter than /8'
    for special, name in _SPECIAL:
        if network.overlaps(special):
            return None, f'overlaps {name}'
    return network, None


def _address(text):
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


def _unusable(address):
    """Why an address cannot be a node's or a backend's, or None."""
    if address.is_unspecified:
        return 'the unspecified address'
    if address.is_loopback:
        return 'a loopback address'
    if address.is_multicast:
        return 'a multicast address'
    if address == ipaddress.IPv4Address('255.255.255.255'):
        return 'the broadcast address'
    return None


def _check_hosts(swarm, inventory, report):
    managers = [(i, h) for i, h in _strings(swarm.get('managers')) if isinstance(h, str)]
    workers = [(i, h) for i, h in _strings(swarm.get('workers')) if isinstance(h, str)]
    manager_names = {h for _, h in managers}
    if managers and len(managers) % 2 == 0:
        report.add(f'swarm.managers: {len(managers)} managers is an even count; use an odd count (1, 3, 5, 7...) '
                   'so that a majority survives the loss of a manager')
    for i, host in workers:
        if host in manager_names:
            report.add(f'swarm.workers[{i}]: {show(host)} is also listed in swarm.managers')
    if inventory is not None:
        known = set(inventory)
        for key, listed in (('managers', managers), ('workers', workers)):
            for i, host in listed:
                if host not in known:
                    report.add(f'swarm.{key}[{i}]: {show(host)} is not in the inventory')
    hosts = manager_names | {h for _, h in workers}
    for host in _dict(swarm.get('nodes')):
        if host not in hosts:
            report.add(f'{yaml_path(["nodes", host])}: {show(host)} is not listed in swarm.managers or swarm.workers')
    for host, node in sorted(_dict(swarm.get('nodes')).items()):
        for key in sorted(_dict(_dict(node).get('labels'))):
            for prefix, owner in _RESERVED_LABELS.items():
                if key.lower().startswith(prefix):
                    report.add(f'{yaml_path(["nodes", host, "labels", key])}: the prefix {prefix} is reserved '
                               f'for {owner}')
    pins = {h: n.get('slot') for h, n in _dict(swarm.get('nodes')).items() if h in hosts and isinstance(n, dict)}
    return sorted(hosts), {h: s for h, s in pins.items() if _is_int(s) and 1 <= s <= MAX_SLOT}


def _check_advertise(swarm, hosts, hostvars, geometries, report):
    """advertise_interface names an interface; each host's swarm_advertise_addr is a usable IPv4 address."""
    iface = swarm.get('advertise_interface')
    if isinstance(iface, str):
        try:
            ipaddress.ip_interface(iface)
        except ValueError:
            if iface in ('.', '..'):
                report.add(f'swarm.advertise_interface: {show(iface)} is not an interface name')
        else:
            report.refuse(['advertise_interface'],
                          f'swarm.advertise_interface: {show(iface)} is an address, not an interface name; '
                          'set the host variable swarm_advertise_addr to each node\'s address instead')
    owners = {}
    for host in hosts:
        path = yaml_path([host, 'swarm_advertise_addr'], root='hostvars')
        try:
            found = hostvars.get(host) if isinstance(hostvars, Mapping) else None
            value = found.get('swarm_advertise_addr') if isinstance(found, Mapping) else None
            value = _scalar(value)
        except Exception as exc:  # Ansible templates host variables when they are read
            report.add(f'{path}: cannot be templated: {message(exc)}')
            continue
        if value is None or value == '':
            continue
        where = f'{path}: {show(value)}'
        address = _address(value) if isinstance(value, str) else None
        if address is None:
            report.add(f'{where} is not an IPv4 address, like 172.30.0.11 (the address this node advertises '
                       'to the swarm)')
            continue
        why = _unusable(address) or ('a link-local address' if address.is_link_local else None)
        if why:
            report.add(f'{where} is {why}; the other nodes could not reach it')
            continue
        if address in owners:
            report.add(f'{where} is also the address of {owners[address]}')
            continue
        owners[address] = host
        for name, geometry in sorted(geometries.items()):
            if address in geometry.network:
                report.add(f'{where} is inside the subnet {geometry.network} of overlay {name}; the underlay '
                           'and the overlays must not overlap')


def _check_names(overlays, report):
    """The kernel and Docker names derived from each overlay name are valid and distinct."""
    taken = {}
    for name, overlay in sorted(overlays.items()):
        if not isinstance(overlay, dict) or not re.fullmatch(OVERLAY_NAME, name):
            continue
        where = yaml_path(['overlays', name])
        if name in _DOCKER_NETWORKS:
            report.add(f'{where}: {show(name)} is the name of one of Docker\'s own networks '
                       f'({", ".join(_DOCKER_NETWORKS)}); the overlay\'s Docker network would take it')
            continue
        derived = [
            (f'{DEVICE_PREFIX}{name}', 'interface', 'VXLAN device'),
            (f'{DEVICE_PREFIX}{name}-h', 'interface', 'host shim'),
            (name, 'network', 'Docker network'),
            (f'{name}-config', 'network', 'config-only Docker network'),
        ]
        for derived_name, space, role in derived:
            if space == 'interface' and len(derived_name.encode()) > IFNAMSIZ:
                report.add(f'{where}: its {role} {derived_name} is longer than {IFNAMSIZ} characters '
                           '(Linux\'s IFNAMSIZ)')
            other = taken.get((space, derived_name))
            if other is not None and other[0] != name:
                report.add(f'{where}: its {role} {derived_name} is also the {other[1]} of overlay {other[0]}; '
                           'rename one of the two overlays')
            taken.setdefault((space, derived_name), (name, role))


def _check_overlays(swarm, hosts, pins, report):
    """Return {name: Geometry} for the overlays whose network rules hold."""
    geometries, vnis, encrypted_ports, docker_networks = {}, {}, {}, {}
    overlays = _dict(swarm.get('overlays'))
    _check_names(overlays, report)
    for name, overlay in sorted(overlays.items()):
        if not isinstance(overlay, dict):
            continue
        where = yaml_path(['overlays', name])
        docker = overlay.get('driver', 'fabric') == 'docker'
        for key in (FABRIC_ONLY if docker else DOCKER_ONLY):
            if key in overlay:
                other = 'fabric (the default)' if docker else 'docker'
                report.add(f'{where}.{key}: is only for driver {other}; this overlay\'s driver is '
                           f'{"docker" if docker else "fabric"}')
        if not docker:
            for key in ('vni', 'subnet'):
                if key not in overlay:
                    report.add(f'{where}.{key}: is required (driver fabric, the default)')
        elif 'subnet' in overlay:
            network, problem = _network(overlay['subnet'])
            if problem:
                report.add(f'{where}.subnet: {report.show(["overlays", name, "subnet"], overlay["subnet"])} '
                           f'{problem}')
            if network is not None:
                docker_networks[name] = network
            continue
        if docker:
            continue
        vni = overlay.get('vni')
        if _is_int(vni):
            if vni in vnis:
                report.add(f'{where}.vni: {vni} is already used by overlay {vnis[vni]}')
            vnis.setdefault(vni, name)
        port = overlay.get('port', 4789)
        if _is_int(port):
            shown = f'{where}.port: {port}' if 'port' in overlay else f'{where}.port: {port} (the default)'
            if port in _SWARM_PORTS:
                report.add(f'{shown} is a port of the swarm itself: {_SWARM_PORTS[port]}')
            elif overlay.get('encrypted', True) is True:
                if port in encrypted_ports:
                    report.add(f'{shown} is already the port of encrypted overlay {encrypted_ports[port]}; '
                               'encrypted overlays need distinct ports (their ESP policies match on the port)')
                encrypted_ports.setdefault(port, name)
        network, problem = _network(overlay.get('subnet'))
        if problem:
            report.add(f'{where}.subnet: {report.show(["overlays", name, "subnet"], overlay["subnet"])} {problem}')
        node_prefix = overlay.get('node_prefix', 24)
        if network is None or not _is_int(node_prefix) or not 9 <= node_prefix <= 30:
            continue
        if node_prefix <= network.prefixlen:
            if 'node_prefix' in overlay:
                report.add(f'{where}.node_prefix: {node_prefix} must be longer than the subnet prefix '
                           f'/{network.prefixlen}')
            else:
                report.add(f'{where}.subnet: {show(str(network))} must be larger than the default node range '
                           f'/24; use a shorter prefix or set node_prefix')
            continue
        overlapping = [other for other, taken in geometries.items() if network.overlaps(taken.network)]
        for other in overlapping:
            report.add(f'{where}.subnet: {show(str(network))} overlaps overlay {other} '
                       f'({geometries[other].network})')
        vip_prefix = overlay.get('vip_prefix')
        if vip_prefix is not None:
            if not _is_int(vip_prefix) or not 9 <= vip_prefix <= 30:
                continue
            if vip_prefix <= network.prefixlen:
                report.add(f'{where}.vip_prefix: {vip_prefix} must be longer than the subnet prefix '
                           f'/{network.prefixlen} (the VIP range is the top of the subnet; the gateway and the '
                           'node ranges live below it)')
                continue
        geometry = Geometry(str(network), node_prefix, vip_prefix)
        geometries[name] = geometry
        if geometry.usable < len(hosts):
            shown = f'/{geometry.vip_prefix}' + ('' if vip_prefix is not None else ' (the default)')
            report.add(
                f'{where}.subnet: {show(str(network))} is too small: it holds {geometry.usable} node ranges of '
                f'/{node_prefix} (after the gateway range and the VIP range {geometry.vip_range}, vip_prefix '
                f'{shown}) for {len(hosts)} nodes; use a larger subnet, a longer node_prefix or a longer vip_prefix'
            )
            continue
        in_range = {}
        for host, slot in sorted(pins.items()):
            if slot > geometry.usable:
                report.add(f'{yaml_path(["nodes", host, "slot"])}: {slot} is out of range 1..{geometry.usable} '
                           f'(the node slots of overlay {name})')
            else:
                in_range[host] = slot
        usable_hosts = [h for h in hosts if h not in pins or h in in_range]
        for line in allocate_slots(name, usable_hosts, in_range, geometry)[2]:
            report.add(line)
    taken = {name: geometry.network for name, geometry in geometries.items()}
    for name, network in sorted(docker_networks.items()):
        for other, other_network in sorted(taken.items()):
            if network.overlaps(other_network):
                report.add(f'{yaml_path(["overlays", name])}.subnet: {show(str(network))} overlaps overlay '
                           f'{other} ({other_network})')
        taken[name] = network
    return geometries


def _check_backends(parts, backends, report):
    if isinstance(backends, list):
        if not backends:
            report.add(f'{yaml_path([*parts, "backends"])}: [] must not be empty (at least one "ipv4:port")')
        for i, backend in enumerate(backends):
            if backend in backends[:i]:
                report.add(f'{yaml_path([*parts, "backends", i])}: {show(backend)} is given twice')
    for i, backend in _strings(backends):
        where = yaml_path([*parts, 'backends', i])
        if not isinstance(backend, str):
            report.add(f'{where}: {report.show([*parts, "backends", i], backend)} is not a string')
            continue
        host, _, port = backend.rpartition(':')
        address = _address(host)
        # ASCII digits only: str.isdigit() and int() also take other scripts' digits.
        if address is None or not re.fullmatch(r'[1-9][0-9]{0,4}', port, re.ASCII) or int(port) > 65535:
            report.add(f'{where}: {show(backend)} is not an "ipv4:port" address, like 10.20.9.1:80 '
                       '(ASCII digits, port 1..65535)')
        elif _unusable(address):
            report.add(f'{where}: {show(backend)} is {_unusable(address)}; a backend must be reachable from '
                       'every node')


def _check_vip(parts, vip, service, geometries, overlay_names, report):
    """Return the explicit VIP when it is usable, else None."""
    where = yaml_path([*parts, compose.EXTENSION, 'vip'])
    if _dict(service.get('deploy')).get('endpoint_mode', 'vip') != 'vip':
        report.add(f'{where}: {show(vip)} is only allowed with deploy.endpoint_mode vip')
        return None
    if not overlay_names:
        report.add(f'{where}: {show(vip)} needs the service on an overlay of the fabric (the VIP lives in the '
                   'first one of its networks)')
        return None
    address = _address(vip) if isinstance(vip, str) else None
    if address is None:
        report.add(f'{where}: {show(vip)} is not an IPv4 address')
        return None
    geometry = geometries.get(overlay_names[0])
    if geometry is None:
        return None
    vip_range = geometry.vip_range
    if address not in geometry.network:
        report.add(f'{where}: {show(vip)} is outside the subnet {geometry.network} of overlay {overlay_names[0]}')
    elif address not in vip_range or address in (vip_range.network_address, vip_range.broadcast_address):
        report.add(f'{where}: {show(vip)} is not in the VIP range of overlay {overlay_names[0]}: '
                   f'{vip_range.network_address + 1}..{vip_range.broadcast_address - 1} '
                   '(node and gateway addresses live below it)')
    else:
        return vip
    return None


def _check_objects(swarm, base_dir, report):
    """Each secret and config has exactly one source, and its file exists."""
    for kind in ('secrets', 'configs'):
        for name, obj in sorted(_dict(swarm.get(kind)).items()):
            if not isinstance(obj, dict):
                continue
            where = yaml_path([kind, name])
            sources = [key for key in ('file', 'content', 'external') if obj.get(key) not in (None, False)]
            if len(sources) != 1:
                given = ', '.join(sources) if sources else 'none of them'
                report.add(f'{where}: needs exactly one of file, content or external: true (given: {given})')
            elif 'name' in obj and not obj.get('external'):
                report.add(f'{where}.name: is only allowed with external: true (the toolkit names the objects it '
                           'creates <name>-<version>, so that a change rolls the services)')
            path = obj.get('file')
            if isinstance(path, str) and base_dir is not None:
                full = os.path.join(base_dir, path)
                if not os.path.isfile(full):
                    report.add(f'{where}.file: {show(path)} is not a file (relative to the inventory directory '
                               f'{base_dir})')


def _fabric_ports(where, name, service, overlay_names, ports, report):
    """The ports the mesh publishes: fixed numbers, free, not the swarm's own."""
    endpoints = set()
    # i: the index of the port as written (compose.ports() sorts them, and a short port with a range is several).
    written = [(i, port) for i, given in enumerate(service.get('ports') or ())
               for port in compose.ports({'ports': [given]})]
    for i, port in written:
        endpoints.add((port['protocol'], str(port['target'])))
        if 'published' not in port:
            if overlay_names:
                report.add(f'{where}.ports[{i}]: {port["target"]}/{port["protocol"]} has no published port; the '
                           'mesh publishes a fixed one on every node: give published')
            continue
        key = (port['published'], port['protocol'])
        label = f'{where}.ports[{i}].published: {key[0]}/{key[1]}'
        if key in ports:
            report.add(f'{label} is already taken by {ports[key]}')
        elif key in _RESERVED:
            report.add(f'{label} is reserved for {_RESERVED[key]}')
        ports.setdefault(key, f'service {name}')
    if len(endpoints) > FWMARK_ENDPOINT_MAX + 1:
        report.add(f'{where}.ports: {len(endpoints)} distinct (protocol, target) pairs is more than the '
                   f'{FWMARK_ENDPOINT_MAX + 1} the mesh can mark per service')


def _check_policies(parts, service, overlay_names, report):
    extension = _dict(service.get(compose.EXTENSION))
    published = {f'{p["published"]}/{p["protocol"]}': p for p in compose.ports(service) if 'published' in p}
    for port, _policy in _dict(extension.get('traffic_policy')).items():
        key = str(port) if '/' in str(port) else f'{port}/tcp'
        where = yaml_path([*parts, compose.EXTENSION, 'traffic_policy', str(port)])
        if key not in published:
            report.add(f'{where}: {key} is not a published port of this service '
                       f'(published: {", ".join(sorted(published)) or "none"})')
        elif published[key]['mode'] == 'host':
            report.add(f'{where}: is only allowed with mode ingress (a mode host port serves only the tasks of the '
                       'node it is published on and always keeps the client address)')
        elif not overlay_names and not extension.get('backends'):
            report.add(f'{where}: needs the service on an overlay of the fabric (elsewhere Docker\'s own ingress '
                       'publishes the port, and it masquerades the client); add one to networks or use mode: host')


def _check_services(swarm, geometries, report, stacks=()):
    overlays = _dict(swarm.get('overlays'))
    fabric = {name for name, o in overlays.items() if isinstance(o, dict) and o.get('driver', 'fabric') == 'fabric'}
    known = {'networks': set(overlays), 'secrets': set(_dict(swarm.get('secrets'))),
             'configs': set(_dict(swarm.get('configs')))}
    ports = {}
    for overlay in overlays.values():
        if isinstance(overlay, dict) and overlay.get('driver', 'fabric') == 'fabric' \
                and _is_int(overlay.get('port', 4789)):
            ports[(overlay.get('port', 4789), 'udp')] = 'the VXLAN data path'
    health = _dict(swarm.get('mesh')).get('health_port', HEALTH_PORT)
    if _is_int(health) and 1 <= health <= 65535:
        if (health, 'tcp') in _RESERVED:
            report.add(f'swarm.mesh.health_port: {health} is reserved for {_RESERVED[(health, "tcp")]}')
        else:
            ports[(health, 'tcp')] = 'the mesh health endpoint (swarm.mesh.health_port)'
    wanted = {name: {} for name in geometries}
    volumes = set(_dict(swarm.get('volumes')))
    for name, service in sorted(_dict(swarm.get('services')).items()):
        parts = ['services', name]
        lines = compose.Lines()
        compose.check_service(name, service, ['swarm', *parts], lines, **known)
        for line in lines.lines:
            report.add(line)
        if lines.lines or not isinstance(service, dict):
            continue  # the cross-checks below read a valid service
        _check_volume_names(parts, service, volumes, report)
        extension = _dict(service.get(compose.EXTENSION))
        if 'backends' in extension:
            _check_backends([*parts, compose.EXTENSION], extension['backends'], report)
        overlay_names = [n for n in compose.networks(service) if n in fabric]
        vip = None
        if 'vip' in extension:
            vip = _check_vip(parts, extension['vip'], service, geometries, overlay_names, report)
        endpoint_mode = _dict(service.get('deploy')).get('endpoint_mode', 'vip')
        if endpoint_mode == 'vip' and overlay_names and overlay_names[0] in wanted:
            if vip is not None or 'vip' not in extension:
                wanted[overlay_names[0]][name] = vip
        _check_policies(parts, service, overlay_names, report)
        _fabric_ports(yaml_path(parts), name, service, overlay_names, ports, report)
    for stack in stacks:
        for name, item in sorted(stack.services.items()):
            service = item['service']
            overlay_names = [stack.networks.get(n, n) for n in compose.networks(service)]
            overlay_names = [n for n in overlay_names if n in fabric]
            endpoint_mode = _dict(service.get('deploy')).get('endpoint_mode', 'vip')
            if endpoint_mode == 'vip' and overlay_names and overlay_names[0] in wanted:
                wanted[overlay_names[0]][name] = None
            _fabric_ports(f'{stack.shown}: services.{item["short_name"]}', name, service, overlay_names, ports,
                          report)
    for overlay, services in wanted.items():
        for line in allocate_vips(overlay, services, geometries[overlay])[2]:
            report.add(line)
    names = [*_dict(swarm.get('services')), *(name for stack in stacks for name in stack.services)]
    for line in allocate_fwmarks(names)[2]:
        report.add(line)


def _load_stacks(swarm, base_dir, report):
    """The stacks of the description, read from their compose files (stack.load_stack); each
    problem is a line naming the file. None of them is read without ``base_dir``."""
    if base_dir is None:
        return []
    # Imported here: stack.py builds on this module (its loader and name rules).
    from .stack import load_stack  # noqa: PLC0415
    overlays = set(_dict(swarm.get('overlays')))
    stacks = []
    for name, given in sorted(_dict(swarm.get('stacks')).items()):
        if not isinstance(given, dict) or not isinstance(given.get('compose'), str):
            continue
        variables = given.get('variables') if isinstance(given.get('variables'), dict) else {}
        stack = load_stack(name, given['compose'], variables, base_dir=base_dir, overlays=overlays)
        stack.shown = given['compose']
        for line in stack.errors:
            report.add(line)
        if not stack.errors:
            stacks.append(stack)
    return stacks


def _check_volume_names(parts, service, volumes, report):
    """A named volume is declared under swarm.volumes, as Compose wants it declared at the top."""
    for i, given in enumerate(service.get('volumes') or ()):
        item = compose.volume(given)
        if item['type'] == 'volume' and item.get('source') and item['source'] not in volumes:
            report.add(f'{yaml_path([*parts, "volumes", i])}: the volume {show(item["source"])} is not declared '
                       f'(declared in swarm.volumes: {", ".join(sorted(volumes)) or "none"})')


def _check_duplicates(source, report):
    where = f' of {source.filename}' if source.filename else ''
    for parts, first, second in source.duplicates:
        report.first.append(f'{yaml_path(parts)}: is given twice, on line {first} and line {second}{where}; '
                            'YAML keeps only the last one: remove one of them')


def _lookup(value, parts):
    for part in parts:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and _is_int(part) and 0 <= part < len(value):
            value = value[part]
        else:
            return None
    return value


def _check_misread_numbers(swarm, report):
    """Integers that YAML 1.1 read in base 8 (0700) or base 60 (1:30): the user rarely meant them."""
    for parts, (text, value) in sorted(report.written.items(), key=lambda item: str(item[0])):
        if not _is_int(value) or not parts or any(not isinstance(p, (str, int)) for p in parts):
            continue
        actual = _lookup(swarm, parts)
        if not _is_int(actual) or actual != value:  # the value in use is not the one in this file
            continue
        if re.fullmatch(r'[-+]?0[0-7_]+', text):
            if parts[-1] == 'mode':
                continue  # a file mode (secrets, configs, tmpfs): Compose writes it in octal
            how = 'an octal number'
        elif ':' in text:
            how = 'a base-60 number'
        else:
            continue
        path = yaml_path(parts)
        if not any(line.split(': ', 1)[0] == path for line in report.errors):
            report.add(f'{path}: {value} (YAML 1.1 read {text} as {how}) is ambiguous; write it in plain decimal')


def validate(swarm, inventory=None, hostvars=None, source=None, identity=None, base_dir=None):
    """Return every problem of the description as sorted lines; [] when it is valid.

    ``inventory`` is the list of inventory host names, or None to skip that check.
    ``hostvars`` maps host to its variables (only ``swarm_advertise_addr`` is read).
    ``source`` is the load_source() of the value under ``swarm`` (``Source.under('swarm')``):
    it adds duplicate keys and how each value was written. ``identity`` see _plain().
    ``base_dir`` is the inventory directory, which relative paths (secret and config files,
    compose files) are relative to; None skips the checks that read files.
    """
    if swarm is None:
        return ['swarm: is required (define it in inventory/<env>/group_vars/all/swarm.yml)']
    report = _Report(source)
    if source is not None:
        _check_duplicates(source, report)
    swarm = _plain(swarm, report, identity or id)
    if not isinstance(swarm, dict):
        return sorted(set(report.first)) or [f'swarm: {report.show([], swarm)} is not a mapping']
    _schema_errors(swarm, report)
    hosts, pins = _check_hosts(swarm, inventory, report)
    geometries = _check_overlays(swarm, hosts, pins, report)
    _check_advertise(swarm, hosts, hostvars, geometries, report)
    stacks = _load_stacks(swarm, base_dir, report)
    _check_services(swarm, geometries, report, stacks)
    _check_objects(swarm, base_dir, report)
    _check_misread_numbers(swarm, report)
    if _dict(swarm.get('mesh')).get('preserve_client_ip') is True:
        report.add('swarm.mesh.preserve_client_ip: true is retired: the client address is kept per published '
                   'port; set x-swarmfabric.traffic_policy: {<published>: local} on the services that need it '
                   '(only nodes with a task of the service answer there; docs/mesh.md)')
    return report.lines()
