"""The hypervisor: exits as hardware reports them, handlers, resource control, vCPUs, bad guests."""

from __future__ import annotations

import sys

import pytest

from vlab.arch.esr import DataAbort, ExceptionClass, FaultStatus, Syndrome, SysRegAccess
from vlab.arch.hcr import HCR
from vlab.arch.sysregs import lookup
from vlab.guests import GIC_TIMER_ON
from vlab.hyp import SUPPORTED_TRAPS, VM, VCpuState
from vlab.hyp.handlers import VLAB_PUTC, VLAB_WRITE
from vlab.machine.board import RAM_BASE, StopReason
from vlab.machine.uart import UART_BASE

PSCI_VERSION, SYSTEM_OFF, CPU_ON, CPU_OFF = 0x8400_0000, 0x8400_0008, 0xC400_0003, 0x8400_0002
OFF = f"    ldr x0, ={SYSTEM_OFF:#x}\n    hvc #0\n"
NOT_SUPPORTED = 2**64 - 1

# A kernel whose synchronous vector records ESR/FAR/ELR in x20..x22 and powers off.
RECORDING_VECTORS = f"""
    .balign 0x800
vectors:
    .balign 0x200
    b record            // current EL, SP_EL0
    .balign 0x200
    b record            // current EL, SP_ELx: synchronous
    .balign 0x200
    b record            // lower EL
record:
    mrs x20, esr_el1
    mrs x21, far_el1
    mrs x22, elr_el1
{OFF}"""


def vm_for(body: str, traps: HCR = HCR(0), **options) -> VM:
    prologue = "    adr x0, vectors\n    msr vbar_el1, x0\n" if "vectors:" in body else ""
    return VM.from_source(prologue + body, traps=traps, **options)


def exits_of(vm: VM, kind: str) -> list:
    return [r.exit for r in vm.trap_log if r.kind == kind]


# --- which instructions exit, and how the exit reads ------------------------------------------

@pytest.mark.parametrize("line, register, trap, is_read", [
    ("mrs x3, sctlr_el1", "SCTLR_EL1", HCR.TRVM, True),
    ("msr ttbr0_el1, x3", "TTBR0_EL1", HCR.TVM, False),
    ("msr mair_el1, x3", "MAIR_EL1", HCR.TVM, False),
    ("mrs x3, id_aa64mmfr0_el1", "ID_AA64MMFR0_EL1", HCR.TID3, True),
    ("mrs x3, actlr_el1", "ACTLR_EL1", HCR.TACR, True),
])
def test_a_sysreg_access_exits_exactly_when_its_trap_control_is_set(line, register, trap, is_read):
    source = f"    mov x3, #0\n    {line}\n{OFF}"
    quiet = vm_for(source, SUPPORTED_TRAPS & ~trap)
    quiet.run(max_insns=100)
    assert quiet.exits.get("SYS64", 0) == 0
    vm = vm_for(source, trap)
    result = vm.run(max_insns=100)
    assert result.reason is StopReason.POWERED_OFF
    [exit] = exits_of(vm, "SYS64")
    access = SysRegAccess.from_iss(exit.syndrome.iss)
    assert access.encoding == lookup(register).encoding
    assert (access.rt, access.is_read) == (3, is_read)
    assert exit.address == exit.return_address == RAM_BASE + 4  # ELR_EL2 points at the trapped instruction
    assert exit.instruction.startswith(line.split()[0])


def test_an_emulated_write_lands_in_the_vcpus_register_and_a_read_returns_it():
    vm = vm_for(f"    ldr x1, =0x44ff04\n    msr mair_el1, x1\n    mrs x2, mair_el1\n{OFF}", HCR.TVM | HCR.TRVM)
    result = vm.run(max_insns=100)
    assert result.registers["x2"] == 0x44FF04 == vm.vcpus[0].read_sysreg("MAIR_EL1")
    assert result.exits["SYS64"] == 2


def test_midr_and_mpidr_reads_see_the_vcpus_identity_without_an_exit():
    vm = vm_for(f"    mrs x1, midr_el1\n    mrs x2, mpidr_el1\n{OFF}", SUPPORTED_TRAPS)
    vm.vcpus[0].vpidr = 0x410F_D034  # what the hypervisor chose to show (a Cortex-A53)
    result = vm.run(max_insns=100)
    assert (result.registers["x1"], result.registers["x2"]) == (0x410F_D034, 1 << 31)
    assert "SYS64" not in result.exits


