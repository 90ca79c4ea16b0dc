# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A stack from a Compose file (issue 14, point 3): ``swarm.stacks.<stack>: {compose, variables}``.

Controller only (PyYAML, through description.load_source). load_stack() reads one compose file,
interpolates ``${VAR}`` from the description's ``variables`` only (never the controller's
environment), and checks it as ``docker stack deploy`` would take it, with the toolkit's stricter
rules: every network is an overlay of the description (``external: true``), and a variable that
is not set is refused where Compose would put an empty string.

Every problem is one line ``<file>: <yaml.path inside the file>: <rule>``; problems of the
description's own ``variables`` are ``swarm.stacks.<stack>.variables.<NAME>: ...``.

Paths: the compose file is relative to the inventory directory (``base_dir``); a secret's or a
config's ``file:`` is relative to the compose file's directory, as Compose has it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re

from .compose import STACK_NAMESPACE, _short_volume, check_service, show, where
from .description import MAX_DEPTH, SERVICE_NAME, DescriptionSyntaxError, load_source, yaml_path
from .plan import object_entry

# Docker's limit on a service name (swarmkit's controlapi), here "<stack>_<service>".
MAX_SERVICE_NAME = 63
SERVICE_NAME_RULE = ('must be 1 to 63 lowercase letters, digits or "-", starting with a letter and ending with '
                     "a letter or digit (Docker's service-name rule, narrowed to a DNS name)")
_SERVICE_NAME = re.compile(SERVICE_NAME)
# The Compose Specification's variable name (interpolation).
VARIABLE = re.compile(r'[_A-Za-z][_A-Za-z0-9]*', re.ASCII)
# The operators of ${NAME<op><word>}, longest first.
OPERATORS = (':-', ':?', ':+', '-', '?', '+')

TOP_LEVEL = ('version', 'name', 'services', 'networks', 'volumes', 'secrets', 'configs')
NETWORK_RULE = 'networks the file uses must be overlays of the description, declared with external: true'
NO_NETWORKS = "needs networks: a stack's services attach to overlays of the description"
VOLUME_KEYS = ('driver', 'driver_opts', 'labels', 'external', 'name')
FILE_KEYS = {'secrets': ('file', 'external', 'name'), 'configs': ('file', 'content', 'external', 'name')}
# Keys of secrets and configs that Compose has and this toolkit does not take, and why.
REFUSED_FILE_KEYS = {
    'environment': 'is not supported: the value would come from the environment of the controller that '
                   'deploys; write it to a file next to the compose file and give file',
    'driver': 'is not supported: secret and config drivers (plugins) are not used by this toolkit; give file',
    'driver_opts': 'is not supported: secret and config drivers (plugins) are not used by this toolkit; give file',
    'template_driver': 'is not supported: the content is taken as written (interpolated from variables)',
    'labels': 'is not supported on secrets and configs by this toolkit',
}

# Values that must be integers or booleans, where a whole value may come from a variable:
# "replicas: ${REPLICAS}" is the string "3" after interpolation, and Compose casts it, as here.
# A value written as a quoted string stays one (check_service says to unquote it).
_CASTS = {
    ('services', '*', 'deploy', 'replicas'): int,
    ('services', '*', 'deploy', 'placement', 'max_replicas_per_node'): int,
    ('services', '*', 'deploy', 'resources', 'limits', 'pids'): int,
    ('services', '*', 'deploy', 'restart_policy', 'max_attempts'): int,
    ('services', '*', 'deploy', 'update_config', 'parallelism'): int,
    ('services', '*', 'deploy', 'rollback_config', 'parallelism'): int,
    ('services', '*', 'healthcheck', 'retries'): int,
    ('services', '*', 'healthcheck', 'disable'): bool,
    ('services', '*', 'ports', '*', 'target'): int,
    ('services', '*', 'ports', '*', 'published'): int,
    ('services', '*', 'init'): bool,
    ('services', '*', 'read_only'): bool,
    ('networks', '*', 'external'): bool,
    ('volumes', '*', 'external'): bool,
    ('secrets', '*', 'external'): bool,
    ('configs', '*', 'external'): bool,
}
_INTEGER = re.compile(r'-?[0-9]+', re.ASCII)


