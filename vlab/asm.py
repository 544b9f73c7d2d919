"""Keystone and Capstone behind one small interface: `assemble` and `disassemble`.

vlab assembles a guest one statement at a time, in two passes, instead of
handing the whole source to Keystone:

    pass 1  walk the source, give every label, instruction and directive its
            address (instructions are 4 bytes; directives are sized here)
    pass 2  assemble each statement alone at its address, with every label
            known, and check that it produced exactly the bytes pass 1 said

That buys three things Keystone alone does not give: a symbol table and a
line map (address -> source line) for the debugger and the trap log; errors
that name the source line; and protection from Keystone's silent failures (a
`//` comment holding a `:` drops its line, `.inst` emits nothing, numeric
labels misbehave, `.equ x, . - label` is rejected), which here are either
handled or refused with a message saying what to write instead.

`ldr Xt, =value` works as in GNU as: the value goes to a literal pool placed
after the code, and the instruction loads it PC-relative. Character literals
(`#'0'`) are read here, as GNU as reads them, before Keystone sees the line.

What the dialect accepts and refuses, for students: docs/assembly.md.
"""

from __future__ import annotations

import ast
import functools
import operator
import re
from dataclasses import dataclass

from vlab.errors import AssemblyError

RAM_BASE = 0x4000_0000
# The largest program vlab assembles: the board's RAM (as QEMU's `-m 128M`). A bigger image could
# not be loaded, and a `.space` asking for more would only make Python allocate it.
MAX_PROGRAM_SIZE = 0x0800_0000

_LABEL = re.compile(r"^\s*([A-Za-z_.$][\w.$]*)\s*:")
_NUMERIC_LABEL = re.compile(r"^\s*\d+\s*:")
_NUMERIC_REF = re.compile(r"(?<![\w#.])\d+[fb]\b")
_LITERAL_LOAD = re.compile(r"^ldr\s+([xw]\d+|[xw]zr)\s*,\s*=\s*(.+)$", re.IGNORECASE)
_IDENT = re.compile(r"[A-Za-z_.$][\w.$]*")
_MNEMONIC = re.compile(r"[A-Za-z][\w.]*(\s|$)")
_ASSIGNMENT = re.compile(r"[^\s=]*\s*=")
_NOP = (0xD503201F).to_bytes(4, "little")

_NO_PREPROCESSOR = ("the C preprocessor does not run on vlab's sources: write `.equ NAME, value` instead of "
                    "#define, and paste a file's lines instead of #include")
_DATA_SIZES = {".byte": 1, ".hword": 2, ".short": 2, ".2byte": 2, ".word": 4, ".long": 4, ".int": 4,
               ".4byte": 4, ".quad": 8, ".8byte": 8, ".dword": 8, ".xword": 8}
_IGNORED = {".global", ".globl", ".type", ".size", ".text", ".arch", ".cpu", ".local", ".weak", ".ltorg",
            ".file", ".ident"}
_REFUSED = {
    ".inst": "Keystone silently emits nothing for .inst: write the word with .long instead",
    ".data": "guests are flat images: put data in the same (text) section, after the code",
    ".bss": "guests are flat images: reserve zeroed space with .space N instead",
    ".section": "guests are flat images with one section: remove the .section directive",
    ".include": ".include is not supported: paste the file's contents instead",
    ".macro": "macros are not supported by vlab's assembler: write the instructions out",
    ".rept": ".rept is not supported by vlab's assembler: write the statements out",
    ".org": ".org is not supported: use .balign or .space to place code",
}


@dataclass(frozen=True)
class SourceLine:
    """One source line that emitted bytes: where, and how many."""

    number: int  # 1-based line number in the source
    text: str
    address: int
    size: int


@dataclass(frozen=True)
class DataSpan:
    """Bytes that hold data, not instructions: what a listing shows as `.quad`, `.word` or `.byte`."""

    address: int
    size: int
    unit: int  # bytes per value: 8 (.quad, 64-bit literals), 4 (.word, 32-bit literals), 2, or 1 (strings, padding)


@dataclass(frozen=True)
class Program:
    """Assembled guest code with its symbol table and line map."""

    code: bytes
    base: int
    symbols: dict[str, int]
    lines: tuple[SourceLine, ...]
    data: tuple[DataSpan, ...] = ()  # data directives, .space, alignment zeros, the literal pool, in address order

    def address_of(self, label: str) -> int:
        """The address of a label; AssemblyError naming the known labels if there is none."""
        if label not in self.symbols:
            raise AssemblyError(f"no label {label!r} in the program; labels: {', '.join(sorted(self.symbols))}")
        return self.symbols[label]

    def line_at(self, address: int) -> SourceLine | None:
        """The source line whose bytes include `address`, if any."""
        return next((ln for ln in self.lines if ln.address <= address < ln.address + ln.size), None)

    @property
    def end(self) -> int:
        return self.base + len(self.code)


