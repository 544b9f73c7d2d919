"""Two-dimensional address translation, drawn as the nested-paging literature draws it: a grid.

    setup = NestedSetup(guest_levels=4, stage2_levels=4)
    t = setup.translate(0x5678)
    walk_diagram(setup.grid(t))     # 24 numbered references in a 5 x 5 grid, less its corner

                  stage 2 L0  L1  L2  L3 | guest's read
    guest L0 (IPA)         1   2   3   4 |  5           each row: the stage-2 walk of the IPA
    guest L1 (IPA)         6   7   8   9 | 10           on its left (orange, left to right);
    guest L2 (IPA)        11  12  13  14 | 15           the last column: the guest's own walk
    guest L3 (IPA)        16  17  18  19 | 20           (blue, top to bottom); the corner is
    output IPA            21  22  23  24 | PA           the result, not a reference

With n guest levels and m stage-2 levels the grid is (n+1) x (m+1) cells, one of them the
result: (n+1)(m+1) - 1 references (Bhargava et al., ASPLOS 2008). A walk that faults stops
where it stopped: the fault is named in its cell and the cells it never reached stay empty.

`NestedSetup` builds real tables in a small host memory: a guest stage-1 tree (in IPA space)
and the hypervisor's stage-2 tree that places each guest page somewhere in the host.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import graphviz

from vlab.mmu.descriptors import LEVEL_SHIFT, Leaf, Table, decode
from vlab.mmu.faults import Fault
from vlab.mmu.memory import BufferMemory
from vlab.mmu.tables import PAGE, FrameAllocator, TableBuilder
from vlab.mmu.walk import Access, Reference, Regime, Translation, nested_walk, walk
from vlab.viz.diagram import Diagram

# T0SZ for 1..4 guest levels (1 needs FEAT_TTST's small tables), (T0SZ, SL0) for 1..4 stage-2 levels
GUEST_T0SZ = {1: 44, 2: 34, 3: 25, 4: 16}
STAGE2_VTCR = {1: (40, 3), 2: (30, 0), 3: (25, 1), 4: (16, 2)}
FIRST_VA = 0x5000  # where NestedSetup's guest maps its pages
# Stage-2 MemAttr for RAM: Normal, Inner and Outer Write-Back Cacheable (0b1111), as real VMs map it
# (Linux KVM, and vlab's own VMs); 0b0000 would be Device-nGnRnE.
NORMAL_MEMORY = 0b1111


class NestedSetup:
    """A guest with `guest_levels` of stage-1 tables under `stage2_levels` of stage 2, mapping `pages` pages."""

    def __init__(self, guest_levels: int = 4, stage2_levels: int = 4, pages: int = 4, seed: int = 1):
        self.host = BufferMemory(0, 0x100_0000)
        frames = FrameAllocator(0x1_0000, 0xFF_0000, seed)
        self.stage1 = Regime.stage1(GUEST_T0SZ[guest_levels])
        self.stage2 = Regime.stage2(*STAGE2_VTCR[stage2_levels])
        self.s2_tables = TableBuilder(self.host, self.stage2, frames)
        self._host_frames = frames
        self.s1_tables = TableBuilder(_GuestPhysical(self), self.stage1, FrameAllocator(0x10_0000, 0x10_0000))
        self.data = [self.s1_tables.frames.allocate() for _ in range(pages)]
        self.mapped = (FIRST_VA, FIRST_VA + pages * PAGE)  # the guest VAs that translate [start, end)
        for i, ipa in enumerate(self.data):
            self.s1_tables.map(FIRST_VA + i * PAGE, ipa, PAGE)
            self.backing(ipa)

    def backing(self, ipa: int) -> int:
        """The host address behind an IPA, giving its page a (scattered) host frame on first use."""
        page = ipa & ~(PAGE - 1)
        if self.s2_tables.page(page) is None:
            self.s2_tables.map(page, self._host_frames.allocate(), PAGE, ap=3, attr=NORMAL_MEMORY)
        return walk(self.host, self.stage2, self.s2_tables.root, ipa).output

    def translate(self, va: int, access: Access = Access.READ) -> Translation:
        return nested_walk(self.host, self.stage1, self.s1_tables.root, self.stage2, self.s2_tables.root, va, access)

    def grid(self, t: Translation) -> WalkGrid:
        """A walk of this setup's tables, laid out as rows (guest levels, output) and columns (stage-2 levels)."""
        return WalkGrid.of(t, self.stage1, self.stage2, self.s1_tables.root)

    @property
    def expected_references(self) -> int:
        n, m = self.stage1.levels, self.stage2.levels
        return (n + 1) * (m + 1) - 1


class _GuestPhysical:
    """The guest's view of its own 'physical' memory: IPAs, backed through stage 2."""

    def __init__(self, setup: NestedSetup):
        self.setup = setup

    def contains(self, address: int, length: int = 8) -> bool:
        return True

    def read64(self, ipa: int) -> int:
        return self.setup.host.read64(self.setup.backing(ipa))

    def write64(self, ipa: int, value: int) -> None:
        self.setup.host.write64(self.setup.backing(ipa), value)



