"""Kernel lab checks, against real kernel state inside the VM.

The lab checks (first half) prove that this kernel can do what the fabric
and mesh promise: Debian's 6.1 kernel, esp4/ip_vs/vxlan, rfc4106(gcm(aes)),
and a hand-made ESP transport SA pair that carries traffic while the
underlay sees only ESP. The fabric and mesh checks (second half) fail, with
the reason, when the converge left a host without those layers.
"""

import ipaddress
import json
import os
import pathlib
import re
import secrets
import subprocess
import time

import pytest
from sf_capture import capture, count, run_ok

PROJECT = pathlib.Path(__file__).resolve().parents[3]
AEAD = "rfc4106(gcm(aes))"


# --- the lab itself -------------------------------------------------------


def test_kernel_is_debian_6_1(lab):
    for host in lab.values():
        assert re.fullmatch(r"6\.1\.0-\d+-amd64", host.run("uname -r").stdout.strip())
        assert "Debian" in host.file("/proc/version").content_string


def test_hosts_are_separate(lab, underlay):
    for name, host in lab.items():
        assert host.run("hostname").stdout.strip() == name
        addrs = host.run("ip -4 -o addr show dev eth0").stdout
        assert f" {underlay[name]}/" in addrs
        for path in ("/etc/swarmfabric", "/var/lib/swarmfabric", "/root", "/tmp"):
            source = host.run(f"findmnt -n -o SOURCE {path}").stdout
            assert f"/sf-kl/{name}/" in source, f"{name}:{path} is not the host's own: {source}"


