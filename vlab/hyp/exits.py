"""An exit: one trip from the guest to the hypervisor, as the hardware reports it at EL2.

On a trap to EL2 the CPU fills ESR_EL2 (exception class and syndrome), ELR_EL2
(where the guest stopped), FAR_EL2 (the faulting virtual address, for aborts) and
HPFAR_EL2 (the faulting IPA, for stage-2 aborts). An `Exit` is those registers,
decoded, plus the instruction text for people to read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from vlab.arch.esr import ExceptionClass, Syndrome
from vlab.asm import disassemble_one


@dataclass(frozen=True)
class Exit:
    """One exit of one vCPU.

    `address` is the instruction that caused it; `return_address` is ELR_EL2, where
    the guest resumes unless the handler moves it: the next instruction after an
    HVC (which completed), the trapping instruction itself after a trap (which did
    not -- the handler emulates it and skips it with `vcpu.skip(exit)`).
    """

    syndrome: Syndrome
    address: int
    return_address: int
    word: int | None  # the instruction's encoding (None: no memory there)
    vcpu: int
    el: int  # the guest's exception level when it exited (0 or 1)
    far: int | None = None
    ipa: int | None = None  # the faulting intermediate physical address (stage-2 aborts)

    @property
    def instruction(self) -> str:
        """The instruction, disassembled (on demand: an exit on the fast path never pays for it)."""
        if self.word is None:
            return "(no memory)"
        return disassemble_one(self.word.to_bytes(4, "little"), self.address).text

    @property
    def ec(self) -> ExceptionClass:
        return self.syndrome.ec

    @property
    def hpfar(self) -> int | None:
        """HPFAR_EL2: FIPA (IPA[47:12]) in bits [43:4]."""
        return None if self.ipa is None else (self.ipa >> 12) << 4

    def fields(self) -> dict[str, int]:
        return self.syndrome.fields()

    def describe(self) -> str:
        """One line: where, what, and the decoded syndrome."""
        text = f"vCPU{self.vcpu} EL{self.el} {self.address:#x} `{self.instruction}`: {self.syndrome.describe()}"
        if self.ipa is not None:
            text += f" IPA={self.ipa:#x}"
        return text


# Where the hypervisor served an exit. KVM serves most exits in the kernel and returns to its
# user-space loop only for what it cannot; vlab does the same inside Unicorn's hooks:
IN_PLACE = "in place"  # served inside the hook: the emulator never stopped
RUN_LOOP = "run loop"  # the vCPU's run returned to the hypervisor's loop (a world switch, a block, power-off...)


class TrapRecord(NamedTuple):
    """A line of the trap log: when, which exit (None for an interrupt), what the hypervisor did, where.
    (A named tuple: one is made for every exit, and a frozen dataclass costs several times more.)"""

    tick: int
    vcpu: int
    kind: str  # the exception-class name, or "IRQ"
    exit: Exit | None
    action: str
    served: str = RUN_LOOP  # IN_PLACE or RUN_LOOP

    def __str__(self) -> str:
        where = f"{self.exit.address:#x} {self.exit.instruction:<24}" if self.exit else f"{'':<35}"
        return f"[{self.tick:>8}] vCPU{self.vcpu} {self.kind:<10} {where} {self.served:<8} -> {self.action}"
