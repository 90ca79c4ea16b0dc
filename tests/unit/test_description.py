"""Validation of the description: every bad sample fails as it says, every good one passes."""

import datetime
import importlib.util
import re

import pytest
import yaml
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st
from swarmfabric import description
from swarmfabric.description import DescriptionSyntaxError, load_source, validate

DESCRIPTIONS = REPO / 'tests' / 'descriptions'
INVENTORY = [f'node{i}' for i in range(1, 10)] + ['localhost']
BAD = sorted((DESCRIPTIONS / 'bad').glob('*.yml'))
GOOD = [*sorted((DESCRIPTIONS / 'good').glob('*.yml')), REPO / 'inventory/lab/group_vars/all/swarm.yml']
# Descriptions of other inventories (their own host names): checked without the inventory.
OTHERS = [*sorted(REPO.glob('molecule/*/group_vars/all/swarm.yml')), REPO / 'molecule/default/vars/changed.yml']


def load(path):
    """The sample, read as the validate playbook reads a description file (duplicates, written forms)."""
    source = load_source(path.read_text(), path.name)
    return source.data, source.under('swarm')


def test_enough_bad_samples():
    assert len(BAD) >= 60


@pytest.mark.parametrize('path', BAD, ids=lambda p: p.stem)
def test_bad_description_is_rejected_with_path_and_rule(path):
    sample, source = load(path)
    errors = validate(sample.get('swarm'), INVENTORY, sample.get('host_vars'), source)
    expected = sample['expect']
    for line in expected:
        assert any(line in error for error in errors), f'{line!r} not in {errors}'
    # Nothing else: each sample breaks exactly the rules it names.
    assert len(errors) == len(expected), errors
    assert errors == sorted(errors)
    for error in errors:
        assert error.isascii() and '\n' not in error, error
        assert not re.search(r'_Ansible|MarkerError|Traceback|<class', error), error


@pytest.mark.parametrize('path', BAD, ids=lambda p: p.stem)
def test_bad_description_is_rejected_when_read_by_plain_yaml(path):
    # A caller without the source (plain yaml.safe_load) still gets an error on each path.
    sample = yaml.safe_load(path.read_text())
    if any(word in ''.join(sample['expect']) for word in ('is given twice', 'is ambiguous')):
        pytest.skip('a plain YAML load keeps neither the first of two keys nor how a number was written')
    errors = validate(sample.get('swarm'), INVENTORY, sample.get('host_vars'))
    assert len(errors) == len(sample['expect']), errors
    paths = {line.split(': ', 1)[0] for line in errors}
    for line in sample['expect']:
        if ': key ' not in line:  # a key as written (on:) is only known from the source
            assert line.split(': ', 1)[0] in paths, (line, errors)


@pytest.mark.parametrize('path', GOOD, ids=lambda p: p.stem)
def test_good_description_passes(path):
    sample, source = load(path)
    assert validate(sample['swarm'], INVENTORY, None, source) == []


@pytest.mark.parametrize('path', OTHERS, ids=lambda p: '/'.join(p.parts[-4:-3] + p.parts[-2:]))
def test_molecule_descriptions_pass(path):
    sample, source = load(path)
    assert validate(sample['swarm'], None, None, source) == []


def test_inventory_check_is_optional():
    assert validate({'name': 'x', 'managers': ['anywhere']}) == []


def test_errors_are_deduplicated():
    errors = validate({'name': 'x', 'managers': ['node1'], 'workers': ['node1', 'node1']}, INVENTORY)
    assert errors == sorted(set(errors))
    assert sum('also listed in swarm.managers' in e for e in errors) == 2


def test_real_booleans_only():
    for value in ('true', 'yes', 1):
        errors = validate({'name': 'x', 'managers': ['node1'], 'autolock': value})
        assert errors and errors[0].startswith('swarm.autolock: ') and 'is not a boolean' in errors[0]


