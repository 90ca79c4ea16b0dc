#!/usr/bin/python3
# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mesh's health endpoint on one node, for external load balancers
(docs/mesh.md, "Health endpoint"). Standard library only.

    GET /<published port>[/tcp|/udp]  200 when this node forwards the port to
                                      at least one backend (for a
                                      traffic_policy local or mode host port:
                                      one of its own tasks), 503 when it
                                      refuses it, 404 for a port the mesh
                                      does not publish.
    GET /healthz                      200 while the state file is readable.

The answer is JSON ({"port", "protocol", "service", "traffic_policy",
"localEndpoints"|"endpoints"}). The state file is written atomically by
roles/mesh after each apply; it is re-read when it changes.

    mesh_health.py serve --state FILE [--port N] [--address A]
    mesh_health.py supervise --state FILE --pidfile FILE [--port N] ...
    mesh_health.py ensure --state FILE --pidfile FILE [--port N] [--check]

`supervise` is the supervisor for hosts without systemd: it runs `serve` as
its child and restarts it (at most once a second) whenever it exits, until
it is sent SIGTERM. `ensure` (what roles/mesh runs there) starts a
supervisor unless one with the same arguments and the same program runs,
and prints what it did (running / started / restarted).
"""

import argparse
import hashlib
import http.server
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import time

PROGRAM = os.path.abspath(__file__)


class State:
    """The state file, re-read when its mtime or size changes."""

    def __init__(self, path):
        self.path = path
        self.key = None
        self.data = None

    def get(self):
        try:
            st = os.stat(self.path)
        except OSError:
            self.key, self.data = None, None
            return None
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if key != self.key:
            try:
                with open(self.path, encoding="utf-8") as handle:
                    self.data = json.load(handle)
                self.key = key
            except (OSError, ValueError):
                self.key, self.data = None, None
        return self.data


def answer(state, path):
    """(status, body) for one request path."""
    data = state.get()
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if parts == ["healthz"]:
        if data is None:
            return 503, {"error": f"no readable state file {state.path}"}
        return 200, {"node": data.get("node"), "ports": len(data.get("ports", {}))}
    if not parts or len(parts) > 2 or not parts[0].isdigit() or (len(parts) == 2 and parts[1] not in ("tcp", "udp")):
        return 404, {"error": "GET /<published port> or /<published port>/<tcp|udp>"}
    port, protocol = int(parts[0]), parts[1] if len(parts) == 2 else "tcp"
    if data is None:
        # No state (not converged since boot): this node serves nothing yet.
        return 503, {"port": port, "protocol": protocol, "error": "the mesh is not converged on this node"}
    entry = data.get("ports", {}).get(f"{protocol}/{port}")
    if entry is None:
        return 404, {"port": port, "protocol": protocol, "error": "not a port the mesh publishes"}
    count = int(entry.get("endpoints", 0))
    key = "endpoints" if entry.get("traffic_policy") == "cluster" and entry.get("mode") == "ingress" \
        else "localEndpoints"
    body = {"port": port, "protocol": protocol, "service": entry.get("service"), "node": data.get("node"),
            "traffic_policy": entry.get("traffic_policy"), "mode": entry.get("mode"), key: count}
    return (200 if count > 0 else 503), body


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "swarmfabric-mesh-health/1"

    def _reply(self, head_only):
        status, body = answer(self.server.state, self.path)
        data = (json.dumps(body, sort_keys=True) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head_only:
            self.wfile.write(data)

    def do_GET(self):
        self._reply(False)

    def do_HEAD(self):
        self._reply(True)

    def log_message(self, *args):
        pass  # load balancers poll every few seconds: no log line per probe


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(args):
    server = Server((args.address, args.port), Handler)
    server.state = State(args.state)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


def child_argv(args):
    return [sys.executable, PROGRAM, "serve", "--state", args.state, "--port", str(args.port),
            "--address", args.address]


def fingerprint(args):
    """Identifies a supervisor: its arguments and the program's content."""
    with open(PROGRAM, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()[:16]
    return f"{digest} {args.address}:{args.port} {args.state}"


def supervise(args):
    stopping = []
    child = None

    def stop(*_):
        stopping.append(True)
        if child and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        started = time.monotonic()
        child = subprocess.Popen(child_argv(args))
        child.wait()
        if not stopping:
            print(f"mesh_health: responder exited with {child.returncode}; restarting", file=sys.stderr, flush=True)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


def running(pidfile):
    """(pid, fingerprint) of the supervisor in ``pidfile`` if it runs, else (None, None)."""
    try:
        with open(pidfile, encoding="utf-8") as handle:
            pid_text, _, recorded = handle.read().strip().partition(" ")
        pid = int(pid_text)
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read().split(b"\0")
    except (OSError, ValueError):
        return None, None
    if b"supervise" not in cmdline or PROGRAM.encode() not in cmdline:
        return None, None
    return pid, recorded


def ensure(args):
    want = fingerprint(args)
    pid, have = running(args.pidfile)
    if pid and have == want:
        print("running")
        return
    verb = "restarted" if pid else "started"
    if args.check:
        print(f"would be {verb}")
        return
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if running(args.pidfile)[0] is None:
                break
            time.sleep(0.1)
    argv = [sys.executable, PROGRAM, "supervise", "--state", args.state, "--pidfile", args.pidfile,
            "--port", str(args.port), "--address", args.address]
    log = open(args.log, "ab")  # handed to the daemon
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                            close_fds=True)
    tmp = f"{args.pidfile}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(f"{proc.pid} {want}\n")
    os.replace(tmp, args.pidfile)
    # The responder must answer before we say it runs.
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1" if args.address in ("0.0.0.0", "") else args.address, args.port),
                                     timeout=1).close()
            break
        except OSError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                print(f"Cannot start the mesh health responder on port {args.port}: {exc}", file=sys.stderr)
                sys.exit(1)
            time.sleep(0.1)
    print(verb)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["serve", "supervise", "ensure"])
    parser.add_argument("--state", required=True)
    parser.add_argument("--port", type=int, default=10256)
    parser.add_argument("--address", default="0.0.0.0")
    parser.add_argument("--pidfile")
    parser.add_argument("--log", default="/dev/null")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if args.command != "serve" and not args.pidfile:
        parser.error(f"{args.command} needs --pidfile")
    {"serve": serve, "supervise": supervise, "ensure": ensure}[args.command](args)


if __name__ == "__main__":
    main()
