"""`check("ch01.svc_esr", svc_esr)`: a student's one-line self-check in a notebook."""

from __future__ import annotations

from typing import Any

from vlab.grading.runner import TEST_TIMEOUT_S, ExerciseResult, run_tests
from vlab.grading.specs import lookup


def check(exercise_id: str, answer: Any, timeout_s: float = TEST_TIMEOUT_S) -> ExerciseResult | None:
    """Run the exercise's public tests on `answer` and print what passed, what failed and why.

    Never raises because of the student's code: each test runs in a child process, cut
    off after `timeout_s`. Returns the result (None for an unknown exercise id, with the
    known ids printed).
    """
    try:
        exercise = lookup(exercise_id)
    except KeyError as e:
        print(e.args[0])
        return None
    result = run_tests(exercise, answer, hidden=False, timeout_s=timeout_s)
    print(report(result))
    return result


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
    lines.append(result.summary() + (" -- well done!" if result.passed == len(result.tests) else ""))
    return "\n".join(lines)
