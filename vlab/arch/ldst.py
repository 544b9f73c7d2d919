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

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Access:
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


def effective_address(word: int, register: Callable[[int], int]) -> int | None:
    """The address a syndrome-describable load/store accesses; None for other instructions.

    `register(n)` reads Xn, where n = 31 means SP (the base register of a load/store is
    never the zero register). The index register of the register-offset form is read as
    `register(m)` too, and must give 0 for m = 31 (XZR): the caller's function decides.
    """
    if decode(word) is None:
        return None
    rn = (word >> 5) & 0x1F
    base = register(rn)
    if word & 0x3F00_0000 == 0x0800_0000:  # LDAR/STLR: no offset
        return base
    size = word >> 30
    if (word >> 24) & 3 == 0b01:  # unsigned offset, scaled by the access size
        return (base + (((word >> 10) & 0xFFF) << size)) & _MASK64
    if (word >> 21) & 1:  # register offset: Rm, extended and optionally shifted by the size
        option, shifted = (word >> 13) & 0b111, (word >> 12) & 1
        index = register_zero((word >> 16) & 0x1F, register)
        if option in (0b010, 0b110):  # UXTW, SXTW: the low 32 bits, zero- or sign-extended
            index &= 0xFFFF_FFFF
            if option == 0b110 and index >> 31:
                index -= 1 << 32
        return (base + (index << (size if shifted else 0))) & _MASK64
    imm9 = (word >> 12) & 0x1FF  # unscaled and unprivileged: a signed 9-bit byte offset
    return (base + (imm9 - 0x200 if imm9 & 0x100 else imm9)) & _MASK64


def register_zero(n: int, register: Callable[[int], int]) -> int:
    """Xn where 31 is the zero register (an index register, unlike a base register)."""
    return 0 if n == 31 else register(n)


_MASK64 = (1 << 64) - 1
