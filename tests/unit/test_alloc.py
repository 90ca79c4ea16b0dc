"""The sticky allocator (alloc.py): an allocation that exists never moves, a freed one is
held for its return and released after the hold period, pins win but never over another
object's live allocation."""

from hypothesis import given, settings
from hypothesis import strategies as st
from swarmfabric import alloc

HOUR = 3600
NOW = 1_800_000_000


# ---------------------------------------------------------------- the pure allocator


def test_a_new_object_takes_the_first_free_value_from_its_hash_upward_wrapping():
    taken = {'a': (6, None), 'b': (7, None)}
    values, record, conflicts = alloc.allocate(['a', 'b', 'c'], {}, taken, 8, lambda n: 6, NOW, HOUR)
    assert values == {'a': 6, 'b': 7, 'c': 0} and conflicts == []
    assert record == {'a': {'value': 6}, 'b': {'value': 7}, 'c': {'value': 0}}


def test_a_gone_object_is_held_then_released_and_a_full_pool_takes_the_oldest_held():
    values, record, _ = alloc.allocate(['a'], {}, {'a': (1, None), 'b': (2, None)}, 4, lambda n: 0, NOW, HOUR)
    assert record == {'a': {'value': 1}, 'b': {'value': 2, 'released': alloc.timestamp(NOW)}}
    held = alloc.entries_of(record, int)
    # Within the hold period a newcomer that hashes onto the held value passes it by.
    values, record, _ = alloc.allocate(['a', 'c'], {}, held, 4, lambda n: 2, NOW + HOUR - 1, HOUR)
    assert values == {'a': 1, 'c': 3} and record['b'] == {'value': 2, 'released': alloc.timestamp(NOW)}
    # After it, the held value is free again.
    values, record, _ = alloc.allocate(['a'], {}, held, 4, lambda n: 2, NOW + HOUR, HOUR)
    assert record == {'a': {'value': 1}}
    # A full pool releases the oldest held value first.
    held = {'a': (0, None), 'b': (1, NOW - 5), 'c': (2, NOW - 9), 'd': (3, None)}
    values, record, _ = alloc.allocate(['a', 'd', 'e'], {}, held, 4, lambda n: 0, NOW, HOUR)
    assert values == {'a': 0, 'd': 3, 'e': 2} and 'c' not in record and record['b']['released']


def test_pins_win_over_held_values_but_not_over_live_ones_or_each_other():
    entries = {'a': (1, None), 'b': (2, NOW)}
    values, record, conflicts = alloc.allocate(['a', 'c'], {'c': 2}, entries, 8, lambda n: 0, NOW, HOUR)
    assert values == {'a': 1, 'c': 2} and conflicts == [] and 'b' not in record
    _, _, conflicts = alloc.allocate(['a', 'c'], {'c': 1}, entries, 8, lambda n: 0, NOW, HOUR)
    assert [(c.kind, c.name, c.other, c.value) for c in conflicts] == [('taken', 'c', 'a', 1)]
    _, _, conflicts = alloc.allocate(['c', 'd'], {'c': 5, 'd': 5}, {}, 8, lambda n: 0, NOW, HOUR)
    assert [(c.kind, c.name, c.other, c.value) for c in conflicts] == [('pins', 'd', 'c', 5)]
    _, _, conflicts = alloc.allocate(list('abc'), {}, {}, 2, lambda n: 0, NOW, HOUR)
    assert [(c.kind, c.needed, c.size) for c in conflicts] == [('full', 3, 2)]


def test_timestamps_round_trip_and_bad_entries_are_dropped():
    assert alloc.timestamp(NOW) == '2027-01-15T08:00:00Z' and alloc.epoch('2027-01-15T08:00:00Z') == NOW
    raw = {'a': {'value': 3}, 'b': {'value': 'x'}, 'c': {'value': 4, 'released': 'yesterday'}, 'd': 7}
    assert alloc.entries_of(raw, lambda v: v if isinstance(v, int) else None) == {'a': (3, None)}
    assert alloc.seconds('24h') == 86400 and alloc.seconds('1.5s') == 1


NAMES = st.sampled_from([f'n{i}' for i in range(12)])
OPS = st.lists(st.tuples(st.sampled_from(['add', 'remove', 'tick']), NAMES, st.integers(0, 2 * HOUR)),
               min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(ops=OPS, size=st.integers(1, 10), seed=st.integers(0, 9))
def test_no_sequence_of_adds_and_removes_moves_a_live_allocation(ops, size, seed):
    """A model run of the pool: live values never move; a value held when its object comes back
    is given back; a held value disappears early only when the pool was full."""
    live, entries, now = [], {}, NOW
    before = {}
    for op, name, dt in ops:
        if op == 'add' and name not in live and len(live) < size:
            live.append(name)
        elif op == 'remove' and name in live:
            live.remove(name)
        elif op == 'tick':
            now += dt
        values, record, conflicts = alloc.allocate(live, {}, entries, size,
                                                   lambda n: (int(n[1:]) * 7 + seed) % size, now, HOUR)
        assert conflicts == []
        assert sorted(values) == sorted(live) and len(set(values.values())) == len(values)
        assert all(0 <= v < size for v in values.values())
        for kept in set(before) & set(values):
            assert values[kept] == before[kept], (kept, before, values)
        for came_back in set(values) - set(before):
            if came_back in entries:  # still held: it gets its old value back
                assert values[came_back] == entries[came_back][0]
        for gone, (_value, released) in entries.items():
            if gone not in live and gone not in record and released is not None and now - released < HOUR:
                assert len(record) == size  # released early only to make room
        before, entries = values, alloc.entries_of(record, int)
