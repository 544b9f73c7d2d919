"""The hypervisor's virtual GIC (vlab/hyp/vgic.py), as a model: the VM's emulated distributor, list
registers filled and folded back, the world switch, the timer's path, IPIs.

The central property: a guest sees the same interrupts through the vGIC -- four list registers,
world switches, maintenance interrupts and all -- as through a bare GIC. None is lost, none is
delivered twice.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from vlab.hyp.vgic import VGic, serve_physical_irq
from vlab.hyp.world_switch import STATE, table
from vlab.machine.gic import EOI_MODE, GIC, SPURIOUS
from vlab.machine.gic_virt import HCR_UIE, LrState, VirtualCpuInterface

GICD_CTLR, GICD_ISENABLER, GICD_ISPENDR, GICD_ISACTIVER, GICD_IPRIORITYR, GICD_SGIR = (
    0x000, 0x100, 0x200, 0x300, 0x400, 0xF00)
GICV_CTLR, GICV_PMR, GICV_IAR, GICV_EOIR, GICV_RPR = 0x00, 0x04, 0x0C, 0x10, 0x14


class Host:
    """One physical CPU (its GIC, its virtual interface) running the vCPUs of one VM in turn."""

    def __init__(self, vcpus: int = 2, pcpus: int = 1):
        self.gic = GIC(pcpus)
        self.interfaces = [VirtualCpuInterface(self.gic.distributor, n) for n in range(pcpus)]
        self.vgic = VGic(vcpus)
        self.exits = 0  # what the hypervisor was asked to do: distributor accesses, interrupts
        for pcpu in range(pcpus):
            d, c = self.gic.devices(pcpu)
            d.write(GICD_CTLR, 4, 1)
            d.write(GICD_ISENABLER, 4, 1 << 25 | 1 << 27)  # the maintenance interrupt, the virtual timer
            c.write(0x00, 4, 1 | EOI_MODE)  # the host splits priority drop and deactivation
            c.write(0x04, 4, 0xFF)
        self.running = {}  # pCPU -> vCPU
        for vcpu in range(vcpus):  # each guest turns its distributor and its CPU interface on
            self.switch_to(vcpu)
            self.dist(vcpu, GICD_CTLR, 1)
            self.gicv(vcpu, GICV_CTLR, 1)
            self.gicv(vcpu, GICV_PMR, 0xFF)
        self.switch_to(0)
        self.exits = 0

    def switch_to(self, vcpu: int, pcpu: int = 0) -> None:
        """The world switch: the vCPU running on `pcpu` out, `vcpu` in."""
        if self.running.get(pcpu) == vcpu:
            return
        if pcpu in self.running:
            self.vgic.put(self.running.pop(pcpu))
        self.vgic.load(vcpu, self.interfaces[pcpu])
        self.running[pcpu] = vcpu

    def pcpu_of(self, vcpu: int) -> int:
        return next(p for p, v in self.running.items() if v == vcpu)

    def dist(self, vcpu: int, offset: int, value: int | None = None, size: int = 4) -> int:
        """A guest access to GICD_*: an exit."""
        self.exits += 1
        if value is None:
            return self.vgic.distributor_access(vcpu, offset, size, 0, False)
        return self.vgic.distributor_access(vcpu, offset, size, value, True)

    def gicv(self, vcpu: int, offset: int, value: int | None = None) -> int:
        """A guest access to its GICC_* address: the hardware's GICV, no exit; then whatever
        maintenance interrupt it raised is taken by the host (that one is an exit)."""
        interface = self.interfaces[self.pcpu_of(vcpu)]
        result = interface.read(offset, 4) if value is None else interface.write(offset, 4, value)
        self.take_physical_interrupts()
        return result

    def take_physical_interrupts(self) -> None:
        for pcpu, vcpu in list(self.running.items()):
            for _ in range(8):  # more than that would be a storm: a bug
                if self.gic.signal(pcpu) != "IRQ":
                    break
                self.exits += 1
                serve_physical_irq(self.gic.cpu_interfaces[pcpu], self.vgic, vcpu)
            assert self.gic.signal(pcpu) != "IRQ", "the physical interrupt keeps coming back"


# --- the paths, one by one ---------------------------------------------------------------------


def timer_fired(vcpus: int) -> Host:
    """A host whose guest enabled its virtual timer (PPI 27, mapped to the physical one) on vCPU 0,
    after the timer fired and the hypervisor injected it (one exit)."""
    host = Host(vcpus=vcpus)
    host.vgic.map(27, 27)
    host.dist(0, GICD_ISENABLER, 1 << 27)
    host.dist(0, GICD_IPRIORITYR + 27, 0xA0, size=1)
    host.exits = 0
    host.gic.set_ppi(0, 27, True)  # the timer fires: a physical interrupt, taken by the hypervisor
    host.take_physical_interrupts()
    return host


def test_the_virtual_timer_path_exits_once_and_the_guest_completes_it_without_exits():
    host = timer_fired(vcpus=1)
    assert host.exits == 1
    lr = host.interfaces[0].list_registers()[0]
    assert (lr.vintid, lr.state, lr.hw, lr.physical) == (27, LrState.PENDING, True, 27)
    assert host.interfaces[0].signal() == "IRQ"  # the guest takes it at its IRQ vector
    iar = host.gicv(0, GICV_IAR)
    host.gic.set_ppi(0, 27, False)  # its handler moves the timer on: the line falls
    host.gicv(0, GICV_EOIR, iar)
    assert iar == 27 and host.exits == 1
    assert not host.gic.distributor.interrupt(0, 27).active  # deactivated by the hardware, through HW = 1


def test_the_timer_cannot_fire_again_before_the_guest_completes_it():
    host = timer_fired(vcpus=1)
    iar = host.gicv(0, GICV_IAR)
    host.exits = 0
    host.take_physical_interrupts()  # the line is still high, but the physical interrupt is active
    assert host.exits == 0
    host.gicv(0, GICV_EOIR, iar)  # completed with the line high: it comes straight back, as on the board
    assert host.exits == 1 and host.interfaces[0].list_registers()[0].state is LrState.PENDING


def test_a_timer_interrupt_withdrawn_before_the_guest_took_it_leaves_nothing_behind():
    # The guest reprograms its timer with IRQs masked, never acknowledging the interrupt (a polling
    # guest): on the board its level-sensitive PPI stops being pending; in a VM the hypervisor
    # withdraws the list register and deactivates the physical PPI at its next look (as KVM does).
    host = timer_fired(vcpus=1)
    host.gic.set_ppi(0, 27, False)
    host.vgic.resample(0)
    assert not host.interfaces[0].list_registers()[0].valid and host.interfaces[0].signal() is None
    assert not host.gic.distributor.interrupt(0, 27).active
    host.gic.set_ppi(0, 27, True)  # and the next expiry comes through again
    host.take_physical_interrupts()
    assert host.exits == 2 and host.interfaces[0].list_registers()[0].state is LrState.PENDING
    host.gicv(0, GICV_IAR)  # once acknowledged, a falling line does not withdraw it
    host.gic.set_ppi(0, 27, False)
    host.vgic.resample(0)
    assert host.interfaces[0].list_registers()[0].state is LrState.ACTIVE


def test_an_ipi_is_an_exit_and_wakes_its_target_through_the_scheduler():
    host = Host(vcpus=2)
    host.dist(1, GICD_IPRIORITYR + 5, 0x40, size=1)
    host.switch_to(0)
    woken = []
    host.vgic.on_wake = woken.append
    host.dist(0, GICD_SGIR, 0b10 << 16 | 5)  # vCPU 0 sends SGI 5 to vCPU 1, which is not running
    assert woken == [1] and host.vgic.wants_to_run(1) and not host.vgic.wants_to_run(0)
    host.switch_to(1)
    assert host.gicv(1, GICV_IAR) == 5 | 0 << 10  # from vCPU 0
    assert host.dist(1, GICD_ISACTIVER) == 1 << 5  # the distributor's view includes the list registers


def test_more_pending_interrupts_than_list_registers_wait_and_come_in_priority_order():
    host = Host(vcpus=1)
    for n in range(6):
        host.dist(0, GICD_IPRIORITYR + 20 + n, 0x80 - 8 * n, size=1)
        host.dist(0, GICD_ISENABLER, 1 << 20 + n)
        host.dist(0, GICD_ISPENDR, 1 << 20 + n)
    interface = host.interfaces[0]
    assert [lr.vintid for lr in interface.list_registers()] == [25, 24, 23, 22]
    assert interface.hcr & HCR_UIE  # tell me when they are nearly all done
    taken = []
    while (iar := host.gicv(0, GICV_IAR)) != SPURIOUS:
        taken.append(iar)
        host.gicv(0, GICV_EOIR, iar)
    assert taken == [25, 24, 23, 22, 21, 20]


def test_a_guest_that_never_completes_fills_its_list_registers_and_the_rest_waits_without_a_hang():
    host = Host(vcpus=1)
    host.gicv(0, GICV_CTLR, 1 | EOI_MODE)  # it drops priorities, and never deactivates
    for n in range(6):
        host.dist(0, GICD_ISENABLER, 1 << 20 + n)
        host.dist(0, GICD_ISPENDR, 1 << 20 + n)
    for _ in range(10):
        iar = host.gicv(0, GICV_IAR)
        if iar != SPURIOUS:
            host.gicv(0, GICV_EOIR, iar)
    interface = host.interfaces[0]
    assert all(lr.state is LrState.ACTIVE for lr in interface.list_registers())
    assert host.gicv(0, GICV_IAR) == SPURIOUS and host.gicv(0, GICV_RPR) == 0xFF
    assert host.dist(0, GICD_ISPENDR) == 0b11 << 24 and not host.vgic.wants_to_run(0)  # 20-23 took the LRs


def test_a_descheduled_vcpu_keeps_its_active_and_pending_interrupts():
    host = Host(vcpus=2)
    for intid in (20, 21):
        host.dist(0, GICD_ISENABLER, 1 << intid)
        host.dist(0, GICD_ISPENDR, 1 << intid)
    first = host.gicv(0, GICV_IAR)
    host.switch_to(1)
    assert host.interfaces[0].list_registers()[0].state is LrState.INVALID  # nothing of vCPU 0 is left
    assert host.dist(0, GICD_ISACTIVER) == 1 << 20 and host.dist(0, GICD_ISPENDR) == 1 << 21
    host.switch_to(0)
    assert host.gicv(0, GICV_RPR) == 0  # still handling it
    host.gicv(0, GICV_EOIR, first)
    assert host.gicv(0, GICV_IAR) == 21


def test_the_physical_active_state_of_a_mapped_interrupt_moves_with_its_vcpu():
    host = timer_fired(vcpus=2)
    host.gicv(0, GICV_IAR)
    host.switch_to(1)
    assert not host.gic.distributor.interrupt(0, 27).active  # vCPU 1's own timer may fire
    assert host.vgic.saved[0].physical_active == {27: True}
    host.switch_to(0)
    assert host.gic.distributor.interrupt(0, 27).active


def test_hypervisor_mistakes_are_errors_that_say_what_is_wrong():
    host = Host(vcpus=2)
    with pytest.raises(ValueError, match="vCPU1 is not loaded"):
        host.vgic.put(1)
    with pytest.raises(ValueError, match="loaded there already"):
        host.vgic.load(1, host.interfaces[0])
    host.gic.cpu_interfaces[0].write(0x00, 4, 1)  # EOImode 0
    with pytest.raises(ValueError, match="EOImode = 1"):
        serve_physical_irq(host.gic.cpu_interfaces[0], host.vgic, 0)


def test_the_world_switch_state_the_course_prints_has_the_list_registers():
    moved = {register for group in STATE for register in group.registers}
    assert {"GICH_HCR", "GICH_VMCR", "GICH_APR", "GICH_LR0", "GICH_LR3"} <= moved
    assert "GIC virtual CPU interface" in table()


def test_bad_guest_input_to_the_distributor_never_raises():
    host = Host(vcpus=2)
    for offset in range(0, 0x1000, 4):
        for size in (1, 2, 4):
            host.dist(0, offset, 0xFFFF_FFFF, size=size)
            host.dist(1, offset, size=size)
    host.dist(0, GICD_SGIR, 0xFC << 16 | 1)  # to vCPUs that do not exist
    assert host.dist(0, 0x004) & 0xE0 == 1 << 5  # GICD_TYPER: two CPUs


# --- the property: the vGIC is equivalent to a bare GIC ----------------------------------------------------

VCPUS = 2
INTIDS = [0, 1, 2, 3, 20, 21, 22, 23, 24]  # SGIs, and PPIs made pending by GICD_ISPENDR
# Distinct priorities, multiples of 8 (the five bits a virtual interface keeps), below 0xF8 (which
# five bits can never unmask: GICV_PMR 0xFF reads 0xF8). Among equal priorities the order is the
# implementation's choice -- a bare GIC takes the lowest INTID, a virtual interface the lowest list
# register -- and both are right.
PRIORITIES = st.permutations(range(0, 0xF8, 8)).map(lambda p: dict(zip(INTIDS, p)))
OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("pend"), st.integers(0, VCPUS - 1), st.integers(20, 24)),
    st.tuples(st.just("sgi"), st.integers(0, VCPUS - 1), st.integers(0, (1 << VCPUS) - 1), st.integers(0, 3)),
    st.tuples(st.just("iar"), st.integers(0, VCPUS - 1), st.just(0)),
    st.tuples(st.just("eoi"), st.integers(0, VCPUS - 1), st.just(0)),
    st.tuples(st.just("switch"), st.integers(0, VCPUS - 1), st.just(0)),
), max_size=40)


@settings(max_examples=300)
@given(PRIORITIES, OPERATIONS, st.integers(1, VCPUS))
# Found by the property: SGI 0 active from vCPU1 and pending from vCPUs 0 and 1 -- after the EOI the
# lowest source (0) goes first on a bare GIC, and so must it through the list registers.
@example(dict(zip(INTIDS, range(0, 72, 8))), [("sgi", 1, 1, 0), ("iar", 0, 0), ("sgi", 0, 1, 0), ("sgi", 1, 1, 0)], 1)
def test_no_interrupt_is_lost_or_delivered_twice_through_list_registers_and_world_switches(priorities, ops, pcpus):
    bare = GIC(VCPUS)
    bd = [bare.devices(n) for n in range(VCPUS)]
    host = Host(vcpus=VCPUS, pcpus=pcpus)
    for n in range(VCPUS):
        bd[n][0].write(GICD_CTLR, 4, 1)
        bd[n][1].write(0x00, 4, 1)
        bd[n][1].write(0x04, 4, 0xFF)
        for intid, priority in priorities.items():
            bd[n][0].write(GICD_IPRIORITYR + intid, 1, priority)
            host.dist(n, GICD_IPRIORITYR + intid, priority, size=1)
        bd[n][0].write(GICD_ISENABLER, 4, 0x1F << 20)
        host.dist(n, GICD_ISENABLER, 0x1F << 20)
    for pcpu in range(pcpus):
        host.switch_to(pcpu, pcpu)
    stacks: list[list[int]] = [[] for _ in range(VCPUS)]  # what each guest acknowledged, innermost last

    def acknowledge(vcpu: int) -> int:
        got, want = host.gicv(vcpu, GICV_IAR), bd[vcpu][1].read(GICV_IAR, 4)
        assert got == want, f"vCPU{vcpu}: vGIC gave {got:#x}, a bare GIC {want:#x}"
        if got != SPURIOUS:
            stacks[vcpu].append(got)
        return got

    def complete(vcpu: int) -> None:
        if stacks[vcpu]:
            iar = stacks[vcpu].pop()
            host.gicv(vcpu, GICV_EOIR, iar)
            bd[vcpu][1].write(GICV_EOIR, 4, iar)

    for kind, vcpu, arg, *more in ops:
        if kind == "pend":
            host.dist(vcpu, GICD_ISPENDR, 1 << arg)
            bd[vcpu][0].write(GICD_ISPENDR, 4, 1 << arg)
        elif kind == "sgi":
            host.dist(vcpu, GICD_SGIR, arg << 16 | more[0])
            bd[vcpu][0].write(GICD_SGIR, 4, arg << 16 | more[0])
        elif vcpu not in host.running.values():
            if kind == "switch":  # deschedule whatever runs on a physical CPU, run this one
                host.switch_to(vcpu, pcpu=arg % pcpus if pcpus > 1 else 0)
        elif kind == "iar":
            acknowledge(vcpu)
        elif kind == "eoi":
            complete(vcpu)
    for vcpu in range(VCPUS):  # drain: every vCPU takes and completes all that is left
        if vcpu not in host.running.values():
            host.switch_to(vcpu)
        for _ in range(64):
            while acknowledge(vcpu) != SPURIOUS:
                pass
            if not stacks[vcpu]:
                break
            complete(vcpu)
        assert not stacks[vcpu] and bd[vcpu][0].read(GICD_ISPENDR, 4) == 0


@pytest.mark.parametrize("traps", ["board", 0, "TWI"])
def test_a_guest_polling_its_timer_with_irqs_masked_sleeps_each_period_as_on_the_board(traps):
    from vlab.arch.hcr import HCR
    from vlab.guests import workloads
    from vlab.hyp import VM
    from vlab.machine.board import Board
    from vlab.machine.loader import image_from_program, load

    image = image_from_program(workloads.sleeper(period=5_000, work=2_000))
    if traps == "board":
        machine = Board()
        load(machine, image)
    else:
        machine = VM.from_image(image, traps=HCR.TWI if traps else HCR(0))
    machine.run(max_insns=100_000, timeout_s=30)
    assert workloads.progress(machine) == 49  # a round per 5,000 ticks: never a WFI woken by a stale interrupt


def test_a_virtual_interrupt_costs_one_start_of_the_emulator(monkeypatch):
    # One run ends at the guest's WFI; the hypervisor takes the physical interrupt and fills a list
    # register; the next run takes the virtual IRQ at once (the core does, with no Python on the
    # way) and goes on through the handler's GICV_IAR, EOIR and ERET to the next WFI.
    from vlab.hyp import VM
    from vlab.hyp.cost import interrupt_loop_program
    from vlab.machine.cpu import CPU
    from vlab.machine.loader import image_from_program

    starts, original = [0], CPU._run

    def counted(self, *args, **kwargs):
        starts[0] += 1
        return original(self, *args, **kwargs)
    monkeypatch.setattr(CPU, "_run", counted)
    counts = []
    for n in (10, 110):
        starts[0] = 0
        vm = VM.from_image(image_from_program(interrupt_loop_program(n)))
        assert vm.run(max_insns=1_000_000).reason.value == "powered_off"
        assert vm.exits["IRQ"] == vm.gicv_accesses["GICV_EOIR"] == n
        counts.append(starts[0])
    assert (counts[1] - counts[0]) / 100 == 1
