"""ARINC 653: a major frame of fixed windows, repeated forever -- time partitioning.

An avionics (or car) computer hosts partitions of different criticality on one machine; the
safety partition must get its time whatever the others do. ARINC 653 gives each partition
fixed windows in a major frame that repeats. Xen's arinc653 scheduler (xen/common/sched/
arinc653.c; vlab's code is its own) takes a schedule of at most 64 entries (domain, vCPU,
runtime) and a major frame, and refuses it if the frame is not positive, there are no entries
or more than 64, a runtime is not positive, or the runtimes add up to more than the frame.

- The windows run back to back from the start of each frame; frames start at host tick 0,
  `major`, 2 x `major`, ... Whatever the windows leave at the end of the frame is idle.
- A window belongs to one vCPU, or to a whole VM. During a window, that vCPU runs if it is
  runnable; if it is blocked, or nobody owns the window, the pCPU idles: the time is the
  partition's whether it uses it or not (not work-conserving, by design). A yield gives it to
  no one else either.
- Several pCPUs: the frame is the machine's, as in single-core ARINC 653. A vCPU k runs on
  pCPU k mod pcpus (Xen's arinc653 never migrates a vCPU); a VM's window runs each of its
  vCPUs on its own pCPU, and every other pCPU idles.

Windows as text (the command line, a notebook), parsed by `parse_frame`:

    safety=10ms,info=20ms/frame=40ms      two windows, then 10 ms idle; frame 40 ms
    0=5ms,1.0=15ms,1.1=15ms,0=5ms         VM 0, then VM 1's vCPUs 0 and 1, then VM 0 again
                                          (no /frame: the frame is the windows' sum, 40 ms)

A window is VM=DURATION or VM.VCPU=DURATION; VM is an index or, when the caller knows them,
a VM's name; a duration is a number and a unit: ms, us or ticks.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Sequence

from vlab.sched import Decision, Entity, ProtocolError, SchedError, check_pcpus, refuse_terms
from vlab.sched.units import format_duration, parse_duration

MAX_WINDOWS = 64  # ARINC653_MAX_DOMAINS_PER_SCHEDULE (xen/include/public/sysctl.h)


@dataclass(frozen=True)
class Window:
    """`duration` ticks for VM `vm`'s vCPU `vcpu` (None: for each vCPU of the VM, on its own pCPU)."""

    vm: int
    vcpu: int | None
    duration: int

    def owns(self, entity: Entity) -> bool:
        return entity.vm == self.vm and self.vcpu in (None, entity.vcpu)

    def label(self, vm_names: Sequence[str] = ()) -> str:
        vm = vm_names[self.vm] if self.vm < len(vm_names) else str(self.vm)
        return vm if self.vcpu is None else f"{vm}.{self.vcpu}"


@dataclass(frozen=True)
class Frame:
    """A major frame of `major` ticks and its windows, run back to back from the frame's start.

    `vm_names` (optional) name the VMs in messages and in `text()`.
    """

    windows: tuple[Window, ...]
    major: int
    vm_names: tuple[str, ...] = field(default=(), compare=False)
    starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "windows", tuple(self.windows))
        object.__setattr__(self, "vm_names", tuple(self.vm_names))
        if not 1 <= len(self.windows) <= MAX_WINDOWS:
            raise SchedError(f"an ARINC 653 frame has 1 to {MAX_WINDOWS} windows (Xen's limit), "
                             f"not {len(self.windows)}")
        if not isinstance(self.major, int) or self.major <= 0:
            raise SchedError(f"an ARINC 653 major frame must be a positive number of ticks, not {self.major!r}")
        for i, w in enumerate(self.windows):
            if not isinstance(w.duration, int) or w.duration <= 0:
                raise SchedError(f"window {i + 1} ({w.label(self.vm_names)}): a window lasts a positive number of ticks, "
                                 f"not {w.duration!r}")
            if w.duration > self.major:
                raise SchedError(f"window {i + 1} ({w.label(self.vm_names)}) lasts {format_duration(w.duration)}, longer than "
                                 f"the {format_duration(self.major)} major frame")
        total = sum(w.duration for w in self.windows)
        if total > self.major:
            raise SchedError(f"the windows add up to {format_duration(total)}, more than the "
                             f"{format_duration(self.major)} major frame: shorten them or lengthen the frame")
        starts, at = [], 0
        for w in self.windows:
            starts.append(at)
            at += w.duration
        object.__setattr__(self, "starts", tuple(starts))

    def at(self, time: int) -> tuple[Window | None, int, int]:
        """The window at host tick `time` (None in the idle end of the frame), and when it starts and ends."""
        frame_start = time - time % self.major
        offset = time - frame_start
        i = bisect.bisect_right(self.starts, offset) - 1
        start = self.starts[i]
        if offset < start + self.windows[i].duration:
            return self.windows[i], frame_start + start, frame_start + start + self.windows[i].duration
        idle_from = start + self.windows[i].duration
        return None, frame_start + idle_from, frame_start + self.major

    def text(self) -> str:
        """The frame in the syntax `parse_frame` reads."""
        windows = ",".join(f"{w.label(self.vm_names)}={format_duration(w.duration)}" for w in self.windows)
        return f"{windows}/frame={format_duration(self.major)}"


