"""What each structure's exits cost in vlab, measured in microseconds on this machine, now.

As vlab.hyp.cost measures an exit: a loop doing the operation N times, minus the same loop with a
NOP in its place, divided by N -- with the guest booted under the structure (vlab.hyp.hypervisors),
so that the structure's saves and restores on the physical CPU are in the time. "none" is vlab's
own hypervisor booted the same way (one core, contiguous stage 2): the floor the structures add to.

    microseconds_per_exit("type2", "hypercall")
    path_for("type1", "emulated MMIO")            # the Path that exit takes (None: no exit)

Microseconds of an emulator calling Python: compare them with each other, not with the hardware
cycles of vlab.hyp.cycle_model.
"""

from __future__ import annotations

import statistics
import time

from vlab.arch.hcr import HCR
from vlab.hyp.assign import SECOND_UART, passthrough, second_uart
from vlab.hyp.cost import OPERATIONS, loop_program
from vlab.hyp.host import Host
from vlab.hyp.hypervisors import STRUCTURES, boot, run
from vlab.hyp.structure import Path
from vlab.hyp.vm import VM
from vlab.machine.board import StopReason
from vlab.machine.loader import image_from_program

RAM = 0x10_0000
# exit type -> (the operation, the trap controls under which it exits)
EXIT_TYPES = {
    "hypercall": OPERATIONS["HVC PSCI_VERSION"],
    "sysreg trap": OPERATIONS["MRS SCTLR_EL1 (TRVM)"],
    "emulated MMIO": OPERATIONS["MMIO read of UARTFR"],
    "passthrough access": (f"    movz x10, #{SECOND_UART >> 16:#x}, lsl #16\n    ldr w5, [x10, #0x18]\n", HCR(0)),
}
HYPS = ("none", *STRUCTURES)


def path_for(hyp: str, exit_type: str, in_kernel: bool = False) -> Path | None:
    """The path an exit of `exit_type` takes under structure `hyp` (None: no exit, or no structure)."""
    from vlab.hyp import type1, type2, vhe

    if exit_type not in EXIT_TYPES:
        raise ValueError(f"no exit type {exit_type!r}: choose one of {', '.join(EXIT_TYPES)}")
    if exit_type == "passthrough access" or hyp == "none":
        return None
    if hyp == "type1":
        return type1.DOM0_PATH if exit_type == "emulated MMIO" else type1.HYPERVISOR_PATH
    module = type2 if hyp == "type2" else vhe
    if exit_type == "emulated MMIO":
        return module.IN_KERNEL_DEVICE if in_kernel else module.VMM_PATH
    return module.KERNEL_PATH


def _machine(hyp: str, body: str, iterations: int, traps: HCR, in_kernel: bool) -> VM:
    image = image_from_program(loop_program(body, iterations))
    if hyp == "none":
        vm = VM.from_image(image, host=Host(memory=RAM + 0x80_0000), traps=traps, stage2="contiguous", ram_size=RAM)
    else:
        vm, _ = boot(image, hyp, traps=traps, ram_size=RAM,
                     **({"in_kernel": ("uart",)} if in_kernel and hyp != "type1" else {}))
    passthrough(second_uart("link"), vm)
    return vm


def run_seconds(hyp: str, body: str, iterations: int, traps: HCR = HCR(0), in_kernel: bool = False) -> float:
    """Wall-clock seconds for the loop of `body` to run to its power-off under `hyp` (booting not counted)."""
    vm = _machine(hyp, body, iterations, traps, in_kernel)
    start = time.perf_counter()
    result = run(vm, max_insns=2**62, timeout_s=600)
    elapsed = time.perf_counter() - start
    if result.reason is not StopReason.POWERED_OFF:
        raise RuntimeError(f"the measuring guest did not power off under {hyp}: {result.message}")
    return elapsed


def microseconds_per_exit(hyp: str, exit_type: str, iterations: int = 2_000, in_kernel: bool = False,
                          repeats: int = 1) -> float:
    """One exit of `exit_type` under `hyp` ("none" or a structure), in microseconds, measured now:
    the median of `repeats` pairs of runs, each pair back to back so that load falls on both."""
    body, traps = EXIT_TYPES[exit_type]
    pairs = [(run_seconds(hyp, body, iterations, traps, in_kernel), run_seconds(hyp, "    nop\n", iterations, HCR(0),
                                                                                in_kernel)) for _ in range(repeats)]
    return statistics.median((op - nop) / iterations * 1e6 for op, nop in pairs)
