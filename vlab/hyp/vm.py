"""A virtual machine: guest RAM, emulated devices, vCPUs, trap controls, and the dispatch table.

    vm = VM.from_file("vlab/guests/hello.S", traps=HCR.TVM | HCR.TWI)
    result = vm.run()            # result.uart, result.exits, vm.trap_log

A VM lives on a host (vlab.hyp.host): its vCPUs are saved contexts that the host's physical
CPUs load and run. Alone (no `host=` given) it gets a host of its own with one physical CPU.
Every exit goes through one table, `vm.handlers`, indexed by the exception class ESR_EL2
reports:

    the guest runs natively until it exits
      -> look up the handler for the exit's class
      -> the handler emulates what the guest tried, logs one line, moves the guest on
      -> the guest resumes (in place, or after the run loop -- see vlab.hyp.pcpu)

Innocuous instructions never leave the guest: no hook runs per instruction, so the guest runs
at the bare machine's speed between exits (Popek and Goldberg's *efficiency*). What a guest can
touch is what the VM gives it (*resource control*), and with the handlers below a guest behaves
as on the bare board (*equivalence*).
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vlab.arch.esr import EC_NAMES
from vlab.arch.hcr import HCR
from vlab.hyp.exits import IN_PLACE, RUN_LOOP, Exit, TrapRecord
from vlab.hyp.handlers import DEFAULT_HANDLERS, Handler, serve_mmio
from vlab.hyp.memory import HostMemory, VmMemory, zeroed_host_buffer
from vlab.hyp.platform import Platform
from vlab.hyp.shadow import PAGINGS, ShadowPaging
from vlab.hyp.vcpu import VCpu, VCpuState
from vlab.hyp.vgic import VGic
from vlab.machine import psci
from vlab.machine.board import (DEFAULT_MAX_INSNS, DEFAULT_RAM_SIZE, DEFAULT_TIMEOUT_S, RAM_BASE, Device,
                                MmioAccess, Region, RunResult, StopReason)
from vlab.machine.cpu import GuestException
from vlab.machine.gic import VIRTUAL_TIMER_PPI
from vlab.machine.loader import Image, image_from_file, image_from_program, load
from vlab.machine.guest_memory import GuestMemory
from vlab.machine.timer import EL1PCEN, EL1PCTEN, TRAP_ALL_TIME
from vlab.machine.uart import PL011
from vlab.machine.virtio_console import VirtioConsole
from vlab.machine.virtio_mmio import VirtioMmioBus
from vlab.mmu.tables import PAGE

# The trap controls vlab can honour. TWE is missing on purpose: Unicorn executes WFE as a
# NOP, so a guest's WFE can never trap -- vlab will not pretend that it did.
SUPPORTED_TRAPS = HCR.TVM | HCR.TRVM | HCR.TID3 | HCR.TACR | HCR.TSC | HCR.TWI
MAX_VCPUS = 8
GIC_CPU_INTERFACES = ("virtual", "emulated")
_PERMANENT = (StopReason.POWERED_OFF, StopReason.RESET)
_U64 = (1 << 64) - 1
# As plain ints: an enum member's lookup costs more than the comparison, on every hypercall.
_CPU_OFF = int(psci.PsciFunction.CPU_OFF)
_CPU_ON = frozenset(int(f) for f in (psci.PsciFunction.CPU_ON, psci.PsciFunction.CPU_ON_32))
_AFFINITY_INFO = frozenset(int(f) for f in (psci.PsciFunction.AFFINITY_INFO, psci.PsciFunction.AFFINITY_INFO_32))


@dataclass(frozen=True)
class VmRunResult(RunResult):
    """A run of a VM: the boot vCPU's final state, plus what the hypervisor saw."""

    exits: dict[str, int] = field(default_factory=dict)  # exception-class name (or "IRQ") -> count
    vcpus: tuple[dict, ...] = ()  # per vCPU: state, instructions, and what the scheduler gave it
    # guest accesses to its GIC CPU interface (GICC_IAR, EOIR...) that the hardware's GICV served:
    # each would be an exit without the virtualization extensions
    without_exits: dict[str, int] = field(default_factory=dict)

    @property
    def trapped(self) -> int:
        """Instructions that exited to the hypervisor (interrupts are not instructions)."""
        return sum(n for kind, n in self.exits.items() if kind != "IRQ")

    @property
    def native(self) -> int:
        """Instructions the guest ran natively, never seen by the hypervisor."""
        return self.instructions - self.trapped

    def to_json(self) -> dict:
        return super().to_json() | {"exits": dict(self.exits), "vcpus": list(self.vcpus),
                                    "without_exits": dict(self.without_exits)}


