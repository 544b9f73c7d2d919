"""One kernel, two builds (vlab/guests/para_or_full.S): the same work, the same output, fewer exits
paravirtualized; the fully virtualized build cannot tell it is in a VM, the paravirtual one asks."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlab.errors import AssemblyError
from vlab.guests import build as builder
from vlab.guests import qemu as oracle
from vlab.guests.para_or_full import FULL, PARAVIRT, SOURCE, SWITCHES, Build, preprocess, routine
from vlab.hyp import HCR, SUPPORTED_TRAPS, VM, Host
from vlab.hyp.para_vs_full import KVM_TRAPS, run_in_vm, run_on_board, steps
from vlab.machine.board import Board, StopReason

EXPECTED_START = """\
kernel: booted, and found out what it runs on
kernel: console ready
line 0001: the same text, whichever way this kernel gets built.
line 0002: the same text, whichever way this kernel gets built.
"""
EXPECTED_END = """\
line 0008: the same text, whichever way this kernel gets built.
tick 0001: the timer woke the kernel
tick 0002: the timer woke the kernel
tick 0003: the timer woke the kernel
kernel: done, powering off
"""
XENFEAT_auto_translated_physmap = 1 << 2  # xen/include/public/features.h: every Arm guest is


def cpp(source: str, defined: dict[str, int]) -> str | None:
    """The C preprocessor's answer (GNU cpp for AArch64, as GNU as would see the file); None if it refused."""
    if shutil.which(builder.COMPILER) is None:
        pytest.skip(f"SKIPPED: {builder.COMPILER} is missing -- install {builder.COMPILER_PACKAGE} to compare with cpp")
    command = [builder.COMPILER, "-E", "-P", "-undef", "-x", "assembler-with-cpp",
               *(f"-D{name}={value}" for name, value in defined.items()), "-"]
    done = subprocess.run(command, input=source, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def statements(text: str) -> list[str]:
    """The lines that say something, comments dropped and spaces collapsed (cpp's -P squeezes them)."""
    lines = (" ".join(re.sub(r"//.*", "", line).split()) for line in text.splitlines())
    return [line for line in lines if line]


# --- the build switch ----------------------------------------------------------------------------

@pytest.mark.parametrize("switches", [frozenset(c) for n in range(len(SWITCHES) + 1)
                                      for c in itertools.combinations(sorted(SWITCHES), n)],
                         ids=lambda s: "+".join(sorted(s)) or "none")
def test_every_combination_of_switches_preprocesses_as_cpp_does(switches):
    defined = {name: 1 for name in switches}
    assert statements(preprocess(SOURCE.read_text(), defined)) == statements(cpp(SOURCE.read_text(), defined))


def nested_source(draw, depth: int = 0) -> list[str]:
    lines = []
    for _ in range(draw(st.integers(0, 3))):
        if depth < 3 and draw(st.booleans()):
            lines.append(f"#if {draw(st.sampled_from(['A', 'B', 'C', '!A', '!B', 'D']))}")
            lines += nested_source(draw, depth + 1)
            for _ in range(draw(st.integers(0, 2))):
                lines.append(f"#elif {draw(st.sampled_from(['A', 'B', '!C', 'D']))}")
                lines += nested_source(draw, depth + 1)
            if draw(st.booleans()):
                lines.append("#else")
                lines += nested_source(draw, depth + 1)
            lines.append("#endif")
        elif draw(st.booleans()):
            lines.append(f"#define {draw(st.sampled_from(['A', 'B', 'C']))} {draw(st.sampled_from(['', '0', '1']))}")
        else:
            lines.append(f"    mov x{draw(st.integers(0, 30))}, #{draw(st.integers(0, 99))}")
    return lines


@settings(max_examples=30)
@given(st.composite(lambda draw: "\n".join(nested_source(draw)) + "\n")(),
       st.dictionaries(st.sampled_from(["A", "B", "C"]), st.sampled_from([0, 1])))
def test_nested_conditions_and_defines_resolve_as_cpp_resolves_them(source, defined):
    theirs = cpp(source, defined)
    if theirs is None:  # cpp refused it (an #if on a name defined as nothing): so does vlab
        with pytest.raises(AssemblyError, match="defined as nothing"):
            preprocess(source, defined)
        return
    mine = preprocess(source, defined)
    assert len(mine.splitlines()) == len(source.splitlines())  # every line stays where it was
    assert statements(mine) == statements(theirs)


@pytest.mark.parametrize("source, says", [
    ("#include <x.h>\n", "#include"), ("#if A\n", "without #endif"), ("#endif\n", "without #if"),
    ("#if A && B\n#endif\n", "#if NAME"), ("#else\n", "without #if"),
])
def test_what_the_builder_does_not_resolve_is_an_error_naming_the_line(source, says):
    with pytest.raises(AssemblyError, match=says):
        preprocess(source, {})


def test_paravirt_is_the_three_pv_switches_at_once():
    three = Build(frozenset({"PV_CONSOLE", "PV_IDENTITY", "PV_SCHED"}))
    assert statements(PARAVIRT.source()) == statements(three.source())
    assert statements(FULL.source()) != statements(PARAVIRT.source())


@pytest.mark.parametrize("options, says", [({"switches": {"PV_NOTHING"}}, "no build switch"),
                                           ({"batch": 0}, "batch"), ({"batch": 65}, "batch"),
                                           ({"lines": 10_000}, "four digits"), ({"tick_length": 0}, "tick")])
def test_a_build_that_cannot_be_made_is_refused_saying_why(options, says):
    with pytest.raises(ValueError, match=says):
        Build(**options)


# --- the same work, the same output ---------------------------------------------------------------

@pytest.fixture(scope="module")
def full():
    return run_in_vm(FULL)


@pytest.fixture(scope="module")
def para():
    return run_in_vm(PARAVIRT)


def test_both_builds_print_the_same_text_in_a_vm_as_the_full_build_on_the_board(full, para):
    bare = run_on_board(FULL)
    assert bare.result.reason is StopReason.POWERED_OFF and bare.passed
    assert bare.printed.startswith(EXPECTED_START) and bare.printed.endswith(EXPECTED_END)
    assert full.printed == para.printed == bare.printed
    assert full.passed and para.passed  # and each kernel's own check passed
    assert full.result.uart == bare.printed and para.result.uart == bare.printed  # console_io is the VM's console


def test_the_paravirtual_build_makes_strictly_fewer_exits_for_the_same_work(full, para):
    assert para.total_exits < full.total_exits
    assert para.result.instructions < full.result.instructions  # no byte-by-byte UART loop either


def test_the_full_build_exits_as_chapter_2_shows_and_the_paravirtual_one_only_by_hypercalls(full, para):
    # Both builds turn the GIC on (two distributor writes, emulated) and take their timer's physical
    # interrupt once a tick (it exits to the hypervisor, which puts it in a list register): a VM's
    # lot whatever its kernel knows. Beyond that, the paravirtual build exits by hypercalls only.
    gic_and_timer = {"DABT_LOWER": 2, "IRQ": 3}
    printed = len(full.printed)
    assert full.exits == {"DABT_LOWER": 2 * printed + 2, "SYS64": 8, "WFX": 3, "HVC64": 1,
                          "IRQ": 3}  # UARTFR+UARTDR a byte
    lines = full.printed.count("\n")
    # 5 questions, a console_io a line, 3 blocks, a yield, the shutdown
    assert para.exits == {"HVC64": 5 + lines + 3 + 1 + 1, **gic_and_timer}


@settings(max_examples=12)
@given(st.sets(st.sampled_from(["PV_CONSOLE", "VIRTIO", "PV_IDENTITY", "PV_SCHED"])),
       st.integers(1, 64), st.integers(0, 40), st.integers(0, 2))
def test_any_mix_of_switches_and_workload_prints_what_the_full_build_prints_on_the_board(switches, batch, lines,
                                                                                        ticks):
    build = Build(frozenset(switches), batch=batch, lines=lines, ticks=ticks, tick_length=500)
    reference = run_on_board(Build(lines=lines, ticks=ticks, tick_length=500))
    run = run_in_vm(build)
    assert run.result.reason is StopReason.POWERED_OFF, run.result.message
    assert run.printed == reference.printed and run.passed
    full = run_in_vm(Build(lines=lines, ticks=ticks, tick_length=500))
    if build.console != "pl011":  # any paravirtual console beats two exits a byte
        assert run.total_exits < full.total_exits


def test_turning_the_switches_on_one_by_one_keeps_the_output_and_the_console_ones_cut_exits():
    runs = steps()
    assert all(run.passed and run.printed == runs[0][1].printed for _, run in runs)
    exits = [run.total_exits for _, run in runs]
    assert exits[1] < exits[0] / 10 and exits[2] < exits[1]  # console_io, then batches of 8 lines
    assert exits[3] < exits[2]  # 5 questions to Xen instead of 8 trapped ID registers
    assert exits[4] == exits[3] + 1  # sched_op block costs what a trapped WFI costs; the yield is one more


def test_the_virtio_build_prints_on_the_virtio_console_with_one_notify_a_flush():
    one, eleven = (run_in_vm(Build(frozenset({"VIRTIO"}), batch=b, lines=8, ticks=0)) for b in (1, 11))
    assert one.passed and one.result.uart == "" and one.result.virtio_console.startswith(EXPECTED_START)
    assert eleven.printed == one.printed and one.printed.count("\n") == 11
    assert one.exits["DABT_LOWER"] - eleven.exits["DABT_LOWER"] == 11 - 1  # a notify a flush, nothing else changes
    assert one.exits.keys() == eleven.exits.keys()


def test_with_a_polling_device_the_virtio_build_never_notifies():
    build = Build(frozenset({"VIRTIO"}), batch=4, lines=8, ticks=0)  # 11 lines: 3 flushes
    notified, polled = run_in_vm(build), run_in_vm(build, virtio_polls=True)
    assert polled.passed and polled.printed == notified.printed
    assert notified.total_exits - polled.total_exits == 3


# --- who am I? -----------------------------------------------------------------------------------

@pytest.mark.parametrize("traps", [HCR(0), KVM_TRAPS, SUPPORTED_TRAPS], ids=["no traps", "KVM's", "all"])
@pytest.mark.parametrize("stage2", [None, "scattered"])
def test_the_fully_virtualized_kernel_reads_exactly_what_it_reads_on_the_bare_board(traps, stage2):
    bare = run_on_board(FULL).identity
    inside = run_in_vm(FULL, traps=traps, stage2=stage2).identity
    assert inside == bare
    board = Board()
    assert bare.registers["MIDR_EL1"] == board.cpu.read_sysreg("MIDR_EL1")  # the machine's own values
    assert bare.registers["ID_AA64MMFR0_EL1"] == board.cpu.read_sysreg("ID_AA64MMFR0_EL1")
    assert bare.registers["CurrentEL"] == 1 << 2  # EL1, in CurrentEL's bits [3:2]
    assert bare.xen["version"] is None  # it never asked


def test_the_fully_virtualized_kernel_on_a_crowded_host_still_sees_the_bare_board():
    host = Host(pcpus=2)
    VM.from_image(FULL.image(), host=host, stage2="contiguous", ram_size=0x40_0000)
    run = run_in_vm(FULL, host=host, stage2="demand")
    assert run.identity == run_on_board(FULL).identity and run.passed


def test_the_paravirtual_kernel_asks_who_it_is_and_who_else_runs_on_the_host():
    host = Host(pcpus=1)
    for _ in range(2):
        VM.from_source("    b .\n", host=host, stage2="contiguous", ram_size=0x10_0000)
    run = run_in_vm(PARAVIRT, host=host, stage2="scattered")
    assert run.passed
    xen = run.identity.xen
    assert (xen["version"], xen["extraversion"]) == ("4.19", ".0-vlab")
    assert xen["features"] & XENFEAT_auto_translated_physmap
    assert xen["domain_id"] == 3 and xen["domains"] == [1, 2, 3]
    assert "domain 3" in run.identity.describe() and "[1, 2]" in run.identity.describe()


def test_without_a_hypervisor_the_paravirtual_build_has_no_one_to_call():
    bare = run_on_board(PARAVIRT)
    assert bare.result.reason is StopReason.POWERED_OFF  # through its PSCI fallback
    assert bare.printed == "" and not bare.passed  # console_io went to the board's firmware: NOT_SUPPORTED


# --- QEMU, the oracle -----------------------------------------------------------------------------

@pytest.mark.parametrize("switches", [frozenset(), frozenset({"VIRTIO"})], ids=["pl011", "virtio"])
def test_the_full_and_virtio_builds_assembled_by_gnu_as_print_the_same_on_qemu(tmp_path, switches):
    if shutil.which(builder.COMPILER) is None or shutil.which(oracle.QEMU) is None:
        pytest.skip(f"SKIPPED: needs {builder.COMPILER_PACKAGE} and {oracle.QEMU_PACKAGE}")
    build = Build(switches, batch=4, lines=12, ticks=0)  # QEMU's timer interrupt needs a GIC set up: no sleeps
    source = tmp_path / "kernel.S"
    source.write_text(build.source())
    elf = builder.build(source, cache_dir=tmp_path)
    on_qemu = oracle.run_on_qemu(elf, timeout_s=30)
    assert on_qemu.powered_off, on_qemu.stderr
    assert on_qemu.uart + on_qemu.virtio_console == run_on_board(build).printed == run_in_vm(build).printed


def test_a_routine_of_a_build_reads_from_its_label_to_its_ret():
    assert routine(FULL.source(), "console_write").splitlines()[-1].strip() == "ret"
    assert "UARTFR" in routine(FULL.source(), "console_write")
    assert "hvc     #0xea1" in routine(PARAVIRT.source(), "console_write")
    with pytest.raises(KeyError, match="no routine"):
        routine(FULL.source(), "nowhere")
