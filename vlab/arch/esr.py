"""Exception syndromes: the ESR_ELx register and the ISS encodings vlab uses.

    31      26 25 24                                   0
    +---------+--+--------------------------------------+
    |   EC    |IL|                 ISS                  |
    +---------+--+--------------------------------------+

EC (exception class) says *what* happened; ISS (instruction-specific syndrome)
carries the details a handler needs, so it does not have to decode the
instruction again. IL is 1 for a 32-bit instruction (always, in AArch64).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple


class ExceptionClass(IntEnum):
    """ESR_ELx.EC values (Arm ARM D17.2.37), the ones vlab produces or decodes."""

    UNKNOWN = 0x00  # e.g. an undefined instruction
    WFX = 0x01  # WFI/WFE trapped (HCR_EL2.TWI/TWE)
    ILLEGAL_STATE = 0x0E
    SVC64 = 0x15  # system call
    HVC64 = 0x16  # hypercall
    SMC64 = 0x17  # secure monitor call
    SYS64 = 0x18  # trapped MSR, MRS or SYS instruction
    IABT_LOWER = 0x20  # instruction abort from a lower exception level
    IABT_CURRENT = 0x21
    PC_ALIGN = 0x22
    DABT_LOWER = 0x24  # data abort from a lower exception level
    DABT_CURRENT = 0x25
    SP_ALIGN = 0x26
    BRK64 = 0x3C  # BRK instruction


class FaultStatus(IntEnum):
    """The fault status codes (DFSC/IFSC) vlab reports; level-specific ones add the level."""

    ADDRESS_SIZE_L0 = 0x00
    TRANSLATION_L0 = 0x04
    ACCESS_FLAG_L0 = 0x08
    PERMISSION_L0 = 0x0C
    SYNC_EXTERNAL = 0x10  # e.g. an access to no memory and no device
    ALIGNMENT = 0x21


# Each class's name, looked up without the enum's descriptor: the trap log names the class of every exit.
EC_NAMES: dict[ExceptionClass, str] = {ec: ec.name for ec in ExceptionClass}


@dataclass(frozen=True)
class Syndrome:
    """An ESR_ELx value, with its fields named.

    `Syndrome.from_esr(esr)` decodes, `.esr` encodes; the two are inverses.
    """

    ec: ExceptionClass
    iss: int = 0
    il: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.iss < (1 << 25):
            raise ValueError(f"ISS {self.iss:#x} does not fit in 25 bits")

    @property
    def esr(self) -> int:
        """The 32-bit ESR_ELx value."""
        return (int(self.ec) << 26) | (self.il << 25) | self.iss

    @classmethod
    def from_esr(cls, esr: int) -> Syndrome:
        ec_value = (esr >> 26) & 0x3F
        try:
            ec = ExceptionClass(ec_value)
        except ValueError:
            raise ValueError(f"ESR {esr:#010x}: exception class {ec_value:#x} is not one vlab knows") from None
        return cls(ec, esr & 0x1FF_FFFF, (esr >> 25) & 1)

    def fields(self) -> dict[str, int]:
        """The ISS decoded into named fields, for this exception class."""
        decoder = _ISS_DECODERS.get(self.ec)
        return decoder(self.iss) if decoder else {}

    def describe(self) -> str:
        """One line a student can read: class name, ESR value and decoded fields."""
        parts = [f"{self.ec.name} (EC={int(self.ec):#04x})", f"ESR={self.esr:#010x}"]
        parts += [f"{k}={_fmt(k, v)}" for k, v in self.fields().items()]
        return " ".join(parts)


def _fmt(name: str, value: int) -> str:
    return f"{value:#x}" if name in ("imm16", "DFSC", "IFSC") else str(value)


# --- immediates: SVC, HVC, SMC, BRK carry their 16-bit immediate in ISS[15:0] ---

def imm16_syndrome(ec: ExceptionClass, imm16: int) -> Syndrome:
    """Syndrome of SVC/HVC/SMC/BRK #imm16."""
    return Syndrome(ec, imm16 & 0xFFFF)


def _decode_imm16(iss: int) -> dict[str, int]:
    return {"imm16": iss & 0xFFFF}


# --- trapped MSR/MRS/SYS (EC 0x18) ---
#   24  22 21 20 19  17 16  14 13  10 9   5 4  1 0
#  [ res ][ Op0 ][ Op2 ][ Op1 ][ CRn ][ Rt ][ CRm][Dir]     Dir: 1 = read (MRS)

