"""The scheduling invariants of issue 11, checked with hypothesis on the policies alone.

Each property drives a policy through vlab.sched.simulate (the protocol, exactly) and checks the
trace with vlab.sched.invariants -- the same checks the host runs on real guests.
"""

import os
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from vlab.sched import Entity
from vlab.sched.arinc653 import Arinc653, Frame, Window
from vlab.sched.cosched import CoSchedule
from vlab.sched.credit import Credit
from vlab.sched.fair import Fair
from vlab.sched.invariants import (cap_overruns, coscheduling_violations, idle_while_runnable, share_errors,
                                   window_violations)
from vlab.sched.registry import make_policy
from vlab.sched.round_robin import RoundRobin
from vlab.sched.simulate import Burst, Task, random_tasks, simulate

SLICE = 1_000  # short slices: as many scheduling decisions per simulated tick as possible
WEIGHTS = [64, 128, 256, 512, 1024]
CAPS = [0, 10, 25, 50, 100, 150]

bursts = st.one_of(
    st.builds(Burst, run=st.integers(1, 3 * SLICE), block=st.integers(0, 3 * SLICE)),
    st.builds(Burst, run=st.integers(1, 3 * SLICE), then_yield=st.just(True)))


def task(entity):
    return st.builds(Task, st.just(entity), st.tuples() | st.lists(bursts, min_size=1, max_size=4).map(tuple),
                     start=st.integers(0, 3 * SLICE))


@st.composite
def machines(draw, max_vcpus=3, weights=False, caps=False, fit=False):
    """(pcpus, tasks): a few VMs of a few vCPUs each; with `fit`, no VM has more vCPUs than pCPUs."""
    pcpus = draw(st.integers(1, 4))
    entities = []
    for vm in range(draw(st.integers(1, 4))):
        weight = draw(st.sampled_from(WEIGHTS)) if weights else 256
        cap = min(draw(st.sampled_from(CAPS)), 100 * pcpus) if caps else 0
        vcpus = draw(st.integers(1, min(max_vcpus, pcpus) if fit else max_vcpus))
        entities += [Entity(vm, v, weight, cap) for v in range(vcpus)]
    return pcpus, [draw(task(e)) for e in entities]


switch_costs = st.sampled_from([0, 0, 13, 150])
chunks = st.sampled_from([None, 97, 1_000])  # the host charges each stretch it ran a core for


@settings(max_examples=60)
@given(machines(weights=True), st.sampled_from(["rr", "credit", "fair"]), switch_costs, chunks)
def test_work_conserving_policies_never_leave_a_pcpu_idle_while_a_vcpu_waits(machine, name, cost, chunk):
    pcpus, tasks = machine
    if name == "rr":
        tasks = [Task(Entity(t.entity.vm, t.entity.vcpu), t.bursts, t.start) for t in tasks]  # rr has no weights
    trace = simulate(make_policy(name, pcpus, slice_ticks=SLICE), tasks, pcpus, 60 * SLICE, cost, chunk)
    assert idle_while_runnable(trace) == []


def run_cpu_bound(policy, pcpus, vms, starts):
    """CPU-bound vCPUs (vms: (weight, vCPUs) per VM), long enough for 5% of the least share to be many slices."""
    entities = [Entity(vm, v, weight) for vm, (weight, vcpus) in enumerate(vms) for v in range(vcpus)]
    entitled = policy.entitlement(entities)
    duration = int(16 * SLICE / (0.05 * min(entitled.values())))
    tasks = [Task(e, start=start) for e, start in zip(entities, starts)]
    return simulate(policy, tasks, pcpus, duration), entitled


vm_weights = st.lists(st.tuples(st.sampled_from(WEIGHTS), st.integers(1, 3)), min_size=1, max_size=4)
staggered = st.lists(st.integers(0, SLICE - 1), min_size=12, max_size=12)


# Credit1 is proportional only roughly: its UNDER class is first come first served, so a heavy
# vCPU waits its turn behind lighter UNDER ones and loses the credit it banks above one slice
# (halved); its OVER class round-robins whatever the debt. With weights within a factor of two
# on one pCPU it keeps within 5% (measured: 3.3% at worst); several pCPUs or skewed weights
# drift further (tests/test_sched_credit.py shows it). Start times are staggered as a real
# host's are: vCPUs started on the same tick keep their slices aligned with the accountings.
@settings(max_examples=25)
@given(st.lists(st.tuples(st.sampled_from([256, 512]), st.integers(1, 3)), min_size=1, max_size=4), staggered)
def test_long_run_credit_shares_are_within_5_percent_of_weights_within_a_factor_of_two(vms, starts):
    policy = Credit(pcpus=1, slice_ticks=SLICE)
    trace, entitled = run_cpu_bound(policy, 1, vms, starts)
    assert share_errors(trace, entitled, 0.05) == []


