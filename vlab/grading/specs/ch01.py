"""Chapter 1 exercises: the physical machine. Every expectation comes from running vlab's machine."""

from __future__ import annotations

import random

from vlab.asm import assemble
from vlab.errors import AssemblyError
from vlab.grading.exercise import Exercise, Test, expect
from vlab.machine.board import Board, RunResult, StopReason
from vlab.machine.loader import image_from_program, load
from vlab.machine.uart import FR

MODULE = "ch01_machine"
OFF = "    ldr x0, =0x84000008\n    hvc #0\n"
FLAG_NAMES = ("BUSY", "RXFE", "TXFF", "RXFF", "TXFE")


def run_guest(source: str, typed: str = "", max_insns: int = 1_000_000) -> tuple[Board, RunResult]:
    board = Board(ram_size=0x20_0000)
    load(board, image_from_program(assemble(source)))
    board.uart.feed(typed)
    return board, board.run(max_insns=max_insns, timeout_s=5)


# --- ch01.decode_uart_flags ------------------------------------------------------------------

# Reads the flag register, takes one byte from the receive FIFO, reads the flags again.
READ_FLAGS_GUEST = f"""    ldr x1, =0x09000000
    ldr w2, [x1, #0x18]
    ldr w3, [x1]
    ldr w4, [x1, #0x18]
{OFF}"""


def flags_from_the_machine(value: int) -> set[str]:
    """The names of the UARTFR bits set in value, by vlab's own PL011 definition."""
    return {name for name in FLAG_NAMES if value & getattr(FR, name)}


def flag_reads(typed: str) -> list[int]:
    board, _ = run_guest(READ_FLAGS_GUEST, typed)
    return [a.value for a in board.mmio_trace if a.register == "UARTFR" and not a.is_write]


def _trace_test(typed: str):
    def test(decode_uart_flags):
        for i, value in enumerate(flag_reads(typed)):
            expect(decode_uart_flags(value), flags_from_the_machine(value), f"UARTFR read #{i + 1} = {value:#x}")
    return test


def _every_combination(decode_uart_flags):
    for bits in range(32):
        value = sum(getattr(FR, name) for i, name in enumerate(FLAG_NAMES) if bits >> i & 1)
        expect(decode_uart_flags(value), flags_from_the_machine(value), f"UARTFR = {value:#x}")


def _ignores_other_bits(decode_uart_flags):
    value = FR.TXFE | 0xFF00_0000 | 0b111 | (1 << 8)  # CTS, DSR, DCD and RI are not flags we ask for
    expect(decode_uart_flags(value), {"TXFE"}, f"UARTFR = {value:#x}")


DECODE_UART_FLAGS = Exercise(
    id="ch01.decode_uart_flags",
    title="Decode the UART's flag register",
    statement=("A guest checks UARTFR (PL011 offset 0x18) before it writes a byte. Given a value read from "
               "it, as in vlab's MMIO trace, return the set of names of the flags set among BUSY (bit 3), "
               "RXFE (4, receive FIFO empty), TXFF (5, transmit FIFO full), RXFF (6) and TXFE (7)."),
    points=2,
    module=MODULE,
    tests=(
        Test("flags the guest read with nothing typed", _trace_test(""),
             hint="bit n is set when value >> n & 1; an empty receive FIFO sets RXFE"),
        Test("flags the guest read with a key pressed", _trace_test("A"),
             hint="with a byte waiting, RXFE (bit 4) is clear until the guest reads UARTDR"),
        Test("every combination of the five flags", _every_combination, hidden=True),
        Test("other bits are not flags", _ignores_other_bits, hidden=True),
    ),
)


# --- ch01.svc_esr ------------------------------------------------------------------------------

def esr_the_machine_reports(imm16: int) -> int:
    """Run `svc #imm16` on vlab's board and read the ESR_EL1 its exception entry wrote."""
    board, _ = run_guest(f"""    adr x0, vectors
    msr vbar_el1, x0
    svc #{imm16:#x}
    b .
    .balign 0x800
vectors:
    .balign 0x200
{OFF}""")
    return board.cpu.read_sysreg("ESR_EL1")


def _svc_test(immediates):
    def test(svc_esr):
        for imm16 in immediates:
            expect(svc_esr(imm16), esr_the_machine_reports(imm16), f"svc #{imm16:#x}")
    return test


SVC_ESR = Exercise(
    id="ch01.svc_esr",
    title="The syndrome of a system call",
    statement=("When a program executes SVC #imm16, the CPU writes ESR_EL1: the exception class in bits "
               "[31:26], IL in bit 25, the ISS in [24:0]. Return the ESR_EL1 value for SVC #imm16 "
               "(0 <= imm16 < 65536) executed in AArch64 state. Tests compare with what vlab's machine writes."),
    points=2,
    module=MODULE,
    tests=(
        Test("svc #0", _svc_test([0]), hint="EC for SVC from AArch64 is 0x15; IL is 1 for a 32-bit instruction"),
        Test("svc #1 and svc #0x1234", _svc_test([1, 0x1234]), hint="the immediate goes in ISS[15:0]"),
        Test("random immediates", _svc_test(random.Random(1).sample(range(65536), 8)), hidden=True),
        Test("svc #0xffff", _svc_test([0xFFFF]), hidden=True),
    ),
)


# --- ch01.print_number_source ------------------------------------------------------------------

def run_print_number(source: str, number: int) -> tuple[Board, RunResult]:
    """The student's routine after a harness that calls it with x0 = number, then powers off."""
    harness = f"""_start:
    ldr x1, =0x40100000
    mov sp, x1
    ldr x0, ={number:#x}
    bl print_number
{OFF}"""
    try:
        return run_guest(harness + source, max_insns=2_000_000)
    except AssemblyError as e:
        if e.line is None or e.line <= harness.count("\n"):
            raise
        # Say where in *their* source: the harness lines come first.
        raise AssertionError(f"your assembly, line {e.line - harness.count(chr(10))}: {e.text.strip()!r}: "
                             f"{e.reason}") from None


def _print_test(numbers):
    def test(print_number_source):
        source = print_number_source()
        if not isinstance(source, str):
            raise AssertionError(f"print_number_source() should return assembly source (a str), "
                                 f"not {type(source).__name__}")
        for number in numbers:
            board, state = run_print_number(source, number)
            if state.reason is not StopReason.POWERED_OFF:
                raise AssertionError(f"print_number({number}) did not return: {state.message}")
            expect(board.uart.text, str(number), f"UART output of print_number({number})")
    return test


PRINT_NUMBER = Exercise(
    id="ch01.print_number_source",
    title="Print a number through the UART, in assembly",
    statement=("Write the AArch64 routine print_number: it prints x0 as an unsigned decimal number "
               "(no newline) through the PL011 UART at 0x0900_0000 (wait while UARTFR.TXFF is set, then "
               "write the byte to UARTDR) and returns with `ret`. A stack is set up (sp). "
               "print_number_source() returns its source; the tests assemble it and run it on vlab."),
    points=4,
    module=MODULE,
    tests=(
        Test("prints 42", _print_test([42]), hint="divide by 10 with udiv and msub; the digits come out last first"),
        Test("prints 0", _print_test([0]), hint="0 still has one digit"),
        Test("prints 1234567890", _print_test([1234567890])),
        Test("the largest 64-bit number", _print_test([2**64 - 1]), hidden=True,
             hint="the number is unsigned: use udiv, not sdiv"),
        Test("round numbers", _print_test([10, 100, 1000]), hidden=True),
    ),
)

EXERCISES = (DECODE_UART_FLAGS, SVC_ESR, PRINT_NUMBER)
