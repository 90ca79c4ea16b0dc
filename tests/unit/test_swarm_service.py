"""swarm_service spec diffing: only managed fields count, Docker defaults never do."""

import copy

import pytest
from conftest import Docker, Status, load_module

service = load_module("swarm_service")

PARAMS = {
    "image": "swarmfabric/task:1",
    "command": ["sh", "-c", "httpd -f"],
    "mode": "replicated",
    "replicas": 3,
    "networks": ["appnet"],
    "endpoint_mode": "vip",
    "publish": [{"published": 8080, "target": 80, "protocol": "tcp", "mode": "ingress"}],
    "update": {"parallelism": 1, "delay": "5s"},
    "hosts": ["web:10.20.255.37"],
    "labels": {"tier": "front"},
}
IDS = {"appnet": "net123"}


def live_spec():
    """A spec as Docker returns it: ours plus the daemon's defaults and a pinned digest."""
    spec = service.apply_view({}, service.desired_view(PARAMS, IDS), "web")
    spec["TaskTemplate"]["ContainerSpec"]["Image"] += "@sha256:abc"
    spec["TaskTemplate"]["ContainerSpec"]["Isolation"] = "default"
    spec["TaskTemplate"].update(RestartPolicy={"Condition": "any"}, ForceUpdate=0, Runtime="container")
    spec["UpdateConfig"].update(FailureAction="pause", MaxFailureRatio=0, Order="stop-first")
    spec["RollbackConfig"] = {"Parallelism": 1}
    return spec


def test_docker_defaults_are_no_change():
    assert service.diff_views(service.live_view(live_spec()), service.desired_view(PARAMS, IDS)) == {}


def test_scaling_changes_replicas_only():
    want = service.desired_view(dict(PARAMS, replicas=5), IDS)
    changes = service.diff_views(service.live_view(live_spec()), want)
    assert changes == {"replicas": {"before": 3, "after": 5}}
    assert service.describe("web", changes) == ["scaled web from 3 to 5 replicas"]
    updated = service.apply_view(live_spec(), want, "web")
    assert updated["Mode"] == {"Replicated": {"Replicas": 5}}
    assert updated["TaskTemplate"]["RestartPolicy"] == {"Condition": "any"}  # unmanaged fields kept


def test_image_change_is_a_rolling_update():
    changes = service.diff_views(
        service.live_view(live_spec()), service.desired_view(dict(PARAMS, image="swarmfabric/task:2"), IDS)
    )
    assert list(changes) == ["image"]
    assert service.describe("web", changes)[0].startswith("rolling update of web to swarmfabric/task:2")


@pytest.mark.parametrize(
    ("text", "ns"), [("5s", 5 * 10**9), ("1m30s", 90 * 10**9), ("250ms", 250 * 10**6), ("7", 7 * 10**9)]
)
def test_durations(text, ns):
    assert service.duration_ns(text) == ns


@pytest.mark.parametrize("text", ["5 s", "fast", "5x", ""])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        service.duration_ns(text)


def test_hosts_entries_use_dockers_order_and_reject_garbage():
    assert service.hosts_entries(["web:10.0.0.1"]) == ["10.0.0.1 web"]
    with pytest.raises(ValueError):
        service.hosts_entries(["web"])


def test_global_mode_has_no_replicas():
    want = service.desired_view(dict(PARAMS, mode="global"), IDS)
    spec = service.apply_view({}, want, "web")
    assert spec["Mode"] == {"Global": {}}
    assert service.live_view(spec)["replicas"] is None


# --- main() against a Docker daemon scripted at its socket ----------------------------


def swarm_net(name, config_from):
    return {"Name": name, "Id": f"id-{name}", "Scope": "swarm", "ConfigOnly": False, "Driver": "macvlan",
            "ConfigFrom": {"Network": config_from}}


GEN0 = swarm_net("appnet", "appnet-config")
MACVLAN = {"filters": {"driver": ["macvlan"]}}
RUNNING = [{"Status": {"State": "running"}}] * 3


