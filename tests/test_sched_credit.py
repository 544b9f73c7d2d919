"""Xen's credit scheduler: each behaviour of xen/common/sched/credit.c that vlab keeps, on a small case."""

import pytest

from vlab.sched import Entity, SchedError
from vlab.sched.credit import DEFAULT_SLICE, Credit
from vlab.sched.fair import Fair
from vlab.sched.invariants import cap_overruns, idle_while_runnable
from vlab.sched.metrics import shares, wake_latencies
from vlab.sched.round_robin import RoundRobin
from vlab.sched.simulate import Burst, Task, simulate
from vlab.sched.units import ms

A, B = Entity(0, 0), Entity(1, 0)
# B: an interactive vCPU -- it works 0.1 ms, then waits 5 ms for its next request
INTERACTIVE = (Burst(ms(0.1), block=ms(5)),)


def test_defaults_are_xens_scaled_to_host_ticks():
    policy = Credit()
    assert (policy.slice, policy.tick, policy.ratelimit) == (30 * 62_500, 10 * 62_500, 62_500)
    assert Entity(0, 0).weight == 256


def test_a_waking_vcpu_is_boosted_and_preempts_a_cpu_bound_one_at_once():
    # from 12 ms on: A has lost its own wake-up boost at its first tick (10 ms), and is UNDER or OVER
    tasks = [Task(A), Task(B, INTERACTIVE, start=ms(12))]
    credit = wake_latencies(simulate(Credit(), tasks, 1, ms(600)))[B]
    round_robin = wake_latencies(simulate(RoundRobin(), tasks, 1, ms(600)))[B]
    assert len(credit) > 50 and max(credit) == 0  # A has always run > 1 ms: BOOST preempts it on the spot
    assert max(round_robin) > ms(20)  # round-robin makes it wait for A's 30 ms slice to end


def test_the_rate_limit_lets_a_vcpu_run_1_ms_before_a_boosted_one_preempts_it():
    # B works 0.1 ms and wakes again 0.5 ms later: A, back on the pCPU for only 0.5 ms, keeps it 0.5 ms more
    tasks = [Task(A), Task(B, (Burst(ms(0.1), block=ms(0.5)),), start=ms(12))]
    latencies = wake_latencies(simulate(Credit(), tasks, 1, ms(20)))[B]
    assert latencies[0] == 0 and len(latencies) > 5 and set(latencies[1:]) == {ms(0.5)}


