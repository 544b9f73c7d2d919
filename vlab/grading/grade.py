"""Grading a class: each submission in its own confined process, results as CSV, JSON and feedback.

A submission is a folder shaped like exercises/ (e.g. `alice/ch01_machine.py`). Its regular
files -- never symlinks -- are copied into a private temporary folder, and
`vlab.grading.worker` grades them there with CPU-time and memory limits and a wall-clock
limit, so a broken or hostile submission costs its own grade and nothing else. The worker
runs in a session of its own: whatever it or the student's code started dies with it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vlab.grading.runner import TEST_TIMEOUT_S
from vlab.grading.specs import EXERCISES

@dataclass(frozen=True)
class SubmissionGrade:
    student: str
    exercises: dict[str, dict] = field(default_factory=dict)  # id -> {points, score, problem, tests}
    error: str = ""  # set when the submission could not be graded at all

    @property
    def total(self) -> float:
        return round(sum(e["score"] for e in self.exercises.values()), 2)

    @staticmethod
    def maximum() -> int:
        return sum(e.points for e in EXERCISES.values())


def _private_copy(submission: Path, into: Path) -> None:
    for path in submission.iterdir():
        if path.is_file() and not path.is_symlink() and path.suffix == ".py":
            shutil.copyfile(path, into / path.name)


def grade_submission(submission: Path, timeout_s: float = TEST_TIMEOUT_S) -> SubmissionGrade:
    """Grade one student's folder; never raises for anything the submission does."""
    student = submission.name
    if not submission.is_dir():
        return _failed(student, f"{submission} is not a folder")
    tests = sum(len(e.tests) for e in EXERCISES.values())
    # Output goes to files, not pipes: a process the submission leaves behind keeps a pipe open
    # (so reading to its end would wait for it), and a flood of prints cannot fill a pipe and stall.
    with tempfile.TemporaryDirectory(prefix="vlab-grade-") as tmp, tempfile.TemporaryFile() as out, \
            tempfile.TemporaryFile() as err:
        _private_copy(submission, Path(tmp))
        command = [sys.executable, "-I", "-m", "vlab.grading.worker", tmp, str(timeout_s)]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "LANG": "C.UTF-8"}
        worker = subprocess.Popen(command, cwd=tmp, env=env, stdout=out, stderr=err, start_new_session=True)
        try:
            worker.wait(timeout=timeout_s * tests + 60)
        except subprocess.TimeoutExpired:
            return _failed(student, "grading took longer than every test's time limit together")
        finally:
            _kill_session(worker)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    try:
        return SubmissionGrade(student, json.loads(stdout))
    except json.JSONDecodeError:
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        return _failed(student, f"the grader's process for this submission failed (exit {worker.returncode}): {tail}")


def _kill_session(worker: subprocess.Popen) -> None:
    """Kill the worker and anything the submission started and left behind (its session)."""
    try:
        os.killpg(worker.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # nothing left
    worker.wait()


def _failed(student: str, error: str) -> SubmissionGrade:
    zero = {e.id: {"points": e.points, "score": 0.0, "problem": error, "tests": []} for e in EXERCISES.values()}
    return SubmissionGrade(student, zero, error)


def grade_all(submissions: list[Path], jobs: int = 1, timeout_s: float = TEST_TIMEOUT_S,
              progress: Callable[[int, int, SubmissionGrade], None] | None = None) -> list[SubmissionGrade]:
    """Grade every submission, `jobs` at a time; results in the order given."""
    grades: dict[Path, SubmissionGrade] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(grade_submission, s, timeout_s): s for s in submissions}
        for done, future in enumerate(as_completed(futures), start=1):
            grades[futures[future]] = future.result()
            if progress:
                progress(done, len(submissions), grades[futures[future]])
    return [grades[s] for s in submissions]


# --- reports --------------------------------------------------------------------------------------

def write_csv(grades: list[SubmissionGrade], path: Path) -> None:
    """One row per student: points per exercise, total, maximum, and why grading failed if it did."""
    ids = list(EXERCISES)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *ids, "total", "max", "error"])
        for g in grades:
            writer.writerow([g.student, *(f"{g.exercises[i]['score']:g}" for i in ids),
                             f"{g.total:g}", SubmissionGrade.maximum(), g.error])


def write_json(grades: list[SubmissionGrade], path: Path) -> None:
    data = [{"student": g.student, "total": g.total, "max": SubmissionGrade.maximum(), "error": g.error,
             "exercises": g.exercises} for g in grades]
    path.write_text(json.dumps(data, indent=2))


def feedback(grade: SubmissionGrade) -> str:
    """A student's feedback in Markdown: each exercise's score and every failing test's message."""
    lines = [f"# Feedback for {grade.student}", "", f"**Total: {grade.total:g} / {SubmissionGrade.maximum()}**", ""]
    if grade.error:
        lines += [f"Your submission could not be graded: {grade.error}", ""]
    for exercise_id, result in grade.exercises.items():
        exercise = EXERCISES[exercise_id]
        lines += [f"## {exercise_id}: {exercise.title} -- {result['score']:g} / {result['points']}", ""]
        if result["problem"]:
            lines.append(f"- {result['problem']}")
        for test in result["tests"]:
            if not test["passed"]:
                name = "a hidden test" if test["hidden"] else f"`{test['name']}`"
                lines.append(f"- failed {name}: {test['message']}")
        if result["score"] == result["points"]:
            lines.append("- all tests passed")
        lines.append("")
    return "\n".join(lines)


def write_feedback(grades: list[SubmissionGrade], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for g in grades:
        (folder / f"{g.student}.md").write_text(feedback(g))
