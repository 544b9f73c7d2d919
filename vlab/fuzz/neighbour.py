"""The neighbour check: generated hostile programs beside a victim on one host, and what must hold.

    a host (1 or 2 physical CPUs, small slices, VMs' frames interleaved in its memory, page
    sharing on or off) runs a VICTIM and a few hostile VMs, each a program(seed, hostile=True)

    isolation of the victim's state: it ends exactly as it ends alone -- stop reason, console
        output, instructions, registers, EL1 system registers, every byte of its RAM;
    the host buffer: every frame that is not a hostile VM's own (its private RAM, its stage-2
        tables) and not the victim's is unchanged, byte for byte; the victim's stage-2 tables map
        nothing but its RAM, onto frames no hostile VM owns, and a frame VMs share is read-only
        to all of them (copy-on-write) -- its bytes are among those unchanged;
    isolation of reads: the hostile VMs end exactly the same whatever secret the victim holds in
        its registers and RAM (the victim's work does not depend on the secret's value, so the
        schedule is the same: only a leak could tell the two runs apart);
    robustness: every VM ends in a guest-level outcome -- never a vlab error, a hang or a Python
        exception.

The victim's lone runs are made once per process. `check(seed)` reproduces a finding: the host's
setup comes from `seed`, its hostile programs are those of seeds seed .. seed + GROUP - 1.
"""

from __future__ import annotations

import functools
import random
import struct
import traceback
from collections import Counter
from dataclasses import dataclass, field

from vlab.arch.hcr import HCR
from vlab.asm import assemble
from vlab.fuzz.attacks import ATTACKS, Attack
from vlab.fuzz.check import Finding, Hang, Machine, _robustness, escaped, hang_guard
from vlab.fuzz.programs import DATA, RAM_SIZE, program
from vlab.guests.mmu import MMU_ON
from vlab.hyp import SUPPORTED_TRAPS
from vlab.hyp.equivalence import guest_state, ram_of
from vlab.hyp.host import Host
from vlab.hyp.memory import HostMemory, VmMemory
from vlab.hyp.vm import VM, VmRunResult, share_identical_pages
from vlab.machine.board import RAM_BASE
from vlab.machine.gic import GICC_BASE, GICD_BASE
from vlab.machine.loader import Image, Segment, image_from_program, load
from vlab.machine.uart import UART_BASE
from vlab.mmu.descriptors import LEVEL_SHIFT, OA_MASK
from vlab.mmu.tables import PAGE
from vlab.sched.registry import make_policy

GROUP = 8  # hostile VMs per host: each is the victim's neighbour (and each other's)
READ_CHECK_EVERY = 8  # hosts: one in so many runs again with the other secret
HOSTILE_SNIPPETS = 8  # at most, per program: assembling them is a third of the cost
BUDGET = 20_000  # instructions per VM; the victim needs about 6,000
TIMEOUT_S = 30.0
HANG_S = 120.0  # far past the host run's own wall-clock guard: only a loop inside vlab lasts so long
SPARE_FRAMES = 256  # free host frames beside a hand-written attack, for its stray writes to hit
SLICES = (300, 1_000, 5_000)  # host ticks: the victim is preempted many times
LAYOUTS = ("contiguous", "scattered", "demand", "demand", "demand")  # demand paging most often: cheapest to make
SECRETS = (0x5EC2_E7A1_1CE0_0001, 0x0BAD_C0DE_D00D_F00D)  # what the victim holds, in two runs
SECRET_AT = RAM_BASE + 0x8000  # the secret's page (never copied to a hostile VM)
BUFFER = RAM_BASE + 0x1_0000  # what the victim writes: a stream drawn from the secret, over 31 pages
WORDS, STRIDE = 512, 248
_HOSTILE_TRAPS = [bit for bit in HCR if bit & SUPPORTED_TRAPS and bit is not HCR.TSC]

