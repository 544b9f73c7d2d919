"""The interrupt path drawn from a run (vlab.viz.interrupt_path) and its widget: every step is one
the run recorded, and the counts are the run's own."""

import html

import ipywidgets
import pytest
from pictures import MAX_WIDTH_PT, diagram_size_pt

from vlab.arch.hcr import HCR
from vlab.guests import GUESTS
from vlab.hyp import VM
from vlab.machine.board import Board
from vlab.machine.loader import load
from vlab.viz.interrupt_path import EXIT, HARDWARE, NO_EXIT, board_path, vm_path
from vlab.viz.interrupt_widget import TICKS, InterruptWidget
from vlab.viz.widget_snapshot import snapshot_html


@pytest.fixture(scope="module")
def board():
    b = Board(ram_size=0x40_0000)
    load(b, GUESTS["ticks"].image())
    b.run(max_insns=1_000_000, timeout_s=20)
    return b


@pytest.fixture(scope="module", params=[HCR(0), HCR.TWI], ids=["no TWI", "TWI"])
def vm(request):
    v = VM.from_image(GUESTS["ticks"].image(), traps=request.param, ram_size=0x40_0000)
    v.run(max_insns=1_000_000, timeout_s=20)
    return v


def test_on_the_board_each_tick_is_taken_acknowledged_and_completed_in_order(board):
    for n in range(TICKS):
        path = board_path(board, n)
        ticks = [s.tick for s in path.steps]
        assert ticks == sorted(ticks) and len(path.steps) == 4
        assert {s.cost for s in path.steps} == {HARDWARE}
        assert "GICC_IAR = 27" in path.steps[2].what and "GICC_EOIR = 27" in path.steps[3].what
    assert board_path(board, 1).steps[0].tick > board_path(board, 0).steps[-1].tick  # one after the other
    assert "nothing exits" in board_path(board).counts()


def test_in_a_vm_the_timer_exits_once_and_the_guest_acknowledges_and_completes_without_exits(vm):
    for n in range(TICKS):
        path = vm_path(vm, n)
        assert [s.cost for s in path.steps] == [HARDWARE, EXIT, HARDWARE, NO_EXIT, NO_EXIT]
        ticks = [s.tick for s in path.steps]
        assert ticks == sorted(ticks)
        assert "GICH_LR0 = 0x" in path.steps[1].what and "virtual IRQ 27, HW" in path.steps[1].what
        assert "GICV_IAR = 27" in path.steps[3].what and "GICV_EOIR = 27" in path.steps[4].what
    path = vm_path(vm)
    assert path.exits == dict(vm.exits) and path.without_exits == dict(vm.gicv_accesses)
    assert path.distributor_exits == sum(1 for a in vm.mmio_trace if a.device == "gicd") > 0
    assert vm.gicv_accesses["GICV_IAR"] == vm.gicv_accesses["GICV_EOIR"] == vm.exits["IRQ"] == TICKS
    counts = path.counts()
    assert f"{path.distributor_exits} distributor accesses" in counts and f"{TICKS} physical interrupts" in counts
    assert f"{sum(vm.gicv_accesses.values())} accesses to the GIC CPU interface" in counts


def test_asking_for_an_interrupt_the_run_did_not_take_says_how_many_it_took(board, vm):
    with pytest.raises(ValueError, match=f"took {TICKS} interrupts: there is no interrupt {TICKS}"):
        board_path(board, TICKS)
    with pytest.raises(ValueError, match=f"vCPU0 took {TICKS} virtual timer interrupts"):
        vm_path(vm, TICKS)


def test_the_path_fits_a_projector_and_its_text_lists_every_step(board, vm):
    for path in (board_path(board), vm_path(vm)):
        width, _ = diagram_size_pt(path.diagram())
        assert width <= MAX_WIDTH_PT
        text = str(path)
        assert all(str(step) in text for step in path.steps)
        assert html.escape(str(path.steps[0])) in path._repr_html_()


def test_the_widget_runs_again_for_each_choice_and_refuses_what_ticks_s_does_not_do():
    w = InterruptWidget(where="board", tick=2)
    assert w.summary() == f"ticks.S on the board, interrupt 2 of {TICKS}: 4 steps"
    w.set(where="VM", twi=True, tick=3)
    assert w.summary() == f"ticks.S in a VM with TWI, interrupt 3 of {TICKS}: 5 steps"
    assert w.path.steps[0].tick > InterruptWidget(where="VM", tick=1).path.steps[0].tick
    assert w.text().startswith(w.summary()) and str(w.path) in w.text()
    with pytest.raises(ValueError, match="'board' or in a 'VM'"):
        w.set(where="cloud")
    assert w.where == "VM"  # a choice refused changes nothing
    with pytest.raises(ValueError, match=f"tick 1 to {TICKS}, not 0"):
        w.set(tick=0)


def test_the_widget_snapshot_shows_its_choice_and_the_path():
    w = InterruptWidget(where="VM", tick=2)
    w.widget
    w._ui.tick.value = 1  # a student's move of the slider, then the snapshot
    assert w.tick == 1
    saved = ipywidgets.Widget.get_manager_state(drop_defaults=False)["state"]
    page = snapshot_html(saved, w.widget.model_id)
    assert html.escape(w.summary()) in page and "interrupt 1 of 3" in page
    assert "GICV_EOIR" in page
