# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The routing mesh: one host's view of the plan, and the IPVS/iptables halves
of mesh_ruleset (the nftables half is nft.py).

Standard library only. ``mesh_view`` is pure and feeds the three templates of
roles/mesh; the rest parses `ipvsadm -Sn` / `iptables-save` and builds the
restore files that mesh_ruleset applies.
"""

import ipaddress
import re

from .constants import (
    CONNTRACK_TIMEOUT_OBJECT,
    CONNTRACK_TIMEOUTS,
    FWMARK_BASE,
    FWMARK_ENDPOINT_SHIFT,
    FWMARK_MASK,
    HEALTH_PORT,
    KERNEL_CONNTRACK_TIMEOUTS,
    LOCAL_BIT,
    MASQ_CT_BIT,
    MESH_CT_BIT,
    REFUSE_BIT,
)

# Our chains, per iptables table, each with the built-in chains that jump to
# it. SF-MESH-FWD accepts the forwarded packets of connections the mesh
# DNATed (conntrack mark MESH_CT_BIT), which a FORWARD policy of DROP (Docker
# sets it) would otherwise drop; SF-MESH-IN refuses (RST, ICMP port
# unreachable) what reaches an endpoint without a backend (REFUSE_BIT).
IPT_TABLE_CHAINS = {
    "filter": {"SF-MESH-FWD": ("FORWARD",), "SF-MESH-IN": ("INPUT",)},
    "mangle": {"SF-MESH": ("PREROUTING", "OUTPUT")},
    "nat": {"SF-MESH-POST": ("POSTROUTING",)},
}
# One label per table, for messages ("replaced iptables chains SF-MESH-FWD, SF-MESH-IN").
IPT_CHAINS = {table: ", ".join(chains) for table, chains in IPT_TABLE_CHAINS.items()}
# The filter chains are the only ones the nftables backend needs (FORWARD
# accept; the refusal is also in its own table, for hosts without iptables).
IPT_FORWARD_TABLE = "filter"

SYSCTLS = {
    # Reuse of a connection slot whose real server is gone would stall 1 s per
    # new connection under load (conn_reuse_mode=1); 0 is what Docker and
    # kube-proxy run with when backends churn.
    "net.ipv4.vs.conn_reuse_mode": "0",
    # Drop connections to a deleted real server at once, so a client retry
    # goes to a live backend instead of hanging.
    "net.ipv4.vs.expire_nodest_conn": "1",
    # Keep conntrack entries for IPVS flows: the iptables MASQUERADE for
    # replies needs them.
    "net.ipv4.vs.conntrack": "1",
}


def _port_key(port):
    return (port["protocol"], port["target"])


def _backends(service, dynamic, target):
    """(ip, port) pairs: the static list, or the running tasks' addresses."""
    if service.get("backends"):
        pairs = []
        for item in service["backends"]:
            host, _, port = str(item).rpartition(":")
            pairs.append((host, int(port)))
        return sorted(pairs, key=lambda p: (ipaddress.IPv4Address(p[0]), p[1]))
    ips = sorted(set(dynamic or []), key=ipaddress.IPv4Address)
    return [(ip, target) for ip in ips]


def _local(pairs, ranges):
    return [p for p in pairs if any(ipaddress.IPv4Address(p[0]) in r for r in ranges)]


def _endpoint(name, chain, protocol, target, mark, vip, backends, published, masquerade):
    """One endpoint: a chain (nftables) or fwmark virtual service (IPVS).

    Without a backend it refuses: its fwmark carries REFUSE_BIT, no IPVS
    service exists for it, and the input hook answers RST / port unreachable.
    """
    refuse = not backends
    return {"service": name, "chain": chain, "protocol": protocol, "target": target,
            "fwmark": mark | (REFUSE_BIT if refuse else 0), "vip": vip, "backends": backends,
            "published": published, "masquerade": masquerade, "refuse": refuse}


