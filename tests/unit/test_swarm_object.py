"""swarm_object: versioned secrets and configs, against a daemon scripted at its socket."""

import base64
import copy
import hashlib
import hmac
import json

import pytest
from ansible.module_utils.swarmfabric import docker_api, objects
from conftest import Docker, Status, load_module
from swarmfabric import objects as controller  # the name the controller's plugins import it by

swarm_object = load_module("swarm_object")

RAW = b"hunter2"
DATA = base64.b64encode(RAW).decode()  # aHVudGVyMg==
KEY = "k1"


def digest(kind, name, data, key):
    """The version, computed here from its definition (not by the code under test)."""
    message = kind.encode() + b"\0" + name.encode() + b"\0" + data
    mac = hmac.new(key.encode(), message, hashlib.sha256) if key else hashlib.sha256(message)
    return mac.hexdigest()[:12]


V1 = digest("secret", "db_password", RAW, KEY)
NAME = f"db_password-{V1}"


class Swarm(Docker):
    """A daemon that keeps its secrets and configs: the name filter matches prefixes and the label
    filter ``key`` or ``key=value``, as Docker's do; a config's listing carries its Data, as Docker's
    does. ``errors`` maps (method, path) to a Status."""

    def __init__(self, store=(), services=(), errors=None):
        super().__init__()
        self.store = {"/secrets": [], "/configs": []}
        for path, name, labels in store:
            self.add(path, name, labels, DATA)
        self.services = list(services)
        self.errors = dict(errors or {})

    def add(self, path, name, labels, data):
        spec = {"Name": name, "Labels": dict(labels)}
        if path == "/configs":
            spec["Data"] = data
        self.store[path].append({"ID": f"id-{name}", "Version": {"Index": 1}, "Spec": spec})
        return f"id-{name}"

    def respond(self, method, path, query, body):
        if (method, path) in self.errors:
            return self.errors[(method, path)]
        filters = (query or {}).get("filters") or {}
        if method == "GET" and path in self.store:
            found = self.store[path]
            for prefix in filters.get("name", []):
                found = [obj for obj in found if obj["Spec"]["Name"].startswith(prefix)]
            for label in filters.get("label", []):
                key, sep, value = label.partition("=")
                found = [obj for obj in found if key in obj["Spec"]["Labels"]
                         and (not sep or obj["Spec"]["Labels"][key] == value)]
            return copy.deepcopy(found)
        if method == "POST" and path.endswith("/create"):
            return {"ID": self.add(path[: -len("/create")], body["Name"], body["Labels"], body["Data"])}
        if method == "DELETE":
            where, _, ident = path.rpartition("/")
            self.store[where] = [obj for obj in self.store[where] if obj["ID"] != ident]
            return None
        if method == "GET" and path == "/services":
            return copy.deepcopy(self.services)
        raise AssertionError(f"unexpected request {method} {path}")

    def names(self, path="/secrets"):
        return sorted(obj["Spec"]["Name"] for obj in self.store[path])


def ours(name, ver):
    return {"io.swarmfabric.object": name, "io.swarmfabric.version": ver}


def service(name, secrets=(), configs=()):
    container = {"Image": "swarmfabric/task:1"}
    if secrets:
        container["Secrets"] = [dict(ref, File={"Name": "x"}) for ref in secrets]
    if configs:
        container["Configs"] = list(configs)
    return {"ID": f"sid-{name}", "Spec": {"Name": name, "TaskTemplate": {"ContainerSpec": container}}}


def params(**extra):
    return {"kind": "secret", "name": "db_password", "data": DATA, "version_key": KEY, **extra}


# --- the version -----------------------------------------------------------------------


