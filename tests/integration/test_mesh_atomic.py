"""The mesh apply is all or nothing, on this real kernel (nftables backend).

A PATH shim counts every call of nft, ip, iptables-save/-restore (and the
IPVS tools) that mesh_ruleset makes. A clean run from the start state counts
them; then the same apply is repeated with call 1, 2, ... N failing in turn,
and after each failure the node's state must be byte-identical to the start:
`nft -s list ruleset`, `iptables-save` without counters, `ip addr` of the
shim. Run under `flock /tmp/sf-netns.lock`.
"""

import copy
import sys

import pytest
from sf_mesh_helpers import (
    HEALTH_STATE_TASK,
    ROOT,
    SWARM,
    Shim,
    changed,
    del_ns,
    health_files_changed,
    mesh_result,
    new_ns,
    play,
    sh,
    snapshot,
)

sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))
from swarmfabric.plan import build_plan

FACTS = {"node1": {"swarm_advertise_addr": "192.168.78.1"}}
SWARM_A = SWARM
BACKENDS_A = {"web": ["10.20.50.5", "10.20.60.5"]}
SWARM_B = copy.deepcopy(SWARM_A)
del SWARM_B["services"]["static"]
SWARM_B["services"]["api"] = {"networks": ["appnet"], "ports": [{"published": 8082, "target": 81}],
                              "x-swarmfabric": {"backends": ["10.20.70.5:81"], "vip": "10.20.255.12"}}
BACKENDS_B = {"web": ["10.20.50.5"]}
# What an earlier IPVS run of ours leaves in iptables (its mangle and nat chains).
IPVS_LEFTOVERS = """*mangle
:SF-MESH - [0:0]
-A PREROUTING -j SF-MESH
-A OUTPUT -j SF-MESH
-A SF-MESH -d 10.20.255.10/32 -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x5f001234/0xffffffff
-A SF-MESH -m mark --mark 0x5f000000/0xff000000 -j CONNMARK --set-xmark 0x4000/0x4000
COMMIT
*nat
:SF-MESH-POST - [0:0]
-A POSTROUTING -j SF-MESH-POST
-A SF-MESH-POST -m mark --mark 0x5f000000/0xff000000 -j MASQUERADE
COMMIT
"""


def plan_of(swarm):
    return build_plan(swarm, FACTS)


@pytest.fixture()
def node():
    name = new_ns("atom")
    try:
        sh("iptables", "-P", "FORWARD", "DROP", ns=name)
        # A rule of someone else's in FORWARD: it must stay where it is.
        sh("iptables", "-A", "FORWARD", "-i", "lo", "-j", "ACCEPT", ns=name)
        sh("ip", "link", "add", "sf-appnet", "type", "vxlan", "id", "300", "dstport", "4789", ns=name)
        sh("ip", "link", "add", "sf-appnet-h", "link", "sf-appnet", "type", "macvlan", "mode", "bridge", ns=name)
        sh("ip", "link", "set", "sf-appnet", "up", ns=name)
        sh("ip", "link", "set", "sf-appnet-h", "up", ns=name)
        sh("ip", "addr", "add", "10.20.0.1/16", "dev", "sf-appnet-h", ns=name)
        yield name
    finally:
        del_ns(name)


def start_state(ns, leftovers):
    stats, _ = play(ns, plan_of(SWARM_A), BACKENDS_A)
    assert stats["failures"] == 0
    if leftovers:
        # As if the host ran the IPVS backend before: its chains, no nft mesh table.
        sh("iptables-restore", "--noflush", ns=ns, data=IPVS_LEFTOVERS)
        sh("nft", "delete", "table", "ip", "swarmfabric_mesh", ns=ns)
    return snapshot(ns)


def is_write(tool, args):
    """Reads and validations are the calls check mode may make; everything else writes."""
    return not (tool == "iptables-save" or (tool == "ip" and args.startswith("-j addr show"))
                or (tool == "nft" and args.startswith(("list ", "-c "))) or (tool == "iptables-restore"
                and "--test" in args.split()) or (tool == "ipvsadm" and args.startswith(("-Sn", "-L"))))


