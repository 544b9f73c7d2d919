"""An interrupt's path, read off what vlab did in a run: on the board, and in a VM with its exits.

    board = Board(); load(board, GUESTS["ticks"].image()); board.run()
    path = board_path(board)          # the first timer interrupt the guest took
    vm = VM.from_image(GUESTS["ticks"].image()); vm.run()
    path = vm_path(vm)                # the same interrupt, virtualized
    print(path); path.diagram()

Each step is taken from the run's own records -- the exceptions the core took, the GIC accesses
traced (`mmio_trace`, and in a VM `gicv_trace` for those the hardware served), the trap log --
so the ticks, the INTIDs and the list register shown are what happened, not a script.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import graphviz

from vlab.machine.board import Board, MmioAccess
from vlab.machine.entry import ExceptionTaken
from vlab.machine.gic import VIRTUAL_TIMER_PPI
from vlab.viz.diagram import Diagram

EXIT, NO_EXIT, HARDWARE = "exit", "no exit", ""  # what a step costs the hypervisor
_COLOUR = {EXIT: "#f4c7c3", NO_EXIT: "#d8ecd8", HARDWARE: "#e8e8e8"}


@dataclass(frozen=True)
class Step:
    """One thing that happened on the interrupt's way, at host tick `tick`."""

    tick: int
    actor: str
    what: str
    cost: str  # EXIT, NO_EXIT (a guest access the hardware served), HARDWARE (no guest access)

    def __str__(self) -> str:
        mark = f"  [{self.cost}]" if self.cost else ""
        return f"[{self.tick:>8}] {self.actor:<11} {self.what}{mark}"


@dataclass(frozen=True)
class InterruptPath:
    """The steps of one interrupt, and the run's counts: what exited, what the hardware served."""

    where: str
    steps: tuple[Step, ...]
    exits: dict[str, int]
    without_exits: dict[str, int]
    distributor_exits: int

    def __str__(self) -> str:
        lines = [f"one virtual timer interrupt, {self.where}:"] + [f"  {s}" for s in self.steps]
        return "\n".join(lines + ["", self.counts()])

    def counts(self) -> str:
        """The whole run's interrupt-controller traffic: the exits that remain, those the GIC removes."""
        if self.where == "on the board":
            return "on the board nothing exits: there is no hypervisor"
        irqs = self.exits.get("IRQ", 0)
        served = sum(self.without_exits.values())
        names = ", ".join(f"{n} {name}" for name, n in sorted(self.without_exits.items()))
        return (f"exits that remain: {self.distributor_exits} distributor accesses (GICD_*, emulated) and "
                f"{irqs} physical interrupts taken by the hypervisor\n"
                f"exits the hardware removes: {served} accesses to the GIC CPU interface served by GICV "
                f"({names or 'none'})")

    def diagram(self) -> Diagram:
        """The steps left to right, coloured by what each cost: an exit, an access without one, hardware."""
        g = graphviz.Digraph("interrupt", graph_attr={"rankdir": "LR", "fontname": "Helvetica", "labelloc": "t",
                                                      "label": f"One virtual timer interrupt, {self.where}"},
                             node_attr={"fontname": "Helvetica", "shape": "box", "style": "rounded,filled",
                                        "fontsize": "11"})
        for n, step in enumerate(self.steps):
            label = f"{step.actor}\n{_wrap(step.what)}\ntick {step.tick}" + (f"\n({step.cost})" if step.cost else "")
            g.node(f"s{n}", label, fillcolor=_COLOUR[step.cost])
            if n:
                g.edge(f"s{n - 1}", f"s{n}")
        return Diagram(g, str(self))

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"


def _wrap(text: str, width: int = 28) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join(lines + [line])


def _list_register(action: str) -> str:
    """"GICH_LRn = value" from the trap log's line for the physical interrupt."""
    found = re.search(r"GICH_LR\d+ = 0x[0-9a-f]+", action)
    return found.group(0) if found else "a list register"


