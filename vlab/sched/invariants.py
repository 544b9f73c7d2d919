"""What a policy promises, checked on a trace: each check returns the violations it finds ([] if none).

The same checks run on simulated schedules (tests/test_sched_properties.py) and on runs of real
guests on the host, since both record a vlab.sched.trace.Trace:

    idle_while_runnable(trace, lockstep)  work-conserving: no pCPU idles while a vCPU waits
    share_errors(trace, entitled, 0.05)   long-run shares within 5% of the entitlement
    cap_overruns(trace, burst)            no VM runs past its cap (plus a bounded burst)
    window_violations(trace, frame)       ARINC 653: runs only in its windows, and gets them
    coscheduling_violations(trace, cost)  a VM's vCPUs run together or not at all
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from vlab.sched import Entity
from vlab.sched.arinc653 import Frame
from vlab.sched.intervals import Moment, merged, overlap, sweep
from vlab.sched.metrics import deadline_misses, shares
from vlab.sched.trace import Trace

MAX_REPORTED = 10  # violations listed per check: enough to see the pattern


@dataclass(frozen=True)
class Violation:
    time: int
    what: str

    def __str__(self) -> str:
        return f"at tick {self.time:,}: {self.what}"


def idle_while_runnable(trace: Trace, tolerance: int = 0) -> list[Violation]:
    """Stretches longer than `tolerance` ticks when a pCPU was idle while some vCPU was runnable and held no pCPU.

    A host's trace needs a tolerance of about its lockstep quantum: it dates wake-ups by its
    slowest core, and runs by each core's own clock.
    """
    def idle_while_waiting(m: Moment) -> dict:
        if m.waiting and len(m.busy) < trace.pcpus:
            idle = min(set(range(trace.pcpus)) - m.busy)
            return {"idle": f"pCPU {idle} idle while {', '.join(sorted(e.name for e in m.waiting))} waited"}
        return {}
    return _lasting(trace, idle_while_waiting, tolerance)


def share_errors(trace: Trace, entitlement: Mapping[Entity, float], tolerance: float) -> list[Violation]:
    """vCPUs whose share of the run is off their entitlement by more than `tolerance` (relative)."""
    got = shares(trace)
    found = []
    for e in trace.entities:
        want = entitlement.get(e, 0.0)
        if abs(got[e] - want) > tolerance * want:
            found.append(Violation(trace.duration, f"{e.name} ran {got[e]:.2%} of a pCPU, entitled to {want:.2%} "
                                                   f"(more than {tolerance:.0%} off)"))
    return found


def cap_overruns(trace: Trace, burst: int) -> list[Violation]:
    """Capped VMs that, by some moment t, had run more than cap% x t plus `burst` ticks per vCPU.

    A cap bounds a VM's long-run average; how far it may run ahead of it is the policy's
    (`Credit.cap_burst`).
    """
    found = []
    vcpus: dict[int, int] = {}
    for e in trace.entities:
        vcpus[e.vm] = vcpus.get(e.vm, 0) + 1
    caps = {e.vm: e.cap for e in trace.entities if e.cap}
    for vm, cap in caps.items():
        slack = burst * vcpus[vm]
        changes = sorted([(s.start, 1) for s in trace.segments if s.entity.vm == vm]
                         + [(s.end, -1) for s in trace.segments if s.entity.vm == vm])
        ran = running = last = 0
        for time, delta in changes:
            ran += running * (time - last)
            running, last = running + delta, time
            if delta < 0 and ran > cap * time / 100 + slack:
                found.append(Violation(time, f"VM {vm} had run {ran:,} ticks by then, more than its cap of {cap}% "
                                             f"plus {slack:,} ticks"))
                break
    return found


def window_violations(trace: Trace, frame: Frame, tolerance: int = 0) -> list[Violation]:
    """Runs outside a vCPU's windows, and windows whose runnable owner did not run (see deadline_misses)."""
    found = []
    for e in trace.entities:
        allowed = merged([(k * frame.major + start, k * frame.major + start + w.duration)
                          for k in range(-(-trace.duration // frame.major))
                          for w, start in zip(frame.windows, frame.starts) if w.owns(e)])
        for s in trace.segments:
            if s.entity == e and overlap([(s.start, s.end)], allowed) < s.end - s.start:
                found.append(Violation(s.start, f"{e.name} ran [{s.start:,}, {s.end:,}) on pCPU {s.pcpu}, "
                                                f"outside its windows"))
                break
    found += [Violation(m.frame * frame.major + frame.starts[m.window], str(m))
              for m in deadline_misses(trace, frame, tolerance)[:MAX_REPORTED]]
    return found


def coscheduling_violations(trace: Trace, tolerance: int = 0) -> list[Violation]:
    """Stretches longer than `tolerance` ticks when a VM's runnable vCPU waited while a sibling held a pCPU.

    With world switches that cost something, siblings start and stop up to one switch apart:
    pass the switch cost as `tolerance`.
    """
    def stranded(m: Moment) -> dict:
        running_vms = {e.vm for e in m.held}
        return {e: f"{e.name} waited while a sibling ran" for e in m.waiting if e.vm in running_vms}
    return _lasting(trace, stranded, tolerance)


def _lasting(trace: Trace, wrong: Callable[[Moment], dict], tolerance: int) -> list[Violation]:
    """The stretches during which `wrong(moment)` keeps naming the same thing, longer than `tolerance`."""
    found: list[Violation] = []
    since: dict[object, tuple[int, str]] = {}
    end = 0

    def close(key: object, until: int) -> None:
        start, what = since.pop(key)
        if until - start > tolerance:
            found.append(Violation(start, f"{what}, for {until - start:,} ticks"))

    for m in sweep(trace):
        now_wrong = wrong(m)
        for key in [k for k in since if k not in now_wrong]:
            close(key, m.start)
        for key, what in now_wrong.items():
            since.setdefault(key, (m.start, what))
        end = m.end
    for key in list(since):
        close(key, end)
    return sorted(found, key=lambda v: v.time)[:MAX_REPORTED]
