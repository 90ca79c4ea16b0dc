"""swarm_allocations against a Docker daemon scripted at its socket: the record is one
versioned config (exact create body, older versions removed), read only on a manager,
nothing written in check mode, a stale base refused."""

import base64
import copy
import json

from conftest import Docker, Status, load_module

allocations = load_module("swarm_allocations")

RECORD = {"version": 1, "swarm": "lab", "fwmarks": {"web": {"value": 1593852601}},
          "overlays": {"appnet": {"subnet": "10.20.0.0/16", "node_prefix": 24, "vip_range": "10.20.252.0/22",
                                  "slots": {"node1": {"value": 248}}, "vips": {"web": {"value": "10.20.253.164"}}}}}
MANAGER = {"Swarm": {"LocalNodeState": "active", "ControlAvailable": True}}


def config(serial, record, swarm="lab"):
    data = base64.b64encode(json.dumps(record).encode()).decode()
    return {"ID": f"c{serial}", "Spec": {"Name": f"swarmfabric-{swarm}-allocations-{serial}", "Data": data,
                                         "Labels": {allocations.SWARM_LABEL: swarm,
                                                    allocations.SERIAL_LABEL: str(serial)}}}


class Manager(Docker):
    """A manager's configs: create stores one, delete removes it, list filters by label."""

    def __init__(self, configs=(), info=MANAGER):
        super().__init__()
        self.info = info
        self.configs = {c["ID"]: c for c in configs}

    def respond(self, method, path, query, body):
        if path == "/info":
            return copy.deepcopy(self.info)
        if method == "POST" and path == "/configs/create":
            new = {"ID": f"new{len(self.configs)}", "Spec": body}
            self.configs[new["ID"]] = new
            return {"ID": new["ID"]}
        if method == "DELETE":
            del self.configs[path.rsplit("/", 1)[1]]
            return None
        if path == "/configs":
            key, _, value = query["filters"]["label"][0].partition("=")
            return [copy.deepcopy(c) for c in self.configs.values() if c["Spec"]["Labels"].get(key) == value]
        return copy.deepcopy(self.configs[path.rsplit("/", 1)[1]])


def test_query_reads_the_newest_version_of_our_swarm_only(run_module):
    older = dict(RECORD, fwmarks={})
    docker = Manager([config(3, older), config(4, RECORD), config(9, {"swarm": "other"}, swarm="other")])
    done = run_module(allocations, {"swarm": "lab"}, docker=docker)
    assert done.result == {"changed": False, "actions": [], "readable": True, "node_state": "active",
                           "record": RECORD, "serial": 4, "name": "swarmfabric-lab-allocations-4"}
    assert [(m, p, q) for m, p, q, _b in docker.calls] == [
        ("GET", "/info", None),
        ("GET", "/configs", {"filters": {"label": ["io.swarmfabric.allocations=lab"]}}),
        ("GET", "/configs/c4", None)]


def test_query_on_a_host_outside_a_swarm_or_a_worker_is_not_readable(run_module):
    for info, state in (({"Swarm": {"LocalNodeState": "inactive"}}, "inactive"),
                        ({"Swarm": {"LocalNodeState": "active", "ControlAvailable": False}}, "active"),
                        ({"Swarm": {"LocalNodeState": "locked"}}, "locked")):
        docker = Manager(info=info)
        done = run_module(allocations, {"swarm": "lab"}, docker=docker)
        assert done.result == {"changed": False, "actions": [], "readable": False, "node_state": state,
                               "record": {}, "serial": 0, "name": ""}
        assert [p for _m, p, _q, _b in docker.calls] == ["/info"]


def test_present_writes_a_new_version_with_the_exact_body_and_removes_the_old_ones(run_module):
    docker = Manager([config(3, {"old": 1}), config(4, {"old": 2})])
    done = run_module(allocations, {"swarm": "lab", "state": "present", "record": RECORD, "base": 4},
                      diff=True, docker=docker)
    assert done.changed is True
    assert done.result["actions"] == ["wrote allocation record swarmfabric-lab-allocations-5",
                                      "removed swarmfabric-lab-allocations-3", "removed swarmfabric-lab-allocations-4"]
    data = json.dumps(RECORD, sort_keys=True, separators=(",", ":")).encode()
    assert docker.writes == [
        ("POST", "/configs/create", None, {
            "Name": "swarmfabric-lab-allocations-5", "Data": base64.b64encode(data).decode(),
            "Labels": {"io.swarmfabric.allocations": "lab", "io.swarmfabric.serial": "5"}}),
        ("DELETE", "/configs/c3", None, None),
        ("DELETE", "/configs/c4", None, None)]
    assert done.result["diff"]["before"] == {"old": 2} and done.result["diff"]["after"] == RECORD
    assert (done.result["serial"], done.result["record"]) == (5, RECORD)
    # The same record again: nothing to write.
    again = run_module(allocations, {"swarm": "lab", "state": "present", "record": RECORD, "base": 5}, docker=docker)
    assert again.changed is False and again.result["actions"] == [] and len(docker.writes) == 3
    assert again.result["serial"] == 5


