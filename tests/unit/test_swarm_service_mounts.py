"""swarm_service's mounts (bind only; the fabric's resolver file at /etc/resolv.conf, docs/dns.md):
the exact Engine API body (TaskTemplate.ContainerSpec.Mounts), diff, idempotence, check mode,
and that no mounts removes them."""

import copy

import pytest
import sf_service_api as api
from conftest import load_module

service = load_module("swarm_service")

RESOLV = {"source": "/etc/swarmfabric/dns/appnet.resolv.conf", "target": "/etc/resolv.conf", "read_only": True}
RESOLV_API = {"Type": "bind", "Source": "/etc/swarmfabric/dns/appnet.resolv.conf", "Target": "/etc/resolv.conf",
              "ReadOnly": True}
DATA_API = {"Type": "bind", "Source": "/srv/data", "Target": "/data", "ReadOnly": False}


def params(**extra):
    return api.params("web", **extra)


def existing(mounts=None):
    return api.existing("web", None if mounts is None else {"Mounts": mounts})


daemon = api.daemon


def test_create_sends_the_bind_mounts_sorted_by_target(run_module):
    docker = daemon([])
    done = run_module(service, params(mounts=[RESOLV, {"type": "bind", "source": "/srv/data", "target": "/data"}]),
                      docker=docker)
    assert not done.failed, done.msg
    assert docker.writes == [("POST", "/services/create", None, {
        "Name": "web", "Labels": {},
        "TaskTemplate": {"ContainerSpec": {"Image": "swarmfabric/task:1", "Mounts": [DATA_API, RESOLV_API],
                                           "Hosts": []},
                         "Networks": [{"Target": "id-appnet"}]},
        "Mode": {"Replicated": {"Replicas": 1}},
        "EndpointSpec": {"Mode": "vip", "Ports": []},
        "UpdateConfig": {"Parallelism": 1, "Delay": 5 * 10**9}})]
    assert done.result["changes"]["mounts"]["before"] is None


def test_the_same_mounts_as_docker_lists_them_are_no_change(run_module):
    # Docker leaves ReadOnly out when it is false.
    live = existing([RESOLV_API, {"Type": "bind", "Source": "/srv/data", "Target": "/data"}])
    docker = daemon([live])
    done = run_module(service, params(mounts=[{"source": "/srv/data", "target": "/data"}, RESOLV]), diff=True,
                      docker=docker)
    assert not done.failed, done.msg
    assert done.changed is False and done.result["changes"] == {} and docker.writes == []


def test_a_changed_mount_updates_the_spec_and_keeps_dockers_fields(run_module):
    live = existing([RESOLV_API])
    docker = daemon([live])
    done = run_module(service, params(mounts=[dict(RESOLV, read_only=False)]), diff=True, docker=docker)
    assert not done.failed, done.msg
    body = copy.deepcopy(live["Spec"])
    body["TaskTemplate"]["ContainerSpec"].update(Mounts=[dict(RESOLV_API, ReadOnly=False)], Image="swarmfabric/task:1")
    assert docker.writes == [("POST", "/services/sid/update", {"version": "7"}, body)]
    assert done.result["actions"] == ["updated web (mounts)"]
    target, source = "/etc/resolv.conf", "/etc/swarmfabric/dns/appnet.resolv.conf"
    # In Compose's short syntax, as the description would say it.
    assert done.result["diff"] == {"before": {"mounts": [f"{source}:{target}:ro"]},
                                   "after": {"mounts": [f"{source}:{target}"]}}


def test_no_mounts_removes_them_and_keeps_the_rest(run_module):
    docker = daemon([existing([RESOLV_API])])
    done = run_module(service, params(), docker=docker)
    assert not done.failed, done.msg
    (_method, _path, _query, body), = docker.writes
    assert "Mounts" not in body["TaskTemplate"]["ContainerSpec"]
    assert body["TaskTemplate"]["ContainerSpec"]["Isolation"] == "default"
    assert done.result["changes"] == {
        "mounts": {"before": ["/etc/swarmfabric/dns/appnet.resolv.conf:/etc/resolv.conf:ro"], "after": []}}


def test_check_mode_plans_the_mount_and_writes_nothing(run_module):
    docker = daemon([existing()])
    done = run_module(service, params(mounts=[RESOLV]), check=True, docker=docker)
    assert done.changed is True and done.result["actions"] == ["updated web (mounts)"]
    assert docker.writes == []


@pytest.mark.parametrize("mount", [{"type": "volume", "source": "x", "target": "/x"}, {"source": "/x"}])
def test_other_mount_types_and_missing_fields_are_refused(run_module, mount):
    docker = daemon([])
    done = run_module(service, params(mounts=[mount]), docker=docker)
    assert done.failed and docker.writes == []
