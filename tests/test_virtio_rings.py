"""Split virtqueues under random traffic: every byte delivered once, in order; one notification per batch.

A driver written from the specification (tests/virtio_driver.py) sends random
batches of random chains through queues of random power-of-2 sizes, so the ring
slots wrap many times; one long run wraps the free-running 16-bit indices too.
A fuzzer then lets a driver write anything at all into the rings and registers:
the device may ask for a reset, but never raises or runs away.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from virtio_driver import F_EVENT_IDX, F_VERSION_1, NEEDS_RESET, RAM_BASE, Driver, guest_ram
from vlab.machine.virtio_console import VirtioConsole
from vlab.machine.virtio_mmio import VirtioMmioBus

SEGMENT = st.binary(min_size=1, max_size=12)


@st.composite
def traffic(draw):
    """A queue size, and batches of chains that each fit the queue's descriptors."""
    size = draw(st.sampled_from([1, 2, 4, 8, 16]))
    batches = []
    for _ in range(draw(st.integers(1, 40))):
        room = size
        chains = []
        while room and (not chains or draw(st.booleans())):
            segments = draw(st.lists(SEGMENT, min_size=1, max_size=room))
            chains.append(segments)
            room -= len(segments)
        batches.append(chains)
    return size, batches


def run(size, batches, features, device_polls=False, **setup):
    ram, memory = guest_ram()
    console = VirtioConsole()
    bus = VirtioMmioBus(memory, [console], device_polls=device_polls)
    driver = Driver(bus, ram)
    driver.setup(size, features, **setup)
    for chains in batches:
        driver.send_batch(chains)
        if device_polls:
            bus.poll()
        driver.reap()
    return console, driver, bus.transports[31]


@given(traffic(), st.sampled_from([F_VERSION_1, F_VERSION_1 | F_EVENT_IDX]))
def test_every_byte_arrives_once_in_order_with_one_notification_per_batch(plan, features):
    size, batches = plan
    console, driver, transport = run(size, batches, features)
    sent = b"".join(b"".join(segments) for chains in batches for segments in chains)
    assert bytes(console.output) == sent
    assert driver.kicks == transport.notifications[1] == len(batches)
    heads = [h for chains in batches for h in _heads(chains, size)]
    assert driver.returned == [(h, 0) for h in heads]  # every chain returned once, in order
    assert not driver.status & NEEDS_RESET


def _heads(chains, size):
    first, out = 0, []
    for segments in chains:
        out.append(first % size)
        first += len(segments)
    return out


@given(traffic(), st.sampled_from([F_VERSION_1, F_VERSION_1 | F_EVENT_IDX]))
def test_a_polling_device_gets_every_byte_with_no_notification_at_all(plan, features):
    size, batches = plan
    console, driver, transport = run(size, batches, features, device_polls=True)
    assert bytes(console.output) == b"".join(b"".join(s) for chains in batches for s in chains)
    assert driver.kicks == 0 and transport.notifications == [0, 0]


@given(traffic())
def test_no_interrupt_means_none_and_interrupts_otherwise_come_once_per_batch(plan):
    size, batches = plan
    _, _, quiet = run(size, batches, F_VERSION_1, no_interrupt=True)
    assert quiet.interrupts == 0
    _, _, loud = run(size, batches, F_VERSION_1)
    assert loud.interrupts == len(batches)


@given(traffic())
def test_with_event_idx_and_used_event_left_at_0_only_the_first_buffer_interrupts(plan):
    size, batches = plan
    _, _, transport = run(size, batches, F_VERSION_1 | F_EVENT_IDX, used_event=0)
    assert transport.interrupts == 1  # and again after the 65536th buffer (virtio 1.2, 2.7.10)


@settings(max_examples=1)
@given(st.just(None))
def test_the_16_bit_indices_wrap_and_delivery_stays_in_order(_):
    # 70,000 one-byte chains, 7 per batch, through a 8-entry queue: avail.idx and used.idx wrap past 65535
    batches = [[[bytes([(7 * b + i) % 251])] for i in range(7)] for b in range(10_000)]
    console, driver, _ = run(8, batches, F_VERSION_1 | F_EVENT_IDX, used_event=0)
    assert bytes(console.output) == bytes((7 * b + i) % 251 for b in range(10_000) for i in range(7))
    assert driver.avail_idx == 70_000 % 65536 and driver.u16(driver.used + 2) == 70_000 % 65536
    assert len(driver.returned) == 70_000


# --- a driver that writes anything at all ------------------------------------------------------

REGISTERS = [0x014, 0x020, 0x024, 0x030, 0x038, 0x044, 0x050, 0x064, 0x070, 0x080, 0x084, 0x090, 0x094,
             0x0A0, 0x0A4, 0x108]
ADDRESS = st.one_of(st.integers(0, 0xFFFF_FFFF), st.integers(RAM_BASE, RAM_BASE + 0x40_0000 + 64))


@given(st.sampled_from([1, 2, 4, 8]), st.binary(min_size=16 * 8, max_size=16 * 8), st.binary(max_size=24),
       st.lists(st.tuples(st.sampled_from(REGISTERS), ADDRESS), max_size=30))
def test_garbage_rings_and_register_writes_never_raise(size, table, avail_tail, writes):
    ram, memory = guest_ram()
    console = VirtioConsole()
    bus = VirtioMmioBus(memory, [console])
    driver = Driver(bus, ram)
    driver.setup(size)
    struct.pack_into(f"{len(table)}s", ram, driver.desc - RAM_BASE, table)  # any descriptors at all
    struct.pack_into(f"{len(avail_tail)}s", ram, driver.avail - RAM_BASE + 2, avail_tail)  # any idx and ring
    driver.w(0x050, 1)
    for register, value in writes:
        driver.w(register, value)
        bus.poll()
    transport = bus.transports[31]
    assert transport.status & NEEDS_RESET or transport.error is None
    assert len(console.output) <= console.output_limit