def mesh_view(plan, host, backends):
    """What one host's mesh templates render.

    ``backends`` maps a service name to the fabric addresses of its running
    tasks (swarm_backends). A task is local when its address is in this
    host's range of an overlay. Per (protocol, target) of a service:

    - the cluster endpoint (VIP, ``traffic_policy: cluster`` ports): every
      task, source masqueraded;
    - the local endpoint (``traffic_policy: local`` and ``mode: host``
      ports, fwmark LOCAL_BIT): this host's tasks only, the client's source
      kept (masqueraded only when it is a task, whose reply would otherwise
      bypass this host). A local-policy port on a host without a local task
      refuses; a host-mode port is then not published at all.
    """
    ranges = [ipaddress.IPv4Network(ov["members"][host]["range"])
              for ov in plan["overlays"].values() if host in ov["members"]]
    endpoints = []
    for name in sorted(plan["services"]):
        service = plan["services"][name]
        keys = []
        for port in service["publish"]:
            if _port_key(port) not in keys:
                keys.append(_port_key(port))
        vip = service.get("vip") if service.get("endpoint_mode") == "vip" else None
        for index, (protocol, target) in enumerate(keys):
            pairs = _backends(service, backends.get(name), target)
            ports = [p for p in service["publish"] if _port_key(p) == (protocol, target)]
            mark = service["fwmark"] | (index << FWMARK_ENDPOINT_SHIFT)
            chain = f"svc-{name}-{protocol}-{target}"
            cluster = [p["published"] for p in ports
                       if p["mode"] == "ingress" and p.get("traffic_policy", "cluster") == "cluster"]
            endpoints.append(_endpoint(name, chain, protocol, target, mark, vip, pairs, cluster, True))
            local = _local(pairs, ranges)
            local_ports = [p["published"] for p in ports
                           if p["mode"] == "ingress" and p.get("traffic_policy") == "local"]
            local_ports += [p["published"] for p in ports if p["mode"] == "host" and local]
            if local_ports:
                endpoints.append(_endpoint(name, f"{chain}-local", protocol, target, mark | LOCAL_BIT, None, local,
                                           local_ports, False))
    overlays = []
    for name in sorted(plan["overlays"]):
        overlay = plan["overlays"][name]
        vips = sorted({s["vip"] for s in plan["services"].values()
                       if s.get("endpoint_mode") == "vip" and s.get("vip") and s["overlays"][:1] == [name]},
                      key=ipaddress.IPv4Address)
        overlays.append({"name": name, "device": overlay["device"], "shim": f"{overlay['device']}-h",
                         "port": overlay["port"], "gateway": overlay["gateway"], "subnet": overlay["subnet"],
                         "vip_range": overlay["vip_range"], "vips": vips})
    mesh = plan.get("mesh") or {}
    ct_timeout = {"name": CONNTRACK_TIMEOUT_OBJECT, **CONNTRACK_TIMEOUTS, **(mesh.get("conntrack_timeouts") or {})}
    ct_timeout["enabled"] = ct_timeout["tcp_established"] != KERNEL_CONNTRACK_TIMEOUTS["tcp_established"]
    return {"endpoints": endpoints, "overlays": overlays, "scheduler": mesh.get("scheduler", "rr"),
            "mesh_ct_bit": MESH_CT_BIT, "masq_ct_bit": MASQ_CT_BIT,
            "refuse_mask": FWMARK_MASK | REFUSE_BIT, "refuse_value": FWMARK_BASE | REFUSE_BIT,
            "ct_timeout": ct_timeout,
            # Sources that are tasks: masqueraded even on a local endpoint.
            "task_subnets": sorted({ov["subnet"] for ov in overlays}, key=ipaddress.IPv4Network),
            # iptables spellings of the same marks (value/mask), for mesh.iptables.j2.
            "fwmark_match": f"0x{FWMARK_BASE:x}/0x{FWMARK_MASK:x}",
            "local_match": f"0x{FWMARK_BASE | LOCAL_BIT:x}/0x{FWMARK_MASK | LOCAL_BIT:x}",
            "refuse_match": f"0x{FWMARK_BASE | REFUSE_BIT:x}/0x{FWMARK_MASK | REFUSE_BIT:x}",
            "masq_match": f"0x{MESH_CT_BIT:x}/0x{MESH_CT_BIT:x}",
            "vip_addresses": [{"device": ov["shim"], "range": ov["vip_range"], "addresses": ov["vips"]}
                              for ov in overlays],
            "health": health_state(plan, host, endpoints)}


