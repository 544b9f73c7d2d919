"""smp.c: a C guest on four vCPUs (PSCI CPU_ON, one LDAXR/STXR spinlock, per-CPU work), with
QEMU's `-smp` as the oracle: vlab prints what QEMU prints on any number of physical CPUs, under
every scheduling policy, and ends in the same state as the VM alone."""

from __future__ import annotations

import shutil

import pytest

from host_setups import PCPUS, POLICIES, c_guest, combinations, fits, scheduler
from vlab.guests import SELF_CHECK_OK
from vlab.guests import build as builder
from vlab.guests import qemu as oracle
from vlab.hyp.equivalence import differences
from vlab.hyp.host import DEFAULT_LOCKSTEP, Host
from vlab.hyp.vm import VM
from vlab.machine.board import StopReason

RAM = 0x40_0000
MAX_INSNS = 20_000_000
FINE_LOCKSTEP = 50  # host ticks: cores take turns every 50 instructions


@pytest.fixture(scope="module")
def smp():
    return c_guest("smp")


@pytest.fixture(scope="module")
def on_qemu(smp):
    """What QEMU prints for the guest with 2 and with 4 CPUs."""
    if shutil.which(oracle.QEMU) is None:
        pytest.skip(f"SKIPPED: {oracle.QEMU} is missing -- install the Debian package {oracle.QEMU_PACKAGE} "
                    "to compare vlab with QEMU")
    runs = {cpus: oracle.run_on_qemu(smp, timeout_s=60, cpus=cpus) for cpus in (2, 4)}
    for cpus, run in runs.items():
        assert run.powered_off, f"QEMU -smp {cpus} did not power off; it printed:\n{run.uart}"
    return {cpus: run.uart for cpus, run in runs.items()}


@pytest.fixture(scope="module")
def alone(smp):
    """The guest on 4 vCPUs, alone: a host with a physical CPU for each."""
    vm = VM.from_file(smp, vcpus=4, ram_size=RAM)
    return vm, vm.run(max_insns=MAX_INSNS)


def run_smp(path, pcpus: int, policy: str, stage2: str | None, vcpus: int = 4, lockstep: int = DEFAULT_LOCKSTEP):
    host = Host(pcpus=pcpus, scheduler=scheduler(policy, pcpus, vcpus=(vcpus,)), lockstep=lockstep)
    vm = VM.from_file(path, host=host, vcpus=vcpus, stage2=stage2, ram_size=RAM)
    return vm, host.run(max_insns=MAX_INSNS).vms[0]


def test_qemu_starts_all_four_cpus_with_cpu_on_through_hvc(on_qemu):
    # the oracle itself: QEMU's virt board without firmware answers PSCI through HVC
    for cpu in (1, 2, 3):
        assert f"smp: CPU_ON({cpu}) = 0\n" in on_qemu[4]
    assert "smp: 4 CPUs, 2000 additions under one lock" in on_qemu[4]
    assert on_qemu[4].endswith("smp: all checks passed\n")


# (physical CPUs, lockstep): one core; several, in the default lockstep, whose quantum is longer
# than each CPU's work here (they run one after the other); and several interleaving finely.
CORES = [(1, DEFAULT_LOCKSTEP), (2, DEFAULT_LOCKSTEP), (4, DEFAULT_LOCKSTEP), (2, FINE_LOCKSTEP), (4, FINE_LOCKSTEP)]


@pytest.mark.parametrize("stage2", [None, "scattered"])
@pytest.mark.parametrize("policy, pcpus, lockstep",
                         [(policy, pcpus, lockstep) for policy in POLICIES for pcpus, lockstep in CORES
                          if fits(policy, pcpus, (4,))])
def test_smp_guest_prints_what_qemu_smp_4_prints(smp, on_qemu, policy, pcpus, lockstep, stage2):
    vm, result = run_smp(smp, pcpus, policy, stage2, lockstep=lockstep)
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert result.uart == on_qemu[4]
    assert result.registers["x19"] == SELF_CHECK_OK
    assert [v["state"] for v in result.vcpus[1:]] == ["off"] * 3  # each secondary turned itself off


def test_a_cpu_the_vm_does_not_have_is_refused_as_on_qemu(smp, on_qemu):
    # CPU_ON of vCPU 2 and 3 of a 2-vCPU VM: INVALID_PARAMETERS (-2), as QEMU -smp 2 answers
    _, result = run_smp(smp, 1, "rr", "contiguous", vcpus=2)
    assert "smp: CPU_ON(2) = -2 (not started)" in on_qemu[2]
    assert result.uart == on_qemu[2]


@pytest.mark.parametrize("policy, pcpus", combinations(PCPUS, (4,)))
def test_smp_guest_ends_in_the_state_it_ends_in_alone(smp, alone, policy, pcpus):
    alone_vm, alone_result = alone
    vm, result = run_smp(smp, pcpus, policy, "contiguous", lockstep=FINE_LOCKSTEP)
    assert result.uart == alone_result.uart
    assert differences(alone_vm.vcpus[0], vm.vcpus[0]) == []


def test_without_the_lock_the_interleaving_loses_additions(smp, tmp_path):
    # The same guest with lock_take/lock_give never called, on cores that interleave finely: the
    # unguarded read-modify-writes of the total collide and the guest's self-check fails. The
    # lock is what makes the output above deterministic, and the cores really do interleave.
    source = (builder.C_DIR / "smp.c").read_text()
    for call in ("lock_take(&lock);", "lock_give(&lock);"):
        source = source.replace(call, "(void)lock;")
    for helper in ("static void lock_take", "static void lock_give"):
        source = source.replace(helper, f"__attribute__((unused)) {helper}")
    (tmp_path / "nolock.c").write_text(source)
    shutil.copy(builder.C_DIR / "smp.S", tmp_path / "nolock.S")
    unlocked = builder.build(tmp_path / "nolock.c", cache_dir=tmp_path)
    _, result = run_smp(unlocked, 4, "rr", None, lockstep=FINE_LOCKSTEP)
    assert "smp: FAILED" in result.uart
    assert result.registers["x19"] == 0xBAD
    _, locked = run_smp(smp, 4, "rr", None, lockstep=FINE_LOCKSTEP)
    assert locked.uart.endswith("smp: all checks passed\n")
