"""The VXLAN fabric in the DinD scenario (unencrypted overlay appnet).

The expected members come from the live swarm (``docker node ls`` on the
first manager), so the same tests check both descriptions: after the second
converge the retired node must be gone from every peer's FDB.
"""

import ipaddress
import json
import os

import pytest
import testinfra
import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("swarm_nodes")

OVERLAY, DEVICE, SHIM, VNI, PORT = "appnet", "sf-appnet", "sf-appnet-h", 300, 4789
FIRST_MANAGER = os.environ.get("SF_FIRST_MANAGER", "sf-cp-node1")
SERVICE = "web"  # a replicated service on the overlay (molecule/default group_vars)


def other(name):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")


def jrun(host, cmd):
    return json.loads(host.check_output(cmd))


@pytest.fixture(scope="module")
def members():
    """hostname -> underlay address of every ready node in the swarm right now."""
    manager = other(FIRST_MANAGER)
    ids = manager.check_output("docker node ls -q").split()
    nodes = jrun(manager, "docker node inspect " + " ".join(ids))
    # A node that left but was not removed yet shows up as "down".
    return {n["Description"]["Hostname"]: n["Status"]["Addr"] for n in nodes if n["Status"]["State"] == "ready"}


@pytest.fixture(scope="module")
def probes(members):
    """The tasks of the service on the overlay: node name -> (container id, overlay IP).

    Swarm tasks, not extra containers: attaching a plain container to a
    swarm-scope network asks the managers for an attachment, which times out
    on a loaded machine."""
    found = {}
    for name in sorted(members):
        node = other(name)
        ids = node.check_output(f"docker ps -q --filter label=com.docker.swarm.service.name={SERVICE}").split()
        if ids:
            ip = node.check_output(
                f"docker inspect -f '{{{{(index .NetworkSettings.Networks \"{OVERLAY}\").IPAddress}}}}' {ids[0]}")
            found[name] = (ids[0], ip)
    assert len(found) >= 2, f"the test needs tasks of {SERVICE} on two nodes at least: {found}"
    return found


def this_node(host, members):
    name = host.check_output("hostname")
    if name not in members:
        pytest.skip(f"{name} is not in the swarm (retired)")
    return name


def test_vxlan_device_matches_the_plan(host, members):
    name = this_node(host, members)
    link = jrun(host, f"ip -j -d link show dev {DEVICE}")[0]
    info = link["linkinfo"]["info_data"]
    assert link["linkinfo"]["info_kind"] == "vxlan"
    assert (info["id"], info["port"], info["local"], info["learning"]) == (VNI, PORT, members[name], False)
    assert "group" not in info
    underlay_mtu = jrun(host, "ip -j link show dev eth0")[0]["mtu"]
    assert link["mtu"] == underlay_mtu - 50
    assert "UP" in link["flags"]


def test_fdb_has_exactly_the_other_members(host, members):
    name = this_node(host, members)
    fdb = jrun(host, f"bridge -j fdb show dev {DEVICE}")
    peers = sorted(e["dst"] for e in fdb if e["mac"] == "00:00:00:00:00:00")
    assert peers == sorted(addr for node, addr in members.items() if node != name)


def test_shim_holds_host_address_and_gateway(host, members):
    this_node(host, members)
    shim = jrun(host, f"ip -j -d link show dev {SHIM}")[0]
    assert shim["linkinfo"]["info_kind"] == "macvlan" and shim["link"] == DEVICE
    # The fabric's addresses carry the overlay's prefix; the mesh's VIPs are /32s.
    addrs = [a for a in jrun(host, f"ip -j addr show dev {SHIM}")[0]["addr_info"]
             if a["family"] == "inet" and a["prefixlen"] == 16]
    assert len(addrs) == 2
    assert addrs[0].get("secondary") is None and addrs[1]["local"] == "10.20.0.1"


def test_docker_networks_built_from_the_plan(host, members):
    this_node(host, members)
    config = jrun(host, f"docker network inspect {OVERLAY}-config")[0]
    assert config["ConfigOnly"] is True
    assert config["Options"] == {"parent": DEVICE, "macvlan_mode": "bridge"}
    ipam = config["IPAM"]["Config"][0]
    assert ipam["Subnet"] == "10.20.0.0/16" and ipam["Gateway"] == "10.20.0.1"
    # The host address is the shim's one /16 that is not the gateway (the
    # mesh's VIPs are /32s, and after an address move they may come first).
    shim_addr, = (a["local"] for a in jrun(host, f"ip -j addr show dev {SHIM}")[0]["addr_info"]
                  if a["family"] == "inet" and a["prefixlen"] == 16 and a["local"] != "10.20.0.1")
    assert ipam["AuxiliaryAddresses"] == {"host": shim_addr}
    # The task range is this node's slot (the default /24), and the shim holds
    # its first address.
    task_range = ipaddress.ip_network(ipam["IPRange"])
    assert task_range.prefixlen == 24 and shim_addr == str(task_range.network_address + 1)


def test_swarm_network_is_macvlan_from_config(host):
    if host.check_output("hostname") != FIRST_MANAGER:
        pytest.skip("checked on the first manager")
    net = jrun(host, f"docker network inspect {OVERLAY}")[0]
    assert (net["Driver"], net["Scope"], net["Attachable"]) == ("macvlan", "swarm", True)
    assert net["ConfigFrom"]["Network"] == f"{OVERLAY}-config"


def test_no_fabric_drop_table_for_a_plain_overlay(host, members):
    this_node(host, members)
    assert "swarmfabric_fabric" not in host.check_output("nft list tables")


def test_task_reaches_tasks_on_every_other_node(host, members, probes):
    name = this_node(host, members)
    if name not in probes:
        pytest.skip(f"no task of {SERVICE} on {name}")
    task = probes[name][0]
    mtu = host.check_output(f"docker exec {task} cat /sys/class/net/eth0/mtu")
    assert int(mtu) == jrun(host, f"ip -j link show dev {DEVICE}")[0]["mtu"]
    for peer, (_, addr) in probes.items():
        if peer == name:
            continue
        res = host.run(f"docker exec {task} ping -c 2 -W 3 {addr}")
        assert res.rc == 0, f"{name} -> {peer} ({addr}): {res.stdout}{res.stderr}"


def test_host_reaches_local_and_remote_tasks_through_its_shim(host, members, probes):
    name = this_node(host, members)
    for peer in sorted(probes):
        res = host.run(f"busybox ping -c 2 -W 3 {probes[peer][1]}")
        assert res.rc == 0, f"host {name} -> task on {peer}: {res.stdout}{res.stderr}"
