"""A virtual CPU: the saved state of a core its guest believes it owns.

A vCPU is not an engine. It is a context -- registers, EL1 system registers, its timer, the
identity it reports -- that the hypervisor loads onto a physical CPU (vlab.hyp.pcpu) with a
world switch, runs there for a while, and saves again. While it is loaded, the registers it
shows are the physical CPU's; while it waits, they are the saved context's.

An exit handler (`handler(vcpu, exit) -> str`, vlab.hyp.handlers) works through this object:

    vcpu.x(n), vcpu.set_x(n, v)            the guest's general-purpose registers (31 is XZR)
    vcpu.read_sysreg(name), .write_sysreg  its EL1 system registers
    vcpu.skip(exit)                        the trapped instruction is emulated: resume after it
    vcpu.inject(exit, syndrome, why)       give the guest kernel an exception instead
    vcpu.wait_for_interrupt()              block until its timer or an event wakes it
    vcpu.halt(reason, message)             end the VM's (or this vCPU's) run
    vcpu.read_memory(ipa, n), .write_memory(ipa, data)   its VM's RAM, by IPA
    vcpu.platform                          the VM's devices, firmware and console

What a handler asks for (skip, inject, block, halt) is applied when the handler returns, by
whichever path served the exit -- as KVM records `kvm_incr_pc()` and applies it on the way
back into the guest.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vlab.arch.esr import ExceptionClass, Syndrome
from vlab.machine.board import Region, StopReason
from vlab.machine.cpu import CPU, GuestException, context_from_bytes
from vlab.machine.entry import ExceptionEntry
from vlab.machine.gic import PHYSICAL_TIMER_PPI, VIRTUAL_TIMER_PPI
from vlab.machine.timer import GenericTimer
from vlab.sched import Entity

if TYPE_CHECKING:
    from vlab.hyp.exits import Exit
    from vlab.hyp.platform import Platform
    from vlab.hyp.vm import VM

MPIDR_RES1 = 1 << 31
TRANSLATION_REGISTERS = ("SCTLR_EL1", "TTBR0_EL1", "TTBR1_EL1", "TCR_EL1")
_ABORTS = (ExceptionClass.DABT_LOWER, ExceptionClass.DABT_CURRENT,
           ExceptionClass.IABT_LOWER, ExceptionClass.IABT_CURRENT)


class VCpuState(enum.Enum):
    OFF = "off"  # never started (PSCI CPU_ON starts it) or turned itself off (CPU_OFF)
    RUNNABLE = "runnable"  # wants a physical CPU, or is running on one
    BLOCKED = "blocked"  # waiting for its timer or an event (a WFI the hypervisor trapped)


@dataclass(frozen=True)
class Halt:
    """A handler ended the run: of the whole VM (power off, reset, an error) or of its vCPU (CPU_OFF)."""

    reason: StopReason
    message: str


@dataclass(frozen=True)
class Inject:
    """A handler gives the guest kernel this exception, as if the trapped instruction raised it."""

    exception: GuestException


@dataclass(frozen=True)
class Block:
    """A handler put the vCPU to sleep until its timer fires or an event wakes it -- or, with
    `until`, until another VM's event wakes it (`Host.wake`) or host tick `until` comes."""

    until: int | None = None


class Yield:
    """The guest gave up the physical CPU (a paravirtual yield): the scheduler picks again."""


Effect = Halt | Inject | Block | Yield


