"""Every requirement an exercise's docstring states has a test only a correct answer passes, and the
failure names the mistake: each answer below is the reference solution with one slip a student makes,
and exactly the tests of that requirement fail, with the hint for that slip (issue #16, items 3 and 4)."""

from __future__ import annotations

import importlib.util

import pytest
from submissions import SOLUTIONS

from vlab.grading import EXERCISES
from vlab.grading.answer_process import AnswerProcess, forked
from vlab.grading.runner import cases_for, run_exercise

TIMEOUT = 5.0
SEED = "mistakes"


def answer_with(exercise_id: str, old: str | tuple, new: str | tuple, tmp_path):
    """The exercise's reference function, with `old` (which must be in it) replaced by `new` (or each
    of a tuple of pieces by its counterpart)."""
    exercise = EXERCISES[exercise_id]
    text = (SOLUTIONS / f"{exercise.module}.py").read_text()
    for before, after in zip(*((old, new) if isinstance(old, tuple) else ((old,), (new,)))):
        assert before in text, before
        text = text.replace(before, after, 1)
    path = tmp_path / f"{exercise.module}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(f"mistaken_{exercise.module}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, exercise.function)


def failures(exercise_id: str, answer) -> dict[str, tuple[str, str]]:
    """The tests (public and hidden) the answer fails: name -> (message, hint)."""
    exercise = EXERCISES[exercise_id]
    answers = AnswerProcess(forked({exercise.function: answer}))
    try:
        result = run_exercise(exercise, answers, cases_for(exercise, SEED), TIMEOUT)
    finally:
        answers.close()
    return {t.name: (t.message or result.problem, t.hint) for t in result.tests if not t.passed}


