"""The physical machine as a picture and as a table, both read off a live `Board`.

    +-----+      +-----------------------------------------------------------------------+
    | CPU |======| bus: flash 0x0000_0000 | GIC 0x0800_0000 | UART 0x0900_0000 | RAM 0x4000_0000 |
    +-----+      +-----------------------------------------------------------------------+
     |   ^ IRQ from the GIC
    generic timer (system registers, not on the bus) --PPI 27, PPI 30--> GIC

Every address and size shown comes from `board.regions`, so a board built
with a different RAM size draws a different picture; nothing is typed in here.
What QEMU's `virt` board has and vlab's does not model is listed beside it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import graphviz

from vlab.machine.board import NOT_MODELLED, Board
from vlab.machine.gic import GICC_BASE, GICD_BASE, PHYSICAL_TIMER_PPI, VIRTUAL_TIMER_PPI
from vlab.machine.timer import FREQUENCY_HZ
from vlab.viz.diagram import Diagram

_KIND_ACCESS = {
    "rom": "read + execute (the guest cannot write it)",
    "ram": "read + write + execute",
    "device": "device registers (MMIO): each access reaches a device model",
}
_KIND_COLOUR = {"rom": "#e8e8e8", "ram": "#d8ecd8", "device": "#fbe3c8"}


def address(value: int) -> str:
    """An address the way the course writes it: 0x4000_0000 (halves of 16 bits)."""
    return f"0x{value >> 16:04x}_{value & 0xFFFF:04x}" if value < 1 << 32 else f"{value:#_x}"


def size(value: int) -> str:
    """A size in the largest binary unit that divides it exactly: 128 MiB, 4 KiB, 12 bytes."""
    for unit, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if value >= unit and value % unit == 0:
            return f"{value // unit} {name}"
    return f"{value} bytes"


@dataclass(frozen=True)
class MapRow:
    """One line of the memory map: a region, where it starts and ends, and what it is."""

    name: str
    base: int
    end: int  # last byte, inclusive
    size: int
    kind: str
    access: str
    device: str  # the device model's class name for MMIO regions, else ""


@dataclass(frozen=True)
class MemoryMap:
    """The board's physical address map, in address order; prints as text, renders as HTML."""

    rows: tuple[MapRow, ...]

    def __str__(self) -> str:
        head = f"{'region':<7} {'base':<12} {'end':<12} {'size':>8}  what"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            what = f"{r.device}: {r.access}" if r.device else r.access
            lines.append(f"{r.name:<7} {address(r.base):<12} {address(r.end):<12} {size(r.size):>8}  {what}")
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><td>{html.escape(r.name)}</td><td><code>{address(r.base)}</code></td>"
            f"<td><code>{address(r.end)}</code></td><td>{size(r.size)}</td>"
            f"<td>{html.escape((r.device + ': ') if r.device else '')}{html.escape(r.access)}</td></tr>"
            for r in self.rows
        )
        return ("<table><thead><tr><th>region</th><th>base</th><th>end</th><th>size</th><th>what</th></tr>"
                f"</thead><tbody>{cells}</tbody></table>")


def _devices(board: Board) -> dict[int, str]:
    """The board's MMIO device models, by base address."""
    names = {GICD_BASE: "GICv2 distributor", GICC_BASE: "GICv2 CPU interface"}
    return {device.base: names.get(device.base, type(device).__name__) for device in board.devices}


def not_modelled() -> str:
    """What QEMU's virt board has at addresses where vlab's has nothing, one line each."""
    return "\n".join(f"{address(base)}  {name}: {what}" for base, name, what in NOT_MODELLED)


def memory_map(board: Board) -> MemoryMap:
    """The board's regions as a table: name, base, last byte, size, how the guest may use it."""
    devices = _devices(board)
    rows = []
    for r in sorted(board.regions, key=lambda region: region.base):
        device = devices[r.base] if r.kind == "device" and r.base in devices else ""
        rows.append(MapRow(r.name, r.base, r.base + r.size - 1, r.size, r.kind, _KIND_ACCESS[r.kind], device))
    return MemoryMap(tuple(rows))


def _region_label(row: MapRow) -> str:
    title = f"{row.name} ({row.device})" if row.device else row.name
    return f"{title}\n{address(row.base)} .. {address(row.end)}\n{size(row.size)}, {row.kind}"


def board_diagram(board: Board) -> Diagram:
    """Graphviz picture of the board: the CPU and its timer, and every region on the bus at its address."""
    g = graphviz.Digraph("board", graph_attr={
        "rankdir": "LR", "fontname": "Helvetica", "labelloc": "t",
        "label": "One machine, one owner: the kernel running on this CPU drives all of it",
    }, node_attr={"fontname": "Helvetica", "shape": "box", "style": "rounded,filled", "fillcolor": "white"},
        edge_attr={"fontname": "Helvetica", "fontsize": "11"})
    g.node("cpu", "CPU\nAArch64 core\n(Unicorn)", fillcolor="#cfe0f5")
    g.node("timer", f"generic timer\nCNTFRQ_EL0 = {FREQUENCY_HZ / 1e6:g} MHz\nsystem registers, no bus address",
           fillcolor="#e6dcf3")
    g.edge("cpu", "timer", label="MRS/MSR CNT*", dir="both", style="dashed")
    g.node("bus", "system bus\n(physical addresses)", shape="cds", fillcolor="#f5f5f5")
    g.edge("cpu", "bus", label="loads, stores,\ninstruction fetch", penwidth="2")
    table = memory_map(board)
    for row in table.rows:
        g.node(f"region_{row.name}", _region_label(row), fillcolor=_KIND_COLOUR[row.kind])
        g.edge("bus", f"region_{row.name}", label=address(row.base))
    # The interrupt wires: the timer's outputs into the GIC, the GIC's IRQ line into the CPU.
    g.edge("timer", "region_gicd", label=f"PPI {VIRTUAL_TIMER_PPI}, PPI {PHYSICAL_TIMER_PPI}", color="#a0522d")
    g.edge("region_gicc", "cpu", label="IRQ", color="#a0522d")
    # What QEMU virt has besides, in the regions' column (names only: the text lists what each is).
    g.node("absent", "QEMU virt also has, not modelled here:\\l" +
           "".join(f"{address(base)}  {name}\\l" for base, name, _ in NOT_MODELLED), shape="note", fillcolor="#f5f5f5")
    g.edge("bus", "absent", style="dotted", arrowhead="none")
    absent = not_modelled()
    text = (f"CPU (+ generic timer, {FREQUENCY_HZ / 1e6:g} MHz, through system registers; its interrupts "
            f"reach the CPU through the GIC) on a bus to:\n")
    return Diagram(g, text + str(table) + "\n\nQEMU virt also has, not modelled here:\n" + absent)
