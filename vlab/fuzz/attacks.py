"""Hostile guests, written by hand: each does one of the things a VM might do to harm its neighbours.

    ATTACKS["writes everywhere"].source(host_bytes)   the assembly, for a host of that much memory

Every attack runs at EL1 from RAM_BASE with a vector table that skips whatever instruction faulted,
so that a refused access does not end its mischief; when it is done it powers itself off
(except the ones whose point is not to stop). vlab.fuzz.neighbour runs them beside a victim;
vlab.fuzz.programs generates random mixtures of the same kinds of snippet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from vlab.fuzz.programs import (DESC_INDIRECT, DESC_NEXT, DESC_WRITE, EL2_EL3_REGISTERS, IPA_BITS, RAM_SIZE, VIRTQ,
                                 interrupt_storm, virtio_round)
from vlab.guests.mmu import MMU_ON
from vlab.hyp.memory import HOST_BASE
from vlab.machine.board import RAM_BASE
from vlab.machine.gic import GICC_BASE, GICD_BASE
from vlab.machine.gic_virt import GICH_BASE, GICV_BASE
from vlab.machine.uart import UART_BASE
from vlab.machine.virtio_mmio import MMIO_BASE as VIRTIO_BASE
from vlab.mmu.tables import PAGE

RAM_END = RAM_BASE + RAM_SIZE
TABLE = RAM_BASE + 0x8_0000  # where the attacks that turn their MMU on keep their level-1 table
GIB = 1 << 30
FILL = 0xDEAD_BEEF_DEAD_BEEF
FREE_RAM = RAM_BASE + 0x1_0000  # past every attack's code and literal pool: the RAM it may overwrite

START = """_start:
    adr     x0, vectors
    msr     vbar_el1, x0
    isb
"""
# The end of every attack: power off (or not), and the vector table. (The literal pool follows.)
END = """    ldr     x0, =0x84000008              // done: PSCI SYSTEM_OFF
    hvc     #0
spin:
    b       spin
    .balign 0x800
vectors:
    b       skip                         // synchronous, from EL1 with SP_EL0
    .balign 0x80
    eret                                 // IRQ: back to where it was
    .balign 0x200
    b       skip                         // synchronous, from EL1 with SP_EL1
    .balign 0x80
    eret
    .balign 0x200
skip:
    mrs     x9, elr_el1                  // skip the instruction that faulted
    add     x9, x9, #4
    msr     elr_el1, x9
    eret
"""


@dataclass(frozen=True)
class Attack:
    """One hostile guest: what it does (a line for people), its program for a host of `host_bytes`
    of memory, its vCPUs, and whether it ends by itself (else the budget stops it)."""

    name: str
    what: str
    program: Callable[[int], str]
    vcpus: int = 1
    ends: bool = True

    def source(self, host_bytes: int) -> str:
        return START + self.program(host_bytes) + END


def _table(label: str, values) -> str:
    return f"    .balign 8\n{label}:\n" + "".join(f"    .quad   {v:#x}\n" for v in values)


def loop_stores(label: str, start: str, end: str, step: str, store: str = "str x3, [x1]") -> str:
    """x1 from `start` to `end` by `step` (each =constant), `store` at each."""
    return (f"    ldr     x1, {start}\n    ldr     x2, {end}\n    ldr     x4, {step}\n"
            + f"{label}:\n    {store}\n    add     x1, x1, x4\n    cmp     x1, x2\n    b.lo    {label}\n")


def writes_everywhere(host_bytes: int) -> str:
    """Its own RAM past its code; every GiB of the 40-bit IPA space; every 16 MiB below its RAM and
    the devices' windows (its own GIC and UART, the host's GICH and GICV, virtio); every 16th host frame's address as an IPA, and every 4th
    where host memory sits in a core's physical map; beyond the IPA space."""
    beyond = [1 << IPA_BITS, (1 << IPA_BITS) + RAM_BASE, 1 << 44, 1 << 48, (1 << 64) - 8]
    windows = [base + offset for base in (GICD_BASE, GICC_BASE, GICH_BASE, GICV_BASE, UART_BASE, VIRTIO_BASE)
               for offset in (0, 8, PAGE - 8, PAGE, 2 * PAGE)]
    return (f"    ldr     x3, ={FILL:#x}\n"
            + loop_stores("own_ram", f"={FREE_RAM:#x}", f"={RAM_END:#x}", "=8")
            + loop_stores("every_gib", "=0", f"={1 << IPA_BITS:#x}", f"={GIB:#x}")
            + loop_stores("devices", "=0", f"={RAM_BASE:#x}", f"={0x100_0000:#x}")
            + loop_stores("frames", "=0", f"={host_bytes:#x}", f"={16 * PAGE:#x}")
            + loop_stores("host_map", f"={HOST_BASE:#x}", f"={HOST_BASE + host_bytes:#x}", f"={4 * PAGE:#x}")
            + _stores_at("windows", windows) + _stores_at("beyond", beyond))


