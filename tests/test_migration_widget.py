"""The migration widget, its timeline and the curves: text with no front end, controls, pictures that fit."""

from __future__ import annotations

import pytest
from pictures import MAX_WIDTH_PT, svg_sizes_pt

from vlab.hyp.migration_experiment import bandwidth_sweep, curve_table, dirty_rate_sweep
from vlab.viz.curves import line_chart
from vlab.viz.migration_view import table, timeline
from vlab.viz.migration_widget import MigrationWidget


@pytest.fixture(scope="module")
def widget():
    return MigrationWidget(dirty_rate=20, bandwidth_mbps=1000)


def test_the_text_view_is_the_migration_round_by_round(widget):
    m = widget.migration
    lines = widget.text().splitlines()
    assert lines[0] == widget.summary() and f"downtime {m.downtime_ticks:,} ticks" in lines[0]
    rows = lines[3:]  # after the summary, the migration's own line and the header
    assert len(rows) == len(m.transfers) and "stop-and-copy" in rows[-1]
    assert rows[0].split()[4] == f"{m.transfers[0].pages:,}"


def test_the_controls_migrate_again_with_what_they_say(widget):
    widget.widget  # built, as a front end would
    controls = widget.controls
    before = widget.migration.downtime_ticks
    controls.bandwidth.value = 10000
    assert widget.migration.link.bandwidth_mbps == 10000 and widget.migration.downtime_ticks < before
    controls.mode.value = "post-copy"
    assert widget.migration.mode == "post-copy" and widget.migration.rounds == 0
    assert "page(s) pulled" in controls.panes["timeline"].value
    assert "pages pulled (vCPU waits)" in controls.panes["table"].value


def test_a_setting_that_cannot_be_is_shown_not_raised():
    w = MigrationWidget(dirty_rate=-1)
    assert "positive number of pages" in w.summary() and w.text() == w.summary()
    with pytest.raises(TypeError, match="no setting"):
        w.set(colour="red")


def test_pictures_fit_a_projector(widget):
    points = dirty_rate_sweep([5, 60])
    chart = line_chart({"downtime": [(p.dirty_rate, p.downtime_ms) for p in points]}, "pages/ms", "ms",
                       log_x=True, marks={"published: 60 ms": 60})
    for svg in (timeline(widget.migration).svg, chart.svg):
        assert all(w <= MAX_WIDTH_PT for w, _ in svg_sizes_pt(svg)) and svg_sizes_pt(svg)


def test_faster_dirtying_or_a_slower_link_means_more_downtime():
    rates = dirty_rate_sweep([2, 30])
    assert rates[0].downtime_ticks < rates[1].downtime_ticks and rates[0].rounds <= rates[1].rounds
    links = bandwidth_sweep([300, 3000], dirty_rate=20)
    assert links[0].downtime_ticks > links[1].downtime_ticks
    assert curve_table(links).splitlines()[1].split()[1] == "300"


def test_the_timeline_table_lists_every_transfer(widget):
    widget.set(mode="pre-copy: xen_2005", bandwidth_mbps=1000)
    m = widget.migration
    assert sum(1 for line in table(m).splitlines()[2:]) == len(m.transfers)


def test_a_chart_with_no_point_or_a_bad_log_axis_is_refused():
    with pytest.raises(ValueError, match="at least one point"):
        line_chart({}, "x", "y")
    with pytest.raises(ValueError, match="logarithmic"):
        line_chart({"s": [(0, 1)]}, "x", "y", log_x=True)