def test_ansible_logs_in_as_sf_and_becomes_root_with_sudo():
    """The lab connects the way cloud VMs are reached: an unprivileged login
    (sf) and sudo (ansible_become in host_vars); root cannot log in at all."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]

    def whoami(*extra):
        proc = subprocess.run(["ansible", "-i", inventory, "node1", "-o", "-m", "ansible.builtin.command",
                               "-a", "id -un", *extra], capture_output=True, text=True, check=False)
        return proc.stdout + proc.stderr

    assert "| CHANGED | rc=0 | (stdout) root" in whoami(), whoami()
    assert "| CHANGED | rc=0 | (stdout) sf" in whoami("-e", "ansible_become=false")
    refused = whoami("-e", "ansible_become=false", "-e", "ansible_user=root")
    assert "UNREACHABLE" in refused and "rc=0" not in refused, refused


def test_modules_load_and_aead_exists(lab):
    host = lab["node1"]
    run_ok(host, "modprobe -a esp4 ip_vs vxlan xfrm_user")
    for module in ("esp4", "ip_vs", "vxlan"):
        assert host.file(f"/sys/module/{module}").is_directory
    # Binding an AF_ALG aead socket makes the kernel build the template.
    alg = "import socket; socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET).bind(('aead', 'rfc4106(gcm(aes))'))"
    run_ok(host, f'python3 -c "{alg}"')
    crypto = host.file("/proc/crypto").content_string
    assert re.search(r"^name\s+: rfc4106\(gcm\(aes\)\)$", crypto, re.M)


def test_ipvs_usable_in_a_netns(lab):
    host = lab["node3"]
    vip = "10.255.77.1:80"
    run_ok(host, f"ipvsadm -A -t {vip} -s rr && ipvsadm -a -t {vip} -r 10.255.77.2:80 -m")
    try:
        listing = run_ok(host, "ipvsadm -Ln")
        assert re.search(rf"TCP\s+{re.escape(vip)} rr", listing)
        assert re.search(r"->\s+10\.255\.77\.2:80\s+Masq", listing)
    finally:
        run_ok(host, f"ipvsadm -D -t {vip}")


@pytest.fixture
def esp_pair(lab, underlay):
    """A hand-made ESP transport SA pair (AES-256-GCM) for ICMP between node1 and node2."""
    a, b = underlay["node1"], underlay["node2"]
    spis = {(a, b): "0x5f6b0a01", (b, a): "0x5f6b0a02"}
    keys = {pair: "0x" + secrets.token_hex(36) for pair in spis}  # 256-bit key + 32-bit salt
    setup, teardown = [], []
    for (src, dst), spi in spis.items():
        setup.append(f"ip xfrm state add src {src} dst {dst} proto esp spi {spi} reqid 77 mode transport "
                     f"replay-window 128 flag esn aead '{AEAD}' {keys[(src, dst)]} 128")
        teardown.append(f"ip xfrm state delete src {src} dst {dst} proto esp spi {spi}")
    for name, me, peer in (("node1", a, b), ("node2", b, a)):
        cmds = list(setup)
        for direction, src, dst in (("out", me, peer), ("in", peer, me)):
            cmds.append(f"ip xfrm policy add dir {direction} src {src}/32 dst {dst}/32 proto icmp "
                        f"tmpl src {src} dst {dst} proto esp reqid 77 mode transport")
        run_ok(lab[name], " && ".join(cmds))
    yield spis
    for name, me, peer in (("node1", a, b), ("node2", b, a)):
        policies = [
            f"ip xfrm policy delete dir out src {me}/32 dst {peer}/32 proto icmp",
            f"ip xfrm policy delete dir in src {peer}/32 dst {me}/32 proto icmp",
        ]
        lab[name].run("; ".join([*teardown, *policies]))


def test_esp_sa_pair_carries_traffic_and_underlay_sees_only_esp(lab, underlay, esp_pair):
    a, b = underlay["node1"], underlay["node2"]
    sender, receiver = lab["node1"], lab["node2"]
    states = run_ok(sender, "ip xfrm state")
    # 36 key bytes (256-bit key + 32-bit salt) and a 128-bit ICV
    assert re.search(rf"aead {re.escape(AEAD)} 0x[0-9a-f]{{72}} 128$", states, re.M), states

    def traffic():
        run_ok(sender, f"ping -c 10 -i 0.05 -W 2 -p 5346504c41494e {b}")  # pattern: "SFPLAIN"

    pcap = capture(receiver, "esp", f"host {a} and host {b}", traffic)
    assert count(receiver, pcap, "ip proto 50") >= 20  # requests and replies
    assert count(receiver, pcap, "icmp") == 0
    assert "5346504c41494e" not in run_ok(receiver, f"tcpdump -nn -x -r {pcap} 2>/dev/null | tr -d ' \\n'")
    counters = run_ok(receiver, f"ip -s xfrm state get src {a} dst {b} proto esp spi {esp_pair[(a, b)]}")
    packets = re.search(r"(\d+)\(packets\)", counters)
    assert packets and int(packets.group(1)) >= 10, counters
    assert re.search(r"^name\s+: rfc4106\(gcm\(aes\)\)$", receiver.file("/proc/crypto").content_string, re.M)


# --- fabric and mesh (issues 4 and 5) -------------------------------------


def overlay(description, encrypted=True):
    """The lab's encrypted overlay (or its plain one): (name, spec)."""
    return next((n, s) for n, s in description["overlays"].items() if s.get("encrypted", True) == encrypted)


def overlay_address(description, host, encrypted=True):
    _, spec = overlay(description, encrypted)
    net = ipaddress.ip_network(spec["subnet"])
    return str(net.network_address + description["nodes"][host]["slot"] * 256 + 1)


@pytest.fixture(scope="module")
def fabric(lab, description):
    """name -> the fabric's VXLAN device (dict from ip -j -d link); the test fails when absent."""
    devices, device = {}, "sf-" + overlay(description)[0]
    for name, host in lab.items():
        links = json.loads(host.run("ip -j -d link show type vxlan").stdout or "[]")
        mine = [link for link in links if link["ifname"] == device]
        if not mine:
            pytest.fail(f"fabric not converged: no {device} VXLAN device on {name} (the converge puts it everywhere)")
        devices[name] = mine[0]
    return devices


