"""Table walks: stage 1 (VA -> IPA), stage 2 (IPA -> PA), and the two-dimensional nested walk.

    input address, 4 KB granule, 4 levels:
      47     39 38     30 29     21 20     12 11          0
     | L0 index| L1 index| L2 index| L3 index| page offset |
         9 bits    9 bits    9 bits    9 bits    12 bits

A walk starts at the table the base register points to (for stage 1 TTBR0_EL1, or TTBR1_EL1 for
the upper half of the VAs; VTTBR_EL2 for stage 2), reads one descriptor per level and stops at a
block or page. In a *nested* walk every stage-1 table address is an IPA, so each stage-1 descriptor read needs a stage-2 walk first:
with n guest levels and m stage-2 levels, (n + 1)(m + 1) - 1 memory references per translation.
Every walk returns each reference it made, in order, so they can be counted and drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from vlab.mmu.descriptors import LEVEL_SHIFT, Invalid, Leaf, Reserved, Table, decode
from vlab.mmu.faults import Access, Fault, FaultKind
from vlab.mmu.memory import PhysicalMemory

DEFAULT_OUTPUT_BITS = 40  # QEMU virt's physical address size (1 TB)
PA_MAX_BITS = 48  # the widest output address a 4 KB-granule descriptor holds (no FEAT_LPA2)
# TCR_EL1.IPS / VTCR_EL2.PS -> output address bits (Arm ARM: 0b110, 52 bits, needs FEAT_LPA: 48 here)
SIZE_ENCODING = {0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 48, 6: 48}


@dataclass(frozen=True)
class Regime:
    """One stage's configuration: input size (T0SZ), starting level, concatenated start tables.

    `enabled` is False when TCR_EL1.EPD0 forbids walks from TTBR0: every address then faults.
    `upper`: stage 1's upper half of the address space, walked from TTBR1_EL1 (`t0sz` then holds
    TCR_EL1.T1SZ): its addresses' bits above the input size are all ones, not all zeros. The walk
    indexes the same bits in either half.
    """

    stage: int
    t0sz: int
    start_level: int
    concatenated: int = 1
    output_bits: int = DEFAULT_OUTPUT_BITS
    enabled: bool = True
    upper: bool = False

    @property
    def input_bits(self) -> int:
        return 64 - self.t0sz

    @property
    def top(self) -> int:
        """What an address's bits above the input size must hold: all zeros, or all ones (upper)."""
        return (1 << self.t0sz) - 1 if self.upper else 0

    @property
    def levels(self) -> int:
        return 4 - self.start_level

    def index_bits(self, level: int) -> int:
        """Bits of the input address that index the table at `level` (more at a concatenated start)."""
        return self.input_bits - LEVEL_SHIFT[level] if level == self.start_level else 9

    @property
    def start_table_bytes(self) -> int:
        """The size of the starting table(s): the base register must be aligned to it (at least 8 bytes)."""
        return 8 << self.index_bits(self.start_level)

    @classmethod
    def stage1(cls, t0sz: int, output_bits: int = DEFAULT_OUTPUT_BITS, enabled: bool = True,
               upper: bool = False) -> Regime:
        """From TCR_EL1.T0SZ (T1SZ, `upper`): as many levels as the input size needs (16..39; up to 48
        with FEAT_TTST)."""
        if not 16 <= t0sz <= 48:
            raise ValueError(f"T{int(upper)}SZ = {t0sz}: with 4 KB granules it must be 16..39 (48 with small tables)")
        bits = 64 - t0sz
        return cls(1, t0sz, 4 - -(-(bits - 12) // 9), 1, output_bits, enabled, upper)

    @classmethod
    def stage2(cls, t0sz: int, sl0: int, output_bits: int = DEFAULT_OUTPUT_BITS) -> Regime:
        """From VTCR_EL2.T0SZ and SL0 (4 KB: SL0 0, 1, 2 start at level 2, 1, 0; 3 at level 3 with
        FEAT_TTST). Up to 16 tables concatenate at the start level."""
        if sl0 not in (0, 1, 2, 3):
            raise ValueError(f"VTCR_EL2.SL0 = {sl0} is reserved with 4 KB granules")
        if not 16 <= t0sz <= 48:
            raise ValueError(f"VTCR_EL2.T0SZ = {t0sz}: with 4 KB granules it must be 16..48")
        start = {0: 2, 1: 1, 2: 0, 3: 3}[sl0]
        bits = (64 - t0sz) - LEVEL_SHIFT[start]  # input bits the start level must resolve
        if not 1 <= bits <= 9 + 4:
            raise ValueError(f"VTCR_EL2.T0SZ = {t0sz} does not fit SL0 = {sl0}: the start level would index "
                             f"{bits} bits, and the architecture allows 1 to 13 (up to 16 concatenated tables)")
        return cls(2, t0sz, start, 2 ** max(bits - 9, 0), output_bits)

    @classmethod
    def from_tcr(cls, tcr: int, upper: bool = False) -> Regime:
        """Stage 1 as TCR_EL1 configures it for TTBR0: T0SZ[5:0], EPD0[7], TG0[15:14], IPS[34:32];
        or, `upper`, for TTBR1: T1SZ[21:16], EPD1[23], TG1[31:30] (whose 4 KB encoding is 0b10)."""
        ips = _output_size("TCR_EL1.IPS", (tcr >> 32) & 7)
        if upper:
            tg1 = (tcr >> 30) & 3
            if tg1 != 0b10:
                raise ValueError(f"TCR_EL1.TG1 = {tg1:#04b}: vlab walks 4 KB granules only (TG1 = 0b10)")
            return cls.stage1((tcr >> 16) & 0x3F, ips, enabled=not tcr >> 23 & 1, upper=True)
        tg0 = (tcr >> 14) & 3
        if tg0 != 0:
            raise ValueError(f"TCR_EL1.TG0 = {tg0:#04b}: vlab walks 4 KB granules only (TG0 = 0b00)")
        return cls.stage1(tcr & 0x3F, ips, enabled=not tcr >> 7 & 1)


def _output_size(field_name: str, value: int) -> int:
    if value not in SIZE_ENCODING:
        raise ValueError(f"{field_name} = {value:#05b} is a reserved output-size encoding")
    return SIZE_ENCODING[value]


@dataclass(frozen=True)
class Reference:
    """One descriptor read: which stage and level it served, where it was read, what it held."""
    stage: int
    level: int
    address: int  # physical address of the descriptor
    value: int
    purpose: str  # e.g. "stage 1 L0", "stage 2 L2 for the stage-1 L1 table", "stage 2 L3 for the output"


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
    """Translate `address` through the one-stage table rooted at `root` (the base register's address).

    `fetch(descriptor_address, level, purpose)` reads a descriptor; by default from `memory`
    at that physical address. A nested walk passes one that translates it through stage 2 first.
    Never raises for anything the tables hold: every failure is a `Fault` in the result.
    """
    stage, refs = regime.stage, []
    fetch = fetch or _direct(memory, stage)

    def fail(kind: FaultKind, level: int, why: str) -> Translation:
        return Translation(address, None, tuple(refs), Fault(kind, stage, level, address, why,
                                                             ipa=address if stage == 2 else None))

    # Faults found before any lookup are reported at level 0, whatever the starting level.
    if not regime.enabled:
        n = int(regime.upper)
        return fail(FaultKind.TRANSLATION, 0, f"TCR_EL1.EPD{n} = 1: walks from TTBR{n}_EL1 are disabled")
    if address >> regime.input_bits != regime.top:
        if regime.upper:
            return fail(FaultKind.TRANSLATION, 0, f"outside the upper {regime.input_bits}-bit range "
                                                  f"(T1SZ = {regime.t0sz}: the bits above must all be ones)")
        return fail(FaultKind.TRANSLATION, 0, f"beyond the {regime.input_bits}-bit input range (T0SZ = {regime.t0sz})")
    if root >> regime.output_bits:
        return fail(FaultKind.ADDRESS_SIZE, 0, f"the table base {root:#x} is beyond the {regime.output_bits}-bit "
                                               "output range")
    # The base register's bits below the start table's size are ignored (treated as zero).
    table = root & ~(regime.start_table_bytes - 1)
    ap_table, xn_table, pxn_table = 0, False, False  # stage 1's hierarchical limits, gathered on the way
    for level in range(regime.start_level, 4):
        slot = table + 8 * ((address >> LEVEL_SHIFT[level]) & ((1 << regime.index_bits(level)) - 1))
        fetched = fetch(slot, level, f"stage {stage} L{level}")
        if isinstance(fetched, Fault):
            return Translation(address, None, tuple(refs), fetched)
        value, more = fetched
        refs += more
        descriptor = decode(value, level, stage)
        if isinstance(descriptor, Invalid):
            return Translation(address, None, tuple(refs), invalid_descriptor(stage, level, slot, address))
        if isinstance(descriptor, Reserved):
            return fail(FaultKind.TRANSLATION, level, f"the level-{level} descriptor at {slot:#x} "
                                                      f"({value:#x}) is reserved: {descriptor.why}")
        if isinstance(descriptor, Table):
            if descriptor.address >> regime.output_bits:
                return fail(FaultKind.ADDRESS_SIZE, level, f"next table {descriptor.address:#x} is beyond "
                                                           f"the {regime.output_bits}-bit output range")
            table = descriptor.address
            ap_table |= descriptor.ap_table
            xn_table |= descriptor.xn_table
            pxn_table |= descriptor.pxn_table
            continue
        if stage == 1 and (ap_table or xn_table or pxn_table):
            descriptor = replace(descriptor, ap=(descriptor.ap | ap_table & 2) & ~(ap_table & 1),
                                 xn=descriptor.xn or xn_table, pxn=descriptor.pxn or pxn_table)
        return _leaf(descriptor, regime, address, access, el0, refs, fail)
    raise AssertionError("unreachable: level 3 never holds a table descriptor")


def invalid_descriptor(stage: int, level: int, slot: int, address: int) -> Fault:
    """The translation fault of a walk of `address` that read an invalid descriptor at `slot` (bit 0 clear)."""
    return Fault(FaultKind.TRANSLATION, stage, level, address, f"the level-{level} descriptor at {slot:#x} "
                                                               "is invalid (bit 0 clear)",
                 ipa=address if stage == 2 else None)


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
    """Why this leaf forbids the access ("" when it allows it). Arm ARM, AArch64.CheckPermission:

    stage 1  AP[2:1]  EL1     EL0    execution: EL0 unless UXN; EL1 unless PXN, and never from
               00     RW      -      a page EL0 can write. EL0 fetches need no read permission
               01     RW      RW     (execute-only memory: AP 00 or 10 with UXN clear).
               10     R       -
               11     R       R
    stage 2  S2AP[0] read, S2AP[1] write; fetches check only XN.
    """
    if leaf.stage == 2:
        if access is Access.FETCH:
            return "stage 2 forbids execution here (XN)" if leaf.xn else ""
        if access is Access.WRITE and not leaf.writable:
            return "stage 2 does not allow writes here (S2AP[1] clear)"
        if access is Access.READ and not leaf.readable:
            return "stage 2 does not allow reads here (S2AP[0] clear)"
        return ""
    el0_writable = leaf.ap == 0b01
    if access is Access.FETCH:
        if el0:
            return "execution at EL0 is forbidden here (UXN)" if leaf.xn else ""
        if leaf.pxn:
            return "execution at EL1 is forbidden here (PXN)"
        return "EL1 may not execute from a page EL0 can write (AP = 0b01)" if el0_writable else ""
    if el0 and not leaf.ap & 1:
        return "EL0 may not access this page (AP[1] clear)"
    if access is Access.WRITE and leaf.ap & 2:
        return "the page is read-only (AP[2] set)"
    return ""


def _direct(memory: PhysicalMemory, stage: int) -> Fetch:
    def fetch(address: int, level: int, purpose: str):
        if not memory.contains(address):
            return Fault(FaultKind.EXTERNAL_ON_WALK, stage, level, address,
                         f"the level-{level} descriptor's address {address:#x} is not in memory")
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
        read = t.fault or _direct(memory, 1)(t.output, level, purpose)
        if isinstance(read, Fault):
            refs.extend(t.references)  # what was read before the fault still counts
            return read
        return read[0], [*t.references, *read[1]]

    t1 = walk(memory, stage1, ttbr, va, access, el0, fetch)
    # A fault ends the walk: the reads that led to it come after every earlier level's
    return Translation(va, t1.output, t1.references + tuple(refs), t1.fault, t1.leaf, t1.leaves)


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
