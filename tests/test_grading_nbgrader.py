"""The nbgrader export: valid source notebooks whose grade cells score as nbgrader scores them.

nbgrader's rule for an autograded code cell, written out from its documentation and
nbgrader.utils.determine_grade: an error output is zero points; an execute_result that is
a number greater than zero is that many points; anything else is full credit.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from vlab.cli import main
from vlab.grading import EXERCISES
from vlab.grading.generate import strip_solutions
from vlab.grading.nbgrader import grade_id

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted({e.module for e in EXERCISES.values()})


def nbgrader_score(cell) -> float:
    maximum = float(cell.metadata.nbgrader["points"])
    for output in cell.outputs:
        if output.output_type == "error":
            return 0.0
        if output.output_type == "execute_result":
            try:
                value = float(output.data["text/plain"])
            except ValueError:
                return maximum
            return value if value > 0 else maximum
    return maximum


def released(notebook):
    """What nbgrader's generate_assignment gives students: solutions and hidden tests removed."""
    student = nbformat.from_dict(notebook)
    for cell in student.cells:
        if cell.metadata.nbgrader["solution"]:
            cell.source = strip_solutions(cell.source)
        if cell.metadata.nbgrader["grade"]:
            cell.source = re.sub(r"### BEGIN HIDDEN TESTS\n.*?### END HIDDEN TESTS\n", "", cell.source, flags=re.S)
    return student


def grade_cells(notebook) -> dict[str, float]:
    NotebookClient(notebook, timeout=600, allow_errors=True, kernel_name="python3").execute()
    scores = {c.metadata.nbgrader["grade_id"]: nbgrader_score(c) for c in notebook.cells if c.metadata.nbgrader["grade"]}
    return {i: scores[grade_id(i, "tests")] for i in EXERCISES if grade_id(i, "tests") in scores}


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("course")
    assert main(["exercises", "--nbgrader", str(folder)]) == 0
    return folder


def source(course: Path, module: str):
    return nbformat.read(course / "source" / module / f"{module}.ipynb", as_version=4)


@pytest.mark.parametrize("module", MODULES)
def test_source_notebooks_are_valid_with_one_graded_cell_per_exercise(course, module):
    notebook = source(course, module)
    nbformat.validate(notebook)
    ids = [c.metadata.nbgrader["grade_id"] for c in notebook.cells]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-zA-Z0-9_\-]*", i) for i in ids)  # nbgrader's schema for grade_id
    graded = {c.metadata.nbgrader["grade_id"]: c.metadata.nbgrader["points"] for c in notebook.cells
              if c.metadata.nbgrader["grade"]}
    assert graded == {grade_id(e.id, "tests"): e.points for e in EXERCISES.values() if e.module == module}
    answers = [c for c in notebook.cells if c.metadata.nbgrader["solution"]]
    assert len(answers) == len(graded) and all("### BEGIN SOLUTION" in c.source for c in answers)


@pytest.mark.parametrize("module", MODULES)
def test_the_solutions_score_full_marks(course, module):
    assert grade_cells(source(course, module)) == {e.id: float(e.points) for e in EXERCISES.values()
                                                    if e.module == module}


def test_the_released_notebook_scores_nothing_and_a_half_right_answer_partial_credit(course):
    notebook = released(source(course, "ch01_machine"))
    answer = next(c for c in notebook.cells if c.metadata.nbgrader["grade_id"] == grade_id("ch01.svc_esr", "answer"))
    # Right for svc #0 only: EC 0x15 (SVC64) in [31:26] and IL in bit 25, with the immediate forgotten.
    answer.source = "def svc_esr(imm16):\n    return 0x15 << 26 | 1 << 25\n"
    exercise = EXERCISES["ch01.svc_esr"]
    passed = sum(t.name == "svc #0" for t in exercise.public_tests())
    expected = round(exercise.points * passed / len(exercise.public_tests()), 2)
    scores = grade_cells(notebook)
    assert 0 < scores.pop("ch01.svc_esr") == expected
    assert scores == {e.id: 0.0 for e in EXERCISES.values() if e.module == "ch01_machine" and e.id != "ch01.svc_esr"}
