"""Widget snapshots: a live widget's saved state drawn as static HTML shows what the widget shows."""

import html

import ipywidgets

from vlab.arch.hcr import HCR
from vlab.viz.machine_widget import MachineWidget
from vlab.viz.stage2_widgets import WalkWidget
from vlab.viz.trap_widget import TrapWidget
from vlab.viz.widget_snapshot import snapshot_html


def snapshot(view) -> str:
    """`view`'s widget, saved as a notebook saves it (ipywidgets' own state), then drawn."""
    saved = ipywidgets.Widget.get_manager_state(drop_defaults=False)["state"]
    return snapshot_html(saved, view.widget.model_id)


def test_a_trap_widget_snapshot_ticks_its_controls_and_shows_its_panes():
    t = TrapWidget("syscall", traps=HCR.TVM | HCR.TWI)
    t.widget
    t.controls.boxes[HCR.TID3].value = True  # a student's click, then the snapshot
    page = snapshot(t)
    for bit, box in t.controls.boxes.items():
        checked = '<input type="checkbox" disabled checked>' if box.value else '<input type="checkbox" disabled>'
        assert f"{checked} {bit.name}</label>" in page
    assert "<option>syscall</option>" in page
    assert html.escape(t.summary()) in page and "Trap log" in page


def test_a_walk_widget_snapshot_shows_the_typed_address_and_the_levels():
    w = WalkWidget(va=0x6ABC, guest_levels=3, stage2_levels=2)
    w.widget
    page = snapshot(w)
    assert 'guest VA <input disabled value="0x6abc"' in page
    assert 'min="1" max="4" value="3"> 3</label>' in page and 'value="2"> 2</label>' in page
    assert html.escape(w.summary()) in page


def test_a_machine_widget_snapshot_shows_its_buttons_and_registers():
    m = MachineWidget.for_guest("hello")
    m.widget
    m.controls.buttons["step"].click()
    page = snapshot(m)
    assert all(f"<button disabled>{name}</button>" in page for name in ("Step", "Run N", "Run", "Reset"))
    assert f"{m.board.cpu.pc:016x}" in page  # the registers pane after the step


def test_missing_or_unknown_models_are_named_not_fatal():
    saved = {"a": {"model_name": "VideoModel", "state": {}},
             "b": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_a", "IPY_MODEL_gone"]}}}
    page = snapshot_html(saved, "b")
    assert "(Video widget)" in page and "was not saved" in page
