"""Section 1: the nftables mesh applied by our module inside a network
namespace of the benchmark's own, against raw nft as the floor."""

from __future__ import annotations

import json
import os
import pathlib
import tempfile

import synth
from ansible.executor.module_common import modify_module
from ansible.modules import ping as ping_module
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar
from common import HOST_PYTHON, PREFIX, ROOT, VENV_BIN, BenchError, Row, median, run, skipped

TABLE = ("ip", "swarmfabric_mesh")
MODULE = ROOT / "library" / "mesh_ruleset.py"


_LOADER = []


def build_payload(args, name="mesh_ruleset", path=MODULE):
    """The AnsiballZ payload Ansible would send for module ``name`` with
    ``args``: the module, the module_utils it imports and the arguments."""
    if not _LOADER:
        init_plugin_loader()
        _LOADER.append(True)
    built = modify_module(module_name=name, module_path=str(path), module_args=args,
                          templar=Templar(loader=DataLoader()),
                          task_vars={"ansible_python_interpreter": HOST_PYTHON})
    return built.b_module_data


class Namespace:
    def __init__(self, tag):
        self.name = f"{PREFIX}{tag}-{os.getpid()}"

    def __enter__(self):
        run(["ip", "netns", "add", self.name])
        run(["ip", "link", "set", "lo", "up"], ns=self.name)
        return self.name

    def __exit__(self, *exc):
        run(["ip", "netns", "del", self.name], check=False)


def module_result(proc):
    try:
        return json.loads(proc.out[proc.out.index("{"):])
    except ValueError as exc:
        raise BenchError(f"mesh_ruleset gave no JSON: {proc.out[-400:]} {proc.err[-400:]}") from exc


def call_module(ns, payload_path, rss=False):
    proc = run([HOST_PYTHON, payload_path], ns=ns, check=False, rss=rss)
    result = module_result(proc)
    if proc.rc != 0 or result.get("failed"):
        raise BenchError(f"mesh_ruleset failed: {result.get('msg')}")
    return proc, result


def load_raw(ns, path, rss=False):
    run(["nft", "delete", "table", *TABLE], ns=ns, check=False)
    return run(["nft", "-f", path], ns=ns, rss=rss)


def iptables_playbook(workdir, rules):
    """The per-rule peer: one ansible.builtin.iptables call per DNAT rule."""
    (workdir / "rules.json").write_text(json.dumps({"sf_bench_rules": rules}))
    (workdir / "peer.yml").write_text(
        "- name: Per-rule peer\n  hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
        "    - name: One DNAT rule per backend\n      ansible.builtin.iptables:\n"
        "        table: nat\n        chain: PREROUTING\n        protocol: tcp\n"
        "        destination: \"{{ item.vip | default(omit) }}\"\n        destination_port: \"{{ item.port }}\"\n"
        "        jump: DNAT\n        to_destination: \"{{ item.to }}\"\n        comment: \"{{ item.comment }}\"\n"
        "      loop: \"{{ sf_bench_rules }}\"\n")
    return workdir / "peer.yml"


def peer_rules(plan, tasks, count):
    """The DNAT rules of the first ``count`` services: one per backend, one per ingress port."""
    rules = []
    for name in list(plan["services"])[:count]:
        service = plan["services"][name]
        for ip in tasks[name]:
            rules.append({"vip": service["vip"], "port": 80, "to": f"{ip}:80", "comment": name})
        for port in service["publish"]:
            if port["mode"] == "ingress":
                rules.append({"port": port["published"], "to": f"{tasks[name][0]}:80", "comment": name})
    return rules


