"""swarm_cluster, swarm_node and swarm_lock against a stateful Docker daemon
scripted at its socket: identity by label, deferral for unreachable hosts, no
forced removal, re-join of an unlisted member, and the converge lock."""

import copy
import json

import pytest
from conftest import Docker, Status, load_module
from swarmfabric.plan import build_plan, host_view

cluster = load_module("swarm_cluster")
node = load_module("swarm_node")
lock = load_module("swarm_lock")


class Swarm(Docker):
    """A swarm as the Engine API shows it on one manager; ``writes`` are every non-GET request."""

    def __init__(self, nodes, self_id="id1"):
        super().__init__()
        self.nodes = {n["ID"]: n for n in nodes}
        self.self_id = self_id
        self.spec = {"Labels": {"io.swarmfabric.name": "lab"}}
        self.version = 10
        self.down_after = {}  # node id -> GETs until it shows as down
        self.fail_paths = set()
        self.race = None  # a holder another run writes just before our update

    def respond(self, method, path, query, body):
        if method == "GET":
            return self.get(path)
        if path == "/swarm/update":
            if self.race is not None:
                self.spec["Labels"][lock.LOCK_LABEL] = json.dumps(self.race)
                self.version += 1
                self.race = None
            if int(query["version"]) != self.version:
                return Status(500, "update out of sequence")
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
        return None

    def get(self, path):
        if path in self.fail_paths:
            return Status(500, "context deadline exceeded")
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

    @property
    def writes(self):
        return [(method, path, query) for method, path, query, _body in self.calls if method != "GET"]


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


@pytest.fixture
def run(run_module, monkeypatch):
    """swarm_cluster's main() on ``swarm``: (result, warnings)."""
    monkeypatch.setattr(cluster.time, "sleep", lambda seconds: None)

    def converge(swarm, desired, check_mode=False, remove_nodes=True, timeout=0, only=None):
        done = run_module(cluster, {"nodes": desired, "remove_nodes": remove_nodes, "wait_timeout": timeout,
                                    "only": only}, check=check_mode, docker=swarm)
        return done.result, done.warnings
    return converge


def test_reachable_hosts_get_their_identity_label_and_user_labels_exactly(run):
    swarm = Swarm([live(1, "manager", labels={"zone": "old", "io.swarmfabric.backends": "x"})])
    result, _ = run(swarm, [want("m1", "manager", "id1", labels={"zone": "a"})])
    assert swarm.nodes["id1"]["Spec"]["Labels"] == {
        "zone": "a", cluster.HOST_LABEL: "m1", "io.swarmfabric.backends": "x"}
    assert result["actions"] == ["set labels of m1 to {zone: a}"]
    again, _ = run(swarm, [want("m1", "manager", "id1", labels={"zone": "a"})])
    assert again["changed"] is False


def test_a_reserved_label_in_the_description_is_refused_before_any_write(run):
    swarm = Swarm([live(1, "manager")])
    result, _ = run(swarm, [want("m1", "manager", "id1", labels={cluster.HOST_LABEL: "x"})])
    assert result["msg"].startswith("Cannot reconcile swarm nodes: label io.swarmfabric.host of m1 uses the reserved")
    assert swarm.writes == [] and result["actions"] == []


def test_unreachable_hosts_with_aliases_are_kept_and_their_changes_deferred(run):
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


def test_when_the_host_comes_back_its_deferred_changes_are_applied(run):
    swarm = Swarm([live(1, "manager", "m1"), live(2, "manager", "m2"), live(3, "manager", "m3"),
                   live(4, "worker", "w1")])
    desired = [want("m1", "manager", "id1"), want("m2", "manager", "id2"), want("m4", "manager", "id4"),
               want("m3", "worker", "id3", availability="drain")]
    result, _ = run(swarm, desired, timeout=1)
    assert result["actions"] == ["promoted m4", "set availability of m3 to drain", "demoted m3"]
    assert result["deferred"] == {}
    assert swarm.nodes["id3"]["Spec"]["Role"] == "worker"
    assert swarm.nodes["id4"]["Spec"]["Labels"] == {cluster.HOST_LABEL: "m4"}


def test_an_unmatched_described_host_blocks_every_retirement(run):
    # w2 is unreachable and carries no identity label (e.g. a swarm from before the label):
    # node5 may be w2, so nothing is drained, demoted or removed.
    swarm = Swarm([live(1, "manager", "m1"), live(5, "worker", state="down")])
    result, warnings = run(swarm, [want("m1", "manager", "id1"), want("w2", "worker", reachable=False)])
    assert swarm.writes == []
    assert result["missing"] == ["w2"]
    assert result["pending_removal"] == ["node5"]
    assert "w2" in result["deferred"]
    assert any("Not retiring node5" in text for text in warnings)


