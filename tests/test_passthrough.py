"""Device assignment (issue #13): a device passed through to one VM makes no exits and is out of every
other VM's reach; the same device emulated and shared costs an exit per access; and assigning a
device twice is refused before anything runs."""

from __future__ import annotations

import pytest

from vlab.arch.esr import DataAbort, ExceptionClass, FaultStatus, Syndrome
from vlab.hyp import VM, Host
from vlab.hyp.assign import PHYSICAL_DEVICES, SECOND_UART, AssignmentError, passthrough, second_uart, share
from vlab.hyp.hypervisors import STRUCTURES, boot, run
from vlab.hyp.scenarios import CAR_INFOTAINMENT, GUEST_RAM, assignment, car, device_writer, probes
from vlab.machine.board import StopReason
from vlab.machine.loader import image_from_program
from vlab.mmu.walk import walk

COUNT = 64


def test_a_device_passed_through_makes_no_exits():
    run_ = assignment(COUNT, "passthrough")
    assert run_.results[0].reason is StopReason.POWERED_OFF
    assert run_.results[0].exits == {"HVC64": 1}  # only the power-off
    assert run_.device.text == "A" * COUNT


def test_the_same_device_emulated_and_shared_is_an_exit_per_access_and_serves_every_vm():
    run_ = assignment(COUNT, "shared", vms=2)
    assert [r.exits["DABT_LOWER"] for r in run_.results] == [2 * COUNT, 2 * COUNT]  # UARTFR, then UARTDR
    assert sorted(run_.device.text) == sorted("A" * COUNT + "B" * COUNT)


def test_the_stage2_entry_is_device_memory_read_write_never_executable():
    host = Host(memory=0x40_0000)
    vm = VM.from_image(image_from_program(device_writer(1)), host=host, stage2="contiguous", ram_size=GUEST_RAM)
    entry = passthrough(second_uart("link"), vm)
    t = walk(host.memory.memory, vm.memory.regime, vm.memory.tables.root, SECOND_UART + 0x18)
    assert t.output == PHYSICAL_DEVICES + 0x18 == entry.pa + 0x18
    assert (t.leaf.attr, t.leaf.ap, t.leaf.xn) == (0b0001, 0b11, True)  # Device-nGnRE, S2AP RW, XN


@pytest.mark.parametrize("hyp", sorted(STRUCTURES))
def test_passthrough_makes_no_exits_under_every_structure(hyp):
    vm, structure = boot(image_from_program(device_writer(COUNT)), hyp, ram_size=GUEST_RAM)
    device = second_uart("link")
    passthrough(device, vm)
    result = run(vm)
    assert result.exits == {"HVC64": 1} and device.text == "B" * COUNT
    assert [r.kind for r in structure.log if r.vm == vm.index] == ["HVC64"]


@pytest.mark.parametrize("infotainment", sorted(CAR_INFOTAINMENT))
def test_the_safety_vm_sends_the_same_messages_whatever_the_infotainment_vm_does(infotainment):
    calm, other = car("spinner"), car(infotainment)
    assert other.messages == calm.messages > 0
    assert other.brake.text == "B" * calm.messages  # nothing of the infotainment VM's on the link


def test_another_vms_access_to_the_device_is_an_external_abort_in_that_vm():
    probed = car("prober")
    aborts, esr, far = probes(probed.info)
    assert aborts > 100 and probed.info.result().reason is StopReason.STOPPED  # it ran on, to the end
    syndrome = Syndrome.from_esr(esr)
    assert syndrome.ec is ExceptionClass.DABT_CURRENT
    assert DataAbort.from_iss(syndrome.iss).dfsc == FaultStatus.SYNC_EXTERNAL
    assert SECOND_UART <= far < SECOND_UART + 0x40
    assert b"X" not in probed.brake.output


# --- refused before anything runs -------------------------------------------------------------------

def two_vms(stage2: str | None = "contiguous"):
    host = Host(memory=0x80_0000)
    make = [VM.from_image(image_from_program(device_writer(1)), host=host, stage2=stage2, ram_size=GUEST_RAM)
            for _ in range(2 if stage2 else 1)]
    return host, make


def test_assigning_one_device_to_two_vms_is_refused():
    host, (a, b) = two_vms()
    device = second_uart("link")
    passthrough(device, a)
    with pytest.raises(AssignmentError, match="link is already passed through to VM 0"):
        passthrough(device, b)
    with pytest.raises(AssignmentError, match="passed through to VM 0: it cannot be shared"):
        share(device, [b])
    assert all(not vm.started for vm in (a, b)) and len(host.bus) == 1


