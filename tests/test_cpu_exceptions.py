"""Exception entry as the architecture defines it (Arm ARM D1.10, "Exception entry").

Each test runs a small guest kernel whose 16 vector entries record their own
offset in x25 and jump to a handler that copies ESR/ELR/SPSR/FAR, the stack
pointers, DAIF and CurrentEL into registers, then powers off. The expected
values are worked out from the architecture, not read back from vlab.
"""

from __future__ import annotations

import pytest

from machines import run_on
from vlab.asm import assemble
from vlab.guests.mmu import MMU_ON
from vlab.hyp import VM
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
EC_ILLEGAL_STATE, EC_PC_ALIGN = 0x0E, 0x22
# The same kernel on the bare board, in a VM without stage 2 and in one whose RAM is scattered behind it.
MACHINES = ["board", "vm", "vm-stage2"]
STAGE2 = {"board": "board", "vm": None, "vm-stage2": "scattered"}  # for machines.run_on
IL = 1 << 25
DAIF_ALL = 0xF << 6
PSTATE_N, PSTATE_Z, PSTATE_C = 1 << 31, 1 << 30, 1 << 29
PSTATE_IL = 1 << 20
EL1T, EL1H = 0b0100, 0b0101


def run_kernel(body: str, machine: str = "board") -> tuple[dict[str, int], dict[str, int], Board]:
    """Run SETUP + body + the recording handler and vectors on `machine` (one of MACHINES);
    registers, symbols, and the board (or the VM's boot vCPU)."""
    program = assemble(SETUP + body + HANDLER + VECTORS)
    if machine == "board":
        board = Board()
        load(board, image_from_program(program))
        result = board.run(max_insns=100_000, timeout_s=10)
    else:
        vm = VM.from_image(image_from_program(program), stage2="scattered" if machine == "vm-stage2" else None)
        board, result = vm.vcpus[0], vm.run(max_insns=100_000, timeout_s=10)
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


EC_SYS64 = 0x18


# ISS for EC 0x18 (Arm ARM): Op0 [21:20], Op2 [19:17], Op1 [16:14], CRn [13:10], Rt [9:5], CRm [4:1], read [0]
@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("instruction, iss", [
    ("mrs x3, ctr_el0", 3 << 20 | 1 << 17 | 3 << 14 | 0 << 10 | 3 << 5 | 0 << 1 | 1),   # SCTLR_EL1.UCT = 0
    ("dc zva, x4", 1 << 20 | 1 << 17 | 3 << 14 | 7 << 10 | 4 << 5 | 4 << 1 | 0),        # SCTLR_EL1.DZE = 0
    ("mrs x5, daif", 3 << 20 | 1 << 17 | 3 << 14 | 4 << 10 | 5 << 5 | 2 << 1 | 1),      # SCTLR_EL1.UMA = 0
    ("msr daifset, #2", 0 << 20 | 6 << 17 | 3 << 14 | 4 << 10 | 31 << 5 | 2 << 1 | 0),  # UMA = 0 (no Rt: 31)
])
def test_a_system_instruction_el0_may_not_use_traps_with_ec_0x18_and_its_operands(machine, instruction, iss):
    # The reset value of SCTLR_EL1 leaves UCT, DZE and UMA clear: each of these traps to EL1.
    regs, sym, _ = run_kernel(TO_EL0 + f"here:\n    {instruction}\n    b       .\n", machine)
    assert regs["x25"] == 0x400
    assert regs["x20"] == (EC_SYS64 << 26) | IL | iss, hex(regs["x20"])
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


# --- the guest's own MMU: faults report virtual addresses ------------------------------------------

# Level-1 table at 0x4001_0000 (T0SZ 25): VA 0x4000_0000 -> itself (1 GiB, the kernel), and VA 0 ->
# PA 0x1_0000_0000, where there is no memory. The kernel then touches VA 0x1234.
MMU_ON_WITH_A_HOLE = """
    ldr     x1, =0x40010000
    ldr     x2, =0x40000701
    str     x2, [x1, #8]
    ldr     x2, =0x100000701
    str     x2, [x1]
""" + MMU_ON + """    ldr     x3, =0x1230
"""


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("access, far", [("ldr x4, [x3, #4]", 0x1234), ("stp x4, x5, [x3, #-8]!", 0x1228),
                                         ("ldr q0, [x3], #16", 0x1230), ("ld1 {v0.16b}, [x3]", 0x1230)])
