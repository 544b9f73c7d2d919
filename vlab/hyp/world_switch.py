"""A world switch: what a hypervisor saves and restores when a physical CPU changes vCPU.

A vCPU is not an engine but a saved context (vlab.hyp.vcpu). Loading one onto a physical CPU
saves the outgoing vCPU's state, restores the incoming one's, and points stage 2 at the incoming
VM (its VTTBR_EL2, with the VMID that keeps TLB entries apart). `STATE` lists, as data a notebook
can print, the architectural state that moves; `ARM_MINIMUM` is the minimum Arm's virtualization
guide gives for a VM <-> hypervisor switch (../shared/REFERENCES.md, checked).

vlab moves the whole emulated core at once with Unicorn's context save and restore (about 1 us
each, measured; the saved context is QEMU's entire CPU state, a superset of this list), then
programs the EL2 registers of the incoming VM, which in vlab are the physical CPU's settings for
the incoming vCPU: its VM's trap controls, stage-2 root and VMID, and the identity registers.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlab.machine.gic_virt import WORLD_SWITCH_REGISTERS


@dataclass(frozen=True)
class StateGroup:
    """Registers of one kind that a world switch moves, and why the guest needs them kept."""

    kind: str
    registers: tuple[str, ...]
    bits: int  # width of each register
    why: str

    @property
    def bytes(self) -> int:
        return len(self.registers) * self.bits // 8


STATE: tuple[StateGroup, ...] = (
    StateGroup("general-purpose", tuple(f"x{i}" for i in range(31)), 64, "the program's working values"),
    StateGroup("control", ("pc", "pstate", "sp_el0", "sp_el1", "elr_el1", "spsr_el1"), 64,
               "where it runs, at which level, on which stack; how to return from its own exceptions"),
    StateGroup("SIMD and floating point", tuple(f"v{i}" for i in range(32)), 128,
               "vector registers (any compiled code may use them)"),
    StateGroup("floating-point control", ("fpcr", "fpsr"), 32, "rounding mode and sticky flags"),
    StateGroup("EL1 system registers", (
        "SCTLR_EL1", "TTBR0_EL1", "TTBR1_EL1", "TCR_EL1", "MAIR_EL1", "AMAIR_EL1", "VBAR_EL1",
        "CONTEXTIDR_EL1", "TPIDR_EL1", "TPIDR_EL0", "TPIDRRO_EL0", "ESR_EL1", "FAR_EL1", "PAR_EL1",
        "AFSR0_EL1", "AFSR1_EL1", "CPACR_EL1", "ACTLR_EL1", "CNTKCTL_EL1"), 64,
               "the guest kernel's own MMU, vectors, fault state and thread pointers"),
    StateGroup("virtual timer", ("CNTV_CTL_EL0", "CNTV_CVAL_EL0", "CNTVOFF_EL2"), 64,
               "the guest's timer keeps counting and firing while it is not running"),
    StateGroup("EL2 settings for the incoming vCPU", ("HCR_EL2", "VTTBR_EL2", "VPIDR_EL2", "VMPIDR_EL2"), 64,
               "its VM's trap controls, stage-2 tables and VMID, the identity it reads"),
    # vlab.hyp.vgic: the VM's distributor stays where it is, in the hypervisor's memory
    StateGroup("GIC virtual CPU interface", WORLD_SWITCH_REGISTERS, 32,
               "the interrupts it has in flight (list registers), its GICV_CTLR/PMR/BPR, its active priorities"),
    StateGroup("physical interrupt state", ("GICD_ISACTIVER0[27]",), 1,
               "the virtual timer's PPI, still active until the guest completes the virtual one"),
)

# Arm, "Learn the architecture - AArch64 virtualization": the minimum a switch between a VM and
# the hypervisor saves (checked; REFERENCES.md).
ARM_MINIMUM = "31 general-purpose registers, 32 128-bit vector registers and SP_EL0/SP_EL1: about 33 LDP/STP pairs"


def table() -> str:
    """The state a world switch moves, one line per kind, with the total."""
    lines = [f"{g.kind:<36} {len(g.registers):3} x {g.bits:3} bits  {g.why}" for g in STATE]
    total = sum(len(g.registers) for g in STATE)
    lines.append(f"{'in all':<36} {total:3} registers, {sum(g.bytes for g in STATE):,} bytes")
    lines.append(f"Arm's minimum for a VM <-> hypervisor switch: {ARM_MINIMUM}")
    return "\n".join(lines)
