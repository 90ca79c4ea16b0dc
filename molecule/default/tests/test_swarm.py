"""The swarm's real daemon state matches the description of the current phase."""

import json
import os
import pathlib
import time

import pytest
import yaml

SCENARIO = pathlib.Path(__file__).resolve().parents[1]
PHASE_FILE = pathlib.Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "sf-cp-phase"
CHANGED = PHASE_FILE.exists() and PHASE_FILE.read_text().strip() == "changed"
DESCRIPTION = yaml.safe_load((SCENARIO / ("vars/changed.yml" if CHANGED else "group_vars/all/swarm.yml")).read_text())[
    "swarm"
]
MEMBERS = DESCRIPTION["managers"] + DESCRIPTION.get("workers", [])
ALL = [f"sf-cp-node{i}" for i in range(1, 6)]
ADDR = {name: f"172.31.78.1{name[-1]}" for name in ALL}

testinfra_hosts = ["ansible://sf-cp-node1"]
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "")


def nodes(host):
    ids = host.check_output("docker node ls -q").split()
    return {
        n["Description"]["Hostname"]: n for n in json.loads(host.check_output("docker node inspect " + " ".join(ids)))
    }


def test_every_described_node_has_its_role_availability_and_labels(host):
    live = nodes(host)
    assert sorted(live) == sorted(MEMBERS)
    for name in MEMBERS:
        spec = live[name]["Spec"]
        want = (DESCRIPTION.get("nodes") or {}).get(name) or {}
        assert spec["Role"] == ("manager" if name in DESCRIPTION["managers"] else "worker"), name
        assert spec["Availability"] == want.get("availability", "active"), name
        assert (spec.get("Labels") or {}) == want.get("labels", {}), name
        assert live[name]["Status"]["State"] == "ready", name
        if name in DESCRIPTION["managers"]:
            assert live[name]["ManagerStatus"]["Reachability"] == "reachable", name


def test_retired_node_left_the_swarm(host):
    for name in sorted(set(ALL) - set(MEMBERS)):
        other = host.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")
        assert other.check_output("docker info --format '{{.Swarm.LocalNodeState}}'") == "inactive"


def running_tasks(host, service):
    out = host.check_output(
        f"docker service ps {service} --filter desired-state=running --format '{{{{.CurrentState}}}}'"
    )
    return [line for line in out.splitlines() if line.startswith("Running")]


@pytest.mark.parametrize("service", ["web", "echo"])
def test_services_run_with_the_described_replicas(host, service):
    want = DESCRIPTION["services"][service]
    spec = json.loads(host.check_output(f"docker service inspect {service}"))[0]["Spec"]
    assert spec["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0] == want["image"]
    if want.get("mode") == "global":
        expected = len(
            [n for n in MEMBERS if (DESCRIPTION.get("nodes") or {}).get(n, {}).get("availability") != "drain"]
        )
    else:
        expected = want["replicas"]
        assert spec["Mode"]["Replicated"]["Replicas"] == expected
    for _ in range(30):
        if len(running_tasks(host, service)) == expected:
            break
        time.sleep(2)
    assert len(running_tasks(host, service)) == expected


def test_ingress_port_is_published_on_the_routing_mesh(host):
    endpoint = json.loads(host.check_output("docker service inspect web"))[0]["Endpoint"]
    assert {(p["PublishedPort"], p["PublishMode"]) for p in endpoint["Ports"]} == {(8080, "ingress")}


@pytest.mark.parametrize("name", ALL)
def test_ingress_port_answers_from_every_node(host, name):
    if not host.file("/proc/net/ip_vs").exists:
        pytest.skip(
            "Docker's own ingress mesh needs IPVS, absent in this kernel; the mesh layer serves it (test_mesh.py)"
        )
    if name not in MEMBERS:
        pytest.skip(f"{name} is not in the swarm")
    assert host.check_output(f"curl -s -m 5 http://{ADDR[name]}:8080/")


def test_host_mode_port_answers_on_each_node_with_a_task(host):
    drained = {n for n, s in (DESCRIPTION.get("nodes") or {}).items() if s.get("availability") == "drain"}
    for name in sorted(set(MEMBERS) - drained):
        answer = host.run(f"curl -s -m 5 http://{ADDR[name]}:8081/")
        assert answer.rc == 0 and answer.stdout.strip(), name