def test_the_version_is_hmac_sha256_of_kind_name_and_data():
    # Fixed literals: a change of the message's layout fails here, even if made on both sides.
    assert digest("secret", "db_password", b"hunter2", "k1") == "ced2add5fcb0"
    assert digest("secret", "db_password", b"hunter2", "") == "c61f772a75bd"
    assert objects.version("secret", "db_password", b"hunter2", "k1") == "ced2add5fcb0"
    assert objects.version("secret", "db_password", b"hunter2", "") == "c61f772a75bd"
    assert objects.docker_name("secret", "db_password", b"hunter2", "k1") == "db_password-ced2add5fcb0"


@pytest.mark.parametrize(("kind", "name", "data", "key"), [
    ("config", "app_conf", b"port: 80\n", ""),
    ("config", "app_conf", b"port: 80\n", "another key"),
    ("secret", "tls.key", bytes(range(256)), "k\u00e9y"),
])
def test_the_version_agrees_with_its_definition(kind, name, data, key):
    assert objects.version(kind, name, data, key) == digest(kind, name, data, key)
    assert objects.docker_name(kind, name, data, key) == f"{name}-{digest(kind, name, data, key)}"


def test_same_content_same_name_and_anything_else_renames():
    base = objects.docker_name("secret", "db", b"a", "k")
    assert objects.docker_name("secret", "db", b"a", "k") == base
    others = {objects.docker_name("secret", "db", b"b", "k"), objects.docker_name("secret", "db", b"a", "k2"),
              objects.docker_name("secret", "db", b"a", ""), objects.docker_name("config", "db", b"a", "k")}
    assert len(others) == 4 and base not in others
    # The separator keeps name and content apart (a name has no NUL: the name rule).
    assert objects.version("secret", "db", b"1a") != objects.version("secret", "db1", b"a")


@pytest.mark.parametrize("name", ["a", "db_password", "A.b-c_9", "x" * 51])
def test_names_docker_accepts(name):
    assert objects.name_problem(name) is None


@pytest.mark.parametrize(("name", "problem"), [
    ("-db", "is not a valid name"), ("db-", "is not a valid name"), ("db pass", "is not a valid name"),
    ("db/pass", "is not a valid name"), ("", "is not a valid name"),
    ("x" * 52, "has 52 characters, more than 51 (Docker's 64 with the -<version> suffix)"),
])
def test_names_docker_refuses(name, problem):
    assert problem in objects.name_problem(name)


def test_objects_is_importable_by_the_controller_too():
    assert controller.version("secret", "db_password", b"hunter2", "k1") == "ced2add5fcb0"


# --- state=present ----------------------------------------------------------------------


def test_create_posts_name_data_and_labels(run_module):
    docker = Swarm()
    done = run_module(swarm_object, params(labels={"com.docker.stack.namespace": "shop"}), docker=docker)
    assert not done.failed, done.msg
    assert docker.calls == [
        ("GET", "/secrets", {"filters": {"name": [NAME]}}, None),
        ("POST", "/secrets/create", None, {
            "Name": NAME, "Data": DATA,
            "Labels": {"io.swarmfabric.object": "db_password", "io.swarmfabric.version": V1,
                       "com.docker.stack.namespace": "shop"}}),
    ]
    assert done.result == {"changed": True, "actions": [f"created secret {NAME}"], "docker_name": NAME,
                           "id": f"id-{NAME}", "version": V1}


def test_a_config_goes_to_configs(run_module):
    docker = Swarm()
    done = run_module(swarm_object, params(kind="config", name="app_conf", version_key=""), docker=docker)
    ver = digest("config", "app_conf", RAW, "")
    assert [(m, p) for m, p, _q, _b in docker.calls] == [("GET", "/configs"), ("POST", "/configs/create")]
    assert docker.writes[0][3]["Name"] == f"app_conf-{ver}"
    assert done.result["actions"] == [f"created config app_conf-{ver}"]


