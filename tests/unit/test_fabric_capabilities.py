"""fabric_capabilities: the real run probes in a throwaway namespace; check
mode only reads files (no modprobe, no unshare, no process at all)."""

import os

import pytest
from ansible.module_utils.swarmfabric import kernelcaps as module_kernelcaps
from conftest import load_module

caps = load_module("fabric_capabilities")
RELEASE = os.uname().release


def kernel_tree(root, loaded=("vxlan",), installed=("xfrm_user", "esp4", "gcm", "nf_tables"),
                cap_eff="000001ffffffffff", index=True):
    (root / "proc" / "self").mkdir(parents=True)
    (root / "proc" / "modules").write_text("".join(f"{m} 16384 0 - Live 0x0\n" for m in loaded))
    (root / "proc" / "self" / "status").write_text(f"Name:\tpython\nCapEff:\t{cap_eff}\n")
    (root / "proc" / "crypto").write_text("name         : aes\n")
    (root / "sys" / "module").mkdir(parents=True)
    if index:
        lib = root / "lib" / RELEASE
        lib.mkdir(parents=True)
        (lib / "modules.builtin").write_text("kernel/crypto/aes_generic.ko\n")
        (lib / "modules.dep").write_text("".join(f"kernel/net/x/{m}.ko.xz: kernel/lib/dep.ko.xz\n" for m in installed))
    return {"proc": str(root / "proc"), "sys": str(root / "sys"), "lib": str(root / "lib")}


@pytest.fixture()
def run(run_module, monkeypatch):
    def probe(check, paths, commands=(), **params):
        monkeypatch.setattr(module_kernelcaps, "PATHS", paths)
        return run_module(caps, {"encrypted": ["appnet"], **params}, check=check, commands=commands)
    return probe


def test_check_mode_reads_files_and_runs_nothing(tmp_path, run):
    done = run(True, kernel_tree(tmp_path))
    assert not done.failed, done.result
    assert done.commands.calls == []
    assert done.result == {"changed": False, "actions": [], "missing": [], "unverified": [], "probed": False}


def test_check_mode_fails_on_a_module_the_kernel_certainly_lacks(tmp_path, run):
    done = run(True, kernel_tree(tmp_path, installed=("xfrm_user", "gcm", "nf_tables")))
    assert done.failed and done.commands.calls == []
    assert done.result["missing"] == ["kernel module esp4 (ESP for IPv4): not built in, not loaded and not installed "
                                      "for the running kernel"]
    assert done.msg.startswith("Cannot enable encryption on overlay appnet: this kernel lacks kernel module esp4")


def test_check_mode_without_a_module_index_says_what_it_could_not_tell(tmp_path, run):
    done = run(True, kernel_tree(tmp_path, index=False))
    assert not done.failed and done.commands.calls == []
    assert len(done.warnings) == 1 and "the real run probes them" in done.warnings[0]
    assert [u.split(" (")[0] for u in done.result["unverified"]] == [
        "kernel module xfrm_user", "kernel module esp4", "kernel module gcm", "kernel module nf_tables"]


def test_check_mode_plain_fabric_looks_at_vxlan_only(tmp_path, run):
    done = run(True, kernel_tree(tmp_path, loaded=(), installed=()), encrypted=[])
    assert done.failed and done.commands.calls == []
    assert done.msg.startswith("Cannot build the VXLAN fabric: this kernel lacks kernel module vxlan")


def test_a_real_run_probes_in_a_throwaway_namespace(tmp_path, run):
    done = run(False, kernel_tree(tmp_path))
    assert not done.failed and done.result["probed"] is True and done.changed is False
    argvs = done.commands.argvs
    assert argvs[0] == ["/usr/sbin/modprobe", "-q", "-a", *module_kernelcaps.MODULES]
    assert argvs[1:] == [["/usr/sbin/unshare", "--net", "--", "ip", "-batch", "-"],
                         ["/usr/sbin/unshare", "--net", "--", "nft", module_kernelcaps.NFT_RULES]]


def test_a_failed_batch_is_followed_by_one_probe_each_to_name_the_gap(tmp_path, run):
    probes = module_kernelcaps.batch_probes(True)
    answers = [(0, "", ""), (1, "", "batch failed")] + [(0, "", "")] * len(probes)
    answers[2 + [name for name, _d, _l in probes].index("aead")] = (2, "", "Error: RTNETLINK answers: ENOENT")
    answers += [(0, "", ""), (0, "", "")]  # esp4 with the null cipher, then nft
    done = run(False, kernel_tree(tmp_path), commands=answers)
    assert done.failed and len(done.commands.calls) == 2 + len(probes) + 2
    assert [data for _argv, data in done.commands.calls[2:2 + len(probes)]] == [line + "\n" for _n, _d, line in probes]
    assert done.result["missing"][0].startswith("the AEAD cipher rfc4106(gcm(aes))")


def test_a_missing_program_fails_cleanly_before_any_probe(tmp_path, run_module, monkeypatch):
    monkeypatch.setattr(module_kernelcaps, "PATHS", kernel_tree(tmp_path))
    done = run_module(caps, {"encrypted": []}, missing=("unshare",))
    assert done.failed and done.msg == "Failed to find required executable unshare"


# --- Docker's own overlays and ingress (issue 14, point 4) ------------------------------


def test_an_encrypted_docker_overlay_is_refused_on_a_kernel_without_esp(tmp_path, run):
    # esp4 and gcm certainly absent: Docker would create the network and send plaintext.
    done = run(True, kernel_tree(tmp_path, installed=("xfrm_user", "nf_tables")), encrypted=[],
               docker_encrypted=["backend"])
    assert done.failed and done.commands.calls == []
    assert done.msg.startswith("Cannot encrypt Docker overlay backend: this kernel lacks kernel module esp4")
    assert "Docker would create the network and send its traffic in plaintext" in done.msg


def test_a_docker_ingress_port_is_refused_without_ipvs(tmp_path, run):
    paths = kernel_tree(tmp_path)
    done = run(True, paths, encrypted=[], docker_ingress=["api"])
    assert done.failed and done.result["missing"] == [module_kernelcaps.IPVS_DESCRIPTION]
    assert done.msg.startswith("Cannot publish through Docker's ingress for service api: this kernel lacks IPVS")
    # The real run asks modprobe first, then looks for /proc/net/ip_vs.
    done = run(False, paths, encrypted=[], docker_ingress=["api"])
    assert done.failed and ["/usr/sbin/modprobe", "-q", "ip_vs"] in done.commands.argvs
    (tmp_path / "proc" / "net").mkdir()
    (tmp_path / "proc" / "net" / "ip_vs").write_text("")
    done = run(False, paths, encrypted=[], docker_ingress=["api"])
    assert not done.failed, done.msg
