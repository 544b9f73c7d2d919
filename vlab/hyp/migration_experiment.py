"""Migration experiments: one guest migrated in the middle of its run, and the curves of many.

    run = migrate_guest(image_from_file("hello.elf"), at=5_000)    # pre-copy after 5,000 instructions
    run.uart, run.result.reason, run.migration.downtime_ms

    points = dirty_rate_sweep([1, 10, 50], Link(1000))   # a dirtier guest, faster and faster
    print(curve_table(points))

`migrate_guest` is what `vlab run FILE --virt --migrate-at N` does: the guest boots in a VM on
one host (its RAM demand-paged behind stage 2, so its pages can be tracked), runs N
instructions, migrates to a second host over the link, and runs there to its end. What it
printed -- on the UART and on the virtio console -- is both halves, in order; what it ended as
is the destination's.

The sweeps migrate a `dirtier` (vlab.guests.workloads) that has `resident` pages and keeps
writing its first `wws` of them, one page every so many instructions: its *dirty rate*, in
pages per millisecond of guest time. Faster than the link can send them, pre-copy cannot catch
up and the pause grows; a slower link does the same to any guest.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

from vlab.arch.hcr import HCR
from vlab.guests import workloads
from vlab.hyp.host import Host
from vlab.hyp.link import Link
from vlab.hyp.migration import Migration, StoppingRule, postcopy, precopy, vm_instructions, xen
from vlab.hyp.vm import VM, VmRunResult
from vlab.machine.board import DEFAULT_MAX_INSNS, DEFAULT_RAM_SIZE, DEFAULT_TIMEOUT_S
from vlab.machine.loader import Image, image_from_program
from vlab.machine.timer import FREQUENCY_HZ

TICKS_PER_MS = FREQUENCY_HZ // 1000
SWEEP_RAM = 0x80_0000  # 8 MiB of guest RAM for the sweeps' dirtier
SWEEP_RESIDENT, SWEEP_WWS = 512, 256  # pages it has, and pages it keeps writing
SWEEP_WARM_UP = 600_000  # instructions it runs before the migration starts


@dataclass
class MigratedRun:
    """A guest's whole run with a migration in it: what it printed, how it ended, the migration."""

    uart: str  # everything it printed, on the source then on the destination
    result: VmRunResult  # how its run ended (on the destination, once it got there), its output the whole
    migration: Migration | None  # None: the guest stopped before the migration point
    source: VM
    destination: VM | None

    def to_json(self) -> dict:
        """The JSON `vlab run --migrate-at N --json` prints: the run's, and `migration`."""
        return self.result.to_json() | {"migration": None if self.migration is None else self.migration.to_json()}


def migrate_guest(image: Image, at: int, link: Link = Link(), post_copy: bool = False, rule: StoppingRule = xen,
                  max_insns: int = DEFAULT_MAX_INSNS, vcpus: int = 1, traps: HCR = HCR(0),
                  ram_size: int = DEFAULT_RAM_SIZE, timeout_s: float = DEFAULT_TIMEOUT_S,
                  virtio_polls: bool = False) -> MigratedRun:
    """Boot `image` in a VM, run `at` instructions, migrate it to another host (pre-copy with `rule`, or
    post-copy), and run it there until it stops; `max_insns` bounds the whole run. With `virtio_polls`
    the VM's virtio console polls its queues, on both hosts."""
    if not 0 <= at < max_insns:
        raise ValueError(f"the migration point must be 0 to {max_insns - 1:,} instructions (within --max-insns), "
                         f"not {at:,}")
    source = VM.from_image(image, host=Host(vcpus), stage2="demand", vcpus=vcpus, traps=traps, ram_size=ram_size,
                           virtio_polls=virtio_polls)
    if at:
        before = source.run(max_insns=at, timeout_s=timeout_s)
        if source.powered_off or before.reason.value in ("idle", "exception", "error", "timeout"):
            return MigratedRun(source.uart.text, before, None, source, None)
    left = max_insns - vm_instructions(source)
    destination = Host(vcpus)
    if post_copy:
        migration = postcopy(source, destination, link, budget=left, timeout_s=timeout_s)
    else:
        migration = precopy(source, destination, link, rule, budget=left, timeout_s=timeout_s)
    if not migration.completed:
        return MigratedRun(source.uart.text, source.result(), migration, source, None)
    arrived = migration.destination_vm
    left = max_insns - vm_instructions(arrived)
    final = arrived.run(max_insns=left, timeout_s=timeout_s) if left > 0 else arrived.result()
    uart, virtio_console = source.uart.text + final.uart, source.virtio_console.text + final.virtio_console
    exits = dict(Counter(source.exits) + Counter(arrived.exits))
    return MigratedRun(uart, dataclasses.replace(final, uart=uart, virtio_console=virtio_console, exits=exits),
                       migration, source, arrived)


