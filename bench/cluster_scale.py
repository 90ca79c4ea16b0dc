"""Section 3: the plan filter, every host's view and every host's mesh
rendering, as the cluster grows."""

from __future__ import annotations

import math
import time

import synth
from common import Row, median


def _one_size(nodes, repeat):
    swarm, hostvars, tasks = synth.cluster_workload(nodes)
    plan_t, views_t, mesh_t = [], [], []
    for _ in range(repeat):
        start = time.perf_counter()
        plan = synth.FILTERS["swarm_plan"](swarm, hostvars)
        plan_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        views = [synth.FILTERS["swarm_host_view"](plan, host) for host in hostvars]
        views_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        for host in hostvars:
            synth.render_mesh(plan, host, tasks)
        mesh_t.append(time.perf_counter() - start)
    peers = len(views[0]["overlays"][0]["peers"])
    if peers != nodes - 1:
        raise ValueError(f"host view of {nodes} nodes lists {peers} peers")
    return {"plan": median(plan_t), "views": median(views_t), "mesh": median(mesh_t)}


def exponent(sizes, seconds):
    """Least-squares slope of log(time) against log(size)."""
    xs, ys = [math.log(s) for s in sizes], [math.log(t) for t in seconds]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def allocation_row(repeat):
    """Issue 13: 250 nodes and 1,000 services with nothing pinned, validated and planned
    (first run: no record), then planned again from the record it wrote."""
    swarm, hostvars = synth.allocation_workload()
    validate_t, plan_t, again_t = [], [], []
    for _ in range(repeat):
        start = time.perf_counter()
        problems = synth.FILTERS["swarm_validate"](swarm, list(hostvars))
        validate_t.append(time.perf_counter() - start)
        if problems:
            raise ValueError("allocation workload is invalid: " + "; ".join(problems[:5]))
        start = time.perf_counter()
        plan = synth.FILTERS["swarm_plan"](swarm, hostvars)
        plan_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        again = synth.FILTERS["swarm_plan"](swarm, hostvars, None, plan["allocations"])
        again_t.append(time.perf_counter() - start)
        if again["allocations"] != plan["allocations"]:
            raise ValueError("a plan from its own allocation record moved an allocation")
    figures = {"validate": median(validate_t), "plan": median(plan_t), "plan_from_record": median(again_t)}
    return Row("3c", "validate + plan, 250 nodes and 1000 services (5 /16 overlays x 200 VIP services, nothing pinned)",
               figures["validate"] + figures["plan"], None, None, None, status="info",
               note=(f"validate {figures['validate']:.3f} s, plan {figures['plan']:.3f} s (no record); "
                     f"plan from its own record {figures['plan_from_record']:.3f} s"),
               detail=figures)


def measure(quick, repeat):
    sizes = [10, 50] if quick else [10, 100, 1000]
    figures = {n: _one_size(n, repeat) for n in sizes}
    rows = []
    for n in sizes:
        f = figures[n]
        rows.append(Row("3", f"plan + {n} host views + {n} mesh renders ({n} nodes)", sum(f.values()), None,
                        None, None, status="info",
                        note=f"plan {f['plan']:.3f} s, host views {f['views']:.3f} s, mesh {f['mesh']:.3f} s",
                        detail=f))
    totals = [sum(figures[n].values()) for n in sizes]
    per_host = [(figures[n]["views"] + figures[n]["mesh"]) / n for n in sizes]
    # The slope between the two largest sizes is the measured exponent: at the
    # small sizes fixed costs flatten a fit over all of them.
    top = f"log-log slope {sizes[-2]}->{sizes[-1]} nodes"
    rows.append(Row("3a", "growth exponent of the whole plan step (all hosts) vs O(n^2)",
                    exponent(sizes[-2:], totals[-2:]), 2.0, 1.0, unit="exponent",
                    note=f"{top} (fit over {sizes}: {exponent(sizes, totals):.2f}); 20 services x 3 backends",
                    detail={"total_seconds": dict(zip(sizes, totals, strict=True))}))
    rows.append(Row("3b", "growth exponent of one host's work (view + mesh render) vs O(n)",
                    exponent(sizes[-2:], per_host[-2:]), 1.0, 1.0, unit="exponent",
                    note=f"{top} (fit over {sizes}: {exponent(sizes, per_host):.2f})",
                    detail={"per_host_seconds": dict(zip(sizes, per_host, strict=True))}))
    rows.append(allocation_row(repeat))
    return rows
