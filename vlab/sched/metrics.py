"""The figures of one run, computed from its trace: shares, latency, switches, utilisation, fairness.

    figures = run_figures(trace, policy.entitlement(trace.entities))
    print(figures.table())          # or figures.as_dict() for --json

- share: the part of one pCPU's time a vCPU ran (guest ticks / run length), against its
  entitlement -- what the policy promises it when every vCPU is runnable all the time;
- wake-up latency: from the moment a vCPU became runnable to its next guest instruction
  (the world switch that loads it included);
- world switches: how many, and the host ticks they cost;
- utilisation: the part of each pCPU's time that ran guest code;
- Jain's fairness index over share/entitlement: (sum x)^2 / (n * sum x^2), 1 when every vCPU
  gets the same fraction of what it is entitled to, 1/n when one gets everything (Jain, Chiu
  and Hawe, "A quantitative measure of fairness...", DEC-TR-301, 1984);
- partition deadline misses: windows of an ARINC 653 frame in which their owner was runnable
  for longer than it ran (whatever the policy: the frame can be a requirement to check).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Mapping, Sequence

from vlab.sched import Entity
from vlab.sched.arinc653 import Frame
from vlab.sched.intervals import merged, overlap
from vlab.sched.trace import Trace, ran_ticks
from vlab.sched.units import TICKS_PER_SECOND, format_duration


def shares(trace: Trace) -> dict[Entity, float]:
    """Each vCPU's guest ticks as a fraction of the run's length (1.0 = a whole pCPU)."""
    ran = ran_ticks(trace.segments)
    return {e: ran.get(e, 0) / trace.duration for e in trace.entities}


def utilisation(trace: Trace) -> list[float]:
    """Each pCPU's fraction of the run spent running guest code."""
    busy = [0] * trace.pcpus
    for s in trace.segments:
        busy[s.pcpu] += s.end - s.start
    return [b / trace.duration for b in busy]


def wake_latencies(trace: Trace) -> dict[Entity, list[int]]:
    """For each vCPU, the ticks from each wake-up to its next guest instruction (wake-ups never served left out)."""
    starts: dict[Entity, list[int]] = {e: [] for e in trace.entities}
    for s in trace.segments:
        starts.setdefault(s.entity, []).append(s.start)
    sleeps: dict[Entity, list[int]] = {e: [] for e in trace.entities}
    for event in trace.events:
        if event.kind == "sleep":
            sleeps.setdefault(event.entity, []).append(event.time)
    for points in (*starts.values(), *sleeps.values()):
        points.sort()
    latencies: dict[Entity, list[int]] = {e: [] for e in trace.entities}
    for event in trace.events:
        if event.kind != "wake":
            continue
        points, asleep = starts[event.entity], sleeps[event.entity]
        i = bisect.bisect_left(points, event.time)
        j = bisect.bisect_left(asleep, event.time)
        if i == len(points) or (j < len(asleep) and asleep[j] < points[i]):
            continue  # never ran again, or went back to sleep before it ran
        latencies[event.entity].append(points[i] - event.time)
    return latencies


def jain_index(values: Sequence[float]) -> float | None:
    """Jain's fairness index of `values`: 1 when all are equal, 1/n when one has everything (None if all 0)."""
    square_sum = sum(v * v for v in values)
    if not values or square_sum == 0:
        return None
    return sum(values) ** 2 / (len(values) * square_sum)


@dataclass(frozen=True)
class Miss:
    """In frame `frame` (counting from 0), window `window`'s owner `entity` ran `got` of the `needed` ticks."""

    frame: int
    window: int
    entity: Entity
    needed: int
    got: int

    def __str__(self) -> str:
        return (f"frame {self.frame}, window {self.window + 1}: {self.entity.name} was runnable for "
                f"{format_duration(self.needed)} of its window but ran {format_duration(self.got)}")


