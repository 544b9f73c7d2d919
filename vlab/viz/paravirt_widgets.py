"""Widgets for chapter 7, para- and full virtualization: every number is a run made now.

    X86Widget("binary translation")   the x86 probe kernel under one answer to Theorem 1's failure
    ParavirtWidget()                  the AArch64 kernel's paravirtual switches, ticked one by one
    VirtioBatchWidget(batch=8)        exits per KB through each console as the batch grows
"""

from __future__ import annotations

import html
from dataclasses import replace

from vlab.guests.para_or_full import FULL, Build
from vlab.hyp.para_vs_full import KVM_TRAPS, ConsolePrice, Run, exits_per_kb, run_in_vm, run_on_board
from vlab.viz.live import LiveView
from vlab.x86 import answers

HARDWARE = "hardware assistance"
X86_ANSWERS = ("trap-and-emulate", "paravirtual", "binary translation", HARDWARE)
FEATURES = {  # what each box of ParavirtWidget switches on
    "PV_CONSOLE": "print with console_io, not the PL011",
    "BATCH": "hand the console 8 lines at a time",
    "PV_IDENTITY": "ask Xen who it is, not the ID registers",
    "PV_SCHED": "sched_op block / yield / shutdown",
}
UART_KB, PRICE_KB = 2, 16  # KB of text the PL011 (two exits a byte) and the others are measured on


def _pre(text: str) -> str:
    return f"<pre style='margin:0'>{html.escape(text)}</pre>"


class _Panes:
    """The controls' common part: a summary line and a text pane, redrawn from the widget's state."""

    def __init__(self, owner: LiveView, controls: list):
        import ipywidgets as w  # only when a front-end asks for the widget

        self.owner, self.summary, self.body = owner, w.HTML(), w.HTML()
        self.box = w.VBox([w.HBox(controls), self.summary, self.body])

    def show(self) -> None:
        headline, _, rest = self.owner.text().partition("\n")  # the text view's first line is the summary
        self.summary.value = f"<b>{html.escape(headline)}</b>"
        self.body.value = _pre(rest)


# --- x86 under each answer ------------------------------------------------------------------------

class X86Widget(LiveView):
    """The x86 probe kernel (vlab/x86/probe.S) at ring 3 under one answer, beside the bare machine."""

    def __init__(self, answer: str = "trap-and-emulate"):
        self.bare = answers.run("bare")
        self.set_answer(answer)

    def set_answer(self, answer: str) -> None:
        if answer not in X86_ANSWERS:
            raise ValueError(f"no answer {answer!r}: choose one of {', '.join(X86_ANSWERS)}")
        self.answer = answer
        if answer == HARDWARE:  # x86 of 2005 could not; AArch64 can: the unmodified kernel, trapped
            self.vm, self.board = run_in_vm(FULL, traps=KVM_TRAPS), run_on_board(FULL)
        else:
            self.comparison = answers.Comparison({"bare": self.bare, answer: answers.run(answer)})
        self.refresh()

    def summary(self) -> str:
        if self.answer == HARDWARE:
            same = "the same" if self.vm.identity == self.board.identity else "NOT the same"
            return (f"{HARDWARE}: the unmodified AArch64 kernel in a VM read {same} identity as on the bare "
                    f"board, with {self.vm.total_exits:,} exits trapped by HCR_EL2")
        wrong = self.comparison.differences(self.answer)
        verdict = f"{len(wrong)} probes differ from the bare machine" if wrong else "exactly what the bare machine shows"
        entries = sum(self.comparison.outcomes[self.answer].events.values())
        return f"x86 probe kernel under {self.answer}: {verdict}; {entries} monitor entries"

    def text(self) -> str:
        if self.answer == HARDWARE:
            return (f"{self.summary()}\n{answers.HARDWARE_ASSISTANCE}\n"
                    f"on the board: {self.board.identity.describe()}\nin the VM:    {self.vm.identity.describe()}\n"
                    f"exits: {self.vm.exits}")
        outcome = self.comparison.outcomes[self.answer]
        cost = ", ".join(f"{door} x{n}" for door, n in sorted(outcome.events.items())) or "none"
        extra = f"\n{outcome.translation.describe()}" if outcome.translation else ""
        return f"{self.summary()}\n{self.comparison.table()}\nmonitor entries: {cost}{extra}"

    def _build_controls(self) -> _Panes:
        import ipywidgets as w

        buttons = w.ToggleButtons(options=X86_ANSWERS, value=self.answer, description="answer")
        buttons.observe(lambda change: self.set_answer(change["new"]), names="value")
        return _Panes(self, [buttons])


