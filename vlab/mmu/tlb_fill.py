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

`GuestTranslation` is that translate, one implementation for every core vlab translates for:
a board whose MMU vlab walks, and each vCPU of a VM with stage 2 (there with vlab's TLB model).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterable

from unicorn import UC_MEM_FETCH, UC_MEM_WRITE, UC_TLB_VIRTUAL

from vlab.arch import ldst
from vlab.arch.esr import ExceptionClass, Syndrome
from vlab.machine.cpu import CPU, GuestException
from vlab.mmu.descriptors import LEVEL_SHIFT, Leaf
from vlab.mmu.faults import Access, Fault, FaultKind
from vlab.mmu import fast_walk
from vlab.mmu.memory import BufferMemory, PhysicalMemory
from vlab.mmu.tlb import PAGE_SHIFT, TLB, Entry
from vlab.mmu.walk import SIZE_ENCODING, Regime, invalid_descriptor, nested_walk, permission_problem

# translate(virtual address, access) -> (the physical address of that byte in the core's map,
# UC_PROT_* bits), or a
# function building the abort from the faulting instruction's PC (known only once Unicorn stops)
Translate = Callable[[int, Access], "tuple[int, int] | Callable[[int], GuestException]"]
_PROT = {Access.READ: 1, Access.WRITE: 2, Access.FETCH: 4}  # UC_PROT_READ, _WRITE, _EXEC
# Unicorn's access kinds as vlab's, and the members as plain names: an enum member's lookup costs
# ten times a global's, and every TLB fill needs a few.
_READ, _WRITE, _FETCH = Access.READ, Access.WRITE, Access.FETCH
_KINDS = {UC_MEM_FETCH: _FETCH, UC_MEM_WRITE: _WRITE}
_NO_STAGE1 = (None, 0, 0)  # the guest's MMU is off: a VA is an IPA
# (an instruction fetch, taken from a lower EL) -> the abort's exception class
_ABORT_CLASSES = {(True, True): ExceptionClass.IABT_LOWER, (True, False): ExceptionClass.IABT_CURRENT,
                  (False, True): ExceptionClass.DABT_LOWER, (False, False): ExceptionClass.DABT_CURRENT}


def install(cpu: CPU, translate: Translate, reads: Translate | None = None) -> None:
    """Put the core in virtual-TLB mode, with `translate` answering every TLB miss.

    vlab's own reads of guest memory (such as the instruction shown in a report) go through
    `reads`, by default `translate` too; pass one that leaves a TLB model and its counters alone.
    """
    uc = cpu.uc
    uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
    # Unicorn's pages are 1 KB on Arm (QEMU's smallest Arm page), not the guest's 4 KB.
    offset_mask = uc.ctl_get_page_size() - 1

    def fill(vaddr: int, access: int, entry, _user) -> bool:
        try:
            answer = translate(vaddr, _KINDS.get(access, _READ))
            if callable(answer):
                cpu.fault(answer)
                return False
            entry = entry.contents
            address, entry.perms = answer
            entry.paddr = address & ~offset_mask
            return True
        except Exception as e:  # noqa: BLE001 - reported as a stop, never raised into Unicorn
            cpu.report_hook_error(f"address translation of {vaddr:#x} failed: {type(e).__name__}: {e}")
            return False

    cpu.hook_tlb_fill(fill)
    reads = reads or translate

    def address_for_reads(va: int, fetch_only: bool = False) -> int | None:
        # vlab's own reads of the guest's instructions (to decode an exit, or disassemble one for a
        # report) must see what the guest sees: fetched as it fetched them (EL0 code may be
        # unreadable to EL0), else read. A report must not fail, so a failure is "no memory".
        for access in (Access.FETCH,) if fetch_only else (Access.FETCH, Access.READ):
            try:
                answer = reads(va, access)
            except Exception:  # noqa: BLE001
                return None
            if not callable(answer):
                return answer[0]
        return None

    cpu.translate_for_reads = address_for_reads


def flush(cpu: CPU) -> None:
    """Forget every cached translation (after the tables or the translation registers change)."""
    cpu.flush_tlb()


def permissions(leaves: Iterable[Leaf], el0: bool) -> int:
    """The UC_PROT bits (1 read, 2 write, 4 execute) that every stage's leaf allows, at EL0 or EL1.

    A page is cached with all of them at once, so a later access of another kind to the same
    page is checked by Unicorn without asking vlab again.
    """
    leaves = tuple(leaves)
    return sum(bit for access, bit in _PROT.items() if not any(permission_problem(leaf, access, el0) for leaf in leaves))


def abort(cpu: CPU, fault: Fault, access: Access, va: int) -> Callable[[int], GuestException]:
    """The abort a failed translation raises, built once the faulting instruction's PC is known.

    Stage 1: a data/instruction abort to the guest kernel (EL1); stage 2: to the hypervisor
    (EL2), with the IPA. The syndrome is `syndrome`'s, FAR and the IPA `exact_abort`'s.
    """
    el = cpu.el

    def make(pc: int) -> GuestException:
        exact, far, word = exact_abort(cpu, fault, access, va, pc)
        return GuestException(syndrome(exact, access, el, word or 0), pc, pc, el, far=far, detail=str(exact),
                              target_el=fault.stage, ipa=exact.ipa, word=word)
    return make


def exact_abort(cpu: CPU, fault: Fault, access: Access, va: int, pc: int) -> tuple[Fault, int, int | None]:
    """`fault` (met translating `va`) at the access's exact address, that address (FAR), and the
    word of the instruction at `pc` (None: no memory there).

    Unicorn may ask for a whole 1 KB page, so the access's own address is recomputed from the
    instruction's encoding and registers, for every form of load and store.
    """
    word = cpu.read_word(pc)
    exact = pc if access is _FETCH else ldst.effective_address(word or 0, lambda n: cpu.sp if n == 31 else cpu.x(n),
                                                               pc)
    # On another page, the access started on one that translated and crossed into `va`'s.
    far = va if exact is None or exact >> 10 != va >> 10 else exact
    if fault.s1ptw or far == va:
        return fault, far, word
    return replace(fault, address=fault.address + far - va,
                   ipa=None if fault.ipa is None else fault.ipa + far - va), far, word


def syndrome(fault: Fault, access: Access, el: int, word: int) -> Syndrome:
    """The ESR of the abort `fault` raises for `access` by the instruction `word`, run at `el`.

    EC: an instruction or a data abort, "from a lower EL" when it is taken to a higher one
    (from EL0, or to EL2 for any stage-2 fault), else "current EL". ISS: `Fault.iss`, plus,
    for a stage-2 data abort that is not on a table walk, the instruction syndrome (ISV, SAS,
    SSE, SRT, SF, AR) when `word` is a load or store that has one: what a hypervisor needs to
    emulate a device. Stage-1 aborts go to the guest kernel, which decodes the instruction itself.
    """
    fetch, lower = access is Access.FETCH, el == 0 or fault.stage == 2
    ec = _ABORT_CLASSES[fetch, lower]
    iss = None if fetch or fault.stage == 1 or fault.s1ptw else ldst.abort_iss(fault.fsc, word)
    return Syndrome(ec, fault.iss(access) if iss is None else iss)


class GuestTranslation:
    """A `translate` for `install`: the guest's own stage 1 (from its SCTLR_EL1, TCR_EL1 and
    TTBR0_EL1 or TTBR1_EL1, read at each miss) nested in the stage 2 rooted at `vttbr`.

    `memory` holds both stages' tables and the frames they map, which the core sees from
    physical address `base` on. With stage2 None the IPA is the physical address (a bare
    machine whose MMU vlab walks). With a `tlb`, vlab's TLB model (entries tagged with `vmid`
    and the guest's ASID) answers before any walk and keeps what each walk finds; `walks`
    counts the walks it could not spare, `references` the descriptors those walks read, faulting
    or not (as a walker without walk caches reads them: (n + 1)(m + 1) - 1 for n stage-1 and m
    stage-2 levels).
    """

    def __init__(self, cpu: CPU, memory: PhysicalMemory, stage2: Regime | None, vttbr: int,
                 base: int = 0, tlb: TLB | None = None, vmid: int = 0, sees_every_write: bool = False):
        """`sees_every_write`: the owner tells `forget_stage1()` whenever SCTLR_EL1, TCR_EL1 or a
        TTBR changes (a hypervisor that traps their writes), so they need not be read at each miss."""
        self.cpu, self.memory, self.stage2, self.vttbr = cpu, memory, stage2, vttbr
        self.base, self.tlb, self.vmid = base, tlb, vmid
        self.walks = 0
        self.references = 0
        # With the MMU off, a VA is the (intermediate) physical address, up to the core's PARange.
        self.pa_bits = SIZE_ENCODING[cpu.read_sysreg("ID_AA64MMFR0_EL1") & 0xF]
        # A stage-2 fault the walk met, offered to the hypervisor before it becomes an abort:
        # on_stage2_fault(fault, access, va) -> True (fixed: walk again), (address, UC_PROT bits)
        # (the answer, e.g. an emulated device's window), or None (abort).
        self.on_stage2_fault: Callable[[Fault, Access, int], object] | None = None
        self._regimes: dict[int, Regime | Fault] = {}  # TCR_EL1 value << 1 | half -> the stage 1 it configures
        self._fast = isinstance(memory, BufferMemory)
        self._keep_stage1 = sees_every_write
        self._stage1: tuple | None = None  # per half: (stage 1, TTBR, ASID), or the fault every access gets
        self._stage2_caches: dict[int, dict] = {}  # VMID -> IPA page -> (PA page, leaf): the walk cache

    def switch(self, stage2: Regime, vttbr: int, vmid: int) -> None:
        """Translate for another VM from now on: its stage-2 tables and VMID (a world switch)."""
        self.stage2, self.vttbr, self.vmid = stage2, vttbr, vmid
        self._stage1 = None

    def forget_stage1(self) -> None:
        """The guest's translation registers changed (or another vCPU is loaded)."""
        self._stage1 = None

    def forget_stage2(self, vmid: int, ipa: int | None = None) -> None:
        """Stage-2 tables of `vmid` changed (for the page of `ipa`, or anywhere): drop what the walk cache holds."""
        cache = self._stage2_caches.get(vmid)
        if cache is not None:
            if ipa is None:
                cache.clear()
            else:
                cache.pop(ipa >> 12, None)

    def __call__(self, va: int, access: Access):
        return self._translate(va, access, self.tlb)

    def uncached(self, va: int, access: Access):
        """The same translation, the TLB model neither asked, filled nor counted: for vlab's own reads."""
        return self._translate(va, access, None)

    def stage1_of(self, va: int):
        """(stage 1 or None, the table of `va`'s half of the address space -- TTBR0_EL1's, or TTBR1_EL1's
        where VA bit 55 is set --, the ASID), or the Fault an unusable configuration gives that half."""
        halves = self._stage1 if self._keep_stage1 else None
        if halves is None:
            halves = self._stage1 = self._read_stage1()
        half = halves[va >> 55 & 1]
        return replace(half, address=va) if isinstance(half, Fault) else half

    def _read_stage1(self) -> tuple:
        """Both halves' stage 1, from SCTLR_EL1, TCR_EL1 and the two TTBRs (MMU off: no stage 1)."""
        cpu = self.cpu
        if not cpu.read_sysreg("SCTLR_EL1") & 1:
            return _NO_STAGE1, _NO_STAGE1
        tcr = cpu.read_sysreg("TCR_EL1")
        ttbrs = cpu.read_sysreg("TTBR0_EL1"), cpu.read_sysreg("TTBR1_EL1")
        asid = ttbrs[tcr >> 22 & 1] >> 48  # TCR_EL1.A1 says which TTBR holds the ASID, for both halves
        return tuple(self._half(tcr, upper, ttbrs[upper] & ((1 << 48) - 2), asid) for upper in (0, 1))  # CnP dropped

    def _half(self, tcr: int, upper: int, table: int, asid: int):
        key = tcr << 1 | upper
        stage1 = self._regimes.get(key)
        if stage1 is None:
            try:
                stage1 = Regime.from_tcr(tcr, bool(upper))
            except ValueError as e:  # a translation fault at level 0 for every address of the half
                stage1 = Fault(FaultKind.TRANSLATION, 1, 0, 0, f"TCR_EL1 cannot be walked: {e}")
            self._regimes[key] = stage1
        return stage1 if isinstance(stage1, Fault) else (stage1, table, asid)

    def beyond_pa_range(self, va: int) -> Fault:
        """With the MMU off, an address past the core's PARange: a stage-1 address size fault at level 0 (Arm ARM)."""
        return Fault(FaultKind.ADDRESS_SIZE, 1, 0, va,
                     f"with the MMU off, the address is beyond the {self.pa_bits}-bit physical address range")

    def tlb_hit(self, asid: int, va: int, bit: int, el0: bool | None = None):
        """vlab's TLB model's answer for an access (`bit`, UC_PROT) to `va` from EL0 or not (None: the
        core's level, read only when the entry's permissions differ between the two), or None after
        counting the walk it could not spare. An entry that does not allow the access is walked
        again, so that the fault is reported exactly as the tables say."""
        entry = self.tlb.lookup(self.vmid, asid, va)
        if entry is not None:
            perms = entry.perms_el1
            if perms != entry.perms_el0 and (self.cpu.el == 0 if el0 is None else el0):
                perms = entry.perms_el0
            if perms & bit:
                return self.base + (entry.pa_page << 12 | va & 0xFFF), perms
        self.walks += 1
        return None

    def _translate(self, va: int, access: Access, tlb: TLB | None):
        cpu = self.cpu
        state = self.stage1_of(va)
        if isinstance(state, Fault):
            return abort(cpu, state, access, va)
        stage1, ttbr, asid = state
        if stage1 is None and va >> self.pa_bits:
            return abort(cpu, self.beyond_pa_range(va), access, va)
        bit = 4 if access is _FETCH else 2 if access is _WRITE else 1  # UC_PROT; enums hash slowly
        if tlb is not None:
            hit = self.tlb_hit(asid, va, bit)  # most fills end here, most without reading the core's level
            if hit is not None:
                return hit
        el0 = cpu.el == 0
        cache = self._stage2_caches.setdefault(self.vmid, {}) if self.stage2 is not None else None
        fixed = None  # the stage-2 fault the hypervisor last said it fixed
        while True:
            fault = None
            if self._fast:  # the walk in integers, for translations that succeed
                stopped: list = []
                found = fast_walk.translate(self.memory, stage1, ttbr, self.stage2, self.vttbr, va, bit, el0, cache,
                                            stopped=stopped)
                if found is not None:
                    pa, perms_el1, perms_el0, ipa, global_, references, leaf_shift = found
                    if tlb is not None:
                        self.references += references
                        tlb.insert(self.vmid, asid, va, Entry(pa >> 12, ipa >> 12, perms_el1, perms_el0, global_),
                                   leaf_shift)
                    return self.base + pa, perms_el0 if el0 else perms_el1
                if stopped:  # an unmapped IPA page, as demand paging leaves them: no second walk
                    ipa, level, slot, references = stopped[0]
                    fault = invalid_descriptor(2, level, slot, ipa)
                    if tlb is not None:
                        self.references += references
            if fault is None:
                t = nested_walk(self.memory, stage1, ttbr, self.stage2, self.vttbr, va, access, el0)
                fault = t.fault
                if tlb is not None:
                    self.references += len(t.references)  # a walk that faults reads descriptors too
            if fault is None or fault.stage != 2 or tlb is None or self.on_stage2_fault is None:
                break
            if fault == fixed:  # no guest instruction runs between the retries: it would never end
                raise RuntimeError(f"the hypervisor said it fixed the stage-2 fault at IPA {fault.ipa:#x}, "
                                   f"yet the walk meets it again ({fault.why})")
            answer = self.on_stage2_fault(fault, access, va)
            if answer is not True:
                if answer is not None:
                    return answer
                break
            fixed = fault
        if fault is not None:
            return abort(cpu, fault, access, va)
        if tlb is None:
            return self.base + t.output, permissions(t.leaves, el0)
        perms_el1, perms_el0 = permissions(t.leaves, False), permissions(t.leaves, True)
        ipa = t.leaves[0].output | va & (t.leaves[0].size - 1) if stage1 is not None else va
        tlb.insert(self.vmid, asid, va, Entry(t.output >> 12, ipa >> 12, perms_el1, perms_el0,
                                              global_=stage1 is None or not t.leaves[0].ng),
                   LEVEL_SHIFT[t.leaves[0].level] if stage1 is not None else PAGE_SHIFT)
        return self.base + t.output, perms_el0 if el0 else perms_el1
