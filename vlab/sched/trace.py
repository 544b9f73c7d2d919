"""The schedule trace: what ran where and when, as the host (or vlab.sched.simulate) records it.

    trace = Trace(pcpus=2, entities=[...])
    trace.woke(entity, t)  /  trace.slept(entity, t)  /  trace.yielded(entity, t)
    trace.switched(pcpu, t, out, into, cost)     a world switch: [t, t + cost) loads `into`
    trace.ran(pcpu, entity, start, end)          guest ticks [start, end) of `entity` on `pcpu`
    trace.finish(end)                            the run is over at host tick `end`

Everything else -- shares, latencies, utilisation, the properties a policy must keep -- is
computed from these records (vlab.sched.metrics, vlab.sched.invariants), so the same figures
come out of a simulated run and of a run of real guests on the host. Intervals are half-open:
[start, end). A pCPU with no segment and no switch at some moment is idle then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from vlab.sched import Entity


@dataclass(frozen=True)
class Segment:
    """`entity` executed guest instructions on `pcpu` from host tick `start` to `end`."""

    pcpu: int
    entity: Entity
    start: int
    end: int


@dataclass(frozen=True)
class Event:
    """`entity` became runnable ("wake"), stopped being runnable ("sleep") or yielded ("yield") at `time`."""

    time: int
    entity: Entity
    kind: str


@dataclass(frozen=True)
class Switch:
    """A world switch on `pcpu` at `time`: `out`'s context saved, `into`'s loaded, `cost` host ticks."""

    pcpu: int
    time: int
    out: Entity | None
    into: Entity
    cost: int


@dataclass
class Trace:
    """The records of one run (see the module docstring); `end` is None until `finish`."""

    pcpus: int
    entities: list[Entity]
    segments: list[Segment] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    switches: list[Switch] = field(default_factory=list)
    end: int | None = None
    _last: dict[int, int] = field(default_factory=dict, repr=False, compare=False)  # pCPU -> its last segment

    def ran(self, pcpu: int, entity: Entity, start: int, end: int) -> None:
        """Record a run; one that continues the previous run on that pCPU extends it."""
        if end <= start:
            return
        at = self._last.get(pcpu)
        if at is not None and self.segments[at].entity == entity and self.segments[at].end == start:
            self.segments[at] = Segment(pcpu, entity, self.segments[at].start, end)
        else:
            self._last[pcpu] = len(self.segments)
            self.segments.append(Segment(pcpu, entity, start, end))

    def woke(self, entity: Entity, time: int) -> None:
        self.events.append(Event(time, entity, "wake"))

    def slept(self, entity: Entity, time: int) -> None:
        self.events.append(Event(time, entity, "sleep"))

    def yielded(self, entity: Entity, time: int) -> None:
        self.events.append(Event(time, entity, "yield"))

    def switched(self, pcpu: int, time: int, out: Entity | None, into: Entity, cost: int) -> None:
        self.switches.append(Switch(pcpu, time, out, into, cost))

    def finish(self, end: int) -> None:
        self.end = end

    @property
    def duration(self) -> int:
        if self.end is None:
            raise ValueError("the trace is not finished: call finish(end) when the run is over")
        return self.end

    def runnable_intervals(self) -> dict[Entity, list[tuple[int, int]]]:
        """When each entity was runnable (woken and not yet asleep), as [start, end) intervals."""
        intervals: dict[Entity, list[tuple[int, int]]] = {e: [] for e in self.entities}
        since: dict[Entity, int] = {}
        for event in sorted(self.events, key=lambda e: e.time):
            if event.kind == "wake":
                since.setdefault(event.entity, event.time)
            elif event.kind == "sleep" and event.entity in since:
                _add(intervals, event.entity, since.pop(event.entity), event.time)
        for entity, start in since.items():
            _add(intervals, entity, start, self.duration)
        return intervals

    def busy_intervals(self) -> dict[Entity, list[tuple[int, int, int]]]:
        """When each entity held a pCPU -- running, or being switched in -- as (pcpu, start, end)."""
        held: dict[Entity, list[tuple[int, int, int]]] = {e: [] for e in self.entities}
        for s in self.segments:
            held.setdefault(s.entity, []).append((s.pcpu, s.start, s.end))
        for w in self.switches:
            if w.cost:
                held.setdefault(w.into, []).append((w.pcpu, w.time, w.time + w.cost))
        return held


def _add(intervals: dict[Entity, list[tuple[int, int]]], entity: Entity, start: int, end: int) -> None:
    if end > start:
        intervals.setdefault(entity, []).append((start, end))


def ran_ticks(segments: Iterable[Segment]) -> dict[Entity, int]:
    """Guest ticks each entity ran in `segments`."""
    total: dict[Entity, int] = {}
    for s in segments:
        total[s.entity] = total.get(s.entity, 0) + s.end - s.start
    return total
