"""Taking exceptions into the guest kernel, as the hardware does -- and noticing a guest that can
no longer make progress.

Unicorn enters no guest vector table for a synchronous exception (see vlab.machine.cpu): vlab
does, for the bare board's CPU and for each vCPU a physical CPU runs. `ExceptionEntry` is that
step for one guest-kernel context, with the one piece of judgement the hardware does not need
but a student does: an exception the guest kernel cannot handle stops the run with a message
saying why (no vector table, a broken one, the same exception again and again without
progress). IRQs the core takes by itself (vlab.machine.irq_line); they are logged here too.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from vlab.arch.esr import Syndrome
from vlab.machine.cpu import CPU, GuestException, Vector

_EXCEPTION_LOOP = 8  # the same exception this many times in a row, with no progress: stop


@dataclass(frozen=True)
class ExceptionTaken:
    """An exception the hardware delivered to the guest kernel."""

    tick: int
    vector: Vector
    from_el: int
    vector_address: int
    return_address: int
    syndrome: Syndrome | None

    def __str__(self) -> str:
        what = self.syndrome.describe() if self.syndrome else self.vector.name
        return f"[{self.tick:>8}] EL{self.from_el} -> EL1 {self.vector.name} at {self.vector_address:#x}: {what}"


class ExceptionEntry:
    """Exception entry into one guest kernel (a board's, or one vCPU's), with a log of what was taken."""

    def __init__(self, trace_limit: int = 10_000):
        self.taken: deque[ExceptionTaken] = deque(maxlen=trace_limit)
        self._vector_entered_at: int | None = None  # the retired count at the last entry
        self._repeats: tuple[tuple[int, int, int | None] | None, int] = (None, 0)  # (exception, times in a row)

    def deliver(self, cpu: CPU, exc: GuestException, retired: int, tick: int) -> str | None:
        """Enter the EL1 vector for synchronous exception `exc`, or say why the guest cannot take it.

        `retired` is the guest's instruction count (to tell whether its handler made progress) and
        `tick` its clock (for the log). None: the guest kernel now runs its handler. A message:
        the guest kernel cannot handle this exception, and the run should stop with it.
        """
        vbar = cpu.read_sysreg("VBAR_EL1")
        if vbar == 0:
            return explain(cpu, exc) + "; the guest has no vector table (VBAR_EL1 = 0) to handle it"
        if self._vector_entered_at == retired:
            return (explain(cpu, exc) + "; it happened at the exception vector itself before any instruction "
                    f"completed: the vector table (VBAR_EL1 = {vbar:#x}) is broken")
        if (times := self._count_repeats(exc, vbar)) >= _EXCEPTION_LOOP:
            return (explain(cpu, exc) + f"; the same exception was taken {times} times in a row without "
                    f"progress: the handler (VBAR_EL1 = {vbar:#x}) faults itself or returns to the faulting "
                    "instruction without fixing its cause -- an exception loop")
        self._enter(cpu, Vector.SYNC, exc.syndrome, exc.return_address, retired, tick, exc.far)
        return None

    def interrupt_taken(self, vector_address: int, return_address: int, from_el: int, retired: int,
                        tick: int) -> None:
        """The core took an IRQ (by itself) into the vector at `vector_address`; it returns to
        `return_address`. `retired` and `tick` as for `deliver`."""
        self._repeats = (None, 0)  # an interrupt in between: not a loop of one exception
        self._log(Vector.IRQ, from_el, vector_address, return_address, None, retired, tick)

    def _enter(self, cpu: CPU, vector: Vector, syndrome: Syndrome | None, return_address: int,
              retired: int, tick: int, far: int | None = None) -> None:
        from_el = cpu.el
        address = cpu.take_exception(vector, syndrome, return_address, far)
        self._log(vector, from_el, address, return_address, syndrome, retired, tick)

    def _log(self, vector: Vector, from_el: int, address: int, return_address: int, syndrome: Syndrome | None,
             retired: int, tick: int) -> None:
        self._vector_entered_at = retired
        self.taken.append(ExceptionTaken(tick, vector, from_el, address, return_address, syndrome))

    def _count_repeats(self, exc: GuestException, vbar: int) -> int:
        """How many times in a row this exception has now been raised without progress.

        No progress: the instruction did not complete (a fault whose handler returns
        to it, or faults itself), or it sits in the vector table. A user program
        that calls the same SVC in a loop makes progress, and is never counted.
        """
        stuck = exc.return_address == exc.address or vbar <= exc.address < vbar + 0x800
        key = (exc.address, exc.syndrome.esr, exc.far)
        last, times = self._repeats
        times = times + 1 if stuck and key == last else 1
        self._repeats = (key if stuck else None, times)
        return times


def explain(cpu: CPU, exc: GuestException) -> str:
    """One line for a person: the exception, where, the instruction, and a hint when there is one."""
    from vlab.asm import disassemble_one  # local: the assembler is only needed for reports

    word = cpu.read_word(exc.address)
    insn = disassemble_one(word.to_bytes(4, "little"), exc.address).text if word is not None else "(no memory)"
    text = f"EL{exc.el} {exc.syndrome.describe()} at {exc.address:#x} `{insn}`"
    if exc.far is not None:
        text += f" FAR={exc.far:#x}"
    if exc.detail:
        text += f" ({exc.detail})"
    if "[sp" in insn and _near_zero(cpu.sp):  # only an access through SP says anything about SP
        text += "; SP is near 0: did the guest set up its stack pointer?"
    return text


def _near_zero(address: int) -> bool:
    """Within 4 KiB of address 0, on either side (a push from SP = 0 wraps to 0xffff...)."""
    return min(address, 2**64 - address) < 0x1000
