"""mesh_ruleset against a scripted kernel: the exact command sequence (read,
validate, add before remove), zero writes in check mode, and the rollback
of every step, with what it could and could not restore."""

import json

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from conftest import load_module

mesh = load_module("mesh_ruleset")

MARK = 0x5F000001
DEV = "sf-appnet-h"
NFT = """table ip swarmfabric_mesh {
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip daddr 10.20.255.10 tcp dport 80 jump svc-web
\t}
\tchain svc-web {
\t\tdnat ip to 10.20.50.5:80
\t}
}
"""
ARP = """table netdev swarmfabric_mesh_arp {
\tchain egress {
\t\ttype filter hook egress device "sf-appnet" priority filter; policy accept;
\t\tarp daddr ip 10.20.255.10 drop
\t}
}
"""
FILTER = """*filter
:SF-MESH-FWD - [0:0]
-A FORWARD -j SF-MESH-FWD
-A SF-MESH-FWD -m connmark --mark 0x4000/0x4000 -j ACCEPT
COMMIT
"""
MANGLE_NAT = f"""*mangle
:SF-MESH - [0:0]
-A PREROUTING -j SF-MESH
-A SF-MESH -d 10.20.255.10/32 -p tcp -m tcp --dport 80 -j MARK --set-xmark {MARK:#x}/0xffffffff
COMMIT
*nat
:SF-MESH-POST - [0:0]
-A POSTROUTING -j SF-MESH-POST
-A SF-MESH-POST -m mark --mark 0x5f000000/0xff000000 -j MASQUERADE
COMMIT
"""
IPT = FILTER + MANGLE_NAT
IPVS = f"-A -f {MARK} -s rr\n-a -f {MARK} -r 10.20.50.5:80 -m -w 1\n"
TOOLS = {"ip", "nft", "iptables-save", "iptables-restore", "ipvsadm", "ipvsadm-restore", "modprobe"}
VIPS = [{"device": DEV, "range": "10.20.255.0/24", "addresses": ["10.20.255.10"]}]
# Validations change nothing: they are not counted as writes.
VALIDATIONS = {"/sbin/nft -c -f /dev/stdin", "/sbin/iptables-restore --noflush --test"}
ABSENT = (1, "", "Error: No such file or directory; did you mean table ...?\n")


def addr_json(*vips):
    return json.dumps([{"ifname": DEV, "addr_info": [{"family": "inet", "local": "10.20.0.1", "prefixlen": 16}]
                        + [{"family": "inet", "local": v, "prefixlen": 32} for v in vips]}])


class Done(Exception):
    def __init__(self, failed, result):
        super().__init__(result.get("msg"))
        self.failed, self.result = failed, result


class Kernel:
    """run_command scripted by argv: reads answer from ``reads`` (a list of
    answers is used one per call, the last one repeating); every other call is
    a write that succeeds unless its number (1-based, among writes) is in
    ``fail``. ``calls`` records (argv, data) in order; sysctl writes too."""

    def __init__(self, reads, fail=(), fail_reads=()):
        self.reads, self.fail, self.fail_reads = reads, set(fail), set(fail_reads)
        self.calls, self.writes, self.sysctls = [], 0, {}

    def run(self, argv, data=None, **_kw):
        self.calls.append((" ".join(argv), data))
        key = " ".join(argv)
        if key in self.reads:
            answers = self.reads[key]
            if isinstance(answers, list):
                return answers.pop(0) if len(answers) > 1 else answers[0]
            return answers
        if key in self.fail_reads:
            return 1, "", f"refused: {key}"
        if key in VALIDATIONS:
            return 0, "", ""
        self.writes += 1
        if self.writes in self.fail:
            return 1, "", f"injected failure of write {self.writes}"
        return 0, "", ""

    def argv(self):
        return [argv for argv, _data in self.calls]

    def data(self, argv):
        return [d for a, d in self.calls if a == argv]


