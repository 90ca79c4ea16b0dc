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
    (nat) plus the jumps into them; then the IPVS virtual services (one per
    fwmark, NAT mode) via C(ipvsadm -R) (not C(ipvsadm-restore), which runs
    C(ipvsadm -C) first and would clear every service, ours or not). Real servers that go away are
    first weighted to 0, then deleted. Only fwmark services in our range (top
    byte 0x5F) are ever read or changed. The IPVS sysctls are set on purpose
    and the IPVS timeouts come from O(ipvs_timeouts).
  - The apply plans, then applies. The whole live state is read once; every
    script is validated before the first write (C(nft -c -f),
    C(iptables-restore --test), and every IPVS line against a strict grammar,
    since ipvsadm has no test mode). Writes go in a fixed order, add before
    remove - VIPs added, the new backend complete, then the old backend
    removed, then VIPs and drained real servers removed - so a switch of
    backend never leaves a host without a mesh.
  - A failure at any step rolls back every step before it, newest first (VIP
    addresses, iptables chains, IPVS services, sysctls, timeouts, the nft
    tables), each undo checked. The message names what was rolled back and
    what could NOT be restored; nothing else is claimed.
  - In both modes the ARP guard table C(netdev swarmfabric_mesh_arp) and the
    VIP addresses on the overlay shims are converged too.
  - Tables and chains that are not ours, Docker's C(DOCKER-*) chains
    included, are never named in any command.
  - O(state=absent) removes the whole mesh of this host, as
    C(playbooks/teardown.yml) does - both nft tables, our iptables chains and
    the jumps into them, our IPVS services, and the VIPs inside
    O(vips[].range) on the shims that still exist. The rulesets are not
    needed then. The IPVS sysctls and timeouts are left as they are.
author: Swarmfabric contributors
options:
  state:
    description: C(present) converges the mesh to the rulesets; C(absent) removes it.
    type: str
    default: present
    choices: [present, absent]
  backend:
    description:
      - C(auto) uses IPVS where the kernel has it - C(/proc/net/ip_vs) exists,
        or ip_vs is built in or loaded, or installed for the running kernel
        (C(modules.dep)) and this process may load modules (CAP_SYS_MODULE) -
        and ipvsadm, iptables-save and iptables-restore are
        installed; nftables otherwise.
      - The choice reads files only, so check mode picks what a real run picks.
        A real run loads ip_vs (C(modprobe ip_vs)) when it is not loaded yet.
    type: str
    default: auto
    choices: [auto, ipvs, nftables]
  nft:
    description:
      - The rendered C(table ip swarmfabric_mesh { ... }) (roles/mesh mesh.nft.j2).
      - Needed for the nftables backend.
    type: str
  ipvs:
    description: The rendered C(ipvsadm -R) text (mesh.ipvs.j2). Needed for the IPVS backend.
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
    default: {tcp: 7500, tcpfin: 120, udp: 300}
  drain_seconds:
    description: Seconds between weighting removed real servers to 0 and deleting them.
    type: int
    default: 0
attributes:
  check_mode:
    support: full
    description:
      - Reads, plans and validates every script (C(nft -c), C(iptables-restore --test),
        the IPVS grammar) exactly like a real run, and writes nothing. It never
        loads ip_vs (not even through ipvsadm); when it is not loaded, the IPVS
        state is read as empty and the sysctls and timeouts as the kernel's defaults.
  diff_mode:
    support: full
    description:
      - One canonical line per rule, element, real server and address,
        so the diff shows lines added and removed.
requirements:
  - nft; for the IPVS backend also ipvsadm, iptables-save and iptables-restore
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
  description: The backend used after resolving C(auto); C(none) with O(state=absent).
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
rolled_back:
  description: On failure, the steps whose undo restored the previous state, newest first.
  returned: failure
  type: list
  elements: str
not_restored:
  description: On failure, the steps whose undo failed, each with the reason. Empty when all is restored.
  returned: failure
  type: list
  elements: str
