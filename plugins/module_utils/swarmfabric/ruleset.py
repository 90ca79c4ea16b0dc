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

# fwmark layout (plan.py): 0x5F in the top byte, 16 bits from the service
# name. Bits 16..23 number the (protocol, port) endpoints of one service, so
# every IPVS virtual service has its own mark.
FWMARK_MASK = 0xFF000000
FWMARK_TOP = 0x5F000000
# Connections the mesh DNATs carry this conntrack mark bit: the masquerade
# and the FORWARD accept (SF-MESH-FWD) match it.
MASQ_BIT = 0x00004000

IPT_CHAINS = {"filter": "SF-MESH-FWD", "mangle": "SF-MESH", "nat": "SF-MESH-POST"}
# Built-in chains that jump to ours, per table.
IPT_HOOKS = {"filter": ("FORWARD",), "mangle": ("PREROUTING", "OUTPUT"), "nat": ("POSTROUTING",)}
# The filter chain is the only one the nftables backend needs: it accepts the
# forwarded packets of connections the mesh DNATed (connmark MASQ_BIT), which
# a FORWARD policy of DROP (Docker sets it) would otherwise drop.
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


def mesh_view(plan, host, backends):
    """What one host's mesh templates render.

    ``backends`` maps a service name to the fabric addresses of its running
    tasks (swarm_backends). A port with ``mode: host`` answers only on a host
    that runs a task of the service, and only with those local tasks; a task
    is local when its address is in this host's range of an overlay.
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
            mark = service["fwmark"] | (index << 16)
            endpoints.append({
                "service": name, "chain": f"svc-{name}-{protocol}-{target}", "protocol": protocol,
                "target": target, "fwmark": mark, "vip": vip, "backends": pairs,
                "published": [p["published"] for p in ports if p["mode"] == "ingress"],
            })
            local = _local(pairs, ranges)
            host_ports = [p["published"] for p in ports if p["mode"] == "host"]
            if host_ports and local:
                # A second fwmark range (bit 23) keeps the local-only service apart.
                endpoints.append({
                    "service": name, "chain": f"svc-{name}-{protocol}-{target}-local", "protocol": protocol,
                    "target": target, "fwmark": mark | 0x00800000, "vip": None, "backends": local,
                    "published": host_ports,
                })
    overlays = []
    for name in sorted(plan["overlays"]):
        overlay = plan["overlays"][name]
        vips = sorted({s["vip"] for s in plan["services"].values()
                       if s.get("endpoint_mode") == "vip" and s.get("vip") and s["overlays"][:1] == [name]},
                      key=ipaddress.IPv4Address)
        overlays.append({"name": name, "device": overlay["device"], "shim": f"{overlay['device']}-h",
                         "port": overlay["port"], "gateway": overlay["gateway"],
                         "vip_range": overlay["vip_range"], "vips": vips})
    mesh = plan.get("mesh") or {}
    return {"endpoints": endpoints, "overlays": overlays, "scheduler": mesh.get("scheduler", "rr"),
            "masq_bit": MASQ_BIT,
            # iptables spellings of the same marks (value/mask), for mesh.iptables.j2.
            "fwmark_match": f"0x{FWMARK_TOP:x}/0x{FWMARK_MASK:x}", "masq_match": f"0x{MASQ_BIT:x}/0x{MASQ_BIT:x}",
            "vip_addresses": [{"device": ov["shim"], "range": ov["vip_range"], "addresses": ov["vips"]}
                              for ov in overlays]}


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
    return mark & FWMARK_MASK == FWMARK_TOP


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

def parse_iptables_save(text):
    """Rules of our chains and the jumps into them from `iptables-save` text.

    Returns {table: [lines]} holding the `-A <our chain> ...` lines in order
    followed by the `-A <builtin> -j <our chain>` jumps (sorted), so that a
    live save and a rendered file compare equal when they mean the same.
    """
    tables, table = {}, None
    for raw in text.splitlines():
        line = " ".join(raw.split())
        if line.startswith("*"):
            table = line[1:]
            continue
        if table not in IPT_CHAINS or not line.startswith("-A "):
            continue
        chain = IPT_CHAINS[table]
        argv = line.split()
        if argv[1] == chain:
            tables.setdefault(table, {"rules": [], "jumps": []})["rules"].append(line)
        elif argv[1] in IPT_HOOKS[table] and argv[2:] == ["-j", chain]:
            tables.setdefault(table, {"rules": [], "jumps": []})["jumps"].append(line)
    return {t: v["rules"] + sorted(set(v["jumps"])) for t, v in tables.items()}


def iptables_restore_text(tables, live):
    """An `iptables-restore --noflush` file that takes our chains from
    ``live`` to ``tables`` (both as parse_iptables_save returns them).

    A table we want: our chain declared (which empties it) and refilled,
    missing jumps inserted first in their built-in chain (so a host firewall's
    final REJECT cannot shadow them), stale jumps deleted. A table we no longer
    want: its jumps deleted and our chain removed. Nothing else is named.
    """
    out = []
    for table in sorted(set(tables) | set(live)):
        chain = IPT_CHAINS[table]
        lines, have = tables.get(table, []), live.get(table, [])
        jumps = [line for line in lines if line.split()[1] != chain]
        stale = [line for line in have if line.split()[1] != chain and line not in jumps]
        out += [f"*{table}", f":{chain} - [0:0]"]
        out += ["-D " + line[3:] for line in stale]
        if table in tables:
            out += [line for line in lines if line.split()[1] == chain]
            out += ["-I " + line[3:] for line in jumps if line not in have]
        else:
            out.append(f"-X {chain}")
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""
