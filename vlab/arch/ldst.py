"""What the hardware reports about a load or store that faulted: the data-abort ISS fields.

When a guest's access faults at stage 2 (say, a store to an IPA where the hypervisor
emulates a device), the CPU tells the hypervisor not only *where* (FAR, HPFAR) but,
for the simple forms, *what*: the access size (SAS), the register (SRT), whether it
is a write (WnR), whether a load sign-extends (SSE) into a 64-bit register (SF). With
ISV = 1 the hypervisor emulates the access without ever decoding the instruction.

Which forms get a valid syndrome (Arm ARM D17.2.37, ISS encoding for a Data Abort):
a single general-purpose register load or store, with no writeback, including the
acquire/release forms (AR = 1). Pairs (LDP/STP), writeback (pre/post-index), SIMD&FP
registers and everything else report ISV = 0 -- and a hypervisor that needs to emulate
one of those must fetch and decode the instruction itself (KVM refuses to).

    31 30 29 28 27 26 25 24 23 22 21 ...          11 10  9    5 4    0
    size   1  1  1  V  0  1  opc   imm12                 Rn     Rt      unsigned offset
    size   1  1  1  V  0  0  opc  0 imm9          op 0/1/2/3   Rn     Rt   (unscaled, post,
                                                                            unprivileged, pre)
    size   1  1  1  V  0  0  opc  1 Rm option S   1  0   Rn     Rt      register offset
    size   0  0  1  0  0  0  1  L  0 Rs o0 Rt2         Rn     Rt      LDAR / STLR (o0 = 1)
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

from vlab.arch.esr import DataAbort


class Access(NamedTuple):  # a tuple, not a frozen dataclass: built three times faster, on every device exit
    """A decoded load/store: the fields a data abort's ISS carries when ISV = 1."""

    size: int  # bytes: 1, 2, 4 or 8
    rt: int  # the transfer register (31 = the zero register)
    is_write: bool
    sign_extend: bool = False  # SSE
    sixty_four: bool = False  # SF: Rt is an X register
    acquire_release: bool = False  # AR

    @property
    def sas(self) -> int:
        """SAS: log2 of the access size."""
        return self.size.bit_length() - 1


def decode(word: int) -> Access | None:
    """The syndrome-describable access this instruction word makes, or None (ISV = 0).

    None also for words that are not loads or stores at all, and for PRFM (no access).
    """
    if word & 0x3F00_0000 == 0x0800_0000:  # load/store exclusive and ordered
        return _decode_ordered(word)
    if (word >> 27) & 0b111 != 0b111 or (word >> 26) & 1:  # not a load/store register, or SIMD&FP
        return None
    size, opc = word >> 30, (word >> 22) & 3
    if (word >> 24) & 3 == 0b01:  # unsigned immediate offset
        return _register_access(size, opc, word & 0x1F)
    if (word >> 24) & 3 != 0b00:
        return None  # load/store pair and others
    op = (word >> 10) & 3
    if (word >> 21) & 1:
        return _register_access(size, opc, word & 0x1F) if op == 0b10 else None  # register offset
    if op in (0b01, 0b11):
        return None  # post- and pre-index: writeback, so no syndrome
    return _register_access(size, opc, word & 0x1F)  # unscaled (LDUR/STUR) and unprivileged (LDTR/STTR)


@functools.lru_cache(maxsize=4096)  # every stage-2 data abort builds one, and the same instructions recur
def abort_iss(fsc: int, word: int) -> int | None:
    """The ISS of a data abort with status `fsc` taken by the instruction `word`, its instruction
    syndrome (ISV = 1: WnR, SAS, SSE, SRT, SF, AR) filled in; None when `word` has none (ISV = 0)."""
    access = decode(word)
    if access is None:
        return None
    return DataAbort(fsc, wnr=access.is_write, isv=True, sas=access.sas, sse=access.sign_extend, srt=access.rt,
                     sf=access.sixty_four, ar=access.acquire_release).iss


def _register_access(size: int, opc: int, rt: int) -> Access | None:
    nbytes = 1 << size
    if opc == 0b00:
        return Access(nbytes, rt, is_write=True, sixty_four=size == 3)
    if opc == 0b01:
        return Access(nbytes, rt, is_write=False, sixty_four=size == 3)
    if size == 3 or (size == 2 and opc == 0b11):
        return None  # PRFM, and an unallocated encoding
    # opc 10: sign-extend to 64 bits (LDRSB/LDRSH/LDRSW Xt); opc 11: to 32 bits (Wt)
    return Access(nbytes, rt, is_write=False, sign_extend=True, sixty_four=opc == 0b10)


