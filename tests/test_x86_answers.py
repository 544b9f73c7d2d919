"""The three answers to x86's problem, each running the probe kernel: what the kernel sees, what it costs.

The reference is always the bare machine (the same kernel at ring 0 on the same
core): a correct virtualization makes the kernel see, and the monitor believe,
exactly what the bare machine shows.
"""

from __future__ import annotations

import struct
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vlab.x86 import answers, paravirt, sensitive
from vlab.x86.code import assemble, decode_all
from vlab.x86.machine import GDT, IDT, IF, TSS_SELECTOR
from vlab.x86.translate import translate

SEEN = answers.SEEN


@pytest.fixture(scope="module")
def comparison():
    return answers.compare()


def test_every_run_of_the_probe_kernel_ends_in_its_hlt(comparison):
    for mode, outcome in comparison.outcomes.items():
        assert outcome.finished, f"{mode}: {outcome.message}"


def test_trap_and_emulate_alone_fails_where_the_instructions_do_not_trap(comparison):
    bare, tae = comparison.outcomes["bare"], comparison.outcomes["trap-and-emulate"]
    flags = [p for p in answers.PROBES if p.kind == "flags"]
    # pushfd shows the real IF, 1, where the kernel had cleared it (probe 1, and probe 3 whose popfd was dropped)
    assert [bool(tae.value(p) & IF) for p in flags] == [True, True, True, True]
    assert [bool(bare.value(p) & IF) for p in flags] == [False, True, False, True]
    # popfd with IF=1 never reached the monitor: it still believes interrupts are off
    assert tae.believed_if == [False, False, False, True] and bare.believed_if == [False, True, False, True]
    # the tables and registers the kernel loaded were emulated, but reading them back shows the host's
    by_name = {p.name.split(":")[0]: tae.value(p) for p in answers.PROBES}
    assert by_name["sgdt"] == GDT and by_name["sidt"] == IDT and by_name["str"] == TSS_SELECTOR
    assert by_name["smsw"] & 2 == 0  # the MP bit the kernel set went to its virtual CR0 only
    assert len(comparison.differences("trap-and-emulate")) == 7


def test_the_privileged_instructions_were_all_trapped_and_emulated(comparison):
    trapped = comparison.outcomes["trap-and-emulate"].trapped
    assert trapped == Counter({"lgdt": 1, "lidt": 1, "ltr": 1, "mov from cr0": 1, "mov to cr0": 1, "cli": 1,
                               "sti": 1, "hlt": 1})


@pytest.mark.parametrize("mode", ["paravirtual", "binary translation"])
def test_paravirtualization_and_binary_translation_see_exactly_the_bare_machine(comparison, mode):
    assert comparison.differences(mode) == []
    assert comparison.outcomes[mode].seen == comparison.outcomes["bare"].seen  # every byte, all flags included


def test_the_paravirtual_build_has_no_sensitive_instruction_and_only_makes_hypercalls(comparison):
    code, _ = answers.kernel_image(paravirtual=True)
    decoded = decode_all(code, answers.CODE)
    assert not {i.mnemonic for i in decoded} & ({s.mnemonic for s in sensitive.SENSITIVE} - {"mov"})
    assert not [i.text for i in decoded if "cr0" in i.op_str]  # nor a mov to or from CR0
    events = comparison.outcomes["paravirtual"].events
    assert set(events) == {"hypercall"}
    assert events["hypercall"] == sum(1 for line in answers.SOURCE.read_text().splitlines()
                                      if line.split() and line.split()[0] in paravirt.MACROS)


def test_binary_translation_rewrote_exactly_the_silent_sensitive_instructions(comparison):
    code, _ = answers.kernel_image()
    silent = set(sensitive.sensitive_but_unprivileged(sensitive.classify()))
    expected = Counter(i.mnemonic for i in decode_all(code, answers.CODE) if i.mnemonic in silent)
    outcome = comparison.outcomes["binary translation"]
    assert outcome.translation.counts() == expected
    assert outcome.events["translated"] == sum(expected.values())
    assert outcome.events["#GP"] == sum(comparison.outcomes["trap-and-emulate"].trapped.values())


