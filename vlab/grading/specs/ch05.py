"""Chapter 5 exercises: sharing the CPU. A student's scheduling answers run real guests on a host.

- ch05.pick_next is a virtual-runtime scheduler's decision. Its calls are compared with what vlab's
  fair policy charges (vlab.sched.fair) and the exercise's pick rule; its runs put spinners and
  sleepers (vlab.guests.workloads) on a Host whose every pick is the student's, each crossing the
  sandbox as plain data, and check the schedule with vlab.sched.invariants.
- ch05.arinc653_frame designs an ARINC 653 frame: many are right, so the grader parses it (Xen's
  limits, vlab.sched.arinc653), runs a spinner per partition under it, and measures from the trace
  what each partition got in each of its periods.
"""

from __future__ import annotations

import functools
import math
import re

from vlab.arch.hcr import HCR
from vlab.grading.exercise import Case, Exercise, Test
from vlab.grading.kinds import HOST_RUN, PolicyAnswer
from vlab.grading.plain import a, show, type_name
from vlab.guests.workloads import progress
from vlab.hyp import VM, Host
from vlab.hyp.experiment import GUEST_RAM, WORKLOADS, Guest, share_the_cpu
from vlab.machine.loader import image_from_program
from vlab.sched import Decision, Entity, SchedError, check_pcpus, refuse_terms
from vlab.sched.arinc653 import parse_frame
from vlab.sched.fair import FIXED_POINT, Fair
from vlab.sched.intervals import merged, overlap
from vlab.sched.invariants import idle_while_runnable, share_errors
from vlab.sched.metrics import shares
from vlab.sched.shares import weighted_entitlement
from vlab.sched.units import TICKS_PER_MS, ms

MODULE = "ch05_sharing"
RUN_GUARD_S = 120  # a wall-clock guard over one run of guests: their duration bounds it long before


def _ms(ticks: int) -> str:
    return f"{ticks / TICKS_PER_MS:g} ms"


def _run(check: str, **spec) -> tuple:
    return HOST_RUN, {"check": check, **spec}


# --- ch05.pick_next -----------------------------------------------------------------------------

SLICE = ms(1)  # each pick runs for a millisecond of guest time (or until its vCPU blocks)
SHARE_TOLERANCE = 0.05


@functools.lru_cache(maxsize=4096)
def fair_charge(weight: int, ran: int) -> int:
    """What vlab's fair policy adds to the virtual runtime of a vCPU of `weight` that ran `ran` ticks
    (in its fixed point: 65,536 per tick at the default weight, 256)."""
    policy, entity = Fair(pcpus=1), Entity(0, 0, weight=weight)
    policy.add(entity)
    policy.wake(entity, 0)
    policy.pick(0, 0, None)
    policy.charge(entity, 0, ran, ran)
    return round(policy.vruntimes()[entity] * FIXED_POINT)


def reference_pick(weights, vruntimes, ran, ready) -> tuple[list[int], int | None]:
    """The decision pick_next must make: vlab's fair policy's charge, then the ready vCPU with the least
    virtual runtime, the lowest index among equals (None when none is ready)."""
    charged = [v + fair_charge(w, r) for w, v, r in zip(weights, vruntimes, ran)]
    return charged, min((i for i, r in enumerate(ready) if r), key=lambda i: charged[i], default=None)


