"""A physical CPU of the host: one core (one Unicorn engine), the vCPU loaded on it, and the
hypervisor's exit path on that core.

    load(vcpu)     the world switch: save the outgoing vCPU, restore the incoming one, switch stage 2
    run(n)         run the loaded vCPU natively for at most n ticks; returns when the loop is needed

Exits take one of two paths, both through the VM's dispatch table (`vm.handlers`):

* in place -- inside Unicorn's hook, the emulator never stops: a trapped system-register access,
  a hypercall, an access to an emulated device, a stage-2 fault on the VM's own RAM. This is
  what KVM serves in the kernel without returning to its user-space loop.
* the run loop -- the run returns and `run()` handles the exit here: what needs the loop (the
  guest kernel's own exceptions, a trapped WFI that blocks, an exception to inject, a power-off)
  or a handler that is not vlab's own (a student's handler sees every exit of its class here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from vlab.arch import ldst
from vlab.arch.esr import DataAbort, ExceptionClass, Syndrome, SysRegAccess
from vlab.arch.hcr import HCR
from vlab.arch.sysregs import BY_ENCODING
from vlab.hyp import handlers
from vlab.hyp.exits import IN_PLACE, RUN_LOOP, Exit
from vlab.hyp.memory import HOST_BASE
from vlab.hyp.shadow import SHADOW_WINDOW, ShadowTranslation, table_write_syndrome
from vlab.hyp.vcpu import Block, Halt, Inject, VCpu, VCpuState, Yield
from vlab.hyp.vgic import serve_physical_irq
from vlab.machine.board import RAM_BASE, MmioAccess, StopReason
from vlab.machine.cpu import CPU, EXCP_HVC, EXCP_SMC, GuestException, StopKind
from vlab.machine.gic import GICC_BASE, GICC_SIZE, MAINTENANCE_PPI, PHYSICAL_TIMER_PPI, VIRTUAL_TIMER_PPI
from vlab.machine.gic_virt import GICV_BASE, GICV_SIZE, VirtualCpuInterface
from vlab.machine.timer import TRAPPED_BY_CNTHCTL, el0_may_access, serve_timer, stop_by_next_deadline
from vlab.mmu import tlb_fill
from vlab.mmu.faults import Access, Fault, FaultKind
from vlab.mmu.tlb import TLB
from vlab.mmu.walk import stage1_walk

if TYPE_CHECKING:
    from vlab.hyp.host import Host
    from vlab.hyp.vm import VM

TLB_ENTRIES = 1024  # vlab's TLB model of this core, entries tagged by VMID and ASID
# The exits this core can serve without stopping the emulator (the aborts only with vlab's own
# handlers, which stand for what KVM serves in the kernel); any exit may still need the loop.
SERVED_IN_PLACE = (ExceptionClass.SYS64, ExceptionClass.HVC64, ExceptionClass.SMC64,
                   ExceptionClass.DABT_LOWER, ExceptionClass.IABT_LOWER)
STUCK_EXITS = 8  # the same trapped instruction exiting this many times in a row: the handler is broken
EXITS_KEPT = 4096  # exits built once per instruction (see _trap_sysreg), at most

# What a system-register access means to the hypervisor, decided once per VM and access:
NATIVE, TRAP, IDENTITY, TRANSLATION, TLBI, AT, TIME, TIME_TRAP = range(8)


class PhysicalCpu:
    """Core `index` of `host`."""

    def __init__(self, host: Host, index: int):
        self.host, self.index = host, index
        self.cpu = CPU()
        self.cpu.sysreg_handler = self._on_sysreg
        self.cpu.exception_handler = self._on_exception
        self.current: VCpu | None = None  # loaded (its state is in the engine), running or not
        # This core's part of the host's GIC: its CPU interface (the hypervisor's), and its virtual
        # CPU interface, whose list registers hold the loaded vCPU's interrupts and which drives
        # the core's virtual IRQ: the guest takes it by itself, with no exit.
        self.gicc = host.gic.cpu_interfaces[index]
        self.gicv = VirtualCpuInterface(host.gic.distributor, index, on_signal=lambda _cpu: self._virtual_irq_changed())
        self.cpu.irq.on_taken = self._virtual_irq_taken
        self.idle_ticks = 0  # host ticks with no vCPU to run, or waiting in a guest's WFI
        self.switch_ticks = 0  # host ticks charged for world switches
        self.switches = 0
        self.tlb = TLB(TLB_ENTRIES)
        self._last_ran: dict[int, int] = {}  # VM index -> its vCPU that last ran here (KVM's last_vcpu_ran)
        self._translation: ShadowTranslation | None = None  # with stage 2 or shadows (virtual-TLB mode)
        self._window = False  # SHADOW_WINDOW is mapped (a shadow-paged VM ran here)
        self._windows: list[tuple[int, int]] = []  # device windows mapped for exits served in place
        self._bus: set[int] = set()  # physical addresses of the host's devices mapped on this core
        self._pending: Callable[[], None] | None = None  # what an exit served in place left to the loop
        self._exits: dict[tuple, Exit] = {}  # exits of instructions that always make the same one
        self._split: tuple | None = None  # the first half of an 8-byte device access, awaiting the second
        self._sites: dict[tuple, tuple] = {}  # device accesses, decoded once per instruction (_mmio_site)

    # --- the host clock, as this core keeps it --------------------------------------------------

    def now(self) -> int:
        """Host ticks on this core: instructions it executed, ticks idle, ticks of world switches."""
        return self.cpu.clock() + self.idle_ticks + self.switch_ticks

    # --- memory map, set before each run ----------------------------------------------------------

    def map_memory(self, identity: VM | None) -> None:
        """Map what this core's physical address space holds: host memory (stage-2 VMs) or the one
        VM whose RAM needs no stage-2 tables, at its own address."""
        uc = self.cpu.uc
        if identity is not None:
            self.cpu.map_host_buffer(RAM_BASE, identity.ram_size, identity.ram_address)
            if not identity.gicc_emulated:
                # No stage-2 tables to put the GICV frame at the guest's GICC address: it is mapped there.
                uc.mmio_map(GICC_BASE, GICC_SIZE, self._gicv_read, None, self._gicv_write, None)
            return
        uc.mmio_map(GICV_BASE, GICV_SIZE, self._gicv_read, None, self._gicv_write, None)
        memory = self.host.memory
        self.cpu.map_host_buffer(HOST_BASE, memory.size, memory.address)
        self._translation = ShadowTranslation(self.cpu, memory.memory, None, 0, HOST_BASE, self.tlb,
                                              sees_every_write=True)
        self._translation.on_stage2_fault = self._stage2_fault
        self._translation.on_exit = self._shadow_exit
        tlb_fill.install(self.cpu, self._translation, self._translation.uncached)

    def map_devices(self, windows: list[tuple[int, int]]) -> None:
        """Map device windows (base, size) whose accesses are served in place; unmap the others."""
        uc = self.cpu.uc
        for base, size in self._windows:
            if (base, size) not in windows:
                uc.mem_unmap(base, size)
        for base, size in windows:
            if (base, size) not in self._windows:
                uc.mmio_map(base, size, self._mmio_read, base, self._mmio_write, base)
        self._windows = list(windows)

    def map_bus(self, devices) -> None:
        """Map the host's own devices (each with `.pa` and `.device`) at their physical addresses, their
        registers reached directly -- the bus, no hypervisor code on the way (passthrough)."""
        for entry in devices:
            if entry.pa not in self._bus:
                device = entry.device
                self.cpu.uc.mmio_map(HOST_BASE + entry.pa, device.size,
                                     lambda _uc, offset, size, d: d.read(offset, size), device,
                                     lambda _uc, offset, size, value, d: d.write(offset, size, value), device)
                self._bus.add(entry.pa)

    # --- the world switch -----------------------------------------------------------------------

    def load(self, vcpu: VCpu | None) -> None:
        """Make `vcpu` this core's: save the outgoing vCPU's state, restore the incoming one's, and
        point stage 2 (VTTBR_EL2, with its VMID) at the incoming VM. None leaves the core empty."""
        old = self.current
        if old is vcpu:
            return
        uc = self.cpu.uc
        if old is not None:
            uc.context_update(old.context)
            old.vm.vgic.put(old.index)  # its list registers, and the physical timer PPI's active state
            old._cpu, old._saved_at, old._now = None, self.now(), old._saved_time
        self.current = vcpu
        if vcpu is None:
            self.host.gic.set_ppi(self.index, VIRTUAL_TIMER_PPI, False)
            return
        uc.context_restore(vcpu.context)
        self.cpu.note_context_restored()
        vcpu._cpu, vcpu._now = self.cpu, self.now
        # Stage 2 and the TLBs first: loading the interrupt state can assert the IRQ line, whose
        # vector watch looks up the guest's code -- through the incoming VM's tables, never the last one's.
        vm = vcpu.vm
        if self._translation is not None:
            memory = vm.memory
            self._translation.switch(memory.regime, memory.tables.root, memory.vmid, vm.shadow)
            if vm.shadow is not None and not self._window:
                self._window = True
                uc.mmio_map(SHADOW_WINDOW, self.host.memory.size, self._window_read, None, self._window_write, None)
        if self._last_ran.get(vm.index, vcpu.index) != vcpu.index and vm.memory is not None:
            # Another vCPU of this VM ran here last: its stage-1 entries carry the same VMID and may
            # carry the same ASID with different tables. KVM flushes them here too.
            self.tlb.vmalle1(vm.memory.vmid)
        self._last_ran[vm.index] = vcpu.index
        self.flush_engine_tlb()  # Unicorn's own TLB is not tagged: nothing in it survives a switch
        vm.vgic.load(vcpu.index, self.gicv)
        self.timer_lines(vcpu)
        self.switches += 1
        self.switch_ticks += self.host.switch_cost

    def flush_engine_tlb(self) -> None:
        """Forget what Unicorn's own TLB holds for this core (it is not tagged by VMID or ASID)."""
        tlb_fill.flush(self.cpu)

    def forget_stage1(self, vmid: int) -> None:
        """The loaded vCPU's translation registers changed: its stage-1 translations are stale here."""
        self.tlb.vmalle1(vmid)
        if self._translation is not None:
            self._translation.forget_stage1()
        self.flush_engine_tlb()

    def forget_stage2(self, vmid: int, ipa: int | None) -> None:
        """Stage-2 entries of `vmid` changed: what this core cached through them is stale."""
        if ipa is None:
            self.tlb.vmalle1(vmid)
        else:
            self.tlb.ipas2e1(vmid, ipa)
        if self._translation is not None:
            self._translation.forget_stage2(vmid, ipa)
        if self.current is not None and self.current.vm.memory is not None and self.current.vm.memory.vmid == vmid:
            self.flush_engine_tlb()

    # --- running ----------------------------------------------------------------------------------

    def run(self, ticks: int) -> None:
        """Run the loaded vCPU for at most `ticks` host ticks, then finish what the run left to the loop."""
        vcpu = self.current
        if vcpu.in_wfi:
            self._wait_in_wfi(vcpu, ticks)
            return
        translation = self._translation
        walks, references = (translation.walks, translation.references) if translation is not None else (0, 0)
        stop = self.cpu.run(ticks)
        vcpu.instructions += stop.retired
        self.timer_lines(vcpu)
        if translation is not None:
            vcpu.walks += translation.walks - walks
            vcpu.references += translation.references - references
        kind = stop.kind
        if kind is StopKind.EXCEPTION:
            self._on_stop(vcpu, stop.exception)
        elif kind is StopKind.WFI:
            self._on_wfi(vcpu)
        elif kind is StopKind.ERROR:
            vcpu.vm.stop(StopReason.ERROR, f"vlab error (please report it): {stop.message}", vcpu)
        elif kind is StopKind.UNSUPPORTED:
            vcpu.vm.stop(StopReason.ERROR, stop.message, vcpu)
        if vcpu.state is VCpuState.RUNNABLE and not vcpu.in_wfi and vcpu.vm.running:
            self.serve_interrupts(vcpu)

    def serve_interrupts(self, vcpu: VCpu) -> None:
        """Before the guest goes on: the physical interrupts that came in (each an exit to the
        hypervisor), and the list registers' level-sensitive interrupts resampled. The virtual IRQ
        GICV then signals the guest takes at its IRQ vector by itself -- no exit -- once PSTATE.I
        allows (vlab.machine.irq_line)."""
        self.timer_lines(vcpu)  # time may have passed since the last run (idle, blocked)
        self.serve_physical_interrupts(vcpu)
        vcpu.vm.vgic.resample(vcpu.index)

    def _virtual_irq_changed(self) -> None:
        """GICV's virtual IRQ drives the core's IRQ input; a rise in the middle of a run ends it after
        the current instruction, so that the IRQ is taken before the next one."""
        asserted = self.gicv.signalled == "IRQ"
        self.cpu.irq.set(asserted)
        if asserted:
            self.cpu.interrupt_pending()

    def _virtual_irq_taken(self, vector_address: int, return_address: int, from_el: int) -> None:
        vcpu, cpu = self.current, self.cpu
        retired = vcpu.instructions + cpu.clock() - cpu.instructions  # before the vector's first instruction
        vcpu.entry.interrupt_taken(vector_address, return_address, from_el, retired, self.now())

    def serve_physical_interrupts(self, vcpu: VCpu) -> None:
        """Physical IRQs for this core while `vcpu` runs go to the hypervisor (HCR_EL2.IMO): one exit
        each. The virtual timer's PPI becomes a virtual IRQ in a list register; the maintenance
        interrupt refreshes the list registers."""
        while self.host.gic.signal(self.index) == "IRQ":
            lrs = list(self.gicv.lrs)
            intid = serve_physical_irq(self.gicc, vcpu.vm.vgic, vcpu.index)
            vcpu.vm.record(vcpu, "IRQ", None, _physical_irq_action(intid, lrs, self.gicv), RUN_LOOP)

    def timer_lines(self, vcpu: VCpu) -> None:
        """The loaded vCPU's timers drive this core's timer inputs: the virtual timer the physical
        PPI 27 (the hypervisor hands it to the guest), the EL1 physical timer -- emulated by the
        hypervisor -- the virtual PPI 30 directly.

        When the virtual timer's line drops, a virtual IRQ 27 the guest has not taken yet is
        withdrawn from its list register at once (VGic.resample: KVM does it at its next exit). The
        core would otherwise find it pending at the guest's next WFI, which then would not wait."""
        # Called at every run's end and every timer access: the GIC is told only of a change.
        gic, vgic, asserted = self.host.gic, vcpu.vm.vgic, vcpu.timer.virtual.asserted()
        if asserted != gic.distributor.interrupt(self.index, VIRTUAL_TIMER_PPI).line:
            gic.set_ppi(self.index, VIRTUAL_TIMER_PPI, asserted)
            if not asserted:
                vgic.resample(vcpu.index)
        asserted = vcpu.timer.physical.asserted()
        if asserted != vgic.distributor.interrupt(vcpu.index, PHYSICAL_TIMER_PPI).line:
            vgic.set_line(vcpu.index, PHYSICAL_TIMER_PPI, asserted)

    def _wait_in_wfi(self, vcpu: VCpu, ticks: int) -> None:
        """A WFI the hypervisor does not trap: the core sleeps in the guest until its timer fires or
        an interrupt arrives (the WFI then completes, whether PSTATE.I masks the IRQ or not)."""
        if self.gicv.signal() is None:
            now = self.now()
            wait = ticks if vcpu.wake_at is None else max(0, min(ticks, vcpu.wake_at - now))
            self.idle_ticks += wait
            if vcpu.wake_at is None or self.now() < vcpu.wake_at:
                return
        vcpu.in_wfi, vcpu.wake_at = False, None
        self.serve_interrupts(vcpu)

    def _on_wfi(self, vcpu: VCpu) -> None:
        cpu = self.cpu
        if vcpu.vm.traps & HCR.TWI:
            # The WFI traps instead of completing: the guest is at the WFI, the hypervisor decides.
            cpu.pc -= 4
            cpu.instructions -= 1
            vcpu.instructions -= 1
            exit = self._exit(vcpu, Syndrome(ExceptionClass.WFX, 0), cpu.pc, cpu.el, trapped=True)
            self._finish(vcpu, exit, vcpu.vm.dispatch(vcpu, exit, RUN_LOOP))
            return
        self.serve_physical_interrupts(vcpu)
        vcpu.vm.vgic.resample(vcpu.index)
        if self.gicv.signal() is not None:
            return  # an interrupt is already there: WFI does not wait
        vcpu.in_wfi, vcpu.wake_at = True, vcpu.wake_deadline()

    def _on_stop(self, vcpu: VCpu, exc: GuestException) -> None:
        """The run stopped on an exception: an exit served in place that the loop must finish, an
        exit for the loop, or the guest kernel's own exception."""
        if self._pending is not None:
            finish, self._pending = self._pending, None
            finish()
            return
        exit = self._exit_for(vcpu, exc)
        if exit is not None:
            self._finish(vcpu, exit, vcpu.vm.dispatch(vcpu, exit, RUN_LOOP))
            return
        if exc.syndrome.ec is ExceptionClass.HVC64:  # HVC at EL0 is UNDEFINED
            exc = GuestException(Syndrome(ExceptionClass.UNKNOWN), exc.address, exc.address, 0,
                                 detail="HVC is undefined at EL0")
        self._deliver(vcpu, exc)

    def _deliver(self, vcpu: VCpu, exc: GuestException) -> None:
        problem = vcpu.entry.deliver(self.cpu, exc, vcpu.instructions, self.now())
        if problem is not None:
            vcpu.vm.stop(StopReason.EXCEPTION, problem, vcpu, exc)

    def _finish(self, vcpu: VCpu, exit: Exit, outcome: tuple) -> None:
        """Apply what the handler of `exit` asked for, in the loop: move the guest on, or not, and
        inject, block, yield or halt."""
        resume_at, effect = outcome
        cpu = self.cpu
        trapped = exit.return_address == exit.address
        if resume_at is not None:
            cpu.pc = resume_at
            if trapped:  # the emulated instruction retires, as it would have on the machine
                cpu.instructions += 1
                vcpu.instructions += 1
        elif trapped and effect is None:
            cpu.pc = exit.address
            if self._stuck(vcpu, exit):
                return
        if isinstance(effect, Inject):
            self._deliver(vcpu, effect.exception)
        elif isinstance(effect, Halt):
            vcpu.vm.halt(vcpu, effect.reason, effect.message)
        elif isinstance(effect, Block):
            self.host.block(vcpu, effect.until)
        elif isinstance(effect, Yield):
            self.host.yield_(vcpu)

    def _stuck(self, vcpu: VCpu, exit: Exit) -> bool:
        """Stop a handler that leaves the guest on its trapped instruction, the same exit again and again."""
        key = (exit.address, exit.syndrome.esr, exit.ipa)
        count = vcpu._stuck[1] + 1 if vcpu._stuck[0] == key else 1
        vcpu._stuck = (key, count)
        if count < STUCK_EXITS:
            return False
        vcpu.vm.stop(StopReason.ERROR, f"the {exit.ec.name} handler returned {count} times without moving "
                     f"the guest past `{exit.instruction}` at {exit.address:#x}: did it forget vcpu.skip(exit)?", vcpu)
        return True

    # --- exits for the loop -----------------------------------------------------------------------

    def _exit_for(self, vcpu: VCpu, exc: GuestException) -> Exit | None:
        """The exit this exception is, when it goes to EL2; None when the guest kernel takes it."""
        if exc.target_el == 2:
            return self._exit(vcpu, exc.syndrome, exc.address, exc.el, trapped=True, far=exc.far, ipa=exc.ipa,
                              word=exc.word)
        # exc.ipa: the physical address of an access that reached nothing (FAR is the virtual one);
        # None for the guest's own stage-1 aborts, which stay the guest's.
        if vcpu.vm.memory is None and exc.syndrome.ec in _ABORTS and exc.ipa is not None \
                and not vcpu.ram.contains(exc.ipa):
            return self._identity_stage2_abort(vcpu, exc)
        return None

    def _identity_stage2_abort(self, vcpu: VCpu, exc: GuestException) -> Exit:
        """An access outside the RAM of a VM with no stage-2 tables: a stage-2 translation fault, with
        the syndrome the hardware fills. With the guest's MMU off its addresses are IPAs; the fault's
        level is where stage-2 tables mapping just the VM's RAM would have missed."""
        word = self.cpu.read_word(exc.address)
        if exc.syndrome.ec in (ExceptionClass.IABT_LOWER, ExceptionClass.IABT_CURRENT):
            access = Access.FETCH
        else:
            access = Access.WRITE if DataAbort.from_iss(exc.syndrome.iss).wnr else Access.READ
        miss = Fault(FaultKind.TRANSLATION, 2, vcpu.vm.stage2_miss_level(exc.ipa), exc.ipa, "outside the VM's RAM",
                     ipa=exc.ipa)
        syndrome = tlb_fill.syndrome(miss, access, exc.el, word or 0)
        return self._exit(vcpu, syndrome, exc.address, exc.el, trapped=True, far=exc.far, ipa=exc.ipa, word=word)

    def _exit(self, vcpu: VCpu, syndrome: Syndrome, address: int, el: int, trapped: bool,
              far: int | None = None, ipa: int | None = None, word: int | None = None) -> Exit:
        """The exit of the instruction at `address`; its encoding is read unless already known."""
        if word is None:
            word = self.cpu.read_word(address)
        return Exit(syndrome, address, address if trapped else address + 4, word, vcpu.index, el, far, ipa)

    def _keep_few_exits(self) -> None:
        """A guest that traps from ever more places (generated code) must not grow the cache forever."""
        if len(self._exits) >= EXITS_KEPT:
            self._exits.clear()

    def _defer(self, exit: Exit, outcome: tuple) -> None:
        """From a hook: the exit was dispatched, but what its handler asked for needs the loop."""
        vcpu = self.current
        vcpu.vm.served_by_loop()
        self._pending = lambda: self._finish(vcpu, exit, outcome)

    # --- exits served in place: system registers --------------------------------------------------

    def _on_sysreg(self, cpu: CPU, access: SysRegAccess, value: int) -> bool:
        vcpu = self.current
        vm = vcpu.vm
        plan = vm.sysreg_plans.get(access)
        if plan is None:
            plan = vm.sysreg_plans[access] = _plan(vm, access)
        if plan is NATIVE or plan is TIME:
            handled = serve_timer(cpu, vcpu.timer, access, value)
            if handled and plan is TIME:
                vm.timer_accesses += 1  # the guest's counter and timers answer it: no exit
            if handled and not access.is_read:
                self.timer_lines(vcpu)  # a reprogrammed timer raises or lowers its line at once
            return handled
        if plan is TRAP:
            return self._trap_sysreg(cpu, vcpu, access)
        if plan is TIME_TRAP:
            return self._trap_time(cpu, vcpu, access, value)
        if plan is IDENTITY:
            cpu.set_x(access.rt, vcpu.vpidr if access.op2 == 0 else vcpu.vmpidr)
            return True
        if plan is TRANSLATION:  # performed here, so the TLBs are flushed after it
            vcpu.write_sysreg(BY_ENCODING[access.encoding].name, cpu.x(access.rt))
            return True
        if plan is TLBI:
            self._tlbi(vcpu, access)
            return False  # and let the instruction run: Unicorn flushes its own TLB
        self._address_translate(vcpu, access)  # AT
        return True

    def _trap_time(self, cpu: CPU, vcpu: VCpu, access: SysRegAccess, value: int) -> bool:
        """A counter or timer access that CNTHCTL_EL2 traps: an exit, the hypervisor emulating the
        vCPU's timer (handle_sysreg). At EL0 an access CNTKCTL_EL1 refuses traps to EL1 first."""
        if cpu.el == 0 and not el0_may_access(BY_ENCODING[access.encoding].name, cpu.read_sysreg("CNTKCTL_EL1")):
            return serve_timer(cpu, vcpu.timer, access, value)
        handled = self._trap_sysreg(cpu, vcpu, access)
        if not access.is_read:
            self.timer_lines(vcpu)
            stop_by_next_deadline(cpu, vcpu.timer)
        return handled

    def _trap_sysreg(self, cpu: CPU, vcpu: VCpu, access: SysRegAccess) -> bool:
        pc = cpu.pc
        key = (pc, access, vcpu.index)
        exit = self._exits.get(key)
        if exit is None:  # the same instruction always makes the same exit: build it once
            self._keep_few_exits()
            syndrome = Syndrome(ExceptionClass.SYS64, access.iss)
            exit = self._exits[key] = Exit(syndrome, pc, pc, _sysreg_word(access), vcpu.index, cpu.el)
        resume_at, effect = outcome = vcpu.vm.dispatch(vcpu, exit, IN_PLACE)
        if effect is None and resume_at == pc + 4:
            return True  # emulated: Unicorn skips the instruction, which counts as retired
        self._defer(exit, outcome)
        cpu.trap(GuestException(exit.syndrome, pc, pc, 1, target_el=2))  # not performed; the loop resumes it
        return True

    def _tlbi(self, vcpu: VCpu, access: SysRegAccess) -> None:
        """The guest's TLBI instruction, applied to vlab's TLB model (Unicorn flushes its own)."""
        vmid, operand = vcpu.vm.memory.vmid, self.cpu.x(access.rt)
        va, asid = (operand & ((1 << 44) - 1)) << 12, operand >> 48  # VA[55:12]
        if va >> 55:  # an upper-half address (TTBR1_EL1's): its top bits are copies of bit 55
            va |= 0xFF << 56
        if access.op2 in (1, 3, 5, 7) and self.tlb.in_a_block(vmid, va):
            self.flush_engine_tlb()  # Unicorn's TLB holds a block's pages one by one, and drops only this one
        if access.op2 in (1, 5):  # VAE1, VALE1
            self.tlb.vae1(vmid, asid, va)
        elif access.op2 == 2:  # ASIDE1
            self.tlb.aside1(vmid, asid)
        elif access.op2 in (3, 7):  # VAAE1, VAALE1
            self.tlb.vaae1(vmid, va)
        else:  # VMALLE1 and anything broader
            self.tlb.vmalle1(vmid)

    def _address_translate(self, vcpu: VCpu, access: SysRegAccess) -> None:
        """AT S1E{1,0}{R,W} Xt: the stage-1 translation of Xt, into PAR_EL1 (an IPA, in a VM).

        Unicorn's own AT would walk the guest's tables at IPAs as if they were host addresses."""
        cpu, memory = self.cpu, vcpu.vm.memory
        va = cpu.x(access.rt)
        kind = Access.WRITE if access.op2 & 1 else Access.READ
        if not cpu.read_sysreg("SCTLR_EL1") & 1:
            # MMU off: the VA is the address; bit 11 is RES1, NS (bit 9) set as for every non-secure guest.
            cpu.write_sysreg("PAR_EL1", va & ((1 << 48) - 1) & ~0xFFF | 1 << 11 | 1 << 9)
            return
        state = self._translation.stage1_of(va)  # the half of the address space va is in
        if isinstance(state, Fault):  # TCR_EL1 configures what vlab cannot walk, or no walk at all
            cpu.write_sysreg("PAR_EL1", 1 | state.fsc << 1 | 1 << 11)
            return
        stage1, ttbr, _ = state
        t = stage1_walk(memory.host.memory, stage1, ttbr, memory.regime, memory.tables.root, va, kind,
                        access.op2 >= 2)
        if t.fault is not None:
            f = t.fault  # F, FST, PTW (a stage-2 fault on the walk), S (the stage that faulted)
            par = 1 | f.fsc << 1 | int(f.s1ptw) << 8 | int(f.stage == 2) << 9 | 1 << 11  # bit 11 RES1
        else:
            attr = cpu.read_sysreg("MAIR_EL1") >> (8 * t.leaf.attr) & 0xFF
            # bit 11 is RES1; NS (bit 9) is set: vlab's guests run in the non-secure state
            par = attr << 56 | (t.output & ((1 << 48) - 1) & ~0xFFF) | 1 << 11 | 1 << 9 | t.leaf.sh << 7
        cpu.write_sysreg("PAR_EL1", par)

    # --- exits served in place: hypercalls and firmware calls -------------------------------------

    def _on_exception(self, cpu: CPU, intno: int) -> bool:
        """HVC and SMC from the guest kernel: served in place unless the handler needs the loop."""
        if intno != EXCP_HVC and intno != EXCP_SMC:
            return False  # the guest kernel's own exception: the loop delivers it
        pc, el = cpu.pc_and_el()  # PC is after the instruction
        if el != 1:
            return False  # HVC and SMC are undefined at EL0: the loop delivers that
        vcpu = self.current
        trapped = intno == EXCP_SMC
        if trapped and not vcpu.vm.traps & HCR.TSC:
            halt = self.host.firmware_call(vcpu)  # an SMC the hypervisor does not trap reaches EL3
            if halt is not None:
                self._pending = halt
            return halt is None
        key = (pc, cpu.read_word(pc - 4), vcpu.index)
        exit = self._exits.get(key)
        if exit is None:  # the same instruction always makes the same exit: build it once
            self._keep_few_exits()
            exc = cpu.decode_exception(intno)
            # An HVC has completed (ELR_EL2 is the next instruction); a trapped SMC has not.
            exit = self._exits[key] = Exit(exc.syndrome, exc.address, exc.address if trapped else pc, exc.word,
                                           vcpu.index, 1)
        resume_at, effect = outcome = vcpu.vm.dispatch(vcpu, exit, IN_PLACE)
        if effect is None and resume_at == (pc if trapped else None):
            return True  # Unicorn resumes after the instruction, which it counted
        self._defer(exit, outcome)
        if trapped:
            cpu.pc = exit.address  # the trapped SMC did not execute: the loop resumes it
            cpu.instructions -= 1
            vcpu.instructions -= 1
        return False

    # --- exits served in place: stage-2 faults (virtual-TLB mode) and emulated devices -------------

    def _stage2_fault(self, fault: Fault, access: Access, va: int):
        """A stage-2 fault met by vlab's walk: serve it in place when vlab's own handlers would, so
        the access completes without stopping. True: walk again (the VM's RAM was fixed); (address,
        permissions): the access goes to an emulated device; None: an exit for the loop."""
        vcpu = self.current
        vm = vcpu.vm
        ec = ExceptionClass.IABT_LOWER if access is Access.FETCH else ExceptionClass.DABT_LOWER
        if access is not Access.FETCH and not fault.s1ptw and GICC_BASE <= fault.ipa < GICC_BASE + GICC_SIZE \
                and not vm.gicc_emulated:
            # Stage 2 maps the GICV frame at the guest's GICC address, whoever handles the VM's exits.
            return GICV_BASE + fault.ipa - GICC_BASE, 3
        handler = vm.handlers.get(ec)
        if handler is not handlers.DEFAULT_HANDLERS[ec]:
            return None  # a handler of someone else's sees the whole exit, in the loop
        if vm.memory.in_ram(fault.ipa):
            exit = self._fault_exit(vcpu, fault, access, va)
            resume_at, effect = outcome = vm.dispatch(vcpu, exit, IN_PLACE)
            if resume_at is None and effect is None:
                return True  # fixed: the access is retried at once
            self._defer(exit, outcome)
            return None
        if access is not Access.FETCH and not fault.s1ptw and vm.device_at(fault.ipa) is not None:
            return fault.ipa, 3  # read and write, never execute: devices are not code
        return None

    def _fault_exit(self, vcpu: VCpu, fault: Fault, access: Access, va: int) -> Exit:
        pc, el = self.cpu.pc_and_el()  # PC is exact inside the fill hook
        exact, far, word = tlb_fill.exact_abort(self.cpu, fault, access, va, pc)
        return Exit(tlb_fill.syndrome(exact, access, el, word or 0), pc, pc, word, vcpu.index, el, far, exact.ipa)

    # --- exits served in place: shadow paging ---------------------------------------------------------

    def _shadow_exit(self, syndrome: Syndrome, far: int, action: str) -> None:
        """An exit the shadow's fault path served inside the fill hook (PC is exact there)."""
        cpu, vcpu = self.cpu, self.current
        pc = cpu.pc
        exit = Exit(syndrome, pc, pc, cpu.read_word(pc), vcpu.index, cpu.el, far)
        vcpu.vm.record(vcpu, syndrome.ec.name, exit, action, IN_PLACE)

    def _window_read(self, uc, offset: int, size: int, _user) -> int:
        """A read of a guest table frame while the core holds its write view: plain memory, no exit."""
        return int.from_bytes(self.host.memory.memory.read(offset, size), "little")

    def _window_write(self, uc, offset: int, size: int, value: int, _user) -> None:
        """A store to a write-protected guest table: the exit (one per instruction, however Unicorn
        splits its bytes), the store performed, and the shadow entries of the changed descriptor dropped."""
        cpu, vcpu = self.cpu, self.current
        try:
            self.host.memory.memory.write(offset, value.to_bytes(size, "little"))
            shadow = vcpu.vm.shadow
            frame = offset & ~0xFFF
            shadow.table_written(frame, offset)
            pc = cpu.pc  # exact inside a device callback
            word = cpu.read_word(pc)
            far = ldst.effective_address(word or 0, lambda n: cpu.sp if n == 31 else cpu.x(n), pc)
            if far is not None and far & 0xFFF != offset & 0xFFF:
                return  # the rest of an access already counted (an 8-byte store arrives as two halves)
            shadow.table_writes += 1
            exit = Exit(table_write_syndrome(), pc, pc, word, vcpu.index, cpu.el, far)
            vcpu.vm.record(vcpu, exit.syndrome.ec.name, exit,
                           f"table write: host frame {frame:#x} +{offset & 0xFFF:#x}, a guest table, stored to; "
                           "the shadow entries its descriptor made are dropped", IN_PLACE)
        except Exception as e:  # noqa: BLE001 - a bug in the shadow stops the run with a report
            cpu.report_hook_error(f"shadow table write at host {offset:#x} failed: {type(e).__name__}: {e}")

    def _gicv_read(self, uc, offset: int, size: int, _user) -> int:
        return self._gicv(offset, size, 0, False)

    def _gicv_write(self, uc, offset: int, size: int, value: int, _user) -> None:
        self._gicv(offset, size, value, True)

    def _gicv(self, offset: int, size: int, value: int, is_write: bool) -> int:
        """The guest's access to its GIC CPU interface: the virtual CPU interface serves it from the
        list registers, in hardware -- no exit. Counted and traced for the course, apart from exits."""
        try:
            if is_write:
                self.gicv.write(offset, size, value)
            else:
                value = self.gicv.read(offset, size)
            vcpu = self.current
            name = self.gicv.register_name(offset)
            vcpu.vm.gicv_accesses[name] += 1
            vcpu.vm.gicv_trace.append(MmioAccess(vcpu.ticks(), "gicv", offset, name, size, value, is_write))
            return value
        except Exception as e:  # noqa: BLE001 - a bug in vlab's GIC stops the run with a report
            self.cpu.report_hook_error(f"GICV failed at +{offset:#x}: {type(e).__name__}: {e}")
            return 0

    def _mmio_read(self, uc, offset: int, size: int, base: int) -> int:
        return self._mmio(base, offset, size, 0, False)

    def _mmio_write(self, uc, offset: int, size: int, value: int, base: int) -> None:
        self._mmio(base, offset, size, value, True)

    def _mmio_site(self, vcpu: VCpu, pc: int, word: int, ipa: int, far: int | None, el: int, is_write: bool,
                   size: int) -> tuple:
        """(the exit, its syndrome decoded -- None when it has no instruction syndrome or Unicorn splits it
        otherwise than in two halves --, the device, the register's name) of one instruction's device access."""
        if len(self._sites) >= EXITS_KEPT:
            self._sites.clear()
        decoded = ldst.decode(word)
        exit = Exit(handlers.mmio_syndrome(vcpu.vm, word, ipa, el, is_write), pc, pc, word, vcpu.index, el,
                    ipa if far is None else far, ipa)
        abort = DataAbort.from_iss(exit.syndrome.iss)
        if decoded is None or not (1 << decoded.sas == size or 1 << decoded.sas == 8 and size == 4):
            abort = None
        device = vcpu.platform.device_at(ipa)  # a banked device (GICD) as this vCPU sees it
        return exit, abort, device, f"{device.name}.{device.register_name(ipa - device.base)}"

    def _mmio(self, base: int, offset: int, size: int, value: int, is_write: bool) -> int:
        """An access to an emulated device, served in place: the exit the hardware would report is
        built, the device access performed and logged, and Unicorn completes the load or store."""
        cpu, vcpu = self.cpu, self.current
        try:
            if self._pending is not None:
                return 0  # the rest of an access already refused (a pair): nothing reaches the device
            pc, el = cpu.pc_and_el()  # PC is exact inside a device callback (measured)
            split = self._split
            if split is not None and split[0] == pc and split[1] == offset:
                self._split = None  # the second half of an 8-byte access Unicorn makes as two 4-byte ones
                if is_write:
                    vcpu.vm.serve_mmio(vcpu, split[3], split[4], split[2] | value << 32)
                return 0 if is_write else split[2]
            word, ipa = cpu.read_word(pc) or 0, base + offset
            # FAR is the virtual address (the guest's MMU may map the device elsewhere): the instruction's.
            far = ldst.effective_address(word, lambda n: cpu.sp if n == 31 else cpu.x(n), pc)
            key = (vcpu, pc, word, ipa, far, is_write, size, el)
            site = self._sites.get(key)
            if site is None:  # the same instruction on the same register: decoded once
                site = self._sites[key] = self._mmio_site(vcpu, pc, word, ipa, far, el, is_write, size)
            exit, abort, device, where = site
            if abort is None:
                # ISV = 0 (a pair, writeback, SIMD): not an access a hypervisor can emulate from the
                # syndrome. The instruction is undone and the guest gets what the handler says.
                self._defer(exit, vcpu.vm.dispatch(vcpu, exit, IN_PLACE))
                cpu.abort_current(GuestException(exit.syndrome, pc, pc, el, target_el=2))
                return 0
            if 1 << abort.sas == size:
                return vcpu.vm.serve_mmio(vcpu, exit, abort, value, device, where)
            if is_write:  # the low half of an 8-byte store: the device sees it whole, with the high half
                self._split = (pc, offset + 4, value, exit, abort)
                return 0
            loaded = vcpu.vm.serve_mmio(vcpu, exit, abort, 0, device, where)
            self._split = (pc, offset + 4, loaded >> 32)
            return loaded & 0xFFFF_FFFF
        except Exception as e:  # noqa: BLE001 - a device bug stops the run with a report
            cpu.report_hook_error(f"emulated device at {base:#x} failed at +{offset:#x}: {type(e).__name__}: {e}")
            return 0


