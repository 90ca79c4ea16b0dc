"""Validation of the description: every bad sample fails as it says, every good one passes."""

import importlib.util

import pytest
import yaml
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st
from swarmfabric.description import validate

DESCRIPTIONS = REPO / 'tests' / 'descriptions'
INVENTORY = [f'node{i}' for i in range(1, 10)] + ['localhost']
BAD = sorted((DESCRIPTIONS / 'bad').glob('*.yml'))
GOOD = [*sorted((DESCRIPTIONS / 'good').glob('*.yml')), REPO / 'inventory/lab/group_vars/all/swarm.yml']


def load(path):
    return yaml.safe_load(path.read_text())


def test_enough_bad_samples():
    assert len(BAD) >= 30


@pytest.mark.parametrize('path', BAD, ids=lambda p: p.stem)
def test_bad_description_is_rejected_with_path_and_rule(path):
    sample = load(path)
    errors = validate(sample.get('swarm'), INVENTORY)
    expected = sample['expect']
    for line in expected:
        assert any(line in error for error in errors), f'{line!r} not in {errors}'
    # Nothing else: each sample breaks exactly the rules it names.
    assert len(errors) == len(expected), errors
    assert errors == sorted(errors)


@pytest.mark.parametrize('path', GOOD, ids=lambda p: p.stem)
def test_good_description_passes(path):
    assert validate(load(path)['swarm'], INVENTORY) == []


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


def test_filter_returns_one_line_instead_of_a_traceback(monkeypatch):
    spec = importlib.util.spec_from_file_location('sf_filter', REPO / 'plugins/filter/swarmfabric.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    filters = module.FilterModule().filters()
    assert filters['swarm_validate']({'name': 'x', 'managers': ['node1']}, ['node1']) == []

    def broken(*_):
        raise RuntimeError('boom')

    monkeypatch.setattr(module, 'validate', broken)
    assert filters['swarm_validate']({}, []) == ['swarm: cannot be validated: RuntimeError: boom']


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.sampled_from(
    ['node1', 'appnet', '10.20.0.0/16', '10.20.255.9', 'auto', 'vip', 'tcp', '10.1.1.1:80', 'x']))
KEYS = st.sampled_from(['name', 'managers', 'workers', 'nodes', 'overlays', 'services', 'mesh', 'appnet', 'web',
                        'node1', 'vni', 'subnet', 'image', 'backends', 'vip', 'publish', 'published', 'slot'])
ANYTHING = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
                        max_leaves=30)


@settings(max_examples=100, deadline=None)
@given(swarm=st.dictionaries(KEYS, ANYTHING, max_size=8))
def test_validate_never_raises_on_garbage(swarm):
    errors = validate(swarm, INVENTORY)
    assert errors == sorted(set(errors)) and all(isinstance(e, str) and e.startswith('swarm') for e in errors)
