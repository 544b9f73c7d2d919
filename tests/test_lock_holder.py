"""Lock-holder preemption on a real guest (spinlock.S, vlab.hyp.lock_holder), and Xen's
SCHEDOP_yield as the paravirtual remedy."""

from __future__ import annotations

import shutil
import struct

import pytest

from host_setups import POLICIES, fits, scheduler
from vlab.guests import build as builder
from vlab.guests import qemu as oracle
from vlab.hyp import lock_holder
from vlab.hyp.host import Host
from vlab.hyp.lock_holder import measure
from vlab.hyp.vm import VM
from vlab.machine.board import Board, StopReason
from vlab.machine.loader import load
from vlab.sched.round_robin import RoundRobin

PRINTED = "spinlock: 48 jobs, each alone under one lock, checksum 0xdf253231da8d73a0 (as computed alone)\n"
XEN_YIELD = """
    mov     x16, #29                    // sched_op
    mov     x0, #0                      // SCHEDOP_yield
    hvc     #0xea1
    mov     x20, x0
"""
# What one failed attempt costs, counted off spinlock.S's instructions: ldaxr, cbnz and the seven
# of take_busy; and a yield, the eleven of take_yield.
BUSY_COST, YIELD_COST = 9, 11
POWER_OFF = """
    ldr     x0, =0x84000008
    hvc     #0
"""


def policy(name: str, competitor: int = 1):
    """The named policy, with the short slice the lock-holder runs use."""
    return lambda pcpus: scheduler(name, pcpus, vcpus=(4, competitor), slice_ticks=lock_holder.SLICE)


# --- the hypercall ----------------------------------------------------------------------------

def test_a_paravirtual_vm_answers_sched_op_yield_with_zero_and_logs_it():
    vm = VM.from_source(XEN_YIELD + POWER_OFF)
    lock_holder.paravirtual(vm)
    result = vm.run()
    assert result.reason is StopReason.POWERED_OFF  # HVC #0 is still PSCI
    assert result.registers["x20"] == 0
    assert any("sched_op yield" in record.action for record in vm.trap_log)


def test_a_yield_gives_the_physical_cpu_to_another_vcpu_before_the_slice_ends():
    # vCPU 0 starts vCPU 1 (which powers the VM off), then yields: on one physical CPU, vCPU 1
    # runs long before vCPU 0's slice of a million ticks is over.
    source = """
    ldr     x0, =0xc4000003             // PSCI CPU_ON
    mov     x1, #1
    adr     x2, second
    hvc     #0
""" + XEN_YIELD + """
spin:
    b       spin
second:
""" + POWER_OFF
    host = Host(pcpus=1, scheduler=RoundRobin(slice_ticks=1_000_000, pcpus=1))
    lock_holder.paravirtual(VM.from_source(source, host=host, vcpus=2))
    result = host.run(max_insns=3_000_000).vms[0]
    assert result.reason is StopReason.POWERED_OFF and result.message.endswith("vCPU1")
    first = host.trace.segments[0]
    assert first.entity.vcpu == 0 and first.end - first.start < 100


# --- the guest --------------------------------------------------------------------------------

def test_spinlock_guest_prints_the_same_on_the_bare_board_on_qemu_and_on_any_number_of_vcpus():
    board = Board()
    load(board, lock_holder.guest_image())
    assert board.run().uart == PRINTED
    for vcpus in (1, 2, 3, 4, 8):
        run = measure(pcpus=2, vcpus=vcpus, competitor=0)
        assert run.result.uart == PRINTED and run.verdict_ok
        assert sum(v.jobs for v in run.vcpus) == 48
    if shutil.which(oracle.QEMU) is None or shutil.which(builder.COMPILER) is None:
        pytest.skip("SKIPPED (the QEMU half): install qemu-system-arm and gcc-aarch64-linux-gnu")
    elf = builder.build(lock_holder.GUEST)
    for cpus in (1, 4):
        assert oracle.run_on_qemu(elf, timeout_s=60, cpus=cpus).uart == PRINTED


# (physical CPUs, yield_after, competitor's vCPUs)
SETUPS = [(4, None, 0), (4, 20, 4), (2, None, 1), (2, 20, 1), (1, None, 1), (1, 5, 0)]


