"""xfrm_tunnel's planner and the iproute2 xfrm text parsers, without a kernel."""

import json

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from conftest import load_module
from swarmfabric import iproute, keys

xfrm_tunnel = load_module("xfrm_tunnel")

LOCAL, B, C = "172.30.0.11", "172.30.0.12", "172.30.0.13"
SLOTS = {LOCAL: 1, B: 2, C: 3}
SECRET = "correct horse battery staple, 32+ chars"
INDEX = 0


def key_of(src, dst, epoch, nonce="n1"):
    return keys.sa_key(SECRET, "lab", "appnet", 300, src, dst, epoch, nonce).hex()


def entries(peers=(B, C), epochs=(1,), nonce="n1", index=INDEX):
    out = []
    for peer in peers:
        for epoch in epochs:
            for direction, src, dst in (("in", peer, LOCAL), ("out", LOCAL, peer)):
                out.append({"peer": peer, "direction": direction, "epoch": epoch,
                            "spi": keys.sa_spi(index, SLOTS[src], epoch), "key": key_of(src, dst, epoch, nonce),
                            "fingerprint": None})
    return out


def params(peers=(B, C), epochs=(1,), policy_epoch=None, nonce="n1", **extra):
    p = {"name": "appnet", "index": INDEX, "vni": 300, "port": 4789, "local": LOCAL,
         "peers": [{"address": peer, "epoch": policy_epoch or max(epochs)} for peer in peers],
         "sas": entries(peers, epochs, nonce, extra.get("index", INDEX)), "state": "present", "no_log_values": set()}
    p.update(extra)
    return p