def _stores_at(label: str, addresses: list[int]) -> str:
    """A store of x3 at each of `addresses`, from a table."""
    return (f"    adr     x5, {label}\n    mov     x6, #{len(addresses)}\n{label}_next:\n    ldr     x1, [x5], #8\n"
            f"    str     x3, [x1]\n    subs    x6, x6, #1\n    b.ne    {label}_next\n    b       {label}_done\n"
            + _table(label, addresses) + f"{label}_done:\n")


def aliasing_tables(host_bytes: int) -> str:
    """Level-1 entries that map every GiB of the IPA space, one that points at the table itself (so
    the tables are writable, and rewritten, through the alias), one whose table is data the guest
    wrote, 2 MiB blocks that run past the end of its RAM; stores through each; last, a table base
    that is a host address (the VM cannot run on from there)."""
    return (f"""    ldr     x10, ={TABLE:#x}
    mov     x6, #0
    ldr     x7, =0x701
blocks:
    lsl     x9, x6, #30                  // VA k GiB -> IPA k GiB, for every k
    orr     x9, x9, x7
    str     x9, [x10, x6, lsl #3]
    add     x6, x6, #1
    cmp     x6, #512
    b.lo    blocks
    ldr     x1, ={TABLE:#x}
    ldr     x2, =0x405                   // VA 0: devices
    str     x2, [x1]
    ldr     x2, ={TABLE | 0x403:#x}      // VA 3 GiB: the table, as a table: a recursive map (AF set,
                                         // which a table ignores and a page needs)
    str     x2, [x1, #24]
    ldr     x2, ={TABLE + PAGE | 3:#x}   // VA 4 GiB: a table the guest fills with what follows
    str     x2, [x1, #32]
    ldr     x11, ={TABLE + PAGE:#x}
    ldr     x2, ={RAM_BASE | 0x701:#x}   // 2 MiB blocks at its RAM: they run past its end
    str     x2, [x11]
    str     x2, [x11, #8]
    ldr     x2, ={TABLE | 0x403:#x}      // and the level-1 table once more, as a level-3 table
    str     x2, [x11, #16]
{MMU_ON}    ldr     x3, ={FILL:#x}
""" + loop_stores("through_blocks", f"={2 * GIB:#x}", f"={512 * GIB:#x}", f"={GIB + 0x1000:#x}")
            + f"""    ldr     x1, ={3 * GIB | 3 << 21 | 3 << 12:#x}   // the table itself, through the recursive map
    ldr     x2, ={HOST_BASE | 0x701:#x}
    str     x2, [x1, #40]                // a new entry: VA 5 GiB -> host memory's address, as an IPA
    ldr     x2, ={(1 << IPA_BITS) - GIB | 0x701:#x}
    str     x2, [x1, #48]                // VA 6 GiB -> the last GiB of the IPA space
    tlbi    vmalle1
    dsb     sy
    isb
    ldr     x1, ={5 * GIB:#x}
    str     x3, [x1]
    ldr     x1, ={6 * GIB:#x}
    str     x3, [x1]
""" + loop_stores("overlap", f"={4 * GIB:#x}", f"={4 * GIB + (4 << 20):#x}", f"={0x4_0000:#x}")
            + f"""    ldr     x1, ={4 * GIB + (2 << 21) + (3 << 12):#x}   // the level-1 table through the level-2 alias
    str     x3, [x1, #56]                // L1[7] = garbage
    ldr     x1, ={HOST_BASE + host_bytes // 2:#x}
    msr     ttbr0_el1, x1                // a table base at a host address: nothing is mapped now
    isb
""")


