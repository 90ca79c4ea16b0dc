"""The fabric modules against the real kernel, in network namespaces.

Three namespaces (sf-fab-a/b/c) hang off a bridge in a fourth (sf-fab-u)
through veth pairs: that is the underlay. The modules run inside each
namespace through `ip netns exec <ns> ansible localhost -c local -m <module>`,
and every assertion reads kernel state back with `ip -j`/`bridge -j`.
"""

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "ansible"
UNDERLAY_NS = "sf-fab-u"
HOSTS = {"sf-fab-a": "192.168.77.1", "sf-fab-b": "192.168.77.2", "sf-fab-c": "192.168.77.3"}
SLOTS = {"sf-fab-a": 1, "sf-fab-b": 2, "sf-fab-c": 3}
DEVICE = "sf-fabnet"
SHIM = "sf-fabnet-h"
VNI = 300
PORT = 4789

PING = ["ping"] if shutil.which("ping") else ["busybox", "ping"]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or not ANSIBLE.exists(),
    reason="needs root, iproute2 and the project venv",
)


def sh(*argv, check=True):
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def nsjson(ns, *argv):
    out = sh("ip", "netns", "exec", ns, *argv).stdout
    return json.loads(out) if out.strip() else []


def link(ns, dev):
    res = sh("ip", "netns", "exec", ns, "ip", "-j", "-d", "link", "show", "dev", dev, check=False)
    return json.loads(res.stdout)[0] if res.returncode == 0 else None


def fdb_peers(ns, dev=DEVICE):
    return sorted(e["dst"] for e in nsjson(ns, "bridge", "-j", "fdb", "show", "dev", dev)
                  if e["mac"] == "00:00:00:00:00:00")


