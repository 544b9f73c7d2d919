"""Chapter 3 exercises: stage 2. Expectations come from vlab's own VMs, its decoder and its walker.

A student's walk is given the VM's stage-2 tables as plain data (the pages that hold them,
`plain.Memory`), read through `read64(address)`; some tests edit them first (an access flag
cleared, a reserved entry) or build tables with blocks, as a hypervisor may.
"""

from __future__ import annotations

from vlab.grading.exercise import Case, Exercise, Test
from vlab.grading.kinds import FunctionAnswer
from vlab.grading.plain import Memory, read64_of
from vlab.hyp.memory import VTCR_SL0, VTCR_T0SZ, HostMemory, VmMemory
from vlab.mmu.descriptors import OA_MASK, Invalid, Leaf, Reserved, Table, decode
from vlab.mmu.walk import Regime, walk

MODULE = "ch03_stage2"
RAM_BASE, RAM = 0x4000_0000, 0x20_0000
PAGE = 0x1000
REGIME = Regime.stage2(VTCR_T0SZ, VTCR_SL0)  # 40-bit IPAs, from level 1 with two concatenated tables


# --- ch03.decode_stage2_descriptor -----------------------------------------------------------

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


def vm_memory(layout: str, seed: int = 4) -> VmMemory:
    """The stage 2 of a VM of RAM bytes ("contiguous", "scattered" or "demand"), as vlab builds it."""
    return VmMemory(HostMemory(2 * RAM + 0x10_0000), RAM_BASE, RAM, layout, seed)


def descriptors_of_a_vm(write_protect: bool = False) -> list[tuple[int, int]]:
    """(value, level) of every descriptor a scattered VM's stage-2 walks read."""
    memory = vm_memory("scattered", 3)
    if write_protect:
        memory.write_protect()
    out = [(memory.host.memory.read64(memory.tables.root + 8 * (RAM_BASE >> 30)), 1)]
    for ipa in (RAM_BASE, RAM_BASE + 0x5000, 0x0900_0000):
        out += [(r.value, r.level) for r in memory.translate(ipa).references]
    return out


def _decode_cases(pairs) -> list[Case]:
    return [Case(f"descriptor {v:#018x} at level {lv}", (v, lv), reference_decode(v, lv)) for v, lv in pairs]


EVERY_KIND = [(0, level) for level in range(4)] + [(0x4000_3002, 1)] + [
    (0x0000_0000_4000_3003, level) for level in (0, 1, 2, 3)] + [
    (0x0000_0080_4000_07FD, 1), (0x0000_0000_4020_07FD, 2), (0x0000_0000_4000_07FD, 0),
    (0x0040_0000_4000_17FF, 3), (0x0000_0000_4000_17FD, 3), (0x0000_0000_4000_17BF, 3),
    (0x0000_0000_4123_47FD, 1), (0x0000_0000_4023_47FD, 2), (0xFFF0_FFFF_FFFF_F7FF, 3)]  # bits below a block's size


def _attribute_cases(rng) -> list[Case]:
    pairs = []
    for _ in range(60):
        level = rng.randrange(1, 4)
        address = rng.getrandbits(36) << 12
        bits = rng.getrandbits(4) << 2 | rng.getrandbits(2) << 6 | rng.getrandbits(2) << 8 | rng.getrandbits(1) << 10
        pairs.append((address | bits | rng.getrandbits(1) << 54 | (0b11 if level == 3 else 0b01), level))
    return _decode_cases(pairs)


def _random_descriptors(rng) -> list[Case]:
    pairs = []
    for _ in range(300):
        value = rng.getrandbits(64) & ~(rng.getrandbits(1) * 0x7FF0_0000_0000_0000)
        pairs.append((value | rng.choice([0, 1, 3]), rng.randrange(4)))
    return _decode_cases(pairs)


def _not_a_dict(case: Case, got) -> str | None:
    if not isinstance(got, dict):
        return 'return a dict, e.g. {"kind": "table", "address": 0x40003000}'