def _schemas(schema):
    yield schema
    for value in schema.values():
        if isinstance(value, dict):
            yield from _schemas(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    yield from _schemas(item)


def test_every_pattern_is_anchored_at_both_ends():
    patterns = [s['pattern'] for s in _schemas(description.SCHEMA) if isinstance(s.get('pattern'), str)]
    assert len(patterns) >= 7
    for pattern in patterns:
        assert pattern.startswith('\\A') and pattern.endswith('\\Z'), pattern


def test_every_integer_is_bounded():
    integers = [s for s in _schemas(description.SCHEMA) if s.get('type') == 'integer']
    # A service's integers are compose.check_service's (each check.integer() takes both bounds).
    assert len(integers) >= 11
    for schema in integers:
        assert isinstance(schema.get('minimum'), int) and isinstance(schema.get('maximum'), int), schema


@pytest.mark.parametrize(('parts', 'good'), [
    (('name',), 'lab'),
    (('advertise_interface',), 'eth0'),
    (('services', 'web', 'image'), 'swarmfabric/task:1'),
    (('services', 'web', 'deploy', 'update_config', 'delay'), '5s'),
    (('allocation', 'hold'), '12h'),
])
def test_a_final_newline_never_passes_a_pattern(parts, good):
    def build(value):
        swarm = {'name': 'lab', 'managers': ['node1'], 'services': {'web': {'image': 'swarmfabric/task:1'}}}
        node = swarm
        for key in parts[:-1]:
            node = node.setdefault(key, {})
        node[parts[-1]] = value
        return swarm
    assert validate(build(good)) == []
    errors = validate(build(good + '\n'))
    assert len(errors) == 1 and errors[0].startswith(description.yaml_path(parts) + ': '), errors


@pytest.mark.parametrize('kind', ['overlays', 'services', 'labels'])
def test_a_final_newline_never_passes_a_name(kind):
    swarm = {'name': 'lab', 'managers': ['node1']}
    if kind == 'overlays':
        swarm['overlays'] = {'appnet\n': {'vni': 300, 'subnet': '10.20.0.0/16'}}
    elif kind == 'services':
        swarm['services'] = {'web\n': {'image': 'swarmfabric/task:1'}}
    else:
        swarm['nodes'] = {'node1': {'labels': {'zone\n': 'a'}}}
    errors = validate(swarm)
    assert len(errors) == 1 and '\\n' in errors[0] and 'is not a valid name' in errors[0], errors


@pytest.mark.parametrize('subnet', ['10.20.0.0/255.255.0.0', '10.20.0.0/0.0.255.255', '10.20.0.0/016',
                                    '10.20.0.1/16', '0.0.0.0/0', '0.0.0.0/8', '127.0.0.0/16', '169.254.0.0/16',
                                    '224.0.0.0/8', '239.1.0.0/16', '240.0.0.0/8', '255.255.0.0/16', '8.0.0.0/6',
                                    '10.20.0.0/16\n', ' 10.20.0.0/16', '10.20.0.0', '\u0661\u0660.20.0.0/16'])
def test_absurd_or_non_canonical_subnets_are_refused(subnet):
    errors = validate({'name': 'x', 'managers': ['node1'],
                       'overlays': {'appnet': {'vni': 300, 'subnet': subnet}}})
    assert len(errors) == 1 and errors[0].startswith('swarm.overlays.appnet.subnet: '), errors


@pytest.mark.parametrize('port', ['\u0668\u0660', '\uff18\uff10', '80 ', '+80', '0', '65536', '0080', '', '8_0'])
def test_backend_ports_are_ascii_digits(port):
    errors = validate({'name': 'x', 'managers': ['node1'],
                       'services': {'ext': {'x-swarmfabric': {'backends': [f'10.20.9.1:{port}']}}}})
    assert len(errors) == 1 and errors[0].startswith('swarm.services.ext.x-swarmfabric.backends[0]: '), errors


@pytest.mark.parametrize('name', ['web-', '-web', 'web_1', 'Web', 'web.1', 'w' * 64, '1web'])
def test_docker_service_name_rule(name):
    errors = validate({'name': 'x', 'managers': ['node1'], 'services': {name: {'image': 'swarmfabric/task:1'}}})
    assert len(errors) == 1 and 'is not a valid name' in errors[0], errors


@pytest.mark.parametrize('name', ['w', 'web', 'web-1', 'a--b', 'w' * 63])
def test_docker_service_names_that_pass(name):
    assert validate({'name': 'x', 'managers': ['node1'], 'services': {name: {'image': 'swarmfabric/task:1'}}}) == []


def test_interface_names_fit_ifnamsiz_and_are_unique():
    overlays = {name: {'vni': 300 + i, 'subnet': f'10.{20 + i}.0.0/16', 'encrypted': False}
                for i, name in enumerate(['abcdefghij', 'a', 'a-h', 'b', 'b-config'])}
    errors = validate({'name': 'x', 'managers': ['node1'], 'overlays': overlays})
    assert errors == [
        'swarm.overlays.a-h: its VXLAN device sf-a-h is also the host shim of overlay a; rename one of the two '
        'overlays',
        'swarm.overlays.b-config: its Docker network b-config is also the config-only Docker network of overlay '
        'b; rename one of the two overlays',
    ]
    assert all(len(f'sf-{name}-h') <= description.IFNAMSIZ for name in overlays)


def test_duplicate_keys_name_both_lines_and_the_file():
    text = 'swarm:\n  name: a\n  managers: [node1]\n  name: b\n'
    source = load_source(text, 'group_vars/all/swarm.yml')
    errors = validate(source.data['swarm'], None, None, source.under('swarm'))
    assert errors == ['swarm.name: is given twice, on line 2 and line 4 of group_vars/all/swarm.yml; '
                      'YAML keeps only the last one: remove one of them']


def test_a_duplicate_swarm_key_is_not_a_problem_inside_swarm():
    source = load_source('swarm: {name: a, managers: [n]}\nswarm: {name: b, managers: [n]}\n', 'f.yml')
    assert source.duplicates == [(('swarm',), 1, 2)]
    assert validate(source.data['swarm'], None, None, source.under('swarm')) == []


def test_ansible_tags_are_read_as_their_plain_value():
    text = 'swarm:\n  name: !unsafe lab\n  managers: [node1]\n  autolock: !vault |\n    $ANSIBLE_VAULT;1.1;AES256\n'
    source = load_source(text, 'f.yml')
    assert source.data['swarm']['name'] == 'lab'
    assert validate({'name': 'lab', 'managers': ['node1']}, None, None, source.under('swarm')) == []


def test_syntax_error_names_the_file_and_line():
    with pytest.raises(DescriptionSyntaxError) as caught:
        load_source('swarm:\n  name: lab\n  managers: [node1\n  nodes: {}\n', 'inventory/x/group_vars/all/swarm.yml')
    message = str(caught.value)
    assert message.startswith('inventory/x/group_vars/all/swarm.yml: line 4, column ')
    assert 'line 3' in message  # where the unclosed sequence started


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list('swarm:name \n-[]{},&*!|>"\'#09.ab\t')), max_size=80))
def test_reading_garbage_yaml_raises_only_a_syntax_error(text):
    try:
        source = load_source(text, 'f.yml')
    except DescriptionSyntaxError as exc:
        assert str(exc).startswith('f.yml: ')
        return
    data = source.data.get('swarm') if isinstance(source.data, dict) else source.data
    errors = validate(data, INVENTORY, None, source.under('swarm'))
    assert all(isinstance(e, str) for e in errors)


