# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one duration grammar (docs/description.md, "Durations"), Go's time.ParseDuration as
Docker and Compose read it, without signs: one or more <number><unit>, the number an integer
or a decimal fraction (``1.5s``, ``.5s``), the units ns, us (or µs), ms, s, m and h; a bare
``0`` is zero. The validator checks it and the plan converts it once, to integer nanoseconds;
modules take the integers. Standard library only (the modules load it on managed hosts)."""

import re
from fractions import Fraction

UNIT_NS = {
    'ns': 1,
    'us': 10 ** 3, '\u00b5s': 10 ** 3, '\u03bcs': 10 ** 3,
    'ms': 10 ** 6,
    's': 10 ** 9,
    'm': 60 * 10 ** 9,
    'h': 3600 * 10 ** 9,
}
# "ms" before "m" and "s": a regex alternation takes the first that matches.
_UNIT = '(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h)'
_NUMBER = r'(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)'
# For the schema (a JSON-schema "pattern", re.search semantics, hence the anchors).
PATTERN = r'\A(?:0|(?:' + _NUMBER + _UNIT + r')+)\Z'
_PART = re.compile('(' + _NUMBER + ')(' + _UNIT + ')')
EXAMPLES = '5s, 1.5s, 500ms, 1m30s or 24h'


def is_duration(text):
    return isinstance(text, str) and re.search(PATTERN, text) is not None


def duration_ns(text):
    """'1m30s' -> 90000000000. Exact decimal arithmetic ('1.005s' is 1005000000, not the
    1004999999 of a float); a fraction of a nanosecond is dropped, as Go does."""
    if not is_duration(text):
        raise ValueError(f'{text!r} is not a duration like {EXAMPLES}')
    total = sum((Fraction(number) * UNIT_NS[unit] for number, unit in _PART.findall(text)), Fraction(0))
    return int(total)


def to_ns(value):
    """A module option: a duration string, or (kept for options that took them) an integer
    or a string of digits, which are seconds."""
    if isinstance(value, bool):
        raise ValueError(f'{value!r} is not a duration like {EXAMPLES}')
    if isinstance(value, int):
        return value * 10 ** 9
    text = str(value).strip()
    if re.fullmatch('[0-9]+', text):
        return int(text) * 10 ** 9
    return duration_ns(text)


def format_ns(ns):
    """90000000000 -> '1m30s'; 1500000000 -> '1.5s'; 500000000 -> '500ms' (the shortest exact)."""
    if ns == 0:
        return '0s'
    hours, rest = divmod(ns, 3600 * 10 ** 9)
    minutes, rest = divmod(rest, 60 * 10 ** 9)
    text = (f'{hours}h' if hours else '') + (f'{minutes}m' if minutes else '')
    if not rest:
        return text
    for unit, size in (('s', 10 ** 9), ('ms', 10 ** 6), ('us', 10 ** 3), ('ns', 1)):
        if rest >= size or text:
            whole, fraction = divmod(rest, size)
            digits = f'{fraction:0{len(str(size)) - 1}d}'.rstrip('0') if size > 1 else ''
            return f'{text}{whole}{"." + digits if digits else ""}{unit}'
    return text