@pytest.fixture()
def env(monkeypatch):
    state = {"ipvs_loaded": True, "usable": True}

    def bin_path(self, name, required=False, opt_dirs=None):
        if name in TOOLS:
            return f"/sbin/{name}"
        if required:
            self.fail_json(msg=f"Failed to find required executable {name}")
        return None

    def finish(failed):
        def inner(self, **kwargs):
            raise Done(failed, kwargs)
        return inner

    monkeypatch.setattr(AnsibleModule, "get_bin_path", bin_path)
    monkeypatch.setattr(AnsibleModule, "exit_json", finish(False))
    monkeypatch.setattr(AnsibleModule, "fail_json", finish(True))
    monkeypatch.setattr(mesh, "ipvs_loaded", lambda: state["ipvs_loaded"])
    monkeypatch.setattr(mesh, "module_usable", lambda name: state["usable"])
    monkeypatch.setattr(mesh, "kernel_module_state", lambda name: "available" if state["usable"] else "missing")
    return state


def run(monkeypatch, kernel, check=False, **params):
    args = {"backend": "auto", "nft": NFT, "ipvs": IPVS, "iptables": IPT, "arp_guard": ARP, "vips": VIPS,
            "_ansible_check_mode": check, **params}
    monkeypatch.setattr(AnsibleModule, "run_command", lambda self, argv, **kw: kernel.run(argv, **kw))
    monkeypatch.setattr(mesh.Mesh, "read_sysctls", lambda self: dict(mesh.KERNEL_SYSCTLS))

    def write_sysctl(self, key, value):
        rc, _out, err = kernel.run(["sysctl", f"{key}={value}"])
        if rc:
            raise OSError(err)

    monkeypatch.setattr(mesh.Mesh, "write_sysctl", write_sysctl)
    with patch_module_args(args), pytest.raises(Done) as done:
        mesh.main()
    return done.value


READ_STEPS = [
    f"/sbin/ip -j addr show dev {DEV}",
    "/sbin/iptables-save",
    "/sbin/ipvsadm -Sn",
    "/sbin/nft list table ip swarmfabric_mesh",
    "/sbin/nft list table netdev swarmfabric_mesh_arp",
]


def from_ipvs():
    """Live: the IPVS backend of an earlier run, the nft mesh table absent, no VIP yet."""
    return {
        READ_STEPS[0]: (0, addr_json(), ""),
        READ_STEPS[1]: (0, IPT, ""),
        READ_STEPS[2]: (0, f"-A -f {MARK} -s rr\n-a -f {MARK} -r 10.20.50.5:80 -m -w 1\n", ""),
        READ_STEPS[3]: ABSENT,
        READ_STEPS[4]: (0, ARP, ""),
    }


def from_nftables():
    """Live: the nftables backend in place (filter chain, mesh table), no IPVS service."""
    return {
        READ_STEPS[0]: (0, addr_json("10.20.255.10"), ""),
        READ_STEPS[1]: (0, FILTER, ""),
        READ_STEPS[2]: (0, "", ""),
        READ_STEPS[3]: (0, NFT, ""),
        READ_STEPS[4]: (0, ARP, ""),
        "/sbin/ipvsadm -L --timeout": (0, "Timeout (tcp tcpfin udp): 900 120 300\n", ""),
    }


NFT_SWITCH = [
    *READ_STEPS,
    "/sbin/nft -c -f /dev/stdin",                   # validate the new mesh table
    "/sbin/iptables-restore --noflush --test",      # validate the removal of mangle/nat
    "/sbin/ip -batch -",                            # add VIP
    "/sbin/nft -f /dev/stdin",                      # the nftables mesh is in...
    "/sbin/iptables-restore --noflush",             # ...before the IPVS marks go
    "/sbin/ipvsadm -R",                             # ...and the IPVS services
]


