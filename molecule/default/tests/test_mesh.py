"""The routing mesh in the DinD scenario (nftables backend): published port
on every node, VIPs and name resolution from tasks on every node."""

import json
import os
import urllib.request

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("swarm_nodes")

SERVICE, PUBLISHED, TARGET = "web", 8080, 80


def node_address(host):
    links = json.loads(host.check_output("ip -4 -j addr show dev eth0"))
    return links[0]["addr_info"][0]["local"]


def web_tasks(host):
    out = host.check_output(f"docker ps -q --filter label=com.docker.swarm.service.name={SERVICE}")
    return out.split()


def bodies(host, cmd, times=12):
    return [host.run(cmd).stdout.strip() for _ in range(times)]


def in_swarm(host):
    if host.check_output("docker info --format '{{.Swarm.LocalNodeState}}'") != "active":
        pytest.skip("not in the swarm (retired)")


def test_published_port_answers_on_every_node(host):
    # Nodes with no task (the drained one) answer too; repeated requests reach >1 backend.
    in_swarm(host)
    url = f"http://{node_address(host)}:{PUBLISHED}/"
    codes = {host.run(f"curl -s -o /dev/null -m 5 -w '%{{http_code}}' {url}").stdout for _ in range(3)}
    assert codes == {"200"}
    seen = set(bodies(host, f"curl -s -m 5 {url}"))
    assert len(seen) > 1, seen


def test_published_port_answers_a_client_outside_through_forward_drop(host):
    # From this machine (outside the node), the request is DNATed and then
    # forwarded out of the shim, through the FORWARD policy of DROP that the
    # lab image sets like Docker does on a real host.
    in_swarm(host)
    assert host.check_output("iptables -S FORWARD").splitlines()[0] == "-P FORWARD DROP"
    url = f"http://{node_address(host)}:{PUBLISHED}/"
    seen = set()
    for _ in range(6):
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert answer.status == 200
            seen.add(answer.read().decode().strip())
    assert len(seen) > 1, seen


def test_mesh_tables_and_chains_are_those_of_the_nftables_backend(host):
    in_swarm(host)
    tables = host.check_output("nft list tables").splitlines()
    assert "table ip swarmfabric_mesh" in tables
    assert "table netdev swarmfabric_mesh_arp" in tables
    # Of our iptables chains, the nftables backend keeps only the filter ones
    # (no IPVS marking or masquerade chains), jumped to from FORWARD and INPUT once.
    save = host.check_output("iptables-save").splitlines()
    assert {line.split()[0][1:] for line in save if line.startswith(":SF-")} == {"SF-MESH-FWD", "SF-MESH-IN"}
    assert host.check_output("iptables -S FORWARD").splitlines().count("-A FORWARD -j SF-MESH-FWD") == 1
    assert host.check_output("iptables -S INPUT").splitlines().count("-A INPUT -j SF-MESH-IN") == 1


def test_service_name_resolves_to_vip_and_answers_from_every_task_node(host):
    in_swarm(host)
    tasks = web_tasks(host)
    if not tasks:
        pytest.skip("no task of the service on this node")
    task = tasks[0]
    # The name resolves through the hosts entry that swarm_service adds (name:VIP).
    vip = host.check_output(f"docker exec {task} grep -w {SERVICE} /etc/hosts").split()[0]
    vips = host.check_output("nft list map ip swarmfabric_mesh vips")
    assert vip in vips
    # busybox 1.35's `wget -T` segfaults: bound the request with timeout(1) instead.
    seen = set(bodies(host, f"docker exec {task} timeout 5 wget -qO- http://{SERVICE}:{TARGET}/"))
    assert "" not in seen and len(seen) > 1, seen
    own = host.check_output(f"docker exec {task} hostname")
    # Through the VIP, some answers come from tasks on other nodes.
    assert seen - {own}, seen
