"""The hypervisor's virtual GIC, as KVM's vgic: a distributor emulated per VM, list registers per vCPU.

A guest sees the same GICv2 as on the board, at the same addresses. Behind it:

    GICD_* (0x0800_0000)  not mapped by stage 2: every access is an exit, and the hypervisor
                          performs it on the VM's own Distributor (`distributor_access`)
    GICC_* (0x0801_0000)  stage 2 maps the hardware's GICV frame there: IAR, EOIR, PMR... go to
                          the virtual CPU interface, which serves them from the list registers
                          -- no exit. A VM made with gic_cpu_interface="emulated" stands for a
                          chip without that hardware: GICC is not mapped, every access is an
                          exit, and the hypervisor performs it on the same interface model
                          (`cpu_interface_frame`): the guest sees the same registers, at the
                          price of an exit for each access
    an interrupt for the guest (a virtual device's line, an SGI a vCPU sent, the virtual timer's
                          physical PPI 27) -> pending in the VM's distributor

Around each run of a vCPU, the hypervisor moves interrupts between the two:

    flush (before)  the vCPU's active interrupts, then its most urgent pending ones, into the
                    list registers; if more wait, ask for the underflow maintenance interrupt
                    (GICH_HCR.UIE), so that the guest's EOIs bring it back to refill them
    sync (after)    what the guest did with them -- acknowledged (pending -> active), completed
                    (-> invalid) -- back into the distributor; the list registers are emptied

`load`/`put` are the world switch's part (KVM's vcpu_load/vcpu_put): flush and restore the
registers onto a physical CPU's virtual interface; save them and sync. A vCPU's interrupts
therefore live in exactly one place at any time -- the distributor, or a list register -- so
that descheduling it loses none and delivers none twice.

A virtual interrupt mapped to a physical one (`map`, the virtual timer's PPI 27) goes in with
GICH_LR.HW = 1: when the guest completes it, the hardware deactivates the physical interrupt,
which the host had only acknowledged and priority-dropped (GICC_CTLR.EOImode = 1). No exit for
the guest's EOI, and the timer cannot fire again before it. The physical interrupt's active
state belongs to the vCPU too, and moves with it.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field
from typing import Callable

from vlab.machine.gic import (CPU_INTERFACE_REGISTERS, EOI_MODE, FIRST_SPI, GICC_BASE, GICC_SIZE, GICD_BASE,
                              GICD_SIZE, QEMU_VIRT_SPIS, SGIS, SPURIOUS, Candidate, CpuInterface, Distributor,
                              Interrupt)
from vlab.machine.gic_virt import (HCR_EN, HCR_EOICOUNT_SHIFT, HCR_LRENPIE, HCR_UIE, LIST_REGISTERS, PRIORITY_BITS,
                                   ListRegister, LrState, VirtualCpuInterface, VirtualInterfaceState, cpu_state_of,
                                   describe_list_registers, vmcr_of)

@dataclass
class SavedGic:
    """A vCPU's interrupt-controller state while it is not loaded on a physical CPU."""

    interface: VirtualInterfaceState = field(default_factory=VirtualInterfaceState)
    physical_active: dict[int, bool] = field(default_factory=dict)  # mapped pINTID -> active


@dataclass(frozen=True)
class _Queued:
    """What `flush` put in one list register: enough for `sync` to tell what the guest did."""

    intid: int
    source: int  # the sending vCPU, for an SGI
    latched: bool  # its pending state was a latch (edge, GICD_ISPENDR, injected), not a level line


class _Fixed:
    """An InterruptSource holding one candidate: to ask a CPU interface whether it would signal it."""

    def __init__(self, candidate: Candidate | None):
        self.candidate = candidate

    def best_pending(self, groups: int) -> Candidate | None:
        c = self.candidate
        return c if c is not None and groups >> c.group & 1 else None


