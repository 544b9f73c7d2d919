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
