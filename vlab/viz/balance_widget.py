"""Balancing, live: VMs through a day on a few hosts, under no policy, the threshold policy, or yours.

    b = BalanceWidget()                         # vlab.hyp.balance.day() on 3 hosts of 2 pCPUs
    b = BalanceWidget(policies={"mine": my_plan})   # your policy among the choices
    b.set(policy="threshold", high=0.7)
    print(b.text())

Every change runs the cluster again from power-on: each epoch's utilisation, the hosts switched
on, the migrations and what they cost are those of real guests, measured now.
"""

from __future__ import annotations

import functools
import html

from vlab.hyp import balance_threshold
from vlab.hyp.balance import Cluster, Policy, Timeline, Workload, day
from vlab.viz.balance_view import grid
from vlab.viz.live import LiveView


class BalanceWidget(LiveView):
    """`workloads` on `hosts` hosts of `pcpus` pCPUs for `epochs` epochs, under the chosen policy."""

    def __init__(self, workloads: list[Workload] | None = None, hosts: int = 3, pcpus: int = 2, epochs: int = 12,
                 policy: str = "threshold", policies: dict[str, Policy] | None = None,
                 high: float = balance_threshold.HIGH, low: float = balance_threshold.LOW):
        self.workloads = workloads or day()
        self.hosts, self.pcpus, self.epochs = hosts, pcpus, epochs
        self.policies = {"none": None, "threshold": None, **(policies or {})}
        self.policy, self.high, self.low = policy, high, low
        self.error = ""
        self.run()

    def set(self, **settings) -> None:
        """Change policy=, high=, low= (the threshold policy's marks) or epochs=, and run again."""
        for name, value in settings.items():
            if name not in ("policy", "high", "low", "epochs"):
                raise TypeError(f"no setting {name!r}: policy, high, low or epochs")
            setattr(self, name, value)
        self.run()

    def _chosen(self) -> Policy | None:
        if self.policy not in self.policies:
            raise ValueError(f"no policy {self.policy!r}: choose {', '.join(self.policies)}")
        if self.policy == "threshold":
            if not 0 < self.low < self.high <= 1:
                raise ValueError(f"the marks must be 0 < low < high <= 1, not low {self.low:g}, high {self.high:g}")
            return functools.partial(balance_threshold.plan, high=self.high, low=self.low)
        return self.policies[self.policy]

    def run(self) -> Timeline | None:
        """Run the cluster as set; what a policy or a setting gets wrong is shown, not raised."""
        try:
            cluster = Cluster(self.workloads, self.hosts, self.pcpus)
            self.timeline = cluster.run(self.epochs, self._chosen())
            self.error = ""
        except Exception as e:  # noqa: BLE001 - a policy of the student's may fail in any way: show it
            self.error = f"{type(e).__name__}: {e}"
        self.refresh()
        return None if self.error else self.timeline

    def summary(self) -> str:
        marks = f" (high {self.high:.0%}, low {self.low:.0%})" if self.policy == "threshold" else ""
        if self.error:
            return f"policy {self.policy}{marks}: {self.error}"
        return f"policy {self.policy}{marks}: {self.timeline.summary()}"

    def text(self) -> str:
        return self.summary() if self.error else f"{self.summary()}\n{self.timeline.table()}"

    def _build_controls(self) -> _Controls:
        return _Controls(self)


class _Controls:
    def __init__(self, widget: BalanceWidget):
        import ipywidgets as w  # only when a front-end asks for the widget

        self.widget = widget
        self.policy = w.Dropdown(options=list(widget.policies), value=widget.policy, description="policy")
        self.high = w.FloatSlider(value=widget.high, min=0.4, max=1.0, step=0.05, description="high",
                                  continuous_update=False, readout_format=".0%")
        self.low = w.FloatSlider(value=widget.low, min=0.0, max=0.6, step=0.05, description="low",
                                 continuous_update=False, readout_format=".0%")
        for control in (self.policy, self.high, self.low):
            control.observe(lambda _: self._apply(), names="value")
        self.panes = {name: w.HTML() for name in ("summary", "grid", "table")}
        self.box = w.VBox([w.HBox([self.policy, self.high, self.low]), *self.panes.values()])

    def _apply(self) -> None:
        self.widget.set(policy=self.policy.value, high=self.high.value, low=self.low.value)

    def show(self) -> None:
        widget = self.widget
        self.panes["summary"].value = f"<b>{html.escape(widget.summary())}</b>"
        if widget.error:
            self.panes["grid"].value = self.panes["table"].value = ""
            return
        self.panes["grid"].value = grid(widget.timeline).svg
        self.panes["table"].value = f"<pre>{html.escape(widget.timeline.table())}</pre>"
