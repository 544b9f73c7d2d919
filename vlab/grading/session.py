"""A grading session: submissions' answers in the sandbox, one submission after another; the verdicts here.

    python -I -m vlab.grading.session
    stdin:  {"plan": PLAN, "view": VIEW, "timeout": SECONDS}   then one line per submission: {"submission": COPY}
    stdout: one line of results per submission: exercise id -> {points, score, problem, delegated, tests}

`vlab.grading.grade` starts one per job (--jobs): starting Python and vlab once, not once per
student. This process runs no student code: for each submission it starts a confined process
(`vlab.grading.sandbox`) on the student's private copy, asks it to load each file and to call
each answer on the plan's cases, runs the guests that handlers drive and that assembly answers
are, and decides every verdict from the plain data that came back. Nothing of one submission
outlives its turn but the results: its sandbox is ended, its VMs are dropped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vlab.grading import messages, plan
from vlab.grading.answer_process import AnswerProcess, Ended, TimedOut
from vlab.grading.runner import ExerciseResult, run_exercise, unanswered
from vlab.grading.sandbox import confined
from vlab.grading.specs import EXERCISES


def tests_and_files() -> int:
    """What one submission's time is counted in: its tests, and the loading of each of its files."""
    return sum(len(e.tests) for e in EXERCISES.values()) + len({e.module for e in EXERCISES.values()})


def grade(submission: Path, cases: plan.Plan, view: Path, timeout_s: float) -> list[ExerciseResult]:
    answers = AnswerProcess(confined(submission, view, cpu_seconds=int(timeout_s * tests_and_files()) + 10))
    problems: dict[str, str] = {}  # module -> why it cannot be graded
    results = []
    try:
        for exercise in EXERCISES.values():
            if exercise.module not in problems:
                problems[exercise.module] = _load(answers, exercise.module, timeout_s)
            if problems[exercise.module]:
                results.append(unanswered(exercise, problems[exercise.module]))
            else:
                results.append(run_exercise(exercise, answers, cases[exercise.id], timeout_s))
    finally:
        answers.close()
    return results


def _load(answers: AnswerProcess, module: str, timeout_s: float) -> str:
    """Load the student's file: "" when it loaded, else why not."""
    try:
        error = answers.load(module, timeout_s)
    except TimedOut:
        return f"{module}.py does not load: its top-level code ran longer than {timeout_s:g} s (an endless loop?)"
    except Ended as e:
        return f"{module}.py does not load: {e}"
    return messages.does_not_load(module, error) if error else ""


def as_json(result: ExerciseResult) -> dict:
    return {"points": result.exercise.points, "score": result.score, "problem": result.problem,
            "delegated": list(result.delegated),
            "tests": [{"name": t.name, "passed": t.passed, "message": t.message, "hint": t.hint, "hidden": t.hidden}
                      for t in result.tests]}


def main() -> None:
    config = json.loads(sys.stdin.readline())
    cases, view, timeout_s = plan.read(Path(config["plan"])), Path(config["view"]), float(config["timeout"])
    for line in sys.stdin:
        results = grade(Path(json.loads(line)["submission"]), cases, view, timeout_s)
        sys.stdout.write(json.dumps({r.exercise.id: as_json(r) for r in results}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
