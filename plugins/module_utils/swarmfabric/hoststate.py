"""One read of everything a converge of this host looks at, as digests.

``library/host_state.py`` reads, in one process per host: the engine and
swarm membership, on a manager the swarm's spec, nodes, services, configs
and secrets (names and labels only), the local networks, the running task
containers' addresses, our links with their addresses, FDB entries and
routes, the ESP SAs and policies (SPIs, never keys), our nft tables, our
iptables chains, IPVS services and settings, our files and our daemons.

Each section is reduced to a canonical JSON text without the values that
move on their own (counters, expiry times, replay counters, promiscuity,
the converge lock, raft leadership), then to a SHA-256. Only the digests
leave the host. After a complete converge, the stamp file records the
digests and the hash of the run's inputs; a later run whose inputs hash
and digests are all equal would change nothing, so the controller skips
its layers (docs/architecture.md, "Converged runs").

Standard library only: this runs on managed hosts.
"""

import hashlib
import json
import os
import re
import stat

from .constants import DEVICE_PREFIX, PROC_IPVS
from .constants import DOCKER_SERVICE_LABEL as SERVICE_LABEL
from .docker_api import DockerAPIError
from .iproute import parse_xfrm_policies, parse_xfrm_states
from .nft import normalize_line

STAMP_PATH = "/var/lib/swarmfabric/converged.json"
STAMP_VERSION = 1
# Directories whose files are ours (logs and pid files excepted: they move
# while nothing changes; the daemons section says whether each one runs).
FILE_ROOTS = ("/etc/swarmfabric", "/usr/local/libexec/swarmfabric", "/run/swarmfabric")
UNIT_DIR = "/etc/systemd/system"
UNIT_PREFIX = "swarmfabric-"
RUN_DIR = "/run/swarmfabric"
SYSTEMD_DIR = "/run/systemd/system"
NFT_PREFIX = "swarmfabric"
IPTABLES_PREFIX = "SF-"
IPVS_SYSCTL_DIR = "/proc/sys/net/ipv4/vs"
# Swarm labels that move while nothing changes: the converge lock of the run itself.
VOLATILE_SWARM_LABELS = ("io.swarmfabric.lock",)
LINK_FIELDS = ("ifname", "link", "mtu", "address", "master", "linkinfo")
VOLATILE_FLAGS = {"PROMISC", "ALLMULTI"}
_IPT_COUNTERS = re.compile(r"\[\d+:\d+\]")

SECTIONS = ("docker", "swarm", "links", "xfrm", "nft", "iptables", "ipvs", "files", "daemons")