class PickNextPolicy:
    """The policy ch05.pick_next describes, every decision of which is `decide(weights, vruntimes, ran,
    ready)` -- the student's function, in its sandbox. It keeps what a decision needs: each vCPU's
    virtual runtime (the answer's, as it returned them), the ticks each ran since the last decision,
    and who is runnable and where each runs. A pick runs for SLICE; a vCPU that wakes takes an idle
    pCPU, and never preempts. A decision that cannot be used ends the run (AssertionError)."""

    name = "pick_next"

    def __init__(self, decide, pcpus: int):
        self.pcpus = check_pcpus(pcpus)
        self._decide = decide
        self.entities: list[Entity] = []
        self._index: dict[Entity, int] = {}
        self._vruntimes: list[int] = []
        self._ran: list[int] = []
        self._runnable: set[int] = set()
        self._running: dict[int, int] = {}  # pCPU -> the vCPU it was given

    def add(self, entity: Entity) -> None:
        refuse_terms(self.name, entity, weight=False, cap=True)
        self._index[entity] = len(self.entities)
        self.entities.append(entity)
        self._vruntimes.append(0)
        self._ran.append(0)

    def wake(self, entity: Entity, now: int) -> int | None:
        if self._index[entity] in self._runnable:
            return None
        self._runnable.add(self._index[entity])
        return next((p for p in range(self.pcpus) if p not in self._running), None)

    def sleep(self, entity: Entity, now: int) -> None:
        self._runnable.discard(self._index[entity])

    def pick(self, pcpu: int, now: int, current: Entity | None) -> Decision:
        self._running.pop(pcpu, None)
        elsewhere = set(self._running.values())
        ready = [i in self._runnable and i not in elsewhere for i in range(len(self.entities))]
        decision = self._decide([e.weight for e in self.entities], list(self._vruntimes), list(self._ran), ready)
        self._vruntimes, picked = self._usable(decision, ready, pcpu, now)
        self._ran = [0] * len(self.entities)
        if picked is None:
            return Decision(None, now + SLICE)
        self._running[pcpu] = picked
        return Decision(self.entities[picked], now + SLICE)

    def charge(self, entity: Entity, pcpu: int, ran: int, now: int) -> None:
        self._ran[self._index[entity]] += ran

    def yield_(self, entity: Entity, now: int) -> None:
        pass  # the guests here do not yield

    def entitlement(self, entities) -> dict[Entity, float]:
        return weighted_entitlement(entities, self.pcpus, caps=False)

    def _usable(self, decision, ready: list[bool], pcpu: int, now: int) -> tuple[list[int], int | None]:
        where = f"at tick {now:,} ({_ms(now)}), deciding for pCPU {pcpu}: pick_next"
        n = len(ready)
        if type(decision) is not tuple or len(decision) != 2:
            raise AssertionError(f"{where} returned {a(type_name(decision))}, expected a pair (vruntimes, picked)")
        vruntimes, picked = decision
        if type(vruntimes) is not list or len(vruntimes) != n or any(type(v) is not int for v in vruntimes):
            raise AssertionError(f"{where} returned the virtual runtimes {show(vruntimes)}, expected a list of "
                                 f"{n} ints")
        if picked is not None and (type(picked) is not int or not 0 <= picked < n):
            raise AssertionError(f"{where} picked {show(picked)}, expected an index from 0 to {n - 1}, or None")
        if picked is not None and not ready[picked]:
            state = "running on another pCPU" if picked in self._runnable else "blocked"
            raise AssertionError(f"{where} picked vCPU {picked}, which is not ready ({state})")
        return vruntimes, picked


def run_guests(spec: dict, decide) -> Host:
    """The guests of `spec` on a host of spec["pcpus"] cores under PickNextPolicy, for spec["ms"]."""
    host = Host(pcpus=spec["pcpus"], scheduler=PickNextPolicy(decide, spec["pcpus"]))
    for workload, vcpus, weight in spec["guests"]:
        VM.from_image(image_from_program(WORKLOADS[workload][0](vcpus)), host=host, stage2="contiguous",
                      ram_size=GUEST_RAM, vcpus=vcpus, weight=weight, traps=HCR.TWI)
    host.run(duration=ms(spec["ms"]), max_insns=2**62, timeout_s=RUN_GUARD_S)
    return host


def _first_difference(one: Host, other: Host) -> str:
    runs = [[(s.start, s.pcpu, s.entity.name, s.end) for s in h.trace.segments] for h in (one, other)]
    for first, second in zip(*runs):
        if first != second:
            return (f"from tick {min(first[0], second[0]):,} on: the first run gave pCPU {first[1]} to {first[2]} "
                    f"for [{first[0]:,}, {first[3]:,}), the second gave pCPU {second[1]} to {second[2]} for "
                    f"[{second[0]:,}, {second[3]:,})")
    if len(runs[0]) != len(runs[1]):
        return f"the first run had {len(runs[0])} stretches of guest time, the second {len(runs[1])}"
    return ""