def test_a_shared_device_cannot_be_passed_through():
    _, (a, b) = two_vms()
    device = second_uart("link")
    share(device, [a, b])
    with pytest.raises(AssignmentError, match="emulated for VMs 0, 1"):
        passthrough(device, a)


def test_passthrough_needs_stage2_and_a_free_address():
    _, (alone,) = two_vms(stage2=None)
    with pytest.raises(AssignmentError, match="no stage-2 tables"):
        passthrough(second_uart("link"), alone)
    _, (a, _) = two_vms()
    with pytest.raises(AssignmentError, match="already holds uart"):
        passthrough(second_uart("link"), a, ipa=0x0900_0000)
    with pytest.raises(AssignmentError, match="already holds ram"):
        passthrough(second_uart("link"), a, ipa=0x4000_0000)
    passthrough(second_uart("one"), a)
    with pytest.raises(AssignmentError, match="a device passed through"):
        passthrough(second_uart("two"), a)
    with pytest.raises(AssignmentError, match="4 KB pages"):
        passthrough(second_uart("three"), a, ipa=0x0905_0100)


# --- DMA: the SMMU translates a device's accesses through its VM's stage 2 ---------------------------

def smmu_host():
    from vlab.hyp.smmu import Smmu

    host = Host(memory=0x40_0000)
    a = VM(host=host, stage2="scattered", ram_size=GUEST_RAM, seed=1)
    b = VM(host=host, stage2="scattered", ram_size=GUEST_RAM, seed=2)
    return host, a, b, Smmu(host)


def test_dma_through_the_smmu_lands_in_the_vms_own_frames_even_across_scattered_pages():
    _, a, b, smmu = smmu_host()
    smmu.attach(1, a)
    before = b.read_memory(b.ram.base, b.ram.size)
    assert smmu.dma_write(1, 0x4000_1FF8, b"brake: 42 bar") and a.read_memory(0x4000_1FF8, 13) == b"brake: 42 bar"
    assert smmu.dma_read(1, 0x4000_1FF8, 13) == b"brake: 42 bar"
    assert b.read_memory(b.ram.base, b.ram.size) == before and smmu.events == []


def test_dma_outside_the_vm_is_an_smmu_event_and_writes_nothing():
    from vlab.hyp.smmu import C_BAD_STREAMID, F_PERMISSION, F_TRANSLATION

    _, a, b, smmu = smmu_host()
    smmu.attach(1, a)
    frame_of_b = b.memory.frame_of(b.ram.base)
    before = b.read_memory(b.ram.base, 16)
    assert not smmu.dma_write(1, frame_of_b, b"X" * 16)  # b's host frame, as an IPA of a: not a's
    assert not smmu.dma_write(1, a.ram.base + a.ram.size - 4, b"X" * 16)  # runs off a's RAM
    assert [e.number for e in smmu.events] == [F_TRANSLATION, F_TRANSLATION]
    assert b.read_memory(b.ram.base, 16) == before
    a.memory.write_protect()
    assert not smmu.dma_write(1, a.ram.base, b"X") and smmu.events[-1].number == F_PERMISSION
    assert not smmu.dma_write(5, a.ram.base, b"X") and smmu.events[-1].number == C_BAD_STREAMID


def test_without_translation_a_devices_dma_overwrites_another_vms_ram():
    _, _, b, smmu = smmu_host()
    smmu.bypass(2)
    assert smmu.dma_write(2, b.memory.frame_of(b.ram.base), b"OVERWRITTEN")
    assert b.read_memory(b.ram.base, 11) == b"OVERWRITTEN"  # why passthrough needs the SMMU


def test_the_smmu_needs_the_vms_stage2():
    from vlab.hyp.smmu import Smmu

    _, (alone,) = two_vms(stage2=None)
    with pytest.raises(ValueError, match="no stage-2 tables"):
        Smmu(alone.host).attach(1, alone)


def test_the_server_gives_its_database_a_disk_alone_and_its_web_servers_a_shared_card():
    from vlab.hyp.scenarios import server

    s = server(count=16)
    exits = {name: vm.exits.get("DABT_LOWER", 0) for name, vm in s.vms.items()}
    assert exits == {"db": 0, "web1": 32, "web2": 32}
    assert s.devices["disk"].text == "D" * 16 and sorted(s.devices["nic"].text) == sorted("W" * 16 + "X" * 16)
