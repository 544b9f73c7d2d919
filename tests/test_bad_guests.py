"""Guests that misbehave get a guest-level outcome and a readable message, never a hang or a traceback.

Each case is one of the issue's "Bad input" list: malformed assembly, jumping
into nothing, garbage bytes as code, an endless loop, a write to flash (ROM), a
broken vector table, no vector table at all.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlab.asm import assemble
from vlab.errors import AssemblyError
from vlab.machine.board import RAM_BASE, Board, StopReason
from vlab.machine.loader import image_from_program, load

EC_UNKNOWN, EC_IABT_CURRENT, EC_DABT_CURRENT, EC_SVC64 = 0x00, 0x21, 0x25, 0x15


def run(source: str, max_insns: int = 100_000, timeout_s: float = 10):
    board = Board()
    load(board, image_from_program(assemble(source)))
    return board.run(max_insns=max_insns, timeout_s=timeout_s)


@pytest.mark.parametrize("source, says", [
    ("mov x0, #1\n    frobnicate x1, x2\n", "line 2"),
    ("    b nowhere\n", "nowhere"),
    ("    add x0, x1\n", "line 1"),
    ("    .inst 0xd503201f\n", ".long"),
])
def test_malformed_assembly_is_an_assembly_error_naming_the_line(source, says):
    with pytest.raises(AssemblyError) as error:
        assemble(source)
    assert says in str(error.value)


def test_jump_into_unmapped_memory_stops_with_an_instruction_abort_naming_the_address():
    result = run("    ldr x1, =0x20000000\n    br x1\n")
    assert result.reason is StopReason.EXCEPTION
    assert result.exception.syndrome.ec == EC_IABT_CURRENT
    assert result.exception.far == 0x2000_0000
    assert "0x20000000" in result.message and "no memory" in result.message
    assert "no vector table" in result.message


def test_running_off_the_end_of_ram_is_an_instruction_abort_at_the_end():
    ram_end = RAM_BASE + Board().ram.size
    result = run(f"    ldr x1, ={ram_end - 4:#x}\n    ldr w2, =0xd503201f\n    str w2, [x1]\n    br x1\n")
    assert result.reason is StopReason.EXCEPTION
    assert result.exception.address == ram_end


def test_endless_loop_spends_the_budget():
    result = run("spin:\n    b spin\n", max_insns=12_345)
    assert result.reason is StopReason.BUDGET
    assert result.instructions == 12_345
    assert "12,345" in result.message


def test_write_to_flash_is_a_data_abort_naming_address_and_instruction():
    result = run("    mov x1, #0x1000\n    mov w2, #7\nwrite:\n    str w2, [x1, #8]\n")
    assert result.reason is StopReason.EXCEPTION
    exc = result.exception
    assert exc.syndrome.ec == EC_DABT_CURRENT
    assert exc.syndrome.iss == (1 << 6) | 0x10, "WnR = 1, DFSC = synchronous external abort"
    assert exc.address == RAM_BASE + 8 and exc.far == 0x1008
    assert "str w2, [x1, #8]" in result.message
    assert "0x1008" in result.message and "read-only" in result.message
    assert result.pc == RAM_BASE + 8, "the store did not complete: PC stays at it"


def test_svc_without_a_vector_table_names_class_address_and_instruction():
    result = run("    nop\n    svc #3\n")
    assert result.reason is StopReason.EXCEPTION
    assert result.exception.syndrome.ec == EC_SVC64
    for part in ("SVC64", "0x40000004", "svc #3", "VBAR_EL1 = 0"):
        assert part in result.message


def test_vector_table_of_garbage_stops_at_the_vector_and_says_the_table_is_broken():
    result = run("    ldr x0, =0x40001000\n    msr vbar_el1, x0\n    svc #1\n")  # VBAR points at zeros
    assert result.reason is StopReason.EXCEPTION
    assert result.exception.syndrome.ec == EC_UNKNOWN
    assert result.exception.address == 0x4000_1200, "current EL with SP_EL1, synchronous"
    assert "vector table" in result.message and "broken" in result.message


def test_handler_that_faults_again_and_again_is_reported_as_an_exception_loop():
    result = run("""
    adr x0, vectors
    msr vbar_el1, x0
    svc #1
    .balign 0x800
