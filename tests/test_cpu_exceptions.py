"""Exception entry as the architecture defines it (Arm ARM D1.10, "Exception entry").

Each test runs a small guest kernel whose 16 vector entries record their own
offset in x25 and jump to a handler that copies ESR/ELR/SPSR/FAR, the stack
pointers, DAIF and CurrentEL into registers, then powers off. The expected
values are worked out from the architecture, not read back from vlab.
"""

from __future__ import annotations

import pytest

from vlab.asm import assemble
from vlab.machine.board import Board, StopReason
from vlab.machine.loader import image_from_program, load

KERNEL_SP, USER_SP = 0x4010_0000, 0x4020_0000

SETUP = f"""
_start:
    ldr     x0, ={KERNEL_SP:#x}
    mov     sp, x0
    ldr     x0, ={USER_SP:#x}
    msr     sp_el0, x0
    adr     x0, vectors
    msr     vbar_el1, x0
"""
TO_EL0 = """
    adr     x0, user
    msr     elr_el1, x0
    msr     spsr_el1, xzr          // EL0t, DAIF clear
    eret
user:
"""
HANDLER = """
handler:
    mrs     x20, esr_el1
    mrs     x21, elr_el1
    mrs     x22, spsr_el1
    mov     x23, sp
    mrs     x24, sp_el0
    mrs     x26, far_el1
    mrs     x27, daif
    mrs     x28, currentel
    ldr     x0, =0x84000008
    hvc     #0
"""
VECTORS = "    .balign 0x800\nvectors:\n" + "".join(
    f"    mov     x25, #{offset:#x}\n    b       handler\n    .balign 0x80\n" for offset in range(0, 0x800, 0x80)
)

EC_UNKNOWN, EC_SVC64, EC_IABT_CURRENT, EC_DABT_CURRENT, EC_BRK64 = 0x00, 0x15, 0x21, 0x25, 0x3C
IL = 1 << 25
DAIF_ALL = 0xF << 6
PSTATE_N, PSTATE_Z, PSTATE_C = 1 << 31, 1 << 30, 1 << 29
PSTATE_IL = 1 << 20
EL1T, EL1H = 0b0100, 0b0101


def run_kernel(body: str) -> tuple[dict[str, int], dict[str, int], Board]:
    """Run SETUP + body + the recording handler and vectors; registers, symbols, board."""
    board, program = Board(), assemble(SETUP + body + HANDLER + VECTORS)
    load(board, image_from_program(program))
    result = board.run(max_insns=100_000, timeout_s=10)
    assert result.reason is StopReason.POWERED_OFF, result.message
    return result.registers, program.symbols, board


def test_svc_from_el0_enters_lower_el_vector_with_syndrome_return_address_and_user_pstate():
    regs, sym, _ = run_kernel(TO_EL0 + """
    mov     x1, #0x40300000
    mov     sp, x1                 // the user's own stack pointer (SP_EL0)
    mov     x2, #1
    cmp     x2, #2                 // 1 - 2: N = 1, Z = 0, C = 0 (borrow), V = 0
here:
    svc     #0x1234
    b       .
""")
    assert regs["x25"] == 0x400, "lower EL using AArch64, synchronous"
    assert regs["x20"] == (EC_SVC64 << 26) | IL | 0x1234
    assert regs["x21"] == sym["here"] + 4, "ELR_EL1 is the instruction after the SVC"
    assert regs["x22"] == PSTATE_N, "SPSR_EL1: EL0t with only N set, DAIF clear as the user had it"
    assert regs["x23"] == KERNEL_SP, "the handler runs on SP_EL1"
    assert regs["x24"] == 0x4030_0000, "the user's SP stays in SP_EL0"
    assert regs["x27"] == DAIF_ALL, "exception entry masks D, A, I and F"
    assert regs["x28"] == 1 << 2, "CurrentEL reads EL1"


def test_svc_at_el1_with_sp_el0_uses_the_current_el_sp0_vector():
    regs, sym, _ = run_kernel("""
    msr     spsel, #0              // EL1t: EL1 running on SP_EL0
here:
    svc     #7
    b       .
""")
    assert regs["x25"] == 0x000
    assert regs["x20"] == (EC_SVC64 << 26) | IL | 7
    assert regs["x21"] == sym["here"] + 4
    assert regs["x22"] & 0x3FF == DAIF_ALL | EL1T, "SPSR_EL1.M says EL1t, DAIF as at reset (masked)"
    assert regs["x23"] == KERNEL_SP, "the handler runs on SP_EL1, whatever SPSel was"
    assert regs["x24"] == USER_SP


def test_svc_at_el1_with_sp_el1_uses_the_current_el_spx_vector():
    regs, sym, _ = run_kernel("here:\n    svc     #7\n    b       .\n")
    assert regs["x25"] == 0x200
    assert regs["x21"] == sym["here"] + 4
    assert regs["x22"] & 0x3FF == DAIF_ALL | EL1H


