"""Pick a structure and an exit type: the exit's path lights up step by step, with its saves and
restores, beside what vlab measures for it now, what the cycle model says, and a whole guest's exits.

    w = ExitPathWidget("type2", "hypercall")
    w.set(structure="vhe", exit_type="emulated MMIO")
    w.step(2)            # light steps 1..2
    print(w.text())

The microseconds are measured when a choice is first shown (vlab.hyp.type_costs, `iterations`
exits of the kind, minus NOPs); the cycles come from vlab.hyp.cycle_model, a model of hardware
fitted to published figures -- two different things, shown apart.
"""

from __future__ import annotations

import html
from functools import cache

from vlab.arch.hcr import HCR
from vlab.guests import GUESTS
from vlab.hyp.assign import passthrough, second_uart
from vlab.hyp.cycle_model import cycles, fit
from vlab.hyp.hypervisors import STRUCTURES, boot, run
from vlab.hyp.scenarios import device_writer
from vlab.hyp.type_costs import EXIT_TYPES, microseconds_per_exit, path_for
from vlab.machine.loader import image_from_program
from vlab.viz.hyp_types import path_diagram
from vlab.viz.live import LiveView

WHOLE_RUN_RAM = 0x40_0000


@cache
def whole_run(structure: str, exit_type: str) -> str:
    """A whole guest's exits under `structure`, by class and path: sensitive.S (every kind of exit
    but a passthrough access), or for a passthrough access a guest writing 64 bytes to a device of
    its own."""
    if exit_type == "passthrough access":
        vm, s = boot(image_from_program(device_writer(64)), structure, ram_size=WHOLE_RUN_RAM)
        passthrough(second_uart("link"), vm)
        what = "64 bytes to a device passed through"
    else:
        vm, s = boot(GUESTS["sensitive"].image(), structure, traps=HCR.TRVM | HCR.TWI, ram_size=WHOLE_RUN_RAM)
        what = "sensitive.S (TRVM, TWI)"
    result = run(vm)
    lines = [f"a whole run of {what} under {structure}: {result.trapped:,} exits, "
             f"{s.world_switches(vm):,} world switches on their paths"]
    for kind, paths in s.paths(vm).items():
        for path, n in paths.items():
            lines.append(f"  {kind:<11} {n:>5} x  {path.route:<18} {path.world_switches} world switches each")
    return "\n".join(lines)


class ExitPathWidget(LiveView):
    """A structure, an exit type, and how far along the path is lit."""

    def __init__(self, structure: str = "type2", exit_type: str = "hypercall", iterations: int = 300,
                 repeats: int = 3):
        self.iterations, self.repeats = iterations, repeats
        self._measured: dict[tuple[str, str], tuple[float, float]] = {}
        self.costs = fit()
        self.structure = self.exit_type = None
        self.set(structure, exit_type)

    def set(self, structure: str | None = None, exit_type: str | None = None) -> None:
        """Choose the structure and/or the exit type: the path is lit from its first step again."""
        structure = structure or self.structure
        exit_type = exit_type or self.exit_type
        if structure not in STRUCTURES:
            raise ValueError(f"no structure {structure!r}: choose one of {', '.join(STRUCTURES)}")
        if exit_type not in EXIT_TYPES:
            raise ValueError(f"no exit type {exit_type!r}: choose one of {', '.join(EXIT_TYPES)}")
        self.structure, self.exit_type = structure, exit_type
        self.path = path_for(structure, exit_type)
        self.lit = 1
        self.refresh()

    @property
    def steps(self) -> int:
        return len(self.path.steps) if self.path is not None else 0

    def step(self, lit: int) -> None:
        """Light the path's steps 1..`lit` (clamped to the path)."""
        self.lit = max(1, min(lit, max(self.steps, 1)))
        self.refresh()

    def measured(self) -> tuple[float, float]:
        """(microseconds per exit under the structure, under vlab's own hypervisor), measured once per choice."""
        key = (self.structure, self.exit_type)
        if key not in self._measured:
            self._measured[key] = tuple(microseconds_per_exit(hyp, self.exit_type, self.iterations,
                                                              repeats=self.repeats) for hyp in (self.structure, "none"))
        return self._measured[key]

    def summary(self) -> str:
        if self.path is None:
            return (f"{self.structure} / {self.exit_type}: no exit -- the load or store reaches the device "
                    "through stage 2, no hypervisor on the way")
        return (f"{self.structure} / {self.exit_type}: {self.path.route}, {self.steps} steps, "
                f"{self.path.world_switches} world switches; step {self.lit} of {self.steps} lit")

    def numbers(self) -> str:
        """The measured microseconds, the modelled cycles, and a whole run's exits -- apart."""
        us, floor = self.measured()
        model = cycles(self.path, self.costs)
        return "\n".join([
            f"measured now, in vlab: {us:.1f} us per {self.exit_type} under {self.structure} "
            f"(vlab's own hypervisor: {floor:.1f} us; {self.iterations:,} of them minus NOPs, median of "
            f"{self.repeats})",
            f"modelled, for hardware: about {model:,.0f} cycles (vlab.hyp.cycle_model, fitted to Dall et al.'s "
            "recalled figures)",
            whole_run(self.structure, self.exit_type)])

    def text(self) -> str:
        picture = path_diagram(self.path, self.lit).text if self.path is not None else ""
        return "\n".join(part for part in (self.summary(), picture, self.numbers()) if part)

    def _build_controls(self) -> _Controls:
        return _Controls(self)


class _Controls:
    def __init__(self, owner: ExitPathWidget):
        import ipywidgets as w

        self.owner = owner
        wide = {"description_width": "initial"}
        self.structure = w.ToggleButtons(options=list(STRUCTURES), value=owner.structure, description="structure",
                                         style=wide)
        self.exit_type = w.Dropdown(options=list(EXIT_TYPES), value=owner.exit_type, description="exit", style=wide)
        self.lit = w.IntSlider(value=owner.lit, min=1, max=max(owner.steps, 1), description="step", style=wide)
        self.next = w.Button(description="next step")
        self.summary, self.picture, self.numbers = w.HTML(), w.HTML(), w.HTML()
        self.structure.observe(lambda c: owner.set(structure=c["new"]), names="value")
        self.exit_type.observe(lambda c: owner.set(exit_type=c["new"]), names="value")
        self.lit.observe(lambda c: owner.step(c["new"]), names="value")
        self.next.on_click(lambda _: owner.step(owner.lit % max(owner.steps, 1) + 1))
        self.box = w.VBox([w.HBox([self.structure, self.exit_type]), w.HBox([self.lit, self.next]),
                           self.summary, self.picture, self.numbers])

    def show(self) -> None:
        owner = self.owner
        self.lit.max = max(owner.steps, 1)
        self.lit.value = owner.lit
        self.lit.disabled = self.next.disabled = owner.path is None
        self.summary.value = f"<b>{html.escape(owner.summary())}</b>"
        self.picture.value = path_diagram(owner.path, owner.lit).html() if owner.path is not None else ""
        self.numbers.value = f"<pre>{html.escape(owner.numbers())}</pre>"
