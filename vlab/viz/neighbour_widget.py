"""The hostile neighbour, live: an attack beside a victim on one host, what the victim ends with
against its run alone, the host buffer, the reads -- and the fuzzer's counts.

    n = NeighbourWidget("writes everywhere", share=True)
    n                            # in Jupyter: an attack, page sharing, cores; the comparison; Fuzz
    n.set_attack("wild hypercalls")
    n.fuzz(96)                   # generated hostile programs beside the victim: leaks, hangs, errors
    print(n.text())

Every change runs the attack again from power-on (vlab.fuzz.neighbour.attack): the victim beside
the attacker, twice -- holding each of two secrets -- and alone.
"""

from __future__ import annotations

import html
import time

from vlab.fuzz import neighbour
from vlab.fuzz.attacks import ATTACKS
from vlab.viz.live import LiveView

FUZZ_SIZES = (48, 96, 480)  # programs a Fuzz click runs (whole hosts of neighbour.GROUP)


class NeighbourWidget(LiveView):
    """One attack of vlab.fuzz.attacks beside the victim, on a host of 1 or 2 physical CPUs."""

    def __init__(self, attack: str = "writes everywhere", share: bool = True, pcpus: int = 1):
        if attack not in ATTACKS:
            raise ValueError(f"no attack {attack!r}; choose one of {', '.join(ATTACKS)}")
        self.attack, self.share, self.pcpus = attack, share, pcpus
        self.tally: neighbour.NeighbourTally | None = None
        self.rate = 0.0  # programs per second of the last fuzzing
        self.run()

    def run(self) -> neighbour.Outcome:
        """Run the attack as set beside the victim."""
        self.outcome = neighbour.attack(self.attack, share=self.share, pcpus=self.pcpus)
        self.refresh()
        return self.outcome

    def set_attack(self, attack: str) -> neighbour.Outcome:
        if attack not in ATTACKS:
            raise ValueError(f"no attack {attack!r}; choose one of {', '.join(ATTACKS)}")
        self.attack = attack
        return self.run()

    def set_share(self, share: bool) -> neighbour.Outcome:
        self.share = share
        return self.run()

    def set_pcpus(self, pcpus: int) -> neighbour.Outcome:
        self.pcpus = pcpus
        return self.run()

    def fuzz(self, programs: int = FUZZ_SIZES[0], seed: int = 0) -> neighbour.NeighbourTally:
        """Generated hostile programs seed .. seed + programs - 1 beside the victim; their counts."""
        began = time.monotonic()
        self.tally = neighbour.fuzz(range(seed, seed + programs))
        self.rate = self.tally.programs / max(time.monotonic() - began, 1e-9)
        self.refresh()
        return self.tally

    # --- what is shown -----------------------------------------------------------------

    def summary(self) -> str:
        o = self.outcome
        verdict = "the victim is isolated" if o.isolated else "THE VICTIM WAS REACHED"
        return (f"{self.attack} beside the victim on {self.pcpus} pCPU(s), page sharing "
                f"{'on' if self.share else 'off'}: {verdict}")

    def fuzz_text(self) -> str:
        if self.tally is None:
            return "fuzzing: not run yet (Fuzz runs generated hostile programs beside the victim)"
        return f"{self.tally.report()}\nFuzz programs per second: {self.rate:.1f}"

    def text(self) -> str:
        return f"{self.summary()}\n{self.outcome.table()}\n{self.fuzz_text()}"

    # --- the ipywidgets front-end ---------------------------------------------------------

    def _build_controls(self) -> _Controls:
        return _Controls(self)


class _Controls:
    def __init__(self, view: NeighbourWidget):
        import ipywidgets as w  # only when a front-end asks for the widget

        self.view = view
        self.attack = w.Dropdown(options=list(ATTACKS), value=view.attack, description="attack")
        self.share = w.Checkbox(value=view.share, description="page sharing")
        self.pcpus = w.IntSlider(value=view.pcpus, min=1, max=2, description="pCPUs")
        self.go = w.Button(description="Run", button_style="primary")
        self.go.on_click(lambda _: self._apply())
        self.programs = w.Dropdown(options=list(FUZZ_SIZES), value=FUZZ_SIZES[0], description="programs")
        self.fuzz = w.Button(description="Fuzz")
        self.fuzz.on_click(lambda _: view.fuzz(self.programs.value))
        self.panes = {name: w.HTML() for name in ("summary", "table", "fuzz")}
        self.box = w.VBox([w.HBox([self.attack, self.share, self.pcpus, self.go]), self.panes["summary"],
                           self.panes["table"], w.HBox([self.programs, self.fuzz]), self.panes["fuzz"]])

    def _apply(self) -> None:
        v = self.view
        v.attack, v.share, v.pcpus = self.attack.value, self.share.value, self.pcpus.value
        v.run()

    def show(self) -> None:
        v = self.view
        self.panes["summary"].value = f"<b>{html.escape(v.summary())}</b>"
        self.panes["table"].value = f"<pre>{html.escape(v.outcome.table())}</pre>"
        self.panes["fuzz"].value = f"<pre>{html.escape(v.fuzz_text())}</pre>"
