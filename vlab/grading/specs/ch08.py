"""Chapter 8 exercises: a pre-copy stopping rule that meets a downtime target, and a balancing policy.

The stopping rule is judged on real migrations: the grader migrates a guest that dirties its pages
(vlab.guests.workloads.dirtier) over a modelled link, asks the student's rule -- in its own
process -- after every round, and checks the round it stopped at against the three conditions
the docstring states, evaluated on the very figures the rule was given. The balancing policy is
judged on clusters given as plain data, against the best placement found by trying them all.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import product

from vlab.grading import messages
from vlab.grading.exercise import Case, Exercise, Test, Verdict
from vlab.grading.plain import show
from vlab.guests import workloads
from vlab.hyp.host import Host
from vlab.hyp.link import Link
from vlab.hyp.migration import RoundStats, precopy
from vlab.hyp.vm import VM
from vlab.machine.loader import image_from_program

MODULE = "ch08_what_virtualization_buys"
MAX_ROUNDS, MAX_FACTOR, HIGH = 30, 3, 0.80  # as the exercise's docstrings state them
GUEST_RAM = 0x40_0000
EPSILON = 1e-9

# --- ch08.stop_and_copy ---------------------------------------------------------------------------

REASONS = {
    "target": "the pause would meet the downtime target",
    "rounds": f"{MAX_ROUNDS} rounds are done",
    "factor": f"more than {MAX_FACTOR} times the guest's memory has been sent",
}
HINTS = {
    "target": "the pause costs state_ms plus page_ms for each dirty page: stop when that is target_ms or less",
    "rounds": f"after {MAX_ROUNDS} rounds stop, whatever the target: some guests dirty pages faster than the link "
              "sends them",
    "factor": f"stop once sent_total exceeds {MAX_FACTOR} x memory_pages: pre-copy must not send forever",
    "early": "return False while none of the three conditions holds (the pause costs state_ms too, besides "
             "page_ms for each dirty page): one more round makes the pause shorter",
}


def holds(stats: dict, target_ms: float) -> list[str]:
    """Which of the docstring's conditions hold after a round, from the figures the rule was given."""
    pause = stats["state_ms"] + stats["dirty_pages"] * stats["page_ms"]
    return [reason for reason, met in (("target", pause <= target_ms + EPSILON),
                                       ("rounds", stats["round"] >= MAX_ROUNDS),
                                       ("factor", stats["sent_total"] > MAX_FACTOR * stats["memory_pages"])) if met]


def migrate_with(rule, resident: int, wws: int, every: int, bandwidth: float, latency: float, warm_up: int):
    """The case's guest, run `warm_up` instructions, migrated by pre-copy under `rule`."""
    vm = VM.from_image(image_from_program(workloads.dirtier(resident, wws, every)), host=Host(), stage2="demand",
                       ram_size=GUEST_RAM)
    vm.run(max_insns=warm_up)
    return precopy(vm, Host(), Link(bandwidth, latency), rule)


@dataclass(frozen=True)
class RuleAnswer:
    """The answer is a stopping rule `rule(stats, target_ms) -> bool`. Cases are (resident, wws, every,
    bandwidth, latency, warm-up, target_ms): a migration the grader runs, asking the rule after
    each round; the rule must stop at the first round where a condition of its docstring holds."""

    def verdict(self, exercise, answers, cases: list[Case], timeout_s: float) -> Verdict:
        for case in cases:
            *guest, target_ms = case.args
            said: list = []
            problem: list[Verdict] = []

            def rule(stats: RoundStats) -> bool:
                if problem:
                    return True  # the answer already failed: end the migration
                called = answers.call(exercise.id, exercise.module, exercise.function,
                                      [[stats.as_dict(), target_ms]], timeout_s)
                if called.delegated:
                    problem.append(Verdict(False, messages.delegation(called.delegated),
                                           delegated=tuple(called.delegated)))
                elif called.error:
                    problem.append(Verdict(False, f"{case.label}, after round {stats.round}: "
                                                  f"{messages.raised(called.error, exercise.function)}",
                                           not_done=called.error.get("type") == "NotImplementedError"))
                elif len(called.values) != 1 or type(called.values[0]) is not bool:
                    got = called.values[0] if called.values else None
                    problem.append(Verdict(False, f"{case.label}: {exercise.function} returned {show(got)}; "
                                                  "return True or False", "return a bool: True or False"))
                else:
                    said.append(called.values[0])
                return bool(problem) or said[-1]

            m = migrate_with(rule, *guest)
            if problem:
                return problem[0]
            why = judge([s.as_dict() for s in m.history], said, target_ms)
            if why:
                return Verdict(False, f"{case.label}: {why[0]}", HINTS[why[1]])
        return Verdict(True)


