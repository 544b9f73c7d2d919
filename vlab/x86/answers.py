"""x86 and Popek and Goldberg's Theorem 1: one kernel, run bare and under each answer, side by side.

    bare                 the probe kernel (probe.S) at ring 0, as its firmware left the machine
    trap-and-emulate     the same kernel at ring 3 under vlab.x86.monitor: what traps is
                         emulated; what does not trap runs on the real CPU and meets the real state
    paravirtual          the kernel's source built the other way: hypercalls, no sensitive instruction
    binary translation   the native build, its sensitive instructions rewritten before it runs
    hardware assistance  the rest of this course: AArch64, where EL2 and HCR_EL2 make every
                         sensitive act trap, so an unmodified kernel runs under trap-and-emulate

`compare()` runs the first four and shows, probe by probe, what the kernel saw and what
the monitor believed; wherever a row differs from the bare machine, virtualization failed.
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from vlab.data import published
from vlab.x86 import paravirt
from vlab.x86.code import assemble
from vlab.x86.machine import IF, Stop, X86Machine, segment
from vlab.x86.monitor import Monitor
from vlab.x86.translate import Translation, translate

SOURCE = Path(__file__).with_name("probe.S")
CODE = 0x1000
SEEN, SEEN_SIZE = 0x8000, 0x400
LAYOUT = {
    "STACK_TOP": 0x9_0000, "GDT": 0x7000, "GDTR": 0x7100, "IDTR": 0x7108, "IDT": 0x7800, "TSS": 0x7200,
    "TSS_SELECTOR": 0x30, "SEEN": SEEN, "SEEN_2": SEEN + 4, "SEEN_3": SEEN + 8, "SEEN_4": SEEN + 12,
    "SEEN_GDTR": SEEN + 16, "SEEN_IDTR": SEEN + 24, "SEEN_MSW": SEEN + 32, "SEEN_TR": SEEN + 36,
}
MODES = ("bare", "trap-and-emulate", "paravirtual", "binary translation")
HARDWARE_ASSISTANCE = ("hardware assistance: AArch64's EL2 with HCR_EL2 traps every sensitive act the "
                       "kernel makes, so the unmodified kernel runs under plain trap-and-emulate -- the rest of "
                       "this course (chapter 2 on, the ESR_EL2 of each exit)")
MAX_INSNS = 10_000


@dataclass(frozen=True)
class Probe:
    name: str
    offset: int  # into SEEN
    kind: str  # "flags", "table" or "selector"


PROBES = (
    Probe("cli, then pushfd: IF", 0, "flags"),
    Probe("popfd with IF=1, then pushfd: IF", 4, "flags"),
    Probe("popfd with IF=0, then pushfd: IF", 8, "flags"),
    Probe("sti, then pushfd: IF", 12, "flags"),
    Probe("sgdt: GDT base", 16, "table"),
    Probe("sidt: IDT base", 24, "table"),
    Probe("smsw: machine status word", 32, "selector"),
    Probe("str: task register", 36, "selector"),
)


def kernel_image(paravirtual: bool = False) -> tuple[bytes, dict[int, bytes]]:
    """The probe kernel's code (at CODE) and data (address -> bytes): its own GDT, TSS and table pointers."""
    source = paravirt.expand(SOURCE.read_text(), paravirtual)
    code = assemble(re.sub(r"\{(\w+)\}", lambda m: hex(LAYOUT[m.group(1)]), source), CODE)
    gdt = b"".join((bytes(8), segment(0, 0xF_FFFF, 0x9A), segment(0, 0xF_FFFF, 0x92), bytes(24),
                    segment(LAYOUT["TSS"], 0x67, 0x89, 0x0)))  # 0x08 code, 0x10 data, 0x30 its TSS
    data = {
        LAYOUT["GDT"]: gdt,
        LAYOUT["GDTR"]: struct.pack("<HI", len(gdt) - 1, LAYOUT["GDT"]),
        LAYOUT["IDTR"]: struct.pack("<HI", 256 * 8 - 1, LAYOUT["IDT"]),
    }
    return code, data


@dataclass
class Outcome:
    """One run of the probe kernel: what it saw, what the monitor believed, and what it cost."""

    mode: str
    seen: bytes
    believed_if: list[bool]  # at each store of a result: the IF the monitor believed (bare: the real IF)
    real_if: list[bool]  # ... and the real IF at that moment
    finished: bool
    message: str
    events: Counter = field(default_factory=Counter)  # monitor entries by door
    trapped: Counter = field(default_factory=Counter)  # instructions that reached the monitor
    translation: Translation | None = None

    def value(self, probe: Probe) -> int:
        if probe.kind == "flags":
            return struct.unpack_from("<I", self.seen, probe.offset)[0]
        if probe.kind == "table":
            return struct.unpack_from("<I", self.seen, probe.offset + 2)[0]
        return struct.unpack_from("<H", self.seen, probe.offset)[0]

    def shown(self, probe: Probe) -> str:
        value = self.value(probe)
        return f"IF={int(bool(value & IF))}" if probe.kind == "flags" else f"{value:#x}"