class VGic:
    """One VM's virtual GIC for `vcpus` vCPUs (`list_registers` per physical CPU, 4 on QEMU's GIC)."""

    def __init__(self, vcpus: int, spis: int = QEMU_VIRT_SPIS, list_registers: int = LIST_REGISTERS,
                 on_wake: Callable[[int], None] | None = None):
        """`on_wake(vcpu)` is called when a vCPU becomes able to take an interrupt it could not take
        before (an SGI, a device's line): the scheduler wakes it if it sleeps in WFI."""
        self.distributor = Distributor(vcpus, spis)  # the VM's: software, never a physical device
        self.list_registers = list_registers
        self.saved = [SavedGic() for _ in range(vcpus)]
        self.loaded: dict[int, VirtualCpuInterface] = {}  # vCPU -> the interface it runs on
        self.mapped: dict[int, int] = {}  # vINTID -> pINTID, for HW list registers
        self.on_wake = on_wake
        self.encode: Callable[[ListRegister], int] = ListRegister.encode  # what flush writes (an exercise's)
        self._queued: list[list[_Queued | None]] = [[None] * list_registers for _ in range(vcpus)]
        self._active_source: dict[tuple[int, int], int] = {}  # (vCPU, SGI) -> the source the guest took

    @property
    def vcpus(self) -> int:
        return self.distributor.cpus

    def map(self, vintid: int, pintid: int) -> None:
        """Deliver virtual `vintid` as a HW list register backed by physical `pintid` (a PPI)."""
        self.mapped[vintid] = pintid

    # --- interrupts for the guest ---------------------------------------------------------------

    def set_line(self, vcpu: int, intid: int, level: bool) -> None:
        """A virtual device drives its line: a PPI of `vcpu`, or an SPI."""
        d = self.distributor
        if d.exists(intid) and 0 <= vcpu < self.vcpus and d.interrupt(vcpu, intid).line != bool(level):
            self._changing(lambda: d.set_line(intid, level, vcpu))

    def inject(self, vcpu: int, intid: int) -> None:
        """Make PPI or SPI `intid` pending for `vcpu` as a latch: the host took the physical interrupt
        behind it, or a virtual device signalled an edge."""
        if self.distributor.exists(intid) and intid not in SGIS and 0 <= vcpu < self.vcpus:
            self._changing(lambda: self.distributor.change(vcpu, intid, latched=True))

    def distributor_access(self, vcpu: int, offset: int, size: int, value: int, is_write: bool) -> int:
        """The exit handler's work for a guest access to GICD_*: perform it on the VM's distributor
        (GICD_SGIR makes SGIs pending on the target vCPUs). Returns the value read."""
        read: list[int] = []
        if is_write:
            self._changing(lambda: self.distributor.write(vcpu, offset, size, value))
        else:
            self._changing(lambda: read.append(self.distributor.read(vcpu, offset, size)))
        return read[0] if read else 0

    def register_name(self, offset: int) -> str:
        return self.distributor.register_name(offset)

    def frame(self, vcpu: int) -> DistributorExits:
        """The distributor as vCPU `vcpu`'s accesses reach it (each one an exit), as a device."""
        return DistributorExits(self, vcpu)

    def cpu_interface_frame(self, vcpu: int) -> CpuInterfaceExits:
        """The guest's GICC frame as vCPU `vcpu`'s accesses reach it when GICV is not mapped there
        (each one an exit), as a device."""
        return CpuInterfaceExits(self, vcpu)

    def refresh(self) -> None:
        """Sync and flush the loaded vCPUs in place (after a maintenance interrupt)."""
        self._changing(lambda: None)

    def _changing(self, change: Callable[[], None]) -> None:
        """Apply a change to the distributor with every loaded vCPU's list registers folded in, then
        refill them; note who can now take an interrupt it could not take before."""
        for vcpu in self.loaded:
            self.resample(vcpu)
        before = {v for v in range(self.vcpus) if self.wants_to_run(v)} if self.on_wake else set()
        # The registers, not emptied: nothing reads the interfaces until they are restored below.
        states = {vcpu: interface.registers() for vcpu, interface in self.loaded.items()}
        for vcpu, state in states.items():
            self.sync(vcpu, state)
        change()
        for vcpu, state in states.items():
            self.flush(vcpu, state)
            self.loaded[vcpu].restore(state)
        if self.on_wake is not None:
            for v in range(self.vcpus):
                if v not in before and self.wants_to_run(v):
                    self.on_wake(v)

    def resample(self, vcpu: int) -> None:
        """A mapped interrupt is level-sensitive (the virtual timer's): one still only pending in a
        list register while its physical line has dropped -- the guest reprogrammed its timer
        without taking the interrupt -- is withdrawn (GICH_LRn = 0) and its physical interrupt
        deactivated, as KVM does when it folds the list registers at an exit. Else a guest that
        polls its timer with IRQs masked would find a stale interrupt waking every WFI."""
        interface = self.loaded.get(vcpu)
        if interface is None or not self.mapped or interface.distributor is None:
            return
        for n, queued in enumerate(self._queued[vcpu]):
            pintid = None if queued is None else self.mapped.get(queued.intid)
            if pintid is None or interface.list_register(n).state is not LrState.PENDING:
                continue
            if not interface.distributor.interrupt(interface.cpu, pintid).line:
                interface.hyp_write(0x100 + 4 * n, 0)
                self._queued[vcpu][n] = None
                interface.distributor.change(interface.cpu, pintid, active=False)

    # --- the world switch -----------------------------------------------------------------------

    def load(self, vcpu: int, interface: VirtualCpuInterface) -> None:
        """World switch in: flush the vCPU's interrupts into its saved registers and restore them
        onto `interface`, with the physical active state of its mapped interrupts."""
        if vcpu in self.loaded or interface in self.loaded.values():
            raise ValueError(f"vCPU{vcpu} cannot be loaded: it, or another vCPU, is loaded there already")
        saved = self.saved[vcpu]
        for pintid, active in saved.physical_active.items():
            interface.distributor.change(interface.cpu, pintid, active=active)
        self.flush(vcpu, saved.interface)
        interface.restore(saved.interface)
        self.loaded[vcpu] = interface

    def put(self, vcpu: int) -> SavedGic:
        """World switch out: save the vCPU's registers (leaving the interface empty), the physical
        active state of its mapped interrupts (leaving them inactive), and sync."""
        if vcpu not in self.loaded:
            raise ValueError(f"vCPU{vcpu} is not loaded on a physical CPU: there is nothing to save")
        self.resample(vcpu)
        interface = self.loaded.pop(vcpu)
        saved = self.saved[vcpu]
        saved.interface = interface.save()
        saved.physical_active = {}
        for pintid in sorted(set(self.mapped.values())):
            saved.physical_active[pintid] = interface.distributor.interrupt(interface.cpu, pintid).active
            interface.distributor.change(interface.cpu, pintid, active=False)
        self.sync(vcpu, saved.interface)
        return saved

    # --- flush and sync ---------------------------------------------------------------------------

    def flush(self, vcpu: int, state: VirtualInterfaceState) -> None:
        """Fill `state`'s list registers (`sync` leaves them empty) with the vCPU's active
        interrupts, then its most urgent pending ones; with more than fit, ask for underflow."""
        chosen = self._candidates(vcpu)
        queued = self._queued[vcpu]
        for n in range(self.list_registers):
            if n < len(chosen):
                lr, queued[n] = self._take(vcpu, *chosen[n])
                state.lrs[n] = self.encode(lr)
            else:
                state.lrs[n], queued[n] = 0, None
        underflow = HCR_UIE if len(chosen) > self.list_registers else 0
        state.hcr = HCR_EN | HCR_LRENPIE | underflow | state.hcr & (0x1F << HCR_EOICOUNT_SHIFT)

    def sync(self, vcpu: int, state: VirtualInterfaceState) -> None:
        """Fold what the guest did with its list registers back into the distributor; empty them."""
        for n, queued in enumerate(self._queued[vcpu]):
            if queued is not None:
                self._give_back(vcpu, queued, ListRegister.decode(state.lrs[n]))
            state.lrs[n], self._queued[vcpu][n] = 0, None
        # The guest completed interrupts that no list register held (GICH_HCR.EOICount): EOIs are
        # nested, so those were the most urgent active ones.
        for _ in range(state.hcr >> HCR_EOICOUNT_SHIFT & 0x1F):
            active = sorted((self._irq(vcpu, i).priority, i) for i in self._visible(vcpu) if self._irq(vcpu, i).active)
            if active:
                self.distributor.change(vcpu, active[0][1], active=False)
        state.hcr &= ~(0x1F << HCR_EOICOUNT_SHIFT | HCR_UIE)

    def _irq(self, vcpu: int, intid: int) -> Interrupt:
        return self.distributor.interrupt(vcpu, intid)

    def _visible(self, vcpu: int) -> list[int]:
        """The live INTIDs that reach `vcpu`: its SGIs and PPIs, and the SPIs whose lowest target it
        is (an SPI aimed at several vCPUs goes to the first, as KVM's vGICv2 does)."""
        def reaches(intid: int) -> bool:
            targets = self._irq(vcpu, intid).targets
            return intid < FIRST_SPI or (targets & -targets) == 1 << vcpu
        return [intid for intid in self.distributor.live(vcpu) if reaches(intid)]

    def _candidates(self, vcpu: int) -> list[tuple[int, int]]:
        """(INTID, source) to queue, in order: active ones first, then pending ones by priority
        and INTID. An SGI pending from several vCPUs is queued one source at a time."""
        active, pending = [], []
        for intid in self._visible(vcpu):
            irq = self._irq(vcpu, intid)
            if irq.active:
                active.append((irq.priority, intid, self._active_source.get((vcpu, intid), 0)))
            elif self._deliverable(irq):
                pending.append((irq.priority, intid, _lowest(irq.sources) if intid in SGIS else 0))
        return [(intid, source) for _, intid, source in sorted(active) + sorted(pending)]

    def _deliverable(self, irq: Interrupt) -> bool:
        return irq.pending and irq.enabled and bool(self.distributor.ctlr >> irq.group & 1)

    def _take(self, vcpu: int, intid: int, source: int) -> tuple[ListRegister, _Queued]:
        """The list register for one interrupt; its state leaves the distributor for it."""
        irq = self._irq(vcpu, intid)
        hw, sgi = intid in self.mapped, intid in SGIS
        # One list register holds one instance: an SGI from another source, or the pending part of
        # a HW interrupt (which cannot be pending and active), waits here. An active SGI's pending
        # part rides with it only if no lower source waits: the lowest goes first, as on the GIC.
        pending = self._deliverable(irq) and not (hw and irq.active) and \
            (not sgi or bool(irq.sources >> source & 1) and (not irq.active or _lowest(irq.sources) == source))
        state = LrState(int(pending) | (LrState.ACTIVE if irq.active else 0))
        # Ask to hear of the EOI when something waits behind it: another source's SGI, a level still high.
        eoi = not hw and bool((sgi and irq.sources & ~(1 << source)) or (not irq.edge and irq.line))
        lr = ListRegister(vintid=intid, state=state, priority=irq.priority, group=irq.group, hw=hw,
                          physical=self.mapped.get(intid, 0), cpuid=source if sgi else 0, eoi=eoi)
        queued = _Queued(intid, source, latched=pending and (sgi or irq.latched))
        changes: dict = {"active": False}
        if pending:
            changes.update({"sources": irq.sources & ~(1 << source)} if sgi else {"latched": False})
        self.distributor.change(vcpu, intid, **changes)
        return lr, queued

    def _give_back(self, vcpu: int, queued: _Queued, lr: ListRegister) -> None:
        """A list register's state, after the guest ran, back into the distributor."""
        irq = self._irq(vcpu, queued.intid)
        changes: dict = {}
        if lr.state & LrState.ACTIVE:
            changes["active"] = True
            if queued.intid in SGIS:
                self._active_source[(vcpu, queued.intid)] = queued.source
        if lr.state & LrState.PENDING and queued.latched:  # not acknowledged: still pending
            if queued.intid in SGIS:
                changes["sources"] = irq.sources | 1 << queued.source
            else:
                changes["latched"] = True
        if changes:
            self.distributor.change(vcpu, queued.intid, **changes)

    # --- questions the host asks -----------------------------------------------------------------

    def wants_to_run(self, vcpu: int) -> bool:
        """Whether the vCPU's virtual interface would signal an interrupt now -- what wakes it from
        WFI: its most urgent deliverable interrupt, against its own GICV_PMR and running priority."""
        interface = self.loaded.get(vcpu)
        if interface is not None:
            return interface.signal() is not None
        pending = [(self._irq(vcpu, i).priority, i) for i in self._visible(vcpu)
                   if self._deliverable(self._irq(vcpu, i)) and not self._irq(vcpu, i).active]
        return bool(pending) and self._would_signal(vcpu, min(pending)[1])

    def could_wake(self, vcpu: int, intid: int) -> bool:
        """Whether `intid`, were it to become pending now, would be signalled to the vCPU (what lets
        a timer that fires wake it from WFI): enabled, not active, past its masks."""
        irq = self._irq(vcpu, intid)
        if not irq.enabled or irq.active or not self.distributor.ctlr >> irq.group & 1:
            return False
        return self._would_signal(vcpu, intid)

    def _would_signal(self, vcpu: int, intid: int) -> bool:
        """Asked of the vCPU's virtual CPU interface as its registers stand (loaded or saved)."""
        irq = self._irq(vcpu, intid)
        view = CpuInterface(_Fixed(Candidate(intid, irq.priority, irq.group)), PRIORITY_BITS, group1_apart=False)
        interface = self.loaded.get(vcpu)
        if interface is not None:
            view.state = interface.state
        else:
            saved = self.saved[vcpu].interface
            view.state = cpu_state_of(saved.vmcr, saved.apr)
        return view.signal() is not None

    def describe(self, vcpu: int) -> str:
        """The vCPU's list registers (loaded or saved), for people to read."""
        interface = self.loaded.get(vcpu)
        return describe_list_registers(interface.lrs if interface is not None else self.saved[vcpu].interface.lrs)

    # --- migration ----------------------------------------------------------------------------------

    def state(self) -> dict:
        """The VM's interrupts as plain data, for a migration stream: the distributor, and each vCPU's
        saved virtual CPU interface with its mapped interrupts' physical active state. A vCPU still
        loaded on a physical CPU is read as a world switch out would leave it -- its list registers
        folded into the distributor -- on a copy, so that the running VM is not disturbed."""
        folded = self._put_copy()
        return {"distributor": folded.distributor.state(),
                "vcpus": [{"hcr": g.interface.hcr, "vmcr": g.interface.vmcr, "apr": g.interface.apr,
                           "lrs": list(g.interface.lrs), "physical_active": sorted(p for p, a in
                                                                                   g.physical_active.items() if a)}
                          for g in folded.saved],
                "active_sources": [[vcpu, sgi, source] for (vcpu, sgi), source in sorted(folded._active_source.items())]}

    def restore(self, state: dict) -> None:
        """Take the state `state()` gave (on another host): only before any vCPU of the VM is loaded."""
        if self.loaded:
            raise ValueError("a vGIC's state is restored before its vCPUs run, not while one is loaded")
        if len(state["vcpus"]) != self.vcpus:
            raise ValueError(f"the state is of a vGIC of {len(state['vcpus'])} vCPU(s); this one has {self.vcpus}")
        self.distributor = Distributor(self.vcpus, self.distributor.lines - FIRST_SPI)
        self.distributor.restore(state["distributor"])
        mapped = sorted(set(self.mapped.values()))
        self.saved = [SavedGic(VirtualInterfaceState(v["hcr"], v["vmcr"], v["apr"], list(v["lrs"])),
                               {p: p in v["physical_active"] for p in mapped}) for v in state["vcpus"]]
        self._queued = [[None] * self.list_registers for _ in range(self.vcpus)]
        self._active_source = {(vcpu, sgi): source for vcpu, sgi, source in state["active_sources"]}

    def _put_copy(self) -> VGic:
        """A copy of this vGIC with every loaded vCPU put, as `put` would, leaving this one as it is."""
        folded = VGic(self.vcpus, self.distributor.lines - FIRST_SPI, self.list_registers)
        folded.distributor, folded.saved = deepcopy(self.distributor), deepcopy(self.saved)
        folded.mapped, folded._active_source = dict(self.mapped), dict(self._active_source)
        folded._queued = [list(queued) for queued in self._queued]
        for vcpu, interface in self.loaded.items():
            saved = VirtualInterfaceState(interface.hcr, vmcr_of(interface.state), interface.state.active_priorities,
                                          list(interface.lrs))
            physical = {} if interface.distributor is None else {
                p: interface.distributor.interrupt(interface.cpu, p).active for p in sorted(set(self.mapped.values()))}
            folded.sync(vcpu, saved)
            folded.saved[vcpu] = SavedGic(saved, physical)
        return folded