@dataclasses.dataclass
class Stack:
    """One compose file, read and checked. Use it only when ``errors`` is empty.

    ``services``: {'<stack>_<service>': {'short_name': service, 'service': the interpolated service}};
    ``networks``: {key in the file: the description's overlay};
    ``secrets``, ``configs``: {key: {'name', 'external', 'file', 'content'}} ('name' is Docker's);
    ``volumes``: {key: {'name', 'external', 'driver', 'driver_opts', 'labels'}}.
    """

    name: str
    file: str
    errors: list = dataclasses.field(default_factory=list)
    services: dict = dataclasses.field(default_factory=dict)
    networks: dict = dataclasses.field(default_factory=dict)
    secrets: dict = dataclasses.field(default_factory=dict)
    configs: dict = dataclasses.field(default_factory=dict)
    volumes: dict = dataclasses.field(default_factory=dict)


class _FileReport:
    """check_service's report for one compose file: each line gets the file's name in front.
    A value that could not be interpolated is refused once: other lines about it are noise."""

    def __init__(self, shown):
        self.shown, self.found, self.suppressed = shown, [], set()

    def add(self, line):
        self.found.append(f'{self.shown}: {line}')

    def at(self, parts, rule, value=None, shown=True):
        """A problem at a path inside the file; the value is shown unless ``shown`` is False."""
        self.add(f'{where(parts)}: {show(value) + " " if shown else ""}{rule}')

    def refuse(self, parts, rule, value):
        self.at(parts, rule, value)
        self.suppressed.add((where(parts), self.found[-1]))

    @property
    def lines(self):
        def hidden(line):
            return any(line != kept and line.startswith(tuple(f'{self.shown}: {path}{end}' for end in (': ', '.', '[')))
                       for path, kept in self.suppressed)
        return [line for line in self.found if not hidden(line)]


# ---------------------------------------------------------------- interpolation


class InterpolationError(ValueError):
    """A string that cannot be interpolated; the message is the rule it breaks."""


def _closing(text, start):
    """The index of the "}" that closes a "${" whose body starts at ``start``, or None."""
    depth, i = 0, start
    while i < len(text):
        if text.startswith('$$', i):
            i += 2
            continue
        if text.startswith('${', i):
            depth += 1
            i += 2
            continue
        if text[i] == '}':
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return None


class _Interpolator:
    """The Compose Specification's interpolation, from one mapping of variables."""

    def __init__(self, variables, origin):
        self.variables, self.origin = variables, origin

    def expand(self, text):
        """(the text with every variable substituted, whether any was); raises InterpolationError."""
        out, used, i = [], False, 0
        while True:
            j = text.find('$', i)
            if j < 0:
                out.append(text[i:])
                return ''.join(out), used
            out.append(text[i:j])
            after = text[j + 1:j + 2]
            if after == '$':
                out.append('$')
                i = j + 2
            elif after == '{':
                end = _closing(text, j + 2)
                if end is None:
                    raise InterpolationError('has "${" without its closing "}"')
                out.append(self._braced(text[j + 2:end]))
                used, i = True, end + 1
            else:
                match = VARIABLE.match(text, j + 1)
                if not match:
                    raise InterpolationError('has a "$" that starts no variable; write $$ for a literal $')
                out.append(self._required(match.group(), f'${match.group()}'))
                used, i = True, match.end()

    def _required(self, name, written):
        if name not in self.variables:
            raise InterpolationError(
                f'uses the variable {name}, which {self.origin} does not set; set it there or write '
                f'${{{name}:-default}} (Compose would put an empty string for {written})')
        return self.variables[name]

    def _braced(self, body):
        match = VARIABLE.match(body)
        if not match:
            raise InterpolationError(f'has ${{{body}}}: {body or "nothing"} is not a variable name (letters, '
                                     'digits and "_", not starting with a digit)')
        name, rest = match.group(), body[match.end():]
        if not rest:
            return self._required(name, f'${{{name}}}')
        operator = next((op for op in OPERATORS if rest.startswith(op)), None)
        if operator is None:
            raise InterpolationError(f'has ${{{body}}}, which is none of ${{NAME}}, ${{NAME:-default}}, '
                                     '${NAME-default}, ${NAME:?message}, ${NAME?message}, ${NAME:+replacement} '
                                     'or ${NAME+replacement}')
        word = rest[len(operator):]
        value = self.variables.get(name)
        # With ":", an empty value counts as unset; without, only a missing one does.
        present = value is not None and (value != '' or not operator.startswith(':'))
        if operator.endswith('-'):
            return value if present else self.expand(word)[0]
        if operator.endswith('+'):
            return self.expand(word)[0] if present else ''
        if present:
            return value
        why = 'is empty' if value == '' else f'is not set in {self.origin}'
        text = self.expand(word)[0]
        raise InterpolationError(f'needs the variable {name}, which {why}' + (f': {text}' if text else ''))


