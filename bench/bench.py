"""Swarmfabric benchmarks (issue 7): every figure is a ratio measured side by
side with its baseline in this one run. See docs/performance.md.

Usage: bench/run [--quick] [--output FILE] [--repeat N] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
import traceback

import cluster_scale
import fabric_overhead
import lab_converge
import mesh_apply
from common import ROOT, BenchError, machine_facts, skipped

SECTIONS = {
    "1": ("mesh apply scale (nftables, own netns)", ["1a", "1b", "1c", "1d", "1e", "1f"]),
    "2": ("converge cost on the 5-node lab", ["2a", "2b", "2c", "2d"]),
    "3": ("scaling with cluster size", ["3a", "3b"]),
    "4": ("fabric overhead", []),
}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke size: 20 services x 3 backends, cluster sizes 10/50, no lab")
    parser.add_argument("--output", type=pathlib.Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per figure; the median is kept")
    parser.add_argument("--peer-services", type=int, default=None,
                        help="services in the ansible.builtin.iptables subset (default 10, 2 with --quick)")
    parser.add_argument("--sections", default="1234", help="which sections to run, e.g. 13")
    parser.add_argument("--kernel-lab-results", type=pathlib.Path, default=fabric_overhead.KERNEL_LAB_RESULTS,
                        help="JSON the kernel lab's tests write (inner_mtu_encrypted, inner_mtu_plain, "
                             "xfrm_states_rotation_max, nodes); default: %(default)s, when it exists")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    return parser.parse_args(argv)


def _section(number, args):
    if number == "1":
        peers = args.peer_services or (2 if args.quick else 10)
        return mesh_apply.measure(args.quick, args.repeat, peers)
    if number == "2":
        if args.quick:
            return lab_converge.all_skipped("skipped: --quick")
        return lab_converge.measure(args.repeat)
    if number == "3":
        return cluster_scale.measure(args.quick, args.repeat)
    return fabric_overhead.measure(args.kernel_lab_results)


def _fmt(value, unit=""):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int) or (unit in ("bytes", "count") and float(value).is_integer()):
        return str(int(value))
    return f"{value:.4g}" if abs(value) < 0.01 else f"{value:.3f}"


def table(rows, markdown=False):
    head = ["#", "figure", "measured", "baseline", "ratio", "target", "met", "unit", "note"]
    lines = []
    for r in rows:
        target = f"{r['target_op']} {_fmt(r['target'])}" if r["target"] is not None else "-"
        lines.append([r["section"], r["name"], _fmt(r["measured"], r["unit"]), _fmt(r["baseline"], r["unit"]),
                      _fmt(r["ratio"]), target, _fmt(r["met"]), r["unit"], r["status"] if r["status"] not in
                      ("measured",) and not r["note"].startswith(r["status"]) else ""])
        lines[-1][-1] = "; ".join(x for x in (lines[-1][-1], r["note"]) if x)
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(str(c)) for c in col) for col in zip(head, *lines, strict=True)]
    widths[-1] = 0
    fmt = "  ".join(f"{{:{'<' if i in (1, 8) else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join(fmt.format(*line).rstrip() for line in [head, *lines])


def main(argv=None):
    args = parse_args(argv)
    if args.repeat < 1:
        sys.exit("bench/run: --repeat must be at least 1")
    started = time.time()
    machine = machine_facts()
    machine.update(mode="quick" if args.quick else "full", repeat=args.repeat,
                   command="bench/run " + " ".join(sys.argv[1:]) if argv is None else "bench/run " + " ".join(argv))
    rows = []
    for number in args.sections:
        title, _ = SECTIONS[number]
        print(f"== section {number}: {title}", file=sys.stderr, flush=True)
        try:
            rows += [r.as_dict() for r in _section(number, args)]
        except (BenchError, OSError, ValueError) as exc:
            traceback.print_exc(file=sys.stderr)
            rows.append(skipped(number, title, f"skipped: {exc}").as_dict())
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["seconds"] = round(time.time() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"machine": machine, "results": rows}, indent=2, default=str) + "\n")
    print(table(rows, args.markdown))
    print(f"\nwrote {args.output} in {machine['seconds']} s (load average {machine['load_average_start']} -> "
          f"{machine['load_average_end']}, {machine['cpu_count']} CPUs)")


if __name__ == "__main__":
    main()
