#!/usr/bin/python
"""Ansible module: the swarm membership of the host it runs on."""

DOCUMENTATION = r"""
---
module: swarm_node
short_description: Swarm membership of this host (init, join, leave, repair, unlock)
description:
  - Reads the local Docker Engine's swarm state over its unix socket, compares it with the
    desired membership and applies the difference. Standard library only; no docker SDK.
  - C(state=present) with C(init=true) creates a swarm when the host is in none, labelled with
    O(name) so that a later run recognises it. Otherwise the host joins through O(remote_addrs)
    with O(join_token).
  - A host already in a B(different) swarm (another cluster id, or a swarm without our name) is
    an error that names both, never C(ok). A host left half-joined (C(pending) or C(error)) is
    made to leave and joins again. A locked manager is unlocked with O(unlock_key).
  - The swarm's own view is the truth for membership. A host whose daemon says it is an active
    member but which the managers no longer list (O(listed=false), for example after
    C(docker node rm) on a manager) leaves its stale local state with force and joins again.
  - Role changes of a host that is already a member are the job of M(swarm_cluster); this
    module only checks that a fresh join gave the requested O(role).
  - C(state=query) reads the state and changes nothing.
version_added: "1.0.0"
author: Swarmfabric
options:
  state:
    description: Desired membership, or C(query) to only read it.
    type: str
    choices: [present, absent, query]
    default: present
  name:
    description:
      - Name of the swarm (the description's C(swarm.name)). Stored as the swarm label
        C(io.swarmfabric.name) at init; a manager in a swarm without this label is in a different swarm.
    type: str
  init:
    description: Create the swarm if this host is in none. Only for the first manager.
    type: bool
    default: false
  role:
    description: Role the host must have after a join (the join token decides it).
    type: str
    choices: [manager, worker]
    default: worker
  advertise_addr:
    description: Address advertised to the other nodes. Used at init and join only.
    type: str
  listen_addr:
    description: Listen address for swarm management traffic. Used at init and join only.
    type: str
    default: 0.0.0.0:2377
  remote_addrs:
    description: Addresses (host:port) of live managers to join through.
    type: list
    elements: str
    default: []
  join_token:
    description: Join token fetched from a live manager. Secret.
    type: str
  cluster_id:
    description: Id of the swarm this host must be in. A host in another swarm is an error.
    type: str
  autolock:
    description:
      - Whether managers encrypt their raft keys at rest (autolock). Set at init, and
        reconciled when the host is a manager and this option is given.
    type: bool
  unlock_key:
    description: Key that unlocks a locked manager (keep it in a vault). Secret.
    type: str
  force:
    description: With C(state=absent), leave even if this removes a manager from a live swarm.
    type: bool
    default: false
  return_tokens:
    description:
      - On a manager, return the join tokens and the unlock key. The task must set C(no_log).
    type: bool
    default: false
  return_nodes:
    description:
      - On a manager, return the swarm's node list (RV(nodes)) as the managers see it.
    type: bool
    default: false
  listed:
    description:
      - Whether the swarm's managers list this host's node id (read on a live manager with
        O(return_nodes)). C(false) makes an active member leave with force and join again.
    type: bool
    default: true
notes:
  - O(advertise_addr), O(listen_addr) and O(autolock) at creation are only used when the host
    initialises or joins; the module never moves a member to another address.
seealso:
  - module: swarm_cluster
  - module: swarm_service
extends_documentation_fragment:
  - swarmfabric
  - swarmfabric.docker
"""

EXAMPLES = r"""
- name: First manager creates the swarm
  swarm_node:
    init: true
    name: lab
    role: manager
    advertise_addr: 172.30.0.11

- name: Read a live manager's tokens (never printed)
  swarm_node:
    state: query
    return_tokens: true
  no_log: true
  register: tokens

- name: Join as worker
  swarm_node:
    role: worker
    remote_addrs: ["172.30.0.11:2377"]
    join_token: "{{ tokens.join_tokens.worker }}"
    cluster_id: "{{ tokens.cluster_id }}"
    advertise_addr: 172.30.0.14

- name: Unlock a locked manager
  swarm_node:
    unlock_key: "{{ vault_swarm_unlock_key }}"
"""

