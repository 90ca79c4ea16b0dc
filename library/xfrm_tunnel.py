#!/usr/bin/python
# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: xfrm_tunnel
short_description: ESP transport-mode SAs and policies that encrypt one VXLAN overlay
description:
  - For every peer of one overlay, installs two ESP transport-mode SAs (one
    per direction) with C(rfc4106(gcm(aes))), a 256-bit key plus 32-bit salt,
    a 128-bit ICV, ESN and a 128-packet replay window. Keys are derived per
    pair, direction and key generation from the master secret with HKDF-SHA256.
  - Installs an out policy (C(proto udp dport <port>) from this host to the
    peer, template reqid = the generation in use) and an in policy for the
    reverse direction. SAs and policies of peers no longer listed are removed.
  - SPIs carry the key generation in their high byte and a hash of (overlay,
    VNI, source, destination) in the rest, so the module recognises its own
    SAs and the current generation from live state alone. SPIs are checked
    for uniqueness among all inbound SAs of the host.
  - All changes go to the kernel in one C(ip -batch -) call fed on stdin, in
    a fixed order (receive SAs, send SAs, policies, then removals), so keys
    never appear in a process list.
  - A run that would change something first probes the kernel (unless
    O(check_kernel=false)) and fails before changing anything if it lacks
    esp4, the AEAD or the nftables secpath match.
