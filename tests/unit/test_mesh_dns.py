"""The fabric's DNS resolver (roles/mesh/files/mesh_dns.py): wire format, answers from a
scripted dockerd (a real HTTP server on a unix socket), forwarding to a fake upstream on
127.0.0.1 over UDP and TCP, truncation, malformed packets, and the task cache's expiry."""

import http.server
import importlib.util
import json
import pathlib
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("mesh_dns", ROOT / "roles" / "mesh" / "files" / "mesh_dns.py")
dns = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(dns)

GATEWAY = "127.0.0.1"  # the resolver's listen address in these tests (the overlay's gateway on a node)
CONFIG = {"version": 1, "node": "node1",
          "overlays": {"appnet": {"gateway": GATEWAY}, "backnet": {"gateway": "10.30.0.1"}},
          "services": {"web": {"vip": "10.20.255.37", "endpoint_mode": "vip", "overlays": ["appnet"]},
                       "db": {"vip": None, "endpoint_mode": "dnsrr", "overlays": ["appnet"]},
                       "idle": {"vip": "10.20.255.9", "endpoint_mode": "vip", "overlays": ["appnet"]},
                       "big": {"vip": None, "endpoint_mode": "dnsrr", "overlays": ["appnet"]}}}
BIG = [f"10.20.{17 + i // 200}.{2 + i % 200}" for i in range(40)]


def tasks(service, *addresses):
    return {"VIP": "", "Ports": [], "LocalLBIndex": 0, "Tasks": [
        {"Name": f"{service}.{i + 1}.t{i}abc", "EndpointID": f"e{i}", "EndpointIP": address,
         "Info": {"Host IP": "172.31.78.11"}} for i, address in enumerate(addresses)]}


