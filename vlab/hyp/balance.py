"""Workload balancing and consolidation: VMs whose load changes over time on several hosts, and a
policy that moves them -- by live migration -- so that each host is used as fully as it can be.

    cluster = Cluster([Workload("web", (0.9, 0.2)), Workload("db", (0.3, 0.3)), ...], hosts=3)
    timeline = cluster.run(epochs=12, policy=threshold.plan)
    print(timeline.table())          # each host's utilisation and power, epoch by epoch; the moves

Time goes in *epochs* (10 ms of guest time by default). In each, every host that is on runs its
VMs -- real guests (vlab.guests.workloads.phased) that do a set amount of work every millisecond
and sleep the rest, the amount changing from phase to phase -- and vlab measures what each used.
Then the policy sees the cluster as plain data and answers with migrations:

    policy(hosts) -> [(vm, host), ...]
        hosts: [{"name": "h0", "on": True, "capacity": 2, "vms": {"web": 0.91, "db": 0.29}}, ...]
        capacity and loads in physical CPUs: what each VM used in the epoch just ended

Each move is a pre-copy migration (vlab.hyp.migration) over the cluster's link: its pages, rounds
and downtime are the cost. A host left with no VM is switched off (it draws nothing and is not
counted); a VM moved to a host that is off switches it on. A VM that wanted more CPU than its
host could give shows as *late* periods: its work overran into the next millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from vlab.arch.hcr import HCR
from vlab.guests import workloads
from vlab.hyp.host import Host
from vlab.hyp.link import Link
from vlab.hyp.migration import FOREVER, precopy
from vlab.hyp.vm import VM
from vlab.machine.loader import image_from_program
from vlab.sched.registry import make_policy
from vlab.sched.units import ms

PERIOD = ms(1)  # a workload's period: it works, then sleeps until the next millisecond
LOOP = 2  # instructions per loop of its work
OVERHEAD = 40  # instructions of bookkeeping per period besides its loops
GUEST_RAM = 0x40_0000
DEFAULT_EPOCH_MS = 10

Policy = Callable[[list[dict]], list]


def day(resident: int = 64) -> list[Workload]:
    """Six VMs through a day in four phases -- night, morning, afternoon, evening: the interactive ones
    busy by day, the batch job by night, so that the load of the whole rises and falls."""
    return [Workload("web", (0.1, 0.5, 0.8, 0.3), resident), Workload("db", (0.1, 0.4, 0.6, 0.2), resident),
            Workload("mail", (0.05, 0.3, 0.4, 0.1), resident), Workload("batch", (0.6, 0.1, 0.1, 0.3), resident),
            Workload("cache", (0.1, 0.3, 0.5, 0.2), resident), Workload("ci", (0.1, 0.3, 0.4, 0.5), resident)]


@dataclass(frozen=True)
class Workload:
    """A VM of the cluster: its name, the share of one pCPU it wants in each phase, its RAM in pages."""

    name: str
    loads: tuple[float, ...]  # one per phase; phases follow each other every `phase_epochs` epochs, round and round
    resident: int = 64

    def __post_init__(self):
        if not self.loads or not all(0 <= load <= 1 for load in self.loads):
            raise ValueError(f"{self.name}: a load is a share of one physical CPU, from 0 to 1, not {self.loads}")

    def program(self, phase_ticks: int):
        work = [max(1, (round(load * PERIOD) - OVERHEAD) // LOOP) for load in self.loads]
        return workloads.phased(work, PERIOD, phase_ticks, self.resident)


@dataclass(frozen=True)
class Move:
    """One migration a policy asked for, and what it cost."""

    vm: str
    source: str
    destination: str
    rounds: int
    pages: int
    downtime_ticks: int
    ticks: int  # how long it took, from its first page to the VM's resumption


@dataclass(frozen=True)
class Epoch:
    """What one epoch looked like: where each VM ran, what each used, how busy each host was."""

    number: int
    placement: dict[str, str]  # VM -> the host it ran on
    on: dict[str, bool]  # host -> switched on
    utilisation: dict[str, float]  # host -> share of its pCPUs' time that ran a vCPU (0 when off)
    loads: dict[str, float]  # VM -> pCPUs it used
    late: dict[str, int]  # VM -> periods whose work overran
    moves: tuple[Move, ...] = ()  # the migrations the policy asked for at the end of it


@dataclass
class Timeline:
    """A whole run of the cluster: epoch by epoch, and the totals."""

    hosts: list[str]
    capacity: int  # pCPUs per host
    epochs: list[Epoch] = field(default_factory=list)

    @property
    def moves(self) -> list[Move]:
        return [m for e in self.epochs for m in e.moves]

    @property
    def host_epochs(self) -> int:
        """Host-epochs switched on: what the cluster drew, in units of one host for one epoch."""
        return sum(sum(e.on.values()) for e in self.epochs)

    @property
    def late(self) -> int:
        return sum(sum(e.late.values()) for e in self.epochs)

    def mean_utilisation(self, epoch: Epoch) -> float:
        """The mean utilisation of the hosts that were on."""
        on = [epoch.utilisation[h] for h in self.hosts if epoch.on[h]]
        return sum(on) / len(on) if on else 0.0

    def summary(self) -> str:
        pages = sum(m.pages for m in self.moves)
        return (f"{len(self.epochs)} epochs on {len(self.hosts)} hosts of {self.capacity} pCPUs: "
                f"{self.host_epochs} host-epochs on of {len(self.epochs) * len(self.hosts)}, "
                f"{len(self.moves)} migrations ({pages:,} pages), {self.late} late periods")

    def table(self) -> str:
        """One line per epoch: each host's utilisation and VMs ('off' when switched off), the moves after."""
        rows = []
        for e in self.epochs:
            cells = []
            for h in self.hosts:
                vms = ",".join(sorted(v for v, where in e.placement.items() if where == h))
                cells.append(f"{e.utilisation[h]:4.0%} {vms}" if e.on[h] else "off")
            moves = "; ".join(f"{m.vm} {m.source}->{m.destination}" for m in e.moves)
            rows.append((e.number, cells, f"{self.mean_utilisation(e):4.0%}", moves))
        width = max([len(h) for h in self.hosts] + [len(c) for _, cells, _, _ in rows for c in cells])
        lines = [self.summary(), "epoch  " + "  ".join(f"{h:<{width}}" for h in self.hosts) + "  mean  moves after it"]
        for number, cells, mean, moves in rows:
            lines.append(f"{number:5}  " + "  ".join(f"{c:<{width}}" for c in cells) + f"  {mean}  {moves}")
        return "\n".join(lines)


