"""Translation: descriptors, walks against a plain dictionary model, nested reference counts, faults, the TLB."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlab.mmu.descriptors import Invalid, Leaf, Reserved, Table, decode
from vlab.mmu.memory import BufferMemory
from vlab.mmu.tables import PAGE, FrameAllocator, TableBuilder
from vlab.mmu.tlb import TLB, Entry
from vlab.mmu.walk import Access, FaultKind, Regime, nested_walk, walk

MEMORY_SIZE = 0x200_0000


def fresh(seed: int | None = None):
    memory = BufferMemory(0, MEMORY_SIZE)
    return memory, FrameAllocator(0, MEMORY_SIZE, seed)


# --- descriptors ----------------------------------------------------------------------------------

@given(st.integers(0, 2**64 - 1), st.integers(0, 3), st.sampled_from([1, 2]))
def test_decode_then_encode_gives_back_the_fields_that_matter(value, level, stage):
    descriptor = decode(value, level, stage)
    if isinstance(descriptor, (Table, Leaf)):
        again = decode(descriptor.encode(), level, stage)
        assert again == descriptor


def test_descriptor_bits_are_those_of_the_manual():
    # Stage 2, level 3 page: valid+page 0b11, MemAttr 0b1111 in [5:2], S2AP read|write in [7:6], AF bit 10, XN 54.
    leaf = Leaf(0x1234_5000, 3, stage=2, attr=0b1111, ap=0b11, sh=3, af=True, xn=True)
    assert leaf.encode() == 0x1234_5000 | 0b11 | 0b1111 << 2 | 0b11 << 6 | 3 << 8 | 1 << 10 | 1 << 54
    # Stage 1, level 2 block: 0b01, AttrIndx 1, AP 0b10 (read-only EL1), nG, PXN.
    block = Leaf(0x4020_0000, 2, stage=1, attr=1, ap=0b10, sh=0, ng=True, pxn=True)
    assert block.encode() == 0x4020_0000 | 0b01 | 1 << 2 | 0b10 << 6 | 1 << 10 | 1 << 11 | 1 << 53
    assert decode(0x4001_1003, 1, 1) == Table(0x4001_1000)


@pytest.mark.parametrize("value, level, expected", [
    (0x0, 2, Invalid), (0x1000_0001, 3, Reserved), (0x4000_0001, 0, Reserved), (0x4000_0003, 3, Leaf),
])
def test_invalid_and_reserved_encodings(value, level, expected):
    assert isinstance(decode(value, level, 1), expected)


def test_a_leaf_must_be_aligned_to_what_it_maps():
    with pytest.raises(ValueError, match="not aligned"):
        Leaf(0x4000_1000, 2).encode()


# --- walks against a dictionary ---------------------------------------------------------------------

pages = st.dictionaries(st.integers(0, 2**27 - 1).map(lambda p: p * PAGE), st.integers(0, 0x1FF).map(lambda f: f * PAGE),
                        max_size=24)


@settings(max_examples=60, deadline=None)
@given(pages, st.integers(16, 39), st.integers(0, 2**64 - 1))
def test_stage1_walk_agrees_with_a_dictionary(mapping, t0sz, probe):
    memory, frames = fresh()
    regime = Regime.stage1(t0sz)
    mapping = {va: pa for va, pa in mapping.items() if va < 1 << regime.input_bits}
    tables = TableBuilder(memory, regime, frames)
    for va, pa in mapping.items():
        tables.map(va, pa, PAGE)
    for va in [*mapping, probe & ((1 << regime.input_bits) - 1) & ~0xFFF]:
        offset = probe & 0xFFF
        t = walk(memory, regime, tables.root, va + offset)
        assert t.output == (mapping[va] + offset if va in mapping else None)
        assert len(t.references) <= regime.levels
        if va not in mapping:
            assert t.fault.kind is FaultKind.TRANSLATION and t.fault.stage == 1


@settings(max_examples=40, deadline=None)
@given(pages, st.integers(16, 39), st.integers(0, 2**64 - 1))
def test_an_upper_half_walk_agrees_with_a_dictionary_of_addresses_whose_top_bits_are_ones(mapping, t1sz, probe):
    memory, frames = fresh()
    regime = Regime.stage1(t1sz, upper=True)
    top = (2**64 - 1) ^ ((1 << regime.input_bits) - 1)
    mapping = {top | va: pa for va, pa in mapping.items() if va < 1 << regime.input_bits}
    tables = TableBuilder(memory, regime, frames)
    for va, pa in mapping.items():
        tables.map(va, pa, PAGE)
    for va in [*mapping, top | probe & ~0xFFF]:
        t = walk(memory, regime, tables.root, va + (probe & 0xFFF))
        assert t.output == (mapping[va] + (probe & 0xFFF) if va in mapping else None)
        if va not in mapping:
            assert t.fault.kind is FaultKind.TRANSLATION and t.fault.stage == 1
    # The same low bits without the ones above are outside the upper half: a level-0 fault, no lookup
    for va in mapping:
        t = walk(memory, regime, tables.root, va & ~top)
        assert (t.fault.kind, t.fault.level, t.references) == (FaultKind.TRANSLATION, 0, ())


def test_tcr_el1_configures_the_upper_half_from_its_own_fields():
    tcr = 25 | 1 << 7 | 30 << 16 | 0b10 << 30 | 2 << 32  # T0SZ 25, EPD0; T1SZ 30, TG1 4 KB; IPS 40 bits
    lower, upper = Regime.from_tcr(tcr), Regime.from_tcr(tcr, upper=True)
    assert (lower.input_bits, lower.enabled, lower.upper) == (39, False, False)
    assert (upper.input_bits, upper.enabled, upper.upper, upper.output_bits) == (34, True, True, 40)
    assert not Regime.from_tcr(tcr | 1 << 23, upper=True).enabled  # EPD1
    memory, _ = fresh()
    assert "EPD1" in walk(memory, Regime.from_tcr(tcr | 1 << 23, upper=True), 0x1000, 2**64 - 4096).fault.why
    for tg1 in (0b01, 0b11):  # 16 KB, 64 KB: refused, as TG0's are
        with pytest.raises(ValueError, match="TG1"):
            Regime.from_tcr(tcr & ~(3 << 30) | tg1 << 30, upper=True)


@settings(max_examples=40, deadline=None)
@given(pages, st.sampled_from([(24, 1), (25, 1), (21, 1), (30, 0), (28, 1), (16, 2), (40, 3)]))
def test_stage2_walk_with_concatenated_tables_agrees_with_a_dictionary(mapping, vtcr):
    memory, frames = fresh()
    regime = Regime.stage2(*vtcr)
    mapping = {ipa: pa for ipa, pa in mapping.items() if ipa < 1 << regime.input_bits}
    tables = TableBuilder(memory, regime, frames)
    for ipa, pa in mapping.items():
        tables.map(ipa, pa, PAGE, ap=3)
    for ipa, pa in mapping.items():
        assert walk(memory, regime, tables.root, ipa | 0x123).output == pa | 0x123


def test_sl0_and_t0sz_give_the_manuals_starting_level_and_concatenation():
    # 4 KB granule: SL0 = 0/1/2 start at level 2/1/0; a 40-bit IPA from level 1 needs 2 tables.
    assert (Regime.stage2(24, 1).start_level, Regime.stage2(24, 1).concatenated) == (1, 2)
    assert (Regime.stage2(25, 1).start_level, Regime.stage2(25, 1).concatenated) == (1, 1)
    assert (Regime.stage2(16, 2).start_level, Regime.stage2(16, 2).concatenated) == (0, 1)
    assert Regime.stage1(25).start_level == 1 and Regime.stage1(16).start_level == 0
    assert Regime.stage1(34).start_level == 2
    assert Regime.stage2(21, 1).concatenated == 16 and Regime.stage2(28, 1).concatenated == 1
    with pytest.raises(ValueError):
        Regime.stage2(16, 0)  # would need 512 concatenated tables
    with pytest.raises(ValueError):
        Regime.stage2(36, 1)  # a 28-bit IPA cannot start at level 1 (bits [38:30])


# --- the nested walk ------------------------------------------------------------------------------

# T0SZ giving a 1, 2, 3 or 4 level stage-1 walk (1 level needs FEAT_TTST's small tables)
S1_T0SZ = {1: 44, 2: 34, 3: 25, 4: 16}
# (T0SZ, SL0) for 1..4 stage-2 levels: SL0 = 3 starts at level 3 (FEAT_TTST), 0 at 2, 1 at 1, 2 at 0
S2_VTCR = {1: (40, 3), 2: (30, 0), 3: (25, 1), 4: (16, 2)}


def nested_setup(n: int, m: int, seed: int = 3):
    memory, frames = fresh(seed)
    s1, s2 = Regime.stage1(S1_T0SZ[n]), Regime.stage2(*S2_VTCR[m])
    stage2 = TableBuilder(memory, s2, frames)
    ipa_frames = FrameAllocator(0x10_0000, 0x40_0000)  # the guest's "physical" pages

    class GuestPhysical:  # the guest builds its tables in IPA space; stage 2 says where that is
        def contains(self, address, length=8):
            return True

        def read64(self, ipa):
            return memory.read64(_backed(ipa))

        def write64(self, ipa, value):
            memory.write64(_backed(ipa), value)

    def _backed(ipa):
        page = ipa & ~0xFFF
        if stage2.page(page) is None:
            stage2.map(page, frames.allocate(), PAGE, ap=3)
        return walk(memory, s2, stage2.root, ipa).output

    stage1 = TableBuilder(GuestPhysical(), s1, ipa_frames)
    data_ipa = ipa_frames.allocate()
    _backed(data_ipa)
    stage1.map(0x5000, data_ipa, PAGE)
    return memory, s1, stage1, s2, stage2, data_ipa


@pytest.mark.parametrize("m", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_a_nested_walk_makes_n_plus_1_times_m_plus_1_minus_1_references(n, m):
    memory, s1, stage1, s2, stage2, data_ipa = nested_setup(n, m)
    assert (s1.levels, s2.levels) == (n, m)  # the levels come from the configured T0SZ/SL0
    t = nested_walk(memory, s1, stage1.root, s2, stage2.root, 0x5678)
    assert t.ok, t.fault
    assert t.output == walk(memory, s2, stage2.root, data_ipa).output + 0x678
    assert len(t.references) == (n + 1) * (m + 1) - 1
    stages = [r.stage for r in t.references]
    assert stages.count(1) == n and stages[-m:] == [2] * m  # the final IPA's stage-2 walk comes last


def test_a_stage2_hole_under_a_stage1_table_is_an_s1ptw_fault():
    memory, s1, stage1, s2, stage2, _ = nested_setup(3, 3)
    stage2.set_page(stage1.root, None)  # the hypervisor takes away the page holding the guest's L1 table
    t = nested_walk(memory, s1, stage1.root, s2, stage2.root, 0x5000)
    assert t.fault.stage == 2 and t.fault.s1ptw and t.fault.kind is FaultKind.TRANSLATION
    assert t.fault.ipa == stage1.root and t.fault.level == 3


@pytest.mark.parametrize("leaf, access, el0, kind", [
    (dict(af=False), Access.READ, False, FaultKind.ACCESS_FLAG),
    (dict(ap=0b10), Access.WRITE, False, FaultKind.PERMISSION),
    (dict(ap=0b00), Access.READ, True, FaultKind.PERMISSION),
    (dict(pxn=True), Access.FETCH, False, FaultKind.PERMISSION),
    (dict(ap=0b11), Access.READ, True, None),
])
def test_stage1_faults_are_typed_with_their_level(leaf, access, el0, kind):
    memory, frames = fresh()
    regime = Regime.stage1(25)
    tables = TableBuilder(memory, regime, frames)
    tables.map(0x7000, 0x9000, PAGE, **leaf)
    t = walk(memory, regime, tables.root, 0x7008, access, el0)
    assert (t.fault.kind if t.fault else None) is kind
    if kind is not None:
        assert t.fault.level == 3 and t.fault.fsc == int(kind) + 3


def test_stage2_write_protection_is_a_permission_fault_with_the_ipa():
    memory, frames = fresh()
    regime = Regime.stage2(24, 1)
    tables = TableBuilder(memory, regime, frames)
    tables.map(0x4000_0000, 0x8000, PAGE, ap=0b01)  # S2AP: read only
    assert walk(memory, regime, tables.root, 0x4000_0010, Access.READ).ok
    t = walk(memory, regime, tables.root, 0x4000_0010, Access.WRITE)
    assert t.fault.kind is FaultKind.PERMISSION and t.fault.ipa == 0x4000_0010 and t.fault.stage == 2


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=512, max_size=512), st.integers(0, 2**39 - 1))
def test_tables_of_random_words_always_give_a_translation_or_an_architectural_fault(words, va):
    memory = BufferMemory(0, 0x1000)
    for i, value in enumerate(words):
        memory.write64(8 * i, value)  # every descriptor random: reserved encodings, loops, wild addresses
    t = walk(memory, Regime.stage1(25), 0, va)
    assert t.ok or t.fault.kind in FaultKind
    assert len(t.references) <= 3


def test_faults_before_the_first_lookup_are_reported_at_level_0():
    memory, frames = fresh()
    regime = Regime.stage1(25)
    t = walk(memory, regime, 0x1000, 1 << regime.input_bits)
    assert (t.fault.kind, t.fault.level, t.references) == (FaultKind.TRANSLATION, 0, ())
    t = walk(memory, regime, 1 << regime.output_bits, 0)  # a base register beyond the output size
    assert (t.fault.kind, t.fault.level) == (FaultKind.ADDRESS_SIZE, 0)
    disabled = Regime.from_tcr(25 | 1 << 7)  # EPD0
    assert (walk(memory, disabled, 0x1000, 0).fault.level, disabled.enabled) == (0, False)


@given(st.integers(16, 48), st.integers(0, 0xFFF))
def test_the_base_registers_bits_below_the_start_tables_size_are_ignored(t0sz, low):
    memory, frames = fresh()
    regime = Regime.stage1(t0sz)
    tables = TableBuilder(memory, regime, frames)
    tables.map(0x5000, 0x9000, PAGE)
    ignored = low & (regime.start_table_bytes - 1)
    assert walk(memory, regime, tables.root | ignored, 0x5000).output == 0x9000
    assert regime.start_table_bytes == 8 * 2 ** (regime.input_bits - 12 - 9 * (regime.levels - 1))


def test_a_small_start_table_needs_only_its_own_alignment():
    memory = BufferMemory(0, 0x10000)
    regime = Regime.stage1(32)  # 32-bit VAs from level 1: a start table of 4 entries, 32 bytes
    root = 0x1020
    memory.write64(root + 8 * 1, Table(0x2000).encode())  # VA bits [31:30] = 1
    memory.write64(0x2000, Table(0x3000).encode())
    memory.write64(0x3000 + 8 * 5, Leaf(0x7000, 3).encode())
    assert walk(memory, regime, root, 0x4000_5abc).output == 0x7abc


def test_oversized_outputs_are_address_size_faults_at_the_leafs_level():
    memory, frames = fresh()
    regime = Regime.from_tcr(25 | 2 << 32)  # IPS = 0b010: 40-bit output
    tables = TableBuilder(memory, regime, frames)
    tables.set_page(0x3000, Leaf(1 << 45, 3))
    t = walk(memory, regime, tables.root, 0x3000)
    assert (t.fault.kind, t.fault.level) == (FaultKind.ADDRESS_SIZE, 3) and "output range" in str(t.fault)
    assert walk(memory, Regime.from_tcr(25 | 5 << 32), tables.root, 0x3000).output == 1 << 45  # 48-bit IPS


def test_a_table_that_points_at_itself_is_a_recursive_mapping_not_a_hang():
    # The architecture has no "loop" fault: a walk makes at most one lookup per level, so a table
    # naming itself as the next level just maps its own page (the recursive page-table trick).
    memory = BufferMemory(0, 0x10000)
    regime = Regime.stage1(25)
    va = (1 << 30) | (1 << 21) | (1 << 12) | 0x18  # indices 1, 1, 1
    memory.write64(0x1000 + 8 * 1, Table(0x1000).encode())  # L1[1] -> the L1 table itself
    t = walk(memory, regime, 0x1000, va)
    # read as a page at level 3, the table descriptor has AF (bit 10) clear
    assert (t.fault.kind, t.fault.level, len(t.references)) == (FaultKind.ACCESS_FLAG, 3, regime.levels)
    memory.write64(0x1000 + 8 * 1, Table(0x1000).encode() | 1 << 10)  # AF: ignored in a table descriptor
    t = walk(memory, regime, 0x1000, va)
    assert t.output == 0x1018 and len(t.references) == regime.levels
    assert {r.address for r in t.references} == {0x1008}


# --- the TLB model ---------------------------------------------------------------------------------

def test_tlb_entries_are_tagged_by_vmid_and_asid_and_flushed_by_tlbi():
    tlb = TLB(capacity=8)
    tlb.insert(1, 5, 0x1000, Entry(0xA, 0x40, 7, 7, global_=False))
    tlb.insert(2, 5, 0x1000, Entry(0xB, 0x41, 7, 7, global_=False))
    tlb.insert(1, 0, 0x2000, Entry(0xC, 0x42, 7, 3, global_=True))
    assert tlb.lookup(1, 5, 0x1abc).pa_page == 0xA and tlb.lookup(2, 5, 0x1000).pa_page == 0xB
    assert tlb.lookup(1, 6, 0x1000) is None and tlb.lookup(1, 6, 0x2000).pa_page == 0xC  # global
    assert tlb.aside1(1, 5) == 1 and tlb.lookup(1, 5, 0x1000) is None
    assert tlb.ipas2e1(2, 0x41 << 12) == 1
    assert tlb.vmalle1(1) == 1 and len(tlb) == 0
    assert (tlb.hits, tlb.misses) == (3, 2)  # five lookups above: three found, two not


@given(st.lists(st.integers(0, 40), min_size=1, max_size=200), st.integers(1, 16))
def test_tlb_never_holds_more_than_its_capacity_and_keeps_the_most_recent(pages_touched, capacity):
    tlb = TLB(capacity)
    for page in pages_touched:
        if tlb.lookup(1, 1, page << 12) is None:
            tlb.insert(1, 1, page << 12, Entry(page, page, 7, 7, False))
    assert len(tlb) <= capacity
    assert tlb.lookup(1, 1, pages_touched[-1] << 12) is not None


entries = st.lists(st.tuples(st.integers(1, 3), st.integers(0, 3), st.integers(0, 7), st.integers(0, 7),
                             st.booleans()), max_size=30)  # (vmid, asid, va page, ipa page, global)
FLUSHES = {  # operation -> (its arguments, which (vmid, asid, page, ipa page, global) entries it removes)
    "vmalle1": (lambda v, a, p: (v,), lambda e, v, a, p: e[0] == v),
    "vae1": (lambda v, a, p: (v, a, p << 12), lambda e, v, a, p: e[0] == v and e[2] == p and (e[4] or e[1] == a)),
    "vaae1": (lambda v, a, p: (v, p << 12), lambda e, v, a, p: e[0] == v and e[2] == p),
    "aside1": (lambda v, a, p: (v, a), lambda e, v, a, p: e[0] == v and e[1] == a and not e[4]),
    "ipas2e1": (lambda v, a, p: (v, p << 12), lambda e, v, a, p: e[0] == v and e[3] == p),
    "alle1": (lambda v, a, p: (), lambda e, v, a, p: True),
}


@given(entries, st.sampled_from(sorted(FLUSHES)), st.integers(1, 3), st.integers(0, 3), st.integers(0, 7))
def test_each_tlbi_removes_exactly_the_entries_it_names(inserted, operation, vmid, asid, page):
    tlb = TLB(capacity=64)
    kept = {}
    for v, a, p, ipa, global_ in inserted:
        tlb.insert(v, a, p << 12, Entry(p, ipa, 7, 7, global_))
        kept[(v, None if global_ else a, p)] = (v, a, p, ipa, global_)  # a later insert replaces the slot
    arguments, removes = FLUSHES[operation]
    doomed = [e for e in kept.values() if removes(e, vmid, asid, page)]
    assert getattr(tlb, operation)(*arguments(vmid, asid, page)) == len(doomed)
    assert len(tlb) == len(kept) - len(doomed)
    for v, a, p, ipa, global_ in kept.values():
        if (v, a, p, ipa, global_) not in doomed:  # still there (a global one: found from an unused ASID)
            assert tlb.lookup(v, 99 if global_ else a, p << 12).ipa_page == ipa


blocks = st.lists(st.tuples(st.integers(1, 2), st.integers(0, 3), st.integers(0, 1 << 12), st.sampled_from([12, 21, 30]),
                            st.booleans()), max_size=30)  # (vmid, asid, va page, log2 of its leaf's size, global)


@given(blocks, st.sampled_from(["vae1", "vaae1"]), st.integers(0, 3), st.integers(0, 1 << 12))
def test_a_tlbi_by_va_in_a_block_removes_every_page_of_that_block(inserted, operation, asid, page):
    # An entry is one 4 KB page, even of a 2 MiB or 1 GiB block; the TLBI must remove the block's entry
    # whole, as hardware keeps one: every page of that block, whichever page the TLBI names.
    tlb = TLB(capacity=64)
    for v, a, p, shift, global_ in inserted:
        tlb.insert(v, a, p << 12, Entry(p, p, 7, 7, global_), shift)
    va = page << 12
    getattr(tlb, operation)(*((1, asid, va) if operation == "vae1" else (1, va)))
    for v, a, p, shift, global_ in inserted:
        same_block = (p << 12) >> shift == va >> shift
        seen = tlb.lookup(v, a, p << 12)
        if v == 1 and same_block and (operation == "vaae1" or global_ or a == asid):
            assert seen is None, f"page {p:#x} of the {1 << shift:#x}-byte block of VA {va:#x} is still cached"
        if v == 2:  # another VM's entries are never touched
            assert seen is not None
