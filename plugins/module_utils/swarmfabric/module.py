"""The one skeleton of the modules in library/.

A module reads the live state, plans, and applies through a ``Change``:
it collects the actions, before and after, and turns them into ``changed``
and Ansible's ``diff``. Every write goes through ``Change.write``, which
check mode skips. Failures read "Cannot <action>: <cause>" and carry the
traceback in ``exception=`` when there is one. ``Runner`` is the one
command runner: it finds each binary with ``get_bin_path(required=True)``.

Standard library only: this runs on managed hosts. A new module is then
mostly its planner.
"""

import json
import os
import sys
import traceback


class CommandError(Exception):
    """A command that exited non-zero. ``what`` names it; ``err`` is its stderr on one line, ``cause``
    its stderr (or stdout) as printed."""

    def __init__(self, what, rc, err, out=""):
        self.what = what
        self.rc = rc
        self.err = " ".join((err or "").split())
        # Kept as printed (nft points at the offending line on the next ones).
        self.cause = (err or out or "").strip() or f"exit code {rc}"
        super().__init__(f"{what} failed (rc={rc}): {self.err}")


class Runner:
    """Runs argv lists (never shell strings) through AnsibleModule.run_command.

    ``argv[0]`` is a bare program name; it is looked up once with
    ``get_bin_path(required=True)``, which fails the module cleanly when
    the program is not installed. Data on stdin (keys, rulesets) goes as is.
    """

    def __init__(self, module):
        self.module = module
        self._paths = {}

    def path(self, name):
        if os.path.isabs(name):
            return name
        if name not in self._paths:
            self._paths[name] = self.module.get_bin_path(name, required=True)
        return self._paths[name]

    def status(self, argv, data=None):
        """(rc, out, err), whatever the exit code."""
        return self.module.run_command([self.path(argv[0]), *argv[1:]], data=data, binary_data=data is not None)

    def run(self, argv, data=None, what=None):
        """stdout; a non-zero exit raises CommandError."""
        rc, out, err = self.status(argv, data)
        if rc != 0:
            raise CommandError(what or " ".join(argv), rc, err, out)
        return out

    def json(self, argv, missing_ok=False):
        """Parsed JSON of a ``-j`` listing; [] for a device that does not exist with ``missing_ok``."""
        rc, out, err = self.status(argv)
        if rc != 0:
            if missing_ok and ("does not exist" in err or "Cannot find device" in err):
                return []
            raise CommandError(" ".join(argv), rc, err, out)
        return json.loads(out) if out.strip() else []


class Change:
    """Actions, before and after of one module run; ``changed`` is "some action was planned".

    ``diff``: whether the module supports diff mode (its DOCUMENTATION says so);
    the diff is returned only when Ansible asks for it (``--diff``).
    """

    def __init__(self, module, diff=True, headers=None):
        self.module = module
        self.check_mode = module.check_mode
        self.diff = diff
        self.headers = headers
        self.actions = []
        self.before = {}
        self.after = {}
        # Per-object diffs (before_header/after_header/before/after each); when
        # set, they are the diff instead of before and after.
        self.diffs = None

    def write(self, fn, *args, **kwargs):
        """Run one write, unless in check mode (then None)."""
        if self.check_mode:
            return None
        return fn(*args, **kwargs)

    def act(self, text, fn=None, *args, **kwargs):
        """Record one action and run its write (skipped in check mode)."""
        self.actions.append(text)
        return None if fn is None else self.write(fn, *args, **kwargs)

    @property
    def changed(self):
        return bool(self.actions)

    def result(self, **extra):
        """The exit_json keywords: ``extra``, changed, actions and, in diff mode, the diff."""
        out = dict(extra)
        out.setdefault("changed", self.changed)
        out["actions"] = self.actions
        if self.diff and self.module._diff and self.diffs is not None:
            out["diff"] = self.diffs
        elif self.diff and self.module._diff:
            out["diff"] = {"before": self.before, "after": self.after}
            if self.headers:
                out["diff"]["before_header"], out["diff"]["after_header"] = self.headers
        return out

    def exit(self, **extra):
        self.module.exit_json(**self.result(**extra))

    def fail(self, action, cause, **extra):
        """fail_json with "Cannot <action>: <cause>"; inside an ``except`` it carries the traceback."""
        extra.setdefault("actions", self.actions)
        if sys.exc_info()[0] is not None:
            extra.setdefault("exception", traceback.format_exc())
        self.module.fail_json(msg=f"Cannot {action}: {cause}", **extra)
