"""vCPU scheduling: which vCPU each physical CPU runs next, and for how long.

A policy sees vCPUs only as `Entity` records and time only as host ticks (one tick per guest
instruction executed, plus idle time and world-switch costs: the host clock, 62,500 ticks per
millisecond of guest time). It never touches a guest or an engine, so the same run always gives
the same schedule, and a policy can be read -- and tested -- on its own. The host
(vlab.hyp.host) drives it through these calls, as Xen drives its schedulers through
`struct scheduler` (xen/common/sched/private.h):

    add(entity)                     a vCPU exists (it starts blocked: CPU_ON or boot wakes it)
    wake(entity, now) -> pCPU|None  it became runnable (boot, CPU_ON, timer, IPI); a pCPU to preempt
    sleep(entity, now)              it stopped being runnable (blocked in WFI, off, VM stopped)
    pick(pcpu, now, current)        what this pCPU runs next and until when (a `Decision`)
    charge(entity, pcpu, ran, now)  it ran `ran` more guest ticks on `pcpu`, up to `now`
    yield_(entity, now)             it gave up the CPU (a paravirtual yield, e.g. Xen SCHEDOP_yield)
    entitlement(entities)           the share of one pCPU each vCPU is promised (for the metrics)

The contract, which vlab.sched.simulate follows and checks:
- Every policy is built for a number of physical CPUs (`pcpus=`), numbered 0..pcpus-1.
- All `add` calls come before anything runs, so bad input (a cap above 100% x pCPUs, a vCPU
  with no partition window, ...) is refused before the first instruction.
- `now` is the host clock of the pCPU concerned (the host keeps its cores within a lockstep of
  each other; a policy must not assume that calls about different pCPUs come in order of `now`).
- `pick` is called when the pCPU has nothing loaded, when the previous decision's `until` is
  reached, when the running vCPU blocks, yields or stops, and when `wake` asked to preempt it.
  `current` is the entity that was running there and is still runnable (or None); a policy
  that keeps it running returns it again. `until` is always later than `now`.
- `charge` comes after each stretch the host ran a vCPU (it runs its cores in chunks), with
  the guest ticks of that stretch. When a vCPU stops running, its last `charge` comes first,
  then `sleep` or `yield_` if that is why it stopped, then `pick` for its pCPU.
- `wake` of a vCPU that is already runnable does nothing. `sleep` of a vCPU running on a pCPU
  makes the host stop it there and ask `pick` for that pCPU.
- The host charges the cost of a world switch to its clock; `ran` counts guest ticks only.

Every policy lives in one short module of this package, its constants at the top with their
source; nothing else knows which policy runs (vlab.sched.registry builds one by name).
vlab.sched.recorder.Recorder wraps any policy and records the schedule (vlab.sched.trace) from
these calls alone; vlab.sched.metrics computes a run's figures from it and vlab.sched.invariants
checks what the policy promised. vlab.sched.simulate drives a policy without guests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from vlab.errors import VlabError

MAX_WEIGHT = 65535  # Xen's credit scheduler takes weights 1..65535 (a uint16, 0 meaning "unchanged")


class SchedError(VlabError, ValueError):
    """A scheduling configuration that cannot run: say what is wrong and what would work."""


class ProtocolError(VlabError):
    """A policy broke the protocol above (picked a blocked vCPU, an `until` in the past, ...)."""


@dataclass(frozen=True)
class Entity:
    """One vCPU as a scheduler sees it: who it is, and what its VM is entitled to.

    `weight` and `cap` are the VM's, so every vCPU of a VM carries the same two values.
    `weight` is a relative share (Xen's credit scheduler: 1..65535, default 256); `cap` a
    ceiling for the whole VM in percent of one physical CPU (0: no cap, the policy may give it
    any idle time). Bad values are refused here, before anything runs.
    """

    vm: int  # the VM's index on the host
    vcpu: int  # the vCPU's index in its VM
    weight: int = 256
    cap: int = 0

    def __post_init__(self):
        if not 1 <= self.weight <= MAX_WEIGHT:
            raise SchedError(f"{self.name}: weight {self.weight} is out of range: a weight is a relative "
                             f"share from 1 to {MAX_WEIGHT} (Xen's default is 256)")
        if self.cap < 0:
            raise SchedError(f"{self.name}: cap {self.cap}% is negative: a cap is a percentage of one "
                             f"physical CPU, or 0 for no cap")
        if self.vm < 0 or self.vcpu < 0:
            raise SchedError(f"vm{self.vm}.vcpu{self.vcpu}: VM and vCPU indices count from 0")

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
    pcpus: int

    def add(self, entity: Entity) -> None: ...
    def wake(self, entity: Entity, now: int) -> int | None: ...
    def sleep(self, entity: Entity, now: int) -> None: ...
    def pick(self, pcpu: int, now: int, current: Entity | None) -> Decision: ...
    def charge(self, entity: Entity, pcpu: int, ran: int, now: int) -> None: ...
    def yield_(self, entity: Entity, now: int) -> None: ...
    def entitlement(self, entities: Sequence[Entity]) -> dict[Entity, float]: ...


def check_pcpus(pcpus: int) -> int:
    """`pcpus` if it is a usable number of physical CPUs, else a SchedError."""
    if not isinstance(pcpus, int) or pcpus < 1:
        raise SchedError(f"a host needs at least one physical CPU, not {pcpus!r}")
    return pcpus


def check_positive(what: str, ticks: int) -> int:
    """`ticks` if it is a positive whole number of ticks, else a SchedError naming `what`."""
    if not isinstance(ticks, int) or ticks <= 0:
        raise SchedError(f"{what} must be a positive number of ticks, not {ticks!r}")
    return ticks


def check_same_vm_terms(known: dict[int, Entity], entity: Entity) -> None:
    """Refuse `entity` if another vCPU of its VM (in `known`, by VM) carries another weight or cap."""
    other = known.setdefault(entity.vm, entity)
    if (other.weight, other.cap) != (entity.weight, entity.cap):
        raise SchedError(f"{entity.name} has weight {entity.weight} and cap {entity.cap}%, but {other.name} of "
                         f"the same VM has weight {other.weight} and cap {other.cap}%: weight and cap are the VM's")


def refuse_terms(policy: str, entity: Entity, *, weight: bool, cap: bool) -> None:
    """Refuse a weight or cap that `policy` would silently ignore (a student would think it worked)."""
    if weight and entity.weight != Entity.weight:
        raise SchedError(f"{entity.name}: the {policy} policy has no weights (asked for {entity.weight}); "
                         f"use credit or fair to share the CPU by weight")
    if cap and entity.cap:
        raise SchedError(f"{entity.name}: the {policy} policy has no caps (asked for {entity.cap}%); "
                         f"use credit to cap a VM")
