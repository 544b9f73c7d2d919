"""The bridge to Unicorn: vlab, not Unicorn, translates every guest access that misses its TLB.

In virtual-TLB mode Unicorn ignores the guest's tables; on a TLB miss it asks our fill hook
for the physical address and permissions of the page. vlab answers with its own walk (stage 1
and stage 2), so stage 2 is enforced on the guest's real accesses. A translation that fails
returns False: Unicorn stops with PC at the instruction, and the recorded fault becomes the
abort (a stage-1 fault for the guest kernel, a stage-2 fault for the hypervisor).
"""

from __future__ import annotations

from typing import Callable

from unicorn import UC_CTL_IO_WRITE, UC_HOOK_TLB_FILL, UC_MEM_FETCH, UC_MEM_WRITE, UC_TLB_VIRTUAL

from vlab.machine.cpu import CPU, GuestException
from vlab.mmu.walk import Access

# translate(virtual address, access) -> (the physical address of that byte in the core's map,
# UC_PROT_* bits), or a
# function building the abort from the faulting instruction's PC (known only once Unicorn stops)
Translate = Callable[[int, Access], "tuple[int, int] | Callable[[int], GuestException]"]
_UC_CTL_TLB_FLUSH = 11  # unicorn_const.UC_CTL_TLB_FLUSH


def install(cpu: CPU, translate: Translate) -> None:
    """Put the core in virtual-TLB mode, with `translate` answering every TLB miss."""
    uc = cpu.uc
    uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
    # Unicorn's pages are 1 KB on Arm (QEMU's smallest Arm page), not the guest's 4 KB.
    offset_mask = uc.ctl_get_page_size() - 1
    probe_page = cpu.UNTIL & ~offset_mask

    def fill(uc, vaddr: int, access: int, entry, _user) -> bool:
        if vaddr & ~offset_mask == probe_page:
            return False  # Unicorn probing its own stop address, not the guest accessing memory
        try:
            kind = Access.FETCH if access == UC_MEM_FETCH else Access.WRITE if access == UC_MEM_WRITE else Access.READ
            answer = translate(vaddr, kind)
            if callable(answer):
                cpu.fault(answer)
                return False
            address, entry.perms = answer
            entry.paddr = address & ~offset_mask
            return True
        except Exception as e:  # noqa: BLE001 - reported as a stop, never raised into Unicorn
            cpu.report_hook_error(f"address translation of {vaddr:#x} failed: {type(e).__name__}: {e}")
            return False

    uc.hook_add(UC_HOOK_TLB_FILL, fill)


def flush(cpu: CPU) -> None:
    """Forget every cached translation (after the tables or the translation registers change)."""
    cpu.uc.ctl(_UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
