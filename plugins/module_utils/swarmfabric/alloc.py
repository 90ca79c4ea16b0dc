# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sticky allocation: the pure allocator behind slots, VIPs and firewall marks.

Standard library only. The allocations of a swarm are kept in the swarm
itself (a versioned config object, library/swarm_allocations.py); the plan
reads that record, calls ``allocate`` once per pool (one overlay's slots,
one overlay's VIPs, the swarm's marks) and writes the new record back
through the swarm layer. docs/description.md, "Stable allocation", is the
contract:

- an allocation that exists never moves (unless its object is pinned
  elsewhere on purpose);
- a new object takes the first free value from its hashed preferred value
  upward (wrapping), so the result depends only on the record and the
  description;
- an object that is gone keeps its value, held, for ``hold`` seconds: a
  quick re-add gets it back; after that (or when a pin takes it, or when
  the pool is full and this is the oldest held value) it is released;
- pins win, except over another object's live allocation (refused).

Values are integers (slot numbers, offsets in the VIP range, the low bits
of a mark); the callers map them to addresses.
"""

from __future__ import annotations

import calendar
import time

from . import duration

RECORD_VERSION = 1


def timestamp(seconds):
    """UTC ISO 8601 text (what the record stores) of epoch ``seconds``."""
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(int(seconds)))


def epoch(text):
    """Epoch seconds of a record timestamp; None when it is not one."""
    try:
        return calendar.timegm(time.strptime(str(text), '%Y-%m-%dT%H:%M:%SZ'))
    except (TypeError, ValueError, OverflowError):
        return None


def seconds(text):
    """Whole seconds of a description duration (24h, 90s, 1h30m: the one grammar, duration.py)."""
    return duration.duration_ns(text) // 10 ** 9


def entries_of(raw, parse):
    """{name: (value, released epoch or None)} from a record's pool. ``parse`` turns a stored
    value into the pool's integer, or None; entries it refuses (a corrupt or foreign record)
    are left out, so their objects are allocated afresh."""
    out = {}
    for name, entry in (raw or {}).items() if isinstance(raw, dict) else ():
        if not isinstance(entry, dict):
            continue
        try:
            value = parse(entry.get('value'))
        except (TypeError, ValueError):
            value = None
        released = entry.get('released')
        when = None if released is None else epoch(released)
        if value is None or (released is not None and when is None):
            continue
        out[str(name)] = (value, when)
    return out


def record_of(entries, show):
    """A pool's record entries with each value shown as the record keeps it."""
    return {name: {**entry, 'value': show(entry['value'])} for name, entry in entries.items()}


def release_all(raw, now, hold):
    """The entries of a pool whose objects are all gone (an overlay taken out of the
    description): each is held from ``now`` (or its earlier release) until ``hold`` is over."""
    out = {}
    for name, entry in sorted((raw or {}).items()) if isinstance(raw, dict) else ():
        if not isinstance(entry, dict) or 'value' not in entry:
            continue
        since = now if entry.get('released') is None else epoch(entry['released'])
        if since is not None and now - since < hold:
            out[str(name)] = {'value': entry['value'], 'released': timestamp(since)}
    return out


class Conflict:
    """One refusal of ``allocate``: ``kind`` is 'pins' (two pins on one value), 'taken' (a pin on
    another object's live allocation) or 'full' (more objects than values)."""

    def __init__(self, kind, name, other=None, value=None, needed=None, size=None):
        self.kind, self.name, self.other, self.value = kind, name, other, value
        self.needed, self.size = needed, size

    def __repr__(self):
        return f'Conflict({self.kind}, {self.name}, {self.other}, {self.value})'


def allocate(names, pins, entries, size, preferred, now, hold, low=0):
    """Allocate one pool of values ``low .. low + size - 1``.

    ``names``: the objects that want a value now; ``pins``: {name: value} of those with an explicit
    one (already checked to be in the pool); ``entries``: the record's {name: (value, released)};
    ``preferred(name)``: the hashed start of a new object; ``now``, ``hold``: seconds.
    Return (values {name: value}, record entries {name: {'value', ['released']}}, conflicts).
    """
    wanted = sorted(set(names))
    if len(wanted) > size:
        return {}, {}, [Conflict('full', None, needed=len(wanted), size=size)]
    conflicts = []
    owner, pinned = {}, set()
    values = {}
    # 1. Pins first: they always win, except over each other.
    for name in wanted:
        if name not in pins:
            continue
        value = pins[name]
        if value in owner:
            conflicts.append(Conflict('pins', name, owner[value], value))
            continue
        owner[value] = name
        pinned.add(name)
        values[name] = value
    # 2. Objects with an allocation keep it (a held one is taken back).
    for name in wanted:
        if name in pins or name not in entries:
            continue
        value = entries[name][0]
        other = owner.get(value)
        if other in pinned:
            conflicts.append(Conflict('taken', other, name, value))
            continue
        if other is not None:  # two objects on one value in the record: the later re-allocates
            continue
        owner[value] = name
        values[name] = value
    # 3. Objects that are gone are held until the hold period is over.
    held = {}
    for name, (value, released) in sorted(entries.items()):
        if name in values or name in wanted:
            continue
        since = now if released is None else released
        if now - since >= hold or value in owner or value in held:
            continue
        held[value] = (since, name)
    # 4. New objects: the first free value from the hashed one, upward, wrapping.
    for name in wanted:
        if name in values or name in pins:
            continue
        start = preferred(name)
        value = _first_free(start, low, size, owner, held)
        if value is None:  # every value is live or held: the oldest held one is released
            since, gone = min(held.values())
            value = next(v for v, h in held.items() if h == (since, gone))
            del held[value]
        owner[value] = name
        values[name] = value
    record = {name: {'value': value} for name, value in values.items()}
    for value, (since, name) in held.items():
        record[name] = {'value': value, 'released': timestamp(since)}
    return values, dict(sorted(record.items())), conflicts


def _first_free(start, low, size, owner, held):
    value = start if low <= start < low + size else low
    for _ in range(size):
        if value not in owner and value not in held:
            return value
        value = low + (value - low + 1) % size
    return None
