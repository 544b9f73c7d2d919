"""Proportional share by virtual runtime, as Linux's CFS schedules KVM's vCPU threads.

Under KVM a vCPU is a thread of the VMM process, and Linux schedules it like any other thread
(kernel/sched/fair.c; vlab's code is its own):
- Each vCPU has a virtual runtime: the CPU time it received, scaled by the default weight over
  its own -- a vCPU of twice the weight ages half as fast. (Linux's nice-0 weight is 1024;
  vlab's default weight, 256, plays its part.)
- `pick` runs the runnable vCPU with the smallest vruntime, for its weight's part of the target
  latency (6 ms), never less than the minimum granularity (0.75 ms); with more runnable vCPUs
  than latency/granularity (8), the period stretches to 0.75 ms each.
- A vCPU that wakes is placed at no less than min_vruntime - latency/2: ahead of the CPU-bound
  vCPUs (a sleeper gets its turn soon) without banking all the time it slept. It preempts a
  running vCPU whose vruntime is ahead of its own by more than the wake-up granularity (1 ms,
  scaled by the waker's weight).
- Linux scales latency and granularities by 1 + log2(min(CPUs, 8)) (SCHED_TUNABLESCALING_LOG).
- Yield: a vCPU that spins on a lock calls into KVM (kvm_vcpu_on_spin, when the hardware traps
  its spin), which yields to a sibling -- another vCPU of the same VM that is runnable but not
  running, the likely lock holder -- and otherwise to whoever is next.

Where vlab differs: one run queue for all pCPUs (Linux keeps one per CPU and balances them),
and vruntime in fixed point (1/65536 tick) so the arithmetic stays exact and deterministic.
EEVDF, which replaced CFS's pick in Linux 6.6, runs the eligible task with the earliest
virtual deadline and places wakers by their lag; the proportional share is the same.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass
from typing import Sequence

from vlab.sched import (Decision, Entity, ProtocolError, SchedError, check_pcpus, check_positive,
                        check_same_vm_terms, refuse_terms)
from vlab.sched.shares import weighted_entitlement
from vlab.sched.units import ms

DEFAULT_WEIGHT = 256  # vlab's default weight, in the role of Linux's NICE_0_LOAD (1024)
LATENCY = ms(6)  # sysctl_sched_latency, before scaling by the CPU count
NR_LATENCY = 8  # sched_nr_latency = latency / min_granularity (0.75 ms)
WAKEUP_DIVISOR = 6  # sysctl_sched_wakeup_granularity = 1 ms = latency / 6
MAX_SCALED_CPUS = 8  # get_update_sysctl_factor(): min(online CPUs, 8)
FIXED_POINT = 1 << 16  # vruntime units per tick at the default weight


def scaling_factor(pcpus: int) -> int:
    """1 + log2(min(pcpus, 8)), the factor Linux applies to its latency and granularities."""
    return 1 + int(math.log2(min(pcpus, MAX_SCALED_CPUS)))


@dataclass(eq=False)
class _Vcpu:
    entity: Entity
    vruntime: int = 0
    runnable: bool = False
    yielding: bool = False
    seq: int = 0  # ties in vruntime go first-come first-served


@dataclass(eq=False)
class _Run:
    vcpu: _Vcpu
    start: int


class Fair:
    name = "fair"

    def __init__(self, pcpus: int = 1, slice_ticks: int | None = None):
        """`slice_ticks` is the target latency (default 6 ms x Linux's scaling for `pcpus`)."""
        self.pcpus = check_pcpus(pcpus)
        self.latency = check_positive("the fair policy's target latency",
                                      slice_ticks if slice_ticks is not None else LATENCY * scaling_factor(pcpus))
        self.min_granularity = max(1, self.latency // NR_LATENCY)
        self.wakeup_granularity = max(1, self.latency // WAKEUP_DIVISOR)
        self._vcpus: dict[Entity, _Vcpu] = {}
        self._vms: dict[int, Entity] = {}
        self._queue: list[tuple[int, int, _Vcpu]] = []  # (vruntime, seq, vCPU): runnable, not running
        self._running: dict[int, _Run] = {}
        self._tickled: set[int] = set()
        self._min_vruntime = 0
        self._runnable_weight = 0
        self._runnable_count = 0
        self._seq = itertools.count()

    # -- the protocol --------------------------------------------------------------------------

    def add(self, entity: Entity) -> None:
        if entity in self._vcpus:
            raise SchedError(f"{entity.name} was added twice")
        refuse_terms(self.name, entity, weight=False, cap=True)
        check_same_vm_terms(self._vms, entity)
        self._vcpus[entity] = _Vcpu(entity)

    def wake(self, entity: Entity, now: int) -> int | None:
        v = self._vcpu(entity)
        if v.runnable:
            return None
        v.runnable = True
        self._runnable_weight += entity.weight
        self._runnable_count += 1
        self._update_min_vruntime(now)
        v.vruntime = max(v.vruntime, self._min_vruntime - self.latency // 2 * FIXED_POINT)  # sleeper placement
        self._enqueue(v)
        return self._tickle(v, now)

    def sleep(self, entity: Entity, now: int) -> None:
        v = self._vcpu(entity)
        if not v.runnable:
            return
        v.runnable = v.yielding = False
        self._runnable_weight -= entity.weight
        self._runnable_count -= 1
        self._dequeue(v)

    def pick(self, pcpu: int, now: int, current: Entity | None) -> Decision:
        self._tickled.discard(pcpu)
        run = self._running.pop(pcpu, None)
        yielder = None
        if current is not None:
            v = self._vcpu(current)
            if run is None or run.vcpu is not v:
                raise ProtocolError(f"pick(pcpu={pcpu}, current={current.name}): the fair policy did not give "
                                    f"pCPU {pcpu} to {current.name}")
            self._enqueue(v)
            if v.yielding:
                yielder, v.yielding = v, False
        if not self._queue:
            return Decision(None, now + self.latency)
        nxt = self._after_yield(yielder) if yielder is not None else self._queue[0][2]
        self._dequeue(nxt)
        self._running[pcpu] = _Run(nxt, now)
        self._update_min_vruntime(now)
        return Decision(nxt.entity, now + self._slice(nxt))

    def charge(self, entity: Entity, pcpu: int, ran: int, now: int) -> None:
        v = self._vcpu(entity)
        v.vruntime += self._scaled(v, ran)
        run = self._running.get(pcpu)
        if run is not None and run.vcpu is v:
            run.start = now  # its vruntime is now up to date

    def yield_(self, entity: Entity, now: int) -> None:
        self._vcpu(entity).yielding = True

    def entitlement(self, entities: Sequence[Entity]) -> dict[Entity, float]:
        return weighted_entitlement(entities, self.pcpus, caps=False)

    def vruntimes(self) -> dict[Entity, float]:
        """Each vCPU's virtual runtime, in ticks at the default weight (for a notebook to show)."""
        return {e: v.vruntime / FIXED_POINT for e, v in self._vcpus.items()}

    # -- inside --------------------------------------------------------------------------------

    def _vcpu(self, entity: Entity) -> _Vcpu:
        try:
            return self._vcpus[entity]
        except KeyError:
            raise ProtocolError(f"{entity.name} was never added to the fair policy") from None

    def _scaled(self, v: _Vcpu, ticks: int) -> int:
        return ticks * DEFAULT_WEIGHT * FIXED_POINT // v.entity.weight

    def _enqueue(self, v: _Vcpu) -> None:
        v.seq = next(self._seq)  # unique, so tuples never go on to compare the vCPUs themselves
        bisect.insort(self._queue, (v.vruntime, v.seq, v))

    def _dequeue(self, v: _Vcpu) -> None:
        at = bisect.bisect_left(self._queue, (v.vruntime, v.seq))
        if at < len(self._queue) and self._queue[at][2] is v:
            del self._queue[at]

    def _vruntime_now(self, run: _Run, now: int) -> int:
        return run.vcpu.vruntime + self._scaled(run.vcpu, now - run.start)

    def _update_min_vruntime(self, now: int) -> None:
        """min_vruntime follows the smallest vruntime among runnable vCPUs, and never goes back."""
        candidates = [self._vruntime_now(run, now) for run in self._running.values()]
        if self._queue:
            candidates.append(self._queue[0][0])
        if candidates:
            self._min_vruntime = max(self._min_vruntime, min(candidates))

    def _slice(self, v: _Vcpu) -> int:
        """Its weight's part of the period, the period shared by this many vCPUs per pCPU."""
        per_cpu = math.ceil(self._runnable_count / self.pcpus)
        period = self.latency if per_cpu <= NR_LATENCY else per_cpu * self.min_granularity
        part = period * v.entity.weight * self.pcpus // max(1, self._runnable_weight)
        return min(period, max(self.min_granularity, part))

    def _after_yield(self, yielder: _Vcpu) -> _Vcpu:
        """Who runs after `yielder` gave up its pCPU: a waiting sibling, else the next other, else itself."""
        others = [v for _, _, v in self._queue if v is not yielder]
        siblings = [v for v in others if v.entity.vm == yielder.entity.vm]
        return (siblings or others or [yielder])[0]

    def _tickle(self, v: _Vcpu, now: int) -> int | None:
        """An idle pCPU for `v`, else the one whose vCPU is furthest ahead of it past the granularity."""
        for pcpu in range(self.pcpus):
            if pcpu not in self._running and pcpu not in self._tickled:
                self._tickled.add(pcpu)
                return pcpu
        granularity = self._scaled(v, self.wakeup_granularity)
        ahead = [(self._vruntime_now(run, now) - v.vruntime, -pcpu) for pcpu, run in self._running.items()
                 if pcpu not in self._tickled]
        lead, pcpu = max(ahead, default=(0, 0))
        if lead <= granularity:
            return None
        self._tickled.add(-pcpu)
        return -pcpu
