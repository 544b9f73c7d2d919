"""How each kind of answer is tried on a test's cases, and judged by the grader from plain data.

    FunctionAnswer   the function, called in the answer's process on each case's arguments; what it
                     returns comes back as plain data and is compared -- types too -- with the case's.
    HandlerAnswer    an exit handler: the grader runs the case's guest in a VM whose exits of one
                     class go to the student's handler (each vCPU request crossing as plain data),
                     then compares what the guest did with what it did on the bare board.
    AssemblyAnswer   a function returning assembly source: the grader runs it on the board, in its
                     exercise's harness, and compares what came out.
    PolicyAnswer     a scheduling decision: compared exactly with vlab's on given states, and run --
                     the grader runs guests on a host under a policy whose every decision is the
                     student's (each crossing as plain data), then checks what the schedule promised.

A failure's hint comes from the exercise's `mistakes`: functions given the case and what came
back, each returning a hint when it recognises its mistake.
"""

from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from vlab.grading import messages
from vlab.grading.exercise import Case, Verdict
from vlab.grading.handler_view import apply, exit_as_plain, perform
from vlab.grading.plain import a, mismatch, show, type_name
from vlab.grading.sanitize import clean

Mistake = Callable[[Case, Any], "str | None"]
RAM_CHUNK = 0x1_0000  # RAM is compared by the digests of its 64 KiB pieces (plain data, and locatable)


def _not_done(error: dict) -> bool:
    return error.get("type") == "NotImplementedError"


def first_hint(mistakes: Sequence[Mistake], case: Case, got: Any) -> str:
    for mistake in mistakes:
        hint = mistake(case, got)
        if hint:
            return hint
    return ""


@dataclass(frozen=True)
class FunctionAnswer:
    mistakes: tuple[Mistake, ...] = ()

    def verdict(self, exercise, answers, cases: list[Case], timeout_s: float) -> Verdict:
        called = answers.call(exercise.id, exercise.module, exercise.function, [c.args for c in cases], timeout_s)
        if called.delegated:
            return Verdict(False, messages.delegation(called.delegated), delegated=tuple(called.delegated))
        for case, got in zip(cases, called.values):
            why = mismatch(got, case.expected)
            if why:
                return Verdict(False, f"{case.label}: {why}", first_hint(self.mistakes, case, got))
        if called.error:
            return Verdict(False, f"{cases[len(called.values)].label}: {messages.raised(called.error, exercise.function)}",
                           not_done=_not_done(called.error))
        if len(called.values) != len(cases):
            return Verdict(False, f"{cases[min(len(called.values), len(cases) - 1)].label}: no answer came back "
                                  f"({len(called.values)} for {len(cases)} cases)")
        return Verdict(True)


# --- exit handlers, in a VM ------------------------------------------------------------------------

def observation(machine, result, trace) -> dict:
    """What a guest did, as plain data: how it ended, its UART, registers, RAM and device accesses.
    `machine` is a Board or a VM's boot vCPU (vlab.hyp.equivalence reads both alike)."""
    from vlab.hyp.equivalence import guest_state, ram_of

    ram = ram_of(machine)
    return {"reason": result.reason.value, "message": result.message, "uart": result.uart,
            "state": guest_state(machine), "ram_base": machine.ram.base,
            "ram": [hashlib.sha1(ram[i:i + RAM_CHUNK]).hexdigest() for i in range(0, len(ram), RAM_CHUNK)],
            "mmio": [[a.register, a.size, a.value, a.is_write] for a in trace]}


@functools.lru_cache(maxsize=64)
def _image(source: str):
    from vlab.asm import assemble
    from vlab.machine.loader import image_from_program

    return image_from_program(assemble(source))


def bare_run(source: str, ram_size: int) -> dict:
    """The guest on the bare board: what a VM must reproduce (Popek and Goldberg's equivalence)."""
    from vlab.machine.board import Board
    from vlab.machine.loader import load

    board = Board(ram_size=ram_size)
    load(board, _image(source))
    result = board.run(max_insns=1_000_000, timeout_s=5)
    return observation(board, result, board.mmio_trace)


EXITS_KEPT = 200  # exits whose handling an observation records, for the mistakes to look at


@dataclass
class _Exchange:
    """What happened between the VM and the student's handler during one run."""

    returned: list = field(default_factory=list)  # the first return value that was not a str
    error: tuple[dict, str] | None = None  # what the handler raised, and on which exit
    fatal: Exception | None = None  # the handler's process timed out or died
    delegated: list[str] = field(default_factory=list)
    exits: list = field(default_factory=list)  # [ISS, the changes the handler made], per exit


class _HandlerFailed(Exception):
    """The student's handler raised: the VM stops the guest (the message is the grader's)."""


def _access(entry: list) -> str:
    register, size, value, is_write = entry
    return f"{'wrote' if is_write else 'read'} {show(value)} {'to' if is_write else 'from'} {register} ({size} byte{'s' * (size > 1)})"


