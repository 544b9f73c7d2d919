"""The hypervisor's run loop, drawn from its real dispatch table.

    guest runs natively --exit--> ESR_EL2.EC? --> handler --> resume the guest

Each handler box is an entry of `vm.handlers`: replace a handler (a student's) and the
picture changes with it.
"""

from __future__ import annotations

import graphviz

from vlab.hyp.vm import VM
from vlab.viz.diagram import Diagram


def _name(handler) -> str:
    return getattr(handler, "__name__", type(handler).__name__)


def run_loop_diagram(vm: VM) -> Diagram:
    """The run loop with one branch per exception class the VM's dispatch table handles."""
    g = graphviz.Digraph("run_loop", graph_attr={"rankdir": "LR", "fontname": "Helvetica"},
                         node_attr={"fontname": "Helvetica", "shape": "box", "style": "rounded,filled",
                                    "fillcolor": "#f4f4f4"},
                         edge_attr={"fontname": "Helvetica", "fontsize": "10"})
    g.node("guest", "guest runs natively\n(vCPU at EL1/EL0)", fillcolor="#d8ecd8")
    g.node("exit", "exit to EL2\nread ESR_EL2.EC", shape="diamond", fillcolor="#ffd866")
    g.node("resume", "resume the guest\n(ERET to ELR_EL2)", fillcolor="#d8ecd8")
    g.edge("guest", "exit", label=" a trap ")
    lines = ["guest runs natively -> exit to EL2 (ESR_EL2.EC) -> handler -> resume the guest", "dispatch table:"]
    for ec, handler in vm.handlers.items():
        node = f"h{int(ec):02x}"
        g.node(node, f"EC {int(ec):#04x} {ec.name}\n{_name(handler)}()")
        g.edge("exit", node)
        g.edge(node, "resume")
        lines.append(f"  EC {int(ec):#04x} {ec.name:<12} -> {_name(handler)}")
    g.edge("resume", "guest", style="dashed", constraint="false")
    return Diagram(g, "\n".join(lines))
