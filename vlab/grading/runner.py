"""Running an exercise's tests on an answer, each test in its own child process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vlab.grading.exercise import Exercise, Test
from vlab.grading.sandbox import run_isolated

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
    problem: str = ""  # the answer could not even be found (missing function, syntax error)

    @property
    def passed(self) -> int:
        return sum(t.passed for t in self.tests)

    @property
    def score(self) -> float:
        """Points earned: the exercise's points times the share of its tests passed."""
        if not self.tests:
            return 0.0
        return round(self.exercise.points * self.passed / len(self.tests), 2)

    def __repr__(self) -> str:
        return f"<{self.exercise.id}: {self.summary()}>"

    def summary(self) -> str:
        return (f"{self.passed}/{len(self.tests)} tests passed "
                f"({self.score:g}/{self.exercise.points} points)")


def _run_one(test: Test, answer: Any) -> None:
    test.run(answer)


def run_tests(exercise: Exercise, answer: Any, hidden: bool = False,
              timeout_s: float = TEST_TIMEOUT_S) -> ExerciseResult:
    """Run the public tests (and the hidden ones too, with hidden=True) on `answer`."""
    tests = exercise.tests if hidden else exercise.public_tests()
    if not callable(answer):
        problem = f"expected the function {exercise.function}, got {type(answer).__name__}"
        return ExerciseResult(exercise, tuple(TestResult(t.name, False, problem, t.hint, t.hidden) for t in tests),
                              problem)
    results = []
    for test in tests:
        outcome = run_isolated(lambda test=test: _run_one(test, answer), timeout_s)
        results.append(TestResult(test.name, outcome.ok, outcome.error, "" if outcome.ok else test.hint, test.hidden))
    return ExerciseResult(exercise, tuple(results))


def missing(exercise: Exercise, problem: str, hidden: bool = True) -> ExerciseResult:
    """Every test failed for the same reason: the answer could not be loaded."""
    tests = exercise.tests if hidden else exercise.public_tests()
    return ExerciseResult(exercise, tuple(TestResult(t.name, False, problem, "", t.hidden) for t in tests), problem)
