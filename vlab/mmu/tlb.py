"""A TLB: recent translations, tagged by VMID (which VM) and ASID (which guest process).

A hit skips the whole (nested) walk; a miss pays for it and fills an entry. Entries of
different VMs never match each other, so switching VMs needs no flush. The guest's `tlbi`
instructions and the hypervisor's stage-2 edits remove entries, as the operations below do.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

PAGE_SHIFT = 12


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

    def insert(self, vmid: int, asid: int, va: int, entry: Entry) -> None:
        key = (vmid, None if entry.global_ else asid, va >> PAGE_SHIFT)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def _drop(self, keep) -> int:
        doomed = [k for k, e in self._entries.items() if not keep(k, e)]
        for key in doomed:
            del self._entries[key]
        return len(doomed)

    # --- the flush operations (TLBI ...), each returning how many entries went ---

    def vaae1(self, vmid: int, va: int) -> int:
        """TLBI VAAE1: one VA, for every ASID."""
        page = va >> PAGE_SHIFT
        return self._drop(lambda k, e: not (k[0] == vmid and k[2] == page))

    def vmalle1(self, vmid: int) -> int:
        """TLBI VMALLE1: every stage-1 entry of the current VM."""
        return self._drop(lambda k, e: k[0] != vmid)

    def vae1(self, vmid: int, asid: int, va: int) -> int:
        """TLBI VAE1: one VA, for one ASID (and global entries)."""
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
        return self._drop(lambda k, e: False)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
