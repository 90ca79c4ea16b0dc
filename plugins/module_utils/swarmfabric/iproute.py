"""iproute2 helpers: pure argv builders and parsers (commands run through module.Runner).

``ip``/``bridge`` answer in JSON (``-j``) for links, addresses and the FDB.
``ip xfrm`` has no JSON output in iproute2 6.1, so its text is parsed here,
once. SA keys are written through ``ip -batch -`` on stdin, never in argv,
so they show up in neither ``ps`` nor an error message.
"""

from .module import CommandError

AEAD_GCM = "rfc4106(gcm(aes))"
ICV_BITS = 128
REPLAY_WINDOW = 128
ZERO_MAC = "00:00:00:00:00:00"


# The one command error of module.Runner, under the name the modules know.
IpRouteError = CommandError


# --- links, addresses, fdb -------------------------------------------------


def link_show_argv(dev=None):
    argv = ["ip", "-j", "-d", "link", "show"]
    return [*argv, "dev", dev] if dev else argv


def addr_show_argv(dev):
    return ["ip", "-j", "addr", "show", "dev", dev]


def fdb_show_argv(dev):
    return ["bridge", "-j", "fdb", "show", "dev", dev]


def vxlan_add_argv(dev, vni, port, local, mtu):
    return [
        "ip", "link", "add", dev, "mtu", str(mtu), "type", "vxlan",
        "id", str(vni), "dstport", str(port), "local", local, "nolearning",
    ]


def macvlan_add_argv(dev, parent, mtu):
    return ["ip", "link", "add", dev, "mtu", str(mtu), "link", parent, "type", "macvlan", "mode", "bridge"]


def link_set_argv(dev, mtu=None, up=False):
    argv = ["ip", "link", "set", "dev", dev]
    if mtu is not None:
        argv += ["mtu", str(mtu)]
    if up:
        argv.append("up")
    return argv


def link_del_argv(dev):
    return ["ip", "link", "del", "dev", dev]


def addr_argv(verb, dev, cidr):
    return ["ip", "addr", verb, cidr, "dev", dev]


def fdb_argv(verb, dev, dst, mac=ZERO_MAC):
    # "append" because the all-zero MAC holds one entry per peer.
    return ["bridge", "fdb", verb, mac, "dev", dev, "dst", dst]


def route_get_argv(dst):
    return ["ip", "-j", "route", "get", dst]


def vxlan_info(link):
    """The vxlan part of one ``ip -j -d link`` entry, or None."""
    info = link.get("linkinfo") or {}
    if info.get("info_kind") != "vxlan":
        return None
    data = info.get("info_data") or {}
    return {
        "vni": data.get("id"),
        "port": data.get("port"),
        "local": data.get("local"),
        "learning": bool(data.get("learning")),
        "group": data.get("group") or data.get("remote"),
    }


def macvlan_info(link):
    info = link.get("linkinfo") or {}
    if info.get("info_kind") != "macvlan":
        return None
    return {"mode": (info.get("info_data") or {}).get("mode"), "parent": link.get("link")}


def ipv4_addresses(addr_entry):
    """IPv4 addresses as CIDR strings in kernel order: the primary comes first."""
    return [f"{a['local']}/{a['prefixlen']}" for a in addr_entry.get("addr_info", []) if a.get("family") == "inet"]


def fdb_peers(entries):
    """Unicast flood destinations (the all-zero MAC entries) of a VXLAN device."""
    return sorted({e["dst"] for e in entries if e.get("mac") == ZERO_MAC and e.get("dst")})


# --- xfrm ------------------------------------------------------------------


def xfrm_state_line(verb, sa, key_hex=None):
    """One ``ip -batch`` line for an ESP transport SA (verb add|update|delete)."""
    ident = f"xfrm state {verb} src {sa['src']} dst {sa['dst']} proto esp spi 0x{int(sa['spi']):08x}"
    if verb == "delete":
        return ident
    return (
        f"{ident} reqid {sa['reqid']} mode transport aead '{AEAD_GCM}' 0x{key_hex} {ICV_BITS}"
        f" replay-window {REPLAY_WINDOW} flag esn"
    )


def xfrm_policy_line(verb, pol):
    """One ``ip -batch`` line for a transport policy on the VXLAN UDP port."""
    line = (
        f"xfrm policy {verb} src {pol['src']}/32 dst {pol['dst']}/32 proto udp dport {pol['port']}"
        f" dir {pol['dir']}"
    )
    if verb == "delete":
        return line
    return (
        f"{line} tmpl src {pol['tmpl_src']} dst {pol['tmpl_dst']} proto esp reqid {pol['reqid']} mode transport"
    )


def batch_argv():
    return ["ip", "-batch", "-"]


def xfrm_list_argv(kind):
    return ["ip", "xfrm", kind, "list"]


def _blocks(text):
    block = []
    for line in text.splitlines():
        if line.startswith("src ") and block:
            yield block
            block = []
        if line.strip():
            block.extend(tok.rstrip(",") for tok in line.split())
    if block:
        yield block


def _after(tokens, word, default=None):
    try:
        return tokens[tokens.index(word) + 1]
    except (ValueError, IndexError):
        return default


def parse_xfrm_states(text):
    """``ip xfrm state list`` text -> dicts (key kept as hex, never returned by modules)."""
    states = []
    for tok in _blocks(text):
        if _after(tok, "proto") is None or _after(tok, "spi") is None:
            continue
        state = {
            "src": tok[1],
            "dst": _after(tok, "dst"),
            "proto": _after(tok, "proto"),
            "spi": int(_after(tok, "spi"), 16),
            "reqid": int(_after(tok, "reqid", "0")),
            "mode": _after(tok, "mode"),
            "esn": "esn" in tok[tok.index("flag"):] if "flag" in tok else False,
            "aead": None,
            "key": None,
            "icv": None,
            "replay_window": int(_after(tok, "replay_window", None) or _after(tok, "replay-window", "0")),
        }
        if "aead" in tok:
            i = tok.index("aead")
            state["aead"], state["icv"] = tok[i + 1], int(tok[i + 3])
            state["key"] = tok[i + 2].lower().removeprefix("0x")
        states.append(state)
    return states


def _strip_plen(addr):
    return addr.split("/")[0] if addr and addr.endswith("/32") else addr


def parse_xfrm_policies(text):
    policies = []
    for tok in _blocks(text):
        if "dir" not in tok:
            continue
        tmpl = tok.index("tmpl") if "tmpl" in tok else len(tok)
        sel, tpl = tok[:tmpl], tok[tmpl:]
        policies.append({
            "src": _strip_plen(sel[1]),
            "dst": _strip_plen(_after(sel, "dst")),
            "proto": _after(sel, "proto"),
            "port": int(_after(sel, "dport")) if _after(sel, "dport") else None,
            "dir": _after(sel, "dir"),
            "tmpl_src": _after(tpl, "src"),
            "tmpl_dst": _after(tpl, "dst"),
            "tmpl_proto": _after(tpl, "proto"),
            "reqid": int(_after(tpl, "reqid", "0")),
            "mode": _after(tpl, "mode"),
        })
    return policies


# --- running ---------------------------------------------------------------


def batch(run, lines, what):
    """Many ip commands in one process (``run`` is a module.Runner); stdin carries key material."""
    if lines:
        run.run(batch_argv(), data="\n".join(lines) + "\n", what=what)
