"""The GICv2 virtualization extensions: list registers (GICH) and the virtual CPU interface (GICV).

    0x0803_0000  GICH  the hypervisor's control of the current CPU's virtual interface:
                       GICH_HCR (enable, maintenance requests), GICH_VMCR (the guest's CTLR, PMR,
                       BPR), GICH_APR (active priorities), GICH_LR0..3 (the list registers)
    0x0804_0000  GICV  what the guest sees at its GICC address (stage 2 maps it there): the
                       same registers as GICC_*, served from the list registers by the hardware

A list register holds one virtual interrupt for the vCPU loaded on this CPU:

     31   30    29:28   27:23     22:20   19:10                    9:0
    [HW][Grp1][State][Priority][  -  ][pINTID, or EOI + CPUID][vINTID]

    State: 00 invalid, 01 pending, 10 active, 11 pending and active. Priority: the top 5 bits.
    HW = 1: a physical interrupt (pINTID) stands behind it, deactivated when the guest completes
            the virtual one -- so a guest's EOI needs no exit even for a real device's interrupt.
    HW = 0: bit 19 (EOI) asks for a maintenance interrupt when the guest completes it, [12:10]
            the source CPU of a virtual SGI.

The guest acknowledges (GICV_IAR: pending -> active) and completes (GICV_EOIR: active -> invalid)
its interrupts *without exits*: the hardware updates the list registers. The hypervisor hears of
it only when it asked to, through the maintenance interrupt (PPI 25), which is asserted while
GICH_HCR.En and any GICH_MISR bit are set:

    EOI    a list register with EOI = 1 became invalid            (GICH_EISR says which)
    U      GICH_HCR.UIE and at most one list register is valid    ("refill me")
    LRENP  GICH_HCR.LRENPIE and GICH_HCR.EOICount != 0: the guest completed an interrupt that was
           in no list register (the hypervisor had taken it out)
    NP     GICH_HCR.NPIE and no list register is pending
    VGrp0E/D, VGrp1E/D  the guest enabled/disabled a group, when asked (GICH_HCR bits 4-7)

A world switch moves WORLD_SWITCH_REGISTERS: what `save()` returns and `restore()` loads.
GICH_MISR, EISR and ELRSR are computed from them; GICH_VTR is fixed. Numbers as QEMU 7.2 reports
them with `-M virt,virtualization=on` (4 list registers, 5 priority and preemption bits:
GICH_VTR = 0x9000_0003, the same as Arm's GIC-400), checked by a program run at EL2 on it.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field, replace
from typing import Callable

from vlab.machine.gic import (CPU_CTLR_MASK, GICC_SIZE, MAINTENANCE_PPI, SGIS, Candidate, CpuInterface,
                              CpuInterfaceState, Distributor)

GICH_BASE, GICH_SIZE = 0x0803_0000, 0x1000
GICV_BASE, GICV_SIZE = 0x0804_0000, GICC_SIZE
LIST_REGISTERS = 4
PRIORITY_BITS = 5
MIN_BPR = 7 - PRIORITY_BITS  # GICV_BPR cannot go lower: the group priority has at most 5 bits
GICH_VTR = (PRIORITY_BITS - 1) << 29 | (PRIORITY_BITS - 1) << 26 | (LIST_REGISTERS - 1)  # 0x9000_0003
GICH_VMCR_RESET = 2 << 21 | 3 << 18  # VMBP = 2, VMABP = 3: 0x004C_0000

# GICH_HCR bits
HCR_EN, HCR_UIE, HCR_LRENPIE, HCR_NPIE = 1 << 0, 1 << 1, 1 << 2, 1 << 3
HCR_VGRP0EIE, HCR_VGRP0DIE, HCR_VGRP1EIE, HCR_VGRP1DIE = 1 << 4, 1 << 5, 1 << 6, 1 << 7
HCR_EOICOUNT_SHIFT = 27
HCR_MASK = 0xFF | 0x1F << HCR_EOICOUNT_SHIFT

# GICH_MISR bits: which maintenance conditions hold
MISR_EOI, MISR_U, MISR_LRENP, MISR_NP = 1 << 0, 1 << 1, 1 << 2, 1 << 3
MISR_VGRP0E, MISR_VGRP0D, MISR_VGRP1E, MISR_VGRP1D = 1 << 4, 1 << 5, 1 << 6, 1 << 7

WORLD_SWITCH_REGISTERS = ("GICH_HCR", "GICH_VMCR", "GICH_APR") + tuple(f"GICH_LR{n}" for n in range(LIST_REGISTERS))


class LrState(enum.IntEnum):
    INVALID = 0
    PENDING = 1
    ACTIVE = 2
    PENDING_ACTIVE = 3


# The states as plain names: an enum member's lookup costs ten times a global's, and the hardware's
# scans of the list registers run several times per interrupt.
_INVALID, _PENDING, _ACTIVE = LrState.INVALID, LrState.PENDING, LrState.ACTIVE


@dataclass(frozen=True)
class ListRegister:
    """One GICH_LR, decoded. `physical` is the pINTID when `hw`; else `eoi` and `cpuid` are used."""

    vintid: int = 0
    state: LrState = LrState.INVALID
    priority: int = 0  # 8-bit priority; the register keeps its top 5 bits
    group: int = 0
    hw: bool = False
    physical: int = 0
    eoi: bool = False
    cpuid: int = 0

    def encode(self) -> int:
        value = (self.vintid & 0x3FF) | (self.state & 3) << 28 | ((self.priority >> 3) & 0x1F) << 23
        value |= (self.group & 1) << 30 | int(self.hw) << 31
        if self.hw:
            return value | (self.physical & 0x3FF) << 10
        return value | int(self.eoi) << 19 | (self.cpuid & 7) << 10

    @classmethod
    @functools.lru_cache(maxsize=1024)  # a handful of values recur: every world switch and refill decodes them
    def decode(cls, value: int) -> ListRegister:
        hw = bool(value >> 31 & 1)
        return cls(vintid=value & 0x3FF, state=LrState(value >> 28 & 3), priority=(value >> 23 & 0x1F) << 3,
                   group=value >> 30 & 1, hw=hw, physical=(value >> 10 & 0x3FF) if hw else 0,
                   eoi=not hw and bool(value >> 19 & 1), cpuid=0 if hw else value >> 10 & 7)

    @property
    def valid(self) -> bool:
        return self.state is not _INVALID

    @property
    def empty(self) -> bool:
        """GICH_ELRSR: free to use without losing an interrupt or an EOI maintenance request."""
        return not self.valid and (self.hw or not self.eoi)

    @property
    def eoi_signalled(self) -> bool:
        """GICH_EISR: completed, and the hypervisor asked to hear of it."""
        return not self.valid and not self.hw and self.eoi

    def __str__(self) -> str:
        if not self.valid and not self.eoi_signalled:
            return "-"
        origin = f" <- phys {self.physical}" if self.hw else (f" from CPU{self.cpuid}" if self.vintid in SGIS else "")
        flags = " EOI-maintenance" if self.eoi else ""
        return f"vINTID {self.vintid} {self.state.name.lower()} prio {self.priority:#04x} G{self.group}{origin}{flags}"


@dataclass
class VirtualInterfaceState:
    """A vCPU's virtual CPU interface, as registers: what a world switch saves and restores."""

    hcr: int = 0
    vmcr: int = GICH_VMCR_RESET
    apr: int = 0
    lrs: list[int] = field(default_factory=lambda: [0] * LIST_REGISTERS)

    def copy(self) -> VirtualInterfaceState:
        return replace(self, lrs=list(self.lrs))

    def list_register(self, n: int) -> ListRegister:
        return ListRegister.decode(self.lrs[n])

    def registers(self) -> dict[str, int]:
        """The WORLD_SWITCH_REGISTERS by name, for people to read."""
        values = [self.hcr, self.vmcr, self.apr, *self.lrs]
        return dict(zip(WORLD_SWITCH_REGISTERS, values))


