"""Chapter 3's views: the counted walk, the level sliders, the host map."""

import pytest
from pictures import MAX_WIDTH_PT, diagram_size_pt

from vlab.hyp import VM
from vlab.hyp.memory import HostMemory
from vlab.mmu.descriptors import decode
from vlab.viz.stage2_widgets import WalkWidget, host_map_text
from vlab.viz.walk_view import GUEST, Cell, NestedSetup, WalkGrid, walk_diagram


LEVELS = [(n, m) for n in range(1, 5) for m in range(1, 5)]


def _numbered(grid: WalkGrid) -> list[tuple[int, int | str, Cell]]:
    """(row, column, cell) for every cell holding a reference, read row by row, left to right."""
    return [(i, c, row.cells[c]) for i, row in enumerate(grid.rows) for c in grid.columns
            if c in row.cells and row.cells[c].number is not None]


@pytest.mark.parametrize("n, m", LEVELS)
def test_the_drawn_walk_is_a_grid_of_n_plus_1_rows_by_m_plus_1_columns_numbered_in_walk_order(n, m):
    setup = NestedSetup(n, m)
    t = setup.translate(0x5678)
    grid = setup.grid(t)
    assert t.ok and grid.size == (n + 1, m + 1)
    cells = _numbered(grid)
    # the area of the grid less its corner (the result), numbered 1.. row by row: each row's stage-2
    # walk (left to right) comes before the guest's read at its end, and the guest walks down the last column
    assert [cell.number for _, _, cell in cells] == list(range(1, (n + 1) * (m + 1)))
    for row, column, cell in cells:
        assert cell.reference is t.references[cell.number - 1]
        assert (cell.reference.stage, cell.reference.level if column != GUEST else "guest") == (
            (1, "guest") if column == GUEST else (2, column))
        assert grid.rows[row].title == (f"guest L{4 - n + row}" if row < n else "output")
    assert grid.rows[-1].cells.get(GUEST) is None  # the corner: the result, not a reference
    assert setup.backing(grid.rows[-1].ipa) == t.output  # the output row translates the IPA the guest's leaf gave
    diagram = walk_diagram(grid)
    for _, _, cell in cells:
        assert f"<B>{cell.number}</B>" in diagram.source and f"@ {cell.reference.address:#x}" in diagram.source
    assert f"PA</B><BR/>{t.output:#x}" in diagram.source


@pytest.mark.parametrize("n, m", LEVELS)
def test_every_drawn_walk_fits_a_projector(n, m):
    setup = NestedSetup(n, m)
    for va in (0x5678, 0x9000):  # a walk, and one that faults
        width, height = diagram_size_pt(walk_diagram(setup.grid(setup.translate(va))))
        assert width <= MAX_WIDTH_PT and height <= MAX_WIDTH_PT


def test_the_rows_say_which_ipa_their_stage2_walk_translates():
    setup = NestedSetup(4, 4)
    t = setup.translate(0x5678)
    grid = setup.grid(t)
    for row in grid.rows:  # the last stage-2 read of a row is the page descriptor of that row's IPA
        s2_leaf = row.cells[3].reference
        assert decode(s2_leaf.value, 3, 2).output == setup.backing(row.ipa) & ~0xFFF
        if GUEST in row.cells:  # and the guest's read is at that IPA's host address
            assert row.cells[GUEST].reference.address == setup.backing(row.ipa)
    assert grid.rows[0].ipa & ~0xFFF == setup.s1_tables.root  # TTBR0_EL1's table


def test_a_walk_faulting_at_stage_1_names_the_fault_in_the_guests_cell_and_leaves_the_rest_empty():
    setup = NestedSetup(4, 4)
    grid = setup.grid(setup.translate(0x9000))  # the guest maps 0x5000..0x8fff only
    faulted = [(i, c) for i, row in enumerate(grid.rows) for c, cell in row.cells.items() if cell.fault]
    assert faulted == [(3, GUEST)] and grid.rows[3].cells[GUEST].number == 20
    assert all(cell.number is None for cell in grid.rows[4].cells.values()) and grid.size == (5, 5)
    assert "translation fault<BR/>stage 1, level 3" in walk_diagram(grid).source
    assert "20X" in grid.text() and "X: stage-1 translation fault at level 3" in grid.text()


