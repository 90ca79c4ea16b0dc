"""swarm_cluster's quorum arithmetic and node matching (pure functions)."""

import pytest
from conftest import load_module
from hypothesis import given
from hypothesis import strategies as st

cluster = load_module("swarm_cluster")


def ids(count, prefix="m"):
    return [f"{prefix}{i}" for i in range(count)]


def test_five_to_one_is_refused_with_the_safe_path():
    with pytest.raises(cluster.QuorumError, match=r"5 managers to 1.*safe path.*5 -> 3 -> 1"):
        cluster.plan_managers(ids(5), ids(5), ["m0"])


@pytest.mark.parametrize(("now", "final"), [(5, 3), (3, 1), (3, 3), (1, 3), (3, 5)])
def test_one_level_at_a_time_is_allowed(now, final):
    desired = ids(final, "n") if final > now else ids(final)
    promote, demote = cluster.plan_managers(ids(now), ids(now), desired)
    assert len(ids(now)) + len(promote) - len(demote) == final


def test_promotions_come_before_demotions_and_self_is_demoted_last():
    promote, demote = cluster.plan_managers(["a", "b", "c"], ["a", "b", "c"], ["c", "d", "e"], self_id="a")
    assert promote == ["d", "e"]
    assert demote == ["b", "a"]


def test_unreachable_managers_are_demoted_first():
    _, demote = cluster.plan_managers(["a", "b", "c", "d", "e"], ["a", "b", "c", "e"], ["a", "b", "c"])
    assert demote == ["d", "e"]


def test_lost_quorum_is_refused():
    with pytest.raises(cluster.QuorumError, match="lost quorum"):
        cluster.plan_managers(["a", "b", "c"], ["a"], ["a", "b", "c"])


def test_no_manager_left_is_refused():
    with pytest.raises(cluster.QuorumError, match="without a manager"):
        cluster.plan_managers(["a"], ["a"], [])


def expected_refusal(current, alive, desired):
    """Why a plan must be refused (a pattern of the message), or None when a safe order exists.

    Independent of plan_managers: the best order demotes unreachable managers
    first, after every promotion; if that order breaks a majority, every order does."""
    current, desired = set(current), set(desired)
    alive = set(alive) & current
    majority = lambda count: count // 2 + 1  # noqa: E731
    tolerance = lambda count: max(count - 1, 0) // 2  # noqa: E731
    if len(alive) < majority(len(current)):
        return "lost quorum"
    if not desired:
        return "without a manager"
    if tolerance(len(current)) - tolerance(len(desired)) > 1:
        return "would break quorum"
    count, up = len(current | desired), len(alive) + len(desired - current)
    for node in sorted(current - desired, key=lambda node: node in alive):
        count -= 1
        up -= node in alive
        if up < majority(count):
            return "below a majority"
    return None


@given(
    now=st.integers(1, 7),
    reachable=st.integers(0, 7),
    keep=st.integers(0, 7),
    new=st.integers(0, 4),
)
def test_a_plan_is_refused_exactly_when_no_safe_order_exists(now, reachable, keep, new):
    current = ids(now)
    alive = current[: min(reachable, now)]
    desired = current[: min(keep, now)] + ids(new, "n")
    reason = expected_refusal(current, alive, desired)
    if reason is not None:
        with pytest.raises(cluster.QuorumError, match=reason):
            cluster.plan_managers(current, alive, desired)
        return
    promote, demote = cluster.plan_managers(current, alive, desired)
    assert set(current) - set(demote) | set(promote) == set(desired)
    count, up = now + len(promote), len(alive) + len(promote)
    for node in demote:
        count -= 1
        up -= node in alive
        assert up >= count // 2 + 1
    assert cluster.tolerance(now) - cluster.tolerance(count) <= 1


@pytest.mark.parametrize(("now", "reachable", "desired", "reason"), [
    (3, 3, ids(3), None), (5, 5, ids(3), None), (3, 1, ids(3), "lost quorum"), (3, 3, [], "without a manager"),
    (5, 5, ids(1), "would break quorum"), (5, 3, ["m3", "m4", "m0"], "below a majority"),
])
def test_the_oracle_itself_refuses_and_accepts(now, reachable, desired, reason):
    # The property above only means something if both of its branches are taken.
    assert expected_refusal(ids(now), ids(now)[:reachable], desired) == reason


def test_nodes_are_matched_by_id_then_identity_label_never_by_hostname_or_address():
    def live(node_id, state, hostname, label=None):
        labels = {cluster.HOST_LABEL: label} if label else {}
        return {"ID": node_id, "Status": {"Addr": "10.0.0.1", "State": state},
                "Description": {"Hostname": hostname}, "Spec": {"Labels": labels}}

    nodes = [
        live("x1", "down", "h1", "m1"),   # a stale entry of m1 before it re-joined
        live("x2", "ready", "h1", "m1"),
        live("x3", "ready", "w1"),        # hostname equals a described name: not a match
        live("x4", "ready", "old", "w2"),  # label says w2, but w3's daemon says it is x4
        live("x5", "ready", "h5", "gone"),
    ]
    matched, undesired = cluster.match_nodes(
        [{"name": "m1"}, {"name": "w1", "addr": "10.0.0.1"}, {"name": "w3", "node_id": "x4"},
         {"name": "w2"}, {"name": "w4", "node_id": "unlisted"}],
        nodes,
    )
    assert {name: node["ID"] for name, node in matched.items()} == {"m1": "x2", "w3": "x4"}
    assert [node["ID"] for node in undesired] == ["x1", "x3", "x5"]
