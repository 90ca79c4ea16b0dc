#!/usr/bin/python
"""Ansible module: roles, labels, availability and removal of swarm nodes, run on a manager."""

DOCUMENTATION = r"""
---
module: swarm_cluster
short_description: Reconcile the swarm's node list with the description, quorum-safely
description:
  - Runs on a live manager. Reads the node list over the Docker Engine API unix socket and
    matches each described host to its swarm node by something stable - never by hostname or
    address. A host that answered in this run gives its own node id (O(nodes[].node_id)); the
    module then records it in the swarm as the node label C(io.swarmfabric.host=<name>). A host
    that did not answer is found by that label, read back from the node list.
  - Roles, labels and availability are applied to the hosts that answered. Labels are set
    exactly, except that labels under the reserved prefix C(io.swarmfabric.) are the toolkit's
    own (kept; a described label may not use the prefix).
  - A described host that cannot be reached in this run (O(nodes[].reachable=false)) is never
    drained, demoted, promoted or relabelled; what it would get is returned in RV(deferred), and
    it counts with its current role in the quorum arithmetic.
  - Managers change in a quorum-safe order. Promotions come first and are waited for, then
    demotions one at a time (unreachable managers first, the manager running the module last).
    A step never leaves fewer reachable managers than a majority.
  - A description that would cost more than one level of fault tolerance in one run (for
    example 5 managers to 1) is refused before anything changes; the error gives the safe path.
  - A swarm node that no described host matches is retired only when every described host was
    matched (otherwise it may be one of them). It is drained, demoted if it is a manager, and,
    with O(remove_nodes=true), removed from the node list once it is down. A node that does not
    go down within O(wait_timeout), or an API error, leaves it in place with a warning; removal
    is never forced. Let the host leave (M(swarm_node) C(state=absent)) between the two.
  - Maintenance (C(playbooks/maintenance.yml)). O(nodes[].maintenance=true) drains a reached node,
    marks it with the node label C(io.swarmfabric.maintenance) (the time it began) and waits until
    none of its tasks still runs; O(nodes[].maintenance=false) removes the mark and gives the node
    its described availability back. Without the option, a marked node stays drained whatever the
    description says, with a warning, so that a converge during the maintenance does not undo it.
version_added: "1.0.0"
author: Swarmfabric
options:
  nodes:
    description: Every node the swarm should hold.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Inventory name of the node.
        type: str
        required: true
      role:
        description: Swarm role.
        type: str
        choices: [manager, worker]
        required: true
      labels:
        description: Node labels, set exactly.
        type: dict
        default: {}
      availability:
        description: Scheduling availability.
        type: str
        choices: [active, pause, drain]
        default: active
      node_id:
        description:
          - The node id the host's own daemon reported in this run (from M(swarm_node)). Without
            it the node is found by its C(io.swarmfabric.host) label.
        type: str
      reachable:
        description: Whether the host answered in this run. Changes to an unreachable host are deferred.
        type: bool
        default: true
      maintenance:
        description:
          - C(true) begins maintenance (drain, mark, wait for its tasks to stop), C(false) ends it.
            Omitted, a node in maintenance stays so.
        type: bool
  remove_nodes:
    description: Remove nodes that are not described (after draining and demoting them).
    type: bool
    default: true
  only:
    description:
      - Change only the maintenance mark and availability of these nodes (O(nodes[].maintenance));
        roles, labels and every other node stay as they are, and nothing is retired.
        Used by C(playbooks/maintenance.yml).
    type: list
    elements: str
  wait_timeout:
    description: Seconds to wait for a promotion or demotion to settle, or a removed node to go down.
    type: int
    default: 60
seealso:
  - module: swarm_node
  - module: swarm_service
extends_documentation_fragment:
  - swarmfabric
  - swarmfabric.docker
"""

EXAMPLES = r"""
- name: Reconcile roles, labels and availability
  swarm_cluster:
    nodes:
      - {name: m1, role: manager, node_id: 4k2v9mzq1s0fk1w5r3d8y7x6e}
      - {name: m2, role: manager, node_id: 8d1c0b7a6z5y4x3w2v1u0t9s8}
      - {name: m3, role: manager, reachable: false}   # found by its io.swarmfabric.host label
      - {name: w1, role: worker, node_id: q9w8e7r6t5y4u3i2o1p0a9s8d, labels: {zone: a}}
"""

