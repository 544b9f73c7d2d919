"""A split virtqueue, the device's side (virtio 1.2, 2.7 "Split Virtqueues").

The driver and the device share three tables in guest memory:

    descriptor table, 16-byte aligned      available ring (driver area)     used ring (device area)
    one 16-byte entry per buffer:          2-byte aligned                   4-byte aligned
      +0  addr   le64  guest-physical        +0 flags le16  NO_INTERRUPT 1    +0 flags le16  NO_NOTIFY 1
      +8  len    le32                        +2 idx   le16                    +2 idx   le16
      +12 flags  le16  NEXT 1, WRITE 2,      +4 ring[size]: chain heads,      +4 ring[size]: {le32 id,
                       INDIRECT 4               le16 each                        le32 len}
      +14 next   le16  (with NEXT)           +4+2*size used_event le16        +4+8*size avail_event le16

The driver offers a chain of descriptors by writing its head into avail.ring and
then advancing avail.idx; the device takes it, does the I/O, writes {head, bytes
written} into used.ring and advances used.idx. Both indices run free, modulo 2^16:
an entry's slot is idx % size, and the queue size is a power of 2 so the slots
stay in sequence when an index wraps. The device remembers `last_avail` (the
next entry it will take) and `used_idx` (the next one it will fill): the only
state of a queue that is not in guest memory, and what migrates with it (`state`).

Ordering: the driver writes the entries, then (barrier) the index; the device
reads the index, then (barrier) the entries, and writes used entries, then
(barrier) used.idx. vlab's devices run while the guest is stopped, so these
barriers hold by construction; they are named below where they stand.

Everything read from these tables is the guest's word, not a fact: an index past
the table, a chain that never ends, a buffer outside RAM or an index that jumps
further than the queue is long raise `RingError`, and the device answers by
stopping and asking for a reset (DEVICE_NEEDS_RESET), as the specification allows.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vlab.errors import VlabError
from vlab.machine.device_state import Fields
from vlab.machine.guest_memory import GuestMemory, GuestMemoryError

DESC_SIZE = 16
DESC_F_NEXT, DESC_F_WRITE, DESC_F_INDIRECT = 1, 2, 4
AVAIL_F_NO_INTERRUPT = 1
USED_F_NO_NOTIFY = 1
MAX_QUEUE_SIZE = 32768
ALIGNMENT = {"descriptor table": 16, "available ring": 2, "used ring": 4}


class RingError(VlabError):
    """The driver broke a rule of the split ring: the device stops and asks for a reset."""


@dataclass(frozen=True)
class Buffer:
    """One descriptor's buffer: where, how long, and whether the device writes it (else reads it)."""

    address: int
    length: int
    writable: bool


@dataclass(frozen=True)
class Chain:
    """A chain of descriptors taken from the available ring, named by its head."""

    head: int
    buffers: tuple[Buffer, ...]

    @property
    def readable(self) -> tuple[Buffer, ...]:
        return tuple(b for b in self.buffers if not b.writable)

    @property
    def writable(self) -> tuple[Buffer, ...]:
        return tuple(b for b in self.buffers if b.writable)


def vring_need_event(event: int, new: int, old: int) -> bool:
    """Did an index moving from `old` to `new` pass `event`? (The specification's EVENT_IDX rule.)"""
    return (new - event - 1) & 0xFFFF < (new - old) & 0xFFFF


def ring_sizes(size: int) -> dict[str, int]:
    """The bytes each area of a queue of `size` entries spans (with EVENT_IDX's trailing fields)."""
    return {"descriptor table": DESC_SIZE * size, "available ring": 6 + 2 * size, "used ring": 6 + 8 * size}


def check_layout(memory: GuestMemory, size: int, max_size: int, areas: dict[str, int]) -> None:
    """RingError unless a queue of `size` entries at these addresses is one a device may use."""
    if not 0 < size <= min(max_size, MAX_QUEUE_SIZE) or size & (size - 1):
        raise RingError(f"queue size {size} is not a power of 2 between 1 and {min(max_size, MAX_QUEUE_SIZE)}")
    for name, address in areas.items():
        if address % ALIGNMENT[name]:
            raise RingError(f"the {name} at {address:#x} is not {ALIGNMENT[name]}-byte aligned")
        if not memory.contains(address, ring_sizes(size)[name]):
            raise RingError(f"the {name} ({ring_sizes(size)[name]} bytes at {address:#x}) is outside the guest's RAM")


