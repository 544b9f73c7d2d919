"""The virtual-runtime policy (Linux CFS, as KVM's vCPU threads get it): each behaviour on a small case."""

import pytest

from vlab.sched import Entity, SchedError
from vlab.sched.credit import Credit
from vlab.sched.fair import Fair, scaling_factor
from vlab.sched.metrics import shares, wake_latencies
from vlab.sched.simulate import Burst, Task, simulate
from vlab.sched.units import ms

A, B = Entity(0, 0), Entity(1, 0)


@pytest.mark.parametrize("pcpus, factor", [(1, 1), (2, 2), (3, 2), (4, 3), (8, 4), (64, 4)])
def test_latency_scales_like_linux_with_log2_of_up_to_8_cpus(pcpus, factor):
    assert scaling_factor(pcpus) == factor
    assert Fair(pcpus=pcpus).latency == factor * ms(6)


def test_cpu_time_follows_the_weights():
    light, heavy = Entity(0, 0, weight=256), Entity(1, 0, weight=768)
    share = shares(simulate(Fair(), [Task(light), Task(heavy)], 1, ms(600)))
    assert share[light] == pytest.approx(0.25, abs=0.01) and share[heavy] == pytest.approx(0.75, abs=0.01)


def test_a_sleeper_wakes_only_half_a_latency_ahead_of_the_cpu_bound_vcpu():
    # B sleeps 100 ms, then wants the CPU: with its old vruntime it would run 100 ms alone;
    # placed at min_vruntime - latency/2 it runs 3 ms, then A's turn comes (the tie goes to A).
    trace = simulate(Fair(), [Task(A), Task(B, start=ms(100))], 1, ms(200))
    a_after_wake = min(s.start for s in trace.segments if s.entity == A and s.start >= ms(100))
    assert a_after_wake == ms(100) + ms(6) // 2


def test_a_waking_vcpu_far_behind_preempts_the_running_one():
    interactive = Task(B, (Burst(ms(0.1), block=ms(5)),), start=ms(12))
    latencies = wake_latencies(simulate(Fair(), [Task(A), interactive], 1, ms(300)))[B]
    assert len(latencies) > 50 and max(latencies) == 0


def test_a_spinning_vcpu_yields_to_its_sibling_the_likely_lock_holder():
    spinner, holder, other = Entity(0, 0), Entity(0, 1), Entity(1, 0)
    tasks = [Task(spinner, (Burst(ms(0.5), then_yield=True),)), Task(holder), Task(other)]
    for policy, sibling_next in ((Fair(), True), (Credit(), False)):
        trace = simulate(policy, tasks, 1, ms(300))
        yields = [e.time for e in trace.events if e.kind == "yield"]
        after = [s.entity for t in yields for s in trace.segments if s.start == t]
        assert yields and len(after) == len(yields)
        assert all(e == holder for e in after) == sibling_next  # credit's yield is not directed


def test_caps_are_refused_there_is_no_cfs_bandwidth_control_here():
    with pytest.raises(SchedError, match="no caps"):
        Fair().add(Entity(0, 0, cap=50))