def test_an_undescribed_node_that_stays_up_or_errors_is_never_force_removed(run):
    swarm = Swarm([live(1, "manager", "m1"), live(6, "worker", "old"), live(7, "worker", "older")])
    swarm.nodes["id7"]["Spec"]["Availability"] = "drain"
    swarm.fail_paths.add("/nodes/id7")  # its daemon's record does not answer
    result, warnings = run(swarm, [want("m1", "manager", "id1")], timeout=0)
    deletes = [w for w in swarm.writes if w[0] == "DELETE"]
    assert deletes == []
    assert result["pending_removal"] == ["old", "older"]
    assert len(warnings) == 2


def test_an_undescribed_node_is_removed_without_force_once_down(run):
    swarm = Swarm([live(1, "manager", "m1"), live(6, "worker", "old")])
    swarm.down_after["id6"] = 0
    result, _ = run(swarm, [want("m1", "manager", "id1")], timeout=5)
    assert ("DELETE", "/nodes/id6", None) in swarm.writes
    assert "removed old from the swarm" in result["actions"]


def test_a_re_joined_host_takes_its_label_and_its_stale_entry_is_retired(run):
    swarm = Swarm([live(1, "manager", "m1"), live(4, "worker", "w1", state="down"), live(8, "worker")])
    result, _ = run(swarm, [want("m1", "manager", "id1"), want("w1", "worker", "id8")], timeout=5)
    assert swarm.nodes["id8"]["Spec"]["Labels"] == {cluster.HOST_LABEL: "w1"}
    assert "id4" not in swarm.nodes
    assert result["missing"] == []
    assert "removed w1 (stale entry id4) from the swarm" in result["actions"]


def test_check_mode_plans_the_same_and_writes_nothing(run):
    swarm = Swarm([live(1, "manager", "m1"), live(6, "worker", "old", state="down")])
    result, _ = run(swarm, [want("m1", "manager", "id1", labels={"a": "b"})], check_mode=True)
    assert swarm.writes == []
    assert result["actions"] == ["set labels of m1 to {a: b}", "drained old (not in the description)",
                                 "removed old from the swarm"]


# swarm_node: the managers' node list is the truth.

NODE_PARAMS = {"role": "worker", "remote_addrs": ["10.0.0.1:2377"], "join_token": "SWMTKN-1-secret", "cluster_id": "c1"}


class Daemon(Docker):
    """A worker's local daemon: active in c1 until it leaves; then joins anew."""

    def __init__(self):
        super().__init__()
        self.state, self.node_id = "active", "old"

    def respond(self, method, path, query, body):
        if method == "GET":
            assert path == "/info"
            return {"Swarm": {"LocalNodeState": self.state, "NodeID": self.node_id if self.state == "active" else "",
                              "Cluster": {"ID": "c1"} if self.state == "active" else {}, "ControlAvailable": False}}
        if path == "/swarm/leave":
            self.state = "inactive"
        elif path == "/swarm/join":
            self.state, self.node_id = "active", "new"
        return None


class Tasks(Swarm):
    """The swarm, with one task per node in ``tasks`` (node id -> service); a drained node's
    task is shut down after ``stop_after`` task reads."""

    def __init__(self, nodes, tasks, stop_after=2):
        super().__init__(nodes)
        self.tasks, self.stop_after, self.task_reads = tasks, stop_after, 0

    def get(self, path):
        if path != "/tasks":
            return super().get(path)
        self.task_reads += 1
        node_id = self.calls[-1][2]["filters"]["node"][0]
        drained = self.nodes[node_id]["Spec"]["Availability"] == "drain"
        stopped = drained and self.task_reads > self.stop_after
        if node_id not in self.tasks:
            return []
        return [{"ID": "t1", "NodeID": node_id, "ServiceID": self.tasks[node_id],
                 "DesiredState": "shutdown" if drained else "running",
                 "Status": {"State": "shutdown" if stopped else "running"}}]


MAINT = cluster.MAINTENANCE_LABEL


