"""Two-dimensional address translation, drawn: every memory reference of a nested walk, numbered.

    setup = NestedSetup(guest_levels=4, stage2_levels=4)
    t = setup.translate(0x5678)
    walk_diagram(t)            # 24 numbered references: stage-1 reads (blue), stage-2 reads (orange)

`NestedSetup` builds real tables in a small host memory: a guest stage-1 tree (in IPA space)
and the hypervisor's stage-2 tree that places each guest page somewhere in the host.
"""

from __future__ import annotations

import graphviz

from vlab.mmu.memory import BufferMemory
from vlab.mmu.tables import PAGE, FrameAllocator, TableBuilder
from vlab.mmu.walk import Access, Regime, Translation, nested_walk, walk
from vlab.viz.diagram import Diagram

# T0SZ for 1..4 guest levels (1 needs FEAT_TTST's small tables), (T0SZ, SL0) for 1..4 stage-2 levels
GUEST_T0SZ = {1: 44, 2: 34, 3: 25, 4: 16}
STAGE2_VTCR = {1: (40, 3), 2: (30, 0), 3: (25, 1), 4: (16, 2)}
_COLOURS = {1: "#cfe2f3", 2: "#fde0c5"}
FIRST_VA = 0x5000  # where NestedSetup's guest maps its pages


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
            self.s2_tables.map(page, self._host_frames.allocate(), PAGE, ap=3)
        return walk(self.host, self.stage2, self.s2_tables.root, ipa).output

    def translate(self, va: int, access: Access = Access.READ) -> Translation:
        return nested_walk(self.host, self.stage1, self.s1_tables.root, self.stage2, self.s2_tables.root, va, access)

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


def walk_text(t: Translation) -> str:
    lines = [f"{i:>2}. stage {r.stage} L{r.level}  read {r.address:#010x} -> {r.value:#018x}  ({r.purpose})"
             for i, r in enumerate(t.references, start=1)]
    result = f"{t.input:#x} -> {t.output:#x}" if t.ok else f"{t.input:#x}: {t.fault}"
    return "\n".join([f"{len(t.references)} memory references; {result}", *lines])


def walk_diagram(t: Translation) -> Diagram:
    """Each reference a numbered box, in order: blue for the guest's tables, orange for stage 2."""
    g = graphviz.Digraph("walk", graph_attr={"rankdir": "LR", "fontname": "Helvetica", "nodesep": "0.15"},
                         node_attr={"fontname": "Helvetica", "shape": "box", "style": "rounded,filled",
                                    "fontsize": "10"})
    previous = "va"
    g.node("va", f"VA {t.input:#x}", shape="ellipse", fillcolor="#ffffff")
    for i, r in enumerate(t.references, start=1):
        node = f"r{i}"
        g.node(node, f"{i}. S{r.stage} L{r.level}\n@ {r.address:#x}", fillcolor=_COLOURS[r.stage],
               tooltip=r.purpose)
        g.edge(previous, node)
        previous = node
    end = f"PA {t.output:#x}" if t.ok else f"fault: {t.fault.kind.name}"
    g.node("pa", end, shape="ellipse", fillcolor="#d8ecd8" if t.ok else "#f4c7c3")
    g.edge(previous, "pa")
    return Diagram(g, walk_text(t))
