"""Widgets for chapter 3: the nested walk with level sliders, and a host's memory shared by VMs.

    w = WalkWidget()            # a VA box and two sliders; the walk redrawn, references counted
    w.set(va=0x5678, guest_levels=3, stage2_levels=2)
    TlbWidget(pages=128)        # a working set, and which TLB answered each access
    host_map_text(host)         # which VM owns which host frame
"""

from __future__ import annotations

import functools
import html

from vlab.hyp.cost import working_set_program
from vlab.hyp.memory import PAGE, HostMemory
from vlab.hyp.pcpu import TLB_ENTRIES
from vlab.hyp.vm import VM
from vlab.machine.loader import image_from_program
from vlab.viz.diagram import Diagram
from vlab.viz.live import LiveView
from vlab.viz.walk_view import NestedSetup, walk_diagram


@functools.cache
def _setup(guest_levels: int, stage2_levels: int) -> NestedSetup:
    """The tables for one choice of levels, built once (a walk only reads them)."""
    return NestedSetup(guest_levels, stage2_levels)


class WalkWidget(LiveView):
    """Type a guest VA, choose the levels of each stage: see every reference and the count."""

    def __init__(self, va: int = 0x5678, guest_levels: int = 4, stage2_levels: int = 4):
        self.set(va, guest_levels, stage2_levels)

    def set(self, va: int | None = None, guest_levels: int | None = None, stage2_levels: int | None = None):
        """Change any of the three and walk again."""
        self.va = self.va if va is None else va
        self.guest_levels = self.guest_levels if guest_levels is None else guest_levels
        self.stage2_levels = self.stage2_levels if stage2_levels is None else stage2_levels
        self.setup = _setup(self.guest_levels, self.stage2_levels)
        self.translation = self.setup.translate(self.va)
        self.refresh()
        return self.translation

    def summary(self) -> str:
        """The levels, the references counted against (n+1)(m+1)-1, and where the VA ended up."""
        n, m, t = self.guest_levels, self.stage2_levels, self.translation
        counted = (f"{n} guest levels x {m} stage-2 levels: measured {len(t.references)} references; "
                   f"(n+1)(m+1)-1 = {self.setup.expected_references}")
        if t.ok:
            return f"{counted}. VA {self.va:#x} -> PA {t.output:#x}"
        fault = t.fault
        return (f"{counted} (a walk that faults stops early). VA {self.va:#x}: stage-{fault.stage} "
                f"{fault.kind.name.lower().replace('_', ' ')} fault at level {fault.level}, {fault.why} "
                f"(this guest maps {self.setup.mapped[0]:#x}..{self.setup.mapped[1] - 1:#x})")

    @property
    def diagram(self) -> Diagram:
        """The walk as a grid: a row per guest level and the output, a column per stage-2 level and the guest."""
        return walk_diagram(self.setup.grid(self.translation))

    def text(self) -> str:
        return self.summary() + "\n" + self.diagram.text

    def _build_controls(self) -> _WalkControls:
        return _WalkControls(self)


class _WalkControls:
    def __init__(self, owner: WalkWidget):
        import ipywidgets as w

        self.owner = owner
        wide = {"description_width": "initial"}  # the whole label, not "guest…"
        self.va = w.Text(value=hex(owner.va), description="guest VA", continuous_update=False, style=wide)
        self.n = w.IntSlider(value=owner.guest_levels, min=1, max=4, description="guest levels", style=wide)
        self.m = w.IntSlider(value=owner.stage2_levels, min=1, max=4, description="stage-2 levels", style=wide)
        self.summary, self.picture = w.HTML(), w.HTML()
        self.va.observe(self._on_va, names="value")
        self.n.observe(lambda c: owner.set(guest_levels=c["new"]), names="value")
        self.m.observe(lambda c: owner.set(stage2_levels=c["new"]), names="value")
        self.box = w.VBox([w.HBox([self.va, self.n, self.m]), self.summary, self.picture])

    def _on_va(self, change) -> None:
        try:
            self.owner.set(va=int(change["new"], 0))
        except ValueError:
            self.summary.value = f'<span style="color:#b00000">not an address: {html.escape(change["new"])}</span>'

    def show(self) -> None:
        self.summary.value = f"<b>{html.escape(self.owner.summary())}</b>"
        self.picture.value = self.owner.diagram.html()


def host_map_text(host: HostMemory, columns: int = 64) -> str:
    """The host's frames as rows of characters: one letter per frame, by owner (. = free)."""
    owners = sorted(set(host.owner.values()))
    letters = {who: "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[i] if "RAM" in who else "abcdefghijklmnopqrstuvwxyz"[i]
               for i, who in enumerate(owners)}
    cells = [letters.get(host.owner.get(frame), ".") for frame in range(0, host.size, 0x1000)]
    rows = ["".join(cells[i:i + columns]) for i in range(0, len(cells), columns)]
    legend = [f"  {letters[who]} = {who} ({sum(1 for o in host.owner.values() if o == who)} frames)" for who in owners]
    return "\n".join(rows + legend + ["  . = free"])


class TlbWidget(LiveView):
    """A guest reading one word per page over a working set you choose: who translated each access."""

    def __init__(self, pages: int = 64, rounds: int = 50):
        self.rounds = rounds
        self.set_pages(pages)

    def set_pages(self, pages: int) -> None:
        """Run the working-set guest again, in a VM with scattered stage 2, over `pages` pages."""
        self.pages = pages
        # RAM for the working set (from 0x4010_0000) and no more: mapping it is part of every update
        ram = 0x10_0000 + max(pages, 1) * PAGE
        vm = VM.from_image(image_from_program(working_set_program(pages, self.rounds)), stage2="scattered",
                           ram_size=ram)
        vm.run()
        self.vcpu, self.tlb = vm.vcpus[0], vm.host.pcpus[0].tlb  # the TLB is the physical CPU's
        self.refresh()

    @property
    def counts(self) -> dict[str, int]:
        tlb = self.tlb
        return {"accesses": self.pages * self.rounds, "Unicorn TLB misses": tlb.hits + tlb.misses,
                "vlab TLB hits": tlb.hits, "walks": self.vcpu.walks}

    def summary(self) -> str:
        c = self.counts
        return (f"{self.pages} pages x {self.rounds} rounds: {c['accesses']:,} accesses, Unicorn's TLB missed "
                f"{c['Unicorn TLB misses']:,}, vlab's TLB hit {c['vlab TLB hits']:,}, {c['walks']:,} walks")

    def text(self) -> str:
        return self.summary()

    def _build_controls(self) -> _TlbControls:
        return _TlbControls(self)


class _TlbControls:
    def __init__(self, owner: TlbWidget):
        import ipywidgets as w

        self.owner = owner
        # up to twice what vlab's TLB model holds: past its capacity every access walks (the cliff)
        self.pages = w.IntSlider(value=owner.pages, min=8, max=2 * TLB_ENTRIES, step=8, description="working set",
                                 continuous_update=False)
        self.pages.observe(lambda c: owner.set_pages(c["new"]), names="value")
        self.table = w.HTML()
        self.box = w.VBox([self.pages, self.table])

    def show(self) -> None:
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td style='text-align:right'>{v:,}</td></tr>"
                       for k, v in self.owner.counts.items())
        self.table.value = f"<table>{rows}</table>"
