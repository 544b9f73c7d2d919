"""Chapter 6's exercises: the reference passes every test, public and hidden; an answer with one slip
against its docstring fails exactly the tests of that requirement, with the hint for that slip --
for a device plan, what its guests did when the plan was tried on a real host."""

from __future__ import annotations

import pytest
from test_grading_mistakes import answer_with, failures

from vlab.grading import EXERCISES

CYCLES, PLAN = "ch06.predicted_cycles", "ch06.plan_devices"
ALL_CYCLES = {t.name for t in EXERCISES[CYCLES].tests}
RECORDED, RANDOM_PATHS = "every path sensitive.S takes under type 1, type 2 and VHE", "random paths"


@pytest.mark.parametrize("old, new, failing, hint", [
    ("transitions = 1 + sum(1 for before, after in zip(steps, steps[1:]) if before[\"layer\"] != after[\"layer\"])",
     "transitions = len(steps)", {RECORDED, "transitions: the trap in, then one per change of layer", RANDOM_PATHS},
     "a change of layer (plus 1 for the trap in), not a step"),
    ('step["saved"] + step["restored"]', 'step["saved"]',
     {RECORDED, "saved and restored registers both count", "every kind but general-purpose is priced as a system "
      "register", RANDOM_PATHS}, "restored as well as those saved"),
    ('gprs * costs["gpr"]', 'gprs * costs["sysreg"]',
     {RECORDED, "every kind but general-purpose is priced as a system register", RANDOM_PATHS},
     'every other kind costs costs["sysreg"]'),
    ("    if not steps:\n        return 0\n", "", {"no steps, no exit: 0 cycles"}, "a passthrough access makes no exit"),
    ('return transitions * costs["transition"]', 'return 1.0 * transitions * costs["transition"]',
     ALL_CYCLES - {"no steps, no exit: 0 cycles"}, "an int"),
], ids=["per step", "saved only", "one price", "no exit", "a float"])
def test_a_slip_in_predicted_cycles_fails_its_requirements_tests_with_its_hint(tmp_path, old, new, failing, hint):
    failed = failures(CYCLES, answer_with(CYCLES, old, new, tmp_path))
    assert set(failed) == failing
    assert all(hint in h for _, h in failed.values()), failed


@pytest.mark.parametrize("old, new, failing, hint", [
    ('plan[device] = f"passthrough:{users[0]}"', 'plan[device] = "shared"',
     {"a device one VM uses is that VM's alone", "a safety VM never shares a device with an open VM",
      "a device nobody uses is 'unused'", "random designs"}, "made 16 exits reaching it"),
    ('kinds == {"safety", "open"}', 'kinds == {"nothing"}',
     {"a safety VM never shares a device with an open VM", "random designs"}, "the kinds of all of a device's users"),
    ('kinds == {"safety", "open"}', '"safety" in kinds',
     {"safety VMs may share a device with each other", "random designs"}, "VMs of one kind may share"),
    ('plan[device] = "unused"', 'continue', {"a device nobody uses is 'unused'", "random designs"}, ""),
    ('        else:\n            plan[device] = "shared"', '        else:\n            plan[device] = f"passthrough:{users[0]}"',
     {"a device several open VMs use is shared", "safety VMs may share a device with each other", "random designs"},
     "could not use"),
], ids=["shares a single user's", "never refuses", "refuses all safety sharing", "forgets unused", "passes shared"])
def test_a_slip_in_plan_devices_fails_its_requirements_tests_with_its_hint(tmp_path, old, new, failing, hint):
    failed = failures(PLAN, answer_with(PLAN, old, new, tmp_path))
    assert set(failed) == failing
    assert all(hint in h for name, (_, h) in failed.items() if name != "random designs"), failed