def _decode_ordered(word: int) -> Access | None:
    """LDAR/STLR (and their byte/halfword forms); exclusives and pairs report ISV = 0."""
    o2, load, o1, o0 = (word >> 23) & 1, (word >> 22) & 1, (word >> 21) & 1, (word >> 15) & 1
    if not (o2 and not o1 and o0):
        return None
    size = word >> 30
    return Access(1 << size, word & 0x1F, is_write=not load, sixty_four=size == 3, acquire_release=True)


def effective_address(word: int, register: Callable[[int], int], pc: int = 0) -> int | None:
    """The lowest address a load or store accesses (where its FAR points); None if `word` is none.

    Every Armv8.0 form, not only those with a syndrome: pairs, pre- and post-index writeback,
    SIMD&FP registers, vector structures, exclusives, literals (relative to `pc`). The
    address is the one *before* any writeback. `register(n)` reads Xn, where n = 31 means SP
    (a base register is never the zero register); an index register is read through
    `register_zero`, so 31 reads as XZR.

        x x 1 1 1 V 0 1 ...      register, unsigned immediate   base + imm12 << scale
        x x 1 1 1 V 0 0 ...      register: unscaled, pre/post-index, unprivileged, register offset
        x x 1 0 1 V 0 mm ...     pair: mm = 01 post-index (base), else base + imm7 * scale
        x x 0 1 1 V 0 0 ...      literal                         pc + imm19 * 4
        x x 0 0 1 0 0 0 ...      exclusive and ordered          base
        0 Q 0 0 1 1 0 x ...      SIMD structures (LD1..LD4, ST1..ST4)   base
    """
    rn = (word >> 5) & 0x1F
    if word & 0xBE00_0000 == 0x0C00_0000 or word & 0x3F00_0000 == 0x0800_0000:
        return register(rn)  # SIMD structures, exclusive and ordered: no offset
    if word & 0x3B00_0000 == 0x1800_0000:  # literal
        return (pc + 4 * _signed((word >> 5) & 0x7_FFFF, 19)) & _MASK64
    if word & 0x3A00_0000 == 0x2800_0000:  # pair
        vector, opc, mode = (word >> 26) & 1, word >> 30, (word >> 23) & 3
        scale = 4 << opc if vector else 8 if opc == 0b10 else 4
        offset = 0 if mode == 0b01 else scale * _signed((word >> 15) & 0x7F, 7)
        return (register(rn) + offset) & _MASK64
    if word & 0x3A00_0000 != 0x3800_0000:
        return None  # not a load or store
    base = register(rn)
    vector, size = (word >> 26) & 1, word >> 30
    scale = (((word >> 23) & 1) << 2 | size) if vector else size  # a 128-bit Q register: scale 4
    if (word >> 24) & 1:  # unsigned immediate offset, scaled
        return (base + (((word >> 10) & 0xFFF) << scale)) & _MASK64
    op = (word >> 10) & 3
    if not (word >> 21) & 1:  # 9-bit signed offset: unscaled (00), post-index (01), unprivileged (10), pre (11)
        return base if op == 0b01 else (base + _signed((word >> 12) & 0x1FF, 9)) & _MASK64
    if op != 0b10:
        return None  # atomics and pointer-authenticated loads: Armv8.1+, undefined on a Cortex-A72
    # register offset: Rm, extended and optionally shifted by the access size
    option, shifted = (word >> 13) & 0b111, (word >> 12) & 1
    index = register_zero((word >> 16) & 0x1F, register)
    if option in (0b010, 0b110):  # UXTW, SXTW: the low 32 bits, zero- or sign-extended
        index &= 0xFFFF_FFFF
        if option == 0b110 and index >> 31:
            index -= 1 << 32
    return (base + (index << (scale if shifted else 0))) & _MASK64


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) & 1 else value


def register_zero(n: int, register: Callable[[int], int]) -> int:
    """Xn where 31 is the zero register (an index register, unlike a base register)."""
    return 0 if n == 31 else register(n)


_MASK64 = (1 << 64) - 1
