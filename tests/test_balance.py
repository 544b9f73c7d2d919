"""Workload balancing and consolidation (vlab.hyp.balance, vlab.hyp.balance_threshold): real guests whose
load changes, measured epoch by epoch, moved by live migration."""

from __future__ import annotations

import pytest

from vlab.guests import workloads
from vlab.hyp import balance_threshold
from vlab.hyp.balance import Cluster, Workload
from vlab.hyp.balance_threshold import HIGH, LOW, plan


def host(name, vms, on=True, capacity=2):
    return {"name": name, "on": on, "capacity": capacity, "vms": vms}


# --- the cluster: what it measures --------------------------------------------------------------------

def test_a_workload_uses_the_share_it_asks_for_phase_by_phase():
    cluster = Cluster([Workload("a", (0.4, 0.1))], hosts=1, pcpus=2, phase_epochs=2)
    timeline = cluster.run(4)
    loads = [e.loads["a"] for e in timeline.epochs]
    assert loads == pytest.approx([0.4, 0.4, 0.1, 0.1], abs=0.01)
    assert [e.utilisation["h0"] for e in timeline.epochs] == pytest.approx([load / 2 for load in loads], abs=0.01)
    assert timeline.late == 0


def test_a_vm_wanting_more_than_its_host_has_runs_late():
    crowded = Cluster([Workload(n, (0.8,)) for n in "abc"], hosts=1, pcpus=2).run(2)
    assert crowded.late > 0 and all(e.utilisation["h0"] > 0.97 for e in crowded.epochs)
    # it got all the host had, but for what its world switches and the timer's exits cost the host
    assert 0.97 * 2 < sum(crowded.epochs[-1].loads.values()) <= 2


def test_without_a_policy_nothing_moves_and_every_host_stays_on():
    timeline = Cluster([Workload("a", (0.1,)), Workload("b", (0.1,))], hosts=2).run(3)
    assert timeline.moves == [] and timeline.host_epochs == 6
    assert all(e.placement == {"a": "h0", "b": "h1"} for e in timeline.epochs)


def test_consolidation_empties_cold_hosts_and_the_vms_keep_their_work():
    names = ["a", "b", "c", "d"]
    cluster = Cluster([Workload(n, (0.1,)) for n in names], hosts=4)
    timeline = cluster.run(6, plan)
    last = timeline.epochs[-1]
    assert sum(last.on.values()) == 1 and len(set(last.placement.values())) == 1
    assert timeline.host_epochs < 6 * 4 and len(timeline.moves) == 3
    assert all(m.pages > 0 and m.rounds >= 1 and m.downtime_ticks > 0 for m in timeline.moves)
    assert last.loads == pytest.approx({n: 0.1 for n in names}, abs=0.01)  # still doing their work, moved
    for name in names:  # one period a millisecond, 60 ms: none lost by moving
        assert workloads.progress(cluster.vms[name]) == pytest.approx(60, abs=1)


def test_a_hot_host_sends_vms_away_and_switches_an_idle_host_on():
    cluster = Cluster([Workload("big", (0.9,)), Workload("mid", (0.5,)), Workload("small", (0.4,)),
                       Workload("far", (0.1,))], hosts=3, placement={"big": 0, "mid": 0, "small": 0, "far": 1})
    timeline = cluster.run(3, plan)
    assert not timeline.epochs[0].on["h2"]
    first = timeline.epochs[0].moves
    assert first and first[0].vm == "small" and first[0].source == "h0"  # the smallest first
    after = timeline.epochs[-1]
    assert after.utilisation["h0"] <= HIGH + 0.02


@pytest.mark.parametrize("answer, problem", [
    ([("nope", "h1")], "moved 'nope'"),
    ([("a", "h9")], "to 'h9'"),
    ([("a", "h1"), ("a", "h0")], "twice"),
    (["a"], "(vm, host) pairs"),
])
def test_a_policy_answer_naming_nothing_real_is_refused(answer, problem):
    cluster = Cluster([Workload("a", (0.1,)), Workload("b", (0.1,))], hosts=2)
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        cluster.run(1, lambda hosts: answer)


def test_the_policy_sees_each_host_and_what_its_vms_used():
    seen = []
    Cluster([Workload("a", (0.3,)), Workload("b", (0.2,))], hosts=3).run(1, lambda hosts: seen.append(hosts) or [])
    (view,) = seen
    assert [h["name"] for h in view] == ["h0", "h1", "h2"] and [h["on"] for h in view] == [True, True, False]
    assert view[0]["vms"] == pytest.approx({"a": 0.3}, abs=0.01) and view[2]["vms"] == {}
    assert all(h["capacity"] == 2 for h in view)


# --- the threshold policy on its own ------------------------------------------------------------------

def test_threshold_moves_nothing_when_every_host_is_between_the_marks():
    assert plan([host("h0", {"a": 1.0}), host("h1", {"b": 0.9})]) == []


def test_threshold_relieves_a_hot_host_smallest_first_to_the_host_with_most_room():
    moves = plan([host("h0", {"a": 0.9, "b": 0.5, "c": 0.3}), host("h1", {"d": 1.0}), host("h2", {"e": 0.7})])
    assert moves == [("c", "h2")]  # 1.7 - 0.3 = 1.4 <= 1.6: one move is enough; h2 has the most room


def test_threshold_switches_on_a_host_that_is_off_when_no_host_on_has_room():
    moves = plan([host("h0", {"a": 0.9, "b": 0.8}), host("h1", {"c": 1.5}), host("h2", {}, on=False)])
    assert moves == [("b", "h2")]


def test_threshold_empties_the_coldest_host_only_if_all_its_vms_fit_elsewhere():
    assert plan([host("h0", {"a": 0.3, "b": 0.2}), host("h1", {"c": 1.0})]) == [("a", "h1"), ("b", "h1")]
    assert plan([host("h0", {"a": 0.3, "b": 0.2}), host("h1", {"c": 1.3})]) == []  # b fits, a does not
    assert plan([host("h0", {"a": 0.1}), host("h1", {"b": 0.2}), host("h2", {"c": 1.2})]) == [("a", "h2")]


def test_threshold_marks_are_of_each_hosts_capacity():
    big, small = host("big", {"a": 3.0}, capacity=4), host("small", {"b": 0.5}, capacity=1)
    assert 3.0 <= HIGH * 4 and 0.5 > LOW * 1  # neither hot nor cold in its own terms
    assert plan([big, small]) == []
    assert balance_threshold.plan([host("small", {"b": 0.9}, capacity=1), host("big", {}, capacity=4, on=False)]) \
        == [("b", "big")]