def describe_list_registers(lrs: list[int]) -> str:
    """One line per list register, decoded."""
    return "\n".join(f"GICH_LR{n}: {ListRegister.decode(value)}" for n, value in enumerate(lrs))


def vmcr_of(cpu: CpuInterfaceState) -> int:
    """GICH_VMCR: VMPriMask [31:27], VMBP [23:21], VMABP [20:18], and GICV_CTLR's bits in [9:0]."""
    return (cpu.pmr >> 3) << 27 | (cpu.bpr & 7) << 21 | (cpu.abpr & 7) << 18 | (cpu.ctlr & CPU_CTLR_MASK)


def cpu_state_of(vmcr: int, apr: int) -> CpuInterfaceState:
    """The virtual CPU interface's registers from GICH_VMCR and GICH_APR (binary points kept in range)."""
    return CpuInterfaceState(ctlr=vmcr & CPU_CTLR_MASK, pmr=(vmcr >> 27) << 3, bpr=max(vmcr >> 21 & 7, MIN_BPR),
                             abpr=max(vmcr >> 18 & 7, MIN_BPR + 1), active_priorities=apr & 0xFFFF_FFFF)


class _ListRegisterPort:
    """The list registers as the virtual CPU interface's interrupt source (InterruptSource)."""

    def __init__(self, interface: VirtualCpuInterface):
        self.interface = interface

    def best_pending(self, groups: int) -> Candidate | None:
        """The most urgent list register in the pending state (not pending-and-active), lowest LR first."""
        if not self.interface.hcr & HCR_EN:
            return None
        best = None
        for lr in self.interface._decoded:
            if lr.state is _PENDING and groups >> lr.group & 1:
                if best is None or lr.priority < best.priority:
                    best = Candidate(lr.vintid, lr.priority, lr.group, 0 if lr.hw else lr.cpuid)
        return best

    def acknowledge(self, chosen: Candidate) -> None:
        n = self._find(chosen.intid, chosen.source, _PENDING)
        self.interface.set_state(n, _ACTIVE)

    def deactivate(self, intid: int, source: int) -> bool:
        """Active -> invalid (pending and active -> pending); a HW interrupt is deactivated in the
        distributor too. With no such list register, count it in GICH_HCR.EOICount (and say False)."""
        n = self._find(intid, source, LrState.ACTIVE, LrState.PENDING_ACTIVE)
        if n is None:
            count = (self.interface.hcr >> HCR_EOICOUNT_SHIFT) + 1 & 0x1F
            self.interface.hcr = self.interface.hcr & ~(0x1F << HCR_EOICOUNT_SHIFT) | count << HCR_EOICOUNT_SHIFT
            return False
        lr = self.interface.list_register(n)
        self.interface.set_state(n, lr.state & ~_ACTIVE)
        if lr.hw and self.interface.distributor is not None:
            self.interface.distributor.deactivate(self.interface.cpu, lr.physical)
        return True

    def _find(self, intid: int, source: int, *states: LrState) -> int | None:
        for n, lr in enumerate(self.interface._decoded):
            if lr.vintid == intid and lr.state in states and (intid not in SGIS or lr.hw or lr.cpuid == source):
                return n
        return None