author: Swarmfabric contributors
options:
  name:
    description: Overlay name; part of the key derivation and the SPI.
    type: str
    required: true
  vni:
    description: VXLAN network identifier; part of the key derivation, SPI and reqid.
    type: int
    required: true
  port:
    description: VXLAN UDP port that the policies match.
    type: int
    default: 4789
  local:
    description: This host's underlay IPv4 address.
    type: str
    required: true
  peers:
    description: Underlay IPv4 addresses of the other hosts on the overlay.
    type: list
    elements: str
    default: []
  secret:
    description: The fabric master secret (from Ansible Vault, or the file kept on the first manager).
    type: str
  generation:
    description:
      - Key generation (1..255) to converge to, or the new generation a
        rotation phase moves to. Defaults to the generation live on the host
        (the out policies' reqid), or 1 when nothing is installed.
    type: int
  phase:
    description:
      - C(converge) keeps SAs of other generations already installed and points the out policies at O(generation).
      - C(add_inbound) adds the SAs of O(generation) and leaves the out policies alone.
      - C(switch_outbound) points the out policies at O(generation).
      - C(retire_old) removes the SAs of every other generation.
      - Run each rotation phase on all hosts before starting the next (P(playbooks/rotate-keys.yml) does).
    type: str
    default: converge
    choices: [converge, add_inbound, switch_outbound, retire_old]
  check_kernel:
    description:
      - Probe the kernel for esp4, the AEAD and nftables before changing anything.
      - Set it to C(false) when M(fabric_capabilities) ran just before (the fabric role does).
    type: bool
    default: true
  state:
    description: C(absent) removes every SA and policy of this overlay.
    type: str
    default: present
    choices: [present, absent]
attributes:
  diff_mode:
    support: full
    description: Shows SPIs, directions, generations and policies; never keys.
notes:
  - The keys never leave the module, neither in results, diffs, logs nor argv.
  - Run it once per overlay per host; it handles all peers in one call.
requirements:
  - iproute2 and util-linux (unshare) on the managed host; a kernel with esp4 and rfc4106(gcm(aes))
extends_documentation_fragment:
  - swarmfabric
"""

EXAMPLES = r"""
- name: Encrypt overlay appnet
  xfrm_tunnel:
    name: appnet
    vni: 300
    local: 172.30.0.11
    peers: [172.30.0.12, 172.30.0.13]
    secret: "{{ swarmfabric_fabric_secret }}"
  no_log: true

- name: Rotation, phase 1 of 3 (run on all hosts before phase 2)
  xfrm_tunnel:
    name: appnet
    vni: 300
    local: 172.30.0.11
    peers: [172.30.0.12, 172.30.0.13]
    secret: "{{ swarmfabric_fabric_secret }}"
    generation: 2
    phase: add_inbound
"""

RETURN = r"""
changed:
  description: Whether SAs or policies were (or would be) changed.
  returned: always
  type: bool
actions:
  description: What was (or would be) done, in the order applied; SPIs only.
  returned: always
  type: list
  elements: str
  sample: ["add in SA 172.30.0.12->172.30.0.11 spi 0x01a3f00c gen 1", "add out policy to 172.30.0.12 gen 1"]
generation:
  description: The generation the out policies use after the run.
  returned: when state is present
  type: int
sa_generations:
  description: Generations whose SAs are installed after the run.
  returned: when state is present
  type: list
  elements: int
sas:
  description: The SAs after the run, one line each, without keys.
  returned: when state is present
  type: list
  elements: str
  sample: ["in SA 172.30.0.12->172.30.0.11 spi 0x01a3f00c gen 1"]
diff:
  description: Before and after as SA and policy lines (SPIs and generations, never keys).
  returned: when diff mode is on
  type: dict
"""

import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric import iproute, keys
from ansible.module_utils.swarmfabric.kernelcaps import require_encryption


def own_sas(states, p):
    """Live SAs of this overlay: ESP transport between local and someone, SPI derived by us."""
    mine = []
    for sa in states:
        if sa["proto"] != "esp" or p["local"] not in (sa["src"], sa["dst"]):
            continue
        if keys.is_own_spi(sa["spi"], p["name"], p["vni"], sa["src"], sa["dst"]):
            mine.append(sa)
    return mine


def peer_of(item, local):
    return item["dst"] if item["src"] == local else item["src"]


def sa_label(sa, local):
    direction = "out" if sa["src"] == local else "in"
    return f"{direction} SA {sa['src']}->{sa['dst']} spi 0x{sa['spi']:08x} gen {keys.spi_generation(sa['spi'])}"


def policy_label(pol, vni):
    if pol["dir"] == "out":
        return f"out policy to {pol['dst']} gen {keys.reqid_generation(pol['reqid'], vni)}"
    return f"in policy from {pol['src']}"


def desired_sas(p, generations):
    sas = []
    for peer in sorted(p["peers"]):
        for gen in sorted(generations):
            for src, dst in ((peer, p["local"]), (p["local"], peer)):
                sas.append({"src": src, "dst": dst, "spi": keys.sa_spi(p["name"], p["vni"], src, dst, gen),
                            "reqid": keys.sa_reqid(p["vni"], gen), "gen": gen})
    return sas


def desired_policies(p, generation):
    pols = []
    for peer in sorted(p["peers"]):
        pols.append({"src": peer, "dst": p["local"], "port": p["port"], "dir": "in",
                     "tmpl_src": peer, "tmpl_dst": p["local"], "reqid": 0})
        pols.append({"src": p["local"], "dst": peer, "port": p["port"], "dir": "out",
                     "tmpl_src": p["local"], "tmpl_dst": peer, "reqid": keys.sa_reqid(p["vni"], generation)})
    return pols


def sa_matches(live, want, key_hex):
    return (live["aead"] == iproute.AEAD_GCM and live["icv"] == iproute.ICV_BITS and live["esn"]
            and live["mode"] == "transport" and live["reqid"] == want["reqid"]
            and live["replay_window"] == iproute.REPLAY_WINDOW and (live["key"] in (None, key_hex)))


def policy_key(pol):
    return (pol["src"], pol["dst"], pol["dir"])


def our_policies(policies, p, peers_seen):
    """Policies on our port between local and a peer of ours; foreign out policies raise."""
    mine = []
    for pol in policies:
        if pol["proto"] != "udp" or pol["port"] != p["port"] or pol["dir"] not in ("in", "out"):
            continue
        peer = pol["dst"] if pol["dir"] == "out" else pol["src"]
        local = pol["src"] if pol["dir"] == "out" else pol["dst"]
        if local != p["local"]:
            continue
        if pol["dir"] == "out" and pol["reqid"] and keys.reqid_generation(pol["reqid"], p["vni"]) is None:
            if peer in p["peers"]:
                raise ValueError(
                    f"the out policy to {peer} on UDP port {p['port']} belongs to another overlay "
                    f"(reqid {pol['reqid']}); encrypted overlays need distinct ports"
                )
            continue
        if peer in p["peers"] or peer in peers_seen:
            mine.append(pol)
    return mine


def plan(p, states, policies):
    """Returns (lines, actions, before, after, generation, generations); lines carry keys."""
    live_sas = own_sas(states, p)
    peers_seen = {peer_of(sa, p["local"]) for sa in live_sas}
    live_pols = our_policies(policies, p, peers_seen)
    live_out_gens = sorted({keys.reqid_generation(pol["reqid"], p["vni"]) for pol in live_pols
                            if pol["dir"] == "out" and pol["dst"] in p["peers"]} - {None})
    live_policy_gen = live_out_gens[-1] if live_out_gens else None
    live_gens = {keys.spi_generation(sa["spi"]) for sa in live_sas if peer_of(sa, p["local"]) in p["peers"]}

    if p["state"] == "absent":
        want_sas, want_pols, generation, generations = [], [], None, set()
    else:
        generations, generation = keys.plan_generations(p["phase"], p["generation"], live_gens, live_policy_gen)
        want_sas = desired_sas(p, generations)
        want_pols = desired_policies(p, generation)

    foreign_in = [sa for sa in states if sa["dst"] == p["local"] and sa not in live_sas]
    clashes = keys.spi_collisions([sa for sa in want_sas if sa["dst"] == p["local"]] + foreign_in)
    if clashes:
        raise ValueError("SPI collision on this host: " + ", ".join(f"0x{spi:08x} to {dst}" for dst, spi in clashes)
                         + "; rotate to another generation or rename the overlay")

    live_by_id = {(sa["src"], sa["dst"], sa["spi"]): sa for sa in live_sas}
    want_ids = {(sa["src"], sa["dst"], sa["spi"]) for sa in want_sas}
    lines, actions = [], []
    # 1. receive SAs before send SAs: a peer may use its send SA as soon as it exists.
    for inbound in (True, False):
        for sa in want_sas:
            if (sa["dst"] == p["local"]) != inbound:
                continue
            key_hex = keys.sa_key(p["secret"], p["name"], p["vni"], sa["src"], sa["dst"], sa["gen"]).hex()
            p["no_log_values"].add(key_hex)
            live = live_by_id.get((sa["src"], sa["dst"], sa["spi"]))
            if live is not None and sa_matches(live, sa, key_hex):
                continue
            if live is not None:
                actions.append("replace " + sa_label(sa, p["local"]))
                lines.append(iproute.xfrm_state_line("delete", sa))
            else:
                actions.append("add " + sa_label(sa, p["local"]))
            lines.append(iproute.xfrm_state_line("add", sa, key_hex))
    # 2. policies only once their SAs exist; "update" switches an out policy atomically.
    live_pol_by_key = {policy_key(pol): pol for pol in live_pols}
    for pol in want_pols:
        live = live_pol_by_key.get(policy_key(pol))
        fields = ("tmpl_src", "tmpl_dst", "reqid")
        if live is not None and all(live[f] == pol[f] for f in fields) and live["tmpl_proto"] == "esp" \
                and live["mode"] == "transport":
            continue
        actions.append(("switch " if live else "add ") + policy_label(pol, p["vni"]))
        lines.append(iproute.xfrm_policy_line("update" if live else "add", pol))
    # 3. removals last: departed peers' policies, then SAs nobody selects any more.
    want_pol_keys = {policy_key(pol) for pol in want_pols}
    for pol in live_pols:
        if policy_key(pol) not in want_pol_keys:
            actions.append("remove " + policy_label(pol, p["vni"]))
            lines.append(iproute.xfrm_policy_line("delete", pol))
    # Send SAs before receive SAs: a peer may still be sending with the old one.
    for ident, sa in sorted(live_by_id.items(), key=lambda item: (item[1]["dst"] == p["local"], item[0])):
        if ident not in want_ids:
            actions.append("remove " + sa_label(sa, p["local"]))
            lines.append(iproute.xfrm_state_line("delete", sa))

    def view(sas, pols):
        return {"sas": sorted(sa_label(sa, p["local"]) for sa in sas),
                "policies": sorted(policy_label(pol, p["vni"]) for pol in pols)}

    return lines, actions, view(live_sas, live_pols), view(want_sas, want_pols), generation, generations


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            vni=dict(type="int", required=True),
            port=dict(type="int", default=4789),
            local=dict(type="str", required=True),
            peers=dict(type="list", elements="str", default=[]),
            secret=dict(type="str", no_log=True),
            generation=dict(type="int"),
            phase=dict(type="str", default="converge",
                       choices=["converge", "add_inbound", "switch_outbound", "retire_old"]),
            check_kernel=dict(type="bool", default=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
        ),
        required_if=[("state", "present", ("secret",))],
        supports_check_mode=True,
    )
    p = dict(module.params)
    p["no_log_values"] = module.no_log_values
    what = f"encryption of overlay {p['name']}"
    probe = p["state"] == "present" and p["check_kernel"]
    run = iproute.Runner(module)
    try:
        try:
            states = iproute.parse_xfrm_states(run.run(iproute.xfrm_list_argv("state")))
            policies = iproute.parse_xfrm_policies(run.run(iproute.xfrm_list_argv("policy")))
        except iproute.IpRouteError:
            if probe:  # no xfrm at all: say what is missing rather than which command failed
                require_encryption(module, p["name"])
            raise
        lines, actions, before, after, generation, generations = plan(p, states, policies)
        if lines and probe:
            require_encryption(module, p["name"])
        if lines and not module.check_mode:
            run.batch(lines, what=f"ip -batch ({len(lines)} xfrm changes)")
    except (ValueError, iproute.IpRouteError) as exc:
        module.fail_json(msg=f"Cannot configure {what}: {exc}", exception=traceback.format_exc())

    out = {"changed": bool(lines), "actions": actions}
    if p["state"] == "present":
        out.update(generation=generation, sa_generations=sorted(generations), sas=after["sas"])
    if module._diff:
        out["diff"] = {"before": before, "after": after}
    module.exit_json(**out)


if __name__ == "__main__":
    main()
