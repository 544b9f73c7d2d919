"""Graded exercises: solutions earn full marks, untouched exercises none, broken submissions what they deserve;
`vlab grade`'s outputs and refusals; `check()` and `load()` in a notebook; `vlab exercises`."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time

import pytest
from submissions import (EXERCISES_DIR, FULL, MODULES, ROOT, SOLUTIONS, appended, processes_running,
                         replace_body, scores, submission)

from vlab.cli import main
from vlab.grading import EXERCISES, check, load
from vlab.grading.exercise import cases_of
from vlab.grading.generate import generated_exercises, strip_solutions
from vlab.grading.grade import grade_all

TIMEOUT = 3.0
SEED = "test seed"


# --- the source of truth ------------------------------------------------------------------------

def test_committed_exercises_are_what_the_generator_makes_from_solutions():
    for name, text in generated_exercises(SOLUTIONS).items():
        assert (EXERCISES_DIR / name).read_text() == text, f"run `vlab exercises`: {name} is out of date"
    assert main(["exercises", "--check", "--root", str(ROOT)]) == 0


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


def test_exercises_are_written_into_the_course_of_the_current_folder_not_the_installed_one(tmp_path, monkeypatch,
                                                                                         capsys):
    copy = tmp_path / "course"
    shutil.copytree(SOLUTIONS, copy / "solutions")
    (copy / "notebooks").mkdir()
    monkeypatch.chdir(copy / "notebooks")  # a folder inside the copied course
    assert main(["exercises"]) == 0
    assert sorted(p.name for p in (copy / "exercises").iterdir()) == sorted(generated_exercises(SOLUTIONS))
    assert str(copy / "exercises") in capsys.readouterr().out
    assert main(["exercises", "--check", "--root", str(ROOT)]) == 0  # the checkout's own were left alone


def test_exercises_outside_a_course_refuse_and_say_why(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["exercises"]) == 2
    assert "not in a course" in capsys.readouterr().err and not (tmp_path / "exercises").exists()


# --- hidden cases: drawn from the instructor's seed -----------------------------------------------

def test_hidden_cases_come_from_the_seed_and_public_cases_are_everyone_s():
    for exercise in EXERCISES.values():
        for test in exercise.tests:
            a, b = cases_of(exercise, test, "one secret"), cases_of(exercise, test, "another secret")
            if test.hidden:
                assert [c.args for c in a] != [c.args for c in b], (exercise.id, test.name)
                assert [c.args for c in a] == [c.args for c in cases_of(exercise, test, "one secret")]
            else:
                assert [c.args for c in a] == [c.args for c in b], (exercise.id, test.name)
        with pytest.raises(ValueError, match="seed"):
            cases_of(exercise, next(t for t in exercise.tests if t.hidden), None)


def test_the_package_holds_no_data_a_hidden_case_could_hide_in():
    grading = ROOT / "vlab" / "grading"
    assert {p.suffix for p in grading.rglob("*") if p.is_file() and "__pycache__" not in p.parts} == {".py"}


def test_every_guest_a_handler_test_runs_ends_by_powering_off_on_the_bare_board():
    for exercise in (e for e in EXERCISES.values() if e.module == "ch02_trap_and_emulate"):
        for test in exercise.tests:
            for case in cases_of(exercise, test, SEED):
                assert case.expected["reason"] == "powered_off", (test.name, case.expected["message"])


# --- whole submissions, graded as an instructor does ----------------------------------------------

def test_the_solutions_earn_full_marks_and_untouched_exercises_earn_nothing():
    solved, untouched = grade_all([SOLUTIONS, EXERCISES_DIR], SEED, jobs=2, timeout_s=TIMEOUT)
    assert scores(solved) == FULL and solved.error == ""
    assert scores(untouched) == {i: 0.0 for i in FULL} and untouched.error == ""
    for exercise_id, result in untouched.exercises.items():
        # Said once for the exercise, not repeated on every test.
        assert result["problem"] == f"not done yet: {EXERCISES[exercise_id].function} still raises NotImplementedError"
        assert all(t["message"] == "" and not t["passed"] for t in result["tests"])


SOLUTION_LINES = (SOLUTIONS / "ch01_machine.py").read_text().count("\n")
CH01 = {i for i in FULL if i.startswith("ch01.")}
BROKEN = {
    # fixture folder: (the exercises that lose all their points, a phrase their feedback must contain)
    "syntax_error": (CH01, "SyntaxError: invalid syntax (line"),
    # line 2 of the fixture, after the solution's lines and the blank line appended() adds
    "exception": ({"ch01.decode_uart_flags"}, f"ValueError: oops (line {SOLUTION_LINES + 3} of ch01_machine.py)"),
    "wrong_answer": ({"ch01.svc_esr"}, "svc #0x0: expected 0x56000000, got 0x0"),
    "infinite_loop": ({"ch01.decode_uart_flags"}, f"timed out after {TIMEOUT:g} s"),
    "loops_on_import": (CH01, f"ran longer than {TIMEOUT:g} s"),
    "huge_memory": ({"ch01.svc_esr"}, "MemoryError: the code asked for more memory"),
    "maps_20_gib": ({"ch01.svc_esr"}, "the code asked for more memory"),
    "deleted_function": ({"ch01.svc_esr"}, "defines no function svc_esr"),
    # vlab's folder in the sandbox holds no solutions/ (nor may its files be read once loaded)
    "reads_solutions": ({"ch01.svc_esr"}, "is not allowed (/grader/solutions/ch01_machine.py)"),
    "reads_solutions_with_os_open": ({"ch01.svc_esr"}, "is not allowed (/grader/solutions/ch01_machine.py)"),
    "reads_solutions_through_proc": ({"ch01.svc_esr"}, "is not allowed (/proc/self/root/grader/solutions"),
    "reads_solutions_through_ctypes": (CH01, "ctypes.dlopen is not allowed"),
    "runs_a_program": ({"ch01.svc_esr"}, "FileNotFoundError"),
    "prints_everything": (set(), ""),
    "prints_forever": ({"ch01.decode_uart_flags"}, f"timed out after {TIMEOUT:g} s"),
}
EDITED = {
    # submissions made by editing the solutions: (edit, lost exercises, phrase)
    "handler_forgets_skip": (replace_body("handle_sysreg", '    return "done"'), {"ch02.handle_sysreg"},
                             "vcpu.skip(exit)"),
    "bad_assembly": (replace_body("print_number_source", '    return "print_number:\\n    frobnicate x0\\n"'),
                     {"ch01.print_number_source"}, "your assembly, line 2"),
}


def test_broken_submissions_get_the_right_partial_score_and_a_clear_message(tmp_path):
    folders = [submission(tmp_path, name, appended(name)) for name in BROKEN]
    folders += [submission(tmp_path, name, edit) for name, (edit, _, _) in EDITED.items()]
    grades = grade_all(folders, SEED, jobs=2, timeout_s=TIMEOUT)
    expected = BROKEN | {name: (lost, phrase) for name, (_, lost, phrase) in EDITED.items()}
    assert [g.student for g in grades] == list(expected)
    for grade in grades:
        lost, phrase = expected[grade.student]
        assert grade.error == "", grade.student
        assert scores(grade) == {i: 0.0 if i in lost else FULL[i] for i in FULL}, grade.student
        messages = " ".join(t["message"] + " " + t["hint"] for i in lost for t in grade.exercises[i]["tests"])
        messages += " ".join(grade.exercises[i]["problem"] for i in lost)
        assert phrase in messages, (grade.student, messages[:300])
        assert "vlab/grading" not in messages  # the student is pointed at their own code, not the grader's
        assert not re.search(r"\(line \d+\)[^(]*\(line \d+\)", messages), messages  # said once


def test_a_symlink_to_the_solutions_is_not_followed(tmp_path):
    folder = tmp_path / "linker"
    folder.mkdir()
    (folder / "ch01_machine.py").symlink_to(SOLUTIONS / "ch01_machine.py")
    grade, = grade_all([folder], SEED, timeout_s=TIMEOUT)
    assert grade.total == 0 and grade.exercises["ch01.svc_esr"]["problem"] == "ch01_machine.py is missing"


def test_grade_command_writes_csv_json_and_feedback_field_by_field(tmp_path, capsys):
    good = submission(tmp_path, "alice")
    half = submission(tmp_path, "bob", replace_body("print_number_source", "    return 42"))
    broken = submission(tmp_path, "carol", appended("syntax_error"))
    out, js, fb = tmp_path / "grades.csv", tmp_path / "grades.json", tmp_path / "feedback"
    status = main(["grade", str(good), str(half), str(broken), "--out", str(out), "--json", str(js),
                   "--feedback", str(fb), "--jobs", "2", "--timeout", str(TIMEOUT), "--seed", SEED])
    assert status == 0  # students failing is not the grader failing
    maximum = sum(FULL.values())
    rows = list(csv.DictReader(out.open()))
    assert [r["student"] for r in rows] == ["alice", "bob", "carol"]
    assert list(rows[0]) == ["student", *FULL, "total", "max", "error"]
    for row, lost in zip(rows, (set(), {"ch01.print_number_source"}, CH01)):
        for exercise_id, points in FULL.items():
            assert float(row[exercise_id]) == (0 if exercise_id in lost else points)
        assert float(row["total"]) == maximum - sum(FULL[i] for i in lost)
        assert int(row["max"]) == maximum and row["error"] == ""
    data = json.loads(js.read_text())
    assert [d["student"] for d in data] == ["alice", "bob", "carol"]
    assert data[1]["total"] == maximum - FULL["ch01.print_number_source"]
    bob_tests = data[1]["exercises"]["ch01.print_number_source"]["tests"]
    assert len(bob_tests) == len(EXERCISES["ch01.print_number_source"].tests)
    assert all(not t["passed"] and "should return assembly source (a str), not an int" in t["message"]
               for t in bob_tests)
    assert {t["hidden"] for t in bob_tests} == {True, False}
    bob = (fb / "bob.md").read_text()
    assert "should return assembly source" in bob and "a hidden test" in bob
    assert "all tests passed" in (fb / "alice.md").read_text()
    carol = (fb / "carol.md").read_text()
    # A file that does not load is said once per exercise, with its line once, and nothing else about it.
    problem = [line for line in carol.splitlines() if "does not load" in line]
    assert len(problem) == len(CH01) and all(line.count("(line") == 1 for line in problem)
    assert "failed" not in carol.split("## ch02")[0]
    for page in (bob, carol):
        assert "docstring above" not in page  # there is no docstring above, in a feedback page
    assert "vlab grade: each submission runs in a bubblewrap sandbox" in capsys.readouterr().err


def test_feedback_gives_the_hint_of_the_mistake_made(tmp_path):
    wrong = submission(tmp_path, "dave", replace_body("svc_esr", "    return 0x15 << 26 | imm16"))
    fb = tmp_path / "feedback"
    assert main(["grade", str(wrong), "--feedback", str(fb), "--timeout", str(TIMEOUT), "--seed", SEED]) == 0
    page = (fb / "dave.md").read_text()
    assert "svc #0x0: expected 0x56000000, got 0x54000000" in page  # registers and syndromes in hex
    assert "hint: IL (bit 25) is 1" in page


def test_grade_command_refuses_what_is_not_a_folder(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "nobody")]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("options, says", [
    (["--jobs", "0"], "--jobs 0"),
    (["--timeout", "0"], "--timeout 0"),
    (["--out", "/nonexistent/folder/grades.csv"], "cannot write /nonexistent/folder/grades.csv"),
    (["--json", "/"], "cannot write /"),
    (["--feedback", "/proc/version"], "cannot write into /proc/version"),
])
def test_grade_command_refuses_bad_options_before_grading_anyone(tmp_path, monkeypatch, capsys, options, says):
    import vlab.cli_grade

    monkeypatch.setattr(vlab.cli_grade, "grade_all", lambda *a, **k: pytest.fail("graded before refusing"))
    assert main(["grade", str(submission(tmp_path, "alice")), *options]) == 2
    assert says in capsys.readouterr().err


def test_two_students_with_one_name_are_refused_naming_both_folders(tmp_path, monkeypatch, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    one, other = submission(first, "alice"), submission(second, "alice")
    assert main(["grade", str(one), str(other)]) == 2
    err = capsys.readouterr().err
    assert str(one) in err and str(other) in err


def test_without_a_seed_grading_draws_one_and_says_which(tmp_path, capsys):
    assert main(["grade", str(submission(tmp_path, "alice")), "--timeout", str(TIMEOUT)]) == 0
    err = capsys.readouterr().err
    seed = re.search(r"--seed (\S+) draws the same", err).group(1)
    assert len(seed) >= 16


def test_no_process_is_left_behind_by_a_class(tmp_path):
    before = set(processes_running("vlab.grading.session")) | set(processes_running("vlab.grading.confined"))
    grade_all([submission(tmp_path, "alice"), submission(tmp_path, "bob", appended("leaves_processes_behind"))],
              SEED, jobs=2, timeout_s=TIMEOUT)
    time.sleep(0.2)
    after = set(processes_running("vlab.grading.session")) | set(processes_running("vlab.grading.confined"))
    assert after <= before


def test_without_bubblewrap_grading_says_so_and_still_grades(tmp_path):
    import subprocess
    import sys

    bin_dir = tmp_path / "bin"  # a PATH without bwrap: python only
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    student = submission(tmp_path, "alice", replace_body("svc_esr", "    return 0"))
    done = subprocess.run([sys.executable, "-m", "vlab", "grade", str(student), "--timeout", str(TIMEOUT),
                           "--seed", SEED, "--out", str(tmp_path / "g.csv")], capture_output=True, text=True,
                          env={**os.environ, "PATH": str(bin_dir)}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "WARNING: no sandbox: bubblewrap (bwrap) is not installed" in done.stderr
    assert "best-effort" in done.stderr
    row, = csv.DictReader((tmp_path / "g.csv").open())
    assert float(row["ch01.svc_esr"]) == 0 and float(row["ch01.decode_uart_flags"]) == FULL["ch01.decode_uart_flags"]


# --- check() in a notebook ------------------------------------------------------------------------

def test_check_explains_failures_in_hex_with_the_hint_of_the_mistake(capsys):
    result = check("ch01.svc_esr", lambda imm16: 0x15 << 26 | imm16)
    out = capsys.readouterr().out
    assert result.passed == 0 and "FAIL  svc #0" in out
    assert "svc #0x0: expected 0x56000000, got 0x54000000" in out and "hint: IL (bit 25)" in out
    assert f"0/{len(EXERCISES['ch01.svc_esr'].public_tests())} tests passed" in out


def test_check_names_a_wrong_type(capsys):
    check("ch01.svc_esr", lambda imm16: hex(0x15 << 26 | 1 << 25 | imm16))
    out = capsys.readouterr().out
    assert "returned a str '0x56000000', expected an int" in out and "hint: a hex string" in out


def test_check_stops_an_endless_loop_after_the_first_timeout(capsys):
    def spin(_):
        while True:
            pass

    start = time.monotonic()
    result = check("ch01.svc_esr", spin, timeout_s=1)
    assert result.passed == 0 and time.monotonic() - start < 1 + 10  # one limit, not one per test
    out = capsys.readouterr().out
    assert "timed out after 1 s" in out and "not run: an earlier test of this exercise ran out of time" in out
    assert check("ch01.svc_esr", "not a function").passed == 0
    assert check("ch01.no_such_exercise", spin) is None
    assert "ch01.svc_esr" in capsys.readouterr().out


def test_check_passes_the_reference_solution(capsys):
    for exercise in EXERCISES.values():
        answer = getattr(load(exercise.module, SOLUTIONS), exercise.function)
        assert check(exercise.id, answer).passed == len(exercise.public_tests())
    assert capsys.readouterr().out.count("well done") == len(EXERCISES)


def test_check_in_a_notebook_may_compare_with_vlab_s_own_answer(capsys):
    from vlab.hyp.handlers import handle_sysreg

    result = check("ch02.handle_sysreg", handle_sysreg)
    assert result.passed == len(result.tests) and not result.delegated


def test_load_reads_the_file_again_each_time(tmp_path):
    (tmp_path / "ch01_machine.py").write_text("def svc_esr(imm16):\n    return 1\n")
    assert load("ch01_machine", tmp_path).svc_esr(0) == 1
    (tmp_path / "ch01_machine.py").write_text("def svc_esr(imm16):\n    return 2\n")
    assert load("ch01_machine", tmp_path).svc_esr(0) == 2
    with pytest.raises(FileNotFoundError, match="no ch09_nothing.py"):
        load("ch09_nothing", tmp_path)


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


def test_every_module_is_graded_from_its_own_file():
    assert MODULES == sorted(p.stem for p in SOLUTIONS.glob("*.py"))


def _resolve(name: str):
    """The module a dotted vlab name lives in, and the thing it names (AttributeError if vlab has it no more)."""
    import importlib

    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        thing = module
        for attribute in parts[i:]:
            thing = getattr(thing, attribute)
        return module, thing
    raise ModuleNotFoundError(name)


def test_every_answer_the_sandbox_refuses_names_something_in_vlab_and_none_is_in_the_sandbox():
    from vlab.grading.answers import ANSWERS, may_import
    from vlab.grading.sandbox import VIEW_FILES

    in_the_sandbox = [f"vlab.{f.removesuffix('.py').replace('/', '.')}" for f in VIEW_FILES]
    for exercise_id, names in ANSWERS.items():
        assert exercise_id in EXERCISES
        for name in names:
            module, _ = _resolve(name)
            inside = any(module.__name__ == m or module.__name__.startswith(m + ".") for m in in_the_sandbox)
            assert inside == may_import(module.__name__), name  # only what is guarded there is there