def _irq_entries(taken) -> list[ExceptionTaken]:
    return [e for e in taken if e.vector.name == "IRQ"]


def _first_after(trace, register: str, tick: int) -> MmioAccess | None:
    return next((a for a in trace if a.register == register and a.tick >= tick), None)


def board_path(board: Board, n: int = 0) -> InterruptPath:
    """The `n`-th IRQ the board's guest took, from the timer to its GICC_EOIR."""
    entries = _irq_entries(board.exceptions_taken)
    if len(entries) <= n:
        raise ValueError(f"the guest took {len(entries)} interrupts: there is no interrupt {n}")
    entry = entries[n]
    iar = _first_after(board.mmio_trace, "GICC_IAR", entry.tick)
    eoir = _first_after(board.mmio_trace, "GICC_EOIR", iar.tick) if iar else None
    steps = [
        Step(entry.tick, "timer, GIC", f"the virtual timer fires: PPI {VIRTUAL_TIMER_PPI} pending in the "
                                      "distributor, which signals IRQ to the CPU", HARDWARE),
        Step(entry.tick, "CPU", f"takes the IRQ at VBAR_EL1 + {entry.vector_address & 0x7FF:#x}", HARDWARE),
    ]
    if iar is not None:
        steps.append(Step(iar.tick, "guest", f"reads GICC_IAR = {iar.value}: acknowledged, pending -> active", HARDWARE))
    if eoir is not None:
        steps.append(Step(eoir.tick, "guest", f"writes GICC_EOIR = {eoir.value}: completed, active -> inactive",
                          HARDWARE))
    return InterruptPath("on the board", tuple(steps), {}, {}, 0)


def vm_path(vm, n: int = 0, vcpu: int = 0) -> InterruptPath:
    """The `n`-th virtual timer interrupt vCPU `vcpu` of `vm` took: the exit, the list register, the
    guest's vector, its GICV_IAR and GICV_EOIR (served by the hardware: no exits)."""
    exits = [r for r in vm.trap_log if r.kind == "IRQ" and r.vcpu == vcpu and "PPI 27" in r.action]
    entries = _irq_entries(vm.vcpus[vcpu].entry.taken)
    if len(exits) <= n or len(entries) <= n:
        raise ValueError(f"vCPU{vcpu} took {min(len(exits), len(entries))} virtual timer interrupts: "
                         f"there is no interrupt {n}")
    exit, entry = exits[n], next(e for e in entries if e.tick >= exits[n].tick)
    iar = _first_after(vm.gicv_trace, "GICV_IAR", entry.tick)
    eoir = _first_after(vm.gicv_trace, "GICV_EOIR", iar.tick) if iar else None
    steps = [
        Step(exit.tick, "timer, GIC", f"the virtual timer fires: physical PPI {VIRTUAL_TIMER_PPI}, which goes "
                                     "to the hypervisor (HCR_EL2.IMO)", HARDWARE),
        Step(exit.tick, "hypervisor", "takes it (GICC_IAR; priority dropped, it stays active) and writes "
                                      f"{_list_register(exit.action)}: virtual IRQ 27, HW", EXIT),
        Step(entry.tick, "guest", f"takes the virtual IRQ at VBAR_EL1 + {entry.vector_address & 0x7FF:#x}", HARDWARE),
    ]
    if iar is not None:
        steps.append(Step(iar.tick, "guest", f"reads GICV_IAR = {iar.value}: the list register goes pending -> active",
                          NO_EXIT))
    if eoir is not None:
        steps.append(Step(eoir.tick, "guest", f"writes GICV_EOIR = {eoir.value}: the list register goes invalid, and "
                                              "HW = 1 deactivates the physical PPI 27", NO_EXIT))
    distributor = sum(1 for a in vm.mmio_trace if a.device == "gicd")
    return InterruptPath("in a VM", tuple(steps), dict(vm.exits), dict(vm.gicv_accesses), distributor)
