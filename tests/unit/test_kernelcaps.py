"""The capability probe's reasoning, with scripted probe results."""

import pytest
from swarmfabric import kernelcaps


def scripted(failures):
    """run() that fails the probes whose argv contains a key of ``failures`` with its message."""
    calls = []

    def run(argv, data=None):
        calls.append((argv, data))
        words = " ".join(argv) + " " + (data or "")
        for marker, err in failures.items():
            if argv[0] == "unshare" and marker in words:
                return 2, "", f"Error: {err}.\n"
        return 0, "", ""
    return run, calls


def test_full_kernel_has_nothing_missing_and_probes_in_throwaway_netns():
    run, calls = scripted({})
    assert kernelcaps.missing_capabilities(run) == []
    probes = [argv for argv, _data in calls if argv[0] == "unshare"]
    # one ip batch (vxlan, xfrm policy, AEAD SA) and one nft call: few processes on slow hosts
    assert len(probes) == 2
    assert all(c[:3] == ["unshare", "--net", "--"] for c in probes)
    batch = next(data for argv, data in calls if argv[-2:] == ["-batch", "-"])
    assert len(batch.splitlines()) == 3 and "rfc4106(gcm(aes))" in batch and "flag esn" in batch


def test_a_failed_batch_is_explained_probe_by_probe():
    run, calls = scripted({"xfrm policy": "Operation not supported"})
    missing = kernelcaps.missing_capabilities(run)
    assert missing == ["xfrm policies (xfrm_user): Operation not supported"]
    singles = [data for argv, data in calls if argv[-2:] == ["-batch", "-"]][1:]
    assert [len(d.splitlines()) for d in singles] == [1, 1, 1]


def test_this_machine_no_esp_no_gcm():
    run, _ = scripted({"rfc4106(gcm(aes))": "Requested AEAD algorithm not found",
                       "ecb(cipher_null)": "Requested type not found"})
    missing = kernelcaps.missing_capabilities(run)
    assert missing == ["ESP for IPv4 (esp4): Requested type not found",
                       "the AEAD cipher rfc4106(gcm(aes)) (crypto modules gcm and aes): "
                       "Requested AEAD algorithm not found"]
    msg = kernelcaps.capability_message("appnet", missing)
    assert msg.startswith("Cannot enable encryption on overlay appnet: this kernel lacks ESP for IPv4 (esp4)")
    assert "Nothing was changed" in msg


def test_esp_present_gcm_missing():
    run, _ = scripted({"rfc4106(gcm(aes))": "Requested AEAD algorithm not found"})
    missing = kernelcaps.missing_capabilities(run)
    assert len(missing) == 1 and "rfc4106(gcm(aes))" in missing[0]


@pytest.mark.parametrize(("marker", "word"), [("vxlan", "VXLAN"), ("policy", "xfrm policies"), ("nft", "nftables")])
def test_other_gaps_are_named(marker, word):
    run, _ = scripted({marker: "Operation not supported"})
    missing = kernelcaps.missing_capabilities(run)
    assert any(word in m for m in missing), missing


def test_plain_fabric_only_probes_vxlan():
    run, calls = scripted({"rfc4106(gcm(aes))": "x"})
    assert kernelcaps.missing_capabilities(run, encrypted=False) == []
    assert [data.split()[:2] for argv, data in calls if argv[0] == "unshare"] == [["link", "add"]]


def tree(root, proc_modules="", builtin=None, dep=None, sys_modules=(), cap_eff="000001ffffffffff"):
    release = "6.1.0-test"
    (root / "proc" / "self").mkdir(parents=True)
    if proc_modules is not None:
        (root / "proc" / "modules").write_text(proc_modules)
    (root / "proc" / "self" / "status").write_text(f"CapEff:\t{cap_eff}\n")
    for name, live in sys_modules:
        (root / "sys" / "module" / name).mkdir(parents=True)
        if live:
            (root / "sys" / "module" / name / "initstate").write_text("live\n")
    lib = root / "lib" / release
    lib.mkdir(parents=True)
    if builtin is not None:
        (lib / "modules.builtin").write_text(builtin)
    if dep is not None:
        (lib / "modules.dep").write_text(dep)
    return release, {"proc": str(root / "proc"), "sys": str(root / "sys"), "lib": str(root / "lib")}


@pytest.mark.parametrize(("kw", "state"), [
    ({"proc_modules": "ip_vs 200704 0 - Live 0x0\n"}, "loaded"),
    ({"builtin": "kernel/net/netfilter/ipvs/ip_vs.ko\n"}, "builtin"),
    ({"sys_modules": [("ip_vs", False)]}, "builtin"),
    ({"sys_modules": [("ip_vs", True)]}, "loaded"),
    ({"dep": "kernel/net/netfilter/ipvs/ip_vs.ko.zst: kernel/net/netfilter/nf_conntrack.ko.zst\n"}, "available"),
    ({"dep": "kernel/net/ipv4/esp4.ko.xz:\n"}, "missing"),
    ({}, "unknown"),
])
def test_module_state_is_read_from_files(tmp_path, kw, state):
    release, paths = tree(tmp_path, **kw)
    assert kernelcaps.kernel_module_state("ip_vs", release=release, paths=paths) == state


def test_dashes_and_underscores_name_the_same_module(tmp_path):
    release, paths = tree(tmp_path, dep="kernel/net/xfrm/xfrm-user.ko:\n")
    assert kernelcaps.kernel_module_state("xfrm_user", release=release, paths=paths) == "available"


@pytest.mark.parametrize(("cap_eff", "modules", "can"), [
    ("000001ffffffffff", "", True),
    ("00000000a80425fb", "", False),   # a container's default set: no CAP_SYS_MODULE
    ("000001ffffffffff", None, False),  # no /proc/modules: no module support
])
def test_loading_needs_cap_sys_module_and_module_support(tmp_path, cap_eff, modules, can):
    _release, paths = tree(tmp_path, proc_modules=modules, cap_eff=cap_eff)
    assert kernelcaps.can_load_modules(paths) is can
