"""The generic timer: CNTFRQ_EL0, the counters and the virtual and physical timers.

vlab's guest time is deterministic: the system counter advances one tick per
retired guest instruction (plus the ticks a core spends idle in WFI), so the
same program always sees the same times. CNTFRQ_EL0 reads 62.5 MHz, the value
QEMU's `virt` board long used, so a guest sees a machine of 62.5 M instructions
per second of guest time.

Each timer fires (ISTATUS) when the counter reaches its compare value CVAL;
it asserts its interrupt when also enabled and not masked (CTL: ENABLE bit 0,
IMASK bit 1, ISTATUS bit 2). TVAL is a signed 32-bit view of CVAL - counter.
"""

from __future__ import annotations

from typing import Callable

from vlab.arch.esr import ExceptionClass, Syndrome, SysRegAccess
from vlab.arch.sysregs import name_of
from vlab.machine.cpu import GuestException

FREQUENCY_HZ = 62_500_000
CTL_ENABLE, CTL_IMASK, CTL_ISTATUS = 1, 2, 4


def _sext32(value: int) -> int:
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value & 0x8000_0000 else value


# CNTKCTL_EL1: which timer registers EL0 may use (Arm ARM D19.11, CNTKCTL_EL1)
EL0PCTEN, EL0VCTEN, EL0VTEN, EL0PTEN = 1 << 0, 1 << 1, 1 << 8, 1 << 9

# CNTHCTL_EL2 (HCR_EL2.E2H = 0): which counter and timer registers trap from EL1 and EL0 to EL2.
# EL1PCTEN (bit 0) = 0 traps the physical counter, EL1PCEN (bit 1) = 0 the physical timer, and
# FEAT_ECV's EL1TVCT (bit 14) = 1 the virtual counter, EL1TVT (bit 13) = 1 the virtual timer
# (Linux's include/clocksource/arm_arch_timer.h, checked). With all four, every access the guest
# makes to its time exits: what a hypervisor must do to emulate time on a chip without a virtual
# timer and CNTVOFF_EL2 (KVM does it on chips whose CNTVOFF_EL2 is broken).
EL1PCTEN, EL1PCEN, EL1TVT, EL1TVCT = 1 << 0, 1 << 1, 1 << 13, 1 << 14
TRAP_ALL_TIME = EL1TVT | EL1TVCT  # and EL1PCTEN = EL1PCEN = 0
TRAPPED_BY_CNTHCTL = {"CNTPCT_EL0": "EL1PCTEN = 0", "CNTP_CTL_EL0": "EL1PCEN = 0", "CNTP_CVAL_EL0": "EL1PCEN = 0",
                      "CNTP_TVAL_EL0": "EL1PCEN = 0", "CNTVCT_EL0": "EL1TVCT = 1", "CNTV_CTL_EL0": "EL1TVT = 1",
                      "CNTV_CVAL_EL0": "EL1TVT = 1", "CNTV_TVAL_EL0": "EL1TVT = 1"}


def el0_may_access(name: str, cntkctl: int) -> bool:
    """Whether EL0 may access timer register `name` under CNTKCTL_EL1; if not, it traps to EL1."""
    if name == "CNTFRQ_EL0":
        return bool(cntkctl & (EL0PCTEN | EL0VCTEN))
    needed = {"CNTPCT_EL0": EL0PCTEN, "CNTVCT_EL0": EL0VCTEN}.get(name)
    if needed is None:
        needed = EL0VTEN if name.startswith("CNTV_") else EL0PTEN if name.startswith("CNTP_") else 0
    return bool(cntkctl & needed)


