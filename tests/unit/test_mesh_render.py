"""Render both mesh backends for a small plan and compare with tests/golden/.

The golden files were reviewed by hand; regenerate them only on purpose with
SWARMFABRIC_REGEN_GOLDEN=1 and read the diff before keeping it.
"""

import os
import pathlib
import sys

import jinja2
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))

from swarmfabric import constants, plan, ruleset
from swarmfabric.nft import parse_table, plan_delta
from swarmfabric.plan import build_plan
from swarmfabric.ruleset import iptables_restore_text, ipvs_delta, mesh_view, parse_iptables_save, parse_ipvs

GOLDEN = ROOT / "tests" / "golden"
TEMPLATES = ROOT / "roles" / "mesh" / "templates"

SWARM = {
    "name": "t",
    "managers": ["node1"],
    "workers": ["node2"],
    "nodes": {"node1": {"slot": 17}, "node2": {"slot": 18}},
    "overlays": {"appnet": {"vni": 300, "subnet": "10.20.0.0/16", "encrypted": False}},
    "services": {
        "web": {"image": "swarmfabric/task:1", "deploy": {"replicas": 2}, "networks": ["appnet"],
                "ports": [{"published": 8080, "target": 80},
                          {"published": 7070, "target": 80},
                          {"published": 9090, "target": 90, "mode": "host"}],
                "x-swarmfabric": {"vip": "10.20.255.10", "traffic_policy": {"7070": "local"}}},
        # One task, on node2: node1 refuses its local-policy port.
        "solo": {"image": "swarmfabric/task:1", "deploy": {"replicas": 1}, "networks": ["appnet"],
                 "ports": [{"published": 7071, "target": 71},
                           {"published": 7072, "target": 72, "protocol": "udp"}],
                 "x-swarmfabric": {"vip": "10.20.255.13", "traffic_policy": {"7071": "local", "7072/udp": "local"}}},
        "legacy": {"networks": ["appnet"], "ports": [{"published": 5353, "target": 53, "protocol": "udp"}],
                   "x-swarmfabric": {"backends": ["10.20.9.1:8000", "10.20.9.2:8001"], "vip": "10.20.255.11"}},
        "db": {"image": "swarmfabric/task:1", "networks": ["appnet"], "deploy": {"endpoint_mode": "dnsrr"},
               "ports": [{"published": 5432, "target": 5432}]},
        "idle": {"image": "swarmfabric/task:1", "deploy": {"replicas": 0}, "networks": ["appnet"],
                 "ports": [{"published": 8081, "target": 81}], "x-swarmfabric": {"vip": "10.20.255.12"}},
    },
    "mesh": {"backend": "auto", "scheduler": "rr"},
}
HOSTVARS = {"node1": {"swarm_advertise_addr": "172.30.0.11"}, "node2": {"swarm_advertise_addr": "172.30.0.12"}}
# web runs one task on node1 (10.20.17.0/24) and one on node2; db and solo one on node2.
BACKENDS = {"web": ["10.20.18.2", "10.20.17.2"], "db": ["10.20.18.3"], "idle": [], "solo": ["10.20.18.5"]}


def render(name, view):
    defaults = yaml.safe_load((ROOT / "roles" / "mesh" / "defaults" / "main.yml").read_text())
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    return env.get_template(name).render(mesh_view=view, **defaults)


def view_of(host, backends=BACKENDS):
    return mesh_view(build_plan(SWARM, HOSTVARS), host, backends)


CASES = [(host, template) for host in ("node1", "node2")
         for template in ("mesh.nft.j2", "mesh_arp.nft.j2", "mesh.ipvs.j2", "mesh.iptables.j2")]