def _kind_wrong(case: Case, got) -> str | None:
    kind = case.expected["kind"]
    if got.get("kind") == kind:
        return None
    if kind == "reserved":
        return "bits[1:0] = 0b01 is reserved at level 3, and a level-0 block does not exist with 4 KB granules"
    if kind == "page":
        return "at level 3, bits[1:0] = 0b11 is a page, not a table"
    if kind == "invalid":
        return "bit 0 clear is an invalid descriptor, whatever the other bits say"
    return "bits[1:0]: 0b11 is a table at levels 0-2 (a page at level 3); 0b01 is a block at levels 1 and 2"


def _field_wrong(case: Case, got) -> str | None:
    expected, value = case.expected, case.args[0]
    for key, want in expected.items():
        have = got.get(key)
        if key in ("readable", "writable", "af", "xn") and type(have) is not bool and have == want:
            return f"{key} is a boolean (True or False), not a number: bool(value >> bit & 1)"
        if have == want:
            continue
        if key == "address" and have == value & OA_MASK:
            return "a block's output address keeps only the bits above the region it maps: [47:30] at level 1, [47:21] at level 2"
        if key == "address":
            return "the address is bits [47:12] of the descriptor (mask 0x0000_ffff_ffff_f000): nothing above 47"
        return {"readable": "S2AP is bits [7:6]: bit 6 allows reads, bit 7 writes",
                "writable": "S2AP is bits [7:6]: bit 6 allows reads, bit 7 writes",
                "memattr": "MemAttr is bits [5:2]", "af": "AF is bit 10", "xn": "XN is bit 54"}.get(key)


DECODE = Exercise(
    id="ch03.decode_stage2_descriptor",
    title="Decode a stage-2 descriptor",
    statement="Decode a 64-bit stage-2 descriptor at a given level into its kind, address and permissions.",
    points=3,
    module=MODULE,
    kind=FunctionAnswer((_not_a_dict, _kind_wrong, _field_wrong)),
    tests=(
        Test("the descriptors of a real VM's stage 2", lambda rng: _decode_cases(descriptors_of_a_vm()),
             hint="bits[1:0]: 0b11 is a table at levels 0-2 but a page at level 3"),
        Test("write-protected pages (dirty tracking)", lambda rng: _decode_cases(descriptors_of_a_vm(True)),
             hint="S2AP is bits [7:6]: bit 6 read, bit 7 write"),
        Test("every kind at every level", lambda rng: _decode_cases(EVERY_KIND),
             hint="0b01 is reserved at level 3 and at level 0; bit 0 clear is invalid at every level"),
        Test("attributes: MemAttr, S2AP, AF and XN", _attribute_cases, hidden=True),
        Test("random descriptors at every level", _random_descriptors, hidden=True,
             hint="a block's output address keeps only the bits above the region it maps"),
    ),
)


# --- ch03.stage2_translate ----------------------------------------------------------------------

class PagesMemory:
    """Pages of memory as vlab's walker reads physical memory (vlab.mmu.memory.PhysicalMemory)."""

    def __init__(self, pages: dict[int, bytes]):
        self._read64 = read64_of(pages)
        self.pages = pages

    def contains(self, address: int, length: int = 8) -> bool:
        return address & ~(PAGE - 1) in self.pages

    def read64(self, address: int) -> int:
        return self._read64(address)


def reference_translate(pages: dict[int, bytes], root: int, ipa: int) -> int | None:
    """The physical address vlab's own stage-2 walk gives, or None on a fault."""
    return walk(PagesMemory(pages), REGIME, root, ipa).output


def tables_of(memory: VmMemory) -> dict[int, bytes]:
    return {table: memory.host.memory.read(table, PAGE) for table in memory.tables.tables}


def set_descriptor(pages: dict[int, bytes], address: int, value: int) -> None:
    page = bytearray(pages[address & ~(PAGE - 1)])
    page[address % PAGE:address % PAGE + 8] = value.to_bytes(8, "little")
    pages[address & ~(PAGE - 1)] = bytes(page)


def _walk_cases(pages: dict[int, bytes], root: int, ipas) -> list[Case]:
    memory = Memory(dict(pages))
    return [Case(f"IPA {ipa:#x}", (memory, root, ipa), reference_translate(pages, root, ipa)) for ipa in ipas]