def run_pick_next(spec: dict, decide) -> dict:
    """What the guests got, checked by vlab.sched.invariants: each vCPU's share against its weight's, idle
    pCPUs while a vCPU waited, each guest's progress (read from its RAM), and -- when spec["check"] is
    "same" -- where a second run of the same guests differed."""
    host = run_guests(spec, decide)
    trace = host.trace
    got, entitled = shares(trace), host.policy.entitlement(trace.entities)
    observed = {"weights": [e.weight for e in trace.entities], "shares": [got[e] for e in trace.entities],
                "share_errors": [str(v) for v in share_errors(trace, entitled, SHARE_TOLERANCE)],
                "progress": [progress(vm, v) for vm in host.vms for v in range(len(vm.vcpus))],
                "idle": [str(v) for v in idle_while_runnable(trace, tolerance=host.lockstep)]}
    if spec["check"] == "same":
        observed["difference"] = _first_difference(host, run_guests(spec, decide))
    return observed


def judge_pick_next(case: Case, observed: dict) -> str:
    check = case.args[1]["check"]
    if check == "shares" and observed["share_errors"]:
        counted = ", ".join(f"{c:,}" for c in observed["progress"])
        return f"{observed['share_errors'][0]}; the guests counted {counted} rounds of their work"
    if check == "busy" and observed["idle"]:
        more = f" (and {len(observed['idle']) - 1} more such stretches)" if len(observed["idle"]) > 1 else ""
        return f"a pCPU idled while a vCPU was ready: {observed['idle'][0]}{more}"
    if check == "same" and observed["difference"]:
        return f"the same guests ran twice and got two different schedules: {observed['difference']}"
    return ""


def _decisions(calls) -> list[Case]:
    return [Case(f"pick_next({w}, {v}, {r}, {ready})", (w, v, r, ready), reference_pick(w, v, r, ready))
            for w, v, r, ready in calls]


def _first_decisions(spec: dict, count: int):
    """The first `count` decisions of a run of spec's guests under the reference: real states, real ticks."""
    def cases(rng) -> list[Case]:
        made = []

        def decide(*arguments):
            made.append(arguments)
            return reference_pick(*arguments)
        run_guests(spec, decide)
        return _decisions(made[:count])
    return cases


CHARGES = [([256], [0], [62_500], [True]), ([512, 256, 3], [0, 0, 0], [62_500, 62_500, 1_000], [False, True, False]),
           ([65535, 1, 100], [10, 20, 30], [7, 7, 62_501], [True, False, False]),
           ([256, 384], [1 << 30, 5], [0, 12_345], [False, True]), ([1000, 999], [0, 0], [999, 1000], [True, False])]
TIES = [([256, 256, 256], [0, 0, 0], [0, 0, 0], [True, True, True]),
        ([256, 256, 256], [5, 3, 3], [0, 0, 0], [True, True, True]),
        ([512, 256, 100], [7, 7, 7], [0, 0, 0], [False, True, True]),
        ([256, 512, 256, 512], [1 << 40, 1 << 40, 1 << 41, 1 << 40], [0, 0, 0, 0], [True, True, True, True])]
READY = [([256, 256, 256], [0, 9, 5], [0, 0, 0], [False, True, True]),
         ([256, 256], [3, 4], [0, 0], [False, False]), ([256], [1 << 33], [0], [False]),
         ([300, 200, 100], [1, 2, 3], [0, 0, 0], [False, False, True])]


def _random_decisions(rng) -> list[Case]:
    calls = []
    for _ in range(40):
        n = rng.randrange(1, 7)
        weights = [rng.choice([256, rng.randrange(1, 65536), rng.randrange(64, 1025)]) for _ in range(n)]
        shared = rng.getrandbits(36)  # several vCPUs at one virtual runtime make ties
        vruntimes = [shared if rng.random() < 0.4 else rng.getrandbits(rng.randrange(1, 44)) for _ in range(n)]
        ran = [0 if rng.random() < 0.4 else rng.randrange(1, ms(30)) for _ in range(n)]
        calls.append((weights, vruntimes, ran, [rng.random() < 0.7 for _ in range(n)]))
    return _decisions(calls)


