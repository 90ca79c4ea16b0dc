"""swarm_node and swarm_cluster against a scripted Docker API: the faults
that must fail with a clear error and write nothing."""

import pytest
from test_swarm_quorum import load

node = load("swarm_node")
cluster = load("swarm_cluster")


class Failed(Exception):
    pass


class FakeModule:
    def __init__(self, check_mode=False, **params):
        self.params = params
        self.check_mode = check_mode
        self._diff = False

    def fail_json(self, msg, **kwargs):
        raise Failed(msg)

    def warn(self, text):
        self.warnings = [*getattr(self, "warnings", []), text]


class FakeAPI:
    """Answers GETs from a dict of path -> body; records every write."""

    def __init__(self, answers):
        self.answers = answers
        self.writes = []

    def get(self, path, query=None):
        return self.answers[path]

    def request(self, method, path, body=None, query=None):
        if method == "GET":
            return self.get(path)
        self.writes.append((method, path))
        return {}

    def post(self, path, body=None, query=None):
        return self.request("POST", path, body, query)

    def delete(self, path, query=None):
        return self.request("DELETE", path, None, query)


NODE_PARAMS = {
    "state": "present",
    "name": "lab",
    "init": False,
    "role": "worker",
    "advertise_addr": None,
    "listen_addr": "0.0.0.0:2377",
    "remote_addrs": ["10.0.0.1:2377"],
    "join_token": "SWMTKN-1-secret",
    "cluster_id": "ourcluster",
    "autolock": None,
    "unlock_key": None,
    "force": False,
    "return_tokens": False,
    "return_nodes": False,
    "listed": True,
}


def info(state, cluster_id="", manager=False):
    return {
        "Swarm": {
            "LocalNodeState": state,
            "NodeID": "self" if state != "inactive" else "",
            "Cluster": {"ID": cluster_id} if cluster_id else {},
            "ControlAvailable": manager,
        }
    }


def manager_answers(cluster_id, name="other"):
    return {
        "/info": info("active", cluster_id, manager=True),
        "/swarm": {"Spec": {"Labels": {node.NAME_LABEL: name}}},
        "/nodes/self": {"ManagerStatus": {"Addr": "10.0.0.9:2377"}},
    }


@pytest.mark.parametrize("check_mode", [False, True])
def test_a_node_in_another_swarm_is_an_error_naming_both_ids(check_mode):
    api = FakeAPI(manager_answers("theircluster"))
    membership = node.Membership(FakeModule(check_mode, **NODE_PARAMS), api)
    with pytest.raises(Failed, match=r"Cannot join swarm ourcluster: .*different swarm theircluster"):
        membership.present()
    assert api.writes == []


def test_a_first_manager_in_a_swarm_of_another_name_is_an_error():
    api = FakeAPI(manager_answers("theircluster", name="other"))
    params = dict(NODE_PARAMS, init=True, role="manager", cluster_id=None)
    with pytest.raises(Failed, match=r"Cannot set up swarm 'lab': .*different swarm theircluster"):
        node.Membership(FakeModule(**params), api).present()
    assert api.writes == []


def test_a_locked_manager_without_a_key_is_an_error():
    api = FakeAPI({"/info": info("locked")})
    with pytest.raises(Failed, match=r"Cannot manage swarm membership: this manager is locked.*unlock_key"):
        node.Membership(FakeModule(**NODE_PARAMS), api).present()
    assert api.writes == []


def test_a_locked_manager_is_unlocked_with_the_key_and_nothing_is_written_in_check_mode():
    params = dict(NODE_PARAMS, unlock_key="SWMKEY-1-secret", cluster_id=None)
    api = FakeAPI({"/info": info("locked")})
    membership = node.Membership(FakeModule(True, **params), api)
    membership.present()
    assert membership.actions == ["unlocked manager"]
    assert api.writes == []


def test_a_half_joined_node_leaves_and_joins_again():
    api = FakeAPI({"/info": info("error")})
    membership = node.Membership(FakeModule(True, **NODE_PARAMS), api)
    membership.present()
    assert [a.split(" (")[0] for a in membership.actions] == [
        "left half-joined swarm",
        "joined swarm ourcluster as worker",
    ]
    assert api.writes == []


def test_no_manager_to_join_through_is_an_error():
    api = FakeAPI({"/info": info("inactive")})
    params = dict(NODE_PARAMS, remote_addrs=[], join_token=None)
    with pytest.raises(Failed, match="Cannot join swarm: no live manager"):
        node.Membership(FakeModule(**params), api).present()
    assert api.writes == []


def live_node(i, role):
    return {
        "ID": f"id{i}",
        "Version": {"Index": 1},
        "Spec": {"Role": role, "Availability": "active", "Labels": {}},
        "Status": {"State": "ready", "Addr": f"10.0.0.{i}"},
        "Description": {"Hostname": f"n{i}"},
        "ManagerStatus": {"Reachability": "reachable"} if role == "manager" else None,
    }


def test_five_managers_to_one_is_refused_before_any_write():
    api = FakeAPI({"/info": {"Swarm": {"NodeID": "id1"}}, "/nodes": [live_node(i, "manager") for i in range(1, 6)]})
    module = FakeModule(nodes=None, remove_nodes=True, wait_timeout=1)
    desired = [
        {
            "name": f"n{i}",
            "role": "manager" if i == 1 else "worker",
            "labels": {},
            "availability": "active",
            "node_id": f"id{i}",
        }
        for i in range(1, 6)
    ]
    with pytest.raises(Failed, match=r"Cannot reconcile swarm managers: .*5 managers to 1.*5 -> 3 -> 1"):
        cluster.Cluster(module, api).run(desired, remove_nodes=True)
    assert api.writes == []
