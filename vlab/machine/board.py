"""The physical machine: a QEMU `virt`-compatible board, and the loop that runs it.

    0x0000_0000  flash (ROM, 128 MiB)       read and execute only
    0x0800_0000  GICv2 distributor          which interrupts are enabled, pending, active
    0x0801_0000  GICv2 CPU interface        acknowledge (GICC_IAR), complete (GICC_EOIR)
    0x0900_0000  PL011 UART                 the console
    0x0a00_0000  virtio-mmio, 32 transports a virtio console on the last one (vlab.machine.virtio_mmio)
    0x4000_0000  RAM (128 MiB by default)   where guests are loaded

What QEMU's `virt` board has and vlab's does not model is listed in NOT_MODELLED.

The CPU runs guest code natively until something happens that the hardware
(not the guest's own code) must deal with. `Board.run()` is that story:

    run natively -> an exception?  firmware call (PSCI) -> serve it, resume
                                   anything else        -> enter the guest kernel's vector
                 -> an interrupt?  the GIC signals IRQ and PSTATE.I allows it -> the IRQ vector
                 -> WFI?           a timer will fire and the GIC signal it -> sleep until then
                                   nothing can wake it -> stop: idle
                 -> a device that polls its queues      -> let it look now
                 -> budget spent, wall clock exceeded  -> stop

The generic timer's outputs are wires into the GIC (the virtual timer is PPI 27, the physical
one PPI 30), as on the real machine: an interrupt reaches the core only as the GIC signals it.
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
from vlab.machine.gic import GIC, PHYSICAL_TIMER_PPI, VIRTUAL_TIMER_PPI
from vlab.machine.guest_memory import GuestMemory
from vlab.machine.timer import GenericTimer, serve_timer
from vlab.machine.uart import PL011
from vlab.machine.virtio_console import VirtioConsole
from vlab.machine.virtio_mmio import VirtioMmioBus

FLASH_BASE, FLASH_SIZE = 0x0000_0000, 0x0800_0000
RAM_BASE, DEFAULT_RAM_SIZE = 0x4000_0000, 0x0800_0000
DEFAULT_MAX_INSNS = 50_000_000
DEFAULT_TIMEOUT_S = 20.0

# What QEMU 7.2's `-M virt` has that vlab's board does not model (its `info mtree`, measured): a guest
# touching these gets an external abort on vlab, where on QEMU it would find a device.
NOT_MODELLED = (
    (0x0802_0000, "GICv2m", "message-signalled interrupts for PCIe"),
    (0x0803_0000, "GICH, GICV", "the GIC's virtualization interfaces, with -M virt,virtualization=on; "
                  "vlab's hypervisor has them (vlab.machine.gic_virt)"),
    (0x0901_0000, "PL031", "the real-time clock"),
    (0x0902_0000, "fw_cfg", "QEMU's firmware configuration interface"),
    (0x0903_0000, "PL061", "GPIO (the power button)"),
    (0x1000_0000, "PCIe", "its MMIO and I/O windows (and ECAM at 0x40_1000_0000)"),
)
VIRTIO_POLL = 1_000  # a virtio device that polls its queues (instead of waiting for a notify) looks this often


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
    POWERED_OFF = "powered_off"  # PSCI SYSTEM_OFF
    RESET = "reset"  # PSCI SYSTEM_RESET
    BUDGET = "budget"  # the instruction budget is spent
    TIMEOUT = "timeout"  # the wall-clock guard fired
    IDLE = "idle"  # WFI (or PSCI CPU_SUSPEND) with nothing that could ever wake the core; every CPU off (CPU_OFF)
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
    virtio_console: str = ""  # what the guest sent through the virtio console

    def to_json(self) -> dict:
        """The `vlab run --json` object."""
        out = {
            "uart": self.uart, "virtio_console": self.virtio_console, "stop": self.reason.value,
            "message": self.message, "instructions": self.instructions, "el": self.el, "registers": self.registers,
        }
        if self.exception is not None:
            out["exception"] = {
                "class": self.exception.syndrome.ec.name, "esr": self.exception.syndrome.esr,
                "iss": self.exception.syndrome.fields(), "address": self.exception.address,
                "far": self.exception.far,
            }
        return out


class Board:
    """A QEMU `virt`-compatible machine with one CPU, flash, RAM, a PL011, a virtio console and a
    generic timer. With `virtio_polls` the virtio console polls its queues and asks the driver for
    no notifications."""

    def __init__(self, ram_size: int = DEFAULT_RAM_SIZE, trace_limit: int = 10_000, uart: PL011 | None = None,
                 virtio_polls: bool = False):
        if ram_size <= 0 or ram_size % 0x1000:
            raise ValueError(f"RAM size must be a positive multiple of 4 KiB, not {ram_size:#x}")
        self.cpu = CPU()
        self.uart = uart or PL011()
        # QEMU virt's transports, with `-device virtio-serial-device -device virtconsole` on the last.
        self.virtio_console = VirtioConsole()
        # Transport n's interrupt is SPI 16 + n (INTID 48 + n) of the GIC (made below), as on QEMU virt.
        self.virtio = VirtioMmioBus(GuestMemory(RAM_BASE, ram_size, self.read_memory, self.write_memory),
                                    [self.virtio_console], interrupt=lambda intid, level: self.gic.set_spi(intid, level),
                                    device_polls=virtio_polls)
        self.idle_ticks = 0
        self.timer = GenericTimer(lambda: self.cpu.clock() + self.idle_ticks)
        self.mmio_trace: deque[MmioAccess] = deque(maxlen=trace_limit)
        self.entry = ExceptionEntry(trace_limit)
        self.powered_off = False
        self._off_reason: StopReason | None = None
        # A rising IRQ line ends the run after the current instruction, so the IRQ is taken there.
        self.gic = GIC(cpus=1, on_signal=lambda _cpu: self._irq_line_changed())
        self.cpu.irq.on_taken = self._irq_taken
        self.devices: list[Device] = [*self.gic.devices(0), self.uart, self.virtio]
        self.regions = self._map_memory(ram_size)
        self.cpu.sysreg_handler = self._on_sysreg

    def _map_memory(self, ram_size: int) -> list[Region]:
        """Map flash, the GIC, the UART and RAM onto the CPU; the regions, RAM last."""
        uc = self.cpu.uc
        uc.mem_map(FLASH_BASE, FLASH_SIZE, UC_PROT_READ | UC_PROT_EXEC)
        uc.mem_map(RAM_BASE, ram_size)
        for device in self.devices:
            self._map_device(device)
        return [Region("flash", FLASH_BASE, FLASH_SIZE, "rom"),
                *(Region(d.name, d.base, d.size, "device") for d in self.devices),
                Region("ram", RAM_BASE, ram_size, "ram")]

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
        self.mmio_trace.append(MmioAccess(self.timer.ticks(), device.name, offset, device.register_name(offset),
                                          size, value, is_write))  # the guest's clock, idle time included

    # --- firmware and timer, reached through traps -------------------------------

    def _on_sysreg(self, cpu: CPU, access: SysRegAccess, value: int) -> bool:
        handled = serve_timer(cpu, self.timer, access, value)
        if handled and not access.is_read:
            self._timer_lines()  # a timer the guest reprogrammed raises or lowers its line at once
        return handled

    def _timer_lines(self) -> None:
        """Drive the GIC's timer inputs from the timers' outputs (each a level: high while it fires)."""
        self.gic.set_ppi(0, VIRTUAL_TIMER_PPI, self.timer.virtual.asserted())
        self.gic.set_ppi(0, PHYSICAL_TIMER_PPI, self.timer.physical.asserted())

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
            return self._result(self._off_reason or StopReason.POWERED_OFF, "every CPU is off (PSCI CPU_OFF)"
                                if self._off_reason is StopReason.IDLE else "the machine is already off")
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
                self._timer_lines()
                if self.virtio.device_polls:
                    self.virtio.poll()
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
        """Run no further than the next timer deadline, so that its line rises on time (and, with a
        polling device, than its next look at its queues)."""
        if self.virtio.device_polls:
            left = min(left, VIRTIO_POLL)
        next_irq = self.timer.next_deadline(after=self.ticks())
        return left if next_irq is None else max(1, min(left, next_irq - self.ticks()))

    def _handle(self, stop: CpuStop) -> RunResult | None:
        """React to one CpuStop; a RunResult ends the run, None continues it."""
        if stop.kind is StopKind.EXCEPTION:
            return self._on_exception(stop.exception)
        if stop.kind is StopKind.ERROR:
            return self._result(StopReason.ERROR, f"vlab error (please report it): {stop.message}")
        if stop.kind is StopKind.UNSUPPORTED:
            return self._result(StopReason.ERROR, stop.message)
        if stop.kind is StopKind.TIMEOUT:
            return self._result(StopReason.TIMEOUT, "wall-clock guard reached")
        if stop.kind is StopKind.WFI:
            return self._on_wfi()
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
        """PSCI, as QEMU's firmware serves it (vlab.machine.psci): the function id is all of x0."""
        cpu = self.cpu
        fid = cpu.x(0)
        if not psci.is_psci(fid):
            cpu.set_x(0, psci.PsciReturn.NOT_SUPPORTED & 0xFFFF_FFFF_FFFF_FFFF)
            return None
        outcome = psci.call(fid, (cpu.x(1), cpu.x(2), cpu.x(3)))
        cpu.set_x(0, outcome.x0)
        if outcome.suspend:  # CPU_SUSPEND: a WFI, returning SUCCESS once the core wakes
            return self._on_wfi(f"PSCI {outcome.function} (a WFI) called at {exc.address:#x}")
        if outcome.cpu_off:  # the board's one CPU is off; the machine stays on, with nothing to run
            self.powered_off = True
            self._off_reason = StopReason.IDLE
            return self._result(StopReason.IDLE, f"every CPU has turned itself off (PSCI CPU_OFF called at "
                                f"{exc.address:#x})")
        if outcome.power_off or outcome.reset:
            self.powered_off = True
            self._off_reason = StopReason.RESET if outcome.reset else StopReason.POWERED_OFF
            return self._result(self._off_reason, f"PSCI {outcome.function} called at {exc.address:#x}")
        return None

    def _deliver(self, exc: GuestException) -> RunResult | None:
        """Enter the guest kernel's vector, unless it has none or its handler itself faults."""
        problem = self.entry.deliver(self.cpu, exc, self.cpu.instructions, self.ticks())
        return None if problem is None else self._result(StopReason.EXCEPTION, problem, exc)

    def _irq_line_changed(self) -> None:
        """The GIC's IRQ output drives the core's IRQ input; a rise in the middle of a run ends it
        after the current instruction, so that the IRQ is taken before the next one."""
        asserted = self.gic.irq_pending(0)
        self.cpu.irq.set(asserted)
        if asserted:
            self.cpu.interrupt_pending()

    def _irq_taken(self, vector_address: int, return_address: int, from_el: int) -> None:
        retired = self.cpu.clock()  # inside the run: those before the vector's first instruction
        self.entry.interrupt_taken(vector_address, return_address, from_el, retired, retired + self.idle_ticks)

    def _on_wfi(self, what: str | None = None) -> RunResult | None:
        """WFI: sleep until the GIC signals an interrupt -- taken if PSTATE.I allows, and WFI wakes
        either way. While the core sleeps only a timer can raise one: with none ahead, it is idle.
        `what` names the wait when it is not a WFI instruction (PSCI CPU_SUSPEND)."""
        while self.gic.signal(0) is None:
            deadline = self.timer.next_deadline(after=self.ticks())
            if deadline is None:
                return self._result(StopReason.IDLE, f"{what or f'WFI at {self.cpu.pc - 4:#x}'} with no timer or "
                                    "interrupt that could wake the core" + self._silent_timers())
            self.idle_ticks += deadline - self.ticks()
            self._timer_lines()
        return None

    def _silent_timers(self) -> str:
        """Why a timer that fired did not wake the core: what the GIC is missing."""
        reasons = [f"the {t.name} timer fired, but {self.gic.why_silent(0, ppi)}"
                   for t, ppi in ((self.timer.virtual, VIRTUAL_TIMER_PPI), (self.timer.physical, PHYSICAL_TIMER_PPI))
                   if t.asserted()]
        return "".join(f"; {r}" for r in reasons)

    # --- reporting ---------------------------------------------------------------

    def _result(self, reason: StopReason, message: str, exc: GuestException | None = None) -> RunResult:
        cpu = self.cpu
        return RunResult(reason, message, self.uart.text, cpu.instructions, cpu.pc, cpu.el, cpu.registers(), exc,
                         self.virtio_console.text)
