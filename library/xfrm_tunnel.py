#!/usr/bin/python
# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: xfrm_tunnel
short_description: ESP transport-mode SAs and policies that encrypt one VXLAN overlay
description:
  - For every peer of one overlay, installs the ESP transport-mode SAs it is
    given (one per direction and key epoch) with C(rfc4106(gcm(aes))), a
    256-bit key plus 32-bit salt, a 128-bit ICV, ESN and a 128-packet replay
    window, an out policy (C(proto udp dport <port>) from this host to the
    peer, template reqid = the epoch it selects) and an in policy for the
    reverse direction. SAs and policies of peers no longer listed are removed.
  - The module never sees the fabric master secret. The controller derives
    this host's keys (filter C(swarm_fabric_sas), docs/security.md) and
    passes each SA either with its key (installed, or replaced when the live
    key differs) or with the fingerprint of the live key to keep.
  - SPIs and reqids follow one layout (overlay index, source slot, epoch), so
    the module recognises its own SAs and epochs from live state alone.
    Desired SPIs are checked against every other SA of the host.
  - O(state=query) only reads, and returns this overlay's live SAs (SPIs,
    epochs, key fingerprints, never keys) and the epoch of each out policy.
  - All changes go to the kernel in one C(ip -batch -) call fed on stdin, in
    a fixed order (receive SAs, send SAs, policies, then removals), so keys
    never appear in a process list.
  - A run that would change something first probes the kernel (unless
    O(check_kernel=false)) and fails before changing anything if it lacks
    esp4, the AEAD or the nftables secpath match.
author: Swarmfabric contributors
options:
  name:
    description: Overlay name (messages only; the key derivation happens on the controller).
    type: str
    required: true
  index:
    description: The overlay's index among the swarm's encrypted overlays (0..15), part of SPIs and reqids.
    type: int
    required: true
  vni:
    description: VXLAN network identifier; used only to recognise SAs of the v1 layout, which are replaced.
    type: int
  port:
    description: VXLAN UDP port that the policies match.
    type: int
    default: 4789
  local:
    description: This host's underlay IPv4 address.
    type: str
    required: true
  peers:
    description: The other hosts on the overlay, with the epoch this host's out policy to each selects.
    type: list
    elements: dict
    default: []
    suboptions:
      address:
        description: The peer's underlay IPv4 address.
        type: str
        required: true
      epoch:
        description: The epoch of the out SA the out policy to this peer selects.
        type: int
        required: true
  sas:
    description:
      - Every SA this host should hold for the overlay, both directions. Any
        other SA of the overlay with a listed or departed peer is removed.
      - Exactly one of O(sas[].key) and O(sas[].fingerprint) per entry.
    type: list
    elements: dict
    default: []
    suboptions:
      peer:
        description: The peer's underlay address.
        type: str
        required: true
      direction:
        description: C(in) (peer to this host) or C(out).
        type: str
        required: true
        choices: [in, out]
      epoch:
        description: Key epoch (1..2**28-1).
        type: int
        required: true
      spi:
        description: The SA's SPI, in the layout of docs/security.md.
        type: int
        required: true
      key:
        description: 72 hex digits, AES-256 key and GCM salt. The SA is installed with it.
        type: str
        no_log: true
      fingerprint:
        description: Keep the live SA whose key has this fingerprint; fail if the live state moved.
        type: str
  check_kernel:
    description:
      - Probe the kernel for esp4, the AEAD and nftables before changing anything.
      - Set it to C(false) when M(fabric_capabilities) ran just before (the fabric role does).
    type: bool
    default: true
  state:
    description:
      - C(present) makes the overlay's SAs and policies exactly O(sas) and O(peers).
      - C(query) only reads and reports.
      - C(absent) removes every SA and policy of this overlay.
    type: str
    default: present
    choices: [present, query, absent]
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    description: Shows SPIs, directions, epochs, key fingerprints and policies; never keys.
  idempotent:
    support: full
notes:
  - The keys never leave the module, neither in results, diffs, logs nor argv.
  - Run it once per overlay per host; it handles all peers in one call.
requirements:
  - iproute2 and util-linux (unshare) on the managed host; a kernel with esp4 and rfc4106(gcm(aes))
extends_documentation_fragment:
  - swarmfabric
"""

EXAMPLES = r"""
- name: Read the live SAs of overlay appnet
  xfrm_tunnel:
    name: appnet
    index: 0
    local: 172.30.0.11
    state: query
  register: live

- name: Encrypt overlay appnet with the keys the controller derived for this host
  xfrm_tunnel:
    name: appnet
    index: 0
    local: 172.30.0.11
    peers: "{{ __keys.peers }}"
    sas: "{{ __keys.sas }}"
  vars:
    __keys: "{{ item | swarm_fabric_sas(swarmfabric_plan, inventory_hostname, __live, fabric_secret, __nonce) }}"
  no_log: true
