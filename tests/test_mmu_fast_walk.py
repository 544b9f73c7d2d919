"""The fill path's walk (vlab.mmu.fast_walk) agrees with the teaching walk (vlab.mmu.walk) everywhere.

Tables are generated: the first entries of a few pages of memory get random descriptors, biased
towards ones that point back into those pages (so walks go deep), with every attribute bit
random, and addresses index those entries at every level. For any address,
access and level, either both walks succeed with the same output address, IPA, permissions and
global bit, or the teaching walk faults and the fast one declines (returns None) -- saying where
it stopped exactly when that fault is an invalid stage-2 descriptor for the final IPA.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vlab.mmu import fast_walk
from vlab.mmu.faults import Access
from vlab.mmu.memory import BufferMemory
from vlab.mmu.tlb_fill import permissions
from vlab.mmu.walk import Regime, invalid_descriptor, nested_walk

PAGES = 12
SIZE = PAGES * 0x1000
ENTRIES = 6  # of each page, the ones generated (and the indices addresses use)
ACCESSES = {Access.READ: 1, Access.WRITE: 2, Access.FETCH: 4}


def descriptor(draw) -> int:
    kind = draw(st.sampled_from(["table", "table", "leaf", "leaf", "invalid", "any"]))
    if kind == "any":
        return draw(st.integers(0, 2**64 - 1))
    if kind == "invalid":
        return draw(st.integers(0, 2**63)) & ~1
    page = draw(st.integers(0, PAGES + 2)) << 12  # a few beyond the memory: external aborts on walks
    attributes = draw(st.integers(0, 2**64 - 1)) & (0xFFF0_0000_0000_0FFC)  # upper and lower attribute bits
    if draw(st.booleans()):
        attributes |= 1 << 10  # AF set, mostly
    return attributes | page | (0b11 if kind == "table" else draw(st.sampled_from([0b01, 0b11])))


@st.composite
def tables(draw):
    memory = BufferMemory(0, SIZE)
    for page in range(PAGES):
        for entry in range(ENTRIES):
            memory.write64(page << 12 | entry * 8, descriptor(draw))
    return memory


@st.composite
def addresses(draw):
    """Mostly an address whose index at every level is one of the generated entries; sometimes any."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.integers(0, 2**64 - 1))
    va = sum(draw(st.integers(0, ENTRIES - 1)) << shift for shift in (39, 30, 21, 12)) | draw(st.integers(0, 0xFFF))
    if draw(st.booleans()):  # an upper-half address: ones above some input size (the right one, or not)
        va |= (2**64 - 1) ^ ((1 << draw(st.sampled_from([48, 39, 31, 25]))) - 1)
    return va


STAGE1 = st.sampled_from([Regime.stage1(t0sz, upper=upper) for t0sz in (16, 25, 33, 39) for upper in (False, True)])
STAGE2 = st.sampled_from([None, Regime.stage2(24, 1), Regime.stage2(25, 1), Regime.stage2(32, 0),
                          Regime.stage2(30, 0, output_bits=32)])


@settings(max_examples=400)
@given(memory=tables(), stage1=st.one_of(st.none(), STAGE1), stage2=STAGE2,
       ttbr=st.integers(0, PAGES - 1).map(lambda p: p << 12), vttbr=st.integers(0, PAGES - 1).map(lambda p: p << 12),
       va=addresses(), access=st.sampled_from(list(ACCESSES)), el0=st.booleans())
def test_the_fast_walk_answers_exactly_what_the_teaching_walk_answers(memory, stage1, stage2, ttbr, vttbr, va,
                                                                       access, el0):
    slow = nested_walk(memory, stage1, ttbr, stage2, vttbr, va, access, el0)
    stopped: list = []
    fast = fast_walk.translate(memory, stage1, ttbr, stage2, vttbr, va, ACCESSES[access], el0, stopped=stopped)
    cache: dict = {}  # and again through a stage-2 walk cache, filled by a first walk
    cached = [fast_walk.translate(memory, stage1, ttbr, stage2, vttbr, va, ACCESSES[access], el0, cache)
              for _ in range(2)]
    assert cached == [fast, fast]
    if slow.fault is not None:
        assert fast is None, f"the teaching walk faults ({slow.fault}) but the fast walk answered {fast}"
        fault, last = slow.fault, slow.references[-1].address if slow.references else None
        final_ipa_unmapped = fault.stage == 2 and not fault.s1ptw and last is not None \
            and fault == invalid_descriptor(2, fault.level, last, fault.address)
        assert bool(stopped) == final_ipa_unmapped, (fault, stopped)
        if stopped:
            ipa, level, slot, references = stopped[0]
            assert (invalid_descriptor(2, level, slot, ipa), references) == (fault, len(slow.references))
        return
    assert stopped == []
    ipa = slow.leaves[0].output | va & (slow.leaves[0].size - 1) if stage1 is not None else va
    expected = (slow.output, permissions(slow.leaves, False), permissions(slow.leaves, True), ipa,
                stage1 is None or not slow.leaves[0].ng, len(slow.references),
                39 - 9 * slow.leaves[0].level if stage1 is not None else 12)
    assert fast == expected


def test_the_fast_walk_translates_through_both_stages():
    """A hand-built pair of tables, with the answer worked out by hand."""
    memory = BufferMemory(0, SIZE)
    stage2 = Regime.stage2(32, 0)  # starts at level 2: 4 + 9 bits there, then level 3
    memory.write64(0x0000 + 8 * 0, 0x1000 | 0b11)  # stage-2 L2[0] -> table at 0x1000
    for page in range(PAGES):
        memory.write64(0x1000 + 8 * page, page << 12 | 1 << 10 | 0b11 << 6 | 0b11)  # identity, RW, AF
    stage1 = Regime.stage1(39)  # 25 input bits: starts at level 2
    memory.write64(0x2000 + 8 * 0, 0x3000 | 0b11)  # stage-1 L2[0] -> table at 0x3000
    memory.write64(0x3000 + 8 * 5, 0x4000 | 1 << 10 | 0b01 << 6 | 0b11)  # VA page 5 -> IPA 0x4000, EL0 RW
    found = fast_walk.translate(memory, stage1, 0x2000, stage2, 0, 0x5123, 2, True)
    # two stage-1 levels, each table and the output found by a two-level stage-2 walk: 2 + 3 * 2 references
    assert found == (0x4123, 0b011, 0b111, 0x4123, True, 8, 12)