RETURN = r"""
node_state:
  description: Local swarm state after the run (inactive, pending, active, error, locked).
  returned: always
  type: str
node_id:
  description: This host's swarm node id, empty when not a member.
  returned: always
  type: str
cluster_id:
  description: Id of the swarm this host is in, empty when not a member.
  returned: always
  type: str
is_manager:
  description: Whether this host is a reachable manager.
  returned: always
  type: bool
swarm_name:
  description: The swarm's C(io.swarmfabric.name) label (readable on managers only).
  returned: always
  type: str
manager_addr:
  description: This host's manager address (host:port) when it is a manager.
  returned: always
  type: str
autolock:
  description: Whether the swarm locks its managers (readable on managers only; false elsewhere).
  returned: always
  type: bool
join_tokens:
  description: Worker and manager join tokens. Secret.
  returned: when return_tokens is true and the host is a manager
  type: dict
  sample: {worker: SWMTKN-1-..., manager: SWMTKN-1-...}
nodes:
  description:
    - The swarm's nodes as the managers list them, with the toolkit's identity label
      (C(io.swarmfabric.host)) and the address the managers see (C(Status.Addr)).
  returned: when return_nodes is true and the host is a manager
  type: list
  elements: dict
  sample: [{id: 4k2v9mzq, host: m1, hostname: node1, addr: 172.30.0.11, state: ready, role: manager}]
unlock_key:
  description: The swarm's unlock key when autolock is on. Secret.
  returned: when return_tokens is true and the host is a manager
  type: str
actions:
  description: What was done (or would be done in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["joined swarm 3f2a... as worker"]
"""

import os
import ssl
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric.docker_api import DockerAPI, DockerAPIError
from ansible.module_utils.swarmfabric.module import Change

NAME_LABEL = "io.swarmfabric.name"
HOST_LABEL = "io.swarmfabric.host"
HALF_JOINED = ("pending", "error")


def cert_cluster_id(root_dir):
    """Cluster id from the node certificate's O= (workers can't read it over the API)."""
    path = os.path.join(root_dir or "/var/lib/docker", "swarm", "certificates", "swarm-node.crt")
    try:
        decoded = ssl._ssl._test_decode_cert(path)
    except (OSError, ssl.SSLError, AttributeError):
        return ""
    for rdn in decoded.get("subject", ()):
        for key, value in rdn:
            if key == "organizationName":
                return value
    return ""


def read_state(api):
    info = api.get("/info")
    swarm = info.get("Swarm") or {}
    state = {
        "node_state": swarm.get("LocalNodeState") or "inactive",
        "node_id": swarm.get("NodeID") or "",
        "cluster_id": (swarm.get("Cluster") or {}).get("ID") or "",
        "is_manager": bool(swarm.get("ControlAvailable")),
        "swarm_name": "",
        "manager_addr": "",
        "autolock": False,
        "error": swarm.get("Error") or "",
    }
    if state["node_state"] in ("active", "locked") and not state["cluster_id"]:
        state["cluster_id"] = cert_cluster_id(info.get("DockerRootDir"))
    if state["is_manager"]:
        spec = api.get("/swarm").get("Spec") or {}
        state["swarm_name"] = (spec.get("Labels") or {}).get(NAME_LABEL, "")
        state["autolock"] = bool((spec.get("EncryptionConfig") or {}).get("AutoLockManagers"))
        node = api.get(f"/nodes/{state['node_id']}")
        state["manager_addr"] = (node.get("ManagerStatus") or {}).get("Addr", "")
    return state


def node_record(node):
    spec, status = node.get("Spec") or {}, node.get("Status") or {}
    return {
        "id": node.get("ID", ""),
        "host": (spec.get("Labels") or {}).get(HOST_LABEL, ""),
        "hostname": (node.get("Description") or {}).get("Hostname", ""),
        "addr": status.get("Addr", ""),
        "state": status.get("State", ""),
        "role": spec.get("Role", "worker"),
    }


def role_of(state):
    if state["node_state"] != "active":
        return ""
    return "manager" if state["is_manager"] else "worker"


