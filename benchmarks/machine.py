"""How fast does vlab's board run guest code, next to a bare Unicorn running the same code?

    python benchmarks/machine.py [--quick]

Two guest loops -- one that only touches registers, one that loads, adds and
stores to RAM -- each run three ways, all in this one process:

    raw            a bare Uc, the code mapped, emu_start(begin, until): no hooks, no count
    raw + count    the same with emu_start(..., count=N), which makes Unicorn count every
                   instruction (vlab needs that count: it is the budget and the guest clock)
    vlab           Board.run() on the loaded program: hooks installed, MMIO mapped,
                   watchdog thread, the whole run loop

Prints guest instructions per second for each and the ratios. Target: vlab is at
least 0.9 of raw + count, i.e. vlab adds no per-instruction cost of its own.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc  # noqa: E402
from unicorn.arm64_const import UC_ARM64_REG_X1, UC_ARM64_REG_X3  # noqa: E402

from vlab.asm import assemble  # noqa: E402
from vlab.hyp.cost import time_to_power_off  # noqa: E402
from vlab.machine.board import DEFAULT_RAM_SIZE, RAM_BASE, Board  # noqa: E402
from vlab.machine.loader import image_from_program, load  # noqa: E402

DATA = RAM_BASE + 0x10_0000
LOOPS = {
    # name: (loop body, instructions per iteration)
    "register loop": ("    add x0, x0, #1\n    eor x2, x2, x0\n    subs x1, x1, #1\n    b.ne loop\n", 4),
    "memory loop": ("    ldr x2, [x3]\n    add x2, x2, #1\n    str x2, [x3]\n    subs x1, x1, #1\n    b.ne loop\n", 5),
}


def program(body: str, iterations: int):
    """The loop, with its set-up before `loop` and PSCI SYSTEM_OFF after `done`."""
    return assemble(f"    ldr x1, ={iterations}\n    ldr x3, ={DATA:#x}\nloop:\n{body}done:\n"
                    "    ldr x0, =0x84000008\n    hvc #0\n")


def time_raw(prog, iterations: int, count: bool) -> float:
    """Seconds for a bare Uc to run the loop from `loop` to `done`."""
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.mem_map(RAM_BASE, DEFAULT_RAM_SIZE)
    uc.mem_write(RAM_BASE, prog.code)
    uc.reg_write(UC_ARM64_REG_X1, iterations)
    uc.reg_write(UC_ARM64_REG_X3, DATA)
    start = time.perf_counter()
    if count:
        uc.emu_start(prog.address_of("loop"), prog.address_of("done"), count=2**62)
    else:
        uc.emu_start(prog.address_of("loop"), prog.address_of("done"))
    return time.perf_counter() - start


def time_vlab(prog) -> tuple[float, int]:
    """Seconds for Board.run() to run the whole program, and the instructions it retired."""
    board = Board()
    load(board, image_from_program(prog))
    elapsed, result = time_to_power_off(board)
    return elapsed, result.instructions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke test, noisier)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each variant; the median is kept")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    sizes = {"register loop": 50_000_000 // scale, "memory loop": 10_000_000 // scale}
    print(f"guest instructions per second, median of {args.repeats} runs (higher is better)\n")
    print(f"{'loop':<15}{'raw':>14}{'raw + count':>14}{'vlab':>14}{'vlab / raw+count':>18}{'vlab / raw':>12}")
    worst = None
    for name, (body, per_iteration) in LOOPS.items():
        iterations = sizes[name]
        prog = program(body, iterations)
        loop_insns = iterations * per_iteration
        time_raw(prog, 1000, True)  # warm-up: the process's first translation
        raw = statistics.median(loop_insns / time_raw(prog, iterations, False) for _ in range(args.repeats))
        counted = statistics.median(loop_insns / time_raw(prog, iterations, True) for _ in range(args.repeats))
        vlab = statistics.median(n / t for t, n in (time_vlab(prog) for _ in range(args.repeats)))
        ratio = vlab / counted
        worst = ratio if worst is None else min(worst, ratio)
        print(f"{name:<15}{raw / 1e6:>12.0f} M{counted / 1e6:>12.0f} M{vlab / 1e6:>12.0f} M"
              f"{ratio:>18.2f}{vlab / raw:>12.2f}")
    print(f"\ntarget: vlab / raw+count >= 0.90 -> {'met' if worst >= 0.9 else 'NOT met'} (worst {worst:.2f})")
    print("Unicorn's count= is what the budget and the deterministic clock cost: compare 'raw' and\n"
          "'raw + count' above. vlab's own run loop, hooks and devices add nothing per instruction;\n"
          "its fixed cost per run (watchdog thread, board set-up is not timed) is amortised here.")


if __name__ == "__main__":
    main()