def test_switch_to_nftables_adds_before_it_removes(monkeypatch, env):
    kernel = Kernel(from_ipvs())
    done = run(monkeypatch, kernel, backend="nftables")
    assert not done.failed, done.result
    assert kernel.argv() == NFT_SWITCH
    assert done.result["changed"] and done.result["backend"] == "nftables"
    rm = kernel.data("/sbin/iptables-restore --noflush")[0]
    assert "-X SF-MESH" in rm and "-X SF-MESH-POST" in rm and "SF-MESH-FWD" not in rm
    assert kernel.data("/sbin/ipvsadm -R")[0] == f"-e -f {MARK} -r 10.20.50.5:80 -m -w 0\n-D -f {MARK}\n"
    assert kernel.data("/sbin/ip -batch -") == ["addr add 10.20.255.10/32 dev sf-appnet-h\n"]
    assert done.result["actions"][:2] == ["added VIP 10.20.255.10/32 on sf-appnet-h",
                                          "created table ip swarmfabric_mesh"]


def test_check_mode_reads_and_validates_only(monkeypatch, env):
    kernel = Kernel(from_ipvs())
    real = run(monkeypatch, Kernel(from_ipvs()), backend="nftables")
    done = run(monkeypatch, kernel, check=True, backend="nftables")
    assert kernel.argv() == NFT_SWITCH[:7] and kernel.writes == 0
    assert done.result["changed"] and done.result["actions"] == real.result["actions"]


@pytest.mark.parametrize("usable", [True, False])
def test_auto_picks_the_same_backend_in_check_mode_and_for_real(monkeypatch, env, usable):
    env.update(ipvs_loaded=False, usable=usable)
    check_kernel, real_kernel = Kernel(from_nftables()), Kernel(from_nftables())
    check = run(monkeypatch, check_kernel, check=True)
    real = run(monkeypatch, real_kernel)
    assert check.result["backend"] == real.result["backend"] == ("ipvs" if usable else "nftables")
    assert check.result["actions"] == real.result["actions"]
    # Check mode never loads ip_vs (not even through ipvsadm, which would); the real run does, as a write.
    assert check_kernel.writes == 0
    assert not any("modprobe" in a or "ipvsadm" in a for a in check_kernel.argv())
    if usable:
        assert "/sbin/modprobe ip_vs" in real_kernel.argv()
        assert "/sbin/ipvsadm -Sn" not in real_kernel.argv()  # not loaded: nothing of ours can be there


IPVS_SWITCH = [
    f"/sbin/ip -j addr show dev {DEV}",
    "/sbin/iptables-save",
    "/sbin/ipvsadm -Sn",
    "/sbin/nft list table ip swarmfabric_mesh",
    "/sbin/nft list table netdev swarmfabric_mesh_arp",
    "/sbin/ipvsadm -L --timeout",
    "/sbin/nft -c -f /dev/stdin",                        # validate: the nft mesh table's removal
    "/sbin/iptables-restore --noflush --test",           # validate: the mangle/nat chains
    "/sbin/iptables-restore --noflush",                  # 1 marks in
    "/sbin/ipvsadm -R",                                  # 2 services in
    "sysctl net.ipv4.vs.conn_reuse_mode=0",              # 3
    "sysctl net.ipv4.vs.conntrack=1",                    # 4
    "sysctl net.ipv4.vs.expire_nodest_conn=1",           # 5
    "/sbin/ipvsadm --set 600 120 300",                   # 6
    "/sbin/nft -f /dev/stdin",                           # 7 only now the nftables mesh goes
]


def test_switch_to_ipvs_removes_the_nft_mesh_only_once_ipvs_is_complete(monkeypatch, env):
    kernel = Kernel(from_nftables())
    done = run(monkeypatch, kernel, backend="ipvs", ipvs_timeouts={"tcp": 600})
    assert not done.failed, done.result
    assert kernel.argv() == IPVS_SWITCH
    assert kernel.data("/sbin/nft -f /dev/stdin") == ["delete table ip swarmfabric_mesh\n"]
    assert kernel.data("/sbin/ipvsadm -R") == [IPVS]


