"""Chapter 3's views: the counted walk, the level sliders, the host map."""

import pytest

from vlab.hyp import VM
from vlab.hyp.memory import HostMemory
from vlab.mmu.descriptors import decode
from vlab.viz.stage2_widgets import WalkWidget, host_map_text
from vlab.viz.walk_view import NestedSetup, walk_diagram


@pytest.mark.parametrize("n, m", [(1, 1), (2, 3), (4, 4)])
def test_the_drawn_walk_numbers_every_reference(n, m):
    t = NestedSetup(n, m).translate(0x5678)
    diagram = walk_diagram(t)
    assert t.ok and len(t.references) == (n + 1) * (m + 1) - 1
    assert f"{len(t.references)}. S2" in diagram.source and "1. S2" in diagram.source
    assert diagram.text.count("\n") == len(t.references)


def test_moving_a_slider_or_typing_an_address_walks_again():
    w = WalkWidget()
    w.widget
    w.controls.n.value = 2
    assert len(w.translation.references) == 3 * 5 - 1 and "measured 14" in w.controls.summary.value
    w.controls.va.value = "0x9000"  # the guest maps only four pages from 0x5000
    assert not w.translation.ok and w.translation.fault.stage == 1
    w.controls.va.value = "not an address"
    assert "not an address" in w.controls.summary.value


def test_the_summary_says_where_a_typed_address_ends_up():
    setup = NestedSetup(4, 4)  # what the widget walks, built again here
    w = WalkWidget()
    w.widget
    for va in (0x5000, 0x6abc, 0x8fff):
        w.controls.va.value = hex(va)
        pa = setup.translate(va).output
        assert pa is not None and pa & 0xFFF == va & 0xFFF
        assert w.controls.summary.value.endswith(f"VA {va:#x} -&gt; PA {pa:#x}</b>")
    w.controls.va.value = "0x9000"
    assert "stage-1 translation fault at level 3" in w.summary() and "maps 0x5000..0x8fff" in w.summary()


def test_the_host_map_shows_each_vms_frames_and_nothing_shared():
    host = HostMemory(0x40_0000, seed=1)
    a = VM(stage2="scattered", ram_size=0x10_0000, host=host, vmid=1)
    b = VM(stage2="contiguous", ram_size=0x8_0000, host=host, vmid=2)
    text = host_map_text(host)
    assert "vm1 RAM (256 frames)" in text and "vm2 RAM (128 frames)" in text
    assert not {f for _, f in a.memory.mapping()} & {f for _, f in b.memory.mapping()}


def test_the_tlb_widget_shows_which_tlb_answered_as_the_working_set_grows():
    from vlab.viz.stage2_widgets import TlbWidget

    t = TlbWidget(pages=16, rounds=20)
    small = t.counts
    assert small["walks"] <= 16 + 2 and small["Unicorn TLB misses"] < small["accesses"]
    t.widget
    t.controls.pages.value = 256
    big = t.counts
    assert big["accesses"] == 256 * 20 and big["Unicorn TLB misses"] >= big["accesses"]  # every access misses it
    assert big["walks"] <= 256 + 2 and big["vlab TLB hits"] >= big["accesses"] - big["walks"]
    assert "256 pages" in t.summary() and "walks" in t.controls.table.value


def _unmap_at_stage2(setup: NestedSetup, ipa: int) -> None:
    """The hypervisor takes a guest page away: its stage-2 page descriptor becomes invalid."""
    setup.s2_tables.set_page(ipa & ~0xFFF, None)


def test_a_walk_that_faults_reading_a_guest_table_lists_its_reads_in_the_order_it_made_them():
    setup = NestedSetup(4, 4)
    l1 = next(r for r in setup.translate(0x5678).references if r.purpose == "stage 1 L1")
    _unmap_at_stage2(setup, decode(l1.value, 1, 1).address)  # the guest's L2 table
    t = setup.translate(0x5678)
    assert t.fault.stage == 2 and t.fault.s1ptw and len(t.references) == 2 * 5 + 4
    rows = [r.purpose.rsplit("for ", 1)[-1] if r.stage == 2 else r.purpose for r in t.references]
    assert rows == (["the stage-1 L0 table"] * 4 + ["stage 1 L0"] + ["the stage-1 L1 table"] * 4 + ["stage 1 L1"]
                    + ["the stage-1 L2 table"] * 4)