RETURN = r"""
nodes:
  description: State of each described node after the run (role, availability, labels, id), by name.
  returned: always
  type: dict
missing:
  description: Described hosts with no node in the swarm (not joined yet, or unreachable without an identity label).
  returned: always
  type: list
  elements: str
not_reached:
  description: Described hosts that did not answer in this run (O(nodes[].reachable=false)).
  returned: always
  type: list
  elements: str
deferred:
  description: Per unreachable host, the changes it would get; applied by the next run that reaches it.
  returned: always
  type: dict
  sample: {m3: ["set availability of m3 to drain"]}
pending_removal:
  description: Swarm nodes (identity label, hostname or id) that are not described and are still in the node list.
  returned: always
  type: list
  elements: str
actions:
  description: What was done (or would be done in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["promoted node4", "set labels of node4 to {zone: a}", "demoted node3"]
"""

import json
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric.docker_api import DockerAPI, DockerAPIError
from ansible.module_utils.swarmfabric.module import Change


class QuorumError(Exception):
    pass


def majority(count):
    return count // 2 + 1


def tolerance(count):
    return max(count - 1, 0) // 2


def safe_path(current, final):
    """Manager counts to converge through, one fault-tolerance level at a time."""
    steps = []
    count = current
    while tolerance(count) - tolerance(final) > 1:
        count = 2 * (tolerance(count) - 1) + 1
        steps.append(count)
    return [*steps, final]


def plan_managers(current, reachable, desired, self_id=None):
    """Order promotions and demotions so that quorum holds at every step.

    current: ids of today's managers; reachable: the subset that is reachable;
    desired: ids that must be managers. Returns (promote, demote), both lists,
    or raises QuorumError explaining the safe path. Pure: no I/O.
    """
    current, reachable, desired = set(current), set(reachable) & set(current), set(desired)
    if current and len(reachable) < majority(len(current)):
        raise QuorumError(
            f"the swarm has lost quorum ({len(reachable)} of {len(current)} managers reachable, "
            f"{majority(len(current))} needed); restore the unreachable managers first"
        )
    promote = sorted(desired - current)
    # Unreachable managers go first (that only improves the ratio); ourselves last.
    demote = sorted(current - desired, key=lambda node: (node in reachable, node == self_id, node))
    final = len(desired)
    if not final:
        raise QuorumError("the description leaves the swarm without a manager")
    if tolerance(len(current)) - tolerance(final) > 1:
        path = " -> ".join(str(step) for step in [len(current), *safe_path(len(current), final)])
        raise QuorumError(
            f"going from {len(current)} managers to {final} in one run would break quorum "
            f"(fault tolerance would drop from {tolerance(len(current))} to {tolerance(final)} at once); "
            f"safe path: shrink one step per run, {path}, converging after each step"
        )
    count, alive = len(current) + len(promote), len(reachable) + len(promote)
    for node in demote:
        count -= 1
        alive -= node in reachable
        if alive < majority(count):
            raise QuorumError(
                f"demoting {node} would leave {alive} reachable of {count} managers, below a majority; "
                "bring the unreachable managers back (or remove them) first"
            )
    return promote, demote


HOST_LABEL = "io.swarmfabric.host"
MAINTENANCE_LABEL = "io.swarmfabric.maintenance"
RESERVED_PREFIX = "io.swarmfabric."


def node_view(node):
    spec = node.get("Spec") or {}
    return {
        "role": spec.get("Role", "worker"),
        "availability": spec.get("Availability", "active"),
        "labels": dict(spec.get("Labels") or {}),
    }


def identity(node):
    return ((node.get("Spec") or {}).get("Labels") or {}).get(HOST_LABEL, "")