# What each undo does after write k failed, when its re-read finds what the
# earlier writes left. Atomic steps (nft, sysctls, timeouts) undo by writing back.
ROLLBACK = {
    1: [],
    2: ["iptables chains SF-MESH, SF-MESH-POST"],
    3: ["IPVS services", "iptables chains SF-MESH, SF-MESH-POST"],
    4: ["sysctl net.ipv4.vs.conn_reuse_mode", "IPVS services", "iptables chains SF-MESH, SF-MESH-POST"],
    5: ["sysctl net.ipv4.vs.conntrack", "sysctl net.ipv4.vs.conn_reuse_mode", "IPVS services",
        "iptables chains SF-MESH, SF-MESH-POST"],
    6: ["sysctl net.ipv4.vs.expire_nodest_conn", "sysctl net.ipv4.vs.conntrack", "sysctl net.ipv4.vs.conn_reuse_mode",
        "IPVS services", "iptables chains SF-MESH, SF-MESH-POST"],
    7: ["IPVS timeouts", "sysctl net.ipv4.vs.expire_nodest_conn", "sysctl net.ipv4.vs.conntrack",
        "sysctl net.ipv4.vs.conn_reuse_mode", "IPVS services", "iptables chains SF-MESH, SF-MESH-POST"],
}


@pytest.mark.parametrize("k", sorted(ROLLBACK))
def test_each_failing_step_rolls_back_everything_before_it(monkeypatch, env, k):
    reads = from_nftables()
    after_ipt = FILTER + MANGLE_NAT
    # Re-reads in the rollback see what the successful writes left.
    reads["/sbin/iptables-save"] = [(0, FILTER, ""), (0, after_ipt if k > 1 else FILTER, "")]
    reads["/sbin/ipvsadm -Sn"] = [(0, "", ""), (0, IPVS if k > 2 else "", "")]
    kernel = Kernel(reads, fail=[k])
    done = run(monkeypatch, kernel, backend="ipvs", ipvs_timeouts={"tcp": 600})
    assert done.failed
    msg = done.result["msg"]
    assert msg.startswith("Cannot apply the mesh: ") and f"injected failure of write {k}" in msg, msg
    assert done.result["rolled_back"] == ROLLBACK[k]
    assert done.result["not_restored"] == []
    if ROLLBACK[k]:
        assert msg.endswith("; rolled back " + ", ".join(ROLLBACK[k])), msg
    else:
        assert msg.endswith("; nothing was changed"), msg
    calls = kernel.argv()
    failed_at = next(i for i, a in enumerate(calls) if a == IPVS_SWITCH[8 + k - 1])
    # Up to the failure, the same sequence as a clean run; no forward write after it.
    assert calls[:failed_at + 1] == IPVS_SWITCH[:8 + k]
    undo = calls[failed_at + 1:]
    # nft -f is one transaction: when it fails there is nothing of it to undo.
    assert "/sbin/nft -f /dev/stdin" not in undo
    if k > 1:
        restore = [d for a, d in kernel.calls[failed_at + 1:] if a == "/sbin/iptables-restore --noflush"]
        assert len(restore) == 1 and "-X SF-MESH" in restore[0] and "-X SF-MESH-POST" in restore[0]
    if k > 2:
        assert [d for a, d in kernel.calls[failed_at + 1:] if a == "/sbin/ipvsadm -R"] == [
            f"-e -f {MARK} -r 10.20.50.5:80 -m -w 0\n-D -f {MARK}\n"]
    if k >= 4:
        assert "sysctl net.ipv4.vs.conn_reuse_mode=1" in undo
    if k == 7:
        assert undo[0] == "/sbin/ipvsadm --set 900 120 300"


