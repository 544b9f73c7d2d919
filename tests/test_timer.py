"""The generic timer: a deterministic counter (one tick per retired instruction) and the virtual timer.

Register semantics from the Arm ARM (D11, "The Generic Timer"): TVAL reads
(CVAL - count)[31:0] and a write sets CVAL = count + SignExtend(TVAL); CTL has
ENABLE (bit 0), IMASK (bit 1) and the read-only ISTATUS (bit 2), which is set
when the count has reached CVAL; the interrupt asserts when ENABLE = 1,
IMASK = 0 and ISTATUS = 1. vlab's count is the number of instructions retired
before the reading instruction, plus the ticks spent waiting in WFI.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machines import run_on
from vlab.asm import assemble
from vlab.guests.mmu import MMU_ON
from vlab.machine.board import Board, StopReason
from vlab.machine.loader import image_from_program, load
from vlab.machine.timer import FREQUENCY_HZ

OFF = "    ldr x0, =0x84000008\n    hvc #0\n"
ENABLE, IMASK, ISTATUS = 1, 2, 4
IRQ_CURRENT_EL_SPX = 0x280
IRQ_LOWER_EL = 0x480


def run(source: str, max_insns: int = 1_000_000) -> tuple[dict[str, int], dict[str, int], Board]:
    board = Board()
    program = assemble(source)
    load(board, image_from_program(program))
    result = board.run(max_insns=max_insns, timeout_s=10)
    assert result.reason is StopReason.POWERED_OFF, result.message
    return result.registers, program.symbols, board


def test_counter_reads_the_number_of_instructions_retired_before_it():
    regs, _, _ = run("    nop\n" * 10 + "    mrs x20, cntvct_el0\n" + "    nop\n" * 5
                     + "    mrs x21, cntvct_el0\n    mrs x22, cntpct_el0\n" + OFF)
    assert regs["x20"] == 10
    assert regs["x21"] == 10 + 1 + 5, "the first MRS and five NOPs later"
    assert regs["x22"] == 17, "no CNTVOFF: physical and virtual counts agree"


def test_counter_in_a_loop_counts_every_iteration():
    regs, _, _ = run("""
    mov x1, #100
loop:
    subs x1, x1, #1
    b.ne loop
    mrs x20, cntvct_el0
""" + OFF)
    assert regs["x20"] == 1 + 2 * 100


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 3_000))
def test_two_runs_of_the_same_program_read_the_same_times(n):
    source = f"""
    mov x1, #{n}
loop:
    mrs x2, cntvct_el0
    add x3, x3, x2
    subs x1, x1, #1
    b.ne loop
    mrs x20, cntvct_el0
""" + OFF
    first, _, _ = run(source)
    second, _, _ = run(source)
    assert first["x3"] == second["x3"] and first["x20"] == second["x20"] == 1 + 4 * n


def test_frequency_is_62_5_mhz_like_qemu_virt():
    regs, _, _ = run("    mrs x20, cntfrq_el0\n" + OFF)
    assert regs["x20"] == FREQUENCY_HZ == 62_500_000


def test_tval_write_sets_cval_and_tval_reads_count_down():
    regs, _, _ = run("""
    mov x1, #1000
    msr cntv_tval_el0, x1           // count = 1 here: CVAL = 1001
    mrs x20, cntv_cval_el0
    nop
    mrs x21, cntv_tval_el0          // count = 4: 1001 - 4
""" + OFF)
    assert regs["x20"] == 1001
    assert regs["x21"] == 997


def test_negative_tval_puts_cval_in_the_past_and_tval_reads_32_bits():
    regs, _, _ = run("""
    mov x1, #10
    msr cntv_cval_el0, x1
    nop
    nop
    nop
    nop
    nop
    nop
    nop
    nop
    nop
    mrs x20, cntv_tval_el0          // count = 11: 10 - 11 = -1, as 32 bits
    ldr x1, =0xfffffffb
    msr cntv_tval_el0, x1           // TVAL = -5 at count 13: CVAL = 8
    mrs x21, cntv_cval_el0