def test_maintenance_drains_marks_and_waits_until_the_tasks_stopped(run):
    swarm = Tasks([live(1, "manager", "m1"), live(2, "worker", "w1", labels={"zone": "a"})], {"id2": "web"})
    result, _ = run(swarm, [want("m1", "manager", "id1"), dict(want("w1", "worker", "id2", labels={"zone": "a"}),
                                                               maintenance=True)], timeout=5)
    assert result["actions"] == ["began the maintenance of w1", "set availability of w1 to drain"]
    labels = swarm.nodes["id2"]["Spec"]["Labels"]
    assert labels["zone"] == "a" and labels[cluster.HOST_LABEL] == "w1"
    assert labels[MAINT].endswith("Z") and swarm.nodes["id2"]["Spec"]["Availability"] == "drain"
    # It returned only once the task had stopped (read until then).
    assert swarm.task_reads == swarm.stop_after + 1
    assert swarm.writes == [("POST", "/nodes/id2/update", {"version": "1"})] * 2


def test_a_node_in_maintenance_stays_drained_until_it_ends(run):
    swarm = Tasks([live(1, "manager", "m1"), live(2, "worker", "w1", labels={MAINT: "2026-12-02T10:00:00Z"})], {})
    swarm.nodes["id2"]["Spec"]["Availability"] = "drain"
    # A converge of the description (w1 active) keeps it drained and says why.
    result, warnings = run(swarm, [want("m1", "manager", "id1"), want("w1", "worker", "id2")])
    assert result["changed"] is False and swarm.writes == []
    assert warnings == ["w1 is in maintenance since 2026-12-02T10:00:00Z: kept drained (end it with "
                        "playbooks/maintenance.yml -e node=w1 -e maintenance=end)"]
    # Check mode of the end plans it and writes nothing.
    end = [want("m1", "manager", "id1"), dict(want("w1", "worker", "id2"), maintenance=False)]
    planned, _ = run(swarm, end, check_mode=True)
    assert planned["actions"] == ["ended the maintenance of w1", "set availability of w1 to active"]
    assert swarm.writes == []
    result, warnings = run(swarm, end)
    assert result["actions"] == planned["actions"] and warnings == []
    assert swarm.nodes["id2"]["Spec"] == {"Role": "worker", "Availability": "active",
                                          "Labels": {cluster.HOST_LABEL: "w1"}}
    # Ending it again changes nothing.
    again, _ = run(swarm, end)
    assert again["changed"] is False


def test_only_changes_the_maintenance_of_the_named_node_and_nothing_else(run):
    # The description differs everywhere (w1 a manager with new labels, m2 relabelled, an
    # undescribed node): with only=[w1], w1 is drained and marked, and nothing else moves.
    swarm = Tasks([live(1, "manager", "m1"), live(2, "worker", "w1", labels={"zone": "a"}),
                   live(3, "worker", "m2"), live(4, "worker", "gone", state="down")], {})
    desired = [want("m1", "manager", "id1"), want("m2", "worker", "id3", labels={"zone": "x"}),
               dict(want("w1", "manager", "id2", labels={"zone": "b"}), maintenance=True)]
    result, warnings = run(swarm, desired, only=["w1"], timeout=1)
    assert result["actions"] == ["began the maintenance of w1", "set availability of w1 to drain"]
    assert swarm.nodes["id2"]["Spec"]["Role"] == "worker" and swarm.nodes["id2"]["Spec"]["Labels"]["zone"] == "a"
    assert swarm.nodes["id3"]["Spec"]["Labels"] == {cluster.HOST_LABEL: "m2"}
    assert "id4" in swarm.nodes and swarm.nodes["id4"]["Spec"]["Availability"] == "active"
    assert warnings == []


def test_an_unreachable_node_in_maintenance_keeps_it_and_its_end_is_deferred(run):
    swarm = Tasks([live(1, "manager", "m1"), live(2, "worker", "w1", state="down", labels={MAINT: "t"})], {})
    swarm.nodes["id2"]["Spec"]["Availability"] = "drain"
    result, _ = run(swarm, [want("m1", "manager", "id1"),
                            dict(want("w1", "worker", reachable=False), maintenance=False)])
    assert swarm.writes == []
    assert result["deferred"] == {"w1": ["ended the maintenance of w1", "set availability of w1 to active"]}


def test_an_active_member_the_managers_do_not_list_leaves_with_force_and_joins_again(run_module):
    daemon = Daemon()
    done = run_module(node, dict(NODE_PARAMS, listed=False), docker=daemon)
    assert [(m, p, q) for m, p, q, _b in daemon.writes] == [("POST", "/swarm/leave", {"force": "true"}),
                                                          ("POST", "/swarm/join", None)]
    assert done.result["node_id"] == "new"
    assert done.result["actions"][0].startswith("left stale swarm state (node old")


def test_a_listed_member_is_left_alone_and_check_mode_writes_nothing(run_module):
    daemon = Daemon()
    assert run_module(node, NODE_PARAMS, docker=daemon).changed is False
    assert daemon.writes == []
    done = run_module(node, dict(NODE_PARAMS, listed=False), check=True, docker=daemon)
    assert daemon.writes == []
    assert len(done.result["actions"]) == 2 and done.changed


