"""Bare-metal C guests built with aarch64-linux-gnu-gcc: on vlab, and on QEMU as the oracle.

vlab's board copies QEMU's `virt` machine, so the same ELF must print exactly
the same text on both. `exceptions.c` prints every syndrome its handler sees,
which makes that comparison a bit-exact test of vlab's exception entry.
"""

from __future__ import annotations

import shutil

import pytest

from vlab.errors import ToolError
from vlab.guests import GUESTS, SELF_CHECK_OK
from vlab.guests import build as builder
from vlab.guests import qemu as oracle
from vlab.machine.board import Board, StopReason
from vlab.machine.loader import image_from_file, load

HELLO_TEXT = """\
Hello from C on the virt board!
fibonacci(90) = 2880067194370816120
20! = 2432902008176640000 = 0x21c3677c82b40000
primes below 1000: 168 of them, sum 76127
crc32("The quick brown fox jumps over the lazy dog") = 0x414fa339
gcd(1071, 462) = 21
-7 / 2 = -3, -7 % 2 = -1
all checks passed: 0 failures
"""


@pytest.fixture(scope="module")
def elf(tmp_path_factory):
    """Build a shipped C guest (once per module); skip loudly when the cross compiler is missing."""
    if shutil.which(builder.COMPILER) is None:
        pytest.skip(f"SKIPPED: {builder.COMPILER} is missing -- install the Debian package "
                    f"{builder.COMPILER_PACKAGE} to test the C guests")
    cache = tmp_path_factory.mktemp("guests")
    return lambda name: builder.build(name, cache_dir=cache)


def require_qemu() -> None:
    """Skip loudly, saying what to install, where QEMU is missing."""
    if shutil.which(oracle.QEMU) is None:
        pytest.skip(f"SKIPPED: {oracle.QEMU} is missing -- install the Debian package {oracle.QEMU_PACKAGE} "
                    "to compare vlab with QEMU")


def run_on_vlab(path) -> tuple[str, int, StopReason, str]:
    board = Board()
    load(board, image_from_file(path))
    result = board.run(max_insns=10_000_000, timeout_s=30)
    return result.uart, result.registers["x19"], result.reason, result.message


def test_hello_c_prints_its_numbers_and_passes_its_self_check(elf):
    uart, x19, reason, message = run_on_vlab(elf("hello"))
    assert reason is StopReason.POWERED_OFF, message
    assert uart == HELLO_TEXT
    assert x19 == SELF_CHECK_OK


def test_exceptions_c_sees_architectural_syndromes_for_each_exception(elf):
    uart, x19, reason, message = run_on_vlab(elf("exceptions"))
    assert reason is StopReason.POWERED_OFF, message
    assert x19 == SELF_CHECK_OK, uart
    # expected lines worked out from the Arm ARM: EC, IL = 1, ISS, preferred return address
    for line in (
        "vector +0x200  EC 0x15  IL 1  ISS 0x0000042  ELR = insn+4",     # SVC #0x42: after the SVC
        "vector +0x200  EC 0x3c  IL 1  ISS 0x0000007  ELR = insn+0",     # BRK #7: at the BRK
        "vector +0x200  EC 0x00  IL 1  ISS 0x0000000  ELR = insn+0",     # UDF: unknown reason
        "vector +0x200  EC 0x25  IL 1  ISS 0x0000010  ELR = insn+0",     # load from nothing: SEA
        "vector +0x200  EC 0x25  IL 1  ISS 0x0000050  ELR = insn+0",     # store: WnR set too
        "FAR 0x50000010", "FAR 0x50000024",
        "vector +0x400  EC 0x15  IL 1  ISS 0x0000099  ELR = insn+12  SPSR 0x80000000",  # EL0 SVC, N set
        "vector +0x400  EC 0x18  IL 1  ISS 0x034f841  ELR = insn+16",   # MRS CNTVCT_EL0 at EL0, trapped
        "user exit(3)",
    ):
        assert line in uart


@pytest.mark.parametrize("name", builder.programs())
def test_c_guest_prints_the_same_on_qemu_and_on_vlab(elf, name):
    require_qemu()
    path = elf(name)
    on_qemu = oracle.run_on_qemu(path, timeout_s=30)
    assert on_qemu.powered_off, f"QEMU did not power off; it printed:\n{on_qemu.uart}"
    uart, x19, reason, message = run_on_vlab(path)
    assert reason is StopReason.POWERED_OFF, message
    assert uart == on_qemu.uart


@pytest.mark.parametrize("name", sorted(n for n, g in GUESTS.items() if g.runs_on_qemu))
def test_demo_assembly_guest_built_by_gnu_as_prints_the_same_on_qemu_and_on_vlab(elf, name):
    require_qemu()
    path = elf(GUESTS[name].path)
    on_qemu = oracle.run_on_qemu(path, timeout_s=30)
    assert on_qemu.powered_off
    assert on_qemu.uart == GUESTS[name].expected_uart
    assert run_on_vlab(path)[:2] == (GUESTS[name].expected_uart, SELF_CHECK_OK)


def test_guests_that_call_psci_through_smc_still_build_with_gnu_as_and_run(elf):
    for name in (n for n, g in GUESTS.items() if not g.runs_on_qemu):
        assert run_on_vlab(elf(GUESTS[name].path))[:2] == (GUESTS[name].expected_uart, SELF_CHECK_OK)


def test_missing_compiler_is_an_error_naming_the_package(monkeypatch):
    monkeypatch.setattr(builder.shutil, "which", lambda _name: None)
    with pytest.raises(ToolError, match="gcc-aarch64-linux-gnu"):
        builder.build("hello")


def test_missing_qemu_is_an_error_naming_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(builder.shutil, "which", lambda _name: None)
    with pytest.raises(ToolError, match="qemu-system-arm"):
        oracle.run_on_qemu(tmp_path / "guest.elf")


def test_unknown_program_is_an_error_listing_the_shipped_ones():
    with pytest.raises(ToolError, match="hello"):
        builder.sources("no_such_program")


def test_compile_error_is_reported_with_the_compiler_message(elf, tmp_path):
    broken = tmp_path / "broken.c"
    broken.write_text("int main(void) { return missing_variable; }\n")
    with pytest.raises(ToolError, match="missing_variable"):
        builder.build(broken, cache_dir=tmp_path)


def test_a_build_is_reused_until_a_source_changes(elf, tmp_path):
    program = tmp_path / "tiny.c"
    program.write_text("int main(void) { return 0x600d; }\n")
    first = builder.build(program, cache_dir=tmp_path)
    assert builder.build(program, cache_dir=tmp_path) == first
    program.write_text("int main(void) { return 0xbad; }\n")
    second = builder.build(program, cache_dir=tmp_path)
    assert second != first
    assert run_on_vlab(second)[1] == 0xBAD
