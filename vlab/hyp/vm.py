"""A virtual machine: guest RAM, emulated devices, vCPUs, trap controls -- and the run loop.

    vm = VM.from_file("vlab/guests/hello.S", traps=HCR.TVM | HCR.TWI)
    result = vm.run()            # result.uart, result.exits, vm.trap_log

The run loop is the story of trap-and-emulate:

    run the vCPU natively until it exits
      -> look up the handler for the exit's exception class (vm.handlers)
      -> the handler emulates what the guest tried, logs one line, moves the guest on
      -> resume the guest

Innocuous instructions never leave the guest: no hook runs per instruction, so the
guest runs at the bare machine's speed between exits (Popek and Goldberg's
*efficiency*). What a guest can touch is what the VM gives it (*resource control*),
and with the handlers below a guest behaves as on the bare board (*equivalence*).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

from vlab.arch.hcr import HCR
from vlab.hyp.exits import Exit, TrapRecord
from vlab.hyp.handlers import DEFAULT_HANDLERS, Handler
from vlab.hyp.memory import HostMemory, VmMemory, zeroed_host_buffer
from vlab.hyp.vcpu import VCpu, VCpuState
from vlab.machine import psci
from vlab.machine.board import (DEFAULT_MAX_INSNS, DEFAULT_RAM_SIZE, DEFAULT_TIMEOUT_S, RAM_BASE, Device,
                                MmioAccess, RunResult, StopReason)
from vlab.machine.loader import Image, image_from_file, image_from_program, load
from vlab.machine.uart import PL011

# The trap controls vlab can honour. TWE is missing on purpose: Unicorn executes WFE as a
# NOP, so a guest's WFE can never trap -- vlab will not pretend that it did.
SUPPORTED_TRAPS = HCR.TVM | HCR.TRVM | HCR.TID3 | HCR.TACR | HCR.TSC | HCR.TWI
MAX_VCPUS = 4
QUANTUM = 100_000  # instructions per turn when several vCPUs share the run loop


@dataclass(frozen=True)
class VmRunResult(RunResult):
    """A run of a VM: the boot vCPU's final state, plus what the hypervisor saw."""

    exits: dict[str, int] = field(default_factory=dict)  # exception-class name (or "IRQ") -> count

    @property
    def trapped(self) -> int:
        """Instructions that exited to the hypervisor (interrupts are not instructions)."""
        return sum(n for kind, n in self.exits.items() if kind != "IRQ")

    @property
    def native(self) -> int:
        """Instructions the guest ran natively, never seen by the hypervisor."""
        return self.instructions - self.trapped

    def to_json(self) -> dict:
        return super().to_json() | {"exits": dict(self.exits)}