def test_an_access_through_the_guests_tables_to_no_memory_reports_the_virtual_address_in_far(machine, access, far):
    regs, sym, _ = run_kernel(MMU_ON_WITH_A_HOLE + f"here:\n    {access}\n    b       .\n", machine)
    assert regs["x20"] >> 26 == EC_DABT_CURRENT and regs["x20"] & 0x3F == 0x10, "a synchronous external abort"
    assert regs["x26"] == far, f"FAR_EL1 = {regs['x26']:#x}, not the virtual address {far:#x}"
    assert regs["x21"] == sym["here"]


@pytest.mark.parametrize("machine", MACHINES)
def test_a_fetch_through_the_guests_tables_from_no_memory_reports_the_virtual_address_in_elr_and_far(machine):
    regs, _, _ = run_kernel(MMU_ON_WITH_A_HOLE + "    add     x3, x3, #4\n    br      x3\n", machine)
    assert regs["x20"] == (EC_IABT_CURRENT << 26) | IL | 0x10
    assert regs["x21"] == regs["x26"] == 0x1234, f"ELR_EL1 = {regs['x21']:#x}, FAR_EL1 = {regs['x26']:#x}"


# --- misaligned PCs and illegal exception returns -------------------------------------------------

# `target` is reached 2 bytes in: the misaligned word there is `mov x9, #0x99` (0xd2801329) shifted, which
# a core without the PC alignment check would run. Arm ARM: the branch completes, then a PC alignment
# fault at the target, ELR = FAR = the misaligned PC; nothing at it runs.
MISALIGNED = """    mov     x9, #0
    adr     x1, target
    add     x1, x1, #2
    {branch}
    b       .
    .balign 8
target:
    .long   0x13290000
    .long   0x0000d280
"""


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("branch", ["br x1", "blr x1", "ret x1", "msr elr_el1, x1\n    mov x2, #0x3c5\n"
                                    "    msr spsr_el1, x2\n    eret"])
def test_a_branch_to_a_misaligned_address_is_a_pc_alignment_fault_there(machine, branch):
    regs, sym, _ = run_kernel(MISALIGNED.format(branch=branch), machine)
    assert regs["x25"] == 0x200
    assert regs["x20"] == (EC_PC_ALIGN << 26) | IL, f"ESR_EL1 = {regs['x20']:#x}"
    assert regs["x21"] == regs["x26"] == sym["target"] + 2, "ELR_EL1 and FAR_EL1: the misaligned PC"
    assert regs["x9"] == 0, "no instruction ran at the misaligned address"


ILLEGAL_RETURN = """    adr     x1, target
    msr     elr_el1, x1
    ldr     x1, ={spsr:#x}
    msr     spsr_el1, x1
    eret
    b       .
target:
    mov     x9, #0x99
    b       .
"""


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("spsr, why", [(0x6000_03C9, "to EL2, above EL1"), (0x6000_03CD, "to EL3"),
                                       (0x6000_03D3, "to AArch32 at EL1, which is AArch64"),
                                       (0x6000_03C7, "to a reserved mode (M[1] = 1)"),
                                       (0x6000_03C1, "to EL0 with SP_EL1, a reserved mode"),
                                       (0x6010_03C5, "with SPSR.IL already set")])
