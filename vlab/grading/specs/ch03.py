"""Chapter 3 exercises: stage 2. Expectations come from vlab's own VMs and its walker."""

from __future__ import annotations

import random

from vlab.grading.exercise import Exercise, Test, expect
from vlab.hyp import VM
from vlab.mmu.descriptors import Invalid, Leaf, Reserved, Table, decode
from vlab.mmu.walk import walk

MODULE = "ch03_stage2"
RAM_BASE, RAM = 0x4000_0000, 0x20_0000


def reference_decode(value: int, level: int) -> dict:
    """What the descriptor means, by vlab's decoder (vlab.mmu.descriptors), in the exercise's terms."""
    d = decode(value, level, 2)
    if isinstance(d, Invalid):
        return {"kind": "invalid"}
    if isinstance(d, Reserved):
        return {"kind": "reserved"}
    if isinstance(d, Table):
        return {"kind": "table", "address": d.address}
    assert isinstance(d, Leaf)
    return {"kind": "page" if level == 3 else "block", "address": d.output, "memattr": d.attr,
            "readable": bool(d.ap & 1), "writable": bool(d.ap & 2), "af": d.af, "xn": d.xn}


def descriptors_of_a_vm(write_protect: bool = False) -> list[tuple[int, int]]:
    """(value, level) of real descriptors from a scattered VM's stage-2 tables."""
    vm = VM(stage2="scattered", ram_size=RAM, seed=3)
    if write_protect:
        vm.memory.write_protect()
    memory, out = vm.memory.host.memory, []
    root = vm.memory.tables.root
    out.append((memory.read64(root + 8 * (RAM_BASE >> 30)), 1))
    for ipa in (RAM_BASE, RAM_BASE + 0x5000, 0x0900_0000):
        t = walk(memory, vm.memory.regime, root, ipa)
        out += [(r.value, r.level) for r in t.references]
    return out


def _decode_test(cases):
    def test(decode_stage2_descriptor):
        for value, level in cases():
            expect(decode_stage2_descriptor(value, level), reference_decode(value, level),
                   f"descriptor {value:#018x} at level {level}")
    return test


def _random_descriptors():
    rng = random.Random(9)
    cases = []
    for _ in range(300):
        level = rng.randrange(4)
        value = rng.getrandbits(64) & ~(rng.getrandbits(1) * 0x7FF0_0000_0000_0000)
        cases.append((value | rng.choice([0, 1, 3]), level))
    return cases


DECODE = Exercise(
    id="ch03.decode_stage2_descriptor",
    title="Decode a stage-2 descriptor",
    statement="Decode a 64-bit stage-2 descriptor at a given level into its kind, address and permissions.",
    points=3,
    module=MODULE,
    tests=(
        Test("the descriptors of a real VM's stage 2", _decode_test(descriptors_of_a_vm),
             hint="bits[1:0]: 0b11 is a table at levels 0-2 but a page at level 3"),
        Test("write-protected pages (dirty tracking)", _decode_test(lambda: descriptors_of_a_vm(True)),
             hint="S2AP is bits [7:6]: bit 6 read, bit 7 write"),
        Test("random descriptors at every level", _decode_test(_random_descriptors), hidden=True,
             hint="a block's output address keeps only the bits above the region it maps"),
    ),
)


def _walk_test(layout: str, ipas_of):
    def test(stage2_translate):
        vm = VM(stage2=layout, ram_size=RAM, seed=4)
        memory = vm.memory
        for ipa in ipas_of(memory):
            reference = walk(memory.host.memory, memory.regime, memory.tables.root, ipa)
            expect(stage2_translate(memory.host.memory.read64, memory.tables.root, ipa), reference.output,
                   f"IPA {ipa:#x}")
    return test


def _ram_ipas(memory):
    return [RAM_BASE, RAM_BASE + 0x1234, RAM_BASE + RAM - 8, RAM_BASE + 0x7_7777]


def _holes(memory):
    return [0x0900_0000, 0x0, RAM_BASE + RAM, 1 << 40, (1 << 40) - 8, 0x80_4000_0000]


def _random_ipas(memory):
    rng = random.Random(5)
    return [RAM_BASE + rng.randrange(RAM) for _ in range(40)] + [rng.getrandbits(41) for _ in range(40)]


TRANSLATE = Exercise(
    id="ch03.stage2_translate",
    title="Walk the hypervisor's stage-2 tables",
    statement="Translate an IPA to a physical address through vlab's stage-2 tables (T0SZ 24, SL0 1), or None.",
    points=4,
    module=MODULE,
    tests=(
        Test("RAM of a VM scattered over the host", _walk_test("scattered", _ram_ipas),
             hint="level 1 is indexed by IPA bits [39:30]: ten bits, because two tables are concatenated"),
        Test("IPAs with nothing behind them", _walk_test("scattered", _holes),
             hint="an invalid descriptor (bit 0 clear) at any level is a fault: return None"),
        Test("random IPAs, and a VM whose pages come on demand", _walk_test("demand", _random_ipas), hidden=True),
        Test("random IPAs in a contiguous VM", _walk_test("contiguous", _random_ipas), hidden=True),
    ),
)

EXERCISES = (DECODE, TRANSLATE)