# The victim: turns its GIC and its MMU on, takes interrupts (it has no source of its own: alone
# it takes none, and counts them in x28), keeps its secret in x19, d30 and v31, writes a stream drawn from its secret over 31 pages,
# sums it back and prints the sum in hex. No branch depends on the secret, so its run takes the
# same instructions and exits whatever the secret is.
VICTIM_SOURCE = f"""_start:
    adr     x0, vectors
    msr     vbar_el1, x0
    ldr     x1, ={GICD_BASE:#x}
    mov     w2, #1
    str     w2, [x1]                     // GICD_CTLR
    ldr     w2, =0xffffffff
    str     w2, [x1, #0x100]             // GICD_ISENABLER0: every SGI and PPI
    ldr     x1, ={GICC_BASE:#x}
    mov     w2, #0xf0
    str     w2, [x1, #4]                 // GICC_PMR
    mov     w2, #1
    str     w2, [x1]                     // GICC_CTLR
    msr     daifclr, #2                  // IRQs on
    ldr     x1, ={RAM_BASE + 0x4_0000:#x}
    ldr     x2, =0x405                   // VA 0 -> PA 0, the devices
    str     x2, [x1]
    ldr     x2, ={RAM_BASE | 0x701:#x}   // VA 0x4000_0000 -> RAM
    str     x2, [x1, #8]
{MMU_ON}    ldr     x9, ={SECRET_AT:#x}
    ldr     x19, [x9]                    // the secret, in a register
    fmov    d30, x19                     // and in SIMD registers
    dup     v31.2d, x19
    mov     x1, x19
    ldr     x20, ={BUFFER:#x}
    mov     x16, #{WORDS}
fill:
    eor     x1, x1, x1, lsl #13          // xorshift64
    eor     x1, x1, x1, lsr #7
    eor     x1, x1, x1, lsl #17
    str     x1, [x20], #{STRIDE}
    subs    x16, x16, #1
    b.ne    fill
    ldr     x20, ={BUFFER:#x}
    mov     x16, #{WORDS}
    mov     x3, #0
sum:
    ldr     x4, [x20], #{STRIDE}
    add     x3, x3, x4
    ror     x3, x3, #7
    subs    x16, x16, #1
    b.ne    sum
    ldr     x21, ={UART_BASE:#x}
    mov     x16, #16
    mov     x6, #0x30                    // '0'
    mov     x7, #0x57                    // 'a' - 10
digit:
    ror     x3, x3, #60                  // the next nibble, from the top, to the bottom
    and     x5, x3, #0xf
    cmp     x5, #10
    csel    x8, x7, x6, hs
    add     x5, x5, x8
    strb    w5, [x21]
    subs    x16, x16, #1
    b.ne    digit
    mov     w5, #10
    strb    w5, [x21]
    ldr     x0, =0x84000008
    hvc     #0
    .balign 0x800
vectors:
    b       .                            // a synchronous exception: none is expected
    .balign 0x80
    b       .
    .balign 0x200
    b       .
    .balign 0x80
    add     x28, x28, #1                 // an IRQ, from EL1 with SP_EL1: count it, acknowledge, complete
    ldr     x26, ={GICC_BASE:#x}
    ldr     w27, [x26, #0xc]             // GICC_IAR
    str     w27, [x26, #0x10]            // GICC_EOIR
    eret
"""
VICTIM_TRAPS = HCR.TSC | HCR.TWI


@functools.cache
def _victim_code() -> bytes:
    return assemble(VICTIM_SOURCE, RAM_BASE).code


def victim_image(secret: int = SECRETS[0]) -> Image:
    """The victim, holding `secret` in its RAM (its code page holds no secret: it may be shared)."""
    code = _victim_code()
    return Image((Segment(RAM_BASE, code, len(code)), Segment(SECRET_AT, secret.to_bytes(8, "little"), 8)), RAM_BASE)


@functools.cache
def alone(secret: int = SECRETS[0]) -> tuple[VM, VmRunResult]:
    """The victim's run alone on a host of its own, and its result: what it must end as beside anything."""
    vm = VM.from_image(victim_image(secret), stage2="contiguous", ram_size=RAM_SIZE, traps=VICTIM_TRAPS)
    return vm, vm.run(max_insns=BUDGET)


