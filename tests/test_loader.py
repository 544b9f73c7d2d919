"""Loading guests like `qemu-system-aarch64 -M virt -kernel FILE`: raw images, assembly, ELF.

The ELF files here are built byte by byte from the ELF specification (System V
ABI, "ELF header" and "Program header"), so each test controls exactly what is
wrong with its file.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlab.errors import LoadError, VlabError
from vlab.machine.board import RAM_BASE, Board, StopReason
from vlab.machine.loader import image_from_elf, image_from_file, load

EM_ARM, EM_X86_64, EM_AARCH64 = 40, 62, 183
PT_LOAD, PT_NOTE = 1, 4
NOP = 0xD503201F


def words(*values: int) -> bytes:
    return b"".join(v.to_bytes(4, "little") for v in values)


# movz x0, #0x8, lsl #0 / movk x0, #0x8400, lsl #16 / hvc #0: PSCI SYSTEM_OFF
POWER_OFF = words(0xD2800100, 0xF2B08000, 0xD4000002)


def elf64(segments: list[tuple[int, int, bytes, int]], entry: int, machine: int = EM_AARCH64,
          p_type: int = PT_LOAD) -> bytes:
    """An ELF64 little-endian executable; each segment is (paddr, vaddr, file bytes, memsz)."""
    header_size, phdr_size = 64, 56
    data_at = header_size + phdr_size * len(segments)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # ELFCLASS64, ELFDATA2LSB, EV_CURRENT
    out = ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, entry, header_size, 0, 0,
                              header_size, phdr_size, len(segments), 64, 0, 0)
    blobs, offset = b"", data_at
    for paddr, vaddr, body, memsz in segments:
        out += struct.pack("<IIQQQQQQ", p_type, 7, offset, vaddr, paddr, len(body), memsz, 8)
        blobs += body
        offset += len(body)
    return out + blobs


def elf32_arm(entry: int = 0x8000) -> bytes:
    """A 32-bit little-endian ARM (EM_ARM) executable with one segment."""
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)  # ELFCLASS32
    body = (0xE1A00000).to_bytes(4, "little")  # mov r0, r0
    header = ident + struct.pack("<HHIIIIIHHHHHH", 2, EM_ARM, 1, entry, 52, 0, 0x05000000, 52, 32, 1, 40, 0, 0)
    phdr = struct.pack("<IIIIIIII", PT_LOAD, 84, entry, entry, len(body), len(body), 5, 4)
    return header + phdr + body


def boot_file(tmp_path, name: str, data: bytes | str) -> Board:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    board = Board()
    load(board, image_from_file(path))
    return board


def test_raw_binary_goes_to_the_start_of_ram_and_starts_there(tmp_path):
    board = boot_file(tmp_path, "kernel.bin", words(NOP, NOP) + POWER_OFF)
    assert board.cpu.pc == RAM_BASE
    result = board.run(max_insns=100)
    assert result.reason is StopReason.POWERED_OFF
    assert result.instructions == 5


def test_assembly_source_is_assembled_at_the_start_of_ram_with_its_symbols(tmp_path):
    (tmp_path / "k.S").write_text("    nop\nentry:\n    ldr x0, =0x84000008\n    hvc #0\n")
    image = image_from_file(tmp_path / "k.S")
    assert image.entry == RAM_BASE
    assert image.program.address_of("entry") == RAM_BASE + 4
    board = Board()
    load(board, image)
    assert board.run(max_insns=100).reason is StopReason.POWERED_OFF


def test_elf_segments_go_to_their_physical_addresses_and_run_from_the_entry(tmp_path):
    code = words(NOP) + POWER_OFF
    data_paddr = RAM_BASE + 0x20_0000
    board = boot_file(tmp_path, "k.elf", elf64([
        (RAM_BASE + 0x8_0000, 0xFFFF_0000_0008_0000, code, len(code)),  # vaddr differs: paddr decides
        (data_paddr, 0xFFFF_0000_0020_0000, b"\xAA" * 8, 0x20),  # 8 bytes, then 0x18 of .bss
    ], entry=RAM_BASE + 0x8_0000 + 4))
    assert board.cpu.pc == RAM_BASE + 0x8_0004
    assert board.read_memory(RAM_BASE + 0x8_0000, len(code)) == code
    assert board.read_memory(data_paddr, 0x20) == b"\xAA" * 8 + bytes(0x18)
    result = board.run(max_insns=100)
    assert result.reason is StopReason.POWERED_OFF and result.instructions == 3


def test_elf_bss_is_zeroed_even_over_old_memory_contents():
    board = Board()
    board.write_memory(RAM_BASE + 0x100, b"\xFF" * 0x100)
    load(board, image_from_elf(elf64([(RAM_BASE, RAM_BASE, POWER_OFF, 0x200)], entry=RAM_BASE)))
    assert board.read_memory(RAM_BASE + 0x100, 0x100) == bytes(0x100)


def test_elf_may_load_into_flash_like_a_rom_image():
    board = Board()
    load(board, image_from_elf(elf64([(0x1000, 0x1000, POWER_OFF, len(POWER_OFF))], entry=0x1000)))
    assert board.run(max_insns=10).reason is StopReason.POWERED_OFF


def test_32_bit_arm_elf_is_refused_naming_what_it_is():
    with pytest.raises(LoadError) as error:
        image_from_elf(elf32_arm(), "arm32.elf")
    message = str(error.value)
    assert "arm32.elf" in message and "32-bit" in message and "AArch64" in message


def test_x86_64_elf_is_refused_naming_its_machine():
    with pytest.raises(LoadError) as error:
        image_from_elf(elf64([(RAM_BASE, RAM_BASE, b"\x90" * 4, 4)], RAM_BASE, machine=EM_X86_64), "pc.elf")
    assert "EM_X86_64" in str(error.value) and "AArch64" in str(error.value)


def test_elf_without_loadable_segments_is_refused():
    with pytest.raises(LoadError, match="PT_LOAD"):
        image_from_elf(elf64([(RAM_BASE, RAM_BASE, POWER_OFF, 12)], RAM_BASE, p_type=PT_NOTE))


@pytest.mark.parametrize("paddr, size", [
    (0x2000_0000, 16),  # between flash and the UART: nothing there
    (0x0900_0000, 16),  # the UART's registers
    (RAM_BASE + 0x800_0000 - 8, 16),  # runs past the end of the 128 MiB of RAM
    (RAM_BASE, 0x1_0000_0000),  # a 4 GiB .bss: refused before anything is allocated
])
def test_segment_outside_memory_is_refused_naming_address_and_memory_map(paddr, size):
    image = image_from_elf(elf64([(paddr, paddr, POWER_OFF[:8], size)], entry=RAM_BASE))
    with pytest.raises(LoadError) as error:
        load(Board(), image)
    message = str(error.value)
    assert f"{paddr:#x}" in message and "RAM (0x40000000..0x48000000)" in message


def test_entry_outside_memory_is_refused():
    image = image_from_elf(elf64([(RAM_BASE, RAM_BASE, POWER_OFF, 12)], entry=0x2000_0000))
    with pytest.raises(LoadError, match="0x20000000"):
        load(Board(), image)


def test_segment_smaller_in_memory_than_in_the_file_is_refused():
    with pytest.raises(LoadError, match="corrupt"):
        image_from_elf(elf64([(RAM_BASE, RAM_BASE, POWER_OFF, 4)], entry=RAM_BASE))


@pytest.mark.parametrize("name", ["empty.bin", "empty.elf", "empty.S"])
def test_empty_file_is_refused(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(LoadError, match="empty"):
        image_from_file(tmp_path / name)


def test_missing_file_is_a_load_error(tmp_path):
    with pytest.raises(LoadError, match="cannot read"):
        image_from_file(tmp_path / "nope.elf")


VALID = elf64([(RAM_BASE, RAM_BASE, words(NOP) * 16 + POWER_OFF, 0x100)], entry=RAM_BASE)


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(4, len(VALID) - 1))
def test_every_truncation_of_an_elf_is_a_load_error(cut):
    with pytest.raises(LoadError) as error:
        image_from_elf(VALID[:cut], "cut.elf")
    assert "cut.elf" in str(error.value)


@settings(max_examples=300, deadline=None)
@given(at=st.integers(0, len(VALID) - 1), byte=st.integers(0, 255))
def test_a_corrupted_elf_loads_or_fails_with_a_vlab_error(at, byte):
    data = bytearray(VALID)
    data[at] = byte
    try:
        load(Board(ram_size=0x10_0000), image_from_elf(bytes(data)))
    except VlabError as e:
        assert str(e)


@pytest.mark.parametrize("name, says", [("my.c", "C source"), ("README.md", "does not run this kind of file"),
                                        ("kernel", "does not run this kind of file"), ("k.elf", "ELF magic")])
def test_a_file_that_is_not_a_guest_is_refused_not_run_as_machine_code(tmp_path, name, says):
    (tmp_path / name).write_text("int main(void) { return 0; }\n")
    with pytest.raises(LoadError, match=says):
        image_from_file(tmp_path / name)


@pytest.mark.parametrize("suffix", [".bin", ".img", ".raw"])
def test_a_raw_binary_says_so_by_its_suffix(tmp_path, suffix):
    board = boot_file(tmp_path, f"kernel{suffix}", words(NOP, NOP) + POWER_OFF)
    assert board.run(max_insns=10).reason.value == "powered_off"
