"""What does trap-and-emulate cost in vlab? Compute-bound speed in a VM, and microseconds per exit.

    python benchmarks/traps.py [--quick]

(1) A compute-bound guest (a register loop, no exits but the final power-off) on the bare
    board and inside a VM with every trap control set. Target: VM / bare >= 0.9 -- innocuous
    instructions run natively, with no per-instruction cost for being virtualized.
(2) Microseconds per exit for a trapped MRS (TRVM), an HVC, a WFI woken by the virtual timer
    (TWI) and an MMIO access (a stage-2 data abort): a loop doing the operation N times, minus
    the same loop with a NOP in its place, divided by N. Target: <= 10 us each.
Published cycle costs of real hypervisors are printed beside them as context -- a different
thing (hardware world switches, not an emulator calling Python), cited, not measured here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vlab.asm import assemble  # noqa: E402
from vlab.data.published import HYPERCALL  # noqa: E402
from vlab.hyp import SUPPORTED_TRAPS, VM  # noqa: E402
from vlab.hyp.cost import OFF, OPERATIONS, loop_program, run_seconds  # noqa: E402
from vlab.machine.board import Board, StopReason  # noqa: E402
from vlab.machine.loader import image_from_program, load  # noqa: E402

COMPUTE = "    add x0, x0, #1\n    eor x2, x2, x0\n    subs x1, x1, #1\n    b.ne loop\n"


def seconds(machine) -> float:
    start = time.perf_counter()
    result = machine.run(max_insns=2**62, timeout_s=600)
    elapsed = time.perf_counter() - start
    if result.reason is not StopReason.POWERED_OFF:
        raise SystemExit(f"the benchmark guest did not power off: {result.message}")
    return elapsed


def bare(prog) -> Board:
    board = Board()
    load(board, image_from_program(prog))
    return board


def median_seconds(make, repeats: int) -> float:
    return statistics.median(seconds(make()) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke test, noisier)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each variant; the median is kept")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats

    iterations = 2_000_000 if args.quick else 20_000_000
    prog = assemble(f"    ldr x1, ={iterations}\nloop:\n{COMPUTE}{OFF}")
    t_bare = median_seconds(lambda: bare(prog), repeats)
    t_vm = median_seconds(lambda: VM.from_image(image_from_program(prog), traps=SUPPORTED_TRAPS), repeats)
    insns = 4 * iterations
    print(f"(1) compute-bound guest, {insns:,} instructions, median of {repeats}")
    print(f"    bare board      {insns / t_bare / 1e6:8.1f} M insn/s")
    print(f"    VM, all traps   {insns / t_vm / 1e6:8.1f} M insn/s")
    print(f"    ratio VM / bare {t_bare / t_vm:8.2f}   (target >= 0.9)")

    n = 2_000 if args.quick else 20_000
    print(f"\n(2) microseconds per exit ({n:,} exits each, minus the same loop with a NOP; median of {repeats})")
    baseline = statistics.median(run_seconds(loop_program("    nop\n", n)) for _ in range(repeats))
    for name, (body, traps) in OPERATIONS.items():
        prog = loop_program(body, n)
        t = statistics.median(run_seconds(prog, traps) for _ in range(repeats))
        us = (t - baseline) / n * 1e6
        print(f"    {name:<28} {us:6.1f} us   {'ok' if us <= 10 else 'ABOVE TARGET'} (target <= 10 us)")
    print("\n    for context, published figures (hardware, not vlab):")
    for cost in HYPERCALL:
        print(f"      {cost.label()}")


if __name__ == "__main__":
    main()
