"""swarm_network against a scripted Docker API: generations of an overlay's
networks, the exact request bodies, the call counts, and no write in check mode."""

import copy
import pathlib

import pytest
import yaml
from conftest import Docker, Status, load_module, run_main

mod = load_module("swarm_network")
netgen = mod.netgen

CONFIG = {"subnet": "10.20.0.0/16", "gateway": "10.20.0.1", "ip_range": "10.20.17.0/24",
          "aux_addresses": {"host": "10.20.17.1"}, "parent": "sf-appnet"}
LABELS0 = {"io.swarmfabric.overlay": "appnet", "io.swarmfabric.generation": "0"}
LABELS1 = {"io.swarmfabric.overlay": "appnet", "io.swarmfabric.generation": "1"}


def config_net(name, ip_range="10.20.17.0/24", host="10.20.17.1", parent="sf-appnet", labels=None, net_id=None):
    """A config-only network as GET /networks lists it."""
    return {"Name": name, "Id": net_id or f"id-{name}", "Driver": "macvlan", "Scope": "local", "ConfigOnly": True,
            "Labels": labels or {},
            "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.20.0.0/16", "Gateway": "10.20.0.1",
                                                      "IPRange": ip_range, "AuxiliaryAddresses": {"host": host}}]},
            "Options": {"parent": parent, "macvlan_mode": "bridge"}}


def swarm_net(name, config_from, labels=None):
    return {"Name": name, "Id": f"id-{name}", "Driver": "macvlan", "Scope": "swarm", "Attachable": True,
            "ConfigOnly": False, "ConfigFrom": {"Network": config_from}, "Labels": labels or {}}


def service(name, network_ids, version=7, update=None):
    return {"ID": f"sid-{name}", "Version": {"Index": version},
            "Spec": {"Name": name, "Labels": {"tier": "front"},
                     "TaskTemplate": {"ContainerSpec": {"Image": "swarmfabric/task:1"},
                                      "Networks": [{"Target": i, "Aliases": ["web"]} for i in network_ids]},
                     "Mode": {"Replicated": {"Replicas": 2}},
                     "UpdateConfig": update or {"Parallelism": 1, "Delay": 5 * 10**9}}}


def task(net_id, state="running"):
    return {"ServiceID": "sid-web", "Spec": {"Networks": [{"Target": net_id}]}, "Status": {"State": state},
            "NetworksAttachments": [{"Network": {"ID": net_id}}]}


class API(Docker):
    """The daemon at its socket: GET answers by path (a list of Seq is consumed one answer per call),
    errors by (method, path); ``log`` is every request as (method, path, body, query)."""

    def __init__(self, answers, errors=None):
        super().__init__()
        answers.setdefault(("GET", "/version"), self.answers[("GET", "/version")])
        self.answers = answers  # the tests change it between runs
        self.errors = errors or {}

    def respond(self, method, path, query, body):
        error = self.errors.get((method, path))
        if error is not None:
            return Status(error.status or 500, error.message)
        answer = self.answers.get((method, path), self.answers.get(path) if method == "GET" else {})
        if isinstance(answer, list) and answer and isinstance(answer[0], Seq):
            return copy.deepcopy(answer.pop(0).value if len(answer) > 1 else answer[0].value)
        return copy.deepcopy(answer)

    @property
    def log(self):
        return [(method, path, body, query) for method, path, query, body in self.calls]

    @property
    def writes(self):
        return [c for c in self.log if c[0] != "GET"]


class Seq:
    """One answer of a sequence (the last one repeats)."""

    def __init__(self, value):
        self.value = value


def run(monkeypatch, api, check_mode=False, diff=False, **params):
    """main() with AnsibleModule's parsing kept; the result, with failed (and warnings)."""
    monkeypatch.setattr(mod.time, "sleep", lambda seconds: None)
    done = run_main(monkeypatch, mod, params, check=check_mode, diff=diff, docker=api)
    box = dict(done.result, failed=done.failed)
    if done.warnings:
        box["warnings"] = done.warnings
    return box


# -- the pure naming rules ----------------------------------------------------

