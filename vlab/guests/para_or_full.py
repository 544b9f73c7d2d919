"""One small kernel (para_or_full.S), built for full virtualization or for paravirtualization.

    FULL.image()                         the kernel a bare board runs, unchanged, in a VM too
    PARAVIRT.image()                     the same source with `#define PARAVIRT`: Xen's hypercalls
    Build({"PV_CONSOLE"}, batch=8)       one switch at a time, and the numbers of its workload

The build switches are the C preprocessor's kind, written in the assembly source:

    #if VIRTIO              print through the virtio console
    #elif PV_CONSOLE        print with Xen's console_io
    #else                   print through the PL011's registers
    #endif

`preprocess` resolves them as cpp does for this subset -- `#define NAME 0|1`, `#if NAME`,
`#if !NAME`, `#elif`, `#else`, `#endif`, nested; an undefined name is 0, one defined as nothing
cannot be tested (cpp's "#if with no expression") -- and keeps every line
where it was (a skipped line becomes an empty one), so an assembler error names the line of
para_or_full.S it is about, counting the `.equ` lines `Build.source` puts first. The result is
plain assembly that vlab's assembler and GNU as both take.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from vlab.asm import Program, assemble
from vlab.errors import AssemblyError
from vlab.machine.loader import Image, image_from_program

SOURCE = Path(__file__).with_name("para_or_full.S")
SWITCHES = {
    "PV_CONSOLE": "print with Xen's console_io hypercall, one exit a flush, not the PL011's two a byte",
    "VIRTIO": "print through the virtio console: one buffer and one notify a flush",
    "PV_IDENTITY": "ask Xen who it is (xen_version, domain ids) instead of reading ID registers",
    "PV_SCHED": "Xen's sched_op: block instead of WFI, yield once, shutdown instead of PSCI",
    "PARAVIRT": "the paravirtual build: PV_CONSOLE, PV_IDENTITY and PV_SCHED",
}
MAX_BATCH = 64  # the log buffer holds 64 lines of at most 64 bytes
LINE_BYTES = 64  # each of the LINES lines of text
_DIRECTIVE = re.compile(r"^\s*#\s*(\w+)\s*(.*?)\s*$")
_NAME = re.compile(r"!?[A-Za-z_]\w*")


def preprocess(source: str, defined: dict[str, int]) -> str:
    """`source` with its #define / #if / #elif / #else / #endif lines resolved (see the module's
    docstring); AssemblyError naming the line for anything else that starts with `#`."""
    names = dict(defined)
    out: list[str] = []
    stack: list[list[bool]] = []  # per open #if: [emitting, a branch was taken, in #else]
    for number, line in enumerate(source.splitlines(), 1):
        m = _DIRECTIVE.match(line)
        active = all(frame[0] for frame in stack)
        if m is None:
            out.append(line if active else "")
            continue
        out.append("")
        word, argument = m.groups()
        if word == "define":
            name, _, value = argument.partition(" ")
            if active:
                names[name] = int(value) if value.strip() else None  # defined, but as nothing
        elif word == "if":
            taken = active and _true(argument, names, number, line)
            stack.append([taken, taken, False])
        elif word in ("elif", "else", "endif") and not stack:
            raise AssemblyError(f"#{word} without #if", number, line)
        elif word == "elif":
            frame = stack[-1]
            outer = all(f[0] for f in stack[:-1])
            frame[0] = outer and not frame[1] and _true(argument, names, number, line)
            frame[1] = frame[1] or frame[0]
        elif word == "else":
            frame = stack[-1]
            frame[0], frame[2] = not frame[1] and all(f[0] for f in stack[:-1]), True
        elif word == "endif":
            stack.pop()
        else:
            raise AssemblyError(f"#{word}: para_or_full.S uses only #define, #if, #elif, #else and #endif",
                                number, line)
    if stack:
        raise AssemblyError("#if without #endif", len(out), "")
    return "\n".join(out) + "\n"


def _true(condition: str, names: dict[str, int | None], number: int, line: str) -> bool:
    if not _NAME.fullmatch(condition):
        raise AssemblyError(f"#if {condition}: write #if NAME or #if !NAME", number, line)
    name = condition.lstrip("!")
    value = names.get(name, 0)
    if value is None:  # cpp: "#if with no expression"
        raise AssemblyError(f"#if {condition}: {name} is defined as nothing; write #define {name} 1", number, line)
    return not value if condition.startswith("!") else bool(value)


@dataclass(frozen=True)
class Build:
    """A build of the kernel: its switches (SWITCHES) and the numbers of its workload.

    `batch` lines go to the console in each transaction; `lines` lines of 64 bytes of text;
    `ticks` sleeps of `tick_length` counter ticks each."""

    switches: frozenset[str] = field(default_factory=frozenset)
    batch: int = 1
    lines: int = 8
    ticks: int = 3
    tick_length: int = 2_000

    def __post_init__(self) -> None:
        object.__setattr__(self, "switches", frozenset(self.switches))
        unknown = self.switches - SWITCHES.keys()
        if unknown:
            raise ValueError(f"no build switch {', '.join(sorted(unknown))}; there are: {', '.join(SWITCHES)}")
        if not 1 <= self.batch <= MAX_BATCH:
            raise ValueError(f"a batch is 1 to {MAX_BATCH} lines (the kernel's log buffer), not {self.batch}")
        if not 0 <= self.lines <= 9999 or not 0 <= self.ticks <= 9999:
            raise ValueError("the kernel counts its lines and ticks with four digits: 0 to 9999 of each")
        if self.tick_length < 1:
            raise ValueError(f"a tick lasts at least one counter tick, not {self.tick_length}")

    @property
    def defines(self) -> dict[str, int]:
        """The switches as #define NAME 1."""
        return {name: 1 for name in self.switches}

    def has(self, switch: str) -> bool:
        """Whether `switch` is on in this build, directly or through PARAVIRT."""
        return switch in self.switches or "PARAVIRT" in self.switches and switch in _PARAVIRT

    @property
    def console(self) -> str:
        """Where it prints: "virtio", "console_io" or "pl011"."""
        return "virtio" if self.has("VIRTIO") else "console_io" if self.has("PV_CONSOLE") else "pl011"

    @property
    def equates(self) -> str:
        return (f"    .equ    LINES, {self.lines}\n    .equ    TICKS, {self.ticks}\n"
                f"    .equ    TICK_LENGTH, {self.tick_length}\n    .equ    BATCH, {self.batch}\n")

    def source(self) -> str:
        """The assembly this build is: the workload's numbers, then the source with its switches resolved."""
        return self.equates + preprocess(SOURCE.read_text(), self.defines)

    def program(self) -> Program:
        return _assembled(self.source())

    def image(self) -> Image:
        return image_from_program(self.program())

    def text(self) -> str:
        """What the kernel prints (whichever console it prints on), worked out from its workload."""
        lines = "".join(f"line {n:04}: the same text, whichever way this kernel gets built.\n"
                        for n in range(1, self.lines + 1))
        ticks = "".join(f"tick {n:04}: the timer woke the kernel\n" for n in range(1, self.ticks + 1))
        return ("kernel: booted, and found out what it runs on\nkernel: console ready\n" + lines + ticks
                + "kernel: done, powering off\n")

    def describe(self) -> str:
        switches = ", ".join(sorted(self.switches)) or "no switch (full virtualization)"
        return f"{switches}; batches of {self.batch} line{'s' * (self.batch != 1)}"


def routine(source: str, label: str) -> str:
    """One routine of a build's source, to read: from `label:` to its first `ret` (blank lines dropped)."""
    lines = source.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"{label}:")), None)
    if start is None:
        raise KeyError(f"no routine {label!r} in this source")
    end = next(i for i in range(start, len(lines)) if lines[i].split("//")[0].strip() == "ret")
    return "\n".join(line for line in lines[start:end + 1] if line.strip())


_PARAVIRT = ("PV_CONSOLE", "PV_IDENTITY", "PV_SCHED")
FULL = Build()
PARAVIRT = Build(frozenset({"PARAVIRT"}))


@functools.lru_cache(maxsize=64)
def _assembled(source: str) -> Program:
    return assemble(source)  # a Program is immutable: a widget's runs share it
