"""Properties of live migration, wherever it is cut: no page lost or duplicated, and the migrated guest's
state equal to the unmigrated guest's at the same virtual time (its instruction count). Pre-copy hides the
migration from the guest's counter; post-copy's counter runs on while a vCPU waits for a page."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from migration_twins import alone, state_of

from vlab.guests import workloads
from vlab.hyp.link import Link
from vlab.hyp.migration_experiment import migrate_guest
from vlab.machine.loader import image_from_program

RAM = 0x20_0000


@st.composite
def migrations(draw):
    resident = draw(st.integers(1, 48))
    guest = (resident, draw(st.integers(1, resident)), draw(st.integers(12, 3000)))
    at = draw(st.integers(0, 30_000))
    total = at + draw(st.integers(1, 60_000))
    link = Link(draw(st.sampled_from([50, 300, 1000, 10_000])), draw(st.sampled_from([0, 0.05, 0.5])))
    return guest, at, total, link, draw(st.booleans())


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(migrations())
def test_the_migrated_guest_is_the_unmigrated_one_at_the_same_virtual_time(case):
    (resident, wws, every), at, total, link, post_copy = case
    image = image_from_program(workloads.dirtier(resident, wws, every))
    left, _ = alone(image, total, ram_size=RAM)
    run = migrate_guest(image, at, link, post_copy=post_copy, max_insns=total, ram_size=RAM)
    m = run.migration
    final = run.destination if m is not None and m.completed else run.source
    assert sum(v.instructions for v in final.vcpus) == total
    got, expected = state_of(final), state_of(left)
    if post_copy and m is not None:  # its clock ran on while it waited for pages: by exactly that long
        assert got["vcpus"][0].pop("counter") - expected["vcpus"][0].pop("counter") == m.stall_ticks
    assert got == expected  # registers, system registers, counter, timers, every page


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(migrations())
def test_migration_never_loses_or_duplicates_a_page(case):
    (resident, wws, every), at, total, link, post_copy = case
    image = image_from_program(workloads.dirtier(resident, wws, every))
    run = migrate_guest(image, at, link, post_copy=post_copy, max_insns=at + 1_000_000, ram_size=RAM)
    m = run.migration
    if m is None or not m.completed:
        return  # the guest ended first: nothing arrived anywhere
    arrived = run.destination
    for transfer in m.transfers:  # within one transfer, no page twice
        assert len(set(transfer.ipas)) == len(transfer.ipas)
    if post_copy:  # each page exactly once, pulled or pushed
        sent = [ipa for t in m.transfers for ipa in t.ipas]
        assert len(sent) == len(set(sent))
    else:  # the last transfer carried exactly what the last round left dirty
        assert m.transfers[-1].pages == m.transfers[-2].dirtied
    # every page of the guest sits in exactly one frame of its own on the destination: a frame per
    # page, no frame twice, each the VM's RAM
    mapping = arrived.memory.mapping()
    frames = [frame for _, frame in mapping]
    assert len(set(frames)) == len(frames)
    assert all(arrived.memory.host.owner[f] == f"vm{arrived.vmid} RAM" for f in frames)
    twin, _ = alone(image, sum(v.instructions for v in arrived.vcpus), ram_size=RAM)
    assert [ipa for ipa, _ in mapping] == [ipa for ipa, _ in twin.memory.mapping()]
