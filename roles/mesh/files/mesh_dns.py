#!/usr/bin/python3
# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fabric's DNS resolver on one node (docs/dns.md). Standard library only.

Listens on UDP and TCP port 53 of each overlay's anycast gateway (every
node's shim holds it, so a task always reaches its own node's resolver) and
answers A queries with Swarm's contract:

    <service>          its VIP (the mesh's, from the config file), or for an
                       endpoint_mode dnsrr service the addresses of its
                       running tasks;
    tasks.<service>    the addresses of the service's running tasks;
    <task name>        that task's address (web.1.<task id>, as Docker).

A name may carry an overlay's network name as suffix (web.appnet), as with
Docker's embedded DNS; names are case-insensitive. AAAA and other types of a
known name are answered NOERROR with no record; tasks.<single label> of no
service is NXDOMAIN. Task addresses are read from the local dockerd
(GET /networks/<id>?verbose=true&scope=swarm lists, on every node with an
attachment to the network, its services' tasks and their EndpointIP),
cached for about a second. Every other name is forwarded to the nameservers
of the node's resolv.conf (not to ourselves), over the transport the client
used; the upstream's answer, truncation flag included, is relayed as it is.
Our own answers over UDP that exceed 512 bytes are sent truncated (TC), so
the client asks again over TCP.

    mesh_dns.py serve --config FILE --address A [--address B ...] [--port 53]
    mesh_dns.py supervise --config FILE --pidfile FILE --address A ...
    mesh_dns.py ensure --config FILE --pidfile FILE --address A ... [--check]

`supervise` and `ensure` are for hosts without systemd, as in mesh_health.py:
the supervisor restarts `serve` whenever it exits; `ensure` starts a
supervisor unless one with the same arguments and program runs, and prints
running / started / restarted.
"""

import argparse
import concurrent.futures
import hashlib
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from urllib.parse import quote

PROGRAM = os.path.abspath(__file__)

# Wire constants (RFC 1035, 3596).
TYPE_A, TYPE_AAAA, TYPE_ANY = 1, 28, 255
CLASS_IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP = 0, 1, 2, 3, 4
FLAG_QR, FLAG_AA, FLAG_TC, FLAG_RD, FLAG_RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
UDP_LIMIT = 512  # we send no EDNS OPT record, so a client may only expect 512 bytes
IP_FREEBIND = 15  # linux/in.h: bind before the shim holds the gateway

# TTLs: a VIP never moves while its service exists; task addresses follow
# scaling, so clients must ask again at once.
VIP_TTL = 30
TASK_TTL = 1
CACHE_SECONDS = 1.0
STALE_SECONDS = 30.0  # a failing dockerd: serve the last answer this long
UPSTREAM_TIMEOUT = 2.0
TCP_IDLE = 5.0


class FormatError(Exception):
    """A packet we cannot parse as one DNS query."""


# --- wire format -----------------------------------------------------------

def read_name(data, offset):
    """(name, offset after it) of the encoded name at ``offset``, lowercased; pointers followed."""
    labels, jumps, end = [], 0, None
    while True:
        if offset >= len(data):
            raise FormatError("name runs past the packet")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise FormatError("truncated pointer")
            if end is None:
                end = offset + 2
            jumps += 1
            if jumps > 16:
                raise FormatError("pointer loop")
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        if length & 0xC0:
            raise FormatError("unknown label type")
        offset += 1
        if length == 0:
            break
        if offset + length > len(data):
            raise FormatError("label runs past the packet")
        try:
            labels.append(data[offset:offset + length].decode("ascii").lower())
        except UnicodeDecodeError as exc:
            raise FormatError("label is not ASCII") from exc
        offset += length
        if sum(len(label) + 1 for label in labels) > 255:
            raise FormatError("name longer than 255 octets")
    return ".".join(labels), (end if end is not None else offset)


def encode_name(name):
    out = bytearray()
    for label in name.rstrip(".").split(".") if name.strip(".") else []:
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad label in {name!r}")
        out += bytes([len(raw)]) + raw
    return bytes(out + b"\0")


def parse_query(data):
    """The one question of a query: dict(id, flags, name, qtype, qclass, question=raw bytes)."""
    if len(data) < 12:
        raise FormatError("shorter than a header")
    qid, flags, qdcount = struct.unpack("!HHH", data[:6])
    if qdcount != 1:
        raise FormatError(f"{qdcount} questions")
    name, offset = read_name(data, 12)
    if offset + 4 > len(data):
        raise FormatError("question runs past the packet")
    qtype, qclass = struct.unpack("!HH", data[offset:offset + 4])
    # The question goes back as the client spelled it (0x20 case checks),
    # re-encoded only when it used a pointer.
    raw = data[12:offset + 4]
    if data[offset - 1] != 0:  # ended in a pointer
        raw = encode_name(name) + data[offset:offset + 4]
    return {"id": qid, "flags": flags, "name": name, "qtype": qtype, "qclass": qclass, "question": raw}


def build_query(name, qtype=TYPE_A, qid=0x1234, rd=True):
    return (struct.pack("!HHHHHH", qid, FLAG_RD if rd else 0, 1, 0, 0, 0)
            + encode_name(name) + struct.pack("!HH", qtype, CLASS_IN))


def build_response(query, rcode, addresses=(), ttl=0, authoritative=True):
    """An answer to ``query`` (parse_query's dict) with A records for ``addresses``.

    The answer names point at the question (offset 12)."""
    flags = FLAG_QR | FLAG_RA | (query["flags"] & (0x7800 | FLAG_RD)) | (rcode & 0xF)
    if authoritative:
        flags |= FLAG_AA
    records = b"".join(struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, ttl, 4) + socket.inet_aton(addr)
                       for addr in addresses)
    return struct.pack("!HHHHHH", query["id"], flags, 1, len(addresses), 0, 0) + query["question"] + records


def error_response(data, rcode):
    """A header-only error answer to a packet we could not parse (None when not even the header is there)."""
    if len(data) < 12:
        return None
    qid, flags = struct.unpack("!HH", data[:4])
    if flags & FLAG_QR:
        return None  # never answer an answer
    return struct.pack("!HHHHHH", qid, FLAG_QR | FLAG_RA | (flags & (0x7800 | FLAG_RD)) | rcode, 0, 0, 0, 0)


def truncate(response):
    """The same answer with TC set and no records: the client retries over TCP."""
    qid, flags, qdcount = struct.unpack("!HHH", response[:6])
    _, offset = read_name(response, 12)
    return struct.pack("!HHHHHH", qid, flags | FLAG_TC, qdcount, 0, 0, 0) + response[12:offset + 4]


def parse_response(data):
    """(rcode, flags, [A addresses]) of an answer; for tests and `ensure`."""
    _qid, flags, qdcount, ancount = struct.unpack("!HHHH", data[:8])
    offset = 12
    for _ in range(qdcount):
        _, offset = read_name(data, offset)
        offset += 4
    addresses = []
    for _ in range(ancount):
        _, offset = read_name(data, offset)
        rtype, _rclass, _ttl, rdlen = struct.unpack("!HHIH", data[offset:offset + 10])
        offset += 10
        if rtype == TYPE_A and rdlen == 4:
            addresses.append(socket.inet_ntoa(data[offset:offset + 4]))
        offset += rdlen
    return flags & 0xF, flags, addresses


# --- what we know ----------------------------------------------------------

class Config:
    """The role's JSON (overlays: name -> gateway; services: name -> vip, endpoint_mode, overlays),
    re-read when the file changes. An unreadable file keeps the last good one."""

    def __init__(self, path):
        self.path, self.key = path, None
        self.data = {"overlays": {}, "services": {}}

    def get(self):
        try:
            st = os.stat(self.path)
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            if key != self.key:
                with open(self.path, encoding="utf-8") as handle:
                    data = json.load(handle)
                self.data = {"overlays": dict(data.get("overlays") or {}),
                             "services": {str(k).lower(): v for k, v in (data.get("services") or {}).items()}}
                self.key = key
        except (OSError, ValueError, AttributeError) as exc:
            log(f"cannot read {self.path}: {exc}")
        return self.data


def network_generation(name, overlay):
    """True when ``name`` is one of the overlay's swarm networks (``appnet``, ``appnet-<odd n>``; netgen.py)."""
    if name == overlay:
        return True
    suffix = name[len(overlay) + 1:] if name.startswith(overlay + "-") else ""
    return suffix.isdigit() and int(suffix) % 2 == 1


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Tasks:
    """Running tasks of each overlay's services, from the local dockerd, cached CACHE_SECONDS."""

    def __init__(self, socket_path, clock=time.monotonic):
        self.socket_path, self.clock = socket_path, clock
        self.cache = {}  # overlay -> (when, {"services": {name: [ip]}, "tasks": {task name: ip}})
        self.lock = threading.Lock()

    def _get(self, path):
        conn = _UnixConnection(self.socket_path, timeout=2)
        try:
            conn.request("GET", path, headers={"Host": "docker"})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status >= 400:
                raise OSError(f"dockerd answered {resp.status} to GET {path}")
            return json.loads(body)
        finally:
            conn.close()

    def read(self, overlay):
        services, tasks = {}, {}
        nets = self._get("/networks?filters=" + quote(json.dumps({"driver": ["macvlan"]})))
        for net in nets or []:
            if net.get("Scope") != "swarm" or net.get("ConfigOnly") \
                    or not network_generation(net.get("Name", ""), overlay):
                continue
            detail = self._get(f"/networks/{quote(net['Id'])}?verbose=true&scope=swarm")
            for name, entry in (detail.get("Services") or {}).items():
                addresses = services.setdefault(name.lower(), [])
                for task in (entry or {}).get("Tasks") or []:
                    address = (task.get("EndpointIP") or "").split("/", 1)[0]
                    if not address:
                        continue
                    if address not in addresses:
                        addresses.append(address)
                    if task.get("Name"):
                        tasks[task["Name"].lower()] = address
        for addresses in services.values():
            addresses.sort(key=socket.inet_aton)
        return {"services": services, "tasks": tasks}

    def get(self, overlay):
        now = self.clock()
        with self.lock:
            hit = self.cache.get(overlay)
            if hit and now - hit[0] < CACHE_SECONDS:
                return hit[1]
            try:
                data = self.read(overlay)
            except (OSError, ValueError, http.client.HTTPException) as exc:
                if hit and now - hit[0] < STALE_SECONDS:
                    return hit[1]
                raise LookupError(f"cannot read the tasks of {overlay} from dockerd: {exc}") from exc
            self.cache[overlay] = (now, data)
            return data


class Upstreams:
    """Nameservers of the node's resolv.conf, without our own addresses; re-read when it changes."""

    def __init__(self, path, own, port=53):
        self.path, self.own, self.port = path, set(own), port
        self.key, self.servers = None, []

    def get(self):
        try:
            st = os.stat(self.path)
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            if key != self.key:
                servers = []
                with open(self.path, encoding="utf-8") as handle:
                    for line in handle:
                        words = line.split("#", 1)[0].split()
                        if len(words) >= 2 and words[0] == "nameserver" and words[1] not in self.own \
                                and words[1] not in servers:
                            servers.append(words[1])
                self.key, self.servers = key, servers
        except OSError as exc:
            log(f"cannot read {self.path}: {exc}")
        return self.servers


# --- answering -------------------------------------------------------------

class Resolver:
    def __init__(self, config, tasks, upstreams, listen):
        self.config, self.tasks, self.upstreams = config, tasks, upstreams
        self.listen = listen  # local address -> overlay (the gateway the query came to)

    def local_answer(self, query, arrival):
        """(rcode, addresses, ttl) when the name is ours, None to forward."""
        conf = self.config.get()
        services, overlays = conf["services"], conf["overlays"]
        name = query["name"]
        # Docker's form <name>.<network>: strip an overlay's network name.
        for overlay in overlays:
            head, dot, tail = name.rpartition(".")
            if dot and network_generation(tail, overlay):
                name = head
                break
        if query["qclass"] != CLASS_IN or not name:
            return None
        wants_a = query["qtype"] in (TYPE_A, TYPE_ANY)
        if name.startswith("tasks."):
            service = services.get(name[len("tasks."):])
            if service is None:
                # Swarm's own namespace: tasks.<one label> of no service of ours is no name at all.
                return (NXDOMAIN, [], 0) if "." not in name[len("tasks."):] else None
            return NOERROR, self.task_addresses(name[len("tasks."):], service, arrival) if wants_a else [], TASK_TTL
        service = services.get(name)
        if service is not None:
            if service.get("endpoint_mode") == "dnsrr" or not service.get("vip"):
                return NOERROR, self.task_addresses(name, service, arrival) if wants_a else [], TASK_TTL
            return NOERROR, [service["vip"]] if wants_a else [], VIP_TTL
        owner = services.get(name.split(".", 1)[0])
        if owner is not None and name.count(".") == 2:  # a task's name: web.1.<task id>
            try:
                for overlay in self.networks_of(owner, arrival, overlays):
                    address = self.tasks.get(overlay)["tasks"].get(name)
                    if address:
                        return NOERROR, [address] if wants_a else [], TASK_TTL
            except LookupError as exc:
                log(f"{exc}; forwarding {name}")
        return None

    @staticmethod
    def networks_of(service, arrival, overlays):
        """The overlays to read: the one the query came from when the service is on it, else all of the service's."""
        if service is None:
            return [arrival] if arrival in overlays else list(overlays)
        on = [o for o in service.get("overlays") or [] if o in overlays]
        return [arrival] if arrival in on else on

    def task_addresses(self, name, service, arrival):
        addresses = []
        for overlay in self.networks_of(service, arrival, self.config.get()["overlays"]):
            for address in self.tasks.get(overlay)["services"].get(name, []):
                if address not in addresses:
                    addresses.append(address)
        return addresses

    def answer(self, data, local_address, transport):
        """The reply to one packet (bytes), or None to stay silent. Never raises."""
        try:
            try:
                query = parse_query(data)
            except FormatError:
                return error_response(data, FORMERR)
            if query["flags"] & FLAG_QR:
                return None
            if (query["flags"] >> 11) & 0xF != 0:
                return build_response(query, NOTIMP, authoritative=False)
            try:
                local = self.local_answer(query, self.listen.get(local_address))
            except LookupError as exc:
                log(str(exc))
                return build_response(query, SERVFAIL, authoritative=False)
            if local is None:
                return self.forward(data, query, transport)
            rcode, addresses, ttl = local
            reply = build_response(query, rcode, addresses, ttl)
            if transport == "udp" and len(reply) > UDP_LIMIT:
                reply = truncate(reply)
            return reply
        except Exception as exc:  # a bug must cost one answer, never the server
            log(f"cannot answer a query: {exc!r}")
            return error_response(data, SERVFAIL)

    def forward(self, data, query, transport):
        for server in self.upstreams.get():
            try:
                reply = (forward_udp if transport == "udp" else forward_tcp)(data, server, self.upstreams.port)
            except (OSError, FormatError, struct.error) as exc:
                log(f"upstream {server} ({transport}): {exc}")
                continue
            if reply[:2] == data[:2]:
                return reply
        return build_response(query, SERVFAIL, authoritative=False)


def _family(server):
    return socket.AF_INET6 if ":" in server else socket.AF_INET


def forward_udp(data, server, port):
    with socket.socket(_family(server), socket.SOCK_DGRAM) as sock:
        sock.settimeout(UPSTREAM_TIMEOUT)
        sock.connect((server, port))
        sock.send(data)
        deadline = time.monotonic() + UPSTREAM_TIMEOUT
        while True:
            reply = sock.recv(65535)
            if reply[:2] == data[:2] and len(reply) >= 12:
                return reply
            if time.monotonic() > deadline:
                raise OSError("no matching answer")


def recv_exact(sock, count):
    buf = b""
    while len(buf) < count:
        chunk = sock.recv(count - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


def forward_tcp(data, server, port):
    with socket.create_connection((server, port), timeout=UPSTREAM_TIMEOUT) as sock:
        sock.sendall(struct.pack("!H", len(data)) + data)
        (length,) = struct.unpack("!H", recv_exact(sock, 2))
        return recv_exact(sock, length)


# --- serving ---------------------------------------------------------------

def log(text):
    print(f"mesh_dns: {text}", file=sys.stderr, flush=True)


def bind(kind, address, port):
    sock = socket.socket(socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
    except OSError:
        pass
    sock.bind((address, port))
    return sock


class Server:
    """UDP and TCP on each address; one thread per socket, a pool for UDP queries, a thread per TCP client."""

    def __init__(self, resolver, addresses, port, workers=32):
        self.resolver = resolver
        self.udp, self.tcp = [], []
        for address in addresses:
            self.udp.append(bind(socket.SOCK_DGRAM, address, port))
            # Port 0 (tests): TCP on the port UDP got.
            self.tcp.append(bind(socket.SOCK_STREAM, address, self.udp[-1].getsockname()[1]))
            self.tcp[-1].listen(64)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
        self.stopping = threading.Event()
        self.threads = []

    @property
    def port(self):
        return self.udp[0].getsockname()[1]

    def start(self):
        for sock in self.udp:
            self.threads.append(threading.Thread(target=self._udp_loop, args=(sock,), daemon=True))
        for sock in self.tcp:
            self.threads.append(threading.Thread(target=self._tcp_loop, args=(sock,), daemon=True))
        for thread in self.threads:
            thread.start()
        return self

    def stop(self):
        self.stopping.set()
        for sock in self.udp + self.tcp:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self.pool.shutdown(wait=False)

    def _udp_loop(self, sock):
        local = sock.getsockname()[0]
        while not self.stopping.is_set():
            try:
                data, peer = sock.recvfrom(65535)
            except OSError:
                if self.stopping.is_set():
                    return
                continue
            try:
                self.pool.submit(self._udp_one, sock, data, peer, local)
            except RuntimeError:  # the pool is shut down: we are stopping
                return

    def _udp_one(self, sock, data, peer, local):
        reply = self.resolver.answer(data, local, "udp")
        if reply:
            try:
                sock.sendto(reply, peer)
            except OSError as exc:
                log(f"cannot answer {peer[0]}: {exc}")

    def _tcp_loop(self, sock):
        local = sock.getsockname()[0]
        while not self.stopping.is_set():
            try:
                conn, _peer = sock.accept()
            except OSError:
                if self.stopping.is_set():
                    return
                continue
            threading.Thread(target=self._tcp_client, args=(conn, local), daemon=True).start()

    def _tcp_client(self, conn, local):
        with conn:
            conn.settimeout(TCP_IDLE)
            try:
                while True:
                    (length,) = struct.unpack("!H", recv_exact(conn, 2))
                    reply = self.resolver.answer(recv_exact(conn, length), local, "tcp")
                    if not reply:
                        return
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
            except OSError:
                return


def serve(args):
    config = Config(args.config)
    listen = {}
    for address in args.address:
        listen[address] = next((name for name, ov in config.get()["overlays"].items()
                                if (ov or {}).get("gateway") == address), None)
    resolver = Resolver(config, Tasks(args.docker_socket), Upstreams(args.resolv_conf, args.address), listen)
    server = Server(resolver, args.address, args.port).start()
    if args.ready:
        # Bound (IP_FREEBIND: even before the shim holds the address): tell `ensure`.
        with open(args.ready, "w", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()


def common_args(args):
    argv = ["--config", args.config, "--port", str(args.port), "--docker-socket", args.docker_socket,
            "--resolv-conf", args.resolv_conf]
    for address in args.address:
        argv += ["--address", address]
    return argv


def fingerprint(args):
    with open(PROGRAM, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()[:16]
    return f"{digest} {' '.join(common_args(args))}"


def supervise(args):
    stopping, child = [], [None]

    def stop(*_):
        stopping.append(True)
        if child[0] and child[0].poll() is None:
            child[0].terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # The pid file is the supervisor's lease: once it names another process or
    # is gone (its directory removed), the supervisor stops with its resolver
    # instead of running on unknown to any `ensure`.
    born, leased = time.monotonic(), False
    while not stopping:
        started = time.monotonic()
        child[0] = subprocess.Popen([sys.executable, PROGRAM, "serve", *common_args(args),
                                     "--ready", f"{args.pidfile}.ready"])
        while not stopping and child[0].poll() is None:
            mine = running(args.pidfile)[0] == os.getpid()
            leased = leased or mine
            if (leased and not mine) or (not leased and time.monotonic() - born > 30):
                log(f"{args.pidfile} no longer names this supervisor; stopping")
                stop()
                break
            time.sleep(1)
        child[0].wait()
        if not stopping:
            log(f"resolver exited with {child[0].returncode}; restarting")
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


def running(pidfile):
    """(pid, fingerprint) of the supervisor of ``pidfile`` if it runs, else (None, None)."""
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
    ready = f"{args.pidfile}.ready"
    try:
        os.unlink(ready)
    except FileNotFoundError:
        pass
    log_file = open(args.log, "ab")  # handed to the daemon
    proc = subprocess.Popen([sys.executable, PROGRAM, "supervise", "--pidfile", args.pidfile, *common_args(args)],
                            stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True,
                            close_fds=True)
    tmp = f"{args.pidfile}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(f"{proc.pid} {want}\n")
    os.replace(tmp, args.pidfile)
    # The resolver must have bound its sockets before we say it runs.
    deadline = time.monotonic() + 10
    while not os.path.exists(ready):
        if proc.poll() is not None or time.monotonic() > deadline:
            print(f"Cannot start the DNS resolver on {', '.join(args.address)} port {args.port}: it did not bind"
                  f" its sockets (see {args.log})", file=sys.stderr)
            sys.exit(1)
        time.sleep(0.1)
    print(verb)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["serve", "supervise", "ensure"])
    parser.add_argument("--config", required=True)
    parser.add_argument("--address", action="append", required=True)
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--docker-socket", default="/var/run/docker.sock")
    parser.add_argument("--resolv-conf", default="/etc/resolv.conf")
    parser.add_argument("--pidfile")
    parser.add_argument("--log", default="/dev/null")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--ready", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.command != "serve" and not args.pidfile:
        parser.error(f"{args.command} needs --pidfile")
    {"serve": serve, "supervise": supervise, "ensure": ensure}[args.command](args)


if __name__ == "__main__":
    main()