def test_a_failed_undo_is_named_and_not_claimed(monkeypatch, env):
    reads = from_nftables()
    reads["/sbin/iptables-save"] = [(0, FILTER, ""), (0, FILTER + MANGLE_NAT, "")]
    reads["/sbin/ipvsadm -Sn"] = [(0, "", ""), (0, IPVS, "")]
    # Write 2 (ipvsadm -R) fails, and so does the iptables undo (write 4;
    # write 3 is the IPVS undo).
    kernel = Kernel(reads, fail=[2, 4])
    done = run(monkeypatch, kernel, backend="ipvs")
    msg = done.result["msg"]
    assert done.result["rolled_back"] == ["IPVS services"]
    assert done.result["not_restored"] == [
        "iptables chains SF-MESH, SF-MESH-POST (apply iptables rules: injected failure of write 4)"]
    assert msg == ("Cannot apply the mesh: apply IPVS services: injected failure of write 2; rolled back IPVS "
                   "services; could NOT restore iptables chains SF-MESH, SF-MESH-POST (apply iptables rules: "
                   "injected failure of write 4)")


def test_the_nft_rollback_keeps_the_table_and_redefines_it(monkeypatch, env):
    """nftables backend, the iptables removal after the nft apply fails: the
    mesh table that had been created goes, the ARP table is put back in place."""
    reads = from_ipvs()
    reads[READ_STEPS[4]] = (0, ARP.replace("10.20.255.10", "10.20.255.99"), "")
    reads[READ_STEPS[0]] = [(0, addr_json(), ""), (0, addr_json("10.20.255.10"), "")]
    kernel = Kernel(reads, fail=[3])
    done = run(monkeypatch, kernel, backend="nftables")
    assert done.result["rolled_back"] == ["nft tables ip swarmfabric_mesh, netdev swarmfabric_mesh_arp",
                                          "VIP addresses"]
    undo = kernel.data("/sbin/nft -f /dev/stdin")[1]
    assert undo.startswith("table ip swarmfabric_mesh {}\ndelete table ip swarmfabric_mesh\n"
                           "flush table netdev swarmfabric_mesh_arp\ndelete chain netdev swarmfabric_mesh_arp egress\n")
    assert "10.20.255.99" in undo and "delete table netdev" not in undo
    assert kernel.data("/sbin/ip -batch -")[1] == "addr del 10.20.255.10/32 dev sf-appnet-h\n"
    # The IPVS services were never touched: their removal comes after.
    assert "/sbin/ipvsadm -R" not in kernel.argv()


@pytest.mark.parametrize(("what", "reads_fail", "params", "cause"), [
    ("nft -c", ["/sbin/nft -c -f /dev/stdin"], {}, "nft refused to validate the mesh tables"),
    ("iptables --test", ["/sbin/iptables-restore --noflush --test"], {}, "validate iptables rules"),
    ("bad real server", [], {"ipvs": f"-A -f {MARK} -s rr\n-a -f {MARK} -r 10.20.50.999:80 -m -w 1\n"},
     "bad real server address '10.20.50.999'"),
    ("foreign fwmark", [], {"ipvs": "-A -f 4660 -s rr\n"}, "outside our range"),
    ("unknown line", [], {"ipvs": f"-A -f {MARK} -s rr\n-a -f {MARK} -r 10.20.50.5:80 -m -w 1 -x\n"},
     "not an IPVS command"),
    ("undeclared service", [], {"ipvs": f"-a -f {MARK} -r 10.20.50.5:80 -m -w 1\n"}, "undeclared service"),
])
def test_anything_invalid_is_refused_before_the_first_write(monkeypatch, env, what, reads_fail, params, cause):
    kernel = Kernel(from_nftables(), fail_reads=reads_fail)
    done = run(monkeypatch, kernel, backend="ipvs", **params)
    assert done.failed and cause in done.result["msg"], done.result["msg"]
    assert done.result["msg"].endswith("; nothing was changed")
    assert kernel.writes == 0, kernel.argv()


