"""Hypervisor structures: how an exit travels through a hypervisor's layers, and what each step moves.

The same guest runs under three structures (one module each), and every exit really takes its
structure's path on the physical CPU, so that the difference shows in vlab's own measured time:

    type1   (Xen-like, vlab.hyp.type1)  the hypervisor at EL2 handles the exit and returns; the
            emulated console is served by dom0, another VM, through a ring (vlab.hyp.dom0)
    type2   (KVM/ARM split mode, ARMv8.0, vlab.hyp.type2)  a small EL2 part switches the whole
            EL1 state to the host kernel's, the kernel handles the exit, and switches back;
            a device the kernel does not emulate goes on to the user-space VMM
    vhe     (KVM with ARMv8.1's VHE, vlab.hyp.vhe)  the host kernel runs at EL2: the exit
            reaches it directly, the guest's EL1 state stays loaded

    host = Host()
    structure = make_structure("type2", host)
    vm = VM.from_file("vlab/guests/hello.S", host=host, stage2="contiguous")
    structure.attach(vm)
    host.run()
    structure.summary(vm)     # per exit class: how many, by which path, with how many world switches

A structure wraps the VM's two entry points into the hypervisor, `vm.dispatch` (every exit) and
`vm.serve_mmio` (a device access served in place), and records the `Path` each exit took. A
path is data: its steps, each with the layer it enters, the state saved and restored (how many
registers of which kind, whose, and how vlab moves them), and whether it switches the EL1 state
to another context -- a *world switch*.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from vlab.hyp.world_switch import STATE

if TYPE_CHECKING:
    from vlab.hyp.exits import Exit
    from vlab.hyp.host import Host
    from vlab.hyp.vcpu import VCpu
    from vlab.hyp.vm import VM


def _count(kind: str) -> int:
    return next(len(g.registers) for g in STATE if g.kind == kind)


# How many registers of each kind a switch moves (vlab.hyp.world_switch.STATE, Arm's list).
GPRS = _count("general-purpose")  # x0..x30
# The EL1 system registers, and the stack pointers and exception-return registers of EL0/EL1
# (PC and PSTATE are the hardware's ELR_EL2 and SPSR_EL2 on an exit, not moved by software).
EL1_STATE = _count("EL1 system registers") + _count("control") - 2
TIMER = _count("virtual timer")
EL2_CONTROLS = _count("EL2 settings for the incoming vCPU")
CALLEE_SAVED = 12  # x19..x30: what a C function (the host kernel calling into KVM) keeps across a call
# The GIC's virtual CPU interface of a GICv2: the list registers in use (a GIC-400 has 4), GICH_VMCR
# and GICH_APR. vlab's board has no GIC on this branch: these are counted, not moved.
GIC_STATE = 6

# How vlab performs a move on its physical CPU (Unicorn).
BATCHED = "one batched register access (vlab.machine.register_frame)"
CONTEXT = "Unicorn's context save/restore of the whole core"
NOT_ON_VLAB = "not on vlab's core: counted in the model only"


@dataclass(frozen=True)
class Moved:
    """`count` registers of one `kind`, belonging to `owner`, saved or restored as vlab does it (`how`)."""

    kind: str
    count: int
    owner: str
    how: str = BATCHED

    @property
    def performed(self) -> bool:
        return self.how != NOT_ON_VLAB

    def text(self) -> str:
        return f"{self.count} {self.kind} ({self.owner})"


@dataclass(frozen=True)
class Step:
    """One step of a path: the layer that runs after it, what happens, what it saves and restores.

    `world_switch`: the EL1 state (the guest kernel's system registers, timer...) is switched to
    another context's -- the host kernel's, or another VM's."""

    layer: str
    action: str
    saved: tuple[Moved, ...] = ()
    restored: tuple[Moved, ...] = ()
    world_switch: bool = False

    def text(self) -> str:
        moves = [f"saves {', '.join(m.text() for m in self.saved)}"] if self.saved else []
        moves += [f"restores {', '.join(m.text() for m in self.restored)}"] if self.restored else []
        switch = " [world switch]" if self.world_switch else ""
        return f"{self.layer}: {self.action}" + (f"; {'; '.join(moves)}" if moves else "") + switch


@dataclass(frozen=True)
class Path:
    """The way one kind of exit goes through a structure: `route` names it, `handled_by` the layer
    that emulated what the guest did."""

    structure: str
    route: str
    handled_by: str
    steps: tuple[Step, ...]

    @property
    def world_switches(self) -> int:
        return sum(step.world_switch for step in self.steps)

    @property
    def transitions(self) -> int:
        """Steps that change layer (each a trap, an exception return, or a switch of context)."""
        return sum(1 for before, after in zip(self.steps, self.steps[1:]) if before.layer != after.layer) + 1

    def moved(self) -> Counter:
        """Registers saved plus registers restored along the path, by kind."""
        total: Counter = Counter()
        for step in self.steps:
            for m in step.saved + step.restored:
                total[m.kind] += m.count
        return total

    def text(self) -> str:
        lines = [f"{self.structure}, {self.route}: handled by {self.handled_by}; {self.world_switches} world "
                 f"switch{'es' if self.world_switches != 1 else ''}"]
        lines += [f"  {i}. {step.text()}" for i, step in enumerate(self.steps, 1)]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"route": self.route, "handled_by": self.handled_by, "world_switches": self.world_switches,
                "steps": [step.text() for step in self.steps],
                "moved": dict(self.moved())}