@dataclass(frozen=True)
class _Statement:
    number: int
    text: str  # the statement without labels and comments
    kind: str  # "insn", "data", "align", "space", "literal"
    address: int
    size: int


@dataclass(frozen=True)
class Instruction:
    """One disassembled 32-bit word. Words Capstone cannot decode show as `.long 0x...`."""

    address: int
    bytes: bytes
    mnemonic: str
    op_str: str

    @property
    def text(self) -> str:
        return f"{self.mnemonic} {self.op_str}".strip()

    def __str__(self) -> str:
        return f"{self.address:#x}: {self.text}"


# --- engines: one of each per process, created on first use ----------------------

@functools.cache
def _capstone():
    from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs

    return Cs(CS_ARCH_ARM64, CS_MODE_ARM)


# --- assembling ---------------------------------------------------------------------

def assemble(source: str, base: int = RAM_BASE) -> Program:
    """Assemble AArch64 source placed at `base`; AssemblyError names the offending line."""
    symbols: dict[str, int] = {}
    constants: dict[str, int] = {}
    statements: list[_Statement] = []
    literals: list[tuple[int, str, int]] = []  # (statement index, value expression, size)
    address = base
    for number, raw in enumerate(source.splitlines(), start=1):
        text = _clean(raw, number)
        text = _take_labels(text, number, raw, address, symbols)
        if not text:
            continue
        directive = text.split(None, 1)[0].lower()
        if directive.startswith("."):
            size, kind = _directive_size(directive, text, number, raw, address, symbols, constants)
            if kind:
                statements.append(_Statement(number, text, kind, address, size))
            address += size
            if address - base > MAX_PROGRAM_SIZE:
                raise AssemblyError(f"this would make the program {address - base:#x} bytes long; vlab assembles "
                                    f"at most {MAX_PROGRAM_SIZE:#x} (128 MiB, the board's RAM)", number, raw)
            continue
        # Keystone 0.9.2 loops forever on lines such as `= 1` or `mov = .equ =` (it reads `NAME =`
        # as a symbol assignment), so those never reach it.
        if _ASSIGNMENT.match(text):
            raise AssemblyError("symbol assignment (NAME = value) is not supported: write .equ NAME, value",
                                number, raw)
        if not _MNEMONIC.match(text):
            raise AssemblyError(_NO_PREPROCESSOR if text.startswith("#") else "expected an instruction, a directive "
                                "or a label at the start of the line", number, raw)
        if address % 4:
            raise AssemblyError(f"this instruction would sit at {address:#x}, which is not 4-byte aligned "
                                "(data before it has an odd size): put `.balign 4` before it", number, raw)
        if (m := _LITERAL_LOAD.match(text)) is not None and (mov := _as_mov(m, {**symbols, **constants}, address,
                                                                             number, raw)):
            statements.append(_Statement(number, mov, "insn", address, 4))
        elif m is not None:
            literals.append((len(statements), m.group(2).strip(), 8 if m.group(1)[0] in "xX" else 4))
            statements.append(_Statement(number, text, "literal", address, 4))
        else:
            statements.append(_Statement(number, text, "insn", address, 4))
        address += 4
    if not statements:
        raise AssemblyError("there is nothing to assemble: the source has no instructions or data")
    code = bytearray()
    pool_at = _align(address, 8)
    pool: list[tuple[int, int]] = []  # (address, size) of each literal
    for _, _, size in literals:
        pool_at = _align(pool_at, size)
        pool.append((pool_at, size))
        pool_at += size
    symbols_and_constants = {**symbols, **constants}
    pool_of = {index: slot for (index, _, _), slot in zip(literals, pool)}
    for index, st in enumerate(statements):
        code += bytes(st.address - base - len(code))  # alignment padding and .space
        code += _encode(st, symbols_and_constants, constants, pool_of.get(index))
    code += bytes(address - base - len(code))
    for (index, expr, size), (slot, _) in zip(literals, pool):
        st = statements[index]
        value = _evaluate(expr, symbols_and_constants, st.address, st.number, st.text)
        code += bytes(slot - base - len(code)) + _value_bytes(value, size, st.number, _source_text(source, st.number))
    lines = tuple(SourceLine(st.number, _source_text(source, st.number), st.address, st.size)
                  for st in statements if st.size)
    return Program(bytes(code), base, dict(symbols), lines, _data_spans(statements, address, pool))


def _data_spans(statements: list[_Statement], code_end: int, pool: list[tuple[int, int]]) -> tuple[DataSpan, ...]:
    """Where the program holds data: what statements emitted as data, then the literal pool and its padding."""
    spans = []
    for st in statements:
        if st.kind == "data":
            spans.append(DataSpan(st.address, st.size, _DATA_SIZES.get(st.text.split(None, 1)[0].lower(), 1)))
        elif st.kind == "space":
            spans.append(DataSpan(st.address, st.size, 1))
        elif st.kind == "align" and st.address % 4:  # the zeros up to a word (the NOPs after them are code)
            spans.append(DataSpan(st.address, min(-st.address % 4, st.size), 1))
    at = code_end
    for slot, size in pool:
        if slot > at:
            spans.append(DataSpan(at, slot - at, 1))  # zeros aligning the slot
        spans.append(DataSpan(slot, size, size))
        at = slot + size
    return tuple(span for span in spans if span.size)