def params(**extra):
    return dict(PARAMS, name="web", **extra)


def existing(**extra):
    """The service as the daemon lists it: our spec on generation 0, plus Docker's defaults."""
    spec = service.apply_view({}, service.desired_view(params(**extra), {"appnet": "id-appnet"}), "web")
    spec["UpdateConfig"].update(FailureAction="pause", Order="stop-first")
    return {"ID": "sid", "Version": {"Index": 42}, "Spec": spec}


def test_create_posts_the_whole_spec_and_waits_for_the_tasks(run_module):
    docker = Docker({"/networks": [GEN0], "/services": [], ("POST", "/services/create"): {"ID": "sid"},
                     "/services/sid": {"UpdateStatus": {"State": "completed"}}, "/tasks": RUNNING})
    done = run_module(service, params(), docker=docker)
    assert not done.failed, done.msg
    assert docker.writes == [("POST", "/services/create", None, {
        "Name": "web", "Labels": {"tier": "front"},
        "TaskTemplate": {"ContainerSpec": {"Image": "swarmfabric/task:1", "Command": ["sh", "-c", "httpd -f"],
                                           "Hosts": ["10.20.255.37 web"]},
                         "Networks": [{"Target": "id-appnet"}]},
        "Mode": {"Replicated": {"Replicas": 3}},
        "EndpointSpec": {"Mode": "vip", "Ports": [{"PublishedPort": 8080, "TargetPort": 80, "Protocol": "tcp",
                                                   "PublishMode": "ingress"}]},
        "UpdateConfig": {"Parallelism": 1, "Delay": 5 * 10**9}})]
    assert done.result["service_id"] == "sid" and done.result["actions"] == [
        "created web (replicated, image swarmfabric/task:1)"]
    assert docker.calls[-1] == ("GET", "/tasks", {"filters": {"desired-state": ["running"], "service": ["sid"]}},
                                None)


def test_a_new_services_diff_has_no_before_and_speaks_the_descriptions_language(run_module):
    docker = Docker({"/networks": [GEN0], "/services": []})
    done = run_module(service, params(), check=True, diff=True, docker=docker)
    assert done.result["diff"] == {"before": {}, "after": {
        "image": "swarmfabric/task:1", "command": ["sh", "-c", "httpd -f"], "sysctls": {}, "mounts": [],
        "mode": "replicated", "replicas": 3, "networks": ["appnet"], "endpoint_mode": "vip",
        "publish": ["8080:80/tcp"], "update": {"parallelism": 1, "delay": "5s"}, "hosts": ["web:10.20.255.37"],
        "labels": {"tier": "front"}}}
    # The summary still sees a creation: every field's "before" is null.
    assert all(field["before"] is None for field in done.result["changes"].values())


def test_an_update_shows_its_settings_by_name_and_ports_in_short_syntax(run_module):
    docker = Docker({"/networks": [GEN0], "/services": [existing()], "/services/sid": {}, "/tasks": RUNNING * 3})
    done = run_module(service, params(update={"parallelism": 2, "delay": "1m30s"},
                                      publish=[{"published": 8080, "target": 80, "protocol": "udp", "mode": "host"}]),
                      diff=True, docker=docker)
    assert not done.failed, done.msg
    assert done.result["changes"] == {
        "update": {"before": {"parallelism": 1, "delay": "5s"}, "after": {"parallelism": 2, "delay": "1m30s"}},
        "publish": {"before": ["8080:80/tcp"], "after": ["8080:80/udp (mode host)"]}}
    # What is written is still the Engine's form.
    body = docker.writes[0][3]
    assert body["UpdateConfig"]["Parallelism"] == 2 and body["UpdateConfig"]["Delay"] == 90 * 10 ** 9