def _vm_cases(layout: str, ipas_of):
    def cases(rng):
        memory = vm_memory(layout)
        return _walk_cases(tables_of(memory), memory.tables.root, ipas_of(rng))
    return cases


def _leaf_slot(memory: VmMemory, ipa: int) -> int:
    return memory.translate(ipa).references[-1].address


def _access_flag_cases(rng) -> list[Case]:
    """A scattered VM with the access flag cleared on a few of its pages."""
    memory = vm_memory("scattered")
    pages, cleared = tables_of(memory), [RAM_BASE + 0x3000, RAM_BASE + 0x7_7000, RAM_BASE + RAM - PAGE]
    for ipa in cleared:
        slot = _leaf_slot(memory, ipa)
        set_descriptor(pages, slot, memory.host.memory.read64(slot) & ~(1 << 10))
    ipas = [ipa + 0x123 for ipa in cleared] + [RAM_BASE + 0x2000, RAM_BASE + 0x4abc]
    return _walk_cases(pages, memory.tables.root, ipas)


def crafted_tables(rng, blocks: int = 12) -> tuple[dict[int, bytes], int, list[int]]:
    """Stage-2 tables as a hypervisor may build them: 1 GiB and 2 MiB blocks, pages, entries with
    the access flag clear, reserved level-3 entries; and IPAs that reach each of them."""
    pages: dict[int, bytes] = {a: bytes(PAGE) for a in (0x0, 0x1000)}  # the root: two concatenated tables
    ipas, next_table = [], 0x2000

    def leaf(output: int, level: int, af: bool) -> int:
        return Leaf(output, level, 2, attr=0b1111, ap=3, af=af).encode()

    def new_table(slot: int) -> int:
        nonlocal next_table
        table, next_table = next_table, next_table + PAGE
        pages[table] = bytes(PAGE)
        set_descriptor(pages, slot, Table(table).encode())
        return table

    for index in rng.sample(range(1, 1024), blocks):
        base, slot, choice = index << 30, 8 * index, rng.random()
        if choice < 0.3:  # a 1 GiB block, its access flag sometimes clear
            set_descriptor(pages, slot, leaf(rng.randrange(1, 1024) << 30, 1, rng.random() < 0.8))
            ipas += [base + rng.randrange(1 << 30) for _ in range(2)]
            continue
        level2 = new_table(slot)
        for entry in rng.sample(range(512), 3):
            ipa2, slot2 = base + (entry << 21), level2 + 8 * entry
            if rng.random() < 0.5:  # a 2 MiB block
                set_descriptor(pages, slot2, leaf(rng.randrange(1, 1 << 19) << 21, 2, rng.random() < 0.8))
                ipas.append(ipa2 + rng.randrange(1 << 21))
                continue
            level3 = new_table(slot2)
            for page in rng.sample(range(512), 4):
                odd = rng.random()
                value = leaf(rng.randrange(1, 1 << 28) << 12, 3, odd > 0.15)
                set_descriptor(pages, level3 + 8 * page, value & ~0b10 if odd > 0.9 else value)  # 0b01: reserved
                ipas.append(ipa2 + (page << 12) + rng.randrange(PAGE))
            ipas.append(ipa2 + (rng.randrange(512) << 12))  # most entries stay invalid
    ipas += [ipa | rng.choice([1 << 40, 1 << 41, 1 << 47]) for ipa in rng.sample(ipas, 3)]
    return pages, 0x0, ipas


def _crafted_cases(rng) -> list[Case]:
    pages, root, ipas = crafted_tables(rng)
    return _walk_cases(pages, root, ipas)


def _walk_variant(read64, root: int, ipa: int, index_bits: int = 10, check_range: bool = True,
                  check_af: bool = True, check_reserved: bool = True, keep_offset: bool = True,
                  blocks: bool = True) -> int | None:
    """The walk with one mistake (for hints only, never as the expected answer), from the architecture."""
    if check_range and ipa >> 40:
        return None
    table = root
    for level, shift, bits in ((1, 30, index_bits), (2, 21, 9), (3, 12, 9)):
        value = read64(table + 8 * (ipa >> shift & ((1 << bits) - 1)))
        if not value & 1:
            return None
        if level < 3 and value & 2:
            table = value & OA_MASK
            continue
        if level < 3 and not blocks or level == 3 and not value & 2 and check_reserved or check_af and not value >> 10 & 1:
            return None
        mask = (1 << shift) - 1
        return value & OA_MASK & ~mask | (ipa & mask if keep_offset else 0)
    return None


