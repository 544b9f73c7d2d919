"""A virtual CPU: a core that runs the guest natively and exits to the hypervisor on a trap.

A vCPU is the bare board's core with three differences, each one what real
virtualization hardware does:

* memory: the guest sees only the RAM its VM gives it (shared by the VM's vCPUs);
  an access to any other address is a *stage-2 fault*, an exit -- which is how a
  hypervisor emulates devices: the guest's UART is not there, so every access to
  it exits and the hypervisor plays the device;
* trap controls: the VM's HCR_EL2-style bits decide which system-register
  accesses, WFIs and SMCs exit instead of running;
* identity: reads of MIDR_EL1/MPIDR_EL1 return the vCPU's VPIDR/VMPIDR values,
  without an exit, as the hardware substitutes them.

Everything else -- the guest's own system calls, its undefined instructions, its
timer interrupts -- is delivered to the guest kernel at EL1 exactly as on the bare
board: the guest kernel stays in charge of its own user programs.

Each vCPU owns its own core (its own Unicorn instance), so its registers and its
guest-visible EL1 system registers (VBAR_EL1, TTBR0_EL1, ...) are its own and no
other vCPU or VM can see them; a hypervisor on one physical core would save and
restore exactly this state on every switch.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from vlab.arch.esr import DataAbort, ExceptionClass, Syndrome, SysRegAccess
from vlab.arch.hcr import HCR
from vlab.arch.sysregs import BY_ENCODING
from vlab.hyp.exits import Exit
from vlab.hyp.memory import HOST_BASE
from vlab.machine.board import RAM_BASE, Board, Region, RunResult, StopReason
from vlab.machine.cpu import CPU, GuestException
from vlab.mmu import tlb_fill
from vlab.mmu.tlb import TLB
from vlab.mmu.walk import Access, Fault, FaultKind, Regime, stage1_walk

if TYPE_CHECKING:
    from vlab.hyp.vm import VM

MPIDR_RES1 = 1 << 31
TRANSLATION_REGISTERS = ("SCTLR_EL1", "TTBR0_EL1", "TTBR1_EL1", "TCR_EL1")
STUCK_EXITS = 8  # the same trapped instruction exiting this many times in a row: the handler is broken
TLB_ENTRIES = 1024


class VCpuState(enum.Enum):
    RUNNING = "running"
    OFF = "off"  # never started (CPU_ON starts it) or turned off (CPU_OFF)
    IDLE = "idle"  # waiting in WFI for something that will never come


class VCpu(Board):
    """One vCPU of `vm`, numbered `index` (its MPIDR affinity)."""

    def __init__(self, vm: VM, index: int):
        self.vm, self.index = vm, index
        self.state = VCpuState.RUNNING if index == 0 else VCpuState.OFF
        self.tlb = TLB(TLB_ENTRIES)  # with stage 2: vlab's TLB model, behind Unicorn's own
        self._translation: tlb_fill.GuestTranslation | None = None  # with stage 2, set by _map_memory
        super().__init__(vm.ram_size, uart=vm.uart)
        self.vpidr = self.cpu.read_sysreg("MIDR_EL1")  # as KVM does: the guest sees the host's MIDR
        self.vmpidr = MPIDR_RES1 | index
        self._halt: RunResult | None = None  # set by a handler that ends this vCPU's run
        self._stuck = 0  # the same exit, in a row, that left the guest where it was
        self._stuck_key: tuple | None = None

    def _map_memory(self, ram_size: int) -> list[Region]:
        """Only the VM's RAM, shared with its other vCPUs; devices are reached by exits.

        With stage 2, the core sees host memory instead, and vlab translates every access
        (the guest's stage 1, then the VM's stage 2) on each miss of Unicorn's own small TLB
        (1 KB pages): vlab's TLB model answers first; on its miss, the nested walk, whose
        result the model keeps.
        """
        memory = self.vm.memory
        if memory is None:
            self.cpu.map_host_buffer(RAM_BASE, ram_size, self.vm.ram_address)
        else:
            self.cpu.map_host_buffer(HOST_BASE, memory.host.size, memory.host.address)
            self._translation = tlb_fill.GuestTranslation(self.cpu, memory.host.memory, memory.regime,
                                                          memory.tables.root, HOST_BASE, self.tlb, memory.vmid)
            tlb_fill.install(self.cpu, self._translation, self._translation.uncached)
        devices = [Region(d.name, d.base, d.size, "device") for d in self.vm.devices]
        return devices + [Region("ram", RAM_BASE, ram_size, "ram")]

    @property
    def walks(self) -> int:
        """Nested walks the guest's accesses needed (vlab's TLB model missed); 0 without stage 2."""
        return 0 if self._translation is None else self._translation.walks

    def write_memory(self, address: int, data: bytes) -> None:
        if self.vm.memory is None:
            return super().write_memory(address, data)
        self.vm.memory.write(address, bytes(data))

    def read_memory(self, address: int, size: int) -> bytes:
        if self.vm.memory is None:
            return super().read_memory(address, size)
        return self.vm.memory.read(address, size)

    # --- what a handler uses --------------------------------------------------------

    def x(self, n: int) -> int:
        """General-purpose register Xn of the guest (31 reads as zero)."""
        return self.cpu.x(n)

    def set_x(self, n: int, value: int) -> None:
        self.cpu.set_x(n, value)

    def read_sysreg(self, name: str) -> int:
        """A guest-visible system register of this vCPU."""
        return self.cpu.read_sysreg(name)

    def write_sysreg(self, name: str, value: int) -> None:
        self.cpu.write_sysreg(name, value)
        if self.vm.memory is not None and name in TRANSLATION_REGISTERS:
            self.flush_tlb()  # cached translations were made under the old tables

    def flush_tlb(self) -> None:
        """Forget the core's cached translations (after stage 1's or stage 2's tables change)."""
        if self.vm.memory is not None:
            tlb_fill.flush(self.cpu)
            self.tlb.vmalle1(self.vm.memory.vmid)

    def skip(self, exit: Exit) -> None:
        """The trapped instruction has been emulated: it retires, and the guest goes on after it."""
        self.cpu.pc = exit.address + 4
        self.cpu.instructions += 1  # the guest's clock counts it, as on the bare machine

    def inject(self, exit: Exit, syndrome: Syndrome, why: str) -> str:
        """Deliver a synchronous exception to the guest kernel at VBAR_EL1, as if its instruction raised it."""
        far = exit.far if syndrome.ec in _ABORTS else None
        exc = GuestException(syndrome, exit.address, exit.address, exit.el, far=far, detail=why)
        self._halt = self._deliver(exc)
        return f"injected {syndrome.ec.name} into the guest ({why})"

    def halt(self, reason: StopReason, message: str) -> None:
        """End this vCPU's run after the current handler (power off, CPU_OFF, ...)."""
        self._halt = self._result(reason, message)

    def wait_for_interrupt(self) -> str:
        """Sleep until this vCPU's timer fires; with nothing to wake it, the vCPU is idle."""
        deadline = self.timer.next_deadline()
        self._halt = self._on_wfi_natively()
        if self._halt is not None:
            return "nothing can wake the vCPU: it stays idle"
        return f"vCPU sleeps until its timer fires at tick {deadline}" if deadline is not None else "resumed"

    # --- the hardware side: when does the guest exit? -------------------------------

    def _on_sysreg(self, cpu: CPU, access: SysRegAccess, value: int) -> bool:
        reg = BY_ENCODING.get(access.encoding)
        if cpu.el == 1 and reg is not None:
            controls = (reg.read_trap if access.is_read else reg.write_trap) & self.vm.traps
            if controls:
                pc = cpu.pc
                cpu.trap(GuestException(Syndrome(ExceptionClass.SYS64, access.iss), pc, pc, 1,
                                        detail=f"{reg.name} trapped by HCR_EL2.{controls.name}", target_el=2))
                return True
            if access.is_read and reg.name in ("MIDR_EL1", "MPIDR_EL1"):
                cpu.set_x(access.rt, self.vpidr if reg.name == "MIDR_EL1" else self.vmpidr)
                return True
            if not access.is_read and reg.name in TRANSLATION_REGISTERS and self.vm.memory is not None:
                self.write_sysreg(reg.name, cpu.x(access.rt))  # performed here, so the TLB is flushed after
                return True
        if self.vm.memory is not None and access.op0 == 1 and access.crn == 8:
            self._tlbi(access)  # and let the instruction run: Unicorn flushes its own TLB
            return False
        if self.vm.memory is not None and (access.op0, access.op1, access.crn, access.crm) == (1, 0, 7, 8) \
                and access.op2 < 4:
            # AT S1E1R/W, S1E0R/W: Unicorn's own AT would walk the guest's tables at IPAs as if they
            # were host addresses. vlab answers from its walk instead, as the hardware would.
            self._address_translate(access)
            return True
        return super()._on_sysreg(cpu, access, value)

    # --- address translation instructions and TLB maintenance (VMs with stage 2) -----------

    def _address_translate(self, access: SysRegAccess) -> None:
        """AT S1E{1,0}{R,W} Xt: the stage-1 translation of Xt, into PAR_EL1 (an IPA, in a VM)."""
        cpu, memory = self.cpu, self.vm.memory
        va, el0 = cpu.x(access.rt), access.op2 >= 2
        kind = Access.WRITE if access.op2 & 1 else Access.READ
        if not cpu.read_sysreg("SCTLR_EL1") & 1:
            self.write_sysreg("PAR_EL1", va & ((1 << 48) - 1) & ~0xFFF)  # MMU off: the VA is the address
            return
        try:
            stage1 = Regime.from_tcr(cpu.read_sysreg("TCR_EL1"))
        except ValueError:
            self.write_sysreg("PAR_EL1", 1 | FaultKind.TRANSLATION << 1 | 1 << 11)
            return
        ttbr = cpu.read_sysreg("TTBR0_EL1") & ((1 << 48) - 2)
        t = stage1_walk(memory.host.memory, stage1, ttbr, memory.regime, memory.tables.root, va, kind, el0)
        if t.fault is not None:
            f = t.fault  # F, FST, PTW (a stage-2 fault on the walk), S (the stage that faulted)
            par = 1 | f.fsc << 1 | int(f.s1ptw) << 8 | int(f.stage == 2) << 9 | 1 << 11  # bit 11 RES1
        else:
            attr = cpu.read_sysreg("MAIR_EL1") >> (8 * t.leaf.attr) & 0xFF
            # bit 11 is RES1; NS (bit 9) is set: vlab's guests run in the non-secure state
            par = attr << 56 | (t.output & ((1 << 48) - 1) & ~0xFFF) | 1 << 11 | 1 << 9 | t.leaf.sh << 7
        self.write_sysreg("PAR_EL1", par)

    def _tlbi(self, access: SysRegAccess) -> None:
        """The guest's TLBI instruction, applied to vlab's TLB model (Unicorn flushes its own)."""
        vmid, operand = self.vm.memory.vmid, self.cpu.x(access.rt)
        va, asid = (operand & ((1 << 44) - 1)) << 12, operand >> 48
        if access.op2 in (1, 5):  # VAE1, VALE1
            self.tlb.vae1(vmid, asid, va)
        elif access.op2 == 2:  # ASIDE1
            self.tlb.aside1(vmid, asid)
        elif access.op2 in (3, 7):  # VAAE1, VAALE1
            self.tlb.vaae1(vmid, va)
        else:  # VMALLE1 and anything broader
            self.tlb.vmalle1(vmid)

    def _on_exception(self, exc: GuestException) -> RunResult | None:
        exit = self._exit_for(exc)
        if exit is None:
            return super()._on_exception(exc)  # the guest's own business (or EL3 firmware's)
        self._halt = None
        self.vm.handle_exit(self, exit)
        return self._halt or self._check_progress(exit)

    def _check_progress(self, exit: Exit) -> RunResult | None:
        """Stop a handler that leaves the guest on its trapped instruction, the same exit again and again."""
        key = (exit.address, exit.syndrome.esr, exit.ipa)
        stuck = exit.return_address == exit.address and self.cpu.pc == exit.address
        self._stuck = self._stuck + 1 if stuck and key == self._stuck_key else int(stuck)
        self._stuck_key = key
        if self._stuck < STUCK_EXITS:
            return None
        return self._result(StopReason.ERROR, f"the {exit.ec.name} handler returned {self._stuck} times without "
                            f"moving the guest past `{exit.instruction}` at {exit.address:#x}: "
                            "did it forget vcpu.skip(exit)?")

    def _on_wfi(self) -> RunResult | None:
        if not self.vm.traps & HCR.TWI:
            return self._on_wfi_natively()
        # The WFI traps instead of completing: the guest is at the WFI, the hypervisor decides.
        self.cpu.pc -= 4
        self.cpu.instructions -= 1
        self._halt = None
        exit = self._make_exit(Syndrome(ExceptionClass.WFX, 0), self.cpu.pc, self.cpu.el, trapped=True)
        self.vm.handle_exit(self, exit)
        return self._halt or self._check_progress(exit)

    def _on_wfi_natively(self) -> RunResult | None:
        return super()._on_wfi()

    def _take_pending_irq(self) -> bool:
        taken = super()._take_pending_irq()
        if taken:  # the timer's interrupt goes to the hypervisor, which injects a virtual IRQ
            self.vm.record(self, "IRQ", None, f"virtual timer fired: virtual IRQ injected at "
                                              f"VBAR_EL1+{self.cpu.pc - self.read_sysreg('VBAR_EL1'):#x}")
        return taken

    def _exit_for(self, exc: GuestException) -> Exit | None:
        """The exit this exception is, when it goes to EL2; None when the guest kernel takes it."""
        ec = exc.syndrome.ec
        if exc.target_el == 2:
            return self._make_exit(exc.syndrome, exc.address, exc.el, trapped=True, far=exc.far, ipa=exc.ipa,
                                   word=exc.word)
        if ec is ExceptionClass.HVC64 and exc.el == 1:
            return self._make_exit(exc.syndrome, exc.address, exc.el, trapped=False, word=exc.word)
        if ec is ExceptionClass.SMC64 and exc.el == 1 and self.vm.traps & HCR.TSC:
            # A trapped SMC does not execute: ELR_EL2 is the SMC itself.
            self.cpu.pc = exc.address
            self.cpu.instructions -= 1
            return self._make_exit(exc.syndrome, exc.address, exc.el, trapped=True, word=exc.word)
        if self.vm.memory is None and ec in _ABORTS and exc.far is not None and self.region_at(exc.far) is not self.ram:
            return self._stage2_abort(exc)  # no stage-2 tables: an access outside RAM stands for a stage-2 miss
        return None

    def _stage2_abort(self, exc: GuestException) -> Exit:
        """An access outside the VM's RAM: a stage-2 translation fault, syndrome filled as hardware does."""
        word = self.cpu.read_word(exc.address)
        if exc.syndrome.ec in (ExceptionClass.IABT_LOWER, ExceptionClass.IABT_CURRENT):
            access = Access.FETCH
        else:
            access = Access.WRITE if DataAbort.from_iss(exc.syndrome.iss).wnr else Access.READ
        # With the guest's MMU off, its addresses are IPAs. The fault's level is where the VM's
        # stage-2 tables would have missed, had it any: the same as in a VM with stage 2.
        miss = Fault(FaultKind.TRANSLATION, 2, self._stage2_miss_level(exc.far), exc.far, "outside the VM's RAM",
                     ipa=exc.far)
        syndrome = tlb_fill.syndrome(miss, access, exc.el, word or 0)
        return self._make_exit(syndrome, exc.address, exc.el, trapped=True, far=exc.far, ipa=exc.far, word=word)

    def _stage2_miss_level(self, ipa: int) -> int:
        """The level at which stage-2 tables mapping just the VM's RAM find no entry for `ipa`.

        vlab's stage-2 tables (vlab.hyp.memory) start at level 1, whose entries cover 1 GiB, with
        2 MiB entries at level 2 and the RAM's 4 KB pages at level 3.
        """
        first, last = RAM_BASE, RAM_BASE + self.vm.ram_size - 1
        for level, shift in ((1, 30), (2, 21)):
            if not first >> shift <= ipa >> shift <= last >> shift:
                return level
        return 3

    def _make_exit(self, syndrome: Syndrome, address: int, el: int, trapped: bool,
                   far: int | None = None, ipa: int | None = None, word: int | None = None) -> Exit:
        """The exit of the instruction at `address`; its encoding is read unless already known."""
        if word is None:
            word = self.cpu.read_word(address)
        return Exit(syndrome, address, address if trapped else address + 4, word, self.index, el, far, ipa)


_ABORTS = (ExceptionClass.DABT_LOWER, ExceptionClass.DABT_CURRENT,
           ExceptionClass.IABT_LOWER, ExceptionClass.IABT_CURRENT)