class SplitQueue:
    """One virtqueue as the device sees it, once the driver has made it ready."""

    def __init__(self, memory: GuestMemory, size: int, desc: int, driver: int, device: int, event_idx: bool,
                 max_size: int = MAX_QUEUE_SIZE):
        check_layout(memory, size, max_size, {"descriptor table": desc, "available ring": driver, "used ring": device})
        self.memory, self.size, self.event_idx = memory, size, event_idx
        self.desc, self.driver, self.device = desc, driver, device
        self.last_avail = 0  # the next available entry the device will take
        self.used_idx = 0  # the next used entry the device will fill

    # --- migration ------------------------------------------------------------------------

    def state(self) -> dict:
        """The device's two indices, as plain data. The tables are guest RAM and travel as its pages;
        chains taken and not yet returned number last_avail - used_idx (mod 2^16)."""
        return {"last_avail": self.last_avail, "used_idx": self.used_idx}

    def restore(self, state: object, where: str) -> None:
        """Take the indices `state()` gave. Guest memory is not read: on the destination of a
        post-copy migration the rings may not have arrived yet. MigrationError naming `where` if
        the state is not a queue's, or holds more chains in flight than the queue has entries."""
        fields = Fields(state, where, {"last_avail", "used_idx"})
        last_avail, used_idx = fields.integer("last_avail", 16), fields.integer("used_idx", 16)
        if (last_avail - used_idx) & 0xFFFF > self.size:  # QEMU's virtio_load refuses the same
            raise fields.bad("used_idx", used_idx, f"at most {self.size} entries behind last_avail {last_avail}")
        self.last_avail, self.used_idx = last_avail, used_idx

    # --- the driver area ---------------------------------------------------------------

    def avail_flags(self) -> int:
        return self.memory.read_u16(self.driver, "avail.flags")

    def avail_idx(self) -> int:
        return self.memory.read_u16(self.driver + 2, "avail.idx")

    def used_event(self) -> int:
        return self.memory.read_u16(self.driver + 4 + 2 * self.size, "used_event")

    def pending(self) -> int:
        """How many chains the driver has made available that the device has not taken."""
        waiting = (self.avail_idx() - self.last_avail) & 0xFFFF
        if waiting > self.size:
            raise RingError(f"avail.idx says {waiting} new chains, more than the queue's {self.size} entries "
                            f"(the device has taken up to index {self.last_avail})")
        return waiting

    def pop(self) -> Chain | None:
        """The next available chain (and the device now owns it), or None when there is none."""
        if not self.pending():
            return None
        # barrier: avail.idx was read before the entry it covers
        entry = self.last_avail
        head = self.memory.read_u16(self.driver + 4 + 2 * (entry % self.size), "avail.ring")
        chain = Chain(head, self._walk(head, f"the chain in available entry {entry}"))
        self.last_avail = (entry + 1) & 0xFFFF
        return chain

    def _walk(self, head: int, what: str) -> tuple[Buffer, ...]:
        buffers: list[Buffer] = []
        index = head
        for _ in range(self.size):  # a chain is at most `size` descriptors long: one more means a loop
            if index >= self.size:
                raise RingError(f"{what} names descriptor {index}, past the table's {self.size} entries")
            address, length, flags, following = struct.unpack(
                "<QIHH", self.memory.read(self.desc + DESC_SIZE * index, DESC_SIZE, "descriptor"))
            if flags & DESC_F_INDIRECT:
                raise RingError(f"descriptor {index} in {what} is INDIRECT: this device does not offer "
                                "VIRTIO_F_INDIRECT_DESC")
            writable = bool(flags & DESC_F_WRITE)
            if buffers and buffers[-1].writable and not writable:
                raise RingError(f"descriptor {index} in {what} is device-readable after a device-writable one")
            if length:
                try:
                    self.memory.check(address, length, f"descriptor {index} in {what}")
                except GuestMemoryError as e:
                    raise RingError(str(e)) from None
            buffers.append(Buffer(address, length, writable))
            if not flags & DESC_F_NEXT:
                return tuple(buffers)
            index = following
        raise RingError(f"{what} (head {head}) goes on past {self.size} descriptors: its NEXT links loop")

    # --- the device area --------------------------------------------------------------

    def push(self, head: int, written: int) -> None:
        """Return chain `head` to the driver, saying how many bytes the device wrote into it."""
        slot = self.used_idx % self.size
        self.memory.write(self.device + 4 + 8 * slot, struct.pack("<II", head, written), "used.ring")
        # barrier: the entry is written before the index that publishes it
        self.used_idx = (self.used_idx + 1) & 0xFFFF
        self.memory.write_u16(self.device + 2, self.used_idx, "used.idx")

    def interrupt_needed(self, old_used: int) -> bool:
        """After used.idx moved on from `old_used`: does the driver want a used-buffer notification?"""
        if self.used_idx == old_used:
            return False
        if self.event_idx:
            return vring_need_event(self.used_event(), self.used_idx, old_used)
        return not self.avail_flags() & AVAIL_F_NO_INTERRUPT

    def ask_for_notifications(self, wanted: bool) -> None:
        """Tell the driver whether to notify on new buffers (no: the device polls the ring itself).

        Without EVENT_IDX this is used.flags' NO_NOTIFY bit; with it, avail_event: the
        index whose arrival deserves a notification (the next one, or one already passed).
        """
        if self.event_idx:
            event = self.last_avail if wanted else (self.last_avail - 1) & 0xFFFF
            self.memory.write_u16(self.device + 4 + 8 * self.size, event, "avail_event")
        else:
            self.memory.write_u16(self.device, 0 if wanted else USED_F_NO_NOTIFY, "used.flags")