GUEST = "guest"  # the grid's last column: the guest's own descriptor read
_FILL = {1: "#cfe2f3", 2: "#fde0c5", "fault": "#f4c7c3", "result": "#d8ecd8", "empty": "#ffffff"}


@dataclass(frozen=True)
class Cell:
    """One cell of the grid: the reference made there (numbered in walk order), or none; a fault named there."""

    number: int | None = None
    reference: Reference | None = None
    fault: Fault | None = None


@dataclass(frozen=True)
class Row:
    """One stage-2 walk and what it was for: a guest table level (then the guest's read), or the output."""

    title: str  # "guest L0", ..., "output"
    ipa: int | None  # the IPA this row's stage-2 walk translates (None: the walk never got that far)
    cells: dict[int | str, Cell]  # by stage-2 level, and GUEST for the guest's read (guest rows only)


@dataclass(frozen=True)
class WalkGrid:
    """A nested walk laid out in two dimensions: rows for the guest levels and the output, columns for stage 2."""

    translation: Translation
    columns: tuple[int | str, ...]  # the stage-2 levels, then GUEST (when there is a guest stage)
    rows: tuple[Row, ...]

    @classmethod
    def of(cls, t: Translation, stage1: Regime | None, stage2: Regime | None, ttbr: int) -> WalkGrid:
        """Place each of `t`'s references: a stage-2 read in its level's column of the current row, a guest
        read in the last column, after which the next row begins. `stage1` None: the guest's MMU is off
        (one row); `stage2` None: no stage 2 (one column). `ttbr` is the guest's TTBR0_EL1."""
        placed: dict[tuple[int, int | str], Cell] = {}
        guest_levels, row = [], 0
        for number, r in enumerate(t.references, start=1):
            placed[(row, r.level if r.stage == 2 else GUEST)] = Cell(number, r)
            if r.stage == 1:
                guest_levels.append(r.level)
                row += 1
        if stage1 is not None:  # a walk that stopped before its leaf: the levels it would have gone on to
            last = placed.get((row - 1, GUEST))
            if last is None or not isinstance(decode(last.reference.value, last.reference.level, 1), Leaf):
                guest_levels += range(guest_levels[-1] + 1 if guest_levels else stage1.start_level, 4)
        if t.fault is not None:
            where = _fault_cell(t, placed, row, stage2)
            reached = placed.get(where, Cell())
            placed[where] = Cell(reached.number, reached.reference, t.fault)
        columns = (*range(stage2.start_level, 4),) if stage2 else ()
        rows = []
        for i, level in enumerate(guest_levels):
            index = (t.input >> LEVEL_SHIFT[level]) & ((1 << stage1.index_bits(level)) - 1)
            table = ttbr & ~(stage1.start_table_bytes - 1) if i == 0 else _next_table(placed.get((i - 1, GUEST)))
            rows.append(Row(f"guest L{level}", None if table is None else table + 8 * index,
                            {c: placed.get((i, c), Cell()) for c in (*columns, GUEST)}))
        stage1_done = stage1 is None or t.ok or (t.fault.stage == 2 and not t.fault.s1ptw)
        output = t.input if stage1 is None else _output_ipa(t.input, placed.get((len(guest_levels) - 1, GUEST)))
        rows.append(Row("output", output if stage1_done else None,
                        {c: placed.get((len(guest_levels), c), Cell()) for c in columns}))
        return cls(t, (*columns, GUEST) if stage1 else columns, tuple(rows))

    @property
    def size(self) -> tuple[int, int]:
        """(rows, columns): their product less one (the result's corner) is what a full walk reads."""
        return len(self.rows), len(self.columns)

    def text(self) -> str:
        """The grid as text (the numbers in walk order, X where it faulted), then every reference listed."""
        header = f"{'':<12}" + "".join(f"{_column_title(c, short=True):>7}" for c in self.columns)
        lines = [_outcome(self.translation), header]
        for row in self.rows:
            shown = "".join(f"{_cell_text(row.cells.get(c), self.translation):>7}" for c in self.columns)
            lines.append(f"{row.title:<12}{shown}".rstrip())
        if self.translation.fault is not None:
            lines.append(f"X: {self.translation.fault}")
        lines += [f"{i:>2}. stage {r.stage} L{r.level}  read {r.address:#010x} -> {r.value:#018x}  ({r.purpose})"
                  for i, r in enumerate(self.translation.references, start=1)]
        return "\n".join(lines)


def _fault_cell(t: Translation, placed: dict, row: int, stage2: Regime | None) -> tuple[int, int | str]:
    """Where the walk stopped: the cell of the read that found the problem, else the cell it could not read."""
    fault, last = t.fault, (t.references[-1] if t.references else None)
    if last is not None and (last.stage, last.level) == (fault.stage, fault.level):
        return next(key for key, cell in placed.items() if cell.reference is last)
    if fault.stage == 1:
        return row, GUEST
    walked = [level for (r, level) in placed if r == row and level != GUEST]
    return row, (max(walked) + 1 if walked else stage2.start_level)


