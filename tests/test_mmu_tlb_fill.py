"""The Unicorn bridge: a guest with its own page tables, translated by vlab's walks through a stage 2.

The stage 2 here is built by the test itself (no hypervisor): guest "physical" pages are host
frames of the board's RAM, either the same addresses (identity) or shuffled (scattered).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlab.arch.esr import ExceptionClass
from vlab.asm import assemble
from vlab.machine.board import Board, StopReason
from vlab.machine.loader import image_from_program, load
from vlab.mmu import tlb_fill
from vlab.mmu.faults import Access, Fault, FaultKind
from vlab.mmu.memory import BoardMemory
from vlab.mmu.tables import PAGE, FrameAllocator, TableBuilder
from vlab.mmu.walk import Regime, walk

RAM_BASE, RAM = 0x4000_0000, 0x40_0000  # the board's RAM: 4 MB of host frames
GUEST_RAM = 0x20_0000  # the guest's IPA space: 2 MB at RAM_BASE, the block its own tables map
FRAMES = 0x30_0000  # host frames the guest's pages may land on; stage-2 tables above them
UART = 0x0900_0000
MESSAGE = "hello through my own page tables\n"

# The guest's stage 1 (T0SZ 25: three levels from L1), built by the guest in its "physical" memory:
#   L1 0x40100000 [0] -> L2 0x40103000 [0x48] = 2 MB device block at the UART
#                 [1] -> L2 0x40101000 [0]    = 2 MB normal block, identity (code, tables)
#                 [2] -> L2 0x40102000 [0] -> L3 0x40104000 [0] = the page holding `msg`
# and it prints `msg` through VA 0x8000_0000, the window only its own level-3 page provides.
GUEST = f"""
    ldr x1, =0x40100000
    mov x2, x1
    ldr x3, =0x40105000
zero:
    str xzr, [x2], #8
    cmp x2, x3
    b.lo zero
    ldr x2, =0x40103003
    str x2, [x1]
    ldr x2, bad_l1_1
    cbnz x2, store_l1_1
    ldr x2, =0x40101003