def init_body(params):
    body = {
        "ListenAddr": params["listen_addr"],
        "Spec": {"Labels": {NAME_LABEL: params["name"]}},
    }
    if params["advertise_addr"]:
        body["AdvertiseAddr"] = params["advertise_addr"]
    if params["autolock"] is not None:
        body["Spec"]["EncryptionConfig"] = {"AutoLockManagers": params["autolock"]}
    return body


def join_body(params):
    body = {
        "ListenAddr": params["listen_addr"],
        "RemoteAddrs": params["remote_addrs"],
        "JoinToken": params["join_token"],
    }
    if params["advertise_addr"]:
        body["AdvertiseAddr"] = params["advertise_addr"]
    return body


def foreign_swarm_error(params, state):
    """(action, cause) when the host is in a swarm that is not ours, else None."""
    expected = params["cluster_id"]
    if expected and state["cluster_id"] != expected:
        return (
            f"join swarm {expected}",
            f"this host is already in a different swarm "
            f"{state['cluster_id'] or '(unknown id)'}; make it leave that swarm first (docker swarm leave --force)",
        )
    if params["init"] and params["name"] and state["is_manager"] and state["swarm_name"] != params["name"]:
        return (
            f"set up swarm {params['name']!r}",
            f"this host is already a manager of a different swarm "
            f"{state['cluster_id']} (named {state['swarm_name'] or 'nothing'}, not {params['name']!r}); "
            "make it leave that swarm first (docker swarm leave --force)",
        )
    return None


# How long a join Docker carries on in the background may take to become active.
JOIN_WAIT = 90


