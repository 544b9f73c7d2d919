"""What does trap-and-emulate cost in vlab? Each figure is a ratio to a floor measured in the same run.

    python benchmarks/traps.py [--quick]

(1) A compute-bound guest (a register loop; no exit but the final power-off) on the bare board
    and inside a VM with every trap control set. Target: VM / bare >= 0.95 -- innocuous
    instructions run natively, with no per-instruction cost for being virtualized.
(2) Microseconds per exit: a loop doing the operation N times, minus the same loop with a NOP in
    its place, divided by N; beside it, the floor: the same loop on a bare Unicorn whose hook does
    the minimum work in place -- for MRS, write Xt and return; for HVC, read x0 and write x0; for
    MMIO, a device callback returning a value. A WFI always leaves Unicorn (emu_start returns), so
    its floor is Unicorn stopping at the WFI and starting again after it (the GIC accesses device
    callbacks). In vlab the wake-up goes through the GIC, with IRQs masked: the WFI's exit (unless
    the timer's interrupt is already pending, when the WFI does not wait), the timer's physical
    interrupt (an exit), the list register, the guest's GICV_IAR, its timer quieted (as a timer
    driver does before completing: else the level-sensitive PPI fires again at once) and EOIR --
    more than one exit's work. Targets: MRS and HVC <= 2x their floor, MMIO and the WFI wake-up <= 3x.
    Beside MMIO, the least an exit that is reported can cost: the floor's callback reading the PC
    and the instruction word and keeping one record, nothing more.
(3) A stage-2 fault served by demand paging, in microseconds (target <= 60 us).
(4) A TLB fill answered by vlab (its TLB model, or a nested walk) against a fill hook that only
    sets the physical address, on a working set larger than Unicorn's own TLB, so that every
    access is a fill: the run reading it R times minus the run reading it once, per extra fill
    (so that neither side counts what it does once per run -- a VM's run makes its physical CPU
    first). Target <= 3x.
(5) Microseconds per virtual interrupt delivered in a VM, from the virtual timer firing to the
    guest's GICV_EOIR (the physical interrupt's exit, the list register, the guest's vector, its
    IAR and EOIR without exits), minus the same loop with its timer off; beside it, the floor: a
    bare Unicorn stopping at the WFI and started again with its IRQ line raised (HCR_EL2.VI), so
    that the core enters the vector itself; the handler's IAR (which lowers the line) and EOIR
    served by a device callback.
Published cycle costs of real hypervisors are printed beside them as context -- a different
thing (hardware world switches, not an emulator calling Python), cited, not measured here.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from unicorn import (UC_ARCH_ARM64, UC_HOOK_INSN, UC_HOOK_INTR, UC_HOOK_TLB_FILL, UC_MODE_ARM,  # noqa: E402
                     UC_TLB_VIRTUAL, Uc)
from unicorn import arm64_const as A  # noqa: E402
from unicorn.unicorn_py3.unicorn import uclib  # noqa: E402 - the C library, as vlab.machine.cpu uses it

from vlab.arch.hcr import HCR  # noqa: E402
from vlab.asm import Program, assemble  # noqa: E402
from vlab.data.published import HYPERCALL  # noqa: E402
from vlab.hyp import SUPPORTED_TRAPS, VM  # noqa: E402
from vlab.data.published import INTERRUPT_CONTROLLER  # noqa: E402
from vlab.hyp.cost import (OFF, OPERATIONS, interrupt_loop_program, loop_program, microseconds_per_virtual_interrupt,  # noqa: E402
                           run_seconds, time_to_power_off, working_set_program)
from vlab.machine.gic import GICC_BASE, GICC_SIZE, GICD_BASE, GICD_SIZE  # noqa: E402
from vlab.machine.irq_line import HCR_IMO, HCR_RW, HCR_VI  # noqa: E402
from vlab.machine.board import RAM_BASE, Board  # noqa: E402
from vlab.machine.loader import image_from_program, load  # noqa: E402
from vlab.machine.uart import UART_BASE  # noqa: E402

COMPUTE = "    add x0, x0, #1\n    eor x2, x2, x0\n    subs x1, x1, #1\n    b.ne loop\n"
NOP = "    nop\n"
NEVER = 0xFFFF_FFFF_FFFF_FFFC  # the stop address: one inside the guest's code makes every emu_start 3x dearer
SYSTEM_OFF = 0x8400_0008
GICC_IAR_TIMER = 27
HCR_EL2 = (1, 1, 3, 4, 0)  # (CRn, CRm, op0, op1, op2), as Unicorn's CP_REG takes them
_RAW = ctypes.CDLL(uclib._name)  # Unicorn's C library, its functions called without argument conversion
TARGETS = {"MRS SCTLR_EL1 (TRVM)": 2, "HVC PSCI_VERSION": 2, "WFI + timer wake-up (TWI)": 3, "MMIO read of UARTFR": 3}


def seconds(machine) -> float:
    return time_to_power_off(machine)[0]


def bare(prog) -> Board:
    board = Board()
    load(board, image_from_program(prog))
    return board


def _floor_engine(prog: Program, tlb_fill: bool = False, on_iar=None, uart_read=None) -> Uc:
    """A bare Uc with the program at RAM_BASE, HVC enabled, and the minimum hooks, each in place;
    `on_iar(uc)` is called at each read of GICC_IAR, `uart_read` (a device read callback) serves
    the UART's reads in place of one returning a value."""
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.reg_write(A.UC_ARM64_REG_CP_REG, (1, 1, 3, 6, 0, 1 << 8 | 1 << 10 | 1))  # SCR_EL3.HCE: HVC works
    uc.reg_write(A.UC_ARM64_REG_CP_REG, (*HCR_EL2, HCR_RW))  # EL1 is AArch64
    if tlb_fill:
        uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
    uc.mem_map(RAM_BASE, 0x80_0000)
    uc.mem_write(RAM_BASE, prog.code)

    def on_mrs(uc, reg, _cp, _user) -> bool:
        uc.reg_write(reg, 0x30D0_0800)
        return True

    def on_msr(uc, _reg, _cp, _user) -> bool:
        return True

    def on_hvc(uc, _intno, _user) -> None:
        if uc.reg_read(A.UC_ARM64_REG_X0) == SYSTEM_OFF:
            uc.emu_stop()
        else:
            uc.reg_write(A.UC_ARM64_REG_X0, 0x1_0001)

    uc.hook_add(UC_HOOK_INSN, on_mrs, None, 1, 0, A.UC_ARM64_INS_MRS)
    uc.hook_add(UC_HOOK_INSN, on_msr, None, 1, 0, A.UC_ARM64_INS_MSR)
    uc.hook_add(UC_HOOK_INTR, on_hvc)
    uc.mmio_map(UART_BASE, 0x1000, uart_read or (lambda *_: 0x90), None, lambda *_: None, None)
    uc.mmio_map(GICD_BASE, GICD_SIZE, lambda *_: 0, None, lambda *_: None, None)

    def gicc_read(uc, offset: int, _size: int, _user) -> int:
        if offset != 0xC:
            return 0
        if on_iar is not None:
            on_iar(uc)
        return GICC_IAR_TIMER  # GICC_IAR: the virtual timer's PPI
    uc.mmio_map(GICC_BASE, GICC_SIZE, gicc_read, None, lambda *_: None, None)
    return uc


