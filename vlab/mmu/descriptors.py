"""Translation-table descriptors, 4 KB granule, bit-exact (Arm ARM D8.3), for stage 1 and stage 2.

    63      55 54 53 52        48 47                       12 11 10 9  8 7  6 5 4    2 1 0
    | ignored |XN|PXN|         | output address              |nG|AF| SH | AP  |NS|AttrIdx|0|1|  stage 1 block
    | ignored |XN|PXN|         | output address              |nG|AF| SH | AP  |NS|AttrIdx|1|1|  stage 1 page (L3)
    | ignored |XN|   |         | output address              |  |AF| SH |S2AP | MemAttr |T|1|  stage 2 block/page
    |NS|AP|XN|PXN|   ignored   | next-level table address    |        ignored             |1|1|  table (L0-L2)
     63 62:61 60 59                                                                              (NS..PXN: stage 1)

V (bit 0) = 0: invalid, any level. At levels 0-2, T (bit 1) = 1: a table descriptor pointing at the
next level; T = 0: a block (levels 1 and 2 with 4 KB granules; level 0 blocks do not exist). At
level 3, T must be 1 (a page); T = 0 is reserved. Stage-2 S2AP: bit 6 read, bit 7 write.
A stage-1 table descriptor can also restrict everything below it (hierarchical permissions):
APTable[1] makes it read-only, APTable[0] takes away EL0 access, XNTable/PXNTable forbid
execution. At stage 2 those bits are RES0 and decode ignores them.
"""

from __future__ import annotations

from dataclasses import dataclass

OA_MASK = ((1 << 48) - 1) & ~0xFFF  # bits [47:12]
LEVEL_SHIFT = {0: 39, 1: 30, 2: 21, 3: 12}  # bits of input address resolved below each level


@dataclass(frozen=True)
class Invalid:
    raw: int = 0


@dataclass(frozen=True)
class Reserved:
    """An encoding the architecture reserves: a translation fault, as for an invalid descriptor."""
    raw: int
    why: str


@dataclass(frozen=True)
class Table:
    """A pointer to the next-level table, with stage 1's limits on everything it maps."""
    address: int  # the next-level table, 4 KB aligned
    ap_table: int = 0  # bit 0 (APTable[0], bit 61): no EL0 access; bit 1 (APTable[1], bit 62): read-only
    xn_table: bool = False  # UXNTable, bit 60
    pxn_table: bool = False  # PXNTable, bit 59
    ns_table: bool = False  # NSTable, bit 63 (vlab's guests are non-secure: recorded, no effect)

    def encode(self) -> int:
        return ((self.address & OA_MASK) | 0b11 | int(self.ns_table) << 63 | (self.ap_table & 3) << 61
                | int(self.xn_table) << 60 | int(self.pxn_table) << 59)


@dataclass(frozen=True)
class Leaf:
    """A block (levels 1-2) or page (level 3) descriptor: where the region goes, and its attributes.

    `ap` is stage 1's AP[2:1] (0: EL1 RW, 1: EL1+EL0 RW, 2: EL1 RO, 3: EL1+EL0 RO) or
    stage 2's S2AP (bit 0 read, bit 1 write); `attr` is AttrIndx (stage 1) or MemAttr (stage 2).
    """

    output: int
    level: int
    stage: int = 1
    attr: int = 0
    ap: int = 0
    sh: int = 3
    af: bool = True
    ng: bool = False  # stage 1 only
    pxn: bool = False  # stage 1 only
    xn: bool = False  # UXN at stage 1, XN at stage 2

    @property
    def size(self) -> int:
        return 1 << LEVEL_SHIFT[self.level]

    def encode(self) -> int:
        if self.output % self.size:
            raise ValueError(f"output address {self.output:#x} is not aligned to the {self.size:#x}-byte "
                             f"region a level-{self.level} descriptor maps")
        kind = 0b11 if self.level == 3 else 0b01
        attr_bits = (self.attr & (0b111 if self.stage == 1 else 0b1111)) << 2
        value = (self.output & OA_MASK) | kind | attr_bits | (self.ap & 3) << 6 | (self.sh & 3) << 8
        value |= int(self.af) << 10 | int(self.xn) << 54
        if self.stage == 1:
            value |= int(self.ng) << 11 | int(self.pxn) << 53
        return value

    # stage-2 permissions
    @property
    def readable(self) -> bool:
        return self.stage == 1 or bool(self.ap & 1)

    @property
    def writable(self) -> bool:
        if self.stage == 2:
            return bool(self.ap & 2)
        return not self.ap & 2  # stage 1: AP[2] = 1 means read-only


Descriptor = Invalid | Reserved | Table | Leaf


def decode(value: int, level: int, stage: int) -> Descriptor:
    """The descriptor `value` read at `level` of a stage-`stage` table."""
    if not value & 1:
        return Invalid(value)
    is_table_or_page = value >> 1 & 1
    if level == 3:
        if not is_table_or_page:
            return Reserved(value, "bits[1:0] = 0b01 is reserved at level 3")
    elif is_table_or_page:
        if stage == 2:
            return Table(value & OA_MASK)
        return Table(value & OA_MASK, (value >> 61) & 3, bool(value >> 60 & 1), bool(value >> 59 & 1),
                     bool(value >> 63))
    elif level == 0:
        return Reserved(value, "a block descriptor at level 0 does not exist with 4 KB granules")
    shift = LEVEL_SHIFT[level]
    output = value & OA_MASK & ~((1 << shift) - 1)
    attr = (value >> 2) & (0b111 if stage == 1 else 0b1111)
    return Leaf(output, level, stage, attr, (value >> 6) & 3, (value >> 8) & 3, bool(value >> 10 & 1),
                bool(value >> 11 & 1) and stage == 1, bool(value >> 53 & 1) and stage == 1, bool(value >> 54 & 1))
