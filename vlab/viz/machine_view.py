"""What a machine widget shows, computed from a Board: plain values, text and HTML, no widgets.

A `MachineView` is a snapshot -- registers, PSTATE decoded, the exception
registers of EL1, the code around PC, the UART console and the exceptions
taken -- so the same numbers can be printed in a terminal, tested, or drawn
by a widget (`machine_widget.py`, and later the trap widget).

PSTATE is shown the way SPSR_ELx stores it (Arm ARM C5.2.19):

    31 30 29 28          9 8 7 6        4   3  2   1  0
    [N][Z][C][V]  ...   [D][A][I][F]   [nRW][ EL ] [0][SP]
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Iterable

from vlab.arch.esr import Syndrome
from vlab.machine.board import Board, ExceptionTaken
from vlab.viz.code_map import CodeMap, listing

# What the vector table's four groups of 0x200 bytes are for (Arm ARM D1.10.2).
_VECTOR_GROUPS = {0x000: "current EL, SP_EL0", 0x200: "current EL, SP_ELx",
                  0x400: "lower EL, AArch64", 0x600: "lower EL, AArch32"}
EL1_EXCEPTION_REGISTERS = ("VBAR_EL1", "ESR_EL1", "ELR_EL1", "SPSR_EL1", "FAR_EL1")
_MONO = 'style="font-family:monospace;font-size:12px"'
CONSOLE_LIMIT = 4000  # characters of UART output a view keeps (the end of it)


@dataclass(frozen=True)
class PState:
    """A PSTATE (or SPSR_ELx) value with its fields named."""

    value: int

    @property
    def el(self) -> int:
        return (self.value >> 2) & 3

    @property
    def sp(self) -> int:
        """0: the level uses SP_EL0 ("t"), 1: its own SP_ELx ("h")."""
        return self.value & 1

    @property
    def mode(self) -> str:
        """The architectural mode name: EL0t, EL1t, EL1h, ..."""
        return f"EL{self.el}{'h' if self.sp else 't'}"

    @property
    def nzcv(self) -> str:
        """Condition flags, upper case when set: e.g. 'nZCv'."""
        return "".join(c if self.value >> bit & 1 else c.lower() for c, bit in zip("NZCV", (31, 30, 29, 28)))

    @property
    def daif(self) -> str:
        """Exception masks, upper case when masked: e.g. 'DAIF' for all masked."""
        return "".join(c if self.value >> bit & 1 else c.lower() for c, bit in zip("DAIF", (9, 8, 7, 6)))

    def __str__(self) -> str:
        return f"{self.mode} {self.nzcv} {self.daif}"


@dataclass(frozen=True)
class CodeLine:
    """One row near PC: its address, the instruction (or data) there, its source line, any label on it."""

    address: int
    word: int | None  # the first 4 bytes; None where there is no memory
    text: str
    source: str = ""
    label: str = ""
    current: bool = False
    data: bool = False  # data (a literal, a string, padding), not an instruction


@dataclass(frozen=True)
class ExceptionRow:
    """One exception the board delivered to the guest kernel, explained."""

    tick: int
    from_el: int
    vector_address: int
    offset: int  # from VBAR_EL1
    group: str
    kind: str
    return_address: int
    syndrome: Syndrome | None

    @classmethod
    def of(cls, record: ExceptionTaken) -> ExceptionRow:
        # VBAR_EL1 is 2 KiB aligned (bits [10:0] RES0), so the offset is the low 11 bits.
        offset = record.vector_address & 0x7FF
        return cls(record.tick, record.from_el, record.vector_address, offset, _VECTOR_GROUPS[offset & 0x600],
                   record.vector.name, record.return_address, record.syndrome)

    def __str__(self) -> str:
        what = self.syndrome.describe() if self.syndrome else "(no syndrome: asynchronous)"
        return (f"[{self.tick:>7}] EL{self.from_el} -> EL1: {what}; vector VBAR_EL1+{self.offset:#05x} "
                f"({self.group}, {self.kind}) = {self.vector_address:#x}; return to ELR {self.return_address:#x}")


@dataclass(frozen=True)
class MachineView:
    """A snapshot of the board for display."""

    registers: dict[str, int]
    pstate: PState
    system: dict[str, int]  # EL1_EXCEPTION_REGISTERS
    code: tuple[CodeLine, ...]
    console: str
    exceptions: tuple[ExceptionRow, ...]
    instructions: int
    status: str

    @classmethod
    def of(cls, board: Board, code_map: CodeMap | None = None, status: str = "",
           before: int = 4, after: int = 8, max_exceptions: int = 8) -> MachineView:
        """Read everything a widget shows from the board (and what the code map knows of its bytes)."""
        registers = board.cpu.registers()
        records = list(board.exceptions_taken)[-max_exceptions:]
        return cls(
            registers=registers,
            pstate=PState(registers["pstate"]),
            system={name: board.cpu.read_sysreg(name) for name in EL1_EXCEPTION_REGISTERS},
            code=tuple(code_around(board, registers["pc"], code_map, before, after)),
            console=board.uart.text[-CONSOLE_LIMIT:],
            exceptions=tuple(ExceptionRow.of(r) for r in records),
            instructions=board.cpu.instructions,
            status=status,
        )

    @property
    def el(self) -> int:
        return self.pstate.el

    # --- text ------------------------------------------------------------------

    def registers_text(self, changed: Iterable[str] = ()) -> str:
        """The registers in rows of four; a `*` after each value the last action changed (as the HTML view
        shades them)."""
        changed, regs = set(changed), self.registers

        def cell(name: str, width: int) -> str:
            return f"{name:<3} {regs[name]:0{width}x}{'*' if name in changed else ' '}"

        rows = [" ".join(cell(f"x{i}", 16) for i in range(r, min(r + 4, 31))).rstrip() for r in range(0, 31, 4)]
        rows.append(f"{cell('sp', 16)} {cell('pc', 16)} {cell('pstate', 8)}= {self.pstate}")
        if changed & set(regs):
            rows.append("(* = changed by the last step or run)")
        return "\n".join(rows)

    def system_text(self) -> str:
        s = self.system
        # At reset ESR_EL1 reads 0, which would decode as EC 0x00 "unknown reason": no exception happened.
        esr = "no exception taken yet" if not self.exceptions and not s["ESR_EL1"] else _describe_esr(s["ESR_EL1"])
        return (f"VBAR_EL1 {s['VBAR_EL1']:#x}  ELR_EL1 {s['ELR_EL1']:#x}  "
                f"SPSR_EL1 {s['SPSR_EL1']:#x} = {PState(s['SPSR_EL1'])}  FAR_EL1 {s['FAR_EL1']:#x}\n"
                f"ESR_EL1 {s['ESR_EL1']:#010x} = {esr}")

    def code_text(self) -> str:
        lines = []
        for c in self.code:
            if c.label:
                lines.append(f"{c.label}:")
            mark = "=>" if c.current else "  "
            source = f"| {c.source}" if c.source else ""
            lines.append(f"{mark} {c.address:#010x}  {c.text:<26}{source}".rstrip())
        return "\n".join(lines)

    def exceptions_text(self) -> str:
        return "\n".join(str(e) for e in self.exceptions) or "(none yet)"

    def text(self, changed: Iterable[str] = ()) -> str:
        """Everything, as plain text: what a terminal or a text export shows (`changed` registers marked)."""
        return "\n".join([
            f"EL{self.el} ({self.pstate.mode}), {self.instructions:,} instructions retired"
            + (f" -- {self.status}" if self.status else ""),
            "registers:", self.registers_text(changed), self.system_text(),
            "code:", self.code_text(),
            "UART console:", self.console or "(empty)",
            "exceptions taken:", self.exceptions_text(),
        ])

    # --- HTML (for the widget) ----------------------------------------------------

    def registers_html(self, changed: Iterable[str] = ()) -> str:
        changed = set(changed)
        cells = []
        for name in [f"x{i}" for i in range(31)] + ["sp", "pc"]:
            style = ' style="background:#ffe9a8"' if name in changed else ""
            cells.append(f"<td{style}><b>{name}</b>&nbsp;{self.registers[name]:016x}</td>")
        rows = "".join("<tr>" + "".join(cells[i:i + 3]) + "</tr>" for i in range(0, len(cells), 3))
        p = self.pstate
        style = ' style="background:#ffe9a8"' if "pstate" in changed else ""
        rows += (f'<tr><td colspan="3"{style}><b>pstate</b>&nbsp;{p.value:08x} = <b>{p.mode}</b> '
                 f"(EL{p.el}) flags {p.nzcv} masks {p.daif}</td></tr>")
        system = html.escape(self.system_text()).replace("\n", "<br>")
        return f"<table {_MONO}>{rows}</table><div {_MONO}>{system}</div>"

    def code_html(self) -> str:
        rows = []
        for c in self.code:
            if c.label:
                rows.append(f'<tr><td colspan="3" style="color:#5060a0">{html.escape(c.label)}:</td></tr>')
            style = ' style="background:#ffd866;font-weight:bold"' if c.current else ""
            what = ' style="color:#8a6100"' if c.data else ""  # data, shown as the directive that made it
            rows.append(f"<tr{style}><td>{'&#9654;' if c.current else ''} {c.address:#010x}</td>"
                        f"<td{what}>{html.escape(c.text)}</td><td style=\"color:#808080\">{html.escape(c.source)}</td></tr>")
        return f"<table {_MONO}>{''.join(rows)}</table>"

    def console_html(self) -> str:
        body = html.escape(self.console) if self.console else '<span style="color:#808080">(nothing printed yet)</span>'
        return ('<pre style="background:#202020;color:#e0e0e0;padding:6px;min-height:2em;margin:0">'
                f"{body}</pre>")

    def exceptions_html(self) -> str:
        if not self.exceptions:
            return '<span style="color:#808080">(no exception taken yet)</span>'
        items = "".join(f"<li><code>{html.escape(str(e))}</code></li>" for e in self.exceptions)
        return f"<ol style=\"margin:0\">{items}</ol>"


def _describe_esr(esr: int) -> str:
    try:
        return Syndrome.from_esr(esr).describe()
    except ValueError as e:  # a class vlab does not name: still show the raw value
        return str(e)


def code_around(board: Board, pc: int, code_map: CodeMap | None = None,
                before: int = 4, after: int = 8) -> list[CodeLine]:
    """The rows from `before` words ahead of PC to `after` words past it, within one memory region:
    instructions disassembled, and what the code map knows to be data shown as data."""
    code_map = code_map or CodeMap()
    region = board.region_at(pc, 4)
    if region is None or region.kind == "device":
        return [CodeLine(pc, None, "(no memory here: the CPU cannot fetch from this address)", current=True)]
    start = max(region.base, pc - 4 * before)
    end = min(region.base + region.size, pc + 4 * (after + 1))
    # The window holds whole values: an 8-byte literal cut in two would show as bytes.
    if (span := code_map.span_at(start)) is not None and span.unit > 1:
        start = max(region.base, start - (start - span.address) % span.unit)
    if (span := code_map.span_at(end - 1)) is not None and span.unit > 1:
        end = min(region.base + region.size, end + -(end - span.address) % span.unit)
    data = board.read_memory(start, end - start)
    lines, shown = [], None
    for row in listing(data, start, code_map, keep=pc):
        line = code_map.line_at(row.address)
        source = line.text.strip() if line is not None and line is not shown else ""  # once per source line
        shown = line
        lines.append(CodeLine(row.address, int.from_bytes(data[row.address - start:row.address - start + 4], "little"),
                              row.text, source, code_map.labels.get(row.address, ""), row.address == pc, row.data))
    return lines