@pytest.mark.parametrize(("host", "template"), CASES)
def test_render_matches_golden(host, template):
    text = render(template, view_of(host))
    golden = GOLDEN / f"{host}.{template.removesuffix('.j2')}"
    if os.environ.get("SWARMFABRIC_REGEN_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_host_mode_port_only_where_a_task_runs():
    node1 = {ep["chain"]: ep for ep in view_of("node1")["endpoints"]}
    assert node1["svc-web-tcp-90-local"]["backends"] == [("10.20.17.2", 90)]
    assert node1["svc-web-tcp-90"]["published"] == []
    gone = {ep["chain"] for ep in view_of("node1", {**BACKENDS, "web": ["10.20.18.2"]})["endpoints"]}
    assert "svc-web-tcp-90-local" not in gone


def test_dnsrr_has_no_vip_and_static_backends_keep_their_ports():
    eps = {ep["chain"]: ep for ep in view_of("node1")["endpoints"]}
    assert eps["svc-db-tcp-5432"]["vip"] is None
    assert eps["svc-legacy-udp-53"]["backends"] == [("10.20.9.1", 8000), ("10.20.9.2", 8001)]
    assert view_of("node1")["overlays"][0]["vips"] == ["10.20.255.10", "10.20.255.11", "10.20.255.12", "10.20.255.13"]


def test_local_policy_serves_local_tasks_unmasqueraded_and_refuses_without_one():
    node1 = {ep["chain"]: ep for ep in view_of("node1")["endpoints"]}
    node2 = {ep["chain"]: ep for ep in view_of("node2")["endpoints"]}
    # web: 8080 cluster (every task, masqueraded), 7070 local (this node's task only, not masqueraded).
    assert node1["svc-web-tcp-80"]["published"] == [8080] and node1["svc-web-tcp-80"]["masquerade"]
    assert node1["svc-web-tcp-80-local"]["published"] == [7070]
    assert node1["svc-web-tcp-80-local"]["backends"] == [("10.20.17.2", 80)]
    assert node2["svc-web-tcp-80-local"]["backends"] == [("10.20.18.2", 80)]
    assert not node1["svc-web-tcp-80-local"]["masquerade"] and not node1["svc-web-tcp-90-local"]["masquerade"]
    # solo's only task is on node2: node1 refuses 7071/tcp and 7072/udp, node2 serves them.
    for chain in ("svc-solo-tcp-71-local", "svc-solo-udp-72-local"):
        assert node1[chain]["refuse"] and node1[chain]["backends"] == []
        assert node1[chain]["fwmark"] & 0xFFC00000 == 0x5FC00000  # local + refuse bits, our top byte
        assert not node2[chain]["refuse"] and node2[chain]["backends"][0][0] == "10.20.18.5"
    # A service with no task at all refuses everywhere, on both backends.
    nft = render("mesh.nft.j2", view_of("node1"))
    chain = nft[nft.index("chain svc-idle-tcp-81 {"):]
    assert chain.splitlines()[1].strip() == f"meta mark set 0x{node1['svc-idle-tcp-81']['fwmark']:08x}"
    assert "drop" not in nft
    ipvs = parse_ipvs(render("mesh.ipvs.j2", view_of("node1")))
    refusing = {ep["fwmark"] for ep in node1.values() if ep["refuse"]}
    assert refusing and not refusing & set(ipvs)
    assert all(reals for _sched, reals in ipvs.values())


def test_health_state_lists_every_published_port():
    node1, node2 = view_of("node1")["health"], view_of("node2")["health"]
    assert node1["port"] == 10256 and node1["node"] == "node1"
    assert node1["ports"]["tcp/7071"] == {"service": "solo", "mode": "ingress", "traffic_policy": "local",
                                          "endpoints": 0}
    assert node2["ports"]["tcp/7071"]["endpoints"] == 1
    assert node1["ports"]["tcp/7070"]["endpoints"] == 1 and node1["ports"]["tcp/8080"]["endpoints"] == 2
    assert node1["ports"]["tcp/8081"]["endpoints"] == 0  # idle: scaled to 0
    # A host-mode port on a node without a task is listed, with no endpoint.
    gone = view_of("node1", {**BACKENDS, "web": ["10.20.18.2"]})["health"]["ports"]
    assert gone["tcp/9090"] == {"service": "web", "mode": "host", "traffic_policy": "local", "endpoints": 0}
    assert set(node1["ports"]) == {"tcp/5432", "tcp/7070", "tcp/7071", "udp/7072", "tcp/8080", "tcp/8081",
                                   "udp/5353", "tcp/9090"}


def test_conntrack_timeout_is_rendered_only_when_it_differs_from_the_kernel():
    assert "policy = { established : 86400 }" in render("mesh.nft.j2", view_of("node1"))
    # The kernel's own default: no object (nft could not read its listing back), the host's setting applies.
    plan = build_plan({**SWARM, "mesh": {"conntrack_timeouts": {"tcp_established": 432000}}}, HOSTVARS)
    text = render("mesh.nft.j2", mesh_view(plan, "node1", BACKENDS))
    assert "ct timeout" not in text and ("ct timeout", "mesh-tcp") not in parse_table(text).objects
    plan = build_plan({**SWARM, "mesh": {"conntrack_timeouts": {"tcp_established": 30}}}, HOSTVARS)
    text = render("mesh.nft.j2", mesh_view(plan, "node1", BACKENDS))
    assert "policy = { established : 30 }" in text
    assert parse_table(text).objects[("ct timeout", "mesh-tcp")].head[-1] == "policy = { established : 30 }"


def test_rendered_nft_parses_and_one_backend_is_a_small_delta():
    before = parse_table(render("mesh.nft.j2", view_of("node1")))
    after = parse_table(render("mesh.nft.j2", view_of("node1", {**BACKENDS, "web": ["10.20.17.2", "10.20.18.9"]})))
    cmds, actions = plan_delta(before, after)
    # Only web's two shared chains change; its node1-local chains and every map stay as they are.
    assert [c for c in cmds if c.startswith("flush")] == [
        "flush chain ip swarmfabric_mesh svc-web-tcp-80", "flush chain ip swarmfabric_mesh svc-web-tcp-90"]
    assert ("add rule ip swarmfabric_mesh svc-web-tcp-80 meta l4proto tcp dnat ip to numgen inc mod 2 "
            "map { 0 : 10.20.17.2 . 80, 1 : 10.20.18.9 . 80 }") in cmds
    assert len(cmds) == 8
    assert actions == ["replaced the 3 rules of chain svc-web-tcp-80", "replaced the 3 rules of chain svc-web-tcp-90"]
    assert plan_delta(before, before) == ([], [])


def test_rendered_iptables_and_ipvs_parse_back():
    ipt = parse_iptables_save(render("mesh.iptables.j2", view_of("node1")))
    assert ipt["nat"] == ["-A SF-MESH-POST -s 10.20.0.0/16 -m mark --mark 0x5f800000/0xff800000 -j MASQUERADE",
                          "-A SF-MESH-POST -m mark --mark 0x5f800000/0xff800000 -j RETURN",
                          "-A SF-MESH-POST -m mark --mark 0x5f000000/0xff000000 -j MASQUERADE",
                          "-A POSTROUTING -j SF-MESH-POST"]
    ipvs = parse_ipvs(render("mesh.ipvs.j2", view_of("node1")))
    assert all(scheduler == "rr" for scheduler, _ in ipvs.values())
    assert ipvs_delta(ipvs, ipvs) == ([], [])


FWD = ["-A SF-MESH-FWD -m connmark --mark 0x4000/0x4000 -j ACCEPT",
       "-A SF-MESH-IN -p tcp -m mark --mark 0x5f400000/0xff400000 -j REJECT --reject-with tcp-reset",
       "-A SF-MESH-IN -m mark --mark 0x5f400000/0xff400000 -j REJECT --reject-with icmp-port-unreachable",
       "-A FORWARD -j SF-MESH-FWD", "-A INPUT -j SF-MESH-IN"]


def test_iptables_restore_moves_only_our_chains():
    ipt = parse_iptables_save(render("mesh.iptables.j2", view_of("node1")))
    fwd = {"filter": ipt["filter"]}
    assert fwd["filter"] == FWD
    # From nothing: the chains declared and filled, the jumps inserted first in FORWARD and INPUT.
    assert iptables_restore_text(fwd, {}).splitlines() == [
        "*filter", ":SF-MESH-FWD - [0:0]", ":SF-MESH-IN - [0:0]", *FWD[:3],
        "-I FORWARD -j SF-MESH-FWD", "-I INPUT -j SF-MESH-IN", "COMMIT"]
    # From the IPVS backend to the nftables one: mangle and nat chains go, the jumps are kept.
    text = iptables_restore_text(fwd, ipt).splitlines()
    assert "-I FORWARD -j SF-MESH-FWD" not in text and "-I INPUT -j SF-MESH-IN" not in text
    assert text[text.index("*nat"):] == ["*nat", ":SF-MESH-POST - [0:0]", "-D POSTROUTING -j SF-MESH-POST",
                                         "-X SF-MESH-POST", "COMMIT"]
    assert {"-D PREROUTING -j SF-MESH", "-D OUTPUT -j SF-MESH", "-X SF-MESH"} <= set(text)
    # Nothing of ours anywhere, nothing wanted: nothing to restore.
    assert iptables_restore_text({}, {}) == ""


def test_iptables_chain_added_and_taken_back():
    # A host of the previous release (SF-MESH-FWD only) gets SF-MESH-IN; the
    # undo (back to the old state) removes it again, jump first.
    old = {"filter": [FWD[0], FWD[3]]}
    new = {"filter": FWD}
    assert iptables_restore_text(new, old).splitlines() == [
        "*filter", ":SF-MESH-FWD - [0:0]", ":SF-MESH-IN - [0:0]", *FWD[:3], "-I INPUT -j SF-MESH-IN", "COMMIT"]
    assert iptables_restore_text(old, new).splitlines() == [
        "*filter", ":SF-MESH-FWD - [0:0]", ":SF-MESH-IN - [0:0]", "-D INPUT -j SF-MESH-IN", FWD[0],
        "-X SF-MESH-IN", "COMMIT"]
    # iptables-save lists chains in its own order: parsing does not depend on it.
    save = "*filter\n:SF-MESH-IN - [0:0]\n:SF-MESH-FWD - [0:0]\n" + "\n".join(
        [FWD[4], FWD[3], FWD[1], FWD[2], FWD[0]]) + "\nCOMMIT\n"
    assert parse_iptables_save(save) == new


def test_marks_come_from_the_one_constants_module():
    assert plan.FWMARK_BASE is constants.FWMARK_BASE and ruleset.FWMARK_BASE is constants.FWMARK_BASE
    for path in [ROOT / "plugins" / "module_utils" / "swarmfabric" / n for n in ("plan.py", "ruleset.py")] + [
            ROOT / "library" / "mesh_ruleset.py", *TEMPLATES.glob("*.j2")]:
        text = path.read_text().lower()
        for literal in ("0x00800000", "0x5f000000 =", "0x00004000", "900, 120, 300", '"tcp": 900'):
            assert literal not in text, (path.name, literal)


def test_removed_real_server_is_drained_before_delete():
    live = {0x5F000001: ("rr", {"10.0.0.1:80": ("-m", 1), "10.0.0.2:80": ("-m", 1)})}
    want = {0x5F000001: ("rr", {"10.0.0.1:80": ("-m", 1)})}
    apply, delete = ipvs_delta(live, want)
    assert apply == [f"-e -f {0x5F000001} -r 10.0.0.2:80 -m -w 0"]
    assert delete == [f"-d -f {0x5F000001} -r 10.0.0.2:80"]
    assert parse_ipvs("-A -f 4660 -s rr\n-a -f 4660 -r 10.0.0.9:80 -m -w 1\n") == {}  # not our mark: never read