@pytest.mark.parametrize(("gen", "names", "parent"), [
    (0, ("appnet", "appnet-config"), "sf-appnet"),
    (1, ("appnet-1", "appnet-config-1"), "sf-appnet-h"),
    (2, ("appnet", "appnet-config"), "sf-appnet"),
    (7, ("appnet-7", "appnet-config-7"), "sf-appnet-h"),
])
def test_generations_alternate_names_and_parent(gen, names, parent):
    assert netgen.names("appnet", gen) == names
    assert netgen.parent(gen, "sf-appnet", "sf-appnet-h") == parent


def test_generation_of_reads_config_labels_and_swarm_names():
    nets = [swarm_net("appnet", "appnet-config"), swarm_net("appnet-1", "appnet-config-1"),
            config_net("appnet-config"), swarm_net("other", "other-config"),
            swarm_net("appnet-2", "appnet-config-2"),  # even generations have the plain name
            swarm_net("appnet-3", "elsewhere"),
            config_net("appnet-config-9", labels={"io.swarmfabric.overlay": "appnet",
                                                  "io.swarmfabric.generation": "x"})]
    assert sorted(netgen.generations(nets, "appnet", "swarm")) == [0, 1]
    assert list(netgen.generations(nets, "appnet", "config")) == [0]
    assert netgen.current(nets, "appnet") == 1
    assert netgen.current([], "appnet") == 0


def test_the_plain_swarm_network_takes_the_generation_of_its_config_network():
    # Moving from 1 to 2: appnet (generation 2, from its labelled config) is newer than appnet-1.
    nets = [swarm_net("appnet", "appnet-config"), swarm_net("appnet-1", "appnet-config-1"),
            config_net("appnet-config", labels=dict(LABELS0, **{"io.swarmfabric.generation": "2"})),
            config_net("appnet-config-1", labels=LABELS1)]
    assert sorted(netgen.generations(nets, "appnet", "swarm")) == [1, 2]
    assert netgen.current(nets, "appnet") == 2
    assert sorted(netgen.generations(nets, "appnet", "config")) == [1, 2]


# -- kind=config ---------------------------------------------------------------

def test_first_install_creates_generation_zero_with_todays_name(monkeypatch):
    api = API({"/networks": []})
    out = run(monkeypatch, api, name="appnet", kind="config", **CONFIG)
    assert out["changed"] and out["actions"] == ["create config-only network appnet-config (generation 0)"]
    assert api.writes == [("POST", "/networks/create", {
        "Name": "appnet-config", "Driver": "macvlan", "ConfigOnly": True, "CheckDuplicate": True, "Labels": LABELS0,
        "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.20.0.0/16", "Gateway": "10.20.0.1",
                                                  "IPRange": "10.20.17.0/24",
                                                  "AuxiliaryAddresses": {"host": "10.20.17.1"}}]},
        "Options": {"parent": "sf-appnet", "macvlan_mode": "bridge"}}, None)]


def test_an_unlabelled_network_from_before_generations_does_not_churn(monkeypatch):
    api = API({"/networks": [config_net("appnet-config")]})
    out = run(monkeypatch, api, diff=True, name="appnet", kind="config", **CONFIG)
    assert not out["changed"] and out["actions"] == [] and api.writes == []
    assert out["diff"]["before"] == out["diff"]["after"]
    assert out["generations"] == [0] and out["config_name"] == "appnet-config"


def test_query_finds_the_current_generation_stale_and_writes_nothing(monkeypatch):
    api = API({"/networks": [config_net("appnet-config", ip_range="10.20.5.0/24", host="10.20.5.1")]})
    out = run(monkeypatch, api, name="appnet", kind="config", state="query", generation=0, **CONFIG)
    assert (out["exists"], out["stale"], out["changed"]) == (True, True, False)
    assert out["network"]["ip_range"] == "10.20.5.0/24"
    assert api.log == [("GET", "/networks", None, None)]