class VM:
    """A virtual machine shaped like vlab's bare board: RAM at 0x4000_0000, a PL011 at 0x0900_0000."""

    def __init__(self, traps: HCR = HCR(0), ram_size: int = DEFAULT_RAM_SIZE, vcpus: int = 1,
                 trace_limit: int = 10_000, stage2: str | None = None, host=None, seed: int = 0,
                 vmid: int | None = None, weight: int = 256, cap: int = 0, virtio_polls: bool = False,
                 paging: str = "nested", gic_cpu_interface: str = "virtual", cnthctl: int = EL1PCTEN | EL1PCEN):
        """A VM on `host` (a vlab.hyp.host.Host; a HostMemory puts it on that memory's host; None: a
        host of its own). With `stage2` ("contiguous", "scattered" or "demand") its RAM is host frames
        behind stage-2 tables; without, its RAM is mapped as it is (one such VM per host). Alone, it
        gets a host with one physical CPU per vCPU. `weight` and
        `cap` are its vCPUs' scheduling share and ceiling (percent of one physical CPU, 0: none).
        With `virtio_polls` its virtio console polls its queues instead of waiting for notifications.
        `paging="shadow"`: the hardware walks shadow tables instead of stage 2 (vlab.hyp.shadow); the
        stage-2 tables (contiguous unless `stage2` says otherwise) stay the hypervisor's IPA -> PA map,
        and HCR_EL2.TVM and TRVM are set.
        `gic_cpu_interface`: "virtual", the GIC's virtual CPU interface at the guest's GICC (no exits),
        or "emulated", as on a chip without one: every GICC access an exit the hypervisor emulates.
        `cnthctl` is the hypervisor's CNTHCTL_EL2 for it: by default the guest uses its counters and
        timers without exits; TRAP_ALL_TIME (vlab.machine.timer) makes every access exit, as on a chip
        without a virtual timer, the hypervisor emulating guest time."""
        from vlab.hyp.host import Host  # the host module imports this one

        unsupported = HCR(traps) & ~SUPPORTED_TRAPS
        if unsupported:
            raise ValueError(f"vlab cannot honour HCR_EL2.{unsupported.name}: "
                             + ("WFE runs as a NOP on Unicorn, so it never traps; " if unsupported & HCR.TWE else "")
                             + f"supported trap controls: {SUPPORTED_TRAPS.name}")
        if paging not in PAGINGS:
            raise ValueError(f"paging={paging!r}: choose one of {', '.join(PAGINGS)}")
        if paging == "shadow":
            stage2 = stage2 or "contiguous"
            traps = HCR(traps) | HCR.TVM | HCR.TRVM  # the shadow must follow the guest's translation registers
        if not 1 <= vcpus <= MAX_VCPUS:
            raise ValueError(f"a VM has 1 to {MAX_VCPUS} vCPUs, not {vcpus}")
        if ram_size <= 0 or ram_size % PAGE:
            raise ValueError(f"RAM size must be a positive multiple of 4 KiB, not {ram_size:#x}")
        if gic_cpu_interface not in GIC_CPU_INTERFACES:
            raise ValueError(f"gic_cpu_interface is one of {', '.join(GIC_CPU_INTERFACES)}, not {gic_cpu_interface!r}")
        if isinstance(host, HostMemory):
            host = Host.of(host)
        # Alone, a VM gets a host with a physical CPU for each of its vCPUs.
        self.host = host if host is not None else Host(vcpus, memory=2 * ram_size + 0x10_0000 if stage2 else None)
        self.traps = HCR(traps)
        if cnthctl & ~(EL1PCTEN | EL1PCEN | TRAP_ALL_TIME):
            raise ValueError(f"CNTHCTL_EL2 = {cnthctl:#x}: vlab honours EL1PCTEN, EL1PCEN, EL1TVT and EL1TVCT "
                             "(bits 0, 1, 13, 14) and nothing else")
        if cnthctl not in (EL1PCTEN | EL1PCEN, TRAP_ALL_TIME):
            raise ValueError(f"CNTHCTL_EL2 = {cnthctl:#x}: vlab traps the guest's time all or not at all "
                             f"({EL1PCTEN | EL1PCEN:#x}: no trap, TRAP_ALL_TIME = {TRAP_ALL_TIME:#x}: every access)")
        self.cnthctl = cnthctl
        self.time_trapped = cnthctl == TRAP_ALL_TIME
        self.ram_size = ram_size
        self.trace_limit = trace_limit
        self.index = self.host.admit(self, stage2, vmid)
        self.shadow: ShadowPaging | None = None
        if stage2 is None:
            self.memory = None
            self._ram, self.ram_address = zeroed_host_buffer(ram_size)
        else:
            self.memory = VmMemory(self.host.memory, RAM_BASE, ram_size, stage2, seed, self.vmid)
            self.memory.on_change = self.stage2_changed
            if paging == "shadow":
                self.shadow = ShadowPaging(self.memory)
                self.shadow.on_revoke = lambda: self.host.invalidate_stage2(self, None)
        # Post-copy (vlab.hyp.migration): told (ipa, size) before the hypervisor or a device reads or
        # writes the VM's RAM, to pull the pages still on the source host first -- as a stage-2 fault
        # pulls them for the guest. None: the VM's RAM is all here.
        self.fetch_remote: Callable[[int, int], None] | None = None
        self.uart = PL011()
        # The GIC: its distributor emulated by the hypervisor (an exit per access); its CPU interface
        # is the hardware's GICV, which stage 2 maps at the guest's GICC address (no exits).
        self.vgic = VGic(vcpus, on_wake=lambda index: self.host.interrupt_arrived(self.vcpus[index]))
        self.vgic.map(VIRTUAL_TIMER_PPI, VIRTUAL_TIMER_PPI)  # the virtual timer, through a HW list register
        self.gicv_accesses: Counter[str] = Counter()  # GICV register name -> accesses, no exit
        self.gicv_trace: deque[MmioAccess] = deque(maxlen=trace_limit)  # those accesses, in order
        # Guest accesses to its counters and timers (CNTVCT_EL0, CNTV_*...: what CNTHCTL_EL2 could trap)
        # that the generic timer served without an exit, the virtual counter offset by CNTVOFF_EL2.
        self.timer_accesses = 0
        # The board's virtio console, as the VM's own device: it reads and writes the VM's RAM by IPA.
        self.virtio_console = VirtioConsole()
        # Transport n's interrupt is SPI 16 + n (INTID 48 + n) of the VM's virtual distributor, as on QEMU virt.
        self.virtio = VirtioMmioBus(GuestMemory(RAM_BASE, ram_size, self.read_memory, self.write_memory),
                                    [self.virtio_console], interrupt=lambda intid, level: self.vgic.set_line(0, intid, level),
                                    device_polls=virtio_polls)
        self.devices: list[Device] = [self.uart, self.vgic.frame(0), self.virtio]
        self.gicc_emulated = gic_cpu_interface == "emulated"
        if self.gicc_emulated:
            self.devices.append(self.vgic.cpu_interface_frame(0))
        self.handlers: dict = dict(DEFAULT_HANDLERS)
        # An access to an emulated device served in place (vlab.hyp.pcpu), and every other exit
        # (`dispatch`): a hypervisor structure (vlab.hyp.structure) wraps both on this VM.
        self.serve_mmio = serve_mmio
        self.exits: Counter[str] = Counter()
        self.trap_log: deque[TrapRecord] = deque(maxlen=trace_limit)
        self.mmio_trace: deque[MmioAccess] = deque(maxlen=trace_limit)
        self.sysreg_plans: dict = {}  # vlab.hyp.pcpu: what each system-register access means here
        self._miss_levels: dict[int, int] = {}  # device page -> the stage-2 level its walk misses at
        self.vcpus = [VCpu(self, i, self.host.new_context(), Platform(self, i), trace_limit, weight, cap)
                      for i in range(vcpus)]
        for vcpu in self.vcpus:
            vcpu.vpidr = self.host.midr
        self.running = False
        self.powered_off = False
        self.started = False
        self._stop: tuple[StopReason, str, VCpu | None, GuestException | None] | None = None

    @property
    def vmid(self) -> int:
        """The VMID stage 2 tags this VM's TLB entries with (VTTBR_EL2[63:48])."""
        return self.host.vmid_of(self)

    # --- making one -----------------------------------------------------------------

    @classmethod
    def from_image(cls, image: Image, **options) -> VM:
        vm = cls(**options)
        load(vm, image)
        return vm

    @classmethod
    def from_file(cls, path: str | Path, **options) -> VM:
        """A VM booting FILE (.S, raw binary or ELF), as `vlab run FILE --virt` does."""
        return cls.from_image(image_from_file(path), **options)

    @classmethod
    def from_source(cls, source: str, **options) -> VM:
        from vlab.asm import assemble  # the assembler is only needed for sources

        return cls.from_image(image_from_program(assemble(source, RAM_BASE)), **options)

    # --- memory, as the loader and the hypervisor see it: by IPA ----------------------------

    @property
    def regions(self) -> list[Region]:
        """What the guest finds at which IPA: its devices, then its RAM (no flash: a VM has none)."""
        return [Region(d.name, d.base, d.size, "device") for d in self.devices] + [self.ram]

    @property
    def ram(self) -> Region:
        return Region("ram", RAM_BASE, self.ram_size, "ram")

    def region_at(self, address: int, length: int = 1) -> Region | None:
        return Region.find(self.regions, address, length)

    def start_at(self, pc: int) -> None:
        """Where the boot vCPU starts (the loader's entry point)."""
        self.vcpus[0].pc = pc

    def device_accesses(self) -> list[MmioAccess]:
        """Every device access the guest made, in order, as it addressed them: the exits
        (`mmio_trace`) and the GIC CPU interface's accesses the hardware served (`gicv_trace`, named
        GICC_* as at the guest's GICC address) -- what a bare board's `mmio_trace` lists."""
        served = (a._replace(device="gicc", register="GICC_" + a.register.removeprefix("GICV_"))
                  for a in self.gicv_trace)
        return sorted([*self.mmio_trace, *served], key=lambda a: a.tick)

    def read_memory(self, ipa: int, size: int) -> bytes:
        """Guest RAM by IPA."""
        if not self.ram.contains(ipa, size):
            raise ValueError(f"{size} bytes at {ipa:#x} are not in the VM's RAM")
        if self.fetch_remote is not None:
            self.fetch_remote(ipa, size)
        if self.memory is not None:
            return self.memory.read(ipa, size)
        return bytes(self._ram[ipa - RAM_BASE:ipa - RAM_BASE + size])

    def write_memory(self, ipa: int, data: bytes) -> None:
        if not self.ram.contains(ipa, max(len(data), 1)):
            raise ValueError(f"{len(data)} bytes at {ipa:#x} do not fit in the VM's RAM")
        if self.fetch_remote is not None:
            self.fetch_remote(ipa, len(data))  # a page written in part must hold the rest of its data first
        if self.memory is not None:
            self.memory.write(ipa, bytes(data))
            if self.shadow is not None:
                self.shadow.written_by_hypervisor(ipa, len(data))
        else:
            self._ram[ipa - RAM_BASE:ipa - RAM_BASE + len(data)] = bytes(data)

    def resolve_stage2(self, ipa: int | None, write: bool) -> str | None:
        """Fix a stage-2 fault on RAM if it is ours to fix (demand paging, dirty tracking, copy-on-write)."""
        return self.memory.resolve(ipa, write) if self.memory is not None and ipa is not None else None

    def stage2_changed(self, ipa: int | None = None) -> None:
        """Stage-2 entries changed (of one IPA page, or all): every TLB that may hold the old ones, on
        every physical CPU, forgets them -- what TLBI IPAS2E1IS / VMALLS12E1IS broadcast on hardware."""
        self._miss_levels.clear()
        if self.shadow is not None:
            self.shadow.forget_all()  # every shadow entry was made through the old map
            ipa = None  # and the TLB model's entries hold no IPA to find them by
        self.host.invalidate_stage2(self, ipa)

    def translation_changed(self, vcpu: VCpu) -> None:
        """The vCPU's translation registers changed: forget what its core cached under the old ones."""
        if self.memory is not None:
            self.host.invalidate_stage1(vcpu)

    def stage2_miss_level(self, ipa: int) -> int:
        """The level at which this VM's stage-2 tables find no entry for `ipa` (a device, or nothing).

        Without tables, where tables mapping just the RAM would miss: vlab's stage-2 tables start at
        level 1 (1 GiB entries), with 2 MiB entries at level 2 and the RAM's 4 KB pages at level 3."""
        page = ipa & ~(PAGE - 1)
        level = self._miss_levels.get(page)
        if level is None:
            if self.memory is not None:
                fault = self.memory.translate(page).fault
                level = fault.level if fault is not None else 3
            else:
                first, last = RAM_BASE, RAM_BASE + self.ram_size - 1
                level = next((lvl for lvl, shift in ((1, 30), (2, 21))
                              if not first >> shift <= page >> shift <= last >> shift), 3)
            self._miss_levels[page] = level
        return level

    def device_at(self, ipa: int | None) -> Device | None:
        return next((d for d in self.devices if ipa is not None and d.base <= ipa < d.base + d.size), None)

    # --- the hypervisor ---------------------------------------------------------------

    def set_handler(self, ec, handler: Handler) -> None:
        """Handle exits of exception class `ec` with `handler(vcpu, exit) -> str` (e.g. a student's)."""
        self.handlers[ec] = handler

    def dispatch(self, vcpu: VCpu, exit: Exit, served: str) -> tuple:
        """Run the handler of `exit`'s class, log it, and return what it asked for: (resume_at, effect).

        A handler that fails stops the VM with a report instead of raising."""
        handler = self.handlers.get(exit.syndrome.ec)
        tick = vcpu.ticks()
        if handler is None:
            action = vcpu.inject(exit, exit.syndrome, "the hypervisor has no handler for this exit")
        else:
            try:
                action = handler(vcpu, exit)
            except Exception as e:  # noqa: BLE001 - a broken handler stops the VM with a report
                action = f"handler {getattr(handler, '__name__', handler)} failed: {type(e).__name__}: {e}"
                vcpu.halt(StopReason.ERROR, f"{action} (on {exit.describe()})")
        kind = EC_NAMES[exit.syndrome.ec]
        self.exits[kind] += 1
        self.trap_log.append(TrapRecord(tick, vcpu.index, kind, exit, str(action), served))
        return vcpu._take_outcome()

    def served_by_loop(self) -> None:
        """The exit just logged as served in place needed the run loop after all (its handler
        blocked, injected, halted...): the log says so."""
        last = self.trap_log[-1]
        self.trap_log[-1] = last._replace(served=RUN_LOOP)

    def record_in_place(self, vcpu: VCpu, exit: Exit, action: str) -> None:
        """Count and log an exit vlab served in place without calling a handler (a device access)."""
        self.record(vcpu, EC_NAMES[exit.syndrome.ec], exit, action, IN_PLACE)

    def record(self, vcpu: VCpu, kind: str, exit: Exit | None, action: str, served: str) -> None:
        """Count one exit (or injected interrupt) and log it."""
        self.exits[kind] += 1
        self.trap_log.append(TrapRecord(vcpu.ticks(), vcpu.index, kind, exit, action, served))

    def psci(self, vcpu: VCpu, fid: int) -> str:
        """The firmware interface, played by the hypervisor: power, and starting secondary vCPUs.
        CPU_SUSPEND blocks the vCPU as a trapped WFI does (handle_wfx), and returns SUCCESS."""
        if fid in _CPU_ON:
            return self._cpu_on(vcpu, vcpu.x(1), vcpu.x(2), vcpu.x(3))
        # Every other function takes at most two arguments, x1 and x2, read only for those that take
        # them (registers are read one call each); only AFFINITY_INFO asks which vCPUs are on.
        if fid in _AFFINITY_INFO:
            cpus = {v.vmpidr & psci.MPIDR_AFFINITY: psci.AffinityState.OFF if v.state is VCpuState.OFF
                    else psci.AffinityState.ON for v in self.vcpus}
            outcome = psci.call(fid, (vcpu.x(1), vcpu.x(2), 0), cpus)
        else:
            outcome = psci.call(fid, (vcpu.x(1) if fid in psci.TAKES_ARGUMENT else 0, 0, 0), psci.ONLY_CPU_ON)
        vcpu.set_x(0, outcome.x0)
        if outcome.suspend:
            return f"PSCI {outcome.function} (a WFI): x0 = 0; {vcpu.wait_for_interrupt()}"
        if fid == _CPU_OFF:
            vcpu.halt(StopReason.STOPPED, f"vCPU{vcpu.index} turned itself off (PSCI CPU_OFF)")
        elif outcome.power_off or outcome.reset:
            reason = StopReason.RESET if outcome.reset else StopReason.POWERED_OFF
            vcpu.halt(reason, f"PSCI {outcome.function} from vCPU{vcpu.index}")
        return f"PSCI {outcome.function}: x0 = {outcome.x0:#x}"

    def _cpu_on(self, caller: VCpu, target: int, entry: int, context: int) -> str:
        index = target & psci.MPIDR_AFFINITY
        if index >= len(self.vcpus):
            caller.set_x(0, psci.PsciReturn.INVALID_PARAMETERS & _U64)
            return f"PSCI CPU_ON {target:#x}: no such vCPU: INVALID_PARAMETERS"
        if entry & 3 or not caller.ram.contains(entry, 4):
            caller.set_x(0, psci.PsciReturn.INVALID_ADDRESS & _U64)
            return f"PSCI CPU_ON vCPU{index} at {entry:#x}: not an instruction in the VM's RAM: INVALID_ADDRESS"
        vcpu = self.vcpus[index]
        if vcpu.state is not VCpuState.OFF:
            caller.set_x(0, psci.PsciReturn.ALREADY_ON & _U64)
            return f"PSCI CPU_ON vCPU{index}: ALREADY_ON"
        vcpu.pc = entry
        vcpu.set_x(0, context)
        caller.set_x(0, psci.PsciReturn.SUCCESS)
        self.host.power_on(vcpu)
        return f"PSCI CPU_ON vCPU{index} at {entry:#x} with x0 = {context:#x}"

    def halt(self, vcpu: VCpu, reason: StopReason, message: str) -> None:
        """A handler ended the run: this vCPU's alone (CPU_OFF), or the VM's."""
        if reason is StopReason.STOPPED:
            self.host.power_down(vcpu)
            if all(v.state is VCpuState.OFF for v in self.vcpus):
                self.stop(StopReason.IDLE, "every vCPU has turned itself off", vcpu)
            return
        self.stop(reason, message, vcpu)

    def stop(self, reason: StopReason, message: str, vcpu: VCpu | None = None,
             exception: GuestException | None = None) -> None:
        """The VM's run ends (the first reason given wins); power-off and reset are for good."""
        if not self.running:
            return
        self.running = False
        self._stop = (reason, message, vcpu, exception)
        if reason in _PERMANENT:
            self.powered_off = True
        self.host.vm_stopped(self)

    def depart(self, message: str) -> None:
        """The VM has left this host for good (it migrated): it never runs here again, its frames go
        back to the host, and its result says `message`."""
        self.stop(StopReason.STOPPED, message)
        self.powered_off = True
        self._stop = (StopReason.STOPPED, message, None, None)
        if self.memory is not None:
            self.memory.release()

    # --- running --------------------------------------------------------------------

    def run(self, max_insns: int = DEFAULT_MAX_INSNS, timeout_s: float = DEFAULT_TIMEOUT_S) -> VmRunResult:
        """Run this VM on its host until it powers off, goes idle, or a limit is reached; other VMs on
        the host wait. `max_insns` counts the instructions of all its vCPUs together."""
        return self.host.run(max_insns, timeout_s, vms=[self]).vms[0]

    def step(self) -> RunResult:
        """One instruction (or one exit, or one exception) of the boot vCPU."""
        return self.host.step(self)

    def result(self) -> VmRunResult:
        """How the VM's last run ended: the boot vCPU's registers, the exits, each vCPU's figures."""
        reason, message, _, exception = self._stop or (StopReason.STOPPED, "not run yet", None, None)
        boot = self.vcpus[0]
        base = RunResult(reason, message, self.uart.text, sum(v.instructions for v in self.vcpus),
                         boot.pc, boot.el, boot.registers(), exception, self.virtio_console.text)
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(RunResult)}
        return VmRunResult(**fields, exits=dict(self.exits), vcpus=self.host.vcpu_figures(self),
                           without_exits=dict(self.gicv_accesses))


def share_identical_pages(*vms: VM) -> int:
    """Content-based page sharing between VMs on one host; returns the host frames freed."""
    from vlab.hyp.memory import share_identical_pages as share

    if any(vm.memory is None for vm in vms) or len({id(vm.host) for vm in vms}) != 1:
        raise ValueError("page sharing needs VMs with stage 2 on one host (VM(stage2=..., host=...))")
    freed = share([vm.memory for vm in vms])
    for vm in vms:
        vm.stage2_changed()  # their cached translations may still allow writes to what is now shared
    return freed
