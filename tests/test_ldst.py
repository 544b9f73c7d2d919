"""Decoding loads and stores into the data-abort syndrome, as the hardware fills ISV/SAS/SSE/SRT/SF/WnR/AR.

Expectations are written from the Arm ARM's rules (size from the mnemonic, sign extension
from LDRS*, the register width from W/X), never read back from the decoder.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlab.arch import ldst
from vlab.asm import assemble

# mnemonic -> (bytes, is_write, sign_extend, register prefixes allowed)
SINGLE = {
    "strb": (1, True, False, "w"), "strh": (2, True, False, "w"), "str": (None, True, False, "wx"),
    "ldrb": (1, False, False, "w"), "ldrh": (2, False, False, "w"), "ldr": (None, False, False, "wx"),
    "ldrsb": (1, False, True, "wx"), "ldrsh": (2, False, True, "wx"), "ldrsw": (4, False, True, "x"),
}


def word_of(line: str) -> int:
    return int.from_bytes(assemble(line).code[:4], "little")


@st.composite
def single_register_access(draw):
    mnemonic = draw(st.sampled_from(sorted(SINGLE)))
    size, is_write, sign_extend, prefixes = SINGLE[mnemonic]
    prefix = draw(st.sampled_from(prefixes))
    size = size or (8 if prefix == "x" else 4)
    rt, rn = draw(st.integers(0, 30)), draw(st.integers(0, 30))
    form = draw(st.sampled_from(["imm", "unscaled", "register"]))
    if form == "imm":
        address = f"[x{rn}, #{draw(st.integers(0, 100)) * size:#x}]"
    elif form == "unscaled":
        mnemonic = mnemonic.replace("str", "stur").replace("ldr", "ldur")
        address = f"[x{rn}, #{draw(st.integers(-256, 255))}]"
    else:
        address = f"[x{rn}, x{draw(st.integers(0, 30))}]"
    expected = ldst.Access(size, rt, is_write, sign_extend, sixty_four=prefix == "x", acquire_release=False)
    return f"{mnemonic} {prefix}{rt}, {address}", expected


@settings(max_examples=300, deadline=None)
@given(single_register_access())
def test_a_single_register_load_or_store_without_writeback_has_a_valid_syndrome(case):
    line, expected = case
    assert ldst.decode(word_of(line)) == expected, line


@pytest.mark.parametrize("line", [
    "ldr x1, [x2], #8", "str w1, [x2, #4]!", "ldrb w3, [x4], #1",  # writeback
    "ldp x1, x2, [x3]", "stp w1, w2, [x3, #8]",  # pairs
    "ldr q0, [x1]", "str d1, [x2, #8]", "ldr s3, [x4]",  # SIMD&FP registers
    "prfm pldl1keep, [x1]",  # a hint, no access
    "ldxr x1, [x2]", "stxr w3, x1, [x2]",  # exclusives
    "add x1, x2, x3", "mrs x0, sctlr_el1", "b .",  # not memory accesses at all
])
def test_forms_without_an_instruction_syndrome_report_isv_0(line):
    assert ldst.decode(word_of(line)) is None


@pytest.mark.parametrize("line, expected", [
    ("ldar x5, [x6]", ldst.Access(8, 5, False, sixty_four=True, acquire_release=True)),
    ("ldarb w5, [x6]", ldst.Access(1, 5, False, acquire_release=True)),
    ("stlr w7, [x1]", ldst.Access(4, 7, True, acquire_release=True)),
    ("stlrh w2, [x3]", ldst.Access(2, 2, True, acquire_release=True)),
])
def test_acquire_release_accesses_report_ar(line, expected):
    assert ldst.decode(word_of(line)) == expected


def test_sas_is_log2_of_the_size():
    assert [ldst.Access(n, 0, False).sas for n in (1, 2, 4, 8)] == [0, 1, 2, 3]


@given(st.integers(0, 2**32 - 1))
def test_any_word_decodes_to_an_access_or_none_without_raising(word):
    access = ldst.decode(word)
    assert access is None or (access.size in (1, 2, 4, 8) and 0 <= access.rt <= 31)


@st.composite
def addressed_access(draw):
    """A load/store with a random base, and the address it touches computed from the manual's rules."""
    base_value, rn = draw(st.integers(0x4000_0000, 0x4fff_ffff)), draw(st.integers(0, 31))
    form = draw(st.sampled_from(["imm", "unscaled", "register", "sxtw", "ldar"]))
    base_name = "sp" if rn == 31 else f"x{rn}"
    regs = {rn: base_value}
    if form == "imm":
        offset = 8 * draw(st.integers(0, 4095))
        return f"ldr x1, [{base_name}, #{offset}]", regs, base_value + offset
    if form == "unscaled":
        offset = draw(st.integers(-256, 255))
        return f"ldur w1, [{base_name}, #{offset}]", regs, base_value + offset
    rm = draw(st.integers(0, 30).filter(lambda m: m != rn))
    if form == "register":
        index = draw(st.integers(0, 1000))
        regs[rm] = index
        return f"ldrh w1, [{base_name}, x{rm}, lsl #1]", regs, base_value + 2 * index
    if form == "sxtw":
        index = draw(st.integers(-1000, 1000))
        regs[rm] = index & 0xFFFF_FFFF | 0xDEAD_0000_0000_0000  # the upper half must be ignored
        return f"strb w2, [{base_name}, w{rm}, sxtw]", regs, base_value + index
    return f"ldar x3, [{base_name}]", regs, base_value


