"""How fast do the fuzzers go? Fuzz programs per second, measured in one run.

    python benchmarks/fuzz.py [--quick]

(1) The equivalence fuzzer (vlab.fuzz.check): each generated program on the bare board and in
    a VM. Programs per second.
(2) The neighbour fuzzer (vlab.fuzz.neighbour): generated hostile programs, neighbour.GROUP to a
    host beside the victim, every rule checked. Programs per second, and where a program's time
    goes: assembling it, making the host and its VMs, running them, checking what must hold.
    Beside it, its rate over (1)'s: one host, one victim and one host-buffer comparison serve
    GROUP programs, where (1) makes a board and a VM for each.
The suite runs 2,000 of each; `make fuzz N=100000` and `make fuzz-neighbour N=100000` run more.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vlab.fuzz import check, neighbour  # noqa: E402
from vlab.fuzz.programs import program  # noqa: E402


def equivalence(programs: int) -> float:
    began = time.perf_counter()
    check.fuzz(range(programs))
    return programs / (time.perf_counter() - began)


def neighbours(programs: int) -> tuple[float, dict[str, float]]:
    """Programs per second, and seconds per program in each step."""
    neighbour.alone(neighbour.SECRETS[0])
    steps = dict.fromkeys(("assemble", "make the host", "run", "check"), 0.0)
    began = time.perf_counter()
    for first in range(0, programs, neighbour.GROUP):
        seeds = range(first, min(first + neighbour.GROUP, programs))
        mark = time.perf_counter()
        images = [program(s, neighbour.HOSTILE_SNIPPETS, hostile=True).image() for s in seeds]
        steps["assemble"] += time.perf_counter() - mark
        mark = time.perf_counter()
        built = neighbour.build(neighbour.Setup.of(first, len(images)), images)
        steps["make the host"] += time.perf_counter() - mark
        mark = time.perf_counter()
        neighbour.run(built)
        steps["run"] += time.perf_counter() - mark
        mark = time.perf_counter()
        neighbour.verify(built, neighbour.SECRETS[0])
        steps["check"] += time.perf_counter() - mark
    rate = programs / (time.perf_counter() - began)
    return rate, {step: seconds / programs for step, seconds in steps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer programs (a noisier figure)")
    programs = 96 if parser.parse_args().quick else 480
    bare = equivalence(programs)
    print(f"(1) Fuzz programs per second, bare against a VM: {bare:.1f} ({programs} programs)")
    rate, steps = neighbours(programs)
    print(f"(2) Fuzz programs per second, hostile beside a victim: {rate:.1f} ({programs} programs, "
          f"{neighbour.GROUP} to a host), {rate / bare:.2f}x the rate of (1)")
    print("    per program: " + ", ".join(f"{step} {seconds * 1000:.1f} ms" for step, seconds in steps.items())
          + " (the read check, one host in %d run again, is not included)" % neighbour.READ_CHECK_EVERY)


if __name__ == "__main__":
    main()