def _as_mov(m: re.Match, names: dict[str, int], address: int, number: int, raw: str) -> str | None:
    """`ldr Rt, =value` as one MOV when value is already known and fits.

    GNU as for AArch64 always uses the literal pool; vlab prefers the MOV so a
    constant known at that point costs no pool slot and no memory read. A value
    wider than the register is an error, here as in the pool.
    """
    try:
        value = _evaluate(m.group(2), names, address, 0, "")
    except AssemblyError:
        return None  # a label defined later: it goes to the literal pool
    _value_bytes(value, 8 if m.group(1)[0] in "xX" else 4, number, raw)
    mov = f"mov {m.group(1)}, #{value:#x}"
    try:
        return mov if len(_keystone_bytes(mov, address, {}, 0, "")) == 4 else None
    except AssemblyError:
        return None


def _clean(raw: str, number: int) -> str:
    """The line without its `//` comment, each character literal (`'0'`) replaced by its value.

    Character literals are read here, as GNU as reads them, because Keystone
    cannot be trusted with them: the decimal-to-hex rewrite below would turn
    `#'0'` into `#'0x0'`, and a `'"'` or `','` would confuse the comment and
    operand splitting.
    """
    out, in_string, escaped, i = [], False, False, 0
    while i < len(raw):
        ch = raw[i]
        if in_string:
            escaped = ch == "\\" and not escaped
            if ch == '"' and not escaped:
                in_string = False
        elif ch == '"':
            in_string = True
        elif raw.startswith("//", i):
            break
        elif raw.startswith("/*", i):  # Keystone takes one at the end of a line, GNU as anywhere: neither here
            raise AssemblyError("comments start with // (block comments /* ... */ are not supported)", number, raw)
        elif ch == ";":  # GNU as's statement separator: Keystone splits there too, behind pass 1's back
            raise AssemblyError("vlab takes one statement per line: put what follows the `;` on a line of its own",
                                number, raw)
        elif (octal := _OCTAL.match(raw, i)) and not (i and (raw[i - 1].isalnum() or raw[i - 1] in "_.$")):
            raise AssemblyError(f"GNU as, like C, reads {octal.group(0)} as octal ({int(octal.group(0), 8)}): "
                                "write the number without its leading zero, or in hex", number, raw)
        elif ch == "'":
            value, length = _character(raw, i, number)
            out.append(str(value))
            i += length
            continue
        out.append(ch)
        i += 1
    if in_string:
        raise AssemblyError("unterminated string literal: close it with a double quote", number, raw)
    return "".join(out).strip()


_OCTAL = re.compile(r"0[0-9]+(?![\w.])")
# The escapes GNU as and C agree on. GNU as reads any other `'\X'` as X itself (`'\0'` is 0x30).
_ESCAPES = {"b": 8, "t": 9, "n": 10, "f": 12, "r": 13, "\\": 92, "'": 39, '"': 34}


def _character(raw: str, at: int, number: int) -> tuple[int, int]:
    """(value, characters used) of the character literal starting with the quote at raw[at].

    As in GNU as: a quote, one character or escape, and an optional closing quote.
    """
    body = raw[at + 1:at + 3]
    if body[:1] == "\\" and body[1:]:
        if body[1:] not in _ESCAPES:
            raise AssemblyError(f"the character literal '{body}' means {body[1:]!r} to GNU as, not what it means in C:"
                                " write the number instead (for example #0)", number, raw)
        value, length = _ESCAPES[body[1:]], 3
    elif body[:1] and " " <= body[0] <= "~" and body[0] != "\\":
        value, length = ord(body[0]), 2
    else:
        raise AssemblyError("a character literal is a quote and one printable ASCII character, such as '0' "
                            "(for any other byte write its number)", number, raw)
    return value, length + (raw[at + length:at + length + 1] == "'")


def _take_labels(text: str, number: int, raw: str, address: int, symbols: dict[str, int]) -> str:
    """Record every `label:` at the start of the statement; return what follows them."""
    while True:
        if _NUMERIC_LABEL.match(text):
            raise AssemblyError("numeric local labels (1:, 1f, 1b) are not supported: use a named label", number, raw)
        m = _LABEL.match(text)
        if m is None or text.lstrip().startswith('"'):
            break
        name = m.group(1)
        if name in symbols:
            raise AssemblyError(f"label {name!r} is defined twice", number, raw)
        symbols[name] = address
        text = text[m.end():].strip()
    if _NUMERIC_REF.search(text.split('"', 1)[0]) and not text.startswith("."):
        raise AssemblyError("numeric local labels (1:, 1f, 1b) are not supported: use a named label", number, raw)
    return text


