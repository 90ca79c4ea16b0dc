"""Kernel lab: traffic_policy local and refusals on the IPVS backend (issue 17).

The lab's description publishes whoami's 8085 with traffic_policy local;
its static backends are node1's and node2's overlay addresses, port 8001,
where this test starts a small server that answers with the peer address it
sees. From another lab host: node1 and node2 serve 8085 with their own
backend, and that backend sees the client's own underlay address (no
masquerade); node3 has no local backend and refuses at once (TCP RST),
and its health endpoint says 503 while node1's and node2's say 200. The
cluster port 8080 keeps answering on every host (test_kernel.py checks it
in full; here once per host after the local-policy traffic).
"""

import json

import pytest

PORT, TARGET, HEALTH = 8085, 8001, 10256
SERVER = r"""
import socket, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", TARGET)); srv.listen(16)
def serve(conn, peer):
    with conn:
        conn.sendall((peer[0] + "\n").encode())
while True:
    conn, peer = srv.accept()
    threading.Thread(target=serve, args=(conn, peer), daemon=True).start()
""".replace("TARGET", str(TARGET))
CLIENT = r"""
import json, socket, sys, time, urllib.error, urllib.request
host, port, health = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out, start = {}, time.monotonic()
try:
    with socket.create_connection((host, port), timeout=5) as s:
        out["peer"] = s.makefile("rb").readline().decode().strip()
    out["result"] = "connected"
except ConnectionRefusedError:
    out["result"] = "refused"
except OSError as exc:
    out["result"] = type(exc).__name__
out["seconds"] = round(time.monotonic() - start, 3)
try:
    out["health"] = urllib.request.urlopen(f"http://{host}:{health}/{port}", timeout=5).status
except urllib.error.HTTPError as exc:
    out["health"] = exc.code
except OSError as exc:
    out["health"] = type(exc).__name__
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def servers(lab):
    hosts = {name: lab[name] for name in ("node1", "node2")}
    # The converge put the IPVS mesh on every host: none there is a failure, not a reason to skip.
    unconverged = [name for name, host in lab.items() if not host.run("ipvsadm -Sn").stdout.strip()]
    assert not unconverged, f"no IPVS service on {unconverged}: the mesh is not converged"
    for host in hosts.values():
        host.run(f"cat >/tmp/sf-kl-who.py <<'PY'\n{SERVER}\nPY")
        res = host.run("nohup python3 /tmp/sf-kl-who.py >/dev/null 2>&1 & echo $! >/tmp/sf-kl-who.pid; sleep 1;"
                       f" ss -Hltn 'sport = :{TARGET}'")
        assert res.stdout.strip(), f"the peer server did not start: {res.stderr}"
    for host in lab.values():
        host.run(f"cat >/tmp/sf-kl-client.py <<'PY'\n{CLIENT}\nPY")
    yield hosts
    for host in hosts.values():
        host.run("kill $(cat /tmp/sf-kl-who.pid); rm -f /tmp/sf-kl-who.pid /tmp/sf-kl-who.py")


def ask(client, address):
    res = client.run(f"python3 /tmp/sf-kl-client.py {address} {PORT} {HEALTH}")
    assert res.rc == 0, res.stderr
    return json.loads(res.stdout)


def test_local_policy_on_ipvs_keeps_the_client_address_and_refuses_without_a_local_backend(lab, underlay, servers):
    answers = {}
    for name in lab:
        client = "node3" if name != "node3" else "node1"
        answers[name] = (client, ask(lab[client], underlay[name]))
    for name in ("node1", "node2"):
        client, answer = answers[name]
        # The backend (this host's own server) sees the client's own underlay address.
        assert answer["result"] == "connected" and answer["peer"] == underlay[client], (name, answer)
        assert answer["health"] == 200, (name, answer)
    _client, answer = answers["node3"]
    assert answer["result"] == "refused" and answer["seconds"] < 1, answer
    assert answer["health"] == 503, answer
    # IPVS has the local service only where a local backend exists; node3 rejects in SF-MESH-IN.
    for name, host in lab.items():
        local = [line for line in host.run("ipvsadm -Sn").stdout.splitlines() if f":{TARGET} " in line]
        assert len(local) == (3 if name != "node3" else 2), (name, local)  # (cluster: 2 real servers) + local: 1
    rules = lab["node3"].run("iptables -S SF-MESH-IN").stdout
    assert "--reject-with tcp-reset" in rules
    counted = lab["node3"].run("iptables -L SF-MESH-IN -v -n -x").stdout
    assert any(line.split()[0] != "0" and "tcp-reset" in line for line in counted.splitlines()[2:]), counted


def test_cluster_policy_still_answers_on_every_host(lab, underlay, servers):
    for name in lab:
        client = lab["node1" if name != "node1" else "node2"]
        page = client.run(f"timeout 10 busybox wget -q -O- http://{underlay[name]}:8080/").stdout.strip()
        assert page in ("node1", "node2"), (name, page)