VARIANTS = (
    ({"index_bits": 9}, "level 1 is indexed by IPA bits [39:30]: ten bits, because two tables are concatenated"),
    ({"check_range": False}, "an IPA of 40 bits or more is a fault: T0SZ = 24 leaves 40 bits of IPA"),
    ({"check_af": False}, "a leaf whose access flag (bit 10) is clear is a fault (an access-flag fault): return None"),
    ({"check_reserved": False}, "bits[1:0] = 0b01 at level 3 is reserved: a fault, not a page"),
    ({"keep_offset": False}, "keep the offset: the output is the page's (or block's) address plus the IPA's low bits"),
    ({"blocks": False}, "at levels 1 and 2, bits[1:0] = 0b01 is a block: the walk ends there, with a bigger offset"),
)


def _variant_matches(case: Case, got) -> str | None:
    memory, root, ipa = case.args
    for mistake, hint in VARIANTS:
        try:
            if got == _walk_variant(read64_of(memory.pages), root, ipa, **mistake) != case.expected:
                return hint
        except ValueError:
            continue  # this mistake would have read outside the tables
    return None


def _ram_ipas(rng):
    return [RAM_BASE, RAM_BASE + 0x1234, RAM_BASE + RAM - 8, RAM_BASE + 0x7_7777]


def _holes(rng):
    return [0x0900_0000, 0x0, RAM_BASE + RAM, (1 << 40) - 8, 0x4000_0000 + (1 << 30)]


def _random_ipas(rng):
    return [RAM_BASE + rng.randrange(RAM) for _ in range(40)] + [rng.getrandbits(41) for _ in range(40)]


TRANSLATE = Exercise(
    id="ch03.stage2_translate",
    title="Walk the hypervisor's stage-2 tables",
    statement="Translate an IPA to a physical address through vlab's stage-2 tables (T0SZ 24, SL0 1), or None.",
    points=4,
    module=MODULE,
    kind=FunctionAnswer((_variant_matches,)),
    tests=(
        Test("RAM of a VM scattered over the host", _vm_cases("scattered", _ram_ipas),
             hint="level 1 is indexed by IPA bits [39:30]: ten bits, because two tables are concatenated"),
        Test("IPAs with nothing behind them", _vm_cases("scattered", _holes),
             hint="an invalid descriptor (bit 0 clear) at any level is a fault: return None"),
        Test("the level-1 index has ten bits", _vm_cases("scattered", lambda rng: [
            (1 << 39) | RAM_BASE, (1 << 39) | RAM_BASE + 0x1234]),
             hint="IPA bit 39 selects the second of the two concatenated level-1 tables"),
        Test("IPAs of 40 bits or more are faults", _vm_cases("scattered", lambda rng: [
            0x100_4000_0000, 0x100_4000_1234, 1 << 40, (1 << 47) | RAM_BASE]),
             hint="an IPA of 40 bits or more is a fault: check ipa >> 40 before walking"),
        Test("the access flag", _access_flag_cases,
             hint="a leaf whose access flag (bit 10) is clear is a fault: return None"),
        Test("blocks, pages and reserved entries", _crafted_cases,
             hint="a block at level 1 maps 1 GiB, at level 2 2 MiB: the offset is the IPA's low 30 or 21 bits"),
        Test("random IPAs, and a VM whose pages come on demand", _vm_cases("demand", _random_ipas), hidden=True),
        Test("random IPAs in a contiguous VM", _vm_cases("contiguous", _random_ipas), hidden=True),
        Test("random tables with blocks, cleared access flags and reserved entries", _crafted_cases, hidden=True),
    ),
)

EXERCISES = (DECODE, TRANSLATE)
