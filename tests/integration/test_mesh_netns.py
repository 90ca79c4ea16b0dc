"""The nftables mesh on the real kernel: a node namespace applies roles/mesh,
a client namespace curls its published port and a VIP, and two server
namespaces answer as backends."""

import json
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest
from sf_mesh_helpers import (
    HEALTH_STATE_TASK,
    ROOT,
    SWARM,
    changed,
    fabric_devices,
    health_files_changed,
    health_vars,
    new_ns,
    ruleset,
    sh,
    teardown,
    veth,
)

sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))
from swarmfabric.plan import build_plan

SERVERS = {"srv1": "10.20.50", "srv2": "10.20.60"}
PLAYBOOK = """- hosts: node1
  gather_facts: false
  roles: [mesh]
"""


@pytest.fixture(scope="module")
def lab():
    names = {tag: new_ns(tag) for tag in ("node", "cli", *SERVERS)}
    node = names["node"]
    procs = []
    try:
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=node)
        # What Docker leaves on a real host when it turns forwarding on itself.
        sh("iptables", "-P", "FORWARD", "DROP", ns=node)
        veth(node, "c", "192.168.77.1/24", names["cli"], "192.168.77.2/24")
        sh("ip", "route", "add", "10.20.0.0/16", "via", "192.168.77.1", ns=names["cli"])
        for tag, net in SERVERS.items():
            veth(node, tag[-1], f"{net}.1/24", names[tag], f"{net}.5/24")
            sh("ip", "route", "add", "default", "via", f"{net}.1", ns=names[tag])
            www = pathlib.Path(tempfile.mkdtemp(prefix="sf-mesh-www-"))
            (www / "index.html").write_text(tag + "\n")
            procs.append(subprocess.Popen(["ip", "netns", "exec", names[tag], sys.executable, "-m", "http.server",
                                           "80", "--directory", str(www)], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        fabric_devices(node)
        yield names
    finally:
        teardown(names, procs)



def converge(lab, backends, check=False, playbook=PLAYBOOK):
    plan = build_plan(SWARM, {"node1": {"swarm_advertise_addr": "192.168.77.1"}})
    with tempfile.TemporaryDirectory(prefix="sf-mesh-play-") as tmp:
        (pathlib.Path(tmp) / "play.yml").write_text(playbook)
        (pathlib.Path(tmp) / "vars.json").write_text(json.dumps(
            {"swarmfabric_plan": plan, "swarmfabric_mesh_backends": backends, **health_vars(lab["node"])}))
        env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
               "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3"}
        argv = ["ip", "netns", "exec", lab["node"], str(pathlib.Path(sys.executable).parent / "ansible-playbook"),
                "-i", "node1,", "-c", "local", "-e", f"@{tmp}/vars.json", f"{tmp}/play.yml"] + ["--check"] * check
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    out = json.loads(proc.stdout)
    tasks = {t["task"]["name"]: t["hosts"]["node1"] for t in out["plays"][0]["tasks"]}
    return out["stats"]["node1"], tasks


def curl(lab, url, ns="cli", times=6):
    seen = []
    for _ in range(times):
        proc = sh("curl", "-s", "-m", "3", "-o", "/dev/stdout", "-w", "%{http_code}", url, ns=lab[ns], check=False)
        seen.append(proc.stdout.strip())
    return seen


def test_mesh_answers_and_converges(lab):
    web = {"web": ["10.20.50.5", "10.20.60.5"]}
    stats, tasks = converge(lab, web)
    assert stats["failures"] == 0 and "Apply the mesh ruleset" in changed(tasks), tasks
    # Published port through the node, from a client namespace: both backends answer, HTTP 200.
    answers = curl(lab, "http://192.168.77.1:8080/")
    assert all(a.endswith("200") for a in answers), answers
    assert {a.split()[0] for a in answers} == {"srv1", "srv2"}
    # The VIP, and a port published from the node itself (output hook).
    assert {a.split()[0] for a in curl(lab, "http://10.20.255.10:80/")} == {"srv1", "srv2"}
    assert {a.split()[0] for a in curl(lab, "http://192.168.77.1:8081/", ns="node")} == {"srv1"}
    # VIPs sit on the shim as /32s; the ARP guard is bound to the VXLAN device.
    addrs = sh("ip", "-br", "addr", "show", "dev", "sf-appnet-h", ns=lab["node"]).stdout
    assert "10.20.255.10/32" in addrs and "10.20.255.11/32" in addrs
    guard = sh("nft", "list", "table", "netdev", "swarmfabric_mesh_arp", ns=lab["node"]).stdout
    assert 'device "sf-appnet" priority filter' in guard, guard
    assert all(a in guard for a in ("10.20.0.1", "10.20.255.10", "10.20.255.11")), guard

    stats, _ = converge(lab, web)
    assert stats["changed"] == 0

    # The FORWARD policy is still DROP: our own chain lets the mesh through.
    # Without its jump, forwarded requests die; a converge puts it back.
    assert sh("iptables", "-S", "FORWARD", ns=lab["node"]).stdout.splitlines()[:2] == [
        "-P FORWARD DROP", "-A FORWARD -j SF-MESH-FWD"]
    sh("iptables", "-D", "FORWARD", "-j", "SF-MESH-FWD", ns=lab["node"])
    assert curl(lab, "http://192.168.77.1:8080/", times=1) == ["000"]
    stats, tasks = converge(lab, web)
    result = next(r for name, r in tasks.items() if name.endswith("Apply the mesh ruleset"))
    assert stats["changed"] == 1 and result["actions"] == ["replaced iptables chains SF-MESH-FWD, SF-MESH-IN"], result
    assert all(a.endswith("200") for a in curl(lab, "http://192.168.77.1:8080/", times=2))

    # One backend goes away: a small delta, then only srv1 answers, then a no-op.
    before = ruleset(lab["node"])
    stats, tasks = converge(lab, {"web": ["10.20.50.5"]}, check=True)
    assert changed(tasks) == ["Apply the mesh ruleset", HEALTH_STATE_TASK] and ruleset(lab["node"]) == before
    assert [p.rsplit("/", 1)[-1] for p in health_files_changed(tasks)] == ["mesh-health.json"], tasks
    stats, tasks = converge(lab, {"web": ["10.20.50.5"]})
    result = next(r for name, r in tasks.items() if name.endswith("Apply the mesh ruleset"))
    assert result["actions"] == ["replaced the 3 rules of chain svc-web-tcp-80"]
    assert {a.split()[0] for a in curl(lab, "http://192.168.77.1:8080/")} == {"srv1"}
    assert converge(lab, {"web": ["10.20.50.5"]})[0]["changed"] == 0


def test_bad_input_fails_before_the_kernel(lab):
    converge(lab, {"web": ["10.20.50.5"]})
    before = ruleset(lab["node"])
    stats, _ = converge(lab, {"web": ["10.20.50.999"]})
    assert stats["failures"] == 1
    assert ruleset(lab["node"]) == before


TEARDOWN = """- hosts: node1
  gather_facts: false
  tasks:
    - name: Teardown
      ansible.builtin.include_role: {name: mesh, tasks_from: teardown}
"""
LEFTOVERS = ROOT / "playbooks" / "files" / "swarmfabric-leftovers.sh"


def leftovers(lab):
    return sh("sh", str(LEFTOVERS), "4789", "192.168.77.1", ns=lab["node"]).stdout.splitlines()


def supervisor(lab):
    pidfile = pathlib.Path(health_vars(lab["node"])["mesh_health_dir"]) / "mesh-health.pid"
    return int(pidfile.read_text().split()[0])


# Last in this module: it removes the lab's mesh.
def test_the_teardown_removes_the_mesh_and_its_responder_and_lists_nothing_of_ours(lab):
    converge(lab, {"web": ["10.20.50.5"]})
    before = leftovers(lab)
    assert {"nft table ip swarmfabric_mesh", "nft table netdev swarmfabric_mesh_arp",
            "iptables chain filter SF-MESH-FWD"} <= set(before), before
    pid = supervisor(lab)
    assert pathlib.Path(f"/proc/{pid}").exists()

    stats, tasks = converge(lab, {}, check=True, playbook=TEARDOWN)
    assert stats["failures"] == 0 and leftovers(lab) == before, tasks

    stats, tasks = converge(lab, {}, playbook=TEARDOWN)
    assert stats["failures"] == 0, tasks
    # What is left is the fabric's (its own teardown removes it).
    assert leftovers(lab) == ["link sf-appnet", "link sf-appnet-h"]
    assert "/32" not in sh("ip", "-br", "addr", "show", "dev", "sf-appnet-h", ns=lab["node"]).stdout
    assert not pathlib.Path(f"/proc/{pid}").exists()
    assert not pathlib.Path(health_vars(lab["node"])["mesh_health_dir"]).exists()
    assert curl(lab, "http://192.168.77.1:8080/", times=1) == ["000"]
    assert converge(lab, {}, playbook=TEARDOWN)[0]["changed"] == 0
