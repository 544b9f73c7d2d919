"""A cycle model of the structures' exits: the state each path moves, times a cost per register.

    cycles(path) = transitions x TRANSITION  +  general-purpose registers moved x GPR
                   +  system registers moved x SYSREG      (EL1 state, timer, GIC interface, EL2 controls)

It is a model of real hardware, not a measurement of vlab. The counts are the paths' (vlab.hyp.type1,
type2, vhe: from Arm's list of switched state and from KVM's and Xen's code). GPR = 1 cycle is an
assumption (a register stored or loaded, two to an STP/LDP); TRANSITION and SYSREG are fitted so
that the model gives the hypercall figures Dall et al. published for Xen ARM and KVM ARM (ISCA
2016) -- figures recalled, not checked (../shared/REFERENCES.md), so every number here is "about".
The model then predicts what it was not fitted to: VHE's hypercall (ATC 2017 reports "an order of
magnitude" for the VHE redesign, checked) and the I/O paths, where it falls short by the software
it leaves out (dom0's kernel and backend, QEMU). Shown beside vlab's measurements, never mixed.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlab.data.published import HYPERCALL, IO_AND_SWITCH, PublishedCost
from vlab.hyp.structure import Path

GPR_CYCLES = 1.0  # assumed


@dataclass(frozen=True)
class Costs:
    """Cycles per transition (an exception to EL2, or a return from it), per general-purpose
    register and per system register moved."""

    transition: float
    gpr: float
    sysreg: float


def _terms(path: Path) -> tuple[int, int, int]:
    """(transitions, general-purpose registers moved, system registers moved) along `path`."""
    moved = path.moved()
    gprs = moved.get("general-purpose", 0)
    return path.transitions, gprs, sum(moved.values()) - gprs


def cycles(path: Path | None, costs: Costs) -> float:
    """The model's cycles for one exit along `path` (None: an access that makes no exit -- 0)."""
    if path is None:
        return 0.0
    transitions, gprs, sysregs = _terms(path)
    return transitions * costs.transition + gprs * costs.gpr + sysregs * costs.sysreg


def published(operation: str, platform: str) -> PublishedCost:
    return next(c for c in HYPERCALL + IO_AND_SWITCH if c.operation == operation and c.platform == platform)


def fit() -> Costs:
    """TRANSITION and SYSREG such that the hypercall paths of type 1 and of type 2 without VHE give
    the published Xen ARM and KVM ARM hypercalls exactly (GPR assumed)."""
    from vlab.hyp import type1, type2  # the paths whose published cost fixes the parameters

    (a1, g1, s1), c1 = _terms(type1.HYPERVISOR_PATH), published("hypercall", "Xen ARM").cycles
    (a2, g2, s2), c2 = _terms(type2.KERNEL_PATH), published("hypercall", "KVM ARM").cycles
    r1, r2 = c1 - g1 * GPR_CYCLES, c2 - g2 * GPR_CYCLES
    determinant = a1 * s2 - a2 * s1
    return Costs((r1 * s2 - r2 * s1) / determinant, GPR_CYCLES, (a1 * r2 - a2 * r1) / determinant)


@dataclass(frozen=True)
class Comparison:
    """One line of the model against a published figure: what was fitted, and what was predicted."""

    what: str
    modelled: float
    figure: PublishedCost | None
    fitted: bool

    def text(self) -> str:
        against = f"published about {self.figure.cycles:,}" if self.figure else "no published figure"
        kind = "fitted to it" if self.fitted else "predicted"
        return f"{self.what:<40} model about {self.modelled:>7,.0f} cycles   {against:<24} ({kind})"


def comparisons(costs: Costs | None = None) -> list[Comparison]:
    """The model's hypercalls and console writes for the three structures, beside what Dall et al.
    published for them (the I/O figure: KVM's vhost, Xen's dom0 backend)."""
    from vlab.hyp import type1, type2, vhe

    costs = costs or fit()
    return [
        Comparison("type 1 hypercall (Xen ARM)", cycles(type1.HYPERVISOR_PATH, costs),
                   published("hypercall", "Xen ARM"), True),
        Comparison("type 2 hypercall (KVM ARM, no VHE)", cycles(type2.KERNEL_PATH, costs),
                   published("hypercall", "KVM ARM"), True),
        Comparison("VHE hypercall", cycles(vhe.KERNEL_PATH, costs), None, False),
        Comparison("type 1 I/O through dom0", cycles(type1.DOM0_PATH, costs),
                   published("I/O latency out", "Xen ARM"), False),
        Comparison("type 2 I/O in the kernel", cycles(type2.IN_KERNEL_DEVICE, costs),
                   published("I/O latency out", "KVM ARM"), False),
        Comparison("type 2 I/O through the VMM", cycles(type2.VMM_PATH, costs), None, False),
    ]


def report(costs: Costs | None = None) -> str:
    """The fitted parameters, the comparisons, and how VHE's predicted gain compares with ATC 2017's."""
    from vlab.data.published import DALL_2017, VHE_CLAIM
    from vlab.hyp import type2, vhe

    costs = costs or fit()
    gain = cycles(type2.KERNEL_PATH, costs) / cycles(vhe.KERNEL_PATH, costs)
    lines = [f"model: a transition about {costs.transition:,.0f} cycles, a system register about "
             f"{costs.sysreg:,.0f} (both fitted), a general-purpose register {costs.gpr:g} (assumed)"]
    lines += [c.text() for c in comparisons(costs)]
    lines.append(f"VHE's hypercall: {gain:.0f}x cheaper than split mode's in the model; {DALL_2017} "
                 f"reports {VHE_CLAIM} for the VHE redesign (checked: its abstract)")
    lines.append(f"published figures: {HYPERCALL[0].source} (recalled: shown as 'about')")
    return "\n".join(lines)
