"""swarm_service (format v2): the Compose service becomes the ServiceSpec docker stack deploy
would send (the field mapping itself is test_compose.py's); here the module's read, plan and
apply against a daemon scripted at its socket: exact request bodies, reads only when nothing
changed, no write in check mode, Docker's defaults never a change, diffs in Compose's words."""

import copy
import json

import pytest
from conftest import Docker, Seq, Status, load_module

service = load_module("swarm_service")


def swarm_net(name, config_from):
    return {"Name": name, "Id": f"id-{name}", "Scope": "swarm", "ConfigOnly": False, "Driver": "macvlan",
            "ConfigFrom": {"Network": config_from}}


GEN0 = swarm_net("appnet", "appnet-config")
MACVLAN = {"filters": {"driver": ["macvlan"]}}
RUNNING = [{"Status": {"State": "running"}}] * 3
WEB = {
    "image": "swarmfabric/task:1",
    "command": ["sh", "-c", "httpd -f"],
    "networks": ["appnet"],
    "environment": {"MODE": "prod"},
    "secrets": ["db_password"],
    "deploy": {"replicas": 3, "update_config": {"parallelism": 1, "delay": "5s"}, "labels": {"tier": "front"}},
}
SECRET = {"ID": "sec1", "Spec": {"Name": "db_password-0123456789ab"}}
SECRETS = {"db_password": "db_password-0123456789ab"}


def params(**extra):
    return {"name": "web", "service": copy.deepcopy(WEB), "secrets": SECRETS, **extra}


def fields_label(spec):
    return json.loads(spec["Labels"][service.FIELDS_LABEL])


def created_spec():
    """The body a create posts for WEB (as the first test asserts it)."""
    docker = Docker({"/networks": [GEN0], "/services": [], "/secrets": [SECRET],
                     ("POST", "/services/create"): {"ID": "sid"},
                     "/services/sid": {"UpdateStatus": {"State": "completed"}}, "/tasks": RUNNING})
    return docker


def existing(spec):
    """The service as the daemon lists it: our spec plus Docker's own additions and a pinned digest."""
    live = copy.deepcopy(spec)
    live["TaskTemplate"]["ContainerSpec"]["Image"] += "@sha256:abc"
    live["TaskTemplate"]["ContainerSpec"]["Isolation"] = "default"
    live["TaskTemplate"].update(ForceUpdate=0, Runtime="container")
    live["UpdateConfig"].update(FailureAction="pause", MaxFailureRatio=0, Order="stop-first")
    live["EndpointSpec"] = {"Mode": "vip"}
    return {"ID": "sid", "Version": {"Index": 42}, "Spec": live}


def create(run_module, **extra):
    docker = created_spec()
    done = run_module(service, params(**extra), docker=docker)
    assert not done.failed, done.msg
    return docker, done


def test_create_posts_the_stack_deploy_spec_with_resolved_network_and_secret_ids(run_module):
    docker, done = create(run_module)
    (method, path, query, body), = docker.writes
    assert (method, path, query) == ("POST", "/services/create", None)
    fields = fields_label(body)
    del body["Labels"][service.FIELDS_LABEL]
    assert body == {
        "Name": "web",
        "Labels": {"tier": "front"},
        "TaskTemplate": {
            "ContainerSpec": {"Image": "swarmfabric/task:1", "Args": ["sh", "-c", "httpd -f"], "Env": ["MODE=prod"],
                              "Secrets": [{"File": {"Name": "db_password", "UID": "0", "GID": "0", "Mode": 0o444},
                                           "SecretName": "db_password-0123456789ab", "SecretID": "sec1"}]},
            "Networks": [{"Target": "id-appnet"}]},
        "Mode": {"Replicated": {"Replicas": 3}},
        "UpdateConfig": {"Parallelism": 1, "Delay": 5 * 10 ** 9},
    }
    # The fields label keeps the description's words (object names, never a value of a secret).
    assert fields["deploy.replicas"] == 3 and fields["secrets.db_password.name"] == "db_password-0123456789ab"
    assert done.result["service_id"] == "sid" and done.result["actions"] == [
        "created web (replicated, 3 replicas, image swarmfabric/task:1)"]
    assert ("GET", "/secrets", {"filters": {"name": ["db_password-0123456789ab"]}}, None) in docker.calls
    assert docker.calls[-1] == ("GET", "/tasks", {"filters": {"service": ["sid"]}}, None)


def test_the_wait_lasts_until_no_replaced_task_still_runs(run_module):
    old = {"DesiredState": "shutdown", "Status": {"State": "running"}}
    docker = created_spec()
    docker.answers["/tasks"] = Seq([*RUNNING, old], RUNNING)
    done = run_module(service, params(), docker=docker)
    assert not done.failed, done.msg
    assert [c[1] for c in docker.calls].count("/tasks") == 2


