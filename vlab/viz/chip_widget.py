"""The closing chapter's widget: pick a hardware feature, and vlab measures its row now, with it and without.

    ChipWidget("the virtual GIC")   one row of vlab.hyp.chip_features; "measure again" reruns it
    ChipWidget(rows=rows)           starting from rows measured already (a chapter's)

Each feature is measured once when first picked (counts never change; host times do, so the
button measures again). The text view, first line first, is what a notebook without a front end
shows.
"""

from __future__ import annotations

import html

from vlab.hyp import chip_features as chip
from vlab.viz.live import LiveView


class ChipWidget(LiveView):
    """One feature's row, measured in this run: its first cost as the headline, then the whole row."""

    def __init__(self, feature: str = "the virtual GIC", rows: list[chip.Row] = (), iterations: int = 300,
                 repeats: int = 3):
        """`rows` already measured (the chapter's) are shown as they are, until measured again."""
        self.iterations, self.repeats = iterations, repeats
        self._rows: dict[str, chip.Row] = {row.name: row for row in rows}
        self.choose(feature)

    def choose(self, feature: str) -> chip.Row:
        """Show `feature` (one of chip_features.FEATURES), measuring it if this widget has not yet."""
        if feature not in self._rows:
            self._rows[feature] = chip.measure(feature, self.iterations, self.repeats)
        self.feature = feature
        self.refresh()
        return self.row

    def measure_again(self) -> chip.Row:
        """Forget the shown feature's row and measure it again (host times move; counts do not)."""
        self._rows.pop(self.feature)
        return self.choose(self.feature)

    @property
    def row(self) -> chip.Row:
        return self._rows[self.feature]

    def summary(self) -> str:
        return f"{self.feature}: {self.row.measured[0].text()}"

    def text(self) -> str:
        return f"{self.summary()}\n{self.row.text()}"

    def _build_controls(self):
        return _Controls(self)


class _Controls:
    def __init__(self, owner: ChipWidget):
        import ipywidgets as w  # only when a front end asks for the widget

        self.owner = owner
        self.features = w.ToggleButtons(options=list(chip.FEATURES), value=owner.feature, description="feature")
        self.features.observe(lambda change: owner.choose(change["new"]), names="value")
        self.again = w.Button(description="measure again")
        self.again.on_click(lambda _button: owner.measure_again())
        self.summary, self.body = w.HTML(), w.HTML()
        self.box = w.VBox([self.features, self.again, self.summary, self.body])

    def show(self) -> None:
        headline, _, rest = self.owner.text().partition("\n")
        self.summary.value = f"<b>{html.escape(headline)}</b>"
        self.body.value = f"<pre style='margin:0; white-space:pre-wrap'>{html.escape(rest)}</pre>"
