"""Synthetic swarm descriptions for the benchmarks, and the real filters and
template of the mesh layer to turn them into rulesets.

The filters are imported from plugins/filter (the same functions Ansible
calls), and mesh.nft.j2 is rendered with the mesh role's defaults.
"""

from __future__ import annotations

import functools
import importlib.util
import ipaddress
import sys

import jinja2
import yaml
from common import ROOT

MODULE_UTILS = ROOT / "plugins" / "module_utils"
if str(MODULE_UTILS) not in sys.path:
    sys.path.insert(0, str(MODULE_UTILS))

from swarmfabric.plan import FWMARK_BITS, stable_hash


def _filters():
    spec = importlib.util.spec_from_file_location("sf_bench_filters", ROOT / "plugins" / "filter" / "swarmfabric.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()


FILTERS = _filters()
MESH_DEFAULTS = yaml.safe_load((ROOT / "roles" / "mesh" / "defaults" / "main.yml").read_text())
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "roles" / "mesh" / "templates"),
                          trim_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
MESH_NFT = _ENV.get_template("mesh.nft.j2")


@functools.cache
def _view_variable():
    """The fact roles/mesh sets from swarm_mesh_view, which the templates read."""
    tasks = yaml.safe_load((ROOT / "roles" / "mesh" / "tasks" / "main.yml").read_text())
    for task in tasks:
        for key, value in (task.get("ansible.builtin.set_fact") or task.get("set_fact") or {}).items():
            if "swarm_mesh_view" in str(value):
                return key
    raise LookupError("roles/mesh/tasks/main.yml sets no fact from swarm_mesh_view")

# Mesh workload: a /12 overlay cut in /20 node ranges, so that the last
# range (the VIP range) holds 4094 addresses.
MESH_SUBNET = ipaddress.IPv4Network("10.64.0.0/12")
MESH_NODE_PREFIX = 20
MESH_NODES = 10


def service_names(count):
    """``count`` service names whose fwmarks do not collide.

    The plan derives a 16-bit fwmark from the name and refuses collisions, so
    a real 1,000-service swarm has to avoid them too (see docs/performance.md).
    """
    names, marks, n = [], set(), 0
    while len(names) < count:
        name = f"svc{n:05d}"
        mark = stable_hash(name) & ((1 << FWMARK_BITS) - 1)
        if mark not in marks:
            marks.add(mark)
            names.append(name)
        n += 1
    return names


