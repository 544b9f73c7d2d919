"""What an exercise is: an id, a statement, points, a kind of answer, and tests made of cases.

A test draws its cases: each case is the arguments given to the answer (or to the guest it
drives) and what a correct answer gives, both plain data (`vlab.grading.plain`). Public tests
have fixed cases, shown by `check()`; a hidden test draws its cases from a random generator
seeded by the instructor's secret (`vlab grade --seed`), so the package students install holds
the code that makes hidden cases but not the cases. Expectations come from running vlab's
machine, or from the architecture written out in the test -- never from the reference solution.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol


@dataclass(frozen=True)
class Case:
    label: str  # how messages name it: "svc #0x1234", "IPA 0x40001234", "hello.S"
    args: tuple = ()  # plain data: the answer's arguments, or what the guest it drives is made of
    expected: Any = None  # plain data: what a correct answer gives, or what the bare machine did


@dataclass(frozen=True)
class Test:
    name: str
    cases: Callable[[random.Random], list[Case]]  # a hidden test's cases come from the generator
    hidden: bool = False  # run only by `vlab grade` (and nbgrader's autograder)
    hint: str = ""  # shown when a failure matches none of the exercise's known mistakes


@dataclass(frozen=True)
class Verdict:
    """One test's outcome, decided by the grader from plain data."""

    passed: bool
    message: str = ""
    hint: str = ""
    delegated: tuple[str, ...] = ()  # vlab's own answers the student's code reached for
    not_done: bool = False  # the answer still raises NotImplementedError (the exercise's placeholder)


class Kind(Protocol):
    """How an answer of one kind is tried on a test's cases (see vlab.grading.kinds)."""

    def verdict(self, exercise: Exercise, answers, cases: list[Case], timeout_s: float) -> Verdict: ...


@dataclass(frozen=True)
class Exercise:
    id: str  # "ch01.decode_uart_flags": chapter, then the function the student writes
    title: str
    statement: str
    points: int
    module: str  # the file in exercises/ (and solutions/) that defines the function, without .py
    kind: Kind
    tests: tuple[Test, ...] = field(default=())

    @property
    def function(self) -> str:
        return self.id.split(".", 1)[1]

    def public_tests(self) -> tuple[Test, ...]:
        return tuple(t for t in self.tests if not t.hidden)


def cases_of(exercise: Exercise, test: Test, seed: str | None) -> list[Case]:
    """A test's cases: a public test's are the same for everyone; a hidden test's come from `seed`."""
    if test.hidden and seed is None:
        raise ValueError(f"{exercise.id}: the hidden test {test.name!r} needs the instructor's seed")
    key = f"{seed}:{exercise.id}:{test.name}" if test.hidden else f"public:{exercise.id}:{test.name}"
    return test.cases(random.Random(key))
