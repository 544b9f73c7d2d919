"""The hostile-neighbour widget: what it shows is a real run of the attack chosen beside the victim,
and the fuzzer's real counts; its controls run what they say."""

import pytest

from vlab.fuzz import neighbour
from vlab.viz.neighbour_widget import NeighbourWidget


@pytest.fixture(scope="module")
def view():
    return NeighbourWidget("EL2/EL3 registers", share=True)


def test_without_a_front_end_it_prints_the_comparison_and_the_host_buffer_check(view):
    text = view.text()
    alone = neighbour.alone()[1]
    assert "EL2/EL3 registers beside the victim on 1 pCPU(s), page sharing on: the victim is isolated" in text
    assert alone.uart.strip() in text and f"{alone.instructions:,}" in text
    assert "host buffer" in text and "0 changed" in text and "whichever secret" in text
    assert "fuzzing: not run yet" in text and repr(view).startswith("<NeighbourWidget EL2/EL3 registers")


def test_the_controls_run_the_attack_chosen(view):
    view.widget
    c = view.controls
    c.attack.value, c.share.value, c.pcpus.value = "exception loop", False, 2
    c.go.click()
    assert (view.outcome.attack.name, view.outcome.setup.share, view.outcome.setup.pcpus) == ("exception loop", False, 2)
    assert "exception loop" in view.outcome.hostile.message  # the attacker's own end, reported
    assert "page sharing off" in c.panes["summary"].value and "exception loop" in c.panes["table"].value


def test_fuzz_runs_generated_hostile_programs_and_shows_their_counts(view):
    view.widget
    c = view.controls
    c.programs.value = 48
    c.fuzz.click()
    assert view.tally.programs == 48 and view.tally.hosts == 48 // neighbour.GROUP and not view.tally.findings
    assert "48 hostile programs" in c.panes["fuzz"].value and "leaks: 0, hangs: 0, Python errors: 0" in view.text()
    assert "Fuzz programs per second" in view.text()


def test_an_unknown_attack_is_refused_with_the_choices(view):
    with pytest.raises(ValueError, match="no attack 'melt'; choose one of writes everywhere"):
        view.set_attack("melt")
