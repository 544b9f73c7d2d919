"""The trap-controls widget and the run-loop diagram: what they show follows the VM's real behaviour."""

import html
import re

import pytest

from vlab.arch.esr import ExceptionClass
from vlab.guests import GUESTS
from vlab.hyp import HCR, SUPPORTED_TRAPS, VM
from vlab.viz.run_loop import run_loop_diagram
from vlab.viz.trap_widget import LOG_LINES, LOG_PANE_LINES, TrapWidget


def test_without_traps_only_device_accesses_and_hypercalls_exit():
    t = TrapWidget("sensitive")
    assert set(t.result.exits) <= {"DABT_LOWER", "HVC64", "IRQ"}
    assert t.result.uart == GUESTS["sensitive"].expected_uart


@pytest.mark.parametrize("bit, kind", [(HCR.TVM, "SYS64"), (HCR.TRVM, "SYS64"), (HCR.TID3, "SYS64"),
                                       (HCR.TWI, "WFX")])
def test_ticking_a_control_makes_its_instructions_exit_and_changes_nothing_else(bit, kind):
    t = TrapWidget("sensitive")
    t.widget  # build the front-end, then tick the box as a student would
    t.controls.boxes[bit].value = True
    assert t.traps == bit and t.result.exits.get(kind, 0) > 0
    assert t.result.uart == GUESTS["sensitive"].expected_uart
    assert bit.name in t.controls.panes["summary"].value and kind in t.controls.panes["exits"].value
    t.controls.boxes[bit].value = False
    assert t.result.exits.get(kind, 0) == 0


def test_more_traps_never_mean_fewer_exits_and_efficiency_is_native_over_trapped():
    few, many = TrapWidget("sensitive", HCR.TVM), TrapWidget("sensitive", SUPPORTED_TRAPS)
    assert many.result.trapped > few.result.trapped
    assert many.efficiency == pytest.approx(many.result.native / many.result.trapped)
    assert many.result.native + many.result.trapped == many.result.instructions


def test_choosing_another_guest_runs_it():
    t = TrapWidget("hello")
    t.widget
    t.controls.guest.value = "syscall"
    assert t.result.uart == GUESTS["syscall"].expected_uart and "syscall.S" in t.text()


def test_runs_started_from_code_tick_the_boxes_they_used_and_run_once(monkeypatch):
    t = TrapWidget("sensitive", HCR.TVM | HCR.TWI)
    t.widget
    runs = []
    monkeypatch.setattr(VM, "run", lambda vm, *a, _run=VM.run, **k: runs.append(vm.traps) or _run(vm, *a, **k))
    t.set_traps(HCR.TRVM | HCR.TSC)
    assert runs == [HCR.TRVM | HCR.TSC]
    assert {bit for bit, box in t.controls.boxes.items() if box.value} == {HCR.TRVM, HCR.TSC}
    t.set_guest("hello")
    assert t.controls.guest.value == "hello" and len(runs) == 2
    t.controls.boxes[HCR.TWI].value = True  # and the boxes still work afterwards
    assert runs[-1] == HCR.TRVM | HCR.TSC | HCR.TWI and len(runs) == 3


def test_text_view_has_summary_exits_and_the_trap_log():
    text = TrapWidget("sensitive", HCR.TWI).text()
    assert "WFX" in text and "wfi" in text and "trap log:" in text and "UART:" in text


def test_unknown_guest_is_refused_with_the_list():
    with pytest.raises(KeyError, match="hello"):
        TrapWidget("nope")


def test_run_loop_diagram_is_drawn_from_the_dispatch_table():
    vm = VM()
    def my_handler(vcpu, exit):
        return "mine"

    vm.set_handler(ExceptionClass.SYS64, my_handler)
    diagram = run_loop_diagram(vm)
    assert "my_handler" in diagram.text and "my_handler" in diagram.source
    for ec in vm.handlers:
        assert ec.name in diagram.text


def _cells(html_text: str, tag: str = "td") -> list[list[str]]:
    """The text of the cells of each table row that has `tag` cells (td: data, th: headings)."""
    rows = (re.findall(rf"<{tag}[^>]*>(.*?)</{tag}>", row) for row in re.findall(r"<tr>(.*?)</tr>", html_text))
    return [row for row in rows if row]


def test_the_exits_pane_puts_each_class_and_its_count_on_one_line():
    t = TrapWidget("sensitive", SUPPORTED_TRAPS)
    t.widget
    pane = t.controls.panes["exits"].value
    rows = _cells(pane)
    assert {kind: int(count.replace(",", "")) for kind, count in rows} == t.result.exits
    assert pane.count("white-space:nowrap") == 2 * len(rows)  # neither a name nor a count may wrap


def test_the_trap_log_pane_is_a_table_of_columns_that_do_not_wrap_in_a_pane_that_scrolls():
    t = TrapWidget("sensitive", SUPPORTED_TRAPS)
    t.widget
    pane = t.controls.panes["log"].value
    assert "overflow:auto" in pane and "max-height" in pane
    assert _cells(pane, "th") == [["tick", "vCPU", "class", "address", "instruction", "served", "action"]]
    rows = _cells(pane)
    log = list(t.vm.trap_log)
    assert len(rows) == min(len(log), LOG_PANE_LINES)
    for row, record in zip(rows, log):
        assert html.unescape(row[2]) == record.kind and row[5] == record.served and html.unescape(row[6]) == record.action
        if record.exit is not None:
            assert row[3] == f"{record.exit.address:#x}" and html.unescape(row[4]) == record.exit.instruction
        else:
            assert row[3] == row[4] == ""  # an interrupt: no instruction caused it
    assert pane.count("white-space:nowrap") == 7 * (len(rows) + 1)


def test_the_text_trap_log_lines_up_its_columns_under_their_headings():
    t = TrapWidget("sensitive", SUPPORTED_TRAPS)
    lines = t.log_text().splitlines()
    heading, rows = lines[0], lines[1:-1]
    starts = [heading.index(h) for h in ("class", "address", "instruction", "served", "action")]
    for line, record in zip(rows, t.vm.trap_log):
        assert line[starts[0]:].startswith(record.kind) and line[starts[4]:] == record.action
        assert line[starts[3]:].startswith(record.served)
        if record.exit is not None:
            assert line[starts[1]:].startswith(f"{record.exit.address:#x}")
            assert line[starts[2]:].startswith(record.exit.instruction)
    assert lines[-1].strip() == f"... {len(t.vm.trap_log) - LOG_LINES:,} more"


def test_one_more_trap_log_column_is_one_more_entry_in_the_column_table(monkeypatch):
    from vlab.viz import trap_widget

    vmid = trap_widget.LogColumn("VM", lambda r: "vm1")
    monkeypatch.setattr(trap_widget, "LOG_COLUMNS", (*trap_widget.LOG_COLUMNS, vmid))
    t = TrapWidget("sensitive", HCR.TWI)
    assert t.log_text().splitlines()[0].endswith("VM") and t.log_text().splitlines()[1].endswith("vm1")
    assert _cells(t.log_html(), "th")[0][-1] == "VM"
