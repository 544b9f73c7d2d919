"""Round-robin: one queue of runnable vCPUs, each runs a fixed slice in turn.

The simplest work-conserving policy, and the baseline the others are measured against: no
weights, no caps, a vCPU that wakes joins the back of the queue.
"""

from __future__ import annotations

from collections import deque

from vlab.sched import Decision, Entity

DEFAULT_SLICE = 1_875_000  # 30 ms of guest time at the board's 62.5 MHz counter, Xen credit's slice


class RoundRobin:
    name = "rr"

    def __init__(self, slice_ticks: int = DEFAULT_SLICE):
        if slice_ticks <= 0:
            raise ValueError(f"a round-robin slice must be a positive number of ticks, not {slice_ticks}")
        self.slice = slice_ticks
        self._queue: deque[Entity] = deque()  # runnable and not running

    def add(self, entity: Entity) -> None:
        pass  # a vCPU starts blocked; wake() queues it

    def wake(self, entity: Entity, now: int) -> int | None:
        if entity not in self._queue:
            self._queue.append(entity)
        return None  # never preempts: the woken vCPU waits for its turn

    def sleep(self, entity: Entity, now: int) -> None:
        if entity in self._queue:
            self._queue.remove(entity)

    def pick(self, pcpu: int, now: int, current: Entity | None) -> Decision:
        if current is not None:
            self._queue.append(current)  # its slice is over: to the back of the queue
        if not self._queue:
            return Decision(None, now + self.slice)
        return Decision(self._queue.popleft(), now + self.slice)

    def charge(self, entity: Entity, pcpu: int, ran: int, now: int) -> None:
        pass  # round-robin keeps no accounts

    def yield_(self, entity: Entity, now: int) -> None:
        pass  # pick() is asked next, with `entity` as current: it goes to the back of the queue