class DistributorExits:
    """The VM's GICD frame for one vCPU's exits: a device for the hypervisor's MMIO emulation."""

    name, base, size = "gicd", GICD_BASE, GICD_SIZE

    def __init__(self, vgic: VGic, vcpu: int):
        self.vgic, self.vcpu = vgic, vcpu

    def read(self, offset: int, size: int) -> int:
        return self.vgic.distributor_access(self.vcpu, offset, size, 0, False)

    def write(self, offset: int, size: int, value: int) -> None:
        self.vgic.distributor_access(self.vcpu, offset, size, value, True)

    def register_name(self, offset: int) -> str:
        return self.vgic.register_name(offset)

    def for_vcpu(self, index: int) -> DistributorExits:
        """The same frame as vCPU `index` reaches it (its own SGIs' and PPIs' registers)."""
        return self.vgic.frame(index)

    def state(self) -> dict:
        """The whole vGIC's state (a VM lists this frame among its devices: what migrates with it)."""
        return self.vgic.state()

    def restore(self, state: dict) -> None:
        self.vgic.restore(state)


class CpuInterfaceExits:
    """The VM's GICC frame for one vCPU's exits, on a chip without a virtual CPU interface the guest
    can reach: the hypervisor emulates each access on the interface model of the physical CPU the
    vCPU is loaded on -- the same registers and list registers the hardware's GICV would use."""

    name, base, size = "gicc", GICC_BASE, GICC_SIZE

    def __init__(self, vgic: VGic, vcpu: int):
        self.vgic, self.vcpu = vgic, vcpu

    def _interface(self) -> VirtualCpuInterface:
        interface = self.vgic.loaded.get(self.vcpu)
        if interface is None:  # an exit comes from a running vCPU, which is loaded: a vlab bug
            raise RuntimeError(f"vCPU{self.vcpu} accessed its GICC while not loaded on a physical CPU")
        return interface

    def read(self, offset: int, size: int) -> int:
        return self._interface().read(offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self._interface().write(offset, size, value)

    def register_name(self, offset: int) -> str:
        name = CPU_INTERFACE_REGISTERS.get(offset & ~3)
        return f"GICC_{name}" if name else f"GICC+{offset:#x}"

    def for_vcpu(self, index: int) -> CpuInterfaceExits:
        """The same frame as vCPU `index` reaches it (its own CPU interface)."""
        return self.vgic.cpu_interface_frame(index)


def _lowest(bits: int) -> int:
    return (bits & -bits).bit_length() - 1


def serve_physical_irq(gicc: CpuInterface, vgic: VGic, vcpu: int) -> int:
    """The host's handler for a physical IRQ taken while `vcpu` ran (an exit). The host runs its
    CPU interface with GICC_CTLR.EOImode = 1, so GICC_EOIR only drops the priority: an interrupt
    mapped to the guest stays active until the guest completes the virtual one (HW list register),
    and is injected; any other -- the maintenance interrupt -- is deactivated and refreshes the
    list registers. Returns the INTID taken (1023: none)."""
    if not gicc.state.ctlr & EOI_MODE:
        raise ValueError("the host must run its CPU interface with GICC_CTLR.EOImode = 1: with 0, its EOI would "
                         "deactivate an interrupt the guest has not completed yet")
    iar = gicc.acknowledge()
    intid = iar & 0x3FF
    if intid >= 1020:
        return SPURIOUS
    gicc.end_of_interrupt(iar)
    virtual = next((v for v, p in vgic.mapped.items() if p == intid), None)
    if virtual is not None:
        vgic.inject(vcpu, virtual)
    else:
        gicc.deactivate(iar)
        vgic.refresh()
    return intid