class SysRegAccess(NamedTuple):
    """The ISS of a trapped system-register access, decoded. (A named tuple: the exit path looks
    accesses up in tables, and a tuple hashes in C where a frozen dataclass hashes in Python.)"""

    op0: int
    op1: int
    crn: int
    crm: int
    op2: int
    rt: int
    is_read: bool

    @property
    def iss(self) -> int:
        return (
            (self.op0 << 20) | (self.op2 << 17) | (self.op1 << 14) | (self.crn << 10)
            | (self.rt << 5) | (self.crm << 1) | int(self.is_read)
        )

    @classmethod
    @functools.lru_cache(maxsize=4096)  # every trapped MRS/MSR decodes its syndrome: a few recur
    def from_iss(cls, iss: int) -> SysRegAccess:
        return cls(
            op0=(iss >> 20) & 3, op1=(iss >> 14) & 7, crn=(iss >> 10) & 0xF,
            crm=(iss >> 1) & 0xF, op2=(iss >> 17) & 7, rt=(iss >> 5) & 0x1F, is_read=bool(iss & 1),
        )

    @classmethod
    def of_instruction(cls, word: int) -> SysRegAccess:
        """The fields of a system instruction (MRS, MSR, SYS, MSR immediate): 1101010100 L op0 op1 CRn
        CRm op2 Rt. A trap's ISS holds exactly these (Arm ARM, ISS encoding for EC 0x18)."""
        return cls(op0=(word >> 19) & 3, op1=(word >> 16) & 7, crn=(word >> 12) & 0xF, crm=(word >> 8) & 0xF,
                   op2=(word >> 5) & 7, rt=word & 0x1F, is_read=bool(word >> 21 & 1))

    @property
    def encoding(self) -> tuple[int, int, int, int, int]:
        """(op0, op1, CRn, CRm, op2): the key of the system-register table."""
        return (self.op0, self.op1, self.crn, self.crm, self.op2)


def _decode_sys64(iss: int) -> dict[str, int]:
    a = SysRegAccess.from_iss(iss)
    return {"Op0": a.op0, "Op1": a.op1, "CRn": a.crn, "CRm": a.crm, "Op2": a.op2, "Rt": a.rt, "Dir": int(a.is_read)}


# --- data aborts (EC 0x24/0x25) ---
#  24  23 22  21  20  16  15  14  13  12 11 10  9   8   7    6   5      0
# [ISV][ SAS ][SSE][ SRT ][SF][AR][VNCR][SET][FnV][EA][CM][S1PTW][WnR][ DFSC ]

class DataAbort(NamedTuple):  # a tuple, not a frozen dataclass: built three times faster, twice per device exit
    """The ISS of a data abort, decoded. `isv` says whether SAS..AR are valid."""

    dfsc: int
    wnr: bool = False  # write, not read
    isv: bool = False  # the instruction syndrome (SAS, SSE, SRT, SF, AR) is valid
    sas: int = 0  # access size: 0 byte, 1 halfword, 2 word, 3 doubleword
    sse: bool = False  # sign-extend the loaded value
    srt: int = 0  # the transfer register Xt/Wt
    sf: bool = False  # the register is 64-bit (Xt)
    ar: bool = False  # acquire/release semantics
    s1ptw: bool = False  # stage-2 fault on a stage-1 table walk
    ea: bool = False  # external abort type
    fnv: bool = False  # FAR is not valid

    @property
    def iss(self) -> int:
        value = (self.dfsc & 0x3F) | (int(self.wnr) << 6) | (int(self.s1ptw) << 7) | (int(self.ea) << 9) | (int(self.fnv) << 10)
        if self.isv:
            value |= (1 << 24) | (self.sas << 22) | (int(self.sse) << 21) | (self.srt << 16) | (int(self.sf) << 15) | (int(self.ar) << 14)
        return value

    @classmethod
    @functools.lru_cache(maxsize=4096)  # every stage-2 abort's handler decodes its syndrome: a few recur
    def from_iss(cls, iss: int) -> DataAbort:
        isv = bool(iss >> 24 & 1)
        return cls(
            dfsc=iss & 0x3F, wnr=bool(iss >> 6 & 1), isv=isv,
            sas=(iss >> 22) & 3 if isv else 0, sse=bool(iss >> 21 & 1) and isv,
            srt=(iss >> 16) & 0x1F if isv else 0, sf=bool(iss >> 15 & 1) and isv,
            ar=bool(iss >> 14 & 1) and isv, s1ptw=bool(iss >> 7 & 1), ea=bool(iss >> 9 & 1), fnv=bool(iss >> 10 & 1),
        )

    @property
    def size(self) -> int:
        """Access size in bytes (valid when isv)."""
        return 1 << self.sas


def _decode_dabt(iss: int) -> dict[str, int]:
    a = DataAbort.from_iss(iss)
    out = {"ISV": int(a.isv)}
    if a.isv:
        out.update(SAS=a.sas, SSE=int(a.sse), SRT=a.srt, SF=int(a.sf), AR=int(a.ar))
    out.update(S1PTW=int(a.s1ptw), WnR=int(a.wnr), DFSC=a.dfsc)
    return out


def _decode_iabt(iss: int) -> dict[str, int]:
    return {"S1PTW": (iss >> 7) & 1, "IFSC": iss & 0x3F}


# --- WFI/WFE (EC 0x01): ISS[0] TI = 0 WFI, 1 WFE ---

def _decode_wfx(iss: int) -> dict[str, int]:
    return {"TI": iss & 3}


_ISS_DECODERS = {
    ExceptionClass.SVC64: _decode_imm16,
    ExceptionClass.HVC64: _decode_imm16,
    ExceptionClass.SMC64: _decode_imm16,
    ExceptionClass.BRK64: _decode_imm16,
    ExceptionClass.SYS64: _decode_sys64,
    ExceptionClass.DABT_LOWER: _decode_dabt,
    ExceptionClass.DABT_CURRENT: _decode_dabt,
    ExceptionClass.IABT_LOWER: _decode_iabt,
    ExceptionClass.IABT_CURRENT: _decode_iabt,
    ExceptionClass.WFX: _decode_wfx,
}
