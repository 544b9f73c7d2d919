"""Specifications of vlab.viz: diagrams read off the board, and the machine stepper's logic without a browser."""

from __future__ import annotations

import re
import shutil

import graphviz
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from IPython.lib.pretty import pretty
from pictures import MAX_WIDTH_PT, diagram_size_pt

from vlab.asm import disassemble_one
from vlab.guests import GUESTS
from vlab.machine.board import Board, StopReason
from vlab.viz.board_diagram import address, board_diagram, memory_map, size
from vlab.viz.levels import board_levels, levels_diagram, levels_text
from vlab.viz.machine_view import PState
from vlab.viz.machine_widget import MachineWidget

SVC64 = 0x15  # ESR_ELx.EC for SVC executed in AArch64 state (Arm ARM D17.2.37)
LOWER_EL_AARCH64_SYNC = 0x400  # vector offset: synchronous exception from a lower EL using AArch64
QEMU_VIRT_BASES = {"flash": 0x0000_0000, "gicd": 0x0800_0000, "gicc": 0x0801_0000, "uart": 0x0900_0000,
                   "virtio": 0x0a00_0000, "ram": 0x4000_0000}  # QEMU hw/arm/virt.c memmap


def _numbers_in(text: str) -> set[int]:
    """Every hexadecimal number written in text (underscores allowed, as in 0x4000_0000)."""
    return {int(h.replace("_", ""), 16) for h in re.findall(r"0x[0-9a-fA-F_]+", text)}


# --- the board diagram and the memory map ------------------------------------------

@pytest.mark.parametrize("ram_size", [0x0800_0000, 0x0200_0000])
def test_board_diagram_shows_every_region_at_its_base_and_end_address(ram_size):
    board = Board(ram_size)
    shown = _numbers_in(board_diagram(board).source)
    for region in board.regions:
        assert region.base in shown, region
        assert region.base + region.size - 1 in shown, region


def test_board_diagram_follows_the_ram_size_instead_of_a_typed_in_map():
    small = board_diagram(Board(0x0200_0000)).source
    assert 0x41FF_FFFF in _numbers_in(small)  # 32 MiB from 0x4000_0000
    assert 0x47FF_FFFF not in _numbers_in(small)  # the default 128 MiB end is not drawn


def test_memory_map_lists_the_qemu_virt_regions_in_address_order():
    rows = memory_map(Board()).rows
    assert [r.base for r in rows] == sorted(r.base for r in rows)
    assert {r.name: r.base for r in rows} == QEMU_VIRT_BASES
    uart = next(r for r in rows if r.name == "uart")
    assert uart.device == "PL011" and uart.kind == "device"
    assert next(r for r in rows if r.name == "virtio").device == "VirtioMmioBus"
    assert "0x0900_0000" in str(memory_map(Board())) and "<table>" in memory_map(Board())._repr_html_()
    assert next(r for r in rows if r.name == "gicd").device == "GICv2 distributor"


def test_board_diagram_lists_what_qemu_virt_has_that_vlab_does_not_model():
    text = board_diagram(Board()).text
    for name, base in (("PL031", 0x0901_0000), ("PL061", 0x0903_0000), ("GICv2m", 0x0802_0000)):
        assert name in text and base in _numbers_in(text)
    assert "virtio-mmio" not in text.split("not modelled")[-1]  # modelled now: a region of its own
    assert "PPI 27" in board_diagram(Board()).source  # the timer's wire into the GIC


def test_sizes_and_addresses_are_written_the_way_the_course_writes_them():
    assert size(128 << 20) == "128 MiB" and size(4096) == "4 KiB" and size(12) == "12 bytes"
    assert size(3 << 30) == "3 GiB" and size(6144) == "6 KiB"
    assert address(0x0900_0000) == "0x0900_0000" and address(0x47FF_FFFF) == "0x47ff_ffff"


def test_diagrams_print_as_text_when_no_front_end_draws_them():
    diagram = board_diagram(Board())
    assert pretty(diagram) == diagram.text
    assert "ram" in diagram.text and "0x4000_0000" in diagram.text