def test_a_second_run_is_no_change(run_module):
    docker = Swarm()
    first = run_module(swarm_object, params(), docker=docker)
    second = run_module(swarm_object, params(), diff=True, docker=docker)
    assert first.changed is True and second.changed is False
    assert len(docker.writes) == 1
    assert second.result == {"changed": False, "actions": [], "docker_name": NAME, "id": f"id-{NAME}",
                             "version": V1, "diff": {"before": {"secret db_password": NAME},
                                                     "after": {"secret db_password": NAME}}}


def test_new_content_is_a_new_object_and_the_old_one_stays(run_module):
    docker = Swarm()
    run_module(swarm_object, params(), docker=docker)
    done = run_module(swarm_object, params(data=base64.b64encode(b"hunter3").decode()), docker=docker)
    new = f"db_password-{digest('secret', 'db_password', b'hunter3', KEY)}"
    assert new != NAME and done.result["docker_name"] == new
    assert docker.names() == sorted([NAME, new])


def test_a_new_key_renames(run_module):
    docker = Swarm()
    done = run_module(swarm_object, params(version_key="k2"), docker=docker)
    assert done.result["version"] == digest("secret", "db_password", RAW, "k2") != V1


def test_the_name_filter_is_a_prefix_match(run_module):
    # A longer name that starts with ours is not ours.
    docker = Swarm(store=[("/secrets", NAME + "0", ours("db_password", V1))])
    done = run_module(swarm_object, params(), docker=docker)
    assert done.changed is True and [w[1] for w in docker.writes] == ["/secrets/create"]


def test_check_mode_plans_the_creation_and_writes_nothing(run_module):
    docker = Swarm()
    done = run_module(swarm_object, params(), check=True, diff=True, docker=docker)
    assert not done.failed, done.msg
    assert docker.writes == [] and len(docker.calls) == 1
    assert done.result == {"changed": True, "actions": [f"created secret {NAME}"], "docker_name": NAME, "id": "",
                           "version": V1, "diff": {"before": {}, "after": {"secret db_password": NAME}}}


@pytest.mark.parametrize(("name", "cause"), [
    ("-db", "name '-db' is not a valid name"),
    ("db pass", "name 'db pass' is not a valid name"),
    ("x" * 52, f"name '{'x' * 52}' has 52 characters, more than 51"),
])
def test_names_docker_would_refuse_are_refused_first(run_module, name, cause):
    docker = Swarm()
    done = run_module(swarm_object, params(name=name), docker=docker)
    assert done.failed and done.msg.startswith(f"Cannot converge secret {name}: {cause}")
    assert docker.calls == []


def test_a_51_character_name_is_64_with_its_version(run_module):
    docker = Swarm()
    done = run_module(swarm_object, params(name="x" * 51), docker=docker)
    assert not done.failed, done.msg
    assert len(done.result["docker_name"]) == 64


@pytest.mark.parametrize(("extra", "cause"), [
    ({"data": None}, "data is required with state=present (or set external)"),
    ({"data": "not base64!"}, "data is not valid base64"),
    ({"data": ""}, "data is empty; Docker refuses an empty secret"),
    ({"labels": {"io.swarmfabric.version": "1"}}, "labels io.swarmfabric.version are the module's own"),
])
def test_bad_content_or_labels_are_refused(run_module, extra, cause):
    docker = Swarm()
    done = run_module(swarm_object, params(**extra), docker=docker)
    assert done.failed and done.msg == f"Cannot converge secret db_password: {cause}"
    assert docker.writes == []


def test_a_daemon_error_fails_with_the_traceback(run_module):
    docker = Swarm(errors={("POST", "/secrets/create"): Status(500, "rpc error: raft is down")})
    done = run_module(swarm_object, params(), docker=docker)
    assert done.failed and done.msg == "Cannot converge secret db_password: rpc error: raft is down (HTTP 500)"
    assert "DockerAPIError" in done.result["exception"]
    assert done.result["actions"] == [f"created secret {NAME}"]


# --- external ---------------------------------------------------------------------------


