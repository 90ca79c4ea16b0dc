"""swarm_cluster, swarm_node and swarm_lock against a stateful scripted Docker
API: identity by label, deferral for unreachable hosts, no forced removal,
re-join of an unlisted member, and the converge lock."""

import copy
import json

import pytest
from swarmfabric.plan import build_plan, host_view
from test_swarm_quorum import load

cluster = load("swarm_cluster")
node = load("swarm_node")
lock = load("swarm_lock")
DockerAPIError = cluster.DockerAPIError


class Failed(Exception):
    pass


class FakeModule:
    def __init__(self, check_mode=False, **params):
        self.params = params
        self.check_mode = check_mode
        self._diff = False
        self.warnings = []

    def fail_json(self, msg, **kwargs):
        raise Failed(msg)

    def warn(self, text):
        self.warnings.append(text)


class Swarm:
    """A swarm as the Engine API shows it on one manager; records every write."""

    def __init__(self, nodes, self_id="id1"):
        self.nodes = {n["ID"]: n for n in nodes}
        self.self_id = self_id
        self.spec = {"Labels": {"io.swarmfabric.name": "lab"}}
        self.version = 10
        self.writes = []
        self.down_after = {}  # node id -> GETs until it shows as down
        self.fail_paths = set()
        self.race = None  # a holder another run writes just before our update

    def get(self, path, query=None):
        if path in self.fail_paths:
            raise DockerAPIError("context deadline exceeded", status=500)
        if path == "/info":
            return {"Swarm": {"NodeID": self.self_id, "LocalNodeState": "active", "ControlAvailable": True,
                              "Cluster": {"ID": "c1"}}}
        if path == "/nodes":
            return copy.deepcopy(list(self.nodes.values()))
        if path == "/swarm":
            return {"Spec": copy.deepcopy(self.spec), "Version": {"Index": self.version}}
        if path.startswith("/nodes/"):
            node_id = path.split("/")[2]
            left = self.down_after.get(node_id)
            if left is not None:
                self.down_after[node_id] = left - 1
                if left <= 0:
                    self.nodes[node_id]["Status"]["State"] = "down"
            return copy.deepcopy(self.nodes[node_id])
        raise KeyError(path)

    def request(self, method, path, body=None, query=None):
        if method == "GET":
            return self.get(path, query)
        self.writes.append((method, path, query))
        if path == "/swarm/update":
            if self.race is not None:
                self.spec["Labels"][lock.LOCK_LABEL] = json.dumps(self.race)
                self.version += 1
                self.race = None
            if query["version"] != self.version:
                raise DockerAPIError("update out of sequence", status=500)
            self.spec, self.version = body, self.version + 1
        elif path.endswith("/update"):
            node_id = path.split("/")[2]
            self.nodes[node_id]["Spec"] = body
            if body.get("Role") == "worker":
                self.nodes[node_id]["ManagerStatus"] = None
            elif body.get("Role") == "manager":
                self.nodes[node_id]["ManagerStatus"] = {"Reachability": "reachable"}
        elif method == "DELETE":
            self.nodes.pop(path.split("/")[2])
        return {}

    def post(self, path, body=None, query=None):
        return self.request("POST", path, body, query)

    def delete(self, path, query=None):
        return self.request("DELETE", path, None, query)


def live(i, role, host=None, state="ready", labels=None):
    spec_labels = dict(labels or {})
    if host:
        spec_labels[cluster.HOST_LABEL] = host
    return {
        "ID": f"id{i}",
        "Version": {"Index": 1},
        "Spec": {"Role": role, "Availability": "active", "Labels": spec_labels},
        "Status": {"State": state, "Addr": f"10.0.0.{i}"},
        "Description": {"Hostname": f"node{i}"},
        "ManagerStatus": {"Reachability": "reachable" if state == "ready" else "unreachable"}
        if role == "manager" else None,
    }


def want(name, role, node_id=None, reachable=True, labels=None, availability="active"):
    item = {"name": name, "role": role, "labels": labels or {}, "availability": availability, "reachable": reachable}
    if node_id:
        item["node_id"] = node_id
    return item


def run(swarm, desired, check_mode=False, remove_nodes=True, timeout=0):
    module = FakeModule(check_mode, nodes=desired, remove_nodes=remove_nodes, wait_timeout=timeout)
    return cluster.Cluster(module, swarm).run(desired, remove_nodes), module


