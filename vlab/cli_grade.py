"""`vlab grade SUBMISSIONS...`: grade a class, each submission's code in a sandbox of its own.

    vlab grade submissions/*/ --seed SECRET --out grades.csv --json grades.json --feedback feedback/ --jobs 4

Each SUBMISSION is a folder shaped like exercises/ (one per student; the folder's name is the
student's). The hidden tests' cases are drawn from SECRET: keep it to yourself, and pass the
same one to grade the same cases again (without --seed a new one is drawn, and printed). Exit
status 0 when grading completed -- even if students failed -- and non-zero only when the
grader itself could not run.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from vlab.grading.grade import SubmissionGrade, grade_all, student_name
from vlab.grading.reports import feedback_name, write_csv, write_feedback, write_json
from vlab.grading.runner import TEST_TIMEOUT_S
from vlab.grading.sandbox import sandbox_status


def add_parser(subparsers) -> None:
    """Register the `grade` subcommand."""
    p = subparsers.add_parser("grade", help="grade students' submissions (public and hidden tests)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION", help="a student's folder")
    p.add_argument("--seed", metavar="SECRET", help="draw the hidden tests' cases from SECRET (default: a new one)")
    p.add_argument("--out", type=Path, metavar="CSV", help="write points per exercise and totals as CSV")
    p.add_argument("--json", type=Path, metavar="FILE", help="write every test's result as JSON")
    p.add_argument("--feedback", type=Path, metavar="DIR", help="write one Markdown feedback file per student")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="grade N submissions at a time (N >= 1)")
    p.add_argument("--timeout", type=float, default=TEST_TIMEOUT_S, metavar="SECONDS",
                   help=f"time limit per test (default {TEST_TIMEOUT_S:g} s)")
    p.set_defaults(func=grade_command)


def _refusal(args: argparse.Namespace) -> str:
    """Why grading cannot start, found before any submission is graded ("" when it can)."""
    if args.jobs < 1:
        return f"--jobs {args.jobs}: grade at least one submission at a time (--jobs 1 or more)"
    if not args.timeout > 0:
        return f"--timeout {args.timeout:g}: the time limit per test must be more than 0 seconds"
    missing = [str(s) for s in args.submissions if not s.is_dir()]
    if missing:
        return f"not a folder: {', '.join(missing)}"
    by_name: dict[str, list[str]] = {}
    for s in args.submissions:
        by_name.setdefault(feedback_name(student_name(s)), []).append(str(s))
    same = [folders for folders in by_name.values() if len(folders) > 1]
    if same:
        return ("each student needs a folder name of their own; these share one: "
                + "; ".join(" and ".join(folders) for folders in same))
    for path in (args.out, args.json):
        if path is not None and not _writable(path):
            return f"cannot write {path}: its folder does not exist or is not writable"
    if args.feedback is not None and (args.feedback.exists() and not (args.feedback.is_dir() and
                                                                       os.access(args.feedback, os.W_OK))
                                      or not args.feedback.exists() and not _writable(args.feedback)):
        return f"cannot write into {args.feedback}: it must be a folder, or one that can be made"
    return ""


def _writable(path: Path) -> bool:
    if path.exists():
        return path.is_file() and os.access(path, os.W_OK)
    parent = path.parent if str(path.parent) else Path(".")
    return parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)


def grade_command(args: argparse.Namespace) -> int:
    refusal = _refusal(args)
    if refusal:
        print(f"vlab grade: {refusal}", file=sys.stderr)
        return 2
    status = sandbox_status()
    print(f"vlab grade: {status.how}" if status.sandboxed else
          f"vlab grade: WARNING: {status.how}. Student code runs with best-effort confinement only, checks "
          "inside its own process that determined code can get around: grade a class you do not trust on "
          "Linux with bubblewrap.", file=sys.stderr)
    seed = args.seed
    if seed is None:
        seed = secrets.token_hex(8)
        print(f"vlab grade: hidden cases drawn with the new seed {seed} (--seed {seed} draws the same again; "
              "keep it from students)", file=sys.stderr)

    def progress(done: int, total: int, grade: SubmissionGrade) -> None:
        bar = "#" * (20 * done // total)
        print(f"\r[{bar:<20}] {done}/{total} graded (last: {grade.student} {grade.total:g})",
              end="\n" if done == total else "", file=sys.stderr, flush=True)

    grades = grade_all([s.resolve() for s in args.submissions], seed, jobs=args.jobs, timeout_s=args.timeout,
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
