"""Half-open tick intervals [start, end): lengths, overlaps, and a sweep over a whole trace.

The metrics and the property checks ask the same questions of a trace -- how long was this
vCPU runnable inside that window, was some pCPU idle while someone waited -- and answer them
with these few functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

from vlab.sched import Entity
from vlab.sched.trace import Trace


def merged(intervals: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """`intervals` sorted, overlapping and touching ones joined."""
    out: list[list[int]] = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(s, e) for s, e in out]


def overlap(a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]]) -> int:
    """Ticks in both `a` and `b`, each a merged (sorted, disjoint) interval list."""
    total = i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        total += max(0, hi - lo)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


@dataclass
class Moment:
    """The state of the machine during [start, end): who is runnable, who holds a pCPU, which pCPUs are busy."""

    start: int = 0
    end: int = 0
    runnable: set[Entity] = field(default_factory=set)
    held: set[Entity] = field(default_factory=set)  # running, or being switched in
    waiting: set[Entity] = field(default_factory=set)  # runnable and holding no pCPU
    busy: set[int] = field(default_factory=set)  # pCPUs running a vCPU or switching


def sweep(trace: Trace) -> Iterator[Moment]:
    """The trace as a sequence of moments in which nothing changes (one object, updated in place)."""
    changes: list[tuple[int, int, str, object]] = []  # (time, +1/-1, kind, what)
    for entity, spans in trace.runnable_intervals().items():
        for start, end in spans:
            changes += [(start, 1, "runnable", entity), (end, -1, "runnable", entity)]
    for entity, spans in trace.busy_intervals().items():
        for pcpu, start, end in spans:
            changes += [(start, 1, "held", entity), (end, -1, "held", entity),
                        (start, 1, "busy", pcpu), (end, -1, "busy", pcpu)]
    changes.sort(key=lambda c: (c[0], c[1]))  # at one tick, what ends goes before what starts
    counts: dict[tuple[str, object], int] = {}
    moment = Moment()
    i = 0
    while i < len(changes):
        now = changes[i][0]
        while i < len(changes) and changes[i][0] == now:
            _, delta, kind, what = changes[i]
            key = (kind, what)
            counts[key] = counts.get(key, 0) + delta
            _set_membership(getattr(moment, kind), what, counts[key] > 0)
            if kind != "busy":
                _set_membership(moment.waiting, what, what in moment.runnable and what not in moment.held)
            i += 1
        if i < len(changes) and changes[i][0] > now:
            moment.start, moment.end = now, changes[i][0]
            yield moment


def _set_membership(members: set, what: object, present: bool) -> None:
    if present:
        members.add(what)
    else:
        members.discard(what)