@pytest.mark.parametrize("live", [[], [config_net("appnet-config")]])
def test_query_missing_or_matching_is_not_stale(monkeypatch, live):
    out = run(monkeypatch, API({"/networks": live}), name="appnet", kind="config", state="query", **CONFIG)
    assert (out["exists"], out["stale"]) == (bool(live), False)


@pytest.mark.parametrize("check_mode", [False, True])
def test_the_next_generation_is_created_beside_the_old_one_on_the_shim(monkeypatch, check_mode):
    api = API({"/networks": [config_net("appnet-config", ip_range="10.20.5.0/24", host="10.20.5.1")]})
    out = run(monkeypatch, api, check_mode, name="appnet", kind="config", generation=1, **CONFIG)
    assert out["actions"] == ["create config-only network appnet-config-1 (generation 1)"] and out["changed"]
    assert out["generations"] == [0, 1]
    if check_mode:
        assert api.writes == []
        return
    [(method, path, body, _)] = api.writes
    assert (method, path, body["Name"], body["Labels"]) == ("POST", "/networks/create", "appnet-config-1", LABELS1)
    assert body["Options"] == {"parent": "sf-appnet-h", "macvlan_mode": "bridge"}
    assert body["IPAM"]["Config"][0]["IPRange"] == "10.20.17.0/24"


def test_pruned_removes_older_generations_only_and_keeps_those_still_built_from(monkeypatch):
    nets = [config_net("appnet-config", labels=LABELS0), config_net("appnet-config-1", labels=LABELS1),
            config_net("appnet-config-3", labels={**LABELS1, "io.swarmfabric.generation": "3"}),
            config_net("other-config")]
    api = API({"/networks": nets})
    out = run(monkeypatch, api, name="appnet", kind="config", state="pruned", generation=1)
    assert out["actions"] == ["remove config-only network appnet-config (generation 0)"]
    assert api.writes == [("DELETE", "/networks/id-appnet-config", None, None)]
    assert out["generations"] == [1, 3]  # a newer, not yet used generation stays

    api = API({"/networks": nets})
    out = run(monkeypatch, api, name="appnet", kind="config", state="pruned", generation=1, keep=[0])
    assert out["actions"] == [] and api.writes == [] and not out["changed"]


def test_a_config_still_in_use_fails_with_dockers_reason(monkeypatch):
    api = API({"/networks": [config_net("appnet-config", labels=LABELS0)]},
              errors={("DELETE", "/networks/id-appnet-config"): mod.DockerAPIError(
                  'configuration network "appnet-config" is in use', status=403)})
    out = run(monkeypatch, api, name="appnet", kind="config", state="pruned", generation=1)
    assert out["failed"]
    assert out["msg"] == ('Cannot remove config-only network appnet-config (generation 0): '
                          'configuration network "appnet-config" is in use (HTTP 403)')


# -- kind=swarm ----------------------------------------------------------------

def test_swarm_query_returns_the_newest_generation(monkeypatch):
    api = API({"/networks": [swarm_net("appnet", "appnet-config"), config_net("appnet-config"),
                             swarm_net("appnet-1", "appnet-config-1")]})
    out = run(monkeypatch, api, name="appnet", kind="swarm", state="query")
    assert (out["generation"], out["network_name"], out["config_name"]) == (1, "appnet-1", "appnet-config-1")
    assert out["generations"] == [0, 1] and api.writes == [] and not out["changed"]


def test_swarm_query_on_a_new_cluster_is_generation_zero(monkeypatch):
    out = run(monkeypatch, API({"/networks": []}), name="appnet", kind="swarm", state="query")
    assert (out["generation"], out["network_name"], out["exists"]) == (0, "appnet", False)


def test_converged_swarm_network_reads_once_and_changes_nothing(monkeypatch):
    api = API({"/networks": [swarm_net("appnet", "appnet-config")]})
    out = run(monkeypatch, api, name="appnet", kind="swarm")
    assert not out["changed"] and out["moved"] == [] and api.log == [("GET", "/networks", None, None)]