def test_the_boost_ends_once_a_tick_finds_the_vcpu_running():
    for ran, priority in ((ms(5), "BOOST"), (ms(15), "UNDER")):
        policy = Credit()
        simulate(policy, [Task(B)], 1, ran)
        assert policy.accounts(now=ran) == [(B, -ran // 6_250, priority)]  # 10 Xen credits burnt per ms


def test_cpu_time_follows_the_weights_on_one_pcpu():
    light, heavy = Entity(0, 0, weight=256), Entity(1, 0, weight=512)
    share = shares(simulate(Credit(), [Task(light), Task(heavy)], 1, ms(6000)))
    assert share[light] == pytest.approx(1 / 3, abs=0.01) and share[heavy] == pytest.approx(2 / 3, abs=0.01)


def test_credit1_honours_skewed_weights_only_roughly_where_fair_is_exact():
    # Its UNDER class is first come first served: the heavy vCPU waits its turn behind the light
    # ones, and the credit it banks above one slice is halved away.
    vcpus = [Entity(0, 0, weight=1024), Entity(1, 0, weight=64), Entity(2, 0, weight=64), Entity(2, 1, weight=64)]
    heavy_entitled = 1024 / (1024 + 3 * 64)
    credit = shares(simulate(Credit(slice_ticks=1_000), [Task(e) for e in vcpus], 1, 2_000_000))
    fair = shares(simulate(Fair(slice_ticks=1_000), [Task(e) for e in vcpus], 1, 2_000_000))
    assert credit[vcpus[0]] < 0.9 * heavy_entitled
    assert fair[vcpus[0]] == pytest.approx(heavy_entitled, rel=0.05)


def test_an_uncapped_vcpu_over_its_credit_still_gets_an_idle_pcpu():
    trace = simulate(Credit(), [Task(A)], 1, ms(600))
    assert shares(trace)[A] == 1.0  # OVER most of the time, but nobody else wants the pCPU


def test_a_capped_vm_gets_its_cap_and_the_pcpu_idles_the_rest():
    capped = Entity(0, 0, cap=50)
    policy = Credit()
    trace = simulate(policy, [Task(capped)], 1, ms(3000))
    assert shares(trace)[capped] == pytest.approx(0.5, abs=0.03)
    assert cap_overruns(trace, policy.cap_burst) == []
    assert idle_while_runnable(trace) != []  # capped is not work-conserving


def test_a_cap_is_the_whole_vms_not_each_vcpus():
    vcpus = [Entity(0, 0, cap=100), Entity(0, 1, cap=100)]
    share = shares(simulate(Credit(pcpus=2), [Task(e) for e in vcpus], 2, ms(3000)))
    assert sum(share.values()) == pytest.approx(1.0, abs=0.05)  # one pCPU's worth, of two


def test_credit_stays_within_one_slice_either_way_at_each_accounting():
    vcpus = [Entity(vm, 0, weight=w) for vm, w in enumerate((64, 256, 1024))] + [Entity(3, 0)]
    policy = Credit()
    tasks = [Task(e) for e in vcpus[:3]] + [Task(vcpus[3], INTERACTIVE)]
    simulate(policy, tasks, 1, 20 * DEFAULT_SLICE)
    credits = [credit for _, credit, _ in policy.accounts(now=20 * DEFAULT_SLICE)]
    assert all(-300 <= c <= 300 for c in credits)  # clamped at -300; halved above +300
    assert min(credits) < 0  # (the heavy CPU-bound ones do go into debt)


def test_a_yield_gives_the_pcpu_to_the_next_vcpu():
    yielder = (Burst(ms(1), then_yield=True),)
    trace = simulate(Credit(), [Task(A, yielder), Task(B)], 1, ms(300))
    yields = [e.time for e in trace.events if e.kind == "yield"]
    assert yields
    for time in yields:
        (after,) = [s for s in trace.segments if s.start == time]
        assert after.entity == B


def test_a_lone_vcpu_costs_one_decision_per_slice_not_one_per_tick():
    policy = Credit()
    picks = []
    pick = policy.pick
    policy.pick = lambda *args: picks.append(args) or pick(*args)
    simulate(policy, [Task(A)], 1, 100 * DEFAULT_SLICE)
    assert len(picks) == 100


@pytest.mark.parametrize("make, message", [
    (lambda: Credit(pcpus=2).add(Entity(0, 0, cap=201)), "more than the host's 2 physical CPU"),
    (lambda: Credit(slice_ticks=1000, tick_ticks=2000), "longer than its slice"),
    (lambda: Credit(slice_ticks=1000, ratelimit_ticks=2000), "rate limit"),
    (lambda: Credit(slice_ticks=0), "positive number of ticks"),
    (lambda: Credit(pcpus=0), "at least one physical CPU"),
])
def test_bad_configurations_are_refused_before_anything_runs(make, message):
    with pytest.raises(SchedError, match=message):
        make()


def test_the_vcpus_of_a_vm_must_carry_the_same_weight_and_cap():
    policy = Credit()
    policy.add(Entity(0, 0, weight=512))
    with pytest.raises(SchedError, match="weight and cap are the VM's"):
        policy.add(Entity(0, 1, weight=256))


def test_charging_each_stretch_the_host_ran_gives_the_schedule_of_charging_once():
    vcpus = [Entity(0, 0, weight=512, cap=60), Entity(1, 0), Entity(1, 1)]
    tasks = [Task(vcpus[0]), Task(vcpus[1], INTERACTIVE), Task(vcpus[2], (Burst(ms(7), block=ms(2)),))]
    once, chunked = (simulate(Credit(pcpus=2), tasks, 2, ms(900), chunk=chunk) for chunk in (None, 50_000))
    assert once.segments and sorted(once.segments, key=lambda s: (s.start, s.pcpu)) == sorted(chunked.segments, key=lambda s: (s.start, s.pcpu))