def test_diagrams_fall_back_to_text_saying_what_to_install_when_dot_is_missing(monkeypatch):
    def no_dot(*args, **kwargs):
        raise graphviz.ExecutableNotFound(["dot"])

    monkeypatch.setattr(graphviz.Digraph, "_repr_mimebundle_", no_dot)
    bundle = board_diagram(Board())._repr_mimebundle_()
    assert list(bundle) == ["text/plain"]
    assert "0x4000_0000" in bundle["text/plain"] and "install Graphviz" in bundle["text/plain"]


# --- exception levels ----------------------------------------------------------------

def _node_line(source: str, el: int) -> str:
    """The DOT statement declaring node el<N>, attributes and (multi-line) label included."""
    return re.search(rf"^\tel{el} \[.*?\]$", source, re.S | re.M).group(0)


@pytest.mark.parametrize("current", [0, 1, 2, 3])
def test_levels_diagram_highlights_only_the_current_level(current):
    diagram = levels_diagram(current)
    for el in range(4):
        assert ("penwidth=3" in _node_line(diagram.source, el)) == (el == current)
    marked = [line for line in diagram.text.splitlines() if line.startswith("=>")]
    assert marked == [next(line for line in diagram.text.splitlines() if f"EL{current} " in line)]


def test_levels_diagram_names_who_runs_at_each_level_and_the_calls_between_them():
    source = levels_diagram().source
    for who in ("user programs", "OS kernel", "hypervisor", "firmware"):
        assert who in source
    for call in ("SVC", "HVC", "SMC", "ERET"):
        assert call in source
    assert "penwidth=3" not in source  # no current level given: nothing highlighted


def test_the_levels_put_kvms_host_kernel_at_el1_and_only_with_vhe_at_el2():
    # Armv8.0 KVM: the host Linux at EL1, only the world switch at EL2; VHE (Armv8.1) moves the host to EL2
    lines = {int(line.split()[0][2]): line for line in levels_text().splitlines()}
    assert "KVM's host Linux without VHE" in lines[1]
    assert "KVM" in lines[2] and "with VHE" in lines[2] and "Xen, KVM" not in lines[2]


def test_board_levels_follow_the_cpu_from_el1_to_el0():
    m = MachineWidget.for_guest("syscall")
    assert "penwidth=3" in _node_line(board_levels(m.board).source, 1)
    m.step_until(lambda board: board.cpu.el == 0)
    assert "penwidth=3" in _node_line(board_levels(m.board).source, 0)
    assert "penwidth=3" not in _node_line(board_levels(m.board).source, 1)


# --- PSTATE decoding -----------------------------------------------------------------

@given(el=st.integers(0, 3), sp=st.integers(0, 1), nzcv=st.integers(0, 15), daif=st.integers(0, 15))
def test_pstate_fields_decode_from_the_spsr_layout(el, sp, nzcv, daif):
    p = PState((nzcv << 28) | (daif << 6) | (el << 2) | sp)
    assert p.el == el and p.sp == sp
    assert p.mode == f"EL{el}{'h' if sp else 't'}"
    assert [c.isupper() for c in p.nzcv] == [bool(nzcv >> (3 - i) & 1) for i in range(4)]
    assert [c.isupper() for c in p.daif] == [bool(daif >> (3 - i) & 1) for i in range(4)]


# --- the machine stepper -------------------------------------------------------------

def test_stepping_the_syscall_guest_to_its_svc_moves_from_el0_to_el1_and_shows_svc64():
    m = MachineWidget.for_guest("syscall")
    m.step_until(lambda board: board.cpu.el == 0)
    assert m.view.el == 0 and m.view.pstate.mode == "EL0t"
    m.step_to_exception()
    view = m.view
    assert view.el == 1 and view.pstate.mode == "EL1h"
    taken = view.exceptions[-1]
    assert taken.from_el == 0 and taken.syndrome.ec == SVC64 and taken.syndrome.fields() == {"imm16": 0}
    assert view.system["ESR_EL1"] == (SVC64 << 26) | (1 << 25)  # EC, IL = 1 (32-bit instruction), imm16 = 0
    assert taken.offset == LOWER_EL_AARCH64_SYNC
    assert view.registers["pc"] == view.system["VBAR_EL1"] + LOWER_EL_AARCH64_SYNC
    elr = view.system["ELR_EL1"]
    assert disassemble_one(m.board.read_memory(elr - 4, 4), elr - 4).mnemonic == "svc"  # ELR: after the SVC
    assert PState(view.system["SPSR_EL1"]).mode == "EL0t"  # the interrupted PSTATE
    assert "SVC64" in m.text() and "imm16=0x0" in m.text() and "VBAR_EL1+0x400" in m.text()


