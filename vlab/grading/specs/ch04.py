"""Chapter 4 exercises: interrupts. Expectations come from the architecture's register layout and
from the bare board.

Two kinds of case. A field case gives the answer one list register's fields and expects the
GICH_LR value the architecture defines. A guest case runs a guest in a VM whose vGIC writes every
list register with the student's values: the grader asks the answer for the values of the fields
the run needs (plain data, crossing from its process), runs the VM with them, and asks again for
any fields the run then needed that it had not (a wrong value can lead the guest elsewhere), until
none is missing; what the guest did is compared with what it did on the bare board.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from vlab.grading import messages
from vlab.grading.exercise import Case, Exercise, Test, Verdict
from vlab.grading.kinds import differences, first_hint, observation
from vlab.grading.plain import a, mismatch, show, type_name
from vlab.grading.sanitize import clean

MODULE = "ch04_interrupts"
RAM = 0x40_0000
STATE_NAMES = ("invalid", "pending", "active", "pending+active")  # GICH_LR.State, bits [29:28]
STATE_BITS = {name: n for n, name in enumerate(STATE_NAMES)}
ROUNDS = 6  # asking again for the fields a run needed: a correct answer needs one


def architecture_value(vintid: int, state: str, priority: int, group: int = 0, physical: int | None = None,
                       source: int = 0, eoi: bool = False) -> int:
    """GICH_LR as the GICv2 architecture lays it out (IHI 0048B, 5.3.9)."""
    value = vintid & 0x3FF | STATE_BITS[state] << 28 | (priority >> 3 & 0x1F) << 23 | (group & 1) << 30
    if physical is not None:
        return value | 1 << 31 | (physical & 0x3FF) << 10
    return value | int(bool(eoi)) << 19 | (source & 7) << 10


def _fields(lr) -> tuple:
    """vlab's list register (vlab.machine.gic_virt.ListRegister) as the answer's arguments."""
    return (lr.vintid, STATE_NAMES[lr.state], lr.priority, lr.group, lr.physical if lr.hw else None,
            lr.cpuid, bool(lr.eoi))


def _label(args: tuple) -> str:
    vintid, state, priority, group, physical, source, eoi = args
    return (f"list_register({vintid}, {state!r}, {priority:#x}, group={group}, physical={physical}, "
            f"source={source}, eoi={eoi})")


def _field_case(*args) -> Case:
    args = tuple(args) + (0, None, 0, False)[len(args) - 3:]
    return Case(_label(args), args, architecture_value(*args))


def _guest_case(guest: str, traps: int = 0, vcpus: int = 1, stage2: str | None = None, seed: int = 0) -> Case:
    """ticks.S against the bare board; ipi.S (two CPUs, which the board has not) against its text.
    With `stage2`, the VM's RAM is host frames laid out as it says (from `seed`)."""
    from vlab.guests import GUESTS, IPI_TEXT

    label = (f"{guest}.S in a VM{' with WFI trapped' if traps else ''}{f' on {vcpus} vCPUs' if vcpus > 1 else ''}"
             f"{f', its RAM {stage2} (seed {seed})' if stage2 else ''}")
    args = ("guest", guest, traps, vcpus, stage2, seed)
    if guest == "ipi":
        return Case(label, args, {"reason": "powered_off", "uart": IPI_TEXT})
    from vlab.machine.board import Board
    from vlab.machine.loader import load

    board = Board(ram_size=RAM)
    load(board, GUESTS[guest].image())
    result = board.run(max_insns=1_000_000, timeout_s=10)
    return Case(label, args, observation(board, result, board.mmio_trace))


