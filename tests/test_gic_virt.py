"""The GICv2 virtualization extensions (vlab/machine/gic_virt.py): list registers, maintenance, GICV.

Register values are the architecture's, and QEMU 7.2's where it agrees (tests/test_gic_qemu.py
replays QEMU's own trace of virtual_interface.c); the three places where QEMU does not are tested
here on their own.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vlab.machine.gic import GIC, MAINTENANCE_PPI, SPURIOUS
from vlab.machine.gic_virt import (GICH_VMCR_RESET, GICH_VTR, HCR_EN, HCR_LRENPIE, HCR_NPIE, HCR_UIE, LIST_REGISTERS,
                                   MISR_EOI, MISR_LRENP, MISR_NP, MISR_U, MISR_VGRP0D, MISR_VGRP0E, ListRegister,
                                   LrState, VirtualCpuInterface, VirtualInterfaceState, WORLD_SWITCH_REGISTERS)

GICH_HCR, GICH_VMCR, GICH_MISR, GICH_EISR0, GICH_ELRSR0, GICH_APR, GICH_LR0 = 0x00, 0x08, 0x10, 0x20, 0x30, 0xF0, 0x100
GICV_CTLR, GICV_PMR, GICV_BPR, GICV_IAR, GICV_EOIR, GICV_RPR, GICV_HPPIR, GICV_ABPR, GICV_DIR = (
    0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18, 0x1C, 0x1000)


def lr(state: int, priority: int, vintid: int, **fields) -> int:
    return ListRegister(vintid=vintid, state=LrState(state), priority=priority, **fields).encode()


class Host:
    """One physical CPU's GIC and virtual interface, the hypervisor's GICH view and the guest's GICV."""

    def __init__(self):
        self.raised: list[int] = []
        self.gic = GIC(1)
        self.v = VirtualCpuInterface(self.gic.distributor, 0, on_signal=self.raised.append)
        self.gich = self.v.hyp_frame()

    def h(self, offset: int, value: int | None = None) -> int:
        if value is None:
            return self.gich.read(offset, 4)
        self.gich.write(offset, 4, value)
        return 0

    def g(self, offset: int, value: int | None = None) -> int:
        if value is None:
            return self.v.read(offset, 4)
        self.v.write(offset, 4, value)
        return 0

    def guest_on(self, eoi_mode: int = 0) -> None:
        self.g(GICV_CTLR, 1 | eoi_mode << 9)
        self.g(GICV_PMR, 0xFF)
        self.h(GICH_HCR, HCR_EN)


def test_four_list_registers_and_five_priority_bits_as_qemu_virt_and_gic_400_report():
    host = Host()
    assert host.h(0x04) == GICH_VTR == 0x9000_0003
    assert host.h(GICH_VMCR) == GICH_VMCR_RESET == 0x004C_0000  # VMBP 2, VMABP 3
    assert host.h(GICH_ELRSR0) == 0xF  # all four empty
    host.g(GICV_PMR, 0xFF)
    assert host.g(GICV_PMR) == 0xF8


@given(st.integers(0, 2**32 - 1))
def test_a_list_register_decodes_and_encodes_to_itself_without_its_reserved_bits(value):
    reserved = 7 << 20 | (0 if value >> 31 else 0x3F << 13)  # [22:20]; [18:13] when HW = 0 (EOI, CPUID)
    assert ListRegister.decode(value).encode() == value & ~reserved


def test_qemus_hw_list_register_reads_as_the_architecture_says():
    decoded = ListRegister.decode(0x9400_6C1B)  # what QEMU held for the virtual timer, backed by PPI 27
    assert decoded == ListRegister(vintid=27, state=LrState.PENDING, priority=0x40, hw=True, physical=27)
    assert str(decoded) == "vINTID 27 pending prio 0x40 G0 <- phys 27"


def test_guest_acknowledges_and_completes_through_gicv_while_the_lr_moves_pending_active_invalid():
    host = Host()
    host.guest_on()
    host.h(GICH_LR0, lr(1, 0x40, 27))
    assert host.v.signal() == "IRQ" and host.raised == [0]
    assert host.g(GICV_IAR) == 27
    assert ListRegister.decode(host.h(GICH_LR0)).state is LrState.ACTIVE
    assert host.g(GICV_RPR) == 0x40 and host.h(GICH_APR) == 1 << (0x40 >> 3)
    host.g(GICV_EOIR, 27)
    assert ListRegister.decode(host.h(GICH_LR0)).state is LrState.INVALID and host.g(GICV_RPR) == 0xFF
    assert host.h(GICH_ELRSR0) == 0xF and host.h(GICH_MISR) == 0


