"""A virtio-mmio driver written from the specification, in Python, for testing vlab's device model.

It talks to the device only as a guest would: 32-bit register accesses through
the bus, and rings it lays out in its own RAM (a bytearray seen through
GuestMemory). Nothing here looks inside the device.
"""

from __future__ import annotations

import struct

from vlab.machine.guest_memory import GuestMemory
from vlab.machine.virtio_mmio import TRANSPORT_SIZE, VirtioMmioBus

RAM_BASE, RAM_SIZE = 0x4000_0000, 0x40_0000
ACK, DRIVER, DRIVER_OK, FEATURES_OK, NEEDS_RESET = 1, 2, 4, 8, 64
F_EVENT_IDX, F_VERSION_1 = 1 << 29, 1 << 32
NEXT, WRITE, INDIRECT = 1, 2, 4
DESC, AVAIL, USED, DATA = 0x1000, 0x10_0000, 0x18_0000, 0x20_0000  # offsets into RAM


def guest_ram() -> tuple[bytearray, GuestMemory]:
    ram = bytearray(RAM_SIZE)
    return ram, GuestMemory.of_buffer(ram, RAM_BASE)


class Driver:
    """Drives queue `queue` of the device on transport `n` of `bus`."""

    def __init__(self, bus: VirtioMmioBus, ram: bytearray, n: int = 31, queue: int = 1):
        self.bus, self.ram, self.n, self.queue = bus, ram, n, queue
        self.desc, self.avail, self.used = RAM_BASE + DESC, RAM_BASE + AVAIL, RAM_BASE + USED
        self.data = RAM_BASE + DATA  # where buffers go: a bump allocator
        self.avail_idx = 0
        self.last_used = 0
        self.kicks = 0
        self.returned: list[tuple[int, int]] = []  # (head, len) from the used ring, in order

    # --- registers -------------------------------------------------------------------

    def r(self, reg: int) -> int:
        return self.bus.read(self.n * TRANSPORT_SIZE + reg, 4)

    def w(self, reg: int, value: int) -> None:
        self.bus.write(self.n * TRANSPORT_SIZE + reg, 4, value & 0xFFFF_FFFF)

    @property
    def status(self) -> int:
        return self.r(0x070)

    # --- memory ----------------------------------------------------------------------

    def u16(self, address: int) -> int:
        return struct.unpack_from("<H", self.ram, address - RAM_BASE)[0]

    def put16(self, address: int, value: int) -> None:
        struct.pack_into("<H", self.ram, address - RAM_BASE, value & 0xFFFF)

    def put_desc(self, index: int, address: int, length: int, flags: int, following: int) -> None:
        struct.pack_into("<QIHH", self.ram, self.desc - RAM_BASE + 16 * index, address, length, flags, following)

    def buffer(self, data: bytes) -> int:
        address = self.data
        self.ram[address - RAM_BASE:address - RAM_BASE + len(data)] = data
        self.data += len(data) + 8
        if self.data >= RAM_BASE + RAM_SIZE - 0x10000:
            self.data = RAM_BASE + DATA  # old buffers were consumed: reuse the space
        return address

    # --- initialization (virtio 1.2, 3.1.1 and 4.2.3.2) ----------------------------------

    def negotiate(self, features: int = F_VERSION_1) -> bool:
        self.w(0x070, 0)
        self.w(0x070, ACK)
        self.w(0x070, ACK | DRIVER)
        self.w(0x024, 0)
        self.w(0x020, features & 0xFFFF_FFFF)
        self.w(0x024, 1)
        self.w(0x020, features >> 32)
        self.w(0x070, ACK | DRIVER | FEATURES_OK)
        return bool(self.status & FEATURES_OK)

    def setup(self, size: int, features: int = F_VERSION_1, no_interrupt: bool = False,
              used_event: int | None = None, driver_ok: bool = True) -> None:
        self.size, self.event_idx = size, bool(features & F_EVENT_IDX)
        assert self.negotiate(features), "the device refused the features"
        for address, length in ((self.desc, 16 * size), (self.avail, 6 + 2 * size), (self.used, 6 + 8 * size)):
            self.ram[address - RAM_BASE:address - RAM_BASE + length] = bytes(length)
        self.put16(self.avail, 1 if no_interrupt else 0)
        if used_event is not None:
            self.put16(self.avail + 4 + 2 * size, used_event)
        self.w(0x030, self.queue)
        assert self.r(0x044) == 0
        self.w(0x038, size)
        for reg, address in ((0x080, self.desc), (0x090, self.avail), (0x0A0, self.used)):
            self.w(reg, address)
            self.w(reg + 4, address >> 32)
        self.w(0x044, 1)
        if driver_ok:
            self.w(0x070, ACK | DRIVER | FEATURES_OK | DRIVER_OK)

    # --- sending ---------------------------------------------------------------------

    def offer(self, segments: list[bytes], first_desc: int, writable: int = 0) -> int:
        """Chain `segments` into descriptors first_desc.. (the last `writable` device-writable); return the head."""
        count = len(segments)
        for i, data in enumerate(segments):
            flags = (NEXT if i < count - 1 else 0) | (WRITE if i >= count - writable else 0)
            index = (first_desc + i) % self.size
            self.put_desc(index, self.buffer(data), len(data), flags, (first_desc + i + 1) % self.size)
        self.put16(self.avail + 4 + 2 * (self.avail_idx % self.size), first_desc % self.size)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        return first_desc % self.size

    def make_available(self, head: int) -> bool:
        """Put descriptor `head` (filled by hand) in the available ring, publish it and notify."""
        old = self.avail_idx
        self.put16(self.avail + 4 + 2 * (old % self.size), head)
        self.avail_idx = (old + 1) & 0xFFFF
        return self.publish_and_kick(old)

    def publish_and_kick(self, old_idx: int) -> bool:
        """Publish avail.idx; notify unless the device said not to. True if it notified."""
        self.put16(self.avail + 2, self.avail_idx)
        if self.event_idx:
            event = self.u16(self.used + 4 + 8 * self.size)
            wanted = (self.avail_idx - event - 1) & 0xFFFF < (self.avail_idx - old_idx) & 0xFFFF
        else:
            wanted = not self.u16(self.used) & 1
        if wanted:
            self.w(0x050, self.queue)
            self.kicks += 1
        return wanted

    def send_batch(self, chains: list[list[bytes]], writable: int = 0) -> list[int]:
        """Offer every chain of a batch, then publish and notify once; return their heads."""
        old, heads, d = self.avail_idx, [], 0
        for segments in chains:
            heads.append(self.offer(segments, d, writable))
            d += len(segments)
        self.publish_and_kick(old)
        return heads

    def reap(self) -> list[tuple[int, int]]:
        """Take what the device returned in the used ring since last time."""
        got = []
        while self.last_used != self.u16(self.used + 2):
            slot = self.last_used % self.size
            got.append(struct.unpack_from("<II", self.ram, self.used - RAM_BASE + 4 + 8 * slot))
            self.last_used = (self.last_used + 1) & 0xFFFF
        self.returned += got
        return got