# --- curves --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CurvePoint:
    """One migration of a sweep: its setting and what it cost."""

    dirty_rate: float  # pages per ms of guest time the guest writes
    bandwidth_mbps: float
    rounds: int
    pages_sent: int
    downtime_ticks: int
    downtime_ms: float
    total_ms: float  # from the first page sent to the guest's resumption

    def row(self) -> str:
        return (f"{self.dirty_rate:10.1f} {self.bandwidth_mbps:10g} {self.rounds:7} {self.pages_sent:8,} "
                f"{self.downtime_ticks:12,} {self.downtime_ms:10.3f} {self.total_ms:9.2f}")


HEADER = (f"{'pages/ms':>10} {'Mbit/s':>10} {'rounds':>7} {'pages':>8} {'downtime':>12} {'(ms)':>10} "
          f"{'total ms':>9}")


def migrate_dirtier(dirty_rate: float, link: Link = Link(), rule: StoppingRule = xen, post_copy: bool = False,
                    resident: int = SWEEP_RESIDENT, wws: int = SWEEP_WWS) -> Migration:
    """Migrate a dirtier writing `dirty_rate` pages per ms of guest time (one page every 62,500 /
    dirty_rate instructions, at most one every 12) over `link`, after its warm-up."""
    every = max(12, round(TICKS_PER_MS / dirty_rate))
    vm = VM.from_image(image_from_program(workloads.dirtier(resident, wws, every)), host=Host(), stage2="demand",
                       ram_size=SWEEP_RAM)
    vm.run(max_insns=SWEEP_WARM_UP)
    return postcopy(vm, Host(), link) if post_copy else precopy(vm, Host(), link, rule)


def dirtier_migration(dirty_rate: float, link: Link, rule: StoppingRule = xen) -> CurvePoint:
    """One point of a sweep: a dirtier migrated by pre-copy (see `migrate_dirtier`)."""
    m = migrate_dirtier(dirty_rate, link, rule)
    every = max(12, round(TICKS_PER_MS / dirty_rate))
    return CurvePoint(TICKS_PER_MS / every, link.bandwidth_mbps, m.rounds, m.pages_sent, m.downtime_ticks,
                      m.downtime_ms, m.total_ticks / TICKS_PER_MS)


def dirty_rate_sweep(rates: list[float], link: Link = Link(), rule: StoppingRule = xen) -> list[CurvePoint]:
    """The same guest, dirtying faster and faster, over one link."""
    return [dirtier_migration(rate, link, rule) for rate in rates]


def bandwidth_sweep(bandwidths: list[float], dirty_rate: float = 20, latency_ms: float = Link().latency_ms,
                    rule: StoppingRule = xen) -> list[CurvePoint]:
    """The same guest over slower and faster links."""
    return [dirtier_migration(dirty_rate, Link(b, latency_ms), rule) for b in bandwidths]


def curve_table(points: list[CurvePoint]) -> str:
    """One line per migration: the setting, rounds, pages sent, the downtime in ticks and ms, the total."""
    return "\n".join([HEADER, *(p.row() for p in points)])
