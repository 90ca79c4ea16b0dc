"""The module skeleton itself (module_utils/swarmfabric/module.py): writes skipped in
check mode, changed and diff from the recorded actions, "Cannot <action>: <cause>"
failures with the traceback only where there is one, and the one command runner."""

import pytest
from swarmfabric.module import Change, CommandError, Runner


class Stop(Exception):
    pass


class Module:
    def __init__(self, check_mode=False, diff=False, answers=()):
        self.check_mode, self._diff = check_mode, diff
        self.answers, self.calls, self.looked_up, self.failed = list(answers), [], [], None

    def get_bin_path(self, name, required=False):
        self.looked_up.append((name, required))
        return f"/usr/sbin/{name}"

    def run_command(self, argv, data=None, binary_data=False):
        self.calls.append((argv, data, binary_data))
        return self.answers.pop(0)

    def fail_json(self, **kwargs):
        self.failed = kwargs
        raise Stop

    def exit_json(self, **kwargs):
        self.exited = kwargs
        raise Stop


@pytest.mark.parametrize("check", [False, True])
def test_an_action_is_recorded_and_its_write_runs_only_for_real(check):
    change, writes = Change(Module(check_mode=check)), []
    assert change.act("created x", writes.append, "x") is None
    change.act("noted y")
    assert writes == ([] if check else ["x"])
    assert change.result() == {"changed": True, "actions": ["created x", "noted y"]}


def test_no_action_is_no_change_and_extra_keys_win_over_the_default():
    change = Change(Module())
    assert change.result(holder={}) == {"changed": False, "actions": [], "holder": {}}
    assert change.result(changed=True)["changed"] is True


@pytest.mark.parametrize("diff, supported, expected", [
    (True, True, {"before": {"a": 1}, "after": {"a": 2}, "before_header": "live", "after_header": "desired"}),
    (False, True, None),
    (True, False, None),
])
def test_the_diff_is_returned_only_when_asked_for_and_supported(diff, supported, expected):
    change = Change(Module(diff=diff), diff=supported, headers=("live", "desired"))
    change.before, change.after = {"a": 1}, {"a": 2}
    assert change.result().get("diff") == expected


def test_a_failure_outside_an_except_has_no_traceback():
    module = Module()
    change = Change(module)
    change.act("created x")
    with pytest.raises(Stop):
        change.fail("create y", "it is in the way", extra=1)
    assert module.failed == {"msg": "Cannot create y: it is in the way", "actions": ["created x"], "extra": 1}


def test_a_failure_inside_an_except_carries_the_traceback():
    module = Module()
    with pytest.raises(Stop):
        try:
            raise ValueError("bad input")
        except ValueError as exc:
            Change(module).fail("read z", exc, actions=[])
    assert module.failed["msg"] == "Cannot read z: bad input" and module.failed["actions"] == []
    assert "Traceback" in module.failed["exception"] and "ValueError: bad input" in module.failed["exception"]


def test_the_runner_finds_each_program_once_and_feeds_stdin_as_is():
    module = Module(answers=[(0, "out", ""), (0, "[]", ""), (0, "", "")])
    run = Runner(module)
    assert run.run(["ip", "-batch", "-"], data="xfrm state flush\n") == "out"
    assert run.json(["ip", "-j", "link", "show"]) == []
    assert run.status(["/opt/bin/tool", "x"]) == (0, "", "")
    assert module.calls == [(["/usr/sbin/ip", "-batch", "-"], "xfrm state flush\n", True),
                            (["/usr/sbin/ip", "-j", "link", "show"], None, False),
                            (["/opt/bin/tool", "x"], None, False)]
    assert module.looked_up == [("ip", True)]


def test_a_failed_command_raises_naming_it_and_a_missing_device_is_empty_when_allowed():
    module = Module(answers=[(2, "", "Error: RTNETLINK answers:\n File exists"),
                             (1, "", 'Device "sf-x" does not exist.'), (1, "", "Cannot find device")])
    run = Runner(module)
    with pytest.raises(CommandError) as failed:
        run.run(["ip", "link", "add"], what="create sf-x")
    assert str(failed.value) == "create sf-x failed (rc=2): Error: RTNETLINK answers: File exists"
    assert failed.value.cause == "Error: RTNETLINK answers:\n File exists"
    assert run.json(["ip", "-j", "addr", "show", "dev", "sf-x"], missing_ok=True) == []
    with pytest.raises(CommandError, match="Cannot find device"):
        run.json(["ip", "-j", "addr", "show", "dev", "sf-x"])
