"""One virtual timer interrupt, on the board or in a VM: pick where, pick the tick, see its path.

    w = InterruptWidget(where="VM")     # in Jupyter: board/VM, TWI, which tick; the path drawn
    w.set(where="board")                # what the controls do, as a method
    print(w.text())

Every change runs ticks.S again from power-on (on a fresh board, or in a fresh VM) and draws the
path from that run's records (vlab.viz.interrupt_path), with the exits counted.
"""

from __future__ import annotations

import html

from vlab.arch.hcr import HCR
from vlab.guests import GUESTS
from vlab.hyp import VM
from vlab.machine.board import Board
from vlab.machine.loader import load
from vlab.viz.interrupt_path import InterruptPath, board_path, vm_path
from vlab.viz.live import LiveView

TICKS = 3  # ticks.S takes three
GUEST_RAM = 0x40_0000


def _check(where: str, tick: int) -> None:
    if where not in ("board", "VM"):
        raise ValueError(f"an interrupt runs on the 'board' or in a 'VM', not {where!r}")
    if not 1 <= tick <= TICKS:
        raise ValueError(f"ticks.S takes {TICKS} interrupts: tick 1 to {TICKS}, not {tick}")


class InterruptWidget(LiveView):
    """ticks.S on the board or in a VM (with or without TWI): the path of its `tick`-th interrupt."""

    def __init__(self, where: str = "VM", twi: bool = False, tick: int = 1):
        self.where, self.twi, self.tick = where, twi, tick
        self.run()

    def set(self, where: str | None = None, twi: bool | None = None, tick: int | None = None) -> InterruptPath:
        """Change what is shown (any of the three) and run again; a choice refused changes nothing."""
        where = self.where if where is None else where
        tick = self.tick if tick is None else tick
        _check(where, tick)
        self.where, self.tick = where, tick
        self.twi = self.twi if twi is None else twi
        return self.run()

    def run(self) -> InterruptPath:
        _check(self.where, self.tick)
        image = GUESTS["ticks"].image()
        if self.where == "board":
            machine = Board(ram_size=GUEST_RAM)
            load(machine, image)
            self.result = machine.run(max_insns=1_000_000, timeout_s=10)
            self.path = board_path(machine, self.tick - 1)
        else:
            machine = VM.from_image(image, traps=HCR.TWI if self.twi else HCR(0), ram_size=GUEST_RAM)
            self.result = machine.run(max_insns=1_000_000, timeout_s=10)
            self.path = vm_path(machine, self.tick - 1)
        self.refresh()
        return self.path

    def summary(self) -> str:
        where = "on the board" if self.where == "board" else f"in a VM{' with TWI' if self.twi else ''}"
        return f"ticks.S {where}, interrupt {self.tick} of {TICKS}: {len(self.path.steps)} steps"

    def text(self) -> str:
        return f"{self.summary()}\n{self.path}"

    # --- the ipywidgets front-end ---------------------------------------------------------

    def _build_controls(self) -> _Controls:
        return _Controls(self)


class _Controls:
    def __init__(self, view: InterruptWidget):
        import ipywidgets as w  # only when a front-end asks for the widget

        self.view = view
        self.where = w.ToggleButtons(options=["board", "VM"], value=view.where, description="run")
        self.twi = w.Checkbox(value=view.twi, description="TWI (a WFI exits)", indent=False)
        self.tick = w.IntSlider(value=view.tick, min=1, max=TICKS, description="interrupt")
        self._syncing = False  # set while show() makes the controls match a run started from code
        for control, name in ((self.where, "where"), (self.twi, "twi"), (self.tick, "tick")):
            control.observe(lambda change, name=name: self._syncing or view.set(**{name: change["new"]}), names="value")
        self.summary, self.picture, self.counts = w.HTML(), w.HTML(), w.HTML()
        self.box = w.VBox([w.HBox([self.where, self.twi, self.tick]), self.summary, self.picture, self.counts])

    def show(self) -> None:
        v = self.view
        self._syncing = True
        try:
            self.where.value, self.twi.value, self.tick.value = v.where, v.twi, v.tick
        finally:
            self._syncing = False
        self.twi.disabled = v.where == "board"
        self.summary.value = f"<b>{html.escape(v.summary())}</b>"
        self.picture.value = v.path.diagram().html()
        self.counts.value = f"<pre>{html.escape(v.path.counts())}</pre>"
