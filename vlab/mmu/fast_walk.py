"""The nested walk on the fill path: the walk of vlab.mmu.walk, in plain integers, for translations
that succeed.

A miss of Unicorn's TLB asks vlab for a translation while the guest waits. `nested_walk` builds
an object for every descriptor and records every reference, for people to read and count; this
walk makes the same reads and the same checks with integers, and records nothing. It answers
only a walk that succeeds: anything else -- an invalid or reserved descriptor, an address out of
range, a clear access flag, an access the permissions forbid -- returns None, and the caller walks
again with `nested_walk` to report the fault exactly as the architecture says -- except the one
fault a hypervisor serves all the time, an invalid stage-2 descriptor for the final IPA (demand
paging), which it reports where it stopped (`stopped`), so that the fault need not be walked twice.
The two walks are checked against each other on generated tables (tests/test_mmu_fast_walk.py).

Permissions come back as UC_PROT bits (1 read, 2 write, 4 execute) for all of a page's accesses
at once, at EL1 and at EL0 (Arm ARM, AArch64.CheckPermission; see walk.permission_problem):

    stage 1 AP[2:1]  read   write     execute                  stage 2 S2AP: bit 0 read,
    EL1              yes    not AP[2] not PXN, not AP = 0b01    bit 1 write; execute unless XN
    EL0              AP[1]  AP = 0b01 not UXN
"""

from __future__ import annotations

import struct

from vlab.mmu.memory import BufferMemory
from vlab.mmu.walk import Regime

_OA = ((1 << 48) - 1) & ~0xFFF
_SHIFT = (39, 30, 21, 12)
_READ, _WRITE, _EXEC = 1, 2, 4
_WORD = struct.Struct("<Q")

# (pa, UC_PROT bits at EL1, at EL0, ipa, global: nG clear or no stage 1, the descriptors a walker
# without walk caches reads: n + (n + 1) m for n stage-1 and m stage-2 levels walked, log2 of the
# stage-1 leaf's size: 12 for a page, 21 or 30 for a block, 12 with no stage 1)
Answer = tuple[int, int, int, int, bool, int, int]


def translate(memory: BufferMemory, stage1: Regime | None, ttbr: int, stage2: Regime | None, vttbr: int,
              va: int, access: int, el0: bool, stage2_cache: dict | None = None,
              trail: list | None = None, stopped: list | None = None) -> Answer | None:
    """Translate `va` for `access` (a UC_PROT bit) at EL0 or EL1: VA -> IPA through `stage1` (None:
    the guest's MMU is off), IPA -> PA through `stage2`. None when `nested_walk` would fault.

    `stage2_cache` (IPA page -> (PA page, stage-2 leaf descriptor)) keeps the stage-2 walks made, as
    a core's walk cache does; whoever edits the stage-2 tables must empty it. The references counted
    are those of a walk without any cache, as the teaching walk records them. `trail`, if given,
    gets (level, physical address) of each stage-1 descriptor read, the leaf's last. `stopped`, if
    given, gets (IPA, level, descriptor address, descriptors read) when the walk fails only because
    the final IPA's stage-2 walk read an invalid descriptor: `nested_walk`'s fault is then
    walk.invalid_descriptor(2, level, descriptor address, IPA), with that many references."""
    data, base, size = memory.data, memory.base, memory.size
    ipa, el1_perms, el0_perms, global_, leaf_shift = va, 7, 7, True, 12
    through = _Stage2(data, base, size, stage2, vttbr, stage2_cache)
    if stage1 is not None:
        leaf = _walk(data, base, size, stage1, ttbr, va, through, trail)
        if leaf is None:
            return None
        ipa, value, ap_table, xn_table, pxn_table, references, leaf_shift = leaf
        ap = ((value >> 6 & 3) | ap_table & 2) & ~(ap_table & 1)
        uxn, pxn = bool(value >> 54 & 1) or xn_table, bool(value >> 53 & 1) or pxn_table
        el1_perms = _READ | (0 if ap & 2 else _WRITE) | (0 if pxn or ap == 0b01 else _EXEC)
        el0_perms = (_READ if ap & 1 else 0) | (_WRITE if ap == 0b01 else 0) | (0 if uxn else _EXEC)
        global_ = not value >> 11 & 1
        if not (el0_perms if el0 else el1_perms) & access:
            return None
    else:
        references = 0
    pa = ipa
    if stage2 is not None:
        walked = [] if stopped is not None else None
        leaf = through(ipa, walked)
        if leaf is None:
            if walked and not _WORD.unpack_from(data, walked[-1][1] - base)[0] & 1:
                stopped.append((ipa, *walked[-1], references + len(walked)))
            return None
        pa, value, walked = leaf
        references += walked
        s2 = (value >> 6 & 3) | (0 if value >> 54 & 1 else _EXEC)
        if not s2 & access:
            return None
        el1_perms, el0_perms = el1_perms & s2, el0_perms & s2
    return pa, el1_perms, el0_perms, ipa, global_, references, leaf_shift


