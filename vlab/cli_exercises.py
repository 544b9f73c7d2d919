"""`vlab exercises`: regenerate exercises/ from solutions/ (the source of truth).

    vlab exercises            # rewrite what changed
    vlab exercises --check    # exit 1 if exercises/ is out of date (for CI)
    vlab exercises --nbgrader COURSE   # also write nbgrader source notebooks into COURSE/source/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlab.grading.generate import generated_exercises, write_exercises
from vlab.grading.nbgrader import write_source_notebooks

ROOT = Path(__file__).resolve().parent.parent


def add_parser(subparsers) -> None:
    """Register the `exercises` subcommand."""
    p = subparsers.add_parser("exercises", help="regenerate exercises/ from solutions/",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=ROOT, help="the course folder (holding solutions/, exercises/)")
    p.add_argument("--check", action="store_true", help="only say whether exercises/ is up to date")
    p.add_argument("--nbgrader", type=Path, metavar="COURSE",
                   help="also write the exercises as nbgrader source notebooks into COURSE/source/")
    p.set_defaults(func=exercises_command)


def exercises_command(args: argparse.Namespace) -> int:
    solutions, exercises = args.root / "solutions", args.root / "exercises"
    if not solutions.is_dir():
        print(f"vlab exercises: no solutions/ folder in {args.root}", file=sys.stderr)
        return 2
    try:
        if args.check:
            stale = [name for name, text in generated_exercises(solutions).items()
                     if not (exercises / name).exists() or (exercises / name).read_text() != text]
            print("exercises/ is up to date" if not stale else f"out of date: {', '.join(stale)} "
                  "(run `vlab exercises`)")
            return 1 if stale else 0
        changed = write_exercises(solutions, exercises)
        notebooks = write_source_notebooks(solutions, args.nbgrader) if args.nbgrader else []
    except (ValueError, SyntaxError, OSError) as e:
        print(f"vlab exercises: {e}", file=sys.stderr)
        return 2
    for path in notebooks:
        print(f"wrote {path}")
    print(f"regenerated {', '.join(changed)}" if changed else "exercises/ was already up to date")
    return 0
