"""The two paths an exit takes (vlab.hyp.pcpu): served in place inside Unicorn's hooks, or by the
run loop -- and what each must still get exactly right: the syndrome, the guest's registers, the
instruction count, and which path the trap log says it took."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlab.arch.esr import DataAbort, ExceptionClass, Syndrome, SysRegAccess
from vlab.arch.hcr import HCR
from vlab.arch.sysregs import lookup
from vlab.hyp import VM
from vlab.hyp.exits import IN_PLACE, RUN_LOOP
from vlab.hyp.handlers import handle_data_abort, handle_sysreg
from vlab.machine.board import RAM_BASE, StopReason
from vlab.machine.cpu import CPU
from vlab.machine.uart import UART_BASE

OFF = "    ldr x0, =0x84000008\n    hvc #0\n"
VECTORS = f"""
    .balign 0x800
vectors:
    .balign 0x200
    b record
    .balign 0x200
    b record
record:
    mrs x20, esr_el1
    mrs x21, far_el1
    mrs x22, elr_el1
{OFF}"""


def loop(body: str, n: int) -> str:
    return f"    ldr x9, ={UART_BASE:#x}\n    ldr x1, ={n}\nagain:\n{body}    subs x1, x1, #1\n    b.ne again\n{OFF}"


@pytest.fixture
def runs(monkeypatch):
    """How many times the emulator was started (each stop of an exit path costs one more)."""
    count = [0]
    original = CPU.run

    def counted(self, *args, **kwargs):
        count[0] += 1
        return original(self, *args, **kwargs)
    monkeypatch.setattr(CPU, "run", counted)
    return count


@pytest.mark.parametrize("body, traps, kind", [
    ("    mrs x5, sctlr_el1\n", HCR.TRVM, "SYS64"),
    ("    msr mair_el1, x1\n", HCR.TVM, "SYS64"),
    ("    ldr x0, =0x84000000\n    hvc #0\n", HCR(0), "HVC64"),
    ("    ldr x0, =0x84000000\n    smc #0\n", HCR.TSC, "SMC64"),
    ("    ldr w5, [x9, #0x18]\n", HCR(0), "DABT_LOWER"),
    ("    strb w1, [x9]\n", HCR(0), "DABT_LOWER"),
])
def test_exits_served_in_place_never_stop_the_emulator(runs, body, traps, kind):
    counts = []
    for n in (10, 200):
        runs[0] = 0
        vm = VM.from_source(loop(body, n), traps=traps)
        result = vm.run(max_insns=100_000)
        assert result.reason is StopReason.POWERED_OFF, result.message
        assert result.exits[kind] == n + (kind == "HVC64")  # the HVC powering off is one more
        assert [r.served for r in vm.trap_log if r.kind == kind][:n] == [IN_PLACE] * n
        counts.append(runs[0])
    assert counts[0] == counts[1], f"the emulator started {counts} times for 10 and 200 exits"


def test_a_trapped_wfi_and_a_students_handler_take_the_run_loop():
    vm = VM.from_source(loop("    ldr w5, [x9, #0x18]\n", 5), traps=HCR.TWI)

    def students(vcpu, exit):
        return handle_data_abort(vcpu, exit)  # the same emulation, but not vlab's own handler

    vm.set_handler(ExceptionClass.DABT_LOWER, students)
    vm.run(max_insns=10_000)
    assert [r.served for r in vm.trap_log if r.kind == "DABT_LOWER"] == [RUN_LOOP] * 5
    wfi = VM.from_source("    mov x1, #50\n    msr cntv_tval_el0, x1\n    mov x1, #1\n    msr cntv_ctl_el0, x1\n"
                         f"    msr daifset, #2\n    wfi\n{OFF}", traps=HCR.TWI)
    wfi.run(max_insns=1000)
    assert [r.served for r in wfi.trap_log if r.kind == "WFX"] == [RUN_LOOP]


@settings(max_examples=40)
@given(before=st.lists(st.sampled_from(["add x3, x3, #1", "eor x4, x4, x3", "nop", "mov x6, x7"]), max_size=12),
       access=st.sampled_from([("ldr w5, [x9, #0x18]", 5, 4, False), ("ldrb w6, [x9, #0xfe0]", 6, 1, False),
                               ("strh w3, [x9]", 3, 2, True), ("str x4, [x9, #0x18]", 4, 8, True)]))
def test_an_exit_served_in_place_reports_the_instruction_that_made_it(before, access):
    """Inside a device callback the program counter is exact: the exit names the access itself,
    wherever it sits in its block, with the syndrome the hardware would give."""
    line, rt, size, write = access
    body = "".join(f"    {b}\n" for b in before)
    vm = VM.from_source(f"    ldr x9, ={UART_BASE:#x}\n{body}    {line}\n{OFF}")
    vm.run(max_insns=1000)
    [exit] = [r.exit for r in vm.trap_log if r.kind == "DABT_LOWER"]
    assert exit.address == RAM_BASE + 4 * (len(before) + 1) and exit.instruction == line.replace("#0x", "#0x")
    abort = DataAbort.from_iss(exit.syndrome.iss)
    assert (abort.isv, abort.srt, abort.size, abort.wnr) == (True, rt, size, write)


def test_an_access_the_hypervisor_cannot_emulate_is_undone_before_the_guest_gets_its_abort():
    """ldr with post-index writeback to the UART has no instruction syndrome (ISV = 0): the guest
    kernel gets an external abort at the instruction, with the base register as it was."""
    vm = VM.from_source(f"    adr x0, vectors\n    msr vbar_el1, x0\n    ldr x9, ={UART_BASE:#x}\n    mov x3, #7\n"
                        f"    ldr x3, [x9], #8\n    b .\n{VECTORS}")
    result = vm.run(max_insns=1000)
    regs = result.registers
    assert Syndrome.from_esr(regs["x20"]).ec is ExceptionClass.DABT_CURRENT
    assert regs["x22"] == RAM_BASE + 16 and regs["x21"] == UART_BASE
    assert regs["x9"] == UART_BASE and regs["x3"] == 7, "the instruction's writeback and load were undone"
    assert vm.uart.text == ""


def test_an_exit_whose_handler_injects_an_exception_is_finished_by_the_run_loop():
    def undefined(vcpu, exit):  # SCTLR_EL1 is refused; the vector's own reads are served
        if SysRegAccess.from_iss(exit.syndrome.iss).encoding == lookup("SCTLR_EL1").encoding:
            return vcpu.inject(exit, Syndrome(ExceptionClass.UNKNOWN), "not today")
        return handle_sysreg(vcpu, exit)

    vm = VM.from_source(f"    adr x0, vectors\n    msr vbar_el1, x0\n    mrs x5, sctlr_el1\n    b .\n{VECTORS}",
                        traps=HCR.TRVM)
    vm.set_handler(ExceptionClass.SYS64, undefined)
    result = vm.run(max_insns=1000)
    assert Syndrome.from_esr(result.registers["x20"]).ec is ExceptionClass.UNKNOWN
    assert result.registers["x22"] == RAM_BASE + 8  # ELR_EL1: the trapped MRS itself
    assert [r.served for r in vm.trap_log if r.kind == "SYS64"][0] == RUN_LOOP


@pytest.mark.parametrize("path", [IN_PLACE, RUN_LOOP])
def test_guest_time_counts_an_emulated_instruction_once_on_either_path(path):
    """The bare board and the VM agree on instructions retired, whichever path the exit took."""
    source = loop("    mrs x5, sctlr_el1\n", 25)
    plain = VM.from_source(source).run(max_insns=10_000)
    vm = VM.from_source(source, traps=HCR.TRVM)
    if path == RUN_LOOP:  # emulated, then the vCPU yields its core: the run loop must finish the exit
        def and_yield(vcpu, exit):
            action = handle_sysreg(vcpu, exit)
            vcpu.yield_cpu()
            return action
        vm.set_handler(ExceptionClass.SYS64, and_yield)
    trapped = vm.run(max_insns=10_000)
    assert trapped.instructions == plain.instructions and trapped.exits["SYS64"] == 25
    assert trapped.registers == plain.registers
    assert {r.served for r in vm.trap_log if r.kind == "SYS64"} == {path}


def test_a_byte_load_of_a_wider_device_register_reads_its_low_byte_on_either_path():
    """UARTCR resets to 0x300: ldrb reads 0x00 on the board, in place and through the run loop."""
    from vlab.machine.board import Board
    from vlab.machine.loader import image_from_program, load
    from vlab.asm import assemble

    program = assemble(f"    ldr x9, ={UART_BASE:#x}\n    ldrb w3, [x9, #0x30]\n    ldrh w4, [x9, #0x30]\n{OFF}")
    board = Board()
    load(board, image_from_program(program))
    expected = board.run(max_insns=100).registers
    for handler in (None, lambda vcpu, exit: handle_data_abort(vcpu, exit)):
        vm = VM.from_image(image_from_program(program))
        if handler is not None:
            vm.set_handler(ExceptionClass.DABT_LOWER, handler)
        got = vm.run(max_insns=100).registers
        assert (got["x3"], got["x4"]) == (expected["x3"], expected["x4"]) == (0x00, 0x300)
