"""The cases of a grading run, drawn once for the whole class and handed to each submission's grader.

Drawing them runs vlab's machine (expected syndromes, bare-board runs of every guest): about a
second, the same for every student. So `vlab grade` draws them once, from the instructor's seed,
and writes them as plain data into its private folder, where each grading session reads them.
"""

from __future__ import annotations

import json
from pathlib import Path

from vlab.grading import plain
from vlab.grading.exercise import Case
from vlab.grading.runner import cases_for
from vlab.grading.specs import EXERCISES

Plan = dict[str, dict[str, list[Case]]]  # exercise id -> test name -> cases


def draw(seed: str) -> Plan:
    """Every exercise's cases, hidden ones from `seed`."""
    return {exercise_id: cases_for(exercise, seed) for exercise_id, exercise in EXERCISES.items()}


def write(plan: Plan, path: Path) -> None:
    data = {}
    for exercise_id, tests in plan.items():
        data[exercise_id] = {}
        for name, cases in tests.items():
            shared, args = plain.encode_cases([c.args for c in cases])
            data[exercise_id][name] = {"labels": [c.label for c in cases], "shared": shared, "args": args,
                                       "expected": [plain.encode(c.expected) for c in cases]}
    path.write_text(json.dumps(data))


def read(path: Path) -> Plan:
    plan: Plan = {}
    for exercise_id, tests in json.loads(path.read_text()).items():
        plan[exercise_id] = {}
        for name, test in tests.items():
            args = plain.decode_cases(test["shared"], test["args"], plain.Memory)
            plan[exercise_id][name] = [Case(label, tuple(a), plain.decode(e))
                                       for label, a, e in zip(test["labels"], args, test["expected"])]
    return plan
