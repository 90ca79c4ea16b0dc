"""traffic_policy, refusals and idle connections on the nftables mesh, on
the real kernel (issue 17).

A node namespace applies roles/mesh; a client namespace (192.168.77.2)
connects to its published ports. A "task" namespace in the node's own range
(10.20.17.5, node1's slot 17) runs an echo server that first sends the peer
address it sees, so the test reads what source address the backend got. A
second server (10.20.50.5) is outside the node's range: a remote task.
"""

import json
import pathlib
import subprocess
import sys
import time

import pytest
from sf_mesh_helpers import ROOT, fabric_devices, health_vars, new_ns, play, sh, teardown, veth

sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))
from swarmfabric.plan import build_plan

CLIENT, NODE = "192.168.77.2", "192.168.77.1"
LOCAL_TASK, REMOTE_TASK = "10.20.17.5", "10.20.50.5"
# Peer address first, then every line back; SO_KEEPALIVE answers need nothing from us.
ECHO = r"""
import socket, sys, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 8000)); srv.listen(16)
def serve(conn, peer):
    with conn:
        conn.sendall(f"{peer[0]}\n".encode())
        for line in conn.makefile("rb"):
            conn.sendall(line)
while True:
    conn, peer = srv.accept()
    threading.Thread(target=serve, args=(conn, peer), daemon=True).start()
"""
SWARM = {
    "name": "t", "managers": ["node1"], "nodes": {"node1": {"slot": 17}},
    "overlays": {"appnet": {"vni": 300, "subnet": "10.20.0.0/16", "encrypted": False}},
    "services": {
        # who's task is local: 8090 keeps the client's address, 8091 masquerades.
        "who": {"image": "swarmfabric/task:1", "networks": ["appnet"],
                "ports": [{"published": 8090, "target": 8000}, {"published": 8091, "target": 8000}],
                "x-swarmfabric": {"vip": "10.20.255.20", "traffic_policy": {"8090": "local"}}},
        # away's only task is on another node: this node refuses its local-policy port.
        "away": {"image": "swarmfabric/task:1", "networks": ["appnet"],
                 "ports": [{"published": 8093, "target": 8000}, {"published": 8094, "target": 8000}],
                 "x-swarmfabric": {"vip": "10.20.255.21", "traffic_policy": {"8093": "local"}}},
        # gone is scaled to 0: refused on every port, TCP and UDP.
        "gone": {"image": "swarmfabric/task:1", "deploy": {"replicas": 0}, "networks": ["appnet"],
                 "ports": [{"published": 8092, "target": 80}, {"published": 5355, "target": 53, "protocol": "udp"}],
                 "x-swarmfabric": {"vip": "10.20.255.22"}},
    },
    "mesh": {"backend": "nftables", "scheduler": "rr"},
}
BACKENDS = {"who": [LOCAL_TASK], "away": [REMOTE_TASK], "gone": []}


def plan_of(swarm):
    return build_plan(swarm, {"node1": {"swarm_advertise_addr": NODE}})



@pytest.fixture(scope="module")
def lab():
    names = {tag: new_ns(tag) for tag in ("tpnode", "tpcli", "tplocal", "tpremote")}
    node, procs = names["tpnode"], []
    try:
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=node)
        sh("iptables", "-P", "FORWARD", "DROP", ns=node)
        veth(node, "c", f"{NODE}/24", names["tpcli"], f"{CLIENT}/24")
        sh("ip", "route", "add", "10.20.0.0/16", "via", NODE, ns=names["tpcli"])
        for tag, addr in (("tplocal", LOCAL_TASK), ("tpremote", REMOTE_TASK)):
            gateway = addr.rsplit(".", 1)[0] + ".1"
            veth(node, tag[2], f"{gateway}/24", names[tag], f"{addr}/24")
            sh("ip", "route", "add", "default", "via", gateway, ns=names[tag])
            procs.append(subprocess.Popen(["ip", "netns", "exec", names[tag], sys.executable, "-c", ECHO]))
        fabric_devices(node)
        stats, tasks = play(node, plan_of(SWARM), BACKENDS)
        assert stats["failures"] == 0, tasks
        yield names
    finally:
        teardown(names, procs)


CLIENT_PY = r"""
import json, socket, sys, time
op, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = {}
start = time.monotonic()
try:
    if op == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5); s.connect((host, port))
        s.send(b"ping"); s.recv(100); out["result"] = "answered"
    else:
        s = socket.create_connection((host, port), timeout=5)
        f = s.makefile("rb")
        out["peer"] = f.readline().decode().strip()
        if op == "idle":
            keep, idle = sys.argv[4] == "keepalive", float(sys.argv[5])
            if keep:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
            time.sleep(idle)
            s.sendall(b"after idle\n")
            out["echo"] = f.readline().decode().strip()
        out["result"] = "connected"
except ConnectionRefusedError:
    out["result"] = "refused"
except ConnectionResetError:
    out["result"] = "reset"
except (socket.timeout, TimeoutError):
    out["result"] = "timeout"
out["seconds"] = round(time.monotonic() - start, 3)
print(json.dumps(out))
"""


def client(lab, *args):
    proc = sh(sys.executable, "-c", CLIENT_PY, *map(str, args), ns=lab["tpcli"])
    return json.loads(proc.stdout)