def health_state(plan, host, endpoints):
    """The state file of this host's health responder (roles/mesh
    files/mesh_health.py): per published port, how many backends this host
    forwards it to (for a local or host-mode port: its own tasks; 0 when it
    refuses or does not publish the port). The responder answers 200 when
    that is more than 0, 503 otherwise."""
    serving = {(ep["protocol"], port): ep for ep in endpoints for port in ep["published"]}
    ports = {}
    for name, service in sorted(plan["services"].items()):
        for port in service["publish"]:
            ep = serving.get((port["protocol"], port["published"]))
            ports[f"{port['protocol']}/{port['published']}"] = {
                "service": name, "mode": port["mode"], "traffic_policy": port.get("traffic_policy", "cluster"),
                "endpoints": len(ep["backends"]) if ep else 0}
    mesh = plan.get("mesh") or {}
    return {"version": 1, "node": host, "port": mesh.get("health_port", HEALTH_PORT),
            "ports": dict(sorted(ports.items()))}


def backend_subnets(plan):
    """Container services (not static ones) to the subnet their tasks live in."""
    return {name: plan["overlays"][s["overlays"][0]]["subnet"] for name, s in sorted(plan["services"].items())
            if not s.get("backends") and s.get("overlays")}


# --- IPVS --------------------------------------------------------------

def merge_backends(per_node):
    """One service -> addresses map from every node's local answer (swarm_backends)."""
    merged = {}
    for answer in per_node:
        for name, addresses in (answer or {}).items():
            merged.setdefault(name, set()).update(addresses)
    return {name: sorted(ips, key=ipaddress.IPv4Address) for name, ips in sorted(merged.items())}


def ours(mark):
    return mark & FWMARK_MASK == FWMARK_BASE


def _rs_flags(argv):
    return next((f for f in ("-m", "-g", "-i") if f in argv), "-g")


def parse_ipvs(text):
    """Our virtual services from `ipvsadm -Sn` or a rendered restore file:
    {mark: (scheduler, {"ip:port": (method flag, weight)})}."""
    services = {}
    for line in text.splitlines():
        argv = line.split()
        if len(argv) < 3 or argv[1] != "-f" or not ours(int(argv[2])):
            continue
        mark = int(argv[2])
        if argv[0] == "-A":
            services[mark] = (argv[argv.index("-s") + 1] if "-s" in argv else "wlc", {})
        elif argv[0] == "-a":
            weight = int(argv[argv.index("-w") + 1]) if "-w" in argv else 1
            services.setdefault(mark, ("wlc", {}))[1][argv[argv.index("-r") + 1]] = (_rs_flags(argv), weight)
    return services


# ipvsadm has no test mode: every line mesh_ruleset will feed to
# ipvsadm -R is checked against this grammar first (fwmark services in
# our range only, NAT/DR/tunnel real servers with an explicit weight).
SCHEDULERS = frozenset({"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"})
_RS = r"(?P<rs>\d{1,3}(?:\.\d{1,3}){3}:\d{1,5})"
_IPVS_GRAMMAR = {
    "-A": re.compile(r"-A -f (?P<mark>\d+) -s (?P<sched>[a-z]+)"),
    "-E": re.compile(r"-E -f (?P<mark>\d+) -s (?P<sched>[a-z]+)"),
    "-D": re.compile(r"-D -f (?P<mark>\d+)"),
    "-a": re.compile(rf"-a -f (?P<mark>\d+) -r {_RS} (?P<method>-[mgi]) -w (?P<weight>\d+)"),
    "-e": re.compile(rf"-e -f (?P<mark>\d+) -r {_RS} (?P<method>-[mgi]) -w (?P<weight>\d+)"),
    "-d": re.compile(rf"-d -f (?P<mark>\d+) -r {_RS}"),
}


