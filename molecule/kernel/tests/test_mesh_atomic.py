"""The IPVS mesh apply is all or nothing, on the kernel lab's real IPVS.

On node1, roles/mesh applies a changed description (one real server of
`echo` replaced, a new service `extra` with its own VIP and fwmark) through
a PATH shim that counts every call of the mesh's tools. A clean run counts
them; then the same apply (mesh_ruleset with the arguments the role gave it
in the clean run) is repeated with one call failing, all in one playbook run
(one Ansible start instead of N under TCG). The failing calls are one of each
kind of failure the apply can meet (see failure_points): every write, the
first call (nothing written yet) and the first read after the last write
(everything written). tests/integration/test_mesh_atomic.py fails every call
in turn on the nftables backend, where a point costs a fraction of TCG's.
After each failure node1's state must be byte-identical to before:
`nft -s list ruleset`, `iptables-save` without counters, `ipvsadm -Sn` and
the shim's IPv4 addresses. Runs last (file order); node1 is converged back
to the lab's description at the end.
"""

import copy
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

PROJECT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(PROJECT / "plugins" / "module_utils"))
from swarmfabric.plan import build_plan

HOST = "node1"
SHIM_DIR = "/tmp/sf-mesh-shim"
# The one call-counting shim, shared with the netns tests (tests/integration).
SHIM = (PROJECT / "tests" / "integration" / "sf_mesh_shim.sh").read_text()
TOOLS = ("nft", "ip", "iptables-save", "iptables-restore", "ipvsadm", "ipvsadm-restore", "modprobe")
PLAYBOOK = f"""- hosts: {HOST}
  gather_facts: false
  environment:
    PATH: "{SHIM_DIR}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    SF_SHIM_DIR: {SHIM_DIR}
    SF_SHIM_FAIL: "{{{{ sf_fail | default('') }}}}"
  roles: [mesh]
"""


def changed_description(description):
    """B: echo's node2 backend replaced by node3's, and a new service with a VIP."""
    desc = copy.deepcopy(description)
    desc["services"]["echo"]["x-swarmfabric"]["backends"] = ["10.40.1.1:8000", "10.40.3.1:8000"]
    desc["services"]["extra"] = {"networks": ["sealed"], "x-swarmfabric": {"backends": ["10.40.2.1:9000"]},
                                 "ports": ["8090:9000"]}
    return desc


@pytest.fixture(scope="module")
def plans(description, underlay):
    hostvars = {name: {"swarm_advertise_addr": addr} for name, addr in underlay.items()}
    return build_plan(description, hostvars), build_plan(changed_description(description), hostvars)


@pytest.fixture(scope="module")
def node(lab):
    host = lab[HOST]
    if not host.run("ipvsadm -Sn").stdout.strip():
        pytest.fail(f"mesh not converged: no IPVS service on {HOST} (the converge puts one there)")
    host.run(f"rm -rf {SHIM_DIR} && mkdir -p {SHIM_DIR}")
    for tool in TOOLS:
        real = host.run(f"command -v {tool}").stdout.strip()
        assert real, f"{tool} missing on {HOST}"
        text = SHIM.replace("{tool}", tool).replace("{real}", real)
        host.run(f"cat >{SHIM_DIR}/{tool} <<'EOF'\n{text}EOF\nchmod 755 {SHIM_DIR}/{tool}")
    return host


def run_playbook(text, extra_vars):
    """ansible-playbook of ``text`` with ``extra_vars``; the task results on node1, in order."""
    with tempfile.TemporaryDirectory(prefix="sf-kl-atomic-") as tmp:
        (pathlib.Path(tmp) / "play.yml").write_text(text)
        (pathlib.Path(tmp) / "vars.json").write_text(json.dumps(extra_vars))
        env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"}
        argv = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "-e", f"@{tmp}/vars.json",
                f"{tmp}/play.yml"]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    try:
        out = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"ansible gave no JSON: {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}") from exc
    return [(t["task"]["name"], t["hosts"][HOST]) for t in out["plays"][0]["tasks"] if HOST in t["hosts"]]


def play(plan):
    """roles/mesh on node1 through the shim; the mesh_ruleset result."""
    tasks = run_playbook(PLAYBOOK, {"swarmfabric_plan": plan, "swarmfabric_mesh_backends": {}})
    return next(r for name, r in tasks if name.endswith("Apply the mesh ruleset"))