def match_nodes(desired, live):
    """Map desired name -> live node; return (matched, undescribed live nodes).

    A host that answered in this run names its own node id (its daemon's
    word); any other host is found by the identity label the swarm keeps for
    it. Hostnames and addresses are never used: they are not stable.
    """
    by_id = {node["ID"]: node for node in live}
    matched, taken = {}, set()
    for want in desired:
        node = by_id.get(want.get("node_id") or "")
        if node is not None and node["ID"] not in taken:
            matched[want["name"]] = node
            taken.add(node["ID"])
    for want in desired:
        if want["name"] in matched or want.get("node_id"):
            # A host that named an id the managers do not list is not a
            # member, whatever its old label says (it re-joins).
            continue
        candidates = [node for node in live if node["ID"] not in taken and identity(node) == want["name"]]
        # Prefer a ready node over a stale "down" entry of the same host.
        candidates.sort(key=lambda node: ((node.get("Status") or {}).get("State") != "ready", node["ID"]))
        if candidates:
            matched[want["name"]] = candidates[0]
            taken.add(candidates[0]["ID"])
    return matched, [node for node in live if node["ID"] not in taken]


def display(node):
    return node.get("_name") or identity(node) or (node.get("Description") or {}).get("Hostname") or node["ID"]


def fmt_labels(labels):
    return "{" + ", ".join(f"{key}: {value}" for key, value in sorted(labels.items())) + "}"


def goal_labels(name, want, live_labels, now=""):
    """The described labels, our identity label, and the live node's other reserved labels;
    the maintenance mark set or removed when ``want`` asks."""
    labels = {key: value for key, value in live_labels.items() if key.startswith(RESERVED_PREFIX)}
    labels.update(want["labels"] or {})
    labels[HOST_LABEL] = name
    return with_maintenance(labels, want.get("maintenance"), now)


def with_maintenance(labels, maintenance, now):
    """``labels`` with the maintenance mark set (True), removed (False) or as it is (None)."""
    labels = dict(labels)
    if maintenance is True:
        labels.setdefault(MAINTENANCE_LABEL, now)
    elif maintenance is False:
        labels.pop(MAINTENANCE_LABEL, None)
    return labels


def goal_availability(want, labels):
    """Drained while in maintenance (the mark in the goal labels), else as described."""
    return "drain" if MAINTENANCE_LABEL in labels else want["availability"]


def user_labels(labels):
    return {key: value for key, value in labels.items() if not key.startswith(RESERVED_PREFIX)}


def label_action(name, have, goal):
    """What a label change does, in the user's words."""
    if user_labels(have) == user_labels(goal) and (MAINTENANCE_LABEL in have) != (MAINTENANCE_LABEL in goal):
        return f"{'began' if MAINTENANCE_LABEL in goal else 'ended'} the maintenance of {name}"
    return f"set labels of {name} to {fmt_labels(user_labels(goal))}"


