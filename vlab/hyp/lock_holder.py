"""Lock-holder preemption, measured on a real guest, and a paravirtual yield that wastes less.

    plain = measure(pcpus=2, vcpus=4)                   # 4 vCPUs on 2 physical CPUs, a competing VM beside
    remedy = measure(pcpus=2, vcpus=4, yield_after=20)  # the same, but the spin loop yields
    print(plain.summary()); print(remedy.summary())

The guest is vlab/guests/spinlock.S. Its vCPUs take 48 jobs, each under one spinlock, and each
vCPU counts in its own memory every instruction it executes because an attempt found the lock
taken; the counts are read from guest memory after the run (the guest's own figures, not
vlab's). A vCPU whose lock holder runs on another physical CPU waits for at most one critical
section (about 900 instructions). A vCPU whose lock holder the hypervisor has *preempted* spins
until the holder runs again -- under round-robin, until its own slice ends: that is lock-holder
preemption, and overcommitting the physical CPUs is what causes it.

The remedy shown is paravirtual: after `yield_after` failed attempts in a row the guest's spin
loop calls Xen's SCHEDOP_yield (HVC #0xEA1, x16 = 29 sched_op, x0 = 0), served by vlab.hyp.xen,
and the hypervisor's scheduler gives the physical CPU to another vCPU -- perhaps the holder.

The runs use a short slice (SLICE) so that a notebook cell finishes in a moment; the waste grows
with the slice (Xen's credit scheduler slices 30 ms, 1,875,000 ticks here). Physical CPUs advance
in lockstep quanta (vlab.hyp.host): a quantum longer than a critical section would make vCPUs on
different cores wait for each other's quantum, not each other's lock, so the host here keeps
its cores within LOCKSTEP ticks of each other.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vlab.arch.esr import ExceptionClass
from vlab.hyp import xen
from vlab.hyp.handlers import handle_hvc
from vlab.hyp.host import Host
from vlab.hyp.vm import MAX_VCPUS, VM, VmRunResult
from vlab.machine.board import DEFAULT_TIMEOUT_S, StopReason
from vlab.machine.loader import Image, image_from_file
from vlab.sched import Scheduler
from vlab.sched.round_robin import RoundRobin
from vlab.sched.trace import Trace

GUEST = Path(__file__).resolve().parent.parent / "guests" / "spinlock.S"
# The guest's interface block, at these offsets from its first instruction (spinlock.S):
YIELD_AFTER, LOCK, VERDICT, SPIN, YIELDS, JOBS_DONE = 0x08, 0x10, 0x30, 0x38, 0x78, 0xB8
MAX_CPUS = 8  # slots per table in the block
NEVER = (1 << 64) - 1  # yield_after as the image has it: the spin loop never yields
VERDICT_OK = 0x600D  # the last CPU's checksum matched its recomputation alone

SLICE = 20_000  # host ticks (0.32 ms of the board's 62.5 MHz counter)
LOCKSTEP = 1_000
RAM = 0x10_0000  # 1 MiB for each VM: the guests are a few KiB
MAX_INSNS = 20_000_000
COMPETITOR_LOOPS = 500_000  # each vCPU of the competing VM counts down this far (two instructions a round)


def competitor_source(vcpus: int) -> str:
    """A compute-bound guest: its boot vCPU starts the others (PSCI CPU_ON), each counts down from
    COMPETITOR_LOOPS and turns itself off (CPU_OFF); the VM ends when the last one has."""
    return f"""
    mov     x20, #1
start_next:
    cmp     x20, #{vcpus}
    b.hs    count
    ldr     x0, =0xc4000003             // PSCI CPU_ON vCPU x20, at count
    mov     x1, x20
    adr     x2, count
    hvc     #0
    add     x20, x20, #1
    b       start_next
count:
    ldr     x1, ={COMPETITOR_LOOPS}
count_down:
    subs    x1, x1, #1
    b.ne    count_down
    ldr     x0, =0x84000002             // PSCI CPU_OFF
    hvc     #0
