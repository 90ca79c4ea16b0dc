# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A service in the Compose Specification's shape (format v2 of the description, issue 14).

Three pure functions, standard library only (modules load this on managed hosts):

- check_service(): every problem of one service, as ``<yaml.path>: <value> <rule>`` lines;
- service_spec(): the Docker Engine API ServiceSpec (v1.41+) that ``docker stack deploy``
  would send for it (docker/cli's convert package);
- service_fields() and diff_fields(): a flat view in Compose's names and values, for diffs.

Toolkit-only settings live under the one extension key ``x-swarmfabric``; other ``x-`` keys
(extension fields of other tools) are ignored, as Compose ignores them.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import shlex
from fractions import Fraction

from . import duration
from .constants import TRAFFIC_POLICIES

EXTENSION = 'x-swarmfabric'
STACK_NAMESPACE = 'com.docker.stack.namespace'
STACK_IMAGE = 'com.docker.stack.image'
DEFAULT_FILE_MODE = 0o444

# Fields that `docker stack deploy` ignores or refuses (docker/cli's compose loader, the Compose
# Specification's deploy notes), with what a swarm service uses instead.
IGNORED = {
    'build': 'build and push the image first, then give image',
    'cgroup_parent': None,
    'cgroupns_mode': None,
    'container_name': 'swarm names the tasks itself (<service>.<slot>.<id>)',
    'cpu_count': 'use deploy.resources.limits.cpus',
    'cpu_percent': 'use deploy.resources.limits.cpus',
    'cpu_period': 'use deploy.resources.limits.cpus',
    'cpu_quota': 'use deploy.resources.limits.cpus',
    'cpu_shares': 'use deploy.resources.reservations.cpus',
    'cpus': 'use deploy.resources.limits.cpus',
    'cpuset': None,
    'depends_on': 'swarm starts services in any order: give the dependent one a healthcheck and retries',
    'devices': None,
    'domainname': 'use hostname',
    'env_file': 'use environment',
    'expose': 'services on a shared network reach each other on any port',
    'extends': None,
    'external_links': 'use networks (services on a shared network resolve each other by name)',
    'ipc': None,
    'links': 'use networks (services on a shared network resolve each other by name)',
    'mac_address': None,
    'mem_limit': 'use deploy.resources.limits.memory',
    'mem_reservation': 'use deploy.resources.reservations.memory',
    'mem_swappiness': None,
    'memswap_limit': None,
    'network_mode': 'use networks',
    'oom_kill_disable': None,
    'oom_score_adj': None,
    'pid': None,
    'pids_limit': 'use deploy.resources.limits.pids',
    'privileged': 'use cap_add',
    'profiles': None,
    'restart': 'use deploy.restart_policy',
    'scale': 'use deploy.replicas',
    'security_opt': None,
    'shm_size': 'use a tmpfs volume on /dev/shm',
    'tmpfs': 'use volumes with type: tmpfs',
    'userns_mode': None,
    'volume_driver': None,
    'volumes_from': 'use a named volume in each service',
}

# Format v1's service keys (docs/description.md) and their v2 spelling.
V1_KEYS = {
    'overlays': 'networks',
    'publish': 'ports',
    'update': 'deploy.update_config',
    'mode': 'deploy.mode',
    'replicas': 'deploy.replicas',
    'endpoint_mode': 'deploy.endpoint_mode',
    'vip': f'{EXTENSION}.vip',
    'backends': f'{EXTENSION}.backends',
}

MODES = ('replicated', 'global', 'replicated-job', 'global-job')
MAX_REPLICAS = 10000
INT64 = 2 ** 63 - 1
PROPAGATIONS = ('rprivate', 'private', 'rshared', 'shared', 'rslave', 'slave')
# Docker's rule for a volume name.
VOLUME_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]*', re.ASCII)
SIZE = re.compile(r'([0-9]+(?:\.[0-9]+)?)([bkmg]|[kmg]b)?', re.ASCII | re.IGNORECASE)
SIZE_EXAMPLES = '512m, 1g, 1.5gb or a number of bytes'
CPUS = re.compile(r'[0-9]+(?:\.[0-9]{1,9})?', re.ASCII)
PORT_RANGE = re.compile(r'[0-9]{1,5}(?:-[0-9]{1,5})?', re.ASCII)
POLICY_PORT = re.compile(r'[0-9]{1,5}(?:/(?:tcp|udp))?', re.ASCII)
# Docker's rule for a task's sysctls (docs/description.md, "sysctls"): only those of a kernel
# namespace the task has its own copy of.
SYSCTL_NAMES = ('kernel.msgmax', 'kernel.msgmnb', 'kernel.msgmni', 'kernel.sem', 'kernel.shmall',
                'kernel.shmmax', 'kernel.shmmni', 'kernel.shm_rmid_forced')
SYSCTL_PREFIXES = ('net.', 'fs.mqueue.')
SYSCTL_NAME = re.compile(r'[a-z][a-z0-9_]*(?:\.[A-Za-z0-9_-]+)+', re.ASCII)
# ASCII digits only: str.isdigit() and int() also take other scripts' digits.
DIGITS = re.compile(r'[0-9]+', re.ASCII)
IMAGE = re.compile(r'[\x21-\x7e]{1,255}', re.ASCII)
UNITS = {'': 1, 'b': 1, 'k': 2 ** 10, 'm': 2 ** 20, 'g': 2 ** 30}

# ---------------------------------------------------------------- messages


def where(path):
    """['swarm', 'services', 'web', 'ports', 0] -> 'swarm.services.web.ports[0]'."""
    text = ''
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f'[{part}]'
        else:
            name = _escape(str(part))
            text += f'.{name}' if text else name
    return text


def _escape(text):
    """Non-ASCII and control characters as \\uXXXX, so that look-alike letters show."""
    return ''.join(c if ' ' <= c <= '~' else json.dumps(c)[1:-1] for c in text)


