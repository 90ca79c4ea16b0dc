"""Section 4: fabric overhead. The kernel lab (molecule/kernel) measures it
on a real kernel; here it is computed from our own code and labelled so."""

from __future__ import annotations

import importlib.util
import json

import ansible.module_utils
import synth  # noqa: F401  (puts plugins/module_utils on sys.path)
from common import ROOT, Row, skipped
from swarmfabric import mtu

UNDERLAY_MTU = 1500
LAB_NODES = 5


def _xfrm_tunnel():
    path = str(ROOT / "plugins" / "module_utils")
    if path not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.append(path)
    spec = importlib.util.spec_from_file_location("sf_bench_xfrm_tunnel", ROOT / "library" / "xfrm_tunnel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _states(nodes, phase):
    """SAs one host holds, from xfrm_tunnel's own planner (generation 1 live, rotating to 2)."""
    xfrm = _xfrm_tunnel()
    peers = [f"172.31.0.{i}" for i in range(2, nodes + 1)]
    params = {"name": "appnet", "vni": 300, "local": "172.31.0.1", "peers": peers}
    generations, _policy = xfrm.keys.plan_generations(phase, 1 if phase == "converge" else 2, {1}, 1)
    return len(xfrm.desired_sas(params, generations))


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
    measured = json.loads(kernel_lab_results.read_text()) if kernel_lab_results else None
    if not measured:
        for name in ("inner MTU reached, encrypted (kernel lab)", "inner MTU reached, plain (kernel lab)",
                     "xfrm states per host, max during a rotation (kernel lab)"):
            rows.append(skipped("4", name, "not measured here: no kernel lab results given "
                                "(--kernel-lab-results)", status="not measured here"))
        return rows
    nodes = measured.get("nodes", n)
    rows.append(Row("4", "inner MTU reached, encrypted (kernel lab)", measured["inner_mtu_encrypted"], 1416, 1.0,
                    "==", unit="bytes", note=f"from {kernel_lab_results}"))
    rows.append(Row("4", "inner MTU reached, plain (kernel lab)", measured["inner_mtu_plain"], 1450, 1.0, "==",
                    unit="bytes", note=f"from {kernel_lab_results}"))
    rows.append(Row("4", f"xfrm states per host, max during a rotation, N={nodes} (kernel lab)",
                    measured["xfrm_states_rotation_max"], 4 * (nodes - 1), 1.0, unit="count",
                    note=f"from {kernel_lab_results}"))
    return rows
