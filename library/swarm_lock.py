#!/usr/bin/python
# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: the converge lock, kept in the swarm itself."""

DOCUMENTATION = r"""
---
module: swarm_lock
short_description: One converge of a swarm at a time (a lock in the swarm's own spec)
description:
  - Run on a live manager. The lock is the swarm label C(io.swarmfabric.lock), a small JSON
    document naming the holder (controller, user, start time, run id). Because it lives in the
    swarm, it holds across controllers.
  - Taking it is a compare-and-swap on the swarm's version index. Of two runs that read a free
    lock at the same moment, the daemon accepts only one update; the other re-reads the lock
    and fails naming the holder.
  - C(state=present) takes the lock for O(owner), or fails at once naming the holder when
    another run holds it. O(break_lock=true) takes it over from another holder (for a lock
    left by a killed run).
  - C(state=absent) releases the lock if O(owner) holds it, and leaves another run's lock alone.
  - In check mode nothing is written; a lock held by another run is reported as a warning.
author: Swarmfabric contributors
options:
  state:
    description: Take (C(present)), release (C(absent)) or only read (C(query)) the lock.
    type: str
    choices: [present, absent, query]
    default: present
  owner:
    description:
      - Who holds the lock; C(run) identifies the run and must be unique per run.
      - Required with C(state=present) and C(state=absent).
    type: dict
    suboptions:
      run:
        description: Unique id of this run.
        type: str
        required: true
      controller:
        description: Host name of the controller.
        type: str
        default: ""
      user:
        description: User that started the run.
        type: str
        default: ""
      started:
        description: Start time of the run (UTC, ISO 8601).
        type: str
        default: ""
  break_lock:
    description: Take the lock even when another run holds it. Only for a lock whose run is gone.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reads the lock, writes nothing; a foreign lock is reported as a warning.
  diff_mode:
    support: none
  idempotent:
    support: full
    description: Taking a lock this run holds, or releasing a free one, changes nothing.
extends_documentation_fragment:
  - swarmfabric
  - swarmfabric.docker
"""

EXAMPLES = r"""
- name: Take the converge lock
  swarm_lock:
    owner: {run: "{{ run_id }}", controller: ci-7, user: deploy, started: "2026-12-01T17:00:00Z"}
    break_lock: "{{ swarm_break_lock | bool }}"
"""

RETURN = r"""
holder:
  description: The holder of the lock after the run (empty when it is free).
  returned: always
  type: dict
  sample: {run: 8f3k2, controller: ci-7, user: deploy, started: "2026-12-01T17:00:00Z"}
actions:
  description: What was done (or would be done in check mode).
  returned: always
  type: list
  elements: str
  sample: ["took the converge lock"]
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric.docker_api import DockerAPI, DockerAPIError
from ansible.module_utils.swarmfabric.module import Change

LOCK_LABEL = "io.swarmfabric.lock"


def read_lock(swarm):
    """(spec, version, holder) of GET /swarm; holder is {} when the lock is free."""
    spec = swarm.get("Spec") or {}
    text = (spec.get("Labels") or {}).get(LOCK_LABEL, "")
    holder = {}
    if text:
        try:
            holder = json.loads(text)
        except ValueError:
            holder = {}
        if not isinstance(holder, dict):
            holder = {}
        holder.setdefault("run", text if not holder else "")
    return spec, swarm["Version"]["Index"], holder


def describe(holder):
    who = holder.get("user") or "someone"
    where = holder.get("controller") or "an unknown controller"
    since = holder.get("started") or "an unknown time"
    return f"{who}@{where} since {since} (run {holder.get('run') or '?'})"


def held_cause(holder):
    return (
        f"another converge holds it: {describe(holder)}; wait for it to end, "
        "or, if that run is gone, break the lock with -e swarm_break_lock=true"
    )


def with_lock(spec, holder):
    spec = dict(spec)
    labels = dict(spec.get("Labels") or {})
    if holder:
        labels[LOCK_LABEL] = json.dumps(holder, sort_keys=True, separators=(",", ":"))
    else:
        labels.pop(LOCK_LABEL, None)
    spec["Labels"] = labels
    return spec


class Lock:
    def __init__(self, change, api):
        self.change, self.module, self.api = change, change.module, api
        self.owner = self.module.params["owner"] or {}

    def read(self):
        return read_lock(self.api.get("/swarm"))

    def write(self, spec, version, holder):
        self.api.post("/swarm/update", body=with_lock(spec, holder), query={"version": version})

    def held(self, holder):
        self.change.fail("take the converge lock", held_cause(holder), holder=holder, actions=[])

    def take(self):
        spec, version, holder = self.read()
        if holder.get("run") == self.owner["run"]:
            return holder
        if holder and not self.module.params["break_lock"]:
            if self.change.check_mode:
                self.module.warn(f"The converge lock is held: {describe(holder)}; a real run would stop here")
                return holder
            self.held(holder)
        self.change.act(f"broke the lock of {describe(holder)}" if holder else "took the converge lock")
        if self.change.check_mode:
            return holder
        try:
            self.write(spec, version, self.owner)
        except DockerAPIError:
            # Another run updated the swarm between our read and our write.
            _, _, holder = self.read()
            if holder and holder.get("run") != self.owner["run"]:
                self.held(holder)
            raise
        _, _, holder = self.read()
        if holder.get("run") != self.owner["run"]:
            self.held(holder)
        return holder

    def release(self):
        spec, version, holder = self.read()
        if not holder:
            return {}
        if holder.get("run") != self.owner["run"]:
            self.module.warn(f"The converge lock is held by another run, left in place: {describe(holder)}")
            return holder
        self.change.act("released the converge lock", self.write, spec, version, {})
        return {}


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["present", "absent", "query"], "default": "present"},
            "owner": {
                "type": "dict",
                "options": {
                    "run": {"type": "str", "required": True},
                    "controller": {"type": "str", "default": ""},
                    "user": {"type": "str", "default": ""},
                    "started": {"type": "str", "default": ""},
                },
            },
            "break_lock": {"type": "bool", "default": False},
            "socket": {"type": "path", "default": "/var/run/docker.sock"},
        },
        required_if=[("state", "present", ("owner",)), ("state", "absent", ("owner",))],
        supports_check_mode=True,
    )
    change = Change(module, diff=False)
    lock = Lock(change, DockerAPI(module.params["socket"]))
    action = {"present": "take the converge lock", "absent": "release the converge lock",
              "query": "read the converge lock"}[module.params["state"]]
    try:
        if module.params["state"] == "present":
            holder = lock.take()
        elif module.params["state"] == "absent":
            holder = lock.release()
        else:
            holder = lock.read()[2]
    except DockerAPIError as exc:
        change.fail(action, exc)
    change.exit(holder=holder)


if __name__ == "__main__":
    main()
