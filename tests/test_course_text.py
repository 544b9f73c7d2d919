"""What chapters 1-3 say, read as a student reads it: terms defined before they are used, published
figures labelled in plain words, and every claim the text makes about a run true of that run.

The chapters are executed once here (in a fresh kernel, from their own folder) so that their
outputs -- which a student reads as much as the prose -- are part of what is checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from vlab.arch.hcr import HCR
from vlab.asm import assemble
from vlab.data.published import CERTAINTY, HYPERCALL, PublishedCost
from vlab.guests import GUESTS
from vlab.hyp import VM
from vlab.hyp.equivalence import compare
from vlab.hyp.pcpu import TLB_ENTRIES
from vlab.machine.loader import image_from_program
from vlab.viz.stage2_widgets import TlbWidget

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ("01_physical_machine", "02_trap_and_emulate", "03_stage2")


@pytest.fixture(scope="module")
def course() -> dict[str, nbformat.NotebookNode]:
    """Chapters 1-3, executed."""
    executed = {}
    for name in CHAPTERS:
        path = ROOT / "notebooks" / f"{name}.ipynb"
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        executed[name] = notebook
    return executed


def read_in_order(course) -> list[tuple[str, str]]:
    """Everything a student reads, in order: (kind, text) with kind 'markdown', 'code' or 'output'."""
    seen = []
    for name in CHAPTERS:
        for cell in course[name].cells:
            seen.append((cell.cell_type, " ".join(cell.source.split())))  # as rendered: lines joined
            for out in cell.get("outputs", []):
                seen.append(("output", out.get("text") or out.get("data", {}).get("text/plain", "")))
    return seen


def output_of(cell) -> str:
    return "".join(out.get("text") or out.get("data", {}).get("text/plain", "") for out in cell.get("outputs", []))


def markdown_after(notebook, needle: str) -> str:
    """The markdown that follows the first code cell whose output contains `needle`, up to the next code cell."""
    cells = notebook.cells
    start = next(i for i, c in enumerate(cells) if c.cell_type == "code" and needle in output_of(c))
    text = []
    for cell in cells[start + 1:]:
        if cell.cell_type == "code":
            break
        text.append(cell.source)
    return "\n".join(text)


def markdown_before(notebook, needle: str) -> str:
    """The markdown just before the first code cell whose output contains `needle`."""
    cells = notebook.cells
    at = next(i for i, c in enumerate(cells) if c.cell_type == "code" and needle in output_of(c))
    return next(c.source for c in reversed(cells[:at]) if c.cell_type == "markdown")


# --- terms --------------------------------------------------------------------------------------

DEFINITIONS = {  # term as used -> words that define it
    r"PSCI": "Power State Coordination Interface",
    r"UART": "serial port",
    r"MMIO": "memory-mapped I/O",
    r"ESR_EL1": "where the CPU records an exception",
    r"IPA": "intermediate physical address",
    r"vCPU": "virtual CPU",
    r"DFSC": "data fault status code",
    r"S1PTW": "stage-1 page tables",
    r"hypercall": "hypercall** is",
    r"TLB": "translation lookaside buffer",
    r"MMU": "memory management unit",
    r"VMID": "virtual machine identifier",
    r"ASID": "address space identifier",
}


@pytest.mark.parametrize("term", DEFINITIONS)
def test_each_term_is_defined_no_later_than_where_a_student_first_meets_it(course, term):
    seen = read_in_order(course)
    used = re.compile(rf"(?<![A-Za-z_]){term}(?![A-Za-z_])")
    first_use = next(i for i, (_, text) in enumerate(seen) if used.search(text))
    defined = [i for i, (kind, text) in enumerate(seen)
               if kind == "markdown" and DEFINITIONS[term].lower() in text.lower()]
    assert defined, f"{term} is never defined"
    assert defined[0] <= first_use, f"{term} is used before it is defined: {seen[first_use][1][:200]!r}"


# --- chapter 2's published figures --------------------------------------------------------------

def test_a_published_label_says_in_plain_words_how_sure_we_are():
    recalled = PublishedCost("hypercall", "Xen ARM", 376, "a paper", "recalled").label()
    checked = PublishedCost("hypercall", "Xen ARM", 376, "a paper", "checked").label()
    assert "about 376 cycles" in recalled and "not yet checked against the paper" in recalled
    assert "376 cycles" in checked and "about" not in checked
    assert "recalled" not in recalled  # REFERENCES.md's shorthand, which students saw and could not read
    assert set(CERTAINTY) == {"checked", "quoted", "recalled"}


def test_chapter_2_shows_no_internal_tag_and_gives_the_type_1_vs_type_2_point(course):
    chapter = course["02_trap_and_emulate"]
    prose = "\n".join(c.source for c in chapter.cells if c.cell_type == "markdown")
    shown = prose + "".join(map(output_of, chapter.cells))
    assert "recalled" not in shown and "not yet checked against the paper" in shown
    after = markdown_after(chapter, HYPERCALL[0].label())
    for needed in ("type 1", "type 2", "Xen", "KVM", "EL1", "not yet checked against the paper"):
        assert needed in after, needed


def test_chapter_2_says_why_the_guest_exits_under_no_trap_control_and_that_claim_holds(course):
    text = markdown_before(course["02_trap_and_emulate"], "with traps none")
    assert "data abort" in text and "HVC" in text and "native per trapped" in text
    exits = VM.from_file(GUESTS["sensitive"].path, traps=HCR(0)).run().exits
    assert set(exits) <= {"DABT_LOWER", "HVC64", "IRQ"}, exits  # what the text says exits whatever HCR_EL2 says


def test_chapter_2_says_why_trap_when_every_combination_is_equivalent(course):
    text = markdown_after(course["02_trap_and_emulate"], "identical to the bare machine")
    assert "copy of the EL1 system registers" in text and "knowledge and control" in text


# --- chapter 2's preview of para-virtualization ---------------------------------------------------

def test_chapter_2_previews_para_virtualization_with_numbers_of_its_own_run(course):
    chapter = course["02_trap_and_emulate"]
    [cell] = [c for c in chapter.cells if c.cell_type == "code" and "VLAB_WRITE" in c.source]
    printed = output_of(cell)
    defines = {}
    exec(cell.source.split("\nfor ")[0], defines)  # the cell's imports and its guest's source, as it has them
    pv = compare(image_from_program(assemble(defines["pv_hello"])), HCR(0))
    hello = compare(GUESTS["hello"].image(), HCR(0))
    assert pv.virtual.uart == hello.virtual.uart == GUESTS["hello"].expected_uart and pv.bare.uart == ""
    for run in (hello, pv):
        assert f"after {sum(run.virtual.exits.values())} exits" in printed
    assert sum(pv.virtual.exits.values()) < sum(hello.virtual.exits.values())
    prose = "\n".join(c.source for c in chapter.cells if c.cell_type == "markdown")
    assert "para-virtualization" in prose
    for number in {sum(r.virtual.exits.values()) for r in (hello, pv)}:  # computed in the run, never typed in
        assert not re.search(rf"(?<![\w.]){number}(?![\w.]) exits", prose)


# --- chapter 3's TLB cliff ----------------------------------------------------------------------

def test_chapter_3_explains_the_walks_right_at_the_tlb_models_capacity_and_the_explanation_holds(course):
    text = "\n".join(c.source for c in course["03_stage2"].cells if c.cell_type == "markdown")
    assert "twice the pages" in text and "code" in text and "however many rounds" in text
    walks = {rounds: TlbWidget(pages=TLB_ENTRIES, rounds=rounds).counts["walks"] for rounds in (3, 6)}
    assert walks[3] == walks[6], "after the second round every access hits"
    assert 2 * TLB_ENTRIES < walks[3] <= 2 * TLB_ENTRIES + 8, "two rounds of walks, and the code's page"
    just_below = TlbWidget(pages=TLB_ENTRIES - 8, rounds=3).counts["walks"]
    assert just_below <= TLB_ENTRIES - 8 + 4, "one walk per page while the model holds the working set"


def test_past_the_tlb_models_capacity_every_access_walks_as_chapter_3_says(course):
    text = " ".join(" ".join(c.source.split()) for c in course["03_stage2"].cells if c.cell_type == "markdown")
    assert "Past the model's 1,024 entries every access walks" in text and TLB_ENTRIES == 1024
    past = TlbWidget(pages=TLB_ENTRIES + 8, rounds=3).counts
    assert past["vlab TLB hits"] == 0 and past["walks"] >= past["accesses"]