@dataclass(frozen=True)
class ListRegisterAnswer:
    """A function from a list register's fields to its value; field cases compare the value, guest
    cases what a VM does with the values (see the module docstring)."""

    mistakes: tuple = ()

    def verdict(self, exercise, answers, cases: list[Case], timeout_s: float) -> Verdict:
        deadline = time.monotonic() + timeout_s
        asked: dict[tuple, object] = {}
        for case in cases:
            if case.args[:1] == ("guest",):
                verdict = self._guest(exercise, answers, case, asked, deadline)
            else:
                verdict = self._ask(exercise, answers, [case.args], asked, deadline)
                if verdict is None:
                    why = mismatch(asked[case.args], case.expected)
                    verdict = Verdict(False, f"{case.label}: {why}", first_hint(self.mistakes, case,
                                                                                 asked[case.args])) if why else None
            if verdict is not None:
                return verdict
        return Verdict(True)

    def _ask(self, exercise, answers, needed: list[tuple], asked: dict, deadline: float) -> Verdict | None:
        """The answer's values for the fields not asked yet, into `asked`; a Verdict when it failed."""
        needed = [args for args in dict.fromkeys(needed) if args not in asked]
        if not needed:
            return None
        called = answers.call(exercise.id, exercise.module, exercise.function, needed,
                              max(0.05, deadline - time.monotonic()))
        if called.delegated:
            return Verdict(False, messages.delegation(called.delegated), delegated=tuple(called.delegated))
        asked.update(zip(needed, called.values))
        if called.error:
            return Verdict(False, f"{_label(needed[len(called.values)])}: "
                                  f"{messages.raised(called.error, exercise.function)}",
                           not_done=called.error.get("type") == "NotImplementedError")
        return None

    def _guest(self, exercise, answers, case: Case, asked: dict, deadline: float) -> Verdict | None:
        needed = self._run(case, None, deadline)[1]
        for _ in range(ROUNDS):
            failed = self._ask(exercise, answers, needed, asked, deadline)
            if failed is not None:
                return failed
            wrong = next((args for args in needed if type(asked[args]) is not int), None)
            if wrong is not None:
                value = asked[wrong]
                return Verdict(False, f"{case.label}: {_label(wrong)} returned {a(type_name(value))} "
                                      f"({show(value)}), expected an int: the register's 32 bits")
            observed, needed = self._run(case, asked, deadline)
            if not needed:
                break
        if observed["reason"] != case.expected["reason"]:
            why = (f"the guest did not end as on the bare machine ({case.expected['reason']}): "
                   f"{clean(observed['message'])}")
        elif "mmio" in case.expected:
            why = differences(observed, case.expected)
        else:
            why = "" if observed["uart"] == case.expected["uart"] else (
                f"UART output: expected {show(case.expected['uart'])}, got {show(observed['uart'])}")
        return Verdict(False, f"{case.label}: {why}", self._hint(case, observed, asked)) if why else None

    def _hint(self, case: Case, observed: dict, asked: dict) -> str:
        """The mistake in the first list register the answer got wrong, else what the guest shows."""
        wrong = next((args for args, value in asked.items() if value != architecture_value(*args)), None)
        if wrong is not None:
            hint = first_hint(self.mistakes, _field_case(*wrong), asked[wrong])
            if hint:
                return hint
        return first_hint(self.mistakes, case, observed)

    @staticmethod
    def _run(case: Case, values: dict | None, deadline: float) -> tuple[dict, list[tuple]]:
        """The guest in a VM whose list registers hold `values` (None: vlab's own, to learn which
        fields the run needs). Returns what it did and the fields it needed that `values` lacks."""
        from vlab.arch.hcr import HCR
        from vlab.guests import GUESTS
        from vlab.hyp import VM

        _, guest, traps, vcpus, stage2, seed = case.args
        needed: list[tuple] = []

        def encode(lr) -> int:
            args = _fields(lr)
            if values is None:
                needed.append(args)
                return lr.encode()
            if args not in values:
                needed.append(args)
                return 0  # not asked yet: left empty this run, asked before the next
            return values[args] & 0xFFFF_FFFF

        vm = VM.from_image(GUESTS[guest].image(), traps=HCR(traps), vcpus=vcpus, ram_size=RAM, stage2=stage2,
                           seed=seed)
        vm.vgic.encode = encode
        result = vm.run(max_insns=1_000_000, timeout_s=max(0.5, deadline - time.monotonic()))
        return observation(vm.vcpus[0], result, vm.device_accesses()), list(dict.fromkeys(needed))


# --- hints: a function of (case, what came back) that recognises one mistake ---------------------

def _not_an_int(case: Case, got) -> str | None:
    if isinstance(case.expected, int) and type(got) is not int:
        return "return the register's value, an int such as 0x9000_6c1b"


