"""The IPVS mesh apply is all or nothing, on the kernel lab's real IPVS.

On node1, roles/mesh applies a changed description (one real server of
`echo` replaced, a new service `extra` with its own VIP and fwmark) through
a PATH shim that counts every call of the mesh's tools. A clean run counts
them; then the same apply is repeated with call 1, 2, ... N failing in turn.
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
    desc["services"]["echo"]["backends"] = ["10.40.1.1:8000", "10.40.3.1:8000"]
    desc["services"]["extra"] = {"overlays": ["sealed"], "backends": ["10.40.2.1:9000"],
                                 "publish": [{"published": 8090, "target": 9000}]}
    return desc


@pytest.fixture(scope="module")
def plans(description, underlay):
    hostvars = {name: {"swarm_advertise_addr": addr} for name, addr in underlay.items()}
    return build_plan(description, hostvars), build_plan(changed_description(description), hostvars)


@pytest.fixture(scope="module")
def node(lab):
    host = lab[HOST]
    if not host.run("ipvsadm -Sn").stdout.strip():
        pytest.skip(f"mesh not converged: no IPVS service on {HOST} (playbooks/mesh.yml)")
    host.run(f"rm -rf {SHIM_DIR} && mkdir -p {SHIM_DIR}")
    for tool in TOOLS:
        real = host.run(f"command -v {tool}").stdout.strip()
        assert real, f"{tool} missing on {HOST}"
        text = SHIM.replace("{tool}", tool).replace("{real}", real)
        host.run(f"cat >{SHIM_DIR}/{tool} <<'EOF'\n{text}EOF\nchmod 755 {SHIM_DIR}/{tool}")
    return host


def play(plan, fail=()):
    """roles/mesh on node1 through the shim; the mesh_ruleset result."""
    with tempfile.TemporaryDirectory(prefix="sf-kl-atomic-") as tmp:
        (pathlib.Path(tmp) / "play.yml").write_text(PLAYBOOK)
        (pathlib.Path(tmp) / "vars.json").write_text(json.dumps(
            {"swarmfabric_plan": plan, "swarmfabric_mesh_backends": {}, "sf_fail": " ".join(map(str, fail))}))
        env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"}
        argv = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "-e", f"@{tmp}/vars.json",
                f"{tmp}/play.yml"]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    try:
        out = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"ansible gave no JSON: {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}") from exc
    tasks = {t["task"]["name"]: t["hosts"][HOST] for t in out["plays"][0]["tasks"]}
    return next(r for name, r in tasks.items() if name.endswith("Apply the mesh ruleset"))


def calls(host):
    log = host.run(f"cat {SHIM_DIR}/log 2>/dev/null; rm -f {SHIM_DIR}/log {SHIM_DIR}/count").stdout
    return [[*line.split(" ", 2)[1:], ""] for line in log.splitlines()]


def snapshot(host):
    out = host.run("nft -s list ruleset; echo '#--'; iptables-save | grep -v '^#' | sed 's/ \\[[0-9]*:[0-9]*\\]$//';"
                   " echo '#--'; ipvsadm -Sn; echo '#--'; ip -4 addr show dev sf-sealed-h").stdout
    nft, ipt, ipvs, addrs = out.split("#--\n")
    return {"nft": nft, "iptables": ipt, "ipvs": ipvs, "addresses": addrs}


def is_write(tool, args):
    return not (tool == "iptables-save" or (tool == "ip" and args.startswith("-j addr show"))
                or (tool == "nft" and args.startswith(("list ", "-c "))) or (tool == "iptables-restore"
                and "--test" in args.split()) or (tool == "ipvsadm" and args.startswith(("-Sn", "-L"))))


def test_an_ipvs_apply_failing_at_any_call_leaves_the_previous_state_byte_identical(node, plans):
    plan_a, plan_b = plans
    # Earlier tests may have wiped node1 (a simulated reboot): converge it
    # to the lab's description first, then that must be a no-op.
    play(plan_a)
    calls(node)
    result = play(plan_a)
    assert not result.get("failed") and not result["changed"], result
    before = snapshot(node)
    assert "-A -f" in before["ipvs"] and "SF-MESH" in before["iptables"]

    calls(node)  # count B's calls from 1
    result = play(plan_b)
    assert not result.get("failed") and result["changed"] and result["backend"] == "ipvs", result.get("msg")
    clean = calls(node)
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
        for n in range(1, len(clean) + 1):
            result = play(plan_b, fail=[n])
            log = calls(node)
            msg = result.get("msg", "")
            assert result.get("failed") and msg.startswith("Cannot apply the mesh: "), (n, result)
            assert f"injected failure in call {n}" in msg and "could NOT" not in msg, (n, msg)
            assert ("; rolled back " in msg) == any(w < n for w in writes), (n, msg)
            assert snapshot(node) == before, f"call {n} ({' '.join(clean[n - 1][:2])}) failed; {msg}; {log}"
    finally:
        play(plan_a)
        node.run(f"rm -rf {SHIM_DIR}")
