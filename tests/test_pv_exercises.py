"""Chapter 7's exercises: every requirement a statement makes has a test only a correct answer passes.
Each answer below is the reference solution with one slip a student makes; exactly the tests of that
requirement fail, with the hint for that slip."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from vlab.grading import EXERCISES
from vlab.grading.answer_process import AnswerProcess, forked
from vlab.grading.runner import cases_for, run_exercise

SOLUTIONS = Path(__file__).resolve().parent.parent / "solutions"
MODULE = SOLUTIONS / "ch07_para_and_full.py"
SEED = "chapter 7"


def answer_with(exercise_id: str, edits: dict[str, str], tmp_path: Path):
    """The reference function of `exercise_id` with each key of `edits` (which must be in the file)
    replaced by its value."""
    text = MODULE.read_text()
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / MODULE.name
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("slipped_ch07", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, EXERCISES[exercise_id].function)


def failures(exercise_id: str, answer) -> dict[str, str]:
    """The tests (public and hidden) the answer fails: name -> hint."""
    exercise = EXERCISES[exercise_id]
    answers = AnswerProcess(forked({exercise.function: answer}))
    try:
        result = run_exercise(exercise, answers, cases_for(exercise, SEED), 10)
    finally:
        answers.close()
    return {t.name: t.hint for t in result.tests if not t.passed}


@pytest.mark.parametrize("exercise_id", ["ch07.console_write_source", "ch07.offer_buffer", "ch07.console_io"])
def test_the_reference_answer_passes_every_test_public_and_hidden(exercise_id, tmp_path):
    assert failures(exercise_id, answer_with(exercise_id, {}, tmp_path)) == {}


HYPERCALL = "    mov     x16, #18           // __HYPERVISOR_console_io\n    hvc     #0xea1\n"
ONE_EXIT = {"prints a line with one exit", "three calls, one of them empty", "a long buffer in one call"}
EVERY = ONE_EXIT | {"returns Xen's answer in x0", "keeps x19-x29 and sp"}
SLIPS = [
    # (exercise, edits to the solution, the tests that fail, a phrase of the hint)
    ("ch07.console_write_source", {HYPERCALL: "    mov     x16, #18\n    hvc     #0\n"}, EVERY, "HVC #0 is PSCI"),
    ("ch07.console_write_source", {"console_write:\n    mov     x2, x0": """console_write:
    mov     x9, x0
    mov     x10, x1
    cbz     x10, sent
per_byte:
    mov     x0, #0
    mov     x1, #1
    mov     x2, x9
    mov     x16, #18
    hvc     #0xea1
    add     x9, x9, #1
    subs    x10, x10, #1
    b.ne    per_byte
sent:
    ret
    mov     x2, x0"""}, EVERY,
     "one hypercall for the whole buffer"),
    ("ch07.console_write_source", {"console_write:\n    mov     x2, x0": "console_write:\n    cbz     x1, nothing\n    mov     x2, x0",
                                   "    hvc     #0xea1\n    ret\n": "    hvc     #0xea1\nnothing:\n    ret\n"},
     {"three calls, one of them empty"}, "even for 0 bytes"),
    ("ch07.console_write_source", {HYPERCALL: HYPERCALL + "    mov     x0, #0\n"}, {"returns Xen's answer in x0"},
     "leave the hypercall's result in x0"),
    ("ch07.console_write_source", {HYPERCALL: HYPERCALL + "    mov     x19, #0\n"}, {"keeps x19-x29 and sp"},
     "x19-x29 and sp belong to the caller"),
    ("ch07.console_write_source", {HYPERCALL: "    mov     x16, #18\n    sub     sp, sp, #16\n    hvc     #0xea1\n"},
     {"keeps x19-x29 and sp"}, "x19-x29 and sp belong to the caller"),
    ("ch07.offer_buffer", {"16 * descriptor, address, length, 0, 0)": "16 * descriptor, address, length, 1, 0)"},
     "*", "le16 flags = 0"),
    ("ch07.offer_buffer", {'struct.pack_into("<QIHH", desc, 16 * descriptor, address, length, 0, 0)':
                           'struct.pack_into("<QI", desc, 16 * descriptor, address, length)'},
     {"a descriptor table full of garbage"}, "le16 next = 0"),
    ("ch07.offer_buffer", {'4 + 2 * (idx % queue["size"]), descriptor)': "4 + 2 * descriptor, descriptor)"},
     {"a queue that has carried buffers", "descriptors in another order than the slots",
      "a descriptor table full of garbage", "the 16-bit index wraps", "a device that polls is not notified"},
     "the ring slot is avail.idx % size"),
    ("ch07.offer_buffer", {"(idx + 1) & 0xFFFF)  # after": "(idx + 1) % 0xFFFF)  # after"},
     {"the 16-bit index wraps"}, "mod 2**16"),
    ("ch07.offer_buffer", {'return bytes(desc), bytes(avail), not queue["used_flags"] & 1':
                           "return bytes(desc), bytes(avail), True"},
     {"a device that polls is not notified"}, "bit 0 (VIRTQ_USED_F_NO_NOTIFY)"),
    ("ch07.offer_buffer", {'return bytes(desc), bytes(avail), not queue["used_flags"] & 1':
                           'return bytes(desc), bytes(avail), not queue["used_flags"]'},
     {"a device that polls is not notified"}, "the other bits do not say"),
    ("ch07.offer_buffer", {"return bytes(desc), bytes(avail),": "return desc, avail,"}, "*", "not a bytearray"),
    ("ch07.console_io", {"cmd, count = x0 & 0xFFFF_FFFF, x1 & 0xFFFF_FFFF": "cmd, count = x0, x1"},
     {"cmd and count are 32 bits", "an empty write"}, "keep the low 32 bits"),
    ("ch07.console_io", {"return -14, b\"\"": "return -1, b\"\""}, {"a buffer outside the VM's RAM"},
     "negative errno"),
    ("ch07.console_io", {"return -38, b\"\"": "return 0, b\"\""}, {"a command Xen has but vlab does not serve"}, ""),
    ("ch07.console_io", {"    if count == 0:\n        return 0, b\"\"\n": ""}, {"an empty write"}, "count of 0"),
    ("ch07.console_io", {"return -14, b\"\"": "return -14, ram[max(0, x2 - ram_base):x2 - ram_base + count]"},
     {"a buffer outside the VM's RAM"}, "prints nothing"),
]


@pytest.mark.parametrize("exercise_id, edits, failing, hint", SLIPS,
                         ids=[f"{s[0]}-{i}" for i, s in enumerate(SLIPS)])
def test_a_slip_fails_the_tests_of_its_requirement_with_its_hint(exercise_id, edits, failing, hint, tmp_path):
    failed = failures(exercise_id, answer_with(exercise_id, edits, tmp_path))
    expected = {t.name for t in EXERCISES[exercise_id].tests} if failing == "*" else failing
    assert set(failed) == expected
    assert all(hint in h for h in failed.values()), failed