def test_brk_reports_its_immediate_and_returns_to_itself():
    regs, sym, _ = run_kernel("here:\n    brk     #0x42\n    b       .\n")
    assert regs["x20"] == (EC_BRK64 << 26) | IL | 0x42
    assert regs["x21"] == sym["here"], "ELR_EL1 of a BRK is the BRK itself"


@pytest.mark.parametrize("instruction", [".long 0x00000000", "mrs x0, hcr_el2", "msr vbar_el2, x0"])
def test_undefined_instruction_at_el1_is_exception_class_0_at_the_instruction(instruction):
    regs, sym, _ = run_kernel(f"here:\n    {instruction}\n    b       .\n")
    assert regs["x25"] == 0x200
    assert regs["x20"] == (EC_UNKNOWN << 26) | IL, "EC 0 (unknown reason); IL is RES1 for it"
    assert regs["x21"] == sym["here"]


@pytest.mark.parametrize("instruction", ["msr vbar_el1, x0", "mrs x0, sctlr_el1", "hvc #0"])
def test_privileged_instruction_at_el0_is_undefined_and_goes_to_the_lower_el_vector(instruction):
    regs, sym, _ = run_kernel(TO_EL0 + f"here:\n    {instruction}\n    b       .\n")
    assert regs["x25"] == 0x400
    assert regs["x20"] == (EC_UNKNOWN << 26) | IL
    assert regs["x21"] == sym["here"]


@pytest.mark.parametrize("store, wnr", [("ldr x2, [x1, #8]", 0), ("str x2, [x1, #8]", 1)])
def test_access_to_nothing_is_a_synchronous_external_abort_with_far_and_wnr(store, wnr):
    regs, sym, _ = run_kernel(f"    ldr     x1, =0x20000000\nhere:\n    {store}\n    b       .\n")
    assert regs["x20"] == (EC_DABT_CURRENT << 26) | IL | (wnr << 6) | 0x10, "DFSC 0x10: synchronous external abort"
    assert regs["x21"] == sym["here"], "ELR_EL1 of an abort is the faulting instruction"
    assert regs["x26"] == 0x2000_0008, "FAR_EL1 is the address accessed"


def test_jump_to_nothing_is_an_instruction_abort_at_the_target():
    regs, _, _ = run_kernel("    ldr     x1, =0x20000000\n    br      x1\n")
    assert regs["x20"] == (EC_IABT_CURRENT << 26) | IL | 0x10
    assert regs["x21"] == 0x2000_0000
    assert regs["x26"] == 0x2000_0000


def test_eret_from_el1_to_el1_is_a_legal_return():
    # Two SVCs at EL1: the second is taken after the handler of the first returned with ERET.
    # An illegal return would set PSTATE.IL, which the second SPSR_EL1 would show.
    regs, sym, board = run_kernel("""
    adr     x0, first_vectors
    msr     vbar_el1, x0
    svc     #1
    adr     x0, vectors
    msr     vbar_el1, x0
    svc     #2
    b       .
    .balign 0x800
first_vectors:
    .space  0x200
    mrs     x9, elr_el1
    eret
""")
    assert regs["x20"] == (EC_SVC64 << 26) | IL | 2
    assert not regs["x22"] & PSTATE_IL, f"SPSR_EL1 = {regs['x22']:#x} has PSTATE.IL set"
    assert regs["x22"] & 0xF == EL1H
    assert not board.cpu.pstate & PSTATE_IL


def test_exceptions_taken_are_recorded_with_vector_and_return_address():
    _, sym, board = run_kernel(TO_EL0 + "here:\n    svc     #5\n")
    (taken,) = board.exceptions_taken
    assert taken.from_el == 0
    assert taken.vector_address == sym["vectors"] + 0x400
    assert taken.return_address == sym["here"] + 4
    assert taken.syndrome.esr == (EC_SVC64 << 26) | IL | 5


def test_cpacr_el1_resets_to_zero_as_on_qemu_kernel_boot():
    # Measured on qemu-system-aarch64 -M virt -kernel ELF: CPACR_EL1 = 0 (FPEN = 0b00) at entry.
    assert Board().cpu.read_sysreg("CPACR_EL1") == 0


@pytest.mark.xfail(strict=True, reason="Unicorn 2.1.4 never traps FP/SIMD instructions when CPACR_EL1.FPEN "
                   "is 0, where QEMU raises EC 0x07; vlab's C runtime sets FPEN in start.S and builds with "
                   "-mgeneral-regs-only, so C guests behave the same on both")
def test_fp_instruction_with_fpen_clear_traps_with_ec_0x07():
    regs, sym, _ = run_kernel("    msr cpacr_el1, xzr\n    isb\nhere:\n    fmov d0, x1\n    b .\n")
    assert regs["x20"] >> 26 == 0x07
    assert regs["x21"] == sym["here"]