def _directive_size(directive: str, text: str, number: int, raw: str, address: int,
                    symbols: dict[str, int], constants: dict[str, int]) -> tuple[int, str]:
    """(bytes the directive emits at `address`, statement kind or '' for none)."""
    args = text[len(directive):].strip()
    if directive in _REFUSED:
        raise AssemblyError(_REFUSED[directive], number, raw)
    if directive in _IGNORED:
        return 0, ""
    if directive in (".equ", ".set"):
        name, _, expr = args.partition(",")
        if not _IDENT.fullmatch(name.strip()) or not expr.strip():
            raise AssemblyError(f"write {directive} NAME, VALUE", number, raw)
        constants[name.strip()] = _evaluate(expr, {**symbols, **constants}, address, number, raw)
        return 0, ""
    if directive in (".balign", ".align", ".p2align"):
        try:
            n = _evaluate(args.split(",")[0], constants, None, number, raw)
        except AssemblyError:
            raise AssemblyError(f"{directive} needs a number", number, raw) from None
        # GNU as on AArch64: .align and .p2align take a power of two, .balign a byte count
        boundary = n if directive == ".balign" else 1 << n
        if boundary <= 0 or boundary & (boundary - 1):
            raise AssemblyError(f"{directive} {args}: the boundary must be a power of two", number, raw)
        return _align(address, boundary) - address, "align"
    if directive in (".space", ".skip", ".zero"):
        n = _evaluate(args.split(",")[0], constants, None, number, raw)
        if n < 0:
            raise AssemblyError(f"{directive} needs a size of zero or more bytes", number, raw)
        return n, "space"
    if directive in _DATA_SIZES:
        count = len(_split_operands(args)) if args else 0
        if count == 0:
            raise AssemblyError(f"{directive} needs at least one value", number, raw)
        return _DATA_SIZES[directive] * count, "data"
    if directive in (".ascii", ".asciz", ".string"):
        return len(_ascii_bytes(text, number, raw)), "data"
    raise AssemblyError(f"unknown or unsupported directive {directive}", number, raw)