def expand(text, variables, origin='the variables'):
    """One string interpolated from ``variables`` (a mapping of strings); raises InterpolationError
    with the rule it breaks. ``origin`` names where the variables are set, for messages."""
    return _Interpolator(variables, origin).expand(text)[0]


def _cast(parts, value):
    """A whole value substituted from a variable, as the type the field takes (see _CASTS)."""
    for pattern, kind in _CASTS.items():
        if len(pattern) == len(parts) and all(p in ('*', q) for p, q in zip(pattern, parts, strict=True)):
            if kind is int and _INTEGER.fullmatch(value):
                return int(value)
            if kind is bool and value in ('true', 'false'):
                return value == 'true'
    return value


def interpolate(data, variables, report, origin='the variables'):
    """A copy of ``data`` with every string value interpolated (keys as written). A problem is
    added to ``report`` at its path, and the value kept as written."""

    interpolator = _Interpolator(variables, origin)

    def walk(value, parts):
        if len(parts) > MAX_DEPTH:
            report.at(parts, f'nests deeper than {MAX_DEPTH} levels (a YAML alias that refers to itself?)',
                      shown=False)
            return None
        if isinstance(value, dict):
            return {key: walk(item, [*parts, key]) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item, [*parts, i]) for i, item in enumerate(value)]
        if not isinstance(value, str):
            return value
        try:
            text, used = interpolator.expand(value)
        except InterpolationError as exc:
            report.refuse(parts, str(exc), value)
            return value
        return _cast(parts, text) if used else text

    return walk(data, [])


def _variables(stack_name, variables, errors):
    """The description's variables as strings; problems go to ``errors`` (description paths)."""
    here = ['stacks', stack_name, 'variables']
    if variables is None:
        return {}
    if not isinstance(variables, dict):
        errors.append(f'{yaml_path(here)}: {show(variables)} is not a mapping of NAME: value')
        return {}
    out = {}
    for name, value in variables.items():
        path = yaml_path([*here, name])
        if not isinstance(name, str) or not VARIABLE.fullmatch(name):
            errors.append(f'{path}: is not a variable name (letters, digits and "_", not starting with a digit)')
        elif isinstance(value, bool):
            out[name] = 'true' if value else 'false'
        elif isinstance(value, (str, int, float)):
            out[name] = str(value)
        else:
            errors.append(f'{path}: {show(value)} is not a string, a number or a boolean (a variable is '
                          'substituted into text)')
    return out


# ---------------------------------------------------------------- the file's sections


def _names(report, section, value):
    """The (key, definition) pairs of a top-level section; [] when it is not a mapping."""
    if value is None:
        return []
    if not isinstance(value, dict):
        report.at([section], 'is not a mapping', value)
        return []
    items = []
    for key, item in value.items():
        if isinstance(key, str):
            items.append((key, item))
        else:
            report.at([section, str(key)], f'key {show(key)} is not a string; quote it', shown=False)
    return items


