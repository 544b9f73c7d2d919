"""Chapter 6's pictures and widget: drawn from the structures' own data, lit step by step, driven
through their controls, and never wider than a projector's 1,000 pt."""

from __future__ import annotations

import pytest
from pictures import MAX_WIDTH_PT, diagram_size_pt

from vlab.hyp import type1, type2, vhe
from vlab.hyp.hypervisors import STRUCTURES, structure_class
from vlab.hyp.type_costs import EXIT_TYPES
from vlab.viz.exit_path_widget import ExitPathWidget
from vlab.viz.hyp_types import LIT, NOW, layer_stacks, path_diagram

PATHS = [type1.HYPERVISOR_PATH, type1.DOM0_PATH, type2.KERNEL_PATH, type2.IN_KERNEL_DEVICE, type2.VMM_PATH,
         vhe.KERNEL_PATH, vhe.IN_KERNEL_DEVICE, vhe.VMM_PATH]


def test_the_layer_stacks_show_each_structures_layers_and_fit_a_projector():
    picture = layer_stacks()
    for name in STRUCTURES:
        assert all(layer in picture.source for layer in structure_class(name).layers)
    assert "dom0" in picture.source and "E2H" in picture.source
    assert diagram_size_pt(picture)[0] <= MAX_WIDTH_PT


@pytest.mark.parametrize("path", PATHS, ids=lambda p: f"{p.structure}-{p.route}")
def test_every_path_lit_at_every_step_fits_a_projector(path):
    for lit in (1, len(path.steps)):
        assert diagram_size_pt(path_diagram(path, lit))[0] <= MAX_WIDTH_PT


def test_the_lit_steps_are_coloured_the_current_one_apart_and_the_rest_greyed():
    source = path_diagram(type2.VMM_PATH, 3).source
    assert source.count(NOW) == 1 and NOW in source.split("s3 [")[1].split("]")[0]
    assert LIT not in source.split("s4 [")[1].split("]")[0]  # a later step is not lit
    assert "world switch" in source.split("s2 [")[1].split("]")[0]


@pytest.fixture(scope="module")
def widget():
    return ExitPathWidget("type2", "hypercall", iterations=60, repeats=1)


def test_the_widget_prints_the_path_its_measurement_its_model_and_a_whole_run_without_a_front_end(widget):
    text = widget.text()
    assert text.splitlines()[0] == widget.summary() and "step 1 of 5 lit" in text
    assert "measured now, in vlab" in text and "us per hypercall under type2" in text
    assert "modelled, for hardware: about 6,500 cycles" in text
    assert "a whole run of sensitive.S (TRVM, TWI) under type2" in text and "2 world switches each" in text


def test_the_controls_choose_the_structure_the_exit_and_light_the_path_step_by_step(widget):
    widget.widget  # noqa: B018 - builds the controls
    ui = widget.controls
    ui.structure.value = "vhe"
    assert widget.structure == "vhe" and ui.lit.max == len(vhe.KERNEL_PATH.steps) and "0 world switches" in ui.summary.value
    ui.next.click()
    assert widget.lit == 2 and ui.lit.value == 2 and NOW in ui.picture.value
    ui.exit_type.value = "emulated MMIO"
    assert widget.lit == 1 and widget.path is vhe.VMM_PATH
    ui.exit_type.value = "passthrough access"
    assert widget.path is None and ui.lit.disabled and "no exit" in ui.summary.value and ui.picture.value == ""
    assert "64 bytes to a device passed through" in ui.numbers.value


def test_unknown_choices_are_refused_with_the_choices(widget):
    with pytest.raises(ValueError, match="type1, type2, vhe"):
        widget.set(structure="type3")
    with pytest.raises(ValueError, match=", ".join(EXIT_TYPES)):
        widget.set(exit_type="page fault")
