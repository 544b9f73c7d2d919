"""A core's IRQ input: the interrupt controller asserts it, and the core takes the IRQ by itself.

Unicorn's core has no interrupt inputs, but it has the architecture's virtual IRQ: with
HCR_EL2.IMO set, HCR_EL2.VI makes an IRQ pending, and the core takes it to EL1 as the Arm ARM
says a pending IRQ is taken -- as soon as PSTATE.I is clear: at once, or right after the
`msr daifclr` or the ERET that unmasks it; and a WFI does not wait while one is pending, masked
or not. For a guest at EL1 or EL0 that is the same exception as a physical IRQ (the same vector,
ELR_EL1 and SPSR_EL1; ISR_EL1.I shows it), so vlab drives both the board's line (from its GIC)
and a vCPU's (from the GICV its physical CPU hands it, as the hardware's virtual CPU interface
drives the core's virtual IRQ) through it, and no Python runs between the unmask and the vector.

The core enters the vector without telling anyone, so the line watches the first instruction
of each IRQ vector of the current VBAR_EL1 while it is asserted, and reports each entry
(`on_taken`): the guest's log of exceptions taken, and the guard against broken vector tables,
need it. An entry is a visit to that instruction with the line asserted, coming from where IRQs
were unmasked (SPSR_EL1.I = 0). A vector that branches to itself can only be entered once (the
core cannot leave it by itself): it is not watched again while the core sits on it.
"""

from __future__ import annotations

from typing import Callable

from unicorn import UC_HOOK_CODE

HCR_RW, HCR_IMO, HCR_VI = 1 << 31, 1 << 4, 1 << 7
# The IRQ entries of a vector table: from EL1 using SP_EL0, from EL1 using SP_EL1, from EL0 in
# AArch64. (From EL0 in AArch32, +0x680, never happens: vlab runs AArch64 only.)
IRQ_VECTORS = (0x080, 0x280, 0x480)
_PSTATE_I = 1 << 7
_BRANCH_TO_SELF = 0x1400_0000  # `b .`


class IrqLine:
    """The IRQ input of `cpu` (a vlab.machine.cpu.CPU). `on_taken(vector_address, return_address,
    from_el)` is called, from inside the run, each time the core takes the IRQ."""

    def __init__(self, cpu, on_taken: Callable[[int, int, int], None] | None = None):
        self.cpu = cpu
        self.on_taken = on_taken
        self.asserted = False
        self._held = False  # another context (a type-2 host kernel's) is on the core: see hold()
        self._hooks: dict[int, int] = {}  # vector address -> its Unicorn hook
        self._vbar: int | None = None  # the vector table those hooks watch

    def set(self, asserted: bool) -> None:
        """The controller drives the line (from anywhere, a device callback included)."""
        if asserted != self.asserted:
            self.asserted = asserted
            if not self._held:
                self.sync()

    def hold(self) -> None:
        """Another context is loaded on the core (a host kernel's, between a guest's exit and its
        return): the line is remembered, not written into that context, until `release()`."""
        self._held = True

    def release(self) -> None:
        """The guest's context is back on the core: its line goes in."""
        self._held = False
        self.sync()

    def sync(self) -> None:
        """Write the line into the core's HCR_EL2 and watch the vectors VBAR_EL1 now names. Before
        every run: the core's state may have been replaced by a saved context (a world switch, a
        type-2 host kernel's) that carries another vCPU's HCR_EL2."""
        cpu = self.cpu
        cpu.write_sysreg("HCR_EL2", HCR_RW | (HCR_IMO | HCR_VI if self.asserted else 0))
        if self.asserted:
            self._watch(cpu.read_sysreg("VBAR_EL1") & ~0x7FF)

    def _watch(self, vbar: int) -> None:
        if vbar == self._vbar and len(self._hooks) == len(IRQ_VECTORS):
            return
        self._vbar = vbar
        wanted = {vbar + offset for offset in IRQ_VECTORS}
        uc, pc = self.cpu.uc, self.cpu.pc
        for address in [a for a in self._hooks if a not in wanted]:
            uc.hook_del(self._hooks.pop(address))
        for address in wanted - self._hooks.keys():
            if address == pc and self.cpu.read_word(address) == _BRANCH_TO_SELF:
                continue  # the core sits in a vector it cannot leave: it will not be entered again
            self._hooks[address] = uc.hook_add(UC_HOOK_CODE, self._on_vector, None, address, address + 3)
            self.cpu.invalidate_code(address)  # code translated before the hook would not call it

    def _on_vector(self, uc, address: int, _size: int, _user) -> None:
        cpu = self.cpu
        try:
            spsr = cpu.read_sysreg("SPSR_EL1")
            if not self.asserted or spsr & _PSTATE_I:
                return  # not an IRQ entry: a branch here, or IRQs were masked where it came from
            if cpu.read_word(address) == _BRANCH_TO_SELF:
                uc.hook_del(self._hooks.pop(address))  # it will spin here: one entry, and no call per spin
            if self.on_taken is not None:
                self.on_taken(address, cpu.read_sysreg("ELR_EL1"), (spsr >> 2) & 3)
        except Exception as e:  # noqa: BLE001 - reported as a stop, never raised into Unicorn
            cpu.report_hook_error(f"recording an IRQ taken: {type(e).__name__}: {e}")
