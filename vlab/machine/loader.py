"""Loading a guest onto the board: raw binaries, assembly sources and ELF files.

Like `qemu-system-aarch64 -M virt -kernel FILE`: an ELF's loadable segments go
to their physical addresses and execution starts at its entry point; a raw
image or an assembly source goes to the start of RAM and starts there.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from vlab.asm import Program, assemble
from vlab.errors import LoadError
from vlab.machine.board import RAM_BASE, Board

_EM_AARCH64 = "EM_AARCH64"
ASSEMBLY_SUFFIXES = (".s", ".S", ".asm")
RAW_SUFFIXES = (".bin", ".img", ".raw")  # a raw image must say it is one: any other file might be text


@dataclass(frozen=True)
class Segment:
    """`data` at `address`, followed by zeros up to `size` bytes (an ELF segment's .bss)."""

    address: int
    data: bytes
    size: int


@dataclass(frozen=True)
class Image:
    """Bytes to place at addresses, and where to start."""

    segments: tuple[Segment, ...]
    entry: int
    program: Program | None = None  # set for assembly sources: symbols and the line map


def image_from_program(program: Program) -> Image:
    return Image((Segment(program.base, program.code, len(program.code)),), program.base, program)


def image_from_elf(data: bytes, name: str = "ELF file") -> Image:
    """The PT_LOAD segments of an AArch64 ELF executable, at their physical addresses."""
    try:
        elf = ELFFile(io.BytesIO(data))
        if elf.elfclass != 64 or not elf.little_endian or elf["e_machine"] != _EM_AARCH64:
            raise LoadError(f"{name} is a {elf.elfclass}-bit {'little' if elf.little_endian else 'big'}-endian "
                            f"{elf['e_machine']} ELF; vlab runs 64-bit little-endian AArch64 (EM_AARCH64) code")
        segments = []
        for seg in elf.iter_segments():
            if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
                continue
            body = seg.data()
            if len(body) != seg["p_filesz"]:
                raise LoadError(f"{name} is truncated: a segment at {seg['p_paddr']:#x} should have "
                                f"{seg['p_filesz']} bytes in the file but has {len(body)}")
            if seg["p_memsz"] < seg["p_filesz"]:
                raise LoadError(f"{name} is corrupt: a segment at {seg['p_paddr']:#x} is smaller in memory "
                                f"({seg['p_memsz']} bytes) than in the file ({seg['p_filesz']})")
            # the zeros after the file's bytes are written by load(), once the size is known to fit
            segments.append(Segment(seg["p_paddr"], body, seg["p_memsz"]))
        if not segments:
            raise LoadError(f"{name} has no loadable (PT_LOAD) segment")
        return Image(tuple(segments), elf["e_entry"])
    except (ELFError, ValueError, KeyError, OSError) as e:  # pyelftools' ways of saying "broken"
        raise LoadError(f"{name} is not a valid ELF file: {e}") from None
    except Exception as e:  # noqa: BLE001 - struct.error and friends from a truncated header
        if isinstance(e, LoadError):
            raise
        raise LoadError(f"{name} is not a valid ELF file (truncated or corrupt: {type(e).__name__}: {e})") from None


def image_from_file(path: str | Path) -> Image:
    """Read FILE as ELF (by its magic number), assembly or a raw binary (by suffix).

    Any other file is refused, so that a C source or a README is never run as machine code.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LoadError(f"cannot read {path}: {e.strerror}") from None
    if not data:
        raise LoadError(f"{path} is empty: there is nothing to load")
    if data[:4] == b"\x7fELF":
        return image_from_elf(data, path.name)
    if path.suffix in ASSEMBLY_SUFFIXES:
        return image_from_program(assemble(data.decode("utf-8", errors="replace"), RAM_BASE))
    if path.suffix.lower() in RAW_SUFFIXES:
        return Image((Segment(RAM_BASE, data, len(data)),), RAM_BASE)
    if path.suffix.lower() == ".elf":
        raise LoadError(f"{path.name} is not an ELF file: it does not start with the ELF magic number (7f 45 4c 46)")
    if path.suffix == ".c":
        raise LoadError(f"{path.name} is C source, not machine code: build it first (`vlab run {path.name}` does, "
                        "with the cross compiler; in Python, vlab.guests.build.build(path) returns the ELF file)")
    raise LoadError(f"{path.name}: vlab does not run this kind of file. It runs AArch64 ELF executables (any name), "
                    f"assembly ({', '.join(ASSEMBLY_SUFFIXES)}), raw binaries loaded at {RAM_BASE:#x} "
                    f"({', '.join(RAW_SUFFIXES)}) and, with `vlab run`, C sources (.c)")


def load(board: Board, image: Image) -> None:
    """Write the image into the board's memory and point the CPU at its entry."""
    for seg in image.segments:
        region = board.region_at(seg.address, max(seg.size, 1))
        if region is None or region.kind == "device":
            memories = " or ".join(f"{r.name if r.kind == 'rom' else 'RAM'} ({r.base:#x}..{r.base + r.size:#x})"
                                   for r in board.regions if r.kind != "device")
            raise LoadError(f"a segment of {seg.size:#x} bytes at {seg.address:#x} does not fit in the "
                            f"machine's {memories}")
        board.write_memory(seg.address, seg.data + bytes(seg.size - len(seg.data)))
    if board.region_at(image.entry) is None:
        raise LoadError(f"entry point {image.entry:#x} is outside the board's memory")
    board.start_at(image.entry)
