"""A host refuses what it cannot run with a clear error before anything runs, and a refused VM
leaves the host as it was: the VMs already on it still run."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlab.guests import GUESTS
from vlab.hyp.host import MAX_PCPUS, Host
from vlab.hyp.memory import LAYOUTS, HostMemory, VmMemory, frames_needed
from vlab.hyp.vm import MAX_VCPUS, VM
from vlab.machine.board import RAM_BASE, StopReason
from vlab.mmu.tables import PAGE
from vlab.sched import SchedError
from vlab.sched.registry import make_policy

MIB = 0x10_0000
HELLO = GUESTS["hello"]


def still_runs(host: Host, vms: int) -> None:
    """The host has exactly `vms` VMs, and they run to their end."""
    assert len(host.vms) == vms
    result = host.run(max_insns=1_000_000)
    assert [r.uart for r in result.vms] == [HELLO.expected_uart] * vms
    assert all(r.reason is StopReason.POWERED_OFF for r in result.vms)


@pytest.mark.parametrize("vcpus", [0, -1, MAX_VCPUS + 1, 64])
def test_a_vm_with_more_vcpus_than_allowed_is_refused_naming_the_limit(vcpus):
    host = Host(pcpus=2)
    VM.from_image(HELLO.image(), host=host, stage2="contiguous", ram_size=MIB)
    with pytest.raises(ValueError, match=f"1 to {MAX_VCPUS} vCPUs, not {vcpus}"):
        VM.from_image(HELLO.image(), host=host, stage2="contiguous", ram_size=MIB, vcpus=vcpus)
    still_runs(host, 1)


@pytest.mark.parametrize("pcpus", [0, -2, MAX_PCPUS + 1])
def test_a_host_with_no_or_too_many_physical_cpus_is_refused(pcpus):
    with pytest.raises(ValueError, match=rf"1 to {MAX_PCPUS} physical CPUs \(its GICv2 serves {MAX_PCPUS}\), not {pcpus}"):
        Host(pcpus=pcpus)


def test_a_vm_that_does_not_fit_in_the_hosts_free_memory_is_refused_naming_the_sizes():
    host = Host(pcpus=2, memory=8 * MIB)
    VM.from_image(HELLO.image(), host=host, stage2="contiguous", ram_size=4 * MIB)
    with pytest.raises(ValueError) as refused:
        VM.from_image(HELLO.image(), host=host, stage2="scattered", ram_size=4 * MIB)
    message = str(refused.value)
    # 4 MiB of RAM is 1,024 frames, plus its stage-2 tables (a root of two concatenated pages, a
    # level-2 table for its GiB and a level-3 table for each of its two 2 MiB spans); the first VM
    # took as many of the host's 2,048
    assert "4 MiB of RAM" in message and "1,029 host frames" in message
    assert "1,019 of the host's 2,048 frames (8 MiB) are free" in message
    still_runs(host, 1)
    smaller = VM.from_image(HELLO.image(), host=host, stage2="scattered", ram_size=2 * MIB)
    assert smaller.run().uart == HELLO.expected_uart  # what does fit is taken


def test_a_vm_larger_than_the_whole_host_is_refused():
    host = Host(memory=HostMemory(4 * MIB))
    with pytest.raises(ValueError, match="needs 1,029 host frames"):
        VM.from_image(HELLO.image(), host=host, stage2="contiguous", ram_size=4 * MIB)
    assert host.vms == []


@settings(max_examples=40)
@given(pages=st.integers(1, 1536), start=st.integers(0, 1023), layout=st.sampled_from(LAYOUTS))
def test_the_frames_a_vm_is_refused_for_are_the_frames_it_takes(pages, start, layout):
    # the check before a VM is made counts exactly what making its memory then takes
    host = HostMemory(8 * MIB)
    base = RAM_BASE + start * PAGE  # RAM that may straddle 2 MiB spans
    before = host.frames.free
    VmMemory(host, base, pages * PAGE, layout)
    assert before - host.frames.free == frames_needed(base, pages * PAGE, layout)


def test_a_demand_paged_vm_may_be_larger_than_the_free_memory_it_has_not_touched():
    # Demand paging takes frames as pages are first touched: only its root table is taken now.
    host = Host(memory=2 * MIB)
    vm = VM.from_image(HELLO.image(), host=host, stage2="demand", ram_size=16 * MIB)
    assert vm.run().uart == HELLO.expected_uart


def test_an_unknown_stage2_layout_is_refused_before_the_vm_joins_the_host():
    host = Host(pcpus=2)
    VM.from_image(HELLO.image(), host=host, stage2="contiguous", ram_size=MIB)
    with pytest.raises(ValueError, match="unknown RAM layout 'striped'"):
        VM.from_image(HELLO.image(), host=host, stage2="striped", ram_size=MIB)
    still_runs(host, 1)


@pytest.mark.parametrize("first, second", [(None, "contiguous"), ("contiguous", None), (None, None)])
def test_a_vm_without_stage2_cannot_share_a_host(first, second):
    host = Host(pcpus=2)
    VM.from_image(HELLO.image(), host=host, stage2=first, ram_size=MIB)
    with pytest.raises(ValueError, match="only a VM alone on its host can run without stage-2 tables"):
        VM.from_image(HELLO.image(), host=host, stage2=second, ram_size=MIB)
    still_runs(host, 1)


def test_a_vmid_already_taken_is_refused():
    host = Host()
    VM.from_image(HELLO.image(), host=host, stage2="contiguous", ram_size=MIB, vmid=7)
    with pytest.raises(ValueError, match="VMID 7 is taken"):
        VM.from_image(HELLO.image(), host=host, stage2="contiguous", ram_size=MIB, vmid=7)
    still_runs(host, 1)


@pytest.mark.parametrize("budget", [0, -5])
def test_a_run_without_a_positive_budget_is_refused(budget):
    host = Host()
    VM.from_image(HELLO.image(), host=host, stage2="contiguous", ram_size=MIB)
    with pytest.raises(ValueError, match="instruction budget must be positive"):
        host.run(max_insns=budget)
    still_runs(host, 1)


def test_co_scheduling_refuses_a_vm_with_more_vcpus_than_cores_before_any_runs():
    host = Host(pcpus=2, scheduler=make_policy("cosched", pcpus=2))
    vm = VM.from_image(HELLO.image(), host=host, stage2="contiguous", ram_size=MIB, vcpus=3)
    with pytest.raises(SchedError, match="more vCPUs than the host's 2 pCPU"):
        host.run()
    assert [v.instructions for v in vm.vcpus] == [0, 0, 0] and vm.uart.text == ""
