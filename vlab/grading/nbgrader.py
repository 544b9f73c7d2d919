"""The exercises in nbgrader's format, for a course that already grades with nbgrader.

    vlab exercises --nbgrader course/      # writes course/source/ch01_machine/ch01_machine.ipynb, ...

Each solution file becomes one source notebook: its docstring, its other top-level code
(imports) in a locked cell, and per exercise a statement, a solution cell (the markers
are nbgrader's own `### BEGIN SOLUTION` / `### END SOLUTION`) and an autograder cell
worth the exercise's points. That cell runs vlab's public tests, and the hidden ones too once
nbgrader restores what sits between `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS`: the
seed their cases are drawn from, which nbgrader removes from the students' copies.

nbgrader reads a grade cell's score from its output: an error is zero, a number greater
than zero is partial credit, anything else -- zero and no output included -- is full
credit. So `points()` returns the points earned and raises when there are none.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import nbformat

from vlab.grading.answer_process import AnswerProcess, forked
from vlab.grading.check import public_cases, report
from vlab.grading.runner import TEST_TIMEOUT_S, cases_for, run_exercise
from vlab.grading.specs import EXERCISES, lookup

SCHEMA_VERSION = 3  # nbgrader's cell metadata schema


def points(exercise_id: str, answer: Any, seed: str | None = None, timeout_s: float = TEST_TIMEOUT_S) -> float:
    """Run the exercise's public tests (and the hidden ones, their cases drawn from `seed`), print the
    report, return the points earned.

    Raises AssertionError carrying the report when no test passes (see the module docstring).
    """
    exercise = lookup(exercise_id)
    answers = AnswerProcess(forked({exercise.function: answer}))
    try:
        cases = public_cases(exercise_id) if seed is None else cases_for(exercise, seed)
        result = run_exercise(exercise, answers, cases, timeout_s)
    finally:
        answers.close()
    print(report(result))
    if result.score <= 0:
        raise AssertionError(f"{exercise_id}: no test passed")
    return result.score


def grade_id(exercise_id: str, part: str) -> str:
    """A cell's nbgrader id: its schema allows only letters, digits, '_' and '-' (so no dots)."""
    return f"{exercise_id.replace('.', '_')}-{part}"


def _cell(kind: str, source: str, cell_id: str, **nbgrader: Any):
    make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    flags = {"grade": False, "solution": False, "locked": False} | nbgrader
    return make(source, metadata={"nbgrader": {**flags, "grade_id": cell_id, "schema_version": SCHEMA_VERSION}})


def _grade_source(exercise_id: str, function: str, seed: str) -> str:
    return (f"from vlab.grading.nbgrader import points\n\nseed = None\n### BEGIN HIDDEN TESTS\nseed = {seed!r}\n"
            f"### END HIDDEN TESTS\npoints({exercise_id!r}, {function}, seed=seed)")


def _segments(text: str, body: list[ast.stmt]) -> list[str]:
    """Each top-level statement's source, up to the next one: a function's trailing
    `### END SOLUTION` comment is outside its AST node but belongs with it."""
    lines = text.splitlines()
    starts = [min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1 for node in body]
    return ["\n".join(lines[start:end]).rstrip() for start, end in zip(starts, starts[1:] + [len(lines)])]


def source_notebook(solution: Path, seed: str):
    """The nbgrader source notebook for one solution file; hidden cases drawn from `seed`."""
    text = solution.read_text()
    tree = ast.parse(text, str(solution))
    module = solution.stem
    exercises = {e.function: e for e in EXERCISES.values() if e.module == module}
    title, _, rest = (ast.get_docstring(tree) or module).partition("\n")
    cells = [_cell("markdown", f"# {title}" + (f"\n\n```\n{rest.strip()}\n```" if rest.strip() else ""),
                   f"{module}-intro", locked=True)]
    body = tree.body[1:] if ast.get_docstring(tree) else tree.body
    answers = {node.name: segment for node, segment in zip(body, _segments(text, body))
               if isinstance(node, ast.FunctionDef) and node.name in exercises}
    setup = [segment for segment in _segments(text, body) if segment not in answers.values()]
    if setup:
        cells.append(_cell("code", "\n\n".join(setup), f"{module}-setup", locked=True))
    for function, answer in answers.items():
        exercise = exercises[function]
        cells += [
            _cell("markdown", f"## {exercise.title} ({exercise.points} points)\n\n{exercise.statement}",
                  grade_id(exercise.id, "statement"), locked=True),
            _cell("code", answer, grade_id(exercise.id, "answer"), solution=True),
            _cell("code", _grade_source(exercise.id, exercise.function, seed), grade_id(exercise.id, "tests"),
                  grade=True, locked=True, points=exercise.points),
        ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def write_source_notebooks(solutions: Path, course: Path, seed: str) -> list[Path]:
    """Write course/source/<module>/<module>.ipynb for every solution file; the paths written."""
    written = []
    for solution in sorted(solutions.glob("*.py")):
        path = course / "source" / solution.stem / f"{solution.stem}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(source_notebook(solution, seed), path)
        written.append(path)
    return written
