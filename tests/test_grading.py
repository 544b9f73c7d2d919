"""Graded exercises: solutions earn full marks, untouched exercises none, broken submissions what they deserve."""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import pytest

from vlab.cli import main
from vlab.grading import EXERCISES, check
from vlab.grading.generate import generated_exercises, strip_solutions
from vlab.grading.grade import SubmissionGrade, grade_all, grade_submission

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, EXERCISES_DIR = ROOT / "solutions", ROOT / "exercises"
MODULES = sorted({e.module for e in EXERCISES.values()})
FULL = {e.id: float(e.points) for e in EXERCISES.values()}
TIMEOUT = 3.0


def scores(grade: SubmissionGrade) -> dict[str, float]:
    return {i: r["score"] for i, r in grade.exercises.items()}


def submission(tmp_path: Path, name: str, edit=lambda text: text) -> Path:
    """A student's folder: the reference solutions, edited to break them in one way."""
    folder = tmp_path / name
    folder.mkdir()
    for module in MODULES:
        (folder / f"{module}.py").write_text(edit((SOLUTIONS / f"{module}.py").read_text()))
    return folder


def replace_body(function: str, body: str):
    """An edit that replaces one function's solution region by `body` (indented code)."""
    def edit(text: str) -> str:
        if f"def {function}(" not in text:
            return text  # another chapter's file
        pattern = rf"(def {function}\(.*?\n)[ \t]*### BEGIN SOLUTION\n.*?### END SOLUTION\n"
        new, n = re.subn(pattern, lambda m: m.group(1) + body + "\n", text, count=1, flags=re.S)
        assert n == 1, function
        return new
    return edit


def appended(fixture: Path):
    """An edit that appends a fixture to the solution file of the same name (see fixtures/submissions/README.md)."""
    def edit(text: str) -> str:
        return text + "\n" + fixture.read_text() if text == (SOLUTIONS / fixture.name).read_text() else text
    return edit


# --- the source of truth ------------------------------------------------------------------------

def test_committed_exercises_are_what_the_generator_makes_from_solutions():
    for name, text in generated_exercises(SOLUTIONS).items():
        assert (EXERCISES_DIR / name).read_text() == text, f"run `vlab exercises`: {name} is out of date"
    assert main(["exercises", "--check"]) == 0


def test_every_exercise_has_a_solution_and_public_and_hidden_tests():
    for exercise in EXERCISES.values():
        text = (SOLUTIONS / f"{exercise.module}.py").read_text()
        assert f"def {exercise.function}(" in text
        assert exercise.public_tests() and len(exercise.public_tests()) < len(exercise.tests)


def test_exercises_keep_docstrings_and_lose_every_solution_line():
    solution = (SOLUTIONS / "ch01_machine.py").read_text()
    exercise = strip_solutions(solution)
    assert "### BEGIN SOLUTION" not in exercise and "udiv" not in exercise
    assert exercise.count("raise NotImplementedError") == solution.count("### BEGIN SOLUTION")
    assert '"""The names of the PL011 flags' in exercise


@pytest.mark.parametrize("text, line", [
    ("a\n### BEGIN SOLUTION\nb\n", 2),
    ("### END SOLUTION\n", 1),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", 2),
])
def test_unbalanced_markers_are_errors_naming_the_line(text, line):
    with pytest.raises(ValueError, match=f"x.py:{line}:"):
        strip_solutions(text, "x.py")


# --- whole submissions, graded as an instructor does ----------------------------------------------

def test_the_solutions_earn_full_marks_and_untouched_exercises_earn_nothing():
    solved, untouched = grade_all([SOLUTIONS, EXERCISES_DIR], jobs=2, timeout_s=TIMEOUT)
    assert scores(solved) == FULL and solved.error == ""
    assert scores(untouched) == {i: 0.0 for i in FULL} and untouched.error == ""
    for result in untouched.exercises.values():
        assert all("not done yet" in t["message"] or "NotImplementedError" in t["message"]
                   for t in result["tests"])


