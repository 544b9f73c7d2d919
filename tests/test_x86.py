"""x86 on Unicorn at CPL 3: the instructions that break Popek and Goldberg's Theorem 1, measured.

What the tests expect is the IA-32 architecture's behaviour (Intel SDM: POPF at
CPL > IOPL leaves IF alone without faulting; CLI there raises #GP; SGDT, SIDT,
SMSW and STR are not privileged without CR4.UMIP), checked against the machine's
own state, not against the code under test.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vlab.errors import AssemblyError
from vlab.x86 import sensitive
from vlab.x86.code import assemble, decode
from vlab.x86.machine import GP, IF, TSS_SELECTOR, Stop, Trap, X86Machine

CODE, STACK, OUT = 0x1000, 0x9_0000, 0x8000
ARITHMETIC = 0xCD5  # CF PF AF ZF SF DF OF


def run_at(ring: int, source: str, max_insns: int = 1000):
    """Run `source` at `ring`; stop at the first exception. Returns (machine, traps, run)."""
    machine = X86Machine()
    machine.write(CODE, assemble(source, CODE))
    traps: list[Trap] = []

    def stop(trap: Trap) -> bool:
        traps.append(trap)
        return False

    (machine.start_ring3 if ring == 3 else machine.start_ring0)(CODE, STACK)
    result = machine.run(stop, max_insns)
    return machine, traps, result


def only_the_final_hlt_trapped(machine: X86Machine, traps: list[Trap], source: str) -> bool:
    end = CODE + len(assemble(source, CODE)) - 1  # the hlt is the last byte
    return len(traps) == 1 and traps[0].vector == GP and traps[0].eip == end and traps[0].cpl == 3


# --- popf, pushf -------------------------------------------------------------------------------

@given(st.integers(0, 0xFFFF_FFFF))
def test_at_cpl3_popfd_changes_the_arithmetic_flags_but_silently_keeps_if(value):
    source = f"push {value & ~IF & 0x3F_FFFF:#x}; popfd; hlt"  # try to clear IF (and set whatever else)
    machine, traps, _ = run_at(3, source)
    assert only_the_final_hlt_trapped(machine, traps, source)  # popfd itself did not trap
    flags = machine.reg("eflags")
    assert flags & IF  # unchanged: still set
    assert flags & ARITHMETIC == value & ARITHMETIC  # while the rest of popfd did happen


def test_at_cpl0_the_same_popfd_does_clear_if():
    machine, traps, result = run_at(0, "sti; push 0x2; popfd; hlt")
    assert result.stop is Stop.HALTED and not traps
    assert not machine.reg("eflags") & IF


def test_at_cpl3_pushfd_shows_the_real_if_and_iopl():
    source = f"pushfd; pop eax; mov [{OUT:#x}], eax; hlt"
    machine, traps, _ = run_at(3, source)
    assert only_the_final_hlt_trapped(machine, traps, source)
    seen = int.from_bytes(machine.read(OUT, 4), "little")
    assert seen & IF and (seen >> 12) & 3 == 0  # IF = 1, IOPL = 0: the host's, not a kernel's


# --- cli ----------------------------------------------------------------------------------------

def test_at_cpl3_cli_raises_gp_at_the_cli_and_leaves_if_set():
    machine, traps, _ = run_at(3, "nop; cli; hlt")
    assert traps == [Trap(GP, CODE + 1, 3)]  # a fault: EIP still at the cli
    assert machine.reg("eflags") & IF


def test_at_cpl0_cli_just_clears_if():
    machine, traps, result = run_at(0, "sti; cli; hlt")
    assert not traps and result.stop is Stop.HALTED
    assert not machine.reg("eflags") & IF


def test_every_gp_of_a_long_run_is_reported_as_gp_not_a_double_fault():
    # Unicorn never finishes delivering an exception; without vlab clearing QEMU's exception-in-flight,
    # the second #GP would arrive as a double fault (8) and the third would reset the CPU
    machine = X86Machine()
    machine.write(CODE, assemble("cli\n" * 50 + "hlt", CODE))
    vectors: list[int] = []

    def skip(trap: Trap) -> bool:
        vectors.append(trap.vector)
        machine.set_reg("eip", trap.eip + 1)
        return len(vectors) < 51

    machine.start_ring3(CODE, STACK)
    machine.run(skip)
    assert vectors == [GP] * 51


# --- sgdt, sidt, smsw, str ------------------------------------------------------------------------

def test_at_cpl3_sgdt_sidt_smsw_str_reveal_the_real_machine_without_trapping():
    source = f"sgdt [{OUT:#x}]; sidt [{OUT + 8:#x}]; smsw ax; mov [{OUT + 16:#x}], ax; str ax; " \
             f"mov [{OUT + 20:#x}], ax; hlt"
    machine, traps, _ = run_at(3, source)
    assert only_the_final_hlt_trapped(machine, traps, source)
    out = machine.read(OUT, 24)
    gdt_limit, gdt_base = machine.descriptor_table("gdtr")
    idt_limit, idt_base = machine.descriptor_table("idtr")
    assert (int.from_bytes(out[0:2], "little"), int.from_bytes(out[2:6], "little")) == (gdt_limit, gdt_base)
    assert (int.from_bytes(out[8:10], "little"), int.from_bytes(out[10:14], "little")) == (idt_limit, idt_base)
    assert int.from_bytes(out[16:18], "little") == machine.reg("cr0") & 0xFFFF
    assert int.from_bytes(out[20:22], "little") == TSS_SELECTOR


def test_the_privileged_ones_do_trap_at_cpl3():
    for text in ("lgdt [0x7000]", "lidt [0x7000]", "ltr ax", "mov cr0, eax", "mov eax, cr0", "hlt", "sti"):
        _, traps, _ = run_at(3, f"{text}; nop")
        assert traps and traps[0].vector == GP and traps[0].eip == CODE, text


# --- Theorem 1 ------------------------------------------------------------------------------------

def test_theorem_1s_condition_fails_and_the_silent_instructions_are_on_robin_and_irvines_list():
    rows = sensitive.classify()
    silent = set(sensitive.sensitive_but_unprivileged(rows))
    assert silent == {"popfd", "pushfd", "sgdt", "sidt", "smsw", "str"}
    listed = {name for names in sensitive.ROBIN_IRVINE_LIST.values() for name in names}
    assert {name.upper().removesuffix("D") if name.startswith(("pushf", "popf")) else name.upper()
            for name in silent} <= listed
    assert {r.instruction.mnemonic for r in rows if r.privileged} >= {"cli", "sti", "hlt", "lgdt", "lidt", "ltr"}
    assert "fails" in sensitive.table(rows)


# --- the machine and the assembler ----------------------------------------------------------------

def test_an_access_outside_ram_stops_the_run_with_the_address():
    _, _, result = run_at(3, "mov eax, [0x7fff0000]; hlt")
    assert result.stop is Stop.MEMORY and f"{CODE:#x}" in result.message


def test_an_endless_loop_runs_out_of_budget():
    _, _, result = run_at(3, "spin: jmp spin", max_insns=500)
    assert result.stop is Stop.BUDGET and result.instructions == 500


def test_memory_outside_ram_is_refused():
    with pytest.raises(ValueError, match="outside"):
        X86Machine().read(0x40_0000, 4)


@pytest.mark.parametrize("mnemonic, fix", [("pushf", "pushfd"), ("popf", "popfd"), ("iret", "iretd")])
def test_the_assembler_refuses_keystones_silent_16_bit_forms(mnemonic, fix):
    with pytest.raises(AssemblyError, match=fix):
        assemble(f"nop\n{mnemonic}", CODE)


def test_descriptor_table_instructions_get_a_32_bit_encoding():
    code = assemble("lgdt [0x7100]  # a comment: with a colon", CODE)
    assert code == bytes.fromhex("0f011500710000")  # no 0x66 prefix: the full 32-bit base is loaded
    insn = decode(assemble("sidt [0x8010]", CODE), CODE)
    assert insn.mnemonic == "sidt" and insn.operands[0].disp == 0x8010
    with pytest.raises(AssemblyError, match="absolute address"):
        assemble("lgdt [ebx]", CODE)