def test_the_first_record_is_version_one(run_module):
    docker = Manager()
    done = run_module(allocations, {"swarm": "lab", "state": "present", "record": RECORD, "base": 0}, docker=docker)
    assert done.result["actions"] == ["wrote allocation record swarmfabric-lab-allocations-1"]
    assert [w[:2] for w in docker.writes] == [("POST", "/configs/create")]


def test_check_mode_writes_nothing_and_reports_the_version_it_would_write(run_module):
    docker = Manager([config(3, {"old": 1}), config(4, {"old": 2})])
    done = run_module(allocations, {"swarm": "lab", "state": "present", "record": RECORD}, check=True, diff=True,
                      docker=docker)
    assert done.changed is True and done.result["serial"] == 5
    assert done.result["actions"][0] == "wrote allocation record swarmfabric-lab-allocations-5"
    assert docker.writes == []
    # Equal record but an old version left behind: removing it is the only change.
    docker = Manager([config(3, {"old": 1}), config(4, RECORD)])
    done = run_module(allocations, {"swarm": "lab", "state": "present", "record": RECORD}, check=True, docker=docker)
    assert done.result["actions"] == ["removed swarmfabric-lab-allocations-3"] and docker.writes == []


def test_a_newer_version_than_the_plan_read_is_refused(run_module):
    docker = Manager([config(6, {"old": 1})])
    done = run_module(allocations, {"swarm": "lab", "state": "present", "record": RECORD, "base": 5}, docker=docker)
    assert done.failed
    assert done.msg == ("Cannot write the allocations: the record in the swarm is version 6, the plan was made "
                        "from version 5 (another run wrote it since); run again")
    assert docker.writes == []


def test_present_off_a_manager_and_api_errors_fail_with_their_cause(run_module):
    docker = Manager(info={"Swarm": {"LocalNodeState": "inactive"}})
    done = run_module(allocations, {"swarm": "lab", "state": "present", "record": RECORD}, docker=docker)
    assert done.failed and done.msg == ("Cannot write the allocations: this host is not a manager of an active swarm "
                                        "(its swarm state is inactive)")
    docker = Docker({"/info": MANAGER, "/configs": Status(500, "rpc error: code = Unavailable")})
    done = run_module(allocations, {"swarm": "lab"}, docker=docker)
    assert done.failed and done.msg == "Cannot read the allocations: rpc error: code = Unavailable (HTTP 500)"
    assert "Traceback" in done.result["exception"]


def test_a_config_that_is_not_a_record_is_an_error(run_module):
    broken = config(2, {})
    broken["Spec"]["Data"] = base64.b64encode(b"not json").decode()
    done = run_module(allocations, {"swarm": "lab"}, docker=Manager([broken]))
    assert done.failed and done.msg == ("Cannot read the allocations: config swarmfabric-lab-allocations-2 does not "
                                        "hold a JSON record")


class _Refused:
    def request(self, method, url, body=None, headers=None):
        raise FileNotFoundError(2, "No such file or directory")

    def close(self):
        pass


class NoEngine(Docker):
    """No daemon behind the socket (before the engine layer installed or started one)."""

    def connection(self, socket_path, timeout):
        return _Refused()


def test_query_where_no_engine_answers_is_not_readable_and_present_fails(run_module):
    done = run_module(allocations, {"swarm": "lab"}, docker=NoEngine())
    assert done.failed is False
    assert done.result == {"changed": False, "actions": [], "readable": False, "node_state": "no-engine",
                           "record": {}, "serial": 0, "name": ""}
    done = run_module(allocations, {"swarm": "lab", "state": "present", "record": RECORD}, docker=NoEngine())
    assert done.failed and done.msg == ("Cannot write the allocations: this host is not a manager of an active swarm "
                                        "(its swarm state is no-engine)")
