"""Guests for experiments on a shared host: each counts its own progress in its RAM.

A scheduler's promise is about guests making progress, so these guests count theirs where the
hypervisor -- and a notebook -- can read it afterwards (`progress(vm)`), in guest memory, as the
guest itself sees it:

    spinner()        computes forever: +1 every SPIN_ROUND instructions
    sleeper(period)  works a little, then sleeps in WFI until its timer fires `period` ticks later
                     (with HCR_EL2.TWI the vCPU gives its physical CPU back while it sleeps)
    crasher(after)   spins, then executes an undefined instruction with no vector table to take it
    dirtier(...)     touches `resident` pages once, then writes one of its first `wws` pages every
                     `every` instructions, round and round (a writable working set, for migration)
    phased(...)      does a fixed amount of work every period and sleeps the rest, the amount
                     changing phase by phase (a load that changes over time, for balancing)

Every vCPU a guest starts (PSCI CPU_ON with `vcpus` > 1) counts in its own word.
"""

from __future__ import annotations

from vlab.asm import Program, assemble
from vlab.guests import GIC_TIMER_ON
from vlab.machine.board import RAM_BASE

PROGRESS = RAM_BASE + 0xF000  # vCPU n's counter: the 64-bit word at PROGRESS + 8 * n
SPIN_ROUND = 1_000  # instructions per count of a spinner (the loop below is 4 instructions)


def _program(body: str, vcpus: int) -> Program:
    """`body` on every vCPU: the boot vCPU starts the others with PSCI CPU_ON, each with x19 = its counter."""
    return assemble(f"""    mov x20, #1
start_others:
    cmp x20, #{vcpus}
    b.ge run
    ldr x0, =0xc4000003
    mov x1, x20
    adr x2, secondary
    mov x3, x20
    hvc #0
    add x20, x20, #1
    b start_others
secondary:
    mov x20, x0
    b counter
run:
    mov x20, #0
counter:
    ldr x19, ={PROGRESS:#x}
    add x19, x19, x20, lsl #3
{body}""")


def spinner(vcpus: int = 1) -> Program:
    """Computes forever, counting one every SPIN_ROUND instructions."""
    return _program(f"""forever:
    ldr x1, ={SPIN_ROUND // 4}
spin:
    add x2, x2, #1
    eor x3, x3, x2
    subs x1, x1, #1
    b.ne spin
    ldr x4, [x19]
    add x4, x4, #1
    str x4, [x19]
    b forever
""", vcpus)


def sleeper(period: int, work: int = 2_000, vcpus: int = 1) -> Program:
    """Does `work` instructions of work, then sleeps until `period` ticks after it started; counts rounds."""
    # The timer's interrupt, through the GIC, wakes WFI; masked, it needs no handler and is never
    # acknowledged: reprogramming the timer lowers its level again.
    return _program(f"""    msr daifset, #2
{GIC_TIMER_ON}forever:
    mrs x5, cntvct_el0
    ldr x6, ={period}
    add x5, x5, x6
    msr cntv_cval_el0, x5        // wake at the start of the next period
    mov x6, #1
    msr cntv_ctl_el0, x6
    ldr x1, ={max(work // 3, 1)}
work:
    add x2, x2, #1
    subs x1, x1, #1
    b.ne work
    ldr x4, [x19]
    add x4, x4, #1
    str x4, [x19]
sleep:
    wfi
    mrs x6, cntv_ctl_el0
    tbz x6, #2, sleep            // ISTATUS: sleep again until the timer has fired
    b forever
""", vcpus)


def crasher(after: int = 100_000) -> Program:
    """Spins `after` instructions, counting, then executes an undefined instruction."""
    return _program(f"""    ldr x1, ={max(after // 4, 1)}
spin:
    add x2, x2, #1
    eor x3, x3, x2
    subs x1, x1, #1
    b.ne spin
    mov x4, #1
    str x4, [x19]
    udf #0
""", 1)


BUFFER = RAM_BASE + 0x2_0000  # the dirtier's pages: BUFFER + 4096 * i


