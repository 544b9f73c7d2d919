"""Physical memory as translation tables see it: 64-bit little-endian words at physical addresses."""

from __future__ import annotations

from typing import Protocol


class PhysicalMemory(Protocol):
    def read64(self, address: int) -> int: ...
    def write64(self, address: int, value: int) -> None: ...
    def contains(self, address: int, length: int = 8) -> bool: ...


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
