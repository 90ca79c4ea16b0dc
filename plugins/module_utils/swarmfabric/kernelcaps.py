"""Can this kernel run the encrypted fabric? Probe, don't guess.

Each probe runs one command in a throwaway network namespace
(``unshare --net``): the namespace, and whatever the probe created in it,
vanish when the command exits, so probing changes nothing on the host.
Kernel modules are autoloaded by the probes themselves; an explicit
``modprobe`` first is best effort (containers often have no modules).
"""

PROBE_A = "192.0.2.1"  # TEST-NET-1, only ever used inside the throwaway netns
PROBE_B = "192.0.2.2"
MODULES = ("vxlan", "xfrm_user", "esp4", "gcm", "nft_meta")


def unshare_argv(argv):
    return ["unshare", "--net", "--", *argv]


def probe_commands():
    """(capability, description, argv) in the order they are probed."""
    sa = ["ip", "xfrm", "state", "add", "src", PROBE_A, "dst", PROBE_B, "proto", "esp", "spi", "0x100",
          "mode", "transport"]
    nft_rules = (
        "table inet sfprobe {\n chain input {\n  type filter hook input priority 0; policy accept;\n"
        "  udp dport 4789 @th,96,24 1 meta secpath missing counter drop\n }\n}"
    )
    return [
        ("vxlan", "VXLAN devices (vxlan module)",
         ["ip", "link", "add", "sfprobe0", "type", "vxlan", "id", "1", "dstport", "4789", "nolearning"]),
        ("xfrm", "xfrm policies (xfrm_user)",
         ["ip", "xfrm", "policy", "add", "src", f"{PROBE_A}/32", "dst", f"{PROBE_B}/32", "proto", "udp",
          "dport", "4789", "dir", "out", "tmpl", "src", PROBE_A, "dst", PROBE_B, "proto", "esp",
          "mode", "transport"]),
        ("aead", "an ESP SA with rfc4106(gcm(aes)), 256-bit key, 128-bit ICV, ESN",
         [*sa, "aead", "rfc4106(gcm(aes))", "0x" + "00" * 36, "128", "replay-window", "128", "flag", "esn"]),
        ("esp4", "ESP for IPv4 (esp4)", [*sa, "enc", "ecb(cipher_null)", ""]),
        ("nft", "nftables with 'meta secpath' and raw payload matches (nf_tables, nft_meta)",
         ["nft", nft_rules]),
    ]


def _proc_crypto_has(name, path="/proc/crypto"):
    try:
        with open(path, encoding="utf-8") as handle:
            return any(line.split(":", 1)[-1].strip() == name for line in handle if line.startswith("name"))
    except OSError:
        return False


def _clean(err):
    return " ".join((err or "").split()).removeprefix("Error: ").rstrip(".")


def missing_capabilities(run, encrypted=True):
    """``run(argv) -> (rc, out, err)``. Returns a list of human-readable gaps."""
    for module in MODULES:
        run(["modprobe", "-q", module])
    results = {}
    for name, description, argv in probe_commands():
        if name in ("xfrm", "aead", "esp4", "nft") and not encrypted:
            continue
        rc, _out, err = run(unshare_argv(argv))
        results[name] = (rc == 0, description, _clean(err))
    missing = []
    for name, (ok, description, err) in results.items():
        if ok or name in ("aead", "esp4"):
            continue
        missing.append(f"{description}: {err or 'probe failed'}")
    if encrypted and not results["aead"][0]:
        esp_ok = results["esp4"][0]
        aead_err = results["aead"][2]
        if not esp_ok:
            missing.append(f"{results['esp4'][1]}: {results['esp4'][2] or 'probe failed'}")
        if "algorithm" in aead_err.lower() or not _proc_crypto_has("rfc4106(gcm(aes))"):
            missing.append(f"the AEAD cipher rfc4106(gcm(aes)) (crypto modules gcm and aes): {aead_err}")
        elif esp_ok:
            missing.append(f"{results['aead'][1]}: {aead_err or 'probe failed'}")
    return missing


def capability_message(overlay, missing):
    return (
        f"Cannot enable encryption on overlay {overlay}: this kernel lacks "
        + "; ".join(missing)
        + ". Nothing was changed. Encryption is never turned off silently: use a kernel with esp4 and "
        "rfc4106(gcm(aes)), or set encrypted: false for this overlay."
    )