def test_a_new_services_diff_has_no_before_and_hides_environment_values(run_module):
    docker = Docker({"/networks": [GEN0], "/services": [], "/secrets": [SECRET]})
    done = run_module(service, params(), check=True, diff=True, docker=docker)
    assert done.result["diff"]["before"] == {}
    after = done.result["diff"]["after"]
    assert after["image"] == "swarmfabric/task:1" and after["deploy.replicas"] == 3
    assert after["networks"] == ["appnet"] and after["environment.MODE"] == "(hidden)"
    assert "prod" not in json.dumps(done.result)
    assert docker.writes == []


def live_of(run_module):
    docker, _ = create(run_module)
    return existing(docker.writes[0][3])


def test_no_change_is_reads_only_despite_dockers_defaults(run_module):
    live = live_of(run_module)
    docker = Docker({"/networks": [GEN0], "/services": [live], "/secrets": [SECRET]})
    done = run_module(service, params(), docker=docker)
    assert done.result == {"changed": False, "actions": [], "service_id": "sid", "changes": {}}
    assert docker.writes == []


def test_scaling_is_one_update_that_keeps_dockers_own_fields(run_module):
    live = live_of(run_module)
    docker = Docker({"/networks": [GEN0], "/services": [live], "/secrets": [SECRET], "/services/sid": {},
                     "/tasks": RUNNING * 2})
    wanted = copy.deepcopy(WEB)
    wanted["deploy"]["replicas"] = 5
    done = run_module(service, params(service=wanted), diff=True, docker=docker)
    assert not done.failed, done.msg
    (method, path, query, body), = docker.writes
    assert (method, path, query) == ("POST", "/services/sid/update", {"version": "42"})
    assert body["Mode"] == {"Replicated": {"Replicas": 5}}
    # What no Compose key sets stays as the daemon has it.
    assert body["TaskTemplate"]["ForceUpdate"] == 0 and body["TaskTemplate"]["Runtime"] == "container"
    assert body["TaskTemplate"]["ContainerSpec"]["Isolation"] == "default"
    assert done.result["actions"] == ["scaled web from 3 to 5 replicas"]
    assert done.result["diff"] == {"before": {"deploy.replicas": 3}, "after": {"deploy.replicas": 5}}


def test_a_new_secret_version_rolls_the_service_and_shows_the_names_only(run_module):
    live = live_of(run_module)
    newer = {"ID": "sec2", "Spec": {"Name": "db_password-ba9876543210"}}
    docker = Docker({"/networks": [GEN0], "/services": [live], "/secrets": [newer], "/tasks": RUNNING,
                     "/services/sid": {"UpdateStatus": {"State": "completed", "StartedAt": "2026-12-03T07:00:00Z"}}})
    done = run_module(service, params(secrets={"db_password": "db_password-ba9876543210"}), docker=docker)
    assert not done.failed, done.msg
    assert done.result["changes"] == {"secrets.db_password.name": {"before": "db_password-0123456789ab",
                                                                   "after": "db_password-ba9876543210"}}
    body = docker.writes[0][3]
    assert body["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretID"] == "sec2"


def test_a_changed_environment_value_is_a_change_without_its_value(run_module):
    live = live_of(run_module)
    docker = Docker({"/networks": [GEN0], "/services": [live], "/secrets": [SECRET], "/services/sid": {},
                     "/tasks": RUNNING})
    wanted = copy.deepcopy(WEB)
    wanted["environment"] = {"MODE": "staging"}
    done = run_module(service, params(service=wanted), check=True, docker=docker)
    assert done.result["changes"] == {"environment.MODE": {"before": "(hidden)", "after": "(hidden), changed"}}
    assert "staging" not in json.dumps(done.result) and "prod" not in json.dumps(done.result)
    assert docker.writes == []


def test_a_change_made_outside_is_named_by_its_spec_path(run_module):
    live = live_of(run_module)
    live["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"] = ["MODE=debug"]
    docker = Docker({"/networks": [GEN0], "/services": [live], "/secrets": [SECRET]})
    done = run_module(service, params(), check=True, docker=docker)
    assert done.result["changes"] == {"spec": {"before": "differs from the description in ContainerSpec.Env",
                                               "after": "as described"}}


def test_a_missing_secret_is_a_change_in_check_mode_and_an_error_otherwise(run_module):
    docker = Docker({"/networks": [GEN0], "/services": [], "/secrets": []})
    done = run_module(service, params(), check=True, docker=docker)
    assert done.changed and docker.writes == []
    done = run_module(service, params(), docker=docker)
    assert done.failed and done.msg == "Cannot converge service web: secret 'db_password-0123456789ab' does not exist"


def test_a_mode_change_is_refused(run_module):
    live = live_of(run_module)
    docker = Docker({"/networks": [GEN0], "/services": [live], "/secrets": [SECRET]})
    wanted = copy.deepcopy(WEB)
    wanted["deploy"] = {"mode": "global"}
    done = run_module(service, params(service=wanted), docker=docker)
    assert done.failed and "deploy.mode changes from replicated to global" in done.msg and docker.writes == []