"""

import ipaddress
import json
import os
import time
from collections import Counter

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric.constants import IPVS_KERNEL_TIMEOUTS, IPVS_TIMEOUT_KEYS, IPVS_TIMEOUTS, PROC_IPVS
from ansible.module_utils.swarmfabric.kernelcaps import kernel_module_state, module_usable
from ansible.module_utils.swarmfabric.module import Change, CommandError, Runner
from ansible.module_utils.swarmfabric.nft import (
    NftError,
    apply_argv,
    canonical_text,
    desired_table,
    parse_table,
    plan_table,
    read_listing,
    restore_script,
)
from ansible.module_utils.swarmfabric.ruleset import (
    IPT_CHAINS,
    IPT_FORWARD_TABLE,
    SYSCTLS,
    IpvsRuleError,
    check_ipvs_line,
    iptables_restore_text,
    ipvs_delta,
    ipvs_lines,
    parse_iptables_save,
    parse_ipvs,
    parse_ipvs_strict,
)

# The IPVS timeouts are defined once, in module_utils/swarmfabric/constants.py.
TIMEOUT_KEYS = IPVS_TIMEOUT_KEYS
DEFAULT_TIMEOUTS = IPVS_TIMEOUTS
# What a freshly loaded ip_vs has: check mode predicts from these when the
# module is not loaded yet (reading them through ipvsadm would load it).
KERNEL_SYSCTLS = {"net.ipv4.vs.conn_reuse_mode": "1", "net.ipv4.vs.expire_nodest_conn": "0",
                  "net.ipv4.vs.conntrack": "0"}
KERNEL_TIMEOUTS = [IPVS_KERNEL_TIMEOUTS[k] for k in IPVS_TIMEOUT_KEYS]
MESH_TABLE = ("ip", "swarmfabric_mesh")
ARP_TABLE = ("netdev", "swarmfabric_mesh_arp")


class MeshError(Exception):
    pass


def ipvs_loaded():
    return os.path.exists(PROC_IPVS)


def resolve_backend(module, backend):
    """``auto``: IPVS when the kernel has ip_vs (loaded, built in, or installed
    and loadable by us) and its tools are here, nftables otherwise. Read-only
    (files and PATH), so check mode and a real run always agree."""
    if backend != "auto":
        return backend
    tools = all(module.get_bin_path(t) for t in ("ipvsadm", "iptables-save", "iptables-restore"))
    return "ipvs" if tools and (ipvs_loaded() or module_usable("ip_vs")) else "nftables"


class Mesh:
    """Read everything once, plan, validate, then apply in a fixed order.

    Every write goes through ``write``: skipped in check mode, and paired
    with an undo that ``rollback`` runs, newest first, when a later step
    fails. Undos re-read the live state, so a step that failed halfway is
    put back too, and one that had changed nothing is not reported.
    """

    def __init__(self, module):
        self.module = module
        self.change = Change(module, headers=("mesh (live)", "mesh (desired)"))
        self.runner = Runner(module)
        self.check = self.change.check_mode
        self.actions = self.change.actions
        self.before = {}   # sections of the diff, label -> lines
        self.after = {}
        self.undo = []
        self.kept = []     # writes without an undo, said in a failure message

    def run(self, argv, data=None, what=None):
        """(rc, out, err); with ``what``, a non-zero exit raises MeshError naming it."""
        try:
            if what:
                return 0, self.runner.run(argv, data=data, what=what), ""
            return self.runner.status(argv, data=data)
        except CommandError as exc:
            raise MeshError(f"{what}: {exc.cause}") from exc

    def bin(self, name):
        return self.runner.path(name)

    def write(self, fn, undo=None, label=None, undo_first=True):
        """Run one write (not in check mode). An undo registered first also
        covers a step that fails halfway; atomic steps register it after."""
        self.change.write(self._write, fn, undo, label, undo_first)

    def _write(self, fn, undo, label, undo_first):
        if undo and undo_first:
            self.undo.append((label, undo))
        fn()
        if undo and not undo_first:
            self.undo.append((label, undo))

    def rollback(self):
        """(restored, not restored): labels of undos that changed something,
        and of undos that failed, with the reason."""
        restored, failed = [], []
        for label, undo in reversed(self.undo):
            try:
                if undo():
                    restored.append(label)
            except (MeshError, NftError, OSError) as exc:
                failed.append(f"{label} ({exc})")
        return restored, failed

    # --- reads -------------------------------------------------------
    def read_vips(self, specs):
        ip = self.bin("ip")
        live = {}
        for spec in specs:
            dev, vrange = spec["device"], ipaddress.IPv4Network(spec["range"])
            _rc, out, _err = self.run([ip, "-j", "addr", "show", "dev", dev], what=f"read addresses of {dev}")
            have = {a["local"] for link in json.loads(out or "[]") for a in link.get("addr_info", [])
                    if a.get("family") == "inet" and a.get("prefixlen") == 32
                    and ipaddress.IPv4Address(a["local"]) in vrange}
            live[dev] = live.get(dev, set()) | have
        return live

    def read_iptables(self):
        # One iptables-save of every table (one process instead of one per table).
        return parse_iptables_save(self.run([self.bin("iptables-save")], what="read iptables")[1])

    def read_ipvs(self):
        return parse_ipvs(self.run([self.bin("ipvsadm"), "-Sn"], what="read IPVS services")[1])

    def read_nft(self, family, name):
        try:
            return read_listing(lambda a, d: self.run(a, d), self.bin("nft"), family, name)
        except NftError as exc:
            raise MeshError(str(exc)) from exc

    def read_sysctls(self):
        if not ipvs_loaded():
            return dict(KERNEL_SYSCTLS)
        live = {}
        for key in SYSCTLS:
            with open("/proc/sys/" + key.replace(".", "/")) as handle:
                live[key] = handle.read().strip()
        return live

    def read_timeouts(self):
        if not ipvs_loaded():
            return list(KERNEL_TIMEOUTS)
        out = self.run([self.bin("ipvsadm"), "-L", "--timeout"], what="read IPVS timeouts")[1]
        return [int(x) for x in out.rsplit(":", 1)[-1].split()]

    # --- writes ------------------------------------------------------
    def ip_batch(self, lines, what):
        if lines:
            self.run([self.bin("ip"), "-batch", "-"], data="\n".join(lines) + "\n", what=what)

    def restore_iptables(self, text, test=False):
        argv = [self.bin("iptables-restore"), "--noflush"] + (["--test"] if test else [])
        self.run(argv, data=text, what="validate iptables rules" if test else "apply iptables rules")

    def restore_ipvs(self, lines, what="apply IPVS services"):
        if lines:
            # ipvsadm -R, not ipvsadm-restore: that script runs `ipvsadm -C`
            # first, which clears every virtual service, ours or not.
            self.run([self.bin("ipvsadm"), "-R"], data="\n".join(lines) + "\n", what=what)

    def nft_apply(self, script, check=False):
        self.run(apply_argv(self.bin("nft"), check), data=script,
                 what="nft refused to validate the mesh tables" if check else "nft refused to apply the mesh tables")

    def write_sysctl(self, key, value):
        with open("/proc/sys/" + key.replace(".", "/"), "w") as handle:
            handle.write(value)

    def set_timeouts(self, values):
        self.run([self.bin("ipvsadm"), "--set", *map(str, values)], what="set IPVS timeouts")

    # --- undos (re-read, compare, put back; True when something was restored)
    def undo_vips(self, specs, old):
        now = self.read_vips(specs)
        lines = [f"addr add {a}/32 dev {dev}" for dev in sorted(old) for a in sorted(old[dev] - now.get(dev, set()))]
        lines += [f"addr del {a}/32 dev {dev}" for dev in sorted(now) for a in sorted(now[dev] - old.get(dev, set()))]
        self.ip_batch(lines, "restore VIP addresses")
        return bool(lines)

    def undo_iptables(self, tables, old):
        now = self.read_iptables()
        now = {t: v for t, v in now.items() if t in tables}
        old = {t: v for t, v in old.items() if t in tables}
        if now == old:
            return False
        self.restore_iptables(iptables_restore_text(old, now))
        return True

    def undo_ipvs(self, old):
        apply, delete = ipvs_delta(self.read_ipvs(), old)
        self.restore_ipvs(apply + delete, what="restore IPVS services")
        return bool(apply or delete)


def plan_and_apply(mesh, params, backend):
    module, check = mesh.module, mesh.check
    vip_specs = params["vips"]
    use_iptables = backend == "ipvs" or bool(module.get_bin_path("iptables-save"))
    has_ipvsadm = bool(module.get_bin_path("ipvsadm"))
    if backend == "ipvs":
        for tool in ("ipvsadm", "iptables-save", "iptables-restore"):
            mesh.bin(tool)
        if not ipvs_loaded() and kernel_module_state("ip_vs") == "missing":
            raise MeshError("the IPVS backend was asked for but this kernel has no ip_vs module")

    # 1. Read the whole live state once.
    live_vips = mesh.read_vips(vip_specs)
    live_ipt = mesh.read_iptables() if use_iptables else {}
    live_ipvs = mesh.read_ipvs() if has_ipvsadm and ipvs_loaded() else {}
    listings = {t: mesh.read_nft(*t) for t in (MESH_TABLE, ARP_TABLE)}
    if backend == "ipvs":
        live_sysctls, live_timeouts = mesh.read_sysctls(), mesh.read_timeouts()

    # 2. Plan every step as data.
    want_vips = {}
    for spec in vip_specs:
        want_vips[spec["device"]] = want_vips.get(spec["device"], set()) | set(spec.get("addresses") or [])
    vip_add, vip_del = [], []
    for dev, want in want_vips.items():
        mesh.before[f"addresses on {dev}"] = sorted(live_vips[dev])
        mesh.after[f"addresses on {dev}"] = sorted(want)
        vip_add += [(a, dev) for a in sorted(want - live_vips[dev])]
        vip_del += [(a, dev) for a in sorted(live_vips[dev] - want)]

    ipt_add = ipt_rm = ""
    ipt_add_tables, ipt_rm_tables = [], []
    if use_iptables:
        wanted = IPT_CHAINS if backend == "ipvs" else (IPT_FORWARD_TABLE,)
        desired_ipt = {t: lines for t, lines in parse_iptables_save(params["iptables"] or "").items() if t in wanted}
        for table in sorted(IPT_CHAINS):
            mesh.before[f"iptables {table}"] = live_ipt.get(table, [])
            mesh.after[f"iptables {table}"] = desired_ipt.get(table, [])
        ipt_add_tables = sorted(t for t in desired_ipt if live_ipt.get(t) != desired_ipt[t])
        ipt_rm_tables = sorted(t for t in live_ipt if t not in desired_ipt)
        ipt_add = iptables_restore_text({t: desired_ipt[t] for t in ipt_add_tables},
                                        {t: live_ipt[t] for t in ipt_add_tables if t in live_ipt})
        ipt_rm = iptables_restore_text({}, {t: live_ipt[t] for t in ipt_rm_tables})

    nft_script, nft_actions = "", []
    nft_touched, nft_after = [], {}
    definitions = {MESH_TABLE: params["nft"] if backend == "nftables" else None, ARP_TABLE: params["arp_guard"]}
    for (family, name), definition in definitions.items():
        state = "present" if definition and definition.strip() else "absent"
        try:
            live = parse_table(listings[(family, name)]) if listings[(family, name)] is not None else None
            desired = desired_table(family, name, definition, state)
        except NftError as exc:
            raise MeshError(f"table {family} {name}: {exc}") from exc
        script, actions = plan_table(family, name, live, desired, definition)
        label = f"nft table {family} {name}"
        mesh.before[label] = canonical_text(live).splitlines()
        mesh.after[label] = canonical_text(desired).splitlines()
        if script:
            nft_script += script
            nft_actions += actions
            nft_touched.append((family, name))
            nft_after[(family, name)] = desired

    try:
        desired_ipvs = parse_ipvs_strict(params["ipvs"] or "") if backend == "ipvs" else {}
        ipvs_add, ipvs_del = ipvs_delta(live_ipvs, desired_ipvs)
        for line in ipvs_add + ipvs_del:
            check_ipvs_line(line)
    except IpvsRuleError as exc:
        raise MeshError(f"the IPVS rules are refused before anything is written: {exc}") from exc
    if backend == "ipvs" or live_ipvs:
        mesh.before["ipvs"], mesh.after["ipvs"] = ipvs_lines(live_ipvs), ipvs_lines(desired_ipvs)

    sysctl_set, timeouts_want = [], None
    if backend == "ipvs":
        for key, value in sorted(SYSCTLS.items()):
            mesh.before[f"sysctl {key}"], mesh.after[f"sysctl {key}"] = [live_sysctls[key]], [value]
            if live_sysctls[key] != value:
                sysctl_set.append((key, value))
        wanted = {**DEFAULT_TIMEOUTS, **params["ipvs_timeouts"]}
        want = [int(wanted[k]) for k in TIMEOUT_KEYS]
        mesh.before["ipvs timeouts"], mesh.after["ipvs timeouts"] = [str(live_timeouts)], [str(want)]
        if live_timeouts != want:
            timeouts_want = want

    # 3. Validate everything before the first write (check mode stops here).
    if nft_script:
        mesh.nft_apply(nft_script, check=True)
    if ipt_add or ipt_rm:
        mesh.restore_iptables(ipt_add + ipt_rm, test=True)

    # 4. Apply: add before remove. The new backend is complete before the
    # old one goes; VIP and real-server removals come last.
    mesh.actions += [f"added VIP {a}/32 on {dev}" for a, dev in vip_add]
    if ipt_add:
        mesh.actions.append("replaced iptables chains " + ", ".join(IPT_CHAINS[t] for t in ipt_add_tables))
    if backend == "ipvs" and not ipvs_loaded():
        mesh.actions.append("loaded kernel module ip_vs")

    def undo_vips():
        return mesh.undo_vips(vip_specs, live_vips)

    if vip_add:
        mesh.write(lambda: mesh.ip_batch([f"addr add {a}/32 dev {dev}" for a, dev in vip_add], "add VIP addresses"),
                   undo_vips, "VIP addresses")
    if ipt_add:
        tables = tuple(ipt_add_tables)
        mesh.write(lambda: mesh.restore_iptables(ipt_add), lambda: mesh.undo_iptables(tables, live_ipt),
                   "iptables chains " + ", ".join(IPT_CHAINS[t] for t in tables))

    def nft_step():
        mesh.write(lambda: mesh.nft_apply(nft_script),
                   lambda: mesh.nft_apply("".join(restore_script(f, n, listings[(f, n)], nft_after[(f, n)])
                                                  for f, n in nft_touched)) or True,
                   "nft tables " + ", ".join(f"{f} {n}" for f, n in nft_touched), undo_first=False)

    if backend == "nftables":
        if nft_script:
            mesh.actions += nft_actions
            nft_step()
    else:
        if not ipvs_loaded():
            mesh.write(lambda: mesh.run([mesh.bin("modprobe"), "ip_vs"], what="load the ip_vs module"))
            mesh.kept.append("kernel module ip_vs loaded")
        mesh.actions += [f"ipvs: {line}" for line in ipvs_add]
        if ipvs_add:
            mesh.write(lambda: mesh.restore_ipvs(ipvs_add), lambda: mesh.undo_ipvs(live_ipvs), "IPVS services")
        for key, value in sysctl_set:
            mesh.actions.append(f"set {key}={value}")
            old = live_sysctls[key]
            mesh.write(lambda k=key, v=value: mesh.write_sysctl(k, v),
                       lambda k=key, o=old: mesh.write_sysctl(k, o) or True, f"sysctl {key}", undo_first=False)
        if timeouts_want:
            mesh.actions.append("set IPVS timeouts tcp/tcpfin/udp to " + "/".join(map(str, timeouts_want)))
            mesh.write(lambda: mesh.set_timeouts(timeouts_want),
                       lambda: mesh.set_timeouts(live_timeouts) or True, "IPVS timeouts", undo_first=False)
        if nft_script:
            # The nftables mesh goes only now that IPVS is complete.
            mesh.actions += nft_actions
            nft_step()
    if ipt_rm:
        tables = tuple(ipt_rm_tables)
        mesh.actions.append("removed iptables chains " + ", ".join(IPT_CHAINS[t] for t in tables))
        mesh.write(lambda: mesh.restore_iptables(ipt_rm), lambda: mesh.undo_iptables(tables, live_ipt),
                   "iptables chains " + ", ".join(IPT_CHAINS[t] for t in tables))
    mesh.actions += [f"removed VIP {a}/32 from {dev}" for a, dev in vip_del]
    if vip_del:
        mesh.write(lambda: mesh.ip_batch([f"addr del {a}/32 dev {dev}" for a, dev in vip_del],
                                         "remove VIP addresses"), undo_vips, "VIP addresses")
    if backend == "nftables":
        # Our IPVS services an earlier IPVS run left: gone once nftables serves.
        mesh.actions += [f"ipvs: {line}" for line in ipvs_add + ipvs_del]
        if ipvs_add or ipvs_del:
            mesh.write(lambda: mesh.restore_ipvs(ipvs_add + ipvs_del), lambda: mesh.undo_ipvs(live_ipvs),
                       "IPVS services")
    else:
        mesh.actions += [f"ipvs: {line}" for line in ipvs_del]
        if ipvs_del:
            if params["drain_seconds"] and not check:
                time.sleep(params["drain_seconds"])
            mesh.write(lambda: mesh.restore_ipvs(ipvs_del), lambda: mesh.undo_ipvs(live_ipvs), "IPVS services")


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
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        },
        required_if=[("backend", "nftables", ["nft"]), ("backend", "ipvs", ["ipvs", "iptables"])],
        supports_check_mode=True,
    )
    params = module.params
    mesh = Mesh(module)
    absent = params["state"] == "absent"
    if absent:
        # No mesh: the nftables path with nothing desired removes our tables,
        # chains and IPVS services; the VIPs go from the shims still there.
        params = dict(params, nft=None, ipvs=None, iptables=None, arp_guard=None,
                      vips=[dict(v, addresses=[]) for v in params["vips"]
                            if os.path.exists(f"/sys/class/net/{v['device']}")])
    backend = "nftables" if absent else resolve_backend(module, params["backend"])
    try:
        if backend == "nftables" and not params["nft"] and not absent:
            raise MeshError("the nftables backend was picked but no nft ruleset was given")
        if backend == "ipvs" and not (params["ipvs"] is not None and params["iptables"]):
            raise MeshError("the IPVS backend was picked but no ipvs/iptables rulesets were given")
        plan_and_apply(mesh, params, backend)
    except (MeshError, OSError) as exc:
        restored, failed = mesh.rollback()
        cause = str(exc)
        if restored:
            cause += "; rolled back " + ", ".join(restored)
        if failed:
            cause += "; could NOT restore " + "; ".join(failed)
        if not restored and not failed:
            cause += "; nothing was changed"
        if mesh.kept:
            cause += " (kept: " + ", ".join(mesh.kept) + ")"
        mesh.change.fail("remove the mesh" if absent else "apply the mesh", cause, backend=backend,
                         rolled_back=restored, not_restored=failed)
    before, after = text_of(mesh.before), text_of(mesh.after)
    mesh.change.before, mesh.change.after = before, after
    b, a = Counter(before.splitlines()), Counter(after.splitlines())
    mesh.change.exit(backend="none" if absent else backend, lines_added=sum((a - b).values()),
                     lines_removed=sum((b - a).values()))


if __name__ == "__main__":
    main()
