"""Faults as the architecture reports them: permissions of both stages, the syndrome and HPFAR, the nested walk."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machines import RECORDING_VECTORS, run_on
from vlab.guests.mmu import MMU_ON
from vlab.mmu.descriptors import Leaf, Table
from vlab.mmu.faults import Access, Fault, FaultKind
from vlab.mmu.memory import BufferMemory
from vlab.mmu.tables import PAGE, FrameAllocator, TableBuilder
from vlab.mmu.walk import Regime, nested_walk, permission_problem, walk

# Stage 1, AP[2:1] x (EL1, EL0) x access -> allowed? Written out from the manual's table
# (Arm ARM, AArch64.CheckPermission, no PAN/WXN), not computed.
S1_ALLOWED = {
    # ap: (EL1 read, EL1 write, EL0 read, EL0 write)
    0b00: (True, True, False, False),
    0b01: (True, True, True, True),
    0b10: (True, False, False, False),
    0b11: (True, False, True, False),
}


@given(st.integers(0, 3), st.booleans(), st.booleans())
def test_stage1_data_permissions_follow_the_ap_table(ap, el0, write):
    leaf = Leaf(0x1000, 3, ap=ap)
    allowed = S1_ALLOWED[ap][2 * el0 + write]
    assert (permission_problem(leaf, Access.WRITE if write else Access.READ, el0) == "") == allowed


@given(st.integers(0, 3), st.booleans(), st.booleans())
def test_stage1_execution_needs_only_the_xn_bits_and_el1_never_runs_el0_writable_pages(ap, uxn, pxn):
    leaf = Leaf(0x1000, 3, ap=ap, xn=uxn, pxn=pxn)
    assert (permission_problem(leaf, Access.FETCH, el0=True) == "") == (not uxn)  # execute-only is allowed
    assert (permission_problem(leaf, Access.FETCH, el0=False) == "") == (not pxn and ap != 0b01)


@given(st.integers(0, 3), st.booleans(), st.sampled_from(list(Access)))
def test_stage2_reads_and_writes_follow_s2ap_and_fetches_only_xn(s2ap, xn, access):
    leaf = Leaf(0x1000, 3, stage=2, ap=s2ap, xn=xn)
    expected = {Access.READ: s2ap & 1, Access.WRITE: s2ap & 2, Access.FETCH: not xn}[access]
    assert (permission_problem(leaf, access, el0=False) == "") == bool(expected)


def test_table_descriptors_limit_everything_below_them_at_stage_1():
    memory = BufferMemory(0, 0x10000)
    regime = Regime.stage1(25)
    memory.write64(0x1000, Table(0x2000, ap_table=0b10, xn_table=True).encode())  # read-only, no EL0 execution
    memory.write64(0x2000, Table(0x3000, ap_table=0b01).encode())  # and no EL0 access at all
    memory.write64(0x3000, Leaf(0x7000, 3, ap=0b01).encode())  # the page itself: RW at EL0 and EL1
    assert walk(memory, regime, 0x1000, 0, Access.READ).ok
    assert walk(memory, regime, 0x1000, 0, Access.WRITE).fault.kind is FaultKind.PERMISSION
    assert walk(memory, regime, 0x1000, 0, Access.READ, el0=True).fault.kind is FaultKind.PERMISSION
    t = walk(memory, regime, 0x1000, 0, Access.READ)
    assert t.leaf.ap == 0b10 and t.leaf.xn  # the effective permissions, as a TLB would cache them


@given(st.sampled_from(list(FaultKind)), st.integers(0, 3), st.sampled_from([1, 2]), st.booleans(),
       st.integers(0, 2**48 - 1), st.sampled_from(list(Access)))
def test_the_syndrome_and_hpfar_carry_the_fault_as_the_hypervisor_reads_them(kind, level, stage, s1ptw, ipa, access):
    fault = Fault(kind, stage, level, ipa, "test", s1ptw=s1ptw and stage == 2, ipa=ipa if stage == 2 else None)
    iss = fault.iss(access)
    assert iss & 0x3F == fault.fsc and fault.fsc >> 2 == int(kind) >> 2 and fault.fsc & 3 == level
    assert iss >> 7 & 1 == int(fault.s1ptw)
    assert iss >> 6 & 1 == int(access is Access.WRITE)  # the instruction's direction, even on a table walk
    if stage == 2:
        assert fault.hpfar >> 4 == ipa >> 12 and fault.hpfar & 0xF == 0 and fault.hpfar >> 44 == 0
    else:
        assert fault.hpfar is None


@pytest.mark.parametrize("name, fsc", [("TRANSLATION", 0b000100), ("ACCESS_FLAG", 0b001000),
                                       ("PERMISSION", 0b001100), ("ADDRESS_SIZE", 0b000000),
                                       ("EXTERNAL_ON_WALK", 0b010100)])
def test_level_0_fault_status_codes_are_the_manuals(name, fsc):
    assert FaultKind[name] == fsc


# --- the nested walk against two dictionaries -------------------------------------------------------

guest_pages = st.dictionaries(st.integers(0, 2**27 - 1).map(lambda p: p * PAGE),
                              st.integers(0x100, 0x1FF).map(lambda p: p * PAGE), max_size=12)


@settings(max_examples=40, deadline=None)
@given(guest_pages, st.sets(st.integers(0x100, 0x1FF).map(lambda p: p * PAGE)), st.integers(0, 2**39 - 1),
       st.integers(0, 2**16))
def test_a_nested_walk_is_stage2_of_stage1_or_the_first_stage_that_misses(s1, backed, probe, seed):
    """s1: guest VA page -> IPA page; `backed`: the IPA pages stage 2 gives a host frame."""
    host = BufferMemory(0, 0x100_0000)
    frames = FrameAllocator(0x10_0000, 0xE0_0000, seed)  # host frames of the guest's pages
    s2_regime, s1_regime = Regime.stage2(24, 1), Regime.stage1(25)
    stage2 = TableBuilder(host, s2_regime, FrameAllocator(0xF0_0000, 0x10_0000))
    s2 = {}  # IPA page -> host frame

    def back(ipa_page):
        if ipa_page not in s2:
            s2[ipa_page] = frames.allocate()
            stage2.map(ipa_page, s2[ipa_page], PAGE, ap=3)
        return s2[ipa_page]

    class GuestPhysical:  # the guest writes its tables at IPAs 0x1000.. , which stage 2 always backs
        def contains(self, address, length=8):
            return True

        def read64(self, ipa):
            return host.read64(back(ipa & ~0xFFF) | ipa & 0xFFF)

        def write64(self, ipa, value):
            host.write64(back(ipa & ~0xFFF) | ipa & 0xFFF, value)

    stage1 = TableBuilder(GuestPhysical(), s1_regime, FrameAllocator(0x1000, 0xFF000))
    for va, ipa in s1.items():
        stage1.map(va, ipa, PAGE)
    for ipa in backed:
        back(ipa)
    table_pages = {t & ~0xFFF for t in stage1.tables}
    for va in [*s1, probe & ~0xFFF]:
        t = nested_walk(host, s1_regime, stage1.root, s2_regime, stage2.root, va | probe & 0xFFF)
        if va not in s1:
            assert (t.fault.stage, t.fault.kind, t.fault.s1ptw) == (1, FaultKind.TRANSLATION, False)
        elif s1[va] not in s2:
            assert (t.fault.stage, t.fault.kind, t.fault.s1ptw) == (2, FaultKind.TRANSLATION, False)
            assert t.fault.ipa == s1[va] | probe & 0xFFF and t.fault.hpfar == s1[va] >> 12 << 4
        else:
            assert t.output == s2[s1[va]] | probe & 0xFFF
            assert [r.stage for r in t.references].count(1) == s1_regime.levels
        # stage-1 descriptors are read where stage 2 put the tables, never at their IPAs
        assert all(r.address & ~0xFFF not in table_pages for r in t.references)


# --- the guest's own faults, on the board (QEMU's walk) and in VMs (vlab's) ---------------------------

# The kernel's tables (T0SZ 25, from level 1): L1[1] maps RAM (1 GiB block), L1[2] -> an L2 table whose
# [0] -> an L3 table: [0] the kernel's page (valid, AP[2:1] = 0b00: EL1 only), [1] invalid, [2] a page with AF = 0, [3] read-only.
# L1[3] and L2[1] are invalid. Each case touches one address and the vector records ESR and FAR.
KERNEL_TABLES = """    adr     x0, vectors
    msr     vbar_el1, x0
    ldr     x1, =0x40010000
    ldr     x2, =0x40000701
    str     x2, [x1, #8]
    ldr     x2, =0x40011003
    str     x2, [x1, #16]
    ldr     x3, =0x40011000
    ldr     x2, =0x40012003
    str     x2, [x3]
    ldr     x3, =0x40012000
    ldr     x2, =0x40020703
    str     x2, [x3]
    ldr     x2, =0x40022303              // AF = 0
    str     x2, [x3, #16]
    ldr     x2, =0x40023783              // AP[2:1] = 0b10: read-only at EL1
    str     x2, [x3, #24]
""" + MMU_ON
GUEST_TABLES = KERNEL_TABLES + """    ldr     x9, ={address:#x}
    {access}
    b       .
""" + RECORDING_VECTORS
EC_DABT_CURRENT, WNR = 0x25, 1 << 6


@pytest.mark.parametrize("machine", ["board", None, "contiguous", "scattered", "demand"])
@pytest.mark.parametrize("address, access, dfsc", [
    (0xC000_0123, "ldr x4, [x9]", 0x05),                 # L1[3] invalid: translation fault, level 1
    (0x8020_0040, "ldp x4, x5, [x9]", 0x06),             # L2[1] invalid: level 2
    (0x8000_1008, "ldr w4, [x9]", 0x07),                 # L3[1] invalid: level 3
    (0x8000_2010, "ldrb w4, [x9]", 0x0B),                # AF = 0: access flag fault, level 3
    (0x8000_3018, "str x4, [x9]", 0x0F | WNR),           # read-only: permission fault, level 3, WnR
    (0x8000_3018, "stp x4, x5, [x9, #-8]!", 0x0F | WNR),
])
def test_a_guests_own_fault_has_the_architectural_syndrome_and_far_on_the_board_and_in_every_vm(
        machine, address, access, dfsc):
    from vlab.asm import assemble
    from vlab.machine.board import StopReason
    from vlab.machine.loader import image_from_program

    result = run_on(machine, image_from_program(assemble(GUEST_TABLES.format(address=address, access=access))))
    assert result.reason is StopReason.POWERED_OFF, result.message
    far = address - 8 if "#-8" in access else address
    assert result.registers["x20"] == (EC_DABT_CURRENT << 26) | (1 << 25) | dfsc, hex(result.registers["x20"])
    assert result.registers["x21"] == far


# The kernel reads its own page (vlab's TLB model now holds it, with EL1's permissions and EL0's),
# then drops to EL0, which reads it too: a permission fault at level 3, taken from the lower level --
# whatever the TLB model remembered from EL1's access.
EL0_AFTER_EL1 = KERNEL_TABLES + """    ldr     x9, =0x80000000
    ldr     x4, [x9]
    adr     x5, user
    msr     elr_el1, x5
    msr     spsr_el1, xzr                // EL0, SP_EL0
    eret
user:
    ldr     x6, [x9]
    b       .
    .balign 0x800
vectors:
    .balign 0x400
    b       .                            // current EL: not expected
    .balign 0x400
    mrs     x20, esr_el1                 // lower EL, synchronous
    mrs     x21, far_el1
    ldr     x0, =0x84000008
    hvc     #0
"""
EC_DABT_LOWER = 0x24


@pytest.mark.parametrize("machine", ["board", None, "contiguous", "scattered", "demand"])
def test_el0_reading_a_page_el1_just_read_faults_on_the_board_and_in_every_vm(machine):
    from vlab.asm import assemble
    from vlab.machine.board import StopReason
    from vlab.machine.loader import image_from_program

    result = run_on(machine, image_from_program(assemble(EL0_AFTER_EL1)))
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert result.registers["x20"] == (EC_DABT_LOWER << 26) | (1 << 25) | 0x0F, hex(result.registers["x20"])
    assert result.registers["x21"] == 0x8000_0000
