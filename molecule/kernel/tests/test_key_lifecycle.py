"""Key lifecycle in the kernel lab (issue 12): reboots after a rotation and
rotations that would leave a host out.

Keys are read as root from `ip xfrm state` to compare them, and only ever
appear here as a SHA-256 prefix: no key is printed, not even in a failed
assertion.
"""

import hashlib
import ipaddress
import os
import pathlib
import re
import subprocess

import pytest
from sf_capture import capture, count, run_ok

SCENARIO = pathlib.Path(__file__).resolve().parents[1]
PROJECT = SCENARIO.parents[1]


def playbook(path, *args):
    """Run a playbook against the lab; (rc, output). The output names no key (all no_log)."""
    inventory = pathlib.Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    done = subprocess.run(["ansible-playbook", "-i", str(inventory), str(path), *args],
                          capture_output=True, text=True, timeout=1500, check=False)
    return done.returncode, done.stdout + done.stderr


def sealed(description):
    return next((n, s) for n, s in description["overlays"].items() if s.get("encrypted", True))


def sealed_address(description, host):
    _, spec = sealed(description)
    return str(ipaddress.ip_network(spec["subnet"]).network_address + description["nodes"][host]["slot"] * 256 + 1)


def esp_sas(host):
    """(src, dst, spi) -> hash of the key, for every ESP SA on the host."""
    out = {}
    for block in re.split(r"(?m)^(?=src )", run_ok(host, "ip xfrm state")):
        head = re.match(r"src (\S+) dst (\S+)\s+proto esp spi (0x[0-9a-f]+)", block)
        key = re.search(r"aead \S+ 0x([0-9a-f]+) ", block)
        if head and key:
            out[head.groups()] = hashlib.sha256(key.group(1).encode()).hexdigest()[:16]
    return out


def out_reqids(host):
    return {int(r) for r in re.findall(r"dir out .*?reqid (\d+)", run_ok(host, "ip xfrm policy"), re.S)}


def snapshot(lab):
    return {name: esp_sas(host) for name, host in lab.items()}


def pairs(snap):
    return {(ident[2], key) for sas in snap.values() for ident, key in sas.items()}


def ping_ok(host, address, n=3, within=40):
    """n of n pings answered, within ``within`` seconds: a peer's neighbour entry for the
    rebooted host's shim still names the MAC it had before (the shim is new), and the
    kernel takes some seconds (NUD probes) to learn the new one."""
    out = host.run(f"end=$(( $(date +%s) + {within} )); while :; do"
                   f" r=$(ping -c {n} -i 0.2 -W 2 {address} | grep -o '[0-9]* received');"
                   f" [ \"$r\" = '{n} received' ] && echo ok && exit 0;"
                   f" [ $(date +%s) -ge $end ] && echo \"last: $r\" && exit 1; sleep 1; done")
    return out.rc == 0, f"{out.stdout.strip()}; neighbour: {host.run(f'ip neigh show {address}').stdout.strip()}"


WIPE = (
    "ip xfrm state flush; ip xfrm policy flush;"
    " for dev in $(ip -o link show | sed -n 's/^[0-9]*: \\(sf-[^:@]*\\).*/\\1/p');"
    " do ip link del \"$dev\" 2>/dev/null; done;"
    " nft list tables | awk '$3 ~ /^swarmfabric/ {print $2, $3}' | while read fam name;"
    " do nft delete table \"$fam\" \"$name\"; done; true"
)


@pytest.fixture(scope="module")
def encrypted_fabric(lab, description):
    device = "sf-" + sealed(description)[0]
    for name, host in lab.items():
        if host.run(f"ip link show dev {device}").rc != 0:
            pytest.fail(f"fabric not converged on {name}: no {device} (the converge puts it on every host)")
    return device


