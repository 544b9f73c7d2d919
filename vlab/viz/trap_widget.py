"""Trap controls you can toggle: run a guest in a VM and see what exits, and how often.

    t = TrapWidget("sensitive", traps=HCR.TVM)
    t                           # in Jupyter: checkboxes, a guest picker, exit counts and the trap log
    t.set_traps(HCR.TVM | HCR.TWI)   # what ticking the boxes does, as a method
    print(t.text())

Every change runs the guest again, from power-on, in a fresh VM: the numbers shown are
always those of a complete run under exactly the controls ticked.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Callable

from vlab.arch.hcr import HCR
from vlab.guests import GUESTS
from vlab.hyp import SUPPORTED_TRAPS, VM, VmRunResult
from vlab.hyp.exits import TrapRecord
from vlab.viz.live import LiveView

# What each control traps, in a few words (Arm ARM, HCR_EL2).
TRAP_MEANING = {
    HCR.TVM: "writes of SCTLR, TTBRx, TCR, MAIR, ... (EL1 virtual-memory controls)",
    HCR.TRVM: "reads of the same virtual-memory controls",
    HCR.TID3: "reads of the ID_AA64* feature registers",
    HCR.TACR: "ACTLR_EL1, the implementation-defined control",
    HCR.TSC: "SMC: firmware calls go to the hypervisor",
    HCR.TWI: "WFI: an idle vCPU gives its core back",
}
LOG_LINES = 12  # of the text view
LOG_PANE_LINES = 200  # of the widget's log pane, which scrolls
GUEST_RAM = 0x40_0000  # every demo guest fits in 4 MiB; a small VM powers on in milliseconds


@dataclass(frozen=True)
class LogColumn:
    """One column of the trap log: its heading and how to read it off a trap record."""

    heading: str
    value: Callable[[TrapRecord], str]
    numeric: bool = False  # right-aligned


# The trap log's columns, left to right: one more column is one more line here.
LOG_COLUMNS: tuple[LogColumn, ...] = (
    LogColumn("tick", lambda r: f"{r.tick:,}", numeric=True),
    LogColumn("vCPU", lambda r: str(r.vcpu), numeric=True),
    LogColumn("class", lambda r: r.kind),
    LogColumn("address", lambda r: f"{r.exit.address:#x}" if r.exit else ""),  # an interrupt has no instruction
    LogColumn("instruction", lambda r: r.exit.instruction if r.exit else ""),
    LogColumn("served", lambda r: r.served),  # in place (inside the core's hook) or by the run loop
    LogColumn("action", lambda r: r.action),
)
_NOWRAP = "white-space:nowrap;padding:0 12px 0 0"
_MONO = "font-family:monospace;font-size:12px;border-collapse:collapse"


class TrapWidget(LiveView):
    """One demo guest in a VM whose HCR_EL2-style trap controls can be toggled."""

    def __init__(self, guest: str = "sensitive", traps: HCR = HCR(0), max_insns: int = 2_000_000):
        if guest not in GUESTS:
            raise KeyError(f"no guest called {guest!r}; vlab ships: {', '.join(GUESTS)}")
        self.guest, self.traps, self.max_insns = guest, HCR(traps), max_insns
        self.run()

    def run(self) -> VmRunResult:
        """Power on a fresh VM with the current guest and controls, and run it to the end."""
        self.vm = VM.from_image(GUESTS[self.guest].image(), traps=self.traps, ram_size=GUEST_RAM)
        self.result = self.vm.run(max_insns=self.max_insns, timeout_s=10)
        self.refresh()
        return self.result

    def set_traps(self, traps: HCR) -> VmRunResult:
        self.traps = HCR(traps)
        return self.run()

    def set_guest(self, guest: str) -> VmRunResult:
        self.guest = guest
        return self.run()

    @property
    def efficiency(self) -> float | None:
        """Instructions run natively per trapped one (None when nothing trapped)."""
        return self.result.native / self.result.trapped if self.result.trapped else None

    # --- what is shown -----------------------------------------------------------------

    def summary(self) -> str:
        r = self.result
        ratio = f"{self.efficiency:,.1f} native per trapped" if self.efficiency is not None else "nothing trapped"
        return (f"{self.guest}.S with traps {self.traps.name or 'none'}: {r.reason.value}, "
                f"{r.instructions:,} instructions, {r.trapped:,} trapped ({ratio})")

    def exits_text(self) -> str:
        return "\n".join(f"  {kind:<12} {count:>6,}" for kind, count in self._exits()) or "  (no exits)"

    def _exits(self) -> list[tuple[str, int]]:
        """(class, count), the most frequent first."""
        return sorted(self.result.exits.items(), key=lambda kv: -kv[1])

    def log_rows(self, lines: int = LOG_LINES) -> list[list[str]]:
        """The first `lines` records of the trap log, one string per column (LOG_COLUMNS)."""
        return [[column.value(record) for column in LOG_COLUMNS] for record in list(self.vm.trap_log)[:lines]]

    def _more(self, lines: int) -> str:
        hidden = len(self.vm.trap_log) - lines
        return f"... {hidden:,} more" if hidden > 0 else ""

    def log_text(self, lines: int = LOG_LINES) -> str:
        """The trap log in columns: a heading, then one record per line."""
        rows = self.log_rows(lines)
        if not rows:
            return "  (empty)"
        table = [[c.heading for c in LOG_COLUMNS], *rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(LOG_COLUMNS))]

        def line(row: list[str]) -> str:
            return "  ".join(v.rjust(w) if c.numeric else v.ljust(w) for v, w, c in zip(row, widths, LOG_COLUMNS))

        more = self._more(lines)
        return "\n".join([line(row).rstrip() for row in table] + ([f"  {more}"] if more else []))

    def exits_html(self) -> str:
        """The exit counts, one class per line: its name and its count side by side, never wrapped."""
        rows = "".join(f'<tr><td style="{_NOWRAP}">{html.escape(kind)}</td>'
                       f'<td style="{_NOWRAP};text-align:right">{count:,}</td></tr>' for kind, count in self._exits())
        return f'<table class="vlab-exits" style="{_MONO}">{rows or "<tr><td>(no exits)</td></tr>"}</table>'

    def log_html(self, lines: int = LOG_PANE_LINES) -> str:
        """The trap log as a table whose cells never wrap, in a pane that scrolls when it must."""
        def cells(values, tag: str) -> str:
            return "".join(f'<{tag} style="{_NOWRAP};text-align:{"right" if c.numeric else "left"}">'
                           f"{html.escape(v)}</{tag}>" for v, c in zip(values, LOG_COLUMNS))

        head = f"<tr>{cells([c.heading for c in LOG_COLUMNS], 'th')}</tr>"
        body = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in self.log_rows(lines))
        more = f'<div style="color:#808080">{self._more(lines)}</div>' if self._more(lines) else ""
        return (f'<div class="vlab-trap-log" style="max-height:18em;overflow:auto">'
                f'<table style="{_MONO}">{head}{body}</table>{more}</div>')

    def text(self) -> str:
        return (f"{self.summary()}\nUART: {self.result.uart!r}\nexits by class:\n{self.exits_text()}\n"
                f"trap log:\n{self.log_text()}")

    # --- the ipywidgets front-end ---------------------------------------------------------

    def _build_controls(self) -> _Controls:
        return _Controls(self)


class _Controls:
    def __init__(self, trap: TrapWidget):
        import ipywidgets as w  # only when a front-end asks for the widget

        self.trap = trap
        self.boxes = {bit: w.Checkbox(value=bool(trap.traps & bit), description=f"{bit.name}",
                                      tooltip=TRAP_MEANING[bit], indent=False,
                                      layout=w.Layout(width="90px"))
                      for bit in TRAP_MEANING if bit & SUPPORTED_TRAPS}
        self.guest = w.Dropdown(options=list(GUESTS), value=trap.guest, description="guest")
        for box in self.boxes.values():
            box.observe(self._on_traps, names="value")
        self.guest.observe(lambda change: self._syncing or trap.set_guest(change["new"]), names="value")
        self._syncing = False  # set while show() makes the controls match a run started from code
        self.panes = {name: w.HTML() for name in ("summary", "exits", "log")}
        legend = w.HTML("<br>".join(f"<b>{bit.name}</b>: {html.escape(text)}" for bit, text in TRAP_MEANING.items()))
        self.box = w.VBox([
            w.HBox([self.guest, *self.boxes.values()]), self.panes["summary"],
            w.HBox([w.VBox([w.HTML("<b>Exits</b>"), self.panes["exits"]],
                           layout=w.Layout(margin="0 24px 0 0", flex="0 0 auto")),
                    # the log takes the width left and scrolls inside it, rather than push past the slide
                    w.VBox([w.HTML("<b>Trap log</b> (first entries)"), self.panes["log"]],
                           layout=w.Layout(flex="1 1 auto", min_width="0"))]),
            legend,
        ])

    def _on_traps(self, _change) -> None:
        if self._syncing:
            return
        traps = HCR(0)
        for bit, box in self.boxes.items():
            if box.value:
                traps |= bit
        self.trap.set_traps(traps)

    def show(self) -> None:
        t = self.trap
        # set_traps()/set_guest() from code: tick what the run used, without starting more runs.
        self._syncing = True
        try:
            for bit, box in self.boxes.items():
                box.value = bool(t.traps & bit)
            self.guest.value = t.guest
        finally:
            self._syncing = False
        self.panes["summary"].value = f"<b>{html.escape(t.summary())}</b><br>UART: <code>{html.escape(t.result.uart)}</code>"
        self.panes["exits"].value = t.exits_html()
        self.panes["log"].value = t.log_html()