@dataclass(frozen=True)
class PathRecord:
    """One exit as the structure saw it: when, whose, which exception class, which path."""

    tick: int
    vm: int
    vcpu: int
    kind: str
    path: Path


class Structure:
    """A hypervisor structure on `host`: `attach(vm)` puts each VM's exits on its paths.

    A subclass defines `name`, `layers` (bottom up, for pictures), and `dispatch` and
    `serve_mmio`, which do the structure's work around the VM's own (`inner`) and return what it
    returns, calling `record` with the path taken."""

    name = ""
    title = ""
    layers: tuple[str, ...] = ()

    def __init__(self, host: Host, trace_limit: int = 100_000):
        self.host = host
        self.log: deque[PathRecord] = deque(maxlen=trace_limit)
        self.counts: Counter = Counter()  # (VM index, exit class, path) -> exits
        self.vms: list[VM] = []

    def attach(self, vm: VM) -> None:
        """Route `vm`'s exits through this structure (once per VM; its host must be this one)."""
        if vm.host is not self.host:
            raise ValueError(f"VM {vm.index} lives on another host than this {self.name} hypervisor")
        if vm in self.vms:
            raise ValueError(f"VM {vm.index} already runs under this {self.name} hypervisor")
        dispatch, serve_mmio = vm.dispatch, vm.serve_mmio
        vm.dispatch = lambda vcpu, exit, served: self.dispatch(dispatch, vcpu, exit, served)
        vm.serve_mmio = lambda vcpu, exit, abort, stored, device=None, where=None: self.serve_mmio(
            serve_mmio, vcpu, exit, abort, stored, device, where)
        self.vms.append(vm)

    def dispatch(self, inner: Callable, vcpu: VCpu, exit: Exit, served: str) -> tuple:
        raise NotImplementedError

    def serve_mmio(self, inner: Callable, vcpu: VCpu, exit: Exit, abort, stored: int, device=None,
                   where: str | None = None) -> int:
        raise NotImplementedError

    def record(self, vcpu: VCpu, exit: Exit, path: Path) -> None:
        kind = exit.syndrome.ec.name
        self.counts[vcpu.vm.index, kind, path] += 1
        self.log.append(PathRecord(vcpu.ticks(), vcpu.vm.index, vcpu.index, kind, path))

    def paths(self, vm: VM) -> dict[str, dict[Path, int]]:
        """Exit class -> path -> how many of `vm`'s exits took it."""
        found: dict[str, dict[Path, int]] = {}
        for (index, kind, path), n in sorted(self.counts.items(), key=lambda item: (item[0][1], item[0][2].route)):
            if index == vm.index:
                found.setdefault(kind, {})[path] = n
        return found

    def summary(self, vm: VM) -> dict[str, dict]:
        """Per exit class of `vm`: the count, and each path with its count and world switches (JSON)."""
        return {kind: {"count": sum(paths.values()),
                       "paths": [path.to_json() | {"count": n} for path, n in paths.items()]}
                for kind, paths in self.paths(vm).items()}

    def world_switches(self, vm: VM) -> int:
        """World switches `vm`'s exits made along their paths, in all."""
        return sum(path.world_switches * n for paths in self.paths(vm).values() for path, n in paths.items())

    def text(self, vm: VM) -> str:
        """One line per exit class and path: count, route, world switches per exit."""
        lines = [f"{self.title}:"]
        for kind, paths in self.paths(vm).items():
            for path, n in paths.items():
                lines.append(f"  {kind:<11} {n:>6} x  {path.route:<26} {path.world_switches} world switches each")
        return "\n".join(lines)