def health(lab, path):
    proc = sh("curl", "-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}", f"http://{NODE}:10256/{path}",
              ns=lab["tpcli"], check=False)
    return proc.stdout


def test_local_policy_keeps_the_client_address_cluster_masquerades(lab):
    local = client(lab, "connect", NODE, 8090)
    assert local == {"peer": CLIENT, "result": "connected", "seconds": local["seconds"]}, local
    cluster = client(lab, "connect", NODE, 8091)
    # Masqueraded to the node's address on the task's side.
    assert cluster["result"] == "connected" and cluster["peer"] == "10.20.17.1", cluster
    # The kernel's own view: the local connection's reply goes to the client itself (no SNAT).
    conns = sh("cat", "/proc/net/nf_conntrack", ns=lab["tpnode"]).stdout
    assert f"src={CLIENT} dst={NODE} sport=" in conns and f"src={LOCAL_TASK} dst={CLIENT} sport=8000" in conns


def test_a_port_without_a_backend_refuses_at_once(lab):
    # A local-policy port whose only task is elsewhere, and a service scaled to 0: TCP RST, not a timeout.
    for port in (8093, 8092):
        answer = client(lab, "connect", NODE, port)
        assert answer["result"] == "refused" and answer["seconds"] < 1, (port, answer)
    # Its cluster-policy port still reaches the remote task.
    assert client(lab, "connect", NODE, 8094)["peer"] == "10.20.50.1"
    # UDP: ICMP port unreachable, seen by a connected UDP socket as ECONNREFUSED.
    answer = client(lab, "udp", NODE, 5355)
    assert answer["result"] == "refused" and answer["seconds"] < 1, answer
    # The VIP of the scaled-to-0 service refuses too (from the node itself, output hook).
    proc = sh("curl", "-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code} %{exitcode}", "http://10.20.255.22:80/",
              ns=lab["tpnode"], check=False)
    assert proc.stdout == "000 7", proc.stdout  # 7: could not connect (refused), 28 would be a timeout
    # The refusals were counted by our input chain's reject rules, nothing dropped.
    listing = sh("nft", "list", "chain", "ip", "swarmfabric_mesh", "input", ns=lab["tpnode"]).stdout
    assert "reject with tcp reset" in listing and "drop" not in sh(
        "nft", "list", "table", "ip", "swarmfabric_mesh", ns=lab["tpnode"]).stdout


def test_health_endpoint_says_which_ports_this_node_serves(lab):
    assert health(lab, "8090") == "200"      # local policy, a local task
    assert health(lab, "8093") == "503"      # local policy, no local task
    assert health(lab, "8094") == "200"      # cluster policy, a backend elsewhere
    assert health(lab, "8092") == "503"      # scaled to 0
    assert health(lab, "5355/udp") == "503"
    assert health(lab, "9999") == "404"
    assert health(lab, "healthz") == "200"
    # The responder is supervised: killed, it answers again within seconds.
    base = pathlib.Path(health_vars(lab["tpnode"])["mesh_health_dir"])
    supervisor = int((base / "mesh-health.pid").read_text().split()[0])
    children = pathlib.Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    assert len(children) == 1
    sh("kill", "-9", children[0])
    deadline = time.monotonic() + 10
    while health(lab, "8090") != "200":
        assert time.monotonic() < deadline, "the supervisor did not restart the responder"
        time.sleep(0.2)
    # Scaled to 0, the next converge flips it to 503 (and the port refuses).
    stats, _ = play(lab["tpnode"], plan_of(SWARM), {**BACKENDS, "who": []})
    assert stats["failures"] == 0
    assert health(lab, "8090") == "503"
    assert client(lab, "connect", NODE, 8090)["result"] == "refused"
    stats, _ = play(lab["tpnode"], plan_of(SWARM), BACKENDS)
    assert health(lab, "8090") == "200"


@pytest.mark.parametrize("keepalive", [True, False], ids=["keepalive", "no-keepalive"])
def test_an_idle_connection_outlives_the_conntrack_timeout_with_keepalives(lab, keepalive):
    # A mesh-only conntrack timeout of 3 s; loose pickup off, so that a
    # forgotten connection cannot be picked up again mid-stream by chance.
    swarm = {**SWARM, "mesh": {**SWARM["mesh"], "conntrack_timeouts": {"tcp_established": 3}}}
    try:
        stats, tasks = play(lab["tpnode"], plan_of(swarm), BACKENDS)
        assert stats["failures"] == 0, tasks
        sh("sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0", ns=lab["tpnode"])
        listing = sh("nft", "list", "table", "ip", "swarmfabric_mesh", ns=lab["tpnode"]).stdout
        assert "policy = { established : 3 }" in listing and 'ct timeout set "mesh-tcp"' in listing
        answer = client(lab, "idle", NODE, 8091, "keepalive" if keepalive else "none", 8)
        if keepalive:
            assert answer["result"] == "connected" and answer["echo"] == "after idle", answer
        else:
            # The control: without keepalives the mesh forgot the connection (3 s < 8 s idle).
            assert answer.get("echo") != "after idle", answer
    finally:
        sh("sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=1", ns=lab["tpnode"])
        play(lab["tpnode"], plan_of(SWARM), BACKENDS)