class Cluster:
    """`hosts` hosts of `pcpus` pCPUs each, running `workloads` (placed in turn, or by `placement`)."""

    def __init__(self, workload_list: list[Workload], hosts: int = 3, pcpus: int = 2,
                 placement: dict[str, int] | None = None, epoch_ms: float = DEFAULT_EPOCH_MS,
                 phase_epochs: int = 3, link: Link = Link(), slice_ms: float = 1):
        names = [w.name for w in workload_list]
        if len(set(names)) != len(names):
            raise ValueError(f"each VM needs its own name: {names}")
        self.names = [f"h{i}" for i in range(hosts)]
        self.pcpus, self.link = pcpus, link
        self.epoch_ticks = ms(epoch_ms)
        self.hosts = {name: Host(pcpus, scheduler=make_policy("credit", pcpus, slice_ticks=ms(slice_ms)))
                      for name in self.names}
        self.vms: dict[str, VM] = {}
        for i, w in enumerate(workload_list):
            host = self.names[(placement or {}).get(w.name, i) % hosts]
            image = image_from_program(w.program(phase_epochs * self.epoch_ticks))
            self.vms[w.name] = VM.from_image(image, host=self.hosts[host], stage2="demand", ram_size=GUEST_RAM,
                                             traps=HCR.TWI)
        self.on = {name: any(vm.host is self.hosts[name] for vm in self.vms.values()) for name in self.names}

    def where(self, vm: str) -> str:
        return next(name for name, host in self.hosts.items() if self.vms[vm].host is host)

    def run(self, epochs: int, policy: Policy | None = None, timeout_s: float = 120) -> Timeline:
        """Run `epochs` epochs; after each, `policy` (None: never move anything) says what to migrate."""
        timeline = Timeline(self.names, self.pcpus)
        marks = {name: self._mark(name) for name in self.names}
        counts = self._counts()
        for number in range(epochs):
            placement = {vm: self.where(vm) for vm in self.vms}
            on = dict(self.on)
            for name, host in self.hosts.items():
                left = marks[name][0] + self.epoch_ticks - host.clock()
                if self.on[name] and left > 0:
                    host.run(duration=left, max_insns=FOREVER, timeout_s=timeout_s)
            utilisation = {name: self._busy_since(name, marks[name]) if on[name] else 0.0 for name in self.names}
            loads = {vm: (_instructions(v) - counts[vm][0]) / self.epoch_ticks for vm, v in self.vms.items()}
            late = {vm: workloads.late(v) - counts[vm][1] for vm, v in self.vms.items()}
            # Measured from here: the migrations below run their source hosts, in the next epoch's time.
            marks, counts = {name: self._mark(name) for name in self.names}, self._counts()
            moves = () if policy is None else self._move(policy(self.view(loads)), timeout_s)
            for name in {m.destination for m in moves} - set(placement.values()):
                # A host that had no VM did not run while the first VM came: its epoch began when that
                # migration did, as the source's went on meanwhile.
                first = next(m for m in moves if m.destination == name)
                marks[name] = (marks[name][0] - first.ticks, *marks[name][1:])
            timeline.epochs.append(Epoch(number, placement, on, utilisation, loads, late, moves))
        return timeline

    def view(self, loads: dict[str, float]) -> list[dict]:
        """The cluster as a policy sees it: plain data, loads in pCPUs."""
        return [{"name": name, "on": self.on[name], "capacity": self.pcpus,
                 "vms": {vm: round(loads[vm], 4) for vm in self.vms if self.where(vm) == name}}
                for name in self.names]

    def _move(self, moves, timeout_s: float) -> tuple[Move, ...]:
        """Carry out a policy's answer, migration by migration; hosts left empty are switched off."""
        done, seen = [], set()
        for item in list(moves or ()):
            vm, destination = _checked(item, self.vms, self.hosts, seen)
            source = self.where(vm)
            if source == destination:
                continue  # already there: nothing to do
            m = precopy(self.vms[vm], self.hosts[destination], self.link, timeout_s=timeout_s)
            if not m.completed:
                raise RuntimeError(f"{vm} could not be migrated: {m.why}")
            self.vms[vm] = m.destination_vm
            self.on[destination] = True
            done.append(Move(vm, source, destination, m.rounds, m.pages_sent, m.downtime_ticks, m.total_ticks))
        for name in self.names:
            self.on[name] = any(vm.host is self.hosts[name] for vm in self.vms.values())
        return tuple(done)

    def _counts(self) -> dict[str, tuple[int, int]]:
        """Each VM's instructions retired and late periods so far (they travel with it when it moves)."""
        return {vm: (_instructions(v), workloads.late(v)) for vm, v in self.vms.items()}

    def _mark(self, name: str) -> tuple[int, int, int]:
        """(host clock, busy ticks, core ticks) of a host now: where its next epoch is measured from."""
        figures = self.hosts[name].pcpu_figures()
        return (self.hosts[name].clock(), sum(f["ticks"] - f["idle_ticks"] for f in figures),
                sum(f["ticks"] for f in figures))

    def _busy_since(self, name: str, mark: tuple[int, int, int]) -> float:
        _, busy, ticks = self._mark(name)
        return (busy - mark[1]) / (self.pcpus * self.epoch_ticks) if ticks > mark[2] else 0.0


def _instructions(vm: VM) -> int:
    return sum(v.instructions for v in vm.vcpus)


def _checked(item, vms: dict, hosts: dict, seen: set) -> tuple[str, str]:
    """One move of a policy's answer, as (VM name, host name); ValueError saying what is wrong with it."""
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise ValueError(f"a policy answers with (vm, host) pairs, not {item!r}")
    vm, host = item
    if vm not in vms:
        raise ValueError(f"the policy moved {vm!r}, but the VMs are {', '.join(vms)}")
    if host not in hosts:
        raise ValueError(f"the policy moved {vm} to {host!r}, but the hosts are {', '.join(hosts)}")
    if vm in seen:
        raise ValueError(f"the policy moved {vm} twice in one answer")
    seen.add(vm)
    return vm, host