def moving_api(update=None):
    """Generation 0 live with web (on it) and other (not); generation 1 to be created."""
    return API({
        "/networks": [swarm_net("appnet", "appnet-config")],
        ("POST", "/networks/create"): {"Id": "id-new"},
        "/services": [service("web", ["id-appnet"], update=update), service("other", ["id-elsewhere"])],
        # The rolling update: first half done, then all on the new network.
        "/services/sid-web": [Seq(dict(service("web", ["id-new"], 8, update), UpdateStatus={"State": "updating"})),
                              Seq(dict(service("web", ["id-new"], 9, update), UpdateStatus={"State": "completed"}))],
        "/tasks": [Seq([task("id-appnet"), task("id-new")]), Seq([task("id-new"), task("id-new")])],
    })


def test_a_new_generation_moves_each_service_with_one_update_then_removes_the_old(monkeypatch):
    update = {"Parallelism": 2, "Delay": 10**9, "Order": "start-first"}
    api = moving_api(update)
    out = run(monkeypatch, api, name="appnet", kind="swarm", generation=1)
    assert out["actions"] == ["create swarm network appnet-1 (generation 1)",
                              "move service web from appnet to appnet-1",
                              "remove swarm network appnet (generation 0)"]
    assert out["moved"] == ["web"] and out["generations"] == [1] and out["changed"]
    create, move, restore, remove = api.writes
    assert create == ("POST", "/networks/create", {
        "Name": "appnet-1", "Driver": "macvlan", "Scope": "swarm", "Attachable": True,
        "ConfigFrom": {"Network": "appnet-config-1"}, "CheckDuplicate": True}, None)
    want = service("web", ["id-new"], update=dict(update, FailureAction="continue"))["Spec"]
    assert move == ("POST", "/services/sid-web/update", want, {"version": "7"})
    # The service's own rolling update, past the one rejection per node; then its own failure action again.
    assert restore == ("POST", "/services/sid-web/update", service("web", ["id-new"], update=update)["Spec"],
                       {"version": "9"})
    assert remove == ("DELETE", "/networks/id-appnet", None, None)
    # The old network goes only after the update completed with every task on the new one.
    assert api.log.index(remove) > max(i for i, c in enumerate(api.log) if c[1] == "/tasks")
    assert sum(1 for c in api.log if c[1] == "/services/sid-web") == 3


def test_check_mode_predicts_the_move_and_writes_nothing(monkeypatch):
    api = moving_api()
    out = run(monkeypatch, api, check_mode=True, diff=True, name="appnet", kind="swarm", generation=1)
    assert out["actions"] == ["create swarm network appnet-1 (generation 1)",
                              "move service web from appnet to appnet-1",
                              "remove swarm network appnet (generation 0)"]
    assert api.writes == [] and out["generations"] == [1]
    assert out["diff"]["after"]["moved"] == ["web"]


def test_resuming_a_move_creates_nothing_and_finishes_it(monkeypatch):
    api = moving_api()
    api.answers["/networks"].append(swarm_net("appnet-1", "appnet-config-1"))
    api.answers["/services"][0] = service("web", ["id-appnet"])
    api.answers["/tasks"] = [Seq([task("id-appnet-1")])]
    api.answers["/services/sid-web"] = [Seq(dict(service("web", ["id-appnet-1"], 8),
                                                 UpdateStatus={"State": "completed"}))]
    out = run(monkeypatch, api, name="appnet", kind="swarm", generation=1)
    assert out["actions"] == ["move service web from appnet to appnet-1", "remove swarm network appnet (generation 0)"]
    assert api.writes[0][2]["TaskTemplate"]["Networks"] == [{"Target": "id-appnet-1", "Aliases": ["web"]}]


def test_a_paused_update_fails_and_keeps_the_old_network(monkeypatch):
    api = moving_api()
    api.answers["/services/sid-web"] = [Seq({"UpdateStatus": {"State": "paused", "Message": "task failed"}})]
    out = run(monkeypatch, api, name="appnet", kind="swarm", generation=1)
    assert out["failed"]
    assert out["msg"] == "Cannot move service web from appnet to appnet-1: the rolling update is paused: task failed"
    assert [c[0] for c in api.writes] == ["POST", "POST"]  # created, updated; nothing removed