class IpvsRuleError(ValueError):
    """A line that mesh_ruleset refuses to give to ipvsadm -R."""


def check_ipvs_line(line):
    """Raise IpvsRuleError unless ``line`` is one command of our grammar."""
    argv = line.split()
    pattern = _IPVS_GRAMMAR.get(argv[0] if argv else "")
    match = pattern.fullmatch(" ".join(argv)) if pattern else None
    if not match:
        raise IpvsRuleError(f"not an IPVS command mesh_ruleset writes: {line!r}")
    fields = match.groupdict()
    mark = int(fields["mark"])
    if not ours(mark) or mark > 0xFFFFFFFF:
        raise IpvsRuleError(f"fwmark {mark:#x} is outside our range 0x5F000000/0xff000000: {line!r}")
    if "sched" in fields and fields["sched"] not in SCHEDULERS:
        raise IpvsRuleError(f"unknown IPVS scheduler {fields['sched']!r}: {line!r}")
    if "rs" in fields:
        host, port = fields["rs"].rsplit(":", 1)
        try:
            ipaddress.IPv4Address(host)
        except ValueError as exc:
            raise IpvsRuleError(f"bad real server address {host!r}: {line!r}") from exc
        if not 1 <= int(port) <= 65535:
            raise IpvsRuleError(f"bad real server port {port}: {line!r}")
    if "weight" in fields and not 0 <= int(fields["weight"]) <= 65535:
        raise IpvsRuleError(f"bad weight {fields['weight']}: {line!r}")
    return fields


def parse_ipvs_strict(text):
    """The rendered restore file (mesh.ipvs.j2), every line checked: only
    ``-A`` services and ``-a`` real servers of services declared above them,
    each once. Returns what parse_ipvs returns."""
    services = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = " ".join(raw.split())
        if not line:
            continue
        try:
            fields = check_ipvs_line(line)
        except IpvsRuleError as exc:
            raise IpvsRuleError(f"line {number}: {exc}") from None
        mark, verb = int(fields["mark"]), line.split()[0]
        if verb == "-A":
            if mark in services:
                raise IpvsRuleError(f"line {number}: service fwmark {mark} declared twice")
            services[mark] = (fields["sched"], {})
        elif verb == "-a":
            if mark not in services:
                raise IpvsRuleError(f"line {number}: real server for undeclared service fwmark {mark}")
            if fields["rs"] in services[mark][1]:
                raise IpvsRuleError(f"line {number}: real server {fields['rs']} listed twice")
            services[mark][1][fields["rs"]] = (fields["method"], int(fields["weight"]))
        else:
            raise IpvsRuleError(f"line {number}: a rendered file only adds (-A, -a): {line!r}")
    return services


def ipvs_lines(services):
    """Canonical restore text of parsed services, for diffs and rollback."""
    out = []
    for mark in sorted(services):
        scheduler, reals = services[mark]
        out.append(f"-A -f {mark} -s {scheduler}")
        out += [f"-a -f {mark} -r {rs} {method} -w {w}" for rs, (method, w) in sorted(reals.items())]
    return out