def _encode(st: _Statement, symbols: dict[str, int], constants: dict[str, int],
            literal_slot: tuple[int, int] | None) -> bytes:
    """The bytes of one statement, assembled alone at its address and checked against pass 1."""
    if st.kind == "align":  # GNU as pads code with zeros up to a word, then NOPs
        zeros = min(-st.address % 4, st.size)
        return bytes(zeros) + _NOP * ((st.size - zeros) // 4)
    if st.kind == "space":
        fill = _split_operands(st.text.split(None, 1)[1])[1:]
        value = _evaluate(fill[0], symbols, None, st.number, st.text) if fill else 0
        if not -0x80 <= value <= 0xFF:
            raise AssemblyError(f"the fill value of {st.text.split(None, 1)[0]} is a byte, not {value:#x}",
                                st.number, st.text)
        return bytes([value & 0xFF]) * st.size
    text = st.text
    if st.kind == "literal":
        register = _LITERAL_LOAD.match(text).group(1)
        text = f"ldr {register}, {literal_slot[0]:#x}"
    elif st.kind == "data" and text.split(None, 1)[0].lower() in _DATA_SIZES:
        return _data_bytes(st, symbols)
    else:
        text = _substitute_constants(text, constants)
    out = _keystone_bytes(text, st.address, symbols, st.number, st.text)
    if len(out) != st.size:
        what = "no bytes" if not out else f"{len(out)} bytes"
        raise AssemblyError(f"Keystone produced {what} here instead of {st.size}: the statement was not "
                            "assembled as written (check its syntax)", st.number, st.text)
    return out


def _data_bytes(st: _Statement, symbols: dict[str, int]) -> bytes:
    directive, _, args = st.text.partition(" ")
    size = _DATA_SIZES[directive.lower()]
    return b"".join(_value_bytes(_evaluate(expr, symbols, st.address, st.number, st.text), size, st.number, st.text)
                    for expr in _split_operands(args))


def _value_bytes(value: int, size: int, number: int, raw: str) -> bytes:
    """`value` as `size` little-endian bytes; AssemblyError if it fits neither signed nor unsigned."""
    if not -(1 << (8 * size - 1)) <= value < (1 << (8 * size)):
        raise AssemblyError(f"{value:#x} does not fit in {size} bytes ({8 * size} bits)", number, raw)
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def _keystone_bytes(text: str, address: int, symbols: dict[str, int], number: int, raw: str) -> bytes:
    """Assemble one statement at `address`; labels come from `symbols`.

    Keystone 0.9.2 has two traps this function steps around. With a symbol
    resolver installed it reads every decimal immediate as hexadecimal (`#64`
    becomes 0x64), so decimals are rewritten as hex first. And it aborts the
    whole process ("LLVM ERROR: fixup value out of range") on a branch or
    PC-relative load whose target is too far or misaligned, so those are
    checked here first and reported as errors.
    """
    from keystone import KsError

    if text.startswith("."):
        if text.split(None, 1)[0].lower() in (".ascii", ".asciz", ".string"):
            return _ascii_bytes(text, number, raw)
        raise AssemblyError("unsupported directive", number, raw)
    text = _LO12.sub(lambda m: f"#{_evaluate(m.group(1), symbols, address, number, raw) & 0xFFF:#x}", text)
    if (operator_ := _RELOCATION.search(text)) is not None:  # Keystone aborts the process on most of them
        raise AssemblyError(f"{operator_.group(0)} is not supported: vlab's assembler knows only :lo12: (after "
                            "`adrp`); for an address in a register write `ldr Xn, =label` or `adr Xn, label`",
                            number, raw)
    mnemonic, _, operands = text.partition(" ")
    mnemonic = mnemonic.lower()
    if mnemonic == "udf":  # Keystone 0.9.2 does not know it: its encoding is the 16-bit immediate alone
        value = _evaluate(operands.strip().removeprefix("#"), symbols, address, number, raw) if operands.strip() else -1
        if not 0 <= value <= 0xFFFF:
            raise AssemblyError("udf takes an immediate from #0 to #65535", number, raw)
        return value.to_bytes(4, "little")
    if mnemonic in _PC_RELATIVE and "[" not in operands:  # ldr Xt, [Xn...] is not PC-relative
        if not _split_operands(operands):  # else a bare `b` would raise ValueError below
            raise AssemblyError(f"{mnemonic} needs operands ending with its target label", number, raw)
        *first, last = _split_operands(operands)
        target = _evaluate(last.removeprefix("#"), symbols, address, number, raw)
        if last.startswith("#") or last[:1].isdigit():
            # An absolute target, as Capstone prints one (`#0x40000010`): Keystone takes a label better.
            symbols = {**symbols, _TARGET: target}
            operands = ", ".join([*first, _TARGET])
        if mnemonic == "adrp":
            return _adrp(operands, target, address, number, raw)
        _check_reach(mnemonic, target, address, number, raw)
    _check_w_immediates(operands, symbols, address, number, raw)
    if mnemonic in ("fmov", "fcmp", "fcmpe"):
        # GNU as reads `fmov d0, #1` as 1.0; Keystone would take the 1 as the raw 8-bit field (2.125).
        operands = _WHOLE_IMMEDIATE.sub(r"#\1.0", operands)
    text = mnemonic + " " + _DECIMAL.sub(lambda m: hex(int(m.group(0))), operands)
    resolver = _keystone_with_symbols()
    resolver.symbols = symbols
    # With a symbol resolver installed Keystone emits nothing for a floating-point immediate
    # (`fmov d0, #1.5`, `fcmp d0, #0.0`); those instructions never name a label.
    ks = _plain_keystone() if _FLOAT_IMMEDIATE.search(operands) else resolver.ks
    try:
        encoding, _ = ks.asm(text, address)
    except KsError as e:
        raise AssemblyError(_explain_keystone(e, text, symbols), number, raw) from None
    return bytes(encoding or b"")


# PC-relative instructions: (bits of the signed offset, required alignment of the offset)
_PC_RELATIVE = {"b": (28, 4), "bl": (28, 4), "cbz": (21, 4), "cbnz": (21, 4), "tbz": (16, 4), "tbnz": (16, 4),
                "ldr": (21, 4), "ldrsw": (21, 4), "prfm": (21, 4), "adr": (21, 1), "adrp": (33, 4096)}
_PC_RELATIVE.update({f"b.{cc}": (21, 4) for cc in ("eq ne cs hs cc lo mi pl vs vc hi ls ge lt gt le al nv".split())})
_DECIMAL = re.compile(r"(?<![\w.])\d+(?![\w.])")
_WHOLE_IMMEDIATE = re.compile(r"#\s*([+-]?\d+)(?![\w.])")
_FLOAT_IMMEDIATE = re.compile(r"#\s*[+-]?\d+\.\d*(e[+-]?\d+)?", re.IGNORECASE)
# Armv8.1+ mnemonics a course reader meets: LSE atomics, RAS, SPE, RCpc loads, pointer authentication, BTI.
_LATER_EXTENSION = re.compile(r"(casp?|swp|(ld|st)(add|clr|eor|set|smax|smin|umax|umin))(a|l|al)?[bh]?|esb|psb|"
                              r"ldapu?r[bh]?|pac\w*|aut\w*|reta[ab]|blra[ab]z?|bra[ab]z?|eret[ab]|xpac[di]|xpaclri|bti",
                              re.IGNORECASE)
_TARGET = "vlab_absolute_target"
_LO12 = re.compile(r"#?:lo12:([^\],]+)")
_RELOCATION = re.compile(r":[a-z][a-z0-9_]*:", re.IGNORECASE)


def _check_w_immediates(operands: str, symbols: dict[str, int], address: int, number: int, raw: str) -> None:
    """An immediate wider than the 32-bit register it goes with is an error: Keystone 0.9.2 silently
    keeps its low 32 bits (`mov w0, #0x1ffff0000` became `mov w0, #-0x10000`)."""
    if not re.match(r"\s*w(\d|zr|sp)", operands, re.IGNORECASE):
        return
    for expr in _IMMEDIATE.findall(re.sub(r"\[[^]]*\]", "", operands)):  # not an address's offset
        try:
            value = _evaluate(expr, symbols, address, number, raw)
        except AssemblyError:
            continue  # Keystone will say what is wrong with it
        if not -(1 << 31) <= value < (1 << 32):
            raise AssemblyError(f"{value:#x} does not fit in 32 bits, the width of the W register: use an X register "
                                "for a 64-bit value", number, raw)


_IMMEDIATE = re.compile(r"#([^,\]]+)")


def _check_reach(mnemonic: str, target: int, address: int, number: int, raw: str) -> None:
    bits, align = _PC_RELATIVE[mnemonic]
    offset = target - address
    if offset % align:
        raise AssemblyError(f"{mnemonic} target {target:#x} is not {align}-byte aligned", number, raw)
    if not -(1 << (bits - 1)) <= offset < (1 << (bits - 1)):
        raise AssemblyError(f"{mnemonic} cannot reach {target:#x} from {address:#x}: its range is "
                            f"±{1 << (bits - 1):#x} bytes (use ldr Xn, =target and br Xn for far jumps)", number, raw)


def _adrp(operands: str, target: int, address: int, number: int, raw: str) -> bytes:
    """ADRP, encoded here: Keystone 0.9.2 encodes a wrong page offset."""
    register = _split_operands(operands)[0].lower()
    if not re.fullmatch(r"x([12]?\d|30)", register):
        raise AssemblyError("adrp needs a 64-bit register Xd", number, raw)
    pages = (target >> 12) - (address >> 12)
    if not -(1 << 20) <= pages < (1 << 20):
        raise AssemblyError(f"adrp cannot reach {target:#x} from {address:#x} (±4 GiB)", number, raw)
    pages &= (1 << 21) - 1
    word = 0x9000_0000 | ((pages & 3) << 29) | ((pages >> 2) << 5) | int(register[1:])
    return word.to_bytes(4, "little")


def _ascii_bytes(text: str, number: int, raw: str) -> bytes:
    """.ascii/.asciz/.string "..." with C escapes, as GNU as reads them."""
    directive, _, rest = text.partition(" ")
    rest = rest.strip()
    if len(rest) < 2 or rest[0] != '"' or rest[-1] != '"':
        raise AssemblyError(f"{directive} needs one string in double quotes", number, raw)
    try:
        body = ast.literal_eval("b" + rest)
    except (SyntaxError, ValueError):
        raise AssemblyError(f"{directive}: cannot read the string {rest}", number, raw) from None
    return body + (b"\0" if directive.lower() in (".asciz", ".string") else b"")


class _SymbolResolver:
    """One Keystone instance whose resolver looks labels up in `symbols`."""

    def __init__(self) -> None:
        from keystone import KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN, Ks

        self.ks = Ks(KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN)
        self.symbols: dict[str, int] = {}
        self.ks.sym_resolver = self._resolve

    def _resolve(self, symbol: bytes, value) -> bool:
        name = symbol.decode(errors="replace")
        if name in self.symbols:
            value[0] = self.symbols[name] & 0xFFFF_FFFF_FFFF_FFFF
            return True
        return False


@functools.cache
def _plain_keystone():
    from keystone import KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN, Ks

    return Ks(KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN)


@functools.cache
def _keystone_with_symbols() -> _SymbolResolver:
    return _SymbolResolver()


def _explain_keystone(error, text: str, symbols: dict[str, int]) -> str:
    """Keystone's complaint about `text`, with what GNU as would have said (Keystone often says only
    "unknown error") and what to write instead."""
    message = str(error).split(" (KS_ERR")[0].lower()
    mnemonic, _, operands = text.partition(" ")
    if _LATER_EXTENSION.fullmatch(mnemonic):
        return ("Keystone could not assemble this: this instruction comes from an Arm architecture extension newer "
                "than Armv8.0, which is what Keystone 0.9.2 assembles and what vlab's emulated core (Cortex-A72) "
                "runs; for an atomic update use a load-exclusive/store-exclusive loop (ldxr/stxr)")
    reason = _KEYSTONE_REASONS.get(message, message)
    labels_as_immediates = [w for w in symbols if re.search(rf"#\s*{re.escape(w)}\b", text)]
    if labels_as_immediates:
        reason += "; a label's address cannot be an immediate: use `ldr Xn, =label` or `adr Xn, label`"
    elif message in ("unknown error", "invalid operand"):
        hint = _operand_hint(mnemonic, operands, symbols)
        silent = " (Keystone gives no reason)" if message == "unknown error" else ""
        reason += f"; {hint}" if hint else (f"{silent}: check each operand's kind, width and range against the "
                                            f"instruction's forms; {_DIALECT}")
    return f"Keystone could not assemble this: {reason}"


_DIALECT = "what vlab's assembler accepts is in docs/assembly.md"
_KEYSTONE_REASONS = {
    "invalid mnemonic": "this is not an AArch64 instruction (check its spelling)",
    "invalid operand": "an operand is not valid for this instruction",
    "unknown error": "the operands fit no form of this instruction",
    "literal value out of range for directive": "a number in it does not fit in 64 bits",
}
_GPR = r"(?:[xw](?:[12]?\d|30|zr))"
_REGISTER_WORDS = re.compile(rf"{_GPR}|w?sp|lsl|lsr|asr|ror|[su]xt[bhwx]|eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|"
                             r"gt|le|al|nv", re.IGNORECASE)
# (mnemonic pattern, operand pattern, what the instruction takes): GNU as's messages, said for a student
_OPERAND_RULES = [
    (r"svc|hvc|smc|brk|hlt", r".*", "it takes an immediate from #0 to #65535 (0xffff)"),
    (r"mov[znk]", r".*", "MOVZ, MOVN and MOVK take a 16-bit immediate (#0 to #0xffff) shifted by `lsl #0`, #16, "
                         "#32 or #48 (#0 or #16 for a W register)"),
    (r"ldp|stp|ldnp|stnp", r".*#", "LDP and STP take an offset that is a multiple of the register size, -512 to 504 "
                                   "for X registers, -256 to 252 for W"),
    (r"ldr\w*|str\w*|prfm", r".*\[[^]]*,\s*[xw]\w+\s*,\s*(lsl|[su]xt[wx]|sxtx)",
     "in [Xn, Xm, lsl #k] the shift k is 0 or the log2 of the access size: 3 for an X register, 2 for W, "
     "1 for ldrh/strh, 0 for ldrb/strb"),
    (r"ldr\w*|str\w*|prfm", r".*\[[^]]*#", "a load or store offset is a multiple of the access size from 0 to 4095 "
                                            "times it (`ldr x0, [x1, #32760]`), or any value from -256 to 255"),
    (r"adds?|subs?|cmp|cmn|ands?|orr|eor|bics?|orn|eon|tst|neg|mvn", rf".*,\s*{_GPR}\s*,\s*(lsl|lsr|asr|ror)\s+#",
     "a shifted register operand shifts by 0 to 63 (0 to 31 for W registers)"),
    (r"ands?|orr|eor|tst", r".*#", "AND, ORR, EOR and TST take a bitmask immediate: a run of ones, rotated and "
                                   "repeated (0xff, 0xff00, 0x5555555555555555); load any other constant into a "
                                   "register first (`ldr x9, =CONSTANT`)"),
    (r"adds?|subs?|cmp|cmn", r".*#", "ADD, SUB and CMP take an immediate from #0 to #4095, optionally with `lsl #12`; "
                                     "load a bigger constant into a register first (`ldr x9, =CONSTANT`)"),
    (r"lsl|lsr|asr|ror", r".*#", "a shift amount is 0 to 63 for X registers, 0 to 31 for W"),
]


def _operand_hint(mnemonic: str, operands: str, symbols: dict[str, int]) -> str:
    """What is wrong with the operands, when a familiar mistake explains it; '' when none does."""
    names = re.sub(r"\b(0x[0-9a-f]+|\d+)\b", " ", operands, flags=re.IGNORECASE)  # not the digits of a number
    regs = [r.strip().lower() for r in _split_operands(operands)]
    if mnemonic == "msr" and regs and re.fullmatch(_GPR, regs[0]):
        return ("MSR writes a system register from a general one: the system register comes first "
                f"(`msr {', '.join(regs[::-1])}`)")
    if mnemonic == "mrs" and regs and not re.fullmatch(_GPR, regs[0]):
        return f"MRS reads a system register into a general one, which comes first (`mrs {', '.join(regs[::-1])}`)"
    unknown = [w for w in _IDENT.findall(names) if w not in symbols and not _REGISTER_WORDS.fullmatch(w)]
    if unknown:
        return f"is {unknown[0]!r} a label or register that exists?"
    # SP is register 31 only in a few operand positions (elsewhere 31 is XZR); as an address's base it is fine.
    allowed = {"mov": (0, 1), "add": (0, 1), "adds": (1,), "sub": (0, 1), "subs": (1,), "cmp": (0,), "cmn": (0,)}
    if any(r in ("sp", "wsp") and i not in allowed.get(mnemonic, ()) for i, r in enumerate(regs)):
        free = next(f"x{n}" for n in range(9, 16) if f"x{n}" not in operands.lower())
        instead = re.sub(r"\bsp\b", free, f"{mnemonic} {operands}", flags=re.IGNORECASE)
        return (f"SP can be an operand only in a few places (an address's base, the first source of add/sub/cmp, mov):"
                f" copy it to a register first, `mov {free}, sp` then `{instead}`")
    if mnemonic == "mov" and re.match(rf"\s*({_GPR}|w?sp)\s*,\s*#[^,]*$", operands, re.IGNORECASE):
        # GNU as says "immediate cannot be moved by a single instruction": MOV takes 16 bits at a
        # shift of 0, 16, 32 or 48, or a bitmask pattern -- any other constant needs a literal.
        return (f"this constant does not fit one MOV (16 bits at a shift of 0/16/32/48, or a bit pattern): "
                f"use `ldr {regs[0]}, ={operands.split('#', 1)[1].strip()}`")
    if len({r[0] for r in regs if re.fullmatch(_GPR, r)}) > 1 and not re.search(r"[su]xt|\[", operands, re.I):
        return "the operands mix 64-bit X and 32-bit W registers: use one width, or extend the W one (`, uxtw`)"
    return next((hint for mnemonics, pattern, hint in _OPERAND_RULES
                 if re.fullmatch(mnemonics, mnemonic) and re.match(pattern, operands, re.IGNORECASE)), "")


def _substitute_constants(text: str, constants: dict[str, int]) -> str:
    """Replace .equ names by their values: Keystone resolves labels, not immediates."""
    if not constants:
        return text
    return _IDENT.sub(lambda m: str(constants[m.group(0)]) if m.group(0) in constants else m.group(0), text)


def _split_operands(args: str) -> list[str]:
    return [a.strip() for a in args.split(",") if a.strip()]


def _align(address: int, boundary: int) -> int:
    return (address + boundary - 1) // boundary * boundary


def _source_text(source: str, number: int) -> str:
    return source.splitlines()[number - 1].strip()


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
           ast.LShift: operator.lshift, ast.RShift: operator.rshift, ast.BitOr: operator.or_,
           ast.BitAnd: operator.and_, ast.BitXor: operator.xor, ast.Mod: operator.mod}