"""

RETURN = r"""
changed:
  description: Whether SAs or policies were (or would be) changed.
  returned: always
  type: bool
actions:
  description: What was (or would be) done, in the order applied; SPIs and fingerprints only.
  returned: always
  type: list
  elements: str
  sample:
    - add in SA 172.30.0.12->172.30.0.11 spi 0x00100002 epoch 1 key #3f09a1c2
    - add out policy to 172.30.0.12 epoch 1
epoch:
  description: The highest epoch this host's out policies select (after the run; before it for O(state=query)).
  returned: when state is present or query
  type: int
outbound:
  description: Peer address to the epoch its out policy selects.
  returned: when state is present or query
  type: dict
live_sas:
  description: This overlay's SAs (before the run for O(state=query), after it otherwise), without keys.
  returned: when state is present or query
  type: list
  elements: dict
  sample: [{"peer": "172.30.0.12", "direction": "in", "epoch": 1, "spi": 1048578, "fingerprint": "3f09a1c2d4e5f607"}]
sa_epochs:
  description: Epochs whose SAs are installed.
  returned: when state is present or query
  type: list
  elements: int
diff:
  description: Before and after as SA and policy lines (SPIs, epochs, key fingerprints; never keys).
  returned: when diff mode is on
  type: dict
"""

import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric import iproute, keys
from ansible.module_utils.swarmfabric.kernelcaps import require_encryption
from ansible.module_utils.swarmfabric.module import Change, Runner

HEX_KEY = re.compile(f"^[0-9a-f]{{{2 * keys.SA_KEY_LEN}}}$")


def sa_epoch(sa, p):
    return keys.reqid_epoch(sa["reqid"], p["index"])


def own_sas(states, p):
    """Live SAs of this overlay (and of its v1 layout) between local and someone."""
    mine = []
    for sa in states:
        if sa["proto"] != "esp" or p["local"] not in (sa["src"], sa["dst"]):
            continue
        if keys.is_own_sa(sa["spi"], sa["reqid"], p["index"]) or keys.is_legacy_sa(sa["spi"], sa["reqid"], p["vni"]):
            mine.append(sa)
    return mine


def peer_of(item, local):
    return item["dst"] if item["src"] == local else item["src"]


def short_fp(sa):
    return f" key #{sa['fingerprint'][:8]}" if sa.get("fingerprint") else ""


def sa_label(sa, p):
    direction = "out" if sa["src"] == p["local"] else "in"
    epoch = sa.get("epoch") or sa_epoch(sa, p)
    when = f"epoch {epoch}" if epoch else "v1 layout"
    return f"{direction} SA {sa['src']}->{sa['dst']} spi 0x{sa['spi']:08x} {when}{short_fp(sa)}"


def policy_label(pol, p):
    if pol["dir"] == "out":
        epoch = keys.reqid_epoch(pol["reqid"], p["index"])
        return f"out policy to {pol['dst']} " + (f"epoch {epoch}" if epoch else "v1 layout")
    return f"in policy from {pol['src']}"


def live_fingerprint(sa):
    return keys.fingerprint(sa["key"]) if sa.get("key") else None


def desired_sas(p):
    """The SAs of p['sas'] as kernel SAs (src, dst, spi, reqid); checks the layout and the keys."""
    peers = {peer["address"] for peer in p["peers"]}
    sas, seen = [], set()
    for entry in p["sas"]:
        if entry["peer"] not in peers:
            raise ValueError(f"an SA names {entry['peer']}, which is not among the peers")
        if (entry.get("key") is None) == (entry.get("fingerprint") is None):
            raise ValueError(f"the SA {entry['direction']} {entry['peer']} epoch {entry['epoch']} "
                             "needs exactly one of key and fingerprint")
        src, dst = (entry["peer"], p["local"]) if entry["direction"] == "in" else (p["local"], entry["peer"])
        reqid = keys.sa_reqid(p["index"], entry["epoch"])
        if not keys.is_own_sa(entry["spi"], reqid, p["index"]):
            raise ValueError(f"SPI 0x{entry['spi']:08x} is not in overlay index {p['index']}'s layout "
                             f"for epoch {entry['epoch']}")
        sa = {"src": src, "dst": dst, "spi": entry["spi"], "reqid": reqid, "epoch": entry["epoch"]}
        if entry.get("key") is not None:
            key_hex = entry["key"].lower().removeprefix("0x")
            p["no_log_values"].add(key_hex)
            if not HEX_KEY.match(key_hex):
                raise ValueError(f"the key of SA spi 0x{entry['spi']:08x} is not {2 * keys.SA_KEY_LEN} hex digits")
            sa["key"], sa["fingerprint"] = key_hex, keys.fingerprint(key_hex)
        else:
            sa["fingerprint"], sa["keep"] = entry["fingerprint"], True
        if (src, dst, sa["spi"]) in seen:
            raise ValueError(f"SPI 0x{sa['spi']:08x} from {src} to {dst} is listed twice")
        seen.add((src, dst, sa["spi"]))
        sas.append(sa)
    return sas


def desired_policies(p):
    pols = []
    for peer in sorted(p["peers"], key=lambda item: item["address"]):
        address = peer["address"]
        pols.append({"src": address, "dst": p["local"], "port": p["port"], "dir": "in",
                     "tmpl_src": address, "tmpl_dst": p["local"], "reqid": 0})
        pols.append({"src": p["local"], "dst": address, "port": p["port"], "dir": "out",
                     "tmpl_src": p["local"], "tmpl_dst": address, "reqid": keys.sa_reqid(p["index"], peer["epoch"])})
    return pols


def sa_matches(live, want):
    return (live["aead"] == iproute.AEAD_GCM and live["icv"] == iproute.ICV_BITS and live["esn"]
            and live["mode"] == "transport" and live["reqid"] == want["reqid"]
            and live["replay_window"] == iproute.REPLAY_WINDOW and live_fingerprint(live) == want["fingerprint"])


def policy_key(pol):
    return (pol["src"], pol["dst"], pol["dir"])


def our_policies(policies, p, peers, peers_seen):
    """Policies on our port between local and a peer of ours; foreign out policies raise."""
    mine = []
    for pol in policies:
        if pol["proto"] != "udp" or pol["port"] != p["port"] or pol["dir"] not in ("in", "out"):
            continue
        peer = pol["dst"] if pol["dir"] == "out" else pol["src"]
        local = pol["src"] if pol["dir"] == "out" else pol["dst"]
        if local != p["local"]:
            continue
        if pol["dir"] == "out" and keys.reqid_epoch(pol["reqid"], p["index"]) is None \
                and not keys.is_legacy_reqid(pol["reqid"], p["vni"]):
            if peer in peers:
                raise ValueError(
                    f"the out policy to {peer} on UDP port {p['port']} belongs to another overlay "
                    f"or IPsec stack (reqid {pol['reqid']}); encrypted overlays need distinct ports"
                )
            continue
        if peer in peers or peer in peers_seen:
            mine.append(pol)
    return mine


def report(sas, pols, p):
    """The public view of SAs and policies: what state=query and every run return."""
    live = []
    for sa in sas:
        epoch = sa.get("epoch") or sa_epoch(sa, p)
        if not epoch:
            continue  # v1 layout: never healthy, always replaced
        live.append({"peer": peer_of(sa, p["local"]), "direction": "out" if sa["src"] == p["local"] else "in",
                     "epoch": epoch, "spi": sa["spi"], "fingerprint": sa.get("fingerprint") or live_fingerprint(sa)})
    outbound = {}
    for pol in pols:
        epoch = keys.reqid_epoch(pol["reqid"], p["index"]) if pol["dir"] == "out" else None
        if epoch:
            outbound[pol["dst"]] = epoch
    return {"live_sas": sorted(live, key=lambda sa: (sa["peer"], sa["direction"], sa["epoch"])),
            "outbound": outbound, "epoch": max(outbound.values()) if outbound else None,
            "sa_epochs": sorted({sa["epoch"] for sa in live})}


def plan(p, states, policies):
    """Returns (lines, actions, before, after, report); lines carry keys, nothing else does."""
    live_sas = own_sas(states, p)
    peers = {peer["address"] for peer in p["peers"]}
    peers_seen = {peer_of(sa, p["local"]) for sa in live_sas}
    live_pols = our_policies(policies, p, peers, peers_seen)
    for sa in live_sas:
        sa["fingerprint"] = live_fingerprint(sa)

    def view(sas, pols):
        return {"sas": sorted(sa_label(sa, p) for sa in sas), "policies": sorted(policy_label(pol, p) for pol in pols)}

    if p["state"] == "query":
        return [], [], view(live_sas, live_pols), view(live_sas, live_pols), report(live_sas, live_pols, p)
    if p["state"] == "absent":
        want_sas, want_pols = [], []
    else:
        want_sas, want_pols = desired_sas(p), desired_policies(p)

    own_ids = {(sa["src"], sa["dst"], sa["spi"]) for sa in live_sas}
    foreign = [sa for sa in states if (sa["src"], sa["dst"], sa["spi"]) not in own_ids]
    clashes = keys.spi_collisions([{"dst": sa["dst"], "spi": sa["spi"]} for sa in want_sas + foreign])
    if clashes:
        raise ValueError("another IPsec SA on this host already uses "
                         + ", ".join(f"SPI 0x{spi:08x} to {dst}" for dst, spi in clashes)
                         + "; remove it, or move that IPsec stack to SPIs outside 0x00100000-0xffffffff")

    live_by_id = {(sa["src"], sa["dst"], sa["spi"]): sa for sa in live_sas}
    want_ids = {(sa["src"], sa["dst"], sa["spi"]) for sa in want_sas}
    lines, actions = [], []
    # 1. receive SAs before send SAs: a peer may use its send SA as soon as it exists.
    for inbound in (True, False):
        for sa in want_sas:
            if (sa["dst"] == p["local"]) != inbound:
                continue
            live = live_by_id.get((sa["src"], sa["dst"], sa["spi"]))
            if live is not None and sa_matches(live, sa):
                continue
            if sa.get("keep"):
                what = "is missing" if live is None else "no longer matches what was read"
                raise ValueError(f"the {sa_label(sa, p)} to keep {what}: the live state moved since it was "
                                 "read; run the play again")
            if live is not None:
                actions.append("replace " + sa_label(sa, p))
                lines.append(iproute.xfrm_state_line("delete", sa))
            else:
                actions.append("add " + sa_label(sa, p))
            lines.append(iproute.xfrm_state_line("add", sa, sa["key"]))
    # 2. policies only once their SAs exist; "update" switches an out policy atomically.
    live_pol_by_key = {policy_key(pol): pol for pol in live_pols}
    for pol in want_pols:
        live = live_pol_by_key.get(policy_key(pol))
        if live is not None and all(live[f] == pol[f] for f in ("tmpl_src", "tmpl_dst", "reqid")) \
                and live["tmpl_proto"] == "esp" and live["mode"] == "transport":
            continue
        actions.append(("switch " if live else "add ") + policy_label(pol, p))
        lines.append(iproute.xfrm_policy_line("update" if live else "add", pol))
    # 3. removals last: departed peers' policies, then SAs nobody selects any more,
    # send SAs before receive SAs (a peer may still be sending with the old one).
    want_pol_keys = {policy_key(pol) for pol in want_pols}
    for pol in live_pols:
        if policy_key(pol) not in want_pol_keys:
            actions.append("remove " + policy_label(pol, p))
            lines.append(iproute.xfrm_policy_line("delete", pol))
    for ident, sa in sorted(live_by_id.items(), key=lambda item: (item[1]["dst"] == p["local"], item[0])):
        if ident not in want_ids:
            actions.append("remove " + sa_label(sa, p))
            lines.append(iproute.xfrm_state_line("delete", sa))

    return lines, actions, view(live_sas, live_pols), view(want_sas, want_pols), report(want_sas, want_pols, p)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            index=dict(type="int", required=True),
            local=dict(type="str", required=True),
            vni=dict(type="int"),
            port=dict(type="int", default=4789),
            peers=dict(type="list", elements="dict", default=[], options=dict(
                address=dict(type="str", required=True),
                epoch=dict(type="int", required=True),
            )),
            sas=dict(type="list", elements="dict", default=[], options=dict(
                peer=dict(type="str", required=True),
                direction=dict(type="str", required=True, choices=["in", "out"]),
                epoch=dict(type="int", required=True),
                spi=dict(type="int", required=True),
                key=dict(type="str", no_log=True),
                fingerprint=dict(type="str"),
            )),
            check_kernel=dict(type="bool", default=True),
            state=dict(type="str", default="present", choices=["present", "query", "absent"]),
        ),
        supports_check_mode=True,
    )
    change = Change(module)
    p = dict(module.params)
    p["no_log_values"] = module.no_log_values
    what = f"encryption of overlay {p['name']}"
    probe = p["state"] == "present" and p["check_kernel"]
    run = Runner(module)
    try:
        if not 0 <= p["index"] <= keys.MAX_INDEX:
            raise ValueError(f"overlay index {p['index']} is out of range 0..{keys.MAX_INDEX}")
        try:
            states = iproute.parse_xfrm_states(run.run(iproute.xfrm_list_argv("state")))
            policies = iproute.parse_xfrm_policies(run.run(iproute.xfrm_list_argv("policy")))
        except iproute.IpRouteError:
            if probe:  # no xfrm at all: say what is missing rather than which command failed
                require_encryption(change, p["name"])
            raise
        lines, change.actions, change.before, change.after, summary = plan(p, states, policies)
        if lines and probe:
            require_encryption(change, p["name"])
        # One batch, fed on stdin: the keys are in no argv.
        change.write(iproute.batch, run, lines, f"ip -batch ({len(lines)} xfrm changes)")
    except (ValueError, iproute.IpRouteError) as exc:
        change.fail(f"configure {what}", exc)
    change.exit(changed=bool(lines), **(summary if p["state"] != "absent" else {}))


if __name__ == "__main__":
    main()
