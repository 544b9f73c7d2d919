"""Sharing the CPU, live: guests on a host under a policy, as a Gantt chart, their progress and the figures.

    s = SchedWidget([Guest("a", "spinner", weight=512), Guest("b", "spinner")], policy="credit")
    s                            # in Jupyter: a policy, cores, the guests' settings; the chart and tables
    s.set_policy("fair")         # what the controls do, as methods
    print(s.text())

Every change runs the experiment again from power-on (vlab.hyp.experiment): what is shown is a
complete run of real guests under exactly the settings chosen.
"""

from __future__ import annotations

import html
from dataclasses import replace

from vlab.hyp.experiment import WORKLOADS, Experiment, Guest, share_the_cpu
from vlab.sched.registry import POLICIES
from vlab.viz.gantt import host_gantt
from vlab.viz.live import LiveView

MAX_GUESTS = 4
DEFAULT_GUESTS = [Guest("a", "spinner", weight=512), Guest("b", "spinner"), Guest("c", "sleeper"),
                  Guest("d", "spinner", vcpus=2)]


class SchedWidget(LiveView):
    """Up to MAX_GUESTS guests on a host of 1..4 physical CPUs, under one of vlab.sched's policies."""

    def __init__(self, guests: list[Guest] | None = None, policy: str = "credit", pcpus: int = 2,
                 duration_ms: float = 30, slice_ms: float | None = 3, windows: str | None = None,
                 switch_cost: int = 0):
        self.guests = list(DEFAULT_GUESTS if guests is None else guests)[:MAX_GUESTS]
        self.policy, self.pcpus, self.duration_ms = policy, pcpus, duration_ms
        self.slice_ms, self.windows, self.switch_cost = slice_ms, windows, switch_cost
        self.error = ""
        self.run()

    def run(self) -> Experiment | None:
        """Run the experiment as set; a setting the policy refuses is shown, not raised."""
        try:
            uses_slice = self.policy not in ("arinc653",)
            self.experiment = share_the_cpu(self.guests, self.policy, self.pcpus, self.duration_ms,
                                            self.slice_ms if uses_slice else None,
                                            self.windows if self.policy == "arinc653" else None, self.switch_cost)
            self.error = ""
        except ValueError as e:  # SchedError is one: a weight the policy has no use for, a bad frame...
            self.error = str(e)
        self.refresh()
        return None if self.error else self.experiment

    def set_policy(self, policy: str, windows: str | None = None) -> Experiment | None:
        self.policy = policy
        if windows is not None:
            self.windows = windows
        return self.run()

    def set_pcpus(self, pcpus: int) -> Experiment | None:
        self.pcpus = pcpus
        return self.run()

    def set_guest(self, index: int, **settings) -> Experiment | None:
        """Change guest `index` (workload=, vcpus=, weight=, cap=)."""
        self.guests[index] = replace(self.guests[index], **settings)
        return self.run()

    # --- what is shown -----------------------------------------------------------------

    def summary(self) -> str:
        if self.error:
            return f"{self.policy} on {self.pcpus} pCPU(s): {self.error}"
        f = self.experiment.figures
        jain = "-" if f.jain is None else f"{f.jain:.3f}"
        return (f"{len(self.guests)} guests under {self.policy} on {self.pcpus} pCPU(s) for {self.duration_ms:g} ms: "
                f"{f.world_switches} world switches, Jain's index {jain}")

    def text(self) -> str:
        if self.error:
            return self.summary()
        return f"{self.summary()}\n{self.experiment.table()}\n{host_gantt(self.experiment.host, self.experiment.names)}"

    # --- the ipywidgets front-end ---------------------------------------------------------

    def _build_controls(self) -> _Controls:
        return _Controls(self)


class _Controls:
    def __init__(self, sched: SchedWidget):
        import ipywidgets as w  # only when a front-end asks for the widget

        self.sched = sched
        self.policy = w.Dropdown(options=list(POLICIES), value=sched.policy, description="policy")
        self.pcpus = w.IntSlider(value=sched.pcpus, min=1, max=4, description="pCPUs")
        self.windows = w.Text(value=sched.windows or "", placeholder="a=2ms,b=4ms/frame=8ms",
                              description="windows")
        narrow = w.Layout(width="130px")
        self.rows = []
        for i in range(MAX_GUESTS):
            g = sched.guests[i] if i < len(sched.guests) else None
            row = {"workload": w.Dropdown(options=["(none)", *WORKLOADS], value=g.workload if g else "(none)",
                                          layout=w.Layout(width="110px")),
                   "vcpus": w.BoundedIntText(value=g.vcpus if g else 1, min=1, max=4, description="vCPUs",
                                             layout=narrow),
                   "weight": w.BoundedIntText(value=g.weight if g else 256, min=1, max=65535, description="weight",
                                              layout=narrow),
                   "cap": w.BoundedIntText(value=g.cap if g else 0, min=0, max=400, description="cap %",
                                           layout=narrow)}
            self.rows.append(row)
        self.go = w.Button(description="Run", button_style="primary")
        self.go.on_click(lambda _: self._apply())
        self.panes = {name: w.HTML() for name in ("summary", "gantt", "table")}
        names = "abcd"
        self.box = w.VBox([
            w.HBox([self.policy, self.pcpus, self.go]), self.windows,
            *[w.HBox([w.HTML(f"<b>{names[i]}</b>", layout=w.Layout(width="20px")), *row.values()])
              for i, row in enumerate(self.rows)],
            self.panes["summary"], self.panes["gantt"], self.panes["table"],
        ])

    def _apply(self) -> None:
        s = self.sched
        s.guests = [Guest("abcd"[i], row["workload"].value, row["vcpus"].value, row["weight"].value, row["cap"].value)
                    for i, row in enumerate(self.rows) if row["workload"].value != "(none)"]
        s.policy, s.pcpus, s.windows = self.policy.value, self.pcpus.value, self.windows.value or None
        s.run()

    def show(self) -> None:
        s = self.sched
        self.panes["summary"].value = f"<b>{html.escape(s.summary())}</b>"
        if s.error:
            self.panes["gantt"].value = self.panes["table"].value = ""
            return
        self.panes["gantt"].value = host_gantt(s.experiment.host, s.experiment.names).svg
        self.panes["table"].value = f"<pre>{html.escape(s.experiment.table())}</pre>"