def _physical_irq_action(intid: int, lrs_before: list[int], gicv: VirtualCpuInterface) -> str:
    """The trap log's line for a physical interrupt the hypervisor took."""
    if intid == VIRTUAL_TIMER_PPI:
        changed = [n for n, (a, b) in enumerate(zip(lrs_before, gicv.lrs)) if a != b]
        where = f"GICH_LR{changed[0]} = {gicv.lrs[changed[0]]:#010x}" if changed else "a list register"
        return f"virtual timer (PPI 27) -> {where} (HW)"
    if intid == MAINTENANCE_PPI:
        return "maintenance interrupt (PPI 25): list registers synced and refilled"
    return f"physical interrupt {intid}"


def _plan(vm: VM, access: SysRegAccess) -> int:
    """What `access` means in `vm`: performed natively, trapped to the hypervisor, or served by it."""
    reg = BY_ENCODING.get(access.encoding)
    if reg is not None:
        if (reg.read_trap if access.is_read else reg.write_trap) & vm.traps:
            return TRAP
        if reg.name in TRAPPED_BY_CNTHCTL:
            return TIME_TRAP if vm.time_trapped else TIME
        if access.is_read and reg.name in ("MIDR_EL1", "MPIDR_EL1"):
            return IDENTITY  # the hardware substitutes VPIDR_EL2/VMPIDR_EL2, without an exit
        if not access.is_read and reg.name in ("SCTLR_EL1", "TTBR0_EL1", "TTBR1_EL1", "TCR_EL1") \
                and vm.memory is not None:
            return TRANSLATION
    if vm.memory is not None and access.op0 == 1 and access.crn == 8:
        return TLBI
    if vm.memory is not None and (access.op0, access.op1, access.crn, access.crm) == (1, 0, 7, 8) and access.op2 < 4:
        return AT  # AT S1E1R/W, S1E0R/W
    return NATIVE


def _sysreg_word(access: SysRegAccess) -> int:
    """The MRS/MSR/SYS/SYSL instruction that makes `access` (it is fully determined by it)."""
    base = 0xD5200000 if access.is_read else 0xD5000000  # L = 1: MRS, SYSL
    return (base | access.op0 << 19 | access.op1 << 16 | access.crn << 12 | access.crm << 8
            | access.op2 << 5 | access.rt)


_ABORTS = (ExceptionClass.DABT_LOWER, ExceptionClass.DABT_CURRENT,
           ExceptionClass.IABT_LOWER, ExceptionClass.IABT_CURRENT)
