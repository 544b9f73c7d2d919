"""`check("ch01.svc_esr", svc_esr)`: a student's one-line self-check in a notebook; `load()` for the cell before it.

    from vlab.grading import check, load
    ch01 = load("ch01_machine")   # exercises/ch01_machine.py as it is saved now
    check("ch01.svc_esr", ch01.svc_esr)

The student's function runs in a fork of the kernel (an endless loop is cut off, a crash is a
message), and what it returns crosses back as plain data, judged here as `vlab grade` judges
it. A notebook is the student's own: vlab's answers may be called there (to compare).
"""

from __future__ import annotations

import functools
import html
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from vlab.grading.answer_process import AnswerProcess, forked
from vlab.grading.runner import TEST_TIMEOUT_S, ExerciseResult, cases_for, run_exercise, unanswered
from vlab.grading.specs import lookup


def load(module: str, folder: str | Path | None = None) -> ModuleType:
    """Read the student's exercise file again, as it is saved now: `load("ch01_machine")`.

    A plain `import` keeps the first version for the kernel's lifetime, so a check cell run again
    after an edit would test the old code; this reads the file each time (and the student's own
    helper modules beside it). The file is `folder/module.py`; by default the exercises/ folder
    here or one level up (a notebook runs in notebooks/). Raises what importing the file raises.
    """
    path = _find(module, folder)
    for name, loaded in list(sys.modules.items()):  # the student's helpers next to it are read again too
        if Path(getattr(loaded, "__file__", None) or "/").parent == path.parent and name != module:
            del sys.modules[name]
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(module, path)
    fresh = importlib.util.module_from_spec(spec)
    sys.modules[module] = fresh
    spec.loader.exec_module(fresh)
    return fresh


def _find(module: str, folder: str | Path | None) -> Path:
    candidates = [Path(folder)] if folder is not None else [Path("exercises"), Path("..") / "exercises"]
    for candidate in candidates:
        if (candidate / f"{module}.py").is_file():
            return (candidate / f"{module}.py").resolve()
    raise FileNotFoundError(f"no {module}.py in {' or '.join(str(c.resolve()) for c in candidates)}: "
                            "pass load(module, folder=...) the folder holding your exercises")


@functools.lru_cache(maxsize=None)
def public_cases(exercise_id: str) -> dict:
    """The public tests' cases (the same for every student: computed once per kernel)."""
    return cases_for(lookup(exercise_id), None)


def check(exercise_id: str, answer: Any, timeout_s: float = TEST_TIMEOUT_S) -> ExerciseResult | None:
    """Run the exercise's public tests on `answer` and show what passed, what failed and why.

    Never raises because of the student's code. In a Jupyter kernel the report is an HTML table
    (its plain-text form is the same report as text); anywhere else it is printed. Returns the
    result (None for an unknown exercise id, with the known ids printed).
    """
    try:
        exercise = lookup(exercise_id)
    except KeyError as e:
        print(e.args[0])
        return None
    if not callable(answer):
        result = unanswered(exercise, f"expected the function {exercise.function}, got {type(answer).__name__}",
                            hidden=False)
    else:
        answers = AnswerProcess(forked({exercise.function: answer}))
        try:
            result = run_exercise(exercise, answers, public_cases(exercise_id), timeout_s)
        finally:
            answers.close()
    _show(result)
    return result


def _show(result: ExerciseResult) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    # Only a kernel has a front end that may render HTML; a terminal IPython gets the text.
    if get_ipython is None or getattr(get_ipython(), "kernel", None) is None:
        print(report(result))
    else:
        display({"text/plain": report(result), "text/html": report_html(result)}, raw=True)


def report(result: ExerciseResult) -> str:
    """The text check() prints: the exercise's problem once, a line per test, what went wrong and a hint."""
    exercise = result.exercise
    lines = [f"{exercise.id} -- {exercise.title} ({exercise.points} points)"]
    if result.problem:
        lines.append(f"  {result.problem}")
    for test in result.tests:
        lines.append(f"  {'PASS' if test.passed else 'FAIL'}  {test.name}")
        if test.message:
            lines.append(f"        {test.message}")
        if test.hint:
            lines.append(f"        hint: {test.hint}")
    lines.append(_summary(result))
    return "\n".join(lines)


def report_html(result: ExerciseResult) -> str:
    """The same report as an HTML table; every message is escaped (it may quote the student's output)."""
    exercise = result.exercise
    rows = []
    for test in result.tests:
        mark, colour = ("PASS", "#1a7f37") if test.passed else ("FAIL", "#cf222e")
        detail = html.escape(test.message)
        if test.hint:
            detail += f"<br><i>hint: {html.escape(test.hint)}</i>"
        rows.append(f'<tr><td style="color:{colour};font-weight:bold">{mark}</td>'
                    f"<td>{html.escape(test.name)}</td><td style=\"text-align:left\">{detail}</td></tr>")
    problem = f"<p>{html.escape(result.problem)}</p>" if result.problem else ""
    return (f"<div><b>{html.escape(exercise.id)}</b> &mdash; {html.escape(exercise.title)} "
            f"({exercise.points} points){problem}<table>{''.join(rows)}</table>"
            f"<b>{html.escape(_summary(result))}</b></div>")


def _summary(result: ExerciseResult) -> str:
    return result.summary() + (" -- well done!" if result.passed == len(result.tests) else "")
