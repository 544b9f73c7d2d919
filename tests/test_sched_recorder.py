"""The Recorder: a policy's trace made from the protocol calls alone, the same under the host and the simulator."""

from vlab.hyp.host import Host
from vlab.hyp.vm import VM
from vlab.sched.credit import Credit
from vlab.sched.invariants import idle_while_runnable
from vlab.sched.metrics import run_figures
from vlab.sched.recorder import Recorder

OFF = "    ldr x0, =0x84000008\n    hvc #0\n"


def spin(count: int) -> str:
    return f"    ldr x1, ={count}\nloop: subs x1, x1, #1\n    b.ne loop\n{OFF}"


def test_with_real_guests_on_the_host_the_trace_is_the_hosts_own_schedule():
    policy = Recorder(Credit(pcpus=2, slice_ticks=20_000))
    host = Host(pcpus=2, scheduler=policy)
    for count in (100_000, 200_000, 300_000):
        VM.from_source(spin(count), host=host, stage2="contiguous", ram_size=0x10_0000)
    result = host.run(max_insns=2_000_000)
    assert all(vm.reason.name == "POWERED_OFF" for vm in result.vms)
    policy.trace.finish(max(p["ticks"] for p in result.pcpus))
    def runs(segments):
        return sorted(((s.pcpu, s.start, s.end, s.entity) for s in segments if s.entity), key=lambda r: r[:2])
    assert runs(policy.trace.segments) == runs(host.trace.segments)  # the host records through one too
    assert len(policy.trace.switches) == sum(p["world_switches"] for p in result.pcpus)
    assert idle_while_runnable(policy.trace, tolerance=host.lockstep) == []
    figures = run_figures(policy.trace, policy.entitlement(policy.trace.entities))
    # ldr, the loop's subs and b.ne n times, ldr, hvc: each guest's instructions, one tick each
    assert [v.ran for v in figures.vcpus] == [2 * n + 3 for n in (100_000, 200_000, 300_000)]
