"""What does stage 2 cost in vlab? vlab's walker alone, then a memory-walking guest, bare and in a VM.

    python benchmarks/stage2.py [--quick]

(0) The walker and the TLB model alone (vlab.mmu, no guest): nested walks per second and
    references per walk for n guest levels under m stage-2 levels, n, m in 1..4, against
    (n+1)(m+1)-1; TLB-model lookups per second.

(1) For working sets of 16, 64, 256 and 1024 pages, a guest reads one word of every page,
    round after round: instructions per second on the bare board (Unicorn's own MMU off) and
    in a VM whose RAM is scattered over the host by stage 2 (vlab walks on every TLB miss).
    Target: ratio >= 0.8 while the working set fits Unicorn's TLB; beyond it, every page
    touched misses and pays a walk in Python -- the curve shows the TLB's reach.
(2) TLB fills per second (Unicorn's misses, answered from vlab's TLB model or by a walk), and
    microseconds per stage-2 fault (demand paging a page in).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vlab.hyp import VM  # noqa: E402
from vlab.hyp.cost import time_to_power_off, working_set_program  # noqa: E402
from vlab.machine.board import Board  # noqa: E402
from vlab.machine.loader import image_from_program, load  # noqa: E402
from vlab.mmu.tlb import TLB, Entry  # noqa: E402
from vlab.viz.walk_view import NestedSetup  # noqa: E402

RAM = 0x80_0000  # working sets start at 0x4010_0000: 1024 pages fit


def timed(machine) -> tuple[float, int]:
    elapsed, result = time_to_power_off(machine)
    return elapsed, result.instructions


def walker(walks: int) -> None:
    """(0): the nested walk and the TLB model, measured without any guest."""
    print("(0) nested walk   n\\m " + "".join(f"{m:>22}" for m in range(1, 5)) + "   (walks/s, references: measured = formula)")
    for n in range(1, 5):
        cells = []
        for m in range(1, 5):
            setup = NestedSetup(n, m, pages=16)
            vas = [0x5000 + i * 0x1000 for i in range(16)]
            start = time.perf_counter()
            for i in range(walks):
                t = setup.translate(vas[i % 16])
            rate = walks / (time.perf_counter() - start)
            cells.append(f"{rate:>10,.0f}/s {len(t.references):>2} = {setup.expected_references:<2}")
        print(f"{'':>17}{n:>5} " + "".join(f"{c:>22}" for c in cells))
    tlb, lookups = TLB(capacity=64), walks * 20
    start = time.perf_counter()
    for i in range(lookups):
        va = (i % 48) << 12  # a working set that fits: hits after the first round
        if tlb.lookup(1, 1, va) is None:
            tlb.insert(1, 1, va, Entry(i, i, 7, 7, False))
    print(f"    TLB model: {lookups / (time.perf_counter() - start):,.0f} lookups/s "
          f"(hit rate {tlb.hit_rate:.3f})\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer accesses (a smoke test, noisier)")
    args = parser.parse_args()
    accesses = 200_000 if args.quick else 2_000_000
    walker(500 if args.quick else 5_000)
    print("(1) working set   bare M insn/s   VM (scattered) M insn/s   ratio   vlab-TLB lookups   walks")
    for pages in (16, 64, 256, 1024):
        image = image_from_program(working_set_program(pages, max(1, accesses // pages)))
        bare = Board(ram_size=RAM)
        load(bare, image)
        t_bare, insns = timed(bare)
        vm = VM.from_image(image, stage2="scattered", ram_size=RAM)
        t_vm, _ = timed(vm)
        tlb, walks = vm.host.pcpus[0].tlb, vm.vcpus[0].walks
        lookups = tlb.hits + tlb.misses  # each one a miss of Unicorn's own TLB, answered by vlab
        print(f"    {pages:>5} pages   {insns / t_bare / 1e6:13.1f}   {insns / t_vm / 1e6:23.1f}   "
              f"{t_bare / t_vm:5.2f}   {lookups:>16,}   {walks:>5,}  ({lookups / t_vm:,.0f} TLB fills/s)")
    pages = 1024
    demand = VM.from_image(image_from_program(working_set_program(pages, 1)), stage2="demand", ram_size=RAM)
    contiguous = VM.from_image(image_from_program(working_set_program(pages, 1)), stage2="contiguous", ram_size=RAM)
    t_demand, _ = timed(demand)
    t_mapped, _ = timed(contiguous)
    faults = demand.memory.demand_faults
    print(f"\n(2) stage-2 faults: {faults} pages demand-paged, "
          f"{(t_demand - t_mapped) / faults * 1e6:.1f} us per fault (run with faults minus the same run mapped)")


if __name__ == "__main__":
    main()
