"""Live migration between two vlab hosts (vlab.hyp.migration): pre-copy and post-copy, with real guests."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import given
from hypothesis import strategies as st
from migration_twins import alone, state_of

from vlab.arch.hcr import HCR
from vlab.errors import MigrationError
from vlab.guests import GUESTS, workloads
from vlab.guests import build as builder
from vlab.hyp import VM, Host, migration, snapshot, stream
from vlab.hyp.link import Link
from vlab.hyp.migration_experiment import migrate_guest
from vlab.machine.board import StopReason
from vlab.machine.gic import Distributor
from vlab.machine.loader import image_from_file, image_from_program
from vlab.machine.timer import FREQUENCY_HZ
from vlab.sched.registry import POLICIES, make_policy

FAST = Link(10_000, 0.01)  # 10 Gbit/s: pre-copy of a small guest completes well before it ends
INSTANT = Link(100_000, 0)  # a round of one page takes 21 ticks: a guest of a few hundred instructions is still there
TICKS_PER_MS = FREQUENCY_HZ // 1000


@pytest.fixture(scope="module")
def pages_elf(tmp_path_factory):
    """pages.c: 64 pages rewritten round after round, a checksum per round, a self-check of its memory."""
    if shutil.which(builder.COMPILER) is None:
        pytest.skip(f"SKIPPED: {builder.COMPILER} is missing -- install {builder.COMPILER_PACKAGE}")
    return builder.build("pages", cache_dir=tmp_path_factory.mktemp("guests"))


def dirtier_image(resident=40, wws=16, every=400):
    return image_from_program(workloads.dirtier(resident, wws, every))


def started(image, instructions, **options):
    """A VM with demand-paged stage 2 that has run `instructions`, on a host of its own."""
    vm = VM.from_image(image, host=Host(options.pop("pcpus", 1)), stage2="demand", **options)
    vm.run(max_insns=instructions)
    return vm


# --- the host, as pre-copy uses it -------------------------------------------------------------------

@pytest.mark.parametrize("policy", sorted(set(POLICIES) - {"arinc653"}))
def test_a_vm_paused_between_runs_goes_on_where_it_stopped_under_every_policy(policy):
    """Pre-copy runs the source host round after round: a VM stopped by a budget or a duration must
    go on at the next run (round-robin used to take it for still running, and idle)."""
    host = Host(scheduler=make_policy(policy, 1))
    vm = VM.from_file(GUESTS["hello"].path, host=host, stage2="demand")
    assert vm.run(max_insns=10).reason is StopReason.BUDGET
    assert host.run(duration=40, timeout_s=10).vms[0].instructions == 50
    result = vm.run(timeout_s=10)
    assert result.reason is StopReason.POWERED_OFF and result.uart == GUESTS["hello"].expected_uart


@pytest.mark.parametrize("policy", sorted(set(POLICIES) - {"arinc653", "cosched"}))
def test_a_vcpu_blocked_and_woken_by_an_sgi_within_a_short_run_is_given_to_one_core_under_every_policy(policy):
    """ipi.S with WFI trapped, run 21 ticks at a time (a pre-copy round's): a vCPU that blocks and is woken
    by the other vCPU's SGI before its core picks again was passed to the policy as that core's current
    vCPU, so it was queued twice and given to both cores (a RuntimeError from the host)."""
    expected = "ipi: CPU 1 woke from WFI on SGI 2 from CPU 0, and answered with SGI 3\n"
    for at in (25, 31, 43, 50):
        vm = VM.from_file(GUESTS["ipi"].path, host=Host(2, scheduler=make_policy(policy, 2)), stage2="demand",
                          vcpus=2, traps=HCR.TWI)
        vm.run(max_insns=at)
        while (result := vm.host.run(duration=21, timeout_s=10).vms[0]).reason is StopReason.STOPPED:
            pass
        assert (result.reason, result.uart) == (StopReason.POWERED_OFF, expected), at


# --- the link and the stream -------------------------------------------------------------------------

def test_the_link_takes_the_latency_once_and_eight_bits_per_byte_at_its_bandwidth():
    link = Link(bandwidth_mbps=8, latency_ms=2)
    assert link.ms(1_000_000) == pytest.approx(2 + 1000)  # 8 Mbit at 8 Mbit/s: one second
    assert link.ms(1_000_000, trips=2) == pytest.approx(4 + 1000)
    assert link.ticks(1_000_000) == 1002 * TICKS_PER_MS


@pytest.mark.parametrize("bandwidth, latency", [(0, 1), (-5, 1), (100, -1)])
def test_a_link_with_no_bandwidth_or_a_negative_latency_is_refused(bandwidth, latency):
    with pytest.raises(ValueError, match="bandwidth|latency"):
        Link(bandwidth, latency)


@pytest.mark.parametrize("count", [0, 1, 7, 1024, 1025, 2100])
def test_pages_travel_in_records_of_at_most_1024_with_each_frame_number(count):
    pages = [(0x4000_0000 + 0x1000 * i, bytes([i % 251]) * 0x1000) for i in range(count)]
    data = stream.page_data(pages)
    records = stream.records(data)
    batches = -(-count // 1024)
    assert [kind for kind, _ in records] == [stream.Record.PAGE_DATA] * batches
    # Xen's framing: an 8-byte record header, count and reserved (8 bytes), 8 bytes per frame number, the pages
    assert len(data) == stream.page_data_size(count) == batches * 16 + count * (8 + 4096)
    assert [p for _, body in records for p in stream.pages_of(body)] == pages


def test_a_stream_cut_short_or_of_an_unknown_record_is_refused():
    data = stream.page_data([(0x4000_0000, bytes(0x1000))])
    with pytest.raises(ValueError, match="cut short"):
        stream.records(data[:-8])
    with pytest.raises(ValueError, match="record header"):
        stream.records(data + b"\x01\x00")
    with pytest.raises(ValueError, match="unknown record type 0x77"):
        stream.records(stream.HEADER.pack(0x77, 0))


# --- what travels besides memory ----------------------------------------------------------------------

def test_captured_state_restored_on_another_host_is_the_same_vcpu_timer_and_uart():
    vm = started(image_from_program(workloads.sleeper(TICKS_PER_MS)), 30_000, traps=HCR.TWI)
    vm.uart.feed(b"typed")
    before = state_of(vm)
    data = snapshot.capture(vm)
    shell = snapshot.empty_vm(data, Host())
    counters = snapshot.restore(shell, data)
    assert counters == [c["counter"] for c in before["vcpus"]]
    shell.host.take_over(shell, counters)
    after = state_of(shell)
    assert after["vcpus"] == before["vcpus"]
    assert shell.uart.state() == vm.uart.state() and shell.uart.read(0, 1) == ord("t")


def test_a_vm_without_stage2_or_with_a_device_vlab_cannot_carry_is_refused():
    plain = VM.from_file(GUESTS["hello"].path)
    with pytest.raises(MigrationError, match="stage-2"):
        snapshot.capture(plain)

    class Blinker:  # a device with registers but no state()/restore()
        name, base, size = "blinker", 0x0a00_0000, 0x1000

        def read(self, offset, size):
            return 0

        def write(self, offset, size, value):
            pass

        def register_name(self, offset):
            return "LED"

    vm = started(dirtier_image(), 1000)
    vm.devices.append(Blinker())
    with pytest.raises(MigrationError, match="'blinker' has no state"):
        migration.precopy(vm, Host())


def test_state_restored_into_a_vm_of_another_shape_is_refused():
    data = snapshot.capture(started(dirtier_image(), 1000))
    other = VM(stage2="demand", ram_size=0x20_0000, host=Host())
    with pytest.raises(MigrationError, match="vCPU"):
        snapshot.restore(other, data)


# --- the interrupt controller travels with the guest ---------------------------------------------------

@st.composite
def distributors(draw):
    """A virtual distributor after random changes to its interrupts, as guests and devices make them."""
    d = Distributor(draw(st.integers(1, 4)), spis=64)
    d.ctlr = draw(st.integers(0, 3))
    for _ in range(draw(st.integers(0, 30))):
        intid = draw(st.integers(0, d.lines - 1))
        fields = draw(st.fixed_dictionaries({}, optional={
            "enabled": st.booleans(), "latched": st.booleans(), "active": st.booleans(), "line": st.booleans(),
            "priority": st.integers(0, 255), "group": st.integers(0, 1), "edge": st.booleans(),
            "targets": st.integers(0, 255), "sources": st.integers(0, 255)}))
        d.change(draw(st.integers(0, d.cpus - 1)), intid, **fields)
    return d


@given(distributors())
def test_a_distributor_restored_from_its_state_is_the_same_interrupt_by_interrupt(original):
    copy = Distributor(original.cpus, spis=64)
    copy.restore(json.loads(json.dumps(original.state())))  # as plain data on the wire
    assert copy.ctlr == original.ctlr
    for cpu in range(original.cpus):
        assert copy.live(cpu) == original.live(cpu)
        assert all(copy.interrupt(cpu, i) == original.interrupt(cpu, i) for i in range(original.lines))


def test_a_vgic_read_while_its_vcpu_is_loaded_is_what_a_world_switch_out_leaves_and_disturbs_nothing():
    vm = started(image_from_file(GUESTS["ticks"].path), 29)  # the timer's interrupt pending and active in GICH_LR0
    interface = vm.vgic.loaded[0]
    lrs, live = list(interface.lrs), vm.vgic.distributor.live(0)
    assert any(lrs)
    state = vm.vgic.state()
    assert (interface.lrs, vm.vgic.distributor.live(0), vm.vgic.loaded) == (lrs, live, {0: interface})
    vm.host.pcpus[0].load(None)  # the world switch out: vgic.put
    assert vm.vgic.state() == state and not any(vm.vgic.saved[0].interface.lrs)


@pytest.mark.parametrize("post_copy", [False, True], ids=["pre-copy", "post-copy"])
@pytest.mark.parametrize("traps", [HCR(0), HCR.TWI], ids=["wfi", "twi"])
@pytest.mark.parametrize("guest, vcpus, points", [
    ("ticks", 1, (0, 28, 29, 150, 300, 550)),  # 28, 29: the timer's interrupt pending, then active, in GICH_LR0
    # 0, 3: an SGI waiting for a vCPU in WFI; 21: CPU 1 just started; 25-54, with TWI: a vCPU blocked and woken
    # by the other's SGI within one round (the host once passed it to the policy as still running there)
    ("ipi", 2, (0, 3, 21, 25, 41, 54, 300, 480)),
])
def test_guests_that_program_the_gic_migrated_anywhere_print_what_they_print_alone(guest, vcpus, points, traps,
                                                                                   post_copy):
    image = image_from_file(GUESTS[guest].path)
    _, left = alone(image, 100_000, vcpus=vcpus, pcpus=vcpus, traps=traps)
    for at in points:
        run = migrate_guest(image, at, INSTANT, post_copy=post_copy, vcpus=vcpus, traps=traps, max_insns=100_000)
        assert run.migration.completed, at
        assert (run.result.reason, run.uart, run.result.registers["x19"]) == (left.reason, left.uart, 0x600D), at


# --- pre-copy -----------------------------------------------------------------------------------------

def test_precopy_sends_everything_first_then_only_what_was_dirtied_and_the_guest_goes_on():
    vm = started(dirtier_image(resident=40, wws=16, every=400), 20_000)
    pages = [ipa for ipa, _ in vm.memory.mapping()]
    m = migration.precopy(vm, Host(), Link(1000, 0.05))
    assert m.completed and m.transfers[0].ipas == tuple(pages)
    for earlier, later in zip(m.transfers, m.transfers[1:]):
        assert later.pages == earlier.dirtied  # each round sends what the one before left dirty
        assert set(later.ipas) <= set(pages) and len(set(later.ipas)) == later.pages
    # its writable working set (16 pages, and the page of its counter) is all the guest dirties: Xen
    # stops below 50, after round 1
    assert m.rounds == 1 and 0 < m.transfers[-1].pages <= 16 + 1
    count = workloads.progress(m.destination_vm)
    assert m.destination_vm.run(max_insns=8_000).reason is StopReason.BUDGET
    assert workloads.progress(m.destination_vm) == count + 20  # a write every 400 instructions, on it goes


def test_xen_stops_after_5_rounds_when_more_than_50_pages_stay_dirty():
    vm = started(dirtier_image(resident=120, wws=100, every=50), 60_000, ram_size=0x40_0000)
    m = migration.precopy(vm, Host(), Link(1000, 0.05), migration.xen)
    assert m.rounds == 5 and all(s.dirty_pages >= 50 for s in m.history)
    assert m.transfers[-1].kind == "stop-and-copy" and m.transfers[-1].pages >= 50


def test_xen_2005_stops_when_a_round_sent_fewer_than_50_pages():
    vm = started(dirtier_image(resident=100, wws=30, every=200), 30_000, ram_size=0x40_0000)
    m = migration.precopy(vm, Host(), Link(1000, 0.05), migration.xen_2005)
    assert m.history[-1].sent_last < 50 and all(s.sent_last >= 50 for s in m.history[:-1])


def test_xen_2005_stops_once_more_than_three_times_the_memory_was_sent():
    """A guest dirtying every page faster than a slow link sends them: the 3x cap stops it (round 3)."""
    vm = started(dirtier_image(resident=60, wws=60, every=20), 10_000)
    m = migration.precopy(vm, Host(), Link(100, 0.05), migration.xen_2005)
    last = m.history[-1]
    assert last.sent_total > 3 * last.memory_pages and m.rounds < 29
    assert all(s.sent_total <= 3 * s.memory_pages for s in m.history[:-1])


def test_a_rule_that_never_stops_is_stopped_by_vlab():
    vm = started(dirtier_image(resident=20, wws=20, every=100), 5_000)
    m = migration.precopy(vm, Host(), FAST, rule=lambda stats: False)
    assert m.rounds == migration.MAX_ROUNDS and "never said stop" in m.why and m.completed


def test_the_rule_sees_each_rounds_figures_as_they_were():
    vm = started(dirtier_image(resident=120, wws=100, every=50), 60_000, ram_size=0x40_0000)
    link = Link(1000, 0.05)
    m = migration.precopy(vm, Host(), link, migration.xen)
    live = [t for t in m.transfers if t.kind == "live"]
    for n, (stats, round_) in enumerate(zip(m.history, live), 1):
        assert (stats.round, stats.sent_last, stats.dirty_pages) == (n, round_.pages, round_.dirtied)
        assert stats.sent_total == sum(t.pages for t in live[:n])
        assert stats.page_ms == pytest.approx((4096 + 8) * 8 / 1e6)  # ms at 1,000 Mbit/s
    last = m.transfers[-1]
    assert m.history[-1].pause_ms == pytest.approx(link.ms(last.bytes))  # what the rule was told the pause costs


def test_the_downtime_is_the_last_pages_and_the_state_on_the_link():
    vm = started(dirtier_image(resident=120, wws=100, every=50), 60_000, ram_size=0x40_0000)
    link = Link(500, 0.2)
    m = migration.precopy(vm, Host(), link)
    last = m.transfers[-1]
    state = len(snapshot.capture(m.destination_vm))  # the same records, captured again on arrival
    assert last.bytes == stream.page_data_size(last.pages) + state
    assert m.downtime_ticks == link.ticks(last.bytes) == round(m.downtime_ms * TICKS_PER_MS)
    assert m.to_json()["downtime_insns"] == m.downtime_ticks


def test_the_source_gives_every_frame_back_and_its_ram_can_no_longer_be_read():
    host = Host()
    free = host.memory.frames.free
    vm = VM.from_image(dirtier_image(), host=host, stage2="demand")
    vm.run(max_insns=5_000)
    m = migration.precopy(vm, Host(), FAST)
    assert m.completed and host.memory.frames.free == free
    assert vm.result().message == "migrated to another host (pre-copy)"
    with pytest.raises(ValueError, match="migrated away"):
        vm.read_memory(workloads.PROGRESS, 8)
    with pytest.raises(MigrationError, match="nothing to migrate"):
        migration.precopy(vm, Host(), FAST)


def test_a_guest_that_ends_during_precopy_stays_and_the_destination_lets_its_vm_go():
    vm = started(image_from_file(GUESTS["hello"].path), 20)
    destination = Host()
    free = destination.memory.frames.free
    m = migration.precopy(vm, destination, Link(1, 10))  # 1 Mbit/s: round 1 outlasts the guest
    assert not m.completed and "powered_off" in m.why and m.destination_vm is None
    assert vm.result().uart == GUESTS["hello"].expected_uart
    assert destination.memory.frames.free == free and destination.vms[0].powered_off


def test_migrating_to_its_own_host_is_refused():
    vm = started(dirtier_image(), 100)
    with pytest.raises(MigrationError, match="another host"):
        migration.precopy(vm, vm.host)


def test_a_vcpu_asleep_in_a_trapped_wfi_migrates_and_wakes_when_its_timer_says():
    """A sleeper blocks in WFI between its rounds; migrated while asleep, it wakes on the destination
    at the same point of its own time, and has done as many rounds as when left alone."""
    image = image_from_program(workloads.sleeper(TICKS_PER_MS))
    ten_ms = 10 * TICKS_PER_MS
    left = VM.from_image(image, host=Host(), stage2="demand", traps=HCR.TWI)
    left.host.run(duration=ten_ms, max_insns=1 << 40)
    vm = VM.from_image(image, host=Host(), stage2="demand", traps=HCR.TWI)
    vm.host.run(duration=TICKS_PER_MS // 2, max_insns=1 << 40)
    assert vm.vcpus[0].state.value == "blocked"
    m = migration.precopy(vm, Host(), FAST)
    moved = m.destination_vm
    counter = moved.vcpus[0].timer.ticks() - moved.vcpus[0].timer.offset
    moved.host.run(duration=ten_ms - counter, max_insns=1 << 40)
    assert workloads.progress(moved) == workloads.progress(left) == 10


def test_a_vm_with_two_vcpus_migrates_with_both():
    vm = started(image_from_program(workloads.spinner(vcpus=2)), 150_000, vcpus=2, pcpus=2)
    counts = [workloads.progress(vm, v) for v in (0, 1)]
    assert min(counts) > 0
    m = migration.precopy(vm, Host(2), FAST)
    m.destination_vm.run(max_insns=150_000)
    assert all(workloads.progress(m.destination_vm, v) > c for v, c in enumerate(counts))


# --- post-copy ----------------------------------------------------------------------------------------

def test_postcopy_pauses_only_for_the_state_then_pulls_what_the_guest_touches():
    vm = started(dirtier_image(resident=60, wws=30, every=100), 20_000)
    pages = {ipa for ipa, _ in vm.memory.mapping()}
    link = Link(1000, 0.05)
    m = migration.postcopy(vm, Host(), link)
    pulls = [t for t in m.transfers if t.kind == "pull"]
    sent = [ipa for t in m.transfers for ipa in t.ipas]
    assert sorted(sent) == sorted(pages)  # every page of the guest, each exactly once
    assert m.downtime_ticks == link.ticks(m.transfers[0].bytes) and m.transfers[0].pages == 0
    assert m.faults == len(pulls) > 0 and m.stall_ticks == sum(t.ticks for t in pulls)
    assert all(t.ticks == link.ticks(t.bytes, trips=2) for t in pulls)  # a request and its answer
    assert m.rounds == 0 and m.downtime_ticks < migration.precopy(started(dirtier_image(60, 30, 100), 20_000),
                                                                    Host(), link).downtime_ticks


def test_after_postcopy_the_vm_runs_with_the_hypervisors_own_handlers_again():
    vm = started(dirtier_image(), 5_000)
    m = migration.postcopy(vm, Host(), FAST)
    assert m.destination_vm.handlers == vm.handlers


# --- the guest prints what it prints unmigrated, and what QEMU prints ---------------------------------

@pytest.mark.parametrize("post_copy", [False, True])
@pytest.mark.parametrize("at", [0, 1, 50_000, 200_000, 500_000, 734_000])
def test_pages_c_migrated_anywhere_prints_what_it_prints_alone_and_checks_its_memory(pages_elf, at, post_copy):
    image = image_from_file(pages_elf)
    _, left = alone(image, 10_000_000)
    run = migrate_guest(image, at, FAST, post_copy=post_copy)
    assert run.result.reason is StopReason.POWERED_OFF and run.result.registers["x19"] == 0x600D
    assert run.uart == left.uart and run.result.instructions == left.instructions
    assert run.migration.completed or at > 700_000  # at the very end, the guest may finish first


def test_pages_c_migrated_prints_what_qemu_prints(pages_elf):
    from vlab.guests import qemu

    if shutil.which(qemu.QEMU) is None:
        pytest.skip(f"SKIPPED: {qemu.QEMU} is missing -- install {qemu.QEMU_PACKAGE}")
    run = migrate_guest(image_from_file(pages_elf), 300_000, Link(10_000, 0.01))
    assert run.migration.completed and run.migration.rounds >= 1
    assert run.uart == qemu.run_on_qemu(pages_elf).uart


@pytest.mark.parametrize("name", ["uart", "gicd"])
@pytest.mark.parametrize("corrupt", [lambda s: "nonsense", lambda s: {}, lambda s: {**s, **{k: None for k in s}}],
                         ids=["not a record", "empty", "every field null"])
def test_a_malformed_device_record_in_a_stream_is_refused_naming_the_device(name, corrupt):
    vm = started(image_from_program(workloads.sleeper(TICKS_PER_MS)), 30_000, traps=HCR.TWI)
    data, out = snapshot.capture(vm), []
    for kind, body in stream.records(data):
        if kind is stream.Record.DEVICE and json.loads(body)["name"] == name:
            record = json.loads(body)
            body = json.dumps({"name": name, "state": corrupt(record["state"])}).encode()
        out.append(stream.record(kind, body))
    shell = snapshot.empty_vm(data, Host())
    with pytest.raises(MigrationError, match=f"the migrated state of the VM's '{name}' is malformed"):
        snapshot.restore(shell, b"".join(out))


def test_a_device_record_that_is_not_a_name_and_a_state_is_refused():
    vm = started(image_from_program(workloads.sleeper(TICKS_PER_MS)), 30_000, traps=HCR.TWI)
    data = snapshot.capture(vm)
    out = [stream.record(kind, b"[1, 2]" if kind is stream.Record.DEVICE else body)
           for kind, body in stream.records(data)]
    with pytest.raises(MigrationError, match="a DEVICE record is \\[1, 2\\], not a device's name and state"):
        snapshot.restore(snapshot.empty_vm(data, Host()), b"".join(out))