class FakeDocker:
    """dockerd's two answers the resolver asks for; ``services`` can be changed between queries."""

    def __init__(self, path):
        self.requests = []
        self.services = {"web": tasks("web", "10.20.18.2", "10.20.17.3", "10.20.17.2"),
                         "db": tasks("db", "10.20.17.4", "10.20.19.2"),
                         "big": tasks("big", *BIG)}
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                fake.requests.append(self.path)
                if self.path.startswith("/networks?"):
                    body = [{"Name": "appnet", "Id": "n-appnet", "Scope": "swarm", "Driver": "macvlan"},
                            {"Name": "appnet-config", "Id": "n-cfg", "Scope": "local", "ConfigOnly": True},
                            {"Name": "other", "Id": "n-other", "Scope": "swarm", "Driver": "macvlan"}]
                elif self.path == "/networks/n-appnet?verbose=true&scope=swarm":
                    body = {"Name": "appnet", "Id": "n-appnet", "Services": fake.services}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

            def get_request(self):
                conn, _ = super().get_request()
                return conn, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port)

        self.server = Server(str(path), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def detail_reads(self):
        return sum(1 for path in self.requests if "verbose=true" in path)


class FakeUpstream:
    """A nameserver on 127.0.0.1: A 192.0.2.<n> for any name, TC over UDP for names starting with 'big'."""

    def __init__(self):
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(8)
        self.seen = []
        threading.Thread(target=self._udp, daemon=True).start()
        threading.Thread(target=self._tcp, daemon=True).start()

    def reply(self, data, transport):
        query = dns.parse_query(data)
        self.seen.append((transport, query["name"]))
        reply = dns.build_response(query, dns.NOERROR, ["192.0.2.7"], 60, authoritative=False)
        if transport == "udp" and query["name"].startswith("big"):
            reply = dns.truncate(reply)
        return reply

    def _udp(self):
        while True:
            data, peer = self.udp.recvfrom(4096)
            self.udp.sendto(self.reply(data, "udp"), peer)

    def _tcp(self):
        while True:
            conn, _ = self.tcp.accept()
            with conn:
                (length,) = struct.unpack("!H", dns.recv_exact(conn, 2))
                reply = self.reply(dns.recv_exact(conn, length), "tcp")
                conn.sendall(struct.pack("!H", len(reply)) + reply)


@pytest.fixture
def lab(tmp_path):
    config = tmp_path / "mesh-dns.json"
    config.write_text(json.dumps(CONFIG))
    docker = FakeDocker(tmp_path / "docker.sock")
    upstream = FakeUpstream()
    resolv = tmp_path / "resolv.conf"
    # Our own address is skipped: a resolver that forwards to itself would loop.
    resolv.write_text(f"search corp.example\nnameserver {GATEWAY}\nnameserver 127.0.0.1\noptions ndots:0\n")
    clock = [100.0]
    resolver = dns.Resolver(dns.Config(str(config)), dns.Tasks(str(tmp_path / "docker.sock"), clock=lambda: clock[0]),
                            dns.Upstreams(str(resolv), ["127.0.0.2"], port=upstream.port), {GATEWAY: "appnet"})
    server = dns.Server(resolver, [GATEWAY], 0).start()
    yield {"server": server, "docker": docker, "upstream": upstream, "clock": clock, "resolver": resolver,
           "config": config, "resolv": resolv}
    server.stop()
    docker.server.shutdown()
    docker.server.server_close()


def ask_udp(port, name, qtype=dns.TYPE_A, qid=0x4242):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(dns.build_query(name, qtype, qid), (GATEWAY, port))
        return sock.recv(65535)


def ask_tcp(port, name, qtype=dns.TYPE_A, qid=0x4343):
    with socket.create_connection((GATEWAY, port), timeout=3) as sock:
        query = dns.build_query(name, qtype, qid)
        sock.sendall(struct.pack("!H", len(query)) + query)
        (length,) = struct.unpack("!H", dns.recv_exact(sock, 2))
        return dns.recv_exact(sock, length)


# --- wire format -----------------------------------------------------------

def test_a_query_is_encoded_as_rfc_1035_says():
    assert dns.build_query("Web.appnet", dns.TYPE_A, 0xBEEF) == (
        b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" b"\x03Web\x06appnet\x00" b"\x00\x01\x00\x01")


def test_a_query_decodes_lowercased_and_the_question_is_kept_as_spelled():
    query = dns.parse_query(dns.build_query("TASKS.Web", dns.TYPE_AAAA, 7))
    assert (query["id"], query["name"], query["qtype"], query["qclass"]) == (7, "tasks.web", dns.TYPE_AAAA, 1)
    assert query["question"] == b"\x05TASKS\x03Web\x00\x00\x1c\x00\x01"


def test_an_answer_has_one_a_record_per_address_pointing_at_the_question():
    query = dns.parse_query(dns.build_query("web", qid=9))
    reply = dns.build_response(query, dns.NOERROR, ["10.20.255.37", "10.20.17.2"], 30)
    assert reply[:12] == struct.pack("!HHHHHH", 9, 0x8000 | 0x0400 | 0x0100 | 0x0080, 1, 2, 0, 0)
    assert reply[12:21] == b"\x03web\x00\x00\x01\x00\x01"
    assert reply[21:37] == b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x1e\x00\x04" + bytes([10, 20, 255, 37])
    flags = struct.unpack("!H", reply[2:4])[0]
    assert dns.parse_response(reply) == (dns.NOERROR, flags, ["10.20.255.37", "10.20.17.2"])


def test_names_with_pointers_are_followed_and_loops_refused():
    packet = dns.build_query("web.appnet")
    name, end = dns.read_name(packet + b"\x04tail\xc0\x10", len(packet))  # "tail" then -> "appnet" at offset 16
    assert (name, end) == ("tail.appnet", len(packet) + 7)
    with pytest.raises(dns.FormatError, match="loop"):
        dns.read_name(b"\0" * 12 + b"\xc0\x0c", 12)


def test_truncation_keeps_header_and_question_and_sets_tc():
    query = dns.parse_query(dns.build_query("big"))
    reply = dns.truncate(dns.build_response(query, dns.NOERROR, BIG, 1))
    _rcode, flags, addresses = dns.parse_response(reply)
    assert flags & dns.FLAG_TC and addresses == [] and reply[12:] == query["question"]
    assert struct.unpack("!HHHH", reply[4:12]) == (1, 0, 0, 0)


# --- answers from dockerd -------------------------------------------------

def test_a_vip_service_answers_its_vip(lab):
    for name in ("web", "WEB", "web.", "web.appnet"):
        rcode, flags, addresses = dns.parse_response(ask_udp(lab["server"].port, name))
        assert (rcode, addresses) == (dns.NOERROR, ["10.20.255.37"]), name
        assert flags & dns.FLAG_AA and flags & dns.FLAG_QR
    assert lab["upstream"].seen == []


def test_tasks_of_a_service_are_its_running_tasks_addresses_from_dockerd(lab):
    reply = ask_udp(lab["server"].port, "tasks.web")
    assert dns.parse_response(reply)[::2] == (dns.NOERROR, ["10.20.17.2", "10.20.17.3", "10.20.18.2"])
    assert lab["docker"].requests == ['/networks?filters=%7B%22driver%22%3A%20%5B%22macvlan%22%5D%7D',
                                      "/networks/n-appnet?verbose=true&scope=swarm"]


def test_a_dnsrr_service_answers_all_its_tasks_and_a_task_name_its_own(lab):
    assert dns.parse_response(ask_udp(lab["server"].port, "db"))[::2] == (dns.NOERROR, ["10.20.17.4", "10.20.19.2"])
    assert dns.parse_response(ask_tcp(lab["server"].port, "tasks.db"))[::2] == (
        dns.NOERROR, ["10.20.17.4", "10.20.19.2"])
    assert dns.parse_response(ask_udp(lab["server"].port, "db.2.t1abc"))[::2] == (dns.NOERROR, ["10.20.19.2"])


def test_unknown_tasks_name_is_nxdomain_and_known_names_have_no_aaaa(lab):
    port = lab["server"].port
    assert dns.parse_response(ask_udp(port, "tasks.nope"))[::2] == (dns.NXDOMAIN, [])
    assert dns.parse_response(ask_udp(port, "web", dns.TYPE_AAAA))[::2] == (dns.NOERROR, [])
    assert dns.parse_response(ask_udp(port, "tasks.web", dns.TYPE_AAAA))[::2] == (dns.NOERROR, [])
    # A known service with no running task is a name without addresses, not an unknown one.
    assert dns.parse_response(ask_udp(port, "tasks.idle"))[::2] == (dns.NOERROR, [])
    assert lab["upstream"].seen == []


def test_the_task_cache_expires_after_about_a_second(lab):
    port, docker, clock = lab["server"].port, lab["docker"], lab["clock"]
    assert dns.parse_response(ask_udp(port, "tasks.web"))[2] == ["10.20.17.2", "10.20.17.3", "10.20.18.2"]
    docker.services["web"] = tasks("web", "10.20.17.2", "10.20.21.5")  # scaled and moved
    clock[0] += 0.5
    assert dns.parse_response(ask_udp(port, "tasks.web"))[2] == ["10.20.17.2", "10.20.17.3", "10.20.18.2"]
    assert docker.detail_reads() == 1
    clock[0] += 0.6
    assert dns.parse_response(ask_udp(port, "tasks.web"))[2] == ["10.20.17.2", "10.20.21.5"]
    assert docker.detail_reads() == 2


def test_a_failing_dockerd_serves_the_last_answer_for_a_while_then_servfail(lab):
    port, clock = lab["server"].port, lab["clock"]
    assert dns.parse_response(ask_udp(port, "tasks.db"))[2] == ["10.20.17.4", "10.20.19.2"]
    lab["docker"].server.shutdown()
    lab["docker"].server.server_close()
    pathlib.Path(lab["docker"].server.server_address).unlink()
    clock[0] += 5
    assert dns.parse_response(ask_udp(port, "tasks.db"))[2] == ["10.20.17.4", "10.20.19.2"]
    clock[0] += 60
    assert dns.parse_response(ask_udp(port, "tasks.db"))[0] == dns.SERVFAIL
    # Names that are not ours never depend on dockerd.
    assert dns.parse_response(ask_udp(port, "example.org"))[::2] == (dns.NOERROR, ["192.0.2.7"])


def test_a_changed_config_is_read_again(lab):
    conf = json.loads(json.dumps(CONFIG))
    conf["services"]["web"]["vip"] = "10.20.255.40"
    lab["config"].write_text(json.dumps(conf) + "\n")
    assert dns.parse_response(ask_udp(lab["server"].port, "web"))[2] == ["10.20.255.40"]


# --- forwarding and truncation ---------------------------------------------

def test_other_names_are_forwarded_over_the_clients_transport(lab):
    port, upstream = lab["server"].port, lab["upstream"]
    udp = ask_udp(port, "example.org", qid=0x1111)
    tcp = ask_tcp(port, "example.org", qid=0x2222)
    assert udp[:2] == b"\x11\x11" and tcp[:2] == b"\x22\x22"
    assert dns.parse_response(udp)[::2] == dns.parse_response(tcp)[::2] == (dns.NOERROR, ["192.0.2.7"])
    # Not authoritative: the upstream's answer is relayed as it is.
    assert not dns.parse_response(udp)[1] & dns.FLAG_AA
    # tasks.<more than one label> is not Swarm's: forwarded too.
    ask_udp(port, "tasks.example.org")
    assert upstream.seen == [("udp", "example.org"), ("tcp", "example.org"), ("udp", "tasks.example.org")]


def test_a_truncated_upstream_answer_stays_truncated_and_tcp_gets_the_whole(lab):
    port = lab["server"].port
    _rcode, flags, addresses = dns.parse_response(ask_udp(port, "big.example.org"))
    assert flags & dns.FLAG_TC and addresses == []
    assert dns.parse_response(ask_tcp(port, "big.example.org"))[2] == ["192.0.2.7"]


def test_our_answer_over_512_bytes_is_truncated_over_udp_and_whole_over_tcp(lab):
    port = lab["server"].port
    udp = ask_udp(port, "big")
    assert len(udp) <= 512 and dns.parse_response(udp)[1] & dns.FLAG_TC and dns.parse_response(udp)[2] == []
    tcp = ask_tcp(port, "big")
    assert len(tcp) > 512 and sorted(dns.parse_response(tcp)[2], key=socket.inet_aton) == BIG


def test_no_upstream_is_servfail(lab):
    lab["resolv"].write_text(f"nameserver {GATEWAY}\n")  # only ourselves
    lab["resolver"].upstreams.own.add(GATEWAY)
    assert dns.parse_response(ask_udp(lab["server"].port, "example.org"))[0] == dns.SERVFAIL


def test_upstreams_skip_our_own_addresses_and_comments(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# Generated\nnameserver 10.20.0.1\nnameserver 127.0.0.11 # docker\nnameserver 192.0.2.53\n"
                      "nameserver 192.0.2.53\nsearch x\n")
    assert dns.Upstreams(str(resolv), ["10.20.0.1"]).get() == ["127.0.0.11", "192.0.2.53"]


# --- malformed packets ------------------------------------------------------

@pytest.mark.parametrize("packet", [
    b"",
    b"\x12",
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",                      # a question that is not there
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3fabc",               # label past the end
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # pointer to itself
    b"\x12\x34\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01",  # two questions
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03w\xffb\x00\x00\x01\x00\x01",  # not ASCII
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x80\x00\x00\x01\x00\x01",  # reserved label type
    b"\x12\x34\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\x03web\x00\x00\x01\x00\x01",  # an answer, not a query
    b"\x12\x34\x11\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03web\x00\x00\x01\x00\x01",  # opcode 2 (status)
])
def test_malformed_packets_get_formerr_or_silence_and_the_server_keeps_answering(lab, packet):
    port = lab["server"].port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.sendto(packet, (GATEWAY, port))
        try:
            reply = sock.recv(4096)
        except TimeoutError:
            reply = None
    if len(packet) < 12 or packet[2] & 0x80:
        assert reply is None
    elif packet[2] & 0x78:
        assert reply[:2] == packet[:2] and reply[3] & 0xF == dns.NOTIMP
    else:
        assert reply[:2] == packet[:2] and reply[3] & 0xF == dns.FORMERR and reply[2] & 0x80
    # Over TCP too: a bad length or garbage closes that connection only.
    with socket.create_connection((GATEWAY, port), timeout=3) as sock:
        sock.sendall(struct.pack("!H", len(packet)) + packet)
    assert dns.parse_response(ask_udp(port, "web"))[2] == ["10.20.255.37"]
    assert dns.parse_response(ask_tcp(port, "web"))[2] == ["10.20.255.37"]


def test_a_bug_in_answering_costs_one_servfail_not_the_server(lab, monkeypatch):
    def boom(*_):
        raise RuntimeError("bug")
    monkeypatch.setattr(lab["resolver"], "local_answer", boom)
    assert dns.parse_response(ask_udp(lab["server"].port, "web"))[0] == dns.SERVFAIL
    monkeypatch.undo()
    assert dns.parse_response(ask_udp(lab["server"].port, "web"))[2] == ["10.20.255.37"]


def test_network_generations_of_an_overlay():
    assert [dns.network_generation(n, "appnet") for n in ("appnet", "appnet-3", "appnet-2", "appnet-config", "app")] \
        == [True, True, False, False, False]


# --- supervision without systemd -------------------------------------------

def test_ensure_starts_once_and_the_supervisor_stops_when_its_pid_file_goes(tmp_path):
    config = tmp_path / "mesh-dns.json"
    config.write_text(json.dumps(CONFIG))
    pidfile = tmp_path / "mesh-dns.pid"
    argv = [sys.executable, str(ROOT / "roles" / "mesh" / "files" / "mesh_dns.py"), "ensure", "--config", str(config),
            "--pidfile", str(pidfile), "--log", str(tmp_path / "log"), "--address", "127.0.0.1", "--port", "0",
            "--docker-socket", str(tmp_path / "none.sock")]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert (first.returncode, first.stdout) == (0, "started\n"), first.stderr
    supervisor = int(pidfile.read_text().split()[0])
    assert subprocess.run([*argv, "--check"], capture_output=True, text=True, timeout=30, check=False).stdout \
        == "running\n"
    assert subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout \
        == "running\n"
    assert int(pidfile.read_text().split()[0]) == supervisor
    server = int((tmp_path / "mesh-dns.pid.ready").read_text())
    pidfile.unlink()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(pathlib.Path(f"/proc/{pid}").exists() and
                                              b"zombie" not in pathlib.Path(f"/proc/{pid}/status").read_bytes().lower()
                                              for pid in (supervisor, server)):
        time.sleep(0.2)
    alive = [pid for pid in (supervisor, server) if pathlib.Path(f"/proc/{pid}").exists()
             and b"zombie" not in pathlib.Path(f"/proc/{pid}/status").read_bytes().lower()]
    assert alive == [], (tmp_path / "log").read_text()
