"""The request ring Xen and dom0 share: I/O requests for dom0's device model, in one page of memory.

The page has the layout of Xen's split-driver rings (xen/include/public/io/ring.h, checked), and
each slot holds one of Xen's I/O requests, `ioreq_t` (xen/include/public/hvm/ioreq.h, checked):

    +0   req_prod   u32   requests Xen has put in the ring (a free-running index)
    +4   req_event  u32
    +8   rsp_prod   u32   requests dom0 has answered (dom0 answers in order: it is also its next request)
    +12  rsp_event  u32
    +16  private 4, padding 44
    +64  ring[64]   ioreq_t, 32 bytes each; the answer overwrites its request in place (a union)

    ioreq_t   +0 addr u64 (the guest's physical address)   +8 data u64   +16 count u32   +20 size u32
              +24 vp_eport u32   +28 pad u16   +30 state:4 data_is_ptr:1 dir:1 df:1   +31 type u8

A slot is index & 63: a ring holds as many entries as fit after the header, rounded down to a power
of two (io/ring.h's __RING_SIZE: 4032 / 32 = 126 -> 64). Xen's own ioreq servers keep one ioreq_t
per vCPU in a shared page (`shared_iopage`) rather than a ring; vlab puts the same requests in a
split-driver ring so that one page serves every vCPU of a domain, as a backend's ring does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RING_SIZE = 64
HEADER = 64
SLOT = 32
REQ_PROD, REQ_EVENT, RSP_PROD, RSP_EVENT = 0, 4, 8, 12
IOREQ_WRITE, IOREQ_READ = 0, 1
STATE_IOREQ_NONE, STATE_IOREQ_READY, STATE_IOREQ_INPROCESS, STATE_IORESP_READY = 0, 1, 2, 3
IOREQ_TYPE_COPY = 1  # an MMIO access
_IOREQ = struct.Struct("<QQIIIHBB")  # addr, data, count, size, vp_eport, pad, state|data_is_ptr|dir|df, type
_U32 = 0xFFFF_FFFF


@dataclass(frozen=True)
class IoRequest:
    """One MMIO access of a guest, as Xen hands it to a device model."""

    addr: int
    size: int
    is_read: bool
    data: int = 0  # the value written (a write), or the value read (an answer to a read)
    port: int = 0  # the event channel the device model notifies Xen on
    state: int = STATE_IOREQ_READY

    def pack(self) -> bytes:
        flags = self.state | (IOREQ_READ if self.is_read else IOREQ_WRITE) << 5
        return _IOREQ.pack(self.addr, self.data, 1, self.size, self.port, 0, flags, IOREQ_TYPE_COPY)

    @classmethod
    def unpack(cls, data: bytes) -> IoRequest:
        addr, value, _count, size, port, _pad, flags, _type = _IOREQ.unpack(data)
        return cls(addr, size, bool(flags >> 5 & 1), value, port, flags & 0xF)


class RingError(Exception):
    """The other side broke the ring's rules (a malformed index or answer): named, with what was expected."""


class Ring:
    """The ring in the page at IPA `address` of `vm` (dom0), as Xen sees it: Xen produces requests
    and consumes answers; `answered` counts the answers Xen has taken."""

    def __init__(self, vm, address: int):
        self.vm, self.address = vm, address
        self.answered = 0

    def reset(self) -> None:
        """SHARED_RING_INIT: both indices 0, both event thresholds 1."""
        self.vm.write_memory(self.address, struct.pack("<IIII", 0, 1, 0, 1) + bytes(HEADER - 16))
        self.answered = 0

    def _index(self, offset: int) -> int:
        return struct.unpack("<I", self.vm.read_memory(self.address + offset, 4))[0]

    def _slot(self, index: int) -> int:
        return self.address + HEADER + SLOT * (index & (RING_SIZE - 1))

    def push(self, request: IoRequest) -> int:
        """Put `request` in the next slot, then publish it (the slot before the index: Xen's wmb); its index."""
        index = self._index(REQ_PROD)
        if (index - self.answered) & _U32 >= RING_SIZE:
            raise RingError(f"the ring at {self.address:#x} is full: {RING_SIZE} requests wait for dom0")
        self.vm.write_memory(self._slot(index), request.pack())
        self.vm.write_memory(self.address + REQ_PROD, struct.pack("<I", (index + 1) & _U32))
        return index

    def take_answers(self) -> list[tuple[int, IoRequest]]:
        """The answers dom0 has published since the last call, each (its request's index, the answer).

        RingError when dom0 answered more than was asked, or an answer is not marked as one."""
        produced, requested = self._index(RSP_PROD), self._index(REQ_PROD)
        new = (produced - self.answered) & _U32
        if new > (requested - self.answered) & _U32:
            raise RingError(f"rsp_prod is {produced} but only {requested} requests were made (Xen has taken "
                            f"{self.answered} answers): dom0 answered requests nobody made")
        answers = []
        for i in range(new):
            index = (self.answered + i) & _U32
            answer = IoRequest.unpack(self.vm.read_memory(self._slot(index), SLOT))
            if answer.state != STATE_IORESP_READY:
                raise RingError(f"slot {index & (RING_SIZE - 1)} (request {index}) is published as answered but "
                                f"its state is {answer.state}, not STATE_IORESP_READY ({STATE_IORESP_READY})")
            answers.append((index, answer))
        self.answered = produced
        return answers
