"""A graded class written out: a CSV for the gradebook, JSON with every test, a feedback page per student.

Every text that came from a student's side is cleaned again here (`vlab.grading.sanitize`):
no control characters or escape sequences reach a file.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from vlab.grading.grade import SubmissionGrade
from vlab.grading.sanitize import clean
from vlab.grading.specs import EXERCISES


def feedback_name(student: str) -> str:
    """The file name of a student's feedback page: their name, with only safe characters."""
    return (re.sub(r"[^A-Za-z0-9._-]", "_", student).lstrip(".") or "_") + ".md"


def write_csv(grades: list[SubmissionGrade], path: Path) -> None:
    """One row per student: points per exercise, total, maximum, and why grading failed if it did."""
    ids = list(EXERCISES)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *ids, "total", "max", "error"])
        for g in grades:
            writer.writerow([clean(g.student), *(f"{g.exercises[i]['score']:g}" for i in ids),
                             f"{g.total:g}", SubmissionGrade.maximum(), clean(g.error)])


def _clean_exercise(result: dict) -> dict:
    return {"points": result["points"], "score": result["score"], "problem": clean(result["problem"]),
            "delegated": [clean(n) for n in result.get("delegated", [])],
            "tests": [{"name": clean(t["name"]), "passed": bool(t["passed"]), "message": clean(t["message"]),
                       "hint": clean(t.get("hint", "")), "hidden": bool(t["hidden"])} for t in result["tests"]]}


def write_json(grades: list[SubmissionGrade], path: Path) -> None:
    data = [{"student": clean(g.student), "total": g.total, "max": SubmissionGrade.maximum(), "error": clean(g.error),
             "exercises": {i: _clean_exercise(r) for i, r in g.exercises.items()}} for g in grades]
    path.write_text(json.dumps(data, indent=2))


def feedback(grade: SubmissionGrade) -> str:
    """A student's feedback in Markdown: each exercise's score; why, once, when none of its tests could
    run; and for every failed test what went wrong and a hint (hidden tests are not named)."""
    lines = [f"# Feedback for {clean(grade.student)}", "",
             f"**Total: {grade.total:g} / {SubmissionGrade.maximum()}**", ""]
    if grade.error:
        lines += [f"Your submission could not be graded: {clean(grade.error)}", ""]
    for exercise_id, result in grade.exercises.items():
        exercise = EXERCISES[exercise_id]
        lines += [f"## {exercise_id}: {exercise.title} -- {result['score']:g} / {result['points']}", ""]
        if result["problem"] and result["problem"] != grade.error:
            lines.append(f"- {clean(result['problem'])}")
        for test in result["tests"]:
            if test["passed"] or not test["message"]:
                continue
            name = "a hidden test" if test["hidden"] else f"`{clean(test['name'])}`"
            lines.append(f"- failed {name}: {clean(test['message'])}")
            if test.get("hint"):
                lines.append(f"  - hint: {clean(test['hint'])}")
        if result["score"] == result["points"]:
            lines.append("- all tests passed")
        lines.append("")
    return "\n".join(lines)


def write_feedback(grades: list[SubmissionGrade], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for g in grades:
        (folder / feedback_name(g.student)).write_text(feedback(g))
