"""The fuzzer as part of the suite: 2,000 generated programs, bare and in VMs, every rule kept.

The rules and the divergences by design are vlab.fuzz.check's; `make fuzz N=100000` runs more.
The seeds are fixed here (a failure reproduces with `vlab.fuzz.check.check(seed)`); `make fuzz`
explores new ones.
"""

from __future__ import annotations

import dataclasses

import pytest

from vlab.fuzz import check as fuzz_check
from vlab.fuzz.check import BOARD, DIVERGENCES, fuzz, vm_for
from vlab.fuzz.programs import SNIPPETS, program
from vlab.hyp import VM
from vlab.machine.board import StopReason

PROGRAMS = 2_000


@pytest.fixture(scope="module")
def tally():
    """The fuzzing run itself (a couple of minutes), shared by the tests that read its counts."""
    return fuzz(range(PROGRAMS))


def test_generated_programs_keep_every_rule_bare_and_in_vms(tally):
    assert tally.programs == PROGRAMS and tally.runs == 2 * PROGRAMS
    assert not tally.findings, tally.report()


def test_the_run_covered_every_kind_and_compared_most_programs(tally):
    assert set(tally.kinds) >= set(SNIPPETS) | {"mmu", "no_vectors"}, "every kind of snippet was generated"
    assert set(tally.divergent) == set(DIVERGENCES), "every divergence by design still occurs"
    assert tally.compared >= PROGRAMS // 2, tally.report()
    assert {"powered_off", "exception", "budget", "idle"} <= set(tally.endings), tally.report()


def test_a_seed_always_makes_the_same_program_and_seeds_differ():
    assert program(7) == program(7)
    assert len({program(seed).source for seed in range(50)}) == 50


@pytest.mark.parametrize("kind", sorted(DIVERGENCES))
def test_each_divergence_by_design_is_real(kind):
    # Programs using the kind end differently bare and in their VM: the entry is not stale.
    seeds = [seed for seed in range(PROGRAMS) if kind in program(seed).kinds][:5]
    differing = []
    for seed in seeds:
        image = program(seed).image()
        (bare, board), (virtual, vcpu) = fuzz_check.run(image, BOARD), fuzz_check.run(image, vm_for(seed))
        differing.append(fuzz_check._mismatch(bare, virtual, board, vcpu) is not None)
    assert seeds and any(differing), f"no program with {kind} diverged: {seeds}"


def planted(monkeypatch, change):
    """Make every VM run end as `change(result)` says: a bug planted in the hypervisor."""
    real = VM.run

    def run(self, *args, **kwargs):
        return change(real(self, *args, **kwargs))

    monkeypatch.setattr(VM, "run", run)


def test_the_checker_finds_a_vm_that_miscounts_instructions(monkeypatch):
    planted(monkeypatch, lambda r: dataclasses.replace(r, instructions=r.instructions + 1))
    tally = fuzz(range(20))
    assert tally.findings and all(f.problem == "mismatch" and "instructions" in f.detail for f in tally.findings)


@pytest.mark.parametrize("problem, change", [
    ("hang", lambda r: dataclasses.replace(r, reason=StopReason.TIMEOUT)),
    ("vlab error", lambda r: dataclasses.replace(r, reason=StopReason.ERROR)),
])
def test_the_checker_finds_hangs_and_vlab_errors(monkeypatch, problem, change):
    planted(monkeypatch, change)
    findings = fuzz(range(5)).findings
    assert {f.seed for f in findings if f.problem == problem} == set(range(5))
    assert all(f.machine != "board" for f in findings), "the board was not touched"


def test_the_checker_finds_a_python_exception_escaping(monkeypatch):
    def broken(self, *args, **kwargs):
        raise KeyError("planted")

    monkeypatch.setattr(VM, "run", broken)
    findings = fuzz(range(3)).findings
    assert [f.problem for f in findings] == ["python exception"] * 3 and "planted" in findings[0].detail


def test_the_checker_finds_a_loop_inside_vlab_that_its_wall_clock_guard_cannot_end(monkeypatch, stuck_in_vlab):
    monkeypatch.setattr(fuzz_check, "HANG_S", 0.5)
    findings = fuzz(range(2)).findings
    hangs = [f for f in findings if f.problem == "hang"]
    assert {f.seed for f in hangs} == {0, 1} and "a loop inside vlab" in hangs[0].detail


def test_the_docs_list_exactly_the_divergences_by_design():
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "equivalence.md").read_text()
    section = text.split("## Divergences by design")[1].split("\n## ")[0]  # not where vlab differs from QEMU
    listed = {line.split("**")[1] for line in section.splitlines() if line.startswith("- **")}
    assert listed == set(DIVERGENCES)


def test_the_hang_guard_stays_out_of_threads_signals_cannot_reach():
    import threading

    ran = []
    worker = threading.Thread(target=lambda: ran.append(fuzz_check.run(program(0).image(), BOARD)[0]))
    worker.start()
    worker.join(60)
    assert ran and ran[0] is not None  # a result, not a ValueError from signal.signal
