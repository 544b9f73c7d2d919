"""The GICv2 interrupt controller of QEMU's `virt` board: one distributor, one CPU interface per CPU.

    0x0800_0000  GICD  the distributor: for every interrupt, enabled? pending? active? its
                       priority, group, trigger and target CPUs -- and GICD_SGIR, to interrupt a CPU
    0x0801_0000  GICC  the CPU interface (each CPU sees its own at the same address): acknowledge
                       the best interrupt (IAR), complete it (EOIR), mask by priority (PMR)

Interrupt IDs (INTIDs):

    0-15    SGI  software-generated, sent by writing GICD_SGIR; pending per (target, source CPU)
    16-31   PPI  private to each CPU: the timers (virtual 27, physical 30, hypervisor 26), the
                 GIC's own maintenance interrupt (25)
    32-287  SPI  shared peripherals (QEMU `virt` has 256: the UART is SPI 1 = INTID 33)
    1023         spurious: "nothing for you" (1022: only a Group 1 interrupt, and GICC_CTLR.AckCtl = 0)

Each interrupt goes through the architecture's state machine (IHI 0048B, GICv2):

    inactive --(edge, line high, GICD_ISPENDR)--> pending --(GICC_IAR)--> active --(GICC_EOIR)--> inactive
                                                  active and pending: asserted again while active

A CPU is interrupted (its IRQ line) when the best pending interrupt it may take -- enabled, its
group enabled at the distributor and at the CPU interface, targeted at it, not active -- has a
priority (lower = more urgent) below GICC_PMR and a group priority below the running priority
(the most urgent active interrupt's; 0xFF when none is active). So a handler is only preempted by
something more urgent, and one that never writes GICC_EOIR blocks every interrupt of its
priority or below.

Where the architecture leaves a choice, vlab does what QEMU 7.2 does (checked by guests run on
both): 8 priority bits, no Security Extensions (so GICD_IGROUPR is usable and all accesses see the
Secure view), SGIs always enabled, PPIs' trigger programmable, GICD_ITARGETSR RAZ/WI on one CPU,
a reserved GICD_SGIR filter (0b11) sends to every CPU, the aliased registers (GICC_AIAR, AEOIR,
AHPPIR) and the IRQ/FIQ bypass bits RAZ/WI, and a write to GICC_EOIR with nothing active ignored.
Reserved offsets read as zero and ignore writes; so do bits of interrupts that do not exist.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Protocol

GICD_BASE, GICD_SIZE = 0x0800_0000, 0x1000  # QEMU maps 4 KiB of distributor registers
GICC_BASE, GICC_SIZE = 0x0801_0000, 0x2000  # and 8 KiB of CPU interface (GICC_DIR is at +0x1000)

SGIS = range(0, 16)
PPIS = range(16, 32)
FIRST_SPI = 32
QEMU_VIRT_SPIS = 256  # QEMU virt's NUM_IRQS: GICD_TYPER.ITLinesNumber = 8
MAX_CPUS = 8  # GICv2 has 8 CPU interfaces at most (the target lists are bytes)
SPURIOUS = 1023
GROUP1_PENDING = 1022  # IAR/HPPIR when the best interrupt is Group 1 and GICC_CTLR.AckCtl = 0

MAINTENANCE_PPI = 25  # the virtual CPU interface's maintenance interrupt (QEMU virt)
HYP_TIMER_PPI = 26
VIRTUAL_TIMER_PPI = 27
PHYSICAL_TIMER_PPI = 30
UART_SPI = 33

IDLE_PRIORITY = 0x100  # running priority with nothing active (GICC_RPR reads 0xFF)

# GICD_CTLR and GICC_CTLR bits (GICv2 without the Security Extensions)
ENABLE_GRP0, ENABLE_GRP1 = 1 << 0, 1 << 1
ACK_CTL, FIQ_EN, CBPR, EOI_MODE = 1 << 2, 1 << 3, 1 << 4, 1 << 9
CPU_CTLR_MASK = ENABLE_GRP0 | ENABLE_GRP1 | ACK_CTL | FIQ_EN | CBPR | EOI_MODE  # 0x21F, as QEMU

GICD_IIDR = 0x0000_043B  # implementer Arm (0x43B), as QEMU reports
GICC_IIDR = 0x0002_043B  # architecture version 2, implementer Arm
# GICD_ICPIDR4..7, ICPIDR0..3, ICCIDR0..3 at 0xFD0..0xFFC: ICPIDR2 = 0x2B says "GICv2"
ID_REGISTERS = dict(zip(range(0xFD0, 0x1000, 4), (0x04, 0, 0, 0, 0x90, 0xB4, 0x2B, 0, 0x0D, 0xF0, 0x05, 0xB1)))
_ID_NAMES = [f"ICPIDR{n}" for n in (4, 5, 6, 7, 0, 1, 2, 3)] + [f"ICCIDR{n}" for n in range(4)]


@dataclass
class Interrupt:
    """What the distributor knows about one interrupt, for one CPU (SGIs, PPIs) or for all (SPIs)."""

    enabled: bool = False
    latched: bool = False  # pending from an edge or a GICD_ISPENDR write (not SGIs: see `sources`)
    active: bool = False
    line: bool = False  # the input's level, driven by the device (PPIs, SPIs)
    priority: int = 0
    group: int = 0
    edge: bool = False  # GICD_ICFGR Int_config[1]: edge-triggered (SGIs always are)
    targets: int = 0  # GICD_ITARGETSR, SPIs only: one bit per CPU interface it is forwarded to
    sources: int = 0  # SGIs only: one bit per source CPU whose SGI waits

    @property
    def pending(self) -> bool:
        """A level-sensitive interrupt is pending while its line is high, an edge one once latched."""
        return self.latched or self.sources != 0 or (self.line and not self.edge)


@dataclass(frozen=True)
class Candidate:
    """The best interrupt a CPU interface could take: the value for IAR/HPPIR, and its priority."""

    intid: int
    priority: int
    group: int
    source: int = 0  # the sending CPU, for SGIs (IAR bits [12:10])

    @property
    def iar(self) -> int:
        return self.intid | (self.source << 10 if self.intid in SGIS else 0)


@dataclass(frozen=True)
class _Bank:
    """A run of registers holding one field of `bits` bits per interrupt, from INTID 0 up."""

    name: str
    offset: int
    bits: int
    read: Callable[[Distributor, int, int], int]  # (distributor, cpu, intid) -> the field's value
    write: Callable[[Distributor, int, int, int], None]  # (distributor, cpu, intid, value written)
    interrupts: int = 1024

    @property
    def end(self) -> int:
        return self.offset + self.interrupts * self.bits // 8


def _field(attribute: str):
    """Read `attribute` as a number; writes store the field (IGROUPR, IPRIORITYR)."""
    def read(d: Distributor, cpu: int, intid: int) -> int:
        return int(getattr(d.interrupt(cpu, intid), attribute))

    def write(d: Distributor, cpu: int, intid: int, value: int) -> None:
        d.change(cpu, intid, **{attribute: value})
    return read, write


def _set_on_one(attribute: str, value: bool, sgis: bool = True):
    """The set/clear registers: writing 1 sets `attribute` to `value`, writing 0 does nothing.
    `sgis=False`: SGIs ignore it (they are always enabled, and made pending only with a source)."""
    def write(d: Distributor, cpu: int, intid: int, bit: int) -> None:
        if bit and (sgis or intid not in SGIS):
            d.change(cpu, intid, **{attribute: value})
    return write


def _read_pending(d: Distributor, cpu: int, intid: int) -> int:
    return int(d.interrupt(cpu, intid).pending)


def _read_targets(d: Distributor, cpu: int, intid: int) -> int:
    if d.cpus == 1:
        return 0  # one CPU: every interrupt targets it, and the registers are RAZ/WI
    return 1 << cpu if intid < FIRST_SPI else d.interrupt(cpu, intid).targets


def _write_targets(d: Distributor, cpu: int, intid: int, value: int) -> None:
    if d.cpus > 1 and intid >= FIRST_SPI:  # an SGI's or PPI's target is the CPU itself: read-only
        d.change(cpu, intid, targets=value)  # all 8 bits kept (as QEMU); a CPU that does not exist gets nothing


def _read_config(d: Distributor, cpu: int, intid: int) -> int:
    return 2 if d.interrupt(cpu, intid).edge else 0


def _write_config(d: Distributor, cpu: int, intid: int, value: int) -> None:
    if intid not in SGIS:  # SGIs are edge-triggered, read-only
        d.change(cpu, intid, edge=bool(value & 2))


def _write_sources(value: bool):
    """GICD_SPENDSGIR/CPENDSGIR: one bit per source CPU, set or cleared by writing 1."""
    def write(d: Distributor, cpu: int, intid: int, bits: int) -> None:
        sources = d.interrupt(cpu, intid).sources
        d.change(cpu, intid, sources=(sources | bits) if value else (sources & ~bits))
    return write


_read_enabled, _ = _field("enabled")
_read_active, _ = _field("active")
_read_sources, _ = _field("sources")
_BANKS = (
    _Bank("GICD_IGROUPR", 0x080, 1, *_field("group")),
    _Bank("GICD_ISENABLER", 0x100, 1, _read_enabled, _set_on_one("enabled", True, sgis=False)),
    _Bank("GICD_ICENABLER", 0x180, 1, _read_enabled, _set_on_one("enabled", False, sgis=False)),
    _Bank("GICD_ISPENDR", 0x200, 1, _read_pending, _set_on_one("latched", True, sgis=False)),
    _Bank("GICD_ICPENDR", 0x280, 1, _read_pending, _set_on_one("latched", False, sgis=False)),
    _Bank("GICD_ISACTIVER", 0x300, 1, _read_active, _set_on_one("active", True)),
    _Bank("GICD_ICACTIVER", 0x380, 1, _read_active, _set_on_one("active", False)),
    _Bank("GICD_IPRIORITYR", 0x400, 8, *_field("priority")),
    _Bank("GICD_ITARGETSR", 0x800, 8, _read_targets, _write_targets),
    _Bank("GICD_ICFGR", 0xC00, 2, _read_config, _write_config),
    _Bank("GICD_CPENDSGIR", 0xF10, 8, _read_sources, _write_sources(False), interrupts=16),
    _Bank("GICD_SPENDSGIR", 0xF20, 8, _read_sources, _write_sources(True), interrupts=16),
)
_SHARED = -1  # the "bank" of SPIs in Distributor._live
_SINGLE = {0x000: "GICD_CTLR", 0x004: "GICD_TYPER", 0x008: "GICD_IIDR", 0xF00: "GICD_SGIR"}


class Distributor:
    """The interrupts' state, and the registers (GICD_*) through which CPUs program it.

    Also used by the hypervisor as a VM's *virtual* distributor (vlab.hyp.vgic): same registers,
    same state, but its output goes to list registers instead of CPU interfaces.
    """

    def __init__(self, cpus: int = 1, spis: int = QEMU_VIRT_SPIS, on_change: Callable[[], None] | None = None):
        if not 1 <= cpus <= MAX_CPUS:
            raise ValueError(f"a GICv2 serves 1 to {MAX_CPUS} CPUs, not {cpus}")
        if spis % 32 or not 0 <= spis <= 988:
            raise ValueError(f"SPIs come in multiples of 32, at most 988 (INTIDs up to 1019), not {spis}")
        self.cpus, self.lines = cpus, FIRST_SPI + spis
        self.ctlr = 0
        self._private = [[Interrupt(enabled=i in SGIS, edge=i in SGIS) for i in range(FIRST_SPI)]
                         for _ in range(cpus)]
        # With one CPU every SPI goes to it; with more, ITARGETSR must name the CPUs (reset 0, as QEMU).
        self._shared = [Interrupt(targets=1 if cpus == 1 else 0) for _ in range(spis)]
        self._live: set[tuple[int, int]] = set()  # (CPU or _SHARED, INTID) of every pending or active interrupt
        self.on_change = on_change
        self._batching, self._changed = False, False  # one notice per register access, not per interrupt

    # --- state, as devices and CPU interfaces see it --------------------------------------------

    def interrupt(self, cpu: int, intid: int) -> Interrupt:
        """The state of `intid` as CPU `cpu` sees it (SGIs and PPIs are banked per CPU)."""
        return self._private[cpu][intid] if intid < FIRST_SPI else self._shared[intid - FIRST_SPI]

    def exists(self, intid: int) -> bool:
        return 0 <= intid < self.lines

    def change(self, cpu: int, intid: int, **fields) -> None:
        """Update one interrupt's state as CPU `cpu` sees it. Every change goes through here, so the
        set of live (pending or active) interrupts stays right and the CPU interfaces hear of it."""
        irq = self.interrupt(cpu, intid)
        for name, value in fields.items():
            setattr(irq, name, value)
        key = (cpu if intid < FIRST_SPI else _SHARED, intid)
        if irq.pending or irq.active:
            self._live.add(key)
        else:
            self._live.discard(key)
        self._notify()

    def _notify(self) -> None:
        if self._batching:
            self._changed = True
        elif self.on_change is not None:
            self.on_change()

    def set_line(self, intid: int, level: bool, cpu: int = 0) -> None:
        """A device drives its interrupt line: PPIs (`cpu`'s own) and SPIs. A rising edge latches an
        edge-triggered interrupt; a level-sensitive one is pending while the line is high."""
        if intid in SGIS or not self.exists(intid) or not 0 <= cpu < self.cpus:
            return  # no such input: a device cannot drive an SGI, nor a line that does not exist
        irq = self.interrupt(cpu, intid)
        if irq.line != bool(level):
            self.change(cpu, intid, line=bool(level), latched=irq.latched or (bool(level) and irq.edge))

    def send_sgi(self, source: int, sgi: int, targets: int) -> None:
        """SGI `sgi` from CPU `source` becomes pending on each CPU in the `targets` bit mask that exists."""
        for cpu in range(self.cpus):
            if targets >> cpu & 1:
                self.change(cpu, sgi & 0xF, sources=self._private[cpu][sgi & 0xF].sources | 1 << source)

    def live(self, cpu: int) -> list[int]:
        """The INTIDs pending or active as CPU `cpu` sees them (its own SGIs and PPIs, all SPIs), sorted."""
        return sorted(intid for bank, intid in self._live if bank in (cpu, _SHARED))

    # --- the state as plain data (a migrating VM's virtual distributor travels so) -----------------

    def state(self) -> dict:
        """GICD_CTLR and every interrupt's fields that differ from reset, as plain data:
        {"ctlr": ..., "interrupts": [[cpu, intid, {field: value}], ...]} (cpu None for an SPI)."""
        fresh = Distributor(self.cpus, self.lines - FIRST_SPI)
        banks = [(cpu, intid) for cpu in range(self.cpus) for intid in range(FIRST_SPI)]
        banks += [(None, intid) for intid in range(FIRST_SPI, self.lines)]
        changed = []
        for cpu, intid in banks:
            now, reset = asdict(self.interrupt(cpu or 0, intid)), asdict(fresh.interrupt(cpu or 0, intid))
            if now != reset:
                changed.append([cpu, intid, {name: value for name, value in now.items() if value != reset[name]}])
        return {"ctlr": self.ctlr, "interrupts": changed}

    def restore(self, state: dict) -> None:
        """Take the state `state()` gave, on a distributor of the same shape that has just been reset."""
        self.ctlr = state["ctlr"]
        for cpu, intid, fields in state["interrupts"]:
            if not self.exists(intid) or not 0 <= (cpu or 0) < self.cpus:
                raise ValueError(f"the state has INTID {intid} of CPU {cpu}; this distributor serves {self.cpus} "
                                 f"CPU(s) and INTIDs up to {self.lines - 1}")
            self.change(cpu or 0, intid, **fields)

    def best_pending(self, cpu: int, groups: int) -> Candidate | None:
        """The interrupt the distributor forwards to CPU `cpu`: pending, enabled, not active, aimed at
        this CPU, its group enabled here and in `groups` (the CPU interface's); the lowest priority
        value wins, then the lowest INTID (as QEMU)."""
        groups &= self.ctlr
        best: Candidate | None = None
        if not groups:
            return None
        private, shared = self._private[cpu], self._shared
        for bank, intid in self._live:  # few: only the pending and active ones
            if bank != cpu and bank != _SHARED:
                continue
            irq = private[intid] if intid < FIRST_SPI else shared[intid - FIRST_SPI]
            if not irq.pending or not irq.enabled or irq.active or not groups >> irq.group & 1:
                continue
            if intid >= FIRST_SPI and not irq.targets >> cpu & 1:
                continue
            if best is None or (irq.priority, intid) < (best.priority, best.intid):
                source = (irq.sources & -irq.sources).bit_length() - 1 if intid in SGIS else 0
                best = Candidate(intid, irq.priority, irq.group, source)
        return best

    def acknowledge(self, cpu: int, chosen: Candidate) -> None:
        """GICC_IAR took `chosen`: pending -> active (a level interrupt whose line is still high, or
        an SGI pending from another source too, stays pending as well: active and pending)."""
        if chosen.intid in SGIS:
            sources = self.interrupt(cpu, chosen.intid).sources & ~(1 << chosen.source)
            self.change(cpu, chosen.intid, active=True, sources=sources)
        else:
            self.change(cpu, chosen.intid, active=True, latched=False)

    def deactivate(self, cpu: int, intid: int) -> None:
        """The interrupt is complete: active -> inactive (or pending, if asserted again meanwhile)."""
        if self.exists(intid):
            self.change(cpu, intid, active=False)

    # --- registers --------------------------------------------------------------------------------

    def register_name(self, offset: int) -> str:
        if offset in _SINGLE:
            return _SINGLE[offset]
        if offset in ID_REGISTERS:
            return "GICD_" + _ID_NAMES[(offset - 0xFD0) // 4]
        for bank in _BANKS:
            if bank.offset <= offset < bank.end:
                return f"{bank.name}{(offset - bank.offset) // 4}"
        return f"GICD+{offset:#x}"

    def read(self, cpu: int, offset: int, size: int) -> int:
        """A read by CPU `cpu` of `size` bytes at `offset` (SGIs' and PPIs' registers are its own)."""
        word = {0x000: self.ctlr, 0x004: self._typer(), 0x008: GICD_IIDR}.get(offset & ~3, ID_REGISTERS.get(offset & ~3))
        if word is not None:
            return (word >> 8 * (offset & 3)) & ((1 << 8 * size) - 1)
        bank = self._bank(offset)
        if bank is None:
            return 0  # reserved, implementation defined, or GICD_SGIR (write-only): RAZ
        value = 0
        for i, intid in self._fields(bank, offset, size):
            if self.exists(intid):
                value |= bank.read(self, cpu, intid) << (i * bank.bits)
        return value

    def write(self, cpu: int, offset: int, size: int, value: int) -> None:
        """A write by CPU `cpu`; what does not exist or is read-only ignores it."""
        self._batching = True
        try:
            if offset == 0x000:
                self.ctlr = value & (ENABLE_GRP0 | ENABLE_GRP1)
                self._changed = True
            elif offset == 0xF00 and size == 4:
                self._sgir(cpu, value)
            elif (bank := self._bank(offset)) is not None:
                mask = (1 << bank.bits) - 1
                for i, intid in self._fields(bank, offset, size):
                    if self.exists(intid):
                        bank.write(self, cpu, intid, (value >> (i * bank.bits)) & mask)
        finally:
            self._batching, changed, self._changed = False, self._changed, False
        if changed:
            self._notify()

    def _typer(self) -> int:
        """GICD_TYPER: ITLinesNumber [4:0] (32 INTIDs per line), CPUNumber [7:5], no Security Extensions."""
        return (self.lines // 32 - 1) | (self.cpus - 1) << 5

    def _sgir(self, cpu: int, value: int) -> None:
        """GICD_SGIR: TargetListFilter [25:24] (0 the list, 1 all others, 2 this CPU, 3 reserved:
        every CPU, as QEMU), CPUTargetList [23:16], SGIINTID [3:0]."""
        target_filter, target_list = (value >> 24) & 3, (value >> 16) & 0xFF
        everyone = (1 << self.cpus) - 1
        targets = (target_list, everyone & ~(1 << cpu), 1 << cpu, everyone)[target_filter]
        self.send_sgi(cpu, value & 0xF, targets)

    @staticmethod
    def _bank(offset: int) -> _Bank | None:
        return next((b for b in _BANKS if b.offset <= offset < b.end), None)

    @staticmethod
    def _fields(bank: _Bank, offset: int, size: int):
        """(field index in the access, INTID) for each interrupt an access of `size` bytes covers."""
        per_byte = 8 // bank.bits
        first = (offset - bank.offset) * per_byte
        for i in range(size * per_byte):
            if first + i < bank.interrupts:
                yield i, first + i


# --- the CPU interface -------------------------------------------------------------------------


class InterruptSource(Protocol):
    """What holds the interrupts a CPU interface serves: the distributor, or a vCPU's list registers."""

    def best_pending(self, groups: int) -> Candidate | None: ...
    def acknowledge(self, chosen: Candidate) -> None: ...
    def deactivate(self, intid: int, source: int) -> bool: ...  # False: no such active interrupt


@dataclass
class CpuInterfaceState:
    """A CPU interface's own registers: what a virtual one keeps in GICH_VMCR and GICH_APR."""

    ctlr: int = 0
    pmr: int = 0
    bpr: int = 0
    abpr: int = 1
    active_priorities: int = 0  # bit n: an interrupt of the n-th group priority level is active (GICC_APRn)
    active_priorities_group1: int = 0  # the same for Group 1 (GICC_NSAPRn), if kept apart


class CpuInterface:
    """A GICv2 CPU interface (GICC_*, or GICV_* for a virtual one): acknowledge, complete, mask.

    `priority_bits` is how many priority bits it implements (8 on QEMU's GICC, 5 on a virtual
    interface): unimplemented low bits read as zero, and the binary point cannot go below
    7 - priority_bits (nor below 0): the group priority has at most 7 bits, at most priority_bits.
    Each possible group priority is one bit of the active priorities (GICC_APRn, GICH_APR).
    """

    prefix = "GICC"
    name, base, size = "gicc", GICC_BASE, GICC_SIZE  # as a device (vlab.machine.board.Device)

    def __init__(self, source: InterruptSource, priority_bits: int = 8, group1_apart: bool = True,
                 on_change: Callable[[], None] | None = None):
        """`group1_apart`: Group 1's active priorities have their own registers (GICC_NSAPRn), as on
        QEMU's GICC; a virtual interface keeps both groups in one (GICH_APR)."""
        self.source = source
        self.priority_bits = priority_bits
        self._priority_mask = (0xFF << (8 - priority_bits)) & 0xFF  # the bits it implements
        self.group1_apart = group1_apart
        self.min_bpr = max(0, 7 - priority_bits)
        self._level_shift = self.min_bpr + 1  # group priority >> this = its bit in the active priorities
        self.state = CpuInterfaceState(bpr=self.min_bpr, abpr=self.min_bpr + 1)
        self.on_change = on_change

    # --- priorities -------------------------------------------------------------------------------


    def group_priority(self, priority: int, group: int) -> int:
        """The part of a priority that decides preemption: bits above the binary point
        (GICC_ABPR's for Group 1 unless CBPR, GICC_BPR's otherwise)."""
        s = self.state
        bpr = s.abpr if group == 1 and not s.ctlr & CBPR else s.bpr
        return priority & self._priority_mask & (0xFF << (bpr + 1))

    def running_priority(self) -> int:
        """The group priority of the most urgent active interrupt; IDLE_PRIORITY when none is."""
        active = self.state.active_priorities | self.state.active_priorities_group1
        if not active:
            return IDLE_PRIORITY
        return ((active & -active).bit_length() - 1) << self._level_shift

    def _usable(self) -> Candidate | None:
        """The best pending interrupt, if it gets past the priority mask (the HPPIR view)."""
        best = self.source.best_pending(self.state.ctlr & (ENABLE_GRP0 | ENABLE_GRP1))
        if best is None or best.priority & self._priority_mask >= self.state.pmr:
            return None
        return best

    def _preempts(self, best: Candidate) -> bool:
        return self.group_priority(best.priority, best.group) < self.running_priority()

    def signal(self) -> str | None:
        """"IRQ" or "FIQ" when this interface interrupts its CPU now, else None."""
        best = self._usable()
        if best is None or not self._preempts(best):
            return None
        return "FIQ" if best.group == 0 and self.state.ctlr & FIQ_EN else "IRQ"

    # --- the protocol: IAR, EOIR, DIR -----------------------------------------------------------

    def acknowledge(self) -> int:
        """GICC_IAR: take the best interrupt (pending -> active, the running priority rises to its
        group priority) and return its INTID (with the source CPU for an SGI); 1023 if none may be."""
        best = self._usable()
        if best is None:
            return SPURIOUS
        if best.group == 1 and not self.state.ctlr & ACK_CTL:
            return GROUP1_PENDING
        if not self._preempts(best):
            return SPURIOUS
        self.source.acknowledge(best)
        level = 1 << (self.group_priority(best.priority, best.group) >> self._level_shift)
        if best.group == 1 and self.group1_apart:
            self.state.active_priorities_group1 |= level
        else:
            self.state.active_priorities |= level
        self._changed()
        return best.iar

    def end_of_interrupt(self, value: int) -> None:
        """GICC_EOIR: drop the running priority, and deactivate the interrupt unless
        GICC_CTLR.EOImode splits that off to GICC_DIR."""
        intid, source = value & 0x3FF, (value >> 10) & 7
        s = self.state
        active = s.active_priorities | s.active_priorities_group1
        if intid >= 1020 or not active:
            return  # a spurious ID, or nothing active: ignored
        most_urgent = active & -active  # the lowest bit: software completes interrupts innermost first
        s.active_priorities &= ~most_urgent
        s.active_priorities_group1 &= ~most_urgent
        if not self.state.ctlr & EOI_MODE:
            self._deactivate(intid, source)
        self._changed()

    def deactivate(self, value: int) -> None:
        """GICC_DIR: deactivate an interrupt whose priority was dropped (EOImode = 1; else ignored)."""
        if self.state.ctlr & EOI_MODE and value & 0x3FF < 1020:
            self._deactivate(value & 0x3FF, (value >> 10) & 7)
            self._changed()

    def _deactivate(self, intid: int, source: int) -> None:
        self.source.deactivate(intid, source)

    def highest_pending(self) -> int:
        """GICC_HPPIR: what IAR would return, were the running priority idle."""
        best = self._usable()
        if best is None:
            return SPURIOUS
        if best.group == 1 and not self.state.ctlr & ACK_CTL:
            return GROUP1_PENDING
        return best.iar

    # --- registers --------------------------------------------------------------------------------

    def register_name(self, offset: int) -> str:
        name = CPU_INTERFACE_REGISTERS.get(offset & ~3)
        return f"{self.prefix}_{name}" if name else f"{self.prefix}+{offset:#x}"

    def read(self, offset: int, size: int) -> int:
        word = self._read_word(offset & ~3)
        return (word >> 8 * (offset & 3)) & ((1 << 8 * size) - 1)

    def _read_word(self, offset: int) -> int:
        s = self.state
        if offset == 0x00:
            return s.ctlr
        if offset == 0x04:
            return s.pmr
        if offset == 0x08:
            return s.bpr
        if offset == 0x0C:
            return self.acknowledge()
        if offset == 0x14:
            return min(self.running_priority(), 0xFF)
        if offset == 0x18:
            return self.highest_pending()
        if offset == 0x1C:
            return s.abpr
        if offset == 0xFC:
            return GICC_IIDR
        if (bank := self._apr_bank(offset)) is not None:
            return getattr(s, bank[0]) >> 32 * bank[1] & 0xFFFF_FFFF
        return 0  # EOIR and DIR are write-only; reserved and aliased registers RAZ

    def _apr_bank(self, offset: int) -> tuple[str, int] | None:
        """GICC_APRn (+0xD0) and GICC_NSAPRn (+0xE0): 32 group-priority levels each, as many
        registers as levels (4 with 8 priority bits, 1 with 5): (state field, register number)."""
        registers = max(1, (1 << (8 - self._level_shift)) // 32)
        for base, name in ((0xD0, "active_priorities"), (0xE0, "active_priorities_group1")):
            if base <= offset < base + 4 * registers and (base == 0xD0 or self.group1_apart):
                return name, (offset - base) // 4
        return None

    def write(self, offset: int, size: int, value: int) -> None:
        if size != 4:
            return  # the CPU interface's registers are word-accessible only
        s = self.state
        if offset == 0x00:
            s.ctlr = value & CPU_CTLR_MASK
        elif offset == 0x04:
            s.pmr = value & self._priority_mask
        elif offset == 0x08:
            s.bpr = max(value & 7, self.min_bpr)
        elif offset == 0x10:
            self.end_of_interrupt(value)
            return
        elif offset == 0x1C:
            s.abpr = max(value & 7, self.min_bpr + 1)
        elif offset == 0x1000:
            self.deactivate(value)
            return
        elif (bank := self._apr_bank(offset)) is not None:  # software restoring saved state (power management)
            name, shift = bank[0], 32 * bank[1]
            setattr(s, name, getattr(s, name) & ~(0xFFFF_FFFF << shift) | (value & 0xFFFF_FFFF) << shift)
        else:
            return
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


CPU_INTERFACE_REGISTERS = {
    0x00: "CTLR", 0x04: "PMR", 0x08: "BPR", 0x0C: "IAR", 0x10: "EOIR", 0x14: "RPR", 0x18: "HPPIR",
    0x1C: "ABPR", 0x20: "AIAR", 0x24: "AEOIR", 0x28: "AHPPIR", 0xD0: "APR0", 0xD4: "APR1", 0xD8: "APR2",
    0xDC: "APR3", 0xE0: "NSAPR0", 0xE4: "NSAPR1", 0xE8: "NSAPR2", 0xEC: "NSAPR3", 0xFC: "IIDR", 0x1000: "DIR",
}


class _DistributorPort:
    """The distributor as one CPU interface's interrupt source."""

    def __init__(self, distributor: Distributor, cpu: int):
        self.distributor, self.cpu = distributor, cpu

    def best_pending(self, groups: int) -> Candidate | None:
        return self.distributor.best_pending(self.cpu, groups)

    def acknowledge(self, chosen: Candidate) -> None:
        self.distributor.acknowledge(self.cpu, chosen)

    def deactivate(self, intid: int, source: int) -> bool:
        self.distributor.deactivate(self.cpu, intid)
        return True


# --- the GIC: the distributor, the CPU interfaces, and the lines to the CPUs ------------------


class DistributorFrame:
    """The distributor's registers as CPU `cpu` sees them: a device to map on that CPU's core."""

    name, base, size = "gicd", GICD_BASE, GICD_SIZE

    def __init__(self, distributor: Distributor, cpu: int):
        self.distributor, self.cpu = distributor, cpu

    def read(self, offset: int, size: int) -> int:
        return self.distributor.read(self.cpu, offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.distributor.write(self.cpu, offset, size, value)

    def register_name(self, offset: int) -> str:
        return self.distributor.register_name(offset)


class GIC:
    """QEMU virt's GICv2 for `cpus` CPUs: a distributor, a CPU interface per CPU, an IRQ and FIQ
    line per CPU.

    A board maps `devices(cpu)` on CPU `cpu`'s core, drives the devices' lines with `set_ppi` and
    `set_spi`, and asks `signal(cpu)` ("IRQ", "FIQ" or None) for a CPU's lines. When they change -- a guest wrote
    GICD_SGIR, unmasked with GICC_PMR, acknowledged, a timer fired -- `on_signal(cpu)` is called,
    so that the core's input follows (and a running core can be stopped to take the interrupt).
    """

    def __init__(self, cpus: int = 1, spis: int = QEMU_VIRT_SPIS, on_signal: Callable[[int], None] | None = None):
        self.distributor = Distributor(cpus, spis, on_change=self._refresh)
        self.cpu_interfaces = [CpuInterface(_DistributorPort(self.distributor, n), on_change=self._refresh)
                               for n in range(cpus)]
        self.on_signal = on_signal
        self._signalled: list[str | None] = [None] * cpus

    @property
    def cpus(self) -> int:
        return self.distributor.cpus

    def devices(self, cpu: int) -> tuple[DistributorFrame, CpuInterface]:
        """The distributor and CPU-interface frames as CPU `cpu` sees them, ready to map on its core."""
        return DistributorFrame(self.distributor, cpu), self.cpu_interfaces[cpu]

    def set_ppi(self, cpu: int, intid: int, level: bool) -> None:
        """A private device of CPU `cpu` (a timer) drives its line: INTID 16-31."""
        if intid in PPIS:
            self.distributor.set_line(intid, level, cpu)

    def set_spi(self, intid: int, level: bool) -> None:
        """A shared device drives its line: INTID 32 and up."""
        if intid >= FIRST_SPI:
            self.distributor.set_line(intid, level)

    def signal(self, cpu: int) -> str | None:
        """"IRQ" or "FIQ" if CPU `cpu`'s interrupt line is asserted, else None."""
        return self.cpu_interfaces[cpu].signal() if 0 <= cpu < self.cpus else None

    def irq_pending(self, cpu: int) -> bool:
        return self.signal(cpu) == "IRQ"

    def why_silent(self, cpu: int, intid: int) -> str:
        """In words, why `intid` does not interrupt CPU `cpu` now (for a guest stuck in WFI)."""
        d, c = self.distributor, self.cpu_interfaces[cpu].state
        irq = d.interrupt(cpu, intid)
        group = f"Group {irq.group}"
        reasons = (
            (not d.ctlr >> irq.group & 1, f"the distributor does not forward {group} (GICD_CTLR = {d.ctlr:#x})"),
            (not irq.enabled, f"INTID {intid} is disabled (GICD_ISENABLER{intid // 32} bit {intid % 32})"),
            (irq.active, f"INTID {intid} is still active: it was acknowledged and never completed (GICC_EOIR)"),
            (not irq.pending, f"INTID {intid} is not pending"),
            (not c.ctlr >> irq.group & 1, f"the CPU interface does not signal {group} (GICC_CTLR = {c.ctlr:#x})"),
            (irq.priority >= c.pmr, f"its priority {irq.priority:#x} is not below GICC_PMR = {c.pmr:#x}"),
        )
        found = next((why for holds, why in reasons if holds), None)
        if found is not None:
            return found
        running = self.cpu_interfaces[cpu].running_priority()
        return f"the running priority {running:#x} (an interrupt being handled) is not above its priority {irq.priority:#x}"

    def _refresh(self) -> None:
        for cpu in range(self.cpus):
            now = self.cpu_interfaces[cpu].signal()
            changed = now != self._signalled[cpu]
            self._signalled[cpu] = now
            if changed and self.on_signal is not None:
                self.on_signal(cpu)