@dataclass(frozen=True)
class Setup:
    """How one host is made: drawn from its seed."""

    seed: int
    pcpus: int
    policy: str
    slice_ticks: int
    victim_at: int  # the victim's place among the VMs (so its VMID and frames vary)
    layouts: tuple[str, ...]  # victim's first, then each hostile VM's
    vcpus: tuple[int, ...]  # each hostile VM's
    traps: tuple[HCR, ...]  # each hostile VM's: TSC always (as KVM sets it), others drawn
    share: bool  # content-based page sharing between all the VMs, before they run
    copy_victim_code: tuple[bool, ...]  # each hostile VM: a copy of the victim's code page in its data

    @classmethod
    def of(cls, seed: int, hostile: int = GROUP) -> Setup:
        rng = random.Random(seed ^ 0x0E16_4B02)
        return cls(seed, rng.choice((1, 1, 2)), rng.choice(("rr", "credit")), rng.choice(SLICES),
                   rng.randint(0, hostile), tuple(rng.choice(LAYOUTS) for _ in range(hostile + 1)),
                   tuple(rng.choice((1, 2, 2, 4)) for _ in range(hostile)),
                   tuple(HCR.TSC | HCR(sum(b for b in _HOSTILE_TRAPS if rng.random() < 0.5)) for _ in range(hostile)),
                   rng.random() < 0.15, tuple(rng.random() < 0.5 for _ in range(hostile)))

    def describe(self) -> str:
        return (f"host seed {self.seed}: {self.pcpus} pCPU(s), {self.policy} slice {self.slice_ticks}, victim "
                f"{self.layouts[0]} at {self.victim_at}, sharing {'on' if self.share else 'off'}")


@dataclass
class Run:
    """One host's run: its VMs, the victim among them, and the host buffer before the run."""

    host: Host
    victim: VM
    hostile: list[VM]
    before: bytes
    freed: int = 0  # host frames page sharing gave back
    error: str | None = None  # the traceback of a Python exception that escaped


