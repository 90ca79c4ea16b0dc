"""docker_overlay: Docker's own overlay network, read, planned and created over the scripted
Engine API; a network that differs is refused (Docker cannot change one), never recreated."""

from conftest import Docker, Status, load_module

overlay = load_module("docker_overlay")
LIVE = {"Id": "n1", "Name": "backend", "Driver": "overlay", "Scope": "swarm", "Attachable": False,
        "Options": {"encrypted": ""}, "IPAM": {"Config": [{"Subnet": "10.30.0.0/24"}]},
        "Labels": {"io.swarmfabric.overlay": "backend"}}
PARAMS = {"name": "backend", "subnet": "10.30.0.0/24", "encrypted": True}


def test_create_posts_the_overlay_body(run_module):
    docker = Docker({"/networks/backend": Status(404, "not found"), ("POST", "/networks/create"): {"Id": "n1"}})
    done = run_module(overlay, PARAMS, docker=docker)
    assert not done.failed, done.msg
    assert docker.writes == [("POST", "/networks/create", None, {
        "Name": "backend", "Driver": "overlay", "Attachable": False, "CheckDuplicate": True,
        "Labels": {"io.swarmfabric.overlay": "backend"}, "Options": {"encrypted": ""},
        "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.30.0.0/24"}]}})]
    assert done.changed and done.result["network_id"] == "n1"


def test_check_mode_plans_and_writes_nothing(run_module):
    docker = Docker({"/networks/backend": Status(404, "not found")})
    done = run_module(overlay, PARAMS, check=True, docker=docker)
    assert done.changed and docker.writes == [] and done.result["actions"] == ["created Docker overlay backend"]


def test_the_same_network_is_no_change(run_module):
    docker = Docker({"/networks/backend": LIVE})
    done = run_module(overlay, PARAMS, docker=docker)
    assert done.changed is False and docker.writes == [] and done.result["network_id"] == "n1"
    # Without a subnet, the one Docker picked is as described.
    assert run_module(overlay, {**PARAMS, "subnet": None}, docker=docker).changed is False


def test_a_network_that_differs_is_refused_and_left_alone(run_module):
    docker = Docker({"/networks/backend": {**LIVE, "Options": {}}})
    done = run_module(overlay, PARAMS, docker=docker)
    assert done.failed and docker.writes == []
    assert done.msg == ("Cannot converge Docker overlay backend: it exists with other settings (encrypted is False, "
                        "described True), and Docker cannot change a network: remove it once no service uses it, "
                        "then converge again")


def test_absent_removes_only_a_network_of_ours(run_module):
    docker = Docker({"/networks/backend": LIVE})
    done = run_module(overlay, {"name": "backend", "state": "absent"}, docker=docker)
    assert done.changed and docker.writes == [("DELETE", "/networks/n1", None, None)]
    docker = Docker({"/networks/backend": {**LIVE, "Labels": {}}})
    done = run_module(overlay, {"name": "backend", "state": "absent"}, docker=docker)
    assert done.changed is False and docker.writes == []