def test_reachable_hosts_get_their_identity_label_and_user_labels_exactly():
    swarm = Swarm([live(1, "manager", labels={"zone": "old", "io.swarmfabric.backends": "x"})])
    result, _ = run(swarm, [want("m1", "manager", "id1", labels={"zone": "a"})])
    assert swarm.nodes["id1"]["Spec"]["Labels"] == {
        "zone": "a", cluster.HOST_LABEL: "m1", "io.swarmfabric.backends": "x"}
    assert result["actions"] == ["set labels of m1 to {zone: a}"]
    again, _ = run(swarm, [want("m1", "manager", "id1", labels={"zone": "a"})])
    assert again["changed"] is False


def test_a_reserved_label_in_the_description_is_refused_before_any_write():
    swarm = Swarm([live(1, "manager")])
    with pytest.raises(Failed, match=r"Cannot reconcile swarm nodes: label io.swarmfabric.host of m1 .*reserved"):
        run(swarm, [want("m1", "manager", "id1", labels={cluster.HOST_LABEL: "x"})])
    assert swarm.writes == []


def test_unreachable_hosts_with_aliases_are_kept_and_their_changes_deferred():
    # Inventory names (m1.., w1..) differ from the hostnames (node1..).
    swarm = Swarm([live(1, "manager", "m1"), live(2, "manager", "m2"), live(3, "manager", "m3"),
                   live(4, "worker", "w1"), live(5, "worker", "w2")])
    desired = [want("m1", "manager", "id1"), want("m2", "manager", "id2"),
               want("m3", "worker", reachable=False, availability="drain"),  # would be demoted and drained
               want("w1", "worker", "id4"), want("w2", "worker", reachable=False, labels={"zone": "b"})]
    result, _ = run(swarm, desired)
    assert swarm.writes == []
    assert result["not_reached"] == ["m3", "w2"]
    assert result["missing"] == []
    assert result["deferred"] == {"m3": ["demote m3", "set availability of m3 to drain"],
                                  "w2": ["set labels of w2 to {zone: b}"]}
    assert sorted(swarm.nodes) == ["id1", "id2", "id3", "id4", "id5"]
    assert swarm.nodes["id3"]["Spec"]["Role"] == "manager"


def test_when_the_host_comes_back_its_deferred_changes_are_applied():
    swarm = Swarm([live(1, "manager", "m1"), live(2, "manager", "m2"), live(3, "manager", "m3"),
                   live(4, "worker", "w1")])
    desired = [want("m1", "manager", "id1"), want("m2", "manager", "id2"), want("m4", "manager", "id4"),
               want("m3", "worker", "id3", availability="drain")]
    result, _ = run(swarm, desired, timeout=1)
    assert result["actions"] == ["promoted m4", "set availability of m3 to drain", "demoted m3"]
    assert result["deferred"] == {}
    assert swarm.nodes["id3"]["Spec"]["Role"] == "worker"
    assert swarm.nodes["id4"]["Spec"]["Labels"] == {cluster.HOST_LABEL: "m4"}


def test_an_unmatched_described_host_blocks_every_retirement():
    # w2 is unreachable and carries no identity label (e.g. a swarm from before the label):
    # node5 may be w2, so nothing is drained, demoted or removed.
    swarm = Swarm([live(1, "manager", "m1"), live(5, "worker", state="down")])
    result, module = run(swarm, [want("m1", "manager", "id1"), want("w2", "worker", reachable=False)])
    assert swarm.writes == []
    assert result["missing"] == ["w2"]
    assert result["pending_removal"] == ["node5"]
    assert "w2" in result["deferred"]
    assert any("Not retiring node5" in text for text in module.warnings)


def test_an_undescribed_node_that_stays_up_or_errors_is_never_force_removed():
    swarm = Swarm([live(1, "manager", "m1"), live(6, "worker", "old"), live(7, "worker", "older")])
    swarm.nodes["id7"]["Spec"]["Availability"] = "drain"
    swarm.fail_paths.add("/nodes/id7")  # its daemon's record does not answer
    result, module = run(swarm, [want("m1", "manager", "id1")], timeout=0)
    deletes = [w for w in swarm.writes if w[0] == "DELETE"]
    assert deletes == []
    assert result["pending_removal"] == ["old", "older"]
    assert len(module.warnings) == 2