def test_the_node_list_carries_identity_and_address():
    record = node.node_record(live(3, "manager", "m3"))
    assert record == {"id": "id3", "host": "m3", "hostname": "node3", "addr": "10.0.0.3", "state": "ready",
                      "role": "manager"}


# swarm_lock: one converge at a time.

OWNER = {"run": "r1", "controller": "ci-1", "user": "alice", "started": "2026-12-01T17:00:00Z"}
OTHER = {"run": "r2", "controller": "ci-2", "user": "bob", "started": "2026-12-01T16:59:00Z"}


@pytest.fixture
def locker(run_module):
    """swarm_lock's main() on ``swarm``: the Done."""
    def take(swarm, check_mode=False, owner=OWNER, break_lock=False, state="present"):
        return run_module(lock, {"owner": owner, "break_lock": break_lock, "state": state}, check=check_mode,
                          docker=swarm)
    return take


def test_the_lock_is_taken_kept_in_the_swarm_and_released(locker):
    swarm = Swarm([live(1, "manager", "m1")])
    done = locker(swarm)
    assert done.result["holder"] == OWNER and done.result["actions"] == ["took the converge lock"]
    assert json.loads(swarm.spec["Labels"][lock.LOCK_LABEL]) == OWNER
    assert swarm.spec["Labels"]["io.swarmfabric.name"] == "lab"
    assert swarm.writes == [("POST", "/swarm/update", {"version": "10"})]
    held = locker(swarm)
    assert held.result["actions"] == [] and held.changed is False and len(swarm.writes) == 1
    released = locker(swarm, state="absent")
    assert released.result == {"changed": True, "actions": ["released the converge lock"], "holder": {}}
    assert lock.LOCK_LABEL not in swarm.spec["Labels"]
    assert swarm.spec["Labels"]["io.swarmfabric.name"] == "lab"


def test_a_second_run_fails_at_once_naming_the_holder_and_writes_nothing(locker):
    swarm = Swarm([live(1, "manager", "m1")])
    locker(swarm, owner=OTHER)
    writes = len(swarm.writes)
    done = locker(swarm)
    assert done.failed and done.result["holder"] == OTHER
    assert done.msg == ("Cannot take the converge lock: another converge holds it: bob@ci-2 since "
                        "2026-12-01T16:59:00Z (run r2); wait for it to end, or, if that run is gone, break the "
                        "lock with -e swarm_break_lock=true")
    assert len(swarm.writes) == writes


def test_two_runs_racing_for_a_free_lock_one_wins_the_other_names_it(locker):
    swarm = Swarm([live(1, "manager", "m1")])
    swarm.race = OTHER  # the other run's update lands between our read and our write
    done = locker(swarm)
    assert done.failed and "bob@ci-2" in done.msg
    assert json.loads(swarm.spec["Labels"][lock.LOCK_LABEL]) == OTHER


def test_a_stale_lock_is_broken_only_on_purpose_and_release_leaves_a_foreign_lock(locker):
    swarm = Swarm([live(1, "manager", "m1")])
    locker(swarm, owner=OTHER)
    mine = locker(swarm, state="absent")
    assert mine.changed is False and any("left in place" in text for text in mine.warnings)
    assert json.loads(swarm.spec["Labels"][lock.LOCK_LABEL]) == OTHER
    broken = locker(swarm, break_lock=True)
    assert broken.result["actions"] == ["broke the lock of bob@ci-2 since 2026-12-01T16:59:00Z (run r2)"]
    assert json.loads(swarm.spec["Labels"][lock.LOCK_LABEL]) == OWNER


def test_check_mode_takes_no_lock_and_reports_a_held_one(locker):
    swarm = Swarm([live(1, "manager", "m1")])
    free = locker(swarm, check_mode=True)
    assert swarm.writes == [] and free.result["actions"] == ["took the converge lock"] and free.changed
    locker(swarm, owner=OTHER)
    writes = len(swarm.writes)
    held = locker(swarm, check_mode=True)
    assert len(swarm.writes) == writes and not held.failed
    assert any("bob@ci-2" in text for text in held.warnings)


def test_an_api_error_is_a_failure_with_its_cause(locker):
    swarm = Swarm([live(1, "manager", "m1")])
    swarm.fail_paths.add("/swarm")
    done = locker(swarm)
    assert done.failed and done.msg == "Cannot take the converge lock: context deadline exceeded (HTTP 500)"
    assert "Traceback" in done.result["exception"] and swarm.writes == []


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
