"""Shadow page tables against stage 2, on one guest: what each costs, measured in one run.

    c = compare_paging("remaps")     # or "maps once", or a demo guest's name ("paging", "hello"...)
    print(c.table())                 # exits by class, TLB-fill walks, descriptors read, host time

The same guest runs twice on the same RAM layout: with the hardware's stage 2 (`nested`: every
TLB miss is a two-dimensional walk, (n + 1)(m + 1) - 1 descriptors -- 15 here, guest and stage 2
both three levels) and with shadow tables (`shadow`: n descriptors a miss, but an exit for every
shadow entry the hypervisor fills, every store to a guest table and every write of TTBR0_EL1,
TCR_EL1 or SCTLR_EL1). What the comparison shows:

* a guest that maps its memory once and then computes ("maps once") is where shadow paging
  does well: a shadow fault per page it touches, then one-dimensional walks -- fewer descriptors
  read per miss than nested paging reads;
* a guest that keeps changing its tables ("remaps": a process switch, an mmap, copy-on-write in a
  guest kernel) pays an exit for each descriptor it writes and another for each page it touches
  again: shadow paging's host time grows with the guest's page-table activity, nested paging's
  does not. This is why hardware added stage 2 (nested paging) and why, on x86, Adams & Agesen
  (ASPLOS 2006) found page-table updates the dominant cost of software virtualization (their
  `ptemod` figure, vlab.data.published); Bhargava et al. (ASPLOS 2008) analysed the
  two-dimensional walk nested paging pays instead.

Both runs end with the same registers, RAM and console output (`same_result`): only the cost differs.
Host times are this machine's, in this run: Python serving exits, not silicon.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from vlab.asm import assemble
from vlab.guests import GUESTS
from vlab.guests.mmu import MMU_ON
from vlab.hyp.equivalence import differences
from vlab.hyp.vm import VM
from vlab.machine.loader import Image, image_from_file, image_from_program

RAM = 0x80_0000  # the VMs' RAM, unless the guest's pages need more
TABLES = 0x4001_0000  # the guests' level-1 table; level 2 and the level-3 tables follow it
DATA = 0x4020_0000  # the pages the guests touch, mapped at VA 0x8000_0000 with 4 KB pages
MAX_PAGES = 2048  # four level-3 tables
OFF = "    ldr x0, =0x84000008\n    hvc #0\n"


def ram_for(pages: int) -> int:
    """RAM enough for the guests' code, tables and `pages` data pages."""
    return max(RAM, -(-(DATA + pages * 0x1000 - 0x4000_0000) // 0x10_0000) * 0x10_0000)


def _tables_then(body: str, pages: int) -> str:
    """A kernel that maps VA 0x4000_0000 (itself, a 1 GiB block) and `pages` 4 KB pages at VA
    0x8000_0000 (level 1 -> level 2 -> consecutive level-3 tables, x4 the first), turns its MMU on,
    then runs `body`."""
    if not 1 <= pages <= MAX_PAGES:
        raise ValueError(f"pages = {pages}: the guests map 1 to {MAX_PAGES} pages")
    level2 = "".join(f"    ldr x4, ={TABLES + 0x2000 + 0x1000 * j:#x}\n    orr x2, x4, #3\n    str x2, [x3, #{8 * j}]\n"
                     for j in range(-(-pages // 512)))
    return f"""    ldr x1, ={TABLES:#x}
    ldr x2, =0x40000701
    str x2, [x1, #8]
    ldr x3, ={TABLES + 0x1000:#x}
    orr x2, x3, #3
    str x2, [x1, #16]
{level2}    ldr x4, ={TABLES + 0x2000:#x}
    ldr x10, =0x703
    ldr x5, ={DATA:#x}
    orr x5, x5, x10
    ldr x6, ={pages}
    mov x7, x4
fill:
    str x5, [x7], #8
    add x5, x5, #0x1000
    subs x6, x6, #1
    b.ne fill
{MMU_ON}{body}{OFF}"""


def _touch(pages: int) -> str:
    """Add the page's index to the first word of each of the `pages` pages at VA 0x8000_0000."""
    return f"""    mov x6, #0
    ldr x13, ={pages}
    ldr x11, =0x80000000
touch_%s:
    ldr x12, [x11]
    add x12, x12, x6
    str x12, [x11]
    add x11, x11, #0x1000
    add x6, x6, #1
    cmp x6, x13
    b.ne touch_%s
"""


def maps_once(pages: int = 64, rounds: int = 16) -> str:
    """Build the tables once, then touch every page `rounds` times: no table changes after the MMU is on."""
    return _tables_then(f"    mov x20, #{rounds}\nround:\n" + _touch(pages).replace("%s", "a")
                        + "    subs x20, x20, #1\n    b.ne round\n", pages)


def remaps(pages: int = 64, rounds: int = 16) -> str:
    """Each round, rotate the mapping (VA page i -> data page (i + round) mod `pages`: `pages`
    descriptor stores), TLBI VMALLE1, then touch every page. `pages` must be a power of two."""
    if pages & (pages - 1):
        raise ValueError(f"pages = {pages}: the rotation needs a power of two")
    remap = f"""    mov x6, #0
    ldr x13, ={pages}
    ldr x14, ={pages - 1}
remap:
    add x8, x6, x20
    and x8, x8, x14
    lsl x8, x8, #12
    ldr x9, ={DATA:#x}
    add x8, x8, x9
    orr x8, x8, x10
    str x8, [x4, x6, lsl #3]
    add x6, x6, #1
    cmp x6, x13
    b.ne remap
    dsb ish
    tlbi vmalle1
    dsb ish
    isb
"""
    return _tables_then(f"    mov x20, #{rounds}\nround:\n" + remap + _touch(pages).replace("%s", "b")
                        + "    subs x20, x20, #1\n    b.ne round\n", pages)


WORKLOADS = {"remaps": remaps, "maps once": maps_once}  # generated guests, by what they do with their tables


@dataclass(frozen=True)
class PagingRun:
    """One run of the guest under one kind of paging."""

    paging: str  # "nested" or "shadow"
    uart: str
    instructions: int
    exits: dict[str, int]  # exception-class name -> count
    walks: int  # TLB fills vlab's TLB model could not answer: hardware walks
    references: int  # descriptors those walks read
    host_us: float  # host time of the run, in microseconds
    shadow: dict[str, int] = field(default_factory=dict)  # the shadow's own counts (shadow faults, table writes...)

    @property
    def total_exits(self) -> int:
        return sum(n for kind, n in self.exits.items() if kind != "IRQ")

    @property
    def references_per_walk(self) -> float:
        return self.references / self.walks if self.walks else 0.0


@dataclass(frozen=True)
class ShadowComparison:
    """The same guest under stage 2 and under shadow tables."""

    guest: str
    nested: PagingRun
    shadow: PagingRun
    differences: tuple[str, ...]  # guest-visible state that differs (should be none)

    @property
    def same_result(self) -> bool:
        return not self.differences

    def ratio(self, what: str) -> float | None:
        """shadow / nested for "exits", "walks", "references" or "host_us" (None when nested is 0)."""
        a, b = (r.total_exits if what == "exits" else getattr(r, what) for r in (self.nested, self.shadow))
        return b / a if a else None

    def table(self) -> str:
        """The comparison as text: one row per figure, nested | shadow | shadow / nested."""
        n, s = self.nested, self.shadow
        rows = [("exits (all classes)", n.total_exits, s.total_exits, self.ratio("exits"))]
        for kind in sorted(set(n.exits) | set(s.exits)):
            rows.append((f"  {kind}", n.exits.get(kind, 0), s.exits.get(kind, 0), None))
        rows += [("TLB-fill walks", n.walks, s.walks, self.ratio("walks")),
                 ("descriptors read by walks", n.references, s.references, self.ratio("references")),
                 ("  per walk", f"{n.references_per_walk:.1f}", f"{s.references_per_walk:.1f}", None),
                 ("host time (us)", f"{n.host_us:,.0f}", f"{s.host_us:,.0f}", self.ratio("host_us"))]
        rows += [(f"  shadow: {k}", "-", v, None) for k, v in s.shadow.items()]
        width = max(len(r[0]) for r in rows)
        lines = [f"{self.guest}: {n.instructions:,} guest instructions, "
                 + ("the same result under both" if self.same_result else "RESULTS DIFFER: " + "; ".join(self.differences)),
                 f"{'':{width}}  {'nested':>10}  {'shadow':>10}  shadow/nested"]
        for name, a, b, ratio in rows:
            shown = "" if ratio is None else f"{ratio:.2f}x"
            lines.append(f"{name:{width}}  {a!s:>10}  {b!s:>10}  {shown}")
        return "\n".join(lines)


def guest_image(guest: str | Image, pages: int = 64, rounds: int = 16) -> Image:
    """A guest by name: a workload of WORKLOADS (with `pages` and `rounds`), or one of vlab's demo guests."""
    if isinstance(guest, Image):
        return guest
    if guest in WORKLOADS:
        return image_from_program(assemble(WORKLOADS[guest](pages, rounds)))
    if guest in GUESTS:
        return image_from_file(GUESTS[guest].path)
    raise KeyError(f"no guest {guest!r}: choose one of {', '.join([*WORKLOADS, *GUESTS])}")


def run_paging(image: Image, paging: str, layout: str = "scattered", ram_size: int = RAM,
               max_insns: int = 5_000_000) -> tuple[VM, PagingRun]:
    """Run `image` in a VM with `paging` ("nested" or "shadow") over RAM laid out as `layout`."""
    vm = VM.from_image(image, stage2=layout, ram_size=ram_size, paging=paging)
    start = time.perf_counter()
    result = vm.run(max_insns=max_insns)
    host_us = (time.perf_counter() - start) * 1e6
    vcpus = vm.vcpus
    counts = {}
    if vm.shadow is not None:
        sh = vm.shadow
        counts = {"shadow faults fixed": sh.fills, "guest faults reflected": sh.reflected,
                  "table writes trapped": sh.table_writes, "shadows dropped": sh.drops,
                  "descriptors read by the hypervisor": sh.software_references}
    return vm, PagingRun(paging, result.uart, result.instructions, dict(result.exits), sum(v.walks for v in vcpus),
                         sum(v.references for v in vcpus), host_us, counts)


def compare_paging(guest: str | Image = "remaps", pages: int = 64, rounds: int = 16, layout: str = "scattered",
                   ram_size: int | None = None, max_insns: int = 20_000_000) -> ShadowComparison:
    """Run `guest` (a name for `guest_image`, or an Image) under stage 2, then under shadow tables,
    on the same RAM layout (`ram_size`: what the workload's pages need); the figures of both and what
    differs in the guest's final state."""
    image = guest_image(guest, pages, rounds)
    ram_size = ram_size or ram_for(pages if guest in WORKLOADS else 0)
    nested_vm, nested = run_paging(image, "nested", layout, ram_size, max_insns)
    shadow_vm, shadow = run_paging(image, "shadow", layout, ram_size, max_insns)
    found = differences(nested_vm.vcpus[0], shadow_vm.vcpus[0])
    if nested.uart != shadow.uart:
        found.append("console output differs")
    name = guest if isinstance(guest, str) else "the guest"
    return ShadowComparison(name, nested, shadow, tuple(found))


def walk_cost(pages: int = MAX_PAGES, rounds: tuple[int, int] = (2, 14), layout: str = "scattered",
              repeats: int = 3) -> dict[str, float]:
    """Host microseconds per TLB-fill walk once the shadow is built, under each kind of paging: the
    extra rounds of "maps once" over `pages` (more than vlab's TLB model holds, so that every round
    walks), divided by the extra walks they made. The shadow's warm-up faults cancel out; each run's
    host time is the best of `repeats` (a difference of two times magnifies the host's noise)."""
    runs = {r: [compare_paging("maps once", pages, r, layout) for _ in range(repeats)] for r in rounds}
    cost = {}
    for paging in ("nested", "shadow"):
        short, long = (min((getattr(c, paging) for c in runs[r]), key=lambda run: run.host_us) for r in rounds)
        cost[paging] = (long.host_us - short.host_us) / max(1, long.walks - short.walks)
    return cost
