"""Chapter 1 exercises: the physical machine. Every expectation comes from running vlab's machine."""

from __future__ import annotations


from vlab.asm import assemble, disassemble_one
from vlab.errors import AssemblyError
from vlab.grading.exercise import Case, Exercise, Test
from vlab.grading.kinds import AssemblyAnswer, FunctionAnswer
from vlab.grading.plain import show
from vlab.machine.board import Board, RunResult, StopReason
from vlab.machine.loader import image_from_program, load
from vlab.machine.uart import FR, PL011

MODULE = "ch01_machine"
OFF = "    ldr x0, =0x84000008\n    hvc #0\n"
FLAG_NAMES = ("BUSY", "RXFE", "TXFF", "RXFF", "TXFE")


def run_guest(source: str, typed: str = "", max_insns: int = 1_000_000,
              uart: PL011 | None = None) -> tuple[Board, RunResult]:
    board = Board(ram_size=0x20_0000, uart=uart)
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


def _flag_cases(values) -> list[Case]:
    return [Case(f"UARTFR = {v:#x}", (v,), flags_from_the_machine(v)) for v in values]


def _read_by_the_guest(typed: str):
    def cases(rng):
        board, _ = run_guest(READ_FLAGS_GUEST, typed)
        return _flag_cases(a.value for a in board.mmio_trace if a.register == "UARTFR" and not a.is_write)
    return cases


def _every_combination(rng):
    """All 32 combinations of the five flags, in a random order, half of them among other bits."""
    flags = sum(getattr(FR, n) for n in FLAG_NAMES)
    values = [sum(getattr(FR, n) for i, n in enumerate(FLAG_NAMES) if bits >> i & 1)
              | (rng.getrandbits(32) & ~flags if rng.random() < 0.5 else 0) for bits in range(32)]
    rng.shuffle(values)
    return _flag_cases(values)


def _other_bits(rng):
    """Flags among other bits set at random: CTS, DSR, DCD (bits 0-2), RI (8) and the reserved ones."""
    flags = sum(getattr(FR, n) for n in FLAG_NAMES)
    return _flag_cases(rng.getrandbits(32) & ~flags | rng.getrandbits(5) << 3 for _ in range(20))


def _shifted_bits(case: Case, got) -> str | None:
    value = case.args[0]
    if isinstance(got, (set, frozenset)) and got in (flags_from_the_machine(value >> 1),
                                                     flags_from_the_machine(value << 1)) and got != case.expected:
        return "bit n is set when value >> n & 1: BUSY is bit 3, RXFE 4, TXFF 5, RXFF 6, TXFE 7"
    return None


def _not_a_set(case: Case, got) -> str | None:
    if isinstance(got, (list, tuple, dict, str)):
        return 'return a set of names, e.g. {"RXFE", "TXFE"}: a set has no order and no repeats'
    return None


def _other_names(case: Case, got) -> str | None:
    if isinstance(got, (set, frozenset)) and any(name not in FLAG_NAMES for name in got):
        return "name only BUSY, RXFE, TXFF, RXFF and TXFE, spelled as in the docstring; ignore the other bits"
    return None