@pytest.mark.parametrize("check", [False, True])
def test_external_returns_the_existing_objects_id(run_module, check):
    docker = Swarm(store=[("/secrets", "tls_key_old", {}), ("/secrets", "tls_key", {})])
    done = run_module(swarm_object, {"kind": "secret", "name": "tls_key", "external": True}, check=check,
                      docker=docker)
    assert done.result == {"changed": False, "actions": [], "docker_name": "tls_key", "id": "id-tls_key",
                           "version": ""}
    assert docker.writes == []


@pytest.mark.parametrize("check", [False, True])
def test_a_missing_external_object_fails(run_module, check):
    docker = Swarm(store=[("/secrets", "tls_key_old", {})])  # a prefix match, not the name
    done = run_module(swarm_object, {"kind": "secret", "name": "tls_key", "external": True}, check=check,
                      docker=docker)
    assert done.failed and done.msg == (
        "Cannot use external secret tls_key: it does not exist (create it with docker secret create, "
        "or drop external)")
    assert docker.writes == []


def test_external_with_data_is_refused(run_module):
    docker = Swarm(store=[("/secrets", "tls_key", {})])
    done = run_module(swarm_object, {"kind": "secret", "name": "tls_key", "external": True, "data": DATA},
                      docker=docker)
    assert done.failed and done.msg.startswith("Cannot use external secret tls_key: data is given")
    assert docker.calls == []


# --- state=absent -----------------------------------------------------------------------

OLD = "db_password-000000000000"


def test_absent_removes_every_version_and_nothing_else(run_module):
    docker = Swarm(store=[("/secrets", OLD, ours("db_password", "000000000000")),
                          ("/secrets", NAME, ours("db_password", V1)),
                          ("/secrets", "db_password", {}),                       # the user's own
                          ("/secrets", "db_password_x-1", ours("db_password_x", "1"))],
                   services=[service("web", secrets=[{"SecretID": "id-other", "SecretName": "other"}])])
    done = run_module(swarm_object, {"kind": "secret", "name": "db_password", "state": "absent"}, diff=True,
                      docker=docker)
    assert not done.failed, done.msg
    assert docker.writes == [("DELETE", f"/secrets/id-{OLD}", None, None),
                             ("DELETE", f"/secrets/id-{NAME}", None, None)]
    assert done.result["removed"] == [OLD, NAME]
    assert done.result["actions"] == [f"removed secret {OLD}", f"removed secret {NAME}"]
    assert done.result["diff"] == {"before": {"secret db_password": [OLD, NAME]}, "after": {}}
    assert docker.names() == ["db_password", "db_password_x-1"]


def test_absent_with_nothing_there_is_no_change(run_module):
    docker = Swarm(store=[("/secrets", "db_password", {})])
    done = run_module(swarm_object, {"kind": "secret", "name": "db_password", "state": "absent"}, docker=docker)
    assert done.result == {"changed": False, "actions": [], "removed": []} and docker.writes == []


def test_absent_is_refused_while_a_service_uses_a_version(run_module):
    docker = Swarm(store=[("/secrets", OLD, ours("db_password", "000000000000")),
                          ("/secrets", NAME, ours("db_password", V1))],
                   services=[service("web", secrets=[{"SecretID": f"id-{NAME}", "SecretName": NAME}]),
                             service("api", secrets=[{"SecretName": OLD}])])
    done = run_module(swarm_object, {"kind": "secret", "name": "db_password", "state": "absent"}, docker=docker)
    assert done.failed and done.msg == "Cannot remove secret db_password: still used by service(s) api, web"
    assert docker.writes == []


def test_absent_in_check_mode_writes_nothing(run_module):
    docker = Swarm(store=[("/secrets", NAME, ours("db_password", V1))])
    done = run_module(swarm_object, {"kind": "secret", "name": "db_password", "state": "absent"}, check=True,
                      docker=docker)
    assert done.changed is True and done.result["actions"] == [f"removed secret {NAME}"] and docker.writes == []


