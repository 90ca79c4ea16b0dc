"""Kernel lab: the fabric fails closed, also across a (simulated) reboot.

Each layer is shown on its own, on Debian's 6.1 kernel:

- the guard table (inet swarmfabric_fabric) alone drops plaintext VXLAN
  toward the encrypted VNI (the xfrm in policy removed), and sends none of
  its own (the out policy removed);
- the xfrm in policy alone drops it too (the table removed), counted as
  XfrmInTmplMismatch;
- after `nft flush ruleset` the boot unit's ExecStart, run by hand (no
  systemd in the lab's hosts), puts the guard back before any converge.

Every test puts back what it removed (rules, policies), so that the checks
in test_kernel.py that run after these see the converged lab.
"""

import json
import re
import time

import pytest
from sf_capture import capture, count, run_ok
from test_kernel import INJECT, INJECT_MAC, overlay, overlay_address

TABLE = "swarmfabric_fabric"
GUARD = "/etc/swarmfabric/fabric-guard.nft"
UNIT = "/etc/systemd/system/swarmfabric-fabric-guard.service"
WANTS = "/etc/systemd/system/sysinit.target.wants/swarmfabric-fabric-guard.service"


@pytest.fixture(scope="module")
def sealed(lab, description):
    """(name, vni, port, device) of the encrypted overlay; the test fails unless converged."""
    name, spec = overlay(description)
    device = f"sf-{name}"
    for host_name, host in lab.items():
        if host.run(f"ip link show dev {device}").rc != 0:
            pytest.fail(f"fabric not converged: no {device} on {host_name} (the converge puts it on every host)")
    return name, spec["vni"], spec.get("port", 4789), device


