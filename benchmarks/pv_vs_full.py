"""Full virtualization against paravirtualization: exits and host time for the same work, in one run.

    python benchmarks/pv_vs_full.py [--quick]

(1) The same kernel (vlab/guests/para_or_full.S) built both ways, in a VM configured like KVM's
    guests: exits, instructions and host time (best of N runs), and the ratio para / full. The
    full build on the bare board is the floor: what the work costs with no hypervisor at all.
    Target: the paravirtual build within 3x of the bare board's time, and at least 5x faster
    than the full build.
(2) A KB of text through the emulated PL011 (two exits a byte), Xen's console_io and the virtio
    console, as the batch grows: exits and host microseconds per KB, the difference of two runs
    (with and without the text, best of 3 each). The PL011 is measured on less text than the
    others: its cost per KB is large and steady, theirs small beside a run's fixed cost.
    Target: virtio with batches of 8 lines at least 50x cheaper per KB than the PL011.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vlab.guests.para_or_full import FULL, PARAVIRT  # noqa: E402
from vlab.hyp.para_vs_full import exits_per_kb, run_in_vm, run_on_board  # noqa: E402

PARA_OVER_BARE_TARGET, FULL_OVER_PARA_TARGET, UART_OVER_VIRTIO_TARGET = 3.0, 5.0, 50.0


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED TARGET"


def builds(repeat: int) -> None:
    print(f"(1) the same kernel, both builds, in a VM with KVM's trap controls (best of {repeat})")
    bare = min((run_on_board(FULL) for _ in range(repeat)), key=lambda r: r.seconds)
    full, para = run_in_vm(FULL, repeat=repeat), run_in_vm(PARAVIRT, repeat=repeat)
    assert full.printed == para.printed == bare.printed, "the builds must print the same"
    print(f"    {'':<26} {'exits':>7} {'instructions':>13} {'host ms':>9}")
    for name, run in (("full build, bare board", bare), ("full build, in a VM", full), ("paravirtual, in a VM", para)):
        print(f"    {name:<26} {run.total_exits:>7,} {run.result.instructions:>13,} {run.seconds * 1e3:>9.2f}")
    over_bare, speedup = para.seconds / bare.seconds, full.seconds / para.seconds
    print(f"    paravirtual / bare board   {over_bare:6.2f}x   (target <= {PARA_OVER_BARE_TARGET:g}x)  "
          f"{verdict(over_bare <= PARA_OVER_BARE_TARGET)}")
    print(f"    full / paravirtual         {speedup:6.2f}x   (target >= {FULL_OVER_PARA_TARGET:g}x)  "
          f"{verdict(speedup >= FULL_OVER_PARA_TARGET)}")
    print(f"    exits: {full.total_exits:,} against {para.total_exits:,} "
          f"({full.total_exits / para.total_exits:,.0f}x fewer paravirtualized)")


def consoles(uart_kb: int, kb: int, batches: tuple[int, ...]) -> None:
    print(f"\n(2) text through each console ({uart_kb} KB through the PL011, {kb} KB through the others): "
          "exits and host us per KB")
    uart = exits_per_kb("pl011", 1, uart_kb, repeat=3)
    print(f"    {'console':<22} {'batch':>5} {'exits/KB':>9} {'us/KB':>10}")
    print(f"    {'PL011 (emulated)':<22} {'-':>5} {uart.exits_per_kb:>9,.1f} {uart.microseconds_per_kb:>10,.0f}")
    virtio8 = None
    for batch in batches:
        for name, price in (("console_io", exits_per_kb("console_io", batch, kb, repeat=3)),
                            ("virtio", exits_per_kb("virtio", batch, kb, repeat=3)),
                            ("virtio, device polls", exits_per_kb("virtio", batch, kb, polls=True, repeat=3))):
            print(f"    {name:<22} {batch:>5} {price.exits_per_kb:>9,.2f} {price.microseconds_per_kb:>10,.0f}")
            if name == "virtio" and batch == 8:
                virtio8 = price
    if virtio8 is not None:
        ratio = uart.microseconds_per_kb / max(virtio8.microseconds_per_kb, 1.0)  # at least 1 us: noise floor
        print(f"    PL011 / virtio (batches of 8), host time per KB: {ratio:,.0f}x   "
              f"(target >= {UART_OVER_VIRTIO_TARGET:g}x)  {verdict(ratio >= UART_OVER_VIRTIO_TARGET)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and less text")
    args = parser.parse_args()
    builds(repeat=2 if args.quick else 5)
    consoles(uart_kb=2 if args.quick else 4, kb=16 if args.quick else 64,
             batches=(1, 8) if args.quick else (1, 2, 8, 32, 64))


if __name__ == "__main__":
    main()