def state_text(sas):
    """What `ip xfrm state list` prints for these SAs (iproute2 6.1 layout)."""
    out = []
    for sa in sas:
        out.append(
            f"src {sa['src']} dst {sa['dst']}\n"
            f"\tproto esp spi 0x{sa['spi']:08x} reqid {sa['reqid']} mode transport\n"
            "\treplay-window 0 flag af-unspec esn\n"
            f"\taead rfc4106(gcm(aes)) 0x{sa['key']} 128\n"
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


def live(p):
    """The kernel's answer once p has been applied."""
    states = iproute.parse_xfrm_states(state_text(xfrm_tunnel.desired_sas(dict(p, no_log_values=set()))))
    policies = iproute.parse_xfrm_policies(policy_text(xfrm_tunnel.desired_policies(p)))
    return states, policies


def test_parsers_read_back_what_was_written():
    p = params()
    sa = xfrm_tunnel.desired_sas(p)[0]
    [parsed] = iproute.parse_xfrm_states(state_text([sa]))
    assert parsed["spi"] == sa["spi"] and parsed["reqid"] == sa["reqid"] == keys.sa_reqid(INDEX, 1)
    assert parsed["aead"] == "rfc4106(gcm(aes))" and parsed["icv"] == 128
    assert parsed["esn"] is True and parsed["replay_window"] == 128 and parsed["mode"] == "transport"
    assert parsed["key"] == sa["key"] and len(parsed["key"]) == 72
    pol = xfrm_tunnel.desired_policies(p)[1]
    [parsed_pol] = iproute.parse_xfrm_policies(policy_text([pol]))
    assert {k: parsed_pol[k] for k in pol} == pol


def test_fresh_host_gets_receive_sas_then_send_sas_then_policies():
    p = params()
    lines, _actions, before, after, summary = xfrm_tunnel.plan(p, [], [])
    assert summary["epoch"] == 1 and summary["sa_epochs"] == [1]
    kinds = [(line.split()[1], "in" if f"dst {LOCAL} " in line else "out") for line in lines]
    assert kinds == [("state", "in")] * 2 + [("state", "out")] * 2 + [("policy", "in"), ("policy", "out")] * 2
    spi = keys.sa_spi(INDEX, SLOTS[B], 1)
    assert lines[0] == (
        f"xfrm state add src {B} dst {LOCAL} proto esp spi 0x{spi:08x} reqid {keys.sa_reqid(INDEX, 1)} "
        f"mode transport aead 'rfc4106(gcm(aes))' 0x{key_of(B, LOCAL, 1)} 128 replay-window 128 flag esn"
    )
    assert lines[4] == (f"xfrm policy add src {B}/32 dst {LOCAL}/32 proto udp dport 4789 dir in "
                        f"tmpl src {B} dst {LOCAL} proto esp reqid 0 mode transport")
    assert lines[5] == (f"xfrm policy add src {LOCAL}/32 dst {B}/32 proto udp dport 4789 dir out "
                        f"tmpl src {LOCAL} dst {B} proto esp reqid {keys.sa_reqid(INDEX, 1)} mode transport")
    assert before == {"sas": [], "policies": []}
    assert len(after["sas"]) == 4


def test_keys_never_in_actions_diff_or_report_but_registered_as_no_log():
    p = params()
    _lines, actions, before, after, summary = xfrm_tunnel.plan(p, [], [])
    assert len(p["no_log_values"]) == 4
    text = repr((actions, before, after, summary))
    for key_hex in p["no_log_values"]:
        assert key_hex not in text
    assert {sa["fingerprint"] for sa in summary["live_sas"]} == {keys.fingerprint(k) for k in p["no_log_values"]}


def test_converged_host_is_idempotent_with_keys_or_fingerprints():
    p = params()
    states, policies = live(p)
    assert xfrm_tunnel.plan(p, states, policies)[:2] == ([], [])
    keep = dict(p, sas=[{**e, "key": None, "fingerprint": keys.fingerprint(e["key"])} for e in p["sas"]])
    lines, actions, _b, _a, summary = xfrm_tunnel.plan(keep, states, policies)
    assert (lines, actions) == ([], [])
    assert summary["outbound"] == {B: 1, C: 1}


def test_query_reports_live_state_and_changes_nothing():
    states, policies = live(params(epochs=(3,)))
    lines, actions, _b, _a, summary = xfrm_tunnel.plan(
        params(state="query", peers=(), sas=[]), states, policies)
    assert (lines, actions) == ([], [])
    assert summary["epoch"] == 3 and summary["outbound"] == {B: 3, C: 3}
    assert len(summary["live_sas"]) == 4
    assert {(sa["peer"], sa["direction"]) for sa in summary["live_sas"]} == {
        (B, "in"), (B, "out"), (C, "in"), (C, "out")}
    assert all(set(sa) == {"peer", "direction", "epoch", "spi", "fingerprint"} for sa in summary["live_sas"])


def test_new_key_same_spi_replaces_the_sa_in_place():
    """A peer rebooted: the controller hands new keys (new nonce) for the same epoch."""
    states, policies = live(params(peers=(B, C)))
    p = params(peers=(B, C), nonce="n2")
    p["sas"] = [e if e["peer"] == C else {**e, "key": key_of(*((B, LOCAL) if e["direction"] == "in"
                                                                 else (LOCAL, B)), 1, "n2")}
                for e in params(peers=(B, C))["sas"]]
    lines, actions, *_ = xfrm_tunnel.plan(p, states, policies)
    assert [a.split(" key #")[0] for a in actions] == [
        f"replace in SA {B}->{LOCAL} spi 0x{keys.sa_spi(INDEX, 2, 1):08x} epoch 1",
        f"replace out SA {LOCAL}->{B} spi 0x{keys.sa_spi(INDEX, 1, 1):08x} epoch 1",
    ]
    assert [line.split(" proto esp")[0] for line in lines] == [
        f"xfrm state delete src {B} dst {LOCAL}", f"xfrm state add src {B} dst {LOCAL}",
        f"xfrm state delete src {LOCAL} dst {B}", f"xfrm state add src {LOCAL} dst {B}"]


def test_kept_sa_that_moved_since_the_read_fails():
    states, policies = live(params())
    p = params()
    p["sas"][0] = {**p["sas"][0], "key": None, "fingerprint": "0" * 16}
    with pytest.raises(ValueError, match="live state moved since it was read"):
        xfrm_tunnel.plan(p, states, policies)
    with pytest.raises(ValueError, match="is missing"):
        xfrm_tunnel.plan(p, [], [])


def test_departed_peer_is_removed_policies_before_sas():
    states, policies = live(params())
    lines, actions, *_ = xfrm_tunnel.plan(params(peers=(B,)), states, policies)
    assert [a.split(" key #")[0] for a in actions] == [
        f"remove in policy from {C}", f"remove out policy to {C} epoch 1",
        f"remove out SA {LOCAL}->{C} spi 0x{keys.sa_spi(INDEX, 1, 1):08x} epoch 1",
        f"remove in SA {C}->{LOCAL} spi 0x{keys.sa_spi(INDEX, 3, 1):08x} epoch 1",
    ]
    assert all(" delete " in line for line in lines)


def test_rotation_phases_on_one_host():
    states, policies = live(params())
    # Phase 1: epoch 2 SAs added, out policies still select 1.
    lines, actions, *_ = xfrm_tunnel.plan(params(epochs=(1, 2), policy_epoch=1), states, policies)
    assert len(actions) == 4 and all(a.startswith("add ") and " epoch 2" in a and " SA " in a for a in actions)
    states, policies = live(params(epochs=(1, 2), policy_epoch=1))
    lines, actions, *_ = xfrm_tunnel.plan(params(epochs=(1, 2), policy_epoch=2), states, policies)
    assert actions == [f"switch out policy to {B} epoch 2", f"switch out policy to {C} epoch 2"]
    assert all(line.startswith("xfrm policy update") for line in lines)
    states, policies = live(params(epochs=(1, 2), policy_epoch=2))
    lines, actions, *_ = xfrm_tunnel.plan(params(epochs=(2,)), states, policies)
    assert len(actions) == 4 and all(a.startswith("remove ") and " epoch 1" in a for a in actions)


def test_v1_layout_sas_and_policies_are_replaced():
    legacy = [{"src": B, "dst": LOCAL, "spi": 0x01ABCDEF, "reqid": 300 << 8 | 1, "key": "ab" * 36},
              {"src": LOCAL, "dst": B, "spi": 0x01123456, "reqid": 300 << 8 | 1, "key": "cd" * 36}]
    old_pols = [{"src": LOCAL, "dst": B, "port": 4789, "dir": "out", "tmpl_src": LOCAL, "tmpl_dst": B,
                 "reqid": 300 << 8 | 1}]
    states = iproute.parse_xfrm_states(state_text(legacy))
    policies = iproute.parse_xfrm_policies(policy_text(old_pols))
    _lines, actions, *_ = xfrm_tunnel.plan(params(peers=(B,)), states, policies)
    assert f"switch out policy to {B} epoch 1" in actions
    assert [a.split(" key #")[0] for a in actions[-2:]] == [f"remove out SA {LOCAL}->{B} spi 0x01123456 v1 layout",
                            f"remove in SA {B}->{LOCAL} spi 0x01abcdef v1 layout"]


def test_foreign_out_policy_on_same_port_is_an_error():
    other = params(index=1, vni=301)
    _states, policies = live(dict(other, sas=[]))
    with pytest.raises(ValueError, match="distinct ports"):
        xfrm_tunnel.plan(params(), [], policies)


def test_foreign_sa_with_one_of_our_spis_is_named_not_rotated():
    spi = keys.sa_spi(INDEX, SLOTS[B], 1)
    foreign = iproute.parse_xfrm_states(state_text([{"src": "192.0.2.9", "dst": LOCAL, "spi": spi, "reqid": 7,
                                                    "key": "00" * 36}]))
    with pytest.raises(ValueError, match=f"another IPsec SA on this host already uses SPI 0x{spi:08x}") as err:
        xfrm_tunnel.plan(params(), foreign, [])
    assert "rotate" not in str(err.value)


def test_bad_entries_are_refused():
    p = params()
    p["sas"][0] = {**p["sas"][0], "spi": p["sas"][0]["spi"] + (1 << 16)}  # another overlay index
    with pytest.raises(ValueError, match="layout"):
        xfrm_tunnel.plan(p, [], [])
    p = params()
    p["sas"][0] = {**p["sas"][0], "fingerprint": "0" * 16}
    with pytest.raises(ValueError, match="exactly one of key and fingerprint"):
        xfrm_tunnel.plan(p, [], [])
    p = params(peers=(B,))
    p["sas"] += entries(peers=(C,))
    with pytest.raises(ValueError, match="not among the peers"):
        xfrm_tunnel.plan(p, [], [])


def test_absent_removes_everything_of_this_overlay_only():
    states, policies = live(params())
    other_states, _ = live(params(index=1))
    lines, actions, *_ = xfrm_tunnel.plan(params(state="absent"), states + other_states, policies)
    assert len(actions) == 8
    assert all(" delete " in line for line in lines)


# --- the module end to end, with scripted `ip` answers ----------------------


def run_main(monkeypatch, args, answers, check_mode=False):
    calls = []

    def run_command(self, argv, data=None, binary_data=False, **_kw):
        calls.append((argv, data))
        return answers.pop(0)

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, required=False: f"/sbin/{name}")
    args = {**args, "_ansible_check_mode": check_mode, "_ansible_diff": True}
    with patch_module_args(args), pytest.raises(SystemExit):
        xfrm_tunnel.main()
    return calls