class VCpu:
    """vCPU `index` of `vm` (its MPIDR affinity), starting from `context` (a saved core state)."""

    def __init__(self, vm: VM, index: int, context, platform: Platform, trace_limit: int, weight: int, cap: int):
        self.vm, self.index = vm, index
        self.state = VCpuState.RUNNABLE if index == 0 else VCpuState.OFF
        self.context = context  # the saved core, while not loaded
        self.platform = platform
        self.entity = Entity(vm.index, index, weight, cap)
        self.timer = GenericTimer(self.ticks)
        self.entry = ExceptionEntry(trace_limit)
        self.vpidr = 0  # set by the VM: the host's MIDR, as KVM shows it
        self.vmpidr = MPIDR_RES1 | index
        self.instructions = 0  # retired by this vCPU
        self.walks = 0  # nested walks its accesses needed (vlab's TLB model missed); 0 without stage 2
        self.references = 0  # descriptors those walks read (nested: (n+1)(m+1)-1 each; shadow: n)
        self.wake_at: int | None = None  # while BLOCKED: the host tick its timer wakes it at
        self.in_wfi = False  # in a WFI the hypervisor did not trap: it waits, holding its physical CPU
        self._cpu: CPU | None = None  # the physical CPU's engine while loaded
        self._now = self._saved_time  # the clock it sees: its physical CPU's while loaded
        self._saved_at = 0  # the host tick it was last saved at
        self._stuck: tuple[tuple | None, int] = (None, 0)  # the same exit, in a row, that left the guest where it was
        self._resume_at: int | None = None  # set by skip() while a handler runs
        self._effect: Effect | None = None

    # --- registers: the physical CPU's while loaded, the saved context's otherwise ----------

    def _engine(self) -> CPU:
        return self._cpu if self._cpu is not None else self.vm.host.inspect(self)

    def _store(self, cpu: CPU) -> None:
        """After a write through `_engine()`: keep it, if it went to a scratch copy of the context."""
        if cpu is not self._cpu:
            cpu.uc.context_update(self.context)

    @property
    def loaded(self) -> bool:
        return self._cpu is not None

    def x(self, n: int) -> int:
        """General-purpose register Xn of the guest (31 reads as zero)."""
        cpu = self._cpu
        return (cpu if cpu is not None else self._engine()).x(n)

    def set_x(self, n: int, value: int) -> None:
        cpu = self._cpu
        if cpu is not None:  # loaded: the core holds it (the path of every exit served in place)
            cpu.set_x(n, value)
            return
        cpu = self._engine()
        cpu.set_x(n, value)
        self._store(cpu)

    @property
    def pc(self) -> int:
        return self._engine().pc

    @pc.setter
    def pc(self, value: int) -> None:
        cpu = self._engine()
        cpu.pc = value
        self._store(cpu)

    @property
    def el(self) -> int:
        return self._engine().el

    def registers(self) -> dict[str, int]:
        """x0..x30, sp, pc, pstate."""
        return self._engine().registers()

    def vector_registers(self) -> dict[str, int]:
        """q0..q31, fpcr, fpsr."""
        return self._engine().vector_registers()

    def read_sysreg(self, name: str) -> int:
        """A guest-visible system register of this vCPU."""
        cpu = self._cpu
        return (cpu if cpu is not None else self._engine()).read_sysreg(name)

    def write_sysreg(self, name: str, value: int) -> None:
        cpu = self._engine()
        cpu.write_sysreg(name, value)
        self._store(cpu)
        if name in TRANSLATION_REGISTERS:
            self.vm.translation_changed(self)  # cached translations were made under the old tables

    def export_context(self) -> bytes:
        """The saved core as bytes -- registers, EL1 system registers, PSTATE, everything the
        emulated core holds: what a migration stream carries for this vCPU."""
        if self._cpu is not None:
            self._cpu.uc.context_update(self.context)  # loaded: the core holds the newest state
        return bytes(self.context)

    def import_context(self, data: bytes) -> None:
        """Become the core `export_context()` saved (on this host or another); only while not loaded."""
        if self._cpu is not None:
            raise RuntimeError(f"vCPU{self.index} is loaded on a physical CPU: its context cannot be replaced")
        if len(data) != len(bytes(self.context)):
            raise ValueError(f"a saved core of this vlab is {len(bytes(self.context)):,} bytes, not {len(data):,}")
        self.context = context_from_bytes(data)

    # --- memory and time --------------------------------------------------------------------

    @property
    def ram(self) -> Region:
        return self.vm.ram

    def read_memory(self, ipa: int, size: int) -> bytes:
        return self.vm.read_memory(ipa, size)

    def write_memory(self, ipa: int, data: bytes) -> None:
        self.vm.write_memory(ipa, data)

    def ticks(self) -> int:
        """The host clock as this vCPU sees it: its physical CPU's while it runs."""
        return self._now()

    def wake_deadline(self) -> int | None:
        """The host tick at which one of its timers will fire with an interrupt the guest would
        take (vlab.hyp.vgic): what ends a WFI, unless an SGI comes first. None: no timer will."""
        now, timer, vgic = self.ticks(), self.timer, self.vm.vgic
        deadlines = []
        if (d := timer.virtual.deadline()) is not None and vgic.could_wake(self.index, VIRTUAL_TIMER_PPI):
            deadlines.append(d + timer.offset)
        if (d := timer.physical.deadline()) is not None and vgic.could_wake(self.index, PHYSICAL_TIMER_PPI):
            deadlines.append(d)
        return min((d for d in deadlines if d > now), default=None)

    def _saved_time(self) -> int:
        return self._saved_at

    # --- what a handler asks for --------------------------------------------------------------

    def skip(self, exit: Exit) -> None:
        """The trapped instruction has been emulated: it retires, and the guest goes on after it."""
        self._resume_at = exit.address + 4

    def inject(self, exit: Exit, syndrome: Syndrome, why: str) -> str:
        """Deliver a synchronous exception to the guest kernel at VBAR_EL1, as if its instruction raised it."""
        far = exit.far if syndrome.ec in _ABORTS else None
        self._effect = Inject(GuestException(syndrome, exit.address, exit.address, exit.el, far=far, detail=why))
        return f"injected {syndrome.ec.name} into the guest ({why})"

    def halt(self, reason: StopReason, message: str) -> None:
        """End the run after the current handler: the VM's (power off, reset, error), or this
        vCPU's alone with StopReason.STOPPED (CPU_OFF)."""
        self._effect = Halt(reason, message)

    def wait_for_interrupt(self) -> str:
        """Give up the physical CPU until this vCPU's timer fires or an event wakes it."""
        self._effect = Block()
        deadline = self.wake_deadline()
        if deadline is None:
            return "the vCPU blocks; no timer will wake it: only an interrupt from another vCPU can"
        return f"the vCPU blocks until its timer fires at tick {deadline}"

    def wait_for_event(self, until: int) -> str:
        """Give up the physical CPU until another VM's event wakes it (`Host.wake`), or at host tick
        `until` at the latest; its timer does not wake it meanwhile."""
        self._effect = Block(until)
        return f"the vCPU waits for an event, at the latest until tick {until}"

    def yield_cpu(self) -> str:
        """Give the physical CPU back to the scheduler for now (the vCPU stays runnable)."""
        self._effect = Yield()
        return "the vCPU yields its physical CPU"

    def _take_outcome(self) -> tuple[int | None, Effect | None]:
        """What the handler that just ran asked for, cleared for the next one."""
        outcome = (self._resume_at, self._effect)
        self._resume_at = self._effect = None
        return outcome

    def __repr__(self) -> str:
        return f"<vCPU{self.index} of VM {self.vm.index}: {self.state.value}>"
