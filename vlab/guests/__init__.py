"""Demo guests shipped with vlab, each ending in a self-check the tests assert on.

`path(name)` gives the source file; `GUESTS` says what each one must print and
leave behind (x19 = 0x600d means the guest's own check passed). Not among them, because
they are for experiments on a shared host rather than for one VM: spinlock.S (several
vCPUs counting what they waste spinning on one lock, run by vlab.hyp.lock_holder) and
the workloads of vlab.guests.workloads.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from vlab.machine.loader import Image, image_from_file

HERE = Path(__file__).parent
SELF_CHECK_OK = 0x600D

# Assembly for small guests: turn the GIC on so that the virtual timer (PPI 27) interrupts the core,
# as on QEMU's virt board -- forwarding on, PPI 27 enabled, the CPU interface signalling every
# priority. Uses x2 and w3. (No `:` in the comments: Keystone drops such lines.)
GIC_TIMER_ON = """
    ldr x2, =0x08000000
    mov w3, #1
    str w3, [x2]                    // GICD_CTLR, forward
    ldr w3, =0x8000000
    str w3, [x2, #0x100]            // GICD_ISENABLER0, PPI 27
    ldr x2, =0x08010000
    mov w3, #0xff
    str w3, [x2, #4]                // GICC_PMR
    mov w3, #1
    str w3, [x2]                    // GICC_CTLR
"""


@dataclass(frozen=True)
class Guest:
    name: str
    summary: str
    expected_uart: str
    # False: it calls PSCI through SMC, which QEMU's virt board (no EL3 firmware, PSCI through HVC)
    # treats as an undefined instruction; vlab's board answers it as EL3 firmware would.
    runs_on_qemu: bool = True

    @property
    def path(self) -> Path:
        return HERE / f"{self.name}.S"

    def source(self) -> str:
        return self.path.read_text()

    def image(self) -> Image:
        """The assembled guest, ready to load. Assembled once per version of the source file:
        a widget or a sweep runs the same guest many times, and assembling costs more than a run."""
        return _assembled(self.path, self.path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _assembled(path: Path, _version: int) -> Image:
    return image_from_file(path)  # an Image is immutable: sharing it is safe


GUESTS = {
    g.name: g
    for g in (
        Guest("hello", "prints through the PL011 UART and powers off", "Hello from EL1!\n"),
        Guest("syscall", "a kernel that runs a user program at EL0 and serves its write() system call",
              "Hello from EL0, through a system call!\n"),
        Guest("sensitive", "a kernel doing sensitive things: vectors, identity, MAIR/TCR, ACTLR, PSCI by HVC and SMC, "
              "WFI and the timer's interrupt through the GIC",
              "sensitive: identity, MAIR, TCR, PSCI and the timer all checked out\n", runs_on_qemu=False),
        Guest("paging", "a kernel that builds its own stage-1 tables, turns the MMU on and reads through an alias",
              "paging: the MMU is on, and the alias reads what was stored\n"),
        Guest("ticks", "a kernel taking the virtual timer's interrupt through the GIC three times (IAR, EOIR)",
              "ticks: three virtual timer interrupts, each acknowledged as INTID 27 and completed\n"),
        # With two CPUs (a VM with vcpus=2, QEMU -smp 2) it prints IPI_TEXT instead.
        Guest("ipi", "CPU 0 wakes CPU 1 from WFI with an SGI (on one CPU, it says there is no other)",
              "ipi: one CPU, no other to interrupt\n"),
    )
}


IPI_TEXT = "ipi: CPU 1 woke from WFI on SGI 2 from CPU 0, and answered with SGI 3\n"  # ipi.S with two CPUs


def path(name: str) -> Path:
    """The source file of the named guest; KeyError lists the known names."""
    if name not in GUESTS:
        raise KeyError(f"no guest called {name!r}; vlab ships: {', '.join(GUESTS)}")
    return GUESTS[name].path
