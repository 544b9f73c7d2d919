"""Chapter 5's exercises: the decisions pick_next must make are vlab's fair policy's charge; the reference
answers earn full marks whatever the seed, the untouched ones nothing; each requirement of a docstring has
tests only a correct answer passes, and a slip fails exactly those, with its hint; in the sandbox there is
no scheduling policy to delegate to."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from submissions import EXERCISES_DIR, SOLUTIONS
from test_grading_mistakes import answer_with, failures

from vlab.grading import EXERCISES, load
from vlab.grading.answer_process import AnswerProcess, forked
from vlab.grading.runner import cases_for, run_exercise
from vlab.grading.sandbox import confined, make_view, sandbox_status
from vlab.grading.specs import ch05
from vlab.sched import MAX_WEIGHT
from vlab.sched.units import ms

CH05 = [e for e in EXERCISES.values() if e.module == "ch05_sharing"]
TIMEOUT = 5.0


def graded(exercise, answer, seed: str):
    answers = AnswerProcess(forked({exercise.function: answer}))
    try:
        return run_exercise(exercise, answers, cases_for(exercise, seed), TIMEOUT)
    finally:
        answers.close()


@given(weight=st.integers(1, MAX_WEIGHT), ran=st.integers(0, ms(30)))
def test_the_charge_pick_next_asks_for_is_what_vlab_s_fair_policy_charges(weight, ran):
    assert ch05.fair_charge(weight, ran) == ran * 2**24 // weight


@pytest.mark.parametrize("seed", ["autumn", "spring", "summer"])
def test_the_reference_answers_earn_full_marks_whatever_the_seed(seed):
    solutions = load("ch05_sharing", SOLUTIONS)
    for exercise in CH05:
        result = graded(exercise, getattr(solutions, exercise.function), seed)
        assert result.passed == len(exercise.tests), [(t.name, t.message) for t in result.tests if not t.passed]


def test_the_untouched_exercises_earn_nothing_and_say_they_are_not_done():
    untouched = load("ch05_sharing", EXERCISES_DIR)
    for exercise in CH05:
        result = graded(exercise, getattr(untouched, exercise.function), "autumn")
        assert result.score == 0 and result.problem == f"not done yet: {exercise.function} still raises " \
                                                       "NotImplementedError"


PICK_TESTS = {t.name for t in ch05.PICK_NEXT.tests}
FRAME_TESTS = {t.name for t in ch05.ARINC653_FRAME.tests}
CHARGE = "r * 2**24 // weight for"
LUMPED = ('    text = ",".join(',
          '    windows = [[name, budget * major // period] for name, budget, period in parts]\n    text = ",".join(')
SPREAD = "a partition needs its budget inside every period"
MISTAKES = [
    # (exercise, what to change in the solution, what a student wrote, the tests that fail ("*": all; None: those
    #  the hints name), a phrase of their hint -- or per test, {test: phrase} -- and a phrase of their messages)
    ("ch05.pick_next", CHARGE, "r * 2**24 / weight for", "*", "charge in whole numbers",
     "returned a float 4096000000.0, expected an int"),
    ("ch05.pick_next", CHARGE, "r * (2**24 // weight) for", {"the charge: ran * 2**24 // weight, in whole numbers",
                                                              "random decisions"},
     "multiply before dividing", "expected 0x14d555555, got 0x14d555408"),
    ("ch05.pick_next", CHARGE, "r * weight for", None, {
        "the charge: ran * 2**24 // weight, in whole numbers": "grows by ran * 2**24 // weight",
        "the first decisions of three spinners sharing a core": "grows by ran * 2**24 // weight",
        "two spinners of weights 512 and 256 share a core 2:1": "a heavier vCPU ages more slowly",
        "random decisions": "a heavier vCPU ages more slowly",
        "shares within 5% of the weights over 300 ms": "a heavier vCPU ages more slowly"},
     "vm0.vcpu0 ran 33.33% of a pCPU, entitled to 66.67%"),
    ("ch05.pick_next", "charged[i] < charged[picked]", "charged[i] <= charged[picked]", {
        "the least virtual runtime, the lowest index among equals", "the first decisions of three spinners sharing "
        "a core", "random decisions"}, "among equal virtual runtimes, pick the lowest index", "expected 0x0, got 0x2"),
    ("ch05.pick_next", "if is_ready and (picked", "if (picked", {
        "the charge: ran * 2**24 // weight, in whole numbers", "the least virtual runtime, the lowest index among "
        "equals", "only a ready vCPU, or None", "random decisions", "no pCPU idles while a vCPU is ready",
        "the same guests give the same schedule",
        # at the end of a run the cores stop their vCPUs and ask for a pick with none ready
        "two spinners of weights 512 and 256 share a core 2:1", "shares within 5% of the weights over 300 ms"},
     "only a ready vCPU may be picked", "which is not ready (blocked)"),
    ("ch05.pick_next", "charged[i] < charged[picked]", "vruntimes[i] < vruntimes[picked]", {
        "the first decisions of three spinners sharing a core", "random decisions"}, "after the charge, not before",
     ""),
    ("ch05.pick_next", "    return charged, picked", "    return [charged, picked]", "*", "return a pair",
     "returned a list, expected a tuple"),
    ("ch05.pick_next", "    return charged, picked",
     "    import random\n    tied = [i for i, r in enumerate(ready) if r and charged[i] == charged[picked]] "
     "if picked is not None else [None]\n    return charged, random.choice(tied)", None, {
         "the least virtual runtime, the lowest index among equals": "pick the lowest index",
         "the first decisions of three spinners sharing a core": "pick the lowest index",
         "random decisions": "pick the lowest index",
         "the same guests give the same schedule": "decide from the arguments alone"},
     "got two different schedules"),
    ("ch05.arinc653_frame", '{us / 1000:g}ms" for', '{us / 1000:g}" for', "*", "a number and a unit",
     "'2' is not a duration"),
    ("ch05.arinc653_frame", "        if windows and windows[-1][0] == name:", "        if False:",
     {"a major frame of 80 ms or more"}, "merge neighbouring windows", "1 to 64 windows (Xen's limit)"),
    ("ch05.arinc653_frame", *LUMPED, FRAME_TESTS - {"the car: safety and info, both every 8 ms"}, SPREAD,
     "ran 0 ms in its period 2"),
    ("ch05.arinc653_frame", ("major = math.lcm(", LUMPED[0]), ("major = max(", LUMPED[1]), None, {
        "periods of 5, 10 and 20 ms": SPREAD, "periods of 4 and 6 ms": "a multiple of every period",
        "random partitions with harmonic periods": SPREAD, "random partitions with periods of 2 to 12 ms": SPREAD,
        "a major frame of 80 ms or more": SPREAD}, "(8 ms to 12 ms)"),
]


@pytest.mark.parametrize("exercise_id, old, new, failing, hint, message", MISTAKES,
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(MISTAKES)])
def test_a_slip_fails_the_tests_of_its_requirement_with_its_hint(tmp_path, exercise_id, old, new, failing, hint,
                                                                message):
    failed = failures(exercise_id, answer_with(exercise_id, old, new, tmp_path))
    everything = {t.name for t in EXERCISES[exercise_id].tests}
    expected = everything if failing == "*" else set(hint) if failing is None else failing
    if isinstance(new, str) and new.endswith("random.choice(tied)"):
        # A coin among ties may win the tosses of any one test; it cannot win them all.
        assert failed and set(failed) <= expected
    else:
        assert set(failed) == expected
    for name, (_, got) in failed.items():
        assert (hint if isinstance(hint, str) else hint[name]) in got, (name, got)
    coin_won = "the same guests give the same schedule" in expected - set(failed)  # only the coin slip can
    assert coin_won or any(message in m for m, _ in failed.values()), {n: m for n, (m, _) in failed.items()}


def test_a_frame_too_long_to_check_or_leaving_a_partition_out_is_said_so():
    long = failures("ch05.arinc653_frame", lambda partitions: "safety=2ms,info=4ms/frame=400ms")
    assert "checking a major frame of 400 ms takes 800 ms of guest time" in long[
        "the car: safety and info, both every 8 ms"][0]
    forgotten = failures("ch05.arinc653_frame", lambda partitions: f"{partitions[0][0]}=2ms/frame=8ms")
    message, hint = forgotten["the car: safety and info, both every 8 ms"]
    assert "info has no window" in message or "vm1.vcpu0 has no window" in message
    assert "give every partition a window" in hint


@pytest.mark.skipif(not sandbox_status().sandboxed, reason=f"needs the sandbox: {sandbox_status().how}")
def test_in_the_sandbox_there_is_no_policy_to_delegate_to(tmp_path):
    view = make_view(tmp_path / "view")
    assert not (view / "vlab" / "sched").exists() and not (view / "vlab" / "grading" / "specs").exists()
    student = tmp_path / "student"
    student.mkdir()
    (student / "ch05_sharing.py").write_text(
        (SOLUTIONS / "ch05_sharing.py").read_text() + "\n\n"
        "def pick_next(weights, vruntimes, ran, ready):\n"
        "    from vlab.sched.fair import Fair\n"
        "    return Fair(pcpus=1)\n")
    answers = AnswerProcess(confined(student, view, cpu_seconds=60))
    try:
        assert answers.load("ch05_sharing", TIMEOUT) is None
        result = run_exercise(ch05.PICK_NEXT, answers, cases_for(ch05.PICK_NEXT, "autumn"), TIMEOUT)
        frame = run_exercise(ch05.ARINC653_FRAME, answers, cases_for(ch05.ARINC653_FRAME, "autumn"), TIMEOUT)
    finally:
        answers.close()
    assert result.score == 0 and result.delegated == ("vlab.sched.fair.Fair",)
    assert "your code called vlab.sched.fair.Fair: vlab's own answer to this exercise" in result.problem
    assert frame.passed == len(ch05.ARINC653_FRAME.tests)  # the rest of the file is graded as usual
