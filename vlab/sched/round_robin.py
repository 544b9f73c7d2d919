"""Round-robin: one queue of runnable vCPUs, each runs a fixed slice in turn.

The simplest work-conserving policy, and the baseline the others are measured against: no
weights, no caps, a vCPU that wakes joins the back of the queue -- and takes an idle pCPU at
once if there is one, but never preempts a running vCPU.
"""

from __future__ import annotations

from collections import deque
from typing import Sequence

from vlab.sched import Decision, Entity, check_pcpus, check_positive, refuse_terms
from vlab.sched.shares import weighted_entitlement

DEFAULT_SLICE = 1_875_000  # 30 ms of guest time at the board's 62.5 MHz counter, Xen credit's slice


class RoundRobin:
    name = "rr"

    def __init__(self, slice_ticks: int = DEFAULT_SLICE, pcpus: int = 1):
        self.slice = check_positive("a round-robin slice", slice_ticks)
        self.pcpus = check_pcpus(pcpus)
        self._queue: deque[Entity] = deque()  # runnable and not running
        self._idle: set[int] = set(range(pcpus))  # pCPUs that run nothing and were not yet asked to
        self._running: dict[int, Entity] = {}

    def add(self, entity: Entity) -> None:
        refuse_terms(self.name, entity, weight=True, cap=True)  # a vCPU starts blocked; wake() queues it

    def wake(self, entity: Entity, now: int) -> int | None:
        if entity in self._queue or entity in self._running.values():
            return None
        self._queue.append(entity)
        return self._take_idle()  # never preempts a running vCPU: only an idle pCPU is asked to pick

    def sleep(self, entity: Entity, now: int) -> None:
        if entity in self._queue:
            self._queue.remove(entity)
        # Asleep while running (its VM's run ended, say): it runs nowhere now, so a wake before the
        # pick for its pCPU queues it again instead of being taken for a vCPU still running.
        self._running = {pcpu: e for pcpu, e in self._running.items() if e != entity}

    def pick(self, pcpu: int, now: int, current: Entity | None) -> Decision:
        self._running.pop(pcpu, None)
        if current is not None:
            self._queue.append(current)  # its slice is over (or it yielded): to the back of the queue
        if not self._queue:
            self._idle.add(pcpu)
            return Decision(None, now + self.slice)
        self._idle.discard(pcpu)
        self._running[pcpu] = self._queue.popleft()
        return Decision(self._running[pcpu], now + self.slice)

    def charge(self, entity: Entity, pcpu: int, ran: int, now: int) -> None:
        pass  # round-robin keeps no accounts

    def yield_(self, entity: Entity, now: int) -> None:
        pass  # pick() is asked next, with `entity` as current: it goes to the back of the queue

    def entitlement(self, entities: Sequence[Entity]) -> dict[Entity, float]:
        return weighted_entitlement(entities, self.pcpus, weights=False, caps=False)

    def _take_idle(self) -> int | None:
        """The lowest idle pCPU, no longer counted idle (it is about to pick), or None."""
        if not self._idle:
            return None
        pcpu = min(self._idle)
        self._idle.discard(pcpu)
        return pcpu
