"""Published costs of real hypervisors, kept apart from what vlab measures.

Notebooks and benchmarks show these *beside* vlab's own measurements, labelled as
published figures with their citation. `certainty` follows ../shared/REFERENCES.md:
"checked" (read in the primary source), "quoted" (a secondary source quoting it),
"recalled" (not yet checked: show only as an approximate figure, "about N").
"""

from __future__ import annotations

from dataclasses import dataclass

DALL_2016 = ('C. Dall, S.-W. Li, J. T. Lim, J. Nieh, G. Koloventzos, "ARM Virtualization: Performance '
             'and Architectural Implications", ISCA 2016')


@dataclass(frozen=True)
class PublishedCost:
    operation: str
    platform: str
    cycles: int
    source: str
    certainty: str  # "checked", "quoted" or "recalled"

    def label(self) -> str:
        """How a notebook prints it: approximate unless checked, always with its source and, in plain
        words, how sure we are of it."""
        amount = f"{self.cycles:,} cycles" if self.certainty == "checked" else f"about {self.cycles:,} cycles"
        return f"{self.operation} on {self.platform}: {amount} (published: {self.source}; {CERTAINTY[self.certainty]})"


# What each certainty means, said to a student (the tags are REFERENCES.md's shorthand).
CERTAINTY = {
    "checked": "checked against the paper",
    "quoted": "as another source quotes the paper, not yet checked against it",
    "recalled": "not yet checked against the paper",
}


# Hypercall round trip (guest -> hypervisor -> guest, doing nothing): Dall et al., Table II.
HYPERCALL = (
    PublishedCost("hypercall", "KVM ARM", 6_500, DALL_2016, "recalled"),
    PublishedCost("hypercall", "Xen ARM", 376, DALL_2016, "recalled"),
    PublishedCost("hypercall", "KVM x86", 1_300, DALL_2016, "recalled"),
    PublishedCost("hypercall", "Xen x86", 1_228, DALL_2016, "recalled"),
)

ADAMS_AGESEN_2006 = ('K. Adams and O. Agesen, "A Comparison of Software and Hardware Techniques for x86 '
                     'Virtualization", ASPLOS 2006')

# x86 micro-operations natively, under VMware's binary translator ("software VMM") and under first-generation
# VT-x ("hardware VMM"): Adams & Agesen's microbenchmarks, as secondary sources quote them. First-generation
# VT-x exits were expensive, so binary translation often won.
X86_VIRTUALIZATION = (
    PublishedCost("in (port I/O)", "bare hardware", 3_209, ADAMS_AGESEN_2006, "quoted"),
    PublishedCost("in (port I/O)", "hardware VMM (VT-x)", 15_826, ADAMS_AGESEN_2006, "quoted"),
    PublishedCost("call/ret", "bare hardware", 11, ADAMS_AGESEN_2006, "quoted"),
    PublishedCost("call/ret", "software VMM (binary translation)", 51, ADAMS_AGESEN_2006, "quoted"),
    PublishedCost("call/ret", "hardware VMM (VT-x)", 11, ADAMS_AGESEN_2006, "quoted"),
    PublishedCost("page fault", "bare hardware", 1_093, ADAMS_AGESEN_2006, "quoted"),
    PublishedCost("page fault", "software VMM (binary translation)", 3_927, ADAMS_AGESEN_2006, "quoted"),
    PublishedCost("page fault", "hardware VMM (VT-x)", 11_242, ADAMS_AGESEN_2006, "quoted"),
    PublishedCost("divide by zero", "bare hardware", 889, ADAMS_AGESEN_2006, "quoted"),
    PublishedCost("divide by zero", "software VMM (binary translation)", 3_223, ADAMS_AGESEN_2006, "quoted"),
    PublishedCost("divide by zero", "hardware VMM (VT-x)", 1_014, ADAMS_AGESEN_2006, "quoted"),
    PublishedCost("page-table entry store", "software VMM (binary translation)", 391, ADAMS_AGESEN_2006, "quoted"),
    PublishedCost("page-table entry store", "hardware VMM (VT-x)", 12_733, ADAMS_AGESEN_2006, "quoted"),
)
