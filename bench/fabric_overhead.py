"""Section 4: fabric overhead. The kernel lab (molecule/kernel) measures it
on a real kernel and leaves its figures in KERNEL_LAB_RESULTS; beside them,
the same figures computed from our own code, labelled so."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import ansible.module_utils
import synth  # noqa: F401  (puts plugins/module_utils on sys.path)
from common import ROOT, Row, skipped
from swarmfabric import mtu

UNDERLAY_MTU = 1500
LAB_NODES = 5
# Written by molecule/kernel/tests/conftest.py at the end of a kernel-lab run.
KERNEL_LAB_RESULTS = pathlib.Path("/var/cache/swarmfabric/kernel-lab/results.json")


def _xfrm_tunnel():
    path = str(ROOT / "plugins" / "module_utils")
    if path not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.append(path)
    spec = importlib.util.spec_from_file_location("sf_bench_xfrm_tunnel", ROOT / "library" / "xfrm_tunnel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _states(nodes, phase):
    """SAs one host holds, from the controller's key planner (epoch 1 live, rotating to 2)."""
    keys = _xfrm_tunnel().keys
    members = {f"n{i}": {"underlay": f"172.31.0.{i}", "slot": i} for i in range(1, nodes + 1)}
    overlay = {"name": "appnet", "vni": 300, "index": 0}

    def view(host, live, epoch):
        return keys.host_sas("bench-secret", "bench", "00" * 16, overlay, host, members, live, phase, epoch)

    steady = {}
    for host in members:
        sas = keys.host_sas("bench-secret", "bench", "00" * 16, overlay, host, members, {h: {} for h in members})
        steady[host] = {"epoch": 1, "outbound": {p["address"]: 1 for p in sas["peers"]},
                        "sas": [{**sa, "fingerprint": keys.fingerprint(sa["key"])} for sa in sas["sas"]]}
    return len(view("n1", steady, None if phase == "converge" else 2)["sas"])


def measure(kernel_lab_results=None):
    rows = []
    for encrypted, expected in ((True, 1416), (False, 1450)):
        kind = "encrypted" if encrypted else "plain"
        rows.append(Row("4", f"inner MTU, {kind}, {UNDERLAY_MTU} underlay (computed by mtu.py)",
                        mtu.inner_mtu(UNDERLAY_MTU, encrypted), expected, 1.0, "==", unit="bytes",
                        status="computed", note="computed, not measured on a kernel"))
    n = LAB_NODES
    rows.append(Row("4", f"xfrm states per host, steady, N={n} (computed by xfrm_tunnel's planner)",
                    _states(n, "converge"), 2 * (n - 1), 1.0, "==", unit="count", status="computed",
                    note="computed; baseline 2 x (N-1)"))
    rows.append(Row("4", f"xfrm states per host during a rotation, N={n} (computed)",
                    _states(n, "add_inbound"), 4 * (n - 1), 1.0, unit="count", status="computed",
                    note="computed; at most 4 x (N-1)"))
    path = kernel_lab_results
    measured = json.loads(path.read_text()) if path and path.exists() else {}
    source = f"from {path}, measured {measured.get('measured_at', '?')}"
    nodes = measured.get("nodes", n)
    for key, name, expected, op in (
            ("inner_mtu_encrypted", "inner MTU reached, encrypted (kernel lab)", 1416, "=="),
            ("inner_mtu_plain", "inner MTU reached, plain (kernel lab)", 1450, "=="),
            ("xfrm_states_rotation_max", f"xfrm states per host, max during a rotation, N={nodes} (kernel lab)",
             4 * (nodes - 1), "<=")):
        if key in measured:
            rows.append(Row("4", name, measured[key], expected, 1.0, op,
                            unit="count" if key.startswith("xfrm") else "bytes", note=source))
        else:
            rows.append(skipped("4", name, f"not measured here: no {key} in {path} (run molecule test -s kernel)",
                                status="not measured here"))
    return rows
