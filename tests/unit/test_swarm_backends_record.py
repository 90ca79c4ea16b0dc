"""swarm_backends_record against a scripted Docker API: reports are kept in
the swarm, and a silent node's last known backends are served while the swarm
lists its tasks running."""

import copy
import json

from test_swarm_quorum import load

record = load("swarm_backends_record")


class FakeModule:
    def __init__(self, check_mode=False):
        self.check_mode = check_mode
        self.params = {}


def node(i, host, labels=None, state="ready"):
    return {"ID": f"id{i}", "Version": {"Index": 3}, "Status": {"State": state},
            "Spec": {"Role": "worker", "Labels": {record.HOST_LABEL: host, **(labels or {})}}}


class API:
    def __init__(self, nodes, tasks=()):
        self.nodes = {n["ID"]: n for n in nodes}
        self.tasks = list(tasks)
        self.writes = []
        self.queries = []

    def get(self, path, query=None):
        if path == "/nodes":
            return copy.deepcopy(list(self.nodes.values()))
        if path == "/services":
            return [{"ID": "s1", "Spec": {"Name": "web"}}, {"ID": "s2", "Spec": {"Name": "api"}}]
        if path == "/tasks":
            self.queries.append(query)
            wanted = query["filters"]["node"]
            return [t for t in self.tasks if t["NodeID"] in wanted]
        return copy.deepcopy(self.nodes[path.split("/")[2]])

    def post(self, path, body=None, query=None):
        self.writes.append((path, query))
        self.nodes[path.split("/")[2]]["Spec"] = body


def task(node_id, service, state="running"):
    return {"NodeID": node_id, "ServiceID": service, "Status": {"State": state}}


def test_reports_are_recorded_once_and_other_labels_are_kept():
    api = API([node(1, "n1", {"zone": "a"})])
    out = record.Record(FakeModule(), api).run({"n1": {"web": ["10.20.1.3", "10.20.1.2"], "api": []}}, [])
    assert out["actions"] == ["recorded the backends of n1"]
    labels = api.nodes["id1"]["Spec"]["Labels"]
    assert json.loads(labels[record.BACKENDS_LABEL]) == {"web": ["10.20.1.2", "10.20.1.3"]}
    assert labels["zone"] == "a" and labels[record.HOST_LABEL] == "n1"
    assert api.writes == [("/nodes/id1/update", {"version": 3})]
    again = record.Record(FakeModule(), api).run({"n1": {"web": ["10.20.1.2", "10.20.1.3"]}}, [])
    assert again["changed"] is False and len(api.writes) == 1


def test_a_silent_node_keeps_the_backends_the_swarm_still_runs_there():
    last = json.dumps({"web": ["10.20.5.2"], "api": ["10.20.5.3"]})
    api = API([node(1, "n1"), node(5, "n5", {record.BACKENDS_LABEL: last})],
              tasks=[task("id5", "s1"), task("id5", "s2", state="shutdown"), task("id1", "s2")])
    out = record.Record(FakeModule(), api).run({}, ["n5"])
    assert out["kept"] == {"n5": {"web": ["10.20.5.2"]}}
    assert out["unknown"] == []
    assert api.queries == [{"filters": {"node": ["id5"], "desired-state": ["running"]}}]


def test_a_silent_node_without_a_record_is_unknown_and_check_mode_writes_nothing():
    api = API([node(1, "n1"), node(5, "n5")])
    out = record.Record(FakeModule(check_mode=True), api).run({"n1": {"web": ["10.20.1.2"]}}, ["n5", "n9"])
    assert out["unknown"] == ["n5", "n9"]
    assert out["actions"] == ["recorded the backends of n1"]
    assert api.writes == []
