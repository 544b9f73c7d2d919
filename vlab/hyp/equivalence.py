"""Popek and Goldberg's equivalence, checkable: does a guest end the same on the bare board and in a VM?

`guest_state(machine)` and `ram_of(machine)` are everything the guest itself can observe
at the end of a run -- its registers, the EL1 system registers it owns, its RAM -- for a
`Board` or a VM's boot vCPU alike. `differences(bare, virtual)` names what differs; an empty list means
the VM was, for this guest, indistinguishable from the machine (timing aside).
"""

from __future__ import annotations

from dataclasses import dataclass

from vlab.arch.hcr import HCR
from vlab.hyp.vcpu import VCpu
from vlab.hyp.vm import VM
from vlab.machine.board import Board, RunResult
from vlab.machine.loader import Image, load

# The EL1 state a guest kernel owns and can read back: what a hypervisor must keep per vCPU.
GUEST_VISIBLE_SYSREGS = (
    "SCTLR_EL1", "TTBR0_EL1", "TTBR1_EL1", "TCR_EL1", "MAIR_EL1", "AMAIR_EL1", "VBAR_EL1",
    "CONTEXTIDR_EL1", "TPIDR_EL1", "TPIDR_EL0", "TPIDRRO_EL0", "ESR_EL1", "FAR_EL1", "ELR_EL1",
    "SPSR_EL1", "SP_EL0", "CPACR_EL1", "CNTKCTL_EL1", "PAR_EL1",
)


def guest_state(machine: Board | VCpu) -> dict[str, int]:
    """The registers and guest-visible system registers of a board or a vCPU (RAM: see `ram_of`)."""
    core = machine.cpu if isinstance(machine, Board) else machine
    state = dict(core.registers())
    state.update({name: core.read_sysreg(name) for name in GUEST_VISIBLE_SYSREGS})
    return state


def ram_of(machine: Board | VCpu) -> bytes:
    """The whole of a board's or a VM's RAM, as the guest sees it."""
    return machine.read_memory(machine.ram.base, machine.ram.size)


def differences(bare: Board, virtual: Board | VCpu) -> list[str]:
    """'name: bare value != VM value' for every piece of guest-visible state that differs."""
    a, b = guest_state(bare), guest_state(virtual)
    found = [f"{name}: {_show(a[name])} != {_show(b[name])}" for name in a if a[name] != b[name]]
    ram_a, ram_b = ram_of(bare), ram_of(virtual)
    if ram_a != ram_b:  # compared whole (a memcmp), and only then located: the common case is cheap
        differing = [i for i, (x, y) in enumerate(zip(ram_a, ram_b)) if x != y]
        found.append(f"RAM: {len(differing)} differing byte{'s' if len(differing) > 1 else ''}, "
                     f"the first at {bare.ram.base + differing[0]:#x}")
    return found


def _show(value: int) -> str:
    return f"{value:#x}"


@dataclass(frozen=True)
class Comparison:
    """One guest run on the bare board and in a VM: how each ended, and what differed."""

    bare: RunResult
    virtual: RunResult
    differences: list[str]

    @property
    def equivalent(self) -> bool:
        return not self.differences and self.bare.uart == self.virtual.uart


def compare(image: Image, traps: HCR, ram_size: int = 0x40_0000, max_insns: int = 2_000_000) -> Comparison:
    """Run `image` on a bare board and in a VM with `traps`, then compare what the guest can observe."""
    bare = Board(ram_size=ram_size)
    load(bare, image)
    bare_result = bare.run(max_insns=max_insns)
    vm = VM.from_image(image, traps=traps, ram_size=ram_size)
    vm_result = vm.run(max_insns=max_insns)
    return Comparison(bare_result, vm_result, differences(bare, vm.vcpus[0]))