def test_scaling_updates_with_the_services_version_and_keeps_dockers_fields(run_module):
    live = existing()
    docker = Docker({"/networks": [GEN0], "/services": [live], "/services/sid": {}, "/tasks": RUNNING * 2})
    done = run_module(service, params(replicas=5), diff=True, docker=docker)
    assert not done.failed, done.msg
    body = copy.deepcopy(live["Spec"])
    body["Mode"] = {"Replicated": {"Replicas": 5}}
    assert docker.writes == [("POST", "/services/sid/update", {"version": "42"}, body)]
    assert done.result["actions"] == ["scaled web from 3 to 5 replicas"]
    assert done.result["diff"] == {"before": {"replicas": 3}, "after": {"replicas": 5}}


def test_no_change_is_reads_only(run_module):
    docker = Docker({"/networks": [GEN0], "/services": [existing()]})
    done = run_module(service, params(), docker=docker)
    assert done.result == {"changed": False, "actions": [], "service_id": "sid", "changes": {}}
    assert docker.writes == []


@pytest.mark.parametrize("state, extra, actions", [
    ("present", {"replicas": 5}, ["scaled web from 3 to 5 replicas"]),
    ("absent", {}, ["removed web"]),
    ("pruned", {"keep": ["api"]}, ["removed web"]),
])
def test_check_mode_plans_the_same_and_writes_nothing(run_module, state, extra, actions):
    docker = Docker({"/networks": [GEN0], "/services": [existing()]})
    done = run_module(service, params(state=state, **extra), check=True, docker=docker)
    assert not done.failed, done.msg
    assert done.changed is True and done.result["actions"] == actions and docker.writes == []


def test_absent_and_pruned_delete_by_id(run_module):
    docker = Docker({"/services": [existing()]})
    assert run_module(service, {"name": "web", "state": "absent"}, docker=docker).result["actions"] == ["removed web"]
    done = run_module(service, {"state": "pruned", "keep": ["web"]}, docker=docker)
    assert done.changed is False and done.result["removed"] == []
    assert docker.writes == [("DELETE", "/services/sid", None, None)]


def test_an_overlay_resolves_to_its_newest_generation(run_module):
    config2 = {"Name": "appnet-config", "Id": "c", "Scope": "local", "ConfigOnly": True,
               "Labels": {"io.swarmfabric.overlay": "appnet", "io.swarmfabric.generation": "2"}}
    docker = Docker({"/networks": [GEN0, config2, swarm_net("appnet-1", "appnet-config-1")], "/services": []})
    done = run_module(service, params(), check=True, docker=docker)
    # Shown by name (the generation's network), never by id.
    assert done.result["changes"]["networks"] == {"before": None, "after": ["appnet"]}
    assert docker.calls[0] == ("GET", "/networks", MACVLAN, None)
    docker = Docker({"/networks": [GEN0, swarm_net("appnet-1", "appnet-config-1")], "/services": []})
    done = run_module(service, params(), check=True, docker=docker)
    assert done.result["changes"]["networks"]["after"] == ["appnet-1"]


def test_a_network_without_generations_is_looked_up_by_name(run_module):
    docker = Docker({"/networks": [], "/networks/appnet": {"Id": "legacy", "Scope": "swarm"}, "/services": []})
    assert run_module(service, params(), check=True, docker=docker).result["changes"]["networks"]["after"] == [
        "appnet"]
    docker = Docker({"/networks": [], "/networks/appnet": {"Id": "p", "Scope": "local"}, "/services": []})
    done = run_module(service, params(), check=True, docker=docker)
    assert done.failed and done.msg == "Cannot converge service web: network 'appnet' is local-scoped, not swarm-scoped"


@pytest.mark.parametrize("check_mode", [True, False])
def test_a_missing_network_is_a_planned_change_in_check_mode_and_an_error_otherwise(run_module, check_mode):
    docker = Docker({"/networks": [], "/networks/appnet": Status(404, "network appnet not found"), "/services": []})
    done = run_module(service, params(), check=check_mode, docker=docker)
    assert docker.writes == []
    if check_mode:
        assert done.result["changes"]["networks"]["after"] == ["(network appnet, not created yet)"]
    else:
        assert done.failed and done.msg == "Cannot converge service web: network 'appnet' does not exist"