class VirtualCpuInterface(CpuInterface):
    """One physical CPU's virtual interface: the GICH registers for the hypervisor, and the GICV
    registers (a CpuInterface with 5 priority bits) for the vCPU it runs.

    `on_signal(cpu)` is called when the virtual IRQ (or FIQ) line changes, like GIC.on_signal.
    `distributor` is the physical one, which receives the maintenance interrupt and the
    deactivation of HW interrupts (None: a detached model, with neither).
    """

    prefix = "GICV"
    name, base, size = "gicv", GICV_BASE, GICV_SIZE

    def __init__(self, distributor: Distributor | None, cpu: int, on_signal: Callable[[int], None] | None = None):
        self.distributor, self.cpu = distributor, cpu  # the physical distributor: PPI 25, HW deactivation
        self.hcr = 0
        self.lrs = [0] * LIST_REGISTERS  # the registers as written
        self._decoded = [ListRegister()] * LIST_REGISTERS  # and decoded, for the hardware's own use
        self.on_signal = on_signal
        self._signalled: str | None = None
        super().__init__(_ListRegisterPort(self), priority_bits=PRIORITY_BITS, group1_apart=False,
                         on_change=self._refresh)

    # --- the world switch ----------------------------------------------------------------------

    def save(self) -> VirtualInterfaceState:
        """The loaded vCPU's state, as the WORLD_SWITCH_REGISTERS; the interface is left empty and off
        (GICH_HCR = 0, no list register valid), as KVM leaves it, so no stale interrupt reaches
        the next vCPU."""
        saved = self.registers()
        self.restore(VirtualInterfaceState())
        return saved

    def registers(self) -> VirtualInterfaceState:
        """The loaded vCPU's state as `save` gives it, the interface left as it is."""
        return VirtualInterfaceState(self.hcr, vmcr_of(self.state), self.state.active_priorities, list(self.lrs))

    def restore(self, saved: VirtualInterfaceState) -> None:
        """Load a vCPU's saved state onto this interface."""
        self.hcr = saved.hcr & HCR_MASK
        self.state = cpu_state_of(saved.vmcr, saved.apr)
        for n, value in enumerate(saved.lrs):
            self._write_list_register(n, value)
        self._refresh()

    # --- maintenance -----------------------------------------------------------------------------

    def list_registers(self) -> list[ListRegister]:
        return list(self._decoded)

    def list_register(self, n: int) -> ListRegister:
        return self._decoded[n]

    def set_state(self, n: int, state: int) -> None:
        """The hardware moving list register `n` to `state` (the guest acknowledged or completed its interrupt)."""
        self._write_list_register(n, self.lrs[n] & ~(3 << 28) | state << 28)

    def _write_list_register(self, n: int, value: int) -> None:
        value &= 0xFFFF_FFFF & ~(7 << 20)  # bits [22:20] are reserved
        self.lrs[n], self._decoded[n] = value, ListRegister.decode(value)

    def misr(self) -> int:
        """GICH_MISR: which maintenance conditions hold now."""
        lrs, hcr, ctlr = self._decoded, self.hcr, self.state.ctlr
        # Each condition is looked at only when enabled: this runs at every change of the interface.
        misr = MISR_EOI if any(lr.eoi_signalled for lr in lrs) else 0
        if hcr & HCR_UIE and sum(lr.valid for lr in lrs) <= 1:
            misr |= MISR_U
        if hcr & HCR_LRENPIE and hcr >> HCR_EOICOUNT_SHIFT:
            misr |= MISR_LRENP
        if hcr & HCR_NPIE and not any(lr.state is _PENDING for lr in lrs):
            misr |= MISR_NP
        if hcr & HCR_VGRP0EIE and ctlr & 1:
            misr |= MISR_VGRP0E
        if hcr & HCR_VGRP0DIE and not ctlr & 1:
            misr |= MISR_VGRP0D
        if hcr & HCR_VGRP1EIE and ctlr & 2:
            misr |= MISR_VGRP1E
        if hcr & HCR_VGRP1DIE and not ctlr & 2:
            misr |= MISR_VGRP1D
        return misr

    def maintenance(self) -> bool:
        """The maintenance interrupt's line (PPI 25 of this CPU)."""
        return bool(self.hcr & HCR_EN) and self.misr() != 0

    @property
    def signalled(self) -> str | None:
        """What `signal()` gave when the interface last changed: what `on_signal` is told of."""
        return self._signalled

    def _refresh(self) -> None:
        if self.distributor is not None:
            self.distributor.set_line(MAINTENANCE_PPI, self.maintenance(), self.cpu)
        now = self.signal()
        changed = now != self._signalled
        self._signalled = now
        if changed and self.on_signal is not None:
            self.on_signal(self.cpu)

    # --- the GICH frame (the hypervisor's) -------------------------------------------------------

    def hyp_register_name(self, offset: int) -> str:
        if 0x100 <= offset < 0x200:
            return f"GICH_LR{(offset - 0x100) // 4}"
        return _GICH_REGISTERS.get(offset & ~3, f"GICH+{offset:#x}")

    def hyp_read(self, offset: int) -> int:
        """A 32-bit read of GICH at `offset`; unimplemented list registers and reserved offsets RAZ."""
        lrs = self._decoded
        if 0x100 <= offset < 0x100 + 4 * LIST_REGISTERS:
            return self.lrs[(offset - 0x100) // 4]
        return {
            0x00: self.hcr, 0x04: GICH_VTR, 0x08: vmcr_of(self.state), 0x10: self.misr(),
            0x20: sum(lr.eoi_signalled << n for n, lr in enumerate(lrs)),
            0x30: sum(lr.empty << n for n, lr in enumerate(lrs)),
            0xF0: self.state.active_priorities,
        }.get(offset, 0)

    def hyp_write(self, offset: int, value: int) -> None:
        """A 32-bit write of GICH; read-only and reserved registers ignore it."""
        value &= 0xFFFF_FFFF
        if offset == 0x00:
            self.hcr = value & HCR_MASK
        elif offset == 0x08:
            self.state = cpu_state_of(value, self.state.active_priorities)
        elif offset == 0xF0:
            self.state.active_priorities = value
        elif 0x100 <= offset < 0x100 + 4 * LIST_REGISTERS:
            self._write_list_register((offset - 0x100) // 4, value)
        else:
            return
        self._refresh()

    def hyp_frame(self) -> HypervisorFrame:
        """GICH as a device, to map where a hypervisor running as guest code could reach it."""
        return HypervisorFrame(self)

    def describe(self) -> str:
        """The list registers and the running priority, one line each, for people to read."""
        rpr = self.running_priority()
        return describe_list_registers(self.lrs) + f"\nrunning priority: {'idle' if rpr > 0xFF else hex(rpr)}"


_GICH_REGISTERS = {0x00: "GICH_HCR", 0x04: "GICH_VTR", 0x08: "GICH_VMCR", 0x10: "GICH_MISR", 0x20: "GICH_EISR0",
                   0x24: "GICH_EISR1", 0x30: "GICH_ELRSR0", 0x34: "GICH_ELRSR1", 0xF0: "GICH_APR"}


class HypervisorFrame:
    """The GICH registers of one CPU's virtual interface as a device (word accesses)."""

    name, base, size = "gich", GICH_BASE, GICH_SIZE

    def __init__(self, interface: VirtualCpuInterface):
        self.interface = interface

    def read(self, offset: int, size: int) -> int:
        return (self.interface.hyp_read(offset & ~3) >> 8 * (offset & 3)) & ((1 << 8 * size) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        if size == 4:
            self.interface.hyp_write(offset, value)

    def register_name(self, offset: int) -> str:
        return self.interface.hyp_register_name(offset)