def differences(got: dict, expected: dict) -> str:
    """Where the guest's run in the VM differs from the bare machine's, the first kinds first."""
    if got["uart"] != expected["uart"]:
        return f"UART output: expected {show(expected['uart'])}, got {show(got['uart'])}"
    for i, (g, e) in enumerate(zip(got["mmio"], expected["mmio"])):
        if g != e:
            return f"device access #{i + 1}: on the bare machine the guest {_access(e)}; in the VM it {_access(g)}"
    if len(got["mmio"]) != len(expected["mmio"]):
        return f"{len(got['mmio'])} device accesses, expected {len(expected['mmio'])}"
    state = [f"{name}: expected {show(value)}, got {show(got['state'].get(name))}"
             for name, value in expected["state"].items() if got["state"].get(name) != value]
    if state:
        return "registers differ from the bare machine's: " + "; ".join(state[:4])
    chunks = [i for i, (g, e) in enumerate(zip(got["ram"], expected["ram"])) if g != e]
    if chunks:
        start = expected["ram_base"] + chunks[0] * RAM_CHUNK
        return f"RAM differs from the bare machine's (first in {start:#x}..{start + RAM_CHUNK - 1:#x})"
    return ""


def _perform(vcpu, exit, operation: str | None, args: list, changes: list):
    apply(vcpu, exit, changes)
    return None if operation is None else perform(vcpu, exit, operation, args)


@dataclass(frozen=True)
class HandlerAnswer:
    """Cases are (guest source, HCR_EL2 trap bits, RAM size); expected is `bare_run` of the guest. What
    the mistakes are given also holds, per exit, its ISS and the changes the handler made ("exits")."""

    exception_class: int
    mistakes: tuple[Mistake, ...] = ()

    def verdict(self, exercise, answers, cases: list[Case], timeout_s: float) -> Verdict:
        deadline = time.monotonic() + timeout_s
        for case in cases:
            exchange, got, exits = self._run(exercise, answers, case, deadline)
            if exchange.delegated:
                return Verdict(False, messages.delegation(exchange.delegated), delegated=tuple(exchange.delegated))
            if exchange.error:
                error, on = exchange.error
                return Verdict(False, f"{case.label}: your handler raised {messages.raised(error, exercise.function)}, "
                                      f"on {clean(on)}", not_done=_not_done(error))
            if exits == 0:
                return Verdict(False, f"{case.label}: the guest never exited with this class, so your handler was "
                                      "not tested")
            if exchange.returned:
                value = exchange.returned[0]
                return Verdict(False, f"{case.label}: {exercise.function} returned {a(type_name(value))}"
                                      f"{'' if value is None else f' ({show(value)})'}, expected a str: one line "
                                      "saying what it did, for the trap log")
            if got["reason"] != case.expected["reason"]:
                return Verdict(False, f"{case.label}: the guest did not end as on the bare machine "
                                      f"({case.expected['reason']}): {clean(got['message'])}",
                               first_hint(self.mistakes, case, got))
            why = differences(got, case.expected)
            if why:
                return Verdict(False, f"{case.label}: {why}", first_hint(self.mistakes, case, got))
        return Verdict(True)

    def _run(self, exercise, answers, case: Case, deadline: float) -> tuple[_Exchange, dict, int]:
        from vlab.arch.esr import ExceptionClass
        from vlab.arch.hcr import HCR
        from vlab.hyp import VM

        source, traps, ram_size = case.args
        exchange = _Exchange()

        def handler(vcpu, exit) -> str:
            made: list = []
            if len(exchange.exits) < EXITS_KEPT:
                exchange.exits.append([exit.syndrome.iss, made])

            def request(operation, args, changes):
                made.extend(changes)
                return _perform(vcpu, exit, operation, args, changes)
            try:
                value, error, delegated = answers.handle(exercise.id, exercise.module, exercise.function,
                                                         exit_as_plain(exit, vcpu), request, deadline)
            except Exception as e:  # noqa: BLE001 - TimedOut or Ended: the test ends, after the VM stops
                exchange.fatal = e
                raise _HandlerFailed from None
            exchange.delegated += [n for n in delegated if n not in exchange.delegated]
            if error is not None:
                exchange.error = (error, exit.describe())
                raise _HandlerFailed
            if type(value) is not str:
                exchange.returned = exchange.returned or [value]
                return show(value)
            return value

        ec = ExceptionClass(self.exception_class)
        vm = VM.from_image(_image(source), traps=HCR(traps), ram_size=ram_size)
        vm.set_handler(ec, handler)
        result = vm.run(max_insns=1_000_000, timeout_s=max(0.05, deadline - time.monotonic()))
        if exchange.fatal is not None:
            raise exchange.fatal
        observed = observation(vm.vcpus[0], result, vm.device_accesses()) | {"exits": exchange.exits}
        return exchange, observed, vm.exits.get(ec.name, 0)