def test_an_impossible_date_is_a_syntax_error():
    with pytest.raises(DescriptionSyntaxError, match=r'^f\.yml: month must be in 1\.\.12'):
        load_source('swarm: {nodes: {node1: {labels: {since: 2024-13-45}}}}', 'f.yml')


def test_very_deep_yaml_is_a_syntax_error():
    with pytest.raises(DescriptionSyntaxError):
        load_source('swarm: ' + '[' * 5000 + ']' * 5000, 'f.yml')


def test_a_recursive_alias_names_its_field_in_plain_yaml():
    swarm = yaml.safe_load('swarm: &s {name: lab, managers: [node1], nodes: *s}')['swarm']
    errors = validate(swarm)
    assert errors == ['swarm.nodes: refers to itself (a YAML alias used inside its own anchor); write the value out']
    lst = []
    lst.append(lst)
    errors = validate({'name': 'lab', 'managers': ['node1'], 'workers': lst})
    assert errors == ['swarm.workers[0]: refers to itself (a YAML alias used inside its own anchor); '
                      'write the value out']


def test_deep_nesting_is_refused_without_recursion_error():
    deep = {}
    node = deep
    for _ in range(2000):
        node['x'] = {}
        node = node['x']
    errors = validate({'name': 'lab', 'managers': ['node1'], 'mesh': {'ipvs_timeouts': deep}})
    assert len(errors) == 2 and 'nests deeper than' in errors[0], errors
    assert errors[1] == ('swarm.mesh.ipvs_timeouts.x: unknown key (allowed: tcp, tcpfin, udp)'), errors


class _AnsibleTaggedStr(str):
    pass


class _AnsibleTaggedList(list):
    pass


class _AnsibleLazyTemplateDict(dict):
    pass


class _Marker:
    """Stands for Ansible's marker of a template that failed: any use raises."""

    def __str__(self):
        raise RuntimeError("MarkerError: 'nope' is undefined")


def test_tagged_values_are_validated_as_plain_python():
    swarm = _AnsibleLazyTemplateDict({
        _AnsibleTaggedStr('name'): _AnsibleTaggedStr('lab'),
        'managers': _AnsibleTaggedList([_AnsibleTaggedStr('node1')]),
        'workers': _AnsibleTaggedList([1]),
        'nodes': _AnsibleLazyTemplateDict({'node1': _AnsibleLazyTemplateDict({'labels': {'a': _Marker()}})}),
    })
    errors = validate(swarm, INVENTORY)
    assert errors == ["swarm.nodes.node1.labels.a: cannot be templated: value: 'nope' is undefined",
                      'swarm.workers[0]: 1 is not a string; quote it']