@pytest.fixture(scope="module")
def mesh(lab, fabric):
    for name, host in lab.items():
        if not re.search(r"^(TCP|UDP|FWM)\s", host.run("ipvsadm -Ln").stdout, re.M):
            pytest.fail(f"mesh not converged: no IPVS virtual service on {name} (the converge puts one on every host)")
    return True


def sa_blocks(text):
    return [block for block in re.split(r"(?m)^(?=src )", text) if block.startswith("src ")]


def sa_key(block):
    src, dst = re.match(r"src (\S+) dst (\S+)", block).groups()
    return src, dst


def test_xfrm_states_per_peer_and_direction(lab, underlay, fabric):
    for name, host in lab.items():
        blocks = [b for b in sa_blocks(run_ok(host, "ip xfrm state")) if "proto esp" in b]
        pairs = sorted(sa_key(b) for b in blocks)
        expected = sorted([(underlay[name], underlay[p]) for p in lab if p != name]
                          + [(underlay[p], underlay[name]) for p in lab if p != name])
        assert pairs == expected, f"{name}: ESP states {pairs}"
        for block in blocks:
            assert "mode transport" in block
            assert re.search(rf"aead {re.escape(AEAD)} 0x[0-9a-f]{{72}} 128$", block, re.M), block
            assert "flag esn" in block and "anti-replay esn context" in block, block
            window = re.search(r"replay_window (\d+)", block)
            assert window and int(window.group(1)) > 0, block


def test_underlay_sees_esp_and_no_cleartext_vxlan(lab, underlay, description, fabric):
    _, spec = overlay(description)
    port = spec.get("port", 4789)
    sender, receiver = lab["node1"], lab["node2"]

    def traffic():
        run_ok(sender, f"ping -c 20 -i 0.05 -W 2 {overlay_address(description, 'node2')}")

    pcap = capture(receiver, "vxlan", f"host {underlay['node1']} and host {underlay['node2']}", traffic)
    assert count(receiver, pcap, "ip proto 50") >= 40
    assert count(receiver, pcap, f"udp port {port}") == 0


INJECT_MAC = "02:00:00:5f:6b:01"
INJECT = r"""
import socket, struct, sys
ifname, dst_mac, src_ip, dst_ip, port, vni, inner_dst_mac, n = sys.argv[1:]
def csum(data):
    s = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind((ifname, 0))
src_mac = sock.getsockname()[4]
inner = bytes.fromhex(inner_dst_mac.replace(':', '')) + b'\x02\x00\x00\x5f\x6b\x01' + b'\x08\x06' + bytes(28)
vxlan = struct.pack('!II', 0x08000000, int(vni) << 8) + inner
udp = struct.pack('!HHHH', 54321, int(port), 8 + len(vxlan), 0) + vxlan
addrs = socket.inet_aton(src_ip) + socket.inet_aton(dst_ip)
ip = struct.pack('!BBHHHBBH', 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0) + addrs
ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
for _ in range(int(n)):
    sock.send(bytes.fromhex(dst_mac.replace(':', '')) + src_mac + b'\x08\x00' + ip + udp)
"""


def drop_counters(host):
    """Packets counted by every drop rule (nftables, iptables) plus xfrm's inbound errors."""
    total = 0
    nft = host.run("nft list ruleset").stdout
    total += sum(int(m) for m in re.findall(r"counter packets (\d+) bytes \d+ drop", nft))
    ipt = host.run("iptables-save -c").stdout
    total += sum(int(m) for m in re.findall(r"^\[(\d+):\d+\] .*-j DROP", ipt, re.M))
    stat = host.file("/proc/net/xfrm_stat").content_string
    total += sum(int(v) for k, v in re.findall(r"^(XfrmIn\w+)\s+(\d+)", stat, re.M))
    return total


