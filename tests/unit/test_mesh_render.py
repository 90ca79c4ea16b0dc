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
        "web": {"image": "swarmfabric/task:1", "replicas": 2, "overlays": ["appnet"], "vip": "10.20.255.10",
                "publish": [{"published": 8080, "target": 80},
                            {"published": 9090, "target": 90, "mode": "host"}]},
        "legacy": {"backends": ["10.20.9.1:8000", "10.20.9.2:8001"], "overlays": ["appnet"],
                   "vip": "10.20.255.11", "publish": [{"published": 5353, "target": 53, "protocol": "udp"}]},
        "db": {"image": "swarmfabric/task:1", "overlays": ["appnet"], "endpoint_mode": "dnsrr",
               "publish": [{"published": 5432, "target": 5432}]},
        "idle": {"image": "swarmfabric/task:1", "replicas": 0, "overlays": ["appnet"], "vip": "10.20.255.12",
                 "publish": [{"published": 8081, "target": 81}]},
    },
    "mesh": {"backend": "auto", "scheduler": "rr"},
}
HOSTVARS = {"node1": {"swarm_advertise_addr": "172.30.0.11"}, "node2": {"swarm_advertise_addr": "172.30.0.12"}}
# web runs one task on node1 (10.20.17.0/24) and one on node2; db one on node2.
BACKENDS = {"web": ["10.20.18.2", "10.20.17.2"], "db": ["10.20.18.3"], "idle": []}


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
    assert view_of("node1")["overlays"][0]["vips"] == ["10.20.255.10", "10.20.255.11", "10.20.255.12"]


def test_rendered_nft_parses_and_one_backend_is_a_small_delta():
    before = parse_table(render("mesh.nft.j2", view_of("node1")))
    after = parse_table(render("mesh.nft.j2", view_of("node1", {**BACKENDS, "web": ["10.20.17.2", "10.20.18.9"]})))
    cmds, actions = plan_delta(before, after)
    # Only web's two shared chains change; its node1-local chain and every map stay as they are.
    assert [c for c in cmds if c.startswith("flush")] == [
        "flush chain ip swarmfabric_mesh svc-web-tcp-80", "flush chain ip swarmfabric_mesh svc-web-tcp-90"]
    assert ("add rule ip swarmfabric_mesh svc-web-tcp-80 meta l4proto tcp dnat ip to numgen inc mod 2 "
            "map { 0 : 10.20.17.2 . 80, 1 : 10.20.18.9 . 80 }") in cmds
    assert len(cmds) == 6
    assert actions == ["replaced the 2 rules of chain svc-web-tcp-80", "replaced the 2 rules of chain svc-web-tcp-90"]
    assert plan_delta(before, before) == ([], [])


def test_rendered_iptables_and_ipvs_parse_back():
    ipt = parse_iptables_save(render("mesh.iptables.j2", view_of("node1")))
    assert ipt["nat"] == ["-A SF-MESH-POST -m mark --mark 0x5f000000/0xff000000 -j MASQUERADE",
                          "-A POSTROUTING -j SF-MESH-POST"]
    ipvs = parse_ipvs(render("mesh.ipvs.j2", view_of("node1")))
    assert all(scheduler == "rr" for scheduler, _ in ipvs.values())
    assert ipvs_delta(ipvs, ipvs) == ([], [])


def test_iptables_restore_moves_only_our_chains():
    ipt = parse_iptables_save(render("mesh.iptables.j2", view_of("node1")))
    fwd = {"filter": ipt["filter"]}
    assert fwd["filter"] == ["-A SF-MESH-FWD -m connmark --mark 0x4000/0x4000 -j ACCEPT",
                             "-A FORWARD -j SF-MESH-FWD"]
    # From nothing: the chain declared and filled, the jump inserted first in FORWARD.
    assert iptables_restore_text(fwd, {}).splitlines() == [
        "*filter", ":SF-MESH-FWD - [0:0]", "-A SF-MESH-FWD -m connmark --mark 0x4000/0x4000 -j ACCEPT",
        "-I FORWARD -j SF-MESH-FWD", "COMMIT"]
    # From the IPVS backend to the nftables one: mangle and nat chains go, the jump is kept.
    text = iptables_restore_text(fwd, ipt).splitlines()
    assert "-I FORWARD -j SF-MESH-FWD" not in text
    assert text[text.index("*nat"):] == ["*nat", ":SF-MESH-POST - [0:0]", "-D POSTROUTING -j SF-MESH-POST",
                                         "-X SF-MESH-POST", "COMMIT"]
    assert {"-D PREROUTING -j SF-MESH", "-D OUTPUT -j SF-MESH", "-X SF-MESH"} <= set(text)
    # Nothing of ours anywhere, nothing wanted: nothing to restore.
    assert iptables_restore_text({}, {}) == ""


def test_removed_real_server_is_drained_before_delete():
    live = {0x5F000001: ("rr", {"10.0.0.1:80": ("-m", 1), "10.0.0.2:80": ("-m", 1)})}
    want = {0x5F000001: ("rr", {"10.0.0.1:80": ("-m", 1)})}
    apply, delete = ipvs_delta(live, want)
    assert apply == [f"-e -f {0x5F000001} -r 10.0.0.2:80 -m -w 0"]
    assert delete == [f"-d -f {0x5F000001} -r 10.0.0.2:80"]
    assert parse_ipvs("-A -f 4660 -s rr\n-a -f 4660 -r 10.0.0.9:80 -m -w 1\n") == {}  # not our mark: never read
