"""What an exit costs in vlab, measured: a loop doing one operation N times, minus the same loop
with a NOP in its place, divided by N. Used by benchmarks/traps.py and the chapter's notebook.

These are microseconds of an emulator calling Python -- not comparable, except in shape,
with the hardware cycle counts published for real hypervisors (vlab.data.published).
"""

from __future__ import annotations

import time

from vlab.arch.hcr import HCR
from vlab.asm import Program, assemble
from vlab.guests import GIC_TIMER_ON
from vlab.hyp.vm import VM
from vlab.machine.board import RunResult, StopReason
from vlab.machine.loader import image_from_program

OFF = "    ldr x0, =0x84000008\n    hvc #0\n"
# name: (the operation, the trap controls under which it exits)
OPERATIONS = {
    "MRS SCTLR_EL1 (TRVM)": ("    mrs x5, sctlr_el1\n", HCR.TRVM),
    "HVC PSCI_VERSION": ("    ldr x0, =0x84000000\n    hvc #0\n", HCR(0)),
    # The timer's interrupt wakes the WFI through the (virtual) GIC; the guest acknowledges it
    # (GICV_IAR), quiets its timer and completes it (GICV_EOIR), as a timer driver does (Linux
    # masks the timer in its handler), so that the next tick can wake it again. Completed with
    # the timer still firing, the level-sensitive PPI would at once come back: a second interrupt.
    "WFI + timer wake-up (TWI)": ("    mov x6, #1\n    msr cntv_tval_el0, x6\n    msr cntv_ctl_el0, x6\n    wfi\n"
                                  "    ldr w5, [x10, #0xc]\n    msr cntv_ctl_el0, xzr\n    str w5, [x10, #0x10]\n",
                                  HCR.TWI),
    "MMIO read of UARTFR": ("    ldr w5, [x9, #0x18]\n", HCR(0)),
}


def loop_program(body: str, iterations: int) -> Program:
    """`body` run `iterations` times (IRQs masked, the GIC on, x9 = the UART, x10 = the GIC's CPU
    interface), then, at `done`, power off."""
    return assemble(f"    msr daifset, #2\n{GIC_TIMER_ON}    ldr x9, =0x09000000\n    ldr x10, =0x08010000\n"
                    f"    ldr x1, ={iterations}\nloop:\n{body}    subs x1, x1, #1\n    b.ne loop\ndone:\n{OFF}")


def time_to_power_off(machine) -> tuple[float, RunResult]:
    """Run a board or a VM until its guest powers off: wall-clock seconds and the result.

    RuntimeError when the guest stops any other way (a measurement of a broken run is no measurement).
    """
    start = time.perf_counter()
    result = machine.run(max_insns=2**62, timeout_s=600)
    elapsed = time.perf_counter() - start
    if result.reason is not StopReason.POWERED_OFF:
        raise RuntimeError(f"the measuring guest did not power off: {result.message}")
    return elapsed, result


def run_seconds(program: Program, traps: HCR = HCR(0), **vm_options) -> float:
    """Wall-clock seconds for a fresh VM (options as VM's) to run `program` to power-off."""
    return time_to_power_off(VM.from_image(image_from_program(program), traps=traps, **vm_options))[0]


def microseconds_per_exit(body: str, traps: HCR, iterations: int = 2_000) -> float:
    """The cost of one exit of the kind `body` causes under `traps`, in microseconds."""
    baseline = run_seconds(loop_program("    nop\n", iterations))
    return (run_seconds(loop_program(body, iterations), traps) - baseline) / iterations * 1e6


def interrupt_loop_program(iterations: int, armed: bool = True) -> Program:
    """A guest taking the virtual timer's interrupt `iterations` times: arm the timer, sleep in
    WFI, and in the IRQ handler acknowledge (GICC_IAR), quiet the timer and complete (GICC_EOIR).
    `armed=False`: the same loop, its timer never enabled and no WFI -- the baseline to subtract."""
    arm = "    msr cntv_ctl_el0, x7\n    msr daifclr, #2\nsleep:\n    wfi\n    cbz x5, sleep\n    msr daifset, #2\n" \
        if armed else "    msr cntv_ctl_el0, xzr\n    mov x5, #1\n"
    return assemble(f"""    adr x0, vectors
    msr vbar_el1, x0
{GIC_TIMER_ON}
    ldr x9, =0x08010000
    ldr x1, ={iterations}
    mov x7, #1
loop:
    mov x5, #0
    mov x6, #10
    msr cntv_tval_el0, x6
{arm}    subs x1, x1, #1
    b.ne loop
done:
{OFF}
    .balign 0x800
vectors:
    b .
    .balign 0x200
    b .
    .balign 0x80
    ldr w8, [x9, #0xc]
    msr cntv_ctl_el0, xzr
    str w8, [x9, #0x10]
    mov x5, #1
    eret
""")


def microseconds_per_virtual_interrupt(iterations: int = 2_000, gic_cpu_interface: str = "virtual") -> float:
    """In a VM: from the virtual timer firing to the guest's EOI, in microseconds -- the physical
    interrupt's exit, the list register, the guest's vector, IAR and EOIR (those two without exits,
    unless `gic_cpu_interface="emulated"`: then an exit each, as on a chip without a virtual GIC)."""
    options = {"gic_cpu_interface": gic_cpu_interface}
    baseline = run_seconds(interrupt_loop_program(iterations, armed=False), **options)
    return (run_seconds(interrupt_loop_program(iterations), **options) - baseline) / iterations * 1e6


def world_switch_microseconds(switches: int = 2_000) -> float:
    """Host microseconds for one world switch: a core alternately loading the vCPUs of two VMs."""
    from vlab.hyp.host import Host  # the host module imports this one's users

    host = Host(pcpus=1)
    image = image_from_program(assemble("    b .\n"))
    a, b = (VM.from_image(image, host=host, stage2="contiguous", ram_size=0x10_0000) for _ in range(2))
    host.run(max_insns=1, vms=[a])  # makes the core and its memory map
    pcpu, va, vb = host.pcpus[0], a.vcpus[0], b.vcpus[0]
    start = time.perf_counter()
    for _ in range(switches // 2):
        pcpu.load(vb)
        pcpu.load(va)
    return (time.perf_counter() - start) / (switches // 2 * 2) * 1e6


def working_set_program(pages: int, rounds: int, base: int = 0x4010_0000) -> Program:
    """A guest reading one word from each of `pages` consecutive 4 KB pages, `rounds` times, then off."""
    return assemble(f"""    ldr x9, ={rounds}
round:
    ldr x1, ={base:#x}
    ldr x2, ={pages}
page:
    ldr x3, [x1]
    add x1, x1, #0x1000
    subs x2, x2, #1
    b.ne page
    subs x9, x9, #1
    b.ne round
{OFF}""")