def deadline_misses(trace: Trace, frame: Frame, tolerance: int = 0) -> list[Miss]:
    """The windows of `frame`, over the whole trace, whose owner was runnable more than it ran.

    `tolerance` ticks per window are forgiven (a host passes its world-switch cost: the
    partition's first instructions in a window wait for its context to be loaded).
    """
    runnable = {e: merged(spans) for e, spans in trace.runnable_intervals().items()}
    held = {e: merged([(s, t) for _, s, t in spans]) for e, spans in trace.busy_intervals().items()}
    misses = []
    for k in range(-(-trace.duration // frame.major)):
        base = k * frame.major
        for i, (window, start) in enumerate(zip(frame.windows, frame.starts)):
            span = [(base + start, min(base + start + window.duration, trace.duration))]
            if span[0][1] <= span[0][0]:
                continue
            for entity in trace.entities:
                if not window.owns(entity):
                    continue
                needed = overlap(runnable.get(entity, []), span)
                got = overlap(held.get(entity, []), span)
                if got + tolerance < needed:
                    misses.append(Miss(k, i, entity, needed, got))
    return misses


@dataclass(frozen=True)
class VcpuFigures:
    entity: Entity
    ran: int  # guest ticks
    share: float  # of one pCPU
    entitlement: float
    wakeups: int
    latency_mean: float | None  # ticks from wake-up to running
    latency_max: int | None
    switches_in: int


@dataclass(frozen=True)
class RunFigures:
    duration: int
    vcpus: tuple[VcpuFigures, ...]
    utilisation: tuple[float, ...]  # per pCPU
    world_switches: int
    switch_ticks: int
    jain: float | None
    deadline_misses: int | None  # None: no frame to check against

    def as_dict(self) -> dict:
        """The figures as JSON-ready data (the `sched` key of `vlab run --json`)."""
        return {
            "duration": self.duration,
            "vcpus": [{"vm": v.entity.vm, "vcpu": v.entity.vcpu, "ran": v.ran, "share": round(v.share, 6),
                       "entitlement": round(v.entitlement, 6), "wakeups": v.wakeups,
                       "latency_mean": v.latency_mean, "latency_max": v.latency_max,
                       "switches_in": v.switches_in} for v in self.vcpus],
            "pcpu_utilisation": [round(u, 6) for u in self.utilisation],
            "world_switches": self.world_switches,
            "switch_ticks": self.switch_ticks,
            "jain": self.jain,
            "deadline_misses": self.deadline_misses,
        }

    def table(self) -> str:
        """The figures as a text table, one line per vCPU, then the machine's."""
        lines = [f"{'vCPU':<12}{'share':>8}{'entitled':>10}{'wake-ups':>10}{'mean wait':>12}{'max wait':>12}"
                 f"{'switches':>10}"]
        for v in self.vcpus:
            mean = "-" if v.latency_mean is None else _readable(v.latency_mean)
            worst = "-" if v.latency_max is None else _readable(v.latency_max)
            lines.append(f"{v.entity.name:<12}{v.share:>8.1%}{v.entitlement:>10.1%}{v.wakeups:>10}{mean:>12}"
                         f"{worst:>12}{v.switches_in:>10}")
        lines.append("pCPU utilisation: " + ", ".join(f"{p}: {u:.1%}" for p, u in enumerate(self.utilisation)))
        jain = "-" if self.jain is None else f"{self.jain:.3f}"
        lines.append(f"world switches: {self.world_switches} ({self.switch_ticks} ticks); Jain's index: {jain}")
        if self.deadline_misses is not None:
            lines.append(f"partition deadline misses: {self.deadline_misses}")
        return "\n".join(lines)


def _readable(ticks: float) -> str:
    microseconds = ticks * 1_000_000 / TICKS_PER_SECOND
    return f"{microseconds:.1f} us" if microseconds < 1000 else f"{microseconds / 1000:.2f} ms"


def run_figures(trace: Trace, entitlement: Mapping[Entity, float], frame: Frame | None = None,
                tolerance: int = 0) -> RunFigures:
    """Every figure of the run; deadline misses against `frame` if one is given."""
    share = shares(trace)
    ran = ran_ticks(trace.segments)
    latencies = wake_latencies(trace)
    wakeups = {e: 0 for e in trace.entities}
    for event in trace.events:
        if event.kind == "wake":
            wakeups[event.entity] = wakeups.get(event.entity, 0) + 1
    switches_in = {e: 0 for e in trace.entities}
    for w in trace.switches:
        switches_in[w.into] = switches_in.get(w.into, 0) + 1
    vcpus = []
    for e in trace.entities:
        waits = latencies.get(e, [])
        vcpus.append(VcpuFigures(e, ran.get(e, 0), share[e], entitlement.get(e, 0.0), wakeups[e],
                                 sum(waits) / len(waits) if waits else None, max(waits, default=None),
                                 switches_in[e]))
    entitled = [share[e] / entitlement[e] for e in trace.entities if entitlement.get(e, 0) > 0]
    return RunFigures(trace.duration, tuple(vcpus), tuple(utilisation(trace)), len(trace.switches),
                      sum(w.cost for w in trace.switches), jain_index(entitled),
                      None if frame is None else len(deadline_misses(trace, frame, tolerance)))
