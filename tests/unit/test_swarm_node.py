"""swarm_node against a scripted Docker API at its socket: the exact requests and
bodies of every real-mode path, no write in check mode, and the faults that
must fail with a clear error and write nothing."""

import pytest
from conftest import Docker, Seq, Status, load_module

node = load_module("swarm_node")

PARAMS = {"role": "worker", "remote_addrs": ["10.0.0.1:2377"], "join_token": "SWMTKN-1-secret",
          "cluster_id": "ourcluster"}


def info(state, cluster_id="", manager=False, node_id="self", error=""):
    return {"DockerRootDir": "/nonexistent", "Swarm": {
        "LocalNodeState": state, "NodeID": node_id if state != "inactive" else "",
        "Cluster": {"ID": cluster_id} if cluster_id else {}, "ControlAvailable": manager, "Error": error}}


def swarm(name="lab", autolock=False, version=11):
    return {"ID": "ourcluster", "Version": {"Index": version},
            "Spec": {"Labels": {node.NAME_LABEL: name}, "EncryptionConfig": {"AutoLockManagers": autolock}},
            "JoinTokens": {"Worker": "SWMTKN-1-w", "Manager": "SWMTKN-1-m"}}


def manager(cluster_id="ourcluster", name="lab", autolock=False):
    return {"/info": info("active", cluster_id, manager=True), "/swarm": swarm(name, autolock),
            "/nodes/self": {"ManagerStatus": {"Addr": "10.0.0.9:2377"}}}


def paths(docker):
    return [(method, path) for method, path, _query, _body in docker.calls]


# --- real-mode paths -------------------------------------------------------------


def test_init_posts_the_exact_body_and_reads_back(run_module):
    docker = Docker({"/info": Seq(info("inactive"), info("active", "newcluster", manager=True)),
                     "/swarm": swarm(autolock=True), "/nodes/self": {"ManagerStatus": {"Addr": "10.0.0.11:2377"}}})
    done = run_module(node, {"name": "lab", "init": True, "role": "manager", "advertise_addr": "10.0.0.11",
                             "autolock": True}, diff=True, docker=docker)
    assert not done.failed, done.msg
    assert docker.writes == [("POST", "/swarm/init", None, {
        "ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "10.0.0.11",
        "Spec": {"Labels": {node.NAME_LABEL: "lab"}, "EncryptionConfig": {"AutoLockManagers": True}}})]
    assert done.changed is True
    assert done.result["actions"] == ["initialised swarm 'lab' advertising 10.0.0.11"]
    assert (done.result["node_state"], done.result["cluster_id"], done.result["manager_addr"]) == \
        ("active", "newcluster", "10.0.0.11:2377")
    assert done.result["diff"] == {"before": {"state": "inactive", "cluster_id": "", "role": ""},
                                   "after": {"state": "active", "cluster_id": "newcluster", "role": "manager"}}


def test_join_posts_token_and_managers_and_checks_the_role(run_module):
    docker = Docker({"/info": Seq(info("inactive"), info("active", "ourcluster"))})
    done = run_module(node, dict(PARAMS, advertise_addr="10.0.0.14"), docker=docker)
    assert not done.failed, done.msg
    assert docker.writes == [("POST", "/swarm/join", None, {
        "ListenAddr": "0.0.0.0:2377", "RemoteAddrs": ["10.0.0.1:2377"], "JoinToken": "SWMTKN-1-secret",
        "AdvertiseAddr": "10.0.0.14"})]
    assert done.result["actions"] == ["joined swarm ourcluster as worker"]
    assert paths(docker) == [("GET", "/info"), ("POST", "/swarm/join"), ("GET", "/info")]


def test_a_join_that_lands_in_the_other_role_fails_after_the_one_write(run_module):
    docker = Docker({"/info": Seq(info("inactive"), info("active", "ourcluster", manager=True)),
                     "/swarm": swarm(), "/nodes/self": {}})
    done = run_module(node, PARAMS, docker=docker)
    assert done.failed
    assert done.msg.startswith("Cannot join swarm as worker: the host joined as manager")
    assert len(docker.writes) == 1 and done.result["actions"] == ["joined swarm ourcluster as worker"]


def test_a_locked_manager_is_unlocked_with_the_key(run_module):
    docker = Docker({"/info": Seq(info("locked", "ourcluster"), info("active", "ourcluster", manager=True)),
                     "/swarm": swarm(), "/nodes/self": {}})
    done = run_module(node, dict(PARAMS, role="manager", unlock_key="SWMKEY-1-secret"), docker=docker)
    assert not done.failed, done.msg
    assert docker.writes == [("POST", "/swarm/unlock", None, {"UnlockKey": "SWMKEY-1-secret"})]
    assert done.result["actions"] == ["unlocked manager"]
    assert "SWMKEY-1-secret" not in str(done.result)


def test_a_half_joined_node_leaves_with_force_then_joins(run_module):
    docker = Docker({"/info": Seq(info("error", error="tls handshake"), info("inactive"),
                                  info("active", "ourcluster"))})
    done = run_module(node, PARAMS, docker=docker)
    assert not done.failed, done.msg
    assert [(m, p, q) for m, p, q, _b in docker.writes] == [
        ("POST", "/swarm/leave", {"force": "true"}), ("POST", "/swarm/join", None)]
    assert done.result["actions"] == ["left half-joined swarm (state error (tls handshake))",
                                      "joined swarm ourcluster as worker"]


def test_a_member_the_managers_do_not_list_leaves_and_joins_again(run_module):
    docker = Docker({"/info": Seq(info("active", "ourcluster", node_id="stale"), info("inactive"),
                                  info("active", "ourcluster", node_id="fresh"))})
    done = run_module(node, dict(PARAMS, listed=False), docker=docker)
    assert [(m, p) for m, p, _q, _b in docker.writes] == [("POST", "/swarm/leave"), ("POST", "/swarm/join")]
    assert done.result["node_id"] == "fresh" and done.changed


