"""A policy that records its own schedule: the trace comes from the protocol calls alone.

    policy = Recorder(Credit(pcpus=2), switch_cost=host.switch_cost)
    host = Host(pcpus=2, scheduler=policy)
    host.run()
    policy.trace.finish(end)
    print(run_figures(policy.trace, policy.entitlement(policy.trace.entities)).table())

Whatever drives the policy -- the host with real guests, or vlab.sched.simulate -- the trace is
made the same way: `wake`/`sleep`/`yield_` are events, each `charge` is the segment
[now - ran, now), and a `pick` that gives a pCPU another vCPU than the one loaded there is a
world switch costing `switch_cost`.
"""

from __future__ import annotations

from typing import Sequence

from vlab.sched import Decision, Entity, Scheduler
from vlab.sched.trace import Trace


class Recorder:
    def __init__(self, policy: Scheduler, switch_cost: int = 0):
        self.policy = policy
        self.name, self.pcpus = policy.name, policy.pcpus
        self.switch_cost = switch_cost
        self.trace = Trace(policy.pcpus, [])
        self._loaded: dict[int, Entity] = {}  # pCPU -> the vCPU whose context it holds

    def add(self, entity: Entity) -> None:
        self.policy.add(entity)
        self.trace.entities.append(entity)

    def wake(self, entity: Entity, now: int) -> int | None:
        self.trace.woke(entity, now)
        return self.policy.wake(entity, now)

    def sleep(self, entity: Entity, now: int) -> None:
        self.trace.slept(entity, now)
        self.policy.sleep(entity, now)

    def pick(self, pcpu: int, now: int, current: Entity | None) -> Decision:
        decision = self.policy.pick(pcpu, now, current)
        if decision.entity is not None and decision.entity != self._loaded.get(pcpu):
            self.trace.switched(pcpu, now, self._loaded.get(pcpu), decision.entity, self.switch_cost)
            self._loaded = {p: e for p, e in self._loaded.items() if e != decision.entity}  # it moves here
            self._loaded[pcpu] = decision.entity
        return decision

    def charge(self, entity: Entity, pcpu: int, ran: int, now: int) -> None:
        self.trace.ran(pcpu, entity, now - ran, now)
        self.policy.charge(entity, pcpu, ran, now)

    def yield_(self, entity: Entity, now: int) -> None:
        self.trace.yielded(entity, now)
        self.policy.yield_(entity, now)

    def entitlement(self, entities: Sequence[Entity]) -> dict[Entity, float]:
        return self.policy.entitlement(entities)
