"""The swarm's real daemon state matches the description of the current phase."""

import json
import os
import pathlib
import time

import pytest
import yaml

SCENARIO = pathlib.Path(__file__).resolve().parents[1]
# side_effect.yml marks phase 2 inside the first node: the mark dies with the instances.
PHASE_MARK = "/run/sf-cp-phase"
ALL = [f"sf-cp-node{i}" for i in range(1, 6)]
ADDR = {name: f"172.31.78.1{name[-1]}" for name in ALL}

testinfra_hosts = ["ansible://sf-cp-node1"]
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "")


@pytest.fixture(scope="module")
def description(host):
    """The description of the current phase: the scenario's, or vars/changed.yml after side_effect."""
    source = "vars/changed.yml" if host.file(PHASE_MARK).exists else "group_vars/all/swarm.yml"
    return yaml.safe_load((SCENARIO / source).read_text())["swarm"]


@pytest.fixture(scope="module")
def members(description):
    return description["managers"] + description.get("workers", [])


def nodes(host):
    ids = host.check_output("docker node ls -q").split()
    return {
        n["Description"]["Hostname"]: n for n in json.loads(host.check_output("docker node inspect " + " ".join(ids)))
    }


def test_every_described_node_has_its_role_availability_and_labels(host, description, members):
    live = nodes(host)
    assert sorted(live) == sorted(members)
    for name in members:
        spec = live[name]["Spec"]
        want = (description.get("nodes") or {}).get(name) or {}
        assert spec["Role"] == ("manager" if name in description["managers"] else "worker"), name
        assert spec["Availability"] == want.get("availability", "active"), name
        labels = dict(spec.get("Labels") or {})
        # Our identity label ties the node to its inventory name; the rest is exactly the description's.
        assert labels.pop("io.swarmfabric.host", None) == name, name
        labels.pop("io.swarmfabric.backends", None)  # the mesh layer's record of its last report
        assert labels == want.get("labels", {}), name
        assert live[name]["Status"]["State"] == "ready", name
        if name in description["managers"]:
            assert live[name]["ManagerStatus"]["Reachability"] == "reachable", name


def test_retired_node_left_the_swarm(host, members):
    for name in sorted(set(ALL) - set(members)):
        other = host.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")
        assert other.check_output("docker info --format '{{.Swarm.LocalNodeState}}'") == "inactive"


def running_tasks(host, service):
    out = host.check_output(
        f"docker service ps {service} --filter desired-state=running --format '{{{{.CurrentState}}}}'"
    )
    return [line for line in out.splitlines() if line.startswith("Running")]


@pytest.mark.parametrize("service", ["web", "echo", "kv", "app"])
def test_services_run_with_the_described_replicas(host, service, description, members):
    want = description["services"][service]
    deploy = want.get("deploy") or {}
    spec = json.loads(host.check_output(f"docker service inspect {service}"))[0]["Spec"]
    assert spec["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0] == want["image"]
    if deploy.get("mode") == "global":
        expected = len(
            [n for n in members if (description.get("nodes") or {}).get(n, {}).get("availability") != "drain"]
        )
    else:
        expected = deploy["replicas"]
        assert spec["Mode"]["Replicated"]["Replicas"] == expected
    for _ in range(30):
        if len(running_tasks(host, service)) == expected:
            break
        time.sleep(2)
    assert len(running_tasks(host, service)) == expected


@pytest.mark.parametrize("service", ["web", "echo"])
def test_ports_and_networks_follow_the_description(host, service, description):
    want = description["services"][service]
    live = json.loads(host.check_output(f"docker service inspect {service}"))[0]
    networks = {
        json.loads(host.check_output(f"docker network inspect {n['Target']}"))[0]["Name"]
        for n in live["Spec"]["TaskTemplate"].get("Networks") or []
    }
    assert networks == set(want.get("networks", []))
    ports = {(p["PublishedPort"], p["TargetPort"], p["PublishMode"]) for p in live["Endpoint"].get("Ports") or []}
    if want.get("networks"):
        # The mesh layer publishes the ports of fabric services (test_mesh.py), not Docker.
        assert ports == set()
    else:
        assert ports == {(p["published"], p["target"], p.get("mode", "ingress")) for p in want["ports"]}


def test_host_mode_port_answers_on_each_node_with_a_task(host, description, members):
    drained = {n for n, s in (description.get("nodes") or {}).items() if s.get("availability") == "drain"}
    for name in sorted(set(members) - drained):
        answer = host.run(f"curl -s -m 5 http://{ADDR[name]}:8081/")
        assert answer.rc == 0 and answer.stdout.strip(), name


def test_no_converge_lock_is_left_and_the_swarm_keeps_its_name(host, description):
    labels = json.loads(host.check_output("docker info --format '{{json .Swarm.Cluster.Spec.Labels}}'"))
    assert "io.swarmfabric.lock" not in labels
    assert labels["io.swarmfabric.name"] == description["name"]
    autolock = host.check_output("docker info --format '{{.Swarm.Cluster.Spec.EncryptionConfig.AutoLockManagers}}'")
    assert autolock == str(bool(description.get("autolock", False))).lower()