# --- state=pruned -----------------------------------------------------------------------


def prune_daemon():
    conf = {f"app_conf-{v}": ours("app_conf", v) for v in ("aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc")}
    conf["site_conf-dddddddddddd"] = ours("site_conf", "dddddddddddd")
    conf["other_conf-eeeeeeeeeeee"] = ours("other_conf", "eeeeeeeeeeee")
    conf["users_conf"] = {"com.docker.stack.namespace": "shop"}  # the user's own: never ours to remove
    return Swarm(store=[("/configs", name, labels) for name, labels in conf.items()],
                 services=[service("web", configs=[{"ConfigID": "id-app_conf-aaaaaaaaaaaa", "ConfigName": "x"}]),
                           service("api", configs=[{"ConfigName": "app_conf-aaaaaaaaaaaa"},
                                                   {"ConfigName": "site_conf-dddddddddddd"}]),
                           # a secret reference of the same name does not keep a config
                           service("db", secrets=[{"SecretName": "app_conf-bbbbbbbbbbbb"}])])


PRUNE = {"kind": "config", "state": "pruned", "keep": ["app_conf", "site_conf"],
         # current, but other_conf is not kept: it goes
         "current": ["app_conf-cccccccccccc", "other_conf-eeeeeeeeeeee"]}


def test_pruned_keeps_what_services_use_and_what_was_just_converged(run_module):
    docker = prune_daemon()
    done = run_module(swarm_object, PRUNE, diff=True, docker=docker)
    assert not done.failed, done.msg
    assert done.result["removed"] == ["app_conf-bbbbbbbbbbbb", "other_conf-eeeeeeeeeeee"]
    assert done.result["kept"] == {"app_conf-aaaaaaaaaaaa": ["api", "web"], "app_conf-cccccccccccc": [],
                                   "site_conf-dddddddddddd": ["api"]}
    assert docker.writes == [("DELETE", "/configs/id-app_conf-bbbbbbbbbbbb", None, None),
                             ("DELETE", "/configs/id-other_conf-eeeeeeeeeeee", None, None)]
    assert done.result["actions"] == ["removed config app_conf-bbbbbbbbbbbb", "removed config other_conf-eeeeeeeeeeee"]
    assert docker.calls[0] == ("GET", "/configs", {"filters": {"label": ["io.swarmfabric.object"]}}, None)
    assert docker.names("/configs") == ["app_conf-aaaaaaaaaaaa", "app_conf-cccccccccccc", "site_conf-dddddddddddd",
                                        "users_conf"]
    assert done.result["diff"] == {
        "before": {"config app_conf": ["app_conf-aaaaaaaaaaaa", "app_conf-bbbbbbbbbbbb", "app_conf-cccccccccccc"],
                   "config other_conf": ["other_conf-eeeeeeeeeeee"], "config site_conf": ["site_conf-dddddddddddd"]},
        "after": {"config app_conf": ["app_conf-aaaaaaaaaaaa", "app_conf-cccccccccccc"],
                  "config site_conf": ["site_conf-dddddddddddd"]}}
    again = run_module(swarm_object, PRUNE, docker=docker)
    assert again.changed is False and again.result["removed"] == [] and len(docker.writes) == 2


def test_pruned_never_trusts_the_daemons_label_filter_alone(run_module):
    class Loose(Swarm):  # answers every listing unfiltered
        def respond(self, method, path, query, body):
            return super().respond(method, path, None, body)

    docker = Loose(store=[("/secrets", "mine", {}), ("/secrets", "theirs", {"io.swarmfabric.objectx": "a"})])
    done = run_module(swarm_object, {"kind": "secret", "state": "pruned"}, docker=docker)
    assert done.result == {"changed": False, "actions": [], "removed": [], "kept": {}} and docker.writes == []