DECODE_UART_FLAGS = Exercise(
    id="ch01.decode_uart_flags",
    title="Decode the UART's flag register",
    statement=("A guest checks UARTFR (PL011 offset 0x18) before it writes a byte. Given a value read from "
               "it, as in vlab's MMIO trace, return the set of names of the flags set among BUSY (bit 3), "
               "RXFE (4, receive FIFO empty), TXFF (5, transmit FIFO full), RXFF (6) and TXFE (7)."),
    points=2,
    module=MODULE,
    kind=FunctionAnswer((_not_a_set, _other_names, _shifted_bits)),
    tests=(
        Test("flags the guest read with nothing typed", _read_by_the_guest(""),
             hint="bit n is set when value >> n & 1; an empty receive FIFO sets RXFE"),
        Test("flags the guest read with a key pressed", _read_by_the_guest("A"),
             hint="with a byte waiting, RXFE (bit 4) is clear until the guest reads UARTDR"),
        Test("each flag alone", lambda rng: _flag_cases(getattr(FR, n) for n in FLAG_NAMES)),
        Test("every combination of the five flags", _every_combination, hidden=True),
        Test("other bits are not flags", _other_bits, hidden=True,
             hint="bits 0-2 and 8 and up are other signals: ignore them"),
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


def _svc_cases(immediates) -> list[Case]:
    return [Case(f"svc #{i:#x}", (i,), esr_the_machine_reports(i)) for i in immediates]


def _il_missing(case: Case, got) -> str | None:
    if type(got) is int and got == case.expected & ~(1 << 25):
        return "IL (bit 25) is 1: SVC is a 32-bit instruction, as every AArch64 instruction is"


def _ec_wrong(case: Case, got) -> str | None:
    if type(got) is int and got >> 26 != case.expected >> 26:
        return f"EC goes in bits [31:26]: {case.expected >> 26:#x} for an SVC from AArch64 ({show(got >> 26)} here)"


def _iss_wrong(case: Case, got) -> str | None:
    if type(got) is int and got & 0x1FF_FFFF != case.expected & 0x1FF_FFFF:
        return "for an SVC the ISS holds the immediate in bits [15:0], and nothing else"


def _hex_text(case: Case, got) -> str | None:
    if type(got) is str:
        return "a hex string looks like the number but is text: return the int itself"


SVC_ESR = Exercise(
    id="ch01.svc_esr",
    title="The syndrome of a system call",
    statement=("When a program executes SVC #imm16, the CPU writes ESR_EL1: the exception class in bits "
               "[31:26], IL in bit 25, the ISS in [24:0]. Return the ESR_EL1 value for SVC #imm16 "
               "(0 <= imm16 < 65536) executed in AArch64 state. Tests compare with what vlab's machine writes."),
    points=2,
    module=MODULE,
    kind=FunctionAnswer((_hex_text, _ec_wrong, _il_missing, _iss_wrong)),
    tests=(
        Test("svc #0", lambda rng: _svc_cases([0]),
             hint="EC for SVC from AArch64 is 0x15; IL is 1 for a 32-bit instruction"),
        Test("svc #1 and svc #0x1234", lambda rng: _svc_cases([1, 0x1234]), hint="the immediate goes in ISS[15:0]"),
        Test("random immediates", lambda rng: _svc_cases(rng.sample(range(65536), 8)), hidden=True),
        Test("the largest immediates", lambda rng: _svc_cases([0xFFFF, 0x8000, rng.randrange(0x8000, 0x10000)]),
             hidden=True, hint="all 16 bits of the immediate are kept"),
    ),
)


# --- ch01.print_number_source ------------------------------------------------------------------

class BusyUart(PL011):
    """A PL011 whose transmit FIFO fills up: after each byte, TXFF stays set (and TXFE clear) for
    the next `delay` reads of UARTFR; a byte written meanwhile is lost, as a full FIFO drops it."""

    def __init__(self, delay: int):
        super().__init__()
        self.delay, self._busy, self.lost = delay, 0, bytearray()

    def flags(self) -> int:
        return super().flags() & ~FR.TXFE | FR.TXFF if self._busy else super().flags()

    def read(self, offset: int, size: int) -> int:
        value = super().read(offset, size)
        if offset == 0x018 and self._busy:
            self._busy -= 1
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0x000 and self._busy:
            self.lost.append(value & 0xFF)
            return
        super().write(offset, size, value)
        if offset == 0x000:
            self._busy = self.delay


def _harness(number: int) -> str:
    return f"""_start:
    ldr x1, =0x40100000
    mov sp, x1
    ldr x0, ={number:#x}
    bl print_number
{OFF}"""


def run_print_number(source: str, case: Case) -> dict:
    """The student's routine after a harness that calls it with x0 = number, then powers off."""
    number, delay = case.args
    harness = _harness(number)
    try:
        program = assemble(harness + source)
    except AssemblyError as e:
        if e.line is None or e.line <= harness.count("\n"):
            raise AssertionError(f"your assembly: {e}") from None
        # Say where in *their* source: the harness lines come first.
        raise AssertionError(f"your assembly, line {e.line - harness.count(chr(10))}: {e.text.strip()!r}: "
                             f"{e.reason}") from None
    uart = BusyUart(delay)
    board = Board(ram_size=0x20_0000, uart=uart)
    load(board, image_from_program(program))
    result = board.run(max_insns=2_000_000, timeout_s=5)
    line = program.line_at(result.pc)
    try:
        instruction = disassemble_one(board.read_memory(result.pc, 4), result.pc).text
    except ValueError:
        instruction = "(no memory there)"
    return {"reason": result.reason.value, "message": result.message, "uart": uart.text, "pc": result.pc,
            "instruction": instruction, "lost": uart.lost.decode(errors="replace"),
            "line": None if line is None else line.number - harness.count("\n")}


def judge_print_number(case: Case, observed: dict) -> str:
    if observed["reason"] != StopReason.POWERED_OFF.value:
        where = f" (line {observed['line']} of your source)" if observed["line"] and observed["line"] > 0 else ""
        return (f"did not return: {observed['message']}. UART output so far: {observed['uart']!r}; it stopped at "
                f"{observed['pc']:#x} `{observed['instruction']}`{where}")
    if observed["lost"]:
        return (f"wrote {observed['lost']!r} to UARTDR while UARTFR.TXFF was set: a full transmit FIFO drops the "
                f"byte (the UART printed {observed['uart']!r})")
    if observed["uart"] != case.expected:
        return f"printed {observed['uart']!r}, expected {case.expected!r}"
    return ""


def _lr_clobbered(case: Case, got) -> str | None:
    source, observed = got
    calls = any(line.split("//")[0].split()[:1] == ["bl"] for line in source.splitlines())
    if observed["reason"] in ("budget", "timeout") and calls:
        return ("a `bl` inside print_number overwrites x30, the link register, so its own `ret` comes back to "
                "itself: save x30 first (stp x29, x30, [sp, #-16]!) and restore it before `ret`")


def _endless(case: Case, got) -> str | None:
    if got[1]["reason"] in ("budget", "timeout"):
        return ("the usual causes of an endless loop: a loop whose condition never changes (which register does "
                "cbnz test, and does the loop change it?), or waiting on the wrong UARTFR bit (TXFF is bit 5)")


def _txff_ignored(case: Case, got) -> str | None:
    if got[1]["lost"]:
        return "before each byte, wait while TXFF is set: ldr w6, [x1, #0x18]; tbnz w6, #5, wait"


def _reversed(case: Case, got) -> str | None:
    uart = got[1]["uart"]
    if len(case.expected) > 1 and uart == case.expected[::-1]:
        return "the digits come out last first (x % 10 is the last digit): keep them, then print them in reverse"
    if uart.rstrip("\r\n") == case.expected != uart:
        return "print the number only: no newline"
    if uart.startswith("-"):
        return "the number is unsigned: use udiv, not sdiv"
    if case.expected == "0" and uart == "":
        return "0 still has one digit: print it even when the loop has nothing to divide"


PRINT_NUMBER = Exercise(
    id="ch01.print_number_source",
    title="Print a number through the UART, in assembly",
    statement=("Write the AArch64 routine print_number: it prints x0 as an unsigned decimal number "
               "(no newline) through the PL011 UART at 0x0900_0000 (wait while UARTFR.TXFF is set, then "
               "write the byte to UARTDR) and returns with `ret`. A stack is set up (sp). "
               "print_number_source() returns its source; the tests assemble it and run it on vlab."),
    points=4,
    module=MODULE,
    kind=AssemblyAnswer(run_print_number, judge_print_number, (_lr_clobbered, _txff_ignored, _endless, _reversed)),
    tests=(
        Test("prints 42", lambda rng: [Case("print_number(42)", (42, 0), "42")],
             hint="divide by 10 with udiv and msub; the digits come out last first"),
        Test("prints 0", lambda rng: [Case("print_number(0)", (0, 0), "0")], hint="0 still has one digit"),
        Test("prints 1234567890", lambda rng: [Case("print_number(1234567890)", (1234567890, 0), "1234567890")]),
        Test("waits while the transmit FIFO is full", lambda rng: [
            Case("print_number(907) with the UART busy after each byte", (907, 2), "907")],
             hint="a byte written while UARTFR.TXFF (bit 5) is set is lost: wait for it to clear"),
        Test("the largest 64-bit numbers", lambda rng: [
            Case(f"print_number({n})", (n, 0), str(n)) for n in (2**64 - 1, rng.randrange(2**63, 2**64))],
             hidden=True, hint="the number is unsigned: use udiv, not sdiv"),
        Test("round numbers", lambda rng: [
            Case(f"print_number({n})", (n, 0), str(n)) for n in sorted(10 ** k for k in rng.sample(range(1, 20), 3))],
             hidden=True, hint="a digit 0 in the middle or at the end is still printed"),
        Test("random numbers, the UART busy for a while after each byte", lambda rng: [
            Case(f"print_number({n}) with the UART busy for {d} reads after each byte", (n, d), str(n))
            for n, d in ((rng.getrandbits(rng.randrange(4, 65)), rng.randrange(1, 5)) for _ in range(4))],
             hidden=True, hint="wait while TXFF is set before every byte"),
    ),
)

EXERCISES = (DECODE_UART_FLAGS, SVC_ESR, PRINT_NUMBER)
