"""Metrics and invariant checks on small traces worked out by hand."""

import json

import pytest

from vlab.sched import Entity
from vlab.sched.arinc653 import parse_frame
from vlab.sched.invariants import (cap_overruns, coscheduling_violations, idle_while_runnable, share_errors,
                                   window_violations)
from vlab.sched.metrics import deadline_misses, jain_index, run_figures, shares, utilisation, wake_latencies
from vlab.sched.trace import Segment, Switch, Trace

A, B = Entity(0, 0), Entity(1, 0)


def example() -> Trace:
    """pCPU 0 runs A [0, 600) then B [600, 1000); pCPU 1 runs B [100, 400). A sleeps at 600.

    B wakes at 50 (runs at 100), sleeps at 400, wakes at 500 (runs at 600): it waits [50, 100)
    and [500, 600), both times with pCPU 1 idle.
    """
    trace = Trace(pcpus=2, entities=[A, B])
    trace.woke(A, 0)
    trace.switched(0, 0, None, A, 0)
    trace.ran(0, A, 0, 300)
    trace.ran(0, A, 300, 600)  # continues the run before it: one segment
    trace.woke(B, 50)
    trace.switched(1, 100, None, B, 0)
    trace.ran(1, B, 100, 400)
    trace.slept(B, 400)
    trace.woke(B, 500)
    trace.slept(A, 600)
    trace.switched(0, 600, A, B, 0)
    trace.ran(0, B, 600, 1000)
    trace.finish(1000)
    return trace


def test_adjacent_runs_of_one_vcpu_on_one_pcpu_are_one_segment():
    assert example().segments[0] == Segment(0, A, 0, 600)
    assert len(example().segments) == 3


def test_shares_utilisation_and_wake_latencies():
    trace = example()
    assert shares(trace) == {A: 0.6, B: 0.7}
    assert utilisation(trace) == [1.0, 0.3]
    assert wake_latencies(trace) == {A: [0], B: [50, 100]}


def test_a_pcpu_idle_while_a_vcpu_waits_is_found_and_a_switching_one_is_busy():
    assert [v.time for v in idle_while_runnable(example())] == [50, 500]
    assert [v.time for v in idle_while_runnable(example(), tolerance=50)] == [500]  # [50, 100) is not longer
    trace = example()
    trace.switches.append(Switch(1, 50, None, B, 50))  # pCPU 1 loads B from 50
    assert [v.time for v in idle_while_runnable(trace)] == [500]


@pytest.mark.parametrize("values, index", [([1, 1, 1, 1], 1.0), ([1, 0, 0, 0], 0.25), ([1, 2], 0.9), ([], None)])
def test_jain_index(values, index):
    assert jain_index(values) == (index if index is None else pytest.approx(index))


def test_a_window_whose_runnable_owner_did_not_run_is_a_deadline_miss():
    frame = parse_frame("0=500ticks,1=500ticks")  # A owns [0, 500), B [500, 1000)
    (miss,) = deadline_misses(example(), frame)
    assert (miss.frame, miss.window, miss.entity, miss.needed, miss.got) == (0, 1, B, 500, 400)
    assert deadline_misses(example(), frame, tolerance=100) == []
    violations = window_violations(example(), frame)
    # A's run [0, 600) goes past its window; B ran [100, 400) in A's window; and B's miss
    assert [v.time for v in violations] == [0, 100, 500]


def test_share_errors_compare_with_the_entitlement_relatively():
    assert share_errors(example(), {A: 0.6, B: 0.7}, 0.0) == []
    assert [v.what.split()[0] for v in share_errors(example(), {A: 0.5, B: 0.7}, 0.1)] == ["vm0.vcpu0"]


def test_a_vm_past_its_cap_plus_its_burst_is_an_overrun():
    capped = Entity(0, 0, cap=50)
    trace = Trace(pcpus=1, entities=[capped])
    trace.ran(0, capped, 0, 1000)
    trace.finish(1000)
    assert cap_overruns(trace, 500) == []
    assert [v.time for v in cap_overruns(trace, 499)] == [1000]


def test_a_vcpu_left_waiting_while_its_sibling_runs_breaks_coscheduling():
    first, second = Entity(0, 0), Entity(0, 1)
    trace = Trace(pcpus=2, entities=[first, second])
    trace.woke(first, 0)
    trace.woke(second, 0)
    trace.ran(0, first, 0, 100)
    trace.ran(1, second, 30, 100)
    trace.finish(100)
    assert [v.time for v in coscheduling_violations(trace)] == [0]
    assert coscheduling_violations(trace, tolerance=30) == []


def test_run_figures_print_and_serialise():
    trace = example()
    figures = run_figures(trace, {A: 0.5, B: 0.5}, parse_frame("0=500ticks,1=500ticks"))
    data = json.loads(json.dumps(figures.as_dict()))
    assert [v["share"] for v in data["vcpus"]] == [0.6, 0.7]
    assert data["world_switches"] == 3 and data["deadline_misses"] == 1
    assert data["jain"] == pytest.approx((1.2 + 1.4) ** 2 / (2 * (1.2 ** 2 + 1.4 ** 2)))
    table = figures.table()
    assert "vm1.vcpu0" in table and "1.2 us" in table and "partition deadline misses: 1" in table
