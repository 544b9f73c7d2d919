"""ARINC 653 partitions: the frame's text syntax, Xen's limits, and the car of the article."""

import pytest

from vlab.sched import Entity, SchedError
from vlab.sched.arinc653 import MAX_WINDOWS, Arinc653, Frame, Window, parse_frame
from vlab.sched.credit import Credit
from vlab.sched.invariants import idle_while_runnable, window_violations
from vlab.sched.metrics import deadline_misses, shares
from vlab.sched.simulate import Burst, Task, simulate
from vlab.sched.units import ms

SAFETY, INFO = Entity(0, 0), Entity(1, 0)
CAR = "safety=10ms,info=20ms/frame=40ms"
NAMES = ["safety", "info"]
# The safety OS wakes every 5 ms to do 1 ms of work; the infotainment OS...
SAFETY_TASK = Task(SAFETY, (Burst(ms(1), block=ms(4)),))
INFOTAINMENT = {
    "spins": Task(INFO),
    "sleeps": Task(INFO, (Burst(ms(0.2), block=ms(3)),)),
    "crashes": Task(INFO, (Burst(ms(7)),), repeat=False),  # runs 7 ms, then never again
}


def test_windows_read_as_vm_or_vm_vcpu_equals_duration_with_an_optional_frame():
    assert parse_frame(CAR, NAMES) == Frame((Window(0, None, ms(10)), Window(1, None, ms(20))), ms(40))
    assert parse_frame("0=5ms, 1.0=2.5ms,1.1=500us,0=625ticks") == Frame(
        (Window(0, None, 312_500), Window(1, 0, 156_250), Window(1, 1, 31_250), Window(0, None, 625)), 500_625)


def test_a_frame_prints_in_the_syntax_it_is_read_in():
    for text in (CAR, "0=5ms,1.1=1.25ms,0=7ticks/frame=20ms"):
        frame = parse_frame(text, NAMES)
        assert parse_frame(frame.text(), NAMES) == frame
    assert parse_frame(CAR, NAMES).text() == CAR


@pytest.mark.parametrize("text, message", [
    ("safety=10ms,info=40ms/frame=40ms", "add up to 50ms, more than the 40ms major frame"),
    ("safety=50ms/frame=40ms", "window 1 .safety. lasts 50ms, longer than the 40ms major frame"),
    (",".join(["0=1ms"] * (MAX_WINDOWS + 1)), "1 to 64 windows"),
    ("safety=10", "'10' is not a duration: write a number and a unit"),
    ("safety=0ms", "not a positive duration"),
    ("safety=3us", "not a whole number of ticks"),
    ("radio=10ms", "no VM is called 'radio': the VMs are safety, info"),
    ("safety.x=10ms", "'x' is not a vCPU index"),
    ("safety 10ms", "write a window as VM=DURATION"),
    ("safety=10ms/40ms", "frame=DURATION"),
    ("", "write a window as VM=DURATION"),
])
def test_bad_frames_are_refused_with_what_is_wrong(text, message):
    with pytest.raises(SchedError, match=message):
        parse_frame(text, NAMES)


def test_64_windows_are_allowed():
    assert len(parse_frame(",".join(["0=1ms"] * MAX_WINDOWS)).windows) == MAX_WINDOWS


@pytest.mark.parametrize("behaviour", sorted(INFOTAINMENT))
def test_the_safety_os_gets_its_windows_whatever_the_infotainment_os_does(behaviour):
    frame = parse_frame(CAR, NAMES)
    trace = simulate(Arinc653(frame), [SAFETY_TASK, INFOTAINMENT[behaviour]], 1, ms(400))
    assert deadline_misses(trace, frame) == []
    assert window_violations(trace, frame) == []
    for s in trace.segments:  # and nobody runs outside their windows: hand-checked against the frame
        window = (s.start % ms(40)) // ms(10)  # 0: safety's 10 ms, 1-2: info's 20 ms, 3: idle
        assert window == 0 if s.entity == SAFETY else window in (1, 2)


def test_under_credit_the_safety_os_misses_its_windows_when_the_infotainment_os_spins():
    frame = parse_frame(CAR, NAMES)
    trace = simulate(Credit(), [SAFETY_TASK, INFOTAINMENT["spins"]], 1, ms(400))
    assert deadline_misses(trace, frame) != []  # the frame is a requirement credit does not know about


def test_a_blocked_or_unowned_window_idles_even_with_a_runnable_vcpu():
    frame = parse_frame(CAR, NAMES)
    trace = simulate(Arinc653(frame), [Task(INFO)], 1, ms(400))  # the safety VM never boots
    assert shares(trace)[INFO] == pytest.approx(0.5)  # 20 ms of every 40
    assert idle_while_runnable(trace) != []  # not work-conserving, by design


def test_a_vm_window_runs_each_vcpu_on_its_own_pcpu_at_once():
    vcpus = [Entity(0, 0), Entity(0, 1), Entity(1, 0)]
    frame = parse_frame("0=10ms,1.0=10ms")
    trace = simulate(Arinc653(frame, pcpus=2), [Task(e) for e in vcpus], 2, ms(200))
    first = [s for s in trace.segments if s.start == 0]
    assert sorted((s.pcpu, s.entity.vcpu, s.end) for s in first) == [(0, 0, ms(10)), (1, 1, ms(10))]
    assert all(s.pcpu == 0 for s in trace.segments if s.entity.vm == 1)  # vCPU 0's pCPU; pCPU 1 idles


def test_a_woken_owner_runs_at_once_in_its_window():
    frame = parse_frame("0=10ms,1=10ms")
    trace = simulate(Arinc653(frame), [Task(SAFETY, start=ms(3)), Task(INFO)], 1, ms(20))
    assert [s for s in trace.segments if s.entity == SAFETY][0].start == ms(3)


def test_entitlement_is_the_windows_share_of_the_frame():
    policy = Arinc653(parse_frame("0=5ms,1=20ms,0=5ms/frame=40ms"))
    assert policy.entitlement([SAFETY, INFO]) == {SAFETY: 0.25, INFO: 0.5}


@pytest.mark.parametrize("entity, pcpus, message", [
    (Entity(2, 0), 1, "has no window in the frame"),
    (Entity(0, 2), 2, "runs vCPU k on pCPU k"),
    (Entity(0, 0, weight=512), 1, "no weights"),
    (Entity(0, 0, cap=50), 1, "no caps"),
])
def test_vcpus_the_frame_cannot_run_are_refused_before_anything_runs(entity, pcpus, message):
    with pytest.raises(SchedError, match=message):
        Arinc653(parse_frame("0=10ms,1=10ms"), pcpus=pcpus).add(entity)
