"""A stepper for the physical machine: Step / Run N / Run / Reset, and what the CPU looks like after.

    m = MachineWidget.for_guest("syscall")
    m                                   # in Jupyter: the widget; elsewhere: registers, code, console as text
    m.step_to_exception()               # the same actions as the buttons, as plain methods
    print(m.text())

The widget owns its own Board, built from an Image, so Reset is simply a fresh
board with the image loaded again. Stepping uses `Board.step()` (one
instruction, or one exception entry); Run uses the board's normal fast path.
All update logic lives in plain methods and in `MachineView`, so tests and
text-only front-ends see exactly what the widget would draw.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Callable

from vlab.asm import Program, assemble
from vlab.guests import path as guest_path
from vlab.machine.board import DEFAULT_RAM_SIZE, RAM_BASE, Board, RunResult, StopReason
from vlab.machine.loader import Image, image_from_file, image_from_program, load
from vlab.viz.code_map import CodeMap
from vlab.viz.live import LiveView
from vlab.viz.machine_view import MachineView

DEFAULT_RUN_BUDGET = 1_000_000  # instructions the Run button allows: a widget must never hang the kernel
DEFAULT_STEP_LIMIT = 10_000  # most single steps step_until() takes before giving up


class MachineWidget(LiveView):
    """One guest on its own board, with step/run controls and a live view of the CPU."""

    def __init__(self, image: Image, *, title: str = "", ram_size: int = DEFAULT_RAM_SIZE,
                 run_budget: int = DEFAULT_RUN_BUDGET, timeout_s: float = 5.0, code_map: CodeMap | None = None):
        self.image = image
        # what is code and what is data: from the assembler, or given (an ELF file's symbols and sections)
        self.code_map = code_map or CodeMap.of_program(image.program)
        self.title = title
        self.ram_size = ram_size
        self.run_budget = run_budget
        self.timeout_s = timeout_s
        self._ui: _Controls | None = None
        self.reset()

    @classmethod
    def for_guest(cls, name: str, **options) -> MachineWidget:
        """A stepper for one of vlab's demo guests (`vlab.guests.GUESTS`)."""
        return cls.for_source(guest_path(name).read_text(), title=f"{name}.S", **options)

    @classmethod
    def for_source(cls, source: str, base: int = RAM_BASE, **options) -> MachineWidget:
        """A stepper for assembly source, assembled at `base` (the start of RAM by default)."""
        return cls(image_from_program(assemble(source, base)), **options)

    @classmethod
    def for_file(cls, path: str | Path, **options) -> MachineWidget:
        """A stepper for a .S, raw binary or ELF file, loaded as `vlab run` would (an ELF's symbol table
        and sections tell the code pane where its data is)."""
        options.setdefault("title", Path(path).name)
        image = image_from_file(path)
        if image.program is None and "code_map" not in options:
            options["code_map"] = CodeMap.of_elf(Path(path).read_bytes())  # a raw binary: an empty map
        return cls(image, **options)

    @property
    def program(self) -> Program | None:
        """The assembled program (symbols, line map) when the guest came from source."""
        return self.image.program

    # --- actions: what the buttons do ---------------------------------------------

    def reset(self) -> None:
        """Power-on again: a fresh board with the image loaded, PC at its entry."""
        self.board = Board(self.ram_size)
        load(self.board, self.image)
        self.last: RunResult | None = None
        self._before: dict[str, int] = {}
        self.status = f"reset: PC at the entry point {self.image.entry:#x}, EL{self.board.cpu.el}"
        self.refresh()

    def step(self, count: int = 1) -> RunResult:
        """Execute `count` single steps (each one instruction or one exception entry); stop early if the guest stops."""
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        self._before = self.board.cpu.registers()
        for _ in range(count):
            result = self.board.step()
            if result.reason is not StopReason.STOPPED:
                break
        return self._record(result)

    def run(self, max_insns: int | None = None) -> RunResult:
        """Run at full speed until the guest stops, or `max_insns` (default: the run budget) more instructions."""
        self._before = self.board.cpu.registers()
        return self._record(self.board.run(max_insns or self.run_budget, self.timeout_s))

    def step_until(self, condition: Callable[[Board], bool], limit: int = DEFAULT_STEP_LIMIT) -> RunResult:
        """Single-step until condition(board) holds (checked after each step), the guest stops, or `limit` steps."""
        self._before = self.board.cpu.registers()
        result = None
        for _ in range(limit):
            result = self.board.step()
            if result.reason is not StopReason.STOPPED or condition(self.board):
                return self._record(result)
        if result is None:
            raise ValueError(f"limit must be at least 1, not {limit}")
        return self._record(result, f"gave up after {limit:,} steps without reaching the condition")

    def step_to_exception(self, limit: int = DEFAULT_STEP_LIMIT) -> RunResult:
        """Single-step until the board delivers a new exception to the guest kernel."""
        taken = self.board.exceptions_taken
        seen = taken[-1] if taken else None
        return self.step_until(lambda board: bool(taken) and taken[-1] is not seen, limit)

    def _record(self, result: RunResult, note: str = "") -> RunResult:
        self.last = result
        self.status = note or f"{result.reason.value}: {result.message}"
        self.refresh()
        return result

    # --- what is shown ---------------------------------------------------------------

    @property
    def view(self) -> MachineView:
        """A snapshot of the board, as the widget draws it."""
        return MachineView.of(self.board, self.code_map, self.status)

    @property
    def changed(self) -> set[str]:
        """Registers the last action changed."""
        now = self.board.cpu.registers()
        return {k for k, v in now.items() if self._before and self._before.get(k) != v}

    def text(self) -> str:
        """The whole view as text: registers (those the last action changed marked), code around PC, UART
        console, exceptions taken."""
        heading = f"{self.title}: " if self.title else ""
        return heading + self.view.text(self.changed)

    def summary(self) -> str:
        cpu = self.board.cpu
        return (f"{self.title or 'guest'}: EL{cpu.el}, pc={cpu.pc:#x}, "
                f"{cpu.instructions:,} instructions; {self.status}")

    def _build_controls(self) -> _Controls:
        return _Controls(self)

    def refresh(self) -> None:
        """Redraw the widget's panes from the board (nothing to do before it is shown)."""
        if self._ui is not None:
            self._ui.show(self.view, self.changed)