def test_a_rewritten_instruction_keeps_its_length_and_the_code_around_it():
    code = assemble("nop; popfd; sgdt [0x8000]; pushfd; nop", answers.CODE)
    translation = translate(code, answers.CODE)
    assert len(translation.code) == len(code)
    assert translation.code == bytes.fromhex("90" "cc" "cc909090909090" "cc" "90")
    assert sorted(translation.patches) == [answers.CODE + 1, answers.CODE + 2, answers.CODE + 9]


def test_the_comparison_prints_a_table_and_names_the_hardware_answer(comparison):
    text = str(comparison)
    assert "IF=1 (monitor: IF=0 !)" in text and "0x300000 !" in text
    assert "AArch64" in text and "HCR_EL2" in text
    assert "rewrote 10 of" in text


# --- the binary-translated kernel's virtual IF follows its popfd/cli/sti exactly ---------------------

OPS = st.one_of(st.just("cli"), st.just("sti"), st.tuples(st.just("popfd"), st.integers(0, 0xFFFF_FFFF)))


def program(ops) -> bytes:
    """After each op, the kernel stores the flags it sees (pushfd) into SEEN."""
    lines = []
    for i, op in enumerate(ops):
        if isinstance(op, tuple):
            lines.append(f"push {op[1] & 0x0CD5 | op[1] & IF | 0x2:#x}; popfd")  # arithmetic flags and IF
        else:
            lines.append(op)
        lines.append(f"pushfd; pop eax; mov [{SEEN + 4 * i:#x}], eax")
    lines.append("hlt")
    return assemble("\n".join(lines), answers.CODE)


@given(st.lists(OPS, min_size=1, max_size=40))
def test_the_translated_kernels_virtual_if_follows_its_popfd_cli_and_sti_exactly(ops):
    code = program(ops)
    bare = answers.run_kernel(code, "bare")
    translated = answers.run_kernel(code, "binary translation")
    assert bare.finished and translated.finished, translated.message
    n = 4 * len(ops)
    assert translated.seen[:n] == bare.seen[:n]  # what it saw, every flag
    assert translated.believed_if == bare.real_if  # the monitor's IF, after each op, is the bare machine's IF
    assert all(translated.real_if)  # while the real IF never left 1


@given(st.lists(OPS, min_size=1, max_size=40))
def test_without_translation_the_monitor_loses_track_as_soon_as_popfd_changes_if(ops):
    code = program(ops)
    bare = answers.run_kernel(code, "bare")
    tae = answers.run_kernel(code, "trap-and-emulate")
    model, lost = False, False
    for op in ops:  # a popfd that changes IF never reaches the monitor
        new = op == "sti" if not isinstance(op, tuple) else bool(op[1] & IF)
        lost |= isinstance(op, tuple) and new != model
        model = new
    assert (tae.believed_if != bare.real_if) == lost


# --- bad kernels ------------------------------------------------------------------------------------

def test_a_privileged_instruction_the_monitor_does_not_emulate_stops_the_guest_with_a_reason():
    outcome = answers.run_kernel(assemble("nop; mov cr3, eax; hlt", answers.CODE), "trap-and-emulate")
    assert not outcome.finished
    assert f"{answers.CODE + 1:#x}" in outcome.message and "mov cr3, eax" in outcome.message


def test_a_translated_popfd_with_its_stack_outside_ram_stops_the_guest_with_a_reason():
    code = assemble("mov esp, 0x7ffffff0; popfd; hlt", answers.CODE)
    outcome = answers.run_kernel(code, "binary translation")
    assert not outcome.finished and "popfd" in outcome.message and "outside" in outcome.message


def test_a_breakpoint_of_the_guests_own_is_reported_not_emulated():
    outcome = answers.run_kernel(assemble("nop; int3; hlt", answers.CODE), "binary translation")
    assert not outcome.finished and "exception 3" in outcome.message


def test_hypercalls_answer_enosys_for_an_unknown_number_and_efault_for_a_wild_pointer():
    source = f"""
        mov eax, 99; int 0x82; mov [{SEEN:#x}], eax
        mov ebx, 0x7ffffff0; mov eax, {paravirt.NUMBER['load_gdt']}; int 0x82; mov [{SEEN + 4:#x}], eax
        mov eax, {paravirt.NUMBER['halt']}; int 0x82
    """
    outcome = answers.run_kernel(assemble(source, answers.CODE), "paravirtual")
    assert outcome.finished
    assert struct.unpack_from("<ii", outcome.seen) == (-38, -14)