def test_autolock_is_turned_on_with_the_swarms_version(run_module):
    docker = Docker(manager())
    done = run_module(node, {"role": "manager", "autolock": True, "cluster_id": "ourcluster"}, docker=docker)
    assert not done.failed, done.msg
    body = dict(swarm()["Spec"], EncryptionConfig={"AutoLockManagers": True})
    assert docker.writes == [("POST", "/swarm/update", {"version": "11"}, body)]
    assert done.result["actions"] == ["turned autolock on"]


def test_leave_forces_only_when_asked(run_module):
    docker = Docker({"/info": Seq(info("active", "ourcluster"), info("inactive"))})
    done = run_module(node, {"state": "absent"}, docker=docker)
    assert docker.writes == [("POST", "/swarm/leave", {"force": "false"}, None)]
    assert done.result["actions"] == ["left swarm ourcluster"] and done.result["node_state"] == "inactive"


def test_query_returns_tokens_and_nodes_and_writes_nothing(run_module):
    listed = [{"ID": "n1", "Spec": {"Role": "manager", "Labels": {node.HOST_LABEL: "m1"}},
               "Status": {"State": "ready", "Addr": "10.0.0.11"}, "Description": {"Hostname": "node1"}}]
    docker = Docker(dict(manager(), **{"/swarm/unlockkey": {"UnlockKey": "SWMKEY-1-k"}, "/nodes": listed}))
    done = run_module(node, {"state": "query", "return_tokens": True, "return_nodes": True}, docker=docker)
    assert docker.writes == [] and done.changed is False
    assert done.result["join_tokens"] == {"worker": "SWMTKN-1-w", "manager": "SWMTKN-1-m"}
    assert done.result["unlock_key"] == "SWMKEY-1-k"
    assert done.result["nodes"] == [{"id": "n1", "host": "m1", "hostname": "node1", "addr": "10.0.0.11",
                                     "state": "ready", "role": "manager"}]


def test_an_api_error_fails_with_the_cause_and_the_traceback(run_module):
    docker = Docker({"/info": Seq(info("inactive")), ("POST", "/swarm/join"): Status(500, "timeout joining")})
    done = run_module(node, PARAMS, docker=docker)
    assert done.failed
    assert done.msg == "Cannot manage swarm membership: timeout joining (HTTP 500)"
    assert "Traceback" in done.result["exception"]


# --- check mode and the faults ---------------------------------------------------


@pytest.mark.parametrize("state, answers, actions", [
    ("present", {"/info": info("inactive")}, ["joined swarm ourcluster as worker"]),
    ("present", {"/info": info("error")},
     ["left half-joined swarm (state error)", "joined swarm ourcluster as worker"]),
    ("absent", {"/info": info("active", "ourcluster")}, ["left swarm ourcluster"]),
])
def test_check_mode_plans_the_same_actions_and_writes_nothing(run_module, state, answers, actions):
    docker = Docker(answers)
    done = run_module(node, dict(PARAMS, state=state), check=True, docker=docker)
    assert not done.failed, done.msg
    assert docker.writes == [] and done.changed is True and done.result["actions"] == actions


@pytest.mark.parametrize("check", [False, True])
def test_a_node_in_another_swarm_is_an_error_naming_both_ids(run_module, check):
    docker = Docker(manager("theircluster", name="other"))
    done = run_module(node, PARAMS, check=check, docker=docker)
    assert done.failed and docker.writes == []
    assert done.msg.startswith("Cannot join swarm ourcluster: this host is already in a different swarm theircluster")


def test_a_first_manager_in_a_swarm_of_another_name_is_an_error(run_module):
    docker = Docker(manager("theircluster", name="other"))
    done = run_module(node, {"name": "lab", "init": True, "role": "manager"}, docker=docker)
    assert done.failed and docker.writes == []
    assert done.msg.startswith("Cannot set up swarm 'lab': this host is already a manager of a different swarm "
                               "theircluster")


def test_a_locked_manager_without_a_key_is_an_error(run_module):
    docker = Docker({"/info": info("locked")})
    done = run_module(node, PARAMS, docker=docker)
    assert done.failed and docker.writes == []
    assert done.msg.startswith("Cannot manage swarm membership: this manager is locked")


def test_no_manager_to_join_through_is_an_error(run_module):
    docker = Docker({"/info": info("inactive")})
    done = run_module(node, dict(PARAMS, remote_addrs=[], join_token=None), docker=docker)
    assert done.failed and docker.writes == []
    assert done.msg.startswith("Cannot join swarm: no live manager")


def test_a_join_docker_carries_on_in_the_background_is_waited_for(run_module, monkeypatch):
    monkeypatch.setattr(node.time, "sleep", lambda _s: None)
    timeout = Status(503, "Timeout was reached before node joined. The attempt to join the swarm will continue "
                          "in the background.")
    docker = Docker({"/info": Seq(info("inactive"), info("pending", "ourcluster"), info("active", "ourcluster")),
                     ("POST", "/swarm/join"): timeout})
    done = run_module(node, PARAMS, docker=docker)
    assert not done.failed, done.msg
    assert paths(docker) == [("GET", "/info"), ("POST", "/swarm/join"), ("GET", "/info"), ("GET", "/info")]
    # Any other failure of the join is not waited for.
    docker = Docker({"/info": info("inactive"), ("POST", "/swarm/join"): Status(503, "rpc error: no leader")})
    done = run_module(node, PARAMS, docker=docker)
    assert done.failed and "no leader" in done.msg and paths(docker) == [("GET", "/info"), ("POST", "/swarm/join")]
