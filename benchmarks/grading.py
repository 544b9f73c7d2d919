"""How long does `vlab grade` take for a class? Seconds per submission, for a class of 20.

    python benchmarks/grading.py [--jobs 2] [--students 20] [--compare OTHER_CHECKOUT] [--rounds 2]

The class: most students solved everything (copies of solutions/), some handed in the
untouched exercises/, some made one mistake each (a wrong syndrome, a handler that forgets
to skip, a walk that never checks the access flag, a print routine that cannot print 0).
No submission loops forever: a timeout would measure the time limit, not the grader.

It runs `vlab grade` as an instructor does (`--jobs N`) and prints the wall-clock seconds per
submission. With --compare, it grades the same class with another checkout's grader too (its
own .venv, e.g. a clone of main from before the sandbox), the two in turn for --rounds rounds,
and prints the ratio of their medians: issue #18's target is at most 1.5 for the sandboxed
grader against the unsandboxed one, with --jobs 2.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, EXERCISES = ROOT / "solutions", ROOT / "exercises"

# One mistake each: (file, the line to find in the solution, what to put instead).
MISTAKES = [
    ("ch01_machine.py", "return (ec_svc64 << 26) | (1 << 25) | (imm16 & 0xFFFF)",
     "return (ec_svc64 << 26) | (imm16 & 0xFFFF)"),
    ("ch02_trap_and_emulate.py", "    vcpu.skip(exit)\n    return f\"{'read' if access.is_read", "    return f\"{'read' if access.is_read"),
    ("ch03_stage2.py", " or not value >> 10 & 1:", ":"),
    ("ch01_machine.py", "    cbnz    x0, next_digit", "    cbz     x0, print_them\n    b       next_digit\nprint_them:"),
]


def make_class(folder: Path, students: int) -> list[Path]:
    """`students` submission folders: a fifth untouched, a fifth with one mistake, the rest solved."""
    submissions = []
    for i in range(students):
        student = folder / f"student{i:02d}"
        kind = i % 5
        shutil.copytree(EXERCISES if kind == 1 else SOLUTIONS, student, ignore=shutil.ignore_patterns("__pycache__"))
        if kind == 2:
            name, old, new = MISTAKES[(i // 5) % len(MISTAKES)]
            text = (student / name).read_text()
            assert old in text, (name, old)
            (student / name).write_text(text.replace(old, new, 1))
        submissions.append(student)
    return submissions


def grade_seconds(checkout: Path, submissions: list[Path], jobs: int) -> float:
    """Wall-clock seconds of one `vlab grade` run of `checkout` over the class (its rows are checked)."""
    python = checkout / ".venv" / "bin" / "python"
    command = [str(python if python.exists() else sys.executable), "-m", "vlab", "grade", *map(str, submissions),
               "--jobs", str(jobs)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=checkout)
    seconds = time.perf_counter() - start
    rows = [line for line in done.stdout.splitlines() if re.match(r"student\d\d ", line)]
    if done.returncode != 0 or len(rows) != len(submissions):
        raise SystemExit(f"{checkout}: vlab grade failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--compare", type=Path, metavar="CHECKOUT", help="another checkout's grader to time too")
    parser.add_argument("--rounds", type=int, default=2, help="with --compare: runs of each, in turn")
    args = parser.parse_args()
    checkouts = [ROOT] + ([args.compare.resolve()] if args.compare else [])
    times: dict[Path, list[float]] = {c: [] for c in checkouts}
    with tempfile.TemporaryDirectory(prefix="vlab-bench-grading-") as tmp:
        submissions = make_class(Path(tmp), args.students)
        for _ in range(args.rounds if args.compare else 1):
            for checkout in checkouts:
                times[checkout].append(grade_seconds(checkout, submissions, args.jobs) / args.students)
    for checkout, per in times.items():
        print(f"{checkout}: vlab grade, {args.students} submissions, --jobs {args.jobs}: "
              f"{statistics.median(per):.2f} s per submission (runs: {', '.join(f'{t:.2f}' for t in per)})")
    if args.compare:
        ratio = statistics.median(times[ROOT]) / statistics.median(times[checkouts[1]])
        print(f"this grader / the other: {ratio:.2f} (issue #18's target: at most 1.5)")


if __name__ == "__main__":
    main()
