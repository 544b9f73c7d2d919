"""Which x86 instructions are sensitive, and which are privileged: measured on vlab's x86 core.

Popek and Goldberg (CACM 17(7), 1974): an instruction is *sensitive* if it changes
the machine's resources or mode (control-sensitive) or if what it does depends on
them (behaviour-sensitive); it is *privileged* if it traps in user mode and not in
supervisor mode. Theorem 1: "a virtual machine monitor may be constructed if the
set of sensitive instructions for that computer is a subset of the set of
privileged instructions" -- a sufficient condition.

`classify()` takes each sensitive instruction the probe kernel uses and runs it
alone at ring 3: privileged means it raised #GP there. On x86 some do not, so the
subset does not hold and trap-and-emulate alone cannot virtualize the kernel.

Robin and Irvine went through the whole Pentium instruction set (USENIX Security
2000); their list of sensitive, unprivileged instructions is quoted below as it is
usually given (REFERENCES.md: quoted, not checked against the paper -- whose count,
"17", the usual list does not match, so nothing here counts it).
"""

from __future__ import annotations

from dataclasses import dataclass

from vlab.x86.code import assemble
from vlab.x86.machine import GP, Trap, X86Machine

ROBIN_IRVINE = ('J. S. Robin and C. E. Irvine, "Analysis of the Intel Pentium\'s Ability to Support a Secure '
                'Virtual Machine Monitor", USENIX Security Symposium, 2000')
ROBIN_IRVINE_LIST = {  # quoted
    "sensitive register instructions": ("SGDT", "SIDT", "SLDT", "SMSW", "PUSHF", "POPF"),
    "protection system references": ("LAR", "LSL", "VERR", "VERW", "POP", "PUSH", "CALL", "JMP", "INT n", "RET",
                                     "STR", "MOV to/from segment registers"),
}
CODE, STACK = 0x1000, 0x9_0000


@dataclass(frozen=True)
class Sensitive:
    """A sensitive instruction, the kind of sensitivity, and why."""

    text: str  # as the probe kernel writes it
    kind: str  # "control" or "behaviour"
    why: str

    @property
    def mnemonic(self) -> str:
        return self.text.split()[0]


SENSITIVE = (
    Sensitive("cli", "control", "clears IF: interrupts stop being taken"),
    Sensitive("sti", "control", "sets IF"),
    Sensitive("popfd", "control", "loads EFLAGS, IF and IOPL among them"),
    Sensitive("pushfd", "behaviour", "stores EFLAGS: shows IF and IOPL as they really are"),
    Sensitive("lgdt [0x7100]", "control", "replaces the table that defines every segment"),
    Sensitive("sgdt [0x8000]", "behaviour", "shows where the real GDT is"),
    Sensitive("lidt [0x7108]", "control", "replaces the interrupt table"),
    Sensitive("sidt [0x8000]", "behaviour", "shows where the real IDT is"),
    Sensitive("ltr ax", "control", "loads the task register"),
    Sensitive("str ax", "behaviour", "shows the real task register"),
    Sensitive("mov cr0, eax", "control", "sets protection, paging and FPU control"),
    Sensitive("smsw ax", "behaviour", "shows CR0's low half (protection on, FPU state)"),
    Sensitive("hlt", "control", "stops the processor"),
)


@dataclass(frozen=True)
class Row:
    instruction: Sensitive
    privileged: bool  # measured: it raised #GP at ring 3

    def __str__(self) -> str:
        trap = "traps (#GP)" if self.privileged else "does NOT trap"
        return f"{self.instruction.text:<15} {self.instruction.kind + '-sensitive':<21} at ring 3 {trap:<14} " \
               f"({self.instruction.why})"


def traps_at_ring3(text: str) -> bool:
    """Run `text` once at ring 3 (IOPL 0), then hlt: did the instruction itself raise #GP?"""
    setup = assemble("mov ax, 0x30", CODE)  # a selector, for ltr
    machine = X86Machine()
    machine.write(CODE, setup + assemble(f"{text}; hlt", CODE + len(setup)))
    machine.write(STACK, bytes(8))  # something for popfd to pop
    traps: list[Trap] = []

    def stop(trap: Trap) -> bool:
        traps.append(trap)
        return False

    machine.start_ring3(CODE, STACK)
    machine.run(stop, max_insns=100)
    return bool(traps) and traps[0].vector == GP and traps[0].eip == CODE + len(setup)


def classify() -> list[Row]:
    """Each sensitive instruction of the probe kernel, with whether it is privileged (measured)."""
    return [Row(s, traps_at_ring3(s.text)) for s in SENSITIVE]


def sensitive_but_unprivileged(rows: list[Row]) -> list[str]:
    """The instructions that break Theorem 1's condition: sensitive, yet silent at ring 3."""
    return [r.instruction.mnemonic for r in rows if not r.privileged]


def table(rows: list[Row] | None = None) -> str:
    rows = classify() if rows is None else rows
    silent = sensitive_but_unprivileged(rows)
    verdict = (f"sensitive but not privileged: {', '.join(silent)} -- the sensitive set is not inside the "
               "privileged set, so Theorem 1's condition fails on x86" if silent else
               "every sensitive instruction traps: Theorem 1's condition holds")
    listed = "; ".join(f"{group}: {', '.join(names)}" for group, names in ROBIN_IRVINE_LIST.items())
    return "\n".join([*map(str, rows), "", verdict, "",
                      f"the whole Pentium, by Robin and Irvine (published; {ROBIN_IRVINE}; quoted): {listed}"])
