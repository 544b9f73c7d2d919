"""Students' submissions for the grading tests, made from the reference solutions.

`submission(folder, name, edit)` writes a student's folder: every solution file, passed through
`edit`. `replace_body` replaces one function's answer; `appended` adds a fixture folder's files
(tests/fixtures/submissions/NAME/) to the solution files of the same name; `mistake` changes one
line of a solution, as a student's slip would.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from vlab.grading import EXERCISES

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, EXERCISES_DIR = ROOT / "solutions", ROOT / "exercises"
FIXTURES = ROOT / "tests" / "fixtures" / "submissions"
MODULES = sorted({e.module for e in EXERCISES.values()})
FULL = {e.id: float(e.points) for e in EXERCISES.values()}
Edit = Callable[[str, str], str]  # (module, its text) -> the student's text


def submission(folder: Path, name: str, edit: Edit = lambda module, text: text) -> Path:
    """A student's folder: the reference solutions, edited."""
    student = folder / name
    student.mkdir()
    for module in MODULES:
        (student / f"{module}.py").write_text(edit(module, (SOLUTIONS / f"{module}.py").read_text()))
    return student


def replace_body(function: str, body: str) -> Edit:
    """An edit that replaces one function's solution region by `body` (indented code)."""
    def edit(module: str, text: str) -> str:
        if f"def {function}(" not in text:
            return text  # another chapter's file
        pattern = rf"(def {function}\(.*?\n)[ \t]*### BEGIN SOLUTION\n.*?### END SOLUTION\n"
        new, n = re.subn(pattern, lambda m: m.group(1) + body + "\n", text, count=1, flags=re.S)
        assert n == 1, function
        return new
    return edit


def appended(fixture: str, **placeholders: object) -> Edit:
    """An edit appending the fixture folder's files to the solution files of the same name, with
    __ROOT__, __CLASSMATE__ and __PORT__ replaced (see fixtures/submissions/README.md)."""
    def edit(module: str, text: str) -> str:
        path = FIXTURES / fixture / f"{module}.py"
        if not path.exists():
            return text
        added = path.read_text().replace("__ROOT__", str(ROOT))
        for key, value in placeholders.items():
            added = added.replace(f"__{key.upper()}__", str(value))
        return text + "\n" + added
    return edit


def mistake(old: str, new: str) -> Edit:
    """An edit replacing one piece of a solution (which must be there) by a student's slip."""
    def edit(module: str, text: str) -> str:
        if old not in text:
            return text
        return text.replace(old, new, 1)
    return edit


def scores(grade) -> dict[str, float]:
    return {i: r["score"] for i, r in grade.exercises.items()}


def processes_running(command_part: str) -> list[int]:
    """Pids of the processes whose command line contains `command_part`."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and command_part.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            pass  # it ended while we looked
    return pids
