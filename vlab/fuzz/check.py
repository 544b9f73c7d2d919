"""The fuzzer's rules: run a generated program bare and in a VM, and check what must hold.

    robustness, on every machine: the run ends in a guest-level outcome (powered off, an
        exception the guest cannot handle, the budget spent, idle) -- never a vlab error, the
        wall-clock guard (a hang), a loop inside vlab that outlives it (hang_guard) or a Python
        exception escaping;
    equivalence, a VM against the bare board (Popek and Goldberg): the same stop reason,
        console output, instructions retired, registers, EL1 system registers and RAM --
        unless the program uses a kind of snippet in DIVERGENCES, where the VM differs from the
        board by design, for the reason given there.

Each program runs on the board and in one VM: the VMs cycle through the stage-2 layouts (none,
contiguous, scattered, demand-paged), each with a trap-control combination drawn from the seed.
"""

from __future__ import annotations

import random
import signal
import threading
import traceback
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

from vlab.arch.hcr import HCR
from vlab.fuzz.programs import RAM_SIZE, program
from vlab.hyp import SUPPORTED_TRAPS, VM
from vlab.hyp.equivalence import differences
from vlab.machine.board import Board, RunResult, StopReason
from vlab.machine.loader import Image, load

# The one place the VM differs from the board by design: snippet kind -> why.
DIVERGENCES = {
    "flash": "a VM has no flash: on QEMU's virt board it is the boot ROM at 0x0, which the board maps "
             "and vlab's VMs do not (their stage 2 maps RAM and the UART only), so reading or running it "
             "is an external abort in the VM",
    "device_isv0": "a pair, writeback or SIMD access to a device has no instruction syndrome (ISV = 0): "
                   "the hypervisor cannot emulate it from ESR_EL2 and, as KVM does, injects an external abort; "
                   "the board's device just sees the access",
    "vlab_hypercall": "vlab's own hypercalls (VLAB_PUTC, VLAB_WRITE) are the hypervisor's: the board's "
                      "firmware answers NOT_SUPPORTED, a VM prints",
}
LAYOUTS = (None, "contiguous", "scattered", "demand")
MAX_INSNS = 200_000
TIMEOUT_S = 10.0
HANG_S = 60.0  # far past any run's own wall-clock guard: only a loop inside vlab lasts so long
_TRAP_BITS = [bit for bit in HCR if bit & SUPPORTED_TRAPS]
_ENDINGS = {StopReason.POWERED_OFF, StopReason.RESET, StopReason.EXCEPTION, StopReason.BUDGET, StopReason.IDLE}


@dataclass(frozen=True)
class Machine:
    """Where a program runs: the bare board, or a VM with this stage-2 layout and these traps."""

    name: str
    virtual: bool
    stage2: str | None = None
    traps: HCR = HCR(0)


BOARD = Machine("board", virtual=False)


def vm_for(seed: int) -> Machine:
    """The VM a program runs in: the layouts in turn, trap controls drawn from the seed."""
    rng = random.Random(seed ^ 0x5EED)
    traps = HCR(sum(bit for bit in _TRAP_BITS if rng.random() < 0.5))
    layout = LAYOUTS[seed % len(LAYOUTS)]
    return Machine(f"vm-{layout or 'no-stage2'}[{traps.name or 'no traps'}]", True, layout, traps)


@dataclass(frozen=True)
class Finding:
    """Something that must not happen: a vlab error, a hang, a Python exception, or a mismatch."""

    seed: int
    machine: str
    problem: str
    detail: str

    def __str__(self) -> str:
        return f"seed {self.seed} on {self.machine}: {self.problem}: {self.detail}"


@dataclass
class Tally:
    """What a fuzzing session did and found: the counts `make fuzz` prints."""

    programs: int = 0
    runs: int = 0
    endings: Counter = field(default_factory=Counter)  # stop reason -> runs
    kinds: Counter = field(default_factory=Counter)  # snippet kind -> programs using it
    compared: int = 0  # programs checked for equivalence, bare against VM
    divergent: Counter = field(default_factory=Counter)  # DIVERGENCES kind -> programs not compared for it
    findings: list[Finding] = field(default_factory=list)

    def merge(self, other: Tally) -> None:
        self.programs += other.programs
        self.runs += other.runs
        self.compared += other.compared
        for mine, theirs in ((self.endings, other.endings), (self.kinds, other.kinds),
                             (self.divergent, other.divergent)):
            mine.update(theirs)
        self.findings += other.findings

    def report(self) -> str:
        lines = [f"{self.programs:,} programs, {self.runs:,} runs",
                 "endings: " + ", ".join(f"{reason} {n:,}" for reason, n in self.endings.most_common()),
                 f"equivalence checked bare against VM: {self.compared:,} programs, "
                 f"{sum(f.problem == 'mismatch' for f in self.findings)} mismatches",
                 "divergences by design (programs not compared): "
                 + (", ".join(f"{kind} {n:,}" for kind, n in self.divergent.most_common()) or "none"),
                 "snippet kinds: " + ", ".join(f"{kind} {n:,}" for kind, n in sorted(self.kinds.items()))]
        problems = Counter(f.problem for f in self.findings)
        lines.append(f"findings: {len(self.findings)}" + (" (" + ", ".join(f"{p} {n}" for p, n in problems.items())
                                                          + ")" if problems else ""))
        lines += [f"  {finding}" for finding in self.findings[:20]]
        return "\n".join(lines)


