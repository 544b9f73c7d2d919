"""The balancing widget and its grid: text with no front end, controls, a student's policy, a picture that fits."""

from __future__ import annotations

import pytest
from pictures import MAX_WIDTH_PT, svg_sizes_pt

from vlab.hyp.balance import Workload
from vlab.viz.balance_view import grid
from vlab.viz.balance_widget import BalanceWidget

SMALL = [Workload("a", (0.1, 0.9)), Workload("b", (0.1, 0.6)), Workload("c", (0.1, 0.1))]


@pytest.fixture(scope="module")
def widget():
    return BalanceWidget(SMALL, hosts=3, epochs=6, policies={"all on h0": lambda hosts: [(v, "h0") for h in hosts
                                                                                       for v in h["vms"]]})


def test_the_text_view_is_each_epoch_of_the_cluster(widget):
    lines = widget.text().splitlines()
    assert lines[0] == widget.summary() and lines[0].startswith("policy threshold (high 80%, low 30%)")
    assert lines[1] == widget.timeline.summary() and lines[2].startswith("epoch")
    assert [line.split()[0] for line in lines[3:]] == [str(n) for n in range(6)]


def test_the_controls_run_the_cluster_again_under_the_policy_chosen(widget):
    widget.widget  # built, as a front end would
    controls = widget.controls
    controls.policy.value = "none"
    assert widget.timeline.moves == [] and widget.timeline.host_epochs == 3 * 6
    controls.policy.value = "all on h0"
    assert set(widget.timeline.epochs[-1].placement.values()) == {"h0"}
    assert "off" in controls.panes["grid"].value and "<svg" in controls.panes["grid"].value
    controls.policy.value = "threshold"
    controls.high.value = 0.5
    assert widget.high == 0.5 and "high 50%" in controls.panes["summary"].value


def test_a_policy_that_fails_or_marks_that_make_no_sense_are_shown_not_raised():
    broken = BalanceWidget(SMALL, epochs=2, policy="broken", policies={"broken": lambda hosts: 1 / 0})
    assert "ZeroDivisionError" in broken.summary()
    wrong = BalanceWidget(SMALL, epochs=2, policies={"wrong": lambda hosts: [("z", "h0")]}, policy="wrong")
    assert "moved 'z'" in wrong.summary()
    marks = BalanceWidget(SMALL, epochs=2, high=0.2, low=0.5)
    assert "0 < low < high" in marks.summary()
    with pytest.raises(TypeError, match="no setting"):
        marks.set(colour="red")


def test_the_grid_fits_a_projector(widget):
    sizes = svg_sizes_pt(grid(widget.timeline).svg)
    assert sizes and all(w <= MAX_WIDTH_PT for w, _ in sizes)