def tlbi_at_games(host_bytes: int) -> str:
    """A VA mapped, used, remapped elsewhere without a TLBI and used again (a stale entry), a world
    switch in between (Xen's sched_op yield); every TLBI form with wild operands, every ASID; AT of
    every GiB, and the EL2/EL3 forms of AT and TLBI, which are UNDEFINED at EL1."""
    tlbis = ["vmalle1", "vmalle1is", "alle1", "alle2", "alle3", "vmalls12e1"]
    with_operand = ["vae1", "vale1", "aside1", "vaae1", "vaale1", "vae1is", "ipas2e1"]
    operands = [0, (1 << 64) - 1, 0xFFFF << 48, RAM_BASE >> 12, HOST_BASE >> 12, 0x1234 << 48 | RAM_BASE >> 12]
    lines = [f"    tlbi    {op}" for op in tlbis]
    lines += [f"    ldr     x5, ={v:#x}\n    tlbi    {op}, x5" for op in with_operand for v in operands]
    ats = ["s1e1r", "s1e1w", "s1e0r", "s1e0w", "s12e1r", "s12e0w", "s1e2r", "s1e3w"]
    lines += [f"    ldr     x5, ={v:#x}\n    at      {op}, x5\n    mrs     x6, par_el1" for op in ats
              for v in (RAM_BASE, 2 * GIB, HOST_BASE, (1 << 64) - 1)]
    return (f"""    ldr     x1, ={TABLE:#x}
    ldr     x2, ={RAM_BASE | 0x701:#x}
    str     x2, [x1, #8]                 // VA 1 GiB: its RAM
    str     x2, [x1, #16]                // VA 2 GiB: its RAM again
{MMU_ON}    ldr     x3, ={FILL:#x}
    ldr     x7, ={2 * GIB + 0x4_0000:#x}
    str     x3, [x7]                     // the TLBs now hold VA 2 GiB -> its RAM
    ldr     x2, ={4 * GIB | 0x701:#x}
    str     x2, [x1, #16]                // VA 2 GiB -> 4 GiB, outside its RAM: no TLBI
    str     x3, [x7, #8]                 // through the stale entry, if the TLB kept it
    ldr     x16, =29                     // Xen sched_op yield: the victim may run now
    mov     x0, #0
    hvc     #0xea1
    str     x3, [x7, #16]                // and after a world switch
    ldr     x12, ={RAM_BASE + 0x4_0000:#x}
    mov     x8, #0
asids:
    lsl     x9, x8, #48                  // every ASID, with the same tables
    orr     x9, x9, x1
    msr     ttbr0_el1, x9
    isb
    str     x8, [x12, x8, lsl #3]        // a TLB entry for each ASID
    lsl     x9, x8, #48
    tlbi    aside1, x9
    add     x8, x8, #1
    cmp     x8, #256
    b.lo    asids
    mov     x9, x1
    msr     ttbr0_el1, x9
""" + "\n".join(lines) + "\n" + loop_stores("at_every_gib", "=0", f"={512 * GIB:#x}", f"={GIB:#x}",
                                            "at s1e1w, x1\n    mrs x6, par_el1\n    at s1e0r, x1"))


def _calls(conduit: str, rows) -> str:
    """One `conduit` call per row of register values (x0, x1, x2, x3, x16), from a table."""
    label = f"calls_{conduit.replace(' ', '').replace('#', '')}"
    rows = list(rows)
    values = [v for row in rows for v in row]
    return (f"    adr     x10, {label}_table\n    ldr     x11, ={len(rows)}\n{label}:\n"
            "    ldp     x0, x1, [x10], #16\n    ldp     x2, x3, [x10], #16\n    ldr     x16, [x10], #8\n"
            f"    {conduit}\n    subs    x11, x11, #1\n    b.ne    {label}\n    b       {label}_done\n"
            + _table(f"{label}_table", values) + f"{label}_done:\n")


WILD_POINTERS = [0, RAM_BASE - 8, RAM_BASE, RAM_END - 8, RAM_END - 1, RAM_END, UART_BASE, HOST_BASE,
                 HOST_BASE + RAM_BASE, 1 << IPA_BITS, (1 << 64) - 8, (1 << 64) - 1]
WILD_LENGTHS = [0, 1, 8, 4095, 4096, 4097, RAM_SIZE, 0xFFFF_FFFF, 1 << 32, (1 << 64) - 1]
_ENDS_THE_RUN = {0x8400_0002, 0x8400_0008, 0x8400_0009}  # CPU_OFF, SYSTEM_OFF, SYSTEM_RESET: left to the end
# CPU_SUSPEND waits for an interrupt that never comes, unless power_state has a reserved bit (bits [31:17]).
_SUSPENDS = {0x8400_0001, 0xC400_0001}