def mesh_workload(services, backends, published):
    """A description with ``services`` VIP services of ``backends`` tasks each,
    ``published`` of them with an ingress port; the host that applies is node01.

    Returns (swarm, hostvars, task addresses per service).
    """
    nodes = [f"node{i:02d}" for i in range(1, MESH_NODES + 1)]
    range_size = 2 ** (32 - MESH_NODE_PREFIX)
    base = int(MESH_SUBNET.network_address)
    vip_base = base + (2 ** (MESH_NODE_PREFIX - MESH_SUBNET.prefixlen) - 1) * range_size
    swarm = {
        "name": "bench",
        "managers": nodes[:1],
        "workers": nodes[1:],
        "nodes": {host: {"slot": i + 1} for i, host in enumerate(nodes)},
        "overlays": {"appnet": {"vni": 300, "subnet": str(MESH_SUBNET), "encrypted": False,
                                "node_prefix": MESH_NODE_PREFIX}},
        "services": {},
        "mesh": {"backend": "nftables", "scheduler": "rr"},
    }
    tasks = {}
    for i, name in enumerate(service_names(services)):
        port = {"published": 30000 + i, "target": 80, "mode": "ingress"} if i < published else \
            {"published": 20000 + i, "target": 80, "mode": "host"}
        swarm["services"][name] = {"image": "swarmfabric/task:1", "deploy": {"replicas": backends},
                                   "networks": ["appnet"], "ports": [port],
                                   "x-swarmfabric": {"vip": str(ipaddress.IPv4Address(vip_base + 2 + i))}}
        # Tasks run on node02..node10, never on node01, so host-mode ports
        # give node01 a VIP endpoint only.
        addresses = []
        for j in range(backends):
            k = i * backends + j
            slot = 2 + k % (MESH_NODES - 1)
            addresses.append(str(ipaddress.IPv4Address(base + slot * range_size + 2 + k // (MESH_NODES - 1))))
        tasks[name] = addresses
    hostvars = {host: {"swarm_advertise_addr": f"172.31.{i // 250}.{i % 250 + 1}"} for i, host in enumerate(nodes)}
    return swarm, hostvars, tasks


def render_mesh(plan, host, tasks):
    view = FILTERS["swarm_mesh_view"](plan, host, tasks)
    return MESH_NFT.render({**MESH_DEFAULTS, _view_variable(): view})


def mesh_ruleset(services, backends, published):
    """The nft text node01 applies for this workload, and the plan's inputs."""
    swarm, hostvars, tasks = mesh_workload(services, backends, published)
    problems = FILTERS["swarm_validate"](swarm, list(hostvars))
    if problems:
        raise ValueError("synthetic description is invalid: " + "; ".join(problems[:5]))
    plan = FILTERS["swarm_plan"](swarm, hostvars)
    return render_mesh(plan, "node01", tasks), plan, tasks


def cluster_workload(nodes, services=20, backends=3):
    """A description of ``nodes`` nodes (3 managers) with a fixed service set."""
    hosts = [f"n{i:04d}" for i in range(1, nodes + 1)]
    swarm = {
        "name": "scale",
        "managers": hosts[:3],
        "workers": hosts[3:],
        # Pinned slots: hashing 1,000 names into 65,534 slots collides.
        "nodes": {host: {"slot": i + 1} for i, host in enumerate(hosts)},
        "overlays": {"appnet": {"vni": 300, "subnet": "10.0.0.0/8", "encrypted": True}},
        "services": {},
        "mesh": {"backend": "nftables", "scheduler": "rr"},
    }
    tasks = {}
    for i, name in enumerate(service_names(services)):
        swarm["services"][name] = {"image": "swarmfabric/task:1", "deploy": {"replicas": backends},
                                   "networks": ["appnet"], "ports": [{"published": 30000 + i, "target": 80}],
                                   "x-swarmfabric": {"vip": f"10.255.255.{2 + i}"}}
        slots = [(i * backends + j) % nodes + 1 for j in range(backends)]
        tasks[name] = [f"10.{slot >> 8}.{slot & 255}.{2 + i}" for slot in slots]
    hostvars = {host: {"swarm_advertise_addr": f"172.31.{i // 250}.{i % 250 + 1}"} for i, host in enumerate(hosts)}
    return swarm, hostvars, tasks


def allocation_workload(nodes=250, overlays=5, per_overlay=200):
    """Issue 13's size: ``nodes`` nodes, ``overlays`` /16 overlays of ``per_overlay`` VIP services
    each, nothing pinned (no slot, no vip): the sticky allocator places everything."""
    hosts = [f"n{i:04d}" for i in range(1, nodes + 1)]
    names = [f"ov{k}" for k in range(overlays)]
    swarm = {
        "name": "alloc",
        "managers": hosts[:3],
        "workers": hosts[3:],
        "overlays": {name: {"vni": 1000 + k, "subnet": f"10.{100 + k}.0.0/16", "encrypted": False}
                     for k, name in enumerate(names)},
        "services": {f"svc-{k}-{i:03d}": {"image": "swarmfabric/task:1", "networks": [name]}
                     for k, name in enumerate(names) for i in range(per_overlay)},
    }
    hostvars = {host: {"swarm_advertise_addr": f"172.31.{i // 250}.{i % 250 + 1}"} for i, host in enumerate(hosts)}
    return swarm, hostvars