def test_swap_network_keeps_other_networks_and_moves_the_deprecated_field():
    spec = {"Name": "web", "Networks": [{"Target": "old", "Aliases": ["a"]}, {"Target": "keep"}],
            "TaskTemplate": {"ContainerSpec": {}}}
    out = mod.swap_network(spec, {"old", "appnet"}, "new")
    assert out["TaskTemplate"]["Networks"] == [{"Target": "new", "Aliases": ["a"]}, {"Target": "keep"}]
    assert "Networks" not in out and spec["Networks"][0]["Target"] == "old"


def test_an_old_swarm_network_still_used_by_a_container_is_kept_with_a_warning(monkeypatch):
    api = moving_api()
    api.errors[("DELETE", "/networks/id-appnet")] = mod.DockerAPIError(
        "error while removing network: network appnet id id-appnet has active endpoints", status=403)
    out = run(monkeypatch, api, name="appnet", kind="swarm", generation=1)
    assert not out["failed"] and out["generations"] == [0, 1]
    assert out["actions"] == ["create swarm network appnet-1 (generation 1)",
                              "move service web from appnet to appnet-1"]
    assert out["warnings"] == ["Cannot remove swarm network appnet (generation 0): error while removing network: "
                               "network appnet id id-appnet has active endpoints (HTTP 403); it is kept until nothing "
                               "uses it, and removed by a later run"]
    assert [c[:2] for c in api.writes][-1] == ("DELETE", "/networks/id-appnet")


def test_the_fabric_role_queries_builds_moves_then_prunes_in_that_order():
    role = pathlib.Path(__file__).resolve().parents[2] / "roles" / "fabric" / "tasks" / "main.yml"
    block = next(t for t in yaml.safe_load(role.read_text()) if t.get("name") == "Docker networks on the fabric")
    steps = [(t["swarm_network"]["kind"], t["swarm_network"].get("state", "present"), bool(t.get("run_once")))
             for t in block["block"] if "swarm_network" in t]
    assert steps == [("swarm", "query", True), ("config", "query", False), ("config", "present", False),
                     ("swarm", "present", True), ("config", "pruned", False)]


def test_a_leftover_older_generation_holding_the_reused_name_is_replaced(monkeypatch):
    # Generation 0's config was not pruned on this node; generation 2 reuses its name.
    api = API({"/networks": [config_net("appnet-config", ip_range="10.20.5.0/24", host="10.20.5.1", labels=LABELS0),
                             config_net("appnet-config-1", labels=LABELS1)]})
    out = run(monkeypatch, api, name="appnet", kind="config", generation=2, **CONFIG)
    assert out["actions"] == ["remove config-only network appnet-config (generation 0)",
                              "create config-only network appnet-config (generation 2)"]
    assert [c[:2] for c in api.writes] == [("DELETE", "/networks/id-appnet-config"), ("POST", "/networks/create")]
    assert api.writes[1][2]["Labels"] == dict(LABELS0, **{"io.swarmfabric.generation": "2"})
    assert out["generations"] == [1, 2]


def test_a_half_done_move_is_resumed_with_a_forced_update(monkeypatch):
    api = moving_api()
    api.answers["/services"] = [service("web", ["id-appnet-1"])]  # the spec moved, a task did not
    api.answers["/networks"].append(swarm_net("appnet-1", "appnet-config-1"))
    api.answers["/tasks"] = [Seq([task("id-appnet"), task("id-appnet-1")]), Seq([task("id-appnet-1")] * 2)]
    api.answers["/services/sid-web"] = [Seq(dict(service("web", ["id-appnet-1"], 8),
                                                 UpdateStatus={"State": "completed"}))]
    out = run(monkeypatch, api, name="appnet", kind="swarm", generation=1)
    assert out["actions"] == ["move service web from appnet to appnet-1", "remove swarm network appnet (generation 0)"]
    move = api.writes[0]
    assert move[2]["TaskTemplate"]["ForceUpdate"] == 1 and move[2]["UpdateConfig"]["FailureAction"] == "continue"
