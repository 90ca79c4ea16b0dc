"""swarm_service spec diffing: only managed fields count, Docker defaults never do."""

import pytest
from test_swarm_quorum import load

service = load("swarm_service")

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


class MissingNetworkAPI:
    def get(self, path, query=None):
        if path == "/networks":
            return []
        raise service.DockerAPIError("network appnet not found", status=404)


class GenerationsAPI:
    """A manager's /networks answer for a label filter, then inspects by name."""

    def __init__(self, listing, by_name=None):
        self.listing, self.by_name, self.calls = listing, by_name or {}, []

    def get(self, path, query=None):
        self.calls.append((path, query))
        if path == "/networks":
            return self.listing
        if path.removeprefix("/networks/") in self.by_name:
            return self.by_name[path.removeprefix("/networks/")]
        raise service.DockerAPIError("not found", status=404)


def swarm_net(name, config_from):
    return {"Name": name, "Id": f"id-{name}", "Scope": "swarm", "ConfigOnly": False, "Driver": "macvlan",
            "ConfigFrom": {"Network": config_from}}


def test_an_overlay_resolves_to_its_newest_generation():
    config2 = {"Name": "appnet-config", "Id": "c", "Scope": "local", "ConfigOnly": True,
               "Labels": {"io.swarmfabric.overlay": "appnet", "io.swarmfabric.generation": "2"}}
    api = GenerationsAPI([swarm_net("appnet", "appnet-config"), config2, swarm_net("appnet-1", "appnet-config-1")])
    services = service.Services(type("Module", (), {"check_mode": False})(), api)
    assert services.network_ids(["appnet"]) == {"appnet": "id-appnet"}
    assert api.calls == [("/networks", {"filters": {"driver": ["macvlan"]}})]
    api = GenerationsAPI([swarm_net("appnet", "appnet-config"), swarm_net("appnet-1", "appnet-config-1")])
    services = service.Services(type("Module", (), {"check_mode": False})(), api)
    assert services.network_ids(["appnet"]) == {"appnet": "id-appnet-1"}


def test_a_network_without_generations_is_looked_up_by_name():
    api = GenerationsAPI([], by_name={"appnet": {"Id": "legacy", "Scope": "swarm"},
                                      "plain": {"Id": "p", "Scope": "local"}})
    services = service.Services(type("Module", (), {"check_mode": False})(), api)
    assert services.network_ids(["appnet"]) == {"appnet": "legacy"}
    with pytest.raises(service.DockerAPIError, match="'plain' is local-scoped"):
        services.network_ids(["plain"])


@pytest.mark.parametrize("check_mode", [True, False])
def test_a_missing_network_is_a_planned_change_in_check_mode_and_an_error_otherwise(check_mode):
    module = type("Module", (), {"check_mode": check_mode})()
    services = service.Services(module, MissingNetworkAPI())
    if check_mode:
        assert services.network_ids(["appnet"]) == {"appnet": "(network appnet, not created yet)"}
    else:
        with pytest.raises(service.DockerAPIError, match="network 'appnet' does not exist"):
            services.network_ids(["appnet"])
