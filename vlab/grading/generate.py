"""exercises/ from solutions/: every solution region replaced by a NotImplementedError.

In solutions/, a reference answer sits between two marker lines:

        ### BEGIN SOLUTION
        return 42
        ### END SOLUTION

In the generated exercise the region becomes one line, at the same indentation:

        raise NotImplementedError("write your answer here (see the docstring above)")
"""

from __future__ import annotations

from pathlib import Path

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
PLACEHOLDER = 'raise NotImplementedError("write your answer here (see the docstring above)")'


def strip_solutions(text: str, name: str = "<source>") -> str:
    """The exercise version of a solution file; ValueError for unbalanced markers (with the line)."""
    out, inside = [], None
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if inside is not None:
                raise ValueError(f"{name}:{number}: {BEGIN} inside the region opened on line {inside}")
            inside = number
            out.append(line[: len(line) - len(line.lstrip())] + PLACEHOLDER + "\n")
        elif marker == END:
            if inside is None:
                raise ValueError(f"{name}:{number}: {END} without a {BEGIN}")
            inside = None
        elif inside is None:
            out.append(line)
    if inside is not None:
        raise ValueError(f"{name}:{inside}: {BEGIN} is never closed")
    return "".join(out)


def generated_exercises(solutions: Path) -> dict[str, str]:
    """File name -> the exercise text, for every solution file."""
    return {p.name: strip_solutions(p.read_text(), str(p)) for p in sorted(solutions.glob("*.py"))}


def write_exercises(solutions: Path, exercises: Path) -> list[str]:
    """Regenerate exercises/ from solutions/; the names of the files that changed."""
    exercises.mkdir(exist_ok=True)
    changed = []
    for name, text in generated_exercises(solutions).items():
        target = exercises / name
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            changed.append(name)
    return changed
