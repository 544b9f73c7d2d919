"""Pictures of the three hypervisor structures: their layer stacks, and an exit's path step by step.

    layer_stacks()                    type 1 (with dom0), type 2, type 2 with VHE, side by side
    path_diagram(path, lit=3)         the path's steps, the first three lit, the third as "now"

Both are drawn from the structures' own data (each structure's `layers`, each Path's steps), so a
change to a path shows here. At most 1,000 pt wide, for a projector.
"""

from __future__ import annotations

import html

import graphviz

from vlab.hyp.hypervisors import STRUCTURES, structure_class
from vlab.hyp.structure import Path
from vlab.viz.diagram import Diagram

FONT = "Helvetica"
# a layer's colour, by what it is
COLOURS = {"hardware": "#d9d9d9", "guest": "#d8ecd8", "dom0": "#fde2c8", "VMM": "#e8e0f4", "kernel": "#cfe2f3",
           "EL2": "#ffe699"}
LIT, NOW, DARK = "#ffd866", "#f4a300", "#eeeeee"


def _colour(layer: str) -> str:
    for word, colour in COLOURS.items():
        if word in layer:
            return colour
    return COLOURS["EL2"]  # the hypervisor itself: Xen, KVM's EL2 part


def layer_stacks() -> Diagram:
    """The three structures' layers, bottom (the hardware) to top (the guests), one column each."""
    g = graphviz.Digraph("layers", graph_attr={"rankdir": "BT", "fontname": FONT, "nodesep": "0.15",
                                               "ranksep": "0.08", "size": "13,6"},
                         node_attr={"fontname": FONT, "shape": "box", "style": "filled", "width": "2.6",
                                    "fontsize": "12"},
                         edge_attr={"style": "invis"})
    lines = []
    for name in STRUCTURES:
        cls = structure_class(name)
        with g.subgraph(name=f"cluster_{name}") as c:
            c.attr(label=cls.title.split(" (")[0], fontname=FONT, fontsize="13", style="rounded", color="#999999")
            nodes = [f"{name}_{i}" for i in range(len(cls.layers))]
            for node, layer in zip(nodes, cls.layers):
                c.node(node, layer, fillcolor=_colour(layer))
            for below, above in zip(nodes, nodes[1:]):
                c.edge(below, above)
        lines.append(f"{cls.title}: " + " / ".join(cls.layers) + " (bottom to top)")
    return Diagram(g, "\n".join(lines))


def path_diagram(path: Path, lit: int | None = None) -> Diagram:
    """The steps of `path`, top to bottom, each in its layer's colour with what it saves and restores;
    with `lit`, steps 1..lit are lit and step `lit` is the current one, the later ones greyed."""
    lit = len(path.steps) if lit is None else lit
    g = graphviz.Digraph("path", graph_attr={"rankdir": "TB", "fontname": FONT, "ranksep": "0.12", "size": "10,12",
                                             "label": f"{path.structure}: {path.route} ({path.world_switches} world "
                                                      f"switches)", "labelloc": "t"},
                         node_attr={"fontname": FONT, "shape": "box", "style": "rounded,filled", "fontsize": "11",
                                    "width": "6.5"},
                         edge_attr={"arrowsize": "0.6"})
    g.node("exit", "the guest exits (a trap to EL2)", shape="plaintext", style="")
    previous = "exit"
    for i, step in enumerate(path.steps, 1):
        node = f"s{i}"
        moves = []
        if step.saved:
            moves.append("saves " + ", ".join(m.text() for m in step.saved))
        if step.restored:
            moves.append("restores " + ", ".join(m.text() for m in step.restored))
        label = f"<b>{i}. {html.escape(step.layer)}</b>" + ("  [world switch]" if step.world_switch else "")
        label += f"<br/>{html.escape(step.action)}"
        label += "".join(f'<br/><font point-size="9">{html.escape(m)}</font>' for m in moves)
        colour = NOW if i == lit else _colour(step.layer) if i < lit else DARK
        g.node(node, f"<{label}>", fillcolor=colour, penwidth="2.5" if i == lit else "1",
               fontcolor="black" if i <= lit else "#888888")
        g.edge(previous, node)
        previous = node
    text = path.text() + ("" if lit >= len(path.steps) else f"\n(lit: steps 1..{lit})")
    return Diagram(g, text)
