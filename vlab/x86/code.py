"""32-bit x86 code: assembled by Keystone, decoded by Capstone.

Keystone mis-assembles a few 32-bit instructions silently, and these are exactly
the ones this chapter is about, so the assembler guards them:

    pushf, popf, iret         assembled with a 0x66 prefix: the 16-bit forms. Write
                              pushfd, popfd, iretd (refused otherwise).
    lgdt/sgdt/lidt/sidt [m]   always given a 0x66 prefix, which makes lgdt load only
                              24 bits of the base. vlab encodes the absolute forms
                              ([address]) itself; other forms are refused.

Comments start with `#` (a `;` separates statements, as Keystone reads them).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from capstone import CS_ARCH_X86, CS_MODE_32, CS_OP_IMM, CS_OP_MEM, CS_OP_REG, Cs
from keystone import KS_ARCH_X86, KS_MODE_32, Ks, KsError

from vlab.errors import AssemblyError

_SIXTEEN_BIT = {"pushf": "pushfd", "popf": "popfd", "iret": "iretd"}
_TABLE_OPS = {"sgdt": 0, "sidt": 1, "lgdt": 2, "lidt": 3}  # 0F 01 /digit
_TABLE_OP = re.compile(r"^(sgdt|sidt|lgdt|lidt)\s+(?:fword\s+ptr\s+)?\[\s*((?:0x[0-9a-f]+|\d+)(?:\s*[-+]\s*(?:0x[0-9a-f]+|\d+))*)\s*\]$",
                       re.IGNORECASE)  # an absolute address: numbers joined by + and -
_MNEMONIC = re.compile(r"^(?:[A-Za-z_.$][\w.$]*\s*:\s*)*([A-Za-z][\w.]*)")


@dataclass(frozen=True)
class Operand:
    """One decoded operand: a register (by name), an immediate, or memory (base + index * scale + disp)."""

    kind: str  # "reg", "imm" or "mem"
    size: int  # bytes
    reg: str = ""
    imm: int = 0
    base: str = ""
    index: str = ""
    scale: int = 1
    disp: int = 0


@dataclass(frozen=True)
class Instruction:
    address: int
    size: int
    mnemonic: str
    op_str: str
    operands: tuple[Operand, ...]
    raw: bytes

    @property
    def text(self) -> str:
        return f"{self.mnemonic} {self.op_str}".strip()


def assemble(source: str, base: int) -> bytes:
    """Machine code for `source` (Intel syntax, 32-bit), placed at `base`; AssemblyError says why not."""
    statements = []
    for number, raw in enumerate(source.splitlines(), 1):
        for text in raw.split("#", 1)[0].split(";"):
            text = text.strip()
            if text:
                statements.append(_checked(text, number, raw))
    try:
        code, _ = _keystone().asm("\n".join(statements), base)
    except KsError as e:
        raise AssemblyError(f"Keystone could not assemble the x86 source: {e}") from None
    return bytes(code or b"")


def _checked(text: str, number: int, raw: str) -> str:
    match = _MNEMONIC.match(text)
    mnemonic = match.group(1).lower() if match else ""
    if mnemonic in _SIXTEEN_BIT:
        raise AssemblyError(f"Keystone assembles `{mnemonic}` as its 16-bit form: write "
                            f"`{_SIXTEEN_BIT[mnemonic]}`", number, raw)
    if mnemonic in _TABLE_OPS:
        table = _TABLE_OP.match(text)
        if table is None:
            raise AssemblyError(f"vlab assembles `{mnemonic}` only with an absolute address, `{mnemonic} [0x7000]` "
                                "(Keystone gives every form a 16-bit operand-size prefix)", number, raw)
        modrm = 0x05 | _TABLE_OPS[mnemonic] << 3  # mod 00, r/m 101: a 32-bit displacement
        return f".byte 0x0f, 0x01, {modrm:#04x}; .long {table.group(2)}"
    return text


def decode(code: bytes, address: int) -> Instruction | None:
    """The instruction at the start of `code`, or None if those bytes are not one."""
    for insn in _capstone().disasm(code, address, 1):
        return Instruction(insn.address, insn.size, insn.mnemonic, insn.op_str,
                           tuple(_operand(insn, op) for op in insn.operands), bytes(insn.bytes))
    return None


def decode_all(code: bytes, address: int) -> list[Instruction]:
    """A linear sweep over `code`: every instruction from the first byte on, stopping at undecodable bytes."""
    found, offset = [], 0
    while offset < len(code):
        insn = decode(code[offset:offset + 16], address + offset)
        if insn is None:
            break
        found.append(insn)
        offset += insn.size
    return found


def _operand(insn, op) -> Operand:
    if op.type == CS_OP_REG:
        return Operand("reg", op.size, reg=insn.reg_name(op.reg))
    if op.type == CS_OP_IMM:
        return Operand("imm", op.size, imm=op.imm)
    if op.type == CS_OP_MEM:
        name = lambda r: insn.reg_name(r) if r else ""  # noqa: E731 - 0 means "no register"
        return Operand("mem", op.size, base=name(op.mem.base), index=name(op.mem.index), scale=op.mem.scale,
                       disp=op.mem.disp)
    raise ValueError(f"operand type {op.type} of `{insn.mnemonic} {insn.op_str}`")


@functools.cache
def _keystone() -> Ks:
    return Ks(KS_ARCH_X86, KS_MODE_32)


@functools.cache
def _capstone() -> Cs:
    cs = Cs(CS_ARCH_X86, CS_MODE_32)
    cs.detail = True
    return cs