def _definition(report, parts, value, allowed, refused=None):
    """A mapping of one definition (null is {}), its unknown keys refused; None when not a mapping."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        report.at(parts, 'is not a mapping', value)
        return None
    for key in value:
        if isinstance(key, str) and key.startswith('x-'):
            continue
        if refused and key in refused:
            report.at([*parts, key], refused[key], shown=False)
        elif key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f'; did you mean {close[0]}?' if close else ''
            report.at([*parts, str(key)], f'unknown key (allowed: {", ".join(allowed)}){hint}', shown=False)
    return value


def _external(report, parts, definition):
    value = definition.get('external', False)
    if isinstance(value, dict):
        report.at([*parts, 'external'], 'is the obsolete form external: {name: ...}; write external: true and '
                                        'name: next to it', shown=False)
        return False
    if not isinstance(value, bool):
        report.at([*parts, 'external'], 'is not a boolean (write true or false, unquoted)', value)
        return False
    return value


def _given_name(report, parts, definition):
    name = definition.get('name')
    if name is not None and (not isinstance(name, str) or not name):
        report.at([*parts, 'name'], 'is not a non-empty string', name)
        return None
    return name


def _networks(report, value, overlays):
    networks = {}
    for key, given in _names(report, 'networks', value):
        parts = ['networks', key]
        if given is not None and not isinstance(given, dict):
            report.at(parts, f'is not a mapping: {NETWORK_RULE}', given)
            continue
        definition = given or {}
        for k in definition:
            if k not in ('external', 'name') and not str(k).startswith('x-'):
                report.at([*parts, str(k)], f'is not allowed: {NETWORK_RULE}', shown=False)
        if not _external(report, parts, definition):
            if definition.get('external', False) is False:
                report.at(parts, f'is not external: {NETWORK_RULE}', shown=False)
            continue
        name = _given_name(report, parts, definition) or key
        if name not in overlays:
            known = ', '.join(sorted(overlays)) or 'none'
            report.at(parts, f'is not an overlay of the description (overlays: {known}); {NETWORK_RULE}', name)
            continue
        networks[key] = name
    return networks


def _files(report, kind, value, stack_name, compose_dir):
    out = {}
    allowed = FILE_KEYS[kind]
    for key, given in _names(report, kind, value):
        parts = [kind, key]
        definition = _definition(report, parts, given, allowed, REFUSED_FILE_KEYS)
        if definition is None:
            continue
        external = _external(report, parts, definition)
        name = _given_name(report, parts, definition)
        sources = [k for k in ('file', 'content', 'external') if k in definition and k in allowed
                   and (k != 'external' or external)]
        if len(sources) != 1:
            choices = 'file, content or external: true' if kind == 'configs' else 'file or external: true'
            rule = 'needs one of' if not sources else f'has {" and ".join(sources)}; give only one of'
            if not any(k in definition for k in REFUSED_FILE_KEYS):
                report.at(parts, f'{rule} {choices}', shown=False)
            continue
        entry = {'name': name or (key if external else f'{stack_name}_{key}'), 'external': external,
                 'file': None, 'content': None}
        if 'file' in definition:
            path = definition['file']
            if not isinstance(path, str) or not path:
                report.at([*parts, 'file'], 'is not a path (a non-empty string)', path)
                continue
            full = os.path.normpath(os.path.join(compose_dir, path))
            if not os.path.isfile(full):
                reason = 'No such file or directory' if not os.path.exists(full) else 'not a regular file'
                relative = '' if os.path.isabs(path) else f" (relative to the compose file's directory {compose_dir})"
                report.at([*parts, 'file'], f'cannot be read: {reason}{relative}', path)
                continue
            entry['file'] = full
        elif 'content' in definition:
            if not isinstance(definition['content'], str):
                report.at([*parts, 'content'], 'is not a string', definition['content'])
                continue
            entry['content'] = definition['content']
        out[key] = entry
    return out


def _label_map(report, parts, value):
    """Labels or driver_opts: a mapping, or (labels) a list of "key=value"; values as strings."""
    if value is None:
        return {}
    if isinstance(value, list) and parts[-1] == 'labels':
        out = {}
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item or item.startswith('='):
                report.at([*parts, i], 'is not a "label=value" string', item)
                continue
            key, _, text = item.partition('=')
            out[key] = text
        return out
    if not isinstance(value, dict):
        report.at(parts, 'is not a mapping', value)
        return {}
    out = {}
    for key, item in value.items():
        if isinstance(item, (dict, list)) or item is None:
            report.at([*parts, str(key)], 'is not a string or a number', item)
        else:
            out[str(key)] = str(item).lower() if isinstance(item, bool) else str(item)
    return out


def _volumes(report, value, stack_name):
    out = {}
    for key, given in _names(report, 'volumes', value):
        parts = ['volumes', key]
        definition = _definition(report, parts, given, VOLUME_KEYS)
        if definition is None:
            continue
        external = _external(report, parts, definition)
        name = _given_name(report, parts, definition)
        driver = definition.get('driver')
        if driver is not None and (not isinstance(driver, str) or not driver):
            report.at([*parts, 'driver'], 'is not a non-empty string', driver)
        if external and any(k in definition for k in ('driver', 'driver_opts', 'labels')):
            report.at(parts, 'is external: it takes only name (its driver, options and labels are '
                             "the existing volume's)", shown=False)
        out[key] = {'name': name or (key if external else f'{stack_name}_{key}'), 'external': external,
                    'driver': driver if isinstance(driver, str) else None,
                    'driver_opts': _label_map(report, [*parts, 'driver_opts'], definition.get('driver_opts')),
                    'labels': _label_map(report, [*parts, 'labels'], definition.get('labels'))}
    return out


def _check_volume_references(report, parts, service, volumes):
    """Named volumes a service mounts must be declared under volumes: (docker stack deploy's rule)."""
    mounts = service.get('volumes')
    if not isinstance(mounts, list):
        return
    for i, given in enumerate(mounts):
        item = _short_volume(given) if isinstance(given, str) else given
        if not isinstance(item, dict) or item.get('type') != 'volume' or not isinstance(item.get('source'), str):
            continue  # an anonymous volume, a bind or tmpfs mount, or a problem check_service reports
        if item['source'] not in volumes:
            declared = ', '.join(sorted(volumes)) or 'none'
            here = [*parts, 'volumes', i] if isinstance(given, str) else [*parts, 'volumes', i, 'source']
            report.at(here, f'is not a declared volume (declared: {declared})', item['source'])


def _services(report, value, stack, known, volumes):
    services = {}
    if value is None or value == {}:
        report.at(['services'], 'must name at least one service', shown=False)
        return services
    for short, service in _names(report, 'services', value):
        parts = ['services', short]
        if not _SERVICE_NAME.match(short):
            report.at(parts, f'the name {SERVICE_NAME_RULE}', shown=False)
        full = f'{stack.name}_{short}'
        if len(full) > MAX_SERVICE_NAME:
            report.at(parts, f'the service name {full} is {len(full)} characters; Docker allows at most '
                             f'{MAX_SERVICE_NAME} (the stack name, "_" and the service name)', shown=False)
        check_service(short, service, parts, report, **known)
        if not isinstance(service, dict):
            continue
        attached = service.get('networks')
        if attached is None or attached in ([], {}):
            report.at(parts, NO_NETWORKS, shown=False)
        _check_volume_references(report, parts, service, volumes)
        services[full] = {'short_name': short, 'service': service}
    return services


# ---------------------------------------------------------------- the loader


def _read(path, shown, base_dir, relative):
    """The file's text, or the line that says why it cannot be read."""
    try:
        with open(path, encoding='utf-8') as handle:
            return handle.read(), None
    except OSError as exc:
        where_from = f' (relative to the inventory directory {base_dir})' if relative else ''
        return None, f'{shown}: cannot read: {exc.strerror or exc}{where_from}'
    except UnicodeError:
        return None, f'{shown}: cannot read: it is not UTF-8 text'


def load_stack(stack_name, compose_path, variables, *, base_dir, overlays, shown_path=None):
    """Read and check the compose file of ``swarm.stacks.<stack_name>``; returns a Stack.

    ``compose_path`` is relative to ``base_dir`` (the inventory directory) unless absolute;
    ``variables`` is the stack's ``variables`` mapping (the only source of ${VAR});
    ``overlays`` the names of the description's overlays; ``shown_path`` names the file in
    messages (default: ``compose_path`` as given)."""
    shown = shown_path or str(compose_path)
    relative = not os.path.isabs(compose_path)
    path = os.path.abspath(os.path.join(base_dir, compose_path))
    stack = Stack(name=stack_name, file=path)
    errors = []
    if not isinstance(stack_name, str) or not _SERVICE_NAME.match(stack_name):
        errors.append(f'{yaml_path(["stacks", str(stack_name)])}: the stack name {SERVICE_NAME_RULE}')
    values = _variables(stack_name, variables, errors)
    text, problem = _read(path, shown, base_dir, relative)
    if problem:
        stack.errors = sorted([*errors, problem])
        return stack
    try:
        source = load_source(text, shown)
    except DescriptionSyntaxError as exc:
        stack.errors = sorted([*errors, str(exc)])
        return stack
    report = _FileReport(shown)
    for parts, first, second in source.duplicates:
        report.at(list(parts), f'is given twice, on line {first} and line {second}; YAML keeps only the last '
                               'one: remove one of them', shown=False)
    if source.data is None:
        report.add("is empty; a compose file needs services:")
    elif not isinstance(source.data, dict):
        report.add(f'{show(source.data)} is not a mapping (a compose file has services:, networks:, ...)')
    else:
        _load(stack, source.data, values, report, overlays, os.path.dirname(path))
    stack.errors = sorted(set(errors) | set(report.lines))
    return stack


def _load(stack, data, variables, report, overlays, compose_dir):
    for key in data:
        if isinstance(key, str) and (key in TOP_LEVEL or key.startswith('x-')):
            continue
        close = difflib.get_close_matches(str(key), list(TOP_LEVEL), n=1)
        hint = f'; did you mean {close[0]}?' if close else ''
        report.at([str(key)], f'unknown top-level key (a stack file takes: {", ".join(TOP_LEVEL)} and x- '
                              f'extensions){hint}', shown=False)
    # x- extensions are not interpolated: Compose uses them for anchors, and they are ignored.
    used = {k: v for k, v in data.items() if isinstance(k, str) and k in TOP_LEVEL and k != 'version'}
    data = interpolate(used, variables, report, f'{yaml_path(["stacks", stack.name, "variables"])}')
    if 'name' in data and data['name'] != stack.name:
        report.at(['name'], f'is not the stack\'s name {stack.name} (swarm.stacks.{stack.name}); write '
                            f'{stack.name} or remove it', data['name'])
    services = data.get('services')
    if 'services' not in data:
        report.add('services: is required')
    elif services is not None and not isinstance(services, dict):
        report.at(['services'], 'is not a mapping', services)
    stack.networks = _networks(report, data.get('networks'), overlays)
    stack.secrets = _files(report, 'secrets', data.get('secrets'), stack.name, compose_dir)
    stack.configs = _files(report, 'configs', data.get('configs'), stack.name, compose_dir)
    stack.volumes = _volumes(report, data.get('volumes'), stack.name)
    # Every key declared, valid or not: a reference to a bad declaration is not a second problem.
    declared = {kind: {k for k in data[kind] if isinstance(k, str)} if isinstance(data.get(kind), dict) else set()
                for kind in ('networks', 'secrets', 'configs', 'volumes')}
    volumes = declared.pop('volumes')
    if 'services' in data and (services is None or isinstance(services, dict)):
        stack.services = _services(report, services, stack, declared, volumes)


def plan_input(stack):
    """What the plan takes of a valid stack: its services by Docker name, with the file's network
    keys turned into the description's overlay names, and its secrets and configs as object
    entries (plan.object_entry) labelled as docker stack deploy labels them."""
    # Only the names docker stack deploy would not give (external or named volumes).
    volumes = {key: volume['name'] for key, volume in stack.volumes.items() if volume['name'] != f'{stack.name}_{key}'}
    services = {}
    for full, item in stack.services.items():
        service = dict(item['service'])
        networks = service.get('networks')
        if isinstance(networks, list):
            service['networks'] = [stack.networks.get(n, n) for n in networks]
        elif isinstance(networks, dict):
            service['networks'] = {stack.networks.get(n, n): options for n, options in networks.items()}
        services[full] = {'short_name': item['short_name'], 'service': service, 'volumes': volumes}
    objects = [object_entry(kind[:-1], key, given, stack=stack.name, labels={STACK_NAMESPACE: stack.name})
               for kind in ('secrets', 'configs') for key, given in sorted(getattr(stack, kind).items())]
    return {'name': stack.name, 'services': services, 'objects': objects}


__all__ = ['InterpolationError', 'Stack', 'expand', 'interpolate', 'load_stack', 'plan_input']