def show(value):
    """A value as YAML would write it, briefly: strings quoted, so "80" and 80 differ."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    def other(item):
        return f'<{type(item).__name__}>'
    try:
        text = json.dumps(value, sort_keys=True, default=other)
    except TypeError:  # keys of mixed types cannot be sorted
        text = json.dumps(value, default=other)
    return text if len(text) <= 60 else text[:57] + '...'


NOUNS = {
    str: 'a string', int: 'an integer', bool: 'a boolean (write true or false, unquoted)',
    dict: 'a mapping', list: 'a list',
}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


class Lines:
    """A report that collects lines (service_spec's, and the tests')."""

    def __init__(self):
        self.lines = []

    def add(self, line):
        self.lines.append(line)


class _Check:
    """One service's checks: ``path`` is where it stands, ``report.add`` takes each problem."""

    def __init__(self, path, report, known):
        self.path, self.report, self.known = list(path), report, known

    def add(self, parts, rule, value=None, shown=True):
        self.report.add(f'{where([*self.path, *parts])}: {show(value) + " " if shown else ""}{rule}')

    def typed(self, parts, value, kind):
        if kind is int:
            if _is_int(value):
                return True
        elif isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
            return True
        hint = '; quote it' if kind is str and isinstance(value, (bool, int, float)) else ''
        if kind is int and isinstance(value, str) and DIGITS.fullmatch(value):
            hint = ' (write it unquoted)'
        self.add(parts, f'is not {NOUNS[kind]}{hint}', value)
        return False

    def integer(self, parts, value, low, high):
        if self.typed(parts, value, int) and not low <= value <= high:
            self.add(parts, f'is out of range {low}..{high}', value)

    def text(self, parts, value):
        if self.typed(parts, value, str) and not value:
            self.add(parts, 'must not be empty', value)

    def choice(self, parts, value, choices):
        if value not in choices:
            self.add(parts, f'is not one of: {", ".join(choices)}', value)

    def mapping(self, parts, value, allowed, required=()):
        """A mapping with only the ``allowed`` keys; returns it, or {} when it is not one."""
        if not self.typed(parts, value, dict):
            return {}
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), list(allowed), n=1)
                hint = f'; did you mean {close[0]}?' if close else ''
                self.add([*parts, key], f'unknown key (allowed: {", ".join(allowed)}){hint}', shown=False)
        for key in required:
            if key not in value:
                self.add([*parts, key], 'is required', shown=False)
        return value

    def items(self, parts, value):
        """The (index, item) pairs of a list; [] when it is not one."""
        return list(enumerate(value)) if self.typed(parts, value, list) else []

    def duration(self, parts, value):
        if _is_int(value) or isinstance(value, float):
            self.add(parts, f'is not a duration string; give its unit, like {show(value)}s', value)
        elif self.typed(parts, value, str) and not duration.is_duration(value):
            self.add(parts, f'is not a duration like {duration.EXAMPLES}', value)

    def size(self, parts, value):
        if _is_int(value):
            if not 0 <= value <= INT64:
                self.add(parts, f'is out of range 0..{INT64}', value)
        elif not isinstance(value, str) or not SIZE.fullmatch(value):
            self.add(parts, f'is not a size like {SIZE_EXAMPLES}', value)

    def strings(self, parts, value, single=False):
        """A list of strings (or, with ``single``, one string)."""
        if single and isinstance(value, str):
            return
        if not isinstance(value, list):
            self.add(parts, f'is not {"a string or " if single else ""}a list of strings', value)
            return
        for i, item in enumerate(value):
            self.typed([*parts, i], item, str)

    def names(self, parts, value):
        """The items of a mapping whose keys are the user's names; a key YAML did not read as a
        string (0:, on:) is refused and its item skipped."""
        items = []
        for key, item in value.items():
            if isinstance(key, str):
                items.append((key, item))
            else:
                self.add([*parts, str(key)], f'key {show(key)} is not a string; quote it', shown=False)
        return items

    def pairs(self, parts, value, noun, check_value):
        """Compose's two shapes of a map: a mapping, or a list of "key=value" strings."""
        if isinstance(value, dict):
            for key, item in self.names(parts, value):
                check_value([*parts, key], item)
        elif isinstance(value, list):
            seen = {}
            for i, item in enumerate(value):
                if not isinstance(item, str) or not item or item.startswith('='):
                    self.add([*parts, i], f'is not a "{noun}=value" string', item)
                    continue
                key = item.partition('=')[0]
                if key in seen:
                    self.add([*parts, i], f'sets {_escape(key)} again (already set in '
                                          f'{where([*self.path, *parts, seen[key]])})', shown=False)
                seen.setdefault(key, i)
        else:
            self.add(parts, f'is not a mapping or a list of "{noun}=value" strings', value)

    def reference(self, parts, value, kind):
        declared = self.known.get(kind)
        if declared is not None and isinstance(value, str) and value not in declared:
            names = ', '.join(sorted(declared)) or 'none'
            self.add(parts, f'is not a declared {kind[:-1]} (declared: {names})', value)


def _scalar_value(check, parts, value):
    """A value of environment, labels or logging options: Compose turns numbers into strings."""
    if value is not None and not isinstance(value, (str, int, float, bool)):
        check.add(parts, 'is not a string, a number or null', value)


def _label_value(check, parts, value):
    if isinstance(value, (dict, list)) or value is None:
        check.add(parts, 'is not a string or a number', value)


# ---------------------------------------------------------------- field checks


def _check_files(check, parts, value, kind):
    """secrets and configs: a name, or {source, target, uid, gid, mode}."""
    for i, item in check.items(parts, value):
        here = [*parts, i]
        if isinstance(item, str):
            check.reference(here, item, kind)
            continue
        entry = check.mapping(here, item, ('source', 'target', 'uid', 'gid', 'mode'), required=('source',))
        if 'source' in entry:
            check.text([*here, 'source'], entry['source'])
            check.reference([*here, 'source'], entry['source'], kind)
        for key in ('target', 'uid', 'gid'):
            if key in entry:
                check.text([*here, key], entry[key])
        if 'mode' in entry:
            _file_mode(check, [*here, 'mode'], entry['mode'], 0o777)


OCTAL = re.compile(r'0[0-7]{1,4}', re.ASCII)


def _file_mode(check, parts, value, high):
    """A file mode: an integer (YAML 1.1 reads 0440 in octal), or an octal string such as "0440",
    which is what a YAML 1.2 tool or a linter that forbids implicit octals wants written."""
    if isinstance(value, str):
        if not OCTAL.fullmatch(value):
            check.add(parts, 'is not a file mode (octal digits, like "0440")', value)
            return
        value = int(value, 8)
    check.integer(parts, value, 0, high)


def file_mode(value):
    """A valid file mode as an integer."""
    return int(value, 8) if isinstance(value, str) else value


def _short_volume(text):
    """'src:dst[:options]' -> the long syntax, or a rule it breaks (a string)."""
    parts = text.split(':')
    if len(parts) > 3 or not all(parts):
        return 'is not a volume like "data:/var/lib/data", "/srv:/srv:ro" or "/cache"'
    if len(parts) == 1:
        return {'type': 'volume', 'target': parts[0]}
    source, target = parts[0], parts[1]
    long = {'type': 'bind' if source.startswith(('/', '.', '~')) else 'volume', 'source': source, 'target': target}
    for option in (parts[2].split(',') if len(parts) == 3 else ()):
        if option in ('ro', 'rw'):
            long['read_only'] = option == 'ro'
        elif option == 'nocopy' and long['type'] == 'volume':
            long['volume'] = {'nocopy': True}
        elif option in PROPAGATIONS and long['type'] == 'bind':
            long['bind'] = {'propagation': option}
        else:
            return (f'has the option {_escape(option)}, which a {long["type"]} cannot take here '
                    f'(ro, rw{", nocopy" if long["type"] == "volume" else ", " + ", ".join(PROPAGATIONS)})')
    return long