def test_an_illegal_exception_return_sets_pstate_il_and_the_next_instruction_raises_illegal_state(machine, spsr, why):
    # Arm ARM D1.11: an illegal return keeps EL and SP, restores NZCV and DAIF from SPSR, sets PSTATE.IL
    # and goes to ELR; the instruction there raises an Illegal Execution State exception (EC 0x0E).
    regs, sym, _ = run_kernel(ILLEGAL_RETURN.format(spsr=spsr), machine)
    assert regs["x20"] == (EC_ILLEGAL_STATE << 26) | IL, f"ESR_EL1 = {regs['x20']:#x} for a return {why}"
    assert regs["x21"] == sym["target"], "ELR_EL1: the instruction that did not run"
    assert regs["x22"] == 0x6010_03C5, f"SPSR_EL1 = {regs['x22']:#x}: EL1h, IL set, Z and C from the SPSR"
    assert regs["x25"] == 0x200 and regs["x9"] == 0
    assert not regs["pstate"] & PSTATE_IL, "taking the exception clears PSTATE.IL"


@pytest.mark.parametrize("machine", MACHINES)
def test_a_kernel_that_handles_an_illegal_return_and_returns_legally_runs_on_exactly(machine):
    # Its handler fixes SPSR_EL1 and returns to `fixed`, which counts down and powers off. Every
    # instruction retires once: 3 + 5 (the illegal return) + 6 (handler) + 1 + 3 * 10 (loop) + 2.
    source = """    adr     x0, vectors
    msr     vbar_el1, x0
    adr     x1, target
    mov     x10, #10
    msr     elr_el1, x1
    mov     x1, #0x3c9
    msr     spsr_el1, x1
    eret
target:
    b       .
fixed:
    mov     x11, #0
loop:
    add     x11, x11, #1
    subs    x10, x10, #1
    b.ne    loop
    ldr     x0, =0x84000008
    hvc     #0
    .balign 0x800
vectors:
    .space  0x200
    mrs     x20, esr_el1
    adr     x1, fixed
    msr     elr_el1, x1
    mov     x1, #0x3c5               // EL1h, IL clear: without this the return restores IL
    msr     spsr_el1, x1
    eret
"""
    result = run_on(STAGE2[machine], image_from_program(assemble(source)))
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert result.registers["x20"] == (EC_ILLEGAL_STATE << 26) | IL and result.registers["x11"] == 10
    assert result.instructions == 3 + 5 + 6 + 1 + 3 * 10 + 2


@pytest.mark.parametrize("machine", ["board", "vm-stage2"])
def test_a_return_to_aarch32_stops_saying_that_vlab_cannot_run_it(machine):
    result = run_on(STAGE2[machine], image_from_program(assemble(SETUP + ILLEGAL_RETURN.format(spsr=0x10)
                                                                 + HANDLER + VECTORS)))
    assert result.reason is StopReason.ERROR and result.exception is None
    assert "AArch32" in result.message and "Unicorn" in result.message and "not an error of the guest" in result.message


# vlab's MRS/MSR, exception and TLB-fill hooks are registered straight with Unicorn's C library, not through its
# Python binding: what the binding did for an exception escaping a hook (stop, and raise it from
# emu_start) must still happen -- Ctrl-C in a notebook stops the guest instead of being lost in C.
def _interrupt(*_args):
    raise KeyboardInterrupt


@pytest.mark.parametrize("handler, instruction", [("sysreg_handler", "mrs x0, sctlr_el1"),
                                                  ("exception_handler", "svc #0")])
def test_an_interrupt_inside_a_trap_hook_stops_the_run_and_is_raised(handler, instruction):
    board = Board()
    load(board, image_from_program(assemble(f"    {instruction}\n    b .\n")))
    setattr(board.cpu, handler, _interrupt)
    with pytest.raises(KeyboardInterrupt):
        board.run(max_insns=1_000_000, timeout_s=30)


def test_an_interrupt_inside_the_tlb_fill_hook_stops_the_run_and_is_raised():
    from vlab.mmu import tlb_fill

    board = Board()
    load(board, image_from_program(assemble("    b .\n")))
    # vlab's own reads (the report of the stop) translate without the hook, and without interrupting.
    tlb_fill.install(board.cpu, _interrupt, reads=lambda va, _access: (va, 7))
    with pytest.raises(KeyboardInterrupt):
        board.run(max_insns=1_000_000, timeout_s=30)