def dirtier(resident: int, wws: int, every: int) -> Program:
    """Touches `resident` pages of BUFFER once (the memory it has), then writes a word of its first `wws`
    pages in turn, one every `every` instructions (at least 12), forever; counts its writes."""
    if not 1 <= wws <= resident or every < 12:
        raise ValueError("a dirtier writes 1..resident pages again and again, at most one every 12 instructions")
    return _program(f"""    ldr x21, ={BUFFER:#x}
    ldr x1, ={resident}
    mov x23, x21
touch:
    str x1, [x23]
    add x23, x23, #4096
    subs x1, x1, #1
    b.ne touch
    mov x22, #0                  // the next page of the working set to write
forever:
    ldr x1, ={(every - 11) // 2}
delay:
    subs x1, x1, #1
    b.ne delay
    ldr x4, [x19]
    add x4, x4, #1
    str x4, [x19]
    add x23, x21, x22, lsl #12
    str x4, [x23]                // one word of page x22: the page is dirty
    add x22, x22, #1
    cmp x22, #{wws}
    csel x22, xzr, x22, hs
    b forever
""", 1)


def phased(work: list[int], period: int, phase: int, resident: int = 1) -> Program:
    """Touches `resident` pages of BUFFER (the memory it has), then every `period` ticks does `work[i]`
    loops of work (2 instructions each) and sleeps until the next period, i = (counter // phase) %
    len(work): a CPU load that changes every `phase` ticks. A period whose work ends after the next
    has begun counts as late (the word after its counter) and the next starts at once: the guest
    wanted more CPU than it got."""
    table = "\n".join(f"    .quad {max(w, 1)}" for w in work)
    # As the sleeper's: the timer's interrupt, through the GIC, wakes WFI; masked, it needs no handler.
    return _program(f"""    msr daifset, #2
{GIC_TIMER_ON}    ldr x23, ={BUFFER:#x}
    ldr x1, ={max(resident, 1)}
touch:
    str x1, [x23]
    add x23, x23, #4096
    subs x1, x1, #1
    b.ne touch
    adr x21, work_table
    mrs x25, cntvct_el0          // when the current period began
forever:
    mrs x5, cntvct_el0
    ldr x6, ={phase}
    udiv x6, x5, x6
    mov x7, #{len(work)}
    udiv x8, x6, x7
    msub x6, x8, x7, x6          // x6 = the phase we are in
    ldr x1, [x21, x6, lsl #3]
work:
    subs x1, x1, #1
    b.ne work
    ldr x4, [x19]
    add x4, x4, #1
    str x4, [x19]
    ldr x6, ={period}
    add x25, x25, x6             // the next period
    mrs x5, cntvct_el0
    cmp x5, x25
    b.lo sleep
    ldr x4, [x19, #8]            // late: the work overran its period
    add x4, x4, #1
    str x4, [x19, #8]
    mov x25, x5
    b forever
sleep:
    msr cntv_cval_el0, x25
    mov x6, #1
    msr cntv_ctl_el0, x6
wait:
    wfi
    mrs x6, cntv_ctl_el0
    tbz x6, #2, wait             // ISTATUS: sleep again until the timer has fired
    msr cntv_ctl_el0, xzr        // off until the next sleep, and its interrupt taken and completed
    ldr x9, =0x08010000          // (IRQs stay masked): none waits while the work runs
    ldr w6, [x9, #0xc]           // GICC_IAR
    str w6, [x9, #0x10]          // GICC_EOIR
    b forever
    .balign 8
work_table:
{table}
""", 1)


def progress(vm, vcpu: int = 0) -> int:
    """How far vCPU `vcpu` of `vm` has counted, read from its RAM."""
    return int.from_bytes(vm.read_memory(PROGRESS + 8 * vcpu, 8), "little")


def late(vm) -> int:
    """How many of a phased guest's periods overran, read from its RAM."""
    return int.from_bytes(vm.read_memory(PROGRESS + 8, 8), "little")