def test_forced_ipvs_on_a_kernel_without_it_is_refused_in_both_modes(monkeypatch, env):
    env.update(ipvs_loaded=False, usable=False)
    for check in (True, False):
        kernel = Kernel(from_nftables())
        done = run(monkeypatch, kernel, check=check, backend="ipvs")
        assert done.failed and "this kernel has no ip_vs module" in done.result["msg"]
        assert kernel.calls == []


def test_nothing_to_do_is_reads_only_and_unchanged(monkeypatch, env):
    reads = from_nftables()
    reads[READ_STEPS[2]] = (0, "", "")
    kernel = Kernel(reads)
    done = run(monkeypatch, kernel, backend="nftables", iptables=FILTER)
    assert kernel.argv() == READ_STEPS and not done.result["changed"], done.result
    assert done.result["actions"] == []


ABSENT_READS = [
    f"/sbin/ip -j addr show dev {DEV}",
    "/sbin/iptables-save",
    "/sbin/ipvsadm -Sn",
    "/sbin/nft list table ip swarmfabric_mesh",
    "/sbin/nft list table netdev swarmfabric_mesh_arp",
]


@pytest.mark.parametrize("live", [from_ipvs, from_nftables])
def test_absent_removes_tables_chains_services_and_vips(monkeypatch, env, live):
    monkeypatch.setattr(mesh.os.path, "exists", lambda path: path in (f"/sys/class/net/{DEV}", mesh.PROC_IPVS))
    reads = live()
    reads[ABSENT_READS[0]] = (0, addr_json("10.20.255.10", "10.20.255.11"), "")
    kernel = Kernel(reads)
    # No rulesets are needed to remove the mesh.
    done = run(monkeypatch, kernel, state="absent", nft=None, ipvs=None, iptables=None, arp_guard=None)
    assert not done.failed, done.result
    assert done.result["changed"] and done.result["backend"] == "none"
    nft_removed = kernel.data("/sbin/nft -f /dev/stdin")
    assert nft_removed == [("delete table ip swarmfabric_mesh\n" if live is from_nftables else "")
                           + "delete table netdev swarmfabric_mesh_arp\n"]
    removed_ipt = kernel.data("/sbin/iptables-restore --noflush")[0]
    assert "-X SF-MESH-FWD" in removed_ipt and "-D FORWARD -j SF-MESH-FWD" in removed_ipt
    if live is from_ipvs:
        assert "-X SF-MESH" in removed_ipt and "-X SF-MESH-POST" in removed_ipt
        assert kernel.data("/sbin/ipvsadm -R") == [f"-e -f {MARK} -r 10.20.50.5:80 -m -w 0\n-D -f {MARK}\n"]
    else:
        assert "/sbin/ipvsadm -R" not in kernel.argv()
    assert kernel.data("/sbin/ip -batch -") == ["addr del 10.20.255.10/32 dev sf-appnet-h\n"
                                                "addr del 10.20.255.11/32 dev sf-appnet-h\n"]
    # Nothing left: the second run reads only.
    done = run(monkeypatch, Kernel({ABSENT_READS[0]: (0, addr_json(), ""), ABSENT_READS[1]: (0, "", ""),
                                    ABSENT_READS[2]: (0, "", ""), ABSENT_READS[3]: ABSENT,
                                    ABSENT_READS[4]: ABSENT}),
               state="absent", nft=None, ipvs=None, iptables=None, arp_guard=None)
    assert not done.result["changed"] and done.result["actions"] == []


def test_absent_skips_a_shim_that_is_gone_and_writes_nothing_in_check_mode(monkeypatch, env):
    monkeypatch.setattr(mesh.os.path, "exists", lambda path: path == mesh.PROC_IPVS)
    reads = from_nftables()
    kernel = Kernel(reads)
    done = run(monkeypatch, kernel, check=True, state="absent")
    assert not done.failed, done.result
    assert kernel.writes == 0 and f"/sbin/ip -j addr show dev {DEV}" not in kernel.argv()
    assert done.result["changed"] and "deleted table ip swarmfabric_mesh" in " ".join(done.result["actions"])
