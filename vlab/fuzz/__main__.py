"""`python -m vlab.fuzz [N] [--seed S] [--jobs J] [--neighbour]`: check N generated programs, print the counts.

The seeds are S, S+1, ... (S random unless given, and printed: a finding reproduces with
`vlab.fuzz.check.check(seed)`, or with --neighbour `vlab.fuzz.neighbour.check(seed)` for the
host seed it names). --neighbour runs hostile programs beside a victim on shared hosts
(vlab.fuzz.neighbour) instead of bare against VMs. Exit status 1 if anything was found.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from vlab.fuzz import check, neighbour

CHUNK = 96  # programs per task (whole hosts of neighbour.GROUP) (whole hosts of neighbour.GROUP): progress is printed after each


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlab.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", nargs="?", type=int, default=2_000, help="how many programs (default 2000)")
    parser.add_argument("--seed", type=int, default=None, help="the first seed (default: a random one)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--neighbour", action="store_true",
                        help="hostile programs beside a victim on one host: isolation (vlab.fuzz.neighbour)")
    args = parser.parse_args(argv)
    fuzz, total = (neighbour.fuzz, neighbour.NeighbourTally()) if args.neighbour else (check.fuzz, check.Tally())
    first = random.randrange(2**32) if args.seed is None else args.seed
    what = "hostile programs beside a victim" if args.neighbour else "programs"
    print(f"fuzzing {args.n:,} {what}, seeds {first}..{first + args.n - 1}, {args.jobs} job(s)", flush=True)
    chunks = [range(start, min(start + CHUNK, first + args.n)) for start in range(first, first + args.n, CHUNK)]
    began = time.monotonic()
    with ProcessPoolExecutor(args.jobs) as pool:
        for tally in pool.map(fuzz, chunks):
            total.merge(tally)
            rate = total.programs / (time.monotonic() - began)
            print(f"  {total.programs:,}/{args.n:,} programs, {len(total.findings)} findings, "
                  f"{rate:.1f} programs/s", flush=True)
    print(total.report())
    print(f"Fuzz programs per second: {total.programs / (time.monotonic() - began):.1f} "
          f"({args.jobs} job(s){', beside a victim' if args.neighbour else ''})")
    return 1 if total.findings else 0


if __name__ == "__main__":
    sys.exit(main())