def test_an_undescribed_node_is_removed_without_force_once_down():
    swarm = Swarm([live(1, "manager", "m1"), live(6, "worker", "old")])
    swarm.down_after["id6"] = 0
    result, _ = run(swarm, [want("m1", "manager", "id1")], timeout=5)
    assert ("DELETE", "/nodes/id6", None) in swarm.writes
    assert "removed old from the swarm" in result["actions"]


def test_a_re_joined_host_takes_its_label_and_its_stale_entry_is_retired():
    swarm = Swarm([live(1, "manager", "m1"), live(4, "worker", "w1", state="down"), live(8, "worker")])
    result, _ = run(swarm, [want("m1", "manager", "id1"), want("w1", "worker", "id8")], timeout=5)
    assert swarm.nodes["id8"]["Spec"]["Labels"] == {cluster.HOST_LABEL: "w1"}
    assert "id4" not in swarm.nodes
    assert result["missing"] == []
    assert "removed w1 (stale entry id4) from the swarm" in result["actions"]


def test_check_mode_plans_the_same_and_writes_nothing():
    swarm = Swarm([live(1, "manager", "m1"), live(6, "worker", "old", state="down")])
    result, _ = run(swarm, [want("m1", "manager", "id1", labels={"a": "b"})], check_mode=True)
    assert swarm.writes == []
    assert result["actions"] == ["set labels of m1 to {a: b}", "drained old (not in the description)",
                                 "removed old from the swarm"]


# swarm_node: the managers' node list is the truth.

NODE_PARAMS = {
    "state": "present", "name": "lab", "init": False, "role": "worker", "advertise_addr": None,
    "listen_addr": "0.0.0.0:2377", "remote_addrs": ["10.0.0.1:2377"], "join_token": "SWMTKN-1-secret",
    "cluster_id": "c1", "autolock": None, "unlock_key": None, "force": False, "return_tokens": False,
    "return_nodes": False, "listed": True,
}


class Daemon:
    """A worker's local daemon: active in c1 until it leaves; then joins anew."""

    def __init__(self):
        self.state, self.node_id = "active", "old"
        self.writes = []

    def get(self, path, query=None):
        assert path == "/info"
        return {"Swarm": {"LocalNodeState": self.state, "NodeID": self.node_id if self.state == "active" else "",
                          "Cluster": {"ID": "c1"} if self.state == "active" else {}, "ControlAvailable": False}}

    def request(self, method, path, body=None, query=None):
        if method == "GET":
            return self.get(path)
        self.writes.append((method, path, query))
        if path == "/swarm/leave":
            self.state = "inactive"
        elif path == "/swarm/join":
            self.state, self.node_id = "active", "new"
        return {}


def test_an_active_member_the_managers_do_not_list_leaves_with_force_and_joins_again():
    daemon = Daemon()
    membership = node.Membership(FakeModule(**dict(NODE_PARAMS, listed=False)), daemon)
    membership.present()
    assert [w[:2] for w in daemon.writes] == [("POST", "/swarm/leave"), ("POST", "/swarm/join")]
    assert daemon.writes[0][2] == {"force": True}
    assert membership.result()["node_id"] == "new"
    assert membership.actions[0].startswith("left stale swarm state (node old")


def test_a_listed_member_is_left_alone_and_check_mode_writes_nothing():
    daemon = Daemon()
    node.Membership(FakeModule(**NODE_PARAMS), daemon).present()
    assert daemon.writes == []
    membership = node.Membership(FakeModule(True, **dict(NODE_PARAMS, listed=False)), daemon)
    membership.present()
    assert daemon.writes == []
    assert len(membership.actions) == 2


def test_the_node_list_carries_identity_and_address():
    record = node.node_record(live(3, "manager", "m3"))
    assert record == {"id": "id3", "host": "m3", "hostname": "node3", "addr": "10.0.0.3", "state": "ready",
                      "role": "manager"}


# swarm_lock: one converge at a time.

