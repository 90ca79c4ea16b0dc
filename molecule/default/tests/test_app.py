"""The two-tier application (issue 14): kv and app, from the description's Compose-shaped
services, with a secret, configs, a named volume, a placement constraint, memory limits and
healthchecks. Asserted on the daemon's state and through the mesh on every node.

The secret's value is never printed: tasks' copies are compared by SHA-256 digest."""

import hashlib
import json
import os
import pathlib

import pytest
import yaml

SCENARIO = pathlib.Path(__file__).resolve().parents[1]
PHASE_MARK = "/run/sf-cp-phase"
ADDR = {f"sf-cp-node{i}": f"172.31.78.1{i}" for i in range(1, 6)}
testinfra_hosts = ["ansible://sf-cp-node1"]
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "")


@pytest.fixture(scope="module")
def phase(host):
    """(description, password) of the current phase (vars/changed.yml after side_effect)."""
    source = "vars/changed.yml" if host.file(PHASE_MARK).exists else "group_vars/all/swarm.yml"
    data = yaml.safe_load((SCENARIO / source).read_text())
    return data["swarm"], data["kv_password"]


def inspect(host, service):
    return json.loads(host.check_output(f"docker service inspect {service}"))[0]


def members(description):
    return description["managers"] + description.get("workers", [])


def test_secret_and_configs_are_versioned_objects_and_the_old_ones_are_gone(host, phase):
    _, password = phase
    secrets = host.check_output("docker secret ls --format '{{.Name}}'").split()
    ours = [name for name in secrets if name.startswith("kv_password-")]
    # One version only: the earlier one was removed once no service used it.
    assert len(ours) == 1, secrets
    for service in ("kv", "app"):
        refs = inspect(host, service)["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
        assert [r["SecretName"] for r in refs] == ours, service
        assert refs[0]["File"]["Name"] == "kv_password"
    configs = host.check_output("docker config ls --format '{{.Name}}'").split()
    for name in ("kv_cgi", "app_cgi", "app_conf"):
        assert len([c for c in configs if c.startswith(name + "-")]) == 1, configs
    # The value is in no service's spec or labels (the diff label keeps only object names).
    assert password not in host.check_output("docker service inspect kv app")


def test_kv_runs_where_its_constraint_says_with_its_limits_volume_and_health(host, phase):
    description, _ = phase
    spec = inspect(host, "kv")["Spec"]["TaskTemplate"]
    assert spec["Placement"]["Constraints"] == ["node.labels.disk == ssd"]
    assert spec["Resources"]["Limits"]["MemoryBytes"] == 32 * 2 ** 20
    mounts = spec["ContainerSpec"]["Mounts"]
    assert {"Type": "volume", "Source": "kvdata", "Target": "/data"}.items() <= mounts[0].items()
    ssd = [n for n, s in (description.get("nodes") or {}).items() if (s.get("labels") or {}).get("disk") == "ssd"]
    nodes = host.check_output("docker service ps kv --filter desired-state=running --format '{{.Node}} "
                              "{{.CurrentState}}'").splitlines()
    assert [line.split()[0] for line in nodes] == ssd and nodes[0].split()[1] == "Running", nodes


@pytest.mark.parametrize("service", ["kv", "app"])
def test_every_running_task_is_healthy_with_the_current_secret(host, phase, service):
    description, password = phase
    want = hashlib.sha256(password.encode()).hexdigest()
    seen = 0
    for node in members(description):
        other = host.get_host(f"ansible://{node}?ansible_inventory={INVENTORY}")
        ids = other.check_output(f"docker ps -q --filter label=com.docker.swarm.service.name={service}").split()
        for cid in ids:
            health = other.check_output(f"docker inspect -f '{{{{.State.Health.Status}}}}' {cid}")
            assert health == "healthy", (node, cid)
            digest = other.check_output(f"docker exec {cid} sha256sum /run/secrets/kv_password").split()[0]
            # Digests only: the password itself never shows in a failure.
            assert digest == want, f"{node} {cid}: the task's secret is not this phase's"
            memory = other.check_output(f"docker inspect -f '{{{{.HostConfig.Memory}}}}' {cid}")
            assert memory == str(32 * 2 ** 20), (node, cid)
            seen += 1
    assert seen == (description["services"][service].get("deploy") or {}).get("replicas", 1)


def test_app_answers_through_the_mesh_on_every_node_and_counts_in_the_store(host, phase):
    description, _ = phase
    counts = []
    for node in members(description):
        answer = host.run(f"curl -s -m 10 http://{ADDR[node]}:8090/cgi-bin/visit")
        assert answer.rc == 0 and answer.stdout.startswith("ok "), (node, answer.stdout[-300:])
        counts.append(int(answer.stdout.split("visits=")[1]))
    # One store behind every node: the count goes up by one per visit, whichever node asked.
    assert counts == list(range(counts[0], counts[0] + len(counts))), counts


def test_the_update_order_is_start_first(host):
    update = inspect(host, "app")["Spec"]["UpdateConfig"]
    assert update["Order"] == "start-first" and update["Parallelism"] == 1
