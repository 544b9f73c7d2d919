"""PolicyAnswer (vlab.grading.kinds), the kind of chapter 5's exercises, on a toy policy: calls are compared
exactly; in a run every decision is a call in the answer's own process, plain data each way, and only the
answer's time counts against the test's limit; what it raises, delegates or decides unusably fails the test
with the student's message and the hint of the mistake."""

from __future__ import annotations

import time

import pytest

from vlab.grading.answer_process import AnswerProcess, Called, TimedOut, forked
from vlab.grading.exercise import Case, Exercise
from vlab.grading.exercise import Test as ExerciseTest  # not a test class for pytest
from vlab.grading.kinds import HOST_RUN, PolicyAnswer, is_run
from vlab.grading.plain import show

TIMEOUT = 2.0
runs_made: list[dict] = []  # what toy_run was asked to run, in this (the grader's) process


def toy_run(spec: dict, decide) -> dict:
    """A stand-in for guests on a host: spec["decisions"] decisions, each given the one before, the grader's
    side working spec["work_s"] seconds in all between them (as running guests does)."""
    runs_made.append(spec)
    seen, last = [], spec["start"]
    for _ in range(spec["decisions"]):
        time.sleep(spec.get("work_s", 0) / spec["decisions"])
        last = decide(last)
        if type(last) is not int:
            raise AssertionError(f"decided {show(last)}, not an int")
        seen.append(last)
    return {"seen": seen}


def toy_judge(case: Case, observed: dict) -> str:
    return "" if observed["seen"] == case.expected else f"decided {observed['seen']}, expected {case.expected}"


def _counts_wrong(case: Case, observed: dict) -> str | None:
    if "seen" in observed and observed["seen"] != case.expected:
        return "count up by one"


def _not_an_int(case: Case, observed: dict) -> str | None:
    if "not an int" in observed.get("error", ""):
        return "decide an int"


def _call_wrong(case: Case, got) -> str | None:
    return "next(n) is n + 1" if type(got) is not int or got != case.expected else None


def toy(work_s: float = 0.0) -> Exercise:
    run = Case("three decisions from 0", (HOST_RUN, {"start": 0, "decisions": 3, "work_s": work_s}), [1, 2, 3])
    return Exercise(id="ch05.next", title="toy", statement="toy", points=1, module="toy",
                    kind=PolicyAnswer(toy_run, toy_judge, (_call_wrong,), (_counts_wrong, _not_an_int)),
                    tests=(ExerciseTest("calls and a run", lambda rng: [Case("next(1)", (1,), 2), Case("next(5)", (5,), 6),
                                                               run]),))


def runs_only(decisions: int) -> Exercise:
    expected = list(range(1, decisions + 1))
    return Exercise(id="ch05.next", title="toy", statement="toy", points=1, module="toy", kind=toy().kind,
                    tests=(ExerciseTest("a run", lambda rng: [Case("a run", (HOST_RUN, {"start": 0, "decisions": decisions}),
                                                          expected)]),))


def verdict_of(answer, exercise: Exercise | None = None, timeout_s: float = TIMEOUT):
    exercise = exercise or toy()
    answers = AnswerProcess(forked({"next": answer}))
    try:
        return exercise.kind.verdict(exercise, answers, exercise.tests[0].cases(None), timeout_s)
    finally:
        answers.close()


def test_a_correct_answer_passes_its_calls_and_its_runs():
    runs_made.clear()
    assert verdict_of(lambda n: n + 1).passed and len(runs_made) == 1


def test_calls_and_runs_are_told_apart_by_the_case_alone():
    assert is_run(Case("run", (HOST_RUN, {}))) and not is_run(Case("call", (HOST_RUN,)))
    assert not is_run(Case("call", ("guests", {})))


def test_every_decision_of_a_run_is_a_call_in_the_answer_s_one_process():
    calls = []  # appended to in the answer's process (a fork of this one): this process never sees it

    def counting(n):
        calls.append(n)
        return len(calls)  # 1, 2, 3 only if one process answered all three decisions, in order
    assert verdict_of(counting, runs_only(3)).passed and calls == []


def test_decisions_cross_as_plain_data_with_their_exact_types():
    class AlwaysEqual:
        def __eq__(self, other):
            return True

    def sneaky(n):
        return n + 1 if n in (1, 5) else AlwaysEqual()
    verdict = verdict_of(sneaky)
    assert not verdict.passed and "decided <a AlwaysEqual object>, not an int" in verdict.message
    assert verdict.hint == "decide an int"
    verdict = verdict_of(lambda n: n + 1 if n in (1, 5) else True)
    assert "decided True, not an int" in verdict.message  # a bool is not an int here


def test_a_wrong_decision_in_a_run_is_judged_with_the_hint_of_its_mistake():
    verdict = verdict_of(lambda n: n + 1 if n in (1, 5) else n + 2)
    assert not verdict.passed and verdict.message == "three decisions from 0: decided [2, 4, 6], expected [1, 2, 3]"
    assert verdict.hint == "count up by one"


def test_calls_are_judged_first_exactly_and_a_failing_call_runs_no_guests():
    runs_made.clear()
    verdict = verdict_of(lambda n: n + 1.0)
    assert not verdict.passed and "returned a float" in verdict.message and verdict.hint == "next(n) is n + 1"
    assert runs_made == []


def test_an_answer_that_raises_in_a_run_ends_it_naming_its_line():
    def raises(n):
        if n in (1, 5):
            return n + 1
        raise ValueError("no decision")
    verdict = verdict_of(raises)
    assert not verdict.passed
    assert verdict.message.startswith("three decisions from 0: ValueError: no decision (line ")
    assert "test_grading_ch05_kind.py" in verdict.message


def test_an_answer_not_written_yet_is_not_done_in_runs_too():
    def placeholder(n):
        raise NotImplementedError("write your answer here")
    verdict = verdict_of(placeholder, runs_only(1))
    assert not verdict.passed and verdict.not_done and "not done yet" in verdict.message


def test_only_the_answer_s_time_counts_against_the_limit():
    assert verdict_of(lambda n: n + 1, toy(work_s=1.5), timeout_s=1.0).passed  # the run's own work is not counted

    def slow(n):
        time.sleep(0.4)
        return n + 1
    with pytest.raises(TimedOut):
        verdict_of(slow, timeout_s=1.0)  # 5 decisions of 0.4 s: more than the answer's second


class Delegating:
    """An answer process whose answer reached for vlab's own (as the confined process reports it)."""

    def call(self, exercise, module, function, cases, timeout_s):
        if len(cases) > 1:  # the calls of the test, together
            return Called(values=[n + 1 for n, in cases])
        return Called(values=[1], delegated=["vlab.sched.fair.Fair"])  # a decision in the run


def test_a_run_whose_answer_delegates_earns_nothing_and_says_what_it_called():
    exercise = toy()
    verdict = exercise.kind.verdict(exercise, Delegating(), exercise.tests[0].cases(None), TIMEOUT)
    assert not verdict.passed and verdict.delegated == ("vlab.sched.fair.Fair",)
    assert "your code called vlab.sched.fair.Fair" in verdict.message
