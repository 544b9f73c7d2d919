"""Table walks: stage 1 (VA -> IPA), stage 2 (IPA -> PA), and the two-dimensional nested walk.

    input address, 4 KB granule, 4 levels:
      47     39 38     30 29     21 20     12 11          0
     | L0 index| L1 index| L2 index| L3 index| page offset |
         9 bits    9 bits    9 bits    9 bits    12 bits

A walk starts at the table the base register points to (TTBR0_EL1 for stage 1, VTTBR_EL2 for
stage 2), reads one descriptor per level and stops at a block or page. In a *nested* walk every
stage-1 table address is an IPA, so each stage-1 descriptor read needs a stage-2 walk first:
with n guest levels and m stage-2 levels, (n + 1)(m + 1) - 1 memory references per translation.
Every walk returns each reference it made, in order, so they can be counted and drawn.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable

from vlab.mmu.descriptors import LEVEL_SHIFT, Invalid, Leaf, Reserved, Table, decode
from vlab.mmu.memory import PhysicalMemory

DEFAULT_OUTPUT_BITS = 40  # QEMU virt's physical address size (1 TB)


class Access(enum.Enum):
    READ = "read"
    WRITE = "write"
    FETCH = "fetch"


class FaultKind(enum.IntEnum):
    """The fault status code for level 0; the level is added (Arm ARM: DFSC/IFSC)."""
    ADDRESS_SIZE = 0x00
    TRANSLATION = 0x04
    ACCESS_FLAG = 0x08
    PERMISSION = 0x0C


@dataclass(frozen=True)
class Regime:
    """One stage's configuration: input size (T0SZ), starting level, concatenated start tables."""

    stage: int
    t0sz: int
    start_level: int
    concatenated: int = 1
    output_bits: int = DEFAULT_OUTPUT_BITS

    @property
    def input_bits(self) -> int:
        return 64 - self.t0sz

    @property
    def levels(self) -> int:
        return 4 - self.start_level

    def index_bits(self, level: int) -> int:
        """Bits of the input address that index the table at `level` (more at a concatenated start)."""
        return self.input_bits - LEVEL_SHIFT[level] if level == self.start_level else 9

    @classmethod
    def stage1(cls, t0sz: int, output_bits: int = DEFAULT_OUTPUT_BITS) -> Regime:
        """From TCR_EL1.T0SZ: as many levels as the input size needs (16..39; up to 48 with FEAT_TTST)."""
        if not 16 <= t0sz <= 48:
            raise ValueError(f"T0SZ = {t0sz}: with 4 KB granules it must be 16..39 (48 with small tables)")
        bits = 64 - t0sz
        return cls(1, t0sz, 4 - -(-(bits - 12) // 9), 1, output_bits)

    @classmethod
    def stage2(cls, t0sz: int, sl0: int, output_bits: int = DEFAULT_OUTPUT_BITS) -> Regime:
        """From VTCR_EL2.T0SZ and SL0 (4 KB: SL0 0, 1, 2 start at level 2, 1, 0; 3 at level 3 with
        FEAT_TTST). Up to 16 tables concatenate at the start level."""
        if sl0 not in (0, 1, 2, 3):
            raise ValueError(f"VTCR_EL2.SL0 = {sl0} is reserved with 4 KB granules")
        start = {0: 2, 1: 1, 2: 0, 3: 3}[sl0]
        bits = (64 - t0sz) - LEVEL_SHIFT[start]  # input bits the start level must resolve
        if not 1 <= bits <= 9 + 4:
            raise ValueError(f"VTCR_EL2.T0SZ = {t0sz} does not fit SL0 = {sl0}: the start level would index "
                             f"{bits} bits, and the architecture allows 1 to 13 (up to 16 concatenated tables)")
        return cls(2, t0sz, start, 2 ** max(bits - 9, 0), output_bits)

    @classmethod
    def from_tcr(cls, tcr: int) -> Regime:
        return cls.stage1(tcr & 0x3F)

    @classmethod
    def from_vtcr(cls, vtcr: int) -> Regime:
        return cls.stage2(vtcr & 0x3F, (vtcr >> 6) & 3)


@dataclass(frozen=True)
class Reference:
    """One descriptor read: which stage and level it served, where it was read, what it held."""
    stage: int
    level: int
    address: int  # physical address of the descriptor
    value: int
    purpose: str  # e.g. "stage 1 L0", "stage 2 L2 for the stage-1 L1 table", "stage 2 L3 for the output"


@dataclass(frozen=True)
class Fault:
    """A translation that failed, typed as the architecture types it."""
    kind: FaultKind
    stage: int
    level: int
    address: int  # the input address of the stage that faulted (VA for stage 1, IPA for stage 2)
    why: str
    s1ptw: bool = False  # a stage-2 fault on a stage-1 table walk
    ipa: int | None = None  # for stage-2 faults: the IPA the hypervisor gets in HPFAR_EL2

    @property
    def fsc(self) -> int:
        """The fault status code, DFSC/IFSC[5:0]."""
        return int(self.kind) + self.level

    def __str__(self) -> str:
        walk = " during the stage-1 table walk" if self.s1ptw else ""
        return (f"stage-{self.stage} {self.kind.name.lower().replace('_', ' ')} fault at level {self.level}"
                f"{walk} (FSC {self.fsc:#04x}) for {self.address:#x}: {self.why}")


@dataclass(frozen=True)
class Translation:
    """The result of a walk: the output address (or the fault) and every reference made."""
    input: int
    output: int | None
    references: tuple[Reference, ...]
    fault: Fault | None = None
    leaf: Leaf | None = None  # the final stage's leaf descriptor (permissions, attributes)
    leaves: tuple[Leaf, ...] = field(default=())  # one per stage that translated

    @property
    def ok(self) -> bool:
        return self.fault is None


Fetch = Callable[[int, int, str], "tuple[int, list[Reference]] | Fault"]


def walk(memory: PhysicalMemory, regime: Regime, root: int, address: int, access: Access = Access.READ,
         el0: bool = False, fetch: Fetch | None = None) -> Translation:
    """Translate `address` through the one-stage table rooted at `root`.

    `fetch(descriptor_address, level, purpose)` reads a descriptor; by default from `memory`
    at that physical address. A nested walk passes one that translates it through stage 2 first.
    """
    stage, refs = regime.stage, []
    fetch = fetch or _direct(memory, stage)

    def fail(kind: FaultKind, level: int, why: str) -> Translation:
        return Translation(address, None, tuple(refs), Fault(kind, stage, level, address, why,
                                                             ipa=address if stage == 2 else None))

    if address >> regime.input_bits:
        return fail(FaultKind.TRANSLATION, regime.start_level,
                    f"beyond the {regime.input_bits}-bit input range (T0SZ = {regime.t0sz})")
    if root & 0xFFF:
        return fail(FaultKind.ADDRESS_SIZE, regime.start_level, f"the table base {root:#x} is not 4 KB aligned")
    table = root
    for level in range(regime.start_level, 4):
        shift = LEVEL_SHIFT[level]
        index = (address >> shift) & ((1 << regime.index_bits(level)) - 1)
        fetched = fetch(table + 8 * index, level, f"stage {stage} L{level}")
        if isinstance(fetched, Fault):
            return Translation(address, None, tuple(refs), fetched)
        value, more = fetched
        refs += more
        descriptor = decode(value, level, stage)
        if isinstance(descriptor, Invalid):
            return fail(FaultKind.TRANSLATION, level, f"the level-{level} descriptor at {table + 8 * index:#x} "
                                                      "is invalid (bit 0 clear)")
        if isinstance(descriptor, Reserved):
            return fail(FaultKind.TRANSLATION, level, descriptor.why)
        if isinstance(descriptor, Table):
            if descriptor.address >> regime.output_bits:
                return fail(FaultKind.ADDRESS_SIZE, level, f"next table {descriptor.address:#x} is beyond "
                                                           f"the {regime.output_bits}-bit output range")
            table = descriptor.address
            continue
        return _leaf(descriptor, regime, address, access, el0, refs, fail)
    raise AssertionError("unreachable: level 3 never holds a table descriptor")


def _leaf(leaf: Leaf, regime: Regime, address: int, access: Access, el0: bool, refs, fail) -> Translation:
    level = leaf.level
    if leaf.output >> regime.output_bits:
        return fail(FaultKind.ADDRESS_SIZE, level, f"output address {leaf.output:#x} is beyond the "
                                                   f"{regime.output_bits}-bit output range")
    if not leaf.af:
        return fail(FaultKind.ACCESS_FLAG, level, "the access flag (AF) is clear")
    why = permission_problem(leaf, access, el0)
    if why:
        return fail(FaultKind.PERMISSION, level, why)
    output = leaf.output | (address & (leaf.size - 1))
    return Translation(address, output, tuple(refs), None, leaf, (leaf,))


def permission_problem(leaf: Leaf, access: Access, el0: bool) -> str:
    """Why this leaf forbids the access ("" when it allows it)."""
    if leaf.stage == 2:
        if access is Access.WRITE and not leaf.writable:
            return "stage 2 does not allow writes here (S2AP[1] clear)"
        if access is not Access.WRITE and not leaf.readable:
            return "stage 2 does not allow reads here (S2AP[0] clear)"
        if access is Access.FETCH and leaf.xn:
            return "stage 2 forbids execution here (XN)"
        return ""
    if el0 and not leaf.ap & 1:
        return "EL0 may not access this page (AP[1] clear)"
    if access is Access.WRITE and leaf.ap & 2:
        return "the page is read-only (AP[2] set)"
    if access is Access.FETCH and (leaf.xn if el0 else leaf.pxn):
        return "execution is forbidden here (" + ("UXN" if el0 else "PXN") + ")"
    return ""


def _direct(memory: PhysicalMemory, stage: int) -> Fetch:
    def fetch(address: int, level: int, purpose: str):
        if not memory.contains(address):
            return Fault(FaultKind.TRANSLATION, stage, level, address,
                         f"the descriptor's address {address:#x} is not in memory (external abort on the walk)")
        value = memory.read64(address)
        return value, [Reference(stage, level, address, value, purpose)]
    return fetch


def _through_stage2(memory: PhysicalMemory, stage2: Regime | None, vttbr: int, ipa: int, what: str,
                    access: Access, el0: bool, s1ptw: bool) -> Translation:
    """The stage-2 walk of one IPA, its references labelled with what it was for."""
    if stage2 is None:
        return Translation(ipa, ipa, ())
    t = walk(memory, stage2, vttbr, ipa, access, el0)
    labelled = tuple(Reference(r.stage, r.level, r.address, r.value, f"{r.purpose} for {what}") for r in t.references)
    fault = t.fault
    if fault is not None and s1ptw:
        fault = Fault(fault.kind, 2, fault.level, ipa, f"{fault.why} (reading {what})", s1ptw=True, ipa=ipa)
    return Translation(ipa, t.output, labelled, fault, t.leaf)


def stage1_walk(memory: PhysicalMemory, stage1: Regime, ttbr: int, stage2: Regime | None, vttbr: int,
                va: int, access: Access = Access.READ, el0: bool = False) -> Translation:
    """VA -> IPA only (what AT S1E1R answers), the guest's tables read through stage 2."""
    refs: list[Reference] = []

    def fetch(descriptor_ipa: int, level: int, purpose: str):
        t = _through_stage2(memory, stage2, vttbr, descriptor_ipa, f"the stage-1 L{level} table", Access.READ,
                            el0, s1ptw=True)
        if t.fault is not None:
            refs.extend(t.references)  # what was read before the fault still counts
            return t.fault
        read = _direct(memory, 1)(t.output, level, purpose)
        return read if isinstance(read, Fault) else (read[0], [*t.references, *read[1]])

    t1 = walk(memory, stage1, ttbr, va, access, el0, fetch)
    return Translation(va, t1.output, tuple(refs) + t1.references, t1.fault, t1.leaf, t1.leaves)


def nested_walk(memory: PhysicalMemory, stage1: Regime | None, ttbr: int, stage2: Regime | None, vttbr: int,
                va: int, access: Access = Access.READ, el0: bool = False) -> Translation:
    """VA -> IPA -> PA. With stage1 None the VA is the IPA (guest MMU off); with stage2 None the IPA is the PA.

    The references come in the order the hardware makes them: before each stage-1 descriptor
    read, the stage-2 walk that finds where that stage-1 table really is; last, the stage-2
    walk of the final IPA.
    """
    refs: list[Reference] = []
    leaves: list[Leaf] = []
    ipa = va
    if stage1 is not None:
        t1 = stage1_walk(memory, stage1, ttbr, stage2, vttbr, va, access, el0)
        refs.extend(t1.references)
        if t1.fault is not None:
            return Translation(va, None, tuple(refs), t1.fault)
        ipa = t1.output
        leaves.append(t1.leaf)
    t2 = _through_stage2(memory, stage2, vttbr, ipa, "the output", access, el0, s1ptw=False)
    refs.extend(t2.references)
    if t2.fault is not None:
        return Translation(va, None, tuple(refs), t2.fault)
    if stage2 is not None:
        leaves.append(t2.leaf)
    return Translation(va, t2.output, tuple(refs), None, leaves[-1] if leaves else None, tuple(leaves))
