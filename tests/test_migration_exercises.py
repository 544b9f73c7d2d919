"""Chapter 8's exercises: each slip a student makes against one requirement of a docstring fails exactly
the tests of that requirement, with its hint and a message naming what went wrong (the reference
answers earning every test is tests/test_grading_mistakes.py's, for every exercise)."""

from __future__ import annotations

import pytest
from test_grading_mistakes import answer_with, failures

from vlab.grading.specs import ch08

TARGET, FIRST_FIT, ROUNDS, FACTOR, RANDOM = (t.name for t in ch08.STOP_AND_COPY.tests)
PAIRS, HIGH, HOSTS, MOVES, CLUSTERS = (t.name for t in ch08.BALANCE.tests)
PAUSE = 'pause_ms = stats["state_ms"] + stats["dirty_pages"] * stats["page_ms"]'
KEY = "key = (len(used), len(moves))"

MISTAKES = [
    # (exercise, the solution's piece, the student's slip, the tests that fail, a phrase of their hint,
    #  a phrase of their message)
    ("ch08.stop_and_copy", PAUSE, 'pause_ms = stats["dirty_pages"] * stats["page_ms"]', {TARGET},
     "the pause costs state_ms too", "stopped after round 2, but none of the conditions held"),
    ("ch08.stop_and_copy", PAUSE, 'pause_ms = stats["state_ms"] + stats["sent_last"] * stats["page_ms"]',
     {TARGET, FIRST_FIT}, "page_ms for each dirty page", "after round 1 the pause would meet the downtime target"),
    ("ch08.stop_and_copy", "pause_ms <= target_ms or", "pause_ms <= target_ms / 2 or", {TARGET, FIRST_FIT},
     "stop when that is target_ms or less", "after round 3 the pause would meet the downtime target"),
    ("ch08.stop_and_copy", 'stats["round"] >= MAX_ROUNDS', 'stats["round"] > MAX_ROUNDS', {ROUNDS},
     "after 30 rounds", "after round 30 30 rounds are done"),
    ("ch08.stop_and_copy", ' or stats["sent_total"] > MAX_FACTOR * stats["memory_pages"]', "", {FACTOR, RANDOM},
     "exceeds 3 x memory_pages", "85 pages sent of 22"),
    ("ch08.stop_and_copy", "    return (pause_ms <= target_ms", "    return int(pause_ms <= target_ms", "*",
     "return a bool", "returned 0x0; return True or False"),
    ("ch08.balance", "return best[1]", "return dict(best[1])", "*", "return a list like",
     "return a list of (vm, host) pairs, not {"),
    ("ch08.balance", "moves = [(vm, host) for", "moves = [(vm, names.index(host)) for", "*", "return a list like",
     "names a host the cluster does not have"),
    ("ch08.balance", "if any(total > HIGH * capacity[host] + 1e-9", "if any(total > capacity[host] + 1e-9",
     {HIGH, HOSTS, CLUSTERS}, "at most 80%", "h0 carries 1.70 pCPUs of its 2: over 80%"),
    ("ch08.balance", KEY, "key = (0, len(moves))", {HOSTS, MOVES, CLUSTERS}, "the fewest hosts with any VM",
     "2 hosts carry VMs; 1 can carry them all"),
    ("ch08.balance", KEY, "key = (len(used), 0)", {MOVES, CLUSTERS}, "leave a VM where it is",
     "your answer moves 3 VMs; 1 would do"),
]


@pytest.mark.parametrize("exercise, old, new, failing, hint, message", MISTAKES,
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(MISTAKES)])
def test_a_slip_fails_exactly_the_tests_of_its_requirement(exercise, old, new, failing, hint, message, tmp_path):
    got = failures(exercise, answer_with(exercise, old, new, tmp_path))
    names = {t.name for e in ch08.EXERCISES if e.id == exercise for t in e.tests}
    assert set(got) == (names if failing == "*" else failing)
    assert all(hint in h for _, h in got.values()), got
    assert any(message in m for m, _ in got.values()), got
