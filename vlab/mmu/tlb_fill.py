"""The bridge to Unicorn: vlab, not Unicorn, translates every guest access that misses its TLB.

In virtual-TLB mode Unicorn ignores the guest's tables; on a TLB miss it asks our fill hook
for the physical address and permissions of the page. vlab answers with its own walk (stage 1
and stage 2), so stage 2 is enforced on the guest's real accesses. A translation that fails
returns False: Unicorn stops with PC at the instruction, and the recorded fault becomes the
abort (a stage-1 fault for the guest kernel, a stage-2 fault for the hypervisor).

    guest access misses Unicorn's TLB -> fill(vaddr, access) -> translate(va, access)
        -> (address, UC_PROT bits): Unicorn caches the page and the access proceeds
        -> a builder of the abort:  recorded with cpu.fault(); the hook returns False
        -> a Python exception:      reported with cpu.report_hook_error(); returns False
"""

from __future__ import annotations

from typing import Callable, Iterable

from unicorn import UC_CTL_IO_WRITE, UC_HOOK_TLB_FILL, UC_MEM_FETCH, UC_MEM_WRITE, UC_TLB_VIRTUAL

from vlab.arch import ldst
from vlab.arch.esr import ExceptionClass, Syndrome
from vlab.machine.cpu import CPU, GuestException
from vlab.mmu.descriptors import Leaf
from vlab.mmu.faults import Access, Fault, FaultKind
from vlab.mmu.memory import PhysicalMemory
from vlab.mmu.walk import Regime, nested_walk, permission_problem

# translate(virtual address, access) -> (the physical address of that byte in the core's map,
# UC_PROT_* bits), or a
# function building the abort from the faulting instruction's PC (known only once Unicorn stops)
Translate = Callable[[int, Access], "tuple[int, int] | Callable[[int], GuestException]"]
_UC_CTL_TLB_FLUSH = 11  # unicorn_const.UC_CTL_TLB_FLUSH
_PROT = {Access.READ: 1, Access.WRITE: 2, Access.FETCH: 4}  # UC_PROT_READ, _WRITE, _EXEC


def install(cpu: CPU, translate: Translate) -> None:
    """Put the core in virtual-TLB mode, with `translate` answering every TLB miss (and vlab's own
    reads of guest memory, such as the instruction shown in a report)."""
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

    def address_for_reads(va: int) -> int | None:
        # vlab's own reads of guest memory (disassembling a faulting instruction for a report)
        # must see what the guest sees; a report must not fail, so a failure is "no memory".
        try:
            answer = translate(va, Access.READ)
        except Exception:  # noqa: BLE001
            return None
        return None if callable(answer) else answer[0]

    cpu.translate_for_reads = address_for_reads


def flush(cpu: CPU) -> None:
    """Forget every cached translation (after the tables or the translation registers change)."""
    cpu.uc.ctl(_UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)


def permissions(leaves: Iterable[Leaf], el0: bool) -> int:
    """The UC_PROT bits (1 read, 2 write, 4 execute) that every stage's leaf allows, at EL0 or EL1.

    A page is cached with all of them at once, so a later access of another kind to the same
    page is checked by Unicorn without asking vlab again.
    """
    leaves = tuple(leaves)
    return sum(bit for access, bit in _PROT.items() if not any(permission_problem(leaf, access, el0) for leaf in leaves))


def abort(cpu: CPU, fault: Fault, access: Access, va: int) -> Callable[[int], GuestException]:
    """The abort a failed translation raises, built once the faulting instruction's PC is known.

    Stage 1: a data/instruction abort to the guest kernel (EL1), "current EL" or "lower EL" as the
    access came from EL1 or EL0. Stage 2: always "from a lower EL", to the hypervisor (EL2), with
    the IPA. FAR is the exact address: Unicorn asks for a whole 1 KB page, so a load or store's
    own address is recomputed from its encoding and registers.
    """
    el, fetch = cpu.el, access is Access.FETCH

    def make(pc: int) -> GuestException:
        word = cpu.read_word(pc) or 0
        exact = pc if fetch else ldst.effective_address(word, lambda n: cpu.sp if n == 31 else cpu.x(n))
        far = va if exact is None or exact >> 10 != va >> 10 else exact
        lower = el == 0 or fault.stage == 2
        ec = {(True, True): ExceptionClass.IABT_LOWER, (True, False): ExceptionClass.IABT_CURRENT,
              (False, True): ExceptionClass.DABT_LOWER, (False, False): ExceptionClass.DABT_CURRENT}[fetch, lower]
        ipa = None if fault.ipa is None else fault.ipa if fault.s1ptw else fault.ipa + (far - va)
        return GuestException(Syndrome(ec, fault.iss(access)), pc, pc, el, far=far, detail=str(fault),
                              target_el=fault.stage, ipa=ipa)
    return make


def guest_translate(cpu: CPU, memory: PhysicalMemory, stage2: Regime | None, vttbr: int) -> Translate:
    """A `translate` for `install`: the guest's own stage 1 (from its SCTLR_EL1, TCR_EL1 and TTBR0_EL1,
    read at each miss) nested in the stage 2 rooted at `vttbr`; `memory` holds both stages' tables.
    With stage2 None the IPA is the physical address (a bare machine whose MMU vlab walks)."""
    def translate(va: int, access: Access):
        el0, stage1, ttbr = cpu.el == 0, None, 0
        if cpu.read_sysreg("SCTLR_EL1") & 1:
            problem = "vlab walks only the lower half of the address space (TTBR0_EL1)" if va >> 63 else ""
            try:
                stage1 = Regime.from_tcr(cpu.read_sysreg("TCR_EL1"))
            except ValueError as e:
                problem = problem or f"TCR_EL1 cannot be walked: {e}"
            if problem:  # an unusable configuration: a translation fault at level 0
                return abort(cpu, Fault(FaultKind.TRANSLATION, 1, 0, va, problem), access, va)
            ttbr = cpu.read_sysreg("TTBR0_EL1") & ((1 << 48) - 2)  # BADDR; ASID and CnP dropped
        t = nested_walk(memory, stage1, ttbr, stage2, vttbr, va, access, el0)
        if t.fault is not None:
            return abort(cpu, t.fault, access, va)
        return t.output, permissions(t.leaves, el0)
    return translate