class Membership:
    def __init__(self, change, api):
        self.change, self.module, self.api = change, change.module, api
        self.params = self.module.params
        self.state = read_state(api)
        change.before = self.summary()

    def summary(self):
        return {"state": self.state["node_state"], "cluster_id": self.state["cluster_id"], "role": role_of(self.state)}

    def act(self, text, method, path, body=None, query=None):
        return self.change.act(text, self.request, method, path, body, query)

    def request(self, method, path, body, query):
        result = self.api.request(method, path, body=body, query=query)
        self.state = read_state(self.api)
        return result

    def join(self, body):
        """POST /swarm/join. Docker answers 503 "Timeout was reached before node joined" when the join
        takes longer than its own wait (a loaded manager, a raft catching up) and goes on in the
        background: then the node's state is read again until it is active, for up to JOIN_WAIT s."""
        try:
            self.request("POST", "/swarm/join", body, None)
        except DockerAPIError as exc:
            if exc.status != 503 or "continue in the background" not in str(exc):
                raise
            deadline = time.monotonic() + JOIN_WAIT
            while time.monotonic() < deadline:
                time.sleep(2)
                self.state = read_state(self.api)
                if self.state["node_state"] == "active":
                    return
            raise

    def unlock(self):
        if self.state["node_state"] != "locked":
            return
        if not self.params["unlock_key"]:
            self.change.fail("manage swarm membership", "this manager is locked (autolock is on) and no "
                             "unlock_key was given; pass the swarm's unlock key from the vault")
        self.act("unlocked manager", "POST", "/swarm/unlock", body={"UnlockKey": self.params["unlock_key"]})
        if self.change.check_mode:
            self.state["node_state"] = "active"

    def repair(self):
        if self.state["node_state"] not in HALF_JOINED:
            return
        cause = f" ({self.state['error']})" if self.state["error"] else ""
        self.leave(f"left half-joined swarm (state {self.state['node_state']}{cause})", force=True)

    def leave(self, text, force):
        self.act(text, "POST", "/swarm/leave", query={"force": force})
        if self.change.check_mode:
            self.state.update(node_state="inactive", cluster_id="", is_manager=False)

    def create_or_join(self):
        params = self.params
        if params["init"]:
            if not params["name"]:
                self.change.fail("create swarm", "option name is required with init")
            self.act(f"initialised swarm {params['name']!r} advertising {params['advertise_addr'] or 'default'}",
                     "POST", "/swarm/init", body=init_body(params))
            return
        if not self.change.check_mode and (not params["join_token"] or not params["remote_addrs"]):
            self.change.fail("join swarm", "no live manager to join through (remote_addrs and join_token are "
                             "empty); is the first manager up?")
        target = params["cluster_id"] or "via " + (",".join(params["remote_addrs"]) or "a manager")
        self.change.act(f"joined swarm {target} as {params['role']}", self.join, join_body(params))
        if not self.change.check_mode and role_of(self.state) != params["role"]:
            self.change.fail(f"join swarm as {params['role']}", f"the host joined as "
                             f"{role_of(self.state) or 'nothing'}; was the join token for the other role?")

    def reconcile_autolock(self):
        if self.params["autolock"] is None or not self.state["is_manager"]:
            return
        swarm = self.api.get("/swarm")
        spec = swarm.get("Spec") or {}
        current = bool((spec.get("EncryptionConfig") or {}).get("AutoLockManagers"))
        if current == self.params["autolock"]:
            return
        spec.setdefault("EncryptionConfig", {})["AutoLockManagers"] = self.params["autolock"]
        self.act(
            "turned autolock " + ("on" if self.params["autolock"] else "off"),
            "POST", "/swarm/update", body=spec, query={"version": swarm["Version"]["Index"]},
        )

    def rejoin(self):
        """Leave a membership the managers no longer list, so that the host joins again."""
        if self.params["listed"] or self.state["node_state"] != "active":
            return
        self.leave(f"left stale swarm state (node {self.state['node_id']} is not in the managers' node list)",
                   force=True)

    def present(self):
        self.unlock()
        self.repair()
        if self.state["node_state"] == "active":
            foreign = foreign_swarm_error(self.params, self.state)
            if foreign:
                self.change.fail(*foreign, cluster_id=self.state["cluster_id"])
            self.rejoin()
        if self.state["node_state"] == "inactive":
            self.create_or_join()
        self.reconcile_autolock()
        if self.change.check_mode and self.change.actions and self.state["node_state"] == "inactive":
            self.state.update(node_state="active", cluster_id=self.params["cluster_id"] or "",
                              is_manager=self.params["role"] == "manager")

    def absent(self):
        if self.state["node_state"] == "inactive":
            return
        self.leave(f"left swarm {self.state['cluster_id'] or ''}".rstrip(),
                   force=self.params["force"] or self.state["node_state"] != "active")

    def tokens(self):
        if not (self.params["return_tokens"] and self.state["is_manager"]):
            return {}
        swarm = self.api.get("/swarm")
        tokens = swarm.get("JoinTokens") or {}
        key = (self.api.get("/swarm/unlockkey") or {}).get("UnlockKey", "")
        return {"join_tokens": {"worker": tokens.get("Worker", ""), "manager": tokens.get("Manager", "")},
                "unlock_key": key}

    def nodes(self):
        if not (self.params["return_nodes"] and self.state["is_manager"]):
            return {}
        return {"nodes": [node_record(node) for node in self.api.get("/nodes")]}

    def result(self):
        out = {key: value for key, value in self.state.items() if key != "error"}
        self.change.after = self.summary()
        out.update(self.tokens())
        out.update(self.nodes())
        return self.change.result(**out)


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["present", "absent", "query"], "default": "present"},
            "name": {"type": "str"},
            "init": {"type": "bool", "default": False},
            "role": {"type": "str", "choices": ["manager", "worker"], "default": "worker"},
            "advertise_addr": {"type": "str"},
            "listen_addr": {"type": "str", "default": "0.0.0.0:2377"},
            "remote_addrs": {"type": "list", "elements": "str", "default": []},
            "join_token": {"type": "str", "no_log": True},
            "cluster_id": {"type": "str"},
            "autolock": {"type": "bool"},
            "unlock_key": {"type": "str", "no_log": True},
            "force": {"type": "bool", "default": False},
            "return_tokens": {"type": "bool", "default": False},
            "return_nodes": {"type": "bool", "default": False},
            "listed": {"type": "bool", "default": True},
            "socket": {"type": "path", "default": "/var/run/docker.sock"},
        },
        required_if=[("init", True, ("name",))],
        supports_check_mode=True,
    )
    action = {"present": "manage swarm membership", "absent": "leave swarm", "query": "read swarm state"}
    change = Change(module)
    try:
        membership = Membership(change, DockerAPI(module.params["socket"]))
        if module.params["state"] == "present":
            membership.present()
        elif module.params["state"] == "absent":
            membership.absent()
        result = membership.result()
    except DockerAPIError as exc:
        change.fail(action[module.params["state"]], exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
