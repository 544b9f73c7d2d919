"""Chapter 6's exercises: the reference passes every test, and an answer that breaks one requirement of
its docstring fails the test of that requirement (and the real-run tests it would spoil)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vlab.grading.runner import run_tests
from vlab.grading.specs import lookup

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "solutions"))
from ch06_hypervisor_types import plan_devices, predicted_cycles  # noqa: E402


def failing(exercise_id: str, answer) -> set[str]:
    result = run_tests(lookup(exercise_id), answer, hidden=True, timeout_s=120)
    return {t.name for t in result.tests if not t.passed}


def test_the_reference_answers_pass_every_test():
    assert failing("ch06.predicted_cycles", predicted_cycles) == set()
    assert failing("ch06.plan_devices", plan_devices) == set()


def _moved(steps, which):
    return [(kind, n) for s in steps for key in which for kind, n in s[key]]


def counts_steps(steps, costs):  # a transition per step, not per change of layer
    return len(steps) * costs["transition"] + _price(_moved(steps, ("saved", "restored")), costs) if steps else 0


def counts_only_saved(steps, costs):
    return predicted_cycles([s | {"restored": []} for s in steps], costs)


def all_at_sysreg(steps, costs):
    return predicted_cycles(steps, costs | {"gpr": costs["sysreg"]})


def no_exit_crashes(steps, costs):
    return predicted_cycles(steps, costs) if steps else steps[0]


def _price(moved, costs):
    return sum(n * (costs["gpr"] if kind == "general-purpose" else costs["sysreg"]) for kind, n in moved)


@pytest.mark.parametrize("answer, fails", [
    (counts_steps, {"every path sensitive.S takes under type 1, type 2 and VHE",
                    "transitions: the trap in, then one per change of layer", "random paths"}),
    (counts_only_saved, {"every path sensitive.S takes under type 1, type 2 and VHE",
                         "saved and restored registers both count", "every kind but general-purpose is priced as a "
                         "system register", "random paths"}),
    (all_at_sysreg, {"every path sensitive.S takes under type 1, type 2 and VHE", "every kind but general-purpose "
                     "is priced as a system register", "random paths"}),
    (no_exit_crashes, {"no steps, no exit: 0 cycles"}),
], ids=lambda a: getattr(a, "__name__", ""))
def test_each_broken_requirement_of_predicted_cycles_fails_its_test(answer, fails):
    assert failing("ch06.predicted_cycles", answer) == fails


def first_user_always(design):
    return {d: f"passthrough:{users[0]}" if users else "unused" for d, users in design["devices"].items()}


def shares_with_open(design):
    return {d: "shared" if v == "refuse" else v for d, v in plan_devices(design).items()}


def refuses_any_safety_sharing(design):
    plan = plan_devices(design)
    return {d: "refuse" if v == "shared" and any(design["vms"][u] == "safety" for u in design["devices"][d]) else v
            for d, v in plan.items()}


def forgets_unused(design):
    return {d: v for d, v in plan_devices(design).items() if v != "unused"}


def shares_single_users(design):
    return {d: "shared" if v.startswith("passthrough:") else v for d, v in plan_devices(design).items()}


@pytest.mark.parametrize("answer, fails", [
    (first_user_always, {"a device several open VMs use is shared: each access an exit, all of them reach it",
                         "a safety VM never shares a device with an open VM", "safety VMs may share a device with "
                         "each other", "random designs"}),
    (shares_with_open, {"a safety VM never shares a device with an open VM", "random designs"}),
    (refuses_any_safety_sharing, {"safety VMs may share a device with each other", "random designs"}),
    (forgets_unused, {"a device nobody uses is 'unused'", "random designs"}),
    (shares_single_users, {"a device one VM uses is that VM's alone: no exits, and another VM's probe faults",
                           "a safety VM never shares a device with an open VM", "a device nobody uses is 'unused'",
                           "random designs"}),
], ids=lambda a: getattr(a, "__name__", ""))
def test_each_broken_requirement_of_plan_devices_fails_its_test(answer, fails):
    assert failing("ch06.plan_devices", answer) == fails
