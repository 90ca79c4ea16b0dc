# Shared nftables logic: parse one table as `nft list` prints it, compare it
# with a desired definition, and turn the difference into one `nft -f`
# transaction (a small delta where possible, a full redefine otherwise).
# Standard library only: this runs on managed hosts.
#
# The compare is cheap only if the desired definition is rendered in the
# canonical form `nft list table` prints (priority names, hex widths,
# `dnat ip to`, ...). Normalization only forgives whitespace, line wrapping,
# comments, counter values and the order of set/map elements.

import re
from collections import Counter
from dataclasses import dataclass, field

_COUNTER = re.compile(r"\bcounter packets \d+ bytes \d+")
_EXPIRES = re.compile(r"\s+expires \S+")
_TABLE = re.compile(r"^table\s+(\w+)\s+(\S+)\s*\{$")
_KINDS = "chain|set|map|flowtable|counter|quota|limit|ct helper|ct timeout|ct expectation|secmark|synproxy"
_OBJECT = re.compile(rf"^({_KINDS})\s+(\S+)\s*\{{$")
# Objects whose contents the delta planner understands; others force a reload.
_DELTA_KINDS = ("chain", "set", "map")


class NftError(Exception):
    """A definition or a live listing that cannot be handled."""


@dataclass
class NftObject:
    kind: str
    name: str
    head: list = field(default_factory=list)      # chain hook line, set type/flags...
    rules: list = field(default_factory=list)     # chain rules, in order
    elements: frozenset | None = None             # set/map elements, unordered

    def key(self):
        return (self.kind, self.name)


@dataclass(eq=False)
class NftTable:
    family: str
    name: str
    head: list = field(default_factory=list)
    objects: dict = field(default_factory=dict)   # (kind, name) -> NftObject, in file order

    def __eq__(self, other):
        return (isinstance(other, NftTable) and (self.family, self.name, self.head) ==
                (other.family, other.name, other.head) and self.objects == other.objects)

    __hash__ = None


def normalize_line(line):
    """One statement without counter values, expiry times or extra spaces."""
    if "counter " in line:
        line = _COUNTER.sub("counter", line)
    if "expires " in line:
        line = _EXPIRES.sub("", line)
    return " ".join(line.split())


def split_top(text, sep=","):
    """Split on `sep` outside braces and quotes."""
    if "{" not in text and '"' not in text:
        return [p.strip() for p in text.split(sep) if p.strip()]
    parts, depth, quoted, cur = [], 0, False, []
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "{":
            depth += 1
        elif not quoted and ch == "}":
            depth -= 1
        if ch == sep and depth == 0 and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _statements(text):
    """Logical lines: comments dropped, multi-line `elements = { ... }` joined."""
    out, pending, depth = [], None, 0
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip() if '"' not in raw else raw.strip()
        if not line:
            continue
        if pending is not None:
            pending.append(line)
            depth += line.count("{") - line.count("}")
            if depth <= 0:
                out.append(" ".join(pending))
                pending = None
            continue
        if line.startswith("elements = {") and line.count("{") > line.count("}"):
            pending, depth = [line], line.count("{") - line.count("}")
            continue
        out.append(line)
    if pending is not None:
        raise NftError("unterminated elements block")
    return out


def parse_table(text):
    """Parse the text of exactly one `table <family> <name> { ... }`."""
    lines = _statements(text)
    if not lines:
        raise NftError("no table definition")
    match = _TABLE.match(lines[0])
    if not match:
        raise NftError(f"expected 'table <family> <name> {{', got {lines[0]!r}")
    table = NftTable(match.group(1), match.group(2))
    obj, closed = None, False
    for line in lines[1:]:
        if closed:
            raise NftError(f"text after the end of the table: {line!r}")
        if obj is None:
            if line == "}":
                closed = True
                continue
            match = _OBJECT.match(line)
            if match:
                obj = NftObject(match.group(1), match.group(2))
                if obj.key() in table.objects:
                    raise NftError(f"{obj.kind} {obj.name} is defined twice")
            else:
                table.head.append(normalize_line(line))
            continue
        if line == "}":
            table.objects[obj.key()] = obj
            obj = None
        elif line.startswith("elements = {"):
            body = line[len("elements = {"):].rstrip()
            if not body.endswith("}"):
                raise NftError(f"cannot read elements of {obj.kind} {obj.name}")
            obj.elements = frozenset(normalize_line(e) for e in split_top(body[:-1]))
        elif obj.kind == "chain" and not line.startswith(("type ", "comment ", "policy ", "devices ")):
            obj.rules.append(normalize_line(line))
        else:
            obj.head.extend(normalize_line(s) for s in line.rstrip(";").split(";") if s.strip())
    if not closed:
        raise NftError("unterminated table (missing '}')")
    return table