def unicorn_floor_seconds(prog: Program, _traps: HCR = HCR(0)) -> float:
    """Seconds for a bare Uc to run `prog` to its power-off, every exit served in place -- except a
    WFI, after which emu_start returns and is started again."""
    uc = _floor_engine(prog)
    pc, done = RAM_BASE, prog.address_of("done")
    start = time.perf_counter()
    while pc < done:
        uc.emu_start(pc, NEVER, count=2**62)
        pc = uc.reg_read(A.UC_ARM64_REG_PC)
    return time.perf_counter() - start


def least_logged_exit_seconds(prog: Program, _traps: HCR = HCR(0)) -> float:
    """As unicorn_floor_seconds, the UART's reads served by the least a device exit that is
    reported can do: read the PC (ELR) and the instruction (for the ISS; here from the program's
    own bytes, the MMU off: no engine call), keep one record -- through the C library directly,
    as vlab's core reads registers (no emulation, no handler, no log line made)."""
    pc, code, records = ctypes.c_uint64(), prog.code, []
    pc_ref = ctypes.byref(pc)

    def uart_read(uc, offset: int, size: int, _user) -> int:
        _RAW.uc_reg_read(uc._uch, A.UC_ARM64_REG_PC, pc_ref)
        at = pc.value - RAM_BASE
        records.append((pc.value, int.from_bytes(code[at:at + 4], "little"), offset, size))
        return 0x90

    uc = _floor_engine(prog, uart_read=uart_read)
    start = time.perf_counter()
    uc.emu_start(RAM_BASE, NEVER, count=2**62)
    return time.perf_counter() - start


