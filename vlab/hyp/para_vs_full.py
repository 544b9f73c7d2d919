"""The same kernel (vlab.guests.para_or_full), fully virtualized and paravirtualized: what each costs.

    run_in_vm(FULL), run_in_vm(PARAVIRT)   output, exits by class, instructions, host time
    run_on_board(FULL)                      the same kernel on the bare machine
    steps()                                 the paravirtual switches turned on one at a time
    exits_per_kb("pl011"), exits_per_kb("virtio", batch=8)   the console's price per KB

Every VM here is configured as Linux KVM configures its guests, with the trap controls of its
HCR_GUEST_FLAGS that vlab can honour (KVM_TRAPS: WFI, SMC, ACTLR and the ID registers; KVM's
also traps WFE, which Unicorn cannot). Host time is measured around the run alone (the VM is
made before the clock starts), the best of `repeat` runs: a shared machine's noise only adds.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, replace
from typing import Callable

from vlab.arch.hcr import HCR
from vlab.guests.para_or_full import FULL, LINE_BYTES, Build
from vlab.guests import SELF_CHECK_OK
from vlab.hyp.vm import VM
from vlab.machine.board import Board, RunResult
from vlab.machine.loader import load

KVM_TRAPS = HCR.TWI | HCR.TSC | HCR.TACR | HCR.TID3
RAM = 0x40_0000  # the kernel and its buffers fit in 4 MiB
MAX_INSNS = 5_000_000
ID_REGISTERS = ("ID_AA64PFR0_EL1", "ID_AA64PFR1_EL1", "ID_AA64DFR0_EL1", "ID_AA64ISAR0_EL1",
                "ID_AA64ISAR1_EL1", "ID_AA64MMFR0_EL1", "ID_AA64MMFR1_EL1", "ID_AA64MMFR2_EL1")
CONSOLES = {  # console -> the switches that make the kernel print there
    "pl011": frozenset(), "console_io": frozenset({"PV_CONSOLE"}), "virtio": frozenset({"VIRTIO"}),
}
# The paravirtual switches in the order `steps` turns them on, each with the batch it brings.
STEPS = (("PV_CONSOLE", 1), ("batches of 8 lines", 8), ("PV_IDENTITY", 8), ("PV_SCHED", 8))


@dataclass(frozen=True)
class Identity:
    """What the kernel found out about its machine (its `seen` block)."""

    registers: dict[str, int]  # the full build's: MIDR_EL1, MPIDR_EL1, CurrentEL, CNTFRQ_EL0, ID_AA64*
    xen: dict  # the paravirtual build's answers: version, extraversion, features, domain id, domains

    @classmethod
    def read(cls, build: Build, read: Callable[[int, int], bytes]) -> Identity:
        at = build.program().address_of
        quads = struct.unpack("<12Q", read(at("seen_midr"), 96))
        names = ("MIDR_EL1", "MPIDR_EL1", "CurrentEL", "CNTFRQ_EL0", *ID_REGISTERS)
        version = struct.unpack("<Q", read(at("seen_xen_version"), 8))[0] & 0xFFFF_FFFF
        count = struct.unpack("<q", read(at("seen_domain_count"), 8))[0]
        domains = struct.unpack("<8H", read(at("seen_domains"), 16))[:max(0, min(count, 8))]
        xen = {"version": f"{version >> 16}.{version & 0xFFFF}" if version else None,
               "extraversion": read(at("seen_extraversion"), 16).split(b"\0")[0].decode(errors="replace"),
               "features": struct.unpack("<II", read(at("seen_features"), 8))[1],
               "domain_id": struct.unpack("<Q", read(at("seen_domain_id"), 8))[0],
               "domains": list(domains)}
        return cls(dict(zip(names, quads)), xen)

    def describe(self) -> str:
        """What the kernel can say about where it runs, in its own words."""
        if self.xen["version"]:
            others = [d for d in self.xen["domains"] if d != self.xen["domain_id"]]
            return (f"I run on Xen {self.xen['version']}{self.xen['extraversion']} as domain "
                    f"{self.xen['domain_id']}; the other domains on this host: {others or 'none'}")
        regs = self.registers
        return (f"I run on CPU MIDR_EL1={regs['MIDR_EL1']:#x} (MPIDR_EL1={regs['MPIDR_EL1']:#x}) at "
                f"EL{regs['CurrentEL'] >> 2}, counter {regs['CNTFRQ_EL0'] / 1e6:g} MHz, "
                f"ID_AA64PFR0_EL1={regs['ID_AA64PFR0_EL1']:#x}: a machine, as far as I can tell")


@dataclass(frozen=True)
class Run:
    """One run of a build: how it ended, what it printed and found, what it cost."""

    build: Build
    where: str  # "board" or "VM"
    result: RunResult
    seconds: float  # host time of the run itself
    identity: Identity

    @property
    def printed(self) -> str:
        """What the kernel printed, on whichever console its build prints."""
        return self.result.uart + self.result.virtio_console

    @property
    def exits(self) -> dict[str, int]:
        return dict(getattr(self.result, "exits", {}))

    @property
    def total_exits(self) -> int:
        return sum(self.exits.values())

    @property
    def passed(self) -> bool:
        """The kernel's own check: every console transaction worked, and it printed what it should."""
        return self.result.registers["x19"] == SELF_CHECK_OK and self.printed == self.build.text()

    def summary(self) -> str:
        exits = ", ".join(f"{k} {n:,}" for k, n in sorted(self.exits.items())) or "none"
        return (f"{self.build.describe()} ({self.where}): {self.total_exits:,} exits ({exits}), "
                f"{self.result.instructions:,} instructions, {self.seconds * 1e3:.1f} ms of host time")


