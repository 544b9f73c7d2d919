"""The physical machine: a QEMU `virt`-compatible board, and the loop that runs it.

    0x0000_0000  flash (ROM, 128 MiB)       read and execute only
    0x0900_0000  PL011 UART                 the console
    0x4000_0000  RAM (128 MiB by default)   where guests are loaded

The CPU runs guest code natively until something happens that the hardware
(not the guest's own code) must deal with. `Board.run()` is that story:

    run natively -> an exception?  firmware call (PSCI) -> serve it, resume
                                   anything else        -> enter the guest kernel's vector
                 -> WFI?           a timer will fire   -> sleep until it does
                                   nothing can wake it -> stop: idle
                 -> budget spent, wall clock exceeded  -> stop
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Protocol

from unicorn import UC_PROT_EXEC, UC_PROT_READ

from vlab.arch.esr import ExceptionClass, Syndrome, SysRegAccess
from vlab.machine import psci
from vlab.machine.cpu import CPU, CpuStop, GuestException, StopKind, Watchdog
from vlab.machine.entry import ExceptionEntry, ExceptionTaken
from vlab.machine.timer import GenericTimer, serve_timer
from vlab.machine.uart import PL011

FLASH_BASE, FLASH_SIZE = 0x0000_0000, 0x0800_0000
RAM_BASE, DEFAULT_RAM_SIZE = 0x4000_0000, 0x0800_0000
DEFAULT_MAX_INSNS = 50_000_000
DEFAULT_TIMEOUT_S = 20.0
_IRQ_POLL = 1_000  # while an interrupt is pending but masked, look again this often


class Device(Protocol):
    name: str
    base: int
    size: int

    def read(self, offset: int, size: int) -> int: ...
    def write(self, offset: int, size: int, value: int) -> None: ...
    def register_name(self, offset: int) -> str: ...


@dataclass(frozen=True)
class Region:
    name: str
    base: int
    size: int
    kind: str  # "rom", "ram" or "device"

    def contains(self, address: int, length: int = 1) -> bool:
        return self.base <= address and address + length <= self.base + self.size

    @staticmethod
    def find(regions: list[Region], address: int, length: int = 1) -> Region | None:
        """The region of `regions` that holds all `length` bytes at `address`, or None."""
        return next((r for r in regions if r.contains(address, length)), None)


class MmioAccess(NamedTuple):
    """One guest access to a device register, for traces and exercises. (A named tuple: every
    emulated device access makes one, and a frozen dataclass costs several times more.)"""

    tick: int
    device: str
    offset: int
    register: str
    size: int
    value: int
    is_write: bool

    def __str__(self) -> str:
        arrow = "<-" if self.is_write else "->"
        return f"[{self.tick:>8}] {self.device}.{self.register} {arrow} {self.value:#x} ({self.size} bytes)"


class StopReason(enum.Enum):
    POWERED_OFF = "powered_off"  # PSCI SYSTEM_OFF / CPU_OFF
    RESET = "reset"  # PSCI SYSTEM_RESET
    BUDGET = "budget"  # the instruction budget is spent
    TIMEOUT = "timeout"  # the wall-clock guard fired
    IDLE = "idle"  # WFI with nothing that could ever wake the core
    EXCEPTION = "exception"  # an exception no one can handle
    STOPPED = "stopped"  # a step finished, or someone asked the run to stop
    ERROR = "error"  # vlab failed (a bug in vlab, reported, never raised)


@dataclass(frozen=True)
class RunResult:
    """How a run ended, and what the machine looked like then."""

    reason: StopReason
    message: str
    uart: str
    instructions: int  # retired since power-on
    pc: int
    el: int
    registers: dict[str, int] = field(repr=False)
    exception: GuestException | None = None

    def to_json(self) -> dict:
        """The `vlab run --json` object."""
        out = {
            "uart": self.uart, "stop": self.reason.value, "message": self.message,
            "instructions": self.instructions, "el": self.el, "registers": self.registers,
        }
        if self.exception is not None:
            out["exception"] = {
                "class": self.exception.syndrome.ec.name, "esr": self.exception.syndrome.esr,
                "iss": self.exception.syndrome.fields(), "address": self.exception.address,
                "far": self.exception.far,
            }
        return out


class Board:
    """A QEMU `virt`-compatible machine with one CPU, flash, RAM, a PL011 and a generic timer."""

    def __init__(self, ram_size: int = DEFAULT_RAM_SIZE, trace_limit: int = 10_000, uart: PL011 | None = None):
        if ram_size <= 0 or ram_size % 0x1000:
            raise ValueError(f"RAM size must be a positive multiple of 4 KiB, not {ram_size:#x}")
        self.cpu = CPU()
        self.uart = uart or PL011()
        self.idle_ticks = 0
        self.timer = GenericTimer(lambda: self.cpu.clock() + self.idle_ticks)
        self.mmio_trace: deque[MmioAccess] = deque(maxlen=trace_limit)
        self.entry = ExceptionEntry(trace_limit)
        self.powered_off = False
        self._off_reason: StopReason | None = None
        self.regions = self._map_memory(ram_size)
        self.cpu.sysreg_handler = self._on_sysreg

    def _map_memory(self, ram_size: int) -> list[Region]:
        """Map flash, the UART and RAM onto the CPU; the regions, RAM last."""
        uc = self.cpu.uc
        uc.mem_map(FLASH_BASE, FLASH_SIZE, UC_PROT_READ | UC_PROT_EXEC)
        uc.mem_map(RAM_BASE, ram_size)
        self._map_device(self.uart)
        return [
            Region("flash", FLASH_BASE, FLASH_SIZE, "rom"),
            Region("uart", self.uart.base, self.uart.size, "device"),
            Region("ram", RAM_BASE, ram_size, "ram"),
        ]

    @property
    def exceptions_taken(self) -> deque[ExceptionTaken]:
        """The exceptions the guest kernel took, oldest first."""
        return self.entry.taken

    # --- memory ----------------------------------------------------------------

    @property
    def ram(self) -> Region:
        return self.regions[-1]

    def region_at(self, address: int, length: int = 1) -> Region | None:
        return Region.find(self.regions, address, length)

    def start_at(self, pc: int) -> None:
        """Where the CPU starts (the loader's entry point)."""
        self.cpu.pc = pc

    def write_memory(self, address: int, data: bytes) -> None:
        """Write bytes into flash or RAM (the loader's path: flash is writable from outside)."""
        region = self.region_at(address, max(len(data), 1))
        if region is None or region.kind == "device":
            raise ValueError(f"{len(data)} bytes at {address:#x} do not fit in flash or RAM")
        self.cpu.uc.mem_write(address, bytes(data))

    def read_memory(self, address: int, size: int) -> bytes:
        region = self.region_at(address, size)
        if region is None or region.kind == "device":
            raise ValueError(f"{size} bytes at {address:#x} are not in flash or RAM")
        return self.cpu.read_memory(address, size)

    def _map_device(self, device: Device) -> None:
        def read(uc, offset, size, _user):
            try:
                value = device.read(offset, size)
                self._trace(device, offset, size, value, False)
                return value
            except Exception as e:  # noqa: BLE001 - a device bug stops the run with a report
                self.cpu._hook_error = f"device {device.name} failed on a read at +{offset:#x}: {e}"
                uc.emu_stop()
                return 0

        def write(uc, offset, size, value, _user):
            try:
                device.write(offset, size, value)
                self._trace(device, offset, size, value, True)
            except Exception as e:  # noqa: BLE001
                self.cpu._hook_error = f"device {device.name} failed on a write at +{offset:#x}: {e}"
                uc.emu_stop()

        self.cpu.uc.mmio_map(device.base, device.size, read, None, write, None)

    def _trace(self, device: Device, offset: int, size: int, value: int, is_write: bool) -> None:
        self.mmio_trace.append(MmioAccess(self.cpu.clock(), device.name, offset, device.register_name(offset),
                                          size, value, is_write))

    # --- firmware and timer, reached through traps -------------------------------

    def _on_sysreg(self, cpu: CPU, access: SysRegAccess, value: int) -> bool:
        return serve_timer(cpu, self.timer, access, value)

    # --- running ---------------------------------------------------------------

    def ticks(self) -> int:
        """The board's clock: instructions retired plus ticks spent idle."""
        return self.cpu.instructions + self.idle_ticks

    def run(self, max_insns: int = DEFAULT_MAX_INSNS, timeout_s: float = DEFAULT_TIMEOUT_S,
            progress: Callable[[int], None] | None = None) -> RunResult:
        """Run the guest from its PC until it stops; at most max_insns more instructions.

        `progress(retired)` is called between slices of a long run (for a progress bar).
        """
        return self._run(max_insns, timeout_s, progress, stepping=False)

    def step(self) -> RunResult:
        """Execute exactly one instruction, or take one exception, and stop."""
        return self._run(1, DEFAULT_TIMEOUT_S, None, stepping=True)

    def _run(self, max_insns: int, timeout_s: float, progress: Callable[[int], None] | None,
             stepping: bool) -> RunResult:
        if self.powered_off:
            return self._result(self._off_reason or StopReason.POWERED_OFF, "the machine is already off")
        end = self.cpu.instructions + max_insns
        with Watchdog(self.cpu.uc.emu_stop, timeout_s) as watchdog:
            while True:
                left = end - self.cpu.instructions
                if left <= 0:
                    if stepping:
                        return self._result(StopReason.STOPPED, "stepped one instruction")
                    return self._result(StopReason.BUDGET, f"instruction budget of {max_insns:,} spent")
                if watchdog.fired:
                    return self._result(StopReason.TIMEOUT, f"wall-clock guard of {timeout_s:g} s reached")
                stop = self.cpu.run(self._slice(left))
                if progress is not None:
                    progress(self.cpu.instructions)
                if watchdog.fired and stop.kind is not StopKind.EXCEPTION:
                    continue  # stopped by the guard, not by the guest: report the timeout
                outcome = self._handle(stop)
                if outcome is not None:
                    return outcome
                if stepping and stop.kind is StopKind.EXCEPTION:
                    return self._result(StopReason.STOPPED, "stepped into an exception")

    def _slice(self, left: int) -> int:
        """Run no further than the next timer interrupt, so it is taken on time."""
        next_irq = self.timer.next_deadline()
        if next_irq is None:
            return left
        if next_irq <= self.ticks():  # already pending, but masked: look again soon
            return min(left, _IRQ_POLL)
        return max(1, min(left, next_irq - self.ticks()))

    def _handle(self, stop: CpuStop) -> RunResult | None:
        """React to one CpuStop; a RunResult ends the run, None continues it."""
        if stop.kind is StopKind.EXCEPTION:
            return self._on_exception(stop.exception)
        if stop.kind is StopKind.ERROR:
            return self._result(StopReason.ERROR, f"vlab error (please report it): {stop.message}")
        if stop.kind is StopKind.TIMEOUT:
            return self._result(StopReason.TIMEOUT, "wall-clock guard reached")
        if stop.kind is StopKind.WFI:
            return self._on_wfi()
        self._take_pending_irq()
        if stop.kind is StopKind.REQUESTED and self.powered_off:
            return self._result(self._off_reason, "powered off")
        return None  # BUDGET (end of a slice) or a requested stop: the loop decides

    def _on_exception(self, exc: GuestException) -> RunResult | None:
        syndrome = exc.syndrome
        if syndrome.ec in (ExceptionClass.HVC64, ExceptionClass.SMC64) and exc.el >= 1:
            return self._firmware_call(exc)
        if syndrome.ec is ExceptionClass.HVC64:  # HVC at EL0 is UNDEFINED
            exc = GuestException(Syndrome(ExceptionClass.UNKNOWN), exc.address, exc.address, 0,
                                 detail="HVC is undefined at EL0")
        return self._deliver(exc)

    def _firmware_call(self, exc: GuestException) -> RunResult | None:
        cpu = self.cpu
        fid = cpu.x(0) & 0xFFFF_FFFF
        if not psci.is_psci(fid):
            cpu.set_x(0, psci.PsciReturn.NOT_SUPPORTED & 0xFFFF_FFFF_FFFF_FFFF)
            return None
        outcome = psci.call(fid, (cpu.x(1), cpu.x(2), cpu.x(3)))
        cpu.set_x(0, outcome.x0)
        if outcome.power_off or outcome.reset:
            self.powered_off = True
            self._off_reason = StopReason.RESET if outcome.reset else StopReason.POWERED_OFF
            return self._result(self._off_reason, f"PSCI {outcome.function} called at {exc.address:#x}")
        return None

    def _deliver(self, exc: GuestException) -> RunResult | None:
        """Enter the guest kernel's vector, unless it has none or its handler itself faults."""
        problem = self.entry.deliver(self.cpu, exc, self.cpu.instructions, self.ticks())
        return None if problem is None else self._result(StopReason.EXCEPTION, problem, exc)

    def _take_pending_irq(self) -> bool:
        if self.timer.asserted() and not self.cpu.irqs_masked():
            self.entry.interrupt(self.cpu, self.cpu.instructions, self.ticks())
            return True
        return False

    def _on_wfi(self) -> RunResult | None:
        """WFI: sleep until the next timer interrupt; with none coming, the machine is idle."""
        if self.timer.asserted():
            self._take_pending_irq()
            return None
        next_irq = self.timer.next_deadline()
        if next_irq is None:
            return self._result(StopReason.IDLE, f"WFI at {self.cpu.pc - 4:#x} with no timer "
                                "or interrupt that could wake the core")
        self.idle_ticks += max(0, next_irq - self.ticks())
        self._take_pending_irq()  # if IRQs are masked, WFI still wakes: execution continues
        return None

    # --- reporting ---------------------------------------------------------------

    def _result(self, reason: StopReason, message: str, exc: GuestException | None = None) -> RunResult:
        cpu = self.cpu
        return RunResult(reason, message, self.uart.text, cpu.instructions, cpu.pc, cpu.el, cpu.registers(), exc)
