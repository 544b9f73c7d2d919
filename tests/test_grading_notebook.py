"""A chapter's check cell in a real kernel: run it, edit the exercise file, run it again -- it checks the new
code (issue #16 item 1: an `import` would have kept the first version until the kernel restarted)."""

from __future__ import annotations

import re
import shutil

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel
from submissions import EXERCISES_DIR, ROOT, SOLUTIONS

CHAPTERS = {"01_physical_machine": ("ch01_machine", "decode_uart_flags"),
            "02_trap_and_emulate": ("ch02_trap_and_emulate", "handle_sysreg"),
            "03_stage2": ("ch03_stage2", "decode_stage2_descriptor"),
            "08_what_virtualization_buys": ("ch08_what_virtualization_buys", "balance")}


def check_cell(notebook: str, function: str) -> str:
    """The chapter's own cell that checks `function`."""
    cells = nbformat.read(ROOT / "notebooks" / f"{notebook}.ipynb", as_version=4).cells
    return next(c.source for c in cells if c.cell_type == "code" and f".{function})" in c.source)


def run(client, code: str) -> str:
    """Execute code in the kernel; everything it showed, as text."""
    shown = []

    def keep(message):
        content = message["content"]
        shown.append(content.get("text", "") + content.get("data", {}).get("text/plain", "")
                     + "".join(content.get("traceback", [])))
    client.execute_interactive(code, output_hook=keep, timeout=300)
    return "".join(shown)


def solved(exercise_text: str, module: str, function: str) -> str:
    """The exercise file with `function`'s placeholder line replaced by the reference answer."""
    solution = (SOLUTIONS / f"{module}.py").read_text()
    answer = re.search(rf"def {function}\(.*?### BEGIN SOLUTION\n(.*?)[ \t]*### END SOLUTION", solution, re.S).group(1)
    start = exercise_text.index(f"def {function}(")
    placeholder = re.compile(r"[ \t]*raise NotImplementedError\(.*\)\n")
    found = placeholder.search(exercise_text, start)
    return exercise_text[:found.start()] + answer + exercise_text[found.end():]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("notebook", CHAPTERS)
def test_running_the_check_cell_again_after_an_edit_checks_the_new_code(tmp_path, notebook):
    module, function = CHAPTERS[notebook]
    course = tmp_path / "course"
    shutil.copytree(EXERCISES_DIR, course / "exercises")
    (course / "notebooks").mkdir()
    cell = check_cell(notebook, function)
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(course / "notebooks"))
    try:
        first = run(client, cell)
        assert f"not done yet: {function} still raises NotImplementedError" in first, first
        path = course / "exercises" / f"{module}.py"
        path.write_text(solved(path.read_text(), module, function))
        second = run(client, cell)
        assert f"not done yet: {function} still" not in second and "well done" in second, second
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
