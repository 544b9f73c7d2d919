"""Co-scheduling: a VM's vCPUs run at the same time, or not at all.

A guest kernel's spinlock assumes that its holder is running: if the hypervisor preempts the
holder, the guest's other vCPUs spin for nothing until it runs again (lock-holder preemption).
Co-scheduling -- Ousterhout's "coscheduling" of a parallel job's processes (1982), VMware's
(relaxed) co-scheduling, Xen's core scheduling -- removes the problem by giving a VM all the
pCPUs its vCPUs need at once, so a holder never stops while its siblings run.

- Time goes in slots of `slice` ticks. At each slot the VMs take turns to go first: the first
  VM with a runnable vCPU, from a rotating start, gets one pCPU per vCPU (a running vCPU keeps
  its pCPU, the others take the lowest free ones); then every other VM with a runnable vCPU whose vCPUs all fit in the pCPUs left
  joins it (so a small VM does not leave pCPUs idle behind a big one).
- A pCPU reserved for a blocked vCPU idles until it wakes (it then runs at once); a VM that
  wakes in the middle of a slot joins it if all its vCPUs fit in the unreserved pCPUs.
- A yield changes nothing: the yielder's siblings are all running already.
- A VM may not have more vCPUs than the host has pCPUs: it could never run all at once.

Not work-conserving: a pCPU reserved for a blocked vCPU idles while other VMs wait.
"""

from __future__ import annotations

from typing import Sequence

from vlab.sched import Decision, Entity, ProtocolError, SchedError, check_pcpus, check_positive, refuse_terms
from vlab.sched.shares import weighted_entitlement
from vlab.sched.units import ms

DEFAULT_SLICE = ms(30)  # a slot as long as Xen credit's slice, to compare the two


class CoSchedule:
    name = "cosched"

    def __init__(self, pcpus: int = 1, slice_ticks: int = DEFAULT_SLICE):
        self.pcpus = check_pcpus(pcpus)
        self.slice = check_positive("the co-scheduling slot", slice_ticks)
        self._vms: dict[int, list[Entity]] = {}  # by VM, vCPUs in index order
        self._runnable: set[Entity] = set()
        self._slot_end = 0
        self._reserved: dict[int, Entity] = {}  # pCPU -> the vCPU it belongs to in this slot
        self._home: dict[Entity, int] = {}
        self._running: dict[int, Entity] = {}  # what each pCPU was last told to run
        self._first = 0  # index (in VM order) of the VM that goes first next slot

    def add(self, entity: Entity) -> None:
        refuse_terms(self.name, entity, weight=True, cap=True)
        members = self._vms.setdefault(entity.vm, [])
        if entity in members:
            raise SchedError(f"{entity.name} was added twice")
        if len(members) + 1 > self.pcpus:
            raise SchedError(f"VM {entity.vm} has more vCPUs than the host's {self.pcpus} pCPU(s): co-scheduling "
                             f"runs all of a VM's vCPUs at once, so it could never run")
        members.append(entity)
        members.sort(key=lambda e: e.vcpu)

    def wake(self, entity: Entity, now: int) -> int | None:
        self._known(entity)
        if entity in self._runnable:
            return None
        self._runnable.add(entity)
        if now >= self._slot_end:
            self._new_slot(now)  # every pCPU's decision ends now: they pick and see the new slot
        elif entity not in self._home and len(self._vms[entity.vm]) <= self.pcpus - len(self._reserved):
            self._reserve(entity.vm)
        return self._home.get(entity)

    def sleep(self, entity: Entity, now: int) -> None:
        self._runnable.discard(self._known(entity))

    def pick(self, pcpu: int, now: int, current: Entity | None) -> Decision:
        if now >= self._slot_end:
            self._new_slot(now)
        owner = self._reserved.get(pcpu)
        if owner not in self._runnable:
            owner = None
            self._running.pop(pcpu, None)
        else:
            self._running[pcpu] = owner
        return Decision(owner, self._slot_end)

    def charge(self, entity: Entity, pcpu: int, ran: int, now: int) -> None:
        pass  # slots are fixed: nothing to account

    def yield_(self, entity: Entity, now: int) -> None:
        pass  # its siblings all run: giving its pCPU away would only make room for a spin elsewhere

    def entitlement(self, entities: Sequence[Entity]) -> dict[Entity, float]:
        """About an equal share each: slots rotate among the VMs (packing makes the real split uneven)."""
        return weighted_entitlement(entities, self.pcpus, weights=False, caps=False)

    def _new_slot(self, now: int) -> None:
        self._slot_end = now + self.slice
        self._reserved, self._home = {}, {}
        order = list(self._vms)
        waiting = [vm for vm in order[self._first:] + order[:self._first]
                   if any(e in self._runnable for e in self._vms[vm])]
        chosen, room = [], self.pcpus
        for vm in waiting:
            if len(self._vms[vm]) <= room:
                chosen.append(vm)
                room -= len(self._vms[vm])
        for pcpu, entity in self._running.items():  # a running vCPU stays where it is: no pCPU
            if entity.vm in chosen:                  # is told to run a vCPU another still runs
                self._reserved[pcpu], self._home[entity] = entity, pcpu
        for vm in chosen:
            self._reserve(vm)
        if waiting:
            self._first = (order.index(waiting[0]) + 1) % len(order)

    def _reserve(self, vm: int) -> None:
        """Give VM `vm`'s vCPUs that have no pCPU in this slot the lowest free ones."""
        homeless = [e for e in self._vms[vm] if e not in self._home]
        free = [p for p in range(self.pcpus) if p not in self._reserved]
        for entity, pcpu in zip(homeless, free):
            self._reserved[pcpu], self._home[entity] = entity, pcpu

    def _known(self, entity: Entity) -> Entity:
        if entity not in self._vms.get(entity.vm, ()):
            raise ProtocolError(f"{entity.name} was never added to the co-scheduling policy")
        return entity
