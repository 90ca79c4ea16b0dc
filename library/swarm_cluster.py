#!/usr/bin/python
"""Ansible module: roles, labels, availability and removal of swarm nodes, run on a manager."""

DOCUMENTATION = r"""
---
module: swarm_cluster
short_description: Reconcile the swarm's node list with the description, quorum-safely
description:
  - Runs on a live manager. Reads the node list over the Docker Engine API unix socket, matches
    each described node (by node id, else by address, else by hostname), and applies
    roles, labels (exactly; labels not described are removed) and availability.
  - Managers change in a quorum-safe order. Promotions come first and are waited for, then
    demotions one at a time (unreachable managers first, the manager running the module last).
    A step never leaves fewer reachable managers than a majority.
  - A description that would cost more than one level of fault tolerance in one run (for
    example 5 managers to 1) is refused before anything changes; the error gives the safe path.
  - A swarm node that no described node matches is drained, demoted if it is a manager, and,
    with O(remove_nodes=true), removed from the node list once it is down (forced after
    O(wait_timeout)). Let the host leave (M(swarm_node) C(state=absent)) between the two.
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
      addr:
        description: The node's advertise address, used to find it in the node list.
        type: str
      node_id:
        description: The swarm id of the node when known (from M(swarm_node)); wins over the address.
        type: str
  remove_nodes:
    description: Remove nodes that are not described (after draining and demoting them).
    type: bool
    default: true
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
      - {name: node1, role: manager, addr: 172.30.0.11}
      - {name: node2, role: manager, addr: 172.30.0.12}
      - {name: node3, role: manager, addr: 172.30.0.13, availability: drain}
      - {name: node4, role: worker, addr: 172.30.0.14, labels: {zone: a}}
"""