@pytest.mark.parametrize("policy_name", POLICIES)
def test_the_guests_spin_count_is_every_instruction_beyond_the_work(policy_name):
    # The jobs cost the same instructions whoever does them: what a run retires beyond that is
    # exactly what the guest counted as spinning, on every host and schedule.
    runs = [measure(pcpus=p, yield_after=y, competitor=c, policy=policy(policy_name, c))
            for p, y, c in SETUPS if fits(policy_name, p, (4, c))]
    assert all(run.result.uart == PRINTED and run.verdict_ok for run in runs)
    assert len({run.instructions - run.spin for run in runs}) == 1
    assert len({run.spin for run in runs}) > 1  # the schedules differed


def test_a_vcpu_spinning_on_a_lock_nobody_releases_counts_every_attempt():
    # The lock word says CPU 8 holds it: the one vCPU spins from its first attempt to the end of
    # its budget, BUSY_COST instructions per attempt and YIELD_COST more per yield.
    for yield_after in (None, 20):
        vm = VM.from_image(lock_holder.guest_image(), ram_size=lock_holder.RAM)
        lock_holder.paravirtual(vm)
        block = vm.vcpus[0].pc
        vm.write_memory(block + lock_holder.LOCK, struct.pack("<Q", 9))
        if yield_after is not None:
            vm.write_memory(block + lock_holder.YIELD_AFTER, struct.pack("<Q", yield_after))
        result = vm.run(max_insns=100_000)
        assert result.reason is StopReason.BUDGET
        spin = struct.unpack("<Q", vm.read_memory(block + lock_holder.SPIN, 8))[0]
        yields = struct.unpack("<Q", vm.read_memory(block + lock_holder.YIELDS, 8))[0]
        assert 0 < result.instructions - spin < 30  # the few instructions before the first attempt
        cycle = 20 * BUSY_COST + YIELD_COST
        if yield_after is None:
            assert yields == 0 and spin % BUSY_COST == 0
        else:
            assert yields == spin // cycle and spin % cycle % BUSY_COST == 0


# --- lock-holder preemption and its remedy ------------------------------------------------------

def test_overcommitted_cpus_waste_far_more_spinning_than_a_cpu_per_vcpu():
    dedicated = measure(pcpus=4, competitor=0)
    overcommitted = measure(pcpus=2)
    assert overcommitted.spin > 3 * dedicated.spin
    assert "spent spinning" in overcommitted.summary() and "next to a competing VM" in overcommitted.summary()


# Where a preempted holder costs the spinners the rest of a slice. Not ARINC 653, whose windows
# belong to their vCPUs (a yield gives the time to no one), nor co-scheduling (below), nor the
# fair policy on one core, whose short periods keep plain spinning low while a yield to a sibling
# that spins too costs more than it saves.
@pytest.mark.parametrize("policy_name, pcpus", [("rr", 1), ("rr", 2), ("credit", 1), ("credit", 2), ("fair", 2)])
def test_a_paravirtual_yield_wastes_strictly_fewer_spin_instructions(policy_name, pcpus):
    plain = measure(pcpus=pcpus, policy=policy(policy_name))
    remedy = measure(pcpus=pcpus, yield_after=20, policy=policy(policy_name))
    assert plain.verdict_ok and remedy.verdict_ok
    assert sum(v.yields for v in remedy.vcpus) > 0
    # strictly fewer, and by far: with a yield that does not reach the scheduler the guest still
    # makes its calls, the schedule shifts a little, and the two runs differ by a few instructions
    assert 2 * remedy.spin < plain.spin, (plain.summary(), remedy.summary())


def test_co_scheduling_removes_lock_holder_preemption():
    # Eight vCPUs on four cores: round-robin preempts lock holders; co-scheduling runs the
    # guest's four vCPUs together or not at all, and they spin as little as on cores of their own.
    dedicated = measure(pcpus=4, competitor=0)
    shared = {name: measure(pcpus=4, competitor=4, policy=policy(name, 4)) for name in ("rr", "cosched")}
    assert shared["rr"].spin > 3 * dedicated.spin
    assert shared["cosched"].spin <= 1.1 * dedicated.spin
    assert shared["cosched"].verdict_ok and shared["rr"].verdict_ok


@pytest.mark.parametrize("options, message", [({"vcpus": 9}, "1 to 8 vCPUs"), ({"yield_after": 0}, "yield after"),
                                              ({"competitor": 9}, "0 \\(none\\) to 8 vCPUs")])
def test_measure_refuses_what_the_guest_cannot_do(options, message):
    with pytest.raises(ValueError, match=message):
        measure(**options)