OWNER = {"run": "r1", "controller": "ci-1", "user": "alice", "started": "2026-12-01T17:00:00Z"}
OTHER = {"run": "r2", "controller": "ci-2", "user": "bob", "started": "2026-12-01T16:59:00Z"}


def locker(swarm, check_mode=False, owner=OWNER, break_lock=False):
    return lock.Lock(FakeModule(check_mode, owner=owner, break_lock=break_lock), swarm)


def test_the_lock_is_taken_kept_in_the_swarm_and_released():
    swarm = Swarm([live(1, "manager", "m1")])
    assert locker(swarm).take() == OWNER
    assert json.loads(swarm.spec["Labels"][lock.LOCK_LABEL]) == OWNER
    assert swarm.spec["Labels"]["io.swarmfabric.name"] == "lab"
    held = locker(swarm)
    held.take()
    assert held.actions == []
    locker(swarm).release()
    assert lock.LOCK_LABEL not in swarm.spec["Labels"]
    assert swarm.spec["Labels"]["io.swarmfabric.name"] == "lab"


def test_a_second_run_fails_at_once_naming_the_holder_and_writes_nothing():
    swarm = Swarm([live(1, "manager", "m1")])
    locker(swarm, owner=OTHER).take()
    writes = len(swarm.writes)
    with pytest.raises(Failed, match=r"Cannot take the converge lock: .*bob@ci-2 since 2026-12-01T16:59:00Z "
                                     r"\(run r2\).*swarm_break_lock=true"):
        locker(swarm).take()
    assert len(swarm.writes) == writes


def test_two_runs_racing_for_a_free_lock_one_wins_the_other_names_it():
    swarm = Swarm([live(1, "manager", "m1")])
    swarm.race = OTHER  # the other run's update lands between our read and our write
    with pytest.raises(Failed, match=r"bob@ci-2"):
        locker(swarm).take()
    assert json.loads(swarm.spec["Labels"][lock.LOCK_LABEL]) == OTHER


def test_a_stale_lock_is_broken_only_on_purpose_and_release_leaves_a_foreign_lock():
    swarm = Swarm([live(1, "manager", "m1")])
    locker(swarm, owner=OTHER).take()
    mine = locker(swarm)
    mine.release()
    assert json.loads(swarm.spec["Labels"][lock.LOCK_LABEL]) == OTHER
    broken = locker(swarm, break_lock=True)
    broken.take()
    assert broken.actions == ["broke the lock of bob@ci-2 since 2026-12-01T16:59:00Z (run r2)"]
    assert json.loads(swarm.spec["Labels"][lock.LOCK_LABEL]) == OWNER


def test_check_mode_takes_no_lock_and_reports_a_held_one():
    swarm = Swarm([live(1, "manager", "m1")])
    free = locker(swarm, check_mode=True)
    free.take()
    assert swarm.writes == [] and free.actions == ["took the converge lock"]
    locker(swarm, owner=OTHER).take()
    writes = len(swarm.writes)
    held = locker(swarm, check_mode=True)
    held.take()
    assert len(swarm.writes) == writes
    assert any("bob@ci-2" in text for text in held.module.warnings)


# The plan: an unreachable host keeps its underlay from the swarm's node record.

def test_a_host_without_facts_takes_its_underlay_from_the_swarm_and_stays_a_peer():
    swarm = {"name": "lab", "managers": ["m1"], "workers": ["w1", "w2"],
             "overlays": {"appnet": {"vni": 300, "subnet": "10.20.0.0/16"}}}
    hostvars = {"m1": {"swarm_advertise_addr": "10.0.0.1"}, "w1": {"swarm_advertise_addr": "10.0.0.4"}, "w2": {}}
    nodes = [node.node_record(live(5, "worker", "w2", state="down")), node.node_record(live(6, "worker", "w2")),
             node.node_record(live(7, "worker"))]
    nodes[0]["addr"] = "10.0.0.99"  # a stale entry of w2: the ready one wins
    plan = build_plan(swarm, hostvars, nodes)
    assert plan["nodes"]["w2"]["advertise_addr"] == "10.0.0.6"
    peers = host_view(plan, "m1")["overlays"][0]["peers"]
    assert {"host": "w2", "underlay": "10.0.0.6"} in peers
    assert build_plan(swarm, hostvars)["nodes"]["w2"]["advertise_addr"] is None