def canonical_text(table):
    """A stable text of the table for diffs: one rule or element per line."""
    if table is None:
        return ""
    out = [f"table {table.family} {table.name} {{"]
    out += [f"\t{line}" for line in table.head]
    for obj in table.objects.values():
        out.append(f"\t{obj.kind} {obj.name} {{")
        out += [f"\t\t{line};" for line in obj.head]
        if obj.elements is not None:
            out += [f"\t\telement {e}" for e in sorted(obj.elements)]
        out += [f"\t\t{rule}" for rule in obj.rules]
        out.append("\t}")
    out.append("}")
    return "\n".join(out) + "\n"


def line_changes(before, after):
    """(added, removed) counts of canonical lines, as a multiset difference."""
    b = Counter(canonical_text(before).splitlines())
    a = Counter(canonical_text(after).splitlines())
    return sum((a - b).values()), sum((b - a).values())


def _elem_key(element, is_map):
    return split_key(element) if is_map else element


def split_key(element):
    """The key of a map element `key : value`."""
    return element.split(" : ", 1)[0]


def _declare(prefix, obj):
    head = "; ".join(obj.head)
    return f"add {obj.kind} {prefix} {obj.name} {{ {head}; }}" if head else f"add {obj.kind} {prefix} {obj.name}"


def _chunks(items, size=500):
    items = sorted(items)
    for i in range(0, len(items), size):
        yield items[i:i + size]


def plan_delta(live, desired):
    """Commands turning `live` into `desired`, or None when only a reload will do.

    Order matters inside the transaction: new chains and sets exist before
    anything refers to them; elements and rules that refer to a chain or set
    are gone before it is deleted.
    """
    if live.head != desired.head:
        return None
    prefix = f"{desired.family} {desired.name}"
    add_obj, fill_chain, del_elems, add_elems, drop_chain, drop_obj = [], [], [], [], [], []
    actions = []
    for key, want in desired.objects.items():
        have = live.objects.get(key)
        if want.kind not in _DELTA_KINDS:
            if have != want:
                return None
            continue
        if have is None:
            add_obj.append(_declare(prefix, want))
            actions.append(f"added {want.kind} {want.name}")
            have = NftObject(want.kind, want.name, list(want.head), [], frozenset())
        elif have.head != want.head:
            return None
        if want.kind == "chain" and have.rules != want.rules:
            if live.objects.get(key) is not None:
                fill_chain.append(f"flush chain {prefix} {want.name}")
                actions.append(f"replaced the {len(want.rules)} rules of chain {want.name}")
            fill_chain += [f"add rule {prefix} {want.name} {rule}" for rule in want.rules]
        if want.kind != "chain":
            is_map = want.kind == "map"
            have_e, want_e = have.elements or frozenset(), want.elements or frozenset()
            gone = {_elem_key(e, is_map) for e in have_e - want_e}
            new = want_e - have_e
            for chunk in _chunks(gone):
                del_elems.append(f"delete element {prefix} {want.name} {{ {', '.join(chunk)} }}")
            for chunk in _chunks(new):
                add_elems.append(f"add element {prefix} {want.name} {{ {', '.join(chunk)} }}")
            if (gone or new) and key in live.objects:
                actions.append(f"{want.kind} {want.name}: {len(new)} elements added, {len(gone)} removed")
    for key, have in live.objects.items():
        if key in desired.objects:
            continue
        if have.kind not in _DELTA_KINDS:
            return None
        if have.kind == "chain":
            drop_chain.append(have.name)
        else:
            drop_obj.append(f"delete {have.kind} {prefix} {have.name}")
        actions.append(f"deleted {have.kind} {have.name}")
    cmds = add_obj + del_elems + fill_chain + add_elems
    cmds += [f"flush chain {prefix} {name}" for name in drop_chain]
    cmds += [f"delete chain {prefix} {name}" for name in drop_chain] + drop_obj
    return cmds, actions