""" + OFF)
    assert regs["x20"] == 0xFFFF_FFFF, "bits [63:32] of TVAL are RES0"
    assert regs["x21"] == 8


def test_istatus_rises_when_the_count_reaches_cval_and_imask_keeps_the_interrupt_back():
    regs, _, board = run(f"""
    mov x1, #20
    msr cntv_cval_el0, x1
    mov x1, #{ENABLE | IMASK}
    msr cntv_ctl_el0, x1
    mrs x20, cntv_ctl_el0           // count 4: not yet
    msr daifclr, #2                 // IRQs unmasked: only IMASK holds the interrupt back
wait:
    mrs x2, cntv_ctl_el0
    tbz x2, #2, wait
    mov x21, x2
    mrs x22, cntvct_el0
""" + OFF)
    assert regs["x20"] == ENABLE | IMASK
    assert regs["x21"] == ENABLE | IMASK | ISTATUS
    assert 20 <= regs["x22"] <= 23, "the poll loop (3 instructions) sees ISTATUS as soon as count >= CVAL"
    assert not board.exceptions_taken


def test_disabled_timer_never_reports_istatus():
    regs, _, _ = run("    mov x1, #1\n    msr cntv_cval_el0, x1\n    nop\n    nop\n    mrs x20, cntv_ctl_el0\n" + OFF)
    assert regs["x20"] == 0


VECTORS = "    .balign 0x800\nvectors:\n" + "".join(
    f"    mov x25, #{offset:#x}\n    b handler\n    .balign 0x80\n" for offset in range(0, 0x800, 0x80))
HANDLER = """
handler:
    mrs x20, cntvct_el0             // the 3rd instruction after the entry: count at entry + 2
    mrs x21, elr_el1
    mrs x22, spsr_el1
""" + OFF
ARM_AT_1000 = """
    ldr x0, =0x40100000
    mov sp, x0
    adr x0, vectors
    msr vbar_el1, x0
    mov x1, #1000
    msr cntv_cval_el0, x1
    mov x1, #1
    msr cntv_ctl_el0, x1            // enabled, not masked
"""


def test_wfi_sleeps_until_the_timer_fires_and_the_irq_enters_vbar_plus_0x280():
    regs, sym, board = run(ARM_AT_1000 + "    msr daifclr, #2\nsleep:\n    wfi\nafter:\n    b .\n" + HANDLER + VECTORS)
    assert regs["x25"] == IRQ_CURRENT_EL_SPX, "IRQ, current EL with SP_ELx"
    assert regs["x20"] == 1000 + 2, "the core slept exactly until count = CVAL"
    assert regs["x21"] == sym["after"], "ELR_EL1: the instruction after the WFI"
    assert regs["x22"] & 0x3C0 == 0x340, "SPSR_EL1: I was clear; D, A and F still masked as at reset"
    assert board.idle_ticks > 0


def test_irq_interrupts_a_busy_loop_at_the_tick_cval_names():
    regs, sym, _ = run(ARM_AT_1000 + "    msr daifclr, #2\nspin:\n    b spin\n" + HANDLER + VECTORS)
    assert regs["x25"] == IRQ_CURRENT_EL_SPX
    assert regs["x20"] == 1000 + 2, "taken before the instruction at count = CVAL executes"
    assert regs["x21"] == sym["spin"]


def test_irq_from_el0_enters_the_lower_el_vector():
    regs, sym, _ = run(ARM_AT_1000 + """
    adr x0, user
    msr elr_el1, x0
    msr spsr_el1, xzr
    eret
user:
    b user