class Cluster:
    def __init__(self, change, api):
        self.change, self.module, self.api = change, change.module, api
        self.deferred = {}
        self.warnings = []
        self.timeout = self.module.params["wait_timeout"]
        self.self_id = (api.get("/info").get("Swarm") or {}).get("NodeID")

    def live(self):
        return self.api.get("/nodes")

    def update(self, node_id, text, **changes):
        self.change.act(text, self.write_spec, node_id, changes)

    def write_spec(self, node_id, changes):
        node = self.api.get(f"/nodes/{node_id}")
        spec = dict(node.get("Spec") or {})
        spec.update(changes)
        self.api.post(f"/nodes/{node_id}/update", body=spec, query={"version": node["Version"]["Index"]})

    def defer(self, name, text):
        self.deferred.setdefault(name, []).append(text)

    def wait_for(self, what, predicate):
        if self.change.check_mode:
            return
        deadline = time.monotonic() + self.timeout
        while True:
            if predicate():
                return
            if time.monotonic() > deadline:
                raise DockerAPIError(f"timed out after {self.timeout}s waiting for {what}")
            time.sleep(1)

    def is_reachable_manager(self, node_id):
        status = self.api.get(f"/nodes/{node_id}").get("ManagerStatus") or {}
        return status.get("Reachability") == "reachable"

    def is_not_manager(self, node_id):
        return not self.api.get(f"/nodes/{node_id}").get("ManagerStatus")

    def running_tasks(self, node_id):
        """Tasks on the node that still run, or are meant to (a drained node's tasks are shut down)."""
        tasks = self.api.get("/tasks", query={"filters": json.dumps({"node": [node_id]})})
        return [t for t in tasks if t.get("DesiredState") == "running"
                or (t.get("Status") or {}).get("State") in ("running", "starting", "preparing")]

    def is_down(self, node_id):
        return (self.api.get(f"/nodes/{node_id}").get("Status") or {}).get("State") == "down"

    def retire(self, node):
        """Remove one undescribed node once it is down; never forced."""
        name = display(node)
        if self.change.check_mode:
            self.change.act(f"removed {name} from the swarm")
            return True
        try:
            self.wait_for(f"{name} to go down", lambda n=node["ID"]: self.is_down(n))
            self.api.delete(f"/nodes/{node['ID']}")
        except DockerAPIError as exc:
            # A node that is still up, or a daemon that does not answer, is
            # kept: a forced removal would cut a live node out of the swarm.
            self.warnings.append(f"Cannot remove {name} from the swarm yet: {exc}; it stays in the node list "
                                 "(make it leave, then run again)")
            return False
        self.change.act(f"removed {name} from the swarm")
        return True

    def run(self, desired, remove_nodes):
        for item in desired:
            reserved = sorted(key for key in item["labels"] or {} if key.startswith(RESERVED_PREFIX))
            if reserved:
                self.change.fail("reconcile swarm nodes", f"label {reserved[0]} of {item['name']} uses "
                                 f"the reserved prefix {RESERVED_PREFIX}", actions=[])
        live = self.live()
        matched, undescribed = match_nodes(desired, live)
        want = {item["name"]: item for item in desired}
        unreachable = sorted(name for name, item in want.items() if not item.get("reachable", True))
        missing = sorted(set(want) - set(matched))
        only = self.module.params["only"]
        # Retiring is only safe when every described host was found: an
        # unmatched one may be any of the undescribed nodes.
        may_retire = not missing and only is None
        reached = {name: node for name, node in matched.items() if want[name].get("reachable", True)}
        # An undescribed node may carry the label of a described host (its
        # entry from before a re-join): name it apart from that host.
        for node in undescribed:
            if display(node) in want:
                node["_name"] = f"{display(node)} (stale entry {node['ID'][:12]})"
        names = {node["ID"]: name for name, node in matched.items()}
        names.update({node["ID"]: display(node) for node in undescribed})

        before = {name: node_view(node) for name, node in matched.items()}
        before.update({display(node): node_view(node) for node in undescribed})
        after = {}
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for name in matched:
            if name in reached and only is not None:
                # Only the maintenance of the nodes in ``only``; the rest as it is.
                labels = with_maintenance(before[name]["labels"], want[name].get("maintenance"), now)
                after[name] = before[name] if name not in only else dict(
                    before[name], labels=labels, availability=goal_availability(want[name], labels))
            elif name in reached:
                labels = goal_labels(name, want[name], before[name]["labels"], now)
                after[name] = {"role": want[name]["role"], "availability": goal_availability(want[name], labels),
                               "labels": labels}
                if want[name].get("maintenance") is None and MAINTENANCE_LABEL in labels \
                        and want[name]["availability"] != "drain":
                    self.warnings.append(f"{name} is in maintenance since {labels[MAINTENANCE_LABEL]}: kept "
                                         f"drained (end it with playbooks/maintenance.yml -e node={name} "
                                         "-e maintenance=end)")
            else:
                after[name] = before[name]
                self.defer_changes(name, before[name], want[name])
        for name in missing:
            if not want[name].get("reachable", True):
                self.defer(name, f"all of {name}: no node carries its identity label {HOST_LABEL}={name} yet "
                                 "(set by the first run that reaches it)")

        managers = [node["ID"] for node in live if node.get("ManagerStatus")]
        reachable = [node["ID"] for node in live
                     if (node.get("ManagerStatus") or {}).get("Reachability") == "reachable"]
        keep = [node["ID"] for name, node in matched.items() if after[name]["role"] == "manager"]
        if not may_retire:
            keep += [node["ID"] for node in undescribed if node.get("ManagerStatus")]
        try:
            promote, demote = plan_managers(managers, reachable, keep, self.self_id)
        except QuorumError as exc:
            self.change.fail("reconcile swarm managers", exc, actions=[])

        # 1. Promotions first, each with its node's settings; wait until reachable.
        for node_id in promote:
            name = names[node_id]
            self.update(node_id, f"promoted {name}", Role="manager",
                        Labels=after[name]["labels"], Availability=after[name]["availability"])
            self.wait_for(f"{name} to become a reachable manager", lambda n=node_id: self.is_reachable_manager(n))
        # 2. Labels and availability of the others; drain undescribed nodes.
        for name, node in sorted(reached.items()):
            if node["ID"] in promote:
                continue
            have, goal = before[name], after[name]
            if have["labels"] != goal["labels"]:
                self.update(node["ID"], label_action(name, have["labels"], goal["labels"]), Labels=goal["labels"])
            if have["availability"] != goal["availability"]:
                self.update(node["ID"], f"set availability of {name} to {goal['availability']}",
                            Availability=goal["availability"])
            if want[name].get("maintenance") and (only is None or name in only):
                self.wait_for(f"the tasks on {name} to stop", lambda n=node["ID"]: not self.running_tasks(n))
        if may_retire:
            for node in undescribed:
                if node_view(node)["availability"] != "drain":
                    self.update(node["ID"], f"drained {display(node)} (not in the description)", Availability="drain")
        # 3. Demotions one at a time, each settled before the next.
        for node_id in demote:
            self.update(node_id, f"demoted {names[node_id]}", Role="worker")
            if node_id != self.self_id:
                self.wait_for(f"{names[node_id]} to leave the managers", lambda n=node_id: self.is_not_manager(n))
        # 4. Removal of undescribed nodes once they are down, never forced.
        pending = []
        for node in undescribed:
            if not (may_retire and remove_nodes) or node["ID"] == self.self_id or not self.retire(node):
                pending.append(display(node))
        if undescribed and missing:
            self.warnings.append(
                f"Not retiring {', '.join(sorted(display(n) for n in undescribed))}: described hosts "
                f"{', '.join(missing)} were not found in the swarm, and an undescribed node may be one of them")

        result = {
            "missing": missing,
            # Not "unreachable": Ansible reads that key as the host being unreachable.
            "not_reached": unreachable,
            "deferred": self.deferred,
            "pending_removal": sorted(pending),
            "nodes": {name: dict(after[name], id=node["ID"]) for name, node in matched.items()},
        }
        for text in self.warnings:
            self.module.warn(text)
        self.change.before = before
        self.change.after = dict(after, **{display(n): node_view(n) for n in undescribed if display(n) in pending})
        return self.change.result(**result)

    def defer_changes(self, name, have, item):
        """Record what an unreachable host would get; nothing is applied to it."""
        labels = goal_labels(name, item, have["labels"], "(when reached)")
        goal_role, goal_av = item["role"], goal_availability(item, labels)
        if have["role"] != goal_role:
            self.defer(name, f"{'promote' if goal_role == 'manager' else 'demote'} {name}")
        if have["labels"] != labels:
            self.defer(name, label_action(name, have["labels"], labels))
        if have["availability"] != goal_av:
            self.defer(name, f"set availability of {name} to {goal_av}")


def main():
    module = AnsibleModule(
        argument_spec={
            "nodes": {
                "type": "list", "elements": "dict", "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "role": {"type": "str", "choices": ["manager", "worker"], "required": True},
                    "labels": {"type": "dict", "default": {}},
                    "availability": {"type": "str", "choices": ["active", "pause", "drain"], "default": "active"},
                    "node_id": {"type": "str"},
                    "reachable": {"type": "bool", "default": True},
                    "maintenance": {"type": "bool"},
                },
            },
            "remove_nodes": {"type": "bool", "default": True},
            "only": {"type": "list", "elements": "str"},
            "wait_timeout": {"type": "int", "default": 60},
            "socket": {"type": "path", "default": "/var/run/docker.sock"},
        },
        supports_check_mode=True,
    )
    for item in module.params["nodes"]:
        item["labels"] = {str(key): str(value) for key, value in (item["labels"] or {}).items()}
    change = Change(module)
    try:
        result = Cluster(change, DockerAPI(module.params["socket"])).run(module.params["nodes"],
                                                                          module.params["remove_nodes"])
    except DockerAPIError as exc:
        change.fail("reconcile swarm nodes", exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