"""


Policy = Callable[[int], Scheduler]  # a fresh scheduler for a host of that many physical CPUs


def round_robin(pcpus: int) -> Scheduler:
    """The default policy: round-robin with SLICE-tick slices."""
    return RoundRobin(slice_ticks=SLICE, pcpus=pcpus)


def paravirtual(vm: VM) -> None:
    """Serve Xen's hypercalls (HVC #0xEA1, vlab.hyp.xen) in `vm`, in front of its own HVC handler
    (HVC #0 stays PSCI and vlab's calls): a yield reaches the host's scheduler."""
    services = xen.XenServices(
        console_write=lambda vcpu, data: vcpu.platform.console(data),
        yield_=lambda vcpu: vcpu.yield_cpu(),
        block=lambda vcpu: vcpu.wait_for_interrupt(),
        shutdown=lambda vcpu, reason: vcpu.halt(StopReason.POWERED_OFF, f"Xen shutdown, reason {reason}")
        or "the domain is powered off",
        domain_id=lambda vcpu: vm.vmid,
        domain_ids=lambda: [other.vmid for other in vm.host.vms],
    )
    serve = xen.xen_handler(services)
    vm.set_handler(ExceptionClass.HVC64,
                   lambda vcpu, exit: serve(vcpu, exit) if xen.is_xen_hypercall(exit) else handle_hvc(vcpu, exit))


@dataclass(frozen=True)
class VcpuSpin:
    """One vCPU's run: instructions it retired (vlab's count) and, by the guest's own count, how many
    of them were spent spinning, how often it yielded, how many jobs it did."""

    vcpu: int
    instructions: int
    spin: int
    yields: int
    jobs: int


@dataclass(frozen=True)
class LockHolderRun:
    """A run of the spinlock guest on a host: each vCPU's figures, the VM's result, the host's trace."""

    pcpus: int
    yield_after: int | None
    competitor: int  # the competing VM's vCPUs (0: none)
    vcpus: tuple[VcpuSpin, ...]
    result: VmRunResult
    verdict_ok: bool
    trace: Trace

    @property
    def spin(self) -> int:
        """Instructions the guest's vCPUs wasted spinning on the lock, all together."""
        return sum(v.spin for v in self.vcpus)

    @property
    def instructions(self) -> int:
        return sum(v.instructions for v in self.vcpus)

    @property
    def wasted(self) -> float:
        """The fraction of the guest's instructions that were spinning."""
        return self.spin / self.instructions if self.instructions else 0.0

    def summary(self) -> str:
        """A table of the run, one line per vCPU, and whether the guest's own check passed."""
        beside = (f", next to a competing VM of {self.competitor} vCPU{'s' if self.competitor > 1 else ''}"
                  if self.competitor else "")
        how = "spinning plainly" if self.yield_after is None else f"yielding after {self.yield_after} failed attempts"
        lines = [f"{len(self.vcpus)} vCPUs on {self.pcpus} physical CPU{'s' if self.pcpus > 1 else ''}{beside}, {how}",
                 f"{'vCPU':>6} {'instructions':>13} {'spinning':>10} {'yields':>7} {'jobs':>5}"]
        lines += [f"{v.vcpu:>6} {v.instructions:>13,} {v.spin:>10,} {v.yields:>7,} {v.jobs:>5}" for v in self.vcpus]
        lines.append(f"{'all':>6} {self.instructions:>13,} {self.spin:>10,} {sum(v.yields for v in self.vcpus):>7,} "
                     f"{sum(v.jobs for v in self.vcpus):>5}   {self.wasted:.1%} spent spinning")
        verdict = "right" if self.verdict_ok else "WRONG"
        lines.append(f"the guest's checksum is {verdict}; the run ended: {self.result.reason.value} "
                     f"({self.result.message})")
        return "\n".join(lines)


@functools.lru_cache(maxsize=1)
def guest_image() -> Image:
    """spinlock.S, assembled (once: every measurement runs the same guest)."""
    return image_from_file(GUEST)


def measure(pcpus: int = 2, vcpus: int = 4, *, yield_after: int | None = None, competitor: int = 1,
            policy: Policy = round_robin, max_insns: int = MAX_INSNS,
            timeout_s: float = DEFAULT_TIMEOUT_S) -> LockHolderRun:
    """Run spinlock.S on `vcpus` vCPUs on a host of `pcpus` physical CPUs scheduled by `policy`,
    beside a compute-bound VM of `competitor` vCPUs (0: alone); with `yield_after`, the spin loop
    calls SCHEDOP_yield after that many failed attempts in a row (None: it never yields)."""
    if not 1 <= vcpus <= MAX_CPUS:
        raise ValueError(f"spinlock.S runs on 1 to {MAX_CPUS} vCPUs, not {vcpus}")
    if not 0 <= competitor <= MAX_VCPUS:
        raise ValueError(f"the competing VM has 0 (none) to {MAX_VCPUS} vCPUs, not {competitor}")
    if yield_after is not None and not 1 <= yield_after < NEVER:
        raise ValueError(f"yield after 1 or more failed attempts (or None: never), not {yield_after}")
    host = Host(pcpus=pcpus, scheduler=policy(pcpus), lockstep=LOCKSTEP)
    image = guest_image()
    vm = VM.from_image(image, host=host, vcpus=vcpus, stage2="contiguous", ram_size=RAM)
    paravirtual(vm)
    block = image.entry
    vm.write_memory(block + YIELD_AFTER, struct.pack("<Q", NEVER if yield_after is None else yield_after))
    if competitor:
        VM.from_source(competitor_source(competitor), host=host, vcpus=competitor, stage2="contiguous", ram_size=RAM)
    result = host.run(max_insns=max_insns, timeout_s=timeout_s).vms[0]

    def table(offset: int) -> tuple[int, ...]:
        return struct.unpack(f"<{MAX_CPUS}Q", vm.read_memory(block + offset, 8 * MAX_CPUS))

    spin, yields, jobs = table(SPIN), table(YIELDS), table(JOBS_DONE)
    figures = tuple(VcpuSpin(v.index, v.instructions, spin[v.index], yields[v.index], jobs[v.index])
                    for v in vm.vcpus)
    verdict = struct.unpack("<Q", vm.read_memory(block + VERDICT, 8))[0]
    return LockHolderRun(pcpus, yield_after, competitor, figures, result, verdict == VERDICT_OK,
                         host.trace)