vectors:
    .space 0x200
    nop
    ldr x1, =0x20000000
    ldr x1, [x1]                 // faults; the fault enters this same handler again
""", timeout_s=5)
    assert result.reason is StopReason.EXCEPTION
    assert "exception loop" in result.message
    assert "ldr x1, [x1]" in result.message
    assert result.instructions < 100, "stopped after a few rounds, not at the budget or the clock"


def test_push_with_stack_pointer_never_set_is_reported_with_a_hint():
    result = run("    str x0, [sp, #-16]!\n")
    assert result.reason is StopReason.EXCEPTION
    assert result.exception.syndrome.ec == EC_DABT_CURRENT
    assert result.exception.syndrome.iss & (1 << 6), "a store: WnR = 1"
    assert "stack pointer" in result.message


def test_a_user_program_calling_svc_in_a_loop_is_not_an_exception_loop():
    result = run("""
    ldr x0, =0x40100000
    mov sp, x0
    adr x0, vectors
    msr vbar_el1, x0
    adr x0, user
    msr elr_el1, x0
    msr spsr_el1, xzr
    eret
user:
    svc #0
    b user
    .balign 0x800
vectors:
    .space 0x400
    eret
""", max_insns=2_000)
    assert result.reason is StopReason.BUDGET


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(code=st.binary(min_size=4, max_size=64).map(lambda b: b[: len(b) // 4 * 4]))
def test_random_bytes_as_code_always_end_in_a_stop_reason_with_a_message(code):
    board = Board(ram_size=0x10_0000)
    board.write_memory(RAM_BASE, code)
    board.cpu.pc = RAM_BASE
    result = board.run(max_insns=2_000, timeout_s=2)
    assert result.reason in {StopReason.EXCEPTION, StopReason.BUDGET, StopReason.IDLE,
                             StopReason.POWERED_OFF, StopReason.RESET}, result.message
    assert result.message
    if result.reason is StopReason.EXCEPTION:
        assert f"{result.exception.address:#x}" in result.message


@pytest.mark.parametrize("stage2", [None, "contiguous", "scattered", "demand"])
def test_a_push_with_sp_0_faults_at_once_in_every_vm_exactly_as_on_the_board(stage2):
    # The most common beginner bug. SP = 0, so the push writes at 0xffff_ffff_ffff_fff0, the top 1 KB of
    # the address space: with the MMU off, beyond the physical address range -- Arm ARM: a stage-1
    # address size fault at level 0 (DFSC 0), WnR = 1, FAR = the address written.
    from vlab.hyp import VM  # local: the rest of this file is about the bare board

    source = "    mov x29, #1\n    stp x29, x30, [sp, #-16]!\n    b .\n"
    bare = run(source)
    result = VM.from_source(source, stage2=stage2).run(max_insns=1_000_000, timeout_s=10)
    assert result.reason is StopReason.EXCEPTION, result.message
    assert result.instructions == bare.instructions == 1
    expected = (EC_DABT_CURRENT << 26) | (1 << 25) | (1 << 6)
    assert result.exception.syndrome.esr == bare.exception.syndrome.esr == expected
    assert result.exception.far == bare.exception.far == 0xFFFF_FFFF_FFFF_FFF0
    assert "stack pointer" in result.message


@pytest.mark.parametrize("source", ["    mov x1, #0\n    str x0, [x1]\n",     # SP is still 0, but not used
                                    "    mov x1, #8\n    ldr x0, [x1, #8]\n",
                                    "    ldr x1, =0x40100000\n    mov sp, x1\n    mov x2, #0\n    str x0, [x2]\n"])
def test_a_wild_pointer_that_is_not_sp_gets_no_stack_pointer_hint(source):
    result = run(source)
    assert result.reason is StopReason.EXCEPTION
    assert "stack pointer" not in result.message


@pytest.mark.parametrize("line", ["stp x29, x30, [sp, #-16]!", "stp x0, x1, [sp, #16]", "str w0, [sp]"])
def test_an_access_through_an_unset_sp_gets_the_stack_pointer_hint(line):
    assert "stack pointer" in run(f"    {line}\n").message