def _spinners(weights) -> list[list]:
    return [["spinner", 1, w] for w in weights]


def _shares_run(rng) -> list[Case]:
    # Weights within 3x of each other (every share is ample), the heaviest at least 1.5x the lightest.
    weights = [rng.randrange(128, 192), rng.randrange(288, 385)] + [rng.randrange(128, 385)] * rng.randrange(2)
    rng.shuffle(weights)
    return [Case(f"{len(weights)} spinners of weights {', '.join(map(str, weights))} on one core for 300 ms",
                 _run("shares", pcpus=1, guests=_spinners(weights), ms=300))]


def _mix(rng) -> list[list]:
    """A spinner, a spinner with two vCPUs and a sleeper, of random weights."""
    return [[workload, vcpus, rng.randrange(100, 1000)]
            for workload, vcpus in (("spinner", 1), ("spinner", 2), ("sleeper", 1))]


def _mix_label(guests, pcpus: int, duration: int) -> str:
    return (f"a spinner, a spinner with two vCPUs and a sleeper (weights {', '.join(str(g[2]) for g in guests)}) "
            f"on {pcpus} cores for {duration} ms")


def _busy_run(rng) -> list[Case]:
    guests = _mix(rng)
    return [Case(_mix_label(guests, 2, 20), _run("busy", pcpus=2, guests=guests, ms=20))]


def _same_run(rng) -> list[Case]:
    guests = _mix(rng)
    return [Case(_mix_label(guests, 2, 10) + ", twice", _run("same", pcpus=2, guests=guests, ms=10))]


def _pair_wrong(case: Case, got) -> str | None:
    if type(got) is not tuple or len(got) != 2:
        return "return a pair: (the list of new virtual runtimes, the index picked or None), e.g. ([65536, 0], 1)"
    if type(got[0]) is not list:
        return "return the new virtual runtimes as a list, one int per vCPU"


