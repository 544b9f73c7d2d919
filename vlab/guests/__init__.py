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


@dataclass(frozen=True)
class Guest:
    name: str
    summary: str
    expected_uart: str
    # QEMU's virt board routes the timer's interrupt through a GIC, which vlab's board does not
    # model (its timer interrupts the core directly): a guest that sleeps until a timer
    # interrupt runs on vlab, but on QEMU it would have to program the GIC first.
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
              "WFI and the timer",
              "sensitive: identity, MAIR, TCR, PSCI and the timer all checked out\n", runs_on_qemu=False),
        Guest("paging", "a kernel that builds its own stage-1 tables, turns the MMU on and reads through an alias",
              "paging: the MMU is on, and the alias reads what was stored\n"),
    )
}


def path(name: str) -> Path:
    """The source file of the named guest; KeyError lists the known names."""
    if name not in GUESTS:
        raise KeyError(f"no guest called {name!r}; vlab ships: {', '.join(GUESTS)}")
    return GUESTS[name].path
