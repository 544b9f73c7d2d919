"""Isolation and sandboxing, attacked: a hostile VM beside a victim on one host changes nothing of
the victim's (output, registers, RAM), reads nothing of it (the attacker ends the same whichever
secret the victim holds), and writes no host frame it does not own -- with page sharing on or off.

By hand (vlab.fuzz.attacks, one attack each) and fuzzed (2,000 generated hostile programs, the
rules of vlab.fuzz.neighbour); each check is shown to catch the bug it is there for.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from concurrent.futures import ProcessPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unicorn import arm64_const

from vlab.arch.hcr import HCR
from vlab.fuzz import neighbour
from vlab.fuzz.attacks import ATTACKS, FILL, FREE_RAM, TABLE, Attack, loop_stores
from vlab.fuzz.neighbour import SECRETS, NeighbourTally, Setup, Stage2Tree, attack, fuzz
from vlab.fuzz.programs import EL2_EL3_REGISTERS, HOSTILE, RAM_SIZE
from vlab.hyp import handlers
from vlab.hyp.host import Host
from vlab.hyp.memory import HOST_BASE, HostMemory, VmMemory
from vlab.hyp.vm import VM
from vlab.machine.board import RAM_BASE, StopReason
from vlab.machine.cpu import CPU
from vlab.mmu.tables import PAGE
from vlab.mmu.tlb_fill import GuestTranslation

PROGRAMS = 2_000
JOBS = 2  # the suite runs on one core at a time; the fuzzing uses both


# --- by hand: every attack of the issue, each beside the victim --------------------------------------

@pytest.fixture(scope="module")
def outcomes():
    """Each attack once with page sharing on (the victim's code page copied into the attacker's
    data, for it to write), and the two with several vCPUs again with sharing off on two cores."""
    runs = {(name, True, 1): attack(name, share=True) for name in ATTACKS}
    runs |= {(name, False, 2): attack(name, share=False, pcpus=2) for name in ("interrupt storm", "wild CPU_ON")}
    return runs


@pytest.mark.parametrize("name, share, pcpus", [*((n, True, 1) for n in sorted(ATTACKS)),
                                                ("interrupt storm", False, 2), ("wild CPU_ON", False, 2)])
def test_an_attack_changes_nothing_of_the_victim_reads_nothing_and_writes_no_frame_it_does_not_own(
        outcomes, name, share, pcpus):
    outcome = outcomes[name, share, pcpus]
    assert outcome.isolated, outcome.table()
    assert outcome.victim.uart == outcome.alone.uart != "" and outcome.victim.registers == outcome.alone.registers
    assert outcome.frames_compared >= neighbour.SPARE_FRAMES  # the free frames, at least, were compared
    assert (outcome.frames_freed > 0) is share  # sharing really shared


def test_the_attacks_do_what_they_are_named_for(outcomes):
    # (a test of the tests: each attacker really misbehaved, and was not stopped at once)
    def of(name):
        return outcomes[name, True, 1]

    writer = of("writes everywhere")
    assert writer.hostile.exits["DABT_LOWER"] > 1024 + 200  # every GiB of the IPA space, host frames' addresses
    assert writer.attacker.read_memory(RAM_BASE + RAM_SIZE - 8, 8) == FILL.to_bytes(8, "little")
    tables = of("aliasing stage-1 tables").attacker
    level1 = struct.unpack("<8Q", tables.read_memory(TABLE, 64))
    assert level1[5] == HOST_BASE | 0x701 and level1[7] == FILL  # written through the table's own aliases
    assert "outside the VM's RAM" in of("aliasing stage-1 tables").hostile.message
    games = of("TLBI and AT games").attacker
    assert games.vcpus[0].x(8) == 256 and games.result().reason is StopReason.POWERED_OFF  # every ASID
    calls = of("wild hypercalls").hostile
    assert calls.exits["HVC64"] > 300 and calls.exits["SMC64"] > 50 and len(calls.uart) > RAM_SIZE // 2
    cpu_on = of("wild CPU_ON")
    assert [v["instructions"] > 0 for v in cpu_on.hostile.vcpus] == [True, True, False, False]
    assert "no vector table" in cpu_on.hostile.message  # vCPU 2, started at zeros, ended the VM at once
    registers = of("EL2/EL3 registers").attacker.vcpus[0]
    assert len(registers.entry.taken) == 3 * len(EL2_EL3_REGISTERS)  # each access UNDEFINED at EL1
    assert "exception loop" in of("exception loop").hostile.message
    virtio = of("wild virtio").attacker
    assert len(virtio.virtio.transports[-1].errors) >= 15  # each wild round refused by the device
    assert virtio.virtio_console.text == "\0" * 8  # and the last, a sound one, served after all of them
    storm = of("interrupt storm").hostile  # both vCPUs, 16 rounds of 4 storms, each yielding
    assert storm.exits["DABT_LOWER"] == 2 * 16 * 4 * 4  # 4 distributor writes a storm (the CPU interface: GICV)
    assert storm.exits["HVC64"] > 2 * 16
    assert storm.reason is StopReason.POWERED_OFF and all(v["instructions"] > 1000 for v in storm.vcpus)
    spinner = of("spins forever").hostile
    assert spinner.reason is StopReason.BUDGET and [v["state"] for v in spinner.vcpus] == ["runnable"] * 4


def test_the_report_names_the_attack_the_checks_and_their_results(outcomes):
    text = outcomes["writes everywhere", True, 1].table()
    for part in ("writes everywhere", "page sharing on", "frames freed", "host buffer", "compared byte for byte",
                 "0 changed", "whichever secret", "isolated: yes", "169ef86f42bf44fc"):
        assert part in text, part


ADDRESS = st.one_of(st.integers(0, (1 << 40) - 8), st.integers(0, (1 << 64) - 8),
                    st.integers(0, 0x30_0000).map(lambda a: HOST_BASE + a), st.integers(0, 0x30_0000),
                    st.sampled_from([RAM_BASE - 8, RAM_BASE + RAM_SIZE, 0x0900_0000, 0x0804_0000]))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stores=st.lists(st.tuples(ADDRESS, st.integers(0, (1 << 64) - 1)), min_size=1, max_size=20),
       share=st.booleans(), pcpus=st.integers(1, 2))
def test_stores_anywhere_change_nothing_of_the_victim(stores, share, pcpus):
    body = "".join(f"    ldr     x1, ={address & ~7:#x}\n    ldr     x3, ={value:#x}\n    str     x3, [x1]\n"
                   for address, value in stores)
    outcome = attack(Attack("stores", "stores drawn by hypothesis", lambda _: body), share=share, pcpus=pcpus)
    assert outcome.isolated, outcome.table()


@pytest.mark.parametrize("victim_layout, share", [("demand", False), ("contiguous", True)])
def test_an_overcommitted_neighbour_touching_all_its_ram_cannot_starve_the_victim(victim_layout, share):
    # A demand-paged VM may be larger than the host's free memory (its pages are taken as they are
    # touched); the host's frames the victim was promised -- for its own demand-paged pages, its
    # tables, its copies on write -- are not the attacker's to take, whatever it touches.
    found = neighbour.overcommit(victim_layout, share)
    assert found.differences == [] and "isolated: yes" in found.table(), found.table()
    assert found.victim_promised > 0 and found.attacker_pages > found.attacker_ram_pages // 8  # it took the rest
    assert found.attacker.reason is StopReason.ERROR and "promised to other VMs" in found.attacker.message


def test_frames_promised_to_a_demand_paged_vm_are_not_offered_to_the_next():
    host = Host(pcpus=1, memory=HostMemory(2 * RAM_SIZE))
    first = VM(host=host, stage2="demand", ram_size=RAM_SIZE)
    assert first.memory.promised == RAM_SIZE // PAGE + 2  # its pages, and the two tables below the root
    assert host.memory.frames.free == 2 * RAM_SIZE // PAGE - 2  # taken so far: the root's two frames
    with pytest.raises(ValueError, match=r"only 2\d\d of the host's 512 frames \(2 MiB\) are free \(25\d more are "
                                         r"promised to other VMs\)"):
        VM(host=host, stage2="contiguous", ram_size=RAM_SIZE)
    overcommitted = VM(host=host, stage2="demand", ram_size=RAM_SIZE)  # admitted, promised nothing
    assert overcommitted.memory.promised == 0


U64 = st.integers(0, (1 << 64) - 1)
CALL = st.tuples(st.sampled_from(["hvc #0", "smc #0", "hvc #0xea1"]),
                 st.one_of(st.sampled_from([0x8600_0001, 0x8600_0002, 0xC400_0003, 0x8400_0000, 0, 1, 6]), U64),
                 ADDRESS, st.one_of(st.sampled_from([0, 8, 4096, 0xFFFF_FFFF]), U64), ADDRESS,
                 st.one_of(st.sampled_from([17, 18, 29, 48]), U64))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls=st.lists(CALL, min_size=1, max_size=8), share=st.booleans())
def test_hypercalls_with_any_arguments_change_nothing_of_the_victim(calls, share):
    # (SYSTEM_OFF, SYSTEM_RESET and CPU_OFF only end the attacker's run: they are drawn too)
    body = "".join(f"    ldr     x0, ={x0:#x}\n    ldr     x1, ={x1:#x}\n    ldr     x2, ={x2:#x}\n"
                   f"    ldr     x3, ={x3:#x}\n    ldr     x16, ={x16:#x}\n    {conduit}\n"
                   for conduit, x0, x1, x2, x3, x16 in calls)
    outcome = attack(Attack("hypercalls", "hypercalls drawn by hypothesis", lambda _: body), share=share)
    assert outcome.isolated, outcome.table()


def test_without_tsc_an_smc_reaches_the_firmware_and_powers_the_whole_host_off():
    # Why every hostile VM here has HCR_EL2.TSC (as KVM sets it): without it an SMC is the
    # machine's firmware's, and PSCI SYSTEM_OFF there stops every VM -- its neighbour too.
    host = Host(pcpus=1)
    VM.from_source("    ldr x0, =0x84000008\n    smc #0\n", host=host, stage2="contiguous", ram_size=RAM_SIZE)
    victim = VM.from_image(neighbour.victim_image(), host=host, stage2="contiguous", ram_size=RAM_SIZE)
    host.run(max_insns=100_000)
    assert victim.result().reason is StopReason.POWERED_OFF and "firmware powered the host off" in victim.result().message
    assert victim.result().uart != neighbour.alone()[1].uart


# --- each check catches the bug it is for --------------------------------------------------------------

# Small attacks, for the planted bugs: its RAM overwritten (every page it shares is copied on
# write), one store where there is nothing (an abort), one console_io of its whole RAM.
FILLS_ITS_RAM = Attack("fills its RAM", "overwrites its RAM past its code", lambda _: (
    f"    ldr     x3, ={FILL:#x}\n" + loop_stores("fill", f"={FREE_RAM:#x}", f"={RAM_BASE + RAM_SIZE:#x}", "=8")
    + "    ldr     x1, =0x20000000\n    str     x3, [x1]\n"))
PRINTS_ITS_RAM = Attack("prints its RAM", "Xen console_io of its whole RAM", lambda _: f"""    ldr     x16, =18
    mov     x0, #0
    ldr     x1, ={RAM_SIZE:#x}
    ldr     x2, ={RAM_BASE:#x}
    hvc     #0xea1
""")

def test_a_copy_on_write_that_does_not_copy_is_caught(monkeypatch):
    def in_place(self, page, frame):  # the planted bug: the writer gets the shared frame itself
        self.shared.discard(page)
        self._map(page, frame)
        return "made writable in place"

    monkeypatch.setattr(VmMemory, "_break_sharing", in_place)
    outcome = attack(FILLS_ITS_RAM, share=True)
    assert not outcome.isolated and any("host frame" in leak or "RAM" in leak for leak in outcome.leaks)
    assert attack(FILLS_ITS_RAM, share=False).isolated  # without sharing the bug is harmless


def test_a_world_switch_that_keeps_the_last_vms_stage_2_is_caught(monkeypatch):
    real = GuestTranslation.switch

    def keeps_stage2(self, stage2, vttbr, vmid):
        real(self, stage2, self.vttbr if self.vttbr else vttbr, vmid)

    monkeypatch.setattr(GuestTranslation, "switch", keeps_stage2)
    outcome = attack(FILLS_ITS_RAM)
    assert not outcome.isolated


def test_a_world_switch_that_loses_the_simd_registers_is_caught(monkeypatch):
    real = CPU.note_context_restored

    def loses_v31(self):  # the planted bug: the incoming vCPU's v31 is not restored
        real(self)
        self.uc.reg_write(arm64_const.UC_ARM64_REG_Q31, 0)

    monkeypatch.setattr(CPU, "note_context_restored", loses_v31)
    outcome = attack(FILLS_ITS_RAM)
    assert any(leak.startswith("q31:") for leak in outcome.leaks), outcome.leaks


def test_a_hypercall_that_reads_the_neighbours_memory_is_caught(monkeypatch):
    real = VM.read_memory

    def neighbours(self, ipa, size):  # the planted bug: guest buffers are read in the first VM's RAM
        return real(self.host.vms[0], ipa, size)

    honest = attack(PRINTS_ITS_RAM)
    assert honest.isolated and len(honest.hostile.uart) > RAM_SIZE // 2  # it printed its own RAM (as text)
    monkeypatch.setattr(VM, "read_memory", neighbours)
    outcome = attack(PRINTS_ITS_RAM)
    assert outcome.read_leaks and not outcome.leaks  # nothing written: only the second secret shows it


def test_a_stray_write_to_a_free_host_frame_is_caught(monkeypatch):
    real = handlers.inject_external_abort

    def stray(vcpu, exit, why):  # the planted bug: an abort also scribbles on the last host frame
        memory = vcpu.vm.host.memory
        memory.memory.write(memory.size - PAGE, b"oops")
        return real(vcpu, exit, why)

    monkeypatch.setattr(handlers, "inject_external_abort", stray)
    outcome = attack(FILLS_ITS_RAM)
    assert [leak for leak in outcome.leaks if "host frame" in leak] and "changed" in outcome.table()


def test_the_stage2_check_finds_stray_entries_and_frames_it_must_not_map():
    host = Host(pcpus=1)
    vm = VM(host=host, stage2="contiguous", ram_size=RAM_SIZE)
    other = VM(host=host, stage2="contiguous", ram_size=RAM_SIZE)
    tree = Stage2Tree.of(vm.memory)
    assert tree.problems == [] and len(tree.pages) == RAM_SIZE // PAGE
    assert neighbour.stage2_problems(tree, host.memory.sharers, set()) == []
    stranger = other.memory.frame_of(RAM_BASE)
    assert "a hostile VM's" in neighbour.stage2_problems(tree, host.memory.sharers, {stranger} | {
        vm.memory.frame_of(RAM_BASE)})[0]
    root = vm.memory.tables.root
    host.memory.memory.write64(root + 8 * 5, 0x1234_5000 | 0b01)  # a 1 GiB block at IPA 5 GiB
    host.memory.memory.write64(root + 8 * 7, 0x400)  # not valid, not zero
    problems = Stage2Tree.of(vm.memory).problems
    assert len(problems) == 2 and "0x140000000" in problems[0] and "0x1c0000000" in problems[1]


# --- fuzzed ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tally():
    """2,000 generated hostile programs, GROUP to a host beside the victim, on both cores."""
    chunks = [range(start, min(start + 96, PROGRAMS)) for start in range(0, PROGRAMS, 96)]
    total = NeighbourTally()
    with ProcessPoolExecutor(JOBS) as pool:
        for part in pool.map(fuzz, chunks):
            total.merge(part)
    return total


# The fuzzing is one fixture, paid by the first test that uses it: on a busy machine it can take
# longer than the suite's five minutes a test.
@pytest.mark.timeout(900)
def test_generated_hostile_programs_never_leak_hang_or_crash(tally):
    assert tally.programs == PROGRAMS
    assert not tally.findings, tally.report()
    assert "leaks: 0, hangs: 0, Python errors: 0, vlab errors: 0" in tally.report()


@pytest.mark.timeout(900)
def test_the_fuzzing_covered_every_hostile_kind_sharing_reads_and_endings(tally):
    assert set(tally.kinds) >= set(HOSTILE), tally.report()
    assert tally.shared_hosts >= tally.hosts // 10 and tally.read_checks >= tally.hosts // 10
    assert {"powered_off", "budget", "exception", "idle"} <= set(tally.endings), tally.report()


def test_the_fuzzer_finds_a_copy_on_write_leak(monkeypatch):
    monkeypatch.setattr(VmMemory, "_break_sharing", lambda self, page, frame: (
        self.shared.discard(page), self._map(page, frame))[1] or "in place")
    seeds = [seed for seed in range(0, 600, neighbour.GROUP) if Setup.of(seed).share][:2]
    findings = [f for seed in seeds for f in neighbour.check(seed).findings]
    assert findings and {f.problem for f in findings} == {"leak"}


def test_the_fuzzer_reports_python_exceptions_and_hangs(monkeypatch):
    neighbour.alone(SECRETS[0])  # the victim's lone run, made before the planting
    monkeypatch.setattr(Host, "run", lambda self, *a, **k: {}["planted"])
    assert [f.problem for f in neighbour.check(0, read_check=False).findings] == ["python exception"]
    monkeypatch.undo()
    real = VM.result
    monkeypatch.setattr(VM, "result", lambda self: dataclasses.replace(real(self), reason=StopReason.TIMEOUT))
    problems = {f.problem for f in neighbour.check(0, read_check=False).findings}
    assert "hang" in problems


def test_a_host_is_drawn_from_its_seed_and_hostile_vms_trap_smc():
    assert Setup.of(42) == Setup.of(42) and len({Setup.of(s) for s in range(30)}) == 30
    assert all(traps & HCR.TSC for s in range(30) for traps in Setup.of(s).traps)


def test_the_command_line_runs_hostile_programs_and_prints_the_counts_and_the_rate(capsys):
    from vlab.fuzz.__main__ import main

    assert main(["16", "--neighbour", "--seed", "40"]) == 0
    out = capsys.readouterr().out
    assert "fuzzing 16 hostile programs beside a victim, seeds 40..55" in out
    assert "16 hostile programs on 2 hosts" in out and "leaks: 0, hangs: 0, Python errors: 0" in out
    assert re.search(r"Fuzz programs per second: \d+\.\d \(1 job\(s\), beside a victim\)", out)


def test_a_loop_inside_vlab_is_a_hang_finding_not_a_stuck_fuzzer(monkeypatch, stuck_in_vlab):
    monkeypatch.setattr(neighbour, "HANG_S", 0.5)
    findings = neighbour.check(0, 2).findings
    assert [f.problem for f in findings] == ["hang"] and "a loop inside vlab" in findings[0].detail
