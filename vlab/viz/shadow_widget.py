"""Shadow page tables against nested paging (stage 2), live: one guest run both ways, the costs side by side.

    s = ShadowWidget("remaps", pages=64, rounds=8)
    s                            # in Jupyter: the guest, its pages and rounds, the RAM layout; bars and the table
    s.set_guest("maps once")     # what the controls do, as methods
    print(s.text())

Every change runs both VMs again from power-on (vlab.hyp.shadow_compare.compare_paging): the
figures are that run's -- exits by class, the walks vlab's TLB model could not spare, the
descriptors they read, the host time -- and the guest's results are checked to be the same.
"""

from __future__ import annotations

import html

from vlab.guests import GUESTS
from vlab.hyp.memory import LAYOUTS
from vlab.hyp.shadow_compare import WORKLOADS, ShadowComparison, compare_paging
from vlab.viz.live import LiveView

GUEST_CHOICES = [*WORKLOADS, *sorted(GUESTS)]
PAGE_CHOICES = [8, 16, 32, 64, 128, 256, 512, 1024, 2048]  # powers of two: "remaps" rotates its mapping
BARS = (("exits", "exits"), ("walks", "TLB-fill walks"), ("references", "descriptors read"),
        ("host_us", "host time"))


class ShadowWidget(LiveView):
    """One guest under stage 2 and under shadow tables: a workload of vlab.hyp.shadow_compare
    (`pages`, `rounds`) or a demo guest, on RAM laid out as `layout`."""

    def __init__(self, guest: str = "remaps", pages: int = 64, rounds: int = 8, layout: str = "scattered"):
        self.guest, self.pages, self.rounds, self.layout = guest, pages, rounds, layout
        self.comparison: ShadowComparison | None = None
        self.error = ""
        self.run()

    def run(self) -> ShadowComparison | None:
        """Run both VMs as set; a setting refused (pages not a power of two...) is shown, not raised."""
        try:
            self.comparison = compare_paging(self.guest, self.pages, self.rounds, self.layout)
            self.error = ""
        except (KeyError, ValueError) as e:
            self.comparison, self.error = None, str(e).strip("'\"")
        self.refresh()
        return self.comparison

    def set_guest(self, guest: str) -> ShadowComparison | None:
        self.guest = guest
        return self.run()

    def set_size(self, pages: int | None = None, rounds: int | None = None) -> ShadowComparison | None:
        """The workload's pages and rounds (a demo guest has neither)."""
        self.pages = self.pages if pages is None else pages
        self.rounds = self.rounds if rounds is None else rounds
        return self.run()

    def set_layout(self, layout: str) -> ShadowComparison | None:
        self.layout = layout
        return self.run()

    # --- what is shown -----------------------------------------------------------------

    def _setting(self) -> str:
        size = f", {self.pages} pages x {self.rounds} rounds" if self.guest in WORKLOADS else ""
        return f"{self.guest}{size}, {self.layout} RAM"

    def summary(self) -> str:
        if self.error:
            return f"{self._setting()}: {self.error}"
        c = self.comparison
        text = (f"{self._setting()}: shadow paging takes {c.shadow.total_exits:,} exits to nested paging's "
                f"{c.nested.total_exits:,}, reads {c.shadow.references_per_walk:.1f} descriptors a walk to "
                f"{c.nested.references_per_walk:.1f}, and {c.shadow.host_us / c.nested.host_us:.2f}x its host time")
        return text if c.same_result else text + " -- AND THE GUEST'S RESULTS DIFFER: " + "; ".join(c.differences)

    def text(self) -> str:
        if self.error:
            return self.summary()
        return f"{self.summary()}\n{self.comparison.table()}"

    def bars(self) -> list[tuple[str, float, float]]:
        """(figure, nested, shadow) for each bar drawn."""
        c = self.comparison
        values = {"exits": (c.nested.total_exits, c.shadow.total_exits)}
        values |= {what: (getattr(c.nested, what), getattr(c.shadow, what)) for what, _ in BARS[1:]}
        return [(label, *values[what]) for what, label in BARS]

    # --- the ipywidgets front-end ---------------------------------------------------------

    def _build_controls(self) -> _Controls:
        return _Controls(self)


def _bars_html(bars: list[tuple[str, float, float]]) -> str:
    """Each figure as two bars scaled to the larger: nested above, shadow below."""
    rows = []
    for label, nested, shadow in bars:
        top = max(nested, shadow) or 1
        cells = "".join(
            f"<div style='display:flex;align-items:center;gap:6px'><span style='width:60px'>{name}</span>"
            f"<div style='background:{colour};height:12px;width:{max(1, round(300 * value / top))}px'></div>"
            f"<span>{value:,.0f}</span></div>"
            for name, value, colour in (("nested", nested, "#4c78a8"), ("shadow", shadow, "#f58518")))
        rows.append(f"<div style='margin:4px 0'><b>{html.escape(label)}</b>{cells}</div>")
    return "".join(rows)


class _Controls:
    def __init__(self, view: ShadowWidget):
        import ipywidgets as w  # only when a front-end asks for the widget

        self.view = view
        self.guest = w.Dropdown(options=GUEST_CHOICES, value=view.guest, description="guest")
        self.pages = w.Dropdown(options=PAGE_CHOICES, value=view.pages if view.pages in PAGE_CHOICES else 64,
                                description="pages")
        self.rounds = w.IntSlider(value=view.rounds, min=1, max=32, description="rounds")
        self.layout = w.Dropdown(options=list(LAYOUTS), value=view.layout, description="RAM")
        self.go = w.Button(description="Run both", button_style="primary")
        self.go.on_click(lambda _: self._apply())
        self.panes = {name: w.HTML() for name in ("summary", "bars", "table")}
        self.box = w.VBox([w.HBox([self.guest, self.layout]), w.HBox([self.pages, self.rounds, self.go]),
                           self.panes["summary"], self.panes["bars"], self.panes["table"]])

    def _apply(self) -> None:
        v = self.view
        v.guest, v.pages, v.rounds, v.layout = self.guest.value, self.pages.value, self.rounds.value, self.layout.value
        v.run()

    def show(self) -> None:
        v = self.view
        self.panes["summary"].value = f"<b>{html.escape(v.summary())}</b>"
        if v.error:
            self.panes["bars"].value = self.panes["table"].value = ""
            return
        self.panes["bars"].value = _bars_html(v.bars())
        self.panes["table"].value = f"<pre>{html.escape(v.comparison.table())}</pre>"
