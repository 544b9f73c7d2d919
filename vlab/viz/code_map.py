"""What a guest's bytes are, instructions or data, and where its labels stand: what the code pane lists.

A disassembler that sees only bytes reads every word as an instruction: a literal pool's
0x84000008 comes out as `ld1sb {z8.s}, p0/z, [x0, z0.s, uxtw]`, alignment zeros as `udf #0`.
The code pane asks what made the bytes instead:

    assembly source   vlab's assembler records each data span (`Program.data`: data directives,
                      .space, padding, the literal pool) and every label
    ELF file          the symbol table (labels, and the mapping symbols `$x` and `$d` that mark
                      where code and data start inside a section: AArch64 ELF ABI) and the section
                      headers (an allocated section without SHF_EXECINSTR holds data)
    raw binary        nothing is known: every word is disassembled

    listing(memory, start, end, code_map)   ->  Entry rows: `ldr x0, 0x40000e78`, `.quad 0x84000008`
"""

from __future__ import annotations

import bisect
import io
from dataclasses import dataclass, field
from typing import Mapping

from elftools.common.exceptions import ELFError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from vlab.asm import DataSpan, Program, SourceLine, disassemble_one

ELF_DATA_UNIT = 4  # an ELF says where data is, not its width: shown as words, as objdump does
_DIRECTIVE = {1: ".byte", 2: ".hword", 4: ".word", 8: ".quad"}
_ESCAPES = {ord("\n"): "\\n", ord("\t"): "\\t", ord('"'): '\\"', ord("\\"): "\\\\"}
_PRINTABLE = set(range(0x20, 0x7F)) | set(_ESCAPES)


@dataclass(frozen=True)
class CodeMap:
    """Labels by address, the spans of data (in address order), and the program's source lines if known."""

    labels: Mapping[int, str] = field(default_factory=dict)
    data: tuple[DataSpan, ...] = ()
    program: Program | None = None
    image: tuple[tuple[int, int], ...] = ()  # [start, end) of what the program occupies; () = not known

    def in_image(self, address: int) -> bool:
        """Whether `address` holds the program's own bytes (True when that is not known)."""
        return not self.image or any(start <= address < end for start, end in self.image)

    @classmethod
    def of_program(cls, program: Program | None) -> CodeMap:
        """What vlab's assembler recorded (nothing for None: a raw binary)."""
        if program is None:
            return cls()
        return cls(_first_label_per_address(program.symbols.items()), program.data, program,
                   ((program.base, program.end),))

    @classmethod
    def of_elf(cls, image: bytes) -> CodeMap:
        """Labels and data spans from an ELF file's symbol table and section headers (empty if it has none)."""
        try:
            elf = ELFFile(io.BytesIO(image))
            sections = [s for s in elf.iter_sections() if s["sh_flags"] & SH_FLAGS.SHF_ALLOC and s["sh_size"]]
            symtab = elf.get_section_by_name(".symtab")
            symbols = [s for s in (symtab.iter_symbols() if symtab is not None else ())
                       if s.name and s["st_shndx"] not in ("SHN_UNDEF", "SHN_ABS")
                       and s["st_info"]["type"] in ("STT_NOTYPE", "STT_FUNC", "STT_OBJECT")]
        except (ELFError, ValueError, KeyError, OSError):
            return cls()  # the loader has already said what is wrong with the file
        labels = _first_label_per_address((s.name, s["st_value"]) for s in symbols if not s.name.startswith("$"))
        # Mapping symbols: "$d" (or "$d.N") starts data, "$x" code, until the next one or the section's end.
        marks = sorted((s["st_value"], s.name[1]) for s in symbols if s.name[:2] in ("$d", "$x"))
        data = []
        for section in sections:
            start, end = section["sh_addr"], section["sh_addr"] + section["sh_size"]
            if not section["sh_flags"] & SH_FLAGS.SHF_EXECINSTR:
                data.append(DataSpan(start, end - start, ELF_DATA_UNIT))
                continue
            inside = [(address, kind) for address, kind in marks if start <= address < end]
            for (address, kind), (following, _) in zip(inside, [*inside[1:], (end, "")]):
                if kind == "d" and following > address:
                    data.append(DataSpan(address, following - address, ELF_DATA_UNIT))
        return cls(labels, tuple(sorted(data, key=lambda span: span.address)), None,
                   tuple((s["sh_addr"], s["sh_addr"] + s["sh_size"]) for s in sections))

    def span_at(self, address: int) -> DataSpan | None:
        """The data span holding the byte at `address`, if any."""
        i = bisect.bisect_right([span.address for span in self.data], address) - 1
        if i >= 0 and address < self.data[i].address + self.data[i].size:
            return self.data[i]
        return None

    def line_at(self, address: int) -> SourceLine | None:
        """The source line whose bytes include `address` (None when the source is not known)."""
        return self.program.line_at(address) if self.program else None