def _next_table(cell: Cell | None) -> int | None:
    """The next table's IPA, from the guest descriptor read in the row above (None if it was not read)."""
    if cell is None or cell.reference is None:
        return None
    descriptor = decode(cell.reference.value, cell.reference.level, 1)
    return descriptor.address if isinstance(descriptor, Table) else None


def _output_ipa(va: int, cell: Cell | None) -> int | None:
    """The IPA the guest's leaf descriptor gives the VA."""
    if cell is None or cell.reference is None:
        return None
    leaf = decode(cell.reference.value, cell.reference.level, 1)
    return leaf.output | (va & (leaf.size - 1)) if isinstance(leaf, Leaf) else None


def _outcome(t: Translation) -> str:
    result = f"VA {t.input:#x} -> PA {t.output:#x}" if t.ok else f"VA {t.input:#x}: {_fault_name(t.fault)}"
    return f"{len(t.references)} memory references; {result}"


def _fault_name(fault: Fault) -> str:
    return f"stage-{fault.stage} {fault.kind.name.lower().replace('_', ' ')} fault, level {fault.level}"


def _column_title(column: int | str, short: bool = False) -> str:
    if column == GUEST:
        return "guest" if short else "guest's own read"
    return f"S2 L{column}" if short else f"stage 2 L{column}"


def _cell_text(cell: Cell | None, t: Translation) -> str:
    """A cell in the text grid: its number, X for the fault, . for a cell the walk never reached."""
    if cell is None:  # the output row's last column: the result
        return "PA" if t.ok else ""
    if cell.fault is not None:
        return f"{cell.number or ''}X"
    return str(cell.number or ".")


def walk_diagram(grid: WalkGrid) -> Diagram:
    """The grid as a picture: numbered cells with the address each read, stage 2 orange, the guest blue,
    the result green, the fault red, cells the walk never reached empty."""
    t = grid.translation
    head = "".join(f'<TD BORDER="0"><B>{_column_title(c)}</B></TD>' for c in grid.columns)
    rows = [f'<TR><TD BORDER="0"></TD>{head}</TR>']
    for row in grid.rows:
        where = "" if row.ipa is None else f'<BR/><FONT POINT-SIZE="10">IPA {row.ipa:#x}</FONT>'
        cells = "".join(_cell_html(row.cells.get(c), t) for c in grid.columns)
        rows.append(f'<TR><TD BORDER="0" ALIGN="RIGHT">{html.escape(row.title)}{where}</TD>{cells}</TR>')
    n, m = len(grid.rows) - 1, len(grid.columns) - 1
    caption = [_outcome(t), "each row: a stage-2 walk (→)", "last column: the guest's own walk (↓)"]
    if t.ok and grid.size == (n + 1, m + 1):
        caption.append(f"({n}+1)({m}+1) − 1 = {(n + 1) * (m + 1) - 1} references")
    label = f'<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="3" CELLPADDING="5">{"".join(rows)}</TABLE>>'
    g = graphviz.Digraph("walk", graph_attr={"fontname": "Helvetica", "labelloc": "b", "fontsize": "12",
                                             "label": "\\n".join(caption)},
                         node_attr={"fontname": "Helvetica", "fontsize": "12", "shape": "plaintext"})
    g.node("grid", label)
    return Diagram(g, grid.text())


def _cell_html(cell: Cell | None, t: Translation) -> str:
    if cell is None:  # the corner: where the walk ends up
        if t.ok:
            return f'<TD BGCOLOR="{_FILL["result"]}"><B>PA</B><BR/>{t.output:#x}</TD>'
        return '<TD BORDER="0"></TD>'
    if cell.fault is not None:  # the read that found the problem (if one was made), and the fault's name
        f = cell.fault
        read = (f"<B>{cell.number}</B> @ {cell.reference.address:#x}<BR/>" if cell.reference else "")
        return (f'<TD BGCOLOR="{_FILL["fault"]}" TOOLTIP="{html.escape(str(f))}">{read}<FONT POINT-SIZE="10">'
                f'{html.escape(f.kind.name.lower().replace("_", " "))} fault<BR/>stage {f.stage}, level {f.level}'
                "</FONT></TD>")
    if cell.reference is None:
        return f'<TD BGCOLOR="{_FILL["empty"]}" STYLE="dashed"> </TD>'
    r = cell.reference
    tip = html.escape(f"{r.purpose}: read {r.value:#018x} at {r.address:#x}")
    return (f'<TD BGCOLOR="{_FILL[r.stage]}" TOOLTIP="{tip}"><B>{cell.number}</B><BR/>'
            f'<FONT POINT-SIZE="10">@ {r.address:#x}</FONT></TD>')
