"""A deterministic host without guests: drive a policy exactly through the protocol, record a Trace.

    tasks = [Task(Entity(0, 0)), Task(Entity(1, 0), bursts=(Burst(run=ms(2), block=ms(8)),))]
    trace = simulate(Credit(pcpus=2), tasks, pcpus=2, duration=ms(300))

Each task is one vCPU: it wakes at `start`, then repeats its bursts -- run `run` ticks of CPU
(however the policy slices them), then block for `block` ticks, or yield -- and with no bursts
it never stops wanting the CPU. The driver is a discrete-event simulation that makes the calls
the host makes, in the order the protocol (vlab.sched) states, and checks every answer: a policy
that picks a blocked vCPU, or one already running elsewhere, or an `until` not in the future,
gets a ProtocolError that says so. The same tasks give the same trace, every time;
`random_tasks(seed, ...)` makes a workload from a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from vlab.sched import Decision, Entity, ProtocolError, Scheduler, SchedError
from vlab.sched.recorder import Recorder
from vlab.sched.trace import Trace

FOREVER = float("inf")


@dataclass(frozen=True)
class Burst:
    """Run `run` ticks, then block `block` ticks (0: go on), or yield the CPU if `then_yield`."""

    run: int
    block: int = 0
    then_yield: bool = False

    def __post_init__(self):
        if self.run <= 0 or self.block < 0:
            raise SchedError(f"a burst runs a positive number of ticks and blocks a non-negative one, not {self}")
        if self.block and self.then_yield:
            raise SchedError(f"a burst ends by blocking or by yielding, not both: {self}")


@dataclass(frozen=True)
class Task:
    """One vCPU's behaviour: wakes at `start`, then its bursts (forever if `repeat`); none: CPU-bound."""

    entity: Entity
    bursts: tuple[Burst, ...] = ()
    start: int = 0
    repeat: bool = True


@dataclass
class _State:
    task: Task
    burst: int = 0
    left: float = FOREVER  # ticks of CPU still wanted by the current burst
    runnable: bool = False
    wake_at: float = FOREVER
    pcpu: int | None = None

    def __post_init__(self):
        self.wake_at = self.task.start
        self.left = self.task.bursts[0].run if self.task.bursts else FOREVER


@dataclass
class _Cpu:
    state: _State | None = None
    until: int = 0
    start: int = 0  # when the guest began running (after any world switch)
    charged: int = 0  # the running vCPU is charged up to here
    loaded: Entity | None = None  # whose context is loaded (the last vCPU that ran here)
    pending: bool = False  # a preemption waits for the world switch under way to finish


def simulate(policy: Scheduler, tasks: Sequence[Task], pcpus: int, duration: int, switch_cost: int = 0,
             chunk: int | None = None) -> Trace:
    """Run `tasks` on `pcpus` physical CPUs under `policy` until host tick `duration`; return the trace.

    A world switch (a pCPU loading a vCPU other than the one it ran last) costs `switch_cost`
    host ticks before the guest runs, as the host charges it to its clock; it cannot be
    interrupted, so a decision that ends or a preemption that comes during it waits for its end.
    With `chunk`, a running vCPU is also charged every `chunk` ticks, as the host charges each
    stretch it runs a core for.
    """
    return _Run(policy, tasks, pcpus, switch_cost, chunk).run(duration)


