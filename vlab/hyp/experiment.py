"""A scheduling experiment: guests on a shared host under a policy, for a while, and what each got.

    e = share_the_cpu([Guest("a", "spinner", weight=512), Guest("b", "spinner")], policy="credit",
                      pcpus=1, duration_ms=60)
    host_gantt(e.host, e.names)   # what ran where, when (vlab.viz.gantt)
    print(e.table())          # each guest's progress (read from its RAM) and the policy's figures

The guests are vlab.guests.workloads: real AArch64 programs that count their own progress in
their RAM. Every VM gets a stage-2 layout (VMs sharing a host need one) and, unless told
otherwise, HCR_EL2.TWI, so that a sleeping guest gives its physical CPU back.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlab.arch.hcr import HCR
from vlab.guests import workloads
from vlab.hyp.host import Host, HostRunResult
from vlab.hyp.vm import VM
from vlab.machine.loader import image_from_program
from vlab.sched.metrics import RunFigures
from vlab.sched.registry import make_policy
from vlab.sched.units import ms

GUEST_RAM = 0x10_0000
# What each workload does, for a chooser: name -> (program maker, a few words)
WORKLOADS = {
    "spinner": (lambda vcpus: workloads.spinner(vcpus), "computes forever"),
    "sleeper": (lambda vcpus: workloads.sleeper(ms(1), vcpus=vcpus), "works a little, sleeps until the next ms"),
    "crasher": (lambda vcpus: workloads.crasher(), "spins a while, then executes an undefined instruction"),
}


@dataclass(frozen=True)
class Guest:
    """One VM of an experiment: a name, what it runs, its vCPUs, and its weight and cap."""

    name: str
    workload: str = "spinner"
    vcpus: int = 1
    weight: int = 256
    cap: int = 0

    def __post_init__(self):
        if self.workload not in WORKLOADS:
            raise ValueError(f"{self.name}: no workload {self.workload!r}; choose one of {', '.join(WORKLOADS)}")


@dataclass
class Experiment:
    """A finished run: the host, its VMs (in the order of the guests), the result and the figures."""

    guests: list[Guest]
    host: Host
    vms: list[VM]
    result: HostRunResult
    figures: RunFigures

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.guests]

    def progress(self) -> list[list[int]]:
        """Each guest's counters, one per vCPU, read from its RAM."""
        return [[workloads.progress(vm, v) for v in range(len(vm.vcpus))] for vm in self.vms]

    def table(self) -> str:
        """Each guest's progress and how its run ended, then the policy's figures per vCPU."""
        lines = [f"{'guest':<14}{'workload':<10}{'progress':>18}  ended"]
        for guest, counts, vm_result in zip(self.guests, self.progress(), self.result.vms):
            lines.append(f"{guest.name:<14}{guest.workload:<10}{' + '.join(map(str, counts)):>18}  "
                         f"{vm_result.reason.value}")
        return "\n".join(lines) + "\n" + self.figures.table()


def share_the_cpu(guests: list[Guest], policy: str = "credit", pcpus: int = 1, duration_ms: float = 40,
                  slice_ms: float | None = None, windows: str | None = None, switch_cost: int = 0,
                  traps: HCR = HCR.TWI) -> Experiment:
    """Run `guests` on a host of `pcpus` physical CPUs under `policy` for `duration_ms` of host time.

    `windows` is an ARINC 653 frame for policy "arinc653", its VMs named as the guests are
    (e.g. "safety=2ms,info=4ms/frame=8ms"); `slice_ms` the slice of the others; `switch_cost`
    the host ticks a world switch costs."""
    names = [g.name for g in guests]
    scheduler = make_policy(policy, pcpus, slice_ticks=None if slice_ms is None else ms(slice_ms),
                            windows=windows, vm_names=names)
    host = Host(pcpus=pcpus, scheduler=scheduler, switch_cost=switch_cost)
    vms = [VM.from_image(image_from_program(WORKLOADS[g.workload][0](g.vcpus)), host=host, stage2="contiguous",
                         ram_size=GUEST_RAM, vcpus=g.vcpus, weight=g.weight, cap=g.cap, traps=traps)
           for g in guests]
    result = host.run(duration=ms(duration_ms), max_insns=2**62, timeout_s=120)
    return Experiment(guests, host, vms, result, host.figures())