FIXTURES = ROOT / "tests" / "fixtures" / "submissions"
SOLUTION_READ_REFUSED = ({"ch01.svc_esr"}, "is not allowed")
BROKEN = {
    # fixture folder: (the exercises that lose all their points, a phrase their feedback must contain)
    "syntax_error": ({i for i in FULL if i.startswith("ch01.")}, "SyntaxError"),
    # line 2 of the fixture, after the solution's lines and the blank line appended() adds
    "exception": ({"ch01.decode_uart_flags"},
                  f"ValueError: oops (line {(SOLUTIONS / 'ch01_machine.py').read_text().count(chr(10)) + 3} "
                  "of ch01_machine.py)"),
    "wrong_answer": ({"ch01.svc_esr"}, "expected 1442840576, got 0"),
    "infinite_loop": ({"ch01.decode_uart_flags"}, f"timed out after {TIMEOUT:g} s"),
    "loops_on_import": ({i for i in FULL if i.startswith("ch01.")}, f"ran longer than {TIMEOUT:g} s"),
    "huge_memory": ({"ch01.svc_esr"}, "MemoryError: the code asked for more memory"),
    "maps_20_gib": ({"ch01.svc_esr"}, "OSError: the code asked for more memory"),
    "deleted_function": ({"ch01.svc_esr"}, "defines no function svc_esr"),
    "reads_solutions": SOLUTION_READ_REFUSED,
    "reads_solutions_with_os_open": SOLUTION_READ_REFUSED,
    "reads_solutions_through_proc": SOLUTION_READ_REFUSED,
    "reads_solutions_through_ctypes": ({"ch01.svc_esr"}, "ctypes.dlsym is not allowed"),
    "runs_a_program": ({"ch01.svc_esr"}, "subprocess.Popen is not allowed"),
    "prints_everything": (set(), ""),
    "prints_forever": ({"ch01.decode_uart_flags"}, "printed more output than the grader keeps"),
    "leaves_a_process_behind": (set(), ""),
}
EDITED = {
    # submissions made by editing the solutions: (edit, lost exercises, phrase)
    "handler_forgets_skip": (replace_body("handle_sysreg", '    return "done"'), {"ch02.handle_sysreg"},
                             "vcpu.skip(exit)"),
    "bad_assembly": (replace_body("print_number_source", '    return "print_number:\\n    frobnicate x0\\n"'),
                     {"ch01.print_number_source"}, "line 2"),
}


def test_the_expected_esr_of_svc_0_is_the_architectures():
    # BROKEN's "expected 1442840576" is ESR_EL1 for SVC #0 written out from the Arm ARM:
    # EC 0x15 (SVC from AArch64) in [31:26], IL = 1 (a 32-bit instruction) in bit 25.
    assert 0x15 << 26 | 1 << 25 == 1442840576


def test_every_broken_fixture_is_in_the_table():
    assert {p.name for p in FIXTURES.iterdir() if p.is_dir()} == set(BROKEN)


def test_broken_submissions_get_the_right_partial_score_and_a_clear_message(tmp_path):
    folders = [submission(tmp_path, name, appended(FIXTURES / name / "ch01_machine.py")) for name in BROKEN]
    folders += [submission(tmp_path, name, edit) for name, (edit, _, _) in EDITED.items()]
    other = folders[0]
    snoop = submission(tmp_path, "reads_other_student",
                       replace_body("decode_uart_flags", f"    import os\n    return set(os.listdir({str(other)!r}))"))
    workers_before = set(_processes_running("vlab.grading.worker"))
    start = time.monotonic()
    grades = grade_all(folders + [snoop], jobs=4, timeout_s=TIMEOUT)
    assert time.monotonic() - start < 600
    expected = BROKEN | {name: (lost, phrase) for name, (_, lost, phrase) in EDITED.items()}
    expected["reads_other_student"] = ({"ch01.decode_uart_flags"}, "listing " + str(other))
    assert [g.student for g in grades] == list(expected)
    for grade in grades:
        lost, phrase = expected[grade.student]
        assert grade.error == "", grade.student
        assert scores(grade) == {i: 0.0 if i in lost else FULL[i] for i in FULL}, grade.student
        messages = " ".join(t["message"] for i in lost for t in grade.exercises[i]["tests"])
        messages += " ".join(grade.exercises[i]["problem"] for i in lost)
        assert phrase in messages, (grade.student, messages[:300])
        assert "worker.py" not in messages  # the student is pointed at their own code, not the grader's
    assert set(_processes_running("vlab.grading.worker")) <= workers_before  # none left behind