def run_module(ns, module, args, check=False, diff=False):
    argv = ["ip", "netns", "exec", ns, str(ANSIBLE), "localhost", "-i", "localhost,", "-c", "local",
            "-e", "ansible_python_interpreter=/usr/bin/python3", "-m", module, "-a", json.dumps(args)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    env = dict(os.environ, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json")
    res = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env, check=False)
    try:
        data = json.loads(res.stdout)
    except ValueError:
        pytest.fail(f"no JSON from ansible: {res.stdout}\n{res.stderr}")
    return data["plays"][0]["tasks"][0]["hosts"]["localhost"]


def overlay_args(ns, peers=None, **extra):
    slot = SLOTS[ns]
    args = {"name": "fabnet", "device": DEVICE, "vni": VNI, "port": PORT, "local": HOSTS[ns],
            "peers": [HOSTS[p] for p in (peers if peers is not None else sorted(set(HOSTS) - {ns}))],
            "mtu": "auto", "address": f"10.20.{slot}.1", "gateway": "10.20.0.1", "prefixlen": 16,
            "socket": "/nonexistent/docker.sock"}
    args.update(extra)
    return args


def _cleanup():
    for ns in [*HOSTS, UNDERLAY_NS, "sf-fab-e"]:
        sh("ip", "netns", "del", ns, check=False)


@pytest.fixture(scope="module")
def underlay():
    _cleanup()
    sh("ip", "netns", "add", UNDERLAY_NS)
    sh("ip", "-n", UNDERLAY_NS, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", UNDERLAY_NS, "link", "set", "br0", "up")
    for i, (ns, addr) in enumerate(HOSTS.items()):
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", f"sf-fab-v{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", f"sf-fab-v{i}", "netns", UNDERLAY_NS)
        sh("ip", "-n", UNDERLAY_NS, "link", "set", f"sf-fab-v{i}", "master", "br0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    yield HOSTS
    _cleanup()


@pytest.fixture(scope="module")
def fabric(underlay):
    results = {ns: run_module(ns, "vxlan_overlay", overlay_args(ns), diff=True) for ns in underlay}
    return results


def test_device_created_as_described(fabric):
    for ns, addr in HOSTS.items():
        assert fabric[ns]["changed"] is True, fabric[ns]
        dev = link(ns, DEVICE)
        assert dev is not None, f"{DEVICE} missing in {ns}"
        info = dev["linkinfo"]["info_data"]
        assert dev["linkinfo"]["info_kind"] == "vxlan"
        assert info["id"] == VNI
        assert info["port"] == PORT
        assert info["local"] == addr
        assert info["learning"] is False
        assert "group" not in info
        assert dev["mtu"] == 1450
        assert "UP" in dev["flags"]


def test_fdb_has_one_entry_per_peer(fabric):
    for ns in HOSTS:
        assert fdb_peers(ns) == sorted(a for n, a in HOSTS.items() if n != ns)


def test_shim_holds_host_and_gateway_address(fabric):
    for ns, slot in SLOTS.items():
        shim = link(ns, SHIM)
        assert shim["linkinfo"]["info_kind"] == "macvlan"
        assert shim["linkinfo"]["info_data"]["mode"] == "bridge"
        assert shim["link"] == DEVICE
        assert shim["mtu"] == 1450
        addrs = nsjson(ns, "ip", "-j", "addr", "show", "dev", SHIM)[0]["addr_info"]
        # The host's own address is the primary (source) address, the anycast gateway secondary.
        assert [(f"{a['local']}/{a['prefixlen']}", a.get("secondary", False)) for a in addrs
                if a["family"] == "inet"] == [(f"10.20.{slot}.1/16", False), ("10.20.0.1/16", True)]


def test_diff_mode_shows_before_and_after(fabric):
    diff = fabric["sf-fab-a"]["diff"]
    assert diff["before"] == {}
    assert diff["after"]["peers"] == ["192.168.77.2", "192.168.77.3"]


def test_plain_traffic_crosses_the_overlay(fabric):
    for src, dst in (("sf-fab-a", "10.20.2.1"), ("sf-fab-c", "10.20.1.1"), ("sf-fab-b", "10.20.3.1")):
        res = sh("ip", "netns", "exec", src, *PING, "-c", "2", "-W", "2", dst, check=False)
        assert res.returncode == 0, res.stdout + res.stderr


def test_rerun_is_idempotent(fabric):
    for ns in HOSTS:
        res = run_module(ns, "vxlan_overlay", overlay_args(ns))
        assert res["changed"] is False, res["actions"]
        assert res["actions"] == []


def test_check_mode_changes_nothing(fabric):
    ns = "sf-fab-a"
    res = run_module(ns, "vxlan_overlay", overlay_args(ns, peers=["sf-fab-b"], mtu=1400), check=True)
    assert res["changed"] is True
    assert "remove fdb peer 192.168.77.3" in res["actions"]
    assert fdb_peers(ns) == ["192.168.77.2", "192.168.77.3"]
    assert link(ns, DEVICE)["mtu"] == 1450


def test_removed_peer_disappears_and_mtu_int(fabric):
    ns = "sf-fab-a"
    res = run_module(ns, "vxlan_overlay", overlay_args(ns, peers=["sf-fab-b"], mtu=1400))
    assert res["changed"] is True
    assert fdb_peers(ns) == ["192.168.77.2"]
    assert link(ns, DEVICE)["mtu"] == 1400
    assert link(ns, SHIM)["mtu"] == 1400
    again = run_module(ns, "vxlan_overlay", overlay_args(ns, peers=["sf-fab-b"], mtu=1400))
    assert again["changed"] is False
    # Back to the full mesh for the remaining tests.
    run_module(ns, "vxlan_overlay", overlay_args(ns))
    assert fdb_peers(ns) == ["192.168.77.2", "192.168.77.3"]


def test_vni_change_recreates_device(fabric):
    ns = "sf-fab-c"
    res = run_module(ns, "vxlan_overlay", overlay_args(ns, vni=301))
    assert res["changed"] is True
    assert link(ns, DEVICE)["linkinfo"]["info_data"]["id"] == 301
    assert fdb_peers(ns) == ["192.168.77.1", "192.168.77.2"]
    assert link(ns, SHIM)["link"] == DEVICE
    run_module(ns, "vxlan_overlay", overlay_args(ns))
    assert link(ns, DEVICE)["linkinfo"]["info_data"]["id"] == VNI


def shim_addresses(ns):
    entries = nsjson(ns, "ip", "-j", "addr", "show", "dev", SHIM)
    return [(f"{a['local']}/{a['prefixlen']}", a.get("secondary", False))
            for a in entries[0]["addr_info"] if a["family"] == "inet"]


def test_slot_change_moves_the_host_address_in_one_run(fabric):
    """A new slot moves the primary address: one run, the gateway kept as
    secondary (deleting the old primary first would take it along), peers
    reach the new address, and the next run changes nothing."""
    ns, vip = "sf-fab-a", "10.20.99.7/32"
    sh("ip", "netns", "exec", ns, "ip", "addr", "add", vip, "dev", SHIM)  # a mesh VIP: not ours
    try:
        res = run_module(ns, "vxlan_overlay", overlay_args(ns, address="10.20.9.1"))
        assert not res.get("failed"), res.get("msg")
        assert res["changed"] is True
        assert shim_addresses(ns) == [("10.20.99.7/32", False), ("10.20.9.1/16", False), ("10.20.0.1/16", True)]
        for src in ("sf-fab-b", "sf-fab-c"):
            ping = sh("ip", "netns", "exec", src, *PING, "-c", "2", "-W", "2", "10.20.9.1", check=False)
            assert ping.returncode == 0, ping.stdout + ping.stderr
        again = run_module(ns, "vxlan_overlay", overlay_args(ns, address="10.20.9.1"))
        assert again["changed"] is False, again["actions"]
        # A new subnet and prefix length: the old addresses go too, in one run.
        moved = overlay_args(ns, address="10.21.1.1", gateway="10.21.0.1", prefixlen=20)
        assert run_module(ns, "vxlan_overlay", moved)["changed"] is True
        assert shim_addresses(ns) == [("10.20.99.7/32", False), ("10.21.1.1/20", False), ("10.21.0.1/20", True)]
        assert run_module(ns, "vxlan_overlay", moved)["changed"] is False
    finally:
        back = run_module(ns, "vxlan_overlay", overlay_args(ns))
        sh("ip", "netns", "exec", ns, "ip", "addr", "del", vip, "dev", SHIM, check=False)
    assert not back.get("failed"), back.get("msg")
    assert shim_addresses(ns) == [("10.20.1.1/16", False), ("10.20.0.1/16", True)]


def render(template, overlays, **extra):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(REPO / "roles" / "fabric" / "templates"),
                             undefined=jinja2.StrictUndefined, trim_blocks=True)
    env.filters["dirname"] = os.path.dirname
    values = {"fabric_table": "swarmfabric_fabric", "fabric_guard_file": "/etc/swarmfabric/fabric-guard.nft",
              "fabric_guard_unit": "swarmfabric-fabric-guard.service", "swarmfabric_host": {"overlays": overlays}}
    return env.get_template(template).render({**values, **extra})


def render_drop_table(overlays):
    return render("fabric.nft.j2", overlays)


def drop_counter(ns, chain="input"):
    table = nsjson(ns, "nft", "-j", "list", "table", "inet", "swarmfabric_fabric")["nftables"]
    rules = [item["rule"] for item in table if "rule" in item and item["rule"]["chain"] == chain]
    [rule] = rules
    return next(expr["counter"]["packets"] for expr in rule["expr"] if "counter" in expr)


@contextlib.contextmanager
def counting(ns, dev, match):
    """Count packets matching `match` on dev's ingress in ns (a netdev table of
    the test's own); yields a function that reads the count."""
    name = "sf_test_count_" + dev.replace("-", "_")
    table = (f'table netdev {name} {{\n chain c {{\n  type filter hook ingress device "{dev}" priority -500;\n'
             f'  {match} counter\n }}\n}}\n')
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=table, text=True, check=True)

    def packets():
        listing = nsjson(ns, "nft", "-j", "list", "table", "netdev", name)["nftables"]
        [rule] = [item["rule"] for item in listing if "rule" in item]
        return next(expr["counter"]["packets"] for expr in rule["expr"] if "counter" in expr)

    try:
        yield packets
    finally:
        sh("ip", "netns", "exec", ns, "nft", "delete", "table", "netdev", name, check=False)


def shim_mac(ns):
    return link(ns, SHIM)["address"]


def test_plaintext_drop_rule_drops_and_counts_only_its_vni(fabric):
    """The template's rule, loaded into sf-fab-b, drops a's plain VXLAN for VNI 300 and counts it."""
    ns, src = "sf-fab-b", "sf-fab-a"
    ping = [*PING, "-c", "2", "-W", "1", "10.20.2.1"]
    other_vni = render_drop_table([{"name": "other", "vni": 301, "port": PORT, "encrypted": True},
                                   {"name": "plain", "vni": VNI, "port": PORT, "encrypted": False}])
    assert "0x12d" in other_vni and "0x12c" not in other_vni
    ours = render_drop_table([{"name": "fabnet", "vni": VNI, "port": PORT, "encrypted": True}])
    try:
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=other_vni, text=True, check=True)
        assert sh("ip", "netns", "exec", src, *ping, check=False).returncode == 0
        assert drop_counter(ns) == 0
        sh("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "swarmfabric_fabric")
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ours, text=True, check=True)
        assert sh("ip", "netns", "exec", src, *ping, check=False).returncode != 0
        assert drop_counter(ns) >= 2
    finally:
        sh("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "swarmfabric_fabric", check=False)
    assert sh("ip", "netns", "exec", src, *ping, check=False).returncode == 0


FABNET_ENCRYPTED = [{"name": "fabnet", "vni": VNI, "port": PORT, "encrypted": True}]


def test_egress_guard_sends_no_plain_vxlan_of_an_encrypted_vni(fabric):
    """With the table in sf-fab-a and no xfrm policy toward b (no ESP on
    this kernel), a's VXLAN for VNI 300 never leaves: counted on output, and
    b's device receives nothing."""
    ns, dst = "sf-fab-a", "sf-fab-b"
    table = render_drop_table(FABNET_ENCRYPTED)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=table, text=True, check=True)
        with counting(dst, "eth0", f"ip saddr {HOSTS[ns]} udp dport {PORT}") as arrived:
            assert sh("ip", "netns", "exec", ns, *PING, "-c", "2", "-W", "1", "10.20.2.1",
                      check=False).returncode != 0
            assert drop_counter(ns, "output") >= 2
            assert arrived() == 0
    finally:
        sh("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "swarmfabric_fabric", check=False)


def unit_exec_start(unit_text):
    [line] = [line for line in unit_text.splitlines() if line.startswith("ExecStart=")]
    return line.removeprefix("ExecStart=").split()


def test_boot_guard_drops_plaintext_after_a_flushed_ruleset(fabric, tmp_path):
    """A simulated reboot: `nft flush ruleset`, then the boot unit's own
    ExecStart (no systemd here). Before any converge, plaintext VXLAN toward
    the encrypted VNI is dropped and counted, and never delivered."""
    ns, src = "sf-fab-b", "sf-fab-a"
    guard_file = tmp_path / "fabric-guard.nft"
    guard_file.write_text(render("fabric-guard.nft.j2", FABNET_ENCRYPTED))
    unit = render("swarmfabric-fabric-guard.service.j2", FABNET_ENCRYPTED, fabric_guard_file=str(guard_file))
    assert "Before=network-pre.target docker.service" in unit
    assert "WantedBy=sysinit.target" in unit
    argv = unit_exec_start(unit)
    assert argv == ["/usr/sbin/nft", "-f", str(guard_file)]
    if not Path(argv[0]).exists():
        argv[0] = shutil.which("nft")
    ping = [*PING, "-c", "2", "-W", "1", "10.20.2.1"]
    try:
        sh("ip", "netns", "exec", ns, "nft", "flush", "ruleset")
        sh("ip", "netns", "exec", ns, *argv)
        sh("ip", "netns", "exec", ns, *argv)  # twice: the table is replaced, not doubled
        with counting(ns, DEVICE, f"ether saddr {shim_mac(src)}") as delivered, \
                counting(ns, "eth0", f"ip saddr {HOSTS[src]} udp dport {PORT}") as arrived:
            assert sh("ip", "netns", "exec", src, *ping, check=False).returncode != 0
            assert arrived() >= 2  # the plaintext did reach the host...
            assert drop_counter(ns) >= 2  # ...was dropped by the guard...
            assert delivered() == 0  # ...and never reached the overlay device.
        # The boot copy is what the role's nft_table converges to: no change.
        res = run_module(ns, "nft_table", {"name": "swarmfabric_fabric", "family": "inet",
                                           "definition": render_drop_table(FABNET_ENCRYPTED)})
        assert res["changed"] is False, res.get("actions")
        # With no encrypted overlay left, the boot copy removes a stale table.
        guard_file.write_text(render("fabric-guard.nft.j2", []))
        sh("ip", "netns", "exec", ns, *argv)
        assert "swarmfabric_fabric" not in sh("ip", "netns", "exec", ns, "nft", "list", "tables").stdout
    finally:
        sh("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "swarmfabric_fabric", check=False)
    assert sh("ip", "netns", "exec", src, *ping, check=False).returncode == 0


def test_absent_removes_device_and_shim(fabric):
    ns = "sf-fab-b"
    res = run_module(ns, "vxlan_overlay", {"name": "fabnet", "device": DEVICE, "state": "absent"})
    assert res["changed"] is True
    assert link(ns, DEVICE) is None
    assert link(ns, SHIM) is None
    assert run_module(ns, "vxlan_overlay", {"name": "fabnet", "device": DEVICE, "state": "absent"})["changed"] is False


def test_encrypted_overlay_fails_cleanly_on_this_kernel(underlay):
    """This kernel has no esp4 and no GCM: the module must refuse and leave nothing behind."""
    ns = "sf-fab-e"
    sh("ip", "netns", "add", ns)
    sh("ip", "-n", ns, "link", "add", "dummy0", "type", "veth", "peer", "name", "dummy1")
    sh("ip", "-n", ns, "addr", "add", "192.168.78.1/24", "dev", "dummy0")
    sh("ip", "-n", ns, "link", "set", "dummy0", "up")
    args = {"name": "secnet", "device": "sf-secnet", "vni": 310, "local": "192.168.78.1",
            "peers": ["192.168.78.2"], "encrypted": True, "address": "10.30.1.1", "prefixlen": 16,
            "socket": "/nonexistent/docker.sock"}
    res = run_module(ns, "vxlan_overlay", args)
    assert res.get("failed") is True
    assert res["msg"].startswith("Cannot enable encryption on overlay secnet: this kernel lacks")
    assert "esp4" in res["msg"] and "rfc4106(gcm(aes))" in res["msg"]
    assert "Traceback" not in res["msg"]
    key = "5e" * 36  # xfrm_tunnel gets derived keys, never the master secret
    tunnel = run_module(ns, "xfrm_tunnel", {
        "name": "secnet", "index": 0, "local": "192.168.78.1", "peers": [{"address": "192.168.78.2", "epoch": 1}],
        "sas": [{"peer": "192.168.78.2", "direction": d, "epoch": 1, "spi": spi, "key": key}
                for d, spi in (("in", 0x00100002), ("out", 0x00100001))]})
    assert tunnel.get("failed") is True
    assert "esp4" in tunnel["msg"]
    assert key not in json.dumps(tunnel)
    vxlans = [link_ for link_ in nsjson(ns, "ip", "-j", "-d", "link", "show")
              if (link_.get("linkinfo") or {}).get("info_kind") in ("vxlan", "macvlan")]
    assert vxlans == []
    assert sh("ip", "netns", "exec", ns, "ip", "xfrm", "state", "list").stdout.strip() == ""
    assert sh("ip", "netns", "exec", ns, "ip", "xfrm", "policy", "list").stdout.strip() == ""
