#!/usr/bin/python
# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: mesh_ruleset
short_description: Apply one host's rendered routing mesh atomically (nftables or IPVS)
description:
  - Takes the ruleset that roles/mesh rendered for this host, compares it with
    the live kernel state, normalized, and applies only the difference.
  - C(nftables) backend, one table C(ip swarmfabric_mesh) applied in one
    C(nft -f) transaction (see M(nft_table)), plus the C(filter) part of
    O(iptables) (chain C(SF-MESH-FWD), which accepts forwarded packets of the
    mesh's connections through a FORWARD policy of DROP) when the host has
    iptables; our IPVS services and mangle/nat chains are removed if an
    earlier run left them.
  - C(ipvs) backend, an C(iptables-restore --noflush) file limited to our own
    chains C(SF-MESH-FWD) (filter), C(SF-MESH) (mangle) and C(SF-MESH-POST)
    (nat) plus the jumps into them, validated with C(--test) first; then the IPVS virtual services (one
    per fwmark, NAT mode) via C(ipvsadm-restore). If the IPVS step fails, the
    previous iptables chains and IPVS services are put back. Real servers that
    go away are first weighted to 0, then deleted. Only fwmark services in our
    range (top byte 0x5F) are ever read or changed. The IPVS sysctls are set on
    purpose and the IPVS timeouts come from O(ipvs_timeouts).
  - In both modes the ARP guard table C(netdev swarmfabric_mesh_arp) and the
    VIP addresses on the overlay shims are converged too.
  - Tables and chains that are not ours, Docker's C(DOCKER-*) chains
    included, are never named in any command.
author: Swarmfabric contributors
options:
  backend:
    description:
      - C(auto) uses IPVS where the kernel has it (C(/proc/net/ip_vs) exists,
        or C(modprobe ip_vs) succeeds), nftables otherwise.
    type: str
    default: auto
    choices: [auto, ipvs, nftables]
  nft:
    description:
      - The rendered C(table ip swarmfabric_mesh { ... }) (roles/mesh mesh.nft.j2).
      - Needed for the nftables backend.
    type: str
  ipvs:
    description: The rendered C(ipvsadm-restore) text (mesh.ipvs.j2). Needed for the IPVS backend.
    type: str
  iptables:
    description:
      - The rendered C(iptables-restore) text (mesh.iptables.j2). Needed for the IPVS backend.
      - The nftables backend uses only its C(filter) table; without it, our FORWARD chain is removed.
    type: str
  arp_guard:
    description:
      - The rendered C(table netdev swarmfabric_mesh_arp { ... }) (mesh_arp.nft.j2).
        Empty or omitted removes the table.
    type: str
  vips:
    description:
      - VIP addresses per overlay shim. On each O(vips[].device), the module
        owns the /32 addresses inside O(vips[].range) and nothing else.
    type: list
    elements: dict
    default: []
    suboptions:
      device:
        description: The shim interface, for example C(sf-appnet-h).
        type: str
        required: true
      range:
        description: The overlay's VIP range; addresses in it that are not listed are removed.
        type: str
        required: true
      addresses:
        description: The VIPs that must be on the device.
        type: list
        elements: str
        default: []
  ipvs_timeouts:
    description: IPVS idle timeouts in seconds (C(ipvsadm --set tcp tcpfin udp)). IPVS backend only.
    type: dict
    default: {tcp: 900, tcpfin: 120, udp: 300}
  drain_seconds:
    description: Seconds between weighting removed real servers to 0 and deleting them.
    type: int
    default: 0
attributes:
  check_mode:
    support: full
    description: Validates every script (C(nft -c), C(iptables-restore --test)) and changes nothing.
  diff_mode:
    support: full
    description:
      - One canonical line per rule, element, real server and address,
        so the diff shows lines added and removed.
requirements:
  - nft; for the IPVS backend also ipvsadm, ipvsadm-restore, iptables-save and iptables-restore
extends_documentation_fragment:
  - swarmfabric
"""

EXAMPLES = r"""
- name: Apply the mesh
  mesh_ruleset:
    backend: auto
    nft: "{{ lookup('ansible.builtin.template', 'mesh.nft.j2') }}"
    ipvs: "{{ lookup('ansible.builtin.template', 'mesh.ipvs.j2') }}"
    iptables: "{{ lookup('ansible.builtin.template', 'mesh.iptables.j2') }}"
    arp_guard: "{{ lookup('ansible.builtin.template', 'mesh_arp.nft.j2') }}"
    vips: [{device: sf-appnet-h, range: 10.20.255.0/24, addresses: [10.20.255.37]}]
"""

RETURN = r"""
changed:
  description: Whether anything differed (in check mode, would differ).
  returned: always
  type: bool
backend:
  description: The backend used after resolving C(auto).
  returned: always
  type: str
  sample: nftables
actions:
  description: What was (or would be) done, one short line per step.
  returned: always
  type: list
  elements: str
lines_added:
  description: Rule, element, real-server and address lines added (canonical form).
  returned: always
  type: int
lines_removed:
  description: Rule, element, real-server and address lines removed (canonical form).
  returned: always
  type: int
"""

import ipaddress
import json
import os
import time
from collections import Counter

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric.nft import NftError, canonical_text, converge_table
from ansible.module_utils.swarmfabric.ruleset import (
    IPT_CHAINS,
    IPT_FORWARD_TABLE,
    SYSCTLS,
    iptables_restore_text,
    ipvs_delta,
    ipvs_lines,
    parse_iptables_save,
    parse_ipvs,
)

TIMEOUT_KEYS = ("tcp", "tcpfin", "udp")
DEFAULT_TIMEOUTS = {"tcp": 900, "tcpfin": 120, "udp": 300}


class MeshError(Exception):
    pass


class Mesh:
    """Reads and writes through one module; every write is skipped in check mode."""

    def __init__(self, module):
        self.module = module
        self.check = module.check_mode
        self.actions = []
        self.before = {}
        self.after = {}

    def run(self, argv, data=None, what=None):
        rc, out, err = self.module.run_command(argv, data=data, binary_data=True)
        if rc != 0 and what:
            raise MeshError(f"{what}: {(err or out).strip()}")
        return rc, out, err

    def bin(self, name):
        return self.module.get_bin_path(name, required=True)

    # nftables tables (mesh and ARP guard) go through nft.py.
    def table(self, family, name, definition):
        state = "present" if definition and definition.strip() else "absent"
        nft = self.bin("nft")
        try:
            result = converge_table(lambda a, d: self.run(a, d), nft, family, name, definition, state, self.check)
        except NftError as exc:
            raise MeshError(f"table {family} {name}: {exc}") from exc
        label = f"nft table {family} {name}"
        self.before[label] = canonical_text(result["before"]).splitlines()
        self.after[label] = canonical_text(result["after"]).splitlines()
        self.actions += result["actions"]

    # VIP /32s on the shims.
    def vips(self, specs):
        ip = self.bin("ip")
        for spec in specs:
            dev, vrange = spec["device"], ipaddress.IPv4Network(spec["range"])
            _rc, out, _err = self.run([ip, "-j", "addr", "show", "dev", dev], what=f"read addresses of {dev}")
            live = {a["local"] for link in json.loads(out or "[]") for a in link.get("addr_info", [])
                    if a.get("family") == "inet" and a.get("prefixlen") == 32
                    and ipaddress.IPv4Address(a["local"]) in vrange}
            want = set(spec.get("addresses") or [])
            label = f"addresses on {dev}"
            self.before[label] = sorted(live)
            self.after[label] = sorted(want)
            for addr in sorted(want - live):
                self.actions.append(f"added VIP {addr}/32 on {dev}")
                if not self.check:
                    self.run([ip, "addr", "add", f"{addr}/32", "dev", dev], what=f"add {addr} on {dev}")
            for addr in sorted(live - want):
                self.actions.append(f"removed VIP {addr}/32 from {dev}")
                if not self.check:
                    self.run([ip, "addr", "del", f"{addr}/32", "dev", dev], what=f"remove {addr} from {dev}")

    # IPVS backend ------------------------------------------------------
    def read_iptables(self):
        # One iptables-save of every table (one process instead of one per table).
        return parse_iptables_save(self.run([self.bin("iptables-save")], what="read iptables")[1])

    def read_ipvs(self):
        return parse_ipvs(self.run([self.bin("ipvsadm"), "-Sn"], what="read IPVS services")[1])

    def restore_iptables(self, text, test=False):
        argv = [self.bin("iptables-restore"), "--noflush"] + (["--test"] if test else [])
        self.run(argv, data=text, what="validate iptables rules" if test else "apply iptables rules")

    def restore_ipvs(self, lines):
        if lines:
            self.run([self.bin("ipvsadm-restore")], data="\n".join(lines) + "\n", what="apply IPVS services")

    def iptables(self, text, tables):
        """Converge our chains in ``tables`` to the rendered ``text`` and remove
        our chains in the other tables. Returns the live chains it replaced
        (for rollback), or None when nothing differed."""
        desired = {t: lines for t, lines in parse_iptables_save(text or "").items() if t in tables}
        live = self.read_iptables()
        for table in sorted(IPT_CHAINS):
            self.before[f"iptables {table}"] = live.get(table, [])
            self.after[f"iptables {table}"] = desired.get(table, [])
        if live == desired:
            return None
        restore = iptables_restore_text(desired, live)
        self.restore_iptables(restore, test=True)
        touched = sorted(set(live) | set(desired))
        self.actions.append("replaced iptables chains " + ", ".join(IPT_CHAINS[t] for t in touched))
        if not self.check:
            self.restore_iptables(restore)
        return live

    def ipvs_backend(self, ipt_text, ipvs_text, timeouts, drain):
        live_ipvs, desired_ipvs = self.read_ipvs(), parse_ipvs(ipvs_text)
        self.before["ipvs"], self.after["ipvs"] = ipvs_lines(live_ipvs), ipvs_lines(desired_ipvs)
        replaced = self.iptables(ipt_text, IPT_CHAINS)
        apply, delete = ipvs_delta(live_ipvs, desired_ipvs)
        self.actions += [f"ipvs: {line}" for line in apply + delete]
        if not self.check:
            try:
                self.restore_ipvs(apply)
                if delete and drain:
                    time.sleep(drain)
                self.restore_ipvs(delete)
            except MeshError as exc:
                self.rollback(replaced, ipt_text, live_ipvs)
                raise MeshError(f"{exc} (rolled back to the previous ruleset)") from exc
        self.sysctls()
        self.timeouts(timeouts)

    def rollback(self, replaced, ipt_text, live_ipvs):
        if replaced is not None:
            self.run([self.bin("iptables-restore"), "--noflush"],
                     data=iptables_restore_text(replaced, parse_iptables_save(ipt_text)))
        apply, delete = ipvs_delta(self.read_ipvs(), live_ipvs)
        self.run([self.bin("ipvsadm-restore")], data="\n".join(apply + delete) + "\n")

    def sysctls(self):
        for key, value in sorted(SYSCTLS.items()):
            path = "/proc/sys/" + key.replace(".", "/")
            with open(path) as handle:
                live = handle.read().strip()
            self.before[f"sysctl {key}"], self.after[f"sysctl {key}"] = [live], [value]
            if live != value:
                self.actions.append(f"set {key}={value}")
                if not self.check:
                    with open(path, "w") as handle:
                        handle.write(value)

    def timeouts(self, wanted):
        ipvsadm = self.bin("ipvsadm")
        out = self.run([ipvsadm, "-L", "--timeout"], what="read IPVS timeouts")[1]
        live = [int(x) for x in out.rsplit(":", 1)[-1].split()]
        want = [int(wanted[k]) for k in TIMEOUT_KEYS]
        self.before["ipvs timeouts"], self.after["ipvs timeouts"] = [str(live)], [str(want)]
        if live != want:
            self.actions.append("set IPVS timeouts tcp/tcpfin/udp to " + "/".join(map(str, want)))
            if not self.check:
                self.run([ipvsadm, "--set", *map(str, want)], what="set IPVS timeouts")

    def leave_ipvs(self):
        """On the nftables backend, remove the IPVS services an IPVS run of ours left."""
        if os.path.exists("/proc/net/ip_vs") and self.module.get_bin_path("ipvsadm"):
            live = self.read_ipvs()
            if live:
                apply, delete = ipvs_delta(live, {})
                self.actions += [f"ipvs: {line}" for line in apply + delete]
                self.before["ipvs"] = ipvs_lines(live)
                if not self.check:
                    self.restore_ipvs(apply + delete)


def resolve_backend(module, backend):
    if backend != "auto":
        return backend
    if os.path.exists("/proc/net/ip_vs"):
        return "ipvs"
    modprobe = module.get_bin_path("modprobe")
    if modprobe and not module.check_mode and module.run_command([modprobe, "ip_vs"])[0] == 0:
        return "ipvs" if os.path.exists("/proc/net/ip_vs") else "nftables"
    return "nftables"


def text_of(sections):
    return "".join(f"# {label}\n" + "".join(f"{line}\n" for line in lines) for label, lines in sorted(sections.items()))


def main():
    module = AnsibleModule(
        argument_spec={
            "backend": {"type": "str", "default": "auto", "choices": ["auto", "ipvs", "nftables"]},
            "nft": {"type": "str"},
            "ipvs": {"type": "str"},
            "iptables": {"type": "str"},
            "arp_guard": {"type": "str"},
            "vips": {"type": "list", "elements": "dict", "default": [], "options": {
                "device": {"type": "str", "required": True},
                "range": {"type": "str", "required": True},
                "addresses": {"type": "list", "elements": "str", "default": []},
            }},
            "ipvs_timeouts": {"type": "dict", "default": DEFAULT_TIMEOUTS},
            "drain_seconds": {"type": "int", "default": 0},
        },
        required_if=[("backend", "nftables", ["nft"]), ("backend", "ipvs", ["ipvs", "iptables"])],
        supports_check_mode=True,
    )
    params = module.params
    mesh = Mesh(module)
    backend = resolve_backend(module, params["backend"])
    try:
        if backend == "nftables" and not params["nft"]:
            raise MeshError("the nftables backend was picked but no nft ruleset was given")
        if backend == "ipvs" and not (params["ipvs"] is not None and params["iptables"]):
            raise MeshError("the IPVS backend was picked but no ipvs/iptables rulesets were given")
        mesh.vips(params["vips"])
        if backend == "nftables":
            # Without iptables there is no Docker FORWARD policy to get past.
            if module.get_bin_path("iptables-save"):
                mesh.iptables(params["iptables"], [IPT_FORWARD_TABLE])
            mesh.leave_ipvs()
            mesh.table("ip", "swarmfabric_mesh", params["nft"])
        else:
            mesh.table("ip", "swarmfabric_mesh", None)
            mesh.ipvs_backend(params["iptables"], params["ipvs"],
                              {**DEFAULT_TIMEOUTS, **params["ipvs_timeouts"]},
                              params["drain_seconds"])
        mesh.table("netdev", "swarmfabric_mesh_arp", params["arp_guard"])
    except MeshError as exc:
        module.fail_json(msg=f"Cannot apply the mesh ruleset ({backend}): {exc}", actions=mesh.actions)
    before, after = text_of(mesh.before), text_of(mesh.after)
    b, a = Counter(before.splitlines()), Counter(after.splitlines())
    result = {"changed": bool(mesh.actions), "backend": backend, "actions": mesh.actions,
              "lines_added": sum((a - b).values()), "lines_removed": sum((b - a).values())}
    if module._diff:
        result["diff"] = {"before": before, "after": after,
                          "before_header": "mesh (live)", "after_header": "mesh (desired)"}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