def judge(history: list[dict], said: list[bool], target_ms: float) -> tuple[str, str] | None:
    """What is wrong with when the rule stopped (a message, and which hint), or None."""
    for number, (stats, stop) in enumerate(zip(history, said), 1):
        reasons = holds(stats, target_ms)
        pause = stats["state_ms"] + stats["dirty_pages"] * stats["page_ms"]
        if stop and not reasons:
            return (f"your rule stopped after round {number}, but none of the conditions held: the pause would "
                    f"take {pause:.3f} ms (target {target_ms:g} ms), {number} of {MAX_ROUNDS} rounds, "
                    f"{stats['sent_total']} pages sent of {MAX_FACTOR} x {stats['memory_pages']}", "early")
        if reasons and not stop:
            return (f"after round {number} {REASONS[reasons[0]]} (the pause: {pause:.3f} ms for "
                    f"{stats['dirty_pages']} pages, target {target_ms:g} ms; {stats['sent_total']} pages sent "
                    f"of {stats['memory_pages']}), but your rule went on", reasons[0])
        if stop:
            return None
    return "your rule never stopped: vlab ended the migration after its own limit of rounds", "rounds"


def _rule_case(label: str, resident: int, wws: int, every: int, bandwidth: float, latency: float,
               warm_up: int, target_ms: float) -> Case:
    return Case(label, (resident, wws, every, bandwidth, latency, warm_up, target_ms))


# Each public case needs one condition to be the first to hold, at a round only a correct rule picks.
TARGET_CASES = [  # the dirty set shrinks round after round; Xen's "< 50 pages" stops too early for the target
    _rule_case("a guest dirtying a page a millisecond over 100 Mbit/s, target 3 ms", 40, 30, 62_500, 100, 0.05,
               20_000, 3.0),
    _rule_case("the same guest, target 2 ms", 40, 30, 62_500, 100, 0.05, 20_000, 2.0),
]
FIRST_FIT_CASES = [  # the pause fits after round 1: a rule that waits for fewer pages goes on too long
    _rule_case("a guest dirtying a page a millisecond over 100 Mbit/s, target 6 ms", 40, 30, 62_500, 100, 0.05,
               20_000, 6.0),
]
ROUND_CASES = [  # the target is below the state's own cost: only the round limit stops it
    _rule_case("a target of 0.5 ms, below what the vCPUs' state alone takes at 100 Mbit/s", 40, 1, 5_000, 100,
               0.05, 20_000, 0.5),
]
FACTOR_CASES = [  # every page dirty every round, faster than the link: three times the memory comes first
    _rule_case("a guest rewriting all its 20 pages faster than 100 Mbit/s sends them, target 1 ms", 20, 20, 50,
               100, 0.05, 20_000, 1.0),
]


def _random_rule_cases(rng: random.Random) -> list[Case]:
    cases = []
    for _ in range(3):
        resident = rng.randrange(10, 60)
        args = (resident, rng.randrange(1, resident + 1), rng.choice([50, 500, 5_000, 62_500]),
                rng.choice([100, 300, 1000]), rng.choice([0, 0.05, 0.5]), rng.randrange(5_000, 50_000),
                round(rng.uniform(0.2, 8), 2))
        cases.append(_rule_case(f"a random guest and link {args}", *args))
    return cases


STOP_AND_COPY = Exercise(
    id="ch08.stop_and_copy",
    title="A pre-copy stopping rule that meets a downtime target",
    statement="Decide after each pre-copy round whether to pause the guest and send what is left.",
    points=4,
    module=MODULE,
    kind=RuleAnswer(),
    tests=(
        Test("the pause meets the downtime target", lambda rng: TARGET_CASES, hint=HINTS["target"]),
        Test("it stops in the first round the target is met", lambda rng: FIRST_FIT_CASES, hint=HINTS["early"]),
        Test(f"at most {MAX_ROUNDS} rounds", lambda rng: ROUND_CASES, hint=HINTS["rounds"]),
        Test(f"never more than {MAX_FACTOR} times the memory", lambda rng: FACTOR_CASES, hint=HINTS["factor"]),
        Test("random guests, links and targets", _random_rule_cases, hidden=True),
    ),
)


# --- ch08.balance -------------------------------------------------------------------------------