def run_in_vm(build: Build, traps: HCR = KVM_TRAPS, repeat: int = 1, **vm_options) -> Run:
    """Run `build` in a fresh VM (options as VM's: host=, stage2=, virtio_polls=...), best of `repeat`."""
    options = {"ram_size": RAM, **vm_options}
    best = None
    for _ in range(repeat):
        vm = VM.from_image(build.image(), traps=traps, **options)
        start = time.perf_counter()
        result = vm.run(max_insns=MAX_INSNS, timeout_s=60)
        seconds = time.perf_counter() - start
        if best is None or seconds < best[1]:
            best = (vm, seconds, result)
    vm, seconds, result = best
    return Run(build, "VM", result, seconds, Identity.read(build, vm.read_memory))


def run_on_board(build: Build, **board_options) -> Run:
    """Run `build` on the bare board (options as Board's)."""
    board = Board(ram_size=RAM, **board_options)
    load(board, build.image())
    start = time.perf_counter()
    result = board.run(max_insns=MAX_INSNS, timeout_s=60)
    return Run(build, "board", result, time.perf_counter() - start, Identity.read(build, board.read_memory))


def compare(builds: dict[str, Build], repeat: int = 1, **vm_options) -> dict[str, Run]:
    """Each build in a VM of its own, by name."""
    return {name: run_in_vm(build, repeat=repeat, **vm_options) for name, build in builds.items()}


def steps(base: Build = FULL, repeat: int = 1) -> list[tuple[str, Run]]:
    """The full build, then the paravirtual switches turned on one at a time (STEPS)."""
    runs = [("full virtualization", run_in_vm(base, repeat=repeat))]
    build = base
    for name, batch in STEPS:
        switches = build.switches | ({name} if name.startswith("PV_") else set())
        build = replace(build, switches=frozenset(switches), batch=batch)
        runs.append((f"+ {name}", run_in_vm(build, repeat=repeat)))
    return runs


def steps_table(runs: list[tuple[str, Run]]) -> str:
    """`steps()` as a table: exits and host time at each step, and whether the output stayed the same."""
    head = f"{'':<22} {'exits':>7} {'instructions':>13} {'host ms':>8}  same output"
    lines = [head]
    for name, run in runs:
        lines.append(f"{name:<22} {run.total_exits:>7,} {run.result.instructions:>13,} "
                     f"{run.seconds * 1e3:>8.1f}  {'yes' if run.passed else 'NO'}")
    return "\n".join(lines)


@dataclass(frozen=True)
class ConsolePrice:
    """What printing costs through one console, measured as the difference of two runs."""

    console: str
    batch: int
    polls: bool
    kb: int
    exits: int  # more exits for `kb` KB of text than for none
    seconds: float  # more host time for them

    @property
    def exits_per_kb(self) -> float:
        return self.exits / self.kb

    @property
    def microseconds_per_kb(self) -> float:
        return self.seconds / self.kb * 1e6


def exits_per_kb(console: str, batch: int = 1, kb: int = 4, polls: bool = False, repeat: int = 1) -> ConsolePrice:
    """The exits (and host time) `kb` KB of the kernel's text cost through `console` ("pl011",
    "console_io" or "virtio", `batch` lines of 64 bytes per transaction; `polls`: the virtio
    device polls its queue instead of being notified): the kernel run with 16*kb lines, minus
    the same kernel run with none."""
    if console not in CONSOLES:
        raise ValueError(f"no console {console!r}: choose one of {', '.join(CONSOLES)}")
    lines = 1024 // LINE_BYTES * kb
    runs = [run_in_vm(Build(CONSOLES[console], batch=batch, lines=n, ticks=0), repeat=repeat, virtio_polls=polls)
            for n in (lines, 0)]
    for run in runs:
        if not run.passed:
            raise RuntimeError(f"the kernel failed on the {console} console: {run.result.message}")
    loaded, empty = runs
    return ConsolePrice(console, batch, polls, kb, loaded.total_exits - empty.total_exits,
                        max(0.0, loaded.seconds - empty.seconds))


def batch_table(batches: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64), kb: int = 16, uart_kb: int = 2) -> list[dict]:
    """Exits per KB through the PL011 (measured on `uart_kb` KB), console_io and virtio (notified,
    and polling; on `kb` KB, enough text for several of the largest batches) at each batch size."""
    pl011 = exits_per_kb("pl011", 1, uart_kb).exits_per_kb  # the UART takes bytes: batching cannot help it
    rows = []
    for batch in batches:
        rows.append({"batch": batch, "pl011": pl011,
                     "console_io": exits_per_kb("console_io", batch, kb).exits_per_kb,
                     "virtio": exits_per_kb("virtio", batch, kb).exits_per_kb,
                     "virtio, device polls": exits_per_kb("virtio", batch, kb, polls=True).exits_per_kb})
    return rows


def format_rows(rows: list[dict]) -> str:
    """Rows of numbers (the same keys in each) as an aligned text table."""
    keys = list(rows[0])
    cells = [[str(k) for k in keys]] + [[f"{r[k]:,.2f}" if isinstance(r[k], float) else f"{r[k]:,}" for k in keys]
                                        for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(keys))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells)