def run(mode: str) -> Outcome:
    """Run the probe kernel in `mode` (one of MODES)."""
    code, data = kernel_image(paravirtual=mode == "paravirtual")
    return run_kernel(code, mode, data, watched=16)


def run_kernel(code: bytes, mode: str, data: dict[int, bytes] | None = None, watched: int = SEEN_SIZE) -> Outcome:
    """Run a kernel (code at CODE, stack below STACK_TOP, results at SEEN) in `mode`.

    For "paravirtual", `code` must be the paravirtual build; for "binary translation"
    the native build, which is translated here. At each store into the first `watched`
    bytes of SEEN, the outcome notes the IF the monitor believed (bare: the real IF).
    """
    if mode not in MODES:
        raise ValueError(f"no mode {mode!r}: choose one of {', '.join(MODES)}")
    translation = translate(code, CODE) if mode == "binary translation" else None
    machine = X86Machine()
    machine.write(CODE, translation.code if translation else code)
    for address, blob in (data or {}).items():
        machine.write(address, blob)
    believed: list[bool] = []
    real: list[bool] = []
    monitor = Monitor(machine, translation.patches if translation else {})

    def note(*_) -> None:
        real.append(bool(machine.reg("eflags") & IF))
        believed.append(real[-1] if mode == "bare" else monitor.vcpu.interrupts)

    machine.watch_writes(SEEN, watched, note)
    if mode == "bare":
        machine.start_ring0(CODE, LAYOUT["STACK_TOP"])
        result = machine.run(lambda trap: False, MAX_INSNS)  # no monitor: any exception ends the run
        return Outcome(mode, machine.read(SEEN, SEEN_SIZE), believed, real, result.stop is Stop.HALTED,
                       result.message)
    machine.start_ring3(CODE, LAYOUT["STACK_TOP"])
    result = machine.run(monitor.handle, MAX_INSNS)
    trapped = Counter(_name(e.instruction) for e in monitor.events if e.door in ("#GP", "translated"))
    return Outcome(mode, machine.read(SEEN, SEEN_SIZE), believed, real, monitor.halted,
                   monitor.failure or result.message, monitor.counts(), trapped, translation)


def _name(instruction: str) -> str:
    """An instruction's mnemonic, and for mov the control register it moves."""
    mnemonic = instruction.split()[0]
    return f"mov {'to' if ', cr' not in instruction else 'from'} cr0" if mnemonic == "mov" else mnemonic


@dataclass(frozen=True)
class Comparison:
    outcomes: dict[str, Outcome]

    def differences(self, mode: str) -> list[str]:
        """The probes where `mode`'s kernel saw, or its monitor believed, other than on the bare machine."""
        bare, other = self.outcomes["bare"], self.outcomes[mode]
        wrong = [p.name for p in PROBES if other.value(p) != bare.value(p)]
        wrong += [f"{PROBES[i].name} (the monitor's IF)" for i, (b, o) in
                  enumerate(zip(bare.believed_if, other.believed_if)) if b != o]
        return wrong

    def table(self) -> str:
        """What the kernel saw, probe by probe and mode by mode; `!` marks a difference from bare."""
        bare = self.outcomes["bare"]
        rows = [["probe", *self.outcomes]]
        for i, probe in enumerate(PROBES):
            row = [probe.name]
            for mode, o in self.outcomes.items():
                cell = o.shown(probe) + (" !" if o.value(probe) != bare.value(probe) else "")
                if probe.kind == "flags" and mode != "bare" and o.believed_if[i] != bare.believed_if[i]:
                    cell += f" (monitor: IF={int(o.believed_if[i])} !)"
                row.append(cell)
            rows.append(row)
        widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)

    def summary(self) -> str:
        lines = []
        for mode, o in self.outcomes.items():
            if mode == "bare":
                continue
            wrong = self.differences(mode)
            verdict = f"{len(wrong)} of the probes differ from the bare machine" if wrong else \
                "the kernel saw exactly what it sees on the bare machine"
            cost = ", ".join(f"{door} x{n}" for door, n in sorted(o.events.items())) or "no monitor entry"
            extra = f"; {o.translation.describe()}" if o.translation else ""
            lines.append(f"{mode}: {verdict}; monitor entries: {cost}{extra}")
        lines.append(HARDWARE_ASSISTANCE)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table() + "\n\n" + self.summary()


def compare(modes: tuple[str, ...] = MODES) -> Comparison:
    """Run the probe kernel bare and in each mode, for side-by-side reading."""
    return Comparison({mode: run(mode) for mode in ("bare", *(m for m in modes if m != "bare"))})


def published_costs() -> str:
    """What binary translation and early hardware assistance cost on real x86 (published, labelled as such)."""
    return "\n".join(cost.label() for cost in published.X86_VIRTUALIZATION)
