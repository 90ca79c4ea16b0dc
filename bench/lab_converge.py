"""Section 2: converge cost on the 5-node DinD lab (inventory/lab)."""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import datetime

import yaml
from common import ROOT, VENV_BIN, BenchError, Row, median, run, skipped

INVENTORY = ROOT / "inventory" / "lab"
# Actions that run on the controller only: no module reaches the host.
CONTROLLER_ACTIONS = {"set_fact", "debug", "assert", "fail", "meta", "add_host", "group_by", "set_stats",
                      "include_tasks", "import_tasks", "include_role", "import_role", "include_vars", "pause"}


def lab_hosts():
    swarm = yaml.safe_load((INVENTORY / "group_vars" / "all" / "swarm.yml").read_text())["swarm"]
    return swarm["managers"] + (swarm.get("workers") or [])


def lab_missing():
    """Containers of inventory/lab that are not running, by container name."""
    inventory = yaml.safe_load((INVENTORY / "hosts.yml").read_text())
    wanted = {h["ansible_host"] for h in inventory["all"]["children"]["lab"]["hosts"].values()}
    proc = run(["docker", "ps", "--format", "{{.Names}}"], check=False)
    return sorted(wanted - set(proc.out.split())) if proc.rc == 0 else sorted(wanted)


def _env():
    return {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"}


def ansible_json(argv):
    proc = run(argv, env=_env(), cwd=ROOT, check=False)
    try:
        report = json.loads(proc.out[proc.out.index("{"):])
    except ValueError:
        report = {}
    return proc, report


def invocations(report):
    """Per host: (results not skipped, of which modules that ran on the host)."""
    results, modules = Counter(), Counter()
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            for host, result in task.get("hosts", {}).items():
                items = result.get("results") if isinstance(result.get("results"), list) else [result]
                ran = [r for r in items if not r.get("skipped")]
                action = str(result.get("action", "")).rsplit(".", 1)[-1]
                results[host] += len(ran)
                if action not in CONTROLLER_ACTIONS:
                    modules[host] += len(ran)
    return results, modules


def _seconds(duration):
    start, end = (datetime.fromisoformat(duration[k].replace("Z", "+00:00")) for k in ("start", "end"))
    return (end - start).total_seconds()


def slowest_tasks(report, count=10):
    """The tasks that took longest in a run, as (play / task, seconds)."""
    tasks = [(f"{play['play']['name']} / {task['task']['name']}", round(_seconds(task["task"]["duration"]), 2))
             for play in report.get("plays", []) for task in play.get("tasks", []) if task["task"].get("duration")]
    return sorted(tasks, key=lambda t: -t[1])[:count]


def first_failure(report):
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            for host, result in task.get("hosts", {}).items():
                if result.get("failed") or result.get("unreachable"):
                    return f"task '{task['task']['name']}' on {host}: {str(result.get('msg', ''))[:200]}"
    return "no JSON report"


ROWS = [("2a", "no-op site.yml vs ansible -m ping round"), ("2b", "module invocations per host, no-op site.yml"),
        ("2e", "no-op site.yml with every layer run (-e swarmfabric_full=true) vs ping"),
        ("2c", "swarm layer, first converge, vs community.docker"), ("2d", "swarm layer, no-op, vs community.docker")]


def all_skipped(why):
    return [skipped(number, name, why) for number, name in ROWS]


def measure(repeat):
    missing = lab_missing()
    if missing:
        return all_skipped(f"skipped: lab not running ({', '.join(missing)} down)")
    return site_rows(repeat) + swarm_rows(repeat)


def site_rows(repeat):
    playbook = [VENV_BIN / "ansible-playbook", "-i", INVENTORY, ROOT / "site.yml"]
    ping = [VENV_BIN / "ansible", "-i", INVENTORY, ":".join(lab_hosts()), "-m", "ansible.builtin.ping"]
    proc, report = ansible_json(playbook)
    if proc.rc != 0:
        why = f"skipped: the converging run of site.yml failed (rc {proc.rc}): {first_failure(report)}"
        return all_skipped(why)[:3]
    # The run after a converge may still find a digest that moved while the converge ran (a task
    # that was starting): one more run stamps the settled state, as any second run would.
    ansible_json(playbook)
    noop, pings, changed, full, full_changed = [], [], [], [], []
    for _ in range(repeat):
        pong = run(ping, env=_env(), cwd=ROOT, check=False)
        pings.append(pong.seconds)
        proc, report = ansible_json(playbook)
        noop.append(proc.seconds)
        stats = report.get("stats", {})
        changed.append(sum(s.get("changed", 0) for s in stats.values()))
        whole, whole_report = ansible_json([*playbook, "-e", "swarmfabric_full=true"])
        full.append(whole.seconds)
        full_changed.append(sum(s.get("changed", 0) for s in whole_report.get("stats", {}).values()))
        if proc.rc != 0 or pong.rc != 0 or whole.rc != 0:
            why = (f"skipped: a timed run failed (site.yml rc {proc.rc}, full rc {whole.rc}, ping rc {pong.rc}): "
                   f"{first_failure(report if proc.rc else whole_report)}")
            return all_skipped(why)[:3]
    results, modules = invocations(report)
    _results, full_modules = invocations(whole_report)
    hosts = lab_hosts()
    note = "" if not any(changed) else f"NOT a no-op: {changed} tasks changed"
    full_note = ("every layer runs; the layers' own cost, for comparison" if not any(full_changed)
                 else f"NOT a no-op: {full_changed} tasks changed")
    return [
        Row("2a", "no-op site.yml vs ansible -m ping round (5-node lab)", median(noop), median(pings), 4.0,
            note=note, detail={"site": noop, "ping": pings, "changed": changed}),
        Row("2b", "module invocations per host, no-op site.yml (max over hosts)",
            max(modules[h] for h in hosts), None, None, None, unit="count", status="info",
            note="task results not skipped, excluding controller-only actions (set_fact, debug, ...)",
            detail={"modules": {h: modules[h] for h in hosts}, "results": dict(results),
                    "slowest_tasks": slowest_tasks(report)}),
        Row("2e", "no-op site.yml with every layer run (-e swarmfabric_full=true) vs ping round",
            median(full), median(pings), None, note=full_note, status="info",
            detail={"site_full": full, "ping": pings, "changed": full_changed,
                    "modules": {h: full_modules[h] for h in hosts}, "slowest_tasks": slowest_tasks(whole_report)}),
    ]


def lab_containers():
    inventory = yaml.safe_load((INVENTORY / "hosts.yml").read_text())
    return [h["ansible_host"] for h in inventory["all"]["children"]["lab"]["hosts"].values()]


def leave_swarm():
    """Every lab node out of any swarm: the start of a first converge."""
    for container in lab_containers():
        run(["docker", "exec", container, "docker", "swarm", "leave", "--force"], check=False)


def python3_docker():
    """community.docker's modules need the Docker SDK on the nodes; the lab's node image has none."""
    for container in lab_containers():
        probe = run(["docker", "exec", container, "python3", "-c", "import docker"], check=False)
        if probe.rc != 0:
            run(["docker", "exec", "-e", "DEBIAN_FRONTEND=noninteractive", container, "sh", "-c",
                 "apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-docker >/dev/null"])


def swarm_rows(repeat):
    """2c/2d: playbooks/swarm.yml against bench/swarm_community.yml, the same membership job done with
    community.docker's docker_swarm, docker_swarm_info and docker_node: from no swarm, then again (no-op).
    Each side starts from every node out of the swarm. site.yml converges the lab again at the end."""
    ours = [VENV_BIN / "ansible-playbook", "-i", INVENTORY, ROOT / "playbooks" / "swarm.yml"]
    hosts = lab_hosts()
    peer = [VENV_BIN / "ansible-playbook", "-i", INVENTORY, ROOT / "bench" / "swarm_community.yml",
            "-e", f"bench_first={hosts[0]}", "-e", f"bench_others={','.join(hosts[1:])}"]
    try:
        python3_docker()
    except BenchError as exc:
        return all_skipped(f"skipped: python3-docker could not be installed on the nodes: {exc}")[3:]
    first = {"ours": [], "peer": []}
    again = {"ours": [], "peer": []}
    try:
        for _ in range(repeat):
            for side, argv in (("ours", ours), ("peer", peer)):
                leave_swarm()
                for times in (first, again):
                    proc, report = ansible_json(argv)
                    if proc.rc != 0:
                        return all_skipped(f"skipped: {side} failed (rc {proc.rc}): {first_failure(report)}")[3:]
                    times[side].append(proc.seconds)
    finally:
        leave_swarm()
        run([VENV_BIN / "ansible-playbook", "-i", INVENTORY, ROOT / "site.yml"], env=_env(), cwd=ROOT, check=False)
    return [
        Row("2c", "swarm layer (playbooks/swarm.yml), first converge, vs community.docker playbook (5-node lab)",
            median(first["ours"]), median(first["peer"]), 1.0, note="peer: bench/swarm_community.yml",
            detail=first),
        Row("2d", "swarm layer (playbooks/swarm.yml), no-op, vs community.docker playbook (5-node lab)",
            median(again["ours"]), median(again["peer"]), 1.0, note="peer: bench/swarm_community.yml",
            detail=again),
    ]