def test_sysctls_need_api_1_40(run_module):
    wanted = dict(WEB, sysctls={"net.ipv4.tcp_keepalive_time": 600})
    docker = Docker({"/networks": [GEN0], "/services": [], "/secrets": [SECRET]}, api_version="1.39")
    done = run_module(service, params(service=wanted), docker=docker)
    assert done.failed and "sysctls need Docker Engine API 1.40" in done.msg and docker.writes == []


def test_a_stack_service_gets_docker_stack_deploys_name_labels_and_alias(run_module):
    docker = Docker({"/networks": [GEN0], "/services": [], "/secrets": [{"ID": "s", "Spec": {"Name": "shop_db"}}],
                     ("POST", "/services/create"): {"ID": "sid"},
                     "/services/sid": {"UpdateStatus": {"State": "completed"}}, "/tasks": RUNNING})
    wanted = dict(WEB, secrets=["db"])
    done = run_module(service, {"name": "web", "stack": "shop", "service": wanted}, docker=docker)
    assert not done.failed, done.msg
    body = docker.writes[0][3]
    assert body["Name"] == "shop_web"
    assert body["Labels"]["com.docker.stack.namespace"] == "shop"
    assert body["TaskTemplate"]["Networks"] == [{"Target": "id-appnet", "Aliases": ["web"]}]
    assert body["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretName"] == "shop_db"


@pytest.mark.parametrize("state, extra, actions", [
    ("absent", {}, ["removed web"]),
    ("pruned", {"keep": ["api"]}, ["removed web"]),
])
def test_check_mode_removals_write_nothing(run_module, state, extra, actions):
    live = live_of(run_module)
    docker = Docker({"/services": [live]})
    done = run_module(service, {"name": "web", "state": state, **extra}, check=True, docker=docker)
    assert not done.failed, done.msg
    assert done.changed is True and done.result["actions"] == actions and docker.writes == []


def test_absent_and_pruned_delete_by_id_and_a_stack_prunes_only_its_own(run_module):
    live = live_of(run_module)
    docker = Docker({"/services": [live]})
    assert run_module(service, {"name": "web", "state": "absent"}, docker=docker).result["actions"] == ["removed web"]
    done = run_module(service, {"state": "pruned", "keep": ["web"]}, docker=docker)
    assert done.changed is False and done.result["removed"] == []
    done = run_module(service, {"state": "pruned", "stack": "shop", "keep": []}, docker=docker)
    assert done.changed is False  # web is no service of stack shop
    assert docker.writes == [("DELETE", "/services/sid", None, None)]


def test_an_overlay_resolves_to_its_newest_generation(run_module):
    docker = Docker({"/networks": [GEN0, swarm_net("appnet-1", "appnet-config-1")], "/services": [],
                     "/secrets": [SECRET], ("POST", "/services/create"): {"ID": "sid"},
                     "/services/sid": {"UpdateStatus": {"State": "completed"}}, "/tasks": RUNNING})
    done = run_module(service, params(), docker=docker)
    assert not done.failed, done.msg
    assert docker.calls[0] == ("GET", "/networks", MACVLAN, None)
    assert docker.writes[0][3]["TaskTemplate"]["Networks"] == [{"Target": "id-appnet-1"}]


def test_a_network_without_generations_is_looked_up_by_name(run_module):
    docker = Docker({"/networks": [], "/networks/appnet": {"Id": "p", "Scope": "local"}, "/services": [],
                     "/secrets": [SECRET]})
    done = run_module(service, params(), check=True, docker=docker)
    assert done.failed and done.msg == "Cannot converge service web: network 'appnet' is local-scoped, not swarm-scoped"
    docker = Docker({"/networks": [], "/networks/appnet": Status(404, "network appnet not found"), "/services": [],
                     "/secrets": [SECRET]})
    done = run_module(service, params(), docker=docker)
    assert done.failed and done.msg == "Cannot converge service web: network 'appnet' does not exist"


def test_an_update_that_restarts_tasks_waits_for_its_own_update_status(run_module):
    live = live_of(run_module)
    live["UpdateStatus"] = {"State": "completed", "StartedAt": "2026-12-01T10:00:00Z"}
    started = {"State": "updating", "StartedAt": "2026-12-03T07:00:00Z"}
    done_ = {"State": "completed", "StartedAt": "2026-12-03T07:00:00Z"}
    docker = Docker({"/networks": [GEN0], "/services": [live], "/secrets": [SECRET], "/tasks": RUNNING,
                     "/services/sid": Seq({"UpdateStatus": live["UpdateStatus"]}, {"UpdateStatus": started},
                                          {"UpdateStatus": done_})})
    wanted = copy.deepcopy(WEB)
    wanted["image"] = "swarmfabric/task:2"
    done = run_module(service, params(service=wanted), docker=docker)
    assert not done.failed, done.msg
    # The old "completed" (before Docker's updater started) did not end the wait; the new one did.
    assert [c[1] for c in docker.calls].count("/services/sid") == 3