def test_eret_from_the_system_call_returns_to_elr_at_el0_with_the_byte_count():
    m = MachineWidget.for_guest("syscall")
    m.step_to_exception()
    elr = m.view.system["ELR_EL1"]
    m.step_until(lambda board: board.cpu.el == 0)
    expected = GUESTS["syscall"].expected_uart
    assert m.board.cpu.pc == elr and m.board.cpu.x(0) == len(expected)
    assert m.view.console == expected


def test_widget_buttons_step_run_and_reset_the_board_and_redraw_the_panes():
    m = MachineWidget.for_guest("syscall")
    m.widget  # build the front-end; no browser is needed to click
    controls = m.controls
    controls.buttons["step"].click()
    assert m.board.cpu.instructions == 1 and "1 instructions" in controls.panes["status"].value
    for _ in range(100):
        if "SVC64" in controls.panes["exceptions"].value:
            break
        was_el0 = "<b>EL0</b>" in controls.panes["status"].value
        controls.buttons["step"].click()
    assert was_el0 and "<b>EL1</b>" in controls.panes["status"].value
    assert "SVC64" in controls.panes["exceptions"].value and "imm16=0x0" in controls.panes["exceptions"].value
    controls.buttons["run"].click()
    assert GUESTS["syscall"].expected_uart.strip() in controls.panes["console"].value
    assert "powered_off" in controls.panes["status"].value
    controls.buttons["reset"].click()
    assert m.board.cpu.instructions == 0 and m.board.cpu.pc == m.image.entry
    assert "nothing printed yet" in controls.panes["console"].value


def test_run_n_button_runs_the_count_typed_in():
    m = MachineWidget.for_guest("hello")
    m.widget
    m.controls.count.value = 7
    m.controls.buttons["run_n"].click()
    assert m.board.cpu.instructions == 7


def test_code_view_marks_the_instruction_at_pc_with_its_source_line_and_label():
    m = MachineWidget.for_guest("hello")
    current = [line for line in m.view.code if line.current]
    assert len(current) == 1 and current[0].address == m.image.entry
    assert current[0].label == "_start" and current[0].source.startswith("ldr")
    assert current[0].text == disassemble_one(m.board.read_memory(m.image.entry, 4), m.image.entry).text
    m.step()
    (current,) = [line for line in m.view.code if line.current]
    assert current.address == m.image.entry + 4 and current.source.startswith("adr")
    assert "=> " + f"{current.address:#010x}" in m.view.code_text()


def test_code_view_says_so_when_pc_is_where_there_is_no_memory():
    m = MachineWidget.for_source("ldr x0, =0x20000000\nbr x0\n")
    result = m.run()
    assert result.reason is StopReason.EXCEPTION and result.pc == 0x2000_0000
    (line,) = m.view.code
    assert line.current and line.word is None and "no memory" in line.text


def test_a_step_reports_exactly_the_registers_it_changed():
    m = MachineWidget.for_guest("syscall")
    m.step_until(lambda board: board.cpu.el == 0)
    assert disassemble_one(m.board.read_memory(m.board.cpu.pc, 4), m.board.cpu.pc).text == "mov x0, #1"
    m.step()
    assert m.changed == {"x0", "pc"}
    assert 'background:#ffe9a8"><b>x0</b>' in m.view.registers_html(m.changed)


def test_step_until_gives_up_after_its_limit_and_says_so():
    m = MachineWidget.for_guest("hello")
    m.step_until(lambda board: False, limit=5)
    assert m.board.cpu.instructions == 5 and "gave up after 5 steps" in m.status