class VM:
    """A virtual machine shaped like vlab's bare board: RAM at 0x4000_0000, a PL011 at 0x0900_0000."""

    def __init__(self, traps: HCR = HCR(0), ram_size: int = DEFAULT_RAM_SIZE, vcpus: int = 1,
                 trace_limit: int = 10_000, stage2: str | None = None, host: HostMemory | None = None,
                 seed: int = 0, vmid: int = 1):
        """A VM. With `stage2` ("contiguous", "scattered" or "demand") its RAM is host frames behind
        stage-2 tables in `host` (a new host memory unless given: VMs may share one)."""
        unsupported = HCR(traps) & ~SUPPORTED_TRAPS
        if unsupported:
            raise ValueError(f"vlab cannot honour HCR_EL2.{unsupported.name}: "
                             + ("WFE runs as a NOP on Unicorn, so it never traps; " if unsupported & HCR.TWE else "")
                             + f"supported trap controls: {SUPPORTED_TRAPS.name}")
        if not 1 <= vcpus <= MAX_VCPUS:
            raise ValueError(f"a VM has 1 to {MAX_VCPUS} vCPUs, not {vcpus}")
        self.traps = HCR(traps)
        self.ram_size = ram_size
        if stage2 is None:
            # Guest RAM is one host buffer, mapped into every vCPU's core: they share memory, nothing else.
            self.memory = None
            self._ram, self.ram_address = zeroed_host_buffer(ram_size)
        else:
            host = host or HostMemory(2 * ram_size + 0x10_0000)
            self.memory = VmMemory(host, RAM_BASE, ram_size, stage2, seed, vmid)
        self.uart = PL011()
        self.devices: list[Device] = [self.uart]
        self.handlers: dict = dict(DEFAULT_HANDLERS)
        self.exits: Counter[str] = Counter()
        self.trap_log: deque[TrapRecord] = deque(maxlen=trace_limit)
        self.mmio_trace: deque[MmioAccess] = deque(maxlen=trace_limit)
        self.vcpus = [VCpu(self, i) for i in range(vcpus)]
        self.powered_off = False

    # --- making one -----------------------------------------------------------------

    @classmethod
    def from_image(cls, image: Image, **options) -> VM:
        vm = cls(**options)
        load(vm.vcpus[0], image)
        return vm

    @classmethod
    def from_file(cls, path: str | Path, **options) -> VM:
        """A VM booting FILE (.S, raw binary or ELF), as `vlab run FILE --virt` does."""
        return cls.from_image(image_from_file(path), **options)

    @classmethod
    def from_source(cls, source: str, **options) -> VM:
        from vlab.asm import assemble  # the assembler is only needed for sources

        return cls.from_image(image_from_program(assemble(source, RAM_BASE)), **options)

    # --- the hypervisor ---------------------------------------------------------------

    def set_handler(self, ec, handler: Handler) -> None:
        """Handle exits of exception class `ec` with `handler(vcpu, exit) -> str` (e.g. a student's)."""
        self.handlers[ec] = handler

    def handle_exit(self, vcpu: VCpu, exit: Exit) -> None:
        """Dispatch one exit by its exception class; a handler that fails is reported, not raised."""
        handler = self.handlers.get(exit.ec)
        # Logged at the time of the exit, before what its handler causes (a sleep, an IRQ).
        position, tick = len(self.trap_log), vcpu.ticks()
        if handler is None:
            action = vcpu.inject(exit, exit.syndrome, "the hypervisor has no handler for this exit")
        else:
            try:
                action = handler(vcpu, exit)
            except Exception as e:  # noqa: BLE001 - a broken handler stops the VM with a report
                action = f"handler {getattr(handler, '__name__', handler)} failed: {type(e).__name__}: {e}"
                vcpu.halt(StopReason.ERROR, f"{action} (on {exit.describe()})")
        self.record(vcpu, exit.ec.name, exit, str(action), position, tick)

    def record(self, vcpu: VCpu, kind: str, exit: Exit | None, action: str,
               position: int | None = None, tick: int | None = None) -> None:
        """Count one exit (or injected interrupt) and log it, at `position` in the log if given."""
        self.exits[kind] += 1
        record = TrapRecord(vcpu.ticks() if tick is None else tick, vcpu.index, kind, exit, action)
        if position is None or len(self.trap_log) == self.trap_log.maxlen:
            self.trap_log.append(record)
        else:
            self.trap_log.insert(position, record)

    def device_at(self, ipa: int | None) -> Device | None:
        return next((d for d in self.devices if ipa is not None and d.base <= ipa < d.base + d.size), None)

    def mmio(self, vcpu: VCpu, device: Device, offset: int, size: int, value: int, is_write: bool) -> int:
        """Perform an emulated device access and trace it; returns the value read."""
        if is_write:
            device.write(offset, size, value)
        else:
            value = device.read(offset, size)
        self.mmio_trace.append(MmioAccess(vcpu.ticks(), device.name, offset, device.register_name(offset),
                                          size, value, is_write))
        return value

    def psci(self, vcpu: VCpu, fid: int) -> str:
        """The firmware interface, played by the hypervisor: power, and starting secondary vCPUs."""
        if fid == psci.PsciFunction.CPU_ON:
            return self._cpu_on(vcpu, vcpu.x(1), vcpu.x(2), vcpu.x(3))
        # Every other function takes at most one argument, x1 (registers are read one call each).
        ids = tuple(v.vmpidr & 0xFF_00FF_FFFF for v in self.vcpus if v.state is not VCpuState.OFF)
        outcome = psci.call(fid, (vcpu.x(1), 0, 0), ids)
        vcpu.set_x(0, outcome.x0)
        if fid == psci.PsciFunction.CPU_OFF:
            vcpu.state = VCpuState.OFF
            vcpu.halt(StopReason.STOPPED, f"vCPU{vcpu.index} turned itself off (PSCI CPU_OFF)")
        elif outcome.power_off or outcome.reset:
            self.powered_off = True
            reason = StopReason.RESET if outcome.reset else StopReason.POWERED_OFF
            vcpu.halt(reason, f"PSCI {outcome.function} from vCPU{vcpu.index}")
        return f"PSCI {outcome.function}: x0 = {outcome.x0:#x}"

    def _cpu_on(self, caller: VCpu, target: int, entry: int, context: int) -> str:
        index = target & 0xFF_00FF_FFFF
        if index >= len(self.vcpus) or not caller.ram.contains(entry, 4):
            caller.set_x(0, psci.PsciReturn.INVALID_PARAMETERS & 0xFFFF_FFFF_FFFF_FFFF)
            return f"PSCI CPU_ON {target:#x} at {entry:#x}: INVALID_PARAMETERS"
        vcpu = self.vcpus[index]
        if vcpu.state is not VCpuState.OFF:
            caller.set_x(0, psci.PsciReturn.ALREADY_ON & 0xFFFF_FFFF_FFFF_FFFF)
            return f"PSCI CPU_ON vCPU{index}: ALREADY_ON"
        vcpu.cpu.pc, vcpu.state = entry, VCpuState.RUNNING
        vcpu.set_x(0, context)
        caller.set_x(0, psci.PsciReturn.SUCCESS)
        caller.halt(StopReason.STOPPED, f"vCPU{index} started")  # back to the run loop, to share the core
        return f"PSCI CPU_ON vCPU{index} at {entry:#x} with x0 = {context:#x}"

    # --- running --------------------------------------------------------------------

    def run(self, max_insns: int = DEFAULT_MAX_INSNS, timeout_s: float = DEFAULT_TIMEOUT_S) -> VmRunResult:
        """Run the vCPUs in turn until the VM powers off, all are idle, or a limit is reached.

        `max_insns` counts the instructions of all vCPUs together.
        """
        deadline = time.monotonic() + timeout_s
        budget = max_insns
        last: RunResult | None = None
        while True:
            runnable = [v for v in self.vcpus if v.state is VCpuState.RUNNING]
            if not runnable:
                return self._finish(last or self.vcpus[0]._result(StopReason.IDLE, "no vCPU is running"))
            for vcpu in runnable:
                left_s = deadline - time.monotonic()
                if budget <= 0 or left_s <= 0:
                    return self._finish(self._limit(vcpu, max_insns, timeout_s, budget))
                turn = budget if len(runnable) == 1 else min(budget, QUANTUM)
                before = vcpu.cpu.instructions
                last = vcpu.run(max_insns=turn, timeout_s=left_s)
                budget -= vcpu.cpu.instructions - before
                if last.reason in (StopReason.POWERED_OFF, StopReason.RESET):
                    self.powered_off = True  # also when EL3 firmware did it: an SMC the VM let through
                if self.powered_off or last.reason in (StopReason.EXCEPTION, StopReason.ERROR, StopReason.TIMEOUT):
                    return self._finish(last)
                if last.reason is StopReason.IDLE:
                    vcpu.state = VCpuState.IDLE

    def _limit(self, vcpu: VCpu, max_insns: int, timeout_s: float, budget: int) -> RunResult:
        if budget <= 0:
            return vcpu._result(StopReason.BUDGET, f"instruction budget of {max_insns:,} spent")
        return vcpu._result(StopReason.TIMEOUT, f"wall-clock guard of {timeout_s:g} s reached")

    def _finish(self, last: RunResult) -> VmRunResult:
        fields = {f.name: getattr(last, f.name) for f in dataclasses.fields(RunResult)}
        fields["instructions"] = sum(v.cpu.instructions for v in self.vcpus)
        return VmRunResult(**fields, exits=dict(self.exits))

    def step(self) -> RunResult:
        """One instruction (or one exit, or one exception) of the boot vCPU."""
        return self.vcpus[0].step()


def share_identical_pages(*vms: VM) -> int:
    """Content-based page sharing between VMs on one host memory; returns the host frames freed."""
    from vlab.hyp.memory import share_identical_pages as share

    if any(vm.memory is None for vm in vms) or len({id(vm.memory.host) for vm in vms}) != 1:
        raise ValueError("page sharing needs VMs with stage 2 on one host memory (VM(stage2=..., host=...))")
    freed = share([vm.memory for vm in vms])
    for vm in vms:
        for vcpu in vm.vcpus:
            vcpu.flush_tlb()  # their cached translations may still allow writes to what is now shared
    return freed
