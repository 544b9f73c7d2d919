"""What every vlab widget shares: an ipywidgets box in Jupyter, its full text anywhere else.

A subclass defines `summary()` (one line), `text()` (the whole view as plain text), `_build_controls()` (an object
with the ipywidgets `.box`, built on first use so ipywidgets is imported only then) and
`refresh()` (redraw the controls from the current state; nothing to do before they exist -- by
default the controls' own `show()`).
"""

from __future__ import annotations


class LiveView:
    _ui = None

    def summary(self) -> str:
        """One line: what is shown and its state."""
        raise NotImplementedError

    def text(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.summary()}>"

    def _build_controls(self):
        raise NotImplementedError

    def refresh(self) -> None:
        """Redraw the controls from the current state: their `show()`, once they exist."""
        if self._ui is not None:
            self._ui.show()

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(self.text())

    def _repr_mimebundle_(self, include=None, exclude=None, **_) -> dict:
        """Jupyter shows the live widget; any text-only consumer gets the full text view."""
        bundle = self.widget._repr_mimebundle_()
        bundle["text/plain"] = self.text()
        return bundle

    @property
    def widget(self):
        """The ipywidgets box (built on first use)."""
        if self._ui is None:
            self._ui = self._build_controls()
            self.refresh()
        return self._ui.box

    @property
    def controls(self):
        """The widget's buttons, boxes and panes, once built (tests drive them)."""
        return self._ui
