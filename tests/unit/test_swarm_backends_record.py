"""swarm_backends_record against a Docker daemon scripted at its socket: reports
are kept in the swarm (exact label body, the node's version), and a silent
node's last known backends are served while the swarm lists its tasks running."""

import copy
import json

from conftest import Docker, Status, load_module

record = load_module("swarm_backends_record")


def node(i, host, labels=None, state="ready"):
    return {"ID": f"id{i}", "Version": {"Index": 3}, "Status": {"State": state},
            "Spec": {"Role": "worker", "Labels": {record.HOST_LABEL: host, **(labels or {})}}}


def task(node_id, service, state="running"):
    return {"NodeID": node_id, "ServiceID": service, "Status": {"State": state}}


class Manager(Docker):
    """Nodes, services and tasks as a manager lists them; a node update stores its spec."""

    def __init__(self, nodes, tasks=()):
        super().__init__()
        self.nodes = {n["ID"]: n for n in nodes}
        self.tasks = list(tasks)

    def respond(self, method, path, query, body):
        if method == "POST":
            self.nodes[path.split("/")[2]]["Spec"] = body
            return None
        if path == "/nodes":
            return copy.deepcopy(list(self.nodes.values()))
        if path == "/services":
            return [{"ID": "s1", "Spec": {"Name": "web"}}, {"ID": "s2", "Spec": {"Name": "api"}}]
        if path == "/tasks":
            return [t for t in self.tasks if t["NodeID"] in query["filters"]["node"]]
        return copy.deepcopy(self.nodes[path.split("/")[2]])


def test_reports_are_recorded_once_and_other_labels_are_kept(run_module):
    docker = Manager([node(1, "n1", {"zone": "a"})])
    done = run_module(record, {"reports": {"n1": {"web": ["10.20.1.3", "10.20.1.2"], "api": []}}}, docker=docker)
    assert done.result == {"changed": True, "actions": ["recorded the backends of n1"], "kept": {}, "unknown": []}
    text = json.dumps({"web": ["10.20.1.2", "10.20.1.3"]}, separators=(",", ":"))
    assert docker.writes == [("POST", "/nodes/id1/update", {"version": "3"}, {
        "Role": "worker", "Labels": {record.HOST_LABEL: "n1", "zone": "a", record.BACKENDS_LABEL: text}})]
    again = run_module(record, {"reports": {"n1": {"web": ["10.20.1.2", "10.20.1.3"]}}}, docker=docker)
    assert again.changed is False and len(docker.writes) == 1


def test_a_silent_node_keeps_the_backends_the_swarm_still_runs_there(run_module):
    last = json.dumps({"web": ["10.20.5.2"], "api": ["10.20.5.3"]})
    docker = Manager([node(1, "n1"), node(5, "n5", {record.BACKENDS_LABEL: last})],
                     tasks=[task("id5", "s1"), task("id5", "s2", state="shutdown"), task("id1", "s2")])
    done = run_module(record, {"silent": ["n5"]}, docker=docker)
    assert done.result["kept"] == {"n5": {"web": ["10.20.5.2"]}}
    assert done.result["unknown"] == [] and done.changed is False
    assert [(p, q) for m, p, q, _b in docker.calls if p == "/tasks"] == [
        ("/tasks", {"filters": {"desired-state": ["running"], "node": ["id5"]}})]
    assert docker.writes == []


def test_a_silent_node_without_a_record_is_unknown_and_check_mode_writes_nothing(run_module):
    docker = Manager([node(1, "n1"), node(5, "n5")])
    done = run_module(record, {"reports": {"n1": {"web": ["10.20.1.2"]}}, "silent": ["n5", "n9"]},
                      check=True, docker=docker)
    assert done.result["unknown"] == ["n5", "n9"]
    assert done.result["actions"] == ["recorded the backends of n1"] and done.changed
    assert docker.writes == []


def test_an_api_error_fails_with_its_cause(run_module):
    docker = Docker({"/nodes": Status(503, "This node is not a swarm manager.")})
    done = run_module(record, {"reports": {"n1": {}}}, docker=docker)
    assert done.failed
    assert done.msg == "Cannot record the backends in the swarm: This node is not a swarm manager. (HTTP 503)"
    assert "Traceback" in done.result["exception"]
