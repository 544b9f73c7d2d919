"""Binary translation, VMware's answer: find the instructions that would not trap, and make them trap.

Before the kernel runs, vlab decodes its code (a linear sweep, instruction by
instruction) and replaces each sensitive instruction that is not privileged with
INT3 -- one byte, so it fits wherever the instruction stood -- followed by NOPs
that never run. The monitor keeps the original (`Translation.patches`): when INT3
traps, it runs that instruction against the guest's virtual CPU and resumes right
after it. Privileged instructions are left alone: they trap by themselves.

    popfd  9d        -> cc                 pushfd 9c        -> cc
    sgdt [m] 0f 01 /0 -> cc 90 ...         smsw, str, sidt, sldt likewise

VMware translated differently: block by block as the kernel reached them, into a
translation cache, calling the monitor only where needed and leaving the guest's
own bytes untouched. This static, in-place rewrite keeps the idea and is easy to
read; its limits are the classic ones -- data mixed with code would be decoded as
instructions, and a kernel reading its own code would see the INT3s.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from vlab.x86.code import Instruction, decode_all

# the sensitive, unprivileged instructions the translator rewrites (Capstone's mnemonics)
REWRITTEN = ("pushfd", "pushf", "popfd", "popf", "sgdt", "sidt", "sldt", "smsw", "str")
INT3, NOP = 0xCC, 0x90


@dataclass(frozen=True)
class Translation:
    """The rewritten code, and what was rewritten where."""

    code: bytes
    patches: dict[int, Instruction]  # address -> the original instruction
    decoded: int  # instructions the sweep decoded

    def counts(self) -> Counter:
        """How many of each instruction were rewritten."""
        return Counter(insn.mnemonic for insn in self.patches.values())

    def describe(self) -> str:
        counts = ", ".join(f"{m} x{n}" for m, n in sorted(self.counts().items()))
        return f"rewrote {len(self.patches)} of {self.decoded} instructions: {counts or 'none'}"


def translate(code: bytes, base: int) -> Translation:
    """Rewrite every sensitive unprivileged instruction of `code` (at `base`) into INT3 + NOPs."""
    rewritten = bytearray(code)
    patches: dict[int, Instruction] = {}
    instructions = decode_all(code, base)
    for insn in instructions:
        if insn.mnemonic in REWRITTEN:
            offset = insn.address - base
            rewritten[offset:offset + insn.size] = bytes([INT3]) + bytes([NOP] * (insn.size - 1))
            patches[insn.address] = insn
    return Translation(bytes(rewritten), patches, len(instructions))
