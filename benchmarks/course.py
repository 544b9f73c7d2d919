"""How long does the course take to run, and how quickly do its widgets answer?

    python benchmarks/course.py

(1) Each chapter notebook executed top to bottom in a fresh kernel (nbclient), and the total.
    Target: the whole course in <= 60 s.
(2) Each chapter's main widget: the time from a value change (a click, a checkbox, a slider)
    to its new output, measured in this process (the kernel side). Target: <= 100 ms each.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

from vlab.arch.hcr import HCR  # noqa: E402
from vlab.viz.machine_widget import MachineWidget  # noqa: E402
from vlab.viz.stage2_widgets import TlbWidget, WalkWidget  # noqa: E402
from vlab.viz.trap_widget import TrapWidget  # noqa: E402

COURSE_TARGET_S, WIDGET_TARGET_MS = 60.0, 100.0


def notebook_seconds(path: Path) -> float:
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def latency_ms(change, repeats: int = 5) -> float:
    """Median milliseconds for `change()`, which sets a widget's value and returns once it has redrawn."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        change()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    print("(1) executing each notebook in a fresh kernel")
    total = 0.0
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        seconds = notebook_seconds(path)
        total += seconds
        print(f"    {path.name:<32} {seconds:6.1f} s")
    verdict = "met" if total <= COURSE_TARGET_S else "NOT met"
    print(f"    {'whole course':<32} {total:6.1f} s   target <= {COURSE_TARGET_S:g} s: {verdict} "
          f"(ratio {total / COURSE_TARGET_S:.2f})")

    print("\n(2) widget update latency (value change -> new output), median of 5")
    machine = MachineWidget.for_guest("syscall")
    machine.widget
    traps = TrapWidget("sensitive")
    traps.widget
    walk = WalkWidget()
    walk.widget
    tlb = TlbWidget(pages=64)
    tlb.widget
    box = traps.controls.boxes[HCR.TVM]
    levels = walk.controls.n
    cases = {
        "ch01 Step button": lambda: machine.controls.buttons["step"].click(),
        "ch02 trap checkbox (a full VM run)": lambda: setattr(box, "value", not box.value),
        "ch03 level slider (a nested walk)": lambda: setattr(levels, "value", 5 - levels.value if levels.value != 2 else 3),
        "ch03 working-set slider (a VM run)": lambda: setattr(tlb.controls.pages, "value",
                                                               72 if tlb.controls.pages.value == 64 else 64),
    }
    for name, change in cases.items():
        ms = latency_ms(change)
        verdict = "ok" if ms <= WIDGET_TARGET_MS else "ABOVE TARGET"
        print(f"    {name:<38} {ms:7.1f} ms   {verdict} (ratio {ms / WIDGET_TARGET_MS:.2f} of {WIDGET_TARGET_MS:g} ms)")


if __name__ == "__main__":
    main()
