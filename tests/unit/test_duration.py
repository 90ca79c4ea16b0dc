"""The one duration grammar: the validator, the plan and the modules read durations with one function."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from swarmfabric import duration
from swarmfabric.description import validate

NS = 1
US = 10 ** 3
MS = 10 ** 6
S = 10 ** 9
M = 60 * S
H = 3600 * S


@pytest.mark.parametrize(('text', 'ns'), [
    ('0', 0),
    ('0s', 0),
    ('5s', 5 * S),
    ('1.5s', 1500 * MS),
    ('.5s', 500 * MS),
    ('500ms', 500 * MS),
    ('250us', 250 * US),
    ('250\u00b5s', 250 * US),  # micro sign, as Go writes it
    ('250\u03bcs', 250 * US),  # Greek mu
    ('7ns', 7 * NS),
    ('1m', M),
    ('1m30s', 90 * S),
    ('1h2m3s4ms5us6ns', H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS),
    ('1.5h', 90 * M),
    ('24h', 24 * H),
    ('1s1s', 2 * S),  # Go adds repeated units
    ('1.005s', 1005 * MS),  # exact: a float gives 1004999999
    ('0.1s', 100 * MS),
    ('1.5ns', 1),  # a fraction of a nanosecond is dropped, as Go does
    ('1.0000000009s', S),
])
def test_duration_ns(text, ns):
    assert duration.is_duration(text)
    assert duration.duration_ns(text) == ns


@pytest.mark.parametrize('text', [
    '', '5', '90', '1.5', '5 s', ' 5s', '5s ', '5sec', '5S', '-1s', '+1s', '1:30', '5.s', '1..5s', 's', 'ms',
    '1d', '1m5', '00', '1e3s', '\uff15s',  # a fullwidth digit
])
def test_not_a_duration(text):
    assert not duration.is_duration(text)
    with pytest.raises(ValueError, match=r'is not a duration like 5s, 1\.5s'):
        duration.duration_ns(text)


@pytest.mark.parametrize('value', [None, 5, 1.5, True, ['5s']])
def test_only_strings_are_durations(value):
    assert not duration.is_duration(value)
    with pytest.raises(ValueError):
        duration.duration_ns(value)


@pytest.mark.parametrize(('value', 'ns'), [
    (5, 5 * S), ('5', 5 * S), (0, 0), ('1.5s', 1500 * MS), ('1m30s', 90 * S),
])
def test_module_options_keep_bare_seconds(value, ns):
    assert duration.to_ns(value) == ns


@pytest.mark.parametrize('value', [True, '1.5', '-5', '5 seconds', '\u00b2'])
def test_module_options_refuse_the_rest(value):
    with pytest.raises(ValueError):
        duration.to_ns(value)


@given(st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 999), st.sampled_from(sorted(duration.UNIT_NS))),
                min_size=1, max_size=6))
def test_any_sum_of_parts_is_read_exactly(parts):
    text = ''.join(f'{whole}.{frac:03d}{unit}' for whole, frac, unit in parts)
    expected = sum((whole * 1000 + frac) * duration.UNIT_NS[unit] for whole, frac, unit in parts) // 1000
    assert duration.duration_ns(text) == expected


def _delay_errors(delay):
    errors = validate({'name': 'lab', 'managers': ['node1'],
                       'services': {'web': {'image': 'x', 'deploy': {'update_config': {'delay': delay}}}}})
    return [error for error in errors if error.startswith('swarm.services.web.deploy.update_config.delay: ')]


# The validator refused 1.5s while swarm_service took it; it now takes every duration the grammar does.
@pytest.mark.parametrize('delay', ['1.5s', '.5s', '0', '500ms', '24h', '23h59m59.999999999s', '86400s', '250\u00b5s'])
def test_the_validator_takes_every_duration(delay):
    assert _delay_errors(delay) == []


# Format v2 takes Compose's durations as docker stack deploy does: no upper bound (format v1's
# update.delay stopped at 24h).
@pytest.mark.parametrize(('delay', 'error'), [
    ('1.5', 'is not a duration like 5s, 1.5s, 500ms, 1m30s or 24h'),
    ('5 seconds', 'is not a duration like'),
    ('-1s', 'is not a duration like'),
    ('1:30', 'is not a duration like'),
    ('5s\n', 'is not a duration like'),
    (90, 'is not a duration string; give its unit, like 90s'),
    (1.5, 'is not a duration string; give its unit, like 1.5s'),
    (True, 'is not a string'),
])
def test_the_validator_refuses_the_rest(delay, error):
    errors = _delay_errors(delay)
    assert len(errors) == 1 and error in errors[0], errors


def test_the_schema_pattern_is_the_grammar():
    for text in ['1.5s', '0', '1m30s', '1.5', '', '5 s', '1m5']:
        assert bool(re.search(duration.PATTERN, text)) == duration.is_duration(text)


# A float sum (swarm_service's own parser before this grammar) disagrees on exact fractions.
@pytest.mark.parametrize(('number', 'unit', 'ns'), [('1.005', 's', 1005 * MS), ('8.2', 's', 8200 * MS),
                                                    ('2.01', 'ms', 2010 * US)])
def test_the_shared_function_is_exact_where_a_float_sum_is_not(number, unit, ns):
    assert int(float(number) * duration.UNIT_NS[unit]) != ns
    assert duration.duration_ns(number + unit) == ns