def _first_label_per_address(symbols) -> dict[int, str]:
    """Address -> label, the first-defined one when several mark the same address."""
    out: dict[int, str] = {}
    for name, address in symbols:
        out.setdefault(address, name)
    return out


@dataclass(frozen=True)
class Entry:
    """One row of a listing: an instruction (4 bytes) or a run of data, as an assembler would write it."""

    address: int
    size: int
    text: str  # `mov x0, #1`, `.quad 0x84000008`, `.ascii "Hell"`, `.zero 12`
    data: bool


def listing(memory: bytes, base: int, code_map: CodeMap, keep: int | None = None) -> list[Entry]:
    """The bytes `memory` (at address `base`) as instructions and data, in order.

    A data row never crosses a 4-byte boundary unless it is one 8-byte value or a run of zeros;
    zeros outside the program are memory it never wrote, not `udf #0`s. The word at `keep` (PC) is
    always disassembled: whatever the map says, the CPU executes it.
    """
    rows, address, end = [], base, base + len(memory)
    while address < end:
        span = code_map.span_at(address) if address != keep else None
        if span is None and address != keep and not code_map.in_image(address) and not any(
                memory[address - base:address - base + 4]):
            span = DataSpan(address, _next_image_start(code_map, address, end) - address, 1)
        if span is None:
            word = memory[address - base:address - base + 4]
            rows.append(Entry(address, len(word), disassemble_one(word, address).text, False))
            address += len(word)
            continue
        stop = min(end, span.address + span.size)
        if keep is not None and address < keep < stop:
            stop = keep  # the row at PC is an instruction: no data row may swallow it
        row = _data_row(memory, base, address, stop, span)
        rows.append(row)
        address += row.size
    return rows


def _next_image_start(code_map: CodeMap, address: int, end: int) -> int:
    """Where the program's bytes start again after `address` (at most `end`)."""
    return min([start for start, _ in code_map.image if start > address] + [end])


def _data_row(memory: bytes, base: int, address: int, stop: int, span: DataSpan) -> Entry:
    """The data row at `address`: one value of the span's size, else the bytes up to the next word."""
    def at(a: int, n: int) -> bytes:
        return memory[a - base:a - base + n]

    unit = span.unit
    if unit > 1 and (address - span.address) % unit == 0 and address + unit <= stop:
        return Entry(address, unit, f"{_DIRECTIVE[unit]} {int.from_bytes(at(address, unit), 'little'):#x}",
                     True)
    size = min(stop, (address | 3) + 1) - address
    if not any(at(address, size)):  # padding and .space: one row for the whole run of zeros
        while address + size < stop and not at(address + size, 1)[0]:
            size += 1
        return Entry(address, size, f".zero {size}", True)
    chunk = at(address, size)
    if all(b in _PRINTABLE for b in chunk):
        return Entry(address, size, '.ascii "' + "".join(_ESCAPES.get(b, chr(b)) for b in chunk) + '"', True)
    return Entry(address, size, ".byte " + ", ".join(f"{b:#04x}" for b in chunk), True)
