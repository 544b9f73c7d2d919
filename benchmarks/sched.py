"""What does sharing the CPU cost in vlab? World switches and scheduling, measured in one run.

    python benchmarks/sched.py [--quick]

(1) Host microseconds per world switch: a physical CPU alternately loading two vCPUs (save the
    outgoing context, restore the incoming one, switch stage 2, flush Unicorn's untagged TLB).
    Target <= 10 us.
(2) Slices per second for 64 vCPUs (16 VMs of 4 vCPUs, each spinning on a register loop) on 4
    physical CPUs under Xen's credit scheduler, with a short slice so that it runs often.
(3) The hypervisor's overhead as a fraction of the time guests run: the wall time of (2) against
    the time the same instructions take on the bare board, measured just before.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vlab.asm import assemble  # noqa: E402
from vlab.hyp import VM, Host  # noqa: E402
from vlab.hyp.cost import OFF, time_to_power_off, world_switch_microseconds  # noqa: E402
from vlab.machine.board import Board  # noqa: E402
from vlab.machine.loader import image_from_program, load  # noqa: E402
from vlab.sched.registry import make_policy  # noqa: E402

SPIN = "    ldr x1, ={n}\nloop:\n    add x0, x0, #1\n    subs x1, x1, #1\n    b.ne loop\n"


def crowded_host(slice_ticks: int, iterations: int) -> tuple[float, int, int]:
    """16 VMs x 4 vCPUs spinning on 4 cores: (wall seconds, scheduling decisions, guest instructions)."""
    smp = assemble(f"""    mov x20, #1
start:
    ldr x0, =0xc4000003
    mov x1, x20
    adr x2, worker
    hvc #0
    add x20, x20, #1
    cmp x20, #4
    b.ne start
worker:
{SPIN.format(n=iterations)}    ldr x0, =0x84000002
    hvc #0
""")
    host = Host(pcpus=4, scheduler=make_policy("credit", pcpus=4, slice_ticks=slice_ticks))
    image = image_from_program(smp)
    for _ in range(16):
        VM.from_image(image, host=host, stage2="contiguous", ram_size=0x10_0000, vcpus=4)
    start = time.perf_counter()
    result = host.run(max_insns=2**62, timeout_s=3600)
    elapsed = time.perf_counter() - start
    decisions = len(host.trace.segments)
    return elapsed, decisions, sum(vm.instructions for vm in result.vms)


def bare_seconds(instructions: int) -> float:
    """Wall seconds the bare board takes for `instructions` of the same register loop."""
    board = Board()
    load(board, image_from_program(assemble(SPIN.format(n=instructions // 3) + OFF)))
    return time_to_power_off(board)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke test, noisier)")
    args = parser.parse_args()

    switches = 2_000 if args.quick else 20_000
    us = world_switch_microseconds(switches)
    print(f"(1) world switch: {us:5.1f} us per switch ({switches:,} switches; target <= 10 us)"
          f"{'' if us <= 10 else '   ABOVE TARGET'}")

    iterations = 200_000 if args.quick else 2_000_000
    slice_ticks = 20_000
    elapsed, segments, instructions = crowded_host(slice_ticks, iterations)
    print(f"\n(2) 64 vCPUs on 4 physical CPUs, slice {slice_ticks:,} ticks: {segments:,} stretches of the schedule "
          f"in {elapsed:.2f} s = {segments / elapsed:,.0f} slices per second ({instructions:,} guest instructions)")
    guest = bare_seconds(instructions)
    print(f"\n(3) the same instructions on the bare board: {guest:.2f} s; the hypervisor's share of (2): "
          f"{(elapsed - guest) / elapsed:.1%} of the wall time")


if __name__ == "__main__":
    main()
