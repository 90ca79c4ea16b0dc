"""fabric_capabilities: the real run probes in a throwaway namespace; check
mode only reads files (no modprobe, no unshare, no process at all)."""

import os

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric import kernelcaps as module_kernelcaps
from ansible.module_utils.testing import patch_module_args
from conftest import load_module

caps = load_module("fabric_capabilities")
RELEASE = os.uname().release


class Done(Exception):
    def __init__(self, failed, result):
        super().__init__(result.get("msg"))
        self.failed, self.result = failed, result


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
def module_run(monkeypatch):
    calls = []

    def run_command(self, argv, data=None, **_kw):
        calls.append(argv)
        return 0, "", ""

    def finish(failed):
        def inner(self, **kwargs):
            raise Done(failed, kwargs)
        return inner

    monkeypatch.setattr(AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(AnsibleModule, "exit_json", finish(False))
    monkeypatch.setattr(AnsibleModule, "fail_json", finish(True))
    monkeypatch.setattr(AnsibleModule, "warn", lambda self, text: calls.append(("warning", text)))

    def run(check, paths, **params):
        monkeypatch.setattr(module_kernelcaps, "PATHS", paths)
        with patch_module_args({"encrypted": ["appnet"], "_ansible_check_mode": check, **params}), \
                pytest.raises(Done) as done:
            caps.main()
        return done.value
    return run, calls


def test_check_mode_reads_files_and_runs_nothing(tmp_path, module_run):
    run, calls = module_run
    done = run(True, kernel_tree(tmp_path))
    assert not done.failed, done.result
    assert calls == []
    assert done.result == {"changed": False, "missing": [], "unverified": [], "probed": False}


def test_check_mode_fails_on_a_module_the_kernel_certainly_lacks(tmp_path, module_run):
    run, calls = module_run
    done = run(True, kernel_tree(tmp_path, installed=("xfrm_user", "gcm", "nf_tables")))
    assert done.failed and calls == []
    assert done.result["missing"] == ["kernel module esp4 (ESP for IPv4): not built in, not loaded and not installed "
                                      "for the running kernel"]
    assert done.result["msg"].startswith("Cannot enable encryption on overlay appnet: this kernel lacks kernel "
                                         "module esp4")


def test_check_mode_without_a_module_index_says_what_it_could_not_tell(tmp_path, module_run):
    run, calls = module_run
    done = run(True, kernel_tree(tmp_path, index=False))
    warnings = [text for kind, text in calls]
    assert not done.failed and len(calls) == 1 and "the real run probes them" in warnings[0]
    assert [u.split(" (")[0] for u in done.result["unverified"]] == [
        "kernel module xfrm_user", "kernel module esp4", "kernel module gcm", "kernel module nf_tables"]


def test_check_mode_plain_fabric_looks_at_vxlan_only(tmp_path, module_run):
    run, calls = module_run
    done = run(True, kernel_tree(tmp_path, loaded=(), installed=()), encrypted=[])
    assert done.failed and calls == []
    assert done.result["msg"].startswith("Cannot build the VXLAN fabric: this kernel lacks kernel module vxlan")


def test_a_real_run_probes_in_a_throwaway_namespace(tmp_path, module_run):
    run, calls = module_run
    done = run(False, kernel_tree(tmp_path))
    assert not done.failed and done.result["probed"] is True
    assert calls[0][:3] == ["modprobe", "-q", "-a"]
    assert [c[:3] for c in calls[1:]] == [["unshare", "--net", "--"]] * 2