@pytest.mark.parametrize("line, size, signed, sf, write", [
    ("strb w3, [x1]", 1, False, False, True),
    ("str w3, [x1, #0x18]", 4, False, False, True),
    ("ldrh w3, [x1, #0x18]", 2, False, False, False),
    ("ldrsb x3, [x1, #0x18]", 1, True, True, False),
    ("ldr x3, [x1, #0x18]", 8, False, True, False),
])
def test_mmio_exits_carry_the_syndrome_hardware_fills(line, size, signed, sf, write):
    vm = vm_for(f"    ldr x1, ={UART_BASE:#x}\n    mov x3, #0x41\n    {line}\n{OFF}")
    vm.run(max_insns=100)
    [exit] = exits_of(vm, "DABT_LOWER")
    abort = DataAbort.from_iss(exit.syndrome.iss)
    assert (abort.isv, abort.size, abort.sse, abort.sf, abort.srt, abort.wnr) == (True, size, signed, sf, 3, write)
    offset = 0x18 if "0x18" in line else 0
    assert exit.ipa == exit.far == UART_BASE + offset and exit.hpfar == (UART_BASE >> 12) << 4
    assert abort.dfsc & 0b111100 == FaultStatus.TRANSLATION_L0  # a translation fault (stage 2)


def test_mmio_read_of_the_flag_register_gives_the_uart_value():
    vm = vm_for(f"    ldr x1, ={UART_BASE:#x}\n    ldr w3, [x1, #0x18]\n    mov x4, #0x5a\n    strb w4, [x1]\n{OFF}")
    result = vm.run(max_insns=100)
    assert result.registers["x3"] == vm.uart.flags() and result.uart == "Z"
    assert [(a.register, a.is_write) for a in vm.mmio_trace] == [("UARTFR", False), ("UARTDR", True)]


def test_hvc_exits_after_the_instruction_and_an_unknown_hypercall_returns_not_supported():
    vm = vm_for(f"    ldr x0, =0x86001234\n    hvc #0\n    mov x5, x0\n{OFF}")
    result = vm.run(max_insns=100)
    first = exits_of(vm, "HVC64")[0]
    assert first.fields()["imm16"] == 0 and first.return_address == first.address + 4
    assert result.registers["x5"] == NOT_SUPPORTED and result.reason is StopReason.POWERED_OFF


def test_vlab_hypercalls_print_on_the_console():
    source = f"""    ldr x0, ={VLAB_PUTC:#x}
    mov x1, #0x21
    hvc #0
    ldr x0, ={VLAB_WRITE:#x}
    adr x1, text
    mov x2, #3
    hvc #0
    mov x6, x0
    ldr x0, ={VLAB_WRITE:#x}
    mov x1, #0
    mov x2, #3
    hvc #0
    mov x7, x0
{OFF}
text: .ascii "abc"
"""
    result = vm_for(source).run(max_insns=100)
    assert result.uart == "!abc"
    assert result.registers["x6"] == 3 and result.registers["x7"] == 2**64 - 2  # INVALID_PARAMETERS


def test_smc_goes_to_the_firmware_unless_tsc_traps_it_to_the_hypervisor():
    source = f"    ldr x0, ={PSCI_VERSION:#x}\n    smc #0\n    mov x5, x0\n{OFF}"
    plain, trapped = vm_for(source), vm_for(source, HCR.TSC)
    r1, r2 = plain.run(max_insns=100), trapped.run(max_insns=100)
    assert "SMC64" not in r1.exits and r2.exits["SMC64"] == 1
    assert r1.registers["x5"] == r2.registers["x5"] == 0x1_0001  # PSCI 1.1 either way
    [exit] = exits_of(trapped, "SMC64")
    assert exit.return_address == exit.address  # a trapped SMC has not executed
    assert r1.instructions == r2.instructions


WFI_WITH_TIMER = GIC_TIMER_ON + f"""
    msr daifset, #2             // IRQs masked: WFI still wakes when the timer fires
    mov x1, #500
    msr cntv_tval_el0, x1
    mov x1, #1
    msr cntv_ctl_el0, x1
    wfi
    mrs x2, cntvct_el0
    msr cntv_ctl_el0, xzr
{OFF}"""


def test_a_trapped_wfi_sleeps_until_the_virtual_timer_and_keeps_guest_time():
    plain, trapped = vm_for(WFI_WITH_TIMER), vm_for(WFI_WITH_TIMER, HCR.TWI)
    r1, r2 = plain.run(max_insns=1000), trapped.run(max_insns=1000)
    assert "WFX" not in r1.exits and r2.exits["WFX"] == 1
    assert r1.registers["x2"] == r2.registers["x2"] >= 500
    [exit] = exits_of(trapped, "WFX")
    assert exit.instruction == "wfi" and exit.fields()["TI"] == 0