store_l1_1:
    str x2, [x1, #8]
    ldr x2, =0x40102003
    str x2, [x1, #16]
    ldr x3, =0x40103000
    ldr x2, =0x09000405
    str x2, [x3, #0x240]
    ldr x3, =0x40101000
    ldr x2, =0x40000701
    str x2, [x3]
    ldr x3, =0x40102000
    ldr x2, =0x40104003
    str x2, [x3]
    adr x0, msg
    and x2, x0, #0xfffffffffffff000
    ldr x4, =0x703
    orr x2, x2, x4
    ldr x3, =0x40104000
    str x2, [x3]
    dsb sy
    ldr x2, =0xff
    msr mair_el1, x2
    ldr x2, =0x200803519
    msr tcr_el1, x2
    msr ttbr0_el1, x1
    isb
    mrs x2, sctlr_el1
    orr x2, x2, #1
turn_on:
    msr sctlr_el1, x2
    isb
    and x0, x0, #0xfff
    ldr x5, =0x80000000
    add x0, x0, x5
    ldr x6, ={UART:#x}
print:
    ldrb w7, [x0], #1
    cbz w7, done
    str w7, [x6]
    b print
done:
    ldr x0, =0x84000008
    hvc #0
    .balign 8
bad_l1_1:
    .quad 0
msg:
    .asciz "{MESSAGE[:-1]}\\n"
"""
IMAGE = image_from_program(assemble(GUEST, RAM_BASE))
BAD_L1_1 = IMAGE.program.symbols["bad_l1_1"]
ZEROING = 3 * 5 * PAGE // 8  # the guest's loop clearing its five tables: three instructions a word


class Stage2:
    """A stage 2 written into the board's RAM: the guest's IPAs onto host frames, the UART onto itself."""

    def __init__(self, board: Board, seed: int | None):
        self.memory = BoardMemory(board)
        self.regime = Regime.stage2(24, 1)
        self.tables = TableBuilder(self.memory, self.regime, FrameAllocator(RAM_BASE + FRAMES, RAM - FRAMES))
        frames = FrameAllocator(RAM_BASE, FRAMES, seed)  # seed None: in order, so IPA == PA
        for ipa in range(RAM_BASE, RAM_BASE + GUEST_RAM, PAGE):
            self.tables.map(ipa, RAM_BASE + (ipa - RAM_BASE) if seed is None else frames.allocate(), PAGE, ap=3)
        self.tables.map(UART, UART, PAGE, ap=3, xn=True)

    def host(self, ipa: int) -> int:
        return walk(self.memory, self.regime, self.tables.root, ipa).output


def vm_board(seed: int | None, bad_l1_1: int = 0) -> tuple[Board, Stage2]:
    """A board whose core translates through vlab's walks, the guest loaded at its IPAs."""
    board = Board(ram_size=RAM)
    stage2 = Stage2(board, seed)
    for segment in IMAGE.segments:
        data = segment.data + bytes(segment.size - len(segment.data))
        for offset in range(0, len(data), PAGE):  # page by page: consecutive IPAs need not be consecutive PAs
            ipa = segment.address + offset
            board.write_memory(stage2.host(ipa), data[offset:offset + PAGE - ipa % PAGE])
    board.write_memory(stage2.host(BAD_L1_1), bad_l1_1.to_bytes(8, "little"))
    board.cpu.pc = IMAGE.entry
    tlb_fill.install(board.cpu, tlb_fill.GuestTranslation(board.cpu, stage2.memory, stage2.regime, stage2.tables.root))
    return board, stage2


def run_to(board: Board, label: str) -> None:
    """Run the guest until it is about to execute the instruction at `label` (after its zeroing loop)."""
    address = IMAGE.program.symbols[label]
    board.run(max_insns=ZEROING)  # fewer than the instructions before any label after the loop
    while board.cpu.pc != address:
        assert board.step().reason is StopReason.STOPPED


def test_the_guest_prints_the_same_on_the_bare_board_and_through_identity_and_scattered_stage2():
    bare = Board(ram_size=RAM)
    load(bare, IMAGE)
    expected = bare.run(max_insns=100_000)
    assert expected.reason is StopReason.POWERED_OFF and expected.uart == MESSAGE
    for seed in (None, 1, 2):
        board, stage2 = vm_board(seed)
        got = board.run(max_insns=100_000)
        assert (got.reason, got.uart) == (expected.reason, expected.uart), (seed, got.message)
        assert got.instructions == expected.instructions
        moved = stage2.host(0x4010_0000) != 0x4010_0000  # where the guest's L1 table really is
        assert moved == (seed is not None)


def test_a_stage2_hole_under_the_guests_l1_table_is_an_s1ptw_abort_for_the_hypervisor():
    board, stage2 = vm_board(seed=3)
    stage2.tables.set_page(0x4010_0000, None)  # before the guest writes its L1 table there
    got = board.run(max_insns=100_000)
    exc = got.exception
    # The guest's first store into 0x4010_0000 faults at stage 2 (its MMU is still off: no S1PTW).
    assert got.reason is StopReason.EXCEPTION and exc.target_el == 2 and exc.ipa == 0x4010_0000
    assert exc.syndrome.ec is ExceptionClass.DABT_LOWER and exc.far == 0x4010_0000
    fields = exc.syndrome.fields()
    assert (fields["DFSC"], fields["WnR"], fields["S1PTW"]) == (0x07, 1, 0)  # translation, level 3
    assert "stage-2 translation fault at level 3" in got.message


def test_only_a_stage2_data_abort_off_the_table_walk_carries_the_instruction_syndrome():
    store = int.from_bytes(assemble("    str w7, [x6]\n", 0).code[:4], "little")  # ISV-describable
    hole = Fault(FaultKind.TRANSLATION, 2, 3, UART, "test", ipa=UART)
    fields = tlb_fill.syndrome(hole, Access.WRITE, 1, store).fields()
    assert (fields["ISV"], fields["SAS"], fields["SRT"], fields["SF"], fields["WnR"]) == (1, 2, 7, 0, 1)
    on_walk = Fault(FaultKind.TRANSLATION, 2, 3, UART, "test", s1ptw=True, ipa=UART)
    fields = tlb_fill.syndrome(on_walk, Access.WRITE, 1, store).fields()
    assert (fields["ISV"], fields["S1PTW"], fields["WnR"]) == (0, 1, 1)  # WnR: the store's, not the walk's read
    guest = tlb_fill.syndrome(Fault(FaultKind.TRANSLATION, 1, 3, UART, "test"), Access.WRITE, 1, store)
    assert guest.ec is ExceptionClass.DABT_CURRENT and guest.fields()["ISV"] == 0  # the guest kernel decodes itself


def test_a_stage2_hole_under_a_guest_table_found_during_its_walk_sets_s1ptw():
    board, stage2 = vm_board(seed=4)
    run_to(board, "turn_on")  # tables written, MMU about to be turned on
    stage2.tables.set_page(0x4010_1000, None)  # the L2 table mapping the guest's code
    tlb_fill.flush(board.cpu)
    got = board.run(max_insns=100_000)
    exc = got.exception
    assert exc.target_el == 2 and exc.ipa == 0x4010_1000
    assert exc.syndrome.ec is ExceptionClass.IABT_LOWER  # fetching the next instruction needs the walk
    assert exc.syndrome.fields()["S1PTW"] == 1 and "during the stage-1 table walk" in got.message


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.integers(1, 2**64 - 1),
                 st.sampled_from([0x4010_0001 | 1 << 1,  # the L1 table itself as the L2: a loop
                                  0x4000_0001,  # a 1 GB block at a misaligned output address
                                  0x0000_1001 | 1 << 45,  # an output beyond the 40-bit IPS
                                  0x4010_1003 | 1 << 62])))  # the code's table made read-only
def test_malformed_guest_tables_end_in_a_guest_outcome_never_a_python_exception(bad):
    board, _ = vm_board(seed=5, bad_l1_1=bad)
    got = board.run(max_insns=50_000, timeout_s=5)
    assert got.reason is not StopReason.ERROR, got.message
    if got.reason is StopReason.EXCEPTION:
        assert got.message and got.exception is not None


def test_a_translate_that_raises_stops_the_run_with_the_error_instead_of_escaping_into_unicorn():
    board = Board(ram_size=RAM)
    load(board, IMAGE)

    def broken(va: int, access: Access):
        raise KeyError(va)

    tlb_fill.install(board.cpu, broken)
    got = board.run(max_insns=1000)
    assert got.reason is StopReason.ERROR and "address translation of" in got.message and "KeyError" in got.message


@pytest.mark.parametrize("tcr, why", [(0x200803519 | 1 << 14, "TG0"), (0x200803519 | 1 << 7, "EPD0")])
def test_an_unusable_tcr_is_a_level_0_translation_fault_for_the_guest(tcr, why):
    board, _ = vm_board(seed=None)
    run_to(board, "turn_on")
    board.cpu.write_sysreg("TCR_EL1", tcr)
    got = board.run(max_insns=1000)
    assert got.exception.target_el == 1 and got.exception.syndrome.fields()["IFSC"] == 0x04
    assert why in got.message


@pytest.mark.parametrize("layout", ["contiguous", "scattered", "demand"])
@pytest.mark.parametrize("access", ["ldp x1, x2, [x0]", "stp w1, w2, [x0]", "ldr x1, [x0], #16",
                                    "str x1, [x0, #0]!", "ldr q1, [x0]", "st1 {v1.16b}, [x0]", "ldrb w1, [x0]"])
def test_a_stage2_fault_reports_the_exact_ipa_and_far_for_every_form_of_access(layout, access):
    # IPA 0x1000_0123 is nothing (a VM has no flash): the exit's IPA, HPFAR and the FAR the guest then
    # gets are the address the instruction accessed, not the start of Unicorn's 1 KB page.
    from vlab.hyp import VM

    source = f"""    adr     x9, vectors
    msr     vbar_el1, x9
    ldr     x0, =0x10000123
    {access}
    b       .
    .balign 0x800
vectors:
    .space  0x200
    mrs     x21, far_el1
    ldr     x0, =0x84000008
    hvc     #0
"""
    vm = VM.from_source(source, stage2=layout)
    result = vm.run(max_insns=1_000)
    assert result.reason is StopReason.POWERED_OFF, result.message
    (exit,) = [r.exit for r in vm.trap_log if r.exit is not None and r.exit.ec is ExceptionClass.DABT_LOWER]
    assert exit.ipa == exit.far == 0x1000_0123 and exit.hpfar == 0x10000 << 4
    assert result.registers["x21"] == 0x1000_0123, "the external abort the guest gets has the same FAR"