def test_the_interface_is_silent_until_gich_hcr_en():
    host = Host()
    host.g(GICV_CTLR, 1)
    host.g(GICV_PMR, 0xFF)
    host.h(GICH_LR0, lr(1, 0x40, 27))
    assert host.g(GICV_IAR) == SPURIOUS and host.g(GICV_HPPIR) == SPURIOUS and host.v.signal() is None
    host.h(GICH_HCR, HCR_EN)
    assert host.g(GICV_HPPIR) == 27


def test_an_eoi_bit_asks_for_a_maintenance_interrupt_when_the_guest_completes_it():
    host = Host()
    host.guest_on()
    host.h(GICH_LR0 + 4, lr(1, 0x20, 3, eoi=True, cpuid=2))  # SGI 3 from CPU 2
    iar = host.g(GICV_IAR)
    assert iar == 3 | 2 << 10
    host.g(GICV_EOIR, iar)
    assert host.h(GICH_EISR0) == 0b10 and host.h(GICH_MISR) & MISR_EOI
    assert host.h(GICH_ELRSR0) == 0b1101  # completed, but not empty: the EOI is not handled yet
    assert host.v.maintenance() and host.gic.distributor.interrupt(0, MAINTENANCE_PPI).pending
    host.h(GICH_LR0 + 4, 0)  # the hypervisor handles it
    assert not host.v.maintenance() and not host.gic.distributor.interrupt(0, MAINTENANCE_PPI).pending


def test_underflow_and_no_pending_maintenance():
    host = Host()
    host.guest_on()
    host.h(GICH_LR0, lr(1, 0x40, 27))
    host.h(GICH_LR0 + 4, lr(1, 0x80, 40))
    host.h(GICH_HCR, HCR_EN | HCR_UIE | HCR_NPIE)
    assert host.h(GICH_MISR) == 0  # two valid, some pending
    first = host.g(GICV_IAR)
    host.h(GICH_LR0 + 4, lr(3, 0x80, 40))  # pending and active: nothing is only pending now
    assert host.h(GICH_MISR) == MISR_NP
    host.g(GICV_EOIR, first)  # one valid entry left
    assert host.h(GICH_MISR) == MISR_U | MISR_NP


def test_the_guest_completing_an_interrupt_no_lr_holds_counts_in_eoicount():
    host = Host()
    host.guest_on()
    host.h(GICH_HCR, HCR_EN | HCR_LRENPIE)
    for n in range(33):
        host.h(GICH_LR0, lr(1, 0x40, 28))
        iar = host.g(GICV_IAR)
        host.h(GICH_LR0, 0)  # the hypervisor took it out while active
        host.g(GICV_EOIR, iar)
        assert host.h(GICH_HCR) >> 27 == (n + 1) % 32  # five bits: it wraps
    assert host.h(GICH_MISR) == MISR_LRENP and host.g(GICV_RPR) == 0xFF
    host.g(GICV_EOIR, 77)  # nothing active: ignored, not counted
    assert host.h(GICH_HCR) >> 27 == 1


def test_a_hw_list_register_deactivates_the_physical_interrupt_when_the_guest_completes():
    host = Host()
    d, c = host.gic.devices(0)
    d.write(0x000, 4, 1)
    c.write(0x000, 4, 1 | 1 << 9)  # the host: EOImode 1
    c.write(0x004, 4, 0xFF)
    d.write(0x100, 4, 1 << 27)
    host.gic.set_ppi(0, 27, True)
    physical = c.read(0x0C, 4)
    c.write(0x10, 4, physical)  # priority drop only
    assert host.gic.distributor.interrupt(0, 27).active
    host.guest_on()
    host.h(GICH_LR0, lr(1, 0x40, 27, hw=True, physical=27))
    iar = host.g(GICV_IAR)
    host.gic.set_ppi(0, 27, False)  # the guest's handler reprograms its timer
    host.g(GICV_EOIR, iar)
    assert not host.gic.distributor.interrupt(0, 27).active
    assert host.h(GICH_ELRSR0) == 0xF and host.h(GICH_EISR0) == 0  # a HW entry never asks for maintenance


