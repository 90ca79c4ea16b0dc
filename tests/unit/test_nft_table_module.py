"""nft_table with a scripted run_command: the exact argv and stdin, the call
count (one read, then one transaction), check mode validating only, changed and diff."""

import pytest
from conftest import load_module

nft_table = load_module("nft_table")

LIST = ["/usr/sbin/nft", "list", "table", "inet", "sf_test"]
APPLY = ["/usr/sbin/nft", "-f", "/dev/stdin"]
VALIDATE = ["/usr/sbin/nft", "-c", "-f", "/dev/stdin"]
MISSING = (1, "", "Error: No such file or directory; did you mean table 'filter' in family ip?")


def table(*elements):
    body = ", ".join(elements)
    return ("table inet sf_test {\n\tset allowed {\n\t\ttype ipv4_addr\n"
            + (f"\t\telements = {{ {body} }}\n" if elements else "") + "\t}\n"
            "\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n"
            "\t\tip saddr @allowed counter packets 0 bytes 0 accept\n\t}\n}\n")


PARAMS = {"name": "sf_test", "family": "inet"}


def test_a_missing_table_is_created_in_one_transaction(run_module):
    done = run_module(nft_table, dict(PARAMS, definition=table("10.0.0.1")), commands=[MISSING, (0, "", "")],
                      diff=True)
    assert not done.failed, done.msg
    assert done.commands.calls == [(LIST, None), (APPLY, table("10.0.0.1").rstrip() + "\n")]
    assert done.changed is True and done.result["actions"] == ["created table inet sf_test"]
    assert done.result["diff"]["before"] == "" and "ip saddr @allowed counter accept" in done.result["diff"]["after"]
    assert done.result["diff"]["before_header"] == "nft table inet sf_test (live)"


def test_an_element_change_is_a_small_delta(run_module):
    done = run_module(nft_table, dict(PARAMS, definition=table("10.0.0.1", "10.0.0.2")),
                      commands=[(0, table("10.0.0.1"), ""), (0, "", "")])
    assert [argv for argv, _ in done.commands.calls] == [LIST, APPLY]
    assert done.commands.calls[1][1] == "add element inet sf_test allowed { 10.0.0.2 }\n"
    assert (done.result["lines_added"], done.result["lines_removed"]) == (1, 0)


def test_the_same_table_with_other_counters_is_one_read_and_no_change(run_module):
    live = table("10.0.0.1").replace("packets 0 bytes 0", "packets 17 bytes 2040")
    done = run_module(nft_table, dict(PARAMS, definition=table("10.0.0.1")), commands=[(0, live, "")])
    assert done.commands.argvs == [LIST]
    assert done.result == {"changed": False, "actions": [], "lines_added": 0, "lines_removed": 0, "script": ""}


def test_check_mode_only_validates(run_module):
    done = run_module(nft_table, dict(PARAMS, definition=table("10.0.0.1")), check=True,
                      commands=[MISSING, (0, "", "")])
    assert done.commands.argvs == [LIST, VALIDATE] and done.changed is True


@pytest.mark.parametrize("check", [False, True])
def test_a_refused_script_fails_with_nfts_words(run_module, check):
    done = run_module(nft_table, dict(PARAMS, definition=table("10.0.0.1")), check=check,
                      commands=[MISSING, (1, "", "/dev/stdin:2:1-3: Error: syntax error")])
    step = "validate" if check else "apply"
    assert done.failed and done.msg == (f"Cannot apply table inet sf_test: nft refused to {step} table inet "
                                        "sf_test: /dev/stdin:2:1-3: Error: syntax error")
    assert "Traceback" in done.result["exception"] and len(done.commands.calls) == 2


def test_absent_deletes_only_an_existing_table(run_module):
    done = run_module(nft_table, dict(PARAMS, state="absent"), commands=[(0, table(), ""), (0, "", "")])
    assert done.commands.calls[1] == (APPLY, "delete table inet sf_test\n")
    again = run_module(nft_table, dict(PARAMS, state="absent"), commands=[MISSING])
    assert again.changed is False and len(again.commands.calls) == 1


def test_a_definition_of_another_table_is_refused_before_any_command(run_module):
    done = run_module(nft_table, dict(PARAMS, definition=table().replace("sf_test", "other")))
    assert done.failed and done.commands.calls == []
    assert done.msg == "Cannot apply table inet sf_test: the definition declares table inet other, not inet sf_test"


def test_nft_not_installed_fails_before_any_command(run_module):
    done = run_module(nft_table, dict(PARAMS, definition=table()), missing=("nft",))
    assert done.failed and done.msg == "Failed to find required executable nft" and done.commands.calls == []