class _Controls:
    """The ipywidgets: four buttons, a count, and panes for status, registers, code, console, exceptions."""

    def __init__(self, machine: MachineWidget):
        import ipywidgets as w  # imported here: the rest of vlab.viz works without a front-end

        self.machine = machine
        self.count = w.BoundedIntText(value=10, min=1, max=machine.run_budget, description="N",
                                      layout=w.Layout(width="150px"))
        self.buttons = {
            "step": w.Button(description="Step", icon="step-forward",
                             tooltip="execute one instruction, or take one exception"),
            "run_n": w.Button(description="Run N", icon="forward", tooltip="run N instructions"),
            "run": w.Button(description="Run", icon="play",
                            tooltip=f"run until the guest stops (at most {machine.run_budget:,} instructions)"),
            "reset": w.Button(description="Reset", icon="undo", tooltip="power-on again: reload the guest"),
        }
        actions = {"step": lambda: machine.step(), "run_n": lambda: machine.step(self.count.value),
                   "run": lambda: machine.run(), "reset": machine.reset}
        for name, button in self.buttons.items():
            button.on_click(self._guarded(actions[name]))
        self.panes = {name: w.HTML() for name in ("status", "registers", "code", "console", "exceptions")}
        title = w.HTML(f"<b>{html.escape(machine.title)}</b>")
        b = self.buttons
        self.box = w.VBox([
            title,
            w.HBox([b["step"], b["run_n"], self.count, b["run"], b["reset"]]),
            self.panes["status"],
            w.HBox([w.VBox([w.HTML("<b>Registers</b>"), self.panes["registers"]],
                           layout=w.Layout(margin="0 24px 0 0")),
                    w.VBox([w.HTML("<b>Code</b> (&#9654; = next instruction)"), self.panes["code"]])]),
            w.HTML("<b>UART console</b>"), self.panes["console"],
            w.HTML("<b>Exceptions taken</b>"), self.panes["exceptions"],
        ])

    def _guarded(self, action: Callable[[], object]) -> Callable[[object], None]:
        """A click handler that reports failures in the status pane (JupyterLab would hide a traceback)."""
        def on_click(_button) -> None:
            try:
                action()
            except Exception as e:  # noqa: BLE001 - shown to the student instead of lost in a log
                self.panes["status"].value = f'<span style="color:#b00000">{type(e).__name__}: {e}</span>'
        return on_click

    def show(self, view: MachineView, changed: set[str]) -> None:
        """Write a view into the panes."""
        self.panes["status"].value = (f"<b>EL{view.el}</b> ({view.pstate.mode}) &middot; "
                                      f"{view.instructions:,} instructions &middot; {html.escape(view.status)}")
        self.panes["registers"].value = view.registers_html(changed)
        self.panes["code"].value = view.code_html()
        self.panes["console"].value = view.console_html()
        self.panes["exceptions"].value = view.exceptions_html()