def wild_hypercalls(host_bytes: int) -> str:
    """vlab's VLAB_PUTC/VLAB_WRITE, every PSCI function (by HVC and by SMC) and Xen's xen_version,
    console_io, sched_op and vlab_domain_info, with wild pointers and lengths."""
    vlab = [(fid, p, n, 0, 0) for fid in (0x8600_0001, 0x8600_0002, 0x8600_0003) for p in WILD_POINTERS
            for n in WILD_LENGTHS if fid == 0x8600_0002 or n == 0]
    psci = [(fid, p, n, p, 0) for fid in [*range(0x8400_0000, 0x8400_0020), *range(0xC400_0000, 0xC400_0020)]
            if fid not in _ENDS_THE_RUN for p, n in ((1, RAM_BASE + 2), (2, (1 << 64) - 4), (0x100, HOST_BASE),
                                                     ((1 << 64) - 1, RAM_END))
            if fid not in _SUSPENDS or p & 0xFFFE_0000]
    xen = [(cmd, a, b, 0, number) for number in (17, 18, 48, 63, (1 << 64) - 1) for cmd in (0, 1, 6, 7, 0xFFFF_FFFF)
           for a, b in ((0, RAM_END - 4), (0xFFFF_FFFF, RAM_BASE), (0x7FF0, (1 << 64) - 8), (3, HOST_BASE))]
    xen += [(cmd, a, 0, 0, 29) for cmd in (0, 3, 0xFFFF_FFFF) for a in WILD_POINTERS]  # sched_op, not block or shutdown
    return _calls("hvc #0", vlab + psci) + _calls("smc #0", psci) + _calls("hvc #0xea1", xen)


def wild_cpu_on(host_bytes: int) -> str:
    """PSCI CPU_ON of vCPUs that exist and do not, at entries that are misaligned, outside its RAM,
    a device, the top of the address space; then vCPU 1 at a loop that writes everywhere in its
    RAM and vCPU 2 at a page of zeros (undefined instructions, with no vector table yet)."""
    rows = [(0xC400_0003, target, entry, (1 << 64) - 1, 0) for target in (0, 1, 3, 4, 8, 0x100, 0xFF_0000_0000, (1 << 64) - 1)
            for entry in (RAM_BASE + 2, RAM_BASE - 4, RAM_END, UART_BASE, HOST_BASE + RAM_BASE, (1 << 64) - 4)]
    return (_calls("hvc #0", rows) + _calls("smc #0", rows[:12]) + f"""    ldr     x0, =0xc4000003
    mov     x1, #1
    adr     x2, second
    hvc     #0
    ldr     x0, =0xc4000003
    mov     x1, #2
    ldr     x2, ={RAM_END - 0x1000:#x}       // zeros: udf #0, and VBAR_EL1 = 0 on a new vCPU
    mov     x3, #0
    hvc     #0
    ldr     x3, ={FILL:#x}
""" + loop_stores("first_writes", f"={RAM_BASE + 0x4_0000:#x}", f"={RAM_END - 0x2000:#x}", "=64")
            + "    b       finished\nsecond:\n    adr     x0, vectors\n    msr     vbar_el1, x0\n"
            f"    ldr     x3, ={FILL:#x}\n"
            + loop_stores("second_writes", f"={RAM_BASE + 0x4_0008:#x}", f"={RAM_END - 0x2000:#x}", "=64")
            + "    b       spin\nfinished:\n")


def el2_el3_writes(host_bytes: int) -> str:
    """Every EL2 and EL3 register vlab's generator knows, written with all ones and with zero, and read."""
    return "".join(f"    mov     x1, #-1\n    msr     {reg}, x1\n    msr     {reg}, xzr\n    mrs     x2, {reg}\n"
                   for reg in EL2_EL3_REGISTERS)


def exception_loop(host_bytes: int) -> str:
    """A vector table whose every entry returns to the instruction that faulted: the first fault
    repeats for ever (until vlab stops the VM)."""
    return ("    adr     x0, loop_vectors\n    msr     vbar_el1, x0\n    isb\n    udf     #1\n    b       spin\n"
            "    .balign 0x800\nloop_vectors:\n    eret\n    .balign 0x200\n    eret\n    .balign 0x200\n")


