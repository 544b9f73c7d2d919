"""Chapter 2 exercises: trap and emulate. A student's handler replaces vlab's in a VM, and the
guest must end exactly as it does on the bare board (Popek and Goldberg's equivalence)."""

from __future__ import annotations

import random

from vlab.arch.esr import ExceptionClass
from vlab.asm import assemble
from vlab.grading.exercise import Exercise, Test, expect
from vlab.guests import GUESTS
from vlab.hyp import HCR, VM
from vlab.hyp.equivalence import differences
from vlab.machine.board import Board, StopReason
from vlab.machine.loader import Image, image_from_program, load

MODULE = "ch02_trap_and_emulate"
RAM = 0x40_0000
OFF = "    ldr x0, =0x84000008\n    hvc #0\n"


def compare_with_bare(image: Image, traps: HCR, ec: ExceptionClass, handler, what: str) -> None:
    """Run image on the bare board and in a VM whose `ec` exits go to `handler`; all must match."""
    bare = Board(ram_size=RAM)
    load(bare, image)
    expected = bare.run(max_insns=1_000_000, timeout_s=5)
    vm = VM.from_image(image, traps=traps, ram_size=RAM)
    vm.set_handler(ec, handler)
    got = vm.run(max_insns=1_000_000, timeout_s=5)
    if got.reason is StopReason.ERROR:
        raise AssertionError(f"{what}: {got.message}")
    if vm.exits.get(ec.name, 0) == 0:
        raise AssertionError(f"{what}: the guest never exited with {ec.name}, so your handler was not tested")
    expect(got.uart, expected.uart, f"{what}: UART output")
    expect(got.reason, expected.reason, f"{what}: how the run ended ({got.message})")
    diff = differences(bare, vm.vcpus[0])
    if diff:
        raise AssertionError(f"{what}: the guest's state differs from the bare machine's: {'; '.join(diff[:4])}")


def _guest_test(name: str, traps: HCR, ec: ExceptionClass):
    def test(handler):
        compare_with_bare(GUESTS[name].image(), traps, ec, handler, f"{name}.S")
    return test


def _source_test(source: str, traps: HCR, ec: ExceptionClass, what: str):
    def test(handler):
        compare_with_bare(image_from_program(assemble(source)), traps, ec, handler, what)
    return test


# --- ch02.handle_sysreg -----------------------------------------------------------------------

REGISTERS = ["mair_el1", "tcr_el1", "ttbr0_el1", "ttbr1_el1", "contextidr_el1", "amair_el1", "far_el1"]


def random_sysreg_program(seed: int) -> str:
    rng = random.Random(seed)
    lines = []
    for _ in range(20):
        reg, rt = rng.choice(REGISTERS), rng.randrange(1, 31)
        if rng.random() < 0.5:
            lines.append(f"    ldr x{rt}, ={rng.getrandbits(32):#x}\n    msr {reg}, x{rt}")
        else:
            lines.append(f"    mrs x{rt}, {reg}")
    lines.append("    msr mair_el1, xzr\n    mrs x30, id_aa64mmfr0_el1\n    mrs xzr, tcr_el1")
    return "\n".join(lines) + "\n" + OFF


SYSREG_TRAPS = HCR.TVM | HCR.TRVM | HCR.TID3
HANDLE_SYSREG = Exercise(
    id="ch02.handle_sysreg",
    title="Emulate a trapped system-register access",
    statement=("Write the hypervisor's handler for exception class 0x18 (a trapped MRS/MSR): decode the ISS, "
               "read or write the vCPU's copy of the register, move the guest past the instruction."),
    points=4,
    module=MODULE,
    tests=(
        Test("syscall.S with TRVM", _guest_test("syscall", HCR.TRVM, ExceptionClass.SYS64),
             hint="for an MRS (is_read), the value goes into register Rt; then vcpu.skip(exit)"),
        Test("sensitive.S with TVM, TRVM and TID3", _guest_test("sensitive", SYSREG_TRAPS, ExceptionClass.SYS64),
             hint="an MSR writes x[Rt] into the vCPU's register: vcpu.write_sysreg(name, vcpu.x(rt))"),
        Test("random reads and writes", _source_test(random_sysreg_program(7), SYSREG_TRAPS, ExceptionClass.SYS64,
                                                     "random program"), hidden=True,
             hint="Rt = 31 is the zero register: vcpu.x(31) reads 0 and vcpu.set_x(31, v) discards v"),
        Test("more random reads and writes", _source_test(random_sysreg_program(11), SYSREG_TRAPS,
                                                          ExceptionClass.SYS64, "random program"), hidden=True),
    ),
)


# --- ch02.handle_uart_access ------------------------------------------------------------------

ACCESS_WIDTHS = f"""    ldr x1, =0x09000000
    mov x2, #0x41
    strb w2, [x1]             // a byte store to UARTDR
    mov x2, #0x42
    strh w2, [x1]             // a halfword store
    ldrb w3, [x1, #0x18]      // UARTFR, a byte
    ldrh w4, [x1, #0x18]
    ldrsb x5, [x1, #0xfe4]    // UARTPeriphID1, sign-extended to 64 bits
    ldrsh w6, [x1, #0x18]     // sign-extended to 32 bits
    ldr w7, [x1, #0xfe0]
    mov x8, #13
    str w8, [x1, #0x24]       // UARTIBRD
    ldr w9, [x1, #0x24]
    str wzr, [x1, #0x24]      // the zero register
    ldr w10, [x1, #0x24]
{OFF}"""

HANDLE_UART_ACCESS = Exercise(
    id="ch02.handle_uart_access",
    title="Emulate a UART access from a data-abort exit",
    statement=("Write the hypervisor's handler for exception class 0x24 (a data abort from the guest): the guest "
               "touched the UART, which is not mapped; perform its load or store on the emulated PL011 using the "
               "syndrome (ISV, SAS, SSE, SRT, SF, WnR), then move the guest past the instruction."),
    points=4,
    module=MODULE,
    tests=(
        Test("hello.S prints through your handler", _guest_test("hello", HCR(0), ExceptionClass.DABT_LOWER),
             hint="a store (wnr) writes x[SRT] to the device; a load puts the device's value in x[SRT]"),
        Test("sensitive.S", _guest_test("sensitive", HCR(0), ExceptionClass.DABT_LOWER),
             hint="the register offset is exit.ipa - device.base"),
        Test("bytes, halfwords, sign extension, the zero register",
             _source_test(ACCESS_WIDTHS, HCR(0), ExceptionClass.DABT_LOWER, "access widths"), hidden=True,
             hint="sign-extend from 8*size bits when sse; keep 32 bits unless sf"),
    ),
)

EXERCISES = (HANDLE_SYSREG, HANDLE_UART_ACCESS)