""" + HANDLER + VECTORS)
    assert regs["x25"] == IRQ_LOWER_EL
    assert regs["x20"] == 1000 + 2
    assert regs["x22"] == 0, "SPSR_EL1: EL0t with nothing masked"


def test_masked_irq_does_not_enter_the_vector_but_wfi_still_wakes():
    regs, sym, board = run(ARM_AT_1000 + "    wfi\n    mrs x20, cntvct_el0\n" + OFF + HANDLER + VECTORS)
    assert not board.exceptions_taken, "PSTATE.I is set from reset: no IRQ is taken"
    assert regs["x20"] == 1000, "WFI woke when the interrupt became pending"


def test_wfi_with_nothing_to_wake_it_stops_idle():
    board = Board()
    load(board, image_from_program(assemble("    nop\n    wfi\n    b .\n")))
    result = board.run(max_insns=1000)
    assert result.reason is StopReason.IDLE
    assert "0x40000004" in result.message and "WFI" in result.message


def test_wfi_with_the_timer_masked_by_imask_stops_idle():
    board = Board()
    load(board, image_from_program(assemble(f"    mov x1, #{ENABLE | IMASK}\n    msr cntv_ctl_el0, x1\n    wfi\n")))
    assert board.run(max_insns=1000).reason is StopReason.IDLE


def test_el0_reads_the_counter_only_when_cntkctl_allows_it():
    source = """
    ldr x0, =0x40100000
    mov sp, x0
    adr x0, vectors
    msr vbar_el1, x0
    mov x1, #{cntkctl}
    msr cntkctl_el1, x1
    adr x0, user
    msr elr_el1, x0
    msr spsr_el1, xzr
    eret
user:
    mrs x24, cntvct_el0
    svc #0
handler:
    mrs x20, esr_el1
    mrs x21, elr_el1
""" + OFF + VECTORS
    allowed, sym, _ = run(source.format(cntkctl=2))  # EL0VCTEN
    assert allowed["x20"] >> 26 == 0x15, "the read worked; the SVC came next"
    assert allowed["x24"] == 10
    trapped, sym, _ = run(source.format(cntkctl=0))
    iss = (3 << 20) | (2 << 17) | (3 << 14) | (14 << 10) | (24 << 5) | (0 << 1) | 1  # Op0 Op2 Op1 CRn Rt CRm Dir
    assert trapped["x20"] == (0x18 << 26) | (1 << 25) | iss, "EC 0x18: a trapped MRS of CNTVCT_EL0 into x24"
    assert trapped["x21"] == sym["user"]


# --- the clock across faults: exactly the instructions retired, on the board and in every VM ---------

FETCH_FAULT = """    adr     x0, vectors
    msr     vbar_el1, x0
    mrs     x10, cntvct_el0
    ldr     x1, ={target:#x}
    blr     x1                       // retires; the fetch at the target faults
    b       .
    .balign 0x800
vectors:
    .space  0x200
    mrs     x11, cntvct_el0
    mrs     x12, elr_el1
""" + OFF


@pytest.mark.parametrize("stage2", ["board", None, "contiguous", "scattered", "demand"])
@pytest.mark.parametrize("target, why", [(0x2000_0000, "no memory there"),
                                         (0x4040_0000, "zeros (udf #0), a page nothing touched")])
def test_a_fetch_fault_after_a_branch_counts_the_branch(stage2, target, why):
    # CNTVCT reads the instructions retired before it: after x10's read, the mrs itself, the ldr and the
    # blr (the faulting fetch or the udf retires nothing). In all: 2 + 3 + 4 instructions.
    result = run_on(stage2, image_from_program(assemble(FETCH_FAULT.format(target=target))))
    assert result.reason is StopReason.POWERED_OFF, result.message
    regs = result.registers
    assert regs["x12"] == target, why
    assert regs["x10"] == 2 and regs["x11"] - regs["x10"] == 3, (regs["x10"], regs["x11"])
    assert result.instructions == 2 + 3 + 4


def test_with_the_mmu_on_a_vector_table_at_an_unmapped_address_is_found_broken_and_time_never_goes_back():
    # The kernel maps only 0x4000_0000.. (1 GiB) and points VBAR_EL1 at VA 0x8000_0000, which nothing maps:
    # its SVC enters the vector, whose fetch faults before any instruction there runs.
    result = Board()
    source = """    ldr     x1, =0x40010000
    ldr     x2, =0x40000701
    str     x2, [x1, #8]
""" + MMU_ON + """    ldr     x0, =0x80000000
    msr     vbar_el1, x0
    svc     #1
"""
    load(result, image_from_program(assemble(source)))
    outcome = result.run(max_insns=10_000, timeout_s=10)
    assert outcome.reason is StopReason.EXCEPTION
    assert "vector table" in outcome.message and "broken" in outcome.message, outcome.message
    assert outcome.exception.syndrome.ec == 0x21 and outcome.exception.far == 0x8000_0200
    assert outcome.instructions == 16, "every instruction up to the SVC retired, none since"
