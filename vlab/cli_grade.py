"""`vlab grade SUBMISSIONS...`: grade a class, one confined process per submission.

    vlab grade submissions/*/ --out grades.csv --json grades.json --feedback feedback/ --jobs 4

Each SUBMISSION is a folder shaped like exercises/ (one per student; the folder's name is
the student's). Exit status 0 when grading completed -- even if students failed -- and
non-zero only when the grader itself could not run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlab.grading.grade import SubmissionGrade, grade_all, write_csv, write_feedback, write_json
from vlab.grading.runner import TEST_TIMEOUT_S


def add_parser(subparsers) -> None:
    """Register the `grade` subcommand."""
    p = subparsers.add_parser("grade", help="grade students' submissions (public and hidden tests)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION", help="a student's folder")
    p.add_argument("--out", type=Path, metavar="CSV", help="write points per exercise and totals as CSV")
    p.add_argument("--json", type=Path, metavar="FILE", help="write every test's result as JSON")
    p.add_argument("--feedback", type=Path, metavar="DIR", help="write one Markdown feedback file per student")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="grade N submissions at a time")
    p.add_argument("--timeout", type=float, default=TEST_TIMEOUT_S, metavar="SECONDS",
                   help=f"time limit per test (default {TEST_TIMEOUT_S:g} s)")
    p.set_defaults(func=grade_command)


def grade_command(args: argparse.Namespace) -> int:
    missing = [str(s) for s in args.submissions if not s.is_dir()]
    if missing:
        print(f"vlab grade: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    names = [s.resolve().name for s in args.submissions]
    if len(set(names)) != len(names):
        print("vlab grade: two submissions have the same folder name; each student needs their own",
              file=sys.stderr)
        return 2

    def progress(done: int, total: int, grade: SubmissionGrade) -> None:
        bar = "#" * (20 * done // total)
        print(f"\r[{bar:<20}] {done}/{total} graded (last: {grade.student} {grade.total:g})",
              end="\n" if done == total else "", file=sys.stderr, flush=True)

    grades = grade_all([s.resolve() for s in args.submissions], jobs=args.jobs, timeout_s=args.timeout,
                       progress=progress)
    try:
        if args.out:
            write_csv(grades, args.out)
        if args.json:
            write_json(grades, args.json)
        if args.feedback:
            write_feedback(grades, args.feedback)
    except OSError as e:
        print(f"vlab grade: cannot write the results: {e}", file=sys.stderr)
        return 1
    for g in grades:
        print(f"{g.student:<24} {g.total:>6g} / {SubmissionGrade.maximum()}" + (f"  ({g.error})" if g.error else ""))
    return 0
