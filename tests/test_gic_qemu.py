"""QEMU as the oracle for the GIC: the C guests' output on `qemu-system-aarch64 -M virt`, vlab's GIC
model replaying QEMU's own trace of every GIC access, register by register (tests/gic_replay.py),
and the same guests in VMs.

The guests (vlab/guests/c/gic_*.c) check themselves and print what they saw: the expected texts
below are what QEMU 7.2 prints, and each line is also what the GICv2 architecture says (the guests'
own checks). On vlab's board (test_c_guests.py) and in a VM (below) they print the same.
"""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from gic_replay import parse, replay  # tests/gic_replay.py
from vlab.errors import ToolError
from vlab.guests import build as builder
from vlab.guests import qemu as oracle
from vlab.hyp import HCR, VM, Host
from vlab.machine.board import Board, StopReason
from vlab.machine.loader import image_from_file, load

GIC_TIMER_TEXT = """\
GIC: 288 interrupt IDs, GICC_IIDR 0x0002043b
virtual timer: PPI 27, priority 0xa0, level-triggered, one tick every 20000 counter ticks
""" + "".join(f"tick {n}: GICC_IAR 27, running priority 0xa0, PPI 27 active: 1\n" for n in range(1, 6)) + """\
after the last tick: running priority 0xff, PPI 27 pending 0, active 0; 0 spurious
all checks passed
"""

GIC_SMP_1_TEXT = """\
1 CPU(s), says GICD_TYPER; CPU 0 is MPIDR_EL1 0x80000000
PSCI CPU_ON for CPU 1, which does not exist: -2
no other CPU to wake
SGI 2 to the CPUs that do not exist: GICC_HPPIR 0x3ff
all checks passed
"""

GIC_SMP_4_TEXT = """\
4 CPU(s), says GICD_TYPER; CPU 0 is MPIDR_EL1 0x80000000
""" + "".join(f"CPU {n}: PSCI CPU_ON returned 0; it sees GICD_ITARGETSR0 = 0x{0x01010101 << n:08x}, says SGI 4 from "
              f"CPU {n}, and waits in WFI\n" for n in (1, 2, 3)) + """\
PSCI CPU_ON for CPU 4, which does not exist: -2
""" + "".join(f"SGI 1 to CPU {n}: it woke with GICC_IAR 0x001, and answered: SGI 3 from CPU {n}\n" for n in (1, 2, 3)) + """\
SGI 2 to all other CPUs; answers came from CPUs 1 2 3
SGI 2 to the CPUs that do not exist: GICC_HPPIR 0x3ff
all checks passed
"""

# What gic_sgi.c prints after each label: the GICv2 rule it shows, checked by the guest itself too.
GIC_SGI_LINES = [
    "GIC: 1 CPU(s), 288 interrupt IDs; SGIs enabled: 0xffff",
    "  GICD_ISPENDR0 (SGI 3 pending): 0x8",
    "  GICC_IAR in the handler (SGI 3 from CPU 0): 0x3",
    "  GICC_RPR in the handler: 0x80",
    "  taken first (most urgent): 0x6",
    "  then (same priority: lowest INTID): 0x4",
    "  GICC_IAR after SGI 7 (0x20): it preempts SGI 5 (0xc0): 0x7",
    "  GICC_IAR after SGI 8 (0xc0): not more urgent, no: 0x3ff",
    "  GICC_IAR with SGI 11 (0x80) pending: equal priority waits: 0x3ff",
    "  GICC_IAR once SGI 10 is completed: 0xb",
    "  GICC_HPPIR: 0x3ff",
    "  GICC_IAR with GICC_PMR 0xb0: 0x9",
    "  GICD_ISPENDR0 after SGI 12 to CPUs that do not exist: 0x0",
    "  GICD_ISENABLER9 (INTIDs 288-319 do not exist) after writing ~0: 0x0",
    "  reserved GICD+0x00c after writing ~0: 0x0",
    "all checks passed",
]

# (program, boot at EL2 with the virtualization extensions): each replayed on vlab's model
TRACED = [("gic_timer", False), ("gic_sgi", False), ("tests/fixtures/gic/registers.c", False),
          ("tests/fixtures/gic/virtual_interface.c", True)]


@pytest.fixture(scope="module")
def elf(tmp_path_factory):
    """Build a guest once per module; skip loudly where the cross compiler or QEMU is missing."""
    for tool, package in ((builder.COMPILER, builder.COMPILER_PACKAGE), (oracle.QEMU, oracle.QEMU_PACKAGE)):
        if shutil.which(tool) is None:
            pytest.skip(f"SKIPPED: {tool} is missing -- install the Debian package {package}")
    cache = tmp_path_factory.mktemp("gic-guests")
    return lambda name: builder.build(name, cache_dir=cache)