def _check_volumes(check, parts, value):
    for i, given in check.items(parts, value):
        here = [*parts, i]
        # shown: the short syntax as written, where a problem is reported on the whole string.
        shown = given if isinstance(given, str) else None
        if shown:
            item = _short_volume(given)
            if isinstance(item, str):
                check.add(here, item, given)
                continue
        else:
            allowed = ('type', 'source', 'target', 'read_only', 'volume', 'bind', 'tmpfs')
            item = check.mapping(here, given, allowed, required=('type', 'target'))
        kind = item.get('type')
        if 'type' in item:
            check.choice([*here, 'type'], kind, ('volume', 'bind', 'tmpfs'))
        if 'target' in item and check.typed([*here, 'target'], item['target'], str):
            if not item['target'].startswith('/'):
                check.add(here if shown else [*here, 'target'], 'is not an absolute path in the container',
                          shown or item['target'])
        source = item.get('source')
        if kind == 'bind':
            if 'source' not in item:
                check.add([*here, 'source'], 'is required for a bind mount', shown=False)
            elif check.typed([*here, 'source'], source, str) and not source.startswith('/'):
                check.add(here if shown else [*here, 'source'],
                          'is not an absolute path: a bind mount is a path on the node that runs the task, '
                          'and a relative one has nothing to be relative to there', shown or source)
        elif kind == 'tmpfs' and 'source' in item:
            check.add([*here, 'source'], 'is not allowed with type tmpfs', source)
        elif 'source' in item and check.typed([*here, 'source'], source, str) and not VOLUME_NAME.fullmatch(source):
            check.add(here if shown else [*here, 'source'], 'is not a volume name (letters, digits, "_", "." or "-", '
                      'starting with a letter or digit)', shown or source)
        if 'read_only' in item:
            check.typed([*here, 'read_only'], item['read_only'], bool)
        for key, allowed in (('volume', ('nocopy',)), ('bind', ('propagation',)), ('tmpfs', ('size', 'mode'))):
            if key not in item or shown:
                continue
            if kind != key:
                check.add([*here, key], f'is only allowed with type {key}', shown=False)
                continue
            options = check.mapping([*here, key], item[key], allowed)
            if 'nocopy' in options:
                check.typed([*here, key, 'nocopy'], options['nocopy'], bool)
            if 'propagation' in options:
                check.choice([*here, key, 'propagation'], options['propagation'], PROPAGATIONS)
            if 'size' in options:
                check.size([*here, key, 'size'], options['size'])
            if 'mode' in options:
                _file_mode(check, [*here, key, 'mode'], options['mode'], 0o7777)


def _port_range(text):
    low, _, high = text.partition('-')
    return list(range(int(low), int(high or low) + 1))


def _short_port(value):
    """'8080:80/udp', '80' or 80 -> a list of long-syntax ports, or a rule it breaks (a string)."""
    if _is_int(value):
        value = str(value)
    if not isinstance(value, str):
        return 'is not a port like "8080:80", "8080:80/udp" or "80"'
    ports, _, protocol = value.partition('/')
    numbers = ports.rsplit(':', 2)
    if not all(PORT_RANGE.fullmatch(n) for n in numbers[-2:]) or '/' in protocol:
        return 'is not a port like "8080:80", "8080:80/udp" or "80"'
    if len(numbers) == 3:
        return 'has a host IP: swarm mode publishes a port on every address of the node; remove it'
    protocol = protocol or 'tcp'
    if protocol not in ('tcp', 'udp'):
        return f'has the protocol {_escape(protocol)}; use tcp or udp'
    targets = _port_range(numbers[-1])
    published = _port_range(numbers[0]) if len(numbers) == 2 else None
    if not targets or (published is not None and len(published) != len(targets)):
        return 'has ranges of different lengths (or an empty range); give as many published ports as targets'
    if any(not 1 <= port <= 65535 for port in [*targets, *(published or ())]):
        return 'has a port out of range 1..65535'
    ports = [{'target': port, 'protocol': protocol, 'mode': 'ingress'} for port in targets]
    for port, number in zip(ports, published or (), strict=False):
        port['published'] = number
    return ports


def _check_ports(check, parts, value):
    for i, item in check.items(parts, value):
        here = [*parts, i]
        if not isinstance(item, dict):
            rule = _short_port(item)
            if isinstance(rule, str):
                check.add(here, rule, item)
            continue
        if 'traffic_policy' in item:
            check.add([*here, 'traffic_policy'], f'is {EXTENSION}.traffic_policy in format v2 (a map of '
                                                 '"published/protocol" to cluster or local)', shown=False)
        if 'host_ip' in item:
            check.add([*here, 'host_ip'], 'is ignored by swarm mode, which publishes a port on every address '
                                          'of the node; remove it', shown=False)
        port = check.mapping(here, item, ('target', 'published', 'protocol', 'mode', 'traffic_policy', 'host_ip'),
                             required=('target',))
        if 'target' in port:
            check.integer([*here, 'target'], port['target'], 1, 65535)
        if 'published' in port:
            published = port['published']
            if isinstance(published, str) and DIGITS.fullmatch(published):
                published = int(published)
            check.integer([*here, 'published'], published, 1, 65535)
        if 'protocol' in port:
            check.choice([*here, 'protocol'], port['protocol'], ('tcp', 'udp'))
        if 'mode' in port:
            check.choice([*here, 'mode'], port['mode'], ('ingress', 'host'))


def _check_networks(check, parts, value):
    if isinstance(value, list):
        for i, item in enumerate(value):
            if check.typed([*parts, i], item, str):
                check.reference([*parts, i], item, 'networks')
        return
    if not isinstance(value, dict):
        check.add(parts, 'is not a list of network names or a mapping of them', value)
        return
    for name, options in check.names(parts, value):
        check.reference([*parts, name], name, 'networks')
        if options is None:
            continue
        given = check.mapping([*parts, name], options, ('aliases',))
        if 'aliases' in given:
            check.strings([*parts, name, 'aliases'], given['aliases'])


def _check_update(check, parts, value):
    allowed = ('parallelism', 'delay', 'failure_action', 'monitor', 'max_failure_ratio', 'order')
    config = check.mapping(parts, value, allowed)
    if 'parallelism' in config:
        check.integer([*parts, 'parallelism'], config['parallelism'], 0, MAX_REPLICAS)
    for key in ('delay', 'monitor'):
        if key in config:
            check.duration([*parts, key], config[key])
    if 'failure_action' in config:
        actions = ('continue', 'pause', 'rollback') if parts[-1] == 'update_config' else ('continue', 'pause')
        check.choice([*parts, 'failure_action'], config['failure_action'], actions)
    if 'max_failure_ratio' in config:
        ratio = config['max_failure_ratio']
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
            check.add([*parts, 'max_failure_ratio'], 'is not a number in 0..1', ratio)
    if 'order' in config:
        check.choice([*parts, 'order'], config['order'], ('start-first', 'stop-first'))