def test_run_is_bounded_by_the_run_budget_so_a_click_never_hangs():
    m = MachineWidget.for_source("spin: b spin\n", run_budget=1_000)
    result = m.run()
    assert result.reason is StopReason.BUDGET and result.instructions == 1_000


@settings(max_examples=20, deadline=None)
@given(k=st.integers(1, 60))
def test_k_single_steps_leave_the_same_registers_as_running_k_instructions(k):
    stepped = MachineWidget.for_guest("syscall")
    stepped.step(k)
    ran = MachineWidget.for_guest("syscall")
    ran.run(k)
    assert stepped.view.registers == ran.view.registers
    assert stepped.view.exceptions == ran.view.exceptions


def test_without_a_front_end_the_widget_prints_registers_code_console_and_exceptions():
    m = MachineWidget.for_guest("syscall")
    m.run()
    text = m.text()
    for needle in ("x30", "pc", "pstate", "=>", "ESR_EL1", GUESTS["syscall"].expected_uart.strip(), "SVC64"):
        assert needle in text
    assert pretty(m) == text
    bundle = m._repr_mimebundle_()
    assert bundle["text/plain"] == text and "application/vnd.jupyter.widget-view+json" in bundle
    assert "EL1" in repr(m) and "powered_off" in repr(m)


# --- what the machine widget shows of registers, exception registers and data ------------

def test_the_text_view_marks_the_registers_a_step_changed_as_the_html_view_does():
    m = MachineWidget.for_guest("syscall")
    m.step()  # ldr x0, =0x40100000: x0 and pc change
    marked = set(re.findall(r"\b(x\d+|sp|pc|pstate) +[0-9a-f]+\*", m.text()))
    assert marked == m.changed == {"x0", "pc"}
    assert "changed by the last" in m.text()
    m.reset()
    assert "*" not in m.view.registers_text(m.changed)


def test_at_reset_esr_el1_says_no_exception_was_taken_and_after_an_svc_it_decodes_it():
    m = MachineWidget.for_guest("syscall")
    assert "ESR_EL1 0x00000000 = no exception taken yet" in m.text() and "UNKNOWN" not in m.text()
    m.step_to_exception()
    assert f"ESR_EL1 {(SVC64 << 26) | (1 << 25):#010x} = SVC64" in m.text()


def _rows(m: MachineWidget) -> dict[int, str]:
    return {line.address: line.text for line in m.view.code}


def test_the_code_pane_shows_the_literal_pool_and_padding_as_data_not_as_instructions():
    m = MachineWidget.for_guest("syscall")
    program = m.program
    m.board.cpu.pc = program.address_of("unexpected") + 0x10  # its hvc: the pool, then the end of the program
    rows = _rows(m)
    pool = [span for span in program.data if span.unit == 8]
    assert pool and all(rows[span.address] == ".quad 0x84000008" for span in pool[-1:])
    assert not [text for text in rows.values() if text.startswith(("ld1", "udf"))], rows
    assert rows[program.end].startswith(".zero")  # memory past the program, never written
    # every instruction row is one the source wrote, every data row is in a span the assembler recorded
    # or past the program's end
    for line in m.view.code:
        if line.data:
            assert line.address >= program.end or any(s.address <= line.address < s.address + s.size
                                                       for s in program.data), line
        else:
            assert program.line_at(line.address) is not None, line


def test_the_code_pane_shows_strings_as_text_and_still_disassembles_the_word_at_pc():
    m = MachineWidget.for_guest("syscall")
    greeting = m.program.address_of("greeting")
    m.board.cpu.pc = greeting - 4
    rows = _rows(m)
    assert rows[greeting] == '.ascii "Hell"' and rows[greeting + 4] == '.ascii "o fr"'
    m.board.cpu.pc = greeting + 8  # a guest that jumped into its data: the CPU executes the word as code
    (current,) = [line for line in m.view.code if line.current]
    assert current.text == disassemble_one(m.board.read_memory(greeting + 8, 4), greeting + 8).text