def replace_script(family, name, definition):
    """One transaction that creates-or-empties, deletes and redefines the table."""
    return f"table {family} {name} {{}}\ndelete table {family} {name}\n{definition.rstrip()}\n"


def delete_script(family, name):
    return f"delete table {family} {name}\n"


# argv builders: one per nft operation.
def list_argv(nft, family, name):
    return [nft, "list", "table", family, name]


def apply_argv(nft, check):
    return [nft, "-c", "-f", "/dev/stdin"] if check else [nft, "-f", "/dev/stdin"]


def read_listing(run, nft, family, name):
    """The live table as `nft list table` prints it, or None when it does not exist."""
    rc, out, err = run(list_argv(nft, family, name), None)
    if rc != 0:
        if "No such file or directory" in err or "does not exist" in err:
            return None
        raise NftError(f"nft list table {family} {name} failed: {err.strip()}")
    return out


def read_table(run, nft, family, name):
    """The live table, or None when it does not exist. `run(argv, data)` -> (rc, out, err)."""
    listing = read_listing(run, nft, family, name)
    return None if listing is None else parse_table(listing)


def desired_table(family, name, definition, state):
    """The parsed definition (None for state absent), checked to name this table."""
    if state != "present":
        return None
    desired = parse_table(definition)
    if (desired.family, desired.name) != (family, name):
        raise NftError(f"the definition declares table {desired.family} {desired.name}, not {family} {name}")
    return desired


def plan_table(family, name, live, desired, definition):
    """(script, actions) taking `live` to `desired`; ("", []) when they are equal."""
    if live == desired:
        return "", []
    if desired is None:
        return delete_script(family, name), [f"deleted table {family} {name}"]
    if live is None:
        return definition.rstrip() + "\n", [f"created table {family} {name}"]
    delta = plan_delta(live, desired)
    if delta is None:
        return replace_script(family, name, definition), [f"reloaded table {family} {name} in one transaction"]
    return "\n".join(delta[0]) + "\n", delta[1]


def restore_script(family, name, listing, current=None):
    """One transaction putting back a table as `nft list table` printed it.

    ``listing`` None: the table did not exist, so it goes. ``current`` (the
    parsed table as it is now) given: the table itself stays and only its
    contents are emptied and redefined, so it keeps its place in `nft list
    ruleset` (a deleted and re-created table would move to the end).
    """
    if listing is None:
        return f"table {family} {name} {{}}\ndelete table {family} {name}\n"
    if current is None:
        return f"table {family} {name} {{}}\ndelete table {family} {name}\n{listing.rstrip()}\n"
    prefix = f"{family} {name}"
    # Rules first (they refer to sets and chains), then sets and maps (their
    # verdict elements refer to chains), then the chains.
    out = [f"flush table {prefix}"]
    out += [f"delete {o.kind} {prefix} {o.name}" for o in current.objects.values() if o.kind != "chain"]
    out += [f"delete chain {prefix} {o.name}" for o in current.objects.values() if o.kind == "chain"]
    return "\n".join(out) + "\n" + listing.rstrip() + "\n"


def converge_table(run, nft, family, name, definition, state, check_mode):
    """Read, compare and apply one table. Returns a result dict for exit_json.

    `definition` is the full `table <family> <name> {...}` text when state is
    present. One `nft -f` is one kernel transaction: nft checks the whole
    script and commits all of it or nothing, so a real run needs no separate
    validation pass. Check mode runs only the validation (`nft -c -f`).
    """
    desired = desired_table(family, name, definition, state)
    live = read_table(run, nft, family, name)
    if live == desired:
        return {"changed": False, "actions": [], "before": live, "after": desired}
    script, actions = plan_table(family, name, live, desired, definition)
    rc, _out, err = run(apply_argv(nft, check_mode), script)
    if rc != 0:
        step = "validate" if check_mode else "apply"
        raise NftError(f"nft refused to {step} table {family} {name}: {err.strip()}")
    return {"changed": True, "actions": actions, "before": live, "after": desired, "script": script}
