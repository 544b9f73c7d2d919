"""vCPU scheduling: which vCPU each physical CPU runs next, and for how long.

A policy sees vCPUs only as `Entity` records and time only as host ticks (one tick per guest
instruction executed, plus idle time and world-switch costs: the host clock). It never touches a
guest or an engine, so the same run always gives the same schedule, and a policy can be read --
and tested -- on its own. The host (vlab.hyp.host) drives it through five calls, as Xen drives
its schedulers through `struct scheduler` (xen/common/sched/private.h):

    add(entity)                     a vCPU exists (it starts blocked: CPU_ON or boot wakes it)
    wake(entity, now) -> pCPU|None  it became runnable (boot, CPU_ON, timer, IPI); a pCPU to preempt
    sleep(entity, now)              it stopped being runnable (blocked in WFI, off, VM stopped)
    pick(pcpu, now, current)        what this pCPU runs next and until when (a `Decision`)
    charge(entity, pcpu, ran, now)  it ran `ran` ticks on `pcpu`, ending at `now`
    yield_(entity, now)             it gave up the CPU (a paravirtual yield, e.g. Xen SCHEDOP_yield)

`pick` is called when the pCPU has nothing loaded, when the previous decision's `until` is
reached, when the running vCPU blocks, yields or stops, and when `wake` asked to preempt it.
`current` is the entity that was running there and is still runnable (or None); a policy that
keeps it running returns it again. Every policy lives in one short module of this package, its
constants at the top with their source; nothing else knows which policy runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Entity:
    """One vCPU as a scheduler sees it: who it is, and what its VM is entitled to.

    `weight` is a relative share (Xen's credit scheduler: 1..65535, default 256); `cap` a ceiling
    in percent of one physical CPU (0: no cap, the policy may give it any idle time).
    """

    vm: int  # the VM's index on the host
    vcpu: int  # the vCPU's index in its VM
    weight: int = 256
    cap: int = 0

    @property
    def name(self) -> str:
        return f"vm{self.vm}.vcpu{self.vcpu}"


@dataclass(frozen=True)
class Decision:
    """Run `entity` (None: leave the pCPU idle) until host tick `until`, when `pick` is asked again."""

    entity: Entity | None
    until: int


class Scheduler(Protocol):
    """A scheduling policy: see the module docstring for when the host calls each method."""

    name: str

    def add(self, entity: Entity) -> None: ...
    def wake(self, entity: Entity, now: int) -> int | None: ...
    def sleep(self, entity: Entity, now: int) -> None: ...
    def pick(self, pcpu: int, now: int, current: Entity | None) -> Decision: ...
    def charge(self, entity: Entity, pcpu: int, ran: int, now: int) -> None: ...
    def yield_(self, entity: Entity, now: int) -> None: ...
