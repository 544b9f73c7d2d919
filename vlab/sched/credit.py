"""Xen's credit scheduler (credit1): weights, caps, BOOST on wake-up, UNDER and OVER.

How it works (xen/common/sched/credit.c; vlab's code is its own):
- Every vCPU has a credit balance, counted here in host ticks of CPU time (Xen counts 10
  credits per ms, so one Xen credit is 6,250 ticks). Running burns credit, tick for tick.
- Every slice (30 ms) an accounting hands out pcpus x slice of new credit among the *active*
  vCPUs, in proportion to weight -- each vCPU counts its VM's weight -- no VM above its cap,
  what a capped VM cannot take going to the others. Then a vCPU with credit >= 0 is UNDER,
  below 0 OVER.
- The run queue is in priority order, BOOST > UNDER > OVER, first come first served within a
  priority; `pick` takes its head, and a vCPU whose slice is over goes behind its equals.
- A vCPU that wakes UNDER is BOOSTed: it goes ahead of everyone and preempts a running vCPU of
  lower priority. The first tick (10 ms) that finds it running ends the boost: a vCPU
  that wakes, works briefly and blocks again (I/O, interaction) keeps its low latency, a
  CPU-bound one cannot hide behind it.
- Credit is clamped: below -slice it is raised to -slice; above +slice the vCPU stops earning
  (it is no longer active) and its credit is halved, until a tick finds it running again.
- A cap is a VM's ceiling in percent of one pCPU: the VM earns at most that part of a slice,
  and a vCPU whose credit falls below minus its part of the cap is *parked* -- it does not run,
  even on an idle pCPU -- until an accounting brings its credit back to >= 0. Capped is
  therefore not work-conserving; uncapped is: an OVER vCPU still runs when no one else wants
  the pCPU.
- Rate limit (1 ms): a vCPU that has run less than that is not preempted by a wake-up.
- Yield (SCHEDOP_yield): the vCPU goes back behind one vCPU of lower priority, if there is one.

Where vlab differs, and why:
- One run queue for all pCPUs. Xen keeps one per pCPU and lets an idle or OVER pCPU steal from
  its peers; a shared queue is what perfect stealing converges to, without affinity or cache
  heat to model.
- The accounting gives capped VMs their cap first, then splits the rest (water-filling); Xen
  reaches the same split over a few periods by moving such domains to the head of its list.
- Xen's tick is a timer that catches whichever vCPU is running every 10 ms, so a vCPU whose
  short bursts fall between ticks is never caught: it keeps its BOOST and escapes accounting,
  caps included (a periodic guest does this by accident). vlab counts each vCPU's own CPU time
  instead: every tick's worth it uses is a tick that found it running.
- Accountings fall on multiples of `slice` of the host clock and are evaluated at the next
  call that reaches them, so no Python runs while nothing is decided. When some VM has a cap,
  every decision ends at the next accounting, so that parking and unparking take effect on
  time, as Xen's pause and unpause of a vCPU do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from vlab.sched import (Decision, Entity, ProtocolError, SchedError, check_pcpus, check_positive,
                        check_same_vm_terms)
from vlab.sched.shares import water_fill, weighted_entitlement
from vlab.sched.units import TICKS_PER_MS, ms

DEFAULT_WEIGHT = 256  # CSCHED_DEFAULT_WEIGHT
DEFAULT_SLICE = ms(30)  # CSCHED_DEFAULT_TSLICE_MS: 30 ms, and one accounting per slice
TICKS_PER_SLICE = 3  # CSCHED_TICKS_PER_TSLICE: a 10 ms tick (1 tick when the slice is too short)
CREDITS_PER_MS = 10  # CSCHED_CREDITS_PER_MSEC
TICKS_PER_CREDIT = TICKS_PER_MS // CREDITS_PER_MS  # 6,250 host ticks burn one Xen credit
DEFAULT_RATELIMIT = ms(1)  # SCHED_DEFAULT_RATELIMIT_US = 1000 (xen/common/sched/private.h)
BOOST, UNDER, OVER = 0, -1, -2  # CSCHED_PRI_TS_BOOST, _UNDER, _OVER (an idle pCPU is IDLE, -64)
PRIORITY_NAMES = {BOOST: "BOOST", UNDER: "UNDER", OVER: "OVER"}
CAP_BURST_SLICES = 2  # see Credit.cap_burst


@dataclass(eq=False)
class _Vcpu:
    entity: Entity
    credit: int = 0  # host ticks of CPU time it may still use
    pri: int = UNDER
    active: bool = False  # earning credit at each accounting
    parked: bool = False  # its VM is over its cap: it may not run
    runnable: bool = False
    yielding: bool = False
    tick_left: int = 0  # CPU time until its next tick (set to a whole tick when added)


@dataclass(eq=False)
class _Run:
    """A pCPU's decision: whom it runs, until its slice's end, and how much credit it burned so far."""

    vcpu: _Vcpu
    slice_end: int
    run_start: int  # when this vCPU began running here without a switch (for the rate limit)
    since: int  # its credit is burned up to this tick
    burned: int = 0  # burned by the clock since the last charge, which puts `ran` in its place


class Credit:
    name = "credit"

    def __init__(self, pcpus: int = 1, slice_ticks: int = DEFAULT_SLICE, tick_ticks: int | None = None,
                 ratelimit_ticks: int | None = None):
        """Tick and rate limit default to Xen's parts of the slice: a third, and a thirtieth (1 ms of 30)."""
        self.pcpus = check_pcpus(pcpus)
        self.slice = check_positive("the credit scheduler's slice", slice_ticks)
        self.tick = check_positive("the credit scheduler's tick",
                                   tick_ticks if tick_ticks is not None else max(1, slice_ticks // TICKS_PER_SLICE))
        if self.tick > self.slice:
            raise SchedError(f"the credit scheduler's tick ({self.tick} ticks) is longer than its slice "
                             f"({self.slice} ticks): Xen ticks {TICKS_PER_SLICE} times per slice")
        if ratelimit_ticks is None:
            ratelimit_ticks = slice_ticks * DEFAULT_RATELIMIT // DEFAULT_SLICE
        if not 0 <= ratelimit_ticks <= self.slice:
            raise SchedError(f"the credit scheduler's rate limit must be from 0 (off) to one slice "
                             f"({self.slice} ticks), not {ratelimit_ticks}")
        self.ratelimit = ratelimit_ticks
        self._vcpus: dict[Entity, _Vcpu] = {}
        self._vms: dict[int, Entity] = {}
        self._queue: list[_Vcpu] = []  # runnable, not running, not parked; by priority
        self._running: dict[int, _Run] = {}
        self._tickled: set[int] = set()  # pCPUs asked to pick again and not yet picked
        self._preempt: set[int] = set()  # ... of which those that must give up their vCPU
        self._next_account = self.slice
        self._balance = 0  # credit left over at the last accounting (Xen's credit_balance)
        self._capped = False

    # -- the protocol --------------------------------------------------------------------------

    def add(self, entity: Entity) -> None:
        if entity in self._vcpus:
            raise SchedError(f"{entity.name} was added twice")
        check_same_vm_terms(self._vms, entity)
        if entity.cap > 100 * self.pcpus:
            raise SchedError(f"{entity.name}: a cap of {entity.cap}% is more than the host's {self.pcpus} "
                             f"physical CPU(s) can give (at most {100 * self.pcpus}%)")
        self._capped |= entity.cap > 0
        self._vcpus[entity] = _Vcpu(entity, tick_left=self.tick)

    def wake(self, entity: Entity, now: int) -> int | None:
        self._advance(now)
        v = self._vcpu(entity)
        if v.runnable:
            return None
        v.runnable = True
        if v.parked:
            return None  # it runs when an accounting unparks it
        if v.pri == UNDER:
            v.pri = BOOST
        self._enqueue(v)
        return self._tickle(v)

    def sleep(self, entity: Entity, now: int) -> None:
        self._advance(now)
        v = self._vcpu(entity)
        v.runnable = v.yielding = False
        if v in self._queue:
            self._queue.remove(v)

    def pick(self, pcpu: int, now: int, current: Entity | None) -> Decision:
        self._advance(now)
        self._tickled.discard(pcpu)
        run = self._running.pop(pcpu, None)
        if current is not None:
            v = self._vcpu(current)
            if run is None or run.vcpu is not v:
                raise ProtocolError(f"pick(pcpu={pcpu}, current={current.name}): the credit scheduler did not "
                                    f"give pCPU {pcpu} to {current.name}")
            until = self._keeps_running(pcpu, run, now)
            if until is not None:
                self._running[pcpu] = _Run(v, run.slice_end, run.run_start, since=now)
                return Decision(current, until)
            if not v.parked:
                self._enqueue(v)
            v.yielding = False
        self._preempt.discard(pcpu)
        if not self._queue:
            return Decision(None, self._next_account)
        nxt = self._queue.pop(0)
        run_start = run.run_start if run is not None and run.vcpu is nxt else now
        self._running[pcpu] = _Run(nxt, now + self.slice, run_start, since=now)
        return Decision(nxt.entity, self._cut(now + self.slice))

    def charge(self, entity: Entity, pcpu: int, ran: int, now: int) -> None:
        self._advance(now)
        run = self._running.get(pcpu)
        if run is None or run.vcpu.entity != entity:
            raise ProtocolError(f"charge({entity.name}, pcpu={pcpu}): the credit scheduler did not give pCPU "
                                f"{pcpu} to {entity.name}")
        run.vcpu.credit += run.burned - ran  # burned by the clock (world switches included); the truth is `ran`
        run.burned = 0

    def yield_(self, entity: Entity, now: int) -> None:
        self._vcpu(entity).yielding = True  # pick() follows, and requeues it behind one lower vCPU

    def entitlement(self, entities: Sequence[Entity]) -> dict[Entity, float]:
        return weighted_entitlement(entities, self.pcpus)

    @property
    def cap_burst(self) -> int:
        """How far (in ticks, per vCPU) a capped VM may run ahead of its cap before parking catches it.

        A vCPU may bank up to a slice of credit (above that it stops earning), and runs on for
        up to a slice past zero before the next accounting parks it.
        """
        return CAP_BURST_SLICES * self.slice

    # -- what a notebook shows -----------------------------------------------------------------

    def accounts(self, now: int | None = None) -> list[tuple[Entity, int, str]]:
        """Each vCPU's credit in Xen credits (10 per ms) and priority (BOOST, UNDER, OVER, parked), at `now`.

        Without `now`: as of the last call the host made (accounting is done when a call reaches it).
        """
        if now is not None:
            self._advance(now)
        return [(v.entity, math.floor(v.credit / TICKS_PER_CREDIT), "parked" if v.parked else PRIORITY_NAMES[v.pri])
                for v in self._vcpus.values()]

    # -- inside --------------------------------------------------------------------------------

    def _vcpu(self, entity: Entity) -> _Vcpu:
        try:
            return self._vcpus[entity]
        except KeyError:
            raise ProtocolError(f"{entity.name} was never added to the credit scheduler") from None

    def _keeps_running(self, pcpu: int, run: _Run, now: int) -> int | None:
        """Until when the current vCPU keeps its pCPU, or None if it must give it up."""
        v = run.vcpu
        if v.parked or v.yielding:
            return None
        if pcpu in self._preempt:
            if now - run.run_start < self.ratelimit:
                return self._cut(run.run_start + self.ratelimit)  # the preemption waits (Xen's rate limit)
            return None
        if now < run.slice_end:
            return self._cut(run.slice_end)  # only an accounting ended the decision: the slice goes on
        return None

    def _cut(self, until: int) -> int:
        """`until`, or the next accounting if sooner and some VM is capped (parking must not wait)."""
        return min(until, self._next_account) if self._capped else until

    def _enqueue(self, v: _Vcpu) -> None:
        """Behind every vCPU of its priority or higher; a yielding one behind one more, if there is one."""
        at = next((i for i, other in enumerate(self._queue) if other.pri < v.pri), len(self._queue))
        if v.yielding and at < len(self._queue):
            at += 1
        self._queue.insert(at, v)

    def _tickle(self, v: _Vcpu) -> int | None:
        """The pCPU that should pick again because `v` is waiting: an idle one, else one running lower priority."""
        for pcpu in range(self.pcpus):
            if pcpu not in self._running and pcpu not in self._tickled:
                self._tickled.add(pcpu)
                return pcpu
        lower = [(run.vcpu.pri, pcpu) for pcpu, run in self._running.items()
                 if pcpu not in self._tickled and run.vcpu.pri < v.pri]
        if not lower:
            return None
        _, pcpu = min(lower)
        self._tickled.add(pcpu)
        self._preempt.add(pcpu)
        return pcpu

    def _advance(self, now: int) -> None:
        """Burn the running vCPUs' credit up to `now`, with the accountings on the way."""
        while self._next_account <= now:
            self._burn_running(self._next_account)
            self._account()
            self._next_account += self.slice
        self._burn_running(now)

    def _burn_running(self, until: int) -> None:
        for run in self._running.values():
            if until <= run.since:
                continue
            v, used = run.vcpu, until - run.since
            v.credit -= used
            run.burned += used
            v.tick_left -= used
            if v.tick_left <= 0:  # a tick's worth of CPU: a tick that found it running
                if v.pri == BOOST:
                    v.pri = UNDER
                v.active = True
                v.tick_left = v.tick_left % self.tick or self.tick
            run.since = until

    def _account(self) -> None:
        """Hand out a slice of credit per pCPU among the active vCPUs, then set priorities, park, unpark."""
        vms: dict[int, list[_Vcpu]] = {}
        for v in self._vcpus.values():
            if v.active:
                vms.setdefault(v.entity.vm, []).append(v)
        if not vms:
            self._balance = 0
            return
        weight_total = sum(v.entity.weight for members in vms.values() for v in members)
        debt = max(0, -self._balance)  # a negative balance is paid back to everyone (Xen: credit_balance)
        claims = []
        for members in vms.values():
            entity, n = members[0].entity, len(members)
            peak = n * self.slice + math.ceil(debt * entity.weight * n / weight_total)
            if entity.cap:
                peak = min(peak, math.ceil(entity.cap * self.slice / 100))
            claims.append((entity.weight * n, peak))
        balance = 0
        for members, grant in zip(vms.values(), water_fill(self.pcpus * self.slice + debt, claims)):
            cap = members[0].entity.cap
            cap_share = math.ceil(math.ceil(cap * self.slice / 100) / len(members))
            for v in members:
                v.credit += math.ceil(grant / len(members))
                if v.credit < 0:
                    v.pri = OVER
                    if cap and v.credit < -cap_share and not v.parked:
                        self._park(v)
                    v.credit = max(v.credit, -self.slice)
                else:
                    v.pri = UNDER
                    if v.parked:
                        self._unpark(v)
                    if v.credit > self.slice:
                        v.active = False  # it stops earning, and starts again a little ahead
                        v.credit //= 2
                balance += v.credit
        self._balance = balance
        self._queue.sort(key=lambda v: -v.pri)  # stable: first come first served within a priority

    def _park(self, v: _Vcpu) -> None:
        v.parked = True
        if v in self._queue:
            self._queue.remove(v)
        for pcpu, run in self._running.items():
            if run.vcpu is v:
                self._preempt.add(pcpu)  # its decision ends now (see _cut): pick() takes it off

    def _unpark(self, v: _Vcpu) -> None:
        v.parked = False
        if v.runnable and all(run.vcpu is not v for run in self._running.values()):
            self._enqueue(v)  # no boost: it is not waking up, only allowed to run again
            self._tickle(v)  # every pCPU picks at this accounting, so the tickled one will see it
