"""The course as a student meets it: JupyterLab in Chromium, Run All, then the widgets clicked.

For every chapter: the notebook opens without asking for a kernel, runs top to bottom, shows
no traceback, no "Error displaying widget" and no browser console error, and every widget
view it produced is rendered. Then each chapter's main widget is used as a student would,
and what it shows is checked against vlab run directly in the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from tests.browser.conftest import ARTIFACTS, ROOT

NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
RUN_TIMEOUT_MS = 300_000

# Console messages that are not the course's: each filter says why it is harmless.
HARMLESS_CONSOLE = (
    "favicon",  # the server has no favicon for some routes
    "Failed to load resource: the server responded with a status of 404",  # optional lab extensions' settings
)

NOTEBOOK_DONE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext || panel.sessionContext.session?.kernel?.status !== 'idle')
    return false;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  return cells.length > 0 && cells.every(c => c.model.executionCount !== null);
}"""

MODEL_OUTPUTS = """() => window.jupyterapp.shell.currentWidget.content.widgets
  .filter(c => c.model.type === 'code').map(c => c.model.outputs.toJSON())"""


def open_and_run(browser, lab: str, name: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{lab}/lab/tree/notebooks/{name}?reset")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.sessionContext?.session?.kernel",
                           timeout=120_000)
    assert page.locator(".jp-Dialog").count() == 0, "a dialog (e.g. Select Kernel) opened with the notebook"
    page.wait_for_timeout(1000)  # JupyterLab asks about news a moment after start, when it asks at all
    assert "Jupyter news" not in page.locator("body").inner_text(), "the news prompt is not switched off"
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(NOTEBOOK_DONE, timeout=RUN_TIMEOUT_MS, polling=500)
    page.wait_for_timeout(1500)  # let the widget views finish rendering
    return page, errors


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_chapter_runs_all_in_the_browser_without_errors(browser, lab, name):
    page, errors = open_and_run(browser, lab, name)
    try:
        outputs = [o for cell in page.evaluate(MODEL_OUTPUTS) for o in cell]
        tracebacks = [o for o in outputs if o.get("output_type") == "error"
                      or "Traceback" in "".join(o.get("text", ""))]
        assert not tracebacks, json.dumps(tracebacks)[:2000]
        text = page.locator(".jp-Notebook").inner_text()
        assert "Error displaying widget" not in text
        widget_views = sum("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
        rendered = page.locator(".jp-OutputArea-output > .jupyter-widgets, .jp-OutputArea-output .widget-box").count()
        assert rendered >= widget_views, f"{widget_views} widget views in the outputs, {rendered} rendered"
        serious = [e for e in errors if not any(h in e for h in HARMLESS_CONSOLE)]
        assert not serious, serious
    finally:
        page.screenshot(path=str(ARTIFACTS / f"{Path(name).stem}.png"), full_page=True)
        page.close()


# --- each chapter's main widget, used as a student would ---------------------------------------

def scratch_notebook(course_copy: Path, name: str, *sources: str) -> str:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    notebook.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nbformat.write(notebook, course_copy / "notebooks" / name)
    return name


@pytest.mark.timeout(600)
def test_chapter1_stepping_the_machine_shows_the_pc_vlab_computes(browser, lab, course_copy):
    from vlab.guests import GUESTS
    from vlab.machine.board import Board
    from vlab.machine.loader import image_from_file, load

    board = Board()
    load(board, image_from_file(GUESTS["hello"].path))
    for _ in range(3):
        board.step()
    expected = f"{board.cpu.pc:016x}"
    name = scratch_notebook(course_copy, "zz_step.ipynb", "from vlab.viz.machine_widget import MachineWidget\n"
                            "m = MachineWidget.for_guest('hello')\nm")
    page, _ = open_and_run(browser, lab, name)
    try:
        step = page.get_by_role("button", name="Step")  # its name also carries the icon
        for _ in range(3):
            step.click()
            page.wait_for_timeout(300)
        page.wait_for_function("(pc) => document.body.innerText.includes(pc)", arg=expected, timeout=30_000)
    finally:
        page.screenshot(path=str(ARTIFACTS / "widget_ch01_step.png"), full_page=True)
        page.close()


@pytest.mark.timeout(600)
def test_chapter2_ticking_a_trap_control_shows_the_exits_vlab_counts(browser, lab, course_copy):
    from vlab.arch.hcr import HCR
    from vlab.guests import GUESTS
    from vlab.hyp import VM

    wfx = VM.from_file(GUESTS["sensitive"].path, traps=HCR.TWI).run().exits["WFX"]
    name = scratch_notebook(course_copy, "zz_traps.ipynb", "from vlab.viz.trap_widget import TrapWidget\n"
                            "t = TrapWidget('sensitive')\nt")
    page, _ = open_and_run(browser, lab, name)
    try:
        assert "WFX" not in page.locator(".jp-OutputArea-output").inner_text()
        page.get_by_role("checkbox", name="TWI").check()
        page.wait_for_function("() => document.body.innerText.includes('WFX')", timeout=30_000)
        text = page.locator(".jp-OutputArea-output").inner_text()
        assert text.split("WFX", 1)[1].split()[0] == f"{wfx:,}"  # the exits pane: class, then count
    finally:
        page.screenshot(path=str(ARTIFACTS / "widget_ch02_traps.png"), full_page=True)
        page.close()


@pytest.mark.timeout(600)
def test_chapter3_moving_a_level_slider_counts_the_references_vlab_makes(browser, lab, course_copy):
    from vlab.viz.walk_view import NestedSetup

    expected = len(NestedSetup(2, 4).translate(0x5678).references)
    name = scratch_notebook(course_copy, "zz_walk.ipynb", "from vlab.viz.stage2_widgets import WalkWidget\n"
                            "w = WalkWidget()\nw")
    page, _ = open_and_run(browser, lab, name)
    try:
        handle = page.locator(".widget-slider").first.locator(".noUi-handle, .ui-slider-handle").first  # guest levels
        handle.focus()
        for _ in range(2):
            page.keyboard.press("ArrowLeft")  # 4 -> 2 guest levels
        page.wait_for_function("(n) => document.body.innerText.includes('measured ' + n + ' references')",
                               arg=expected, timeout=30_000)
    finally:
        page.screenshot(path=str(ARTIFACTS / "widget_ch03_walk.png"), full_page=True)
        page.close()