@pytest.mark.parametrize("row", [0, 1, 2, 3, 4])
def test_a_walk_faulting_at_stage_2_stops_in_the_row_and_column_where_it_stopped(row):
    setup = NestedSetup(4, 4)
    ipa = setup.grid(setup.translate(0x5678)).rows[row].ipa
    _unmap_at_stage2(setup, ipa)  # the page holding that row's IPA: a guest table, or the data itself
    t = setup.translate(0x5678)
    grid = setup.grid(t)
    assert t.fault.stage == 2 and t.fault.s1ptw == (row < 4) and grid.size == (5, 5)
    faulted = [(i, c) for i, r in enumerate(grid.rows) for c, cell in r.cells.items() if cell.fault]
    assert faulted == [(row, 3)]  # read the invalid stage-2 page descriptor, and stopped
    assert [cell.number for _, _, cell in _numbered(grid)] == list(range(1, 5 * row + 5))
    assert all(cell.number is None for r in grid.rows[row + 1:] for cell in r.cells.values())
    assert grid.rows[row].cells.get(GUEST, Cell()).number is None
    assert "translation fault<BR/>stage 2, level 3" in walk_diagram(grid).source


def test_the_drawn_walks_stage2_pages_are_normal_memory_as_a_real_vms_are():
    setup = NestedSetup(4, 4)
    vm = VM(stage2="scattered", ram_size=0x10_0000)
    ram_leaf = vm.memory.tables.page(vm.memory.mapping()[0][0])
    leaves = [r for r in setup.translate(0x5678).references if r.stage == 2 and r.level == 3]
    for r in leaves:
        leaf = decode(r.value, 3, 2)
        assert leaf.attr == ram_leaf.attr == 0b1111  # MemAttr: Normal, Write-Back; 0b0000 is Device-nGnRnE
        assert r.value & 0xFFF == 0x7FF


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


def test_the_working_set_slider_reaches_past_what_vlabs_tlb_holds_where_every_access_walks():
    from vlab.hyp.pcpu import TLB_ENTRIES
    from vlab.viz.stage2_widgets import TlbWidget

    t = TlbWidget(pages=16, rounds=3)
    t.widget
    t.controls.pages.value = TLB_ENTRIES + 8  # a slider clamps what it cannot reach
    assert t.pages == TLB_ENTRIES + 8 and t.controls.pages.max > TLB_ENTRIES
    past = t.counts
    assert past["walks"] >= past["accesses"] and past["vlab TLB hits"] == 0  # least recently used: always gone


def test_a_walk_with_one_stage_is_a_grid_of_one_row_or_one_column():
    from vlab.mmu.walk import nested_walk

    setup = NestedSetup(3, 2)
    mmu_off = nested_walk(setup.host, None, 0, setup.stage2, setup.s2_tables.root, setup.data[0] + 0x10)
    grid = WalkGrid.of(mmu_off, None, setup.stage2, 0)  # the guest's MMU off: the VA is the IPA
    assert grid.size == (1, 2) and grid.rows[0].ipa == setup.data[0] + 0x10
    assert [c.number for c in grid.rows[0].cells.values()] == [1, 2]
    no_stage2 = nested_walk(setup.s1_tables.memory, setup.stage1, setup.s1_tables.root, None, 0, 0x5678)
    grid = WalkGrid.of(no_stage2, setup.stage1, None, setup.s1_tables.root)  # the IPA is the PA
    assert grid.size == (4, 1) and [r.cells[GUEST].number for r in grid.rows[:3]] == [1, 2, 3]
    output_row = next(line for line in grid.text().splitlines() if line.startswith("output"))
    assert output_row.split() == ["output", "PA"] and f"{no_stage2.output:#x}" in walk_diagram(grid).source