def guard_counters(host):
    """chain -> packets counted by the guard's drop rules; {} without the table."""
    res = host.run(f"nft -j list table inet {TABLE}")
    if res.rc != 0:
        return {}
    counters = {}
    for item in json.loads(res.stdout)["nftables"]:
        rule = item.get("rule")
        if rule:
            packets = sum(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
            counters[rule["chain"]] = counters.get(rule["chain"], 0) + packets
    return counters


def xfrm_stat(host, name):
    return int(re.search(rf"^{name}\s+(\d+)", host.file("/proc/net/xfrm_stat").content_string, re.M).group(1))


def policy_add_line(host, direction, src, dst, port):
    """The `ip xfrm policy add` that re-creates one live policy of ours."""
    text = run_ok(host, f"ip xfrm policy list dir {direction} src {src}/32 dst {dst}/32 proto udp dport {port}")
    tmpl = re.search(r"tmpl src (\S+) dst (\S+)\s+proto esp(?: spi (\S+))? reqid (\d+) mode (\S+)", text)
    assert tmpl, f"no {direction} policy {src} -> {dst}: {text!r}"
    priority = re.search(r"priority (\d+)", text)
    spi = f" spi {tmpl.group(3)}" if tmpl.group(3) else ""
    return (f"ip xfrm policy add src {src}/32 dst {dst}/32 proto udp dport {port} dir {direction}"
            f"{' priority ' + priority.group(1) if priority else ''}"
            f" tmpl src {tmpl.group(1)} dst {tmpl.group(2)} proto esp{spi} reqid {tmpl.group(4)} mode {tmpl.group(5)}")


class Ruleset:
    """Saves a host's whole ruleset (iptables-nft tables through
    iptables-save, the others through nft) and puts it back."""

    def __init__(self, host):
        self.host = host
        self.iptables = run_ok(host, "iptables-save")
        self.ip6tables = run_ok(host, "ip6tables-save")
        iptables = {("ip", t) for t in re.findall(r"^\*(\w+)", self.iptables, re.M)}
        iptables |= {("ip6", t) for t in re.findall(r"^\*(\w+)", self.ip6tables, re.M)}
        self.tables = []
        for line in run_ok(host, "nft list tables").splitlines():
            family, name = line.split()[1:3]
            text = run_ok(host, f"nft list table {family} {name}")
            if (family, name) not in iptables and "managed by iptables-nft" not in text:
                self.tables.append(text)

    def restore(self):
        run_ok(self.host, "nft flush ruleset")
        run_ok(self.host, f"iptables-restore <<'EOF'\n{self.iptables}EOF")
        run_ok(self.host, f"ip6tables-restore <<'EOF'\n{self.ip6tables}EOF")
        for text in self.tables:
            run_ok(self.host, f"nft -f - <<'EOF'\n{text}\nEOF")


def inject(lab, underlay, sealed, n=5):
    """Send n forged plaintext VXLAN frames for the encrypted VNI from node1
    to node2's underlay address; return how many reached node2's VXLAN device."""
    _, vni, port, device = sealed
    sender, receiver = lab["node1"], lab["node2"]
    dst_mac = receiver.file("/sys/class/net/eth0/address").content_string.strip()
    inner_mac = receiver.file(f"/sys/class/net/{device}/address").content_string.strip()
    sender.run(f"cat > /tmp/sf-kl-inject.py <<'PY'\n{INJECT}\nPY")

    def send():
        run_ok(sender, f"python3 /tmp/sf-kl-inject.py eth0 {dst_mac} {underlay['node1']} {underlay['node2']} "
                       f"{port} {vni} {inner_mac} {n}")
        time.sleep(1)

    pcap = capture(receiver, "fc-inject", f"ether src {INJECT_MAC}", send, iface=device)
    return count(receiver, pcap, f"ether src {INJECT_MAC}")


def test_boot_mechanism_is_installed(lab):
    for name, host in lab.items():
        guard = host.file(GUARD)
        assert guard.exists and guard.mode == 0o600, f"{name}: {GUARD}"
        assert f"table inet {TABLE}" in guard.content_string
        unit = host.file(UNIT).content_string
        assert re.search(r"^Before=.*\bdocker\.service\b", unit, re.M)
        assert re.search(r"^Before=.*\bnetwork-pre\.target\b", unit, re.M)
        assert f"ExecStart=/usr/sbin/nft -f {GUARD}" in unit.splitlines()
        assert host.file(WANTS).linked_to == UNIT
        # The boot copy is what the converge applied: loading it changes nothing.
        before = run_ok(host, f"nft -s list table inet {TABLE}")
        run_ok(host, f"nft -f {GUARD}")
        assert run_ok(host, f"nft -s list table inet {TABLE}") == before


def test_after_a_flushed_ruleset_the_boot_unit_drops_plaintext_before_any_converge(lab, underlay, sealed):
    receiver = lab["node2"]
    unit = receiver.file(UNIT).content_string
    [exec_start] = [line.removeprefix("ExecStart=") for line in unit.splitlines() if line.startswith("ExecStart=")]
    saved = Ruleset(receiver)
    try:
        run_ok(receiver, "nft flush ruleset")  # the reboot, as far as nftables goes
        assert receiver.run(f"nft list table inet {TABLE}").rc != 0
        run_ok(receiver, exec_start)
        mismatch = xfrm_stat(receiver, "XfrmInTmplMismatch")
        delivered = inject(lab, underlay, sealed)
        assert delivered == 0, "plaintext VXLAN reached the overlay device"
        assert guard_counters(receiver).get("input", 0) >= 5, "the boot guard did not count the drop"
        # The guard dropped it, before the xfrm policy had a chance to.
        assert xfrm_stat(receiver, "XfrmInTmplMismatch") == mismatch
    finally:
        saved.restore()


def test_guard_alone_drops_plaintext_with_the_in_policy_removed(lab, underlay, sealed):
    _, _, port, _ = sealed
    receiver, src, dst = lab["node2"], underlay["node1"], underlay["node2"]
    policy = policy_add_line(receiver, "in", src, dst, port)
    run_ok(receiver, f"ip xfrm policy delete dir in src {src}/32 dst {dst}/32 proto udp dport {port}")
    try:
        drops = guard_counters(receiver).get("input", 0)
        assert inject(lab, underlay, sealed) == 0, "plaintext VXLAN reached the overlay device"
        assert guard_counters(receiver)["input"] - drops >= 5
    finally:
        run_ok(receiver, policy)


def test_policy_alone_drops_plaintext_with_the_table_removed(lab, underlay, sealed):
    """On 6.1 the UDP receive path checks the inbound xfrm policy before it
    hands the datagram to the VXLAN socket: the second, independent layer."""
    receiver = lab["node2"]
    table = run_ok(receiver, f"nft list table inet {TABLE}")
    run_ok(receiver, f"nft delete table inet {TABLE}")
    try:
        mismatch = xfrm_stat(receiver, "XfrmInTmplMismatch")
        assert inject(lab, underlay, sealed) == 0, "plaintext VXLAN reached the overlay device"
        assert xfrm_stat(receiver, "XfrmInTmplMismatch") - mismatch >= 5
    finally:
        run_ok(receiver, f"nft -f - <<'EOF'\n{table}\nEOF")


def test_egress_guard_sends_no_plaintext_with_the_out_policy_removed(lab, underlay, description, sealed):
    _, _, port, _ = sealed
    sender, receiver = lab["node1"], lab["node2"]
    src, dst = underlay["node1"], underlay["node2"]
    peer = overlay_address(description, "node2")
    # With the policy, ESP passes the egress rule: the guard sees only plaintext.
    drops = guard_counters(sender).get("output", 0)
    run_ok(sender, f"ping -c 3 -i 0.2 -W 2 {peer}")
    assert guard_counters(sender)["output"] == drops
    policy = policy_add_line(sender, "out", src, dst, port)
    run_ok(sender, f"ip xfrm policy delete dir out src {src}/32 dst {dst}/32 proto udp dport {port}")
    try:
        def traffic():
            assert sender.run(f"ping -c 10 -i 0.1 -W 1 {peer}").rc != 0

        pcap = capture(receiver, "fc-egress", f"host {src} and host {dst}", traffic)
        assert count(receiver, pcap, f"udp port {port}") == 0, "plaintext VXLAN left node1"
        assert guard_counters(sender)["output"] - drops >= 3  # pings, or ARP when the entry went stale
    finally:
        run_ok(sender, policy)
    run_ok(sender, f"ping -c 3 -i 0.2 -W 2 {peer}")
