"""Live migration, live: a guest dirtying its pages at a rate you choose, migrated over a link you choose.

    w = MigrationWidget(dirty_rate=20, bandwidth_mbps=1000)
    w                          # in Jupyter: sliders and choices; the rounds along time, and their table
    w.set(dirty_rate=60, rule="xen_2005")   # what the controls do, as a method
    print(w.text())

Every change migrates the guest again (vlab.hyp.migration_experiment.migrate_dirtier): what is
shown is a real migration of a real guest, measured now.
"""

from __future__ import annotations

import html

from vlab.hyp.link import Link
from vlab.hyp.migration import RULES
from vlab.hyp.migration_experiment import migrate_dirtier
from vlab.viz.live import LiveView
from vlab.viz.migration_view import table, timeline

BANDWIDTHS = (100, 300, 1000, 3000, 10000)  # Mbit/s to choose from
MODES = ("pre-copy: xen", "pre-copy: xen_2005", "post-copy")


class MigrationWidget(LiveView):
    """A dirtier (vlab.guests.workloads) migrated after its warm-up, its setting chosen by the controls."""

    def __init__(self, dirty_rate: float = 20, bandwidth_mbps: float = 1000, latency_ms: float = 0.05,
                 mode: str = "pre-copy: xen"):
        self.dirty_rate, self.bandwidth_mbps, self.latency_ms, self.mode = dirty_rate, bandwidth_mbps, latency_ms, mode
        self.error = ""
        self.run()

    def set(self, **settings) -> None:
        """Change dirty_rate=, bandwidth_mbps=, latency_ms= or mode= (one of MODES), and migrate again."""
        for name, value in settings.items():
            if name not in ("dirty_rate", "bandwidth_mbps", "latency_ms", "mode"):
                raise TypeError(f"no setting {name!r}: dirty_rate, bandwidth_mbps, latency_ms or mode")
            setattr(self, name, value)
        self.run()

    def run(self):
        """Migrate as set; a setting that cannot be is shown, not raised."""
        try:
            if self.mode not in MODES:
                raise ValueError(f"no mode {self.mode!r}: choose {', '.join(MODES)}")
            if not self.dirty_rate > 0:
                raise ValueError("the dirty rate is a positive number of pages per millisecond")
            rule = RULES[self.mode.split(": ")[1]] if self.mode.startswith("pre-copy") else None
            self.migration = migrate_dirtier(self.dirty_rate, Link(self.bandwidth_mbps, self.latency_ms),
                                             rule or RULES["xen"], post_copy=rule is None)
            self.error = ""
        except ValueError as e:
            self.error = str(e)
        self.refresh()

    def summary(self) -> str:
        setting = (f"{self.dirty_rate:g} pages/ms dirtied, {self.bandwidth_mbps:g} Mbit/s, {self.mode}")
        if self.error:
            return f"{setting}: {self.error}"
        m = self.migration
        return (f"{setting}: {m.rounds} live round(s), downtime {m.downtime_ticks:,} ticks "
                f"({m.downtime_ms:.3f} ms), {m.pages_sent:,} pages sent")

    def text(self) -> str:
        return self.summary() if self.error else f"{self.summary()}\n{table(self.migration)}"

    def _build_controls(self) -> _Controls:
        return _Controls(self)


class _Controls:
    def __init__(self, widget: MigrationWidget):
        import ipywidgets as w  # only when a front-end asks for the widget

        self.widget = widget
        self.rate = w.FloatLogSlider(value=widget.dirty_rate, base=10, min=0, max=2.5, step=0.1,
                                     description="pages/ms", continuous_update=False)
        self.bandwidth = w.SelectionSlider(options=BANDWIDTHS, value=_nearest(widget.bandwidth_mbps),
                                           description="Mbit/s", continuous_update=False)
        self.mode = w.Dropdown(options=MODES, value=widget.mode, description="migration")
        for control in (self.rate, self.bandwidth, self.mode):
            control.observe(lambda _: self._apply(), names="value")
        self.panes = {name: w.HTML() for name in ("summary", "timeline", "table")}
        self.box = w.VBox([w.HBox([self.rate, self.bandwidth, self.mode]), *self.panes.values()])

    def _apply(self) -> None:
        self.widget.set(dirty_rate=self.rate.value, bandwidth_mbps=self.bandwidth.value, mode=self.mode.value)

    def show(self) -> None:
        widget = self.widget
        self.panes["summary"].value = f"<b>{html.escape(widget.summary())}</b>"
        if widget.error:
            self.panes["timeline"].value = self.panes["table"].value = ""
            return
        self.panes["timeline"].value = timeline(widget.migration).svg
        self.panes["table"].value = f"<pre>{html.escape(table(widget.migration))}</pre>"


def _nearest(bandwidth: float) -> int:
    return min(BANDWIDTHS, key=lambda b: abs(b - bandwidth))