def _priority(case: Case, got) -> str | None:
    if isinstance(case.expected, int) and type(got) is int and got >> 23 & 0x1F != case.expected >> 23 & 0x1F:
        return "the register keeps the priority's top five bits: priority >> 3, in bits [27:23]"


def _state(case: Case, got) -> str | None:
    if isinstance(case.expected, int) and type(got) is int and got >> 28 & 3 != case.expected >> 28 & 3:
        return "the state goes in bits [29:28]: invalid 0b00, pending 0b01, active 0b10, pending+active 0b11"


def _hardware(case: Case, got) -> str | None:
    if isinstance(case.expected, int) and type(got) is int and (got ^ case.expected) >> 31:
        return "HW (bit 31) is set exactly when a physical interrupt stands behind the virtual one"


def _group(case: Case, got) -> str | None:
    if isinstance(case.expected, int) and type(got) is int and (got ^ case.expected) >> 30 & 1:
        return "the group goes in bit 30 (Grp1): 0 for group 0, 1 for group 1"


def _software(case: Case, got) -> str | None:
    if isinstance(case.expected, int) and type(got) is int and (got ^ case.expected) & 0xF_FC00:
        if case.args[4] is not None:
            return "with HW set, bits [19:10] hold the physical INTID"
        return "with HW clear, bit 19 asks for an EOI maintenance interrupt and bits [12:10] name an SGI's source CPU"


def _timer_never_again(case: Case, got) -> str | None:
    if case.args[:2] == ("guest", "ticks") and isinstance(got, dict) and got.get("reason") != "powered_off":
        return ("the timer is a hardware interrupt: HW (bit 31) and the physical INTID in [19:10] make the guest's "
                "EOI deactivate it; without them it never fires again")


# --- the cases ------------------------------------------------------------------------------------

CHOSEN = [(27, "pending", 0xA0, 0, 27), (3, "pending", 0x80, 0, None, 2, True), (40, "active", 0x10, 1),
          (1019, "pending+active", 0xF8), (0, "invalid", 0)]


def _random_fields(rng) -> list[Case]:
    cases = []
    for _ in range(300):
        hw = rng.random() < 0.3
        cases.append(_field_case(rng.randrange(1020), rng.choice(STATE_NAMES), rng.randrange(256) & 0xF8,
                                 rng.randrange(2), rng.randrange(1020) if hw else None,
                                 0 if hw else rng.randrange(8), not hw and rng.random() < 0.5))
    return cases


TWI = 1 << 13  # HCR_EL2.TWI

LIST_REGISTER = Exercise(
    id="ch04.list_register",
    title="Write a list register",
    statement=("Write the function that encodes a GICH_LR: the virtual INTID, its state, priority and group, and "
               "either the physical interrupt behind it or, for one made in software, an SGI's source CPU and "
               "the request for an EOI maintenance interrupt. The hypervisor writes every list register with it."),
    points=4,
    module=MODULE,
    kind=ListRegisterAnswer((_not_an_int, _hardware, _group, _state, _priority, _software, _timer_never_again)),
    tests=(
        Test("the fields, one at a time", lambda rng: [_field_case(*args) for args in CHOSEN],
             hint="state in bits [29:28]; the priority's top five bits (priority >> 3) in [27:23]"),
        Test("ticks.S in a VM: the virtual timer through your list registers", lambda rng: [_guest_case("ticks")],
             hint="the timer is a hardware interrupt: HW (bit 31) and the physical INTID in [19:10]"),
        Test("ipi.S on two vCPUs: an SGI from the other vCPU", lambda rng: [_guest_case("ipi", vcpus=2)],
             hint="an SGI's source CPU goes in bits [12:10]: GICC_IAR reports it to the guest"),
        Test("ticks.S with WFI trapped, its RAM scattered",
             lambda rng: [_guest_case("ticks", traps=TWI, stage2="scattered", seed=rng.randrange(1 << 16))],
             hidden=True),
        Test("random fields", _random_fields, hidden=True,
             hint="bit 19 (EOI) and bits [12:10] exist only when HW is 0"),
    ),
)

EXERCISES = (LIST_REGISTER,)
