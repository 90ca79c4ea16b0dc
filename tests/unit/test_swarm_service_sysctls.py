"""swarm_service's sysctls (Compose's field; the keepalive ones of docs/mesh.md): the exact
Engine API body (TaskTemplate.ContainerSpec.Sysctls, a map of strings), diff, idempotence,
check mode, and the refusal of a daemon too old to keep the field."""

import copy
import pathlib

import pytest
import sf_service_api as api
import yaml
from conftest import REPO, load_module
from swarmfabric.plan import normalize

service = load_module("swarm_service")

KEEPALIVE = {"net.ipv4.tcp_keepalive_time": "600", "net.ipv4.tcp_keepalive_intvl": "30"}


def params(**extra):
    return api.params("db", **extra)


def existing(sysctls=None):
    return api.existing("db", None if sysctls is None else {"Sysctls": sysctls})


daemon = api.daemon


def test_create_sends_the_sysctls_as_a_map_of_strings(run_module):
    docker = daemon([])
    done = run_module(service, params(sysctls={"net.ipv4.tcp_keepalive_time": 600,
                                               "net.ipv4.tcp_keepalive_intvl": "30"}), docker=docker)
    assert not done.failed, done.msg
    assert docker.writes == [("POST", "/services/create", None, {
        "Name": "db", "Labels": {},
        "TaskTemplate": {"ContainerSpec": {"Image": "swarmfabric/task:1", "Sysctls": KEEPALIVE, "Hosts": []},
                         "Networks": [{"Target": "id-appnet"}]},
        "Mode": {"Replicated": {"Replicas": 1}},
        "EndpointSpec": {"Mode": "vip", "Ports": []},
        "UpdateConfig": {"Parallelism": 1, "Delay": 5 * 10**9}})]
    assert done.result["changes"]["sysctls"] == {"before": None, "after": KEEPALIVE}


def test_the_same_sysctls_are_no_change(run_module):
    docker = daemon([existing(KEEPALIVE)])
    done = run_module(service, params(sysctls={"net.ipv4.tcp_keepalive_intvl": 30,
                                               "net.ipv4.tcp_keepalive_time": "600"}), diff=True, docker=docker)
    assert not done.failed, done.msg
    assert done.changed is False and done.result["changes"] == {} and docker.writes == []


def test_changed_sysctls_update_the_spec_and_keep_dockers_fields(run_module):
    live = existing(KEEPALIVE)
    docker = daemon([live])
    done = run_module(service, params(sysctls={"net.ipv4.tcp_keepalive_time": "300"}), diff=True, docker=docker)
    assert not done.failed, done.msg
    body = copy.deepcopy(live["Spec"])
    body["TaskTemplate"]["ContainerSpec"].update(Sysctls={"net.ipv4.tcp_keepalive_time": "300"},
                                                 Image="swarmfabric/task:1")  # the digest pin goes, as on any update
    assert docker.writes == [("POST", "/services/sid/update", {"version": "7"}, body)]
    assert done.result["actions"] == ["updated db (sysctls)"]
    assert done.result["diff"] == {"before": {"sysctls": KEEPALIVE},
                                   "after": {"sysctls": {"net.ipv4.tcp_keepalive_time": "300"}}}


def test_no_sysctls_removes_them(run_module):
    live = existing(KEEPALIVE)
    docker = daemon([live])
    done = run_module(service, params(), docker=docker)
    assert not done.failed, done.msg
    (_method, _path, _query, body), = docker.writes
    assert "Sysctls" not in body["TaskTemplate"]["ContainerSpec"]
    assert body["TaskTemplate"]["ContainerSpec"]["Isolation"] == "default"
    assert done.result["changes"] == {"sysctls": {"before": KEEPALIVE, "after": {}}}


def test_check_mode_plans_the_change_and_writes_nothing(run_module):
    docker = daemon([existing()])
    done = run_module(service, params(sysctls=KEEPALIVE), check=True, docker=docker)
    assert done.changed is True and done.result["actions"] == ["updated db (sysctls)"]
    assert docker.writes == []


def test_a_daemon_older_than_api_1_40_is_refused_before_any_write(run_module):
    # Docker drops the field below 1.40 without an error: every run would plan it again.
    docker = daemon([], api_version="1.39")
    done = run_module(service, params(sysctls=KEEPALIVE), docker=docker)
    assert done.failed and done.msg == ("Cannot converge service db: sysctls need Docker Engine API 1.40 or "
                                        "later; the daemon speaks 1.39")
    assert docker.writes == []
    # Without sysctls such a daemon is still served.
    assert not run_module(service, params(), docker=daemon([], api_version="1.39")).failed


@pytest.mark.parametrize("value", [True, 1.5, None, ["600"]])
def test_a_value_that_is_not_a_string_or_an_integer_is_refused(run_module, value):
    docker = daemon([])
    done = run_module(service, params(sysctls={"net.ipv4.tcp_keepalive_time": value}), docker=docker)
    assert done.failed and done.msg.startswith("Cannot converge service db: sysctl net.ipv4.tcp_keepalive_time: ")
    assert docker.writes == []


@pytest.mark.parametrize("sysctls", [
    {"net.ipv4.tcp_keepalive_time": 600, "net.ipv4.tcp_keepalive_intvl": "30"},
    ["net.ipv4.tcp_keepalive_intvl=30", "net.ipv4.tcp_keepalive_time=600"],
])
def test_both_compose_shapes_plan_to_the_same_map_of_strings(sysctls):
    swarm = {"name": "lab", "managers": ["node1"],
             "services": {"db": {"image": "swarmfabric/task:1", "sysctls": sysctls},
                          "legacy": {"backends": ["192.0.2.1:5432"]}}}
    services = normalize(swarm)["services"]
    assert services["db"]["sysctls"] == KEEPALIVE and list(services["db"]["sysctls"]) == sorted(KEEPALIVE)
    assert services["legacy"]["sysctls"] == {}


def test_the_services_role_passes_the_plans_sysctls():
    tasks = yaml.safe_load(pathlib.Path(REPO, "roles/services/tasks/main.yml").read_text())
    converge = next(task for task in tasks if "swarm_service" in task and task["swarm_service"].get("image"))
    assert converge["swarm_service"]["sysctls"] == "{{ item.value.sysctls | default({}) }}"