@settings(max_examples=25)
@given(st.integers(1, 4), st.lists(st.integers(1, 3), min_size=1, max_size=4), staggered)
def test_long_run_credit_shares_are_within_5_percent_for_equal_weights_on_any_pcpus(pcpus, vcpus, starts):
    trace, entitled = run_cpu_bound(Credit(pcpus=pcpus, slice_ticks=SLICE), pcpus, [(256, n) for n in vcpus],
                                    starts)
    assert share_errors(trace, entitled, 0.05) == []


@settings(max_examples=25)
@given(st.integers(1, 4), vm_weights, staggered)
def test_long_run_fair_shares_are_within_5_percent_of_any_weights(pcpus, vms, starts):
    trace, entitled = run_cpu_bound(Fair(pcpus=pcpus, slice_ticks=SLICE), pcpus, vms, starts)
    assert share_errors(trace, entitled, 0.05) == []


@settings(max_examples=60)
@given(machines(weights=True, caps=True), switch_costs, chunks)
def test_credit_caps_are_never_exceeded(machine, cost, chunk):
    pcpus, tasks = machine
    policy = Credit(pcpus=pcpus, slice_ticks=SLICE)
    trace = simulate(policy, tasks, pcpus, 100 * SLICE, cost, chunk)
    assert cap_overruns(trace, policy.cap_burst) == []


@st.composite
def partitioned(draw):
    """(pcpus, frame, tasks): every vCPU with a window of its own, some VMs with a window for all."""
    pcpus, tasks = draw(machines(fit=True))
    entities = [t.entity for t in tasks]
    windows = [Window(e.vm, e.vcpu, draw(st.integers(1, 2 * SLICE))) for e in entities]
    windows += [Window(vm, None, draw(st.integers(1, 2 * SLICE)))
                for vm in sorted({e.vm for e in entities}) if draw(st.booleans())]
    windows = draw(st.permutations(windows))
    frame = Frame(tuple(windows), sum(w.duration for w in windows) + draw(st.integers(0, 2 * SLICE)))
    return pcpus, frame, tasks


@settings(max_examples=60)
@given(partitioned(), switch_costs, chunks)
def test_partition_windows_are_never_violated(setup, cost, chunk):
    pcpus, frame, tasks = setup
    trace = simulate(Arinc653(frame, pcpus=pcpus), tasks, pcpus, 20 * frame.major, cost, chunk)
    assert window_violations(trace, frame, tolerance=cost) == []


@settings(max_examples=60)
@given(machines(fit=True), switch_costs, chunks)
def test_coscheduled_vcpus_of_a_vm_run_together(machine, cost, chunk):
    pcpus, tasks = machine
    trace = simulate(CoSchedule(pcpus=pcpus, slice_ticks=SLICE), tasks, pcpus, 60 * SLICE, cost, chunk)
    assert coscheduling_violations(trace, tolerance=cost) == []


def policies(pcpus):
    return [RoundRobin(SLICE, pcpus=pcpus), Credit(pcpus=pcpus, slice_ticks=SLICE), Fair(pcpus=pcpus, slice_ticks=SLICE),
            CoSchedule(pcpus=pcpus, slice_ticks=SLICE)]


@settings(max_examples=30)
@given(st.integers(0, 2**32), st.integers(1, 3), st.integers(0, 3))
def test_the_same_seed_gives_the_same_schedule(seed, pcpus, policy_index):
    entities = [Entity(vm, v) for vm in range(3) for v in range(min(2, pcpus))]
    traces = []
    for _ in range(2):
        tasks = random_tasks(seed, entities, max_run=2 * SLICE, max_block=2 * SLICE)
        traces.append(simulate(policies(pcpus)[policy_index], tasks, pcpus, 40 * SLICE, switch_cost=7, chunk=300))
    first, second = traces
    assert first.segments and first.segments == second.segments
    assert (first.events, first.switches) == (second.events, second.switches)


SCHEDULE_DIGEST = """
import hashlib, sys
from vlab.sched import Entity
from vlab.sched.registry import make_policy
from vlab.sched.simulate import random_tasks, simulate
entities = [Entity(vm, v, weight=128 * (vm + 1)) for vm in range(3) for v in range(2)]
for name in ("credit", "fair"):
    tasks = random_tasks(7, entities, max_run=2000, max_block=2000)
    trace = simulate(make_policy(name, 2, slice_ticks=1000), tasks, 2, 100_000, switch_cost=5)
    print(name, hashlib.sha256(repr((trace.segments, trace.events, trace.switches)).encode()).hexdigest())
"""


def test_the_same_seed_gives_the_same_schedule_in_another_process_with_another_hash_seed():
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        digests.add(subprocess.run([sys.executable, "-c", SCHEDULE_DIGEST], env=env, capture_output=True,
                                   text=True, check=True).stdout)
    assert len(digests) == 1 and digests.pop().count("\n") == 2


def test_different_seeds_give_different_schedules():
    entities = [Entity(vm, 0) for vm in range(3)]
    schedules = {tuple(simulate(Credit(pcpus=1, slice_ticks=SLICE),
                                random_tasks(seed, entities, max_run=2 * SLICE, max_block=2 * SLICE, cpu_bound=0),
                                1, 40 * SLICE).segments)
                 for seed in range(5)}
    assert len(schedules) == 5