def interrupt_floor_seconds(prog: Program) -> float:
    """Seconds for a bare Uc to run interrupt_loop_program(...) to its power-off: at each WFI it
    stops, and starts again with its IRQ line up, the core entering the vector itself -- the least
    an emulator can do to deliver an interrupt; the handler's GIC accesses are device callbacks,
    its GICC_IAR lowering the line."""
    def line(uc: Uc, up: bool) -> None:
        uc.reg_write(A.UC_ARM64_REG_CP_REG, (*HCR_EL2, HCR_RW | (HCR_IMO | HCR_VI if up else 0)))

    uc = _floor_engine(prog, on_iar=lambda uc: line(uc, False))  # acknowledged: the line drops
    uc.reg_write(A.UC_ARM64_REG_VBAR_EL1, prog.address_of("vectors"))  # the floor's MSR hook performs no write
    done, pc = prog.address_of("done"), RAM_BASE
    start = time.perf_counter()
    while True:
        uc.emu_start(pc, NEVER, count=2**62)
        pc = uc.reg_read(A.UC_ARM64_REG_PC)
        if pc >= done:
            break  # powered off
        line(uc, True)  # stopped after a WFI: the timer's interrupt
    return time.perf_counter() - start


def microseconds_per_interrupt_floor(iterations: int) -> float:
    baseline = interrupt_floor_seconds(interrupt_loop_program(iterations, armed=False))
    return (interrupt_floor_seconds(interrupt_loop_program(iterations)) - baseline) / iterations * 1e6


def microseconds_per_exit(run, body: str, traps: HCR, n: int, repeats: int) -> float:
    """Median over `repeats` of (loop with `body` - loop with a NOP) / n, each pair run back to
    back so that a change in the machine's load hits both sides alike."""
    with_op, with_nop = loop_program(body, n), loop_program(NOP, n)
    return statistics.median((run(with_op, traps) - run(with_nop, HCR(0))) / n * 1e6 for _ in range(repeats))


def demand_fault_microseconds(pages: int, repeats: int) -> float:
    """A guest touching `pages` pages once: demand-paged VM minus a VM with all its RAM, per page."""
    prog = working_set_program(pages, 1)
    ram = 0x10_0000 + pages * 0x1000

    def run(layout: str) -> float:
        return seconds(VM.from_image(image_from_program(prog), stage2=layout, ram_size=ram))
    return statistics.median((run("demand") - run("contiguous")) / pages * 1e6 for _ in range(repeats))