def _processes_running(command_part: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and command_part.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            pass  # it ended while we looked
    return pids


def test_a_symlink_to_the_solutions_is_not_followed(tmp_path):
    folder = tmp_path / "linker"
    folder.mkdir()
    (folder / "ch01_machine.py").symlink_to(SOLUTIONS / "ch01_machine.py")
    grade = grade_submission(folder, timeout_s=TIMEOUT)
    assert grade.total == 0 and "ch01_machine.py is missing" in grade.exercises["ch01.svc_esr"]["problem"]


def test_grade_command_writes_csv_json_and_feedback_field_by_field(tmp_path, capsys):
    good = submission(tmp_path, "alice")
    half = submission(tmp_path, "bob", replace_body("print_number_source", "    return 42"))
    out, js, fb = tmp_path / "grades.csv", tmp_path / "grades.json", tmp_path / "feedback"
    status = main(["grade", str(good), str(half), "--out", str(out), "--json", str(js), "--feedback", str(fb),
                   "--jobs", "2", "--timeout", str(TIMEOUT)])
    assert status == 0  # students failing is not the grader failing
    maximum = sum(FULL.values())
    rows = list(csv.DictReader(out.open()))
    assert [r["student"] for r in rows] == ["alice", "bob"]
    assert list(rows[0]) == ["student", *FULL, "total", "max", "error"]
    for row, lost in zip(rows, (set(), {"ch01.print_number_source"})):
        for exercise_id, points in FULL.items():
            assert float(row[exercise_id]) == (0 if exercise_id in lost else points)
        assert float(row["total"]) == maximum - sum(FULL[i] for i in lost)
        assert int(row["max"]) == maximum and row["error"] == ""
    data = json.loads(js.read_text())
    assert [d["student"] for d in data] == ["alice", "bob"] and data[1]["total"] == maximum - FULL["ch01.print_number_source"]
    bob_tests = data[1]["exercises"]["ch01.print_number_source"]["tests"]
    assert len(bob_tests) == len(EXERCISES["ch01.print_number_source"].tests)
    assert all(not t["passed"] and "should return assembly source" in t["message"] for t in bob_tests)
    assert {t["hidden"] for t in bob_tests} == {True, False}
    feedback = (fb / "bob.md").read_text()
    assert "should return assembly source" in feedback and "a hidden test" in feedback
    assert "all tests passed" in (fb / "alice.md").read_text()


def test_grade_command_refuses_what_is_not_a_folder(tmp_path):
    assert main(["grade", str(tmp_path / "nobody")]) == 2


# --- check() in a notebook ------------------------------------------------------------------------

def test_check_explains_failures_with_expected_got_and_hint(capsys):
    result = check("ch01.svc_esr", lambda imm16: imm16)
    out = capsys.readouterr().out
    assert result.passed == 0 and "FAIL  svc #0" in out and "expected" in out and "hint:" in out
    assert f"0/{len(EXERCISES['ch01.svc_esr'].public_tests())} tests passed" in out


def test_check_cuts_off_an_endless_loop_and_survives_anything(capsys):
    def spin(_):
        while True:
            pass

    start = time.monotonic()
    assert check("ch01.svc_esr", spin, timeout_s=1).passed == 0
    assert time.monotonic() - start < 30 and "timed out after 1 s" in capsys.readouterr().out
    assert check("ch01.svc_esr", "not a function").passed == 0
    assert check("ch01.no_such_exercise", spin) is None
    assert "ch01.svc_esr" in capsys.readouterr().out


def test_check_passes_the_reference_solution(capsys):
    namespace: dict = {}
    for module in MODULES:
        exec((SOLUTIONS / f"{module}.py").read_text(), namespace)
    for exercise in EXERCISES.values():
        assert check(exercise.id, namespace[exercise.function]).passed == len(exercise.public_tests())
    assert capsys.readouterr().out.count("well done") == len(EXERCISES)


def test_in_a_jupyter_kernel_check_shows_an_escaped_html_table_with_the_text_as_plain(monkeypatch, capsys):
    import IPython
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: type("Kernel", (), {"kernel": object()})())
    monkeypatch.setattr(IPython.display, "display", lambda data, raw: shown.append(data))
    result = check("ch01.svc_esr", lambda imm16: "<script>alert(1)</script>" if imm16 else 0x15 << 26 | 1 << 25)
    assert capsys.readouterr().out == "" and len(shown) == 1
    page, text = shown[0]["text/html"], shown[0]["text/plain"]
    public = len(EXERCISES["ch01.svc_esr"].public_tests())
    assert result.passed == 1 and page.count(">PASS<") == 1 and page.count(">FAIL<") == public - 1
    assert "<script>" not in page and "&lt;script&gt;" in page and "hint:" in page
    assert "<script>" in text and f"1/{public} tests passed" in text