def wild_virtio(host_bytes: int) -> str:
    """Its virtio console driven wild: buffers outside its RAM, at host addresses, across its end,
    of 4 GiB; chains that loop, run off the table, or point the wrong way; rings that are no power
    of 2, outside its RAM or overlapping. Each round resets the device first."""
    good = (VIRTQ, VIRTQ + 0x1000, VIRTQ + 0x2000)
    buffer = VIRTQ + 0x3000
    rounds = [(1, 8, good, (address, length, 0, 0)) for address, length in (
        (HOST_BASE + RAM_BASE, 64), (RAM_END - 8, 64), ((1 << 64) - 8, 16), (0, 0xFFFF_FFFF), (RAM_BASE, 0xFFFF_FFFF),
        (UART_BASE, 8), (host_bytes // 2, 64))]
    rounds += [(1, 8, good, (buffer, 8, flags, following)) for flags, following in (
        (DESC_NEXT, 0), (DESC_NEXT, 0xFFFF), (DESC_WRITE, 0), (DESC_INDIRECT, 0), (7, 7))]
    rounds += [(0, 8, good, (HOST_BASE + RAM_BASE, 64, DESC_WRITE, 0)), (2, 8, good, (buffer, 8, 0, 0))]
    rounds += [(1, size, rings, (buffer, 8, 0, 0)) for size, rings in (
        (3, good), (0, good), (0xFFFF, good), (1024, (RAM_END - 0x1000, RAM_END - 8, RAM_END - 4)),
        (8, (HOST_BASE, good[1], good[2])), (8, ((1 << 64) - 16, good[1], good[2])), (8, (good[0], good[0], good[0])))]
    return "".join(virtio_round(*r) for r in rounds) + virtio_round(1, 8, good, (buffer, 8, 0, 0))


def interrupt_storm_attack(host_bytes: int) -> str:
    """Its GIC's every SGI and PPI pending on both its vCPUs, SGIs to all, its timer firing, IRQs
    masked so that they stay in its list registers; some taken and left active, some completed;
    yielding (Xen's sched_op) between rounds, so that world switches find them there."""
    storm = "".join(interrupt_storm(sgir, 2, complete) for sgir, complete in (
        (0x00FF_0001, False), (0x0100_0002, True), (0x0200_0003, False), (0xFFFF_FFFF, True)))
    return (f"    ldr     x0, =0xc4000003\n    mov     x1, #1\n    adr     x2, storm\n    hvc     #0\n"
            f"storm:\n    adr     x0, vectors\n    msr     vbar_el1, x0\n    mov     x12, #16\nround:\n{storm}"
            "    ldr     x16, =29\n    mov     x0, #0\n    hvc     #0xea1\n"  # sched_op yield
            "    subs    x12, x12, #1\n    b.ne    round\n")


def touches_every_page(host_bytes: int) -> str:
    """A store to every page of 4 MiB of RAM past its code (a demand-paged VM that big takes a
    frame for each)."""
    return loop_stores("touch", f"={FREE_RAM:#x}", f"={RAM_BASE + 4 * RAM_SIZE:#x}", f"={PAGE:#x}", "str x1, [x1]")


def spins_forever(host_bytes: int) -> str:
    """All four vCPUs spin, never stopping: only the budget ends the VM."""
    return ("    mov     x20, #1\nstart_all:\n    ldr     x0, =0xc4000003\n    mov     x1, x20\n    adr     x2, spin\n"
            "    hvc     #0\n    add     x20, x20, #1\n    cmp     x20, #4\n    b.lo    start_all\n    b       spin\n")


ATTACKS = {attack.name: attack for attack in (
    Attack("writes everywhere", "stores across its whole IPA space, to host frames' addresses and beyond",
           writes_everywhere),
    Attack("aliasing stage-1 tables", "stage-1 tables that alias and overlap, rewritten through themselves",
           aliasing_tables),
    Attack("TLBI and AT games", "stale TLB entries across a world switch, every TLBI and AT form", tlbi_at_games),
    Attack("wild hypercalls", "vlab's, PSCI and Xen's hypercalls with wild pointers and lengths", wild_hypercalls),
    Attack("wild CPU_ON", "PSCI CPU_ON at wild entries, then vCPUs writing all over its RAM", wild_cpu_on, vcpus=4),
    Attack("EL2/EL3 registers", "writes to the hypervisor's and the firmware's registers", el2_el3_writes),
    Attack("exception loop", "a vector table that returns to the faulting instruction", exception_loop),
    Attack("wild virtio", "its virtio console driven with wild rings and buffers", wild_virtio),
    Attack("interrupt storm", "every interrupt pending and active on its vCPUs, across world switches",
           interrupt_storm_attack, vcpus=2),
    Attack("spins forever", "four vCPUs that never stop", spins_forever, vcpus=4, ends=False),
    Attack("touches every page", "a store to every page of 4 MiB of RAM", touches_every_page),
)}