def test_reboot_after_rotation_rekeys_the_overlay_and_no_key_from_before_survives(
        lab, underlay, description, encrypted_fabric, rotations):
    if not rotations:  # test_kernel.py's rotation did not run: rotate here
        rc, out = playbook(PROJECT / "playbooks" / "rotate-keys.yml")
        assert rc == 0, out[-3000:]
        rotations.append("test_key_lifecycle")
    before = snapshot(lab)
    reqids = {name: out_reqids(host) for name, host in lab.items()}
    assert len(set().union(*reqids.values())) == 1, reqids  # one epoch everywhere after the rotation
    rebooted, me = "node2", underlay["node2"]

    run_ok(lab[rebooted], WIPE)
    assert esp_sas(lab[rebooted]) == {} and out_reqids(lab[rebooted]) == set()
    assert lab[rebooted].run(f"ip link show dev {encrypted_fabric}").rc != 0
    assert "swarmfabric" not in run_ok(lab[rebooted], "nft list tables")

    rc, out = playbook(SCENARIO / "converge.yml")
    assert rc == 0, out[-3000:]
    after = snapshot(lab)

    # The converge found node2's pairs broken and rotated the whole overlay past the
    # epoch its peers used: one epoch everywhere again, newer than before the wipe.
    epochs = {name: out_reqids(host) for name, host in lab.items()}
    assert len(set().union(*epochs.values())) == 1, epochs
    assert min(set().union(*epochs.values())) > max(set().union(*reqids.values())), (epochs, reqids)
    # Every host holds exactly one SA per direction per peer again.
    peers = len(lab) - 1
    assert {name: len(sas) for name, sas in after.items()} == {name: 2 * peers for name in lab}
    # No SA on any host has an (SPI, key) pair that existed before the wipe: not the
    # rebooted host's, and not those between the hosts the reboot did not touch.
    reused = pairs(after) & pairs(before)
    assert not reused, f"{len(reused)} SA(s) came back with an (SPI, key) pair used before the wipe"
    # Both ends of every direction agree (same SPI, same key hash).
    for name, sas in after.items():
        for (src, dst, spi), key in sas.items():
            other = next(n for n in lab if underlay[n] == (dst if underlay[name] == src else src))
            assert after[other].get((src, dst, spi)) == key, f"{name} and {other} disagree on SA {spi}"
    touching = {(ident[2], key) for sas in after.values() for ident, key in sas.items() if me in ident[:2]}
    assert len(touching) == 2 * peers  # two directions per peer, the same pair at both ends

    def traffic():
        for name, host in lab.items():
            for peer in lab:
                if peer != name:
                    ok, why = ping_ok(host, sealed_address(description, peer))
                    if not ok:
                        stats = {h: " ".join(line for line in lab[h].file("/proc/net/xfrm_stat").content_string
                                             .splitlines() if not line.endswith(" 0")) for h in (name, peer)}
                        pytest.fail(f"{name} cannot reach {peer}: {why}; xfrm_stat {stats}")

    pcap = capture(lab[rebooted], "reboot", f"host {me}", traffic)
    port = sealed(description)[1].get("port", 4789)
    assert count(lab[rebooted], pcap, "ip proto 50") >= 4 * peers * 3
    assert count(lab[rebooted], pcap, f"udp port {port}") == 0


def test_rotation_with_a_host_left_out_is_refused_and_nothing_leaves_in_plaintext(
        lab, underlay, description, encrypted_fabric):
    left_out, sender = "node3", lab["node1"]
    before = snapshot(lab)
    policies = {name: run_ok(host, "ip xfrm policy") for name, host in lab.items()}
    outputs = []

    def rotate_without_node3():
        run_ok(sender, f"nohup ping -i 0.2 {sealed_address(description, left_out)} >/tmp/sf-kl-left.log 2>&1 &"
                       " echo $! >/tmp/sf-kl-left.pid")
        try:
            for limit in ("node1,node2", "localhost,node1,node2", "node1,node2,node3"):
                outputs.append((limit, *playbook(PROJECT / "playbooks" / "rotate-keys.yml", "--limit", limit)))
        finally:
            run_ok(sender, "sleep 1; kill -INT $(cat /tmp/sf-kl-left.pid); sleep 0.5")

    pcap = capture(sender, "left-out", f"host {underlay['node1']} and host {underlay[left_out]}",
                   rotate_without_node3)
    for limit, rc, out in outputs:
        assert rc != 0, f"--limit {limit}: the rotation was not refused\n{out[-2000:]}"
        assert "Cannot rotate the fabric keys" in out, f"--limit {limit}\n{out[-2000:]}"
    # The first two name the member left out; the third says the plan never ran.
    assert all(left_out in out for _limit, _rc, out in outputs[:2])
    assert "localhost" in outputs[2][2]
    # Nothing changed on any host.
    assert snapshot(lab) == before
    assert {name: run_ok(host, "ip xfrm policy") for name, host in lab.items()} == policies
    # The ping to the member left out kept flowing, and only as ESP.
    summary = run_ok(sender, "cat /tmp/sf-kl-left.log")
    sent, received = map(int, re.search(r"(\d+) packets transmitted, (\d+) received", summary).groups())
    assert sent > 5 and sent - received <= 2, summary
    port = sealed(description)[1].get("port", 4789)
    assert count(sender, pcap, f"udp port {port}") == 0
    assert count(sender, pcap, "ip proto 50") >= 2 * received
