"""What the host's schedule shows: the same run twice gives the same schedule and outputs; a vCPU
blocked in a trapped WFI uses no physical CPU; idle physical CPUs are visible."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host_setups import POLICIES, WORK_CONSERVING, c_guest, combinations, scheduler
from vlab.arch.hcr import HCR
from vlab.guests import GIC_TIMER_ON, GUESTS
from vlab.hyp import lock_holder
from vlab.hyp.host import Host
from vlab.hyp.vm import VM
from vlab.machine.loader import image_from_file
from vlab.sched.round_robin import RoundRobin

RAM = 0x40_0000
SLEEP = 200_000  # ticks the sleeper's timer is set to
SLEEPER = f"""{GIC_TIMER_ON}
    ldr     x1, ={SLEEP}
    msr     cntv_tval_el0, x1           // the virtual timer fires in SLEEP ticks
    mov     x1, #1
    msr     cntv_ctl_el0, x1
    wfi                                 // IRQs are masked: WFI still wakes when the GIC signals the timer
    mrs     x20, cntvct_el0
    ldr     x0, =0x84000008
    hvc     #0
"""
BUSY_LOOPS = 300_000
BUSY = f"""
    ldr     x1, ={BUSY_LOOPS}
count_down:
    subs    x1, x1, #1
    b.ne    count_down
    ldr     x0, =0x84000008
    hvc     #0