@given(addressed_access())
def test_the_effective_address_is_what_the_instruction_accesses(case):
    line, regs, expected = case
    assert ldst.effective_address(word_of(line), lambda n: regs.get(n, 0)) == expected, line


@st.composite
def any_addressed_access(draw):
    """Forms without an instruction syndrome (pairs, writeback, SIMD&FP, structures, exclusives,
    literals): the instruction, the registers, and the lowest address it touches, from
    the manual's addressing rules (the address before any writeback)."""
    # the base is never a transfer register (x1..x4): with writeback that is UNPREDICTABLE
    base_value, rn = draw(st.integers(0x4000_0000, 0x4fff_ffff)), draw(st.sampled_from([0, *range(5, 32)]))
    base = "sp" if rn == 31 else f"x{rn}"
    regs = {rn: base_value}
    form = draw(st.sampled_from(["pair", "pair_pre", "pair_post", "pre", "post", "simd", "simd_pair",
                                 "structure", "exclusive", "literal"]))
    if form.startswith("pair"):
        size = draw(st.sampled_from([4, 8]))
        offset = size * draw(st.integers(-64, 63))
        r = "w" if size == 4 else "x"
        operand = {"pair": f"[{base}, #{offset}]", "pair_pre": f"[{base}, #{offset}]!",
                   "pair_post": f"[{base}], #{offset}"}[form]
        mnemonic = draw(st.sampled_from(["ldp", "stp"]))
        return f"{mnemonic} {r}1, {r}2, {operand}", regs, base_value + (0 if form == "pair_post" else offset)
    if form in ("pre", "post"):
        offset = draw(st.integers(-256, 255))
        operand = f"[{base}, #{offset}]!" if form == "pre" else f"[{base}], #{offset}"
        return f"ldr x1, {operand}", regs, base_value + (offset if form == "pre" else 0)
    if form == "simd":
        register, size = draw(st.sampled_from([("b", 1), ("h", 2), ("s", 4), ("d", 8), ("q", 16)]))
        offset = size * draw(st.integers(0, 4095))
        return f"str {register}3, [{base}, #{offset}]", regs, base_value + offset
    if form == "simd_pair":
        offset = 16 * draw(st.integers(-64, 63))
        return f"ldp q1, q2, [{base}, #{offset}]", regs, base_value + offset
    if form == "structure":
        post = ", #32" if draw(st.booleans()) else ""
        return f"ld1 {{v1.16b, v2.16b}}, [{base}]{post}", regs, base_value
    if form == "exclusive":
        return draw(st.sampled_from([f"ldxr x1, [{base}]", f"stxr w3, x1, [{base}]", f"ldaxp x1, x2, [{base}]",
                                     f"stlxr w4, w1, [{base}]"])), regs, base_value
    offset = 4 * draw(st.integers(-1000, 1000))
    regs["pc"] = 0x4000_8000
    return f"ldr x1, . + {offset}" if offset >= 0 else f"ldr x1, . - {-offset}", regs, regs["pc"] + offset


@settings(max_examples=300, deadline=None)
@given(any_addressed_access())
def test_every_load_and_store_form_has_an_effective_address(case):
    line, regs, expected = case
    pc = regs.get("pc", 0)
    word = int.from_bytes(assemble(line, pc).code[:4], "little") if pc else word_of(line)
    assert ldst.effective_address(word, lambda n: regs.get(n, 0), pc) == expected, line


@pytest.mark.parametrize("line", ["add x1, x2, x3", "mrs x0, sctlr_el1", "b .", "svc #0", "dc zva, x1"])
def test_instructions_that_access_no_data_have_no_effective_address(line):
    assert ldst.effective_address(word_of(line), lambda n: 0x4000_0000) is None