def _check_resources(check, parts, value):
    resources = check.mapping(parts, value, ('limits', 'reservations'))
    for key, allowed in (('limits', ('cpus', 'memory', 'pids')), ('reservations', ('cpus', 'memory'))):
        if key not in resources:
            continue
        here = [*parts, key]
        limits = check.mapping(here, resources[key], allowed)
        if 'cpus' in limits:
            cpus = limits['cpus']
            text = str(cpus) if isinstance(cpus, (int, float)) and not isinstance(cpus, bool) else cpus
            if not isinstance(text, str) or not CPUS.fullmatch(text) or Fraction(text) == 0:
                check.add([*here, 'cpus'], 'is not a number of CPUs like 0.5 or 2 (more than 0, at most 9 decimals)',
                          cpus)
        if 'memory' in limits:
            check.size([*here, 'memory'], limits['memory'])
        if 'pids' in limits:
            check.integer([*here, 'pids'], limits['pids'], 1, INT64)


def _check_deploy(check, parts, value):
    allowed = ('mode', 'replicas', 'endpoint_mode', 'placement', 'resources', 'restart_policy', 'update_config',
               'rollback_config', 'labels')
    deploy = check.mapping(parts, value, allowed)
    mode = deploy.get('mode', 'replicated')
    if 'mode' in deploy:
        check.choice([*parts, 'mode'], mode, MODES)
    if 'replicas' in deploy:
        check.integer([*parts, 'replicas'], deploy['replicas'], 0, MAX_REPLICAS)
        if mode in ('global', 'global-job'):
            check.add([*parts, 'replicas'], f'is only allowed with mode replicated or replicated-job (mode is {mode})',
                      shown=False)
    if 'endpoint_mode' in deploy:
        check.choice([*parts, 'endpoint_mode'], deploy['endpoint_mode'], ('vip', 'dnsrr'))
    if 'placement' in deploy:
        here = [*parts, 'placement']
        placement = check.mapping(here, deploy['placement'], ('constraints', 'preferences', 'max_replicas_per_node'))
        if 'constraints' in placement:
            check.strings([*here, 'constraints'], placement['constraints'])
        for i, item in check.items([*here, 'preferences'], placement.get('preferences', [])):
            preference = check.mapping([*here, 'preferences', i], item, ('spread',), required=('spread',))
            if 'spread' in preference:
                check.text([*here, 'preferences', i, 'spread'], preference['spread'])
        if 'max_replicas_per_node' in placement:
            check.integer([*here, 'max_replicas_per_node'], placement['max_replicas_per_node'], 1, MAX_REPLICAS)
    if 'resources' in deploy:
        _check_resources(check, [*parts, 'resources'], deploy['resources'])
    if 'restart_policy' in deploy:
        here = [*parts, 'restart_policy']
        policy = check.mapping(here, deploy['restart_policy'], ('condition', 'delay', 'max_attempts', 'window'))
        if 'condition' in policy:
            check.choice([*here, 'condition'], policy['condition'], ('none', 'on-failure', 'any'))
        for key in ('delay', 'window'):
            if key in policy:
                check.duration([*here, key], policy[key])
        if 'max_attempts' in policy:
            check.integer([*here, 'max_attempts'], policy['max_attempts'], 0, INT64)
    for key in ('update_config', 'rollback_config'):
        if key in deploy:
            _check_update(check, [*parts, key], deploy[key])
    if 'labels' in deploy:
        check.pairs([*parts, 'labels'], deploy['labels'], 'label', lambda p, v: _label_value(check, p, v))


def _check_healthcheck(check, parts, value):
    allowed = ('test', 'interval', 'timeout', 'retries', 'start_period', 'start_interval', 'disable')
    health = check.mapping(parts, value, allowed)
    test = health.get('test')
    if 'test' in health:
        check.strings([*parts, 'test'], test, single=True)
        if isinstance(test, list) and test and test[0] not in ('NONE', 'CMD', 'CMD-SHELL'):
            check.add([*parts, 'test', 0], 'is not NONE, CMD or CMD-SHELL (the first item of a test list)', test[0])
        elif test in ([], ''):
            check.add([*parts, 'test'], 'must not be empty', test)
    for key in ('interval', 'timeout', 'start_period', 'start_interval'):
        if key in health:
            check.duration([*parts, key], health[key])
    if 'retries' in health:
        check.integer([*parts, 'retries'], health['retries'], 0, 2 ** 31 - 1)
    if 'disable' in health and check.typed([*parts, 'disable'], health['disable'], bool):
        if health['disable'] and test not in (None, ['NONE']):
            check.add([*parts, 'disable'], 'is not allowed together with test (disable means test: [NONE])',
                      True)


def _check_ulimits(check, parts, value):
    for name, limit in (check.names(parts, value) if check.typed(parts, value, dict) else ()):
        here = [*parts, name]
        if _is_int(limit):
            check.integer(here, limit, 0, INT64)
            continue
        limits = check.mapping(here, limit, ('soft', 'hard'), required=('soft', 'hard'))
        for key in ('soft', 'hard'):
            if key in limits:
                check.integer([*here, key], limits[key], 0, INT64)
        if _is_int(limits.get('soft')) and _is_int(limits.get('hard')) and limits['soft'] > limits['hard']:
            check.add([*here, 'soft'], f'is more than hard ({limits["hard"]})', limits['soft'])


def _check_sysctls(check, parts, value):
    if isinstance(value, list):
        check.pairs(parts, value, 'name', None)
        names = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item or item.startswith('='):
                continue  # refused by pairs()
            name, _, setting = item.partition('=')
            if not setting:  # Compose would give it the value "", which no sysctl takes
                check.add([*parts, i], 'is not a "name=value" string (a sysctl needs a value)', item)
            names.append((i, name))
    else:
        check.pairs(parts, value, 'name', lambda p, v: _sysctl_value(check, p, v))
        names = [(name, name) for name in value if isinstance(name, str)] if isinstance(value, dict) else []
    for part, name in names:
        if not isinstance(name, str) or not SYSCTL_NAME.fullmatch(name):
            check.add([*parts, part], 'is not a sysctl name, like net.ipv4.tcp_keepalive_time', name)
        elif name not in SYSCTL_NAMES and not name.startswith(SYSCTL_PREFIXES):
            check.add([*parts, part], "is not a sysctl a task has its own copy of (Docker allows net.*, "
                                      "fs.mqueue.* and kernel's IPC ones; the others are the host's)", name)


def _sysctl_value(check, parts, value):
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        check.add(parts, 'is not a string or an integer', value)
    elif value == '':
        check.add(parts, 'is empty; a sysctl needs a value', value)