def ipvs_delta(live, desired):
    """Two restore scripts: (apply, drain-then-delete).

    The first adds and edits services and real servers and sets the weight of
    real servers that go away to 0, so no new connection picks them. The
    second deletes them (and services that go away).
    """
    apply, drain, delete = [], [], []
    for mark, (scheduler, reals) in sorted(desired.items()):
        have = live.get(mark)
        if have is None:
            apply.append(f"-A -f {mark} -s {scheduler}")
            have = (scheduler, {})
        elif have[0] != scheduler:
            apply.append(f"-E -f {mark} -s {scheduler}")
        for rs, (method, weight) in sorted(reals.items()):
            if rs not in have[1]:
                apply.append(f"-a -f {mark} -r {rs} {method} -w {weight}")
            elif have[1][rs] != (method, weight):
                apply.append(f"-e -f {mark} -r {rs} {method} -w {weight}")
        for rs, (method, weight) in sorted(have[1].items()):
            if rs not in reals:
                if weight:
                    drain.append(f"-e -f {mark} -r {rs} {method} -w 0")
                delete.append(f"-d -f {mark} -r {rs}")
    for mark, (_scheduler, reals) in sorted(live.items()):
        if mark not in desired:
            drain += [f"-e -f {mark} -r {rs} {m} -w 0" for rs, (m, w) in sorted(reals.items()) if w]
            delete.append(f"-D -f {mark}")
    return apply + drain, delete


# --- iptables ------------------------------------------------------------

def _our_chain(table, argv):
    """(chain, is_jump) of an `-A ...` line that is ours in ``table``, else None."""
    chains = IPT_TABLE_CHAINS.get(table, {})
    if argv[1] in chains:
        return argv[1], False
    for chain, hooks in chains.items():
        if argv[1] in hooks and argv[2:] == ["-j", chain]:
            return chain, True
    return None


def parse_iptables_save(text):
    """Rules of our chains and the jumps into them from `iptables-save` text.

    Returns {table: [lines]} holding, chain by chain in IPT_TABLE_CHAINS
    order, the `-A <our chain> ...` lines in order, followed by the
    `-A <builtin> -j <our chain>` jumps (sorted), so that a live save and a
    rendered file compare equal when they mean the same.
    """
    found, table = {}, None
    for raw in text.splitlines():
        line = " ".join(raw.split())
        if line.startswith("*"):
            table = line[1:]
            continue
        if table not in IPT_TABLE_CHAINS or not line.startswith("-A "):
            continue
        ours_ = _our_chain(table, line.split())
        if ours_:
            rules, jumps = found.setdefault(table, {}).setdefault(ours_[0], ([], set()))
            (jumps.add if ours_[1] else rules.append)(line)
    return {t: [line for chain in IPT_TABLE_CHAINS[t] if chain in found[t]
                for line in found[t][chain][0]]
            + sorted(set().union(*(found[t][c][1] for c in found[t])))
            for t in IPT_TABLE_CHAINS if t in found}


def _chains_of(table, lines):
    return {ours_[0] for line in lines if (ours_ := _our_chain(table, line.split()))}


def iptables_restore_text(tables, live):
    """An `iptables-restore --noflush` file that takes our chains from
    ``live`` to ``tables`` (both as parse_iptables_save returns them).

    A table we want: its chains (ours, wanted or live) declared (which
    empties them) and refilled, missing jumps inserted first in their
    built-in chain (so a host firewall's final REJECT cannot shadow them),
    stale jumps deleted, and a chain of ours no longer wanted removed. A
    table we no longer want: its jumps deleted and our chains removed.
    Nothing else is named.
    """
    out = []
    for table in sorted(set(tables) | set(live)):
        lines, have = tables.get(table, []), live.get(table, [])
        wanted = _chains_of(table, lines)
        chains = [c for c in IPT_TABLE_CHAINS[table] if c in wanted or c in _chains_of(table, have)]
        jumps = [line for line in lines if _our_chain(table, line.split())[1]]
        stale = [line for line in have if _our_chain(table, line.split())[1] and line not in jumps]
        out.append(f"*{table}")
        out += [f":{chain} - [0:0]" for chain in chains]
        out += ["-D " + line[3:] for line in stale]
        out += [line for line in lines if not _our_chain(table, line.split())[1]]
        out += ["-I " + line[3:] for line in jumps if line not in have]
        out += [f"-X {chain}" for chain in chains if chain not in wanted]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""
