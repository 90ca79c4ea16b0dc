"""Can this kernel run the encrypted fabric? Probe, don't guess.

The probes run in a throwaway network namespace (``unshare --net``): the
namespace, and whatever the probes created in it, vanish when the command
exits, so probing changes nothing on the host. Every process is expensive
on a slow host (a VM under emulation starts one in about a second), so the
iproute2 probes share one namespace and one ``ip -batch -`` call and
nftables gets a second one. Only when the batch fails are its probes run
one by one (and ESP with the null cipher) to name what is missing. Kernel modules load on demand from the probes
themselves; one ``modprobe -a`` first is best effort (containers often have
no modules).

Check mode runs none of that: ``predicted_missing`` only reads which
modules are loaded, built in or installed for the running kernel
(``/proc/modules``, ``/sys/module``, ``modules.builtin``/``modules.dep``),
so it starts no process and loads nothing. The same read-only
``kernel_module_state`` lets mesh_ruleset pick its backend identically in
check mode and in a real run.
"""

import os

from .module import Runner

PROBE_A = "192.0.2.1"  # TEST-NET-1, only ever used inside the throwaway netns
PROBE_B = "192.0.2.2"
MODULES = ("vxlan", "xfrm_user", "esp4", "gcm", "nf_tables")
MODULE_ROLES = {"vxlan": "VXLAN devices", "xfrm_user": "xfrm policies and states", "esp4": "ESP for IPv4",
                "gcm": "the AEAD rfc4106(gcm(aes))", "nf_tables": "nftables"}
AEAD_DESCRIPTION = "an ESP SA with rfc4106(gcm(aes)), 256-bit key, 128-bit ICV, ESN"
ESP4_DESCRIPTION = "ESP for IPv4 (esp4)"
NFT_DESCRIPTION = "nftables with 'meta secpath', 'rt ipsec' and raw payload matches (nf_tables, nft_meta, nft_rt)"
NFT_RULES = (
    "table inet sfprobe {\n chain input {\n  type filter hook input priority 0; policy accept;\n"
    "  udp dport 4789 @th,96,24 1 meta secpath missing counter drop\n }\n"
    " chain output {\n  type filter hook output priority 0; policy accept;\n"
    "  udp dport 4789 @th,96,24 1 rt ipsec missing counter drop\n }\n}"
)


# Where a read-only probe looks; tests point these at a temporary tree.
PATHS = {"proc": "/proc", "sys": "/sys", "lib": "/lib/modules"}
# CAP_SYS_MODULE: without it a modprobe (ours or the kernel's on-demand one
# for a netns process) cannot load anything.
CAP_SYS_MODULE = 16


def _read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return None


def _module_names(index):
    """Module names of a modules.builtin / modules.dep text."""
    names = set()
    for line in (index or "").splitlines():
        path = line.split(":", 1)[0].strip()
        base = path.rsplit("/", 1)[-1]
        if ".ko" in base:
            names.add(base.split(".ko", 1)[0].replace("-", "_"))
    return names


def kernel_module_state(name, release=None, paths=None):
    """Read-only: 'loaded', 'builtin', 'available' (installed, not loaded),
    'missing' or 'unknown' (no module index for the running kernel and no
    trace of it in /sys/module). Starts no process and loads nothing."""
    paths = {**PATHS, **(paths or {})}
    name = name.replace("-", "_")
    proc_modules = _read(f"{paths['proc']}/modules")
    if proc_modules and any(line.split(" ", 1)[0] == name for line in proc_modules.splitlines()):
        return "loaded"
    release = release or os.uname().release
    builtin = _read(f"{paths['lib']}/{release}/modules.builtin")
    if name in _module_names(builtin):
        return "builtin"
    if os.path.isdir(f"{paths['sys']}/module/{name}"):
        # A module with parameters shows here even when built in.
        return "loaded" if os.path.exists(f"{paths['sys']}/module/{name}/initstate") else "builtin"
    dep = _read(f"{paths['lib']}/{release}/modules.dep")
    if dep is not None:
        return "available" if name in _module_names(dep) else "missing"
    # No index (a container without /lib/modules, or a kernel without module
    # support): a built-in without parameters leaves no trace to read.
    return "unknown"


def can_load_modules(paths=None):
    """Read-only: does this process hold CAP_SYS_MODULE on a kernel that loads modules?"""
    paths = {**PATHS, **(paths or {})}
    if _read(f"{paths['proc']}/modules") is None:
        return False
    if (_read(f"{paths['proc']}/sys/kernel/modules_disabled") or "0").strip() != "0":
        return False
    status = _read(f"{paths['proc']}/self/status") or ""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_MODULE & 1)
    return False


def module_usable(name, paths=None):
    """Read-only: is the module in the kernel now, or can this process load it?"""
    state = kernel_module_state(name, paths=paths)
    return state in ("loaded", "builtin") or (state == "available" and can_load_modules(paths))


def predicted_missing(encrypted=True, paths=None):
    """Check mode's answer, from files only: (missing, unverified).

    ``missing`` names modules that are certainly absent (the module index of
    the running kernel does not list them); ``unverified`` those this
    read-only look cannot decide (no index, e.g. a container without
    /lib/modules): the real run probes them.
    """
    missing, unverified = [], []
    crypto = _read(f"{({**PATHS, **(paths or {})})['proc']}/crypto") or ""
    for name in MODULES if encrypted else MODULES[:1]:
        if name == "gcm" and _proc_crypto_text_has(crypto, "rfc4106(gcm(aes))"):
            continue
        state = kernel_module_state(name, paths=paths)
        if state == "missing":
            missing.append(f"kernel module {name} ({MODULE_ROLES[name]}): not built in, not loaded and not "
                           "installed for the running kernel")
        elif state == "unknown" or (state == "available" and not can_load_modules(paths)):
            # Without CAP_SYS_MODULE the kernel may still load it on demand.
            unverified.append(f"kernel module {name} ({MODULE_ROLES[name]})")
    return missing, unverified