def test_the_virtual_timer_ticks_through_the_gic_on_qemu(elf):
    run = oracle.run_on_qemu(elf("gic_timer"))
    assert run.powered_off and run.uart == GIC_TIMER_TEXT


def test_sgis_to_itself_follow_the_priority_rules_on_qemu(elf):
    run = oracle.run_on_qemu(elf("gic_sgi"))
    lines = run.uart.splitlines()
    assert run.powered_off
    for line in GIC_SGI_LINES:
        assert line in lines
    assert "FAILED" not in run.uart


@pytest.mark.parametrize("cpus, text", [(1, GIC_SMP_1_TEXT), (4, GIC_SMP_4_TEXT)])
def test_cpu_0_wakes_the_others_from_wfi_with_sgis_on_qemu(elf, cpus, text):
    run = oracle.run_on_qemu(elf("gic_smp"), cpus=cpus)
    assert run.powered_off and run.uart == text


@pytest.mark.parametrize("program, virtualization", TRACED, ids=[p for p, _ in TRACED])
def test_vlabs_gic_reads_what_qemu_read_at_every_access(elf, program, virtualization):
    run = oracle.run_on_qemu(elf(program), virtualization=virtualization, trace="gic_*")
    assert run.powered_off, run.uart
    accesses = parse(run.stderr)
    assert sum(not a.is_write for a in accesses) >= 20  # the trace really was there
    mismatches = replay(accesses)
    assert not mismatches, "\n".join(map(str, mismatches[:5]))


def test_the_replay_notices_a_value_vlab_does_not_read(elf):
    accesses = parse(oracle.run_on_qemu(elf("gic_sgi"), trace="gic_*").stderr)
    n = next(i for i, a in enumerate(accesses) if a.frame == "gicc" and a.offset == 0x0C and a.value == 6)
    accesses[n] = dataclasses.replace(accesses[n], value=4)  # as if QEMU had taken SGI 4 before SGI 6
    assert [m.index for m in replay(accesses)] == [n]


def test_a_guest_links_the_shared_modules_it_names():
    sources = [p.name for p in builder.sources("gic_timer")]
    assert {"gic_timer.c", "gic.c", "irq.S", "start.S", "lib.c", "gic.h"} <= set(sources)
    assert "gic" not in builder.programs()  # a module with no main is not a program


def test_a_guest_naming_a_module_that_does_not_exist_is_an_error(tmp_path):
    program = tmp_path / "bad.c"
    program.write_text("// links: gic.c nowhere.S\nint main(void) { return 0; }\n")
    with pytest.raises(ToolError, match="nowhere.S"):
        builder.sources(program)


# --- the same guests in a VM: the distributor's accesses exit, the CPU interface's do not ------------------

VM_RUNS = [("gic_timer", 1, None), ("gic_sgi", 1, None), ("gic_smp", 1, None), ("gic_smp", 4, None),
           ("gic_smp", 4, "one physical CPU"), ("gic_timer", 1, "scattered")]


@pytest.mark.parametrize("traps", [HCR(0), HCR.TWI], ids=["no traps", "TWI"])
@pytest.mark.parametrize("name, cpus, how", VM_RUNS, ids=[f"{n}-{c}cpu-{h or 'alone'}" for n, c, h in VM_RUNS])
def test_gic_guests_print_in_a_vm_what_they_print_on_qemu(elf, name, cpus, how, traps):
    path = elf(name)
    on_qemu = oracle.run_on_qemu(path, cpus=cpus)
    options = {"traps": traps, "vcpus": cpus}
    if how == "one physical CPU":
        options.update(host=Host(pcpus=1), stage2="contiguous")
    elif how == "scattered":
        options.update(stage2="scattered")
    result = VM.from_file(path, **options).run(max_insns=20_000_000, timeout_s=60)
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert result.uart == on_qemu.uart
    assert result.exits["DABT_LOWER"] > 0  # the distributor: emulated, an exit per access
    served = result.without_exits  # the CPU interface: the hardware's GICV, no exit
    assert served["GICV_CTLR"] == cpus and served.get("GICV_IAR", 0) >= served.get("GICV_EOIR", 0)
    if name == "gic_timer":
        assert result.exits["IRQ"] == 5  # each tick: the physical PPI 27, taken by the hypervisor


def test_on_the_board_the_timer_and_the_sgis_go_through_the_gic_with_nothing_in_between(elf):
    board = Board()
    load(board, image_from_file(elf("gic_timer")))
    result = board.run(max_insns=2_000_000)
    assert result.uart == GIC_TIMER_TEXT
    irqs = [e for e in board.exceptions_taken if e.vector.name == "IRQ"]
    assert len(irqs) == 5
    reads = [a for a in board.mmio_trace if a.register == "GICC_IAR"]
    assert [a.value for a in reads] == [27] * 5
