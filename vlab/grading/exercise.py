"""What an exercise is: an id, a statement, points, and tests -- public ones and hidden ones.

A test is a function `test(answer)` that raises `AssertionError` with a message saying
what was expected and what came back. Tests compute their expectations from the machine
(run a guest, read what the hardware did) or from the architecture written out in the
test -- never from the reference solution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

TestFunction = Callable[[Any], None]


@dataclass(frozen=True)
class Test:
    name: str
    run: TestFunction
    hint: str = ""
    hidden: bool = False  # used only by instructor grading


@dataclass(frozen=True)
class Exercise:
    id: str  # "ch01.decode_uart_flags": chapter, then the function the student writes
    title: str
    statement: str
    points: int
    module: str  # the file in exercises/ (and solutions/) that defines the function, without .py
    tests: tuple[Test, ...] = field(default=())

    @property
    def function(self) -> str:
        return self.id.split(".", 1)[1]

    def public_tests(self) -> tuple[Test, ...]:
        return tuple(t for t in self.tests if not t.hidden)


def expect(got: Any, expected: Any, what: str) -> None:
    """Fail with 'what: expected X, got Y' unless got == expected."""
    if got != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {got!r}")
