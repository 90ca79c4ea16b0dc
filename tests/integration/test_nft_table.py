"""nft_table against the real kernel, inside a network namespace of our own."""

import difflib

import pytest
from sf_mesh_helpers import del_ns, new_ns, ruleset, run_module, sh

TABLE = """table ip sf_test {
	map svc {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 10.9.255.1 . tcp . 80 : goto svc-a, 10.9.255.2 . tcp . 80 : goto svc-b }
	}

	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr . meta l4proto . th dport vmap @svc
	}

	chain svc-a {
		meta l4proto tcp dnat ip to numgen inc mod 2 map { 0 : 10.9.1.1 . 80, 1 : 10.9.1.2 . 80 }
	}

	chain svc-b {
		counter packets 0 bytes 0 drop
	}
}
"""
OTHER = "table inet not_ours {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n"


@pytest.fixture
def ns():
    name = new_ns("nft")
    sh("nft", "-f", "-", ns=name, data=OTHER)
    yield name
    del_ns(name)


def apply(ns, definition, **kw):
    return run_module(ns, "nft_table", {"name": "sf_test", "family": "ip", "definition": definition}, **kw)


def other_table(ns):
    return sh("nft", "list", "table", "inet", "not_ours", ns=ns).stdout


def test_apply_noop_delta_and_delete(ns):
    untouched = other_table(ns)
    first = apply(ns, TABLE)
    assert first["changed"] and first["actions"] == ["created table ip sf_test"]
    live = sh("nft", "list", "table", "ip", "sf_test", ns=ns).stdout
    assert "10.9.1.2 . 80" in live

    again = apply(ns, TABLE)
    assert again["changed"] is False and again["actions"] == [] and again["script"] == ""

    moved = TABLE.replace("10.9.1.2 . 80", "10.9.1.3 . 80").replace(", 10.9.255.2 . tcp . 80 : goto svc-b", "")
    delta = apply(ns, moved, diff=True)
    assert delta["changed"]
    assert "delete table" not in delta["script"]  # a delta, not a reload
    assert delta["script"].splitlines()[0] == "delete element ip sf_test svc { 10.9.255.2 . tcp . 80 }"
    assert "-\t\tmeta l4proto tcp dnat ip to numgen inc mod 2 map { 0 : 10.9.1.1 . 80, 1 : 10.9.1.2 . 80 }" in \
        _unified(delta)
    live = sh("nft", "list", "table", "ip", "sf_test", ns=ns).stdout
    assert "10.9.1.3 . 80" in live and "10.9.1.2 . 80" not in live and "10.9.255.2" not in live
    assert apply(ns, moved)["changed"] is False

    gone = run_module(ns, "nft_table", {"name": "sf_test", "family": "ip", "state": "absent"})
    assert gone["changed"]
    assert sh("nft", "list", "table", "ip", "sf_test", ns=ns, check=False).returncode != 0
    assert other_table(ns) == untouched


def _unified(result):
    diff = result["diff"]
    return "\n".join(difflib.unified_diff(diff["before"].splitlines(), diff["after"].splitlines(), lineterm=""))


def test_check_mode_changes_nothing(ns):
    before = ruleset(ns)
    result = apply(ns, TABLE, check=True)
    assert result["changed"] and "table ip sf_test" in result["script"]
    assert ruleset(ns) == before


def test_invalid_definition_fails_and_leaves_ruleset_byte_identical(ns):
    apply(ns, TABLE)
    before = ruleset(ns)
    # A delta (one element) that the kernel refuses: the service port is no port.
    broken = TABLE.replace("10.9.255.1 . tcp . 80 : goto svc-a", "10.9.255.1 . tcp . no-such-port : goto svc-a")
    result = apply(ns, broken)
    assert result.get("failed") and result["msg"].startswith("Cannot apply table ip sf_test:")
    # A hook change forces a full reload; an invalid one must not leave the table deleted.
    reload_broken = TABLE.replace("priority dstnat", "priority nonsense")
    result = apply(ns, reload_broken)
    assert result.get("failed")
    assert ruleset(ns) == before


def test_definition_of_another_table_is_refused(ns):
    before = ruleset(ns)
    result = apply(ns, OTHER)
    assert result.get("failed") and "not ip sf_test" in result["msg"]
    assert ruleset(ns) == before