IPVS_DESCRIPTION = "IPVS (ip_vs), which Docker's ingress and its overlays' VIPs need"


def ipvs_missing(run=None, paths=None):
    """[] when the kernel has IPVS, else the one line that says it lacks it. ``run`` (a real
    run) first asks modprobe for ip_vs; without it (check mode) only files are read."""
    if run is not None:
        run(["modprobe", "-q", "ip_vs"])
        if os.path.exists(f"{({**PATHS, **(paths or {})})['proc']}/net/ip_vs"):
            return []
    elif module_usable("ip_vs", paths=paths):
        return []
    return [IPVS_DESCRIPTION]


def unshare_argv(argv):
    return ["unshare", "--net", "--", *argv]


def batch_probes(encrypted=True):
    """(capability, description, ``ip -batch`` line) in the order they are probed."""
    probes = [("vxlan", "VXLAN devices (vxlan module)", "link add sfprobe0 type vxlan id 1 dstport 4789 nolearning")]
    if encrypted:
        probes += [
            ("xfrm", "xfrm policies (xfrm_user)",
             f"xfrm policy add src {PROBE_A}/32 dst {PROBE_B}/32 proto udp dport 4789 dir out"
             f" tmpl src {PROBE_A} dst {PROBE_B} proto esp mode transport"),
            ("aead", AEAD_DESCRIPTION,
             f"xfrm state add src {PROBE_A} dst {PROBE_B} proto esp spi 0x100 mode transport"
             f" aead 'rfc4106(gcm(aes))' 0x{'00' * 36} 128 replay-window 128 flag esn"),
        ]
    return probes


def esp4_argv():
    """ESP with the null cipher: tells a missing esp4 apart from a missing AEAD."""
    return unshare_argv(["ip", "xfrm", "state", "add", "src", PROBE_A, "dst", PROBE_B, "proto", "esp",
                         "spi", "0x101", "mode", "transport", "enc", "ecb(cipher_null)", ""])


def nft_argv():
    return unshare_argv(["nft", NFT_RULES])


def _proc_crypto_text_has(text, name):
    return any(line.split(":", 1)[-1].strip() == name for line in text.splitlines() if line.startswith("name"))


def _proc_crypto_has(name, path="/proc/crypto"):
    return _proc_crypto_text_has(_read(path) or "", name)


def _clean(err):
    return " ".join((err or "").split()).removeprefix("Error: ").rstrip(".")


def missing_capabilities(run, encrypted=True):
    """``run(argv, data=None) -> (rc, out, err)``. Returns a list of human-readable gaps."""
    run(["modprobe", "-q", "-a", *MODULES])
    probes = batch_probes(encrypted)
    rc, _out, _err = run(unshare_argv(["ip", "-batch", "-"]),
                         data="\n".join(line for _name, _desc, line in probes) + "\n")
    failed = {}
    if rc != 0:
        # ip stops a batch at the first xfrm error: ask each probe on its own.
        for name, desc, line in probes:
            rc, _out, err = run(unshare_argv(["ip", "-batch", "-"]), data=line + "\n")
            if rc != 0:
                failed[name] = (desc, _clean(err) or "probe failed")
    missing = [f"{desc}: {why}" for name, (desc, why) in failed.items() if name != "aead"]
    if not encrypted:
        return missing
    if "aead" in failed:
        aead_err = failed["aead"][1]
        esp_rc, _out, esp_err = run(esp4_argv())
        if esp_rc != 0:
            missing.append(f"{ESP4_DESCRIPTION}: {_clean(esp_err) or 'probe failed'}")
        if "algorithm" in aead_err.lower() or not _proc_crypto_has("rfc4106(gcm(aes))"):
            missing.append(f"the AEAD cipher rfc4106(gcm(aes)) (crypto modules gcm and aes): {aead_err}")
        elif esp_rc == 0:
            missing.append(f"{AEAD_DESCRIPTION}: {aead_err}")
    nft_rc, _out, nft_err = run(nft_argv())
    if nft_rc != 0:
        missing.append(f"{NFT_DESCRIPTION}: {_clean(nft_err) or 'probe failed'}")
    return missing


def capability_cause(missing):
    return (
        "this kernel lacks "
        + "; ".join(missing)
        + ". Nothing was changed. Encryption is never turned off silently: use a kernel with esp4 and "
        "rfc4106(gcm(aes)), or set encrypted: false for this overlay."
    )


def capability_message(overlay, missing):
    return f"Cannot enable encryption on overlay {overlay}: {capability_cause(missing)}"


def module_runner(module):
    """The ``run`` that missing_capabilities wants: the modules' one Runner (binaries by get_bin_path)."""
    return Runner(module).status


def require_encryption(change, overlay):
    """Fail the module (``change`` is its module.Change) before it changes anything, when the
    kernel cannot encrypt. In check mode only the read-only look runs (no modprobe, no namespace)."""
    if change.check_mode:
        missing = predicted_missing(encrypted=True)[0]
    else:
        missing = missing_capabilities(module_runner(change.module), encrypted=True)
    if missing:
        change.fail(f"enable encryption on overlay {overlay}", capability_cause(missing), missing=missing)