MISTAKES = [
    # (exercise, what to change in the solution, what a student wrote, the tests that fail, a phrase of
    #  their hint, a phrase of their message)
    ("ch01.decode_uart_flags", "return {name for bit, name in names.items() if value >> bit & 1}",
     "return [name for bit, name in names.items() if value >> bit & 1]", "*", "return a set", "returned a list"),
    ("ch01.decode_uart_flags", 'names = {3: "BUSY", 4: "RXFE", 5: "TXFF", 6: "RXFF", 7: "TXFE"}',
     'names = {4: "BUSY", 5: "RXFE", 6: "TXFF", 7: "RXFF", 8: "TXFE"}', "*", "BUSY is bit 3", ""),
    ("ch01.decode_uart_flags", 'names = {3: "BUSY",', 'names = {0: "CTS", 1: "DSR", 2: "DCD", 3: "BUSY",',
     {"every combination of the five flags", "other bits are not flags"}, "name only BUSY", "should not be in it"),
    ("ch01.svc_esr", "(ec_svc64 << 26) | (1 << 25) |", "(ec_svc64 << 26) |", "*", "IL (bit 25) is 1",
     "expected 0x56000000, got 0x54000000"),
    ("ch01.svc_esr", "ec_svc64 = 0x15", "ec_svc64 = 0x16", "*", "EC goes in bits [31:26]: 0x15", ""),
    ("ch01.svc_esr", "(imm16 & 0xFFFF)", "(imm16 & 0xFF)",
     {"svc #1 and svc #0x1234", "random immediates", "the largest immediates"}, "the ISS holds the immediate", ""),
    ("ch01.svc_esr", "return (ec_svc64 << 26) | (1 << 25) | (imm16 & 0xFFFF)",
     "return hex((ec_svc64 << 26) | (1 << 25) | (imm16 & 0xFFFF))", "*", "a hex string looks like the number",
     "returned a str '0x56000000', expected an int"),
    ("ch01.print_number_source", "    tbnz    w6, #5, wait         // TXFF: the transmit FIFO is full\n", "",
     {"waits while the transmit FIFO is full", "random numbers, the UART busy for a while after each byte"},
     "wait while TXFF is set", "while UARTFR.TXFF was set"),
    ("ch01.print_number_source", "udiv    x4, x0, x3", "sdiv    x4, x0, x3", {"the largest 64-bit numbers"},
     "unsigned", "expected '18446744073709551615'"),
    ("ch01.print_number_source", "    add     sp, sp, #32\n    ret",
     "newline:\n    ldr     w6, [x1, #0x18]\n    tbnz    w6, #5, newline\n    mov     w5, #10\n    strb    w5, [x1]\n"
     "    add     sp, sp, #32\n    ret", "*", "no newline", "printed '42\\n'"),
    ("ch01.print_number_source", ("next_digit:\n", "    add     sp, sp, #32\n    ret"),
     ("    cbz     x0, done\nnext_digit:\n", "done:\n    add     sp, sp, #32\n    ret"), {"prints 0"},
     "0 still has one digit", "printed '', expected '0'"),
    ("ch01.print_number_source", "    add     sp, sp, #32\n    ret",
     "    bl      done\n    add     sp, sp, #32\n    ret\ndone:\n    ret", "*",
     "a `bl` inside print_number overwrites x30", "UART output so far: '42'; it stopped at 0x"),
    ("ch01.print_number_source", "    add     sp, sp, #32\n    ret", "    add     sp, sp, #32\n    b       .", "*",
     "the usual causes of an endless loop", "instruction budget"),
    ("ch02.handle_sysreg", "    vcpu.skip(exit)\n    return f\"{'read' if", "    return f\"{'read' if", "*",
     "vcpu.skip(exit) moves the guest past it", "did it forget vcpu.skip(exit)?"),
    ("ch02.handle_sysreg", "vcpu.set_x(access.rt, vcpu.read_sysreg(name))", "vcpu.set_x(0, vcpu.read_sysreg(name))",
     "*", "an MRS puts the vCPU's value of the register into x[Rt]", "registers differ from the bare machine's"),
    ("ch02.handle_sysreg", "        vcpu.write_sysreg(name, vcpu.x(access.rt))\n", "        pass\n",
     {"sensitive.S with TVM, TRVM and TID3", "random reads and writes", "every trapped register"},
     "an MSR writes x[Rt] into the vCPU's register", ""),
    ("ch02.handle_sysreg", "    return f\"{'read' if access.is_read else 'wrote'} {name}\"", "    return None", "*",
     "", "handle_sysreg returned None, expected a str"),
    ("ch02.handle_uart_access", "        if abort.sse and value >> (bits - 1) & 1:\n            value -= 1 << bits\n", "",
     {"loads are sign-extended (SSE) and kept to 32 bits unless SF", "random accesses of every width"},
     "sign-extend the value read when SSE is set", "expected 0xffffffffffffff90, got 0x90"),
    ("ch02.handle_uart_access", "value & ((1 << 64) - 1 if abort.sf else 0xFFFF_FFFF)", "value & ((1 << 64) - 1)",
     {"loads are sign-extended (SSE) and kept to 32 bits unless SF", "random accesses of every width"},
     "keep only 32 bits", "expected 0xffffff90, got 0xffffffffffffff90"),
    ("ch02.handle_uart_access", "value = vcpu.x(abort.srt) & ((1 << bits) - 1)", "value = vcpu.x(abort.srt)",
     {"stores write only the access's bytes", "random accesses of every width"},
     "a store writes only the access's .size low bytes", "wrote 0x7f00000000002141 to UARTDR"),
    ("ch02.handle_uart_access", "vcpu.platform.mmio(device, offset, abort.size, 0, False) & ((1 << bits) - 1)",
     "vcpu.platform.mmio(device, offset, abort.size, 0, False)",
     {"bytes, halfwords and words; the zero register", "random accesses of every width"},
     "keeps only those bytes", "x11: expected 0x24, got 0xe924"),
    ("ch02.handle_uart_access", "    vcpu.skip(exit)\n    return f\"{'wrote' if abort.wnr", "    return f\"{'wrote' if abort.wnr",
     "*", "vcpu.skip(exit)", ""),
    ("ch03.decode_stage2_descriptor", '"readable": bool(value >> 6 & 1)', '"readable": value >> 6 & 1',
     {"the descriptors of a real VM's stage 2", "write-protected pages (dirty tracking)", "every kind at every level",
      "attributes: MemAttr, S2AP, AF and XN", "random descriptors at every level"},
     "readable is a boolean", "returned an int 0x1, expected a bool"),
    ("ch03.decode_stage2_descriptor", '"address": value & 0x0000_FFFF_FFFF_F000 & ~((1 << shift) - 1)',
     '"address": value & 0x0000_FFFF_FFFF_F000',
     {"every kind at every level", "random descriptors at every level", "attributes: MemAttr, S2AP, AF and XN"},
     "keeps only the bits above the region it maps", ""),
    ("ch03.decode_stage2_descriptor", "if level == 3 and not kind_bit or level == 0 and not kind_bit:",
     "if level == 0 and not kind_bit:", {"every kind at every level", "random descriptors at every level"},
     "reserved at level 3", "at level 3: keys not expected: 'address'"),
    ("ch03.decode_stage2_descriptor", '"readable": bool(value >> 6 & 1),\n        "writable": bool(value >> 7 & 1)',
     '"readable": bool(value >> 7 & 1),\n        "writable": bool(value >> 6 & 1)',
     {"write-protected pages (dirty tracking)", "every kind at every level", "attributes: MemAttr, S2AP, AF and XN",
      "random descriptors at every level"}, "S2AP is bits [7:6]", ""),
    ("ch03.stage2_translate", "(1, 30, 10)", "(1, 30, 9)",
     {"the level-1 index has ten bits", "blocks, pages and reserved entries",
      "random tables with blocks, cleared access flags and reserved entries"},
     "ten bits, because two tables are concatenated", "IPA 0x8040000000: returned an int"),
    ("ch03.stage2_translate", " or not value >> 10 & 1:", ":",
     {"the access flag", "blocks, pages and reserved entries",
      "random tables with blocks, cleared access flags and reserved entries"}, "access flag (bit 10) is clear", ""),
    ("ch03.stage2_translate", "    if ipa >> 40:\n        return None\n", "",
     {"IPAs of 40 bits or more are faults", "blocks, pages and reserved entries",
      "random tables with blocks, cleared access flags and reserved entries"}, "40 bits or more is a fault", ""),
    ("ch03.stage2_translate", "if level == 3 and not is_table_or_page or not value >> 10 & 1:",
     "if not value >> 10 & 1:", {"blocks, pages and reserved entries",
                                 "random tables with blocks, cleared access flags and reserved entries"},
     "0b01 at level 3 is reserved", ""),
    ("ch03.stage2_translate", "| (ipa & offset_mask)", "", {"RAM of a VM scattered over the host", "the access flag",
                                                           "blocks, pages and reserved entries",
                                                           "random tables with blocks, cleared access flags and "
                                                           "reserved entries", "random IPAs in a contiguous VM"},
     "keep the offset", ""),
]


@pytest.mark.parametrize("exercise_id, old, new, failing, hint, message", MISTAKES,
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(MISTAKES)])
def test_a_slip_fails_the_tests_of_its_requirement_with_its_hint(tmp_path, exercise_id, old, new, failing, hint,
                                                                message):
    failed = failures(exercise_id, answer_with(exercise_id, old, new, tmp_path))
    everything = {t.name for t in EXERCISES[exercise_id].tests}
    assert set(failed) == (everything if failing == "*" else failing)
    assert all(hint in h for _, h in failed.values()), {n: h for n, (_, h) in failed.items()}
    assert any(message in m for m, _ in failed.values()), {n: m for n, (m, _) in failed.items()}


def test_the_reference_solutions_pass_every_test_public_and_hidden():
    for exercise in EXERCISES.values():
        answer = getattr(_solutions(exercise.module), exercise.function)
        assert failures(exercise.id, answer) == {}, exercise.id


def _solutions(module: str):
    spec = importlib.util.spec_from_file_location(f"reference_{module}", SOLUTIONS / f"{module}.py")
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded
