"""The world switch (vlab.hyp.pcpu.PhysicalCpu.load): a vCPU's state is its own, whoever ran on its
physical CPU in between, and what the switch moves is the list vlab.hyp.world_switch prints."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vlab.hyp import VM, Host
from vlab.hyp.world_switch import ARM_MINIMUM, STATE, table

# The state a test can set through a vCPU: general-purpose registers and the EL1 system registers.
GPRS = [r for g in STATE if g.kind == "general-purpose" for r in g.registers]
EL1 = [r for g in STATE if g.kind == "EL1 system registers" for r in g.registers]
SPIN = "    b .\n"


def two_vcpus_on_one_core():
    host = Host(pcpus=1)
    a = VM.from_source(SPIN, host=host, stage2="contiguous", ram_size=0x10_0000)
    b = VM.from_source(SPIN, host=host, stage2="contiguous", ram_size=0x10_0000)
    host.run(max_insns=10, vms=[a])  # makes the core
    return host.pcpus[0], a.vcpus[0], b.vcpus[0]


VALUES = st.integers(0, 2**64 - 1)


@settings(max_examples=30)
@given(mine=st.lists(VALUES, min_size=len(GPRS), max_size=len(GPRS)),
       theirs=st.lists(VALUES, min_size=len(GPRS), max_size=len(GPRS)),
       sysregs=st.lists(st.integers(0, 2**32 - 1), min_size=len(EL1), max_size=len(EL1)))
def test_a_vcpus_registers_survive_another_vcpu_on_its_core(mine, theirs, sysregs):
    pcpu, a, b = two_vcpus_on_one_core()
    pcpu.load(a)
    for n, value in enumerate(mine):
        a.set_x(n, value)
    for name, value in zip(EL1, sysregs):
        a.write_sysreg(name, value)
    expected = {name: a.read_sysreg(name) for name in EL1}  # what the registers hold (RES0 bits read as 0)
    pcpu.load(b)
    assert not a.loaded and b.loaded
    for n, value in enumerate(theirs):
        b.set_x(n, value)
    for name in EL1:
        b.write_sysreg(name, 0)
    assert [a.x(n) for n in range(31)] == mine  # read from the saved context
    pcpu.load(a)
    assert [a.x(n) for n in range(31)] == mine and {name: a.read_sysreg(name) for name in EL1} == expected
    pcpu.load(b)
    assert [b.x(n) for n in range(31)] == theirs


def test_a_switch_is_counted_and_charged_to_the_host_clock():
    host = Host(pcpus=1, switch_cost=500)
    a = VM.from_source(SPIN, host=host, stage2="contiguous", ram_size=0x10_0000)
    b = VM.from_source(SPIN, host=host, stage2="contiguous", ram_size=0x10_0000)
    host.run(max_insns=10, vms=[a])
    pcpu = host.pcpus[0]
    before, clock = pcpu.switches, pcpu.now()
    pcpu.load(b.vcpus[0])
    pcpu.load(b.vcpus[0])  # already loaded: no switch
    assert pcpu.switches == before + 1 and pcpu.now() == clock + 500


def test_the_state_a_switch_moves_is_printed_beside_arms_minimum():
    text = table()
    assert "31 x  64 bits" in text and "32 x 128 bits" in text and ARM_MINIMUM in text
    groups = {g.kind for g in STATE}
    assert {"general-purpose", "SIMD and floating point", "EL1 system registers", "virtual timer"} <= groups