# --- the paravirtual switches, one by one ----------------------------------------------------------

class ParavirtWidget(LiveView):
    """The para_or_full kernel in a VM configured like KVM's guests: tick a paravirtual feature and
    the same work runs again, built with it. The full build's run is the yardstick."""

    def __init__(self, features: frozenset[str] = frozenset()):
        self._runs: dict[Build, Run] = {}  # each build runs once: its exits never change
        self.full = self._run(FULL)
        self.set_features(features)

    def _run(self, build: Build) -> Run:
        if build not in self._runs:
            self._runs[build] = run_in_vm(build)
        return self._runs[build]

    def set_features(self, features) -> Run:
        features = frozenset(features)
        unknown = features - FEATURES.keys()
        if unknown:
            raise ValueError(f"no feature {', '.join(sorted(unknown))}; there are: {', '.join(FEATURES)}")
        self.features = features
        self.build = replace(FULL, switches=features - {"BATCH"}, batch=8 if "BATCH" in features else 1)
        self.run = self._run(self.build)
        self.refresh()
        return self.run

    def summary(self) -> str:
        run, full = self.run, self.full
        on = ", ".join(f for f in FEATURES if f in self.features) or "none (full virtualization)"
        same = "prints the same" if run.printed == full.printed and run.passed else "DOES NOT print the same"
        return f"features: {on}: {run.total_exits:,} exits (full build {full.total_exits:,}); {same}"

    def text(self) -> str:
        """The summary (exits: the same at every run), then what was measured now (host time) and seen."""
        exits = "\n".join(f"  {kind:<11} {n:>6,}" for kind, n in sorted(self.run.exits.items()))
        return (f"{self.summary()}\nhost time, measured now: {self.run.seconds * 1e3:.1f} ms "
                f"(full build {self.full.seconds * 1e3:.1f} ms)\nexits by class:\n{exits}\n"
                f"instructions: {self.run.result.instructions:,} (full build {self.full.result.instructions:,})\n"
                f"what it knows: {self.run.identity.describe()}\nit printed:\n{self.run.printed}")

    def _build_controls(self) -> _Panes:
        import ipywidgets as w

        boxes = [w.Checkbox(value=name in self.features, description=name, tooltip=meaning, indent=False,
                            layout=w.Layout(width="130px")) for name, meaning in FEATURES.items()]

        def changed(_change) -> None:
            self.set_features({box.description for box in boxes if box.value})

        for box in boxes:
            box.observe(changed, names="value")
        panes = _Panes(self, boxes)
        panes.boxes = {box.description: box for box in boxes}
        return panes


# --- virtio: the batch size ------------------------------------------------------------------------

class VirtioBatchWidget(LiveView):
    """Exits per KB of text through the emulated PL011, Xen's console_io and the virtio console
    (notified, and polling its queue) at the batch size the slider sets."""

    def __init__(self, batch: int = 8):
        self.uart = exits_per_kb("pl011", 1, UART_KB)  # the UART takes bytes: no batch changes it
        self.set_batch(batch)

    def set_batch(self, batch: int) -> dict[str, ConsolePrice]:
        self.batch = batch
        self.prices = {"PL011 (emulated)": self.uart,
                       "console_io": exits_per_kb("console_io", batch, PRICE_KB),
                       "virtio": exits_per_kb("virtio", batch, PRICE_KB),
                       "virtio, device polls": exits_per_kb("virtio", batch, PRICE_KB, polls=True)}
        self.refresh()
        return self.prices

    def summary(self) -> str:
        virtio = self.prices["virtio"].exits_per_kb
        return (f"batches of {self.batch} line{'s' * (self.batch != 1)} (64 bytes each): the PL011 costs "
                f"{self.uart.exits_per_kb:,.0f} exits per KB, virtio {virtio:,.2f}")

    def text(self) -> str:
        widest = max(p.exits_per_kb for p in self.prices.values())
        rows = [f"  {name:<22} {p.exits_per_kb:>9,.2f} exits/KB  {'#' * round(40 * p.exits_per_kb / widest)}"
                for name, p in self.prices.items()]
        return (self.summary() + "\n" + "\n".join(rows)
                + f"\n  (measured now, on {UART_KB} KB of text through the PL011 and {PRICE_KB} KB through the others)")

    def _build_controls(self) -> _Panes:
        import ipywidgets as w

        slider = w.IntSlider(value=self.batch, min=1, max=64, description="batch (lines)",
                             continuous_update=False, style={"description_width": "initial"})
        slider.observe(lambda change: self.set_batch(change["new"]), names="value")
        panes = _Panes(self, [slider])
        panes.slider = slider
        return panes