def test_pruned_in_check_mode_plans_the_same_and_writes_nothing(run_module):
    docker = prune_daemon()
    done = run_module(swarm_object, PRUNE, check=True, docker=docker)
    assert done.changed is True and docker.writes == []
    assert done.result["removed"] == ["app_conf-bbbbbbbbbbbb", "other_conf-eeeeeeeeeeee"]
    assert done.result["actions"] == ["removed config app_conf-bbbbbbbbbbbb", "removed config other_conf-eeeeeeeeeeee"]


def test_a_refused_removal_fails_naming_the_object(run_module):
    docker = Swarm(store=[("/secrets", NAME, ours("db_password", V1))],
                   errors={("DELETE", f"/secrets/id-{NAME}"): Status(400, f"secret '{NAME}' is in use by service x")})
    done = run_module(swarm_object, {"kind": "secret", "state": "pruned"}, docker=docker)
    assert done.failed and done.msg == f"Cannot prune secrets: secret '{NAME}' is in use by service x (HTTP 400)"


# --- the content is never shown -------------------------------------------------------

TEXT = "correct horse battery staple"
B64 = base64.b64encode(TEXT.encode()).decode()
SECRET_KEY = "the version key"


def leaks(done):
    everything = json.dumps(done.result) + done.msg + "".join(done.warnings)
    return [value for value in (TEXT, B64, SECRET_KEY) if value in everything]


@pytest.mark.parametrize("kind", ["secret", "config"])
@pytest.mark.parametrize("check", [False, True])
def test_the_content_and_key_never_appear_in_a_result(run_module, kind, check):
    docker = Swarm()
    args = {"kind": kind, "name": "db_password", "data": B64, "version_key": SECRET_KEY}
    created = run_module(swarm_object, args, check=check, diff=True, docker=docker)
    assert not created.failed and created.changed is True
    if kind == "config" and not check:  # a config's listing carries its Data: the next runs read it
        assert B64 in json.dumps(docker.store["/configs"])
    again = run_module(swarm_object, args, check=check, diff=True, docker=docker)
    pruned = run_module(swarm_object, {"kind": kind, "state": "pruned"}, check=check, diff=True, docker=docker)
    for done in (created, again, pruned):
        assert not done.failed, done.msg
        assert leaks(done) == []


@pytest.mark.parametrize("echo", [TEXT, B64, f"{SECRET_KEY}: {B64}"])
def test_a_daemon_that_echoes_the_content_is_masked(run_module, echo):
    docker = Swarm(errors={("POST", "/secrets/create"): Status(400, f"invalid secret: {echo}")})
    done = run_module(swarm_object, {"kind": "secret", "name": "db_password", "data": B64,
                                     "version_key": SECRET_KEY}, docker=docker)
    assert done.failed and done.msg.startswith("Cannot converge secret db_password: invalid secret: ********")
    assert "********" in done.result["exception"]
    assert leaks(done) == []
    assert [w[1] for w in docker.writes] == ["/secrets/create"]  # the request itself did carry it


def test_a_socket_error_never_carries_the_body(monkeypatch):
    class Broken:
        def __init__(self, socket_path, timeout):
            pass

        def request(self, method, url, body=None, headers=None):
            raise ConnectionRefusedError(111, "Connection refused")

        def close(self):
            pass

    monkeypatch.setattr(docker_api, "_UnixHTTPConnection", Broken)
    api = docker_api.DockerAPI("/run/nowhere.sock")
    api._api_version = "1.41"
    with pytest.raises(docker_api.DockerAPIError) as caught:
        api.post("/secrets/create", body={"Name": "db_password-x", "Data": B64})
    assert str(caught.value) == ("POST /v1.41/secrets/create via /run/nowhere.sock: ConnectionRefusedError: "
                                 "[Errno 111] Connection refused")
    assert B64 not in str(caught.value) and caught.value.__cause__ is None