def _check_extra_hosts(check, parts, value):
    if isinstance(value, dict):
        for host, address in check.names(parts, value):
            check.text([*parts, host], address)
        return
    for i, item in check.items(parts, value):
        if not isinstance(item, str) or not re.fullmatch(r'[^:=\s]+[:=]\S+', item):
            check.add([*parts, i], 'is not a "host=ip" or "host:ip" string', item)


def _check_extension(check, parts, value):
    extension = check.mapping(parts, value, ('vip', 'backends', 'traffic_policy'))
    if 'vip' in extension:
        check.text([*parts, 'vip'], extension['vip'])
    if 'backends' in extension:
        check.strings([*parts, 'backends'], extension['backends'])
    if 'traffic_policy' in extension:
        here = [*parts, 'traffic_policy']
        for port, policy in (extension['traffic_policy'].items()
                             if check.typed(here, extension['traffic_policy'], dict) else ()):
            # A YAML key 8443 is an int: named as a key, not a list index.
            if not POLICY_PORT.fullmatch(str(port)):
                check.add([*here, str(port)], 'is not a published port like 8443 or 8443/tcp', shown=False)
            check.choice([*here, str(port)], policy, TRAFFIC_POLICIES)


def _check_dns(check, parts, value):
    check.strings(parts, value, single=True)
    # docker/cli drops a nameserver that is not an IP address without a word: refuse it here.
    if isinstance(value, str):
        items = [(parts, value)]
    else:
        items = [([*parts, i], v) for i, v in enumerate(value if isinstance(value, list) else ()) if isinstance(v, str)]
    for here, item in items:
        try:
            ipaddress.ip_address(item)
        except ValueError:
            check.add(here, 'is not an IP address (a nameserver)', item)


def _image(check, parts, value):
    if check.typed(parts, value, str) and not IMAGE.fullmatch(value):
        check.add(parts, 'is not an image reference (1 to 255 printable ASCII characters, no spaces)', value)


def _strings(check, parts, value):
    check.strings(parts, value)


def _command(check, parts, value):
    check.strings(parts, value, single=True)
    if isinstance(value, str):
        try:
            shlex.split(value)
        except ValueError as exc:
            check.add(parts, f'cannot be split like a shell command: {exc}', value)


# The checks of each supported field (Compose's names), in the order of docs/description.md.
FIELDS = {
    'image': _image,
    'command': _command,
    'entrypoint': _command,
    'environment': lambda c, p, v: c.pairs(p, v, 'NAME', lambda q, w: _scalar_value(c, q, w)),
    'secrets': lambda c, p, v: _check_files(c, p, v, 'secrets'),
    'configs': lambda c, p, v: _check_files(c, p, v, 'configs'),
    'volumes': _check_volumes,
    'ports': _check_ports,
    'networks': _check_networks,
    'deploy': _check_deploy,
    'healthcheck': _check_healthcheck,
    'labels': lambda c, p, v: c.pairs(p, v, 'label', lambda q, w: _label_value(c, q, w)),
    'user': lambda c, p, v: c.text(p, v),
    'working_dir': lambda c, p, v: c.text(p, v),
    'hostname': lambda c, p, v: c.text(p, v),
    'init': lambda c, p, v: c.typed(p, v, bool),
    'read_only': lambda c, p, v: c.typed(p, v, bool),
    'cap_add': _strings,
    'cap_drop': _strings,
    'sysctls': _check_sysctls,
    'ulimits': _check_ulimits,
    'stop_grace_period': lambda c, p, v: c.duration(p, v),
    'stop_signal': lambda c, p, v: c.text(p, v),
    'logging': lambda c, p, v: _check_logging(c, p, v),
    'dns': _check_dns,
    'extra_hosts': _check_extra_hosts,
    EXTENSION: _check_extension,
}


def _check_logging(check, parts, value):
    logging = check.mapping(parts, value, ('driver', 'options'))
    if 'driver' in logging:
        check.text([*parts, 'driver'], logging['driver'])
    if 'options' in logging:
        options = logging['options']
        if check.typed([*parts, 'options'], options, dict):
            for key, item in check.names([*parts, 'options'], options):
                _scalar_value(check, [*parts, 'options', key], item)


def check_service(name, service, path, report, *, networks=None, secrets=None, configs=None):
    """Add every problem of one service to ``report`` (an object with ``.add(line)``).
    The rule for ``name`` itself is the caller's (a description's and a compose file's differ).

    ``path`` is where the service stands (['swarm', 'services', 'web'], or a compose file's
    ['services', 'web']). ``networks``, ``secrets`` and ``configs`` are the names that may be
    referenced (sets); None skips that check (a compose file's own declarations are checked
    by its caller)."""
    check = _Check(path, report, {'networks': networks, 'secrets': secrets, 'configs': configs})
    if not isinstance(service, dict):
        check.add([], 'is not a mapping', service)
        return
    for key, value in service.items():
        if key in FIELDS:
            FIELDS[key](check, [key], value)
        elif key in V1_KEYS:
            check.add([key], f'is format v1; in format v2 (Compose\'s shape) write {V1_KEYS[key]}', shown=False)
        elif key in IGNORED:
            instead = f'; {IGNORED[key]}' if IGNORED[key] else ''
            check.add([key], f'is ignored by swarm mode (docker stack deploy){instead}', shown=False)
        elif isinstance(key, str) and key.startswith('x-'):
            # Another tool's extension field: Compose and docker stack deploy ignore it, and so do we,
            # unless it is a misspelling of ours.
            if difflib.get_close_matches(key, [EXTENSION], n=1, cutoff=0.8):
                check.add([key], f'is not {EXTENSION} (the extension key of this toolkit); did you mean it?',
                          shown=False)
        else:
            close = difflib.get_close_matches(str(key), list(FIELDS), n=1)
            hint = f'; did you mean {close[0]}?' if close else ''
            check.add([key], f'unknown key (a service takes: {", ".join(FIELDS)}){hint}', shown=False)
    deploy = service.get('deploy') if isinstance(service.get('deploy'), dict) else {}
    if deploy.get('endpoint_mode') == 'dnsrr' and isinstance(service.get('ports'), list):
        for i, port in enumerate(service['ports']):
            mode = port.get('mode', 'ingress') if isinstance(port, dict) else 'ingress'
            if mode == 'ingress':
                shown = 'ingress' if isinstance(port, dict) and 'mode' in port else 'ingress (the default)'
                check.add(['ports', i, 'mode'], f'{shown} is not allowed with deploy.endpoint_mode dnsrr (Docker '
                          'refuses ingress ports without a VIP); use mode: host or deploy.endpoint_mode: vip',
                          shown=False)
    backends = isinstance(service.get(EXTENSION), dict) and 'backends' in service[EXTENSION]
    if 'image' not in service and not backends:
        check.add([], f'needs image (container tasks) or {EXTENSION}.backends (static addresses)', shown=False)
    elif 'image' in service and backends:
        check.add([EXTENSION, 'backends'], 'is not allowed together with image (a service runs either '
                                           'containers or static backends)', shown=False)


