"""Equivalence (Popek and Goldberg): a guest ends the same on the bare board and in a VM, whatever traps.

Each program runs twice -- on vlab's bare board and inside a VM -- and everything the guest
can observe must match: UART output, registers, its EL1 system registers, its RAM, and
even its instruction count (vlab keeps guest time exact across exits).
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlab.asm import assemble
from vlab.guests import GUESTS, build
from vlab.hyp import SUPPORTED_TRAPS, VM
from vlab.hyp.equivalence import differences
from vlab.machine.board import RAM_BASE, Board, StopReason
from vlab.machine.loader import Image, image_from_file, image_from_program, load
from vlab.machine.uart import UART_BASE

TRAP_BITS = [bit for bit in type(SUPPORTED_TRAPS) if bit & SUPPORTED_TRAPS]
EVERY_COMBINATION = [type(SUPPORTED_TRAPS)(sum(c)) for n in range(len(TRAP_BITS) + 1)
                     for c in itertools.combinations(TRAP_BITS, n)]
SMALL_RAM = 0x40_0000


def run_both(image: Image, traps, ram_size: int, max_insns: int = 2_000_000):
    bare = Board(ram_size=ram_size)
    load(bare, image)
    bare_result = bare.run(max_insns=max_insns)
    vm = VM.from_image(image, traps=traps, ram_size=ram_size)
    vm_result = vm.run(max_insns=max_insns)
    return bare, bare_result, vm, vm_result


def assert_equivalent(image: Image, traps, ram_size: int) -> None:
    bare, bare_result, vm, vm_result = run_both(image, traps, ram_size)
    assert vm_result.reason is bare_result.reason, (vm_result.message, bare_result.message)
    assert vm_result.uart == bare_result.uart
    assert vm_result.instructions == bare_result.instructions
    assert differences(bare, vm.vcpus[0]) == []


def test_every_combination_of_trap_controls_is_tested():
    assert len(EVERY_COMBINATION) == 2 ** len(TRAP_BITS) and len(TRAP_BITS) == 6


@pytest.mark.parametrize("offset", [0, 0x1234, SMALL_RAM - 1])
def test_differences_name_a_changed_register_and_the_first_changed_byte_of_ram(offset):
    image = GUESTS["hello"].image()
    bare, _, vm, _ = run_both(image, SUPPORTED_TRAPS, SMALL_RAM)
    vcpu = vm.vcpus[0]
    byte = vcpu.read_memory(RAM_BASE + offset, 1)[0]
    vcpu.write_memory(RAM_BASE + offset, bytes([byte ^ 0x5A]))
    vcpu.set_x(7, vcpu.x(7) + 1)
    found = differences(bare, vcpu)
    assert found == [f"x7: {bare.cpu.x(7):#x} != {bare.cpu.x(7) + 1:#x}",
                     f"RAM: 1 differing byte, the first at {RAM_BASE + offset:#x}"]


@pytest.mark.parametrize("traps", EVERY_COMBINATION, ids=lambda t: t.name or "none")
@pytest.mark.parametrize("name", sorted(GUESTS))
def test_demo_guests_are_equivalent_under_every_combination_of_traps(name, traps):
    assert_equivalent(GUESTS[name].image(), traps, SMALL_RAM)


@pytest.fixture(scope="module")
def c_guests():
    try:
        return {name: build.build(name) for name in build.programs()}
    except Exception as e:  # noqa: BLE001 - the compiler is missing: say so loudly
        pytest.skip(f"SKIPPED: cannot build the C guests ({e})")


@pytest.mark.parametrize("traps", [SUPPORTED_TRAPS & 0] + TRAP_BITS + [SUPPORTED_TRAPS], ids=lambda t: t.name or "none")
def test_c_guests_built_for_qemu_virt_are_equivalent(c_guests, traps):
    for name, elf in c_guests.items():
        _, bare_result, vm, vm_result = run_both(image_from_file(elf), traps, 0x800_0000)
        assert bare_result.reason is StopReason.POWERED_OFF, name
        assert vm_result.uart == bare_result.uart, name
        assert vm_result.registers == bare_result.registers, name
        assert vm_result.exits.get("DABT_LOWER", 0) > 0  # the UART was reached only through exits


# --- generated programs: innocuous and sensitive instructions, mixed ---------------------------------

DATA = RAM_BASE + 0x20_0000
READABLE = ["sctlr_el1", "ttbr0_el1", "ttbr1_el1", "tcr_el1", "mair_el1", "vbar_el1", "contextidr_el1",
            "tpidr_el1", "midr_el1", "mpidr_el1", "id_aa64mmfr0_el1", "id_aa64pfr0_el1", "id_aa64isar0_el1",
            "actlr_el1", "cntfrq_el0", "cntvct_el0", "currentel", "esr_el1", "far_el1", "amair_el1"]
WRITABLE = ["ttbr0_el1", "ttbr1_el1", "mair_el1", "amair_el1", "contextidr_el1", "tpidr_el1", "vbar_el1",
            "far_el1", "esr_el1", "actlr_el1"]
reg = st.integers(1, 9)


@st.composite
def snippet(draw) -> str:
    a, b, c = draw(reg), draw(reg), draw(reg)
    kind = draw(st.sampled_from(["alu", "alu", "mem", "mem", "mrs", "msr", "sctlr", "uart", "call", "wfi"]))
    if kind == "alu":
        op = draw(st.sampled_from(["add", "sub", "eor", "orr", "mul"]))
        return f"{op} x{a}, x{b}, x{c}" if op in ("eor", "orr", "mul") or draw(st.booleans()) else \
            f"{op} x{a}, x{b}, #{draw(st.integers(0, 4095))}"
    if kind == "mem":
        op, offset = draw(st.sampled_from(["str", "ldr", "strb", "ldrb"])), 8 * draw(st.integers(0, 63))
        width = "w" if op.endswith("b") else "x"
        return f"{op} {width}{a}, [x20, #{offset}]"
    if kind == "mrs":
        return f"mrs x{a}, {draw(st.sampled_from(READABLE))}"
    if kind == "msr":
        return f"msr {draw(st.sampled_from(WRITABLE))}, x{a}"
    if kind == "sctlr":  # write back what was read: changing SCTLR would turn the MMU on
        return f"mrs x{a}, sctlr_el1\n    msr sctlr_el1, x{a}"
    if kind == "uart":
        return (f"mov w{a}, #{draw(st.integers(0x20, 0x7e))}\n    strb w{a}, [x21]" if draw(st.booleans())
                else f"ldr w{a}, [x21, #0x18]")
    if kind == "call":
        conduit = draw(st.sampled_from(["hvc", "smc"]))
        return f"ldr x0, =0x84000000\n    {conduit} #0\n    mov x{a}, x0"
    return (f"msr daifset, #2\n    mov x{a}, #{draw(st.integers(1, 300))}\n    msr cntv_tval_el0, x{a}\n"
            f"    mov x{a}, #1\n    msr cntv_ctl_el0, x{a}\n    wfi\n    msr cntv_ctl_el0, xzr")


@st.composite
def program(draw) -> str:
    body = "\n    ".join(draw(st.lists(snippet(), min_size=1, max_size=25)))
    return f"""    ldr x20, ={DATA:#x}
    ldr x21, ={UART_BASE:#x}
    {body}
    ldr x0, =0x84000008
    hvc #0
"""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program(), st.sampled_from(EVERY_COMBINATION))
def test_generated_programs_are_equivalent_under_any_traps(source, traps):
    assert_equivalent(image_from_program(assemble(source)), traps, SMALL_RAM)