class Timer:
    """One comparator (virtual or physical) against a counter."""

    def __init__(self, name: str, counter: Callable[[], int]):
        self.name, self._counter = name, counter
        self.cval = 0
        self.ctl = 0

    def istatus(self) -> bool:
        return bool(self.ctl & CTL_ENABLE) and self._counter() >= self.cval

    def asserted(self) -> bool:
        """The timer's interrupt line: condition met, enabled, not masked."""
        return self.istatus() and not self.ctl & CTL_IMASK

    def deadline(self) -> int | None:
        """The counter value at which the interrupt line will rise, if it can."""
        if self.ctl & CTL_ENABLE and not self.ctl & CTL_IMASK:
            return self.cval
        return None

    def read(self, field: str) -> int:
        if field == "CTL":
            return (self.ctl & 3) | (CTL_ISTATUS if self.istatus() else 0)
        if field == "CVAL":
            return self.cval
        return (self.cval - self._counter()) & 0xFFFF_FFFF  # TVAL

    def write(self, field: str, value: int) -> None:
        if field == "CTL":
            self.ctl = value & 3  # ISTATUS is read-only
        elif field == "CVAL":
            self.cval = value
        else:  # TVAL
            self.cval = self._counter() + _sext32(value)


class GenericTimer:
    """The counter and both EL1 timers, served through system-register traps."""

    def __init__(self, ticks: Callable[[], int]):
        """`ticks()` is the board's clock: retired instructions plus idle ticks."""
        self.ticks = ticks
        self.offset = 0  # CNTVOFF_EL2: the virtual counter is the physical one minus this
        self.virtual = Timer("virtual", lambda: self.ticks() - self.offset)
        self.physical = Timer("physical", self.ticks)

    def handle(self, access: SysRegAccess, value: int) -> tuple[bool, int]:
        """Emulate a timer register access: (handled, value read)."""
        name = name_of(access.encoding)
        if name == "CNTFRQ_EL0":
            return True, FREQUENCY_HZ  # writes are ignored: only EL3 firmware may set it
        if name == "CNTVCT_EL0":
            return True, self.ticks() - self.offset
        if name == "CNTPCT_EL0":
            return True, self.ticks()
        for prefix, timer in (("CNTV_", self.virtual), ("CNTP_", self.physical)):
            if name.startswith(prefix):
                field = name[len(prefix):].removesuffix("_EL0")
                if access.is_read:
                    return True, timer.read(field)
                timer.write(field, value)
                return True, 0
        return False, 0

    def asserted(self) -> list[Timer]:
        return [t for t in (self.virtual, self.physical) if t.asserted()]

    def next_deadline(self, after: int | None = None) -> int | None:
        """The earliest board tick at which a timer interrupt will rise (one that has not, when
        `after` -- a tick -- is given: strictly later than it), or None."""
        deadlines = []
        if (d := self.virtual.deadline()) is not None:
            deadlines.append(d + self.offset)
        if (d := self.physical.deadline()) is not None:
            deadlines.append(d)
        return min((d for d in deadlines if after is None or d > after), default=None)


def serve_timer(cpu, timer: GenericTimer, access: SysRegAccess, value: int) -> bool:
    """A system-register hook's timer part, for a core (`cpu`, a vlab.machine.cpu.CPU) whose timer is
    `timer`: True when `access` was a timer register, now emulated.

    EL0 reaches the timer only where CNTKCTL_EL1 allows it, else the access traps to EL1. A write
    that arms the timer sooner than the current run was going to last shortens the run, so that
    its line rises on time without stopping the guest for every write. (A timer already due is
    the GIC's business: the caller drives the line, and the GIC stops the run if that signals.)
    """
    name = name_of(access.encoding)
    if not name.startswith("CNT"):
        return False
    if cpu.el == 0 and not el0_may_access(name, cpu.read_sysreg("CNTKCTL_EL1")):
        pc = cpu.pc  # the kernel has not opened this timer register to EL0: trap to EL1
        cpu.trap(GuestException(Syndrome(ExceptionClass.SYS64, access.iss), pc, pc, 0,
                                detail=f"{name} at EL0 with CNTKCTL_EL1 not allowing it"))
        return True
    handled, result = timer.handle(access, value)
    if handled and access.is_read:
        cpu.set_x(access.rt, result)
    elif handled:
        stop_by_next_deadline(cpu, timer)
    return handled


def stop_by_next_deadline(cpu, timer: GenericTimer) -> None:
    """After a write that may arm the timer sooner than the current run was going to last: shorten
    the run, so that its line rises on time without stopping the guest for every write."""
    if (deadline := timer.next_deadline(after=timer.ticks())) is not None:
        cpu.stop_within(deadline - timer.ticks())