def host_bytes(hostile: int) -> int:
    """The host memory for the victim and `hostile` VMs: their RAM and tables, every one promised
    (a page shared gives its frame back, promised to it for the copy a write will make)."""
    return (hostile + 1) * (RAM_SIZE // PAGE + 16) * PAGE


def build(setup: Setup, images: list[Image], secret: int = SECRETS[0], spare: int = 0) -> Run:
    """The host of `setup` with the victim and one hostile VM per image, loaded (and sharing pages);
    `spare` frames more than they need, free for a stray write to hit."""
    count = len(images)
    host = Host(pcpus=setup.pcpus, memory=HostMemory(host_bytes(count) + spare * PAGE, seed=setup.seed),
                scheduler=make_policy(setup.policy, setup.pcpus, slice_ticks=setup.slice_ticks),
                lockstep=setup.slice_ticks)
    victim, hostile = None, []
    for place in range(count + 1):
        if place == setup.victim_at:
            victim = VM.from_image(victim_image(secret), host=host, stage2=setup.layouts[0], ram_size=RAM_SIZE,
                                   traps=VICTIM_TRAPS, seed=setup.seed)
            continue
        k = len(hostile)
        vm = VM(host=host, stage2=setup.layouts[k + 1], ram_size=RAM_SIZE, vcpus=setup.vcpus[k],
                traps=setup.traps[k], seed=setup.seed + k + 1)
        load(vm, images[k])
        if setup.copy_victim_code[k]:  # where its stores aim: a page it may share with the victim's code
            vm.write_memory(DATA, _victim_code()[:PAGE])
        hostile.append(vm)
    freed = share_identical_pages(victim, *hostile) if setup.share else 0
    return Run(host, victim, hostile, bytes(host.memory.buffer), freed)


def run(run_: Run, budget: int = BUDGET) -> Run:
    """Run the host until every VM has stopped; a Python exception escaping is kept, not raised."""
    try:
        with hang_guard(HANG_S):
            run_.host.run(max_insns=budget, timeout_s=TIMEOUT_S)
    except (Exception, Hang):  # noqa: BLE001 - a Python exception escaping vlab is exactly what we look for
        run_.error = traceback.format_exc(limit=4)
    return run_


# --- what must hold ---------------------------------------------------------------------------------


@dataclass
class Stage2Tree:
    """A VM's stage-2 tables as they stand in host memory, read whole: what they map, and what is
    wrong with them (an entry neither zero nor a valid descriptor, a table not the VM's own, a
    block, a page outside its RAM)."""

    pages: dict[int, tuple[int, bool]]  # IPA page -> (host frame, writable)
    tables: set[int]
    problems: list[str]

    @classmethod
    def of(cls, memory: VmMemory) -> Stage2Tree:
        regime, buffer, own = memory.regime, memory.host.buffer, set(memory.tables.tables)
        tree = cls({}, set(), [])

        def visit(table: int, level: int, base: int, entries: int) -> None:
            tree.tables.update(range(table, table + 8 * entries, PAGE))  # a concatenated root is several frames
            for index, value in enumerate(struct.unpack_from(f"<{entries}Q", buffer, table)):
                if value == 0:
                    continue
                ipa = base + (index << LEVEL_SHIFT[level])
                output = value & OA_MASK
                if value & 3 == 3 and level < 3:
                    if output in own:
                        visit(output, level + 1, ipa, 512)
                    else:
                        tree.problems.append(f"IPA {ipa:#x}: a table at {output:#x}, not one of the VM's")
                elif value & 3 != 3 or not memory.in_ram(ipa):
                    tree.problems.append(f"IPA {ipa:#x}: descriptor {value:#x} at level {level} is not a page "
                                         "of the VM's RAM")
                else:
                    tree.pages[ipa] = (output, bool(value >> 7 & 1))  # S2AP[1]: write

        visit(memory.tables.root, regime.start_level, 0, regime.concatenated * 512)
        if tree.tables != own:
            tree.problems.append(f"{len(own - tree.tables)} of the VM's stage-2 tables are not in its tree")
        return tree

    def private_frames(self, sharers: dict[int, int]) -> set[int]:
        """The host frames that are this VM's alone: its RAM not shared copy-on-write, its tables."""
        return {frame for frame, _ in self.pages.values() if frame not in sharers} | self.tables

    def ram(self, memory: VmMemory) -> bytes:
        """The VM's RAM as its guest sees it (pages without a frame read as zeros)."""
        buffer, zero = memory.host.buffer, bytes(PAGE)
        return b"".join(buffer[self.pages[ipa][0]:self.pages[ipa][0] + PAGE] if ipa in self.pages else zero
                        for ipa in range(memory.ram_base, memory.ram_base + memory.ram_size, PAGE))


def victim_differences(victim: VM, tree: Stage2Tree, secret: int = SECRETS[0]) -> list[str]:
    """What differs between the victim's end and its lone run's with the same secret: how it ended,
    its output, its registers (SIMD and floating-point too) and system registers, its RAM."""
    reference, theirs = alone(secret)
    mine = victim.result()
    found = [f"{what}: alone {a!r}, beside the hostile VMs {b!r}" for what, a, b in (
        ("stop reason", theirs.reason.value, mine.reason.value), ("console", theirs.uart, mine.uart),
        ("instructions", theirs.instructions, mine.instructions)) if a != b]
    a, b = (guest_state(vm.vcpus[0]) | vm.vcpus[0].vector_registers() for vm in (reference, victim))
    found += [f"{name}: alone {a[name]:#x}, beside the hostile VMs {b[name]:#x}" for name in a if a[name] != b[name]]
    ram_alone, ram = ram_of(reference.vcpus[0]), tree.ram(victim.memory)
    if ram_alone != ram:
        first = next(i for i, (x, y) in enumerate(zip(ram_alone, ram)) if x != y)
        found.append(f"RAM differs from alone, first at IPA {RAM_BASE + first:#x}")
    return found


def host_buffer_differences(run_: Run, private: set[int]) -> list[str]:
    """Frames of the host buffer that changed although no VM owns them privately (`private`): free
    frames, and frames shared copy-on-write."""
    before, after = run_.before, bytearray(run_.host.memory.buffer)
    for frame in private:
        after[frame:frame + PAGE] = before[frame:frame + PAGE]
    if after == before:  # one comparison: the common case is cheap
        return []
    memory = run_.host.memory
    return [f"host frame {frame:#x} ({memory.owner.get(frame, 'free')}) changed"
            for frame in range(0, len(before), PAGE) if after[frame:frame + PAGE] != before[frame:frame + PAGE]]


def stage2_problems(tree: Stage2Tree, sharers: dict[int, int], hostile: set[int]) -> list[str]:
    """What is wrong with the victim's stage 2: its tree's problems, a page onto a frame a hostile VM
    owns, a shared frame mapped writable."""
    problems = list(tree.problems)
    for ipa, (frame, writable) in tree.pages.items():
        if frame in hostile:
            problems.append(f"IPA {ipa:#x} maps host frame {frame:#x}, a hostile VM's")
        elif frame in sharers and writable:
            problems.append(f"IPA {ipa:#x} maps shared frame {frame:#x} writable")
    return problems


def hostile_state(vm: VM, tree: Stage2Tree) -> tuple:
    """Everything a hostile VM ends with that a leak could change: how it ended, its output, each
    vCPU's registers (SIMD and floating-point too) and system registers, its RAM."""
    result = vm.result()
    return (result.reason, result.uart, result.instructions, [guest_state(v) | v.vector_registers() for v in vm.vcpus],
            tree.ram(vm.memory))


# --- the tally ----------------------------------------------------------------------------------------


@dataclass
class NeighbourTally:
    """What a neighbour-fuzzing session did and found: the counts `make fuzz-neighbour` prints."""

    programs: int = 0
    hosts: int = 0
    shared_hosts: int = 0  # hosts whose VMs shared pages copy-on-write
    read_checks: int = 0  # hosts run twice, with two secrets in the victim
    endings: Counter = field(default_factory=Counter)  # the hostile VMs' stop reasons
    kinds: Counter = field(default_factory=Counter)  # snippet kind -> programs using it
    findings: list[Finding] = field(default_factory=list)

    def merge(self, other: NeighbourTally) -> None:
        for name in ("programs", "hosts", "shared_hosts", "read_checks"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.endings.update(other.endings)
        self.kinds.update(other.kinds)
        self.findings += other.findings

    def count(self, problem: str) -> int:
        return sum(f.problem == problem for f in self.findings)

    def report(self) -> str:
        lines = [f"{self.programs:,} hostile programs on {self.hosts:,} hosts beside a victim "
                 f"({self.shared_hosts:,} hosts with page sharing, {self.read_checks:,} run again with another secret)",
                 "hostile endings: " + ", ".join(f"{reason} {n:,}" for reason, n in self.endings.most_common()),
                 "snippet kinds: " + ", ".join(f"{kind} {n:,}" for kind, n in sorted(self.kinds.items())),
                 f"leaks: {self.count('leak')}, hangs: {self.count('hang')}, Python errors: "
                 f"{self.count('python exception')}, vlab errors: {self.count('vlab error')}"]
        lines += [f"  {finding}" for finding in self.findings[:20]]
        return "\n".join(lines)


def verify(run_: Run, secret: int) -> list[str]:
    """Every way the victim of `run_` was touched: its end against its lone run's, the host buffer
    outside the VMs' own frames, its stage-2 tables."""
    sharers = run_.host.memory.sharers
    hostile = set().union(*(Stage2Tree.of(vm.memory).private_frames(sharers) for vm in run_.hostile))
    tree = Stage2Tree.of(run_.victim.memory)
    return (victim_differences(run_.victim, tree, secret)
            + host_buffer_differences(run_, hostile | tree.private_frames(sharers))
            + stage2_problems(tree, sharers, hostile))


def read_leaks(first: Run, second: Run, names: list[str]) -> list[str]:
    """The hostile VMs (named by `names`) that end otherwise in `second`, whose victim holds another secret."""
    return [f"{name} ends otherwise when the victim holds another secret"
            for name, a, b in zip(names, first.hostile, second.hostile)
            if hostile_state(a, Stage2Tree.of(a.memory)) != hostile_state(b, Stage2Tree.of(b.memory))]


def check(seed: int, count: int = GROUP, read_check: bool | None = None) -> NeighbourTally:
    """Run the hostile programs of seeds seed .. seed + count - 1 beside the victim on the host of
    `seed`, and tally what holds. `read_check`: run it again with the other secret (default: one
    host in READ_CHECK_EVERY)."""
    seeds = list(range(seed, seed + count))
    setup = Setup.of(seed, count)
    name = setup.describe()
    programs = [program(s, HOSTILE_SNIPPETS, hostile=True) for s in seeds]
    images = [p.image() for p in programs]
    tally = NeighbourTally(programs=count, hosts=1, shared_hosts=int(setup.share),
                           kinds=Counter(kind for p in programs for kind in p.kinds))
    first = run(build(setup, images, SECRETS[0]))
    if first.error:
        tally.findings.append(escaped(seed, name, first.error))
        return tally
    for vm in [first.victim, *first.hostile]:
        result = vm.result()
        tally.findings += _robustness(seed, Machine(name, True), result, None)
        if vm is not first.victim:
            tally.endings[result.reason.value] += 1
    leaks = verify(first, SECRETS[0])
    if read_check if read_check is not None else seed // count % READ_CHECK_EVERY == 0:
        tally.read_checks += 1
        second = run(build(setup, images, SECRETS[1]))
        if second.error is None:
            leaks += read_leaks(first, second, [f"hostile program {s}" for s in seeds]) + verify(second, SECRETS[1])
    tally.findings += [Finding(seed, name, "leak", leak) for leak in leaks[:8]]
    return tally


def fuzz(seeds) -> NeighbourTally:
    """Check every seed in `seeds`, GROUP hostile programs to a host; the tally of them all."""
    seeds, total = list(seeds), NeighbourTally()
    for i in range(0, len(seeds), GROUP):
        group = seeds[i:i + GROUP]
        total.merge(check(group[0], len(group)))
    return total


# --- one attack, by hand: the hostile-neighbour experiment ------------------------------------------


@dataclass
class Outcome:
    """One hand-written attack (vlab.fuzz.attacks) run beside the victim, and what held."""

    attack: Attack
    setup: Setup
    attacker: VM  # as the first run left it (the victim holding SECRETS[0])
    victim: VmRunResult
    alone: VmRunResult
    hostile: VmRunResult
    leaks: list[str]  # the victim against alone, the host buffer, the victim's stage 2
    read_leaks: list[str]  # the attacker's end with the other secret in the victim
    frames_compared: int  # host frames compared byte for byte (not the VMs' own)
    frames_freed: int  # by page sharing before the run

    @property
    def isolated(self) -> bool:
        return not self.leaks and not self.read_leaks

    def table(self) -> str:
        """The victim beside the attacker against alone, the host buffer, the reads: a text report."""
        v, a, h = self.victim, self.alone, self.hostile
        same = lambda x, y: "same" if x == y else "DIFFERENT"
        registers = [name for name in a.registers if a.registers[name] != v.registers.get(name)]
        lines = [f"attack: {self.attack.name} -- {self.attack.what}",
                 f"host: {self.setup.pcpus} pCPU(s), {self.setup.policy} slice {self.setup.slice_ticks} ticks, "
                 f"page sharing {'on' if self.setup.share else 'off'}"
                 + (f" ({self.frames_freed} frames freed)" if self.setup.share else ""),
                 f"attacker: {h.reason.value} after {h.instructions:,} instructions, {sum(h.exits.values()):,} exits "
                 f"({h.message})",
                 f"{'':<14}{'alone':<22}{'beside the attacker':<22}",
                 f"{'output':<14}{a.uart.strip()!r:<22}{v.uart.strip()!r:<22}{same(a.uart, v.uart)}",
                 f"{'ended':<14}{a.reason.value:<22}{v.reason.value:<22}{same(a.reason, v.reason)}",
                 f"{'instructions':<14}{a.instructions:<22,}{v.instructions:<22,}{same(a.instructions, v.instructions)}",
                 f"{'registers':<14}{len(a.registers):<22}{len(a.registers) - len(registers):<22}"
                 + ("same" if not registers else f"DIFFERENT: {', '.join(registers[:4])}"),
                 f"host buffer: {self.frames_compared:,} frames outside the VMs' own compared byte for byte, "
                 f"{sum('host frame' in leak for leak in self.leaks)} changed",
                 f"reads: the attacker ends {'the same' if not self.read_leaks else 'OTHERWISE'} whichever secret "
                 "the victim holds",
                 "isolated: yes" if self.isolated else "isolated: NO -- " + "; ".join((self.leaks + self.read_leaks)[:4])]
        return "\n".join(lines)


def attack(chosen: str | Attack, share: bool = False, pcpus: int = 1, policy: str = "rr", slice_ticks: int = 1_000,
           layout: str = "scattered", budget: int = 2_000_000) -> Outcome:
    """Run the attack `chosen` (an Attack, or the name of one in vlab.fuzz.attacks.ATTACKS) beside the victim (first the victim, then
    the attacker, on a host of `pcpus` cores) with `budget` instructions each, twice -- the victim
    holding each of SECRETS -- and check what must hold. `share`: page sharing between the two,
    with a copy of the victim's code page in the attacker's data for it to write."""
    chosen = ATTACKS[chosen] if isinstance(chosen, str) else chosen
    setup = Setup(0, pcpus, policy, slice_ticks, 0, (layout, layout), (chosen.vcpus,), (HCR.TSC,), share, (share,))
    image = image_from_program(assemble(chosen.source(host_bytes(1) + SPARE_FRAMES * PAGE), RAM_BASE))
    runs = []
    for secret in SECRETS:
        built = build(setup, [image], secret, spare=SPARE_FRAMES)
        runs.append(run(built, budget))
        if built.error:
            raise RuntimeError(f"vlab failed on the attack {chosen.name!r}: {built.error}")
    first, second = runs
    private = set().union(*(Stage2Tree.of(vm.memory).private_frames(first.host.memory.sharers)
                            for vm in (first.victim, *first.hostile)))
    return Outcome(chosen, setup, first.hostile[0], first.victim.result(), alone(SECRETS[0])[1], first.hostile[0].result(),
                   verify(first, SECRETS[0]) + verify(second, SECRETS[1]),
                   read_leaks(first, second, [f"the attacker ({chosen.name})"]),
                   len(first.before) // PAGE - len(private), first.freed)


# --- what the fuzzer found: an overcommitted neighbour -------------------------------------------------


@dataclass
class Overcommit:
    """The victim beside a demand-paged attacker larger than the whole host, which touches every
    page it has: what the victim ended with against alone, and what the attacker got."""

    victim: VmRunResult
    alone: VmRunResult
    differences: list[str]
    attacker: VmRunResult
    attacker_pages: int  # frames the attacker's demand faults took
    attacker_ram_pages: int
    host_frames: int
    victim_promised: int  # frames promised to the victim as the run starts

    def table(self) -> str:
        return "\n".join([
            f"host: {self.host_frames:,} frames; the attacker has {self.attacker_ram_pages:,} pages of RAM, "
            f"demand-paged (overcommitted), and touches them all",
            f"frames promised to the victim as the run starts: {self.victim_promised:,}",
            f"attacker: {self.attacker.reason.value}, its demand faults took {self.attacker_pages:,} frames "
            f"({self.attacker.message})",
            f"victim: {self.victim.reason.value}, output {self.victim.uart.strip()!r} "
            f"(alone {self.alone.uart.strip()!r})",
            "isolated: yes" if not self.differences else "isolated: NO -- " + "; ".join(self.differences[:3])])


def overcommit(victim_layout: str = "demand", share: bool = False) -> Overcommit:
    """An attacker made first, demand-paged with 4x the victim's RAM on a host of 2x: it runs first
    and touches every page. The victim (`victim_layout`; `share`: its identical pages shared with
    the attacker's, so that its writes need frames for their copies) must end as alone."""
    host = Host(pcpus=1, memory=HostMemory(2 * RAM_SIZE))
    attacker = VM(host=host, stage2="demand", ram_size=4 * RAM_SIZE)
    load(attacker, image_from_program(assemble(ATTACKS["touches every page"].source(0), RAM_BASE)))
    victim = VM.from_image(victim_image(), host=host, stage2=victim_layout, ram_size=RAM_SIZE, traps=VICTIM_TRAPS)
    if share:
        share_identical_pages(victim, attacker)
    promised = victim.memory.promised
    host.run(max_insns=2_000_000)
    return Overcommit(victim.result(), alone()[1], victim_differences(victim, Stage2Tree.of(victim.memory)),
                      attacker.result(), attacker.memory.demand_faults, attacker.ram_size // PAGE,
                      host.memory.size // PAGE, promised)