# ---------------------------------------------------------------- one normal form


def _size_bytes(value):
    if _is_int(value):
        return value
    number, unit = SIZE.fullmatch(value).groups()
    return int(Fraction(number) * UNITS[(unit or '').lower()[:1]])


def _nano_cpus(value):
    return int(Fraction(str(value)) * 10 ** 9)


def _ns(value):
    return duration.duration_ns(value)


def _split(value):
    return shlex.split(value) if isinstance(value, str) else list(value)


def _pairs(value, missing):
    """Compose's map or list of "key=value" -> a dict; a list item without "=" gets ``missing``."""
    if isinstance(value, dict):
        return {key: item if item is None else _text(item) for key, item in value.items()}
    out = {}
    for item in value or ():
        key, equals, rest = item.partition('=')
        out[key] = rest if equals else missing
    return out


def _text(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


def _caps(add, drop):
    """docker/cli's effective cap_add and cap_drop: upper case with the CAP_ prefix, sorted,
    ALL alone when given; a capability both added and dropped is added."""
    def normal(caps):
        names = {c.strip().upper() for c in caps or ()}
        names = {c if c == 'ALL' or c.startswith('CAP_') else 'CAP_' + c for c in names}
        return ['ALL'] if 'ALL' in names else sorted(names)
    added, dropped = normal(add), normal(drop)
    return added, [c for c in dropped if c not in added]


def _files(value, default_dir):
    out = []
    for given in value or ():
        item = {'source': given} if isinstance(given, str) else given
        out.append({'source': item['source'], 'target': item.get('target', item['source']),
                    'uid': item.get('uid', '0'), 'gid': item.get('gid', '0'),
                    'mode': file_mode(item.get('mode', DEFAULT_FILE_MODE)), 'default_dir': default_dir})
    return out


def _ports(value):
    out = []
    for item in value or ():
        if isinstance(item, dict):
            port = {'target': item['target'], 'protocol': item.get('protocol', 'tcp'),
                    'mode': item.get('mode', 'ingress')}
            if 'published' in item:
                port['published'] = int(item['published'])
            out.append(port)
        else:
            out.extend(_short_port(item))
    # Sorted on the published port first, as docker stack deploy sorts them; then on the rest, so that
    # the order written never matters (two ports without a published one included).
    return sorted(out, key=lambda p: (p.get('published', 0), p['target'], p['protocol'], p['mode']))


def _networks(value):
    if isinstance(value, list):
        return {name: [] for name in value}
    return {name: list((options or {}).get('aliases', ())) for name, options in (value or {}).items()}


def ports(service):
    """A service's ports in the long syntax (protocol and mode filled in), sorted as docker stack deploy does."""
    return _ports(service.get('ports'))


def volume(given):
    """One entry of a service's volumes in the long syntax."""
    return _short_volume(given) if isinstance(given, str) else given


def networks(service):
    """{network name: [aliases]} of a service, in the order written (the first one holds a fabric VIP)."""
    return _networks(service.get('networks'))


def _extra_hosts(value):
    if isinstance(value, dict):
        return [(host, value[host]) for host in sorted(value)]
    out = []
    for item in value or ():
        # host=ip first: an IPv6 address has colons of its own.
        host, _, address = item.partition('=') if '=' in item else item.partition(':')
        out.append((host, address))
    return out


def _ulimits(value):
    return {name: (limit, limit) if _is_int(limit) else (limit['soft'], limit['hard'])
            for name, limit in sorted((value or {}).items())}


def _health_test(health):
    if health.get('disable'):
        return ['NONE']
    test = health.get('test')
    return ['CMD-SHELL', test] if isinstance(test, str) else test


def _valid(name, service, **known):
    lines = Lines()
    check_service(name, service, ['services', name], lines, **known)
    if lines.lines:
        raise ValueError(f'Cannot convert service {name}: ' + '; '.join(lines.lines))


# ---------------------------------------------------------------- the Engine API's ServiceSpec


def _scope(stack, name):
    return f'{stack}_{name}' if stack else name


def _file_refs(files, objects, stack, kind):
    refs = []
    for item in files:
        obj = (objects or {}).get(item['source'], {})
        ref = {'File': {'Name': item['target'], 'UID': item['uid'], 'GID': item['gid'], 'Mode': item['mode']},
               f'{kind}Name': obj.get('name', _scope(stack, item['source']))}
        if 'id' in obj:
            ref[f'{kind}ID'] = obj['id']
        refs.append(ref)
    # docker stack deploy sorts them by name, so a reordering does not roll the service.
    return sorted(refs, key=lambda r: r[f'{kind}Name'])


def _mounts(value, stack, volumes):
    mounts = []
    for given in value or ():
        item = _short_volume(given) if isinstance(given, str) else given
        mount = {'Type': item['type'], 'Target': item['target']}
        if item.get('read_only'):
            mount['ReadOnly'] = True
        options = {}
        if item.get('volume', {}).get('nocopy'):
            options['NoCopy'] = True
        source = item.get('source')
        if item['type'] == 'volume' and source:
            if source in (volumes or {}):
                mount['Source'] = volumes[source]
            elif stack:
                # As docker stack deploy does with a volume of the file: scoped and labelled.
                mount['Source'] = _scope(stack, source)
                options['Labels'] = {STACK_NAMESPACE: stack}
            else:
                mount['Source'] = source
        elif source:
            mount['Source'] = source
        if options:
            mount['VolumeOptions'] = options
        if 'propagation' in item.get('bind', {}):
            mount['BindOptions'] = {'Propagation': item['bind']['propagation']}
        tmpfs = item.get('tmpfs', {})
        if tmpfs:
            mount['TmpfsOptions'] = {**({'SizeBytes': _size_bytes(tmpfs['size'])} if 'size' in tmpfs else {}),
                                     **({'Mode': file_mode(tmpfs['mode'])} if 'mode' in tmpfs else {})}
        mounts.append(mount)
    return mounts


def _update_config(config):
    # docker stack deploy's default parallelism is 1 (the daemon's would be 0, all at once).
    out = {'Parallelism': config.get('parallelism', 1)}
    for key, field in (('delay', 'Delay'), ('monitor', 'Monitor')):
        if key in config:
            out[field] = _ns(config[key])
    for key, field in (('failure_action', 'FailureAction'), ('max_failure_ratio', 'MaxFailureRatio'),
                       ('order', 'Order')):
        if key in config:
            out[field] = config[key]
    return out


def _mode(deploy):
    mode, replicas = deploy.get('mode', 'replicated'), deploy.get('replicas')
    if mode == 'global':
        return {'Global': {}}
    if mode == 'global-job':
        return {'GlobalJob': {}}
    if mode == 'replicated-job':
        return {'ReplicatedJob': {} if replicas is None else {'MaxConcurrent': replicas, 'TotalCompletions': replicas}}
    return {'Replicated': {} if replicas is None else {'Replicas': replicas}}


def _resources(resources):
    out = {}
    for key, field in (('limits', 'Limits'), ('reservations', 'Reservations')):
        if key not in resources:
            continue
        given, limits = resources[key], {}
        if 'cpus' in given:
            limits['NanoCPUs'] = _nano_cpus(given['cpus'])
        if 'memory' in given:
            limits['MemoryBytes'] = _size_bytes(given['memory'])
        if 'pids' in given:
            limits['Pids'] = given['pids']
        out[field] = limits
    return out


def _placement(placement):
    out = {}
    if 'constraints' in placement:
        out['Constraints'] = list(placement['constraints'])
    if 'preferences' in placement:
        out['Preferences'] = [{'Spread': {'SpreadDescriptor': p['spread']}} for p in placement['preferences']]
    if 'max_replicas_per_node' in placement:
        out['MaxReplicas'] = placement['max_replicas_per_node']
    return out


def _restart_policy(policy):
    out = {}
    if 'condition' in policy:
        out['Condition'] = policy['condition']
    for key, field in (('delay', 'Delay'), ('window', 'Window')):
        if key in policy:
            out[field] = _ns(policy[key])
    if 'max_attempts' in policy:
        out['MaxAttempts'] = policy['max_attempts']
    return out


def _healthcheck(health):
    out = {}
    test = _health_test(health)
    if test is not None:
        out['Test'] = list(test)
    for key, field in (('interval', 'Interval'), ('timeout', 'Timeout'), ('start_period', 'StartPeriod'),
                       ('start_interval', 'StartInterval')):
        if key in health and not health.get('disable'):
            out[field] = _ns(health[key])
    if 'retries' in health and not health.get('disable'):
        out['Retries'] = health['retries']
    return out


def _labels(value, stack, **extra):
    labels = {k: '' if v is None else v for k, v in _pairs(value, '').items()}
    if stack:
        labels.update({STACK_NAMESPACE: stack, **extra})
    return labels


def _container(service, stack, secrets, configs, volumes):
    spec = {'Image': service['image']}
    simple = (('entrypoint', 'Command', _split), ('command', 'Args', _split), ('user', 'User', str),
              ('working_dir', 'Dir', str), ('hostname', 'Hostname', str), ('init', 'Init', bool),
              ('stop_signal', 'StopSignal', str), ('stop_grace_period', 'StopGracePeriod', _ns))
    for key, field, convert in simple:
        if key in service:
            spec[field] = convert(service[key])
    if service.get('read_only'):
        spec['ReadOnly'] = True
    if 'environment' in service:
        env = _pairs(service['environment'], None)
        spec['Env'] = sorted(key if value is None else f'{key}={value}' for key, value in env.items())
    labels = _labels(service.get('labels'), stack)
    if labels:
        spec['Labels'] = labels
    if 'volumes' in service:
        spec['Mounts'] = _mounts(service['volumes'], stack, volumes)
    if 'secrets' in service:
        spec['Secrets'] = _file_refs(_files(service['secrets'], '/run/secrets/'), secrets, stack, 'Secret')
    if 'configs' in service:
        spec['Configs'] = _file_refs(_files(service['configs'], '/'), configs, stack, 'Config')
    if 'healthcheck' in service:
        spec['Healthcheck'] = _healthcheck(service['healthcheck'])
    if 'cap_add' in service or 'cap_drop' in service:
        added, dropped = _caps(service.get('cap_add'), service.get('cap_drop'))
        if added:
            spec['CapabilityAdd'] = added
        if dropped:
            spec['CapabilityDrop'] = dropped
    if 'sysctls' in service:
        spec['Sysctls'] = {key: _text(value) for key, value in _pairs(service['sysctls'], '').items()}
    if 'ulimits' in service:
        spec['Ulimits'] = [{'Name': n, 'Soft': s, 'Hard': h} for n, (s, h) in _ulimits(service['ulimits']).items()]
    if 'dns' in service:
        dns = service['dns']
        spec['DNSConfig'] = {'Nameservers': [dns] if isinstance(dns, str) else list(dns)}
    if 'extra_hosts' in service:
        # Swarmkit's notation, as in /etc/hosts: "ip host".
        spec['Hosts'] = [f'{address} {host}' for host, address in _extra_hosts(service['extra_hosts'])]
    return spec


def service_spec(name, service, *, networks=None, secrets=None, configs=None, volumes=None, stack=None):
    """The Engine API ServiceSpec of one valid service (raises ValueError, naming every problem,
    for one that check_service refuses).

    ``networks`` maps a network name to the Docker network (ID or name) to attach;
    ``secrets`` and ``configs`` map an object name to {'name': versioned Docker name, 'id': ID};
    ``volumes`` maps a named volume to its Docker volume name. Without a mapping, a name is used
    as it is, or with ``stack`` scoped as ``<stack>_<name>``, as docker stack deploy does."""
    _valid(name, service)
    if 'image' not in service:
        raise ValueError(f'Cannot convert service {name}: it has {EXTENSION}.backends and no image '
                         '(static backends run no containers)')
    deploy = service.get('deploy', {})
    task = {'ContainerSpec': _container(service, stack, secrets, configs, volumes)}
    if 'resources' in deploy:
        task['Resources'] = _resources(deploy['resources'])
    if 'restart_policy' in deploy:
        task['RestartPolicy'] = _restart_policy(deploy['restart_policy'])
    if 'placement' in deploy:
        task['Placement'] = _placement(deploy['placement'])
    if 'networks' in service:
        attached = []
        for network, aliases in _networks(service['networks']).items():
            target = (networks or {}).get(network, _scope(stack, network))
            # docker stack deploy adds the service's name in the file as an alias on each network.
            names = [*aliases, name] if stack and name not in aliases else aliases
            attached.append({'Target': target, **({'Aliases': names} if names else {})})
        task['Networks'] = sorted(attached, key=lambda n: n['Target'])
    if 'logging' in service:
        logging = service['logging']
        task['LogDriver'] = {k: v for k, v in (('Name', logging.get('driver')), ('Options', _pairs(
            logging.get('options'), ''))) if v}
    spec = {'Name': _scope(stack, name), 'TaskTemplate': task, 'Mode': _mode(deploy)}
    labels = _labels(deploy.get('labels'), stack, **{STACK_IMAGE: service['image']})
    if labels:
        spec['Labels'] = labels
    for key, field in (('update_config', 'UpdateConfig'), ('rollback_config', 'RollbackConfig')):
        if key in deploy:
            spec[field] = _update_config(deploy[key])
    endpoint = {}
    if 'endpoint_mode' in deploy:
        endpoint['Mode'] = deploy['endpoint_mode']
    if 'ports' in service:
        endpoint['Ports'] = [{'Protocol': p['protocol'], 'TargetPort': p['target'], 'PublishMode': p['mode'],
                              **({'PublishedPort': p['published']} if 'published' in p else {})}
                             for p in _ports(service['ports'])]
    if endpoint:
        spec['EndpointSpec'] = endpoint
    return spec


# ---------------------------------------------------------------- the user's view, for diffs


def format_size(count):
    """536870912 -> '512m'; a size that is no whole number of k, m or g stays bytes."""
    for unit in ('g', 'm', 'k'):
        if count and count % UNITS[unit] == 0:
            return f'{count // UNITS[unit]}{unit}'
    return count


def _cpus_text(value):
    nano = _nano_cpus(value)
    whole, fraction = divmod(nano, 10 ** 9)
    digits = f'{fraction:09d}'.rstrip('0')
    return f'{whole}.{digits}' if digits else str(whole)


def _flat(fields, prefix, value):
    for key, item in value.items():
        fields[f'{prefix}.{key}'] = item


def _deploy_fields(fields, deploy):
    mode = deploy.get('mode', 'replicated')
    fields['deploy.mode'] = mode
    if mode in ('replicated', 'replicated-job'):
        fields['deploy.replicas'] = deploy.get('replicas', 1)
    fields['deploy.endpoint_mode'] = deploy.get('endpoint_mode', 'vip')
    placement = deploy.get('placement', {})
    for key in ('constraints', 'max_replicas_per_node'):
        if key in placement:
            fields[f'deploy.placement.{key}'] = placement[key]
    if 'preferences' in placement:
        fields['deploy.placement.preferences'] = [f'spread={p["spread"]}' for p in placement['preferences']]
    for kind, limits in deploy.get('resources', {}).items():
        for key, item in limits.items():
            shown = {'cpus': _cpus_text, 'memory': lambda v: format_size(_size_bytes(v))}.get(key, lambda v: v)
            fields[f'deploy.resources.{kind}.{key}'] = shown(item)
    for section in ('restart_policy', 'update_config', 'rollback_config'):
        config = dict(deploy.get(section, {}))
        if section != 'restart_policy' and section in deploy:
            config.setdefault('parallelism', 1)
        for key, item in config.items():
            is_time = key in ('delay', 'window', 'monitor')
            fields[f'deploy.{section}.{key}'] = duration.format_ns(_ns(item)) if is_time else item
    _flat(fields, 'deploy.labels', _labels(deploy.get('labels'), None))


def service_fields(service):
    """A flat view of one valid service in Compose's names and values, defaults filled in where
    Docker has one (deploy.mode, deploy.replicas, a port's protocol and mode, a secret's
    target, uid, gid and mode), so that a written default and a left-out one compare equal.
    Lists whose order means nothing to Docker are sorted; secrets show only object names."""
    fields = {}
    for key in ('image', 'user', 'working_dir', 'hostname', 'init', 'read_only', 'stop_signal'):
        if key in service:
            fields[key] = service[key]
    for key in ('command', 'entrypoint'):
        if key in service:
            fields[key] = _split(service[key])
    if 'stop_grace_period' in service:
        fields['stop_grace_period'] = duration.format_ns(_ns(service['stop_grace_period']))
    _flat(fields, 'environment', _pairs(service.get('environment'), None))
    _flat(fields, 'labels', _labels(service.get('labels'), None))
    for kind, default_dir in (('secrets', '/run/secrets/'), ('configs', '/')):
        files = sorted(_files(service.get(kind), default_dir), key=lambda f: (f['source'], f['target']))
        for i, item in enumerate(files):
            target = item['target'] if item['target'].startswith('/') else item['default_dir'] + item['target']
            fields[f'{kind}[{i}]'] = f'{item["source"]} -> {target} uid={item["uid"]} gid={item["gid"]} ' \
                                     f'mode={item["mode"]:04o}'
    for i, item in enumerate(_short_volume(v) if isinstance(v, str) else v for v in service.get('volumes', ())):
        words = [item['type'], f'{item["source"]}:{item["target"]}' if item.get('source') else item['target']]
        words += ['ro'] if item.get('read_only') else []
        words += ['nocopy'] if item.get('volume', {}).get('nocopy') else []
        words += [item['bind']['propagation']] if 'propagation' in item.get('bind', {}) else []
        tmpfs = item.get('tmpfs', {})
        words += [f'size={format_size(_size_bytes(tmpfs["size"]))}'] if 'size' in tmpfs else []
        words += [f'mode={file_mode(tmpfs["mode"]):04o}'] if 'mode' in tmpfs else []
        fields[f'volumes[{i}]'] = ' '.join(words)
    for i, port in enumerate(_ports(service.get('ports'))):
        published = f'{port["published"]}:' if 'published' in port else ''
        fields[f'ports[{i}]'] = f'{published}{port["target"]}/{port["protocol"]} {port["mode"]}'
    if 'networks' in service:
        attached = _networks(service['networks'])
        fields['networks'] = sorted(attached)
        for network, aliases in sorted(attached.items()):
            if aliases:
                fields[f'networks.{network}.aliases'] = aliases
    _deploy_fields(fields, service.get('deploy', {}))
    health = service.get('healthcheck')
    if health is not None:
        if _health_test(health) is not None:
            fields['healthcheck.test'] = _health_test(health)
        for key in ('interval', 'timeout', 'start_period', 'start_interval'):
            if key in health and not health.get('disable'):
                fields[f'healthcheck.{key}'] = duration.format_ns(_ns(health[key]))
        if 'retries' in health and not health.get('disable'):
            fields['healthcheck.retries'] = health['retries']
    if 'cap_add' in service or 'cap_drop' in service:
        fields['cap_add'], fields['cap_drop'] = _caps(service.get('cap_add'), service.get('cap_drop'))
    _flat(fields, 'sysctls', {k: _text(v) for k, v in _pairs(service.get('sysctls'), '').items()})
    _flat(fields, 'ulimits', {n: f'{s}:{h}' for n, (s, h) in _ulimits(service.get('ulimits')).items()})
    logging = service.get('logging', {})
    if 'driver' in logging:
        fields['logging.driver'] = logging['driver']
    _flat(fields, 'logging.options', _pairs(logging.get('options'), ''))
    if 'dns' in service:
        fields['dns'] = [service['dns']] if isinstance(service['dns'], str) else list(service['dns'])
    if 'extra_hosts' in service:
        fields['extra_hosts'] = [f'{host}={address}' for host, address in _extra_hosts(service['extra_hosts'])]
    extension = service.get(EXTENSION, {})
    for key in ('vip', 'backends'):
        if key in extension:
            fields[f'{EXTENSION}.{key}'] = extension[key]
    for port, policy in extension.get('traffic_policy', {}).items():
        key = str(port) if '/' in str(port) else f'{port}/tcp'
        fields[f'{EXTENSION}.traffic_policy.{key}'] = policy
    return fields


def diff_fields(before, after):
    """[(field, old, new)] of two service_fields() views, sorted by field; None where a field is absent."""
    return [(key, before.get(key), after.get(key)) for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)]
