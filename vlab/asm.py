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
after the code, and the instruction loads it PC-relative.
"""

from __future__ import annotations

import ast
import functools
import operator
import re
from dataclasses import dataclass

from vlab.errors import AssemblyError

RAM_BASE = 0x4000_0000

_LABEL = re.compile(r"^\s*([A-Za-z_.$][\w.$]*)\s*:")
_NUMERIC_LABEL = re.compile(r"^\s*\d+\s*:")
_NUMERIC_REF = re.compile(r"(?<![\w#.])\d+[fb]\b")
_LITERAL_LOAD = re.compile(r"^ldr\s+([xw]\d+|[xw]zr)\s*,\s*=\s*(.+)$", re.IGNORECASE)
_IDENT = re.compile(r"[A-Za-z_.$][\w.$]*")
_MNEMONIC = re.compile(r"[A-Za-z][\w.]*(\s|$)")
_ASSIGNMENT = re.compile(r"[^\s=]*\s*=")
_NOP = (0xD503201F).to_bytes(4, "little")

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
        text = _strip_comment(raw, number)
        text = _take_labels(text, number, raw, address, symbols)
        if not text:
            continue
        directive = text.split(None, 1)[0].lower()
        if directive.startswith("."):
            size, kind = _directive_size(directive, text, number, raw, address, symbols, constants)
            if kind:
                statements.append(_Statement(number, text, kind, address, size))
            address += size
            continue
        # Keystone 0.9.2 loops forever on lines such as `= 1` or `mov = .equ =` (it reads `NAME =`
        # as a symbol assignment), so those never reach it.
        if _ASSIGNMENT.match(text):
            raise AssemblyError("symbol assignment (NAME = value) is not supported: write .equ NAME, value",
                                number, raw)
        if not _MNEMONIC.match(text):
            raise AssemblyError("expected an instruction, a directive or a label at the start of the line",
                                number, raw)
        if address % 4:
            raise AssemblyError(f"this instruction would sit at {address:#x}, which is not 4-byte aligned "
                                "(data before it has an odd size): put `.balign 4` before it", number, raw)
        if (m := _LITERAL_LOAD.match(text)) is not None and (mov := _as_mov(m, {**symbols, **constants}, address)):
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
        code += bytes(slot - base - len(code)) + (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
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


def _as_mov(m: re.Match, names: dict[str, int], address: int) -> str | None:
    """`ldr Rt, =value` as one MOV when value is already known and fits.

    GNU as for AArch64 always uses the literal pool; vlab prefers the MOV so a
    constant known at that point costs no pool slot and no memory read.
    """
    try:
        value = _evaluate(m.group(2), names, address, 0, "")
    except AssemblyError:
        return None  # a label defined later: it goes to the literal pool
    mov = f"mov {m.group(1)}, #{value:#x}"
    try:
        return mov if len(_keystone_bytes(mov, address, {}, 0, "")) == 4 else None
    except AssemblyError:
        return None


def _strip_comment(raw: str, number: int) -> str:
    """The line without its `//` comment (ignoring `//` inside string literals)."""
    in_string = escaped = False
    for i, ch in enumerate(raw):
        if in_string:
            escaped = ch == "\\" and not escaped
            if ch == '"' and not escaped:
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif raw.startswith("//", i):
            return raw[:i].strip()
    if in_string:
        raise AssemblyError("unterminated string literal: close it with a double quote", number, raw)
    return raw.strip()


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
        return bytes(st.size)
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
    out = b""
    for expr in _split_operands(args):
        value = _evaluate(expr, symbols, st.address, st.number, st.text)
        if not -(1 << (8 * size - 1)) <= value < (1 << (8 * size)):
            raise AssemblyError(f"{value:#x} does not fit in {size} bytes", st.number, st.text)
        out += (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    return out


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
    message = str(error).split(" (KS_ERR")[0].lower()
    operands = re.sub(r"\b(0x[0-9a-f]+|\d+)\b", " ", text.partition(" ")[2], flags=re.IGNORECASE)  # not names
    unknown = [w for w in _IDENT.findall(operands)
               if w not in symbols and not re.fullmatch(r"[xw](\d+|zr)|sp|lsl|lsr|asr|ror|[su]xt[bhwx]|"
                                                         r"eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al|nv",
                                                         w, re.IGNORECASE)]
    hint = {
        "invalid mnemonic": "this is not an AArch64 instruction (check its spelling)",
        "invalid operand": "an operand is not valid for this instruction",
    }.get(message, message)
    labels_as_immediates = [w for w in symbols if re.search(rf"#\s*{re.escape(w)}\b", text)]
    if _LATER_EXTENSION.fullmatch(text.split(None, 1)[0]):
        hint = ("this instruction comes from an Arm architecture extension newer than Armv8.0, which is "
                "what Keystone 0.9.2 assembles and what vlab's emulated core (Cortex-A72) runs; for an "
                "atomic update use a load-exclusive/store-exclusive loop (ldxr/stxr)")
    elif labels_as_immediates:
        hint += "; a label's address cannot be an immediate: use `ldr Xn, =label` or `adr Xn, label`"
    elif message in ("unknown error", "invalid operand") and unknown:
        hint += f"; is {unknown[0]!r} a label or register that exists?"
    elif message in ("unknown error", "invalid operand") and re.match(r"\s*mov[nkz]?\s+([xw]\d+|sp)\s*,\s*#", text, re.I):
        # GNU as says "immediate cannot be moved by a single instruction": MOV takes 16 bits at a
        # shift of 0, 16, 32 or 48, or a bitmask pattern -- any other constant needs a literal.
        register = text.split(",")[0].split()[-1]
        hint = (f"this constant does not fit one MOV (16 bits at a shift of 0/16/32/48, or a bit pattern):"
                 f" use `ldr {register}, ={text.split('#', 1)[1].strip()}`")
    return f"Keystone could not assemble this: {hint}"


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
