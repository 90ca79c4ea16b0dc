"""playbooks/teardown.yml on the real kernel (issue 15): the mesh and the
fabric of every host removed - ESP SAs and policies, IPVS services, our
iptables chains and nft tables, the VXLAN devices, the boot guard - and
nothing of ours left, as the teardown's own listing and the kernel's say.
The lab runs no Docker Engine: the swarm parts are skipped. Runs last
(conftest.py orders it): it leaves the lab without a fabric."""

import re
import shlex

from sf_capture import run_ok
from test_key_lifecycle import PROJECT, playbook

LEFTOVERS = (PROJECT / "playbooks" / "files" / "swarmfabric-leftovers.sh").read_text()


def leftovers(host, description, underlay):
    ports = " ".join(sorted({str(o.get("port", 4789)) for o in description["overlays"].values()}))
    out = host.run(f"sh -c {shlex.quote(LEFTOVERS)} sh {shlex.quote(ports)} {shlex.quote(' '.join(underlay.values()))}")
    assert out.rc == 0, out.stderr
    return out.stdout.splitlines()


def test_the_teardown_removes_fabric_and_mesh_and_leaves_nothing_of_ours(lab, description, underlay):
    before = {name: leftovers(host, description, underlay) for name, host in lab.items()}
    for name, left in before.items():
        # The listing sees what the converge made (so an empty list below means something).
        assert any(line.startswith("xfrm state") for line in left), (name, left)
        assert any(line.startswith("link sf-") for line in left), (name, left)
        assert any(line.startswith(("ipvs service", "iptables chain", "nft table")) for line in left), (name, left)

    confirm = f"teardown_confirm={description['name']}"
    rc, output = playbook(PROJECT / "playbooks" / "teardown.yml", "-e", confirm)
    assert rc == 0, output[-3000:]
    for name, host in lab.items():
        assert leftovers(host, description, underlay) == [], name
        assert run_ok(host, "ip xfrm state") == "" and run_ok(host, "ip xfrm policy") == "", name
        assert "FWM" not in run_ok(host, "ipvsadm -Ln"), name
        assert "swarmfabric" not in run_ok(host, "nft list tables"), name
        assert "SF-" not in run_ok(host, "iptables-save"), name

    assert "Nothing of ours is left on node1" in output, output[-3000:]
    rc, again = playbook(PROJECT / "playbooks" / "teardown.yml", "-e", confirm)
    # (molecule's environment forces colour: read the recap without it)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", again)
    recap = {line.split()[0]: line for line in plain.splitlines() if " : ok=" in line}
    assert rc == 0 and set(lab) <= set(recap), again[-2000:]
    assert all("changed=0" in line for line in recap.values()), again[-2000:]
