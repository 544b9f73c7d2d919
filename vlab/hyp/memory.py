"""Memory virtualization: host physical memory, and each VM's RAM as host frames behind stage 2.

    guest VA --(guest's stage 1)--> IPA --(this module's stage-2 tables)--> host PA

The host's memory is one buffer (`HostMemory`); every VM gets frames of it through its own
stage-2 tables, which live in host memory too. A VM's RAM can be laid out contiguously,
scattered over the host (seeded), or not at all until touched (demand paging: the first
access to each page faults to the hypervisor, which gives it a frame). Anything the stage-2
tables do not map -- the UART's IPA, say -- faults to the hypervisor, which is how devices
are emulated.
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import random
import struct
from typing import Callable

from vlab.mmu.descriptors import OA_MASK, Leaf
from vlab.mmu.memory import BufferMemory
from vlab.mmu.tables import PAGE, FrameAllocator, OutOfFrames, TableBuilder
from vlab.mmu.walk import LEVEL_SHIFT, Access, Regime, Translation, walk

# Where host physical memory appears in each core's (Unicorn's) physical address map.
HOST_BASE = 0x80_0000_0000
# VTCR_EL2: T0SZ = 24 (a 40-bit IPA space), SL0 = 1 (start at level 1, two concatenated tables).
VTCR_T0SZ, VTCR_SL0 = 24, 1
S2_READ, S2_WRITE = 1, 2
BLOCK = 0x20_0000  # the IPA span of one level-3 table (512 pages)
LAYOUTS = ("contiguous", "scattered", "demand")
# A page of RAM at stage 2 (Normal write-back memory, readable, writable or not), its frame left out:
# encoded once, as every demand-paging fault maps one.
_RAM_PAGE = {writable: Leaf(0, 3, 2, attr=0b1111, ap=S2_READ | (S2_WRITE if writable else 0)).encode()
             for writable in (False, True)}


def zeroed_host_buffer(size: int) -> tuple[mmap.mmap, int]:
    """`size` bytes of zeroed host memory, and their address for Unicorn to map.

    An anonymous mapping: the kernel supplies zero pages as they are first touched, so a VM's
    128 MiB costs nothing until its guest uses them (a ctypes buffer is zeroed up front: 0.1 s).
    """
    buffer = mmap.mmap(-1, size)
    return buffer, ctypes.addressof(ctypes.c_char.from_buffer(buffer))


class HostMemory:
    """The physical machine's RAM: one buffer, handed out in 4 KB frames."""

    def __init__(self, size: int = 0x1000_0000, seed: int | None = None):
        """`size` bytes; with a `seed`, frames are handed out in a shuffled order (VMs interleave)."""
        self.size = size
        self.buffer, self.address = zeroed_host_buffer(size)
        self.memory = BufferMemory(0, size, self.buffer)
        self.frames = FrameAllocator(0, size, seed, self.memory)  # scrubs every frame given back
        self.owner: dict[int, str] = {}  # frame -> who uses it ("vm1 RAM", "vm1 stage-2 table", ...)
        self.sharers: dict[int, int] = {}  # frame -> how many VM pages map it copy-on-write
        # Free frames promised to VMs: the demand-paged pages and tables they will take, the copies
        # their shared pages will need on a write. No other VM may take them (VmMemory.take_frame).
        self.reserved = 0

    @property
    def unpromised(self) -> int:
        """Free frames no VM has been promised: what a new VM, or one beyond its promise, may take."""
        return self.frames.free - self.reserved