# --- assembly, on the board --------------------------------------------------------------------------

@dataclass(frozen=True)
class AssemblyAnswer:
    """The answer returns assembly source; `run(source, case)` runs it (raising AssertionError with
    the student's message when it cannot) and returns what happened; `judge(case, observed)` says
    what is wrong, or ""."""

    run: Callable[[str, Case], dict]
    judge: Callable[[Case, dict], str]
    mistakes: tuple[Mistake, ...] = ()

    def verdict(self, exercise, answers, cases: list[Case], timeout_s: float) -> Verdict:
        called = answers.call(exercise.id, exercise.module, exercise.function, [()], timeout_s)
        if called.delegated:
            return Verdict(False, messages.delegation(called.delegated), delegated=tuple(called.delegated))
        if called.error:
            return Verdict(False, messages.raised(called.error, exercise.function), not_done=_not_done(called.error))
        if len(called.values) != 1:
            return Verdict(False, f"{exercise.function}() gave {len(called.values)} answers for one call")
        source = called.values[0]
        if type(source) is not str:
            return Verdict(False, f"{exercise.function}() should return assembly source (a str), not "
                                  f"{a(type_name(source))}")
        for case in cases:
            try:
                observed = self.run(source, case)
            except AssertionError as e:
                return Verdict(False, clean(str(e)))
            why = self.judge(case, observed)
            if why:
                return Verdict(False, f"{case.label}: {why}", first_hint(self.mistakes, case, (source, observed)))
        return Verdict(True)


# --- scheduling policies, on a host ------------------------------------------------------------------

HOST_RUN = "guests on a host"  # a PolicyAnswer case whose args are (HOST_RUN, what to run): a run, not a call


def is_run(case: Case) -> bool:
    return len(case.args) == 2 and case.args[0] == HOST_RUN


class _Stopped(Exception):
    """The answer raised, reached for vlab's own answer or gave nothing back: the run ends there."""


@dataclass
class _Decisions:
    """`decide(*arguments)` while guests run: one call to the answer's process per decision, plain data each
    way. Only the answer's time counts against the test's limit (the guests' run is bounded by its duration)."""

    exercise: Any
    answers: Any
    left_s: float
    case: Case | None = None
    stopped: Verdict | None = None

    def __call__(self, *arguments):
        exercise, start = self.exercise, time.monotonic()
        try:
            called = self.answers.call(exercise.id, exercise.module, exercise.function, [list(arguments)],
                                       self.left_s)
        finally:
            self.left_s -= time.monotonic() - start
        if called.delegated:
            self.stopped = Verdict(False, messages.delegation(called.delegated), delegated=tuple(called.delegated))
        elif called.error:
            self.stopped = Verdict(False, f"{self.case.label}: {messages.raised(called.error, exercise.function)}",
                                   not_done=_not_done(called.error))
        elif len(called.values) != 1:
            self.stopped = Verdict(False, f"{self.case.label}: no decision came back from {exercise.function}")
        if self.stopped:
            raise _Stopped
        return called.values[0]


@dataclass(frozen=True)
class PolicyAnswer:
    """A scheduling answer, tried on real guests. A case is a call or a run:
    - a call: the answer's arguments and what vlab decides, compared exactly (as FunctionAnswer does),
      hints from `mistakes`;
    - a run, args (HOST_RUN, spec): `run(spec, decide)` runs guests on a Host under a policy made of the
      answer's decisions -- `decide(*arguments)` calls the answer in its process and returns what it
      returned, plain data each way -- and returns what happened (raising AssertionError with the student's
      message when a decision cannot be used); `judge(case, observed)` says what is wrong, or "". Hints
      come from `run_mistakes`, given the observation ({"error": message} for an unusable decision)."""

    run: Callable[[Any, Callable], dict]
    judge: Callable[[Case, dict], str]
    mistakes: tuple[Mistake, ...] = ()
    run_mistakes: tuple[Mistake, ...] = ()

    def verdict(self, exercise, answers, cases: list[Case], timeout_s: float) -> Verdict:
        start = time.monotonic()
        calls = [c for c in cases if not is_run(c)]
        if calls:
            verdict = FunctionAnswer(self.mistakes).verdict(exercise, answers, calls, timeout_s)
            if not verdict.passed:
                return verdict
        decisions = _Decisions(exercise, answers, timeout_s - (time.monotonic() - start))
        for case in (c for c in cases if is_run(c)):
            decisions.case = case
            try:
                observed = self.run(case.args[1], decisions)
            except _Stopped:
                return decisions.stopped
            except AssertionError as e:
                message = clean(str(e))
                return Verdict(False, f"{case.label}: {message}",
                               first_hint(self.run_mistakes, case, {"error": message}))
            why = self.judge(case, observed)
            if why:
                return Verdict(False, f"{case.label}: {why}", first_hint(self.run_mistakes, case, observed))
        return Verdict(True)
