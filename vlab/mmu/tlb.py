"""A TLB: recent translations, tagged by VMID (which VM) and ASID (which guest process).

A hit skips the whole (nested) walk; a miss pays for it and fills an entry. Entries of
different VMs never match each other, so switching VMs needs no flush. The guest's `tlbi`
instructions and the hypervisor's stage-2 edits remove entries, as the operations below do.

An entry covers one 4 KB page, even where the guest's stage 1 maps a block (2 MiB, 1 GiB): a
block's pages are filled one by one. A TLBI by VA must still remove the whole block's entry, as
hardware keeps one: so, as QEMU's TLB does, each VM keeps one region that covers every block its
entries came from, and a TLBI by VA inside that region removes all of the VM's entries (removing
more than asked is always allowed; keeping an entry the guest invalidated never is).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

PAGE_SHIFT = 12
_U64 = (1 << 64) - 1


class Entry(NamedTuple):
    """One cached translation: output page, the IPA page it went through, what EL1 and EL0 may do.
    (A named tuple: one is made on every fill, and a frozen dataclass costs several times more.)"""
    pa_page: int
    ipa_page: int
    perms_el1: int  # UC_PROT-style bits: 1 read, 2 write, 4 execute
    perms_el0: int
    global_: bool  # nG clear: valid for every ASID


class TLB:
    """`capacity` entries, least recently used out first; hit and miss counters."""

    def __init__(self, capacity: int = 64):
        self.capacity = capacity
        self._entries: OrderedDict[tuple[int, int | None, int], Entry] = OrderedDict()
        self._blocks: dict[int, tuple[int, int]] = {}  # VMID -> (base, mask): every block its entries came from
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, vmid: int, asid: int, va: int) -> Entry | None:
        """The entry translating `va` for this VM and process, counting a hit or a miss."""
        # This process's entry, then a global one (every TLB fill asks: no loop, no tuple of keys)
        page, entries = va >> PAGE_SHIFT, self._entries
        key = (vmid, asid, page)
        entry = entries.get(key)
        if entry is None:
            key = (vmid, None, page)
            entry = entries.get(key)
            if entry is None:
                self.misses += 1
                return None
        entries.move_to_end(key)
        self.hits += 1
        return entry

    def insert(self, vmid: int, asid: int, va: int, entry: Entry, leaf_shift: int = PAGE_SHIFT) -> None:
        """Keep `entry` for `va`'s page; `leaf_shift`: log2 of the size of the stage-1 leaf it came from."""
        if leaf_shift != PAGE_SHIFT:
            self._cover(vmid, va, leaf_shift)
        key = (vmid, None if entry.global_ else asid, va >> PAGE_SHIFT)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def _cover(self, vmid: int, va: int, shift: int) -> None:
        """Widen the VM's block region until it holds the block of `va` too."""
        mask = _U64 & ~((1 << shift) - 1)
        if vmid in self._blocks:
            base, wider = self._blocks[vmid]
            mask &= wider
            while (va ^ base) & mask:
                mask = mask << 1 & _U64
        self._blocks[vmid] = (va & mask, mask)

    def in_a_block(self, vmid: int, va: int) -> bool:
        """Is `va` in the VM's block region (a TLBI by VA there removes all of the VM's entries)?"""
        region = self._blocks.get(vmid)
        return region is not None and va & region[1] == region[0]

    def _drop(self, keep) -> int:
        doomed = [k for k, e in self._entries.items() if not keep(k, e)]
        for key in doomed:
            del self._entries[key]
        return len(doomed)

    # --- the flush operations (TLBI ...), each returning how many entries went ---

    def vaae1(self, vmid: int, va: int) -> int:
        """TLBI VAAE1: one VA, for every ASID."""
        if self.in_a_block(vmid, va):
            return self.vmalle1(vmid)
        page = va >> PAGE_SHIFT
        return self._drop(lambda k, e: not (k[0] == vmid and k[2] == page))

    def vmalle1(self, vmid: int) -> int:
        """TLBI VMALLE1: every stage-1 entry of the current VM."""
        self._blocks.pop(vmid, None)
        return self._drop(lambda k, e: k[0] != vmid)

    def vae1(self, vmid: int, asid: int, va: int) -> int:
        """TLBI VAE1: one VA, for one ASID (and global entries)."""
        if self.in_a_block(vmid, va):
            return self.vmalle1(vmid)
        page = va >> PAGE_SHIFT
        return self._drop(lambda k, e: not (k[0] == vmid and k[2] == page and k[1] in (asid, None)))

    def aside1(self, vmid: int, asid: int) -> int:
        """TLBI ASIDE1: every non-global entry of one ASID."""
        return self._drop(lambda k, e: not (k[0] == vmid and k[1] == asid))

    def ipas2e1(self, vmid: int, ipa: int) -> int:
        """TLBI IPAS2E1 (+ VMALLE1, as a hypervisor must follow it): entries through one IPA page."""
        page = ipa >> PAGE_SHIFT
        return self._drop(lambda k, e: not (k[0] == vmid and e.ipa_page == page))

    def alle1(self) -> int:
        """TLBI ALLE1: everything, every VM."""
        self._blocks.clear()
        return self._drop(lambda k, e: False)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