def test_injected_plaintext_vxlan_is_dropped_and_counted(lab, underlay, description, fabric):
    _, spec = overlay(description)
    sender, receiver = lab["node1"], lab["node2"]
    device = fabric["node2"]["ifname"]
    dst_mac = receiver.file("/sys/class/net/eth0/address").content_string.strip()
    inner_mac = receiver.file(f"/sys/class/net/{device}/address").content_string.strip()
    drops_before = drop_counters(receiver)
    sender.run(f"cat > /tmp/sf-kl-inject.py <<'PY'\n{INJECT}\nPY")

    def inject():
        run_ok(sender, f"python3 /tmp/sf-kl-inject.py eth0 {dst_mac} {underlay['node1']} {underlay['node2']} "
                       f"{spec.get('port', 4789)} {spec['vni']} {inner_mac} 5")
        time.sleep(1)

    # The VXLAN device's rx counter also counts the overlay's own (encrypted)
    # traffic; the injected inner frame has a source MAC nothing else uses.
    pcap = capture(receiver, "inject", f"ether src {INJECT_MAC}", inject, iface=device)
    assert count(receiver, pcap, f"ether src {INJECT_MAC}") == 0, "plaintext VXLAN reached the overlay device"
    assert drop_counters(receiver) - drops_before >= 5, "the drop was not counted"


@pytest.mark.parametrize("encrypted, expected", [(True, 1416), (False, 1450)], ids=["encrypted", "plain"])
def test_mtu_exact(lab, description, fabric, results, encrypted, expected):
    # 1500 underlay, VXLAN 50, ESP AES-GCM 34. The largest DF ping that
    # crosses the overlay fills exactly the device MTU; one byte more fails.
    name, _ = overlay(description, encrypted)
    sender, peer = lab["node1"], overlay_address(description, "node2", encrypted)
    mtu = json.loads(run_ok(sender, f"ip -j link show dev sf-{name}"))[0]["mtu"]
    assert mtu == expected
    run_ok(sender, f"ping -M do -s {mtu - 28} -c 2 -W 3 {peer}")
    assert sender.run(f"ping -M do -s {mtu - 27} -c 2 -W 3 {peer}").rc != 0
    results["inner_mtu_" + ("encrypted" if encrypted else "plain")] = mtu


def ipvs_real_servers(host):
    """(kind, id) of each IPVS virtual service -> its real servers."""
    servers, current = {}, None
    for line in host.run("ipvsadm -Ln").stdout.splitlines():
        if re.match(r"^(TCP|UDP|FWM)\s", line):
            current = tuple(line.split()[:2])
            servers[current] = set()
        elif current and line.strip().startswith("->") and "RemoteAddress" not in line:
            servers[current].add(line.split()[1])
    return servers


def short_port(text):
    """'8085:8001' or '53:53/udp' -> (published, target, protocol), read here apart from the code under test."""
    ports, _, protocol = text.partition("/")
    published, target = ports.split(":")
    return int(published), int(target), protocol or "tcp"


def expected_ipvs(description, host):
    """The real servers of each IPVS virtual service ``host`` must have, from the description alone:
    per (protocol, target port) of a service with backends, one cluster service with all of them,
    and, for a local-policy (or host-mode) port, one with the backends in this host's /24 slot,
    unless it has none (the port refuses then, without a service)."""
    want = []
    for service in description["services"].values():
        backends = (service.get("x-swarmfabric") or {}).get("backends")
        if not backends:
            continue
        policies = (service.get("x-swarmfabric") or {}).get("traffic_policy") or {}
        subnet = ipaddress.ip_network(description["overlays"][service["networks"][0]]["subnet"])
        slot = ipaddress.ip_network(f"{subnet.network_address + description['nodes'][host]['slot'] * 256}/24")
        ports = [short_port(p) for p in service.get("ports", [])]
        for key in sorted({(protocol, target) for _published, target, protocol in ports}):
            mine = [p for p in ports if (p[2], p[1]) == key]
            want.append(sorted(backends))
            # Policy keys are quoted published ports, "8085" or "8085/tcp".
            if any(
                "local" in (policies.get(str(published)), policies.get(f"{published}/{protocol}"))
                for published, _target, protocol in mine
            ):
                local = sorted(b for b in backends if ipaddress.ip_address(b.rsplit(":", 1)[0]) in slot)
                if local:
                    want.append(local)
    return sorted(want)