def parse_frame(text: str, vm_names: Sequence[str] = ()) -> Frame:
    """The Frame that `text` describes (see the module docstring); a SchedError says what is wrong where."""
    body, slash, frame_text = text.partition("/")
    windows = []
    for i, item in enumerate(body.split(",")):
        where = f"window {i + 1} ({item.strip()!r})"
        target, equals, duration = item.partition("=")
        if not equals or not target.strip():
            raise SchedError(f"{where}: write a window as VM=DURATION or VM.VCPU=DURATION, e.g. 0=10ms or info.1=5ms")
        vm_text, dot, vcpu_text = target.strip().partition(".")
        vm = _vm_index(vm_text, vm_names, where)
        vcpu = None
        if dot:
            if not vcpu_text.isdigit():
                raise SchedError(f"{where}: {vcpu_text!r} is not a vCPU index (0, 1, ...)")
            vcpu = int(vcpu_text)
        windows.append(Window(vm, vcpu, parse_duration(duration, where)))
    if slash:
        key, equals, value = frame_text.partition("=")
        if not equals or key.strip() != "frame":
            raise SchedError(f"after '/' comes the major frame, as frame=DURATION (e.g. frame=40ms), "
                             f"not {frame_text.strip()!r}")
        major = parse_duration(value, "the major frame")
    else:
        major = sum(w.duration for w in windows)
    return Frame(tuple(windows), major, tuple(vm_names))


def _vm_index(text: str, vm_names: Sequence[str], where: str) -> int:
    if text.isdigit():
        return int(text)
    if text in vm_names:
        return list(vm_names).index(text)
    known = f"the VMs are {', '.join(vm_names)} (or 0..{len(vm_names) - 1})" if vm_names else "VMs are numbered 0, 1, ..."
    raise SchedError(f"{where}: no VM is called {text!r}: {known}")


class Arinc653:
    name = "arinc653"

    def __init__(self, frame: Frame, pcpus: int = 1):
        if not isinstance(frame, Frame):
            raise SchedError(f"the ARINC 653 policy needs a Frame (parse_frame('0=10ms,1=20ms/frame=40ms')), "
                             f"not {frame!r}")
        self.frame = frame
        self.pcpus = check_pcpus(pcpus)
        self._entities: dict[tuple[int, int], Entity] = {}
        self._runnable: set[Entity] = set()

    def add(self, entity: Entity) -> None:
        refuse_terms(self.name, entity, weight=True, cap=True)
        if (entity.vm, entity.vcpu) in self._entities:
            raise SchedError(f"{entity.name} was added twice")
        windows = [w for w in self.frame.windows if w.owns(entity)]
        if not windows:
            raise SchedError(f"{entity.name} has no window in the frame {self.frame.text()}: it would never run")
        if any(w.vcpu is None for w in windows) and entity.vcpu >= self.pcpus:
            raise SchedError(f"{entity.name}: a window for all of VM {entity.vm} runs vCPU k on pCPU k, and the host "
                             f"has {self.pcpus} pCPU(s); give vCPU {entity.vcpu} windows of its own "
                             f"({entity.vm}.{entity.vcpu}=5ms)")
        self._entities[(entity.vm, entity.vcpu)] = entity

    def wake(self, entity: Entity, now: int) -> int | None:
        self._known(entity)
        if entity in self._runnable:
            return None
        self._runnable.add(entity)
        window, _, _ = self.frame.at(now)
        return self.home(entity) if window is not None and window.owns(entity) else None

    def sleep(self, entity: Entity, now: int) -> None:
        self._runnable.discard(self._known(entity))

    def pick(self, pcpu: int, now: int, current: Entity | None) -> Decision:
        window, _, end = self.frame.at(now)
        owner = self._owner(window, pcpu) if window is not None else None
        return Decision(owner if owner in self._runnable else None, end)

    def charge(self, entity: Entity, pcpu: int, ran: int, now: int) -> None:
        pass  # the frame is fixed: nothing to account

    def yield_(self, entity: Entity, now: int) -> None:
        pass  # the window stays the vCPU's: pick() gives it back

    def entitlement(self, entities: Sequence[Entity]) -> dict[Entity, float]:
        """Each vCPU's windows as a fraction of the frame (of its own pCPU's time)."""
        return {e: sum(w.duration for w in self.frame.windows if w.owns(e)) / self.frame.major for e in entities}

    def home(self, entity: Entity) -> int:
        """The pCPU `entity` always runs on."""
        return entity.vcpu % self.pcpus

    def _owner(self, window: Window, pcpu: int) -> Entity | None:
        if window.vcpu is not None:
            owner = self._entities.get((window.vm, window.vcpu))
            return owner if owner is not None and self.home(owner) == pcpu else None
        return self._entities.get((window.vm, pcpu))

    def _known(self, entity: Entity) -> Entity:
        if self._entities.get((entity.vm, entity.vcpu)) != entity:
            raise ProtocolError(f"{entity.name} was never added to the ARINC 653 policy")
        return entity
