"""Co-scheduling: a VM's vCPUs get their pCPUs together, slot after slot."""

import pytest

from vlab.sched import Entity, SchedError
from vlab.sched.cosched import CoSchedule
from vlab.sched.invariants import coscheduling_violations, idle_while_runnable
from vlab.sched.metrics import shares
from vlab.sched.simulate import Task, simulate

SLOT = 1_000


def test_two_vms_of_two_vcpus_take_both_pcpus_in_turn():
    vcpus = [Entity(vm, v) for vm in range(2) for v in range(2)]
    trace = simulate(CoSchedule(pcpus=2, slice_ticks=SLOT), [Task(e) for e in vcpus], 2, 6 * SLOT)
    runs = sorted((s.start, s.pcpu, s.entity.vm, s.end) for s in trace.segments)
    assert runs == [(k * SLOT, pcpu, k % 2, (k + 1) * SLOT) for k in range(6) for pcpu in range(2)]


def test_small_vms_share_a_slot_that_a_big_vm_does_not_fill():
    big, small, tiny = [Entity(0, 0), Entity(0, 1)], Entity(1, 0), Entity(2, 0)
    tasks = [Task(e) for e in (*big, small, tiny)]
    share = shares(simulate(CoSchedule(pcpus=2, slice_ticks=SLOT), tasks, 2, 6 * SLOT))
    # slots: big first | small first, tiny fits | tiny first, small fits | big ... (big never fits after)
    assert share == {big[0]: 2 / 6, big[1]: 2 / 6, small: 4 / 6, tiny: 4 / 6}


def test_a_blocked_vcpu_keeps_its_pcpu_idle_and_a_waking_one_runs_at_once():
    vcpus = [Entity(0, 0), Entity(0, 1), Entity(1, 0)]
    tasks = [Task(vcpus[0]), Task(vcpus[1], start=SLOT // 2), Task(vcpus[2])]
    trace = simulate(CoSchedule(pcpus=2, slice_ticks=SLOT), tasks, 2, 4 * SLOT)
    assert min(s.start for s in trace.segments if s.entity == vcpus[1]) == SLOT // 2
    assert idle_while_runnable(trace) != []  # VM 1 waited while pCPU 1 was kept for vm0.vcpu1
    assert coscheduling_violations(trace) == []


def test_a_vm_with_more_vcpus_than_pcpus_is_refused():
    policy = CoSchedule(pcpus=2)
    policy.add(Entity(0, 0))
    policy.add(Entity(0, 1))
    with pytest.raises(SchedError, match="more vCPUs than the host's 2 pCPU"):
        policy.add(Entity(0, 2))
