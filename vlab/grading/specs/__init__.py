"""Every chapter's exercises. A chapter adds a module here with an EXERCISES tuple, and lists it below."""

from __future__ import annotations

from vlab.grading.exercise import Exercise
from vlab.grading.specs import ch01, ch02, ch03, ch04, ch05, ch06, ch07

EXERCISES: dict[str, Exercise] = {e.id: e for chapter in (ch01, ch02, ch03, ch04, ch05, ch06, ch07)
                                  for e in chapter.EXERCISES}


def lookup(exercise_id: str) -> Exercise:
    """The exercise with this id; KeyError listing the known ids."""
    try:
        return EXERCISES[exercise_id]
    except KeyError:
        raise KeyError(f"no exercise {exercise_id!r}; there are: {', '.join(EXERCISES)}") from None