def _charge_wrong(case: Case, got) -> str | None:
    weights, vruntimes, ran, _ = case.args
    charged, _ = case.expected
    rates = [(w, (g - v) / r) for g, w, v, r in zip(got[0], weights, vruntimes, ran) if r and type(g) is int]
    if any(w1 > w2 and r1 > r2 for w1, r1 in rates for w2, r2 in rates):
        return "a heavier vCPU ages more slowly: divide the ticks it ran by its weight, do not multiply"
    for g, want, w, v, r in zip(got[0], charged, weights, vruntimes, ran):
        if type(g) is int and g == want:
            continue
        if type(g) is float:
            return "charge in whole numbers: ran * 2**24 // weight (// keeps an int, / makes a float)"
        if type(g) is not int:
            return "each virtual runtime is an int"
        if r and g == v:
            return "charge each vCPU for the ticks it ran: its virtual runtime grows by ran * 2**24 // weight"
        if g == v + r * (2**24 // w):
            return "multiply before dividing: ran * 2**24 // weight (2**24 // weight alone drops its remainder)"
        return "each vCPU's virtual runtime grows by ran * 2**24 // weight, added to what it was"
    return None


def _pick_wrong(case: Case, got) -> str | None:
    weights, vruntimes, ran, ready = case.args
    charged, picked = case.expected
    choice = got[1]
    if type(choice) is type(picked) and choice == picked:
        return None
    if picked is None:
        return "no vCPU is ready: the index picked is None"
    if choice is None:
        return "None is only for when no vCPU is ready"
    if type(choice) is not int or not 0 <= choice < len(ready):
        return f"the index picked is a position in the lists (0 to {len(ready) - 1}), or None"
    if not ready[choice]:
        return "only a ready vCPU may be picked: ready[i] is False for one that is blocked or runs on another pCPU"
    if charged[choice] == charged[picked]:
        return "among equal virtual runtimes, pick the lowest index"
    if vruntimes[choice] == min(vruntimes[i] for i, r in enumerate(ready) if r):
        return "pick by the virtual runtimes after the charge, not before it"
    return "pick the ready vCPU with the least virtual runtime"


def _unusable(case: Case, observed: dict) -> str | None:
    error = observed.get("error", "")
    if re.search(r"virtual runtimes \[.*\d\.\d", error):
        return "charge in whole numbers: ran * 2**24 // weight (// keeps an int, / makes a float)"
    if "not ready" in error:
        return "only a ready vCPU may be picked: ready[i] is False for one that is blocked or runs on another pCPU"
    if "expected a pair" in error or "expected a list" in error:
        return "return a pair: (the list of new virtual runtimes as ints, the index picked or None)"


def _weights_inverted(case: Case, observed: dict) -> str | None:
    pairs = list(zip(observed.get("weights", []), observed.get("shares", [])))
    if any(w1 > w2 and s1 < s2 for w1, s1 in pairs for w2, s2 in pairs):
        return "a heavier vCPU ages more slowly: divide the ticks it ran by its weight, do not multiply"


def _idled(case: Case, observed: dict) -> str | None:
    if observed.get("idle"):
        return "whenever some vCPU is ready, pick one: None only when ready has no True"


def _differed(case: Case, observed: dict) -> str | None:
    if observed.get("difference"):
        return ("decide from the arguments alone: no random choice among equals, nothing kept from one call to "
                "the next")


PICK_NEXT = Exercise(
    id="ch05.pick_next",
    title="A virtual-runtime scheduler's decision",
    statement=("Write the decision a virtual-runtime scheduler (the idea behind Linux's CFS, which schedules "
               "KVM's vCPUs) makes each time a pCPU needs a vCPU: charge every vCPU for the ticks it ran, "
               "ran * 2**24 // weight, then pick the ready vCPU with the least virtual runtime, the lowest index "
               "among equals, or None. The tests compare your decisions with vlab's, then run real guests on a "
               "host that schedules with your function."),
    points=6,
    module=MODULE,
    kind=PolicyAnswer(run_pick_next, judge_pick_next, (_pair_wrong, _charge_wrong, _pick_wrong),
                      (_unusable, _weights_inverted, _idled, _differed)),
    tests=(
        Test("the charge: ran * 2**24 // weight, in whole numbers", lambda rng: _decisions(CHARGES),
             hint="a vCPU of weight 256 ages 65,536 per tick it ran; one of twice the weight half as fast"),
        Test("the least virtual runtime, the lowest index among equals", lambda rng: _decisions(TIES),
             hint="compare the new virtual runtimes; on a tie keep the vCPU that comes first"),
        Test("only a ready vCPU, or None", lambda rng: _decisions(READY),
             hint="ready[i] is False for a blocked vCPU and for one running on another pCPU"),
        Test("the first decisions of three spinners sharing a core",
             _first_decisions({"pcpus": 1, "guests": _spinners([512, 256, 256]), "ms": 12, "check": ""}, 12),
             hint="charge first, then pick by the new virtual runtimes"),
        Test("two spinners of weights 512 and 256 share a core 2:1", lambda rng: [
            Case("two spinners of weights 512 and 256 on one core for 60 ms",
                 _run("shares", pcpus=1, guests=_spinners([512, 256]), ms=60))],
             hint="the heavier vCPU's virtual runtime must grow half as fast"),
        Test("random decisions", _random_decisions, hidden=True),
        Test("shares within 5% of the weights over 300 ms", _shares_run, hidden=True,
             hint="charge by the weight, pick the least virtual runtime"),
        Test("no pCPU idles while a vCPU is ready", _busy_run, hidden=True,
             hint="return None only when no vCPU is ready"),
        Test("the same guests give the same schedule", _same_run, hidden=True,
             hint="the same arguments must always give the same decision"),
    ),
)


# --- ch05.arinc653_frame ----------------------------------------------------------------------------

MAX_CHECKED = ms(500)  # a frame is checked until it and the periods line up again: at most this long


def _period_ticks(partition) -> tuple[int, int]:
    _, budget, period = partition
    return ms(budget), ms(period)


def run_frame(spec: dict, decide) -> dict:
    """The frame the answer designs for spec["partitions"], parsed by vlab and run with a spinner named after
    each partition, until the frame and every period line up again (at least two frames): what each
    partition ran in each of its periods."""
    partitions = [tuple(p) for p in spec["partitions"]]
    text = decide(partitions)
    if type(text) is not str:
        raise AssertionError(f"arinc653_frame returned {a(type_name(text))}, expected the frame as a str, such as "
                             "'a=2ms,b=1ms/frame=4ms'")
    names = [name for name, _, _ in partitions]
    try:
        frame = parse_frame(text, names)
    except SchedError as e:
        return {"frame": text, "refused": str(e)}
    periods = [_period_ticks(p)[1] for p in partitions]
    until = max(math.lcm(frame.major, *periods), 2 * frame.major)
    if until > MAX_CHECKED:
        return {"frame": text, "major": frame.major, "too_long": until}
    try:
        experiment = share_the_cpu([Guest(name) for name in names], policy="arinc653", windows=text,
                                   duration_ms=until / TICKS_PER_MS)
    except SchedError as e:  # a partition with no window, or a window for a vCPU it does not have
        return {"frame": text, "refused": str(e)}
    trace = experiment.host.trace
    held = {e.vm: merged([(s.start, s.end) for s in trace.segments if s.entity == e]) for e in trace.entities}
    got = [[overlap(held.get(vm, []), [(k * period, (k + 1) * period)]) for k in range(until // period)]
           for vm, period in enumerate(periods)]
    return {"frame": text, "major": frame.major, "windows": len(frame.windows), "checked": until, "got": got}


def _shortfalls(case: Case, observed: dict) -> list[tuple[str, int, int, int, int]]:
    """(partition, period index, ticks it ran there, its budget, its period) for each period it fell short in."""
    short = []
    for partition, got in zip(case.args[1]["partitions"], observed["got"]):
        budget, period = _period_ticks(partition)
        short += [(partition[0], k, ran, budget, period) for k, ran in enumerate(got) if ran < budget]
    return short


def judge_frame(case: Case, observed: dict) -> str:
    if "refused" in observed:
        return f"vlab refuses the frame {observed['frame']!r}: {observed['refused']}"
    if "too_long" in observed:
        periods = math.lcm(*(_period_ticks(p)[1] for p in case.args[1]["partitions"]))
        return (f"checking a major frame of {_ms(observed['major'])} takes {_ms(observed['too_long'])} of guest "
                f"time (two frames at least, until frame and periods line up again), more than the "
                f"{_ms(MAX_CHECKED)} this test runs: the least common multiple of the periods, {_ms(periods)}, "
                "makes a good frame")
    short = _shortfalls(case, observed)
    if not short:
        return ""
    name, k, ran, budget, period = short[0]
    more = f"; {len(short) - 1} more periods fell short" if len(short) > 1 else ""
    return (f"{name} ran {_ms(ran)} in its period {k + 1} ({_ms(k * period)} to {_ms((k + 1) * period)}), "
            f"{_ms(budget - ran)} short of its {_ms(budget)} budget (frame {observed['frame']!r}){more}")


def _refused_why(case: Case, observed: dict) -> str | None:
    refused = observed.get("refused", "")
    if "is not a duration" in refused:
        return "a duration is a number and a unit: 2ms, 0.5ms"
    if "windows (Xen's limit)" in refused:
        return "Xen takes at most 64 windows: merge neighbouring windows of the same partition into one"
    if "more than the" in refused:
        return "the windows must fit in the major frame: make it the least common multiple of the periods"
    if "no VM is called" in refused or "has no window" in refused:
        return "name each window after its partition, NAME=DURATION, and give every partition a window"


def _frame_misaligned(case: Case, observed: dict) -> str | None:
    if "got" in observed and any(observed["major"] % period for *_, period in _shortfalls(case, observed)):
        return ("make the major frame a multiple of every period (their least common multiple): otherwise a "
                "period falls on a different part of each frame")


def _on_average_only(case: Case, observed: dict) -> str | None:
    if "got" not in observed:
        return None
    for name, k, ran, budget, period in _shortfalls(case, observed):
        got = observed["got"][[p[0] for p in case.args[1]["partitions"]].index(name)]
        if sum(got) >= budget * len(got):
            return (f"{name} gets enough time over the frame, but not in each of its periods: a partition needs its "
                    "budget inside every period, so give it windows spread over the frame")
    return None


def _frame_case(partitions) -> Case:
    label = "; ".join(f"{name}: {budget:g} ms every {period:g} ms" for name, budget, period in partitions)
    return Case(label, _run("budgets", partitions=[list(p) for p in partitions]))


NAMES = ("safety", "brakes", "engine", "steering", "info", "nav", "cabin", "radio")


def _partitions(rng, periods: list[int], load: float) -> list[tuple]:
    """Partitions with these periods (ms) and budgets in half milliseconds, using about `load` of the CPU."""
    parts = [rng.random() + 0.2 for _ in periods]
    budgets = [max(0.5, math.floor(2 * load * part / sum(parts) * period) / 2) for part, period in zip(parts, periods)]
    return [(name, budget, period) for name, budget, period in zip(rng.sample(NAMES, len(periods)), budgets, periods)]


def _random_frames(rng, choose, count: int) -> list[Case]:
    """`count` sets of partitions whose periods `choose(rng)` gives, two different at least, each feasible:
    at most 90% of the CPU, and few enough periods in the frame that 64 windows are plenty."""
    cases = []
    while len(cases) < count:
        periods = choose(rng)
        hyper = math.lcm(*periods)
        partitions = _partitions(rng, periods, rng.uniform(0.5, 0.85))
        if len(set(periods)) > 1 and sum(b / p for _, b, p in partitions) <= 0.9 \
                and sum(hyper // p for p in periods) <= 30:
            cases.append(_frame_case(partitions))
    return cases


def _harmonic(rng) -> list[int]:
    base = rng.choice([4, 5, 8])
    return [base * rng.choice([1, 2, 4]) for _ in range(rng.choice([2, 3, 4]))]


def _long_harmonic(rng) -> list[int]:
    base = rng.choice([10, 20])
    return [base * m for m in rng.sample([1, 2, 4, 8], rng.choice([2, 3]))] + [base * 8]


def _unrelated(rng) -> list[int]:
    return rng.sample([2, 3, 4, 6, 8, 12], rng.choice([2, 3]))


ARINC653_FRAME = Exercise(
    id="ch05.arinc653_frame",
    title="An ARINC 653 frame that meets every partition's budget",
    statement=("Given partitions, each with a budget of CPU time it needs in every one of its periods, write an "
               "ARINC 653 major frame in vlab's syntax (a=2ms,b=1ms,a=2ms/frame=8ms) that gives each partition at "
               "least its budget in every period, within Xen's limits (at most 64 windows, adding up to no more "
               "than the frame). The tests run a spinner per partition under your frame and measure what each "
               "got in each period."),
    points=4,
    module=MODULE,
    kind=PolicyAnswer(run_frame, judge_frame, run_mistakes=(_refused_why, _frame_misaligned, _on_average_only)),
    tests=(
        Test("the car: safety and info, both every 8 ms",
             lambda rng: [_frame_case([("safety", 2, 8), ("info", 4, 8)])],
             hint="one window each: safety=2ms,info=4ms, in an 8 ms frame"),
        Test("periods of 5, 10 and 20 ms", lambda rng: [_frame_case([("brakes", 1, 5), ("engine", 3, 10),
                                                                    ("info", 6, 20)])],
             hint="brakes needs 1 ms in each 5 ms: give it a window in every one of them"),
        Test("periods of 4 and 6 ms", lambda rng: [_frame_case([("safety", 1, 4), ("info", 2.5, 6)])],
             hint="the frame repeats from time 0: a 12 ms frame (the least common multiple) holds whole periods"),
        Test("random partitions with harmonic periods", lambda rng: _random_frames(rng, _harmonic, 3), hidden=True),
        Test("random partitions with periods of 2 to 12 ms", lambda rng: _random_frames(rng, _unrelated, 3),
             hidden=True, hint="the least common multiple of the periods makes a good major frame"),
        Test("a major frame of 80 ms or more", lambda rng: _random_frames(rng, _long_harmonic, 2), hidden=True,
             hint="Xen takes at most 64 windows: merge neighbouring windows of the same partition"),
    ),
)

EXERCISES = (PICK_NEXT, ARINC653_FRAME)