def frames_needed(ram_base: int, ram_size: int, layout: str) -> int:
    """The host frames a VM's memory takes when it is made: its stage-2 root table and, unless its
    RAM is demand-paged (then each page takes a frame when the guest first touches it), the RAM and
    the tables below the root that map it."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown RAM layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    regime = Regime.stage2(VTCR_T0SZ, VTCR_SL0)
    if layout == "demand":
        return regime.concatenated
    last = ram_base + ram_size - 1
    # a table at level L maps one (L-1)-level entry's span: count the spans the RAM touches
    tables = sum((last >> LEVEL_SHIFT[level - 1]) - (ram_base >> LEVEL_SHIFT[level - 1]) + 1
                 for level in range(regime.start_level + 1, 4))
    return regime.concatenated + tables + ram_size // PAGE


class VmMemory:
    """One VM's RAM: `ram_size` bytes of IPA space at `ram_base`, backed by host frames via stage 2.

    Every frame the VM receives is zero or holds its own data. What it may take later is promised
    when it is made, if the host has it: the frames of its demand-paged RAM and tables, and one
    per page it shares (for the copy a write makes). A VM promised nothing (a demand-paged VM
    larger than the host's free memory: overcommitted) takes only frames promised to no one, so
    its neighbours' pages never depend on what it touches. After `write_protect`, every write
    to its RAM -- the guest's, through a stage-2 permission fault, or the loader's -- is in `dirty`.
    Whenever a valid stage-2 entry changes, `on_change` (set by the VM) is told its IPA page, or
    None for many: every TLB that may hold the old entry, on every core running the VM, must
    forget it, as a broadcast `TLBI IPAS2E1IS` (or `VMALLS12E1IS`) does on hardware.
    """

    def __init__(self, host: HostMemory, ram_base: int, ram_size: int, layout: str = "contiguous",
                 seed: int = 0, vmid: int = 1):
        frames_needed(ram_base, ram_size, layout)  # refuses an unknown layout
        self.host, self.ram_base, self.ram_size, self.layout, self.vmid = host, ram_base, ram_size, layout, vmid
        self.regime = Regime.stage2(VTCR_T0SZ, VTCR_SL0)
        promise = frames_needed(ram_base, ram_size, "contiguous") - frames_needed(ram_base, ram_size, "demand") \
            if layout == "demand" else 0
        fits = host.unpromised >= self.regime.concatenated + promise
        self.promised = 0
        self.tables = TableBuilder(host.memory, self.regime, self)  # the root: not part of the promise
        self.promised = promise if fits else 0
        self._promise_made = fits or not promise
        host.reserved += self.promised
        self.dirty: set[int] = set()  # IPA pages written since write protection was turned on
        self._write_protected: set[int] = set()
        self._logging = False  # write_protect() was called: record every write from now on
        self.shared: set[int] = set()  # IPA pages mapped read-only onto a frame shared with others
        self.demand_faults = 0
        self.released = False  # its frames went back to the host (the VM migrated away)
        # Told the IPA page (or None: many) whenever a stage-2 entry that was valid changes, so that
        # every TLB that may hold the old one can forget it (the VM broadcasts it to all cores).
        self.on_change: Callable[[int | None], None] | None = None
        self._claim(self.tables.tables, "stage-2 table")
        if layout != "demand":
            pages = list(range(ram_base, ram_base + ram_size, PAGE))
            frames = [self.allocate() for _ in pages]
            if layout == "scattered":
                random.Random(seed).shuffle(frames)
            for ipa, frame in zip(pages, frames):
                self._map(ipa, frame)

    def allocate(self, count: int = 1) -> int:
        """Take `count` contiguous host frames for this VM (its tables' allocator too): from what it
        was promised while that lasts, else from what no VM was promised (OutOfFrames if none is left)."""
        host = self.host
        if self.promised >= count:
            self.promised -= count
            host.reserved -= count
        elif host.unpromised < count:
            why = "has used every frame it was promised" if self._promise_made else \
                "was promised none (it was made larger than the host's free memory: overcommitted)"
            raise OutOfFrames(f"host out of memory: vm{self.vmid} {why}, and the host's {host.frames.free:,} "
                              "free frames are all promised to other VMs")
        return host.frames.allocate(count)

    @property
    def vttbr(self) -> int:
        """VTTBR_EL2: the VMID in bits [63:48], the stage-2 table's base address below."""
        return self.vmid << 48 | self.tables.root

    def _claim(self, frames, what: str) -> None:
        for frame in frames:
            self.host.owner[frame] = f"vm{self.vmid} {what}"

    def _map(self, ipa: int, frame: int, writable: bool = True, notify: bool = True) -> None:
        """Write the stage-2 entry of one page; if it replaces a valid one, tell `on_change` (unless
        the caller will, for many at once)."""
        before = len(self.tables.tables)
        replaced = self.tables.set_descriptor(ipa, frame | _RAM_PAGE[writable])
        self._claim([frame], "RAM")
        self._claim(self.tables.tables[before:], "stage-2 table")
        if notify and self.on_change is not None and replaced & 0b11 == 0b11:  # it replaced a page descriptor
            self.on_change(ipa)

    def map_device(self, ipa: int, pa: int, size: int) -> None:
        """Map a device's registers at `ipa` to host physical address `pa` (passthrough, vlab.hyp.assign):
        device memory (MemAttr Device-nGnRE), readable and writable, never executable."""
        before = len(self.tables.tables)
        self.tables.map(ipa, pa, size, attr=0b0001, ap=S2_READ | S2_WRITE, xn=True)
        self._claim(self.tables.tables[before:], "stage-2 table")

    def in_ram(self, ipa: int | None) -> bool:
        return ipa is not None and self.ram_base <= ipa < self.ram_base + self.ram_size

    def translate(self, ipa: int, access: Access = Access.READ) -> Translation:
        """The stage-2 walk of one IPA."""
        return walk(self.host.memory, self.regime, self.tables.root, ipa, access)

    def frame_of(self, ipa: int) -> int | None:
        """The host frame stage 2 maps `ipa`'s page to, or None."""
        slot = self.tables.slot(ipa)
        value = 0 if slot is None else self.host.memory.read64(slot)
        return value & OA_MASK if value & 0b11 == 0b11 else None  # a page descriptor (bit 0: valid)

    def mapping(self) -> list[tuple[int, int]]:
        """(IPA page, host frame) for every RAM page mapped, in IPA order.

        Read a level-3 table (2 MiB of IPA space) at a time, skipping the ranges that have none:
        a demand-paged VM of 128 MiB with a few pages touched is a few tables, not 32,768 walks."""
        out, end = [], self.ram_base + self.ram_size
        for chunk in range(self.ram_base & ~(BLOCK - 1), end, BLOCK):
            slot = self.tables.slot(max(chunk, self.ram_base))
            if slot is None:
                continue
            table = slot & ~(PAGE - 1)
            entries = struct.unpack("<512Q", self.host.memory.read(table, PAGE))
            for i, value in enumerate(entries):
                ipa = chunk + i * PAGE
                if value & 0b11 == 0b11 and self.ram_base <= ipa < end:
                    out.append((ipa, value & OA_MASK))
        return out

    # --- the hypervisor's side of a stage-2 fault ------------------------------------------------

    def resolve(self, ipa: int, write: bool) -> str | None:
        """Fix a stage-2 fault on RAM if it is ours to fix (demand paging, copy-on-write, dirty
        tracking); what was done, or None when the fault is not about RAM the VM owns."""
        if not self.in_ram(ipa):
            return None
        page = ipa & ~(PAGE - 1)
        frame = self.frame_of(page)
        if frame is None and self.layout == "demand":
            frame = self._allocate(page, writable=write or not self._logging)
            self.demand_faults += 1
            if self._logging and write:
                self.dirty.add(page)
            elif self._logging:
                self._write_protected.add(page)  # mapped read-only: its first write will fault, and be seen
            return f"demand paging: IPA page {page:#x} -> new host frame {frame:#x}"
        if frame is None:
            return None
        if write and (page in self.shared or page in self._write_protected):
            if self._logging:
                self.dirty.add(page)
            self._write_protected.discard(page)
            if page in self.shared:
                action = self._break_sharing(page, frame)
            else:
                self._map(page, frame, writable=True)
                action = f"dirty tracking: IPA page {page:#x} written, made writable again"
        elif self.translate(ipa, Access.WRITE if write else Access.READ).fault is None:
            # Another vCPU's fault fixed the entry after this one's TLB had cached the old one: retry.
            return f"IPA page {page:#x} is already mapped for this access: the guest retries"
        else:
            return None
        return action

    def _allocate(self, page: int, writable: bool = True) -> int:
        """A fresh host frame (zero: frames are scrubbed when given back), mapped at `page`."""
        frame = self.allocate()
        self._map(page, frame, writable)
        return frame

    def _break_sharing(self, page: int, frame: int) -> str:
        """A write to a shared page: copy it to a frame of our own (or keep it, if we are its last user)."""
        self.shared.discard(page)
        self.host.sharers[frame] -= 1
        if self.host.sharers[frame] == 0:
            del self.host.sharers[frame]
            self._map(page, frame)
            return f"copy-on-write: IPA page {page:#x} was the last sharer of frame {frame:#x}: made writable"
        copy = self.allocate()
        self.host.memory.write(copy, self.host.memory.read(frame, PAGE))
        self._map(page, copy)
        return f"copy-on-write: IPA page {page:#x} copied from shared frame {frame:#x} to {copy:#x}"

    def share(self, page: int, frame: int, notify: bool = True) -> None:
        """Map `page` read-only onto `frame`, which holds identical contents, and give ours back."""
        own = self.frame_of(page)
        self._map(page, frame, writable=False, notify=notify)
        self.host.owner[frame] = "shared RAM"
        self.host.sharers[frame] = self.host.sharers.get(frame, 0) + 1
        self.shared.add(page)
        if own is not None and own != frame and own not in self.host.sharers:
            self.host.frames.release(own)  # scrubbed: the next VM to get it must not read this one's data
            self.host.owner.pop(own, None)
            self.promised += 1  # a write will need a frame for its copy: this one stays ours to take
            self.host.reserved += 1

    def write_protect(self) -> None:
        """Make every RAM page read-only at stage 2 and forget what was dirty (a migration round starts).

        From now on every write to RAM is recorded in `dirty`: the guest's first write to a page
        faults and is logged, and so are pages demand-paged in and writes by IPA (the loader's).
        """
        self.dirty.clear()
        self._logging = True
        for ipa, frame in self.mapping():
            self._map(ipa, frame, writable=False, notify=False)
            self._write_protected.add(ipa)
        if self.on_change is not None:
            self.on_change(None)  # every translation cached before now may still allow writes

    def release(self) -> None:
        """Give every frame back to the host -- RAM and stage-2 tables -- once the VM has left it (a
        migration). The allocator scrubs each: the next VM to get it cannot read this one's data. A
        frame shared copy-on-write stays with its other users. The memory cannot be used after."""
        for page, frame in self.mapping():
            if page in self.shared:
                self.host.sharers[frame] -= 1
                if self.host.sharers[frame]:
                    continue
                del self.host.sharers[frame]
            self._give_back(frame)
        for table in self.tables.tables:
            self._give_back(table)
        self.released = True

    def _give_back(self, frame: int) -> None:
        self.host.frames.release(frame)  # scrubbed there
        self.host.owner.pop(frame, None)

    # --- the loader's and the debugger's view: memory by IPA ------------------------------------

    def _frame_for(self, page: int, allocate: bool) -> int | None:
        frame = self.frame_of(page)
        if frame is None and allocate and self.in_ram(page):
            frame = self._allocate(page)  # the loader's pages: not a fault, not counted
        return frame

    def write(self, ipa: int, data: bytes) -> None:
        """Write guest RAM by IPA, giving pages frames if the layout is on demand (a loader does this).

        A page shared copy-on-write is copied first: the other VMs must not see this write.
        """
        self._check_held()
        for start, length in self._chunks(ipa, len(data)):
            page = start & ~(PAGE - 1)
            if page in self.shared:
                self._break_sharing(page, self.frame_of(page))
                self._write_protected.discard(page)
            frame = self._frame_for(page, allocate=True)
            if frame is None:
                raise ValueError(f"IPA {start:#x} is not in the VM's RAM")
            self.host.memory.write(frame + start % PAGE, data[start - ipa:start - ipa + length])
            if self._logging:
                self.dirty.add(page)

    def read(self, ipa: int, size: int) -> bytes:
        """Read guest RAM by IPA; pages with no frame yet read as zeros."""
        self._check_held()
        out = bytearray()
        for start, length in self._chunks(ipa, size):
            frame = self._frame_for(start & ~(PAGE - 1), allocate=False)
            out += bytes(length) if frame is None else self.host.memory.read(frame + start % PAGE, length)
        return bytes(out)

    def _check_held(self) -> None:
        if self.released:
            raise ValueError(f"VM {self.vmid}'s RAM went back to the host when it migrated away: read it on the "
                             "host it migrated to")

    @staticmethod
    def _chunks(address: int, size: int):
        end = address + size
        while address < end:
            length = min(end, (address & ~(PAGE - 1)) + PAGE) - address
            yield address, length
            address += length


def share_identical_pages(memories: list[VmMemory]) -> int:
    """Content-based page sharing: map every set of identical RAM pages onto one frame, copy-on-write.

    Pages are compared by a hash, then in full. Returns how many host frames were freed. The
    VMs must not be running; each VM whose pages changed is told once (`on_change(None)`).
    """
    first: dict[bytes, list[tuple[VmMemory, int, int]]] = {}
    freed, changed = 0, set()
    for memory in memories:
        for page, frame in memory.mapping():
            if page in memory.shared:
                continue
            content = memory.host.memory.read(frame, PAGE)
            candidates = first.setdefault(hashlib.sha256(content).digest(), [])
            match = next((c for c in candidates if c[0].host.memory.read(c[2], PAGE) == content), None)
            if match is None:
                candidates.append((memory, page, frame))
                continue
            owner, owner_page, shared_frame = match
            if owner_page not in owner.shared:
                owner.share(owner_page, shared_frame, notify=False)
            memory.share(page, shared_frame, notify=False)
            freed += 1
            changed |= {id(owner), id(memory)}
    for memory in memories:
        if id(memory) in changed and memory.on_change is not None:
            memory.on_change(None)  # once per VM: its pages are read-only now, some on another frame
    return freed
