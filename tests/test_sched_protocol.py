"""The protocol's pieces: entities, durations, shares, the registry, round-robin, the simulator's checks."""

import pytest

from vlab.machine.timer import FREQUENCY_HZ
from vlab.sched import Decision, Entity, ProtocolError, SchedError
from vlab.sched.registry import POLICIES, make_policy
from vlab.sched.round_robin import RoundRobin
from vlab.sched.shares import water_fill, weighted_entitlement
from vlab.sched.simulate import Burst, Task, simulate
from vlab.sched.units import TICKS_PER_SECOND, format_duration, parse_duration

A, B = Entity(0, 0), Entity(1, 0)


def test_host_ticks_are_the_boards_counter_ticks():
    assert TICKS_PER_SECOND == FREQUENCY_HZ


@pytest.mark.parametrize("text, ticks", [("10ms", 625_000), ("2.5ms", 156_250), ("500us", 31_250),
                                         ("625000ticks", 625_000), (" 1 ms ", 62_500), ("2µs", 125)])
def test_durations_read_as_a_number_and_a_unit(text, ticks):
    assert parse_duration(text) == ticks


@pytest.mark.parametrize("text, message", [("10", "write a number and a unit"), ("3us", "not a whole number"),
                                           ("0ms", "not a positive"), ("ms", "not a duration"),
                                           ("-1ms", "not a duration")])
def test_bad_durations_say_what_a_duration_is(text, message):
    with pytest.raises(SchedError, match=message):
        parse_duration(text, "the slice")


@pytest.mark.parametrize("ticks, text", [(625_000, "10ms"), (156_250, "2.5ms"), (125, "0.002ms"), (7, "7ticks")])
def test_durations_print_back_in_the_same_syntax(ticks, text):
    assert format_duration(ticks) == text and parse_duration(text) == ticks


@pytest.mark.parametrize("weight, cap, message", [(0, 0, "weight 0 is out of range"), (-1, 0, "out of range"),
                                                  (65536, 0, "out of range"), (256, -5, "cap -5% is negative")])
def test_bad_weights_and_caps_are_refused_when_the_entity_is_made(weight, cap, message):
    with pytest.raises(SchedError, match=message):
        Entity(0, 0, weight=weight, cap=cap)


def test_water_fill_gives_what_a_limited_claim_cannot_use_to_the_others():
    assert water_fill(3, [(1, 0.5), (1, 5), (1, 5)]) == [0.5, 1.25, 1.25]
    assert water_fill(1, [(1, 1), (3, 1)]) == [0.25, 0.75]


def test_entitlement_is_per_vm_weight_at_most_a_pcpu_per_vcpu_and_the_vms_cap():
    heavy, light = Entity(0, 0, weight=1024), Entity(1, 0, weight=256)
    assert weighted_entitlement([heavy, light], 2) == {heavy: 1.0, light: 1.0}
    pair = [Entity(1, 0, cap=25), Entity(1, 1, cap=25)]
    assert weighted_entitlement([heavy, *pair], 2) == {heavy: 1.0, pair[0]: 0.125, pair[1]: 0.125}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_policy_is_built_by_name(name):
    windows = "0=10ms" if name == "arinc653" else None
    policy = make_policy(name, 2, windows=windows)
    assert policy.name == name and policy.pcpus == 2


@pytest.mark.parametrize("call, message", [
    (lambda: make_policy("lottery"), "choose one of rr, credit, arinc653, fair, cosched"),
    (lambda: make_policy("rr", tick_ticks=100), "the rr policy takes no a tick"),
    (lambda: make_policy("arinc653", slice_ticks=100, windows="0=1ms"), "its windows are its schedule"),
    (lambda: make_policy("arinc653"), "needs its windows"),
    (lambda: make_policy("fair", windows="0=1ms"), "takes no windows"),
])
def test_options_a_policy_has_no_use_for_are_errors(call, message):
    with pytest.raises(SchedError, match=message):
        call()


def test_round_robin_gives_an_idle_pcpu_at_once_but_never_preempts():
    trace = simulate(RoundRobin(1_000, pcpus=2), [Task(A), Task(B, start=300)], 2, 2_000)
    assert min(s.start for s in trace.segments if s.entity == B) == 300  # pCPU 1 was idle
    trace = simulate(RoundRobin(1_000), [Task(A), Task(B, start=300)], 1, 2_000)
    assert min(s.start for s in trace.segments if s.entity == B) == 1_000  # A's slice ends first


def test_round_robin_refuses_weights_it_would_ignore():
    with pytest.raises(SchedError, match="no weights"):
        RoundRobin().add(Entity(0, 0, weight=512))


class Careless(RoundRobin):
    """A round-robin that makes one mistake, chosen by `mistake`."""

    def __init__(self, mistake):
        super().__init__(1_000, pcpus=2)
        self.mistake = mistake

    def pick(self, pcpu, now, current):
        decision = super().pick(pcpu, now, current)
        if self.mistake == "until now":
            return Decision(decision.entity, now)
        if self.mistake == "blocked" and now >= 500:
            return Decision(B, now + 1)
        if self.mistake == "twice":
            return Decision(A, now + 1_000)
        return decision


@pytest.mark.parametrize("mistake, message", [("until now", "must end after now"), ("blocked", "which is blocked"),
                                              ("twice", "which is running on pCPU 0")])
def test_the_simulator_refuses_a_policy_that_breaks_the_protocol(mistake, message):
    tasks = [Task(A), Task(B, (Burst(100, block=10_000),))]
    with pytest.raises(ProtocolError, match=message):
        simulate(Careless(mistake), tasks, 2, 5_000)


def test_a_burst_blocks_or_yields_not_both():
    with pytest.raises(SchedError, match="not both"):
        Burst(10, block=5, then_yield=True)


def test_a_vcpu_that_moved_away_costs_a_world_switch_when_it_comes_back():
    # pCPU 1 runs B, then idles with B's context still loaded; B runs on pCPU 0; back on pCPU 1, B is loaded anew
    class Mover(RoundRobin):
        def pick(self, pcpu, now, current):
            plan = {(1, 0): B, (0, 2_000): B, (1, 4_000): B}
            entity = plan.get((pcpu, now))
            return Decision(entity, now + 1_000) if entity else Decision(None, now + 1_000 - now % 1_000)

        def wake(self, entity, now):
            return None

    trace = simulate(Mover(pcpus=2), [Task(B)], 2, 5_000, switch_cost=10)
    assert [(w.pcpu, w.time, w.into) for w in trace.switches] == [(1, 0, B), (0, 2_000, B), (1, 4_000, B)]
