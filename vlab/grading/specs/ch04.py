"""Chapter 4 exercises: interrupts. A student's encoder writes every list register a VM's vGIC fills,
and the guests must run as on the bare board; the fields are read back by vlab's decoder, the way
the virtual CPU interface reads them."""

from __future__ import annotations

import random

from vlab.grading.exercise import Exercise, Test, expect
from vlab.guests import GUESTS, IPI_TEXT
from vlab.hyp import HCR, VM
from vlab.hyp.equivalence import differences
from vlab.machine.board import Board, StopReason
from vlab.machine.gic_virt import ListRegister, LrState
from vlab.machine.loader import load

MODULE = "ch04_interrupts"
RAM = 0x40_0000
STATE_NAMES = {LrState.INVALID: "invalid", LrState.PENDING: "pending", LrState.ACTIVE: "active",
               LrState.PENDING_ACTIVE: "pending+active"}


def _encoder(list_register):
    """vlab's list register, as the student's function writes it."""
    def encode(lr: ListRegister) -> int:
        return list_register(lr.vintid, STATE_NAMES[lr.state], lr.priority, lr.group,
                             lr.physical if lr.hw else None, lr.cpuid, lr.eoi)
    return encode


def _vm_with(list_register, traps: HCR = HCR(0), vcpus: int = 1, guest: str = "ticks") -> VM:
    list_register(0, "invalid", 0)  # an answer not written yet says so here, not from inside the VM
    vm = VM.from_image(GUESTS[guest].image(), traps=traps, vcpus=vcpus, ram_size=RAM)
    vm.vgic.encode = _encoder(list_register)
    return vm


def _same_as_the_board(traps: HCR):
    def test(list_register):
        board = Board(ram_size=RAM)
        load(board, GUESTS["ticks"].image())
        expected = board.run(max_insns=1_000_000, timeout_s=5)
        vm = _vm_with(list_register, traps)
        got = vm.run(max_insns=1_000_000, timeout_s=5)
        expect(got.uart, expected.uart, "ticks.S in a VM: what it printed")
        expect(got.reason, expected.reason, f"ticks.S in a VM: how the run ended ({got.message})")
        diff = differences(board, vm.vcpus[0])
        if diff:
            raise AssertionError(f"ticks.S in a VM: the guest's state differs from the bare board's: {'; '.join(diff[:4])}")
    return test


def _ipi_test(list_register):
    got = _vm_with(list_register, vcpus=2, guest="ipi").run(max_insns=1_000_000, timeout_s=5)
    expect(got.uart, IPI_TEXT, f"ipi.S on two vCPUs ({got.message})")


def _fields(cases):
    def test(list_register):
        for lr in cases():
            got = ListRegister.decode(_encoder(list_register)(lr))
            want = ListRegister.decode(lr.encode())  # what the hardware sees, of the fields it has
            expect(got, want, f"list_register({lr.vintid}, {STATE_NAMES[lr.state]!r}, {lr.priority:#x}, "
                              f"group={lr.group}, physical={lr.physical if lr.hw else None}, source={lr.cpuid}, "
                              f"eoi={lr.eoi}) read back by the virtual CPU interface")
    return test


def _chosen_fields():
    return [ListRegister(27, LrState.PENDING, 0xA0, hw=True, physical=27),
            ListRegister(3, LrState.PENDING, 0x80, cpuid=2, eoi=True),
            ListRegister(40, LrState.ACTIVE, 0x10, group=1),
            ListRegister(1019, LrState.PENDING_ACTIVE, 0xF8),
            ListRegister(0, LrState.INVALID, 0)]


def _random_fields():
    rng = random.Random(12)
    cases = []
    for _ in range(300):
        hw = rng.random() < 0.3
        cases.append(ListRegister(rng.randrange(1020), LrState(rng.randrange(4)), rng.randrange(256) & 0xF8,
                                  rng.randrange(2), hw, rng.randrange(1020) if hw else 0,
                                  not hw and rng.random() < 0.5, 0 if hw else rng.randrange(8)))
    return cases


LIST_REGISTER = Exercise(
    id="ch04.list_register",
    title="Write a list register",
    statement=("Write the function that encodes a GICH_LR: the virtual INTID, its state, priority and group, and "
               "either the physical interrupt behind it or, for one made in software, an SGI's source CPU and "
               "the request for an EOI maintenance interrupt. The hypervisor writes every list register with it."),
    points=4,
    module=MODULE,
    tests=(
        Test("the fields, one at a time", _fields(_chosen_fields),
             hint="state in bits [29:28]; the priority's top five bits (priority >> 3) in [27:23]"),
        Test("ticks.S in a VM: the virtual timer through your list registers", _same_as_the_board(HCR(0)),
             hint="the timer is a hardware interrupt: HW (bit 31) and the physical INTID in [19:10] make the "
                  "guest's EOI deactivate it; without them it never fires again"),
        Test("ipi.S on two vCPUs: an SGI from the other vCPU", _ipi_test,
             hint="an SGI's source CPU goes in bits [12:10]: GICC_IAR reports it to the guest"),
        Test("ticks.S with WFI trapped", _same_as_the_board(HCR.TWI), hidden=True),
        Test("random fields", _fields(_random_fields), hidden=True,
             hint="bit 19 (EOI) and bits [12:10] exist only when HW is 0"),
    ),
)

EXERCISES = (LIST_REGISTER,)