class Hang(BaseException):
    """vlab still running far past a run's wall-clock guard, which is checked between runs of the
    engine and cannot end a loop inside vlab (in a hook, say). A BaseException: vlab's hooks turn an
    Exception into the guest's stop and carry on; this one must end the run."""


@contextmanager
def hang_guard(seconds: float):
    """Raise Hang in the block once it has run `seconds`, and again every `seconds` until it ends: a
    hook that catches it stops the engine, and the run raises it when the engine returns. (SIGALRM
    reaches a process's main thread only: elsewhere -- a widget's worker thread -- no guard.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(_signum, _frame):
        raise Hang(f"vlab still running after {seconds:g} s, far past the run's own guard: a loop inside vlab")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run(image: Image, machine: Machine):
    """Run a program's image on `machine`: (its result, the board or boot vCPU to compare), or
    (None, the traceback of a Python exception that escaped, or of a Hang)."""
    try:
        with hang_guard(HANG_S):
            if not machine.virtual:
                board = Board(ram_size=RAM_SIZE)
                load(board, image)
                return board.run(max_insns=MAX_INSNS, timeout_s=TIMEOUT_S), board
            vm = VM.from_image(image, traps=machine.traps, stage2=machine.stage2, ram_size=RAM_SIZE)
            return vm.run(max_insns=MAX_INSNS, timeout_s=TIMEOUT_S), vm.vcpus[0]
    except (Exception, Hang):  # noqa: BLE001 - a Python exception escaping vlab is exactly what we look for
        return None, traceback.format_exc(limit=4)


def escaped(seed: int, machine: str, trace: str) -> Finding:
    """The finding for a run that raised, from its traceback: a Hang, or a Python exception escaping vlab."""
    last = trace.strip().splitlines()[-1]  # "vlab.fuzz.check.Hang: ..." or "KeyError: ..."
    return Finding(seed, machine, "hang" if last.split(":")[0].endswith(Hang.__name__) else "python exception", last)


def _robustness(seed: int, machine: Machine, result: RunResult | None, trace) -> list[Finding]:
    if result is None:
        return [escaped(seed, machine.name, trace)]
    if result.reason is StopReason.TIMEOUT:
        return [Finding(seed, machine.name, "hang", result.message)]
    if result.reason not in _ENDINGS or not result.message:
        return [Finding(seed, machine.name, "vlab error", result.message)]
    return []


def _mismatch(bare: RunResult, virtual: RunResult, bare_machine, vm_machine) -> str | None:
    """What first differs between the board's run and the VM's, or None."""
    if bare.reason is not virtual.reason:
        return f"stop reason {bare.reason.value} != {virtual.reason.value} ({bare.message} / {virtual.message})"
    if bare.uart != virtual.uart:
        return f"console {bare.uart!r} != {virtual.uart!r}"
    if bare.instructions != virtual.instructions:
        return f"instructions retired {bare.instructions} != {virtual.instructions}"
    found = differences(bare_machine, vm_machine)
    return "; ".join(found[:4]) if found else None


def check(seed: int) -> Tally:
    """Generate the program of `seed`, run it on the board and in its VM, and tally what holds."""
    prog, vm = program(seed), vm_for(seed)
    tally = Tally(programs=1, kinds=Counter(prog.kinds))
    image, outcomes = prog.image(), []
    for machine in (BOARD, vm):
        result, subject = run(image, machine)
        tally.runs += 1
        if result is not None:
            tally.endings[result.reason.value] += 1
        tally.findings += _robustness(seed, machine, result, subject)
        outcomes.append((result, subject))
    (bare, bare_machine), (virtual, vm_machine) = outcomes
    divergent = sorted(prog.kinds & DIVERGENCES.keys())
    if bare is None or virtual is None:
        return tally
    if divergent:
        tally.divergent.update(divergent)
        return tally
    tally.compared += 1
    problem = _mismatch(bare, virtual, bare_machine, vm_machine)
    if problem:
        tally.findings.append(Finding(seed, vm.name, "mismatch", problem))
    return tally


def fuzz(seeds) -> Tally:
    """Check every seed in `seeds`; the tally of them all."""
    total = Tally()
    for seed in seeds:
        total.merge(check(seed))
    return total