def unsafe(value):
    """``value`` as YAML flow text whose strings Ansible never templates."""
    if isinstance(value, str):
        return "!unsafe " + json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {unsafe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(unsafe(v) for v in value) + "]"
    return json.dumps(value)


def fail_each(args, points):
    """mesh_ruleset with ``args`` once per failure point, in one run: [(result, state, calls)]."""
    point = (f"- name: Apply the mesh ruleset with one call failing\n"
             f"  mesh_ruleset: {unsafe(args)}\n"
             f"  environment: {{PATH: \"{SHIM_DIR}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\","
             f" SF_SHIM_DIR: {SHIM_DIR}, SF_SHIM_FAIL: \"{{{{ sf_point }}}}\"}}\n"
             f"  ignore_errors: true\n"
             f"- name: The state after it, and its calls\n"
             f"  ansible.builtin.shell: {unsafe(STATE + CALLS)}\n"
             f"  changed_when: false\n")
    with tempfile.TemporaryDirectory(prefix="sf-kl-points-") as tmp:
        (pathlib.Path(tmp) / "point.yml").write_text(point)
        text = (f"- hosts: {HOST}\n  gather_facts: false\n  tasks:\n"
                f"    - ansible.builtin.include_tasks: {tmp}/point.yml\n"
                f"      loop: {json.dumps(list(points))}\n      loop_control: {{loop_var: sf_point}}\n")
        tasks = run_playbook(text, {})
    applies = [r for name, r in tasks if name == "Apply the mesh ruleset with one call failing"]
    states = [r["stdout"] + "\n" for name, r in tasks if name == "The state after it, and its calls"]
    assert len(applies) == len(states) == len(points), tasks[-3:]
    out = []
    for result, text in zip(applies, states, strict=True):
        state, log = text.split("#calls\n")
        out.append((result, parse_state(state), parse_calls(log)))
    return out


# node1's state that an apply may change, and the shim's call log (read and reset).
STATE = ("nft -s list ruleset; echo '#--'; iptables-save | grep -v '^#' | sed 's/ \\[[0-9]*:[0-9]*\\]$//';"
         " echo '#--'; ipvsadm -Sn; echo '#--'; ip -4 addr show dev sf-sealed-h; ")
CALLS = f"echo '#calls'; cat {SHIM_DIR}/log 2>/dev/null; rm -f {SHIM_DIR}/log {SHIM_DIR}/count"


def parse_state(text):
    # The shell module strips the output's last newline, testinfra does not: compare without it.
    nft, ipt, ipvs, addrs = text.split("#--\n")
    return {"nft": nft, "iptables": ipt, "ipvs": ipvs, "addresses": addrs.rstrip("\n")}


def parse_calls(text):
    return [[*line.split(" ", 2)[1:], ""] for line in text.splitlines()]


def calls(host):
    return parse_calls(host.run(CALLS).stdout.split("#calls\n", 1)[1])


def snapshot(host):
    return parse_state(host.run(STATE).stdout)


def is_write(tool, args):
    return not (tool == "iptables-save" or (tool == "ip" and args.startswith("-j addr show"))
                or (tool == "nft" and args.startswith(("list ", "-c "))) or (tool == "iptables-restore"
                and "--test" in args.split()) or (tool == "ipvsadm" and args.startswith(("-Sn", "-L"))))


def failure_points(calls, writes):
    """The calls to fail, 1-based: one of each set of writes a failure must roll back.

    A read failing between writes k and k+1 rolls back what write k+1 failing
    does (writes 1..k), and write k+1 failing is the harder case (it may have
    half-applied), so the reads in between add nothing. What is left: call 1
    (nothing to roll back), every write, and the first read after the last one.
    """
    after_last = [n for n in range(writes[-1] + 1, len(calls) + 1)][:1] if writes else []
    return sorted({1, *writes, *after_last})


def test_an_ipvs_apply_failing_at_any_call_leaves_the_previous_state_byte_identical(node, plans):
    plan_a, plan_b = plans
    # Earlier tests may have wiped node1 (a simulated reboot): converge it
    # to the lab's description first (its no-op is the idempotence step's).
    result = play(plan_a)
    assert not result.get("failed"), result
    calls(node)
    before = snapshot(node)
    assert "-A -f" in before["ipvs"] and "SF-MESH" in before["iptables"]

    calls(node)  # count B's calls from 1
    result = play(plan_b)
    assert not result.get("failed") and result["changed"] and result["backend"] == "ipvs", result.get("msg")
    clean = calls(node)
    # The clean run's arguments, as the role rendered them (nothing in them is secret).
    args = {k: v for k, v in result["invocation"]["module_args"].items() if v is not None}
    writes = [n for n, (tool, args, *_rest) in enumerate(clean, 1) if is_write(tool, args)]
    tools = [clean[n - 1][0] for n in writes]
    # VIP, marks, IPVS services in; the ARP guard's change; the drained real server out last.
    assert tools == ["ip", "iptables-restore", "ipvsadm", "nft", "ipvsadm"], clean
    after = snapshot(node)
    assert after["ipvs"] != before["ipvs"] and "10.40.3.1:8000" in after["ipvs"]
    assert "10.40.2.1:8000" not in after["ipvs"]

    # Back to A. A real server deleted and re-added is listed in another
    # place, so the reference is taken again, then must hold after every failure.
    play(plan_a)
    calls(node)
    before = snapshot(node)
    try:
        points = failure_points(clean, writes)
        assert len(points) >= len(writes) + 1, (points, writes)
        for n, (result, state, log) in zip(points, fail_each(args, points), strict=True):
            msg = result.get("msg", "")
            assert result.get("failed") and msg.startswith("Cannot apply the mesh: "), (n, result)
            assert f"injected failure in call {n}" in msg and "could NOT" not in msg, (n, msg)
            assert ("; rolled back " in msg) == any(w < n for w in writes), (n, msg)
            assert log and log[n - 1][0] == clean[n - 1][0], (n, log)  # it failed where the clean run made call n
            assert state == before, f"call {n} ({' '.join(clean[n - 1][:2])}) failed; {msg}; {log}"
    finally:
        play(plan_a)
        node.run(f"rm -rf {SHIM_DIR}")
