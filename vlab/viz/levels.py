"""Exception levels EL0-EL3: who runs where, and how control moves between them.

    EL3  firmware (secure monitor)      ^ SMC
    EL2  hypervisor                     ^ HVC          exceptions go up,
    EL1  OS kernel                      ^ SVC          ERET comes back down
    EL0  user programs

A higher level is more privileged: it controls the resources the levels below
it use, and the only ways up are exceptions (a call instruction, an interrupt,
a fault). `levels_diagram(current_el=...)` marks where the CPU is now;
`board_levels(board)` does that for a live board.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import graphviz

from vlab.machine.board import Board
from vlab.viz.diagram import Diagram


@dataclass(frozen=True)
class Level:
    """One exception level: its number, who usually runs there, and how software calls up into it."""

    el: int
    runs: str
    examples: str
    called_with: str  # the instruction a lower level uses to ask this one for a service; "" for EL0


# A type 2 hypervisor straddles two levels on Armv8.0: KVM's host Linux runs at EL1 and only its
# world-switch code at EL2; Armv8.1's VHE lets the host kernel, and KVM with it, run at EL2
# (Dall et al., ISCA 2016; REFERENCES.md).
LEVELS: tuple[Level, ...] = (
    Level(3, "firmware (secure monitor)", "Trusted Firmware-A: PSCI power control", "SMC"),
    Level(2, "hypervisor", "Xen; KVM's world switch (with VHE: KVM and its host Linux)", "HVC"),
    Level(1, "OS kernel", "Linux, the kernels in vlab/guests; KVM's host Linux without VHE", "SVC"),
    Level(0, "user programs", "applications", ""),
)

# What runs at each level on vlab's bare board in chapter 1 (no hypervisor yet).
BARE_BOARD: Mapping[int, str] = MappingProxyType({
    3: "vlab's board answers PSCI calls (HVC/SMC #0) itself",
    2: "nothing yet: chapter 2 puts a hypervisor here",
    1: "the guest kernel: hello.S, the kernel half of syscall.S",
    0: "the user program in syscall.S (user_main)",
})

# Chapter 2: the same guest kernel, now inside a VM under vlab's hypervisor.
IN_A_VM: Mapping[int, str] = MappingProxyType({
    3: "firmware: answers an SMC unless the hypervisor traps it (HCR_EL2.TSC)",
    2: "vlab's hypervisor (Python): handles every exit, emulates, resumes the guest",
    1: "the guest kernel, deprivileged: it still runs at EL1, but EL2 decides what traps",
    0: "the guest's user programs, exactly as before",
})

_HIGHLIGHT, _PLAIN = "#ffd866", "#f4f4f4"


def levels_text(current_el: int | None = None, here: Mapping[int, str] | None = None) -> str:
    """The levels as a few lines of text, the current one marked with '=>'."""
    lines = []
    for level in LEVELS:
        mark = "=>" if level.el == current_el else "  "
        call = f"  (entered with {level.called_with})" if level.called_with else ""
        lines.append(f"{mark} EL{level.el}  {level.runs} -- e.g. {level.examples}{call}")
        if here and level.el in here:
            lines.append(f"          on this board: {here[level.el]}")
    return "\n".join(lines)


def levels_diagram(current_el: int | None = None, here: Mapping[int, str] | None = None) -> Diagram:
    """EL3 (top) to EL0 (bottom) with the calls that climb and the ERETs that return; `current_el` is highlighted."""
    g = graphviz.Digraph("levels", graph_attr={
        "rankdir": "TB", "fontname": "Helvetica", "labelloc": "b",
        "label": "red: calls and other exceptions climb; blue: ERET returns to the level below"},
                         node_attr={"fontname": "Helvetica", "shape": "box", "style": "rounded,filled", "width": "4.2"},
                         edge_attr={"fontname": "Helvetica", "fontsize": "11"})
    for level in LEVELS:
        label = f"EL{level.el}: {level.runs}\ne.g. {level.examples}"
        if here and level.el in here:
            label += f"\non this board: {here[level.el]}"
        current = level.el == current_el
        if current:
            label += "\n<< the CPU is here >>"
        g.node(f"el{level.el}", label, fillcolor=_HIGHLIGHT if current else _PLAIN, penwidth="3" if current else "1")
    # Exceptions take the CPU up one level (or more); ERET takes it back down.
    for lower, upper in zip(LEVELS[1:], LEVELS[:-1]):
        g.edge(f"el{lower.el}", f"el{upper.el}", label=f" {upper.called_with} ", color="#b03030",
               constraint="false")
        g.edge(f"el{upper.el}", f"el{lower.el}", label=" ERET ", color="#3050b0", style="dashed")
    return Diagram(g, levels_text(current_el, here))


def board_levels(board: Board, here: Mapping[int, str] = BARE_BOARD) -> Diagram:
    """The levels diagram with the board's current exception level (PSTATE.EL) highlighted."""
    return levels_diagram(board.cpu.el, here)