def digest(value):
    """SHA-256 of the canonical JSON of ``value``."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- pure reductions (unit-tested on captured outputs) ----------------------

def links_view(links, addrs, fdb, routes, prefix=DEVICE_PREFIX):
    """Our devices (named ``prefix``...) with their addresses, FDB peers and routes."""
    ours = sorted(link["ifname"] for link in links if link.get("ifname", "").startswith(prefix))
    view = {}
    for link in links:
        if link.get("ifname") not in ours:
            continue
        entry = {k: link[k] for k in LINK_FIELDS if k in link}
        entry["flags"] = sorted(set(link.get("flags", [])) - VOLATILE_FLAGS)
        view[link["ifname"]] = entry
    for entry in addrs:
        if entry.get("ifname") in view:
            view[entry["ifname"]]["addresses"] = sorted(
                f"{a.get('local')}/{a.get('prefixlen')}" for a in entry.get("addr_info", []))
    for entry in fdb:
        # The VXLAN peers (entries with a remote); the shim's multicast entries follow group joins.
        if entry.get("ifname") in view and entry.get("dst"):
            view[entry["ifname"]].setdefault("fdb", []).append(
                [entry.get("mac"), entry.get("dst"), sorted(entry.get("flags", [])), entry.get("state")])
    for entry in routes:
        if entry.get("dev") in view:
            view[entry["dev"]].setdefault("routes", []).append(
                [entry.get("dst"), entry.get("table"), entry.get("gateway"), entry.get("prefsrc"), entry.get("scope")])
    for entry in view.values():
        for key in ("fdb", "routes"):
            if key in entry:
                entry[key] = sorted(entry[key], key=json.dumps)
    return view


def xfrm_view(states_text, policies_text):
    """SAs without their keys, and policies, sorted."""
    states = [{k: v for k, v in sa.items() if k != "key"} for sa in parse_xfrm_states(states_text)]
    policies = parse_xfrm_policies(policies_text)
    return {"states": sorted(states, key=json.dumps), "policies": sorted(policies, key=json.dumps)}


def nft_view(listings):
    """``{"family name": [normalised lines]}`` of our tables; ``listings`` maps (family, name) to text."""
    return {f"{family} {name}": [normalize_line(line) for line in text.splitlines() if line.strip()]
            for (family, name), text in sorted(listings.items())}


def our_tables(tables_text, prefix=NFT_PREFIX):
    """(family, name) of the tables named ``prefix``... in ``nft list tables``."""
    out = []
    for line in tables_text.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "table" and words[2].startswith(prefix):
            out.append((words[1], words[2]))
    return sorted(out)


def iptables_view(save_text, prefix=IPTABLES_PREFIX):
    """The lines of ``iptables-save`` that name one of our chains, without counters, per table."""
    view, table = {}, None
    for line in save_text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif prefix in line and table:
            view.setdefault(table, []).append(" ".join(_IPT_COUNTERS.sub("", line).split()))
    return {name: sorted(lines) for name, lines in view.items()}


def _labels(spec, drop=()):
    return {k: v for k, v in (spec.get("Labels") or {}).items() if k not in drop}


def docker_view(version, info, networks, containers):
    """The engine, this node's membership, the local networks and the running task containers."""
    swarm = info.get("Swarm") or {}
    keys = ("Id", "Name", "Driver", "Scope", "Options", "Labels", "ConfigOnly", "ConfigFrom", "Internal",
            "Attachable", "Ingress")
    nets = [{**{k: n.get(k) for k in keys}, "IPAM": (n.get("IPAM") or {}).get("Config")}
            for n in networks if n.get("Scope") == "local" or swarm.get("ControlAvailable")]
    tasks = []
    for c in containers:
        if c.get("State") != "running":
            continue
        addresses = {name: net.get("IPAddress")
                     for name, net in ((c.get("NetworkSettings") or {}).get("Networks") or {}).items()}
        tasks.append([(c.get("Labels") or {}).get(SERVICE_LABEL), c.get("Id"), addresses])
    return {
        "engine": version.get("Version"),
        "node": {**{k: swarm.get(k) for k in ("NodeID", "LocalNodeState", "ControlAvailable", "Error")},
                 "Cluster": (swarm.get("Cluster") or {}).get("ID")},
        "networks": sorted(nets, key=lambda n: n["Id"] or ""),
        "tasks": sorted(tasks, key=json.dumps),
    }


def swarm_view(swarm, nodes, services, configs, secrets):
    """What a manager sees of the swarm: its spec (without the lock), nodes, services, configs, secrets."""
    spec = dict(swarm.get("Spec") or {})
    spec["Labels"] = _labels(spec, VOLATILE_SWARM_LABELS)
    node_view = [{"ID": n.get("ID"), "Spec": n.get("Spec"),
                  "State": (n.get("Status") or {}).get("State"), "Addr": (n.get("Status") or {}).get("Addr"),
                  "Hostname": (n.get("Description") or {}).get("Hostname"),
                  "Reachability": (n.get("ManagerStatus") or {}).get("Reachability")} for n in nodes]
    objects = [[kind, o.get("ID"), (o.get("Spec") or {}).get("Name"), _labels(o.get("Spec") or {})]
               for kind, items in (("config", configs), ("secret", secrets)) for o in items]
    return {
        "id": swarm.get("ID"), "spec": spec,
        "nodes": sorted(node_view, key=lambda n: n["ID"] or ""),
        "services": sorted(([s.get("ID"), s.get("Spec")] for s in services), key=json.dumps),
        "objects": sorted(objects, key=json.dumps),
    }


# --- reads (commands, files, the Docker API) -------------------------------

def read_files(roots=None, unit_dir=None):
    """path -> [mode, sha256] for files, [mode, target] for symlinks; logs and pid files left out."""
    roots, unit_dir, out = roots or FILE_ROOTS, unit_dir or UNIT_DIR, {}

    def add(path):
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            out[path] = ["link", os.readlink(path)]
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as handle:
                out[path] = [oct(stat.S_IMODE(st.st_mode)), hashlib.sha256(handle.read()).hexdigest()]
        elif stat.S_ISDIR(st.st_mode):
            out[path] = ["dir", oct(stat.S_IMODE(st.st_mode))]

    for root in roots:
        for top, dirs, files in os.walk(root):
            dirs.sort()
            add(top)
            for name in sorted(files):
                if not name.endswith((".log", ".pid")):
                    add(os.path.join(top, name))
    if os.path.isdir(unit_dir):
        for top, _dirs, files in os.walk(unit_dir):
            for name in sorted(files):
                if name.startswith(UNIT_PREFIX):
                    add(os.path.join(top, name))
    return out