def best_placement(hosts: list[dict]) -> dict | None:
    """The fewest hosts that can carry the VMs under HIGH, and the fewest moves that get there, by trying
    every placement (None: no placement keeps every host under HIGH)."""
    names = [h["name"] for h in hosts]
    where = {vm: h["name"] for h in hosts for vm in h["vms"]}
    load = {vm: share for h in hosts for vm, share in h["vms"].items()}
    capacity = {h["name"]: h["capacity"] for h in hosts}
    vms, best = sorted(load), None
    for choice in product(names, repeat=len(vms)):
        used: dict[str, float] = {}
        for vm, host in zip(vms, choice):
            used[host] = used.get(host, 0) + load[vm]
        if all(total <= HIGH * capacity[host] + EPSILON for host, total in used.items()):
            key = (len(used), sum(where[vm] != host for vm, host in zip(vms, choice)))
            best = key if best is None or key < best else best
    return None if best is None else {"hosts": best[0], "moves": best[1]}


def apply_moves(hosts: list[dict], moves) -> tuple[dict[str, str] | None, str]:
    """Where each VM is after `moves`, or None and what is wrong with them."""
    if not isinstance(moves, (list, tuple)):
        return None, f"return a list of (vm, host) pairs, not {show(moves)}"
    where = {vm: h["name"] for h in hosts for vm in h["vms"]}
    names, moved = {h["name"] for h in hosts}, set()
    for move in moves:
        if not isinstance(move, (list, tuple)) or len(move) != 2:
            return None, f"each move is a (vm, host) pair, not {show(move)}"
        vm, host = move
        if vm not in where:
            return None, f"your move {show(move)} names a VM the cluster does not have"
        if host not in names:
            return None, f"your move {show(move)} names a host the cluster does not have"
        if vm in moved:
            return None, f"your moves move {vm} twice"
        moved.add(vm)
        where[vm] = host
    return where, ""


def judge_placement(case: Case, moves) -> tuple[str, str] | None:
    """What is wrong with a policy's moves for the case's cluster (a message, and which hint), or None.
    A case judges the docstring's requirements up to the one its test is about (case.expected["judged"])."""
    (hosts,) = case.args
    where, problem = apply_moves(hosts, moves)
    if where is None:
        return problem, "pairs"
    if case.expected["judged"] == "pairs":
        return None
    load = {vm: share for h in hosts for vm, share in h["vms"].items()}
    capacity = {h["name"]: h["capacity"] for h in hosts}
    used: dict[str, float] = {}
    for vm, host in where.items():
        used[host] = used.get(host, 0) + load[vm]
    for host, total in sorted(used.items()):
        if total > HIGH * capacity[host] + EPSILON:
            return (f"after your moves {host} carries {total:.2f} pCPUs of its {capacity[host]}: over "
                    f"{HIGH:.0%}", "high")
    if case.expected["judged"] == "high":
        return None
    changed = sum(where[vm] != h["name"] for h in hosts for vm in h["vms"])
    if len(used) != case.expected["hosts"]:
        return (f"after your moves {len(used)} hosts carry VMs; {case.expected['hosts']} can carry them all "
                "under the mark", "hosts")
    if case.expected["judged"] == "hosts":
        return None
    if changed != case.expected["moves"]:
        return f"your answer moves {changed} VMs; {case.expected['moves']} would do", "moves"
    return None


BALANCE_HINTS = {
    "pairs": "return a list like [(\"web\", \"h1\"), (\"db\", \"h1\")]: each VM and the host it goes to, once",
    "high": f"add up what each host carries after the moves: at most {HIGH:.0%} of its capacity",
    "hosts": "look at every way of placing the VMs: the best leaves the fewest hosts with any VM",
    "moves": "among the placements on the fewest hosts, take one that moves the fewest VMs: leave a VM "
             "where it is when you can",
}


@dataclass(frozen=True)
class PlacementAnswer:
    """The answer is a policy `balance(hosts) -> [(vm, host), ...]`; its moves are applied to the case's
    cluster and judged against what the best placement achieves."""

    def verdict(self, exercise, answers, cases: list[Case], timeout_s: float) -> Verdict:
        called = answers.call(exercise.id, exercise.module, exercise.function, [c.args for c in cases], timeout_s)
        if called.delegated:
            return Verdict(False, messages.delegation(called.delegated), delegated=tuple(called.delegated))
        for case, got in zip(cases, called.values):
            why = judge_placement(case, got)
            if why:
                return Verdict(False, f"{case.label}: {why[0]}", BALANCE_HINTS[why[1]])
        if called.error:
            return Verdict(False, f"{cases[len(called.values)].label}: "
                                  f"{messages.raised(called.error, exercise.function)}",
                           not_done=called.error.get("type") == "NotImplementedError")
        if len(called.values) != len(cases):
            return Verdict(False, f"{len(called.values)} answers came back for {len(cases)} clusters")
        return Verdict(True)


