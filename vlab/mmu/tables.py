"""Building translation tables in memory, as a kernel (stage 1) or a hypervisor (stage 2) does.

A `TableBuilder` writes real descriptors into a `PhysicalMemory`, taking pages for new tables
from a `FrameAllocator`. Frames can be handed out in order or deliberately scattered (seeded),
so a VM's RAM can be contiguous or spread over the host.
"""

from __future__ import annotations

import random

from vlab.mmu.descriptors import LEVEL_SHIFT, OA_MASK, Leaf, Table, decode
from vlab.mmu.memory import PhysicalMemory
from vlab.mmu.walk import Regime

PAGE = 0x1000


def zero_frame(memory: PhysicalMemory, frame: int) -> None:
    """Fill the 4 KB frame at `frame` with zeros (in one copy, where the memory allows it)."""
    bulk = getattr(memory, "write", None)
    if bulk is not None:
        bulk(frame, bytes(PAGE))
        return
    for offset in range(0, PAGE, 8):
        memory.write64(frame + offset, 0)


class OutOfFrames(Exception):
    """The allocator has no free frame left."""


class FrameAllocator:
    """4 KB frames of [base, base + size): in address order, or shuffled by `seed`.

    A frame given back is scrubbed -- zeroed in `memory` -- before anyone can get it again, as
    real hypervisors scrub pages before reuse: whoever receives a frame never sees what its last
    owner left there. (Frames that were never handed out are as `memory` started: zero.)
    """

    def __init__(self, base: int, size: int, seed: int | None = None, memory: PhysicalMemory | None = None):
        self.base, self.size, self.memory = base, size, memory
        frames = list(range(base, base + size, PAGE))
        if seed is not None:
            random.Random(seed).shuffle(frames)
        self._free = frames[::-1]  # pop() hands out the first one first
        self.used: list[int] = []

    def allocate(self, count: int = 1) -> int:
        """One frame (or `count` physically contiguous frames, for concatenated tables); its address."""
        if count == 1:
            if not self._free:
                raise OutOfFrames(f"all {self.size // PAGE} frames of {self.base:#x}.. are in use")
            frame = self._free.pop()
            self.used.append(frame)
            return frame
        free = set(self._free)
        for start in sorted(free):
            run = [start + i * PAGE for i in range(count)]
            if start % (count * PAGE) == 0 and all(f in free for f in run):
                for f in run:
                    self._free.remove(f)
                self.used += run
                return start
        raise OutOfFrames(f"no {count} contiguous, aligned free frames")

    def release(self, frame: int) -> None:
        """Give a frame back; it is zeroed now, so its next owner cannot read what was in it."""
        if self.memory is None:
            raise ValueError(f"frame {frame:#x} cannot be given back: this allocator has no memory to scrub it in")
        zero_frame(self.memory, frame)
        self.used.remove(frame)
        self._free.append(frame)

    @property
    def free(self) -> int:
        return len(self._free)


class TableBuilder:
    """Maps regions in a table tree rooted at `root` (allocated here), for one stage."""

    def __init__(self, memory: PhysicalMemory, regime: Regime, frames: FrameAllocator):
        self.memory, self.regime, self.frames = memory, regime, frames
        self.root = frames.allocate(regime.concatenated)
        self.tables = [self.root + i * PAGE for i in range(regime.concatenated)]
        # (shift, index mask) of the levels above 3, and of level 3: where an address's descriptors are
        self._indices = [(LEVEL_SHIFT[level], (1 << regime.index_bits(level)) - 1)
                         for level in range(regime.start_level, 3)]
        self._page_index = (LEVEL_SHIFT[3], (1 << regime.index_bits(3)) - 1)
        for table in self.tables:
            zero_frame(memory, table)

    def map(self, address: int, output: int, size: int, **attributes) -> None:
        """Map [address, address + size) to `output` with 4 KB pages; `attributes` go to each Leaf."""
        if (address | output | size) % PAGE:
            raise ValueError(f"map {address:#x} -> {output:#x} ({size:#x} bytes): all must be 4 KB multiples")
        for offset in range(0, size, PAGE):
            self.set_page(address + offset, Leaf(output + offset, 3, self.regime.stage, **attributes))

    def set_page(self, address: int, leaf: Leaf | None) -> int:
        """Write the level-3 descriptor for `address` (None: invalid); returns the descriptor it replaced
        (0 where there was no table to hold one)."""
        return self.set_descriptor(address, leaf.encode() if leaf is not None else 0)

    def set_descriptor(self, address: int, value: int) -> int:
        """`set_page` with the descriptor already encoded (0: invalid)."""
        slot = self._slot(address, create=value != 0)
        if slot is None:
            return 0
        replaced = self.memory.read64(slot)
        self.memory.write64(slot, value)
        return replaced

    def slot(self, address: int) -> int | None:
        """The address of the level-3 descriptor for `address`, or None where no table reaches it."""
        return self._slot(address, create=False)

    def page(self, address: int) -> Leaf | None:
        slot = self._slot(address, create=False)
        if slot is None:
            return None
        descriptor = decode(self.memory.read64(slot), 3, self.regime.stage)
        return descriptor if isinstance(descriptor, Leaf) else None

    def _slot(self, address: int, create: bool) -> int | None:
        # The descriptors' bits[1:0] as `decode` reads them above level 3 -- x0 invalid, 11 a table,
        # 01 a block -- in integers: a demand-paging fault looks here twice.
        table, memory = self.root, self.memory
        for level, (shift, mask) in enumerate(self._indices, self.regime.start_level):
            slot = table + 8 * (address >> shift & mask)
            value = memory.read64(slot)
            if not value & 1:
                if not create:
                    return None
                new = self.frames.allocate()
                zero_frame(memory, new)
                self.tables.append(new)
                memory.write64(slot, Table(new).encode())
                table = new
            elif value & 2:
                table = value & OA_MASK
            else:
                raise ValueError(f"{address:#x} is inside a block mapped at level {level}: not a page table")
        shift, mask = self._page_index
        return table + 8 * (address >> shift & mask)