"""


def ran(host: Host, vm: int, vcpu: int = 0) -> list[tuple[int, int]]:
    """The stretches of host time during which that vCPU had a physical CPU."""
    return [(s.start, s.end) for s in host.trace.segments if (s.entity.vm, s.entity.vcpu) == (vm, vcpu)]


def busy(host: Host, pcpu: int) -> int:
    """Host ticks the trace shows core `pcpu` running a vCPU or switching to one."""
    return (sum(s.end - s.start for s in host.trace.segments if s.pcpu == pcpu)
            + sum(w.cost for w in host.trace.switches if w.pcpu == pcpu))


# --- the same run twice ---------------------------------------------------------------------------

MIXED = (4, 4, 1, 1)  # the vCPUs of mixed_host's VMs


def mixed_host(policy: str, pcpus: int, switch_cost: int = 0, lockstep: int = 50_000) -> tuple[Host, list]:
    """smp.c and spinlock.S on four vCPUs each, a sleeper whose WFI traps, and a busy VM."""
    host = Host(pcpus=pcpus, scheduler=scheduler(policy, pcpus, vcpus=MIXED), switch_cost=switch_cost,
                lockstep=lockstep)
    VM.from_image(image_from_file(c_guest("smp")), host=host, vcpus=4, stage2="scattered", ram_size=RAM)
    VM.from_image(lock_holder.guest_image(), host=host, vcpus=4, stage2="contiguous", ram_size=RAM)
    VM.from_source(SLEEPER, host=host, stage2="demand", ram_size=RAM, traps=HCR.TWI)
    VM.from_source(BUSY, host=host, stage2="contiguous", ram_size=RAM)
    return host, host.run(max_insns=20_000_000).vms


def observed(host: Host, results: list) -> tuple:
    return (host.trace.segments, host.trace.events, host.trace.switches, host.pcpu_figures(), [r.uart for r in results],
            [r.registers for r in results], [r.vcpus for r in results], [r.exits for r in results])


@pytest.mark.parametrize("policy, pcpus", [(policy, pcpus) for policy, pcpus in combinations((1, 2, 3, 4), MIXED)
                                           if pcpus < 4 or policy == "cosched"])
def test_the_same_run_twice_gives_the_same_schedule_and_the_same_outputs(policy, pcpus):
    first, second = (observed(*mixed_host(policy, pcpus)) for _ in range(2))
    assert first == second
    segments, _, _, _, uarts, _, _, _ = first
    assert uarts[0].endswith("smp: all checks passed\n") and uarts[1].startswith("spinlock:")
    assert {s.entity.vm for s in segments} == {0, 1, 2, 3}


@settings(max_examples=6)
@given(pcpus=st.integers(1, 4), switch_cost=st.integers(0, 2_000), lockstep=st.integers(200, 100_000),
       slice_ticks=st.integers(5_000, 500_000))
def test_any_host_configuration_repeats_exactly(pcpus, switch_cost, lockstep, slice_ticks):
    def once():
        host = Host(pcpus=pcpus, scheduler=RoundRobin(slice_ticks=slice_ticks, pcpus=pcpus), switch_cost=switch_cost,
                    lockstep=lockstep)
        VM.from_image(lock_holder.guest_image(), host=host, vcpus=3, stage2="scattered", ram_size=RAM)
        VM.from_source(SLEEPER, host=host, stage2="contiguous", ram_size=RAM, traps=HCR.TWI)
        VM.from_image(GUESTS["sensitive"].image(), host=host, stage2="demand", ram_size=RAM, traps=HCR.TWI)
        return observed(host, host.run(max_insns=5_000_000).vms)

    assert once() == once()


# --- a blocked vCPU uses no physical CPU --------------------------------------------------------

@pytest.mark.parametrize("policy", POLICIES)
def test_a_vcpu_blocked_in_a_trapped_wfi_leaves_its_physical_cpu_to_others(policy):
    host = Host(pcpus=1, scheduler=scheduler(policy, 1, vcpus=(1, 1)))
    sleeper = VM.from_source(SLEEPER, host=host, stage2="contiguous", ram_size=RAM, traps=HCR.TWI)
    VM.from_source(BUSY, host=host, stage2="contiguous", ram_size=RAM)
    result = host.run(max_insns=10_000_000).vms[0]
    assert result.registers["x20"] >= SLEEP  # it slept until its timer fired
    assert sleeper.exits["WFX"] == 1
    stretches = ran(host, 0)
    assert sum(end - start for start, end in stretches) < 1_000  # a handful of instructions, no waiting
    asleep = (stretches[0][1], stretches[-1][0])  # from its WFI to its last stretch
    assert asleep[1] - asleep[0] >= SLEEP - 1_000
    during = [(max(s.start, asleep[0]), min(s.end, asleep[1]), s.entity) for s in host.trace.segments
              if s.end > asleep[0] and s.start < asleep[1]]
    assert all(entity.vm == 1 for _, _, entity in during)  # never the sleeper
    if policy in WORK_CONSERVING:  # (the others may keep the time for the sleeper: idle, but not its)
        given = sum(end - start for start, end, _ in during)
        assert given == asleep[1] - asleep[0]  # the busy VM had the physical CPU all that time


def test_a_wfi_the_hypervisor_does_not_trap_keeps_the_physical_cpu_waiting():
    # the contrast: without TWI the vCPU waits in its WFI on the physical CPU it holds
    host = Host(pcpus=1, scheduler=RoundRobin(slice_ticks=10_000_000, pcpus=1))
    VM.from_source(SLEEPER, host=host, stage2="contiguous", ram_size=RAM)
    VM.from_source(BUSY, host=host, stage2="contiguous", ram_size=RAM)
    host.run(max_insns=10_000_000)
    assert sum(end - start for start, end in ran(host, 0)) >= SLEEP
    assert host.pcpu_figures()[0]["idle_ticks"] >= SLEEP - 1_000  # waiting in the guest's WFI is idle time


def test_a_physical_cpu_whose_only_vcpu_blocks_idles_and_shows_it():
    host = Host(pcpus=1)
    VM.from_source(SLEEPER, host=host, stage2="contiguous", ram_size=RAM, traps=HCR.TWI)
    host.run()
    stretches = ran(host, 0)
    assert stretches[-1][0] - stretches[0][1] >= SLEEP - 1_000  # nothing ran between its WFI and its wake
    core = host.pcpu_figures()[0]
    assert core["idle_ticks"] == core["ticks"] - busy(host, 0) >= SLEEP - 1_000


# --- idle physical CPUs are visible ---------------------------------------------------------------

@pytest.mark.parametrize("policy", POLICIES)
def test_physical_cpus_with_nothing_to_run_show_as_idle(policy):
    host = Host(pcpus=4, scheduler=scheduler(policy, 4))
    VM.from_source(BUSY, host=host, stage2="contiguous", ram_size=RAM)
    host.run()
    figures = host.pcpu_figures()
    used = {s.pcpu for s in host.trace.segments}
    assert len(used) == 1
    for core in figures:
        assert core["idle_ticks"] == core["ticks"] - busy(host, core["pcpu"])
        if core["pcpu"] not in used:
            assert core["idle_ticks"] == core["ticks"] > 0 and core["world_switches"] == 0


def test_cores_whose_vcpus_turned_themselves_off_idle_while_the_boot_vcpu_works_on():
    host = Host(pcpus=4)
    VM.from_image(image_from_file(c_guest("smp")), host=host, vcpus=4, ram_size=RAM)
    result = host.run().vms[0]
    assert [v["state"] for v in result.vcpus] == ["runnable", "off", "off", "off"]
    figures = host.pcpu_figures()
    assert figures[0]["idle_ticks"] == 0
    for core in figures[1:]:
        last = max(s.end for s in host.trace.segments if s.pcpu == core["pcpu"])  # a secondary ran here...
        assert core["ticks"] > last  # ... and then nothing did
        assert core["idle_ticks"] == core["ticks"] - busy(host, core["pcpu"]) > 0
