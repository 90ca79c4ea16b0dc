"""xfrm_tunnel's planner and the iproute2 xfrm text parsers, without a kernel."""

import importlib.util
import pathlib

import ansible.module_utils
import pytest
from swarmfabric import iproute, keys

REPO = pathlib.Path(__file__).resolve().parents[2]
# The module imports ansible.module_utils.swarmfabric, as it does on a host.
if str(REPO / "plugins" / "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(REPO / "plugins" / "module_utils"))
_spec = importlib.util.spec_from_file_location("xfrm_tunnel", REPO / "library" / "xfrm_tunnel.py")
xfrm_tunnel = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(xfrm_tunnel)

LOCAL, B, C = "172.30.0.11", "172.30.0.12", "172.30.0.13"
SECRET = "correct horse battery staple"


def params(peers=(B, C), **extra):
    p = {"name": "appnet", "vni": 300, "port": 4789, "local": LOCAL, "peers": list(peers), "secret": SECRET,
         "generation": None, "phase": "converge", "state": "present", "no_log_values": set()}
    p.update(extra)
    return p


def state_text(sas, secret=SECRET):
    """What `ip xfrm state list` prints for these SAs (iproute2 6.1 layout)."""
    out = []
    for sa in sas:
        gen = keys.spi_generation(sa["spi"])
        key = keys.sa_key(secret, "appnet", 300, sa["src"], sa["dst"], gen).hex()
        out.append(
            f"src {sa['src']} dst {sa['dst']}\n"
            f"\tproto esp spi 0x{sa['spi']:08x} reqid {keys.sa_reqid(300, gen)} mode transport\n"
            "\treplay-window 0 flag af-unspec esn\n"
            f"\taead rfc4106(gcm(aes)) 0x{key} 128\n"
            "\tanti-replay esn context:\n\t seq-hi 0x0, seq 0x0, oseq-hi 0x0, oseq 0x0\n"
            "\t replay_window 128, bitmap-length 4\n\t 00000000 00000000 00000000 00000000 \n"
            "\tsel src 0.0.0.0/0 dst 0.0.0.0/0 \n"
        )
    return "".join(out)


def policy_text(pols):
    out = []
    for pol in pols:
        out.append(
            f"src {pol['src']}/32 dst {pol['dst']}/32 proto udp dport {pol['port']} \n"
            f"\tdir {pol['dir']} priority 0 ptype main \n"
            f"\ttmpl src {pol['tmpl_src']} dst {pol['tmpl_dst']}\n"
            f"\t\tproto esp reqid {pol['reqid']} mode transport\n"
        )
    return "".join(out)


def live(p, generations, policy_gen):
    states = iproute.parse_xfrm_states(state_text(xfrm_tunnel.desired_sas(p, generations)))
    policies = iproute.parse_xfrm_policies(policy_text(xfrm_tunnel.desired_policies(p, policy_gen)))
    return states, policies


def test_parsers_read_back_what_was_written():
    p = params()
    sa = xfrm_tunnel.desired_sas(p, {1})[0]
    [parsed] = iproute.parse_xfrm_states(state_text([sa]))
    assert parsed["spi"] == sa["spi"] and parsed["reqid"] == sa["reqid"]
    assert parsed["aead"] == "rfc4106(gcm(aes))" and parsed["icv"] == 128
    assert parsed["esn"] is True and parsed["replay_window"] == 128 and parsed["mode"] == "transport"
    assert len(parsed["key"]) == 72
    pol = xfrm_tunnel.desired_policies(p, 1)[1]
    [parsed_pol] = iproute.parse_xfrm_policies(policy_text([pol]))
    assert {k: parsed_pol[k] for k in pol} == pol


def test_fresh_host_gets_receive_sas_then_send_sas_then_policies():
    p = params()
    lines, _actions, before, after, gen, gens = xfrm_tunnel.plan(p, [], [])
    assert gen == 1 and gens == {1}
    kinds = [(line.split()[1], "in" if f"dst {LOCAL} " in line else "out") for line in lines]
    assert kinds == [("state", "in")] * 2 + [("state", "out")] * 2 + [("policy", "in"), ("policy", "out")] * 2
    spi = keys.sa_spi("appnet", 300, B, LOCAL, 1)
    assert lines[0] == (
        f"xfrm state add src {B} dst {LOCAL} proto esp spi 0x{spi:08x} reqid {keys.sa_reqid(300, 1)} "
        f"mode transport aead 'rfc4106(gcm(aes))' 0x{keys.sa_key(SECRET, 'appnet', 300, B, LOCAL, 1).hex()} 128 "
        "replay-window 128 flag esn"
    )
    assert lines[4] == (f"xfrm policy add src {B}/32 dst {LOCAL}/32 proto udp dport 4789 dir in "
                        f"tmpl src {B} dst {LOCAL} proto esp reqid 0 mode transport")
    assert before == {"sas": [], "policies": []}
    assert len(after["sas"]) == 4


def test_keys_never_in_actions_or_diff_but_registered_as_no_log():
    p = params()
    _lines, actions, before, after, *_ = xfrm_tunnel.plan(p, [], [])
    assert len(p["no_log_values"]) == 4
    text = repr((actions, before, after))
    for key_hex in p["no_log_values"]:
        assert key_hex not in text


def test_converged_host_is_idempotent():
    p = params()
    states, policies = live(p, {1}, 1)
    lines, actions, *_ = xfrm_tunnel.plan(p, states, policies)
    assert (lines, actions) == ([], [])


def test_changed_secret_replaces_sas():
    p = params(secret="another secret")
    states, policies = live(params(), {1}, 1)
    lines, actions, *_ = xfrm_tunnel.plan(p, states, policies)
    assert sum(a.startswith("replace ") for a in actions) == 4
    assert all(line.split()[2] in ("delete", "add") for line in lines)


def test_departed_peer_is_removed_policies_before_sas():
    states, policies = live(params(), {1}, 1)
    lines, actions, *_ = xfrm_tunnel.plan(params(peers=(B,)), states, policies)
    assert actions == [
        f"remove in policy from {C}", f"remove out policy to {C} gen 1",
        f"remove out SA {LOCAL}->{C} spi 0x{keys.sa_spi('appnet', 300, LOCAL, C, 1):08x} gen 1",
        f"remove in SA {C}->{LOCAL} spi 0x{keys.sa_spi('appnet', 300, C, LOCAL, 1):08x} gen 1",
    ]
    assert all(" delete " in line for line in lines)


def test_generation_is_discovered_from_live_policies():
    p = params()
    states, policies = live(p, {3}, 3)
    lines, _actions, _b, _a, gen, gens = xfrm_tunnel.plan(p, states, policies)
    assert (lines, gen, gens) == ([], 3, {3})


def test_rotation_phases_on_one_host():
    p = params()
    states, policies = live(p, {1}, 1)
    lines, actions, *_ = xfrm_tunnel.plan(params(phase="add_inbound", generation=2), states, policies)
    assert all(a.startswith("add ") and a.endswith("gen 2") and " SA " in a for a in actions)
    assert len(actions) == 4
    states, policies = live(p, {1, 2}, 1)
    lines, actions, *_ = xfrm_tunnel.plan(params(phase="switch_outbound", generation=2), states, policies)
    assert actions == [f"switch out policy to {B} gen 2", f"switch out policy to {C} gen 2"]
    assert all(line.startswith("xfrm policy update") for line in lines)
    states, policies = live(p, {1, 2}, 2)
    lines, actions, *_ = xfrm_tunnel.plan(params(phase="retire_old", generation=2), states, policies)
    assert len(actions) == 4 and all(a.startswith("remove ") and a.endswith("gen 1") for a in actions)


def test_foreign_out_policy_on_same_port_is_an_error():
    p = params()
    other = params(name="dbnet", vni=301)
    _states, policies = live(other, {1}, 1)
    with pytest.raises(ValueError, match="distinct ports"):
        xfrm_tunnel.plan(p, [], policies)


def test_absent_removes_everything_of_this_overlay_only():
    p = params()
    states, policies = live(p, {1}, 1)
    other_states = iproute.parse_xfrm_states(state_text(xfrm_tunnel.desired_sas(params(name="dbnet"), {1})))
    lines, actions, *_ = xfrm_tunnel.plan(params(state="absent"), states + other_states, policies)
    assert len(actions) == 8
    assert all(" delete " in line for line in lines)