def fill_microseconds(pages: int, rounds: int, repeats: int) -> tuple[float, float, int]:
    """Microseconds per TLB fill, vlab (a VM with stage 2) and the floor (a fill hook that only sets
    the address), on `pages` pages read `rounds` times, minus the same read once: (vlab, floor,
    fills per run of `rounds`)."""
    ram = 0x10_0000 + pages * 0x1000

    def floor(prog: Program) -> tuple[float, int]:
        uc = _floor_engine(prog, tlb_fill=True)
        fills = [0]

        def fill(_uc, vaddr, _access, entry, _user) -> bool:
            fills[0] += 1
            entry.paddr, entry.perms = vaddr & ~0x3FF, 7
            return True
        uc.hook_add(UC_HOOK_TLB_FILL, fill)
        start = time.perf_counter()
        uc.emu_start(RAM_BASE, NEVER, count=2**62)
        return time.perf_counter() - start, fills[0]

    def vlab(prog: Program) -> tuple[float, int]:
        vm = VM.from_image(image_from_program(prog), stage2="contiguous", ram_size=ram)
        elapsed = seconds(vm)
        tlb = vm.host.pcpus[0].tlb  # the physical CPU's TLB model
        return elapsed, tlb.hits + tlb.misses  # each one a miss of Unicorn's TLB, answered by vlab

    repeated, once = working_set_program(pages, rounds), working_set_program(pages, 1)

    def per_fill(run) -> float:
        (t_repeated, fills), (t_once, fills_once) = run(repeated), run(once)
        return (t_repeated - t_once) / (fills - fills_once) * 1e6

    pairs = [(per_fill(vlab), per_fill(floor)) for _ in range(repeats)]
    fills = vlab(repeated)[1]
    return statistics.median(v for v, _ in pairs), statistics.median(f for _, f in pairs), fills


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
    print(f"    ratio VM / bare {t_bare / t_vm:8.2f}   (target >= 0.95)")

    n = 2_000 if args.quick else 20_000
    print(f"\n(2) microseconds per exit ({n:,} exits each, minus the same loop with a NOP; median of {repeats})")
    print(f"    {'':<28} {'vlab':>8} {'floor':>9} {'vlab/floor':>11}")
    for name, (body, traps) in OPERATIONS.items():
        us = microseconds_per_exit(run_seconds, body, traps, n, repeats)
        floor = microseconds_per_exit(unicorn_floor_seconds, body, traps, n, repeats)
        target = TARGETS[name]
        verdict = "ok" if us <= target * floor else f"ABOVE TARGET (<= {target}x)"
        print(f"    {name:<28} {us:6.1f} us {floor:6.1f} us {us / floor:10.1f}x   {verdict}")
        if name.startswith("MMIO"):
            least = microseconds_per_exit(least_logged_exit_seconds, body, traps, n, repeats)
            print(f"    {'  least a logged exit does':<28} {least:6.1f} us {floor:6.1f} us {least / floor:10.1f}x   "
                  "(PC and instruction read, one record kept; nothing decoded, emulated or logged)")

    pages = 200 if args.quick else 1000
    fault = demand_fault_microseconds(pages, repeats)
    print(f"\n(3) stage-2 fault served by demand paging: {fault:6.1f} us per fault "
          f"({pages} pages; target <= 60 us){'' if fault <= 60 else '   ABOVE TARGET'}")

    vlab_fill, floor_fill, fills = fill_microseconds(1024, 2 if args.quick else 10, repeats)
    ratio = vlab_fill / floor_fill
    print(f"\n(4) TLB fill, 1,024 pages ({fills:,} fills a run): vlab {vlab_fill:5.1f} us, fill hook that only sets "
          f"the address {floor_fill:5.1f} us: {ratio:4.1f}x (target <= 3x){'' if ratio <= 3 else '   ABOVE TARGET'}")

    n = 1_000 if args.quick else 10_000
    pairs = [(microseconds_per_virtual_interrupt(n), microseconds_per_interrupt_floor(n)) for _ in range(repeats)]
    irq, irq_floor = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
    print(f"\n(5) virtual interrupt, timer firing to the guest's EOI ({n:,} each, minus the loop with its timer off): "
          f"vlab {irq:6.1f} us, floor {irq_floor:5.1f} us: {irq / irq_floor:4.1f}x")
    print("\n    for context, published figures (hardware, not vlab):")
    for cost in (*HYPERCALL, *INTERRUPT_CONTROLLER):
        print(f"      {cost.label()}")


if __name__ == "__main__":
    main()