def _evaluate(expr: str, names: dict[str, int], here: int | None, number: int, raw: str) -> int:
    """An assembler expression: numbers, labels, constants, `.` (this address), + - * / << >> | & ^.

    `here` None: the expression must be absolute, as GNU as wants for sizes
    (`.space .` would otherwise ask for a gigabyte of zeros).
    """
    text = expr.strip().replace("/", "//")
    text = re.sub(r"(?<![\w$])\.(?![\w$])", "__here__", text)
    text = re.sub(r"[A-Za-z_.$][\w.$]*", lambda m: m.group(0).replace(".", "__dot__").replace("$", "__dollar__"), text)
    table = {k.replace(".", "__dot__").replace("$", "__dollar__"): v for k, v in names.items()}
    if here is not None:
        table["__here__"] = here

    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in table:
                name = "." if node.id == "__here__" else node.id.replace("__dot__", ".").replace("__dollar__", "$")
                raise AssemblyError(f"{name!r} is not a label or constant defined in the program", number, raw)
            return table[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Invert, ast.UAdd)):
            v = value(node.operand)
            return -v if isinstance(node.op, ast.USub) else (~v if isinstance(node.op, ast.Invert) else v)
        raise AssemblyError(f"cannot evaluate {expr.strip()!r}: use numbers, labels and + - * / << >> | & ^",
                            number, raw)

    try:
        return value(ast.parse(text, mode="eval").body)
    except SyntaxError:
        raise AssemblyError(f"cannot evaluate {expr.strip()!r}", number, raw) from None


# --- disassembling ------------------------------------------------------------------

def disassemble_one(word: bytes, address: int) -> Instruction:
    """Disassemble the 4-byte word at `address`; undecodable words become `.long 0x...`."""
    for insn in _capstone().disasm(bytes(word[:4]), address, 1):
        return Instruction(address, bytes(word[:4]), insn.mnemonic, insn.op_str)
    if len(word) < 4:
        return Instruction(address, bytes(word), ".byte", ", ".join(f"{b:#04x}" for b in word))
    return Instruction(address, bytes(word[:4]), ".long", f"{int.from_bytes(word[:4], 'little'):#010x}")


def disassemble(code: bytes, base: int = RAM_BASE) -> list[Instruction]:
    """Every 4-byte word of `code` as an Instruction (none skipped); a short tail as `.byte`."""
    return [disassemble_one(code[i:i + 4], base + i) for i in range(0, len(code), 4)]