def measure(quick, repeat, peer_services):
    services, backends, published = (20, 3, 2) if quick else (1000, 10, 100)
    size = f"{services} services x {backends} backends + {published} published"
    text, plan, tasks = synth.mesh_ruleset(services, backends, published)
    first = next(iter(tasks))
    moved = {**tasks, first: ["10.64.255.250", *tasks[first][1:]]}
    delta_text = synth.render_mesh(plan, "node01", moved)
    rows = []
    with tempfile.TemporaryDirectory(prefix=PREFIX) as tmpdir, Namespace("mesh") as ns:
        tmp = pathlib.Path(tmpdir)
        full_nft = tmp / "mesh.nft"
        full_nft.write_text(text)
        payloads = {}
        for key, nft in (("full", text), ("delta", delta_text)):
            payloads[key] = tmp / f"AnsiballZ_mesh_ruleset_{key}.py"
            payloads[key].write_bytes(build_payload({"backend": "nftables", "nft": nft, "arp_guard": "", "vips": []}))
        payloads["ping"] = tmp / "AnsiballZ_ping.py"
        payloads["ping"].write_bytes(build_payload({}, "ping", pathlib.Path(ping_module.__file__)))

        floor_load, ours_load, rss_ours, rss_floor = [], [], [], []
        floor_list, ours_noop, ours_delta = [], [], []
        noop_changed, delta_reloaded, delta_actions, bootstrap = [], [], [], []
        for _ in range(repeat):
            bootstrap.append(run([HOST_PYTHON, payloads["ping"]], ns=ns).seconds)
            # (a) empty -> full: raw nft -f, then our module, same file.
            raw = load_raw(ns, full_nft, rss=True)
            floor_load.append(raw.seconds)
            rss_floor.append(raw.maxrss_kb)
            run(["nft", "delete", "table", *TABLE], ns=ns)
            proc, result = call_module(ns, payloads["full"], rss=True)
            ours_load.append(proc.seconds)
            rss_ours.append(proc.maxrss_kb)
            if not result["changed"]:
                raise BenchError("mesh_ruleset reported no change on an empty namespace")
            # (b) no-op: raw list of the live table, then our module again.
            floor_list.append(run(["nft", "list", "table", *TABLE], ns=ns).seconds)
            proc, result = call_module(ns, payloads["full"])
            ours_noop.append(proc.seconds)
            noop_changed.append(result["changed"])
            # (c) one backend of one service moved.
            proc, result = call_module(ns, payloads["delta"])
            ours_delta.append(proc.seconds)
            delta_actions = result["actions"]
            delta_reloaded.append(any("reloaded" in a or "created" in a for a in result["actions"]))
            if "10.64.255.250" not in run(["nft", "list", "table", *TABLE], ns=ns).out:
                raise BenchError("the moved backend is not in the live table after the delta")
        load_floor, list_floor = median(floor_load), median(floor_list)
        rows.append(Row("1a", f"mesh empty->full, module vs raw nft -f ({size})", median(ours_load), load_floor,
                        1.5, detail={"module": ours_load, "floor": floor_load, "netns": ns}))
        rows.append(Row("1b", "mesh no-op re-converge, module vs raw nft list table", median(ours_noop), list_floor,
                        1.2, note="" if not any(noop_changed) else "NOT a no-op: the module reported changed",
                        detail={"module": ours_noop, "floor": floor_list, "changed": noop_changed}))
        rows.append(Row("1c", "mesh one backend moved, module vs raw nft list table", median(ours_delta), list_floor,
                        1.3, note="full reload, not a delta" if any(delta_reloaded) else "applied as a delta",
                        detail={"module": ours_delta, "floor": floor_list, "actions": delta_actions}))
        rows.append(Row("1e", "peak RSS of the module process tree vs raw nft -f", max(rss_ours) / 1024,
                        max(rss_floor) / 1024, None, None, unit="MiB", status="info",
                        note="GNU time %M: the largest of the module's Python and the nft it runs"))
        rows.append(Row("1f", "module bootstrap alone: AnsiballZ payload of ansible.builtin.ping", median(bootstrap),
                        None, None, None, status="info",
                        note="the fixed cost inside every module figure above (Python start, zipimport of "
                             "module_utils compiled from source, AnsibleModule)", detail={"samples": bootstrap}))
        rows.append(_peer(ns, tmp, plan, tasks, services, peer_services, median(ours_load)))
    return rows


def _peer(ns, tmp, plan, tasks, services, peer_services, ours):
    count = min(peer_services, services)
    rules = peer_rules(plan, tasks, count)
    playbook = iptables_playbook(tmp, rules)
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_PYTHON_INTERPRETER": HOST_PYTHON,
           "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.minimal"}
    proc = run([VENV_BIN / "ansible-playbook", "-i", "localhost,", playbook, "-e", f"@{tmp / 'rules.json'}"],
               ns=ns, env=env, cwd=tmp, check=False)
    if proc.rc != 0:
        return skipped("1d", "per-rule peer (ansible.builtin.iptables loop)", f"playbook failed: {proc.out[-300:]}")
    live = run(["iptables", "-t", "nat", "-S", "PREROUTING"], ns=ns).out.count("-j DNAT")
    if live != len(rules):
        raise BenchError(f"the iptables peer left {live} DNAT rules, expected {len(rules)}")
    extrapolated = proc.seconds * services / count
    return Row("1d", f"mesh empty->full, module vs per-rule iptables loop extrapolated from {count} services",
               ours, extrapolated, 0.01,
               note=f"peer: {len(rules)} rules in {proc.seconds:.1f} s, x{services / count:g}; target: >= 100x faster",
               detail={"peer_seconds": proc.seconds, "peer_rules": len(rules), "peer_services": count})
