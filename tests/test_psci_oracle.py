"""PSCI as QEMU's firmware serves it: QEMU is the oracle.

tests/fixtures/psci/psci.c makes every PSCI call (and some that are none) through HVC and prints
each result; it must print on vlab's board and in a VM, on hosts with one and two physical CPUs,
exactly what it prints on `qemu-system-aarch64 -M virt` with as many CPUs. Two guests never end
(CPU_OFF on the only CPU that runs, CPU_SUSPEND with nothing to wake it): QEMU waits for good
and is killed; vlab stops idle, having printed the same. Then psci.call, rule by rule, with the
answers written down from PSCI (Arm DEN 0022) and QEMU 7.2's target/arm/psci.c.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vlab.guests import SELF_CHECK_OK
from vlab.guests import build as builder
from vlab.guests import qemu as oracle
from vlab.hyp.host import Host
from vlab.hyp.vm import VM
from vlab.machine import psci
from vlab.machine.board import Board, StopReason
from vlab.machine.loader import image_from_file, load

FIXTURES = Path(__file__).parent / "fixtures" / "psci"
MAX_INSNS = 20_000_000
HANG_S = 3.0  # how long QEMU runs a guest that never ends before it is killed
U64 = (1 << 64) - 1
NOT_SUPPORTED, INVALID_PARAMETERS, ALREADY_ON = U64, U64 - 1, U64 - 3  # -1, -2, -4 in x0


@pytest.fixture(scope="module")
def elf():
    """Build a guest of tests/fixtures/psci; skip loudly when the cross compiler is missing."""
    if shutil.which(builder.COMPILER) is None:
        pytest.skip(f"SKIPPED: {builder.COMPILER} is missing -- install the Debian package "
                    f"{builder.COMPILER_PACKAGE} to test the C guests")
    return lambda name: builder.build(FIXTURES / f"{name}.c")


def require_qemu() -> None:
    if shutil.which(oracle.QEMU) is None:
        pytest.skip(f"SKIPPED: {oracle.QEMU} is missing -- install the Debian package {oracle.QEMU_PACKAGE} "
                    "to compare vlab with QEMU")


@pytest.fixture(scope="module")
def on_qemu(elf):
    """What psci.c prints on QEMU with 1 and with 2 CPUs."""
    require_qemu()
    runs = {cpus: oracle.run_on_qemu(elf("psci"), timeout_s=60, cpus=cpus) for cpus in (1, 2)}
    for cpus, run in runs.items():
        assert run.powered_off, f"QEMU -smp {cpus} did not power off; it printed:\n{run.uart}"
    return {cpus: run.uart for cpus, run in runs.items()}


def on_board(path):
    board = Board()
    load(board, image_from_file(path))
    return board.run(max_insns=MAX_INSNS, timeout_s=60)


def in_vm(path, vcpus: int, pcpus: int):
    return VM.from_file(path, vcpus=vcpus, host=Host(pcpus=pcpus)).run(max_insns=MAX_INSNS, timeout_s=60)


def test_the_oracle_answers_as_the_report_found(on_qemu):
    # QEMU itself, so that a different QEMU shows here first: the answers vlab used to get wrong
    for text in on_qemu.values():
        for line in ("PSCI_FEATURES, x1 = c4000001: 0", "PSCI_FEATURES, x1 = 84000006: 0",
                     "PSCI_FEATURES, x1 = 84000003: 0", "PSCI_FEATURES, x1 = 84000004: 0",
                     "MIGRATE_INFO_TYPE, x1 = 0: 2", "AFFINITY_INFO32, x1 = 0: 0", "CPU_ON32, x1 = 0: -4",
                     "x0 = PSCI_VERSION | 1 << 32, x1 = 0: -1", "CPU_SUSPEND64, x1 = 0: 0, the timer had fired: 1"):
            assert line + "\n" in text
    assert "AFFINITY_INFO64, x1 = 1: 1\n" in on_qemu[2]  # CPU 1 exists, not yet started: OFF
    assert "AFFINITY_INFO64 after its CPU_OFF, x1 = 1: 1\n" in on_qemu[2]
    assert all(text.endswith("done\n") for text in on_qemu.values())


def test_the_board_answers_every_psci_call_as_qemu_does(elf, on_qemu):
    result = on_board(elf("psci"))
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert result.uart == on_qemu[1]
    assert result.registers["x19"] == SELF_CHECK_OK


@pytest.mark.parametrize("vcpus, pcpus", [(1, 1), (1, 2), (2, 1), (2, 2)],
                         ids=["1vcpu-1pcpu", "1vcpu-2pcpus", "2vcpus-1pcpu", "2vcpus-2pcpus"])
def test_a_vm_answers_every_psci_call_as_qemu_does(elf, on_qemu, vcpus, pcpus):
    result = in_vm(elf("psci"), vcpus, pcpus)
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert result.uart == on_qemu[vcpus], f"--vcpus {vcpus} on {pcpus} physical CPUs"
    assert result.registers["x19"] == SELF_CHECK_OK
    if vcpus == 2:
        assert result.vcpus[1]["state"] == "off"  # CPU 1 turned itself off


@pytest.mark.parametrize("guest, first_line", [("cpu_off", "CPU 0 calls CPU_OFF\n"),
                                               ("suspend_forever", "CPU 0 calls CPU_SUSPEND with no timer armed\n")])
@pytest.mark.parametrize("cpus", [1, 2])
def test_a_guest_that_leaves_no_cpu_running_ends_idle_where_qemu_waits_for_good(elf, guest, first_line, cpus):
    require_qemu()
    path = elf(guest)
    qemu = oracle.run_on_qemu(path, timeout_s=HANG_S, cpus=cpus)
    assert not qemu.powered_off and qemu.uart == first_line, qemu.uart
    results = ([("board", on_board(path))] if cpus == 1 else []) + \
        [(f"VM of {cpus} vCPUs on {p} physical CPUs", in_vm(path, cpus, p)) for p in (1, 2)]
    for where, result in results:
        assert result.reason is StopReason.IDLE, (where, result.message)
        assert result.uart == qemu.uart, where
    if guest == "cpu_off":  # the board and a VM say the same: every CPU is off
        assert all("every CPU" in r.message or "every vCPU" in r.message for _, r in results), results


def test_a_board_whose_cpu_is_off_stays_idle(elf):
    board = Board()
    load(board, image_from_file(elf("cpu_off")))
    first = board.run(max_insns=MAX_INSNS)
    again = board.run(max_insns=MAX_INSNS)
    assert (first.reason, again.reason) == (StopReason.IDLE, StopReason.IDLE)
    assert "every CPU is off" in again.message and again.instructions == first.instructions


# --- psci.call, rule by rule (PSCI 1.1, Arm DEN 0022; QEMU 7.2 target/arm/psci.c) -----------------------

SERVED = [0x8400_0000, 0x8400_0001, 0xC400_0001, 0x8400_0002, 0x8400_0003, 0xC400_0003, 0x8400_0004,
          0xC400_0004, 0x8400_0006, 0x8400_0008, 0x8400_0009, 0x8400_000A]
NOT_SERVED = [0x8400_0005, 0xC400_0005,  # MIGRATE: no Trusted OS to migrate
              0x8400_0007, 0xC400_0007,  # MIGRATE_INFO_UP_CPU
              0xC400_0002, 0xC400_0008, 0xC400_000A,  # no SMC64 forms of CPU_OFF, SYSTEM_OFF, PSCI_FEATURES
              0x8400_000B, 0xC400_000C, 0xC400_000E, 0x8400_0012, 0x8400_001F,  # PSCI 1.0 optional functions
              0x8000_0000, 0x8600_0001,  # SMCCC_VERSION; a vendor hypervisor service (vlab's VLAB_PUTC)
              0x1_8400_0000, 0x1_C400_0003]  # bits [63:32] set: no function at all


def call(fid, x1=0, x2=0, x3=0, cpus=psci.ONLY_CPU_ON):
    return psci.call(fid, (x1, x2, x3), cpus)


@pytest.mark.parametrize("fid", SERVED, ids=hex)
def test_psci_features_is_success_for_each_function_served(fid):
    assert call(0x8400_000A, fid).x0 == 0  # PSCI_FEATURES: SUCCESS, no feature flags


@pytest.mark.parametrize("fid", NOT_SERVED, ids=hex)
def test_psci_features_and_the_call_itself_are_not_supported_for_the_others(fid):
    assert call(0x8400_000A, fid).x0 == NOT_SUPPORTED
    assert call(fid).x0 == NOT_SUPPORTED


def test_the_function_id_is_all_64_bits_of_x0():
    assert psci.is_psci(0x8400_0000) and psci.is_psci(0xC400_0003)
    assert not psci.is_psci(0x1_8400_0000) and not psci.is_psci(0xFFFF_FFFF_8400_0008)
    assert call(0x1_8400_0008) == (NOT_SUPPORTED, False, False, "unknown", False, False)  # not SYSTEM_OFF


def test_psci_version_and_migrate_info_type():
    assert call(0x8400_0000).x0 == 0x1_0001  # 1.1: major in [31:16], minor in [15:0]
    assert call(0x8400_0006).x0 == 2  # "Trusted OS not present or does not require migration"


@pytest.mark.parametrize("fid", [0x8400_0001, 0xC400_0001], ids=hex)
@pytest.mark.parametrize("power_state", [0, 0x1_0000, 0xFFFF, 0x1_0001_FFFF], ids=hex)
def test_cpu_suspend_is_a_wfi_that_returns_success(fid, power_state):
    outcome = call(fid, power_state, 0x4008_0000, 7)
    assert (outcome.x0, outcome.suspend, outcome.power_off, outcome.cpu_off) == (0, True, False, False)


@pytest.mark.parametrize("fid", [0x8400_0001, 0xC400_0001], ids=hex)
@pytest.mark.parametrize("power_state", [1 << 17, 1 << 24, 1 << 30, 1 << 31, 0xFFFE_0000], ids=hex)
def test_cpu_suspend_with_any_of_bits_31_to_17_set_is_invalid_and_does_not_wait(fid, power_state):
    outcome = call(fid, power_state)
    assert (outcome.x0, outcome.suspend) == (INVALID_PARAMETERS, False)


TWO_CPUS = {0: psci.AffinityState.ON, 1: psci.AffinityState.OFF, 0x100: psci.AffinityState.ON_PENDING}


@pytest.mark.parametrize("fid", [0x8400_0004, 0xC400_0004], ids=hex)
def test_affinity_info_answers_on_off_or_on_pending_for_a_cpu_the_machine_has(fid):
    assert [call(fid, target, 0, cpus=TWO_CPUS).x0 for target in (0, 1, 0x100)] == [0, 1, 2]


@pytest.mark.parametrize("fid", [0x8400_0004, 0xC400_0004], ids=hex)
@pytest.mark.parametrize("target", [2, 0x8000_0000, 0x1_0000_0000, 0x1_0000_0001], ids=hex)
def test_affinity_info_is_invalid_for_a_cpu_the_machine_does_not_have(fid, target):
    # QEMU looks the target up by its whole MPIDR affinity: MPIDR_EL1's RES1 bit 31 is no CPU's
    assert call(fid, target, 0, cpus=TWO_CPUS).x0 == INVALID_PARAMETERS


@pytest.mark.parametrize("level", [1, 2, 3, 1 << 32])
def test_affinity_info_above_level_0_is_always_on(level):
    assert call(0xC400_0004, 7, level, cpus=TWO_CPUS).x0 == 0


@pytest.mark.parametrize("fid", [0x8400_0003, 0xC400_0003], ids=hex)
def test_cpu_on_of_a_cpu_that_is_on_is_already_on_and_of_none_invalid(fid):
    assert call(fid, 0, 0x4008_0000, 0).x0 == ALREADY_ON
    assert call(fid, 1, 0x4008_0000, 0).x0 == INVALID_PARAMETERS  # the board has one CPU


def test_cpu_off_turns_off_the_calling_cpu_only_and_system_off_the_machine():
    cpu_off, system_off, reset = call(0x8400_0002), call(0x8400_0008), call(0x8400_0009)
    assert (cpu_off.power_off, cpu_off.cpu_off, cpu_off.function) == (True, True, "CPU_OFF")
    assert (system_off.power_off, system_off.cpu_off, system_off.reset) == (True, False, False)
    assert (reset.reset, reset.cpu_off) == (True, False)
