"""The virtio console migrates with its VM (vlab.machine.virtio_mmio's state and restore).

A guest that drives it, migrated anywhere -- between its driver's setup steps, between filling a
batch and notifying, by pre-copy or by post-copy -- prints exactly what it prints unmigrated and
what QEMU prints; the transport's state captured on one host and restored on another is the same
state, and behaves the same from there on; a malformed or foreign state is refused, by name.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from migration_twins import alone
from test_c_guests import elf  # noqa: F401 - a fixture
from test_virtio_guest import IRQ_DRIVEN_TEXT, UART, VIRTIO_CONSOLE  # what QEMU prints (its tests check)
from virtio_driver import ACK, DRIVER, DRIVER_OK, F_EVENT_IDX, F_VERSION_1, FEATURES_OK, RAM_BASE, Driver, guest_ram

from vlab.arch.hcr import HCR
from vlab.errors import MigrationError
from vlab.guests.para_or_full import Build
from vlab.hyp import Host, snapshot, stream
from vlab.hyp.link import Link
from vlab.hyp.migration_experiment import migrate_guest
from vlab.machine.guest_memory import GuestMemory
from vlab.machine.loader import image_from_file
from vlab.machine.virtio_console import VirtioConsole
from vlab.machine.virtio_mmio import VirtioMmioBus

# para_or_full.S printing through the virtio console: test_pv_kernel checks that QEMU prints
# build.text() for this build; the second also sleeps on its timer between lines.
KERNEL = Build(frozenset({"VIRTIO"}), batch=4, lines=12, ticks=0)
SLEEPER = Build(frozenset({"VIRTIO"}), batch=3, lines=5, ticks=2)
MAX_INSNS = 1_000_000
# Pre-copy sends while the guest runs: over a slow link these short guests end before round 1 is
# on the other side. Post-copy resumes at the migration point whatever the link; over a slow one
# the guest touches pages long before the source pushes them.
PRE_COPY_LINKS = [Link(100_000, 0), Link(10_000, 0.01)]
POST_COPY_LINKS = [Link(100, 0.5), Link(10_000, 0.01)]
MIGRATIONS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def driver_instants(vm) -> list[int]:
    """When the guest accessed its virtio transports (instructions retired then), in order."""
    return sorted({a.tick for a in vm.mmio_trace if a.device == "virtio"})


@st.composite
def migration_points(draw, instants: list[int], total: int):
    """An instruction count to migrate at: anywhere in the run, or at one of the driver's accesses to
    its transport or up to 30 instructions before it -- between its setup steps, or after it filled
    a batch and before it notified."""
    if draw(st.booleans()):
        return draw(st.integers(0, total - 1))
    return max(0, draw(st.sampled_from(instants)) - draw(st.integers(0, 30)))


def migrated(image, data, polls: bool = False, traps: HCR = HCR(0)):
    """`image` migrated at a drawn point, by a drawn mode over a drawn link; and its run left alone."""
    left, expected = alone(image, MAX_INSNS, virtio_polls=polls, traps=traps)
    at = data.draw(migration_points(driver_instants(left), expected.instructions), label="at")
    post_copy = data.draw(st.booleans(), label="post_copy")
    link = data.draw(st.sampled_from(POST_COPY_LINKS if post_copy else PRE_COPY_LINKS), label="link")
    return migrate_guest(image, at, link, post_copy=post_copy, virtio_polls=polls, traps=traps), left, expected


def assert_same_run(run, left, expected) -> None:
    got = run.result
    assert (got.reason, got.uart, got.virtio_console) == (expected.reason, expected.uart, expected.virtio_console)
    if run.destination is not None:  # it migrated: its virtio console arrived, and went on as it would have
        assert run.destination.virtio.state() == left.virtio.state()


# --- guests, migrated anywhere -------------------------------------------------------------------------

@MIGRATIONS
@given(st.sampled_from([KERNEL, SLEEPER]), st.booleans(), st.data())
def test_a_kernel_on_the_virtio_console_migrated_anywhere_prints_what_it_prints_unmigrated(build, polls, data):
    run, left, expected = migrated(build.image(), data, polls)
    assert_same_run(run, left, expected)
    assert run.result.uart + run.result.virtio_console == build.text()


@MIGRATIONS
@given(st.data())
def test_the_c_driver_migrated_anywhere_prints_what_qemu_prints(elf, data):  # noqa: F811 - the fixture
    run, left, expected = migrated(image_from_file(elf("virtio_console")), data)
    assert_same_run(run, left, expected)
    assert (run.result.uart, run.result.virtio_console) == (UART, VIRTIO_CONSOLE)


@MIGRATIONS
@given(st.sampled_from([HCR(0), HCR.TWI]), st.data())
def test_the_interrupt_driven_c_driver_migrated_anywhere_prints_what_qemu_prints(elf, traps, data):  # noqa: F811
    """virtio_irq.c sleeps until its used-buffer interrupt: migrated between a notify and the
    acknowledgement, the line is high on the destination -- and falls when the guest acknowledges."""
    run, left, expected = migrated(image_from_file(elf("virtio_irq")), data, traps=traps)
    assert_same_run(run, left, expected)
    assert run.result.virtio_console == IRQ_DRIVEN_TEXT and run.result.uart.endswith("0 spurious, 0 other\n"
                                                                                       "all checks passed\n")


def test_post_copy_pulls_the_pages_a_device_reads_before_the_guest_touches_them_again(elf):  # noqa: F811
    """The C driver migrated by post-copy at each notify, over a slow link: on the destination the
    device reads the available ring before the guest touches its page again, so the device pulls it
    -- a pull with no stage-2 fault in the trap log -- and the vCPU whose notify it serves waits for
    it. (Read as zeros, the ring would say "nothing new", and the guest would wait for ever.)"""
    image = image_from_file(elf("virtio_console"))
    left, expected = alone(image, MAX_INSNS)
    notifies = [a.tick for a in left.mmio_trace if a.register.endswith("QueueNotify")]
    assert len(notifies) == 6
    for at in notifies:
        run = migrate_guest(image, at, POST_COPY_LINKS[0], post_copy=True)
        m = run.migration
        faults = [e for e in run.destination.trap_log if "post-copy: IPA page" in e.action]
        assert m.completed and m.faults > len(faults)
        assert m.stall_ticks == sum(t.ticks for t in m.transfers if t.kind == "pull")
        assert_same_run(run, left, expected)


# --- the state, from one host to another ---------------------------------------------------------------

def started_kernel(instructions: int = 2_000):
    """KERNEL in a VM on a host of its own, stopped mid-run with its virtio queue set up and used."""
    vm, _ = alone(KERNEL.image(), instructions)
    transport = vm.virtio.transports[31]
    assert transport.status & DRIVER_OK and transport.queues[1].ring.used_idx > 0
    return vm


def test_the_virtio_state_captured_on_one_host_and_restored_on_another_is_the_same():
    vm = started_kernel()
    vm.virtio_console.feed(b"typed, not yet received")
    data = snapshot.capture(vm)
    shell = snapshot.empty_vm(data, Host())
    snapshot.restore(shell, data)
    assert shell.virtio.state() == vm.virtio.state() == json.loads(json.dumps(vm.virtio.state()))
    assert shell.virtio.state()["transports"]["31"]["device_state"]["input"] == list(b"typed, not yet received")
    assert all(shell.virtio.read(31 * 0x200 + r, 4) == vm.virtio.read(31 * 0x200 + r, 4) for r in range(0, 0x100, 4))
    assert shell.virtio_console.text == ""  # what the guest printed stays in the source's records


OPS = st.one_of(
    st.tuples(st.just("send"), st.lists(st.binary(min_size=1, max_size=12), min_size=1, max_size=3)),
    st.tuples(st.just("write"), st.sampled_from([0x014, 0x020, 0x024, 0x030, 0x038, 0x044, 0x050, 0x064, 0x070,
                                                  0x080, 0x0AC, 0x100 + 8]),
              st.sampled_from([0, 1, 2, 3, 4, 0xF, 0x20, 0xFFFF_FFFF])),
    st.tuples(st.just("feed"), st.binary(min_size=1, max_size=8)),
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([1, 4, 16]), st.sampled_from([F_VERSION_1, F_VERSION_1 | F_EVENT_IDX]), st.booleans(),
       st.lists(OPS, max_size=12), st.lists(OPS, max_size=12))
def test_a_transport_restored_from_its_state_behaves_as_the_original_from_then_on(size, features, polls, before,
                                                                                  after):
    """A driver sets the console up and does `before` (batches, stray register writes, the user's
    typing); the transport's state crosses as JSON to a fresh bus over a copy of the RAM; then both
    go through `after`. They read the same registers, hold the same state, raise the same interrupt
    edges and print the same from the cut on."""
    def board(ram):
        edges = []
        bus = VirtioMmioBus(GuestMemory.of_buffer(ram, RAM_BASE), [VirtioConsole()],
                            interrupt=lambda intid, level: edges.append((intid, level)), device_polls=polls)
        return bus, edges

    def play(driver, bus, ops):
        for op in ops:
            if op[0] == "send":
                driver.send_batch([op[1]])
            elif op[0] == "write":
                driver.w(op[1], op[2])
            else:
                bus.transports[31].device.feed(op[1])
            bus.poll()

    ram, _ = guest_ram()
    bus, edges = board(ram)
    driver = Driver(bus, ram)
    driver.setup(size, features)
    play(driver, bus, before)
    ram_copy = bytearray(ram)
    twin_bus, twin_edges = board(ram_copy)
    twin_bus.restore(json.loads(json.dumps(bus.state())))
    twin = copy.copy(driver)
    twin.bus, twin.ram = twin_bus, ram_copy
    assert twin_bus.state() == bus.state()
    printed, cut = len(bus.transports[31].device.output), len(edges)
    play(driver, bus, after)
    play(twin, twin_bus, after)
    assert twin_bus.state() == bus.state() and ram_copy == ram
    assert all(twin.r(r) == driver.r(r) for r in range(0, 0x100, 4))
    assert twin_edges == edges[cut:]
    assert bytes(twin_bus.transports[31].device.output) == bytes(bus.transports[31].device.output[printed:])


# --- a state that is not one -------------------------------------------------------------------------

def _bus(s):
    return s


def _transport(s):
    return s["transports"]["31"]


def _queue(s):
    return _transport(s)["queues"][1]


def _ring(s):
    return _queue(s)["ring"]


def _console(s):
    return _transport(s)["device_state"]


def _set(record, key, value):
    """A corruption: field `key` of the record `record(state)` picks becomes `value`."""
    def change(s):
        record(s)[key] = value
        return s
    return change


def _too_far_behind(s):
    ring, size = _ring(s), _queue(s)["size"]
    ring["used_idx"] = (ring["last_avail"] - size - 1) & 0xFFFF
    return s


MALFORMED = {
    "not-a-record": (lambda s: [], "virtio: the migrated state is list"),
    "missing-field": (lambda s: {k: v for k, v in s.items() if k != "polls"}, "lacks polls"),
    "unknown-field": (lambda s: s | {"mtu": 1500}, "has fields this device does not: mtu"),
    "polls-differ": (_set(_bus, "polls", True), "a driver told to not notify its device would wait for ever"),
    "other-transports": (_set(_bus, "transports", {"30": None}), "the states of transport\\(s\\) 31"),
    "other-device": (_set(_transport, "device", "virtio-blk"), "'virtio-console', the device on this transport"),
    "status-too-wide": (_set(_transport, "status", 256),
                        "virtio31: the migrated status is 256, not a number from 0 to 0xff"),
    "status-not-a-number": (_set(_transport, "status", "running"), "virtio31: the migrated status is 'running'"),
    "features-not-offered": (_set(_transport, "features", F_VERSION_1 | 1 << 40),
                             "features this virtio-console offers"),
    "interrupt-bits": (_set(_transport, "interrupt_status", 4), "bits 0 \\(used buffer\\) and 1"),
    "queues-missing": (_set(_transport, "queues", []), "the migrated queues is \\[\\], not a list of 2"),
    "ring-on-idle-queue": (_set(_queue, "ready", False),
                           "virtio31 queue 1: the migrated ring .* null: the queue is not ready"),
    "ring-outside-ram": (_set(_queue, "desc", 0x1000),
                         "virtio31 queue 1: the migrated queue has a ring no driver could have set up"),
    "size-not-power-of-2": (_set(_queue, "size", 3), "queue size 3 is not a power of 2"),
    "index-a-bool": (_set(_ring, "last_avail", True), "virtio31 queue 1 ring: the migrated last_avail is True"),
    "too-many-in-flight": (_too_far_behind, "at most 4 entries behind last_avail"),
    "device-state-null": (_set(_transport, "device_state", None),
                          "virtio31 virtio-console: the migrated state is NoneType"),
    "input-not-bytes": (_set(_console, "input", [104, 300]), "a list of bytes \\(0 to 255\\)"),
}


@pytest.mark.parametrize("corrupt, message", MALFORMED.values(), ids=MALFORMED)
def test_a_malformed_or_foreign_virtio_state_is_refused_by_name_and_changes_nothing(corrupt, message):
    state = started_kernel().virtio.state()
    assert _queue(state)["size"] == 4
    target = started_kernel(3_500)  # further on: its state differs
    before = target.virtio.state()
    with pytest.raises(MigrationError, match=message):
        target.virtio.restore(corrupt(copy.deepcopy(state)))
    assert target.virtio.state() == before


def test_a_stream_carrying_a_corrupt_virtio_record_is_refused_before_the_vm_runs():
    data = snapshot.capture(started_kernel())
    out = []
    for kind, body in stream.records(data):
        if kind is stream.Record.DEVICE and json.loads(body)["name"] == "virtio":
            device = json.loads(body)
            _transport(device["state"])["queue_sel"] = -1
            body = json.dumps(device).encode()
        out.append(stream.record(kind, body))
    shell = snapshot.empty_vm(data, Host())
    with pytest.raises(MigrationError, match="virtio31: the migrated queue_sel is -1, not a number"):
        snapshot.restore(shell, b"".join(out))


def _driven_state() -> dict:
    """A bus whose driver set up the transmitq (EVENT_IDX on) and sent a batch, as plain data."""
    ram, memory = guest_ram()
    bus = VirtioMmioBus(memory, [VirtioConsole()])
    driver = Driver(bus, ram)
    driver.setup(8, F_VERSION_1 | F_EVENT_IDX)
    driver.send_batch([[b"hello"]])
    assert driver.status == ACK | DRIVER | FEATURES_OK | DRIVER_OK
    return bus.state()


STATE = _driven_state()
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2, 1 << 65) | st.text(max_size=4),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_virtio_state_changed_anywhere_is_refused_or_taken_as_it_is(data):
    """Any field of a real state replaced by any JSON value: restore refuses it with a MigrationError,
    or takes it -- and then gives it back as its state. Never another exception."""
    state = copy.deepcopy(STATE)
    where, key = state, None
    while True:  # walk down to a field chosen at random
        keys = list(range(len(where))) if isinstance(where, list) else sorted(where)
        key = data.draw(st.sampled_from(keys))
        if not isinstance(where[key], (dict, list)) or not where[key] or data.draw(st.booleans()):
            break
        where = where[key]
    where[key] = data.draw(JSON)
    target = VirtioMmioBus(guest_ram()[1], [VirtioConsole()])
    try:
        target.restore(state)
    except MigrationError:
        return
    assert target.state() == state


# --- the command line ----------------------------------------------------------------------------------

def vlab_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlab", "run", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("mode", [(), ("--post-copy",)], ids=["pre-copy", "post-copy"])
def test_vlab_run_migrates_the_c_driver_mid_batch_and_its_json_has_both_outputs(elf, mode):  # noqa: F811
    done = vlab_run(str(elf("virtio_console")), "--virt", "--migrate-at", "2750", "--bandwidth", "10000",
                    "--json", *mode)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["uart"], out["virtio_console"], out["stop"]) == (UART, VIRTIO_CONSOLE, "powered_off")
    assert out["migration"]["completed"] and out["migration"]["mode"] == ("post-copy" if mode else "pre-copy")


def test_vlab_run_in_text_mode_prints_the_migrated_kernels_virtio_console_under_its_heading(tmp_path):
    source = tmp_path / "kernel.S"
    source.write_text(KERNEL.source())
    done = vlab_run(str(source), "--virt", "--migrate-at", "1500", "--post-copy")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"--- virtio console ---\n{KERNEL.text()}"
    assert "migration: post-copy" in done.stderr