class _Run:
    def __init__(self, policy: Scheduler, tasks: Sequence[Task], pcpus: int, switch_cost: int, chunk: int | None):
        if len({t.entity for t in tasks}) != len(tasks):
            raise SchedError("two tasks are the same vCPU")
        if chunk is not None and chunk <= 0:
            raise SchedError(f"a charging chunk is a positive number of ticks, not {chunk}")
        if policy.pcpus != pcpus:
            raise SchedError(f"the {policy.name} policy was made for {policy.pcpus} pCPU(s), the run has {pcpus}")
        self.policy = Recorder(policy, switch_cost)  # the trace is made from the protocol calls, as on the host
        self.trace = self.policy.trace
        self.switch_cost, self.chunk = switch_cost, chunk
        self.states = [_State(t) for t in tasks]
        self.by_entity = {s.task.entity: s for s in self.states}
        self.cpus = [_Cpu() for _ in range(pcpus)]
        for t in tasks:
            self.policy.add(t.entity)

    def run(self, duration: int) -> Trace:
        while True:
            time, kind, index = self._next_event()
            if time >= duration:
                break
            if kind == 0:
                self._burst_done(index, time)
            elif kind == 1:
                self._wake(self.states[index], time)
            elif kind == 2:
                self._preempt(index, time)
            else:
                self._charge(index, time)
        for pcpu in range(len(self.cpus)):
            self._stop(pcpu, duration)
        self.trace.finish(duration)
        return self.trace

    def _next_event(self) -> tuple[float, int, int]:
        """The earliest event; at equal times bursts end first, then wakes, decisions expire, chunks are charged."""
        events = [(FOREVER, 4, 0)]
        for pcpu, cpu in enumerate(self.cpus):
            if cpu.state is not None:
                events.append((cpu.charged + cpu.state.left, 0, pcpu))
                if self.chunk is not None:
                    events.append((cpu.charged + self.chunk, 3, pcpu))
            events.append((cpu.start if cpu.pending else max(cpu.until, cpu.start), 2, pcpu))
        for index, state in enumerate(self.states):
            if not state.runnable:
                events.append((state.wake_at, 1, index))
        return min(events)

    def _stop(self, pcpu: int, now: int) -> None:
        """The running vCPU (if any) stops running here at `now`: charge what it ran."""
        state = self.cpus[pcpu].state
        if state is not None:
            self._charge(pcpu, now)
            self.cpus[pcpu].state, state.pcpu = None, None

    def _charge(self, pcpu: int, now: int) -> None:
        """Charge the policy for what the running vCPU ran since it was last charged."""
        cpu = self.cpus[pcpu]
        ran = max(0, now - cpu.charged)
        cpu.state.left -= ran
        cpu.charged = max(cpu.charged, now)
        self.policy.charge(cpu.state.task.entity, pcpu, ran, now)

    def _burst_done(self, pcpu: int, now: int) -> None:
        cpu = self.cpus[pcpu]
        state = cpu.state
        burst = state.task.bursts[state.burst]
        state.burst += 1
        if state.burst == len(state.task.bursts) and state.task.repeat:
            state.burst = 0
        last = state.burst == len(state.task.bursts)  # and no repeat: it blocks for good
        if not (last or burst.block or burst.then_yield):
            state.left += state.task.bursts[state.burst].run  # it simply goes on: nothing to decide
            return
        self._stop(pcpu, now)
        entity = state.task.entity
        if not last:
            state.left = state.task.bursts[state.burst].run
        if burst.then_yield and not last:
            self.policy.yield_(entity, now)
            self._decide(pcpu, now, entity)
            return
        state.runnable, state.wake_at = False, FOREVER if last else now + burst.block
        self.policy.sleep(entity, now)
        self._decide(pcpu, now, None)

    def _wake(self, state: _State, now: int) -> None:
        state.runnable, state.wake_at = True, FOREVER
        entity = state.task.entity
        pcpu = self.policy.wake(entity, now)
        if pcpu is None:
            return
        if not (isinstance(pcpu, int) and 0 <= pcpu < len(self.cpus)):
            raise ProtocolError(f"{self.policy.name}: wake({entity.name}) asked to preempt pCPU {pcpu!r}, "
                                f"but the host has pCPUs 0..{len(self.cpus) - 1}")
        if now < self.cpus[pcpu].start:
            self.cpus[pcpu].pending = True  # in a world switch: preempt when it is done
        else:
            self._preempt(pcpu, now)

    def _preempt(self, pcpu: int, now: int) -> None:
        """Stop what `pcpu` runs (it stays runnable) and ask the policy what it runs next."""
        self.cpus[pcpu].pending = False
        state = self.cpus[pcpu].state
        self._stop(pcpu, now)
        self._decide(pcpu, now, state.task.entity if state else None)

    def _decide(self, pcpu: int, now: int, current: Entity | None) -> None:
        decision = self.policy.pick(pcpu, now, current)
        self._check(pcpu, now, decision)
        cpu = self.cpus[pcpu]
        cpu.until, cpu.start = decision.until, now
        if decision.entity is None:
            return
        state = self.by_entity[decision.entity]
        cost = 0
        if decision.entity != cpu.loaded:  # a world switch (the Recorder writes it down)
            cost = self.switch_cost
            for other in self.cpus:  # its context moves here from wherever it was left loaded
                if other.loaded == decision.entity:
                    other.loaded = None
            cpu.loaded = decision.entity
        cpu.state, cpu.start, cpu.charged, state.pcpu = state, now + cost, now + cost, pcpu

    def _check(self, pcpu: int, now: int, decision: Decision) -> None:
        name = self.policy.name
        if not isinstance(decision, Decision):
            raise ProtocolError(f"{name}: pick() must return a Decision, not {decision!r}")
        if not isinstance(decision.until, int) or decision.until <= now:
            raise ProtocolError(f"{name}: pick(pcpu={pcpu}, now={now}) returned until={decision.until!r}: "
                                f"a decision must end after now")
        entity = decision.entity
        if entity is None:
            return
        state = self.by_entity.get(entity)
        if state is None:
            raise ProtocolError(f"{name}: pick(pcpu={pcpu}) chose {entity!r}, which was never added")
        if not state.runnable:
            raise ProtocolError(f"{name}: pick(pcpu={pcpu}, now={now}) chose {entity.name}, which is blocked")
        if state.pcpu is not None and state.pcpu != pcpu:
            raise ProtocolError(f"{name}: pick(pcpu={pcpu}, now={now}) chose {entity.name}, which is running "
                                f"on pCPU {state.pcpu}")


def random_tasks(seed: int, entities: Sequence[Entity], *, max_run: int, max_block: int,
                 bursts: int = 4, cpu_bound: float = 0.3) -> list[Task]:
    """A workload from `seed`: each vCPU CPU-bound (with probability `cpu_bound`) or bursty."""
    rng = random.Random(seed)
    tasks = []
    for entity in entities:
        if rng.random() < cpu_bound:
            tasks.append(Task(entity, start=rng.randrange(max_block + 1)))
            continue
        shape = tuple(Burst(rng.randint(1, max_run), then_yield=True) if rng.random() < 0.1
                      else Burst(rng.randint(1, max_run), rng.randint(0, max_block)) for _ in range(bursts))
        tasks.append(Task(entity, shape, start=rng.randrange(max_block + 1)))
    return tasks
