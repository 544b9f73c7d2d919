"""`vlab exercises`: regenerate exercises/ from solutions/ (the source of truth).

    vlab exercises            # rewrite what changed, in the course this folder is in
    vlab exercises --check    # exit 1 if exercises/ is out of date (for CI)
    vlab exercises --nbgrader COURSE [--seed SECRET]   # also write nbgrader source notebooks

The course is the folder holding solutions/: the current folder or the nearest one above it
(--root names another). In a copy of the course, that is the copy, never the checkout vlab
was installed from.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from vlab.grading.generate import generated_exercises, write_exercises
from vlab.grading.nbgrader import write_source_notebooks


def add_parser(subparsers) -> None:
    """Register the `exercises` subcommand."""
    p = subparsers.add_parser("exercises", help="regenerate exercises/ from solutions/",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, help="the course folder (holding solutions/ and exercises/); "
                                             "default: the one the current folder is in")
    p.add_argument("--check", action="store_true", help="only say whether exercises/ is up to date")
    p.add_argument("--nbgrader", type=Path, metavar="COURSE",
                   help="also write the exercises as nbgrader source notebooks into COURSE/source/")
    p.add_argument("--seed", metavar="SECRET", help="with --nbgrader: the hidden tests' cases are drawn from "
                                                    "SECRET (default: a new one)")
    p.set_defaults(func=exercises_command)


def course_of(folder: Path) -> Path | None:
    """The course `folder` is in: itself or its nearest parent holding solutions/."""
    folder = folder.resolve()
    return next((f for f in (folder, *folder.parents) if (f / "solutions").is_dir()), None)


def exercises_command(args: argparse.Namespace) -> int:
    root = args.root if args.root is not None else course_of(Path.cwd())
    if root is None:
        print(f"vlab exercises: {Path.cwd()} is not in a course (no solutions/ folder here or above): run it in "
              "the course's folder, or name it with --root COURSE", file=sys.stderr)
        return 2
    solutions, exercises = root / "solutions", root / "exercises"
    if not solutions.is_dir():
        print(f"vlab exercises: no solutions/ folder in {root}", file=sys.stderr)
        return 2
    try:
        if args.check:
            stale = [name for name, text in generated_exercises(solutions).items()
                     if not (exercises / name).exists() or (exercises / name).read_text() != text]
            print(f"{exercises} is up to date" if not stale else f"out of date in {exercises}: {', '.join(stale)} "
                  "(run `vlab exercises`)")
            return 1 if stale else 0
        changed = write_exercises(solutions, exercises)
        notebooks = (write_source_notebooks(solutions, args.nbgrader, args.seed or secrets.token_hex(8))
                     if args.nbgrader else [])
    except (ValueError, SyntaxError, OSError) as e:
        print(f"vlab exercises: {e}", file=sys.stderr)
        return 2
    for path in notebooks:
        print(f"wrote {path}")
    print(f"regenerated {', '.join(changed)} in {exercises}" if changed else f"{exercises} was already up to date")
    return 0
