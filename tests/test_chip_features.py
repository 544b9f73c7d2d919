"""The closing chapter's table: each hardware feature measured with it and without it, on vlab.

Counts (exits, wrong answers, bytes overwritten, world switches) must go the way the hardware
predicts; host times are not asserted (benchmarks/chip_features.py prints their ratios).
"""

import re
from html.parser import HTMLParser

import pytest

from vlab.guests import GUESTS
from vlab.hyp import chip_features as chip
from vlab.x86 import answers, paravirt

TIMED = {"us", "ms"}  # host times: never asserted


@pytest.fixture(scope="module")
def rows():
    measured = chip.gather(iterations=40, repeats=1)
    return {chip.FEATURES[name].__name__: row for name, row in zip(chip.FEATURES, measured)}


def measure(row, start: str) -> chip.Measured:
    return next(m for m in row.measured if m.quantity.startswith(start))


@pytest.mark.parametrize("name", [f.__name__ for f in chip.FEATURES.values()])
def test_every_count_goes_the_way_the_hardware_predicts(rows, name):
    row = rows[name]
    assert row.mechanism and row.feature and row.alternative and row.chapter
    counts = [m for m in row.measured if m.unit not in TIMED]
    assert all(m.as_predicted for m in counts), [m.text() for m in counts if not m.as_predicted]
    assert all(m.with_feature >= 0 and m.without >= 0 for m in counts)


def test_without_list_registers_each_interrupt_adds_an_exit_for_its_acknowledge_and_its_completion(rows):
    per = measure(rows["virtual_gic"], "exits per timer interrupt")
    assert (per.with_feature, per.without) == (1, 3)  # the physical IRQ; + GICC_IAR + GICC_EOIR
    whole = measure(rows["virtual_gic"], "exits of the whole")
    assert whole.without - whole.with_feature == 2 + 2 * 3  # PMR and CTLR once, IAR and EOIR per tick


def timer_accesses_in_ticks_source() -> int:
    """ticks.S's timer-register instructions, each executed once, those of its IRQ handler per tick (3)."""
    source = GUESTS["ticks"].path.read_text()
    main, handler = source.split("vectors:")
    count = lambda text: len(re.findall(r"^[ \t]+m(?:rs|sr)[ \t]+[^/\n]*\bcnt\w+", text, re.M | re.I))  # noqa: E731
    return count(main) + 3 * count(handler)


def test_the_virtual_timer_serves_every_timer_access_of_ticks_without_an_exit(rows):
    exits = measure(rows["virtual_timer"], "exits for")
    assert (exits.with_feature, exits.without) == (0, timer_accesses_in_ticks_source()) == (0, 10)


def test_trap_and_emulate_fails_on_x86_and_not_on_aarch64(rows):
    wrong = measure(rows["trap_controls"], "an unmodified kernel")
    assert wrong.with_feature == 0 and wrong.without == len(answers.compare().differences("trap-and-emulate")) > 0
    code = [line.split("#")[0] for line in paravirt.expand(answers.SOURCE.read_text(), False).splitlines()]
    sensitive = sum(len(re.findall(r"\b(popfd|pushfd|sgdt|sidt|smsw|str)\b", line)) for line in code)
    assert measure(rows["trap_controls"], "kernel instructions rewritten").without == sensitive


def test_without_the_smmu_the_wild_dma_overwrites_the_neighbour_and_misses_its_own_buffer(rows):
    payload = len(b"DMA PAYLOAD")
    assert measure(rows["smmu"], "bytes of another VM").without == payload
    assert measure(rows["smmu"], "DMA bytes that missed").without == payload
    exits = measure(rows["smmu"], "exits per byte")
    assert (exits.with_feature, exits.without) == (0, 2)  # UARTFR read and UARTDR write, emulated


def test_shadow_paging_traps_the_guests_table_stores_and_stage_2_walks_longer(rows):
    row = rows["stage2"]
    stores = measure(row, "stores to its page tables")
    # Each round rewrites every descriptor; the first round's stores come before any shadow of that table.
    assert (stores.with_feature, stores.without) == (0, (chip.REMAPS["rounds"] - 1) * chip.REMAPS["pages"])
    exits = measure(row, "exits of a guest remapping")
    assert exits.without > stores.without and exits.with_feature <= 1  # with stage 2: the power-off alone
    walk = measure(row, "descriptors read per TLB-miss walk")
    assert walk.price and walk.with_feature > walk.without > 0


def test_vhe_takes_the_world_switches_out_of_a_hypercall(rows):
    switches = measure(rows["vhe"], "world switches")
    assert (switches.with_feature, switches.without) == (0, 2)


def test_each_row_carries_the_name_it_is_measured_by(rows):
    assert [row.name for row in rows.values()] == list(chip.FEATURES)
    with pytest.raises(ValueError, match="no feature 'EL3'"):
        chip.measure("EL3")


def test_a_measure_says_when_the_feature_does_not_save_or_costs_less_than_its_price():
    assert not chip.Measured("exits", 3, 1).as_predicted and chip.Measured("exits", 1, 3).as_predicted
    assert chip.Measured("walk", 24, 4, price=True).as_predicted
    assert not chip.Measured("walk", 4, 24, price=True).as_predicted


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.cells = 0, 0

    def handle_starttag(self, tag, attrs):
        self.rows += tag == "tr"
        self.cells += tag == "td"


def test_the_table_renders_every_row_as_html_and_as_text(rows):
    table = chip.ChipTable(list(rows.values()))
    parser = _Cells()
    parser.feed(table._repr_html_())
    lines = sum(len(row.measured) for row in rows.values())  # a cost a line, the feature once per row
    assert (parser.rows, parser.cells) == (1 + lines, 3 * lines + len(rows))
    text = repr(table)  # what a notebook without a front end shows
    for row in rows.values():
        assert row.measured and row.name in text and all(m.quantity in text for m in row.measured)


# --- the widget ------------------------------------------------------------------------------------

def test_the_widget_measures_the_feature_its_button_picks_and_prints_it_without_a_front_end():
    from vlab.viz.chip_widget import ChipWidget

    widget = ChipWidget("VHE", iterations=20, repeats=1)
    assert widget.summary() == "VHE: " + widget.row.measured[0].text()
    assert repr(widget).startswith("<ChipWidget VHE: world switches per hypercall: 0 with, 2 without")
    widget.widget  # the front end, clicked as a student clicks it
    widget.controls.features.value = "the virtual timer"
    assert widget.row.name == "the virtual timer" and "the virtual timer" in widget.controls.summary.value
    first = widget.row
    widget.controls.again.click()
    assert widget.row is not first and widget.row.measured[0] == first.measured[0]  # counts do not move
    widget.controls.features.value = "stage 2"
    assert widget.summary() == "stage 2: " + widget.row.measured[0].text() and "exits" in widget.summary()


def test_the_widget_shows_rows_measured_already_until_measured_again(rows):
    from vlab.viz.chip_widget import ChipWidget

    given = list(rows.values())
    widget = ChipWidget("the SMMU", rows=given)
    assert widget.row is rows["smmu"]
    widget.measure_again()
    assert widget.row is not rows["smmu"] and widget.row.measured[:3] == rows["smmu"].measured[:3]