def test_a_guest_that_never_completes_gets_one_interrupt_per_priority_and_then_1023():
    host = Host()
    host.guest_on()
    for n, priority in enumerate((0xC0, 0xD0, 0xE0, 0xF0)):
        host.h(GICH_LR0 + 4 * n, lr(1, priority, 30 + n))
    assert [host.g(GICV_IAR) for _ in range(5)] == [30, SPURIOUS, SPURIOUS, SPURIOUS, SPURIOUS]
    assert host.h(GICH_ELRSR0) == 0 and host.g(GICV_HPPIR) == 31  # the others wait, pending, in their LRs


def test_with_eoimode_1_a_guest_that_never_deactivates_fills_every_list_register_with_active_ones():
    host = Host()
    host.guest_on(eoi_mode=1)
    for n, priority in enumerate((0xF0, 0xE0, 0xD0, 0xC0)):
        host.h(GICH_LR0 + 4 * n, lr(1, priority, 30 + n))
    taken = []
    for _ in range(5):
        iar = host.g(GICV_IAR)
        taken.append(iar)
        if iar != SPURIOUS:
            host.g(GICV_EOIR, iar)  # priority drop only
    assert taken == [33, 32, 31, 30, SPURIOUS]
    assert all(l.state is LrState.ACTIVE for l in host.v.list_registers()) and host.h(GICH_ELRSR0) == 0
    assert host.g(GICV_RPR) == 0xFF and host.h(GICH_MISR) == 0
    host.g(GICV_DIR, 31)
    assert host.h(GICH_ELRSR0) == 0b0010


def test_group_enable_maintenance_reports_the_guests_gicv_ctlr():
    host = Host()
    host.h(GICH_HCR, HCR_EN | 0xF0)
    assert host.h(GICH_MISR) == MISR_VGRP0D | 1 << 7  # both groups disabled
    host.g(GICV_CTLR, 1)
    assert host.h(GICH_MISR) == MISR_VGRP0E | 1 << 7


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
       st.lists(st.integers(0, 2**32 - 1), min_size=LIST_REGISTERS, max_size=LIST_REGISTERS))
def test_a_world_switch_restores_what_it_saved_and_leaves_the_interface_empty(hcr, vmcr, apr, lrs):
    host = Host()
    state = VirtualInterfaceState(hcr, vmcr, apr, lrs)
    host.v.restore(state)
    registers = {name: host.h(offset) for name, offset in
                 zip(WORLD_SWITCH_REGISTERS, (GICH_HCR, GICH_VMCR, GICH_APR, *range(GICH_LR0, GICH_LR0 + 16, 4)))}
    saved = host.v.save()
    assert saved.registers() == registers
    assert host.h(GICH_HCR) == 0 and host.h(GICH_ELRSR0) == 0xF and not host.v.maintenance()
    again = Host()
    again.v.restore(saved)
    assert again.v.save() == saved


def test_qemu_departures_from_the_architecture_are_not_copied():
    host = Host()
    host.guest_on()
    host.g(GICV_ABPR, 0)
    assert host.g(GICV_ABPR) == 3  # QEMU 7.2 reads 1; the minimum is one above GICV_BPR's (2)
    host.h(GICH_LR0, lr(1, 0x20, 3, cpuid=2))
    assert host.g(GICV_HPPIR) == 3 | 2 << 10  # QEMU omits the CPUID of an SGI here (IAR has it)
    host.h(0x110, 0xFFFF_FFFF)
    assert host.h(0x110) == 0  # GICH_LR4 does not exist (GICH_VTR: 4); QEMU stores it anyway


def test_gich_register_names():
    gich = Host().gich
    assert [gich.register_name(o) for o in (0x00, 0x04, 0x10, 0x30, 0xF0, 0x10C, 0x200)] == [
        "GICH_HCR", "GICH_VTR", "GICH_MISR", "GICH_ELRSR0", "GICH_APR", "GICH_LR3", "GICH+0x200"]


def test_odd_accesses_to_gich_and_gicv_never_raise():
    host = Host()
    for offset in range(0, 0x200, 4):
        for size in (1, 2, 4):
            host.gich.write(offset, size, 0xFFFF_FFFF)
            host.gich.read(offset, size)
            host.v.write(offset, size, 0xFFFF_FFFF)
            host.v.read(offset, size)
    assert host.h(0x04) == GICH_VTR
