"""Shadow page tables (vlab.hyp.shadow): the same guest results as stage 2, by real exits, at a real cost."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlab.arch.esr import DataAbort, ExceptionClass, FaultStatus, SysRegAccess
from vlab.arch.hcr import HCR
from vlab.arch.sysregs import BY_ENCODING
from vlab.asm import assemble
from vlab.guests import GUESTS, build
from vlab.guests.mmu import MMU_ON
from vlab.hyp import VM
from vlab.hyp.equivalence import differences
from vlab.hyp.shadow_compare import compare_paging, remaps
from vlab.machine.board import StopReason
from vlab.machine.loader import image_from_file, image_from_program

RAM = 0x80_0000
OFF = "    ldr x0, =0x84000008\n    hvc #0\n"


def both(image, layout="scattered", max_insns=200_000, **options):
    """The image run under stage 2 and under shadow tables: (nested VM, its result, shadow VM, its result)."""
    runs = []
    for paging in ("nested", "shadow"):
        vm = VM.from_image(image, stage2=layout, ram_size=RAM, paging=paging, **options)
        runs += [vm, vm.run(max_insns=max_insns)]
    return runs


@pytest.mark.parametrize("name", sorted(GUESTS))
def test_demo_guests_end_the_same_under_shadow_paging_as_under_stage_2(name):
    nested_vm, nested, shadow_vm, shadow = both(image_from_file(GUESTS[name].path), max_insns=2_000_000)
    assert shadow.uart == nested.uart == GUESTS[name].expected_uart
    assert shadow.reason is nested.reason is StopReason.POWERED_OFF
    assert shadow.instructions == nested.instructions
    assert differences(nested_vm.vcpus[0], shadow_vm.vcpus[0]) == []


def test_c_guests_built_for_qemu_virt_end_the_same_under_shadow_paging():
    try:
        elves = [build.build(name) for name in build.programs()]
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"SKIPPED: cannot build the C guests ({e})")
    for elf in elves:
        nested_vm, nested, shadow_vm, shadow = both(image_from_file(elf), layout="contiguous", max_insns=2_000_000)
        assert shadow.uart == nested.uart and shadow.registers == nested.registers, elf.name
        assert differences(nested_vm.vcpus[0], shadow_vm.vcpus[0]) == [], elf.name


def test_shadow_paging_refuses_an_unknown_mode_and_sets_the_traps_it_needs():
    with pytest.raises(ValueError, match="paging='hardware'"):
        VM(paging="hardware")
    vm = VM(paging="shadow", ram_size=RAM)
    assert vm.traps & HCR.TVM and vm.traps & HCR.TRVM and vm.memory is not None and vm.shadow is not None
    assert VM(stage2="contiguous", ram_size=RAM).shadow is None


# --- the exits shadow paging takes -------------------------------------------------------------

def test_table_writes_and_translation_registers_exit_with_the_syndromes_the_hardware_gives():
    source = remaps(pages=4, rounds=2)
    vm = VM.from_image(image_from_program(assemble(source)), stage2="scattered", ram_size=RAM, paging="shadow")
    assert vm.run(max_insns=100_000).reason is StopReason.POWERED_OFF
    log = [r for r in vm.trap_log if r.exit is not None]
    writes = [r.exit for r in log if "table write" in r.action]
    # the second round rewrites the level-3 table the first round's accesses had the shadow watch
    assert len(writes) == 4 == vm.shadow.table_writes
    for exit in writes:
        abort = DataAbort.from_iss(exit.syndrome.iss)
        assert exit.ec is ExceptionClass.DABT_LOWER and abort.wnr and not abort.isv
        assert abort.dfsc == FaultStatus.PERMISSION_L0 + 3
        assert 0x4001_2000 <= exit.far < 0x4001_2000 + 4 * 8  # the descriptor the guest stored
        assert exit.instruction.startswith("str")
    registers = {BY_ENCODING[SysRegAccess.from_iss(r.exit.syndrome.iss).encoding].name
                 for r in log if r.exit.ec is ExceptionClass.SYS64}
    assert {"TTBR0_EL1", "TCR_EL1", "SCTLR_EL1"} <= registers  # TVM (writes) and TRVM (the MRS of SCTLR_EL1)
    assert vm.exits["DABT_LOWER"] == sum(1 for r in log if r.exit.ec is ExceptionClass.DABT_LOWER)
    assert vm.shadow.fills > 0


def test_the_hardware_walk_reads_n_descriptors_under_shadows_and_up_to_15_under_stage_2():
    c = compare_paging("remaps", pages=16, rounds=3)
    assert c.same_result, c.differences
    # vlab's guests: three stage-1 levels for pages (one for the kernel's 1 GiB block), three stage-2 levels
    assert 7 < c.nested.references_per_walk <= 15
    assert 1 <= c.shadow.references_per_walk <= 3
    assert c.shadow.exits["DABT_LOWER"] >= 2 * 16 * 2  # each remapped page: its descriptor, then its refill
    assert c.nested.total_exits == 1  # nested paging: only the power-off
    text = c.table()
    assert "remaps" in text and "shadow/nested" in text and "table writes trapped" in text


# --- the property: generated guest page tables --------------------------------------------------

L3 = 0x4001_2000
DATA = 0x4020_0000
# The guest's tables: level 1 at 0x4001_0000 (its RAM as a block, and a level-2 table), level 2 at
# 0x4001_1000 (a level-3 table at L3, in x4).
TABLES = f"""    ldr x1, =0x40010000
    ldr x2, =0x40000701
    str x2, [x1, #8]
    ldr x3, =0x40011000
    orr x2, x3, #3
    str x2, [x1, #16]
    ldr x4, ={L3:#x}
    orr x2, x4, #3
    str x2, [x3]
"""
TARGETS = [DATA + i * 0x1000 for i in range(8)] + [0x4001_0000, 0x4001_1000, L3]  # data pages, and the tables
descriptor = st.one_of(
    st.builds(lambda target, ap, uxn, pxn, af, ng: target | 0x703 & ~0x400 | af << 10 | ap << 6 | ng << 11
              | uxn << 54 | pxn << 53, st.sampled_from(TARGETS), st.integers(0, 3), st.integers(0, 1),
              st.integers(0, 1), st.sampled_from([1, 1, 1, 0]), st.integers(0, 1)),
    st.just(0),  # invalid
    st.sampled_from([DATA | 0x701, 0x100_0000_0000 | 0x703]),  # reserved at level 3; beyond the output range
)
# a few pages, so that the steps often come back to one the guest has just remapped
store = st.tuples(st.just("store"), st.integers(0, 3), st.integers(0, 511), st.integers(0, 2**64 - 1))
load = st.tuples(st.just("load"), st.integers(0, 3), st.integers(0, 511), st.just(0))
remap = st.tuples(st.just("remap"), st.integers(0, 3), st.just(0), descriptor)


def _guest(l3: list[int], steps: list[tuple]) -> str:
    """A kernel mapping VA 0x8000_0000 + 4 KB * i through level-3 descriptor l3[i], then running `steps`;
    its vectors log each abort's ESR and FAR at 0x4003_0000 and skip the instruction."""
    body = "".join(f"    ldr x2, ={value:#x}\n    str x2, [x4, #{8 * i}]\n" for i, value in enumerate(l3))
    for kind, page, word, value in steps:
        va = 0x8000_0000 + page * 0x1000 + 8 * word
        if kind == "load":
            body_step = f"    ldr x3, ={va:#x}\n    ldr x5, [x3]\n    add x6, x6, x5\n"
        elif kind == "store":
            body_step = f"    ldr x3, ={va:#x}\n    ldr x5, ={value:#x}\n    str x5, [x3]\n"
        else:  # the guest changes a live descriptor, flushes it, and reads through it again
            body_step = (f"    ldr x2, ={value:#x}\n    str x2, [x4, #{8 * page}]\n"
                         f"    dsb ish\n    tlbi vmalle1\n    dsb ish\n    isb\n    ldr x3, ={va:#x}\n"
                         "    ldr x5, [x3]\n    add x6, x6, x5\n")
        body += body_step
    return f"""    adr x0, vectors
    msr vbar_el1, x0
    ldr x27, =0x40030000
{TABLES}{MMU_ON}{body}{OFF}
    .balign 0x800
vectors:
    b .
    .balign 0x200
    mrs x9, esr_el1
    mrs x10, far_el1
    stp x9, x10, [x27], #16
    mrs x9, elr_el1
    add x9, x9, #4
    msr elr_el1, x9
    eret
"""


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(descriptor, min_size=8, max_size=8), st.lists(st.one_of(store, load, remap), min_size=1, max_size=14),
       st.sampled_from(["contiguous", "scattered", "demand"]))
def test_shadow_paging_gives_the_same_guest_results_as_stage_2_on_generated_tables(l3, steps, layout):
    """Valid, invalid, reserved and out-of-range descriptors, every AP/XN/AF/nG, pages aliasing the
    guest's own tables (stores through them change the tables), live remaps: the same faults (ESR, FAR
    logged by the guest), registers, RAM and output under both."""
    nested_vm, nested, shadow_vm, shadow = both(image_from_program(assemble(_guest(l3, steps))), layout)
    assert shadow.reason is nested.reason is StopReason.POWERED_OFF, (nested.message, shadow.message)
    assert differences(nested_vm.vcpus[0], shadow_vm.vcpus[0]) == []
    assert shadow.instructions == nested.instructions


def test_a_malformed_guest_table_gives_the_guest_the_same_fault_as_stage_2():
    l3 = [DATA | 0x701, 0, 0x100_0000_0000 | 0x703] + [0] * 5  # reserved, invalid, beyond the output range
    steps = [("load", 0, 0, 0), ("store", 1, 3, 5), ("load", 2, 0, 0)]
    nested_vm, nested, shadow_vm, shadow = both(image_from_program(assemble(_guest(l3, steps))))
    log = [int.from_bytes(shadow_vm.read_memory(0x4003_0000 + 8 * i, 8), "little") for i in range(6)]
    assert log == [int.from_bytes(nested_vm.read_memory(0x4003_0000 + 8 * i, 8), "little") for i in range(6)]
    dfsc = [DataAbort.from_iss(esr & 0x1FF_FFFF).dfsc for esr in log[0::2]]
    assert dfsc == [FaultStatus.TRANSLATION_L0 + 3, FaultStatus.TRANSLATION_L0 + 3, FaultStatus.ADDRESS_SIZE_L0 + 3]
    assert log[1::2] == [0x8000_0000, 0x8000_1018, 0x8000_2000]
    assert shadow_vm.shadow.reflected == 3


# --- the widget ---------------------------------------------------------------------------------

def test_the_shadow_widget_prints_the_comparison_without_a_front_end():
    from vlab.viz.shadow_widget import ShadowWidget

    s = ShadowWidget("remaps", pages=8, rounds=2)
    text = s.text()
    assert text.splitlines()[0] == s.summary() and "8 pages x 2 rounds" in text
    assert f"takes {s.comparison.shadow.total_exits:,} exits to nested paging's 1" in text
    assert "the same result under both" in text and "table writes trapped" in text
    assert s.set_size(pages=12) is None and "power of two" in s.summary() and s.text() == s.summary()


def test_the_shadow_widgets_controls_run_the_guest_and_settings_chosen():
    from vlab.viz.shadow_widget import ShadowWidget

    s = ShadowWidget("remaps", pages=8, rounds=1)
    s.widget
    c = s.controls
    c.guest.value, c.pages.value, c.rounds.value, c.layout.value = "maps once", 16, 3, "demand"
    c.go.click()
    assert (s.guest, s.pages, s.rounds, s.layout) == ("maps once", 16, 3, "demand")
    assert s.comparison.guest == "maps once" and s.comparison.same_result
    assert "maps once, 16 pages x 3 rounds, demand RAM" in c.panes["summary"].value
    assert "descriptors read" in c.panes["bars"].value and "shadow/nested" in c.panes["table"].value
    assert [label for label, *_ in s.bars()] == ["exits", "TLB-fill walks", "descriptors read", "host time"]
    c.guest.value = "paging"  # a demo guest: pages and rounds do not apply
    c.go.click()
    assert "paging, demand RAM" in c.panes["summary"].value and s.comparison.nested.uart == GUESTS["paging"].expected_uart


# --- a bounded cache: address spaces and host frames ---------------------------------------------

def _switching_spaces(spaces: int, rounds: int) -> str:
    """A kernel with `spaces` level-1 tables, each mapping VA 0x8000_0000 onto another 2 MiB block,
    switching TTBR0_EL1 between them round after round, reading and writing through each."""
    build = "".join(f"""    ldr x1, ={0x4010_0000 + 0x1000 * k:#x}
    ldr x2, =0x40000701
    str x2, [x1, #8]
    ldr x3, ={0x4020_0000 + 0x1000 * k:#x}
    orr x2, x3, #3
    str x2, [x1, #16]
    ldr x2, ={0x4000_0000 + 0x20_0000 * (k % 4) | 0x701:#x}
    str x2, [x3]
""" for k in range(spaces))
    switch = "".join(f"""    ldr x1, ={0x4010_0000 + 0x1000 * k:#x}
    msr ttbr0_el1, x1
    isb
    tlbi vmalle1
    dsb ish
    isb
    ldr x3, ={0x8004_0000 + 8 * k:#x}
    ldr x5, [x3]
    add x6, x6, x5
    add x6, x6, #{k + 1}
    str x6, [x3]
""" for k in range(spaces))
    return build + "    ldr x1, =0x40100000\n" + MMU_ON + f"    mov x20, #{rounds}\nround:\n" + switch + \
        "    subs x20, x20, #1\n    b.ne round\n" + OFF


def test_more_address_spaces_than_shadows_kept_end_as_under_stage_2():
    nested_vm, nested, shadow_vm, shadow = both(image_from_program(assemble(_switching_spaces(10, 3))))
    assert differences(nested_vm.vcpus[0], shadow_vm.vcpus[0]) == []
    assert shadow_vm.shadow.drops > 0 and len(shadow_vm.shadow.spaces) <= 8
    assert shadow.exits["SYS64"] > nested.exits.get("SYS64", 0) + 30  # every TTBR0_EL1 write is an exit


def test_shadows_past_their_frame_budget_are_dropped_and_rebuilt_with_the_same_results(monkeypatch):
    from vlab.hyp import shadow as shadow_paging

    monkeypatch.setattr(shadow_paging, "SHADOW_FRAMES", 5)
    c = compare_paging("remaps", pages=1024, rounds=2, layout="contiguous")
    assert c.same_result, c.differences
    assert c.shadow.shadow["shadows dropped"] > 0


# --- the IPA -> PA map changing under the shadows ------------------------------------------------

def test_dirty_tracking_started_mid_run_finds_the_same_pages_and_results_under_shadows():
    from vlab.hyp.shadow_compare import ram_for

    image = image_from_program(assemble(remaps(pages=32, rounds=4)))
    vms = []
    for paging in ("nested", "shadow"):
        vm = VM.from_image(image, stage2="scattered", ram_size=ram_for(32), paging=paging)
        vm.run(max_insns=300)
        vm.memory.write_protect()  # a migration round starts: every shadow is dropped
        assert vm.run(max_insns=100_000).reason is StopReason.POWERED_OFF
        vms.append(vm)
    nested, shadowed = vms
    assert shadowed.memory.dirty == nested.memory.dirty and len(nested.memory.dirty) > 32
    assert differences(nested.vcpus[0], shadowed.vcpus[0]) == []
    assert shadowed.shadow.drops > 0


def test_copy_on_write_between_shadow_paged_vms_keeps_each_ones_writes():
    from vlab.hyp.memory import HostMemory
    from vlab.hyp.shadow_compare import ram_for
    from vlab.hyp.vm import share_identical_pages

    image = image_from_program(assemble(remaps(pages=32, rounds=4)))
    host = HostMemory(0x200_0000)
    a, b = (VM.from_image(image, stage2="contiguous", ram_size=ram_for(32), host=host, paging="shadow", vmid=n)
            for n in (1, 2))
    a.run(max_insns=700)
    b.run(max_insns=900)  # at another point of its loop: their tables and pages differ
    assert share_identical_pages(a, b) > 0
    alone = VM.from_image(image, stage2="contiguous", ram_size=ram_for(32), paging="shadow")
    alone.run(max_insns=100_000)
    for vm in (a, b):
        assert vm.run(max_insns=100_000).reason is StopReason.POWERED_OFF
        assert differences(alone.vcpus[0], vm.vcpus[0]) == []


def test_vlab_run_takes_paging_shadow_and_reports_its_exits():
    import json
    import subprocess
    import sys

    def vlab(*args):
        return subprocess.run([sys.executable, "-m", "vlab", "run", str(GUESTS["paging"].path), *args],
                              capture_output=True, text=True, timeout=120)

    done = vlab("--virt", "--paging", "shadow", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["uart"] == GUESTS["paging"].expected_uart and result["exits"]["SYS64"] >= 3  # TVM, TRVM
    refused = vlab("--paging", "shadow")
    assert refused.returncode == 2 and "--paging applies inside VMs under the hypervisor: add --virt" in refused.stderr


def test_every_store_form_to_a_guest_table_completes_and_is_one_exit():
    """An exclusive pair, STP and a plain STR to the guest's live level-3 table, under shadows."""
    source = f"""{TABLES}    ldr x2, ={DATA | 0x703:#x}
    str x2, [x4]
{MMU_ON}    ldr x9, =0x80000000
    ldr x5, [x9]
    ldr x2, ={DATA + 0x1000 | 0x703:#x}
retry:
    ldxr x7, [x4]
    stxr w8, x2, [x4]
    cbnz w8, retry
    stp x2, x2, [x4, #16]
    str x2, [x4, #32]
    dsb ish
    tlbi vmalle1
    dsb ish
    isb
    ldr x6, =0x77
    str x6, [x9]
    ldr x6, [x9, #0x3000]
{OFF}"""
    nested_vm, nested, shadow_vm, shadow = both(image_from_program(assemble(source)))
    assert differences(nested_vm.vcpus[0], shadow_vm.vcpus[0]) == []
    assert shadow_vm.read_memory(DATA + 0x1000, 8) == (0x77).to_bytes(8, "little")  # through the new mapping
    stores = [r.exit.instruction.split()[0] for r in shadow_vm.trap_log if "table write" in r.action]
    assert stores == ["stxr", "stp", "str"] and shadow_vm.shadow.table_writes == 3