def cluster(*hosts: tuple[str, bool, int, dict]) -> list[dict]:
    return [{"name": n, "on": on, "capacity": c, "vms": dict(vms)} for n, on, c, vms in hosts]


def _placement_case(label: str, hosts: list[dict], judged: str = "moves") -> Case:
    """A cluster, judged on the docstring's requirements up to `judged` ("pairs", "high", "hosts" or "moves"),
    against the best placement."""
    best = best_placement(hosts)
    return Case(label, (hosts,), None if best is None else best | {"judged": judged})


PAIR_CASES = [  # judged on the pairs alone: an empty list where nothing is to move, and a move named right
    _placement_case("two hosts too full to share", cluster(("h0", True, 2, {"a": 1.1}), ("h1", True, 2, {"b": 1.1})),
                    "pairs"),
    _placement_case("a host that is off", cluster(("h0", True, 2, {"a": 0.5, "b": 0.5}), ("h1", False, 2, {})),
                    "pairs"),
    _placement_case("two light hosts", cluster(("h0", True, 2, {"a": 0.3}), ("h1", True, 2, {"b": 0.3})), "pairs"),
]
HIGH_CASES = [  # hot hosts, judged on the mark: the VMs must spread, onto a host that is off if need be
    _placement_case("one hot host and one off", cluster(("h0", True, 2, {"a": 0.9, "b": 0.8}), ("h1", False, 2, {})),
                    "high"),
    _placement_case("a hot host of 4 pCPUs beside a small one",
                    cluster(("big", True, 4, {"a": 1.5, "b": 1.2, "c": 0.9}), ("small", True, 2, {"d": 0.2})),
                    "high"),
]
HOSTS_CASES = [  # judged on the hosts left carrying VMs: neither host is below a 30% mark, yet both fit on one
    _placement_case("two hosts at 35%, together under 80%",
                    cluster(("h0", True, 2, {"a": 0.4, "b": 0.3}), ("h1", True, 2, {"c": 0.7})), "hosts"),
    _placement_case("three hosts that fit on two, the biggest VMs apart",
                    cluster(("h0", True, 2, {"a": 0.9, "b": 0.3}), ("h1", True, 2, {"c": 0.8, "d": 0.2}),
                            ("h2", True, 2, {"e": 0.6, "f": 0.3})), "hosts"),
]
MOVES_CASES = [  # the fewest hosts can be reached by moving one VM, or by moving three
    _placement_case("one VM to move, or three", cluster(("h0", True, 2, {"a": 0.2, "b": 0.2, "c": 0.2}),
                                                        ("h1", True, 2, {"d": 1.0}))),
    _placement_case("empty the host with fewer VMs", cluster(("h0", True, 2, {"a": 0.5}),
                                                             ("h1", True, 2, {"b": 0.3, "c": 0.3, "d": 0.3}))),
]


def _random_clusters(rng: random.Random, count: int = 12) -> list[Case]:
    cases = []
    while len(cases) < count:
        hosts = cluster(*((f"h{i}", True, rng.choice([1, 2, 4]), {}) for i in range(rng.randrange(2, 5))))
        for v in range(rng.randrange(2, 8)):
            rng.choice(hosts)["vms"][f"vm{v}"] = round(rng.uniform(0.05, 0.8), 2)
        for h in hosts:
            h["on"] = bool(h["vms"])
        case = _placement_case(f"random cluster {len(cases) + 1}", hosts)
        if case.expected is not None:
            cases.append(case)
    return cases


BALANCE = Exercise(
    id="ch08.balance",
    title="A balancing policy: as few hosts as possible, as few moves as that allows",
    statement="Plan the migrations that leave a cluster on the fewest hosts under 80%, moving the fewest VMs.",
    points=4,
    module=MODULE,
    kind=PlacementAnswer(),
    tests=(
        Test("moves name real VMs and hosts, each VM once", lambda rng: PAIR_CASES, hint=BALANCE_HINTS["pairs"]),
        Test(f"no host above {HIGH:.0%} after the moves", lambda rng: HIGH_CASES, hint=BALANCE_HINTS["high"]),
        Test("as few hosts as possible", lambda rng: HOSTS_CASES, hint=BALANCE_HINTS["hosts"]),
        Test("as few moves as that allows", lambda rng: MOVES_CASES, hint=BALANCE_HINTS["moves"]),
        Test("random clusters", _random_clusters, hidden=True),
    ),
)

EXERCISES = (STOP_AND_COPY, BALANCE)