def test_messages_show_values_as_yaml_types():
    errors = validate({'name': 'lab', 'managers': ['node1'], 'nodes': {'node1': {'labels': {
        'a': datetime.date(2024, 1, 1), 'b': datetime.datetime(2024, 1, 1, 10, 0), 'c': 1.5, 'd': None}}}})
    assert errors == [
        'swarm.nodes.node1.labels.a: 2024-01-01 (a date) is not a string; quote it',
        'swarm.nodes.node1.labels.b: 2024-01-01 10:00:00 (a timestamp) is not a string; quote it',
        'swarm.nodes.node1.labels.c: 1.5 is not a string; quote it',
        'swarm.nodes.node1.labels.d: null is not a string',
    ]


def test_sexagesimal_hint_without_the_source():
    errors = validate({'name': 'lab', 'managers': ['node1'], 'allocation': {'hold': 5430}})
    assert errors == ['swarm.allocation.hold: 5430 is not a duration string; quote it '
                      '(YAML 1.1 reads an unquoted 1:30:30 as the number 5430)']
    # A service's durations are compose.check_service's: a number is refused with its unit to add.
    errors = validate({'name': 'lab', 'managers': ['node1'],
                       'services': {'web': {'image': 'x', 'deploy': {'update_config': {'delay': 5430}}}}})
    assert errors == ['swarm.services.web.deploy.update_config.delay: 5430 is not a duration string; '
                      'give its unit, like 5430s']


def test_advertise_addr_is_read_from_host_variables():
    swarm = {'name': 'lab', 'managers': ['node1'], 'workers': ['node2']}
    assert validate(swarm, None, {'node1': {'swarm_advertise_addr': '172.30.0.11'}, 'node2': {}}) == []
    assert validate(swarm, None, {'node9': {'swarm_advertise_addr': 'junk'}}) == []  # not a swarm node
    assert validate(swarm, None, {'node1': {'swarm_advertise_addr': 3232235777}}) == [
        'hostvars.node1.swarm_advertise_addr: 3232235777 is not an IPv4 address, like 172.30.0.11 '
        '(the address this node advertises to the swarm)']


def test_filter_returns_one_line_instead_of_a_traceback(monkeypatch):
    spec = importlib.util.spec_from_file_location('sf_filter', REPO / 'plugins/filter/swarmfabric.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    filters = module.FilterModule().filters()
    assert filters['swarm_validate']({'name': 'x', 'managers': ['node1']}, ['node1']) == []
    assert filters['swarm_validate']({'name': 'x', 'managers': ['node1']}, ['node1'], {}) == []

    def broken(*_, **__):
        raise RuntimeError('boom')

    monkeypatch.setattr(module, 'validate', broken)
    assert filters['swarm_validate']({}, []) == ['swarm: cannot be validated: RuntimeError: boom']


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=False),
                    st.dates(), st.sampled_from(
                        ['node1', 'appnet', '10.20.0.0/16', '10.20.255.9', 'auto', 'vip', 'tcp', '10.1.1.1:80', 'x',
                         'web\n', 'dnsrr', 'ingress', '10.20.0.0/255.255.0.0', '0.0.0.0/0', 'eth0', '10.0.0.1']))
KEYS = st.sampled_from(['name', 'managers', 'workers', 'nodes', 'overlays', 'services', 'mesh', 'appnet', 'web',
                        'node1', 'vni', 'subnet', 'image', 'backends', 'vip', 'publish', 'published', 'slot', 'port',
                        'encrypted', 'endpoint_mode', 'mode', 'advertise_interface', 'update', 'delay', True, 9,
                        None, 1.5, 'networks', 'ports', 'target', 'deploy', 'replicas', 'update_config',
                        'x-swarmfabric', 'traffic_policy', 'driver', 'secrets', 'configs', 'volumes', 'sysctls',
                        'source', 'content', 'file'])
ANYTHING = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
                        max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(swarm=st.dictionaries(KEYS, ANYTHING, max_size=8))
def test_validate_never_raises_on_garbage(swarm):
    errors = validate(swarm, INVENTORY, {'node1': {'swarm_advertise_addr': 'x'}})
    assert errors == sorted(set(errors))
    assert all(isinstance(e, str) and e.startswith(('swarm', 'hostvars')) and e.isascii() for e in errors)