def test_ipvs_real_servers(lab, description, mesh):
    # Exactly the fwmark virtual services the description asks for, each with
    # exactly its real servers: a missing, extra or stale service fails.
    for name, host in lab.items():
        servers = ipvs_real_servers(host)
        wanted = expected_ipvs(description, name)
        assert wanted, "the lab description has no service with backends"
        assert sorted(kind for kind, _id in servers) == ["FWM"] * len(wanted), f"{name}: IPVS services {servers}"
        assert sorted(sorted(real) for real in servers.values()) == wanted, f"{name}: IPVS services {servers}"


def test_published_port_on_every_host_and_spread(lab, underlay, description, mesh):
    published = short_port(description["services"]["echo"]["ports"][0])[0]
    served = set()
    for name in lab:
        # The lab's hosts run with the FORWARD policy Docker sets (sf-kl-init).
        assert run_ok(lab[name], "iptables -S FORWARD").splitlines()[0] == "-P FORWARD DROP"
        client = lab["node1" if name != "node1" else "node2"]
        for _ in range(3):
            # busybox 1.35's wget crashes with -T; timeout(1) bounds it instead.
            page = run_ok(client, f"timeout 10 busybox wget -q -O- http://{underlay[name]}:{published}/").strip()
            assert page in ("node1", "node2"), f"{name}:{published} answered {page!r}"
            served.add(page)
    assert len(served) > 1


def test_key_rotation_loses_no_packet(lab, underlay, description, fabric, results, rotations):
    playbook = PROJECT / "playbooks" / "rotate-keys.yml"
    host = lab["node1"]
    spis_before = {b.split("spi ")[1].split()[0] for b in sa_blocks(run_ok(host, "ip xfrm state"))}
    peer = overlay_address(description, "node2")
    run_ok(host, f"nohup ping -i 0.02 {peer} >/tmp/sf-kl-rot.log 2>&1 & echo $! >/tmp/sf-kl-rot.pid")
    # Count node1's ESP states every 50 ms while the keys rotate.
    run_ok(host, "touch /tmp/sf-kl-sample.on; (while [ -e /tmp/sf-kl-sample.on ]; do ip xfrm state | grep -c '^src';"
                 " sleep 0.05; done >/tmp/sf-kl-states.log) >/dev/null 2>&1 &")
    try:
        subprocess.run(["ansible-playbook", "-i", str(pathlib.Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
                        str(playbook)], check=True)
        rotations.append("test_key_rotation_loses_no_packet")
    finally:
        run_ok(host, "sleep 1; kill -INT $(cat /tmp/sf-kl-rot.pid); rm -f /tmp/sf-kl-sample.on; sleep 0.5")
    summary = run_ok(host, "cat /tmp/sf-kl-rot.log")
    sent, received = map(int, re.search(r"(\d+) packets transmitted, (\d+) received", summary).groups())
    assert sent > 50 and received == sent, summary
    # At most 4 x (N-1) states at any moment (old and new, both directions).
    samples = [int(n) for n in run_ok(host, "cat /tmp/sf-kl-states.log").split()]
    peers = len(lab) - 1
    assert len(samples) > 20 and min(samples) == 2 * peers and max(samples) <= 4 * peers, samples
    results.update(xfrm_states_rotation_max=max(samples), xfrm_states_samples=len(samples), nodes=len(lab))
    spis_after = {b.split("spi ")[1].split()[0] for b in sa_blocks(run_ok(host, "ip xfrm state"))}
    assert spis_after and not spis_after & spis_before
