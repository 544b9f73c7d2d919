"""Chapter 7's widgets show what vlab computes when they are used, and print it without a front end."""

from __future__ import annotations

import pytest

from vlab.guests.para_or_full import Build
from vlab.hyp.para_vs_full import exits_per_kb, run_in_vm
from vlab.viz.paravirt_widgets import PRICE_KB, X86_ANSWERS, ParavirtWidget, VirtioBatchWidget, X86Widget
from vlab.x86 import answers


@pytest.fixture(scope="module")
def x86():
    widget = X86Widget()
    widget.widget  # the front end, clicked as a student clicks it
    return widget


@pytest.mark.parametrize("answer", X86_ANSWERS)
def test_each_x86_answer_is_run_when_its_button_is_pressed(x86, answer):
    x86.controls.box.children[0].children[0].value = answer
    assert x86.answer == answer and answer in x86.controls.summary.value
    if answer == "trap-and-emulate":
        assert "7 probes differ" in x86.summary()
        assert answers.compare(("trap-and-emulate",)).differences("trap-and-emulate")
    elif answer == "hardware assistance":
        assert "read the same identity" in x86.summary() and "DABT_LOWER" in x86.text()
    else:  # the kernel changed, or its code rewritten: it sees what it sees on the bare machine
        assert "exactly what the bare machine shows" in x86.summary()
        assert not answers.compare((answer,)).differences(answer)


def test_an_unknown_x86_answer_is_refused_with_the_list():
    with pytest.raises(ValueError, match="binary translation"):
        X86Widget("magic")


@pytest.fixture(scope="module")
def paravirt():
    widget = ParavirtWidget()
    widget.widget
    return widget


def test_ticking_a_feature_runs_that_build_and_its_exits_are_a_fresh_runs(paravirt):
    paravirt.controls.boxes["PV_CONSOLE"].value = True
    paravirt.controls.boxes["BATCH"].value = True
    assert paravirt.features == {"PV_CONSOLE", "BATCH"}
    fresh = run_in_vm(Build(frozenset({"PV_CONSOLE"}), batch=8))
    assert paravirt.run.exits == fresh.exits and paravirt.run.printed == fresh.printed
    assert f"{fresh.total_exits:,} exits" in paravirt.controls.summary.value
    assert "prints the same" in paravirt.summary() and paravirt.run.total_exits < paravirt.full.total_exits


def test_every_feature_on_is_the_paravirtual_build_and_unticking_them_all_is_the_full_one(paravirt):
    for box in paravirt.controls.boxes.values():
        box.value = True
    assert paravirt.run.identity.xen["version"] == "4.19" and set(paravirt.run.exits) == {"HVC64", "DABT_LOWER", "IRQ"}
    assert paravirt.run.exits["DABT_LOWER"] == 2  # the GIC turned on: no device access besides
    for box in paravirt.controls.boxes.values():
        box.value = False
    assert paravirt.run is paravirt.full  # the same build: run once, kept
    assert "none (full virtualization)" in paravirt.text()


def test_an_unknown_feature_is_refused(paravirt):
    with pytest.raises(ValueError, match="PV_CONSOLE"):
        paravirt.set_features({"TURBO"})


def test_the_batch_slider_measures_each_console_at_that_batch():
    widget = VirtioBatchWidget(batch=4)
    widget.widget
    widget.controls.slider.value = 16
    assert widget.batch == 16
    assert widget.prices["virtio"].exits == exits_per_kb("virtio", 16, PRICE_KB).exits
    assert widget.prices["PL011 (emulated)"].exits_per_kb == 2048
    assert widget.prices["virtio, device polls"].exits == 0
    assert "batches of 16 lines" in widget.controls.summary.value and "exits/KB" in widget.text()
