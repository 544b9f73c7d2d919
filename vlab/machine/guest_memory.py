"""Guest-physical memory as a device sees it: the window a DMA-capable device may read and write.

A virtio device reads the guest's rings and buffers itself, at guest-physical
addresses the guest hands it. Those addresses are guest input: the device must
check each one against the VM's RAM before touching it, or a bad driver could
make it read the host's memory -- or another VM's. `GuestMemory` is that check
in one place: RAM is [base, base + size); any access not wholly inside raises
`GuestMemoryError`, and nothing is read or written.

Attach it to whatever holds the RAM: the bare board's (`board.read_memory`,
`board.write_memory`), a VM's (its stage-2-backed `vm.memory.read/write`), or a
plain bytearray (`GuestMemory.of_buffer`) for tests and exercises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from vlab.errors import VlabError


class GuestMemoryError(VlabError, ValueError):
    """An access outside the guest's RAM (a wild pointer in a ring or descriptor)."""


@dataclass(frozen=True)
class GuestMemory:
    """RAM at guest-physical [base, base + size), read and written through the two callables."""

    base: int
    size: int
    read_bytes: Callable[[int, int], bytes]
    write_bytes: Callable[[int, bytes], None]

    @classmethod
    def of_buffer(cls, buffer: bytearray, base: int) -> GuestMemory:
        """Guest RAM held in `buffer`, its first byte at guest-physical `base`."""
        def read(address: int, size: int) -> bytes:
            return bytes(buffer[address - base:address - base + size])

        def write(address: int, data: bytes) -> None:
            buffer[address - base:address - base + len(data)] = data

        return cls(base, len(buffer), read, write)

    def contains(self, address: int, length: int) -> bool:
        """Is [address, address + length) inside RAM? (A zero-length range must still start inside.)"""
        return self.base <= address and address + max(length, 1) <= self.base + self.size

    def check(self, address: int, length: int, what: str) -> None:
        """GuestMemoryError naming `what` unless [address, address + length) is inside RAM."""
        if not self.contains(address, length):
            raise GuestMemoryError(f"{what}: {length} bytes at {address:#x} are outside the guest's RAM "
                                   f"[{self.base:#x}, {self.base + self.size:#x})")

    def read(self, address: int, size: int, what: str = "read") -> bytes:
        self.check(address, size, what)
        return self.read_bytes(address, size)

    def write(self, address: int, data: bytes, what: str = "write") -> None:
        self.check(address, len(data), what)
        self.write_bytes(address, bytes(data))

    def read_u16(self, address: int, what: str = "read") -> int:
        return int.from_bytes(self.read(address, 2, what), "little")

    def write_u16(self, address: int, value: int, what: str = "write") -> None:
        self.write(address, (value & 0xFFFF).to_bytes(2, "little"), what)
