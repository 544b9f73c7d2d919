"""The board as a whole: demo guests, the run loop's stop reasons, budgets, stepping, PSCI."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlab.asm import assemble
from vlab.guests import GUESTS, SELF_CHECK_OK
from vlab.machine.board import RAM_BASE, Board, StopReason
from vlab.machine.loader import image_from_file, image_from_program, load

PSCI_VERSION, PSCI_FEATURES, SYSTEM_OFF, SYSTEM_RESET = 0x8400_0000, 0x8400_000A, 0x8400_0008, 0x8400_0009
NOT_SUPPORTED = 2**64 - 1  # PSCI's -1 in x0


def boot(source: str, **board_options) -> Board:
    board = Board(**board_options)
    load(board, image_from_program(assemble(source)))
    return board


@pytest.mark.parametrize("name", sorted(GUESTS))
def test_demo_guest_powers_off_after_printing_its_text_and_passing_its_self_check(name):
    guest = GUESTS[name]
    board = Board()
    load(board, image_from_file(guest.path))
    result = board.run(max_insns=100_000)
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert result.uart == guest.expected_uart
    assert result.registers["x19"] == SELF_CHECK_OK
    assert result.el == 1


def test_syscall_guest_takes_two_svcs_from_el0():
    board = Board()
    load(board, image_from_file(GUESTS["syscall"].path))
    board.run(max_insns=100_000)
    assert [(e.from_el, e.syndrome.ec) for e in board.exceptions_taken] == [(0, 0x15), (0, 0x15)]


def test_hello_counts_its_bytes_in_memory():
    board = Board()
    image = image_from_file(GUESTS["hello"].path)
    load(board, image)
    board.run(max_insns=100_000)
    count = int.from_bytes(board.read_memory(image.program.address_of("count"), 8), "little")
    assert count == len("Hello from EL1!\n")


@pytest.mark.parametrize("conduit", ["hvc", "smc"])
def test_psci_system_off_through_either_conduit_powers_off(conduit):
    result = boot(f"    ldr x0, ={SYSTEM_OFF:#x}\n    {conduit} #0\n    b .\n").run(max_insns=100)
    assert result.reason is StopReason.POWERED_OFF
    assert result.instructions == 2


def test_psci_system_reset_stops_with_reset():
    assert boot(f"    ldr x0, ={SYSTEM_RESET:#x}\n    hvc #0\n").run(max_insns=100).reason is StopReason.RESET


def test_psci_version_and_features_answer_in_x0():
    board = boot(f"""
    ldr x0, ={PSCI_VERSION:#x}
    hvc #0
    mov x20, x0
    ldr x0, ={PSCI_FEATURES:#x}
    ldr x1, ={SYSTEM_OFF:#x}
    hvc #0
    mov x21, x0
    ldr x0, ={PSCI_FEATURES:#x}
    mov x1, #0x1234
    hvc #0
    mov x22, x0
    ldr x0, =0x12345678           // not a PSCI function: NOT_SUPPORTED, as on QEMU
    hvc #0
    mov x23, x0
    ldr x0, ={SYSTEM_OFF:#x}
    hvc #0
""")
    regs = board.run(max_insns=100).registers
    assert regs["x20"] == 0x0001_0001, "PSCI 1.1: major 1 in [31:16], minor 1 in [15:0]"
    assert regs["x21"] == 0
    assert regs["x22"] == NOT_SUPPORTED
    assert regs["x23"] == NOT_SUPPORTED


def test_a_powered_off_board_stays_off():
    board = boot(f"    ldr x0, ={SYSTEM_OFF:#x}\n    hvc #0\n")
    board.run(max_insns=100)
    again = board.run(max_insns=100)
    assert again.reason is StopReason.POWERED_OFF
    assert again.instructions == 2


SPIN = "    mov x0, #0\nspin:\n    add x0, x0, #1\n    b spin\n"


@settings(max_examples=40, deadline=None)
@given(first=st.integers(1, 5_000), second=st.integers(1, 5_000))
def test_budgets_are_exact_and_two_runs_add_up_to_one(first, second):
    split = boot(SPIN)
    assert split.run(max_insns=first).instructions == first
    assert split.run(max_insns=second).instructions == first + second
    whole = boot(SPIN)
    result = whole.run(max_insns=first + second)
    assert result.reason is StopReason.BUDGET
    assert result.registers == split.cpu.registers()
    assert whole.cpu.x(0) == (first + second) // 2, "mov, then one add per two instructions"


def test_step_executes_exactly_one_instruction():
    board = boot("    mov x1, #1\n    mov x2, #2\n    mov x3, #3\n")
    first = board.step()
    assert first.reason is StopReason.STOPPED
    assert (first.instructions, first.pc, board.cpu.x(1), board.cpu.x(2)) == (1, RAM_BASE + 4, 1, 0)
    second = board.step()
    assert (second.instructions, second.pc, board.cpu.x(2), board.cpu.x(3)) == (2, RAM_BASE + 8, 2, 0)


def test_step_onto_an_svc_enters_the_vector():
    board = boot("""
    adr x0, vectors
    msr vbar_el1, x0
    svc #9
    .balign 0x800
vectors:
    nop
""")
    board.step(), board.step()
    result = board.step()
    assert result.reason is StopReason.STOPPED
    assert result.pc == RAM_BASE + 0x800 + 0x200
    assert len(board.exceptions_taken) == 1


def test_wall_clock_guard_stops_an_endless_loop():
    board = boot("spin:\n    b spin\n")
    started = time.monotonic()
    result = board.run(max_insns=10**15, timeout_s=0.3)
    assert result.reason is StopReason.TIMEOUT
    assert "0.3 s" in result.message
    assert time.monotonic() - started < 10
    assert board.run(max_insns=10).reason is StopReason.BUDGET, "the board runs on after a timeout"


def test_ram_size_is_configurable_and_checked():
    board = Board(ram_size=0x20_0000)
    assert (board.ram.base, board.ram.size) == (RAM_BASE, 0x20_0000)
    with pytest.raises(ValueError):
        Board(ram_size=0x1234)


def test_memory_map_matches_qemu_virt():
    regions = {r.name: (r.base, r.kind) for r in Board().regions}
    assert regions["flash"] == (0x0, "rom")
    assert regions["uart"] == (0x0900_0000, "device")
    assert regions["ram"] == (0x4000_0000, "ram")


def test_run_result_json_has_uart_stop_instructions_and_registers():
    board = boot(f"    mov x5, #42\n    ldr x0, ={SYSTEM_OFF:#x}\n    hvc #0\n")
    out = json.loads(json.dumps(board.run(max_insns=100).to_json()))
    assert out["stop"] == "powered_off"
    assert out["instructions"] == 3
    assert out["uart"] == ""
    assert out["registers"]["x5"] == 42
    assert {f"x{i}" for i in range(31)} | {"pc", "sp"} <= set(out["registers"])


def test_exception_stop_json_names_the_class():
    out = boot("    svc #1\n").run(max_insns=10).to_json()
    assert out["stop"] == "exception"
    assert out["exception"]["class"] == "SVC64"
    assert out["exception"]["iss"] == {"imm16": 1}
