"""How fast does vlab migrate a running guest? Pre-copy rounds and pages per second, measured in one run.

    python benchmarks/migration.py [--quick]

(1) Pre-copy of a dirtier (vlab.guests.workloads) that touches RESIDENT pages and keeps rewriting
    half of them, over a 1 Gbit/s link, for ROUNDS rounds: each round write-protects the guest's
    stage 2, copies the pages to the destination and runs the guest for as long as they take on
    the link (faulting once on each page it dirties). Rounds per second and pages per second of
    host time.
(2) Post-copy of the same guest: pages per second, pulled by the destination's stage-2 faults or
    pushed by the source while the guest runs there.
(3) What migrating costs the guest's own progress: the wall time of (1) against the time the same
    guest takes, unmigrated, to run as many instructions as it ran during (1), measured just before.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vlab.guests import workloads  # noqa: E402
from vlab.hyp import VM, Host  # noqa: E402
from vlab.hyp.link import Link  # noqa: E402
from vlab.hyp.migration import postcopy, precopy, vm_instructions  # noqa: E402
from vlab.machine.loader import image_from_program  # noqa: E402

RAM = 0x100_0000  # 16 MiB of guest RAM
LINK = Link(1000, 0.05)
WARM_UP = 200_000


def dirtier(resident: int) -> VM:
    """A dirtier that has touched `resident` pages and rewrites half of them, a page every 200
    instructions, on a host of its own, warmed up."""
    program = workloads.dirtier(resident, resident // 2, 200)
    vm = VM.from_image(image_from_program(program), host=Host(), stage2="demand", ram_size=RAM)
    vm.run(max_insns=WARM_UP)
    return vm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller guest, fewer rounds (a smoke test, noisier)")
    args = parser.parse_args()
    resident, rounds = (256, 10) if args.quick else (2048, 30)

    vm = dirtier(resident)
    start = time.perf_counter()
    m = precopy(vm, Host(), LINK, rule=lambda stats: stats.round >= rounds)
    elapsed = time.perf_counter() - start
    ran = vm_instructions(m.destination_vm) - WARM_UP
    print(f"(1) pre-copy of {resident:,} pages over {LINK}: {m.rounds} rounds, {m.pages_sent:,} pages in "
          f"{elapsed:.2f} s = {m.rounds / elapsed:,.1f} rounds per second, {m.pages_sent / elapsed:,.0f} pages per "
          f"second ({ran:,} guest instructions meanwhile)")

    vm = dirtier(resident)
    start = time.perf_counter()
    p = postcopy(vm, Host(), LINK)
    post = time.perf_counter() - start
    print(f"(2) post-copy of the same guest: {p.pages_sent:,} pages ({p.faults:,} pulled by faults) in {post:.2f} s = "
          f"{p.pages_sent / post:,.0f} pages per second")

    alone = dirtier(resident)
    start = time.perf_counter()
    alone.run(max_insns=ran)
    unmigrated = time.perf_counter() - start
    print(f"(3) the same {ran:,} instructions unmigrated: {unmigrated:.2f} s; migrating took "
          f"{elapsed / unmigrated:,.1f}x as long")


if __name__ == "__main__":
    main()