def test_a_wfi_nothing_can_wake_leaves_the_vm_idle():
    result = vm_for("    wfi\n    b .\n", HCR.TWI).run(max_insns=1000)
    assert result.reason is StopReason.IDLE


def test_a_wfi_with_the_timers_interrupt_disabled_in_the_vgic_leaves_the_vm_idle_as_on_the_board():
    source = WFI_WITH_TIMER.replace("ldr w3, =0x8000000", "mov w3, #0")  # PPI 27 not enabled
    for traps in (HCR(0), HCR.TWI):
        result = vm_for(source, traps).run(max_insns=1000)
        assert result.reason is StopReason.IDLE, result.message


def test_the_virtual_timer_interrupt_is_injected_into_the_guest():
    source = GIC_TIMER_ON + f"""    adr x0, irq_vectors
    msr vbar_el1, x0
    mov x1, #300
    msr cntv_tval_el0, x1
    mov x1, #1
    msr cntv_ctl_el0, x1
    msr daifclr, #2
spin: b spin
    .balign 0x800
irq_vectors:
    b .                 // +0x000 current EL with SP_EL0: synchronous
    .balign 0x200
    b .                 // +0x200 current EL with SP_ELx: synchronous
    .balign 0x80
    mov x9, #0x1ed      // +0x280 current EL with SP_ELx: IRQ
{OFF}"""
    vm = VM.from_source(source)
    result = vm.run(max_insns=10_000)
    assert result.registers["x9"] == 0x1ED and result.exits["IRQ"] == 1
    assert "GICH_LR0 = 0x9" in [r for r in vm.trap_log if r.kind == "IRQ"][0].action
    assert result.without_exits == {"GICV_PMR": 1, "GICV_CTLR": 1}  # its GIC CPU interface: no exits


# --- resource control: the guest gets architectural answers, the host carries on ------------------

def test_an_access_to_no_device_is_an_external_abort_the_guest_kernel_sees():
    vm = vm_for(f"    ldr x1, =0x09030000\n    ldr w2, [x1]\n    b .\n{RECORDING_VECTORS}")  # QEMU's GPIO: not modelled
    result = vm.run(max_insns=1000)
    assert result.reason is StopReason.POWERED_OFF
    syndrome = Syndrome.from_esr(result.registers["x20"])
    assert syndrome.ec is ExceptionClass.DABT_CURRENT
    assert DataAbort.from_iss(syndrome.iss).dfsc == FaultStatus.SYNC_EXTERNAL
    [exit] = exits_of(vm, "DABT_LOWER")  # the hypervisor saw it first, found no device, and injected it
    assert exit.instruction == "ldr w2, [x1]"
    assert result.registers["x21"] == 0x0903_0000 and result.registers["x22"] == exit.address


def test_an_unknown_system_register_is_an_undefined_instruction_for_the_guest():
    vm = vm_for(f"    mrs x1, s3_0_c15_c15_7\n    b .\n{RECORDING_VECTORS}", SUPPORTED_TRAPS)
    result = vm.run(max_insns=1000)
    assert Syndrome.from_esr(result.registers["x20"]).ec is ExceptionClass.UNKNOWN


def test_el2_registers_are_undefined_to_the_guest_kernel():
    vm = vm_for(f"    mrs x1, hcr_el2\n    b .\n{RECORDING_VECTORS}")
    result = vm.run(max_insns=1000)
    assert Syndrome.from_esr(result.registers["x20"]).ec is ExceptionClass.UNKNOWN
    assert "SYS64" not in result.exits


def test_two_vms_never_see_each_others_registers_or_memory():
    writer = vm_for(f"""    ldr x1, =0x40001000
    msr vbar_el1, x1
    msr ttbr0_el1, x1
    ldr x2, =0x40010000
    str x1, [x2]
{OFF}""", HCR.TVM)
    reader = vm_for(f"    mrs x3, vbar_el1\n    mrs x4, ttbr0_el1\n    ldr x2, =0x40010000\n    ldr x5, [x2]\n{OFF}",
                    HCR.TRVM)
    writer.run(max_insns=100)
    result = reader.run(max_insns=100)
    assert (result.registers["x3"], result.registers["x4"], result.registers["x5"]) == (0, 0, 0)
    assert writer.vcpus[0].read_sysreg("TTBR0_EL1") == 0x4000_1000


