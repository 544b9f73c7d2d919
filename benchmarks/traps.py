"""What does trap-and-emulate cost in vlab? Compute-bound speed in a VM, and microseconds per exit.

    python benchmarks/traps.py [--quick]

(1) A compute-bound guest (a register loop, no exits but the final power-off) on the bare
    board and inside a VM with every trap control set. Target: VM / bare >= 0.9 -- innocuous
    instructions run natively, with no per-instruction cost for being virtualized.
(2) Microseconds per exit for a trapped MRS (TRVM), an HVC, a WFI woken by the virtual timer
    (TWI) and an MMIO access (a stage-2 data abort): a loop doing the operation N times, minus
    the same loop with a NOP in its place, divided by N. Target: <= 10 us each.
    Beside each, Unicorn's floor: the same loop on a bare Uc whose hooks only stop the
    emulator, which then resumes after the instruction -- what any hypervisor written on
    Unicorn in Python pays before doing any work. (The WFI loop exits three times per turn:
    the two timer writes stop the run so that its slice ends at the new deadline, then the WFI.)
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

from unicorn import UC_ARCH_ARM64, UC_HOOK_INSN, UC_HOOK_INTR, UC_HOOK_MEM_INVALID, UC_MODE_ARM, Uc, UcError  # noqa: E402
from unicorn import arm64_const as A  # noqa: E402

from vlab.arch.hcr import HCR  # noqa: E402
from vlab.asm import Program, assemble  # noqa: E402
from vlab.data.published import HYPERCALL  # noqa: E402
from vlab.hyp import SUPPORTED_TRAPS, VM  # noqa: E402
from vlab.hyp.cost import OFF, OPERATIONS, loop_program, run_seconds, time_to_power_off  # noqa: E402
from vlab.machine.board import RAM_BASE, Board  # noqa: E402
from vlab.machine.loader import image_from_program, load  # noqa: E402

COMPUTE = "    add x0, x0, #1\n    eor x2, x2, x0\n    subs x1, x1, #1\n    b.ne loop\n"
NOP = "    nop\n"
NEVER = 0xFFFF_FFFF_FFFF_FFFC  # the stop address: one inside the guest's code makes every emu_start 3x dearer


def seconds(machine) -> float:
    return time_to_power_off(machine)[0]


def bare(prog) -> Board:
    board = Board()
    load(board, image_from_program(prog))
    return board


def unicorn_floor_seconds(prog: Program, _traps: HCR = HCR(0)) -> float:
    """Seconds for a bare Uc to run `prog` up to `done`, each MRS/MSR, exception and fault
    costing only a stop of the emulator and a restart after the instruction."""
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.reg_write(A.UC_ARM64_REG_CP_REG, (1, 1, 3, 6, 0, 1 << 8 | 1 << 10 | 1))  # SCR_EL3.HCE: HVC works
    uc.mem_map(RAM_BASE, 0x10_0000)
    uc.mem_write(RAM_BASE, prog.code)
    resume: list[int | None] = [None]

    def on_sysreg(uc, _reg, _cp, _user) -> bool:
        resume[0] = uc.reg_read(A.UC_ARM64_REG_PC) + 4
        uc.emu_stop()
        return True  # skipped, as a trapped access is

    uc.hook_add(UC_HOOK_INTR, lambda uc, _intno, _user: uc.emu_stop())
    uc.hook_add(UC_HOOK_MEM_INVALID, lambda *_: False)  # the UART is not mapped: every access faults
    for insn in (A.UC_ARM64_INS_MRS, A.UC_ARM64_INS_MSR):
        uc.hook_add(UC_HOOK_INSN, on_sysreg, None, 1, 0, insn)
    pc, done = RAM_BASE, prog.address_of("done")
    start = time.perf_counter()
    while pc < done:  # the loop lies below `done`
        resume[0] = None
        try:
            uc.emu_start(pc, NEVER, count=2**62)
            pc = resume[0] if resume[0] is not None else uc.reg_read(A.UC_ARM64_REG_PC)
        except UcError:  # the faulting access: resume after it
            pc = uc.reg_read(A.UC_ARM64_REG_PC) + 4
    return time.perf_counter() - start


def microseconds_per_exit(run, body: str, traps: HCR, n: int, repeats: int) -> float:
    """Median over `repeats` of (loop with `body` - loop with a NOP) / n, each pair run back to
    back so that a change in the machine's load hits both sides alike."""
    with_op, with_nop = loop_program(body, n), loop_program(NOP, n)
    return statistics.median((run(with_op, traps) - run(with_nop, HCR(0))) / n * 1e6 for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke test, noisier)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each variant; the median is kept")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats

    iterations = 2_000_000 if args.quick else 20_000_000
    prog = assemble(f"    ldr x1, ={iterations}\nloop:\n{COMPUTE}{OFF}")
    # Alternating runs, so that other load on the machine falls on both sides alike.
    pairs = [(seconds(bare(prog)), seconds(VM.from_image(image_from_program(prog), traps=SUPPORTED_TRAPS)))
             for _ in range(repeats)]
    t_bare, t_vm = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
    insns = 4 * iterations
    print(f"(1) compute-bound guest, {insns:,} instructions, median of {repeats}")
    print(f"    bare board      {insns / t_bare / 1e6:8.1f} M insn/s")
    print(f"    VM, all traps   {insns / t_vm / 1e6:8.1f} M insn/s")
    print(f"    ratio VM / bare {t_bare / t_vm:8.2f}   (target >= 0.9)")

    n = 2_000 if args.quick else 20_000
    print(f"\n(2) microseconds per exit ({n:,} exits each, minus the same loop with a NOP; median of {repeats})")
    print(f"    {'':<28} {'vlab':>8} {'Unicorn floor':>14} {'vlab/floor':>11}")
    for name, (body, traps) in OPERATIONS.items():
        us = microseconds_per_exit(run_seconds, body, traps, n, repeats)
        floor = microseconds_per_exit(unicorn_floor_seconds, body, traps, n, repeats)
        verdict = "ok" if us <= 10 else "ABOVE TARGET (<= 10 us)"
        print(f"    {name:<28} {us:6.1f} us {floor:9.1f} us {us / floor:10.1f}x   {verdict}")
    print("\n    for context, published figures (hardware, not vlab):")
    for cost in HYPERCALL:
        print(f"      {cost.label()}")


if __name__ == "__main__":
    main()
