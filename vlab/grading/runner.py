"""Running an exercise's tests on a student's answers, which live in another process.

    result = run_exercise(exercise, answers, cases, timeout_s=10)

`answers` is an AnswerProcess (vlab.grading.answer_process); `cases` maps each test's name to
its cases (`cases_for`). Each test has `timeout_s` for all its cases; after a test runs out of
time the exercise's remaining tests are not run (an endless loop would cost the limit again
each time). A submission that reached for vlab's own answer scores 0 on the exercise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vlab.grading import messages
from vlab.grading.answer_process import Ended, TimedOut
from vlab.grading.exercise import Case, Exercise, Test, cases_of
from vlab.grading.sanitize import clean

TEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class TestResult:
    name: str
    passed: bool
    message: str = ""
    hint: str = ""
    hidden: bool = False


@dataclass(frozen=True, repr=False)
class ExerciseResult:
    exercise: Exercise
    tests: tuple[TestResult, ...]
    problem: str = ""  # why no test could run (the file does not load, the function is missing)
    delegated: tuple[str, ...] = field(default=())  # vlab's own answers it reached for: no points

    @property
    def passed(self) -> int:
        return sum(t.passed for t in self.tests)

    @property
    def score(self) -> float:
        """Points earned: the exercise's points times the share of its tests passed (0 after delegating)."""
        if not self.tests or self.delegated:
            return 0.0
        return round(self.exercise.points * self.passed / len(self.tests), 2)

    def __repr__(self) -> str:
        return f"<{self.exercise.id}: {self.summary()}>"

    def summary(self) -> str:
        return (f"{self.passed}/{len(self.tests)} tests passed "
                f"({self.score:g}/{self.exercise.points} points)")


def tests_of(exercise: Exercise, hidden: bool) -> tuple[Test, ...]:
    return exercise.tests if hidden else exercise.public_tests()


def cases_for(exercise: Exercise, seed: str | None) -> dict[str, list[Case]]:
    """Every test's cases: the public ones, and the hidden ones too when a seed is given."""
    return {t.name: cases_of(exercise, t, seed) for t in tests_of(exercise, seed is not None)}


def run_exercise(exercise: Exercise, answers, cases: dict[str, list[Case]],
                 timeout_s: float = TEST_TIMEOUT_S) -> ExerciseResult:
    """The tests named in `cases`, in the exercise's order, each judged by its exercise's kind."""
    results: list[TestResult] = []
    delegated: list[str] = []
    not_done = True  # until a test shows the answer is more than the placeholder
    stopped = ""
    for test in (t for t in exercise.tests if t.name in cases):
        if stopped:
            results.append(TestResult(test.name, False, stopped, "", test.hidden))
            continue
        try:
            verdict = exercise.kind.verdict(exercise, answers, cases[test.name], timeout_s)
        except TimedOut:
            not_done = False
            results.append(TestResult(test.name, False, messages.timed_out(timeout_s, "in this test"),
                                      test.hint, test.hidden))
            stopped = "not run: an earlier test of this exercise ran out of time"
            continue
        except Ended as e:
            not_done = False
            tail = answers.output_tail.strip().splitlines()[-3:]
            said = f"; its last output: {clean(' / '.join(tail), 300)}" if tail else ""
            results.append(TestResult(test.name, False, f"{e}{said}", test.hint, test.hidden))
            continue
        delegated += [n for n in verdict.delegated if n not in delegated]
        not_done = not_done and verdict.not_done
        results.append(TestResult(test.name, verdict.passed, verdict.message,
                                  "" if verdict.passed else verdict.hint or test.hint, test.hidden))
    if delegated:
        return ExerciseResult(exercise, tuple(results), messages.delegation(delegated), tuple(delegated))
    if not_done and results:  # said once for the exercise, not once per test
        return unanswered(exercise, messages.not_done(exercise.function), hidden=any(t.hidden for t in results))
    return ExerciseResult(exercise, tuple(results))


def unanswered(exercise: Exercise, problem: str, hidden: bool = True) -> ExerciseResult:
    """Every test failed for the same reason, said once: the answer could not be loaded."""
    return ExerciseResult(exercise, tuple(TestResult(t.name, False, "", "", t.hidden)
                                          for t in tests_of(exercise, hidden)), problem)