class _Stage2:
    """IPA -> (PA, stage-2 leaf descriptor, descriptors the walk reads), or None where the stage-2 walk
    faults (any access: permissions are the caller's to check); through the cache when there is one."""

    def __init__(self, data, base: int, size: int, regime: Regime | None, vttbr: int, cache: dict | None):
        self.data, self.base, self.size, self.regime, self.vttbr, self.cache = data, base, size, regime, vttbr, cache

    def __call__(self, ipa: int, trail: list | None = None):
        """`trail`, if given, gets (level, physical address) of each descriptor read (none on a cache hit)."""
        cache = self.cache
        if cache is not None:
            hit = cache.get(ipa >> 12)
            if hit is not None:
                return hit[0] | ipa & 0xFFF, hit[1], hit[2]
        leaf = _walk(self.data, self.base, self.size, self.regime, self.vttbr, ipa, None, trail)
        if leaf is None:
            return None
        if cache is not None:
            cache[ipa >> 12] = (leaf[0] & ~0xFFF, leaf[1], leaf[5])
        return leaf[0], leaf[1], leaf[5]


def _walk(data, base: int, size: int, regime: Regime, root: int, address: int, stage2: _Stage2 | None,
          trail: list | None = None):
    """One stage's walk of `address`: (output address, leaf descriptor, APTable, XNTable, PXNTable
    gathered on the way, the descriptors read -- with `stage2`, its walks' too -- and log2 of the
    leaf's size), or None where `walk` would fault. With `stage2`, each table address is an IPA,
    translated (for a read) through it first."""
    bits, out_bits, start = regime.input_bits, regime.output_bits, regime.start_level
    if not regime.enabled or address >> bits != regime.top or root >> out_bits:
        return None
    table = root & ~(regime.start_table_bytes - 1)
    ap_table, xn_table, pxn_table, level, references = 0, False, False, start, 0
    while True:
        shift = _SHIFT[level]
        index_bits = bits - shift if level == start else 9
        slot = table + 8 * ((address >> shift) & ((1 << index_bits) - 1))
        if stage2 is not None and stage2.regime is not None:
            through = stage2(slot)
            if through is None or not through[1] >> 6 & 1:  # the table must be readable at stage 2
                return None
            slot = through[0]
            references += through[2]
        offset = slot - base
        if offset < 0 or offset + 8 > size:
            return None  # an external abort on the walk
        if trail is not None:
            trail.append((level, slot))
        value = _WORD.unpack_from(data, offset)[0]
        if not value & 1:
            return None
        if value & 2 and level < 3:  # a table
            table = value & _OA
            if table >> out_bits:
                return None
            if regime.stage == 1:
                ap_table |= value >> 61 & 3
                xn_table |= bool(value >> 60 & 1)
                pxn_table |= bool(value >> 59 & 1)
            level += 1
            continue
        if level == 0 or level == 3 and not value & 2:
            return None  # reserved encodings
        output = value & _OA & ~((1 << shift) - 1)
        if output >> out_bits or not value >> 10 & 1:  # beyond the output range; access flag clear
            return None
        return (output | (address & ((1 << shift) - 1)), value, ap_table, xn_table, pxn_table,
                references + level - start + 1, shift)