def module_args(**extra):
    p = params()
    return {"name": "appnet", "index": INDEX, "vni": 300, "local": LOCAL, "peers": p["peers"],
            "sas": [{k: v for k, v in e.items() if v is not None} for e in p["sas"]], "check_kernel": False,
            **extra}


def test_main_check_mode_reads_twice_and_writes_nothing(monkeypatch, capsys):
    calls = run_main(monkeypatch, module_args(), [(0, "", ""), (0, "", "")], check_mode=True)
    assert [argv for argv, _ in calls] == [["/sbin/ip", "xfrm", "state", "list"],
                                           ["/sbin/ip", "xfrm", "policy", "list"]]
    out = json.loads(capsys.readouterr().out)
    assert out["changed"] is True and len(out["actions"]) == 8
    assert SECRET not in json.dumps(out)
    for entry in module_args()["sas"]:
        assert entry["key"] not in json.dumps(out)


def test_main_applies_one_batch_on_stdin_keys_never_in_argv(monkeypatch, capsys):
    calls = run_main(monkeypatch, module_args(), [(0, "", ""), (0, "", ""), (0, "", "")])
    assert len(calls) == 3
    argv, data = calls[2]
    assert argv == ["/sbin/ip", "-batch", "-"]
    keys_hex = [e["key"] for e in module_args()["sas"]]
    assert all(k in data for k in keys_hex)
    assert not any(k in " ".join(argv) for k in keys_hex for argv, _data in calls)
    out = json.loads(capsys.readouterr().out)
    assert out["changed"] is True and out["epoch"] == 1
    assert not any(k in json.dumps(out) for k in keys_hex)


def test_main_failure_reads_cannot_and_hides_keys(monkeypatch, capsys):
    run_main(monkeypatch, module_args(), [(0, "", ""), (0, "", ""), (2, "", "RTNETLINK answers: File exists")])
    out = json.loads(capsys.readouterr().out)
    assert out["failed"] is True
    assert out["msg"].startswith("Cannot configure encryption of overlay appnet: ip -batch (8 xfrm changes)")
    assert not any(e["key"] in json.dumps(out) for e in module_args()["sas"])
