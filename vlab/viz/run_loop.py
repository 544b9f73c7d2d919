"""The hypervisor's run loop, drawn from the code that runs it: the VM's dispatch table, the two
paths an exit can take (vlab.hyp.pcpu), and, after a run, how many exits took each.

    guest runs natively --exit--> ESR_EL2.EC? --> handler --> served in place: the guest goes on
                                                          \\-> needs the run loop: block, inject,
                                                              power off... then the scheduler picks
    the run loop also injects the virtual timer's interrupt (IRQ) before a vCPU runs again

Each handler box is an entry of `vm.handlers`: replace a handler (a student's) and the picture
changes with it.
"""

from __future__ import annotations

from collections import Counter

import graphviz

from vlab.arch.esr import ExceptionClass
from vlab.hyp.exits import IN_PLACE, RUN_LOOP
from vlab.hyp.handlers import DEFAULT_HANDLERS
from vlab.hyp.pcpu import SERVED_IN_PLACE
from vlab.hyp.vm import VM
from vlab.viz.diagram import Diagram


_ABORTS = (ExceptionClass.DABT_LOWER, ExceptionClass.IABT_LOWER)


def _name(handler) -> str:
    return getattr(handler, "__name__", type(handler).__name__)


def run_loop_diagram(vm: VM) -> Diagram:
    """The run loop with one branch per exception class the VM's dispatch table handles, each
    labelled with how many of the VM's logged exits were served in place and how many in the loop."""
    served = Counter((record.kind, record.served) for record in vm.trap_log)
    g = graphviz.Digraph("run_loop", graph_attr={"rankdir": "LR", "fontname": "Helvetica", "size": "13,8"},
                         node_attr={"fontname": "Helvetica", "shape": "box", "style": "rounded,filled",
                                    "fillcolor": "#f4f4f4"},
                         edge_attr={"fontname": "Helvetica", "fontsize": "10"})
    g.node("guest", "guest runs natively\n(vCPU loaded on a\nphysical CPU, EL1/EL0)", fillcolor="#d8ecd8")
    g.node("exit", "exit to EL2\nread ESR_EL2.EC", shape="diamond", fillcolor="#ffd866")
    g.node("place", "served in place:\nthe emulator never stopped", fillcolor="#d8ecd8")
    g.node("loop", "the run loop: block, inject,\nhalt; the scheduler picks,\nworld switch", fillcolor="#e8e0f4")
    g.node("irq", "IRQ: the virtual timer fired\ninject it at VBAR_EL1+0x280", fillcolor="#e8e0f4")
    g.edge("guest", "exit", label=" a trap ")
    lines = ["guest runs natively -> exit to EL2 (ESR_EL2.EC) -> handler -> served in place, or the run loop",
             "dispatch table (exits logged in place / in the run loop):"]
    for ec, handler in vm.handlers.items():
        node = f"h{int(ec):02x}"
        counts = (served[ec.name, IN_PLACE], served[ec.name, RUN_LOOP])
        g.node(node, f"EC {int(ec):#04x} {ec.name}\n{_name(handler)}()\n{counts[0]} in place, {counts[1]} loop")
        g.edge("exit", node)
        if ec in SERVED_IN_PLACE and (ec not in _ABORTS or handler is DEFAULT_HANDLERS[ec]):
            g.edge(node, "place", style="solid" if counts[0] or not any(counts) else "dotted")
        g.edge(node, "loop", style="solid" if counts[1] or not any(counts) else "dotted")
        lines.append(f"  EC {int(ec):#04x} {ec.name:<12} -> {_name(handler):<26} {counts[0]:>6} in place "
                     f"{counts[1]:>6} run loop")
    irqs = served["IRQ", RUN_LOOP]
    lines.append(f"  IRQ (virtual timer)    -> injected by the run loop     {irqs:>6}")
    g.edge("loop", "irq", label=f" {irqs} ")
    g.edge("place", "guest", style="dashed", constraint="false")
    g.edge("loop", "guest", style="dashed", constraint="false", label=" ERET ")
    g.edge("irq", "guest", style="dashed", constraint="false")
    return Diagram(g, "\n".join(lines))
