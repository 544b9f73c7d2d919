"""vlab's GICv2 (vlab/machine/gic.py): the distributor and CPU interface, register by register, and
its state machine against a reference model written from the architecture's rules.

The facts (offsets, reset values, what is RAZ/WI) are GICv2's (IHI 0048B) as QEMU 7.2's `-M virt`
implements them; tests/test_gic_qemu.py replays QEMU's own traces for the same facts.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vlab.machine.gic import GIC, GROUP1_PENDING, SPURIOUS

GICD_CTLR, GICD_TYPER, GICD_IGROUPR, GICD_ISENABLER, GICD_ICENABLER = 0x000, 0x004, 0x080, 0x100, 0x180
GICD_ISPENDR, GICD_ICPENDR, GICD_ISACTIVER, GICD_ICACTIVER = 0x200, 0x280, 0x300, 0x380
GICD_IPRIORITYR, GICD_ITARGETSR, GICD_ICFGR, GICD_SGIR = 0x400, 0x800, 0xC00, 0xF00
GICC_CTLR, GICC_PMR, GICC_BPR, GICC_IAR, GICC_EOIR, GICC_RPR, GICC_HPPIR, GICC_DIR = (
    0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18, 0x1000)
SELF, OTHERS, LIST = 2 << 24, 1 << 24, 0


class Machine:
    """A GIC with the CPUs' views of its two frames, read and written as a guest would."""

    def __init__(self, cpus: int = 1, enable: bool = True):
        self.raised: list[int] = []
        self.gic = GIC(cpus, on_signal=self.raised.append)
        self.views = [self.gic.devices(n) for n in range(cpus)]
        if enable:
            self.d(GICD_CTLR, 1)
            for n in range(cpus):
                self.c(GICC_CTLR, 1, cpu=n)
                self.c(GICC_PMR, 0xFF, cpu=n)

    def d(self, offset: int, value: int | None = None, size: int = 4, cpu: int = 0) -> int:
        frame = self.views[cpu][0]
        if value is None:
            return frame.read(offset, size)
        frame.write(offset, size, value)
        return 0

    def c(self, offset: int, value: int | None = None, cpu: int = 0) -> int:
        frame = self.views[cpu][1]
        if value is None:
            return frame.read(offset, 4)
        frame.write(offset, 4, value)
        return 0

    def priority(self, intid: int, value: int, cpu: int = 0) -> None:
        self.d(GICD_IPRIORITYR + intid, value, size=1, cpu=cpu)

    def enable(self, intid: int, cpu: int = 0) -> None:
        self.d(GICD_ISENABLER + 4 * (intid // 32), 1 << intid % 32, cpu=cpu)

    def sgi(self, intid: int, cpu: int = 0, filter: int = SELF, targets: int = 0) -> None:
        self.d(GICD_SGIR, filter | targets << 16 | intid, cpu=cpu)


# --- the registers ------------------------------------------------------------------------------


def test_typer_says_288_interrupt_ids_and_the_number_of_cpus_as_on_qemu_virt():
    assert Machine(1).d(GICD_TYPER) == 0x08  # ITLinesNumber 8: 32 * 9 = 288 INTIDs; CPUNumber 0
    assert Machine(4).d(GICD_TYPER) == 0x68  # CPUNumber 3: four CPU interfaces


def test_identification_registers_say_gicv2():
    m = Machine()
    assert m.d(0xFE8) >> 4 & 0xF == 2  # ICPIDR2.ArchRev
    assert m.d(0x008) == 0x43B and m.c(0xFC) == 0x0002_043B  # GICD_IIDR, GICC_IIDR: implementer Arm


def test_sgis_are_always_enabled_and_edge_triggered():
    m = Machine()
    m.d(GICD_ICENABLER, 0xFFFF_FFFF)
    assert m.d(GICD_ISENABLER) == 0xFFFF
    m.d(GICD_ICFGR, 0)
    assert m.d(GICD_ICFGR) == 0xAAAA_AAAA


def test_reserved_registers_read_as_zero_and_ignore_writes():
    m = Machine()
    for offset in (0x00C, 0x040, 0xD00, 0xE00, 0xF04, 0xFC0, 0xF00):  # 0xF00: GICD_SGIR is write-only
        m.d(offset, 0xFFFF_FFFF)
        assert m.d(offset) == 0, hex(offset)
    m.c(0x40, 0xFFFF_FFFF)
    assert m.c(0x40) == 0 and m.c(GICC_DIR) == 0


def test_interrupts_that_do_not_exist_are_raz_wi():
    m = Machine()
    m.d(GICD_ISENABLER + 4 * 9, 0xFFFF_FFFF)  # INTIDs 288-319
    m.d(GICD_IPRIORITYR + 300, 0x80, size=1)
    m.d(GICD_ISPENDR + 4 * 31, 0xFFFF_FFFF)
    assert m.d(GICD_ISENABLER + 4 * 9) == 0 and m.d(GICD_IPRIORITYR + 300, size=1) == 0
    assert m.c(GICC_IAR) == SPURIOUS


def test_a_byte_access_reaches_one_interrupt_and_a_word_four():
    m = Machine()
    m.d(GICD_IPRIORITYR + 27, 0xFF, size=1)
    assert m.d(GICD_IPRIORITYR + 24) == 0xFF00_0000
    m.d(GICD_IPRIORITYR + 32, 0x1234_5678)
    assert [m.d(GICD_IPRIORITYR + 32 + i, size=1) for i in range(4)] == [0x78, 0x56, 0x34, 0x12]


def test_gicc_ctlr_keeps_its_gicv2_bits_and_the_binary_points_their_minimum():
    m = Machine()
    m.c(GICC_CTLR, 0xFFFF_FFFF)
    assert m.c(GICC_CTLR) == 0x21F  # groups, AckCtl, FIQEn, CBPR, EOImode; no bypass bits
    m.c(GICC_BPR, 0)
    m.c(0x1C, 0)
    assert (m.c(GICC_BPR), m.c(0x1C)) == (0, 1)


def test_one_cpu_has_raz_wi_targets_and_several_cpus_see_themselves_in_itargetsr0():
    one = Machine(1)
    one.d(GICD_ITARGETSR + 32, 0xFFFF_FFFF)
    assert one.d(GICD_ITARGETSR) == 0 and one.d(GICD_ITARGETSR + 32) == 0
    four = Machine(4)
    assert [four.d(GICD_ITARGETSR, cpu=n) for n in range(4)] == [0x0101_0101 << n for n in range(4)]
    four.d(GICD_ITARGETSR, 0, cpu=2)
    assert four.d(GICD_ITARGETSR, cpu=2) == 0x0404_0404  # read-only


def test_sgi_and_ppi_registers_are_banked_per_cpu_and_spi_registers_shared():
    m = Machine(2)
    m.priority(27, 0x40, cpu=0)
    m.priority(40, 0x50, cpu=0)
    m.enable(27, cpu=1)
    assert m.d(GICD_IPRIORITYR + 27, size=1, cpu=1) == 0
    assert m.d(GICD_IPRIORITYR + 40, size=1, cpu=1) == 0x50
    assert m.d(GICD_ISENABLER, cpu=0) >> 27 & 1 == 0 and m.d(GICD_ISENABLER, cpu=1) >> 27 & 1 == 1


def test_register_names_follow_the_architecture():
    m = Machine()
    d, c = m.views[0]
    assert [d.register_name(o) for o in (0x000, 0x104, 0x41C, 0x800, 0xC04, 0xF00, 0xF24, 0xFE8, 0x010)] == [
        "GICD_CTLR", "GICD_ISENABLER1", "GICD_IPRIORITYR7", "GICD_ITARGETSR0", "GICD_ICFGR1", "GICD_SGIR",
        "GICD_SPENDSGIR1", "GICD_ICPIDR2", "GICD+0x10"]
    assert [c.register_name(o) for o in (0x0C, 0x10, 0x1000, 0xD4, 0x44)] == [
        "GICC_IAR", "GICC_EOIR", "GICC_DIR", "GICC_APR1", "GICC+0x44"]


# --- SGIs ---------------------------------------------------------------------------------------


def test_an_sgi_is_pending_per_source_and_iar_names_the_source():
    m = Machine(4)
    m.sgi(5, cpu=2, filter=LIST, targets=0b0001)
    m.sgi(5, cpu=3, filter=LIST, targets=0b0001)
    assert m.d(0xF24, cpu=0) >> 8 & 0xFF == 0b1100  # GICD_SPENDSGIR1, byte 1 = SGI 5: from CPUs 2 and 3
    first = m.c(GICC_IAR)
    assert first == 5 | 2 << 10
    m.c(GICC_EOIR, first)
    assert m.c(GICC_IAR) == 5 | 3 << 10


def test_sgir_filters_reach_the_list_the_others_or_the_sender_and_skip_cpus_that_do_not_exist():
    m = Machine(3)
    m.sgi(1, cpu=1, filter=LIST, targets=0b1111_1101)  # CPUs 0 and 2, and five that do not exist
    m.sgi(2, cpu=1, filter=OTHERS)
    m.sgi(3, cpu=1, filter=SELF)
    pending = [m.d(GICD_ISPENDR, cpu=n) & 0xFFFF for n in range(3)]
    assert pending == [0b0110, 0b1000, 0b0110]


def test_ispendr_and_icpendr_ignore_sgis_but_spendsgir_and_cpendsgir_do_not():
    m = Machine()
    m.d(GICD_ISPENDR, 0xFFFF)
    assert m.d(GICD_ISPENDR) == 0
    m.d(0xF2A, 0b1, size=1)  # GICD_SPENDSGIR2, byte 2: SGI 10 from CPU 0
    assert m.d(GICD_ISPENDR) == 1 << 10
    m.d(GICD_ICPENDR, 1 << 10)
    assert m.d(GICD_ISPENDR) == 1 << 10
    m.d(0xF1A, 0b1, size=1)  # GICD_CPENDSGIR2
    assert m.d(GICD_ISPENDR) == 0


# --- lines: level and edge ---------------------------------------------------------------------------


def test_a_level_interrupt_is_pending_while_its_line_is_high_even_after_it_is_acknowledged():
    m = Machine()
    m.enable(27)
    m.gic.set_ppi(0, 27, True)
    iar = m.c(GICC_IAR)
    assert iar == 27
    assert m.d(GICD_ISPENDR) >> 27 & 1 and m.d(GICD_ISACTIVER) >> 27 & 1  # active and pending
    m.d(GICD_ICPENDR, 1 << 27)
    assert m.d(GICD_ISPENDR) >> 27 & 1  # the line holds it pending
    m.c(GICC_EOIR, iar)
    assert m.c(GICC_IAR) == 27  # completed with the line still high: taken again
    m.gic.set_ppi(0, 27, False)
    assert m.d(GICD_ISPENDR) >> 27 & 1 == 0


def test_an_edge_interrupt_is_latched_by_the_rising_edge_and_consumed_by_iar():
    m = Machine()
    m.d(GICD_ICFGR + 4, 2 << 2 * (27 - 16))
    m.enable(27)
    m.gic.set_ppi(0, 27, True)
    assert m.c(GICC_IAR) == 27
    assert m.d(GICD_ISPENDR) >> 27 & 1 == 0  # the line is still high, but an edge was consumed
    m.gic.set_ppi(0, 27, False)
    m.gic.set_ppi(0, 27, True)
    assert m.d(GICD_ISPENDR) >> 27 & 1  # a new edge while active: active and pending


def test_lines_that_are_not_inputs_are_ignored():
    m = Machine()
    m.gic.set_ppi(0, 3, True)  # an SGI is not a line
    m.gic.set_ppi(5, 27, True)  # no CPU 5
    m.gic.set_spi(400, True)
    assert m.d(GICD_ISPENDR) == 0 and m.c(GICC_IAR) == SPURIOUS


def test_an_spi_reaches_only_the_cpus_it_targets():
    m = Machine(2)
    m.enable(40)
    m.gic.set_spi(40, True)
    assert m.c(GICC_HPPIR, cpu=0) == SPURIOUS  # targets reset to no CPU (as QEMU)
    m.d(GICD_ITARGETSR + 40, 0b10, size=1)
    assert (m.c(GICC_HPPIR, cpu=0), m.c(GICC_HPPIR, cpu=1)) == (SPURIOUS, 40)


# --- the CPU interface's rules --------------------------------------------------------------------------


def test_the_line_rises_only_for_an_interrupt_more_urgent_than_the_mask_and_the_running_priority():
    m = Machine()
    m.c(GICC_PMR, 0x80)
    m.priority(4, 0x80)
    m.sgi(4)
    assert m.gic.signal(0) is None and m.c(GICC_HPPIR) == SPURIOUS and m.raised == []
    m.c(GICC_PMR, 0x81)
    assert m.gic.signal(0) == "IRQ" and m.raised == [0]
    iar = m.c(GICC_IAR)
    m.priority(5, 0x80)
    m.sgi(5)
    assert m.gic.signal(0) is None and m.c(GICC_HPPIR) == 5  # pending, but not more urgent than SGI 4
    m.c(GICC_EOIR, iar)
    assert m.gic.signal(0) == "IRQ"


def test_the_binary_point_decides_which_priority_bits_preempt():
    m = Machine()
    m.c(GICC_BPR, 5)  # group priority: bits [7:6]
    m.priority(1, 0x9F)
    m.priority(2, 0x81)
    m.priority(3, 0x30)
    m.sgi(1)
    first = m.c(GICC_IAR)
    assert m.c(GICC_RPR) == 0x80  # the running priority is the group priority
    m.sgi(2)
    assert m.c(GICC_IAR) == SPURIOUS  # 0x81 is more urgent than 0x9F, but in the same group
    m.sgi(3)
    assert m.c(GICC_IAR) == 3 and m.c(GICC_RPR) == 0x00
    assert first == 1


def test_eoimode_1_splits_priority_drop_from_deactivation():
    m = Machine()
    m.c(GICC_CTLR, 1 | 1 << 9)
    m.sgi(1)
    iar = m.c(GICC_IAR)
    m.c(GICC_EOIR, iar)
    assert m.c(GICC_RPR) == 0xFF and m.d(GICD_ISACTIVER) == 1 << 1
    m.sgi(1)
    assert m.c(GICC_IAR) == SPURIOUS  # still active: a second instance waits
    m.c(GICC_DIR, iar)
    assert m.d(GICD_ISACTIVER) == 0 and m.c(GICC_IAR) == 1


def test_gicc_dir_is_ignored_without_eoimode():
    m = Machine()
    m.sgi(1)
    m.c(GICC_IAR)
    m.c(GICC_DIR, 1)
    assert m.d(GICD_ISACTIVER) == 1 << 1


def test_eoir_with_nothing_active_or_a_spurious_id_is_ignored():
    m = Machine()
    m.sgi(1)
    m.c(GICC_EOIR, 1)  # nothing active yet
    assert m.d(GICD_ISPENDR) == 1 << 1 and m.c(GICC_RPR) == 0xFF
    iar = m.c(GICC_IAR)
    m.c(GICC_EOIR, SPURIOUS)
    assert m.c(GICC_RPR) == 0x00 and m.d(GICD_ISACTIVER) == 1 << 1
    m.c(GICC_EOIR, iar)
    assert m.c(GICC_RPR) == 0xFF


def test_group_1_reads_as_1022_without_ackctl_and_is_not_forwarded_while_disabled():
    m = Machine()
    m.d(GICD_IGROUPR, 1 << 6)
    m.sgi(6)
    # The distributor forwards only enabled groups (QEMU 7.2 answers 1022 here: it does not check).
    assert m.c(GICC_HPPIR) == SPURIOUS and m.c(GICC_IAR) == SPURIOUS
    m.d(GICD_CTLR, 3)
    m.c(GICC_CTLR, 3)
    assert m.c(GICC_IAR) == GROUP1_PENDING and m.d(GICD_ISPENDR) == 1 << 6  # not acknowledged
    m.c(GICC_CTLR, 7)  # AckCtl
    assert m.c(GICC_IAR) == 6 and m.c(0xE0) == 1  # Group 1's active priority: GICC_NSAPR0


def test_group_0_is_signalled_as_fiq_with_fiqen():
    m = Machine()
    m.c(GICC_CTLR, 1 | 1 << 3)
    m.sgi(2)
    assert m.gic.signal(0) == "FIQ" and not m.gic.irq_pending(0)


def test_nothing_is_forwarded_while_the_distributor_or_the_cpu_interface_is_off():
    m = Machine()
    m.sgi(2)
    m.d(GICD_CTLR, 0)
    assert m.gic.signal(0) is None and m.c(GICC_IAR) == SPURIOUS
    m.d(GICD_CTLR, 1)
    m.c(GICC_CTLR, 0)
    assert m.gic.signal(0) is None and m.c(GICC_IAR) == SPURIOUS


def test_odd_accesses_never_raise():
    m = Machine(2)
    for offset in range(0, 0x1000, 4):
        for size in (1, 2, 4):
            m.d(offset, 0xFFFF_FFFF, size=size)
            m.d(offset, size=size)
    for offset in list(range(0, 0x100, 4)) + [0x1000, 0x1FFC]:
        m.views[1][1].write(offset, 1, 0xFF)
        m.views[1][1].read(offset, 2)
        m.c(offset, 0xFFFF_FFFF, cpu=1)
        m.c(offset, cpu=1)


# --- the state machine against a reference model ----------------------------------------------------------


class Reference:
    """The architecture's rules for one CPU, Group 0, GICC_BPR = 0 (group priority = bits [7:1]),
    written from IHI 0048B, for edge interrupts (SGIs and edge PPIs) and level ones (PPIs)."""

    def __init__(self, levels: set[int]):
        self.levels = levels  # level-sensitive INTIDs; the rest are edge
        self.priority: dict[int, int] = {}
        self.enabled: set[int] = set(range(16))
        self.latched: set[int] = set()
        self.line: set[int] = set()
        self.active: set[int] = set()
        self.running: list[int] = []  # group priorities of the interrupts acknowledged, not yet EOId
        self.pmr = 0xFF

    def pending(self, i: int) -> bool:
        return i in self.latched or (i in self.levels and i in self.line)

    def running_priority(self) -> int:
        return min(self.running, default=0x100)

    def best(self) -> int | None:
        """The most urgent pending, enabled, inactive interrupt that passes the priority mask."""
        ready = [(self.priority.get(i, 0), i) for i in range(32)
                 if self.pending(i) and i in self.enabled and i not in self.active]
        if not ready or min(ready)[0] >= self.pmr:
            return None
        return min(ready)[1]

    def iar(self) -> int:
        i = self.best()
        if i is None or self.priority.get(i, 0) & 0xFE >= self.running_priority():
            return SPURIOUS
        self.latched.discard(i)
        self.active.add(i)
        self.running.append(self.priority.get(i, 0) & 0xFE)
        return i

    def eoir(self, i: int) -> None:
        if i >= 1020 or not self.running:
            return
        self.running.remove(min(self.running))
        self.active.discard(i)


INTIDS = st.sampled_from([1, 2, 3, 20, 21, 27, 30])  # SGIs and PPIs
LEVEL = {27, 30}  # the timers' PPIs, level-sensitive; 20 and 21 configured edge
OPERATION = st.one_of(
    st.tuples(st.just("priority"), INTIDS, st.sampled_from([0x00, 0x40, 0x41, 0x80, 0xA0, 0xFE, 0xFF])),
    st.tuples(st.just("enable"), INTIDS, st.booleans()),
    st.tuples(st.just("assert"), INTIDS, st.booleans()),
    st.tuples(st.just("iar"), st.just(0), st.just(0)),
    st.tuples(st.just("eoi"), st.just(0), st.just(0)),
    st.tuples(st.just("eoi_other"), INTIDS, st.just(0)),
    st.tuples(st.just("pmr"), st.just(0), st.sampled_from([0x00, 0x41, 0x80, 0xA1, 0xFF])),
    st.tuples(st.just("clear"), INTIDS, st.just(0)),
)


@settings(max_examples=300)
@given(st.lists(OPERATION, max_size=40))
def test_pending_active_transitions_masking_and_priorities_follow_the_architecture(operations):
    m, ref = Machine(), Reference(LEVEL)
    m.d(GICD_ICFGR + 4, 2 << 2 * (20 - 16) | 2 << 2 * (21 - 16))
    acknowledged: list[int] = []
    for kind, intid, arg in operations:
        if kind == "priority":
            m.priority(intid, arg)
            ref.priority[intid] = arg
        elif kind == "enable":
            m.d((GICD_ISENABLER if arg else GICD_ICENABLER), 1 << intid)
            if intid >= 16:
                (ref.enabled.add if arg else ref.enabled.discard)(intid)
        elif kind == "assert" and intid < 16:
            m.sgi(intid)
            ref.latched.add(intid)
        elif kind == "assert":
            m.gic.set_ppi(0, intid, arg)
            if arg and intid not in ref.line and intid not in LEVEL:
                ref.latched.add(intid)  # a rising edge
            (ref.line.add if arg else ref.line.discard)(intid)
        elif kind == "clear" and intid >= 16:
            m.d(GICD_ICPENDR, 1 << intid)
            ref.latched.discard(intid)
        elif kind == "iar":
            got, want = m.c(GICC_IAR), ref.iar()
            assert got == want
            if got != SPURIOUS:
                acknowledged.append(got)
        elif kind == "eoi" and acknowledged:
            done = acknowledged.pop()  # handlers complete innermost first
            m.c(GICC_EOIR, done)
            ref.eoir(done)
        elif kind == "eoi_other":
            m.c(GICC_EOIR, intid)  # a buggy handler: completes what it did not acknowledge
            ref.eoir(intid)
            acknowledged = [a for a in acknowledged if a != intid]
        elif kind == "pmr":
            m.c(GICC_PMR, arg)
            ref.pmr = arg
        # after every step, the visible state agrees
        assert m.c(GICC_RPR) == min(ref.running_priority(), 0xFF)
        assert m.d(GICD_ISPENDR) == sum(1 << i for i in range(32) if ref.pending(i) or i in ref.latched)
        assert m.d(GICD_ISACTIVER) == sum(1 << i for i in ref.active)
        best = ref.best()
        signalled = best is not None and ref.priority.get(best, 0) & 0xFE < ref.running_priority()
        assert (m.gic.signal(0) == "IRQ") == signalled
        assert m.c(GICC_HPPIR) == (SPURIOUS if best is None else best)


@settings(max_examples=200)
@given(st.dictionaries(st.integers(0, 31), st.integers(0, 255), max_size=12),
       st.sets(st.integers(0, 31)), st.sets(st.integers(16, 31)), st.integers(0, 255))
def test_iar_returns_the_most_urgent_pending_enabled_interrupt_or_1023(priorities, pending, disabled, pmr):
    m = Machine()
    m.c(GICC_PMR, pmr)
    for intid, value in priorities.items():
        m.priority(intid, value)
    for intid in range(16, 32):
        m.d(GICD_ISENABLER if intid not in disabled else GICD_ICENABLER, 1 << intid)
    for intid in pending:
        if intid < 16:
            m.sgi(intid)
        else:
            m.d(GICD_ISPENDR, 1 << intid)
    ready = sorted((priorities.get(i, 0), i) for i in pending if i not in disabled)
    want = ready[0][1] if ready and ready[0][0] < pmr else SPURIOUS
    assert m.c(GICC_IAR) == want


@settings(max_examples=100)
@given(st.lists(st.tuples(st.integers(0, 15), st.integers(0, 3), st.integers(0, 3), st.integers(0, 255)), max_size=20))
def test_sgis_reach_exactly_the_cpus_that_exist_among_their_targets(sends):
    cpus = 3
    m = Machine(cpus)
    expected = [set() for _ in range(cpus)]
    for sgi, sender, how, targets in sends:
        sender %= cpus
        m.sgi(sgi, cpu=sender, filter=how << 24, targets=targets)
        reached = {0: targets, 1: ~(1 << sender), 2: 1 << sender, 3: 0xFF}[how]  # 3 is reserved: all (as QEMU)
        for cpu in range(cpus):
            if reached >> cpu & 1:
                expected[cpu].add((sgi, sender))
    for cpu in range(cpus):
        got = {(sgi, src) for sgi in range(16) for src in range(8)
               if m.d(0xF20 + sgi, size=1, cpu=cpu) >> src & 1}
        assert got == expected[cpu]
