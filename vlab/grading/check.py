"""`check("ch01.svc_esr", svc_esr)`: a student's one-line self-check in a notebook."""

from __future__ import annotations

import html
from typing import Any

from vlab.grading.runner import TEST_TIMEOUT_S, ExerciseResult, run_tests
from vlab.grading.specs import lookup


def check(exercise_id: str, answer: Any, timeout_s: float = TEST_TIMEOUT_S) -> ExerciseResult | None:
    """Run the exercise's public tests on `answer` and show what passed, what failed and why.

    Never raises because of the student's code: each test runs in a child process, cut
    off after `timeout_s`. In a Jupyter kernel the report is an HTML table (its plain-text
    form is the same report as text); anywhere else it is printed. Returns the result
    (None for an unknown exercise id, with the known ids printed).
    """
    try:
        exercise = lookup(exercise_id)
    except KeyError as e:
        print(e.args[0])
        return None
    result = run_tests(exercise, answer, hidden=False, timeout_s=timeout_s)
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
    """The text check() prints: a line per test, expected vs got and a hint for failures."""
    exercise = result.exercise
    lines = [f"{exercise.id} -- {exercise.title} ({exercise.points} points)"]
    for test in result.tests:
        lines.append(f"  {'PASS' if test.passed else 'FAIL'}  {test.name}")
        if not test.passed:
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
        detail = "" if test.passed else html.escape(test.message)
        if test.hint and not test.passed:
            detail += f"<br><i>hint: {html.escape(test.hint)}</i>"
        rows.append(f'<tr><td style="color:{colour};font-weight:bold">{mark}</td>'
                    f"<td>{html.escape(test.name)}</td><td style=\"text-align:left\">{detail}</td></tr>")
    return (f"<div><b>{html.escape(exercise.id)}</b> &mdash; {html.escape(exercise.title)} "
            f"({exercise.points} points)<table>{''.join(rows)}</table>"
            f"<b>{html.escape(_summary(result))}</b></div>")


def _summary(result: ExerciseResult) -> str:
    return result.summary() + (" -- well done!" if result.passed == len(result.tests) else "")