@pytest.mark.parametrize("leftovers", [False, True], ids=["nft-update", "ipvs-leftovers-to-nft"])
def test_a_failure_at_any_step_leaves_the_previous_state_byte_identical(node, leftovers):
    before = start_state(node, leftovers)
    assert "10.20.255.11/32" in before["addresses"]
    assert ("SF-MESH-POST" in before["iptables"]) == leftovers
    shim = Shim()

    # Check mode: the same plan, every call a read or a validation, nothing changed.
    stats, tasks = play(node, plan_of(SWARM_B), BACKENDS_B, check=True, env=shim.env())
    # The mesh and what the health responder reads (B has other services) would change.
    assert stats["failures"] == 0 and changed(tasks) == ["Apply the mesh ruleset", HEALTH_STATE_TASK], tasks
    assert [p.rsplit("/", 1)[-1] for p in health_files_changed(tasks)] == ["mesh-health.json"], tasks
    predicted = mesh_result(tasks)
    assert [c for c in shim.calls() if is_write(*c)] == []
    assert snapshot(node) == before

    # A clean run, to count the calls and to learn which are writes.
    stats, tasks = play(node, plan_of(SWARM_B), BACKENDS_B, env=shim.env())
    assert stats["failures"] == 0, tasks
    assert mesh_result(tasks)["actions"] == predicted["actions"]
    assert mesh_result(tasks)["backend"] == predicted["backend"] == "nftables"
    calls = shim.calls()
    writes = [n for n, call in enumerate(calls, 1) if is_write(*call)]
    # VIP add, nft apply, VIP delete; plus the iptables removal after the leftovers.
    assert [calls[n - 1][0] for n in writes] == ["ip", "nft"] + ["iptables-restore"] * leftovers + ["ip"], calls
    # Add before remove: the new nft mesh is in before the old chains go.
    if leftovers:
        nft_at = next(n for n in writes if calls[n - 1][0] == "nft")
        rm_at = next(n for n in writes if calls[n - 1][0] == "iptables-restore")
        assert nft_at < rm_at
    after = snapshot(node)
    assert after != before and "10.20.255.12/32" in after["addresses"]
    assert "10.20.255.11/32" not in after["addresses"] and "SF-MESH-POST" not in after["iptables"]

    # Back to the start with the role. A delta there and back may list set
    # elements in another order, so the reference is taken again.
    stats, _ = play(node, plan_of(SWARM_A), BACKENDS_A)
    if leftovers:
        sh("iptables-restore", "--noflush", ns=node, data=IPVS_LEFTOVERS)
        sh("nft", "delete", "table", "ip", "swarmfabric_mesh", ns=node)
    again = snapshot(node)
    assert again["iptables"] == before["iptables"] and again["addresses"] == before["addresses"]
    before = again

    for n in range(1, len(calls) + 1):
        stats, tasks = play(node, plan_of(SWARM_B), BACKENDS_B, env=shim.env(fail=[n]))
        result = mesh_result(tasks)
        assert stats["failures"] == 1 and result.get("failed"), (n, calls[n - 1], result)
        msg = result["msg"]
        assert msg.startswith("Cannot apply the mesh: ") and f"injected failure in call {n}" in msg, (n, msg)
        assert "could NOT" not in msg, msg
        earlier_writes = [w for w in writes if w < n]
        if earlier_writes:
            assert "; rolled back " in msg, (n, msg)
        else:
            assert msg.endswith("; nothing was changed"), (n, msg)
        assert snapshot(node) == before, f"call {n} ({' '.join(calls[n - 1])}) failed: state moved; {msg}"

    # The same apply now succeeds, and the next one has nothing to do.
    assert "Apply the mesh ruleset" in changed(play(node, plan_of(SWARM_B), BACKENDS_B)[1])
    assert play(node, plan_of(SWARM_B), BACKENDS_B)[0]["changed"] == 0


def test_a_rollback_that_fails_is_named_and_not_claimed(node):
    before = start_state(node, False)
    shim = Shim()
    play(node, plan_of(SWARM_B), BACKENDS_B, env=shim.env())
    calls = shim.calls()
    nft_at = next(n for n, (tool, *args) in enumerate(calls, 1) if tool == "nft" and args[0].startswith("-f"))
    play(node, plan_of(SWARM_A), BACKENDS_A)
    before = snapshot(node)
    # The nft apply fails, and so does the first call of the rollback (the
    # re-read of the VIP addresses it would put back).
    stats, tasks = play(node, plan_of(SWARM_B), BACKENDS_B, env=shim.env(fail=[nft_at, nft_at + 1]))
    msg = mesh_result(tasks)["msg"]
    assert stats["failures"] == 1
    assert msg.startswith(f"Cannot apply the mesh: nft refused to apply the mesh tables: injected failure in call "
                          f"{nft_at}"), msg
    assert "; could NOT restore VIP addresses (" in msg and "rolled back" not in msg, msg
    assert mesh_result(tasks)["not_restored"][0].startswith("VIP addresses")
    # What it said is true: the VIP it added is still there, nothing else moved.
    now = snapshot(node)
    assert "10.20.255.12/32" in now["addresses"] and now["nft"] == before["nft"]
    assert now["iptables"] == before["iptables"]
    # A converge repairs it.
    play(node, plan_of(SWARM_A), BACKENDS_A)
    assert "10.20.255.12/32" not in snapshot(node)["addresses"]