def test_an_elf_files_symbols_and_mapping_symbols_say_where_its_data_is():
    from vlab.guests.build import COMPILER, build

    if shutil.which(COMPILER) is None:
        pytest.skip(f"SKIPPED: {COMPILER} is missing -- install gcc-aarch64-linux-gnu (make test does)")
    elf = build(GUESTS["syscall"].path)  # GNU as, not vlab's assembler: the ELF's own symbol table speaks
    m = MachineWidget.for_file(elf)
    symbols = {name: address for address, name in m.code_map.labels.items()}
    assert {"unexpected", "greeting", "vectors"} <= set(symbols)
    m.board.cpu.pc = symbols["unexpected"] + 0x10  # its last instruction: GNU as's literal pool follows
    rows = _rows(m)
    assert ".word 0x84000008" in rows.values(), rows  # the pool, marked $d in the symbol table
    assert not [text for text in rows.values() if text.startswith("ld1")], rows



_STATEMENTS = st.one_of(
    st.just("nop"), st.just("add x1, x1, #1"),
    st.integers(1 << 32, (1 << 64) - 1).map(lambda v: f"ldr x2, ={v:#x}"),  # too wide for a MOV: a pool slot
    st.integers(0x10000, 0xFFFF_FFFF).map(lambda v: f"ldr w3, ={v:#x}"),
    st.integers(0, (1 << 64) - 1).map(lambda v: f".quad {v:#x}"), st.integers(0, (1 << 32) - 1).map(lambda v: f".word {v:#x}"),
    st.integers(0, 255).map(lambda v: f".byte {v}"), st.text("abc XYZ!", min_size=1, max_size=9).map(lambda t: f'.ascii "{t}"'),
    st.integers(0, 12).map(lambda n: f".space {n}"), st.sampled_from([".balign 4", ".balign 8", ".balign 16"]),
)


@settings(max_examples=60)
@given(st.lists(_STATEMENTS, min_size=1, max_size=14))
def test_a_listing_tiles_the_program_and_each_data_row_assembles_back_to_its_bytes(statements):
    from vlab.asm import assemble
    from vlab.viz.code_map import CodeMap, listing

    # instructions must stay word-aligned: realign after data, as a programmer would
    source = "\n".join(["nop", *(s if s.startswith(".") else f".balign 4\n{s}" for s in statements)])
    program = assemble(source)
    rows = listing(program.code, program.base, CodeMap.of_program(program))
    assert [r.address for r in rows] == [program.base, *(r.address + r.size for r in rows[:-1])]
    assert rows[-1].address + rows[-1].size == program.end
    for row in rows:
        inside = [s for s in program.data if s.address <= row.address < s.address + s.size]
        assert row.data == bool(inside), row
        bytes_here = program.code[row.address - program.base:row.address - program.base + row.size]
        if row.data:  # within one span, and the directive shown says exactly what the bytes are
            assert row.address + row.size <= inside[0].address + inside[0].size
            assert assemble(row.text.replace(".zero", ".space")).code == bytes_here, row
        else:
            assert not row.text.startswith(("udf", ".")), row


# --- every picture fits a projector ----------------------------------------------------------

def _every_diagram():
    from vlab.hyp import VM
    from vlab.viz.levels import BARE_BOARD, IN_A_VM
    from vlab.viz.interrupt_widget import InterruptWidget
    from vlab.viz.run_loop import run_loop_diagram

    for ram_size in (0x10_0000, 0x0800_0000, 0x4000_0000):
        yield f"board {ram_size:#x}", board_diagram(Board(ram_size))
    for el in (None, 0, 1, 2, 3):
        for here in (None, BARE_BOARD, IN_A_VM):
            yield f"levels EL{el}", levels_diagram(el, here)
    yield "run loop", run_loop_diagram(VM())
    for where in ("board", "VM"):
        yield f"interrupt path, {where}", InterruptWidget(where=where).path.diagram()


def test_every_picture_the_course_draws_is_at_most_1000_pt_wide():
    sizes = {name: diagram_size_pt(d) for name, d in _every_diagram()}
    assert not {name: size for name, size in sizes.items() if size[0] > MAX_WIDTH_PT}, sizes
