"""Shadow page tables: what a hypervisor does when the chip has no stage-2 MMU.

    guest VA --(the guest's stage 1)--> IPA --(the hypervisor's IPA -> PA map)--> host PA   what the guest wrote
    guest VA ---------------------(the shadow table)-------------------------> host PA   what the hardware walks

With stage 2 (nested paging) the hardware walks both dimensions on every TLB miss: each of the n
guest descriptors sits at an IPA that needs an m-level stage-2 walk, and so does the result,
(n + 1)(m + 1) - 1 references (15 for vlab's 3 + 3, 24 for 4 + 4). With shadow paging the
hypervisor keeps, for each guest address space, a *shadow* table: real AArch64 stage-1
descriptors in host memory, in the shape of the guest's own table, whose leaves point straight
at host frames. The hardware walks only the shadow: n references. The price is paid in exits,
because the shadow must follow every change the guest makes:

* a **shadow fault** (a "hidden" fault): the shadow has no entry yet. The hypervisor walks the
  guest's table through its IPA -> PA map (in software), writes the shadow entry and lets the
  guest go on. If the guest's own table does not map the address, the fault is the guest's: it
  is reflected to the guest kernel with exactly the syndrome stage 2 would have given it.
* a **table write**: the hypervisor write-protects every frame that holds a guest table (the
  shadow maps it read-only), so each store to one is a permission fault, an exit: the hypervisor
  performs the store and drops the shadow entries the changed descriptor produced.
* **TTBR0_EL1, TTBR1_EL1, TCR_EL1, SCTLR_EL1**: HCR_EL2.TVM traps the guest's writes (EC 0x18) so the
  hypervisor can switch shadows; TRVM its reads, which must see the guest's values, not the
  shadow's. TLBI needs no trap (TTLB): write protection has already seen every change.

Every exit is counted by class with the others (the aborts as EC 0x24/0x20 with their fault
status: translation for a shadow fault, permission for a table write), and `ShadowPaging`
counts each kind. A changed IPA -> PA map (copy-on-write, dirty tracking) drops every shadow.

On real Armv8 silicon a stage-1 abort from EL1 is taken to EL1, not EL2: a shadow-paging
hypervisor there must own the guest kernel's vectors (the pre-virtualization-extensions KVM/ARM
prototypes ran the guest kernel deprivileged for this reason). vlab's hypervisor sees every
guest exception first (Unicorn never enters the guest's vectors), as x86's exception bitmap
lets a hypervisor intercept #PF; the literature of the trade-off is x86's: Adams & Agesen
(ASPLOS 2006) on software vs hardware techniques, Bhargava et al. (ASPLOS 2008) on the
two-dimensional walk. `vlab.hyp.shadow_compare` measures both on one guest.

How vlab performs a trapped table write: the fill hook answers the write with a second view of
host memory (`SHADOW_WINDOW`) whose writes reach the hypervisor (a device callback), so every
store form (STP, post-index, ...) completes exactly as the guest wrote it, and each one is seen.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, NamedTuple

from vlab.arch.esr import DataAbort, ExceptionClass, FaultStatus, Syndrome
from vlab.hyp.memory import VmMemory
from vlab.mmu import fast_walk
from vlab.mmu.descriptors import LEVEL_SHIFT, Leaf, Table, decode
from vlab.mmu.faults import Access, Fault, FaultKind
from vlab.mmu.tables import PAGE, OutOfFrames, TableBuilder
from vlab.mmu.tlb import Entry
from vlab.mmu.tlb_fill import GuestTranslation, abort, permissions
from vlab.mmu.walk import Regime, nested_walk

PAGINGS = ("nested", "shadow")  # VM(paging=...): the hardware's stage 2, or the hypervisor's shadow tables
# Where each core sees host memory a second time: the trapped stores to guest tables go there.
SHADOW_WINDOW = 0xC0_0000_0000
SPACES_KEPT = 8  # shadows of this many guest address spaces are kept (the oldest is dropped)
# A VM's shadows take at most this many host frames (4 MiB); past it, or when the host runs out,
# they are dropped and rebuilt -- they are a cache of what the guest's tables say, nothing more.
SHADOW_FRAMES = 1024
# The shadow of a guest whose MMU is off maps its IPAs (VA = IPA) onto host frames: 39 bits hold its
# RAM and devices, three levels as vlab's stage 2.
MMU_OFF = Regime.stage1(25)
MMU_OFF_KEY = ("MMU off",)
_R, _W, _X = 1, 2, 4  # UC_PROT bits

Key = tuple  # an address space: MMU_OFF_KEY, or (TCR_EL1, its TTBR's table, whether the upper half)


class ShadowPaging:
    """One VM's shadow tables, built from its guest's stage-1 tables and `memory`, its IPA -> PA map.

    Counts what the hardware would have exited for: `fills` (shadow faults the hypervisor
    fixed), `reflected` (the guest's own translation faults, passed on to it), `table_writes`
    (stores to write-protected guest tables), `drops` (shadows thrown away), and the
    descriptors its software walks read (`software_references`).
    """

    def __init__(self, memory: VmMemory):
        self.memory, self.host = memory, memory.host
        self.spaces: OrderedDict[Key, TableBuilder] = OrderedDict()
        self.generation = 0  # bumped whenever a shadow is dropped: cores must look theirs up again
        # guest table frame -> (address space, level, first VA the table maps) for each use of it
        self.table_uses: dict[int, set[tuple[Key, int, int]]] = {}
        self.mapped: dict[int, set[tuple[Key, int]]] = {}  # host frame -> shadow leaves mapping it
        # called when a frame starts being watched: every TLB must forget what it holds for this VM,
        # which may include a writable translation of that frame
        self.on_revoke: Callable[[], None] | None = None
        self.fills = self.reflected = self.table_writes = self.drops = self.software_references = 0

    # --- address spaces ---------------------------------------------------------------------------

    def space(self, key: Key, regime: Regime) -> TableBuilder:
        """The shadow of address space `key` (made empty the first time), most recently used."""
        builder = self.spaces.get(key)
        if builder is None:
            if len(self.spaces) >= SPACES_KEPT:
                self._drop(next(iter(self.spaces)))
            try:
                builder = TableBuilder(self.host.memory, regime, self.host.frames)
            except OutOfFrames:
                self.drop_shadows()
                builder = TableBuilder(self.host.memory, regime, self.host.frames)  # none at all: the run stops
            self.spaces[key] = builder
            self._claim(builder.tables)
        self.spaces.move_to_end(key)
        return builder

    @property
    def frames(self) -> int:
        """Host frames the shadows hold."""
        return sum(len(b.tables) for b in self.spaces.values())

    def drop_shadows(self) -> None:
        """Drop every shadow table but keep watching the guest's table frames: their stores still
        trap, so no TLB can hold a writable view of one."""
        for key in list(self.spaces):
            self._drop(key)
        self.mapped.clear()

    def forget_all(self) -> None:
        """Drop every shadow and what was watched (the IPA -> PA map changed: frames moved; the
        caller flushes every TLB): they are rebuilt, fault by fault."""
        self.drop_shadows()
        self.table_uses.clear()

    def _drop(self, key: Key) -> None:
        for frame in self.spaces.pop(key).tables:
            self.host.frames.release(frame)  # scrubbed
            self.host.owner.pop(frame, None)
        self.generation += 1
        self.drops += 1

    def _claim(self, frames) -> None:
        for frame in frames:
            self.host.owner[frame] = f"vm{self.memory.vmid} shadow table"

    # --- a shadow fault: the hypervisor's walk, and the entry it writes ----------------------------

    def install(self, key: Key, regime: Regime, va: int, walked: Walked, stage1: Regime | None) -> tuple[int, int]:
        """Write the shadow entry for `va` from `walked`, the hypervisor's successful walk of it;
        watch every guest table frame it read. Returns the UC_PROT bits the entry gives EL1 and
        EL0: the walk's, less write on guest tables (and anything one descriptor cannot say)."""
        for level, address in walked.trail:
            span = LEVEL_SHIFT[level] + stage1.index_bits(level)
            self._watch(address & ~(PAGE - 1), (key, level, va >> span << span))
        if self.frames + 2 > SHADOW_FRAMES:  # a leaf may need a level-2 and a level-3 table
            self.drop_shadows()
        builder = self.space(key, regime)
        frame = walked.pa & ~(PAGE - 1)
        el1, el0 = walked.el1, walked.el0
        if frame in self.table_uses:
            el1, el0 = el1 & ~_W, el0 & ~_W
        encoded = _encode(el1, el0)
        if encoded is None:
            return 0, 0
        (ap, pxn, uxn), el1, el0 = encoded
        before = len(builder.tables)
        try:
            builder.set_page(va, Leaf(frame, 3, 1, attr=walked.attr, ap=ap, sh=walked.sh, ng=walked.ng, pxn=pxn,
                                      xn=uxn))
        except OutOfFrames:  # other VMs hold the host's frames: this one is answered, not kept
            self.drop_shadows()
            return 0, 0
        self._claim(builder.tables[before:])
        self.mapped.setdefault(frame, set()).add((key, va & ~(PAGE - 1)))
        return el1, el0

    def _watch(self, frame: int, use: tuple[Key, int, int]) -> None:
        """`frame` holds a guest table: from now on the shadow maps it read-only everywhere.

        What keeps the shadows true: an entry is written only after every table frame its walk read
        is watched, and a watched frame has no writable translation anywhere -- its shadow entries
        are dropped here (refilled read-only at their next fault) and every TLB is flushed, since one
        may hold a writable translation made before (or one the shadow answered without keeping)."""
        uses = self.table_uses.get(frame)
        if uses is None:
            uses = self.table_uses[frame] = set()
            for key, va in self.mapped.pop(frame, ()):
                builder = self.spaces.get(key)
                if builder is not None:
                    builder.set_page(va, None)
            if self.on_revoke is not None:
                self.on_revoke()
        uses.add(use)

    def is_table(self, frame: int) -> bool:
        return frame in self.table_uses

    # --- a table write ------------------------------------------------------------------------------

    def table_written(self, frame: int, offset: int) -> None:
        """The guest (or the hypervisor for it) wrote the descriptor at `offset` of table frame
        `frame`: drop the shadow entries it produced, in every address space using that table."""
        index = (offset & (PAGE - 1)) >> 3
        for key, level, first in self.table_uses.get(frame, ()):
            builder = self.spaces.get(key)
            if builder is None:
                continue
            regime = builder.regime
            if index >> regime.index_bits(level):
                continue  # beyond a short start table: that slot is not part of it
            self._clear(builder, first + (index << LEVEL_SHIFT[level]), level)

    def _clear(self, builder: TableBuilder, va: int, level: int) -> None:
        """Invalidate the shadow's descriptor for `va` at `level`, and give back the tables below it."""
        memory, regime, table = self.host.memory, builder.regime, builder.root
        for at in range(regime.start_level, level + 1):
            slot = table + 8 * ((va >> LEVEL_SHIFT[at]) & ((1 << regime.index_bits(at)) - 1))
            value = memory.read64(slot)
            if not value & 1:
                return  # nothing was built there
            if at == level:
                memory.write64(slot, 0)
                if at < 3:
                    self._release_tree(builder, value & ((1 << 48) - 1) & ~(PAGE - 1), at + 1)
                return
            table = value & ((1 << 48) - 1) & ~(PAGE - 1)

    def _release_tree(self, builder: TableBuilder, table: int, level: int) -> None:
        if level < 3:
            for offset in range(0, PAGE, 8):
                descriptor = decode(self.host.memory.read64(table + offset), level, 1)
                if isinstance(descriptor, Table):
                    self._release_tree(builder, descriptor.address, level + 1)
        builder.tables.remove(table)
        self.host.frames.release(table)
        self.host.owner.pop(table, None)

    def written_by_hypervisor(self, ipa: int, size: int) -> None:
        """The hypervisor wrote guest RAM by IPA (a loader, a device): the descriptors it changed."""
        for page in range(ipa & ~(PAGE - 1), ipa + size, PAGE):
            frame = self.memory.frame_of(page)
            if frame is not None and frame in self.table_uses:
                first, last = max(ipa, page), min(ipa + size, page + PAGE)
                for offset in range(first - page & ~7, last - page, 8):
                    self.table_written(frame, offset)

    def describe(self) -> str:
        return (f"{len(self.spaces)} shadow table(s) in {self.frames} host frames, {len(self.table_uses)} guest table "
                f"frames write-protected; {self.fills} shadow faults fixed, {self.reflected} reflected to the guest, "
                f"{self.table_writes} table writes, {self.drops} shadows dropped")


class Walked(NamedTuple):
    """What the hypervisor's walk of the guest's stage 1 and its IPA -> PA map found for one VA."""
    pa: int
    el1: int  # UC_PROT bits both stages allow at EL1
    el0: int
    attr: int  # the guest leaf's AttrIndx, SH and nG (0 with the guest's MMU off)
    sh: int
    ng: bool
    trail: list  # (level, host physical address) of each guest descriptor read
    leaf_shift: int  # log2 of the guest leaf's size (12 with the guest's MMU off): for the TLB model

    @classmethod
    def from_fast(cls, found: tuple, trail: list, memory) -> Walked:
        """From vlab.mmu.fast_walk's answer and trail."""
        value = memory.read64(trail[-1][1]) if trail else 0
        return cls(found[0], found[1], found[2], value >> 2 & 7, value >> 8 & 3, bool(value >> 11 & 1), trail,
                   found[6])

    @classmethod
    def from_translation(cls, t, stage1: Regime | None) -> Walked:
        """From the teaching walk's Translation (vlab.mmu.walk.nested_walk)."""
        guest = t.leaves[0] if stage1 is not None else Leaf(0, 3, sh=0)
        trail = [(r.level, r.address) for r in t.references if r.stage == 1]
        return cls(t.output, permissions(t.leaves, False), permissions(t.leaves, True), guest.attr, guest.sh,
                   guest.ng, trail, LEVEL_SHIFT[guest.level])


def _encode(el1: int, el0: int):
    """(AP[2:1], PXN, UXN) of a stage-1 page giving EL1 and EL0 these UC_PROT bits, and the bits it
    gives -- exactly, or else without what EL0 may do (or None: EL1 cannot read).

    AP = 0b01 lets EL0 write, and then EL1 may not execute (Arm ARM); EL1 can always read."""
    if not el1 & _R:
        return None
    for want0 in (el0, el0 & ~_W, 0):
        ap = 0b01 if want0 & _W else (0 if el1 & _W else 2) | (1 if want0 & _R else 0)
        pxn, uxn = not el1 & _X, not want0 & _X
        got1 = _R | (0 if ap & 2 else _W) | (0 if pxn or ap == 0b01 else _X)
        got0 = (_R if ap & 1 else 0) | (_W if ap == 0b01 else 0) | (0 if uxn else _X)
        if got1 == el1 and got0 == want0:
            return (ap, pxn, uxn), got1, got0
    return None


class ShadowTranslation(GuestTranslation):
    """A core's fill path for every VM of its host: nested (vlab.mmu.tlb_fill) for a VM whose
    `shadow` is None, else one-dimensional: vlab's TLB model, then the shadow table alone.

    `on_exit(syndrome, far, action)` records an exit the shadow's fault path makes in place.
    """

    def __init__(self, *args, **options):
        super().__init__(*args, **options)
        self.shadow: ShadowPaging | None = None
        self.on_exit: Callable[[Syndrome, int, str], None] | None = None
        # Per half of the address space (VA bit 55): (generation, key, regime, builder, ASID) of the
        # guest's registers, or None until the next fill reads them
        self._spaces: list[tuple | None] = [None, None]

    def switch(self, stage2: Regime, vttbr: int, vmid: int, shadow: ShadowPaging | None = None) -> None:
        super().switch(stage2, vttbr, vmid)
        self.shadow, self._spaces = shadow, [None, None]

    def forget_stage1(self) -> None:
        super().forget_stage1()
        self._spaces = [None, None]

    def __call__(self, va: int, access: Access):
        if self.shadow is None:
            return self._translate(va, access, self.tlb)
        return self._shadowed(va, access)

    def uncached(self, va: int, access: Access):
        """vlab's own reads (an exit's instruction): through the shadow where it maps `va`, else as
        stage 2 would translate them -- the TLB model and the counters left alone either way."""
        space = self._spaces[va >> 55 & 1]
        if self.shadow is not None and space is not None and space[0] == self.shadow.generation \
                and space[3] is not None:
            bit = 4 if access is Access.FETCH else 2 if access is Access.WRITE else 1
            el0 = self.cpu.el == 0
            found = fast_walk.translate(self.memory, space[2], space[3].root, None, 0, va, bit, el0)
            if found is not None:
                return self.base + found[0], found[2] if el0 else found[1]
        return super().uncached(va, access)

    def _current_space(self, va: int) -> tuple:
        """The guest's address space for `va`'s half, from its SCTLR_EL1, TCR_EL1 and TTBR0_EL1 or
        TTBR1_EL1 (trapped: TVM); it is cached in `_spaces` by the callers."""
        shadow, cpu = self.shadow, self.cpu
        if not cpu.read_sysreg("SCTLR_EL1") & 1:
            key, regime, asid = MMU_OFF_KEY, MMU_OFF, 0  # an upper-half VA is beyond the PA range: never shadowed
        else:
            stage1 = self.stage1_of(va)
            if isinstance(stage1, Fault):
                return shadow.generation, None, None, None, 0  # every access faults: nothing to shadow
            guest, ttbr, asid = stage1
            key = (cpu.read_sysreg("TCR_EL1"), ttbr, guest.upper)
            regime = Regime.stage1(guest.t0sz, upper=guest.upper)
        space = self._spaces[va >> 55 & 1] = (shadow.generation, key, regime, shadow.space(key, regime), asid)
        return space

    def _shadowed(self, va: int, access: Access):
        space = self._spaces[va >> 55 & 1]
        if space is None or space[0] != self.shadow.generation:
            space = self._current_space(va)
        _, key, regime, builder, asid = space
        el0 = self.cpu.el == 0
        bit = 4 if access is Access.FETCH else 2 if access is Access.WRITE else 1
        hit = self.tlb_hit(asid, va, bit, el0)
        if hit is not None:
            return hit
        if builder is not None:
            trail: list = []  # the descriptors read, when the walk fails
            found = fast_walk.translate(self.memory, regime, builder.root, None, 0, va, bit, el0, None, trail)
            if found is not None:  # the one-dimensional walk: the shadow's n descriptors
                pa, perms_el1, perms_el0, _, global_, references, _ = found  # the shadow's 4 KB page
                self.references += references
                # (The TLB model's IPA field holds the PA: this hardware never sees an IPA.)
                self.tlb.insert(self.vmid, asid, va, Entry(pa >> 12, pa >> 12, perms_el1, perms_el0, global_))
                return self.base + pa, perms_el0 if el0 else perms_el1
            self.references += len(trail)
        return self._shadow_fault(va, access, el0)

    def _shadow_fault(self, va: int, access: Access, el0: bool):
        """The shadow could not translate: the hypervisor walks the guest's table itself."""
        shadow, cpu = self.shadow, self.cpu
        fetch = access is Access.FETCH
        ec = ExceptionClass.IABT_LOWER if fetch else ExceptionClass.DABT_LOWER
        state = self.stage1_of(va)
        if not isinstance(state, Fault) and state[0] is None and va >> self.pa_bits:
            state = self.beyond_pa_range(va)
        if isinstance(state, Fault):
            return self._reflect(state, access, va, ec)
        stage1, ttbr, asid = state
        walked, served_elsewhere = self._walk_guest(stage1, ttbr, va, access, el0)
        if isinstance(walked, Fault):
            if walked.stage == 1:
                return self._reflect(walked, access, va, ec)
            return abort(cpu, walked, access, va)
        if not isinstance(walked, Walked):
            return walked  # an emulated device: not shadowed, each access is its exit
        space = self._current_space(va)  # a stage-2 fix may have dropped every shadow
        _, key, regime, _, asid = space
        el1_perms, el0_perms = shadow.install(key, regime, va, walked, stage1)
        frame = walked.pa & ~(PAGE - 1)
        if access is Access.WRITE and shadow.is_table(frame):
            # The store to a guest table: performed through the window, where the hypervisor sees it.
            return SHADOW_WINDOW + walked.pa, _R | _W
        shadow.fills += 1
        if not served_elsewhere and self.on_exit is not None:
            fault = Fault(FaultKind.TRANSLATION, 1, 3, va, "no shadow entry yet")
            self.on_exit(Syndrome(ec, fault.iss(access)), va,
                         f"shadow fault: VA {va & ~0xFFF:#x} -> host frame {frame:#x}, shadow entry written")
        perms = el0_perms if el0 else el1_perms
        pa = walked.pa
        if perms & (4 if access is Access.FETCH else 2 if access is Access.WRITE else 1):
            self.tlb.insert(self.vmid, asid, va, Entry(pa >> 12, pa >> 12, el1_perms, el0_perms, not walked.ng),
                            walked.leaf_shift)
            return self.base + pa, perms
        # One descriptor cannot say what this access may do (EL0 with the MMU off): answered, not kept.
        return self.base + pa, walked.el0 if el0 else walked.el1

    def _walk_guest(self, stage1: Regime | None, ttbr: int, va: int, access: Access, el0: bool):
        """The hypervisor's walk of the guest's stage 1 through its IPA -> PA map: (what it found --
        Walked, the Fault the guest's tables or the map give, or an emulated device's answer --,
        whether a stage-2 exit such as demand paging was served on the way)."""
        shadow, bit = self.shadow, 4 if access is Access.FETCH else 2 if access is Access.WRITE else 1
        cache = self._stage2_caches.setdefault(self.vmid, {})
        fixed = False
        while True:
            trail: list = []
            found = fast_walk.translate(self.memory, stage1, ttbr, self.stage2, self.vttbr, va, bit, el0, cache,
                                        trail)
            if found is not None:
                shadow.software_references += found[5]
                return Walked.from_fast(found, trail, self.memory), fixed
            # the teaching walk says exactly how it fails (the integer walk answers only successes)
            t = nested_walk(self.memory, stage1, ttbr, self.stage2, self.vttbr, va, access, el0)
            shadow.software_references += len(t.references)
            if t.fault is None:
                return Walked.from_translation(t, stage1), fixed
            if t.fault.stage != 2 or self.on_stage2_fault is None:
                return t.fault, fixed
            answer = self.on_stage2_fault(t.fault, access, va)  # the stage-2 path's own exit (demand paging...)
            if answer is not True:
                return (t.fault if answer is None else answer), True
            fixed = True

    def _reflect(self, fault: Fault, access: Access, va: int, ec: ExceptionClass):
        """The guest's own translation fault: an exit, then the abort its kernel would get under stage 2."""
        self.shadow.reflected += 1
        if self.on_exit is not None:
            self.on_exit(Syndrome(ec, fault.iss(access)), va, f"the guest's own fault, reflected to it: {fault}")
        return abort(self.cpu, fault, access, va)


def table_write_syndrome(is_write: bool = True) -> Syndrome:
    """ESR_EL2 of a store to a write-protected guest table: a permission fault on the shadow's page
    (level 3), from a lower EL. A stage-1 abort carries no instruction syndrome (ISV = 0): the
    hypervisor reads the instruction itself."""
    return Syndrome(ExceptionClass.DABT_LOWER, DataAbort(FaultStatus.PERMISSION_L0 + 3, wnr=is_write).iss)