def test_a_failing_handler_stops_the_vm_with_a_report_instead_of_raising():
    def broken(vcpu, exit):
        raise ZeroDivisionError("student bug")

    vm = vm_for(f"    mrs x1, sctlr_el1\n{OFF}", HCR.TRVM)
    vm.set_handler(ExceptionClass.SYS64, broken)
    result = vm.run(max_insns=100)
    assert result.reason is StopReason.ERROR and "ZeroDivisionError: student bug" in result.message


def test_a_custom_handler_replaces_the_default():
    def answer_42(vcpu, exit):
        access = SysRegAccess.from_iss(exit.syndrome.iss)
        vcpu.set_x(access.rt, 42)
        vcpu.skip(exit)
        return "42"

    vm = vm_for(f"    mrs x1, sctlr_el1\n{OFF}", HCR.TRVM)
    vm.set_handler(ExceptionClass.SYS64, answer_42)
    assert vm.run(max_insns=100).registers["x1"] == 42


def test_an_endless_loop_spends_the_budget_and_an_undefined_instruction_reaches_the_guest():
    assert vm_for("    b .\n").run(max_insns=5000).reason is StopReason.BUDGET
    result = vm_for(f"    .long 0\n{RECORDING_VECTORS}").run(max_insns=1000)
    assert Syndrome.from_esr(result.registers["x20"]).ec is ExceptionClass.UNKNOWN


def test_unsupported_trap_controls_are_refused_by_name():
    with pytest.raises(ValueError, match="TWE"):
        VM(traps=HCR.TWE)


# --- several vCPUs -------------------------------------------------------------------------------

def test_cpu_on_starts_a_second_vcpu_that_shares_memory_and_can_turn_itself_off():
    source = f"""    ldr x0, ={CPU_ON:#x}
    mov x1, #1
    adr x2, secondary
    ldr x3, =0xc0ffee
    hvc #0
    mov x10, x0
    ldr x4, =0x40010000
wait: ldr x5, [x4]
    cbz x5, wait
{OFF}
secondary:
    ldr x4, =0x40010000
    str x0, [x4]
    ldr x0, ={CPU_OFF:#x}
    hvc #0
    b .
"""
    vm = VM.from_source(source, vcpus=2)
    result = vm.run(max_insns=1_000_000)
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert result.registers["x10"] == 0 and result.registers["x5"] == 0xC0FFEE
    assert vm.vcpus[1].state is VCpuState.OFF
    assert [r.vcpu for r in vm.trap_log if r.kind == "HVC64"] == [0, 1, 0]


def test_cpu_on_with_an_entry_outside_ram_is_invalid_address_and_with_no_such_cpu_invalid_parameters():
    # PSCI (Arm DEN 0022) CPU_ON: INVALID_ADDRESS for an entry point the implementation knows is not
    # available to the caller; INVALID_PARAMETERS for a target CPU that does not exist.
    source = f"""    ldr x0, ={CPU_ON:#x}
    mov x1, #1
    mov x2, #0
    hvc #0
    mov x10, x0
    ldr x0, ={CPU_ON:#x}
    mov x1, #7
    adr x2, .
    hvc #0
    mov x11, x0
{OFF}"""
    result = VM.from_source(source, vcpus=2).run(max_insns=100)
    assert (result.registers["x10"], result.registers["x11"]) == (2**64 - 9, 2**64 - 2)


# --- efficiency: the hypervisor runs only when the guest exits --------------------------------------

def test_innocuous_instructions_never_run_python():
    vm = vm_for(f"    ldr x1, =200000\nloop: subs x1, x1, #1\n    b.ne loop\n{OFF}", SUPPORTED_TRAPS)
    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        if event == "call" and "vlab" in frame.f_code.co_filename:
            calls += 1

    sys.setprofile(count)
    try:
        result = vm.run(max_insns=1_000_000)
    finally:
        sys.setprofile(None)
    assert result.instructions > 400_000 and result.exits == {"HVC64": 1}
    assert calls < 1_000, f"{calls} Python calls for {result.instructions} guest instructions"


def test_a_handler_that_never_moves_the_guest_on_is_stopped_with_a_hint():
    vm = vm_for(f"    mrs x1, sctlr_el1\n{OFF}", HCR.TRVM)
    vm.set_handler(ExceptionClass.SYS64, lambda vcpu, exit: "forgot to skip")
    result = vm.run(max_insns=100, timeout_s=30)
    assert result.reason is StopReason.ERROR and "vcpu.skip(exit)" in result.message
    assert vm.exits["SYS64"] == 8