RETURN = r"""
nodes:
  description: State of each described node after the run (role, availability, labels, id), by name.
  returned: always
  type: dict
missing:
  description: Described nodes that are not in the swarm (not joined yet, or unreachable).
  returned: always
  type: list
  elements: str
pending_removal:
  description: Swarm nodes (hostname or id) that are not described and are still in the node list.
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

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric.docker_api import DockerAPI, DockerAPIError


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


def node_view(node):
    spec = node.get("Spec") or {}
    return {
        "role": spec.get("Role", "worker"),
        "availability": spec.get("Availability", "active"),
        "labels": dict(spec.get("Labels") or {}),
    }


def match_nodes(desired, live):
    """Map desired name -> live node; return (matched, undesired live nodes)."""
    by_id = {node["ID"]: node for node in live}
    matched = {}
    taken = set()

    def pick(candidates):
        # Prefer a ready node over a stale "down" entry of the same host.
        candidates = [node for node in candidates if node["ID"] not in taken]
        candidates.sort(key=lambda node: ((node.get("Status") or {}).get("State") != "ready", node["ID"]))
        return candidates[0] if candidates else None

    for want in desired:
        node = by_id.get(want.get("node_id") or "")
        if node is None or node["ID"] in taken:
            node = pick([n for n in live if want.get("addr") and (n.get("Status") or {}).get("Addr") == want["addr"]])
        if node is None:
            node = pick([n for n in live if (n.get("Description") or {}).get("Hostname") == want["name"]])
        if node is not None:
            matched[want["name"]] = node
            taken.add(node["ID"])
    return matched, [node for node in live if node["ID"] not in taken]


def display(node):
    return (node.get("Description") or {}).get("Hostname") or node["ID"]


def fmt_labels(labels):
    return "{" + ", ".join(f"{key}: {value}" for key, value in sorted(labels.items())) + "}"


class Cluster:
    def __init__(self, module, api):
        self.module = module
        self.api = api
        self.actions = []
        self.timeout = module.params["wait_timeout"]
        self.self_id = (api.get("/info").get("Swarm") or {}).get("NodeID")

    def live(self):
        return self.api.get("/nodes")

    def update(self, node_id, text, **changes):
        self.actions.append(text)
        if self.module.check_mode:
            return
        node = self.api.get(f"/nodes/{node_id}")
        spec = dict(node.get("Spec") or {})
        spec.update(changes)
        self.api.post(f"/nodes/{node_id}/update", body=spec, query={"version": node["Version"]["Index"]})

    def wait_for(self, what, predicate):
        if self.module.check_mode:
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

    def is_down(self, node_id):
        return (self.api.get(f"/nodes/{node_id}").get("Status") or {}).get("State") == "down"

    def run(self, desired, remove_nodes):
        live = self.live()
        matched, undesired = match_nodes(desired, live)
        want = {item["name"]: item for item in desired}
        names = {node["ID"]: name for name, node in matched.items()}
        names.update({node["ID"]: display(node) for node in undesired})

        managers = [node["ID"] for node in live if node.get("ManagerStatus")]
        reachable = [node["ID"] for node in live
                     if (node.get("ManagerStatus") or {}).get("Reachability") == "reachable"]
        desired_managers = [matched[name]["ID"] for name in matched if want[name]["role"] == "manager"]
        try:
            promote, demote = plan_managers(managers, reachable, desired_managers, self.self_id)
        except QuorumError as exc:
            self.module.fail_json(msg=f"Cannot reconcile swarm managers: {exc}", actions=[])

        before = {name: node_view(node) for name, node in matched.items()}
        before.update({display(node): node_view(node) for node in undesired})
        after = {name: {"role": want[name]["role"], "availability": want[name]["availability"],
                        "labels": dict(want[name]["labels"] or {})} for name in matched}

        # 1. Promotions first, each with its node's settings; wait until reachable.
        for node_id in promote:
            name = names[node_id]
            self.update(node_id, f"promoted {name}", Role="manager",
                        Labels=after[name]["labels"], Availability=after[name]["availability"])
            self.wait_for(f"{name} to become a reachable manager", lambda n=node_id: self.is_reachable_manager(n))
        # 2. Labels and availability of the others; drain undescribed nodes.
        for name, node in sorted(matched.items()):
            if node["ID"] in promote:
                continue
            have, goal = before[name], after[name]
            if have["labels"] != goal["labels"]:
                self.update(node["ID"], f"set labels of {name} to {fmt_labels(goal['labels'])}", Labels=goal["labels"])
            if have["availability"] != goal["availability"]:
                self.update(node["ID"], f"set availability of {name} to {goal['availability']}",
                            Availability=goal["availability"])
        for node in undesired:
            if node_view(node)["availability"] != "drain":
                self.update(node["ID"], f"drained {display(node)} (not in the description)", Availability="drain")
        # 3. Demotions one at a time, each settled before the next.
        for node_id in demote:
            self.update(node_id, f"demoted {names[node_id]}", Role="worker")
            if node_id != self.self_id:
                self.wait_for(f"{names[node_id]} to leave the managers", lambda n=node_id: self.is_not_manager(n))
        # 4. Removal of undescribed nodes, once down (forced after the timeout).
        pending = []
        for node in undesired:
            if not remove_nodes or node["ID"] == self.self_id:
                pending.append(display(node))
                continue
            self.actions.append(f"removed {display(node)} from the swarm")
            if self.module.check_mode:
                continue
            try:
                self.wait_for(f"{display(node)} to go down", lambda n=node["ID"]: self.is_down(n))
                force = False
            except DockerAPIError:
                force = True
            self.api.delete(f"/nodes/{node['ID']}", query={"force": force})

        result = {
            "changed": bool(self.actions),
            "actions": self.actions,
            "missing": sorted(set(want) - set(matched)),
            "pending_removal": sorted(pending),
            "nodes": {name: dict(after[name], id=node["ID"]) for name, node in matched.items()},
        }
        if self.module._diff:
            result["diff"] = {
                "before": before,
                "after": dict(after, **{display(n): node_view(n) for n in undesired if not remove_nodes}),
            }
        return result


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
                    "addr": {"type": "str"},
                    "node_id": {"type": "str"},
                },
            },
            "remove_nodes": {"type": "bool", "default": True},
            "wait_timeout": {"type": "int", "default": 60},
            "socket": {"type": "path", "default": "/var/run/docker.sock"},
        },
        supports_check_mode=True,
    )
    for item in module.params["nodes"]:
        item["labels"] = {str(key): str(value) for key, value in (item["labels"] or {}).items()}
    cluster = None
    try:
        cluster = Cluster(module, DockerAPI(module.params["socket"]))
        module.exit_json(**cluster.run(module.params["nodes"], module.params["remove_nodes"]))
    except DockerAPIError as exc:
        module.fail_json(msg=f"Cannot reconcile swarm nodes: {exc}", actions=cluster.actions if cluster else [])


if __name__ == "__main__":
    main()
