"""Physical memory as translation tables see it: 64-bit little-endian words at physical addresses.

Anything with `contains`, `read64` and `write64` will do (a walker reads nothing else):
`BufferMemory` over a bytearray or a ctypes buffer (the host memory of vlab.hyp), and
`BoardMemory` over the RAM of a vlab.machine `Board` (what the guest itself sees).
"""

from __future__ import annotations

from typing import Protocol


class PhysicalMemory(Protocol):
    def read64(self, address: int) -> int:
        """The little-endian 64-bit word at `address` (which `contains`)."""
    def write64(self, address: int, value: int) -> None:
        """Store a 64-bit word at `address`, little-endian."""
    def contains(self, address: int, length: int = 8) -> bool:
        """Whether [address, address + length) is memory (not a hole, not a device)."""


class BufferMemory:
    """`size` bytes of memory starting at physical address `base`, backed by a bytearray (or any buffer)."""

    def __init__(self, base: int, size: int, buffer=None):
        self.base, self.size = base, size
        self.data = memoryview(buffer if buffer is not None else bytearray(size)).cast("B")

    def contains(self, address: int, length: int = 8) -> bool:
        return self.base <= address and address + length <= self.base + self.size

    def _offset(self, address: int, length: int) -> int:
        if not self.contains(address, length):
            raise IndexError(f"{length} bytes at {address:#x} are outside {self.base:#x}..{self.base + self.size:#x}")
        return address - self.base

    def read64(self, address: int) -> int:
        o = self._offset(address, 8)
        return int.from_bytes(self.data[o:o + 8], "little")

    def write64(self, address: int, value: int) -> None:
        o = self._offset(address, 8)
        self.data[o:o + 8] = (value & (2**64 - 1)).to_bytes(8, "little")

    def read(self, address: int, length: int) -> bytes:
        o = self._offset(address, length)
        return bytes(self.data[o:o + length])

    def write(self, address: int, data: bytes) -> None:
        o = self._offset(address, len(data))
        self.data[o:o + len(data)] = data


class BoardMemory:
    """The flash and RAM of a vlab.machine `Board`, read and written through the board."""

    def __init__(self, board):
        self.board = board

    def contains(self, address: int, length: int = 8) -> bool:
        region = self.board.region_at(address, length)
        return region is not None and region.kind != "device"

    def read64(self, address: int) -> int:
        return int.from_bytes(self.board.read_memory(address, 8), "little")

    def write64(self, address: int, value: int) -> None:
        self.board.write_memory(address, (value & (2**64 - 1)).to_bytes(8, "little"))

    def read(self, address: int, length: int) -> bytes:
        return self.board.read_memory(address, length)

    def write(self, address: int, data: bytes) -> None:
        self.board.write_memory(address, data)
