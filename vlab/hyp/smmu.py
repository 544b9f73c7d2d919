"""The SMMU: stage 2 for devices -- why passing through a device that does DMA needs more hardware.

A device that does DMA reads and writes memory itself, at the addresses its driver programs into
it. A guest's driver programs guest-physical addresses (IPAs). With nothing in between, the device
takes them for host physical addresses: it writes wherever they point -- another VM's RAM, the
hypervisor's -- and stage 2, which only the CPU's accesses go through, never sees it. An SMMU
(Arm's System MMU, the IOMMU of an Arm system) sits between devices and memory: each device's
StreamID selects a stream table entry, which points at the stage-2 tables (and VMID) of the VM the
device is assigned to, and every DMA is translated through them. A DMA outside that VM's memory
is not performed: the SMMU records an event (SMMUv3's event numbers, as Linux's arm-smmu-v3.h
names them, checked: C_BAD_STREAMID 0x02, F_TRANSLATION 0x10, F_PERMISSION 0x13).

    smmu = Smmu(host)
    smmu.attach(1, vm)             # StreamID 1's entry: vm's stage 2
    smmu.dma_write(1, ipa, data)   # translated by vm's tables, or an event
    smmu.bypass(2)                 # StreamID 2 untranslated: its addresses are host physical ones

A model of the idea, not of the SMMU's registers: stream table entries are a dict, the walk is
vlab's stage-2 walk (vlab.mmu.walk), the event queue a list.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlab.mmu.faults import Access, FaultKind
from vlab.mmu.tables import PAGE

C_BAD_STREAMID, F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION = 0x02, 0x10, 0x11, 0x12, 0x13
EVENT_NAMES = {C_BAD_STREAMID: "C_BAD_STREAMID", F_TRANSLATION: "F_TRANSLATION", F_ADDR_SIZE: "F_ADDR_SIZE",
               F_ACCESS: "F_ACCESS", F_PERMISSION: "F_PERMISSION"}
_EVENT_OF_FAULT = {FaultKind.TRANSLATION: F_TRANSLATION, FaultKind.ADDRESS_SIZE: F_ADDR_SIZE,
                   FaultKind.ACCESS_FLAG: F_ACCESS, FaultKind.PERMISSION: F_PERMISSION}
BYPASS = "bypass"


@dataclass(frozen=True)
class Event:
    """One record of the SMMU's event queue: what went wrong, for which stream, at which address."""

    number: int
    stream: int
    address: int
    what: str

    def __str__(self) -> str:
        return f"{EVENT_NAMES[self.number]} ({self.number:#04x}) from StreamID {self.stream} at {self.address:#x}: {self.what}"


class Smmu:
    """The SMMU of `host`: stream table entries, and DMA through them."""

    def __init__(self, host):
        self.host = host
        self.streams: dict[int, object] = {}  # StreamID -> the VM whose stage 2 translates it, or BYPASS
        self.events: list[Event] = []

    def attach(self, stream: int, vm) -> None:
        """The device with StreamID `stream` is `vm`'s: its DMA goes through `vm`'s stage 2."""
        if vm.memory is None:
            raise ValueError(f"VM {vm.index} has no stage-2 tables for the SMMU to use: make it with stage2=...")
        self.streams[stream] = vm

    def bypass(self, stream: int) -> None:
        """StreamID `stream` is not translated: its addresses are host physical addresses."""
        self.streams[stream] = BYPASS

    def dma_write(self, stream: int, address: int, data: bytes) -> bool:
        """The device writes `data` at `address`: True if performed, False if the SMMU stopped it (an event)."""
        physical = self._translate(stream, address, len(data), Access.WRITE)
        if physical is None:
            return False
        for pa, offset, length in physical:
            self.host.memory.memory.write(pa, data[offset:offset + length])
        return True

    def dma_read(self, stream: int, address: int, size: int) -> bytes | None:
        """The device reads `size` bytes at `address`, or None if the SMMU stopped it (an event)."""
        physical = self._translate(stream, address, size, Access.READ)
        if physical is None:
            return None
        return b"".join(self.host.memory.memory.read(pa, length) for pa, _, length in physical)

    def _translate(self, stream: int, address: int, size: int, access: Access) -> list[tuple[int, int, int]] | None:
        """(host physical address, offset in the data, length) for each page `size` bytes at `address`
        touch; None, with an event, if any of them cannot be reached."""
        entry = self.streams.get(stream)
        if entry is None:
            self.events.append(Event(C_BAD_STREAMID, stream, address, f"StreamID {stream} has no stream table entry"))
            return None
        pieces, offset = [], 0
        while offset < size:
            here = address + offset
            length = min(size - offset, PAGE - here % PAGE)
            if entry == BYPASS:
                if not self.host.memory.memory.contains(here, length):
                    self.events.append(Event(F_ADDR_SIZE, stream, here, "no host memory there"))
                    return None
                pieces.append((here, offset, length))
            else:
                t = entry.memory.translate(here, access)
                if t.fault is not None:
                    number = _EVENT_OF_FAULT.get(t.fault.kind, F_TRANSLATION)
                    self.events.append(Event(number, stream, here, f"stage 2 of VM {entry.index}: {t.fault.why}"))
                    return None
                pieces.append((t.output, offset, length))
            offset += length
        return pieces