def read_daemons(runner, run_dir=None):
    """Whether each of our daemons runs: systemd's unit states, or each pid file's process."""
    run_dir, out = run_dir or RUN_DIR, {}
    if os.path.isdir(SYSTEMD_DIR):
        rc, text, _err = runner.status(["systemctl", "list-units", "--all", "--plain", "--no-legend",
                                        f"{UNIT_PREFIX}*"])
        out["systemd"] = sorted(line.split()[:4] for line in text.splitlines() if line.strip()) if rc == 0 else rc
    if os.path.isdir(run_dir):
        for name in sorted(os.listdir(run_dir)):
            if not name.endswith(".pid"):
                continue
            try:
                with open(os.path.join(run_dir, name), encoding="utf-8") as handle:
                    pid = int(handle.read().split()[0])
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    out[name] = handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            except (OSError, ValueError, IndexError):
                out[name] = None
    return out


def read_docker(api):
    """(docker section, swarm section): None for the swarm off a manager; an engine that does not answer
    is a section of its own (the converge would start it)."""
    try:
        version = api.get("/version")
        info = api.get("/info")
        view = docker_view(version, info, api.get("/networks"),
                           api.get("/containers/json", query={"filters": {"label": [SERVICE_LABEL]}}))
        if not (info.get("Swarm") or {}).get("ControlAvailable"):
            return view, None
        return view, swarm_view(api.get("/swarm"), api.get("/nodes"), api.get("/services"),
                                api.get("/configs"), api.get("/secrets"))
    except DockerAPIError as exc:
        return {"answers": False, "error": type(exc).__name__, "status": exc.status}, None


def read_ipvs(runner):
    if not os.path.exists(PROC_IPVS):
        return None
    settings = {}
    if os.path.isdir(IPVS_SYSCTL_DIR):
        for name in sorted(os.listdir(IPVS_SYSCTL_DIR)):
            try:
                with open(os.path.join(IPVS_SYSCTL_DIR, name), encoding="utf-8") as handle:
                    settings[name] = handle.read().strip()
            except OSError:
                continue
    return {"services": sorted(runner.run(["ipvsadm", "-Sn"], what="read IPVS services").splitlines()),
            "timeouts": runner.run(["ipvsadm", "-L", "--timeout"], what="read IPVS timeouts").strip(),
            "sysctls": settings}


def _nft(runner):
    tables = runner.run(["nft", "list", "tables"], what="list the nft tables")
    return nft_view({t: runner.run(["nft", "list", "table", *t], what=f"read table {' '.join(t)}")
                     for t in our_tables(tables)})


def _links(runner):
    return links_view(runner.json(["ip", "-d", "-j", "link", "show"]), runner.json(["ip", "-j", "addr", "show"]),
                      runner.json(["bridge", "-j", "fdb", "show"]),
                      runner.json(["ip", "-j", "route", "show", "table", "all"]))


def _xfrm(runner):
    return xfrm_view(runner.run(["ip", "xfrm", "state", "list"], what="read the ESP SAs"),
                     runner.run(["ip", "xfrm", "policy", "list"], what="read the xfrm policies"))


def read_sections(runner, module, api):
    """Every section's canonical value (name -> value), and the sections that could not be read
    (name -> why). A tool that is not installed reads as None (the layer that needs it says so);
    the read itself never fails."""
    have = {name: bool(module.get_bin_path(name)) for name in ("ip", "bridge", "nft", "iptables-save", "ipvsadm")}
    readers = {
        "links": lambda: _links(runner) if have["ip"] and have["bridge"] else None,
        "xfrm": lambda: _xfrm(runner) if have["ip"] else None,
        "nft": lambda: _nft(runner) if have["nft"] else None,
        "iptables": lambda: iptables_view(runner.run(["iptables-save"], what="read iptables")) if have["iptables-save"]
        else None,
        "ipvs": lambda: read_ipvs(runner) if have["ipvsadm"] else None,
        "files": read_files,
        "daemons": lambda: read_daemons(runner),
    }
    docker, swarm = read_docker(api)
    sections, unread = {"docker": docker, "swarm": swarm}, {}
    for name, reader in readers.items():
        try:
            sections[name] = reader()
        except Exception as exc:  # pylint: disable=broad-except  # any failure: that section is unknown
            sections[name], unread[name] = None, str(exc)
    return sections, unread


def digests(sections):
    return {name: digest(sections.get(name)) for name in SECTIONS}


def read_stamp(path=None):
    """The last complete converge's stamp, or None (none yet, or unreadable: then it does not count)."""
    path = path or STAMP_PATH
    try:
        with open(path, encoding="utf-8") as handle:
            stamp = json.load(handle)
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) and stamp.get("version") == STAMP_VERSION else None


def write_stamp(stamp, path=None):
    """Written whole, then renamed into place: a reader never sees half a stamp."""
    path = path or STAMP_PATH
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(stamp, handle, sort_keys=True, indent=1)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
