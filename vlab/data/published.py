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

# Dall et al., Table II, more rows (recalled: ../shared/REFERENCES.md): I/O latency out (a guest's
# notification reaching the device's emulation) and in (a device's interrupt reaching the guest),
# and a switch from one VM to another on the same core.
IO_AND_SWITCH = tuple(
    PublishedCost(operation, platform, cycles, DALL_2016, "recalled")
    for operation, row in (("I/O latency out", (6_024, 16_491, 560, 11_262)),
                           ("I/O latency in", (13_872, 15_650, 18_923, 10_050)),
                           ("VM switch", (10_387, 8_799, 4_812, 10_534)))
    for platform, cycles in zip(("KVM ARM", "Xen ARM", "KVM x86", "Xen x86"), row)
)
DALL_2017 = 'C. Dall et al., "Optimizing the Design and Implementation of the Linux ARM Hypervisor", USENIX ATC 2017'
# Checked (the abstract): redesigning KVM/ARM for VHE "can result in an order of magnitude performance
# improvement"; its cycle tables were not readable here.
VHE_CLAIM = "an order of magnitude"

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

# The interrupt controller's costs (Dall et al., Table II): a guest access to the distributor that
# traps and is emulated; a virtual IPI, from the sender's GICD_SGIR write to the receiver running its
# handler; completing a virtual interrupt (EOI) -- no exit on ARM's GIC (list registers), an exit on
# x86 of the time.
INTERRUPT_CONTROLLER = tuple(
    PublishedCost(operation, platform, cycles, DALL_2016, "recalled")
    for operation, row in (("interrupt-controller trap", (7_370, 1_356, 2_384, 1_734)),
                           ("virtual IPI", (11_557, 5_978, 5_230, 5_562)),
                           ("virtual IRQ completion", (71, 71, 1_556, 1_464)))
    for platform, cycles in zip(("KVM ARM", "Xen ARM", "KVM x86", "Xen x86"), row)
)
