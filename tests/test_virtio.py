"""virtio-mmio version 2 and the virtio console, register by register, as the virtio 1.2 spec defines them.

Expected values are the specification's (register offsets, magic, status bits,
feature bits) or QEMU 7.2's where the spec leaves a choice to the device (vendor
ID, QueueSizeMax, which transport the first device gets), written out as literals.
"""

from __future__ import annotations

import struct

import pytest

from virtio_driver import (ACK, DRIVER, DRIVER_OK, F_EVENT_IDX, F_VERSION_1, FEATURES_OK, INDIRECT,
                                 NEEDS_RESET, NEXT, RAM_BASE, RAM_SIZE, Driver, guest_ram)
from vlab.machine.guest_memory import GuestMemory, GuestMemoryError
from vlab.machine.virtio_console import VirtioConsole
from vlab.machine.virtio_mmio import VirtioMmioBus


@pytest.fixture
def setup():
    """A console on QEMU's first virtio slot, a driver for its transmitq, and a record of interrupt lines."""
    ram, memory = guest_ram()
    lines: list[tuple[int, bool]] = []
    console = VirtioConsole()
    bus = VirtioMmioBus(memory, [console], interrupt=lambda intid, level: lines.append((intid, level)))
    return bus, console, Driver(bus, ram), lines


def reg(bus: VirtioMmioBus, n: int, offset: int) -> int:
    return bus.read(n * 0x200 + offset, 4)


# --- discovery ---------------------------------------------------------------------------

def test_the_bus_covers_qemu_virts_32_transports_from_0x0a000000():
    bus = VirtioMmioBus(guest_ram()[1])
    assert (bus.base, bus.size) == (0x0A00_0000, 32 * 0x200)


def test_every_transport_answers_magic_and_version_2_and_empty_ones_device_id_0(setup):
    bus, *_ = setup
    for n in range(32):
        assert reg(bus, n, 0x000) == 0x74726976  # "virt", little-endian
        assert reg(bus, n, 0x004) == 2
        assert reg(bus, n, 0x00C) == 0x554D4551  # QEMU's vendor ID
    assert [n for n in range(32) if reg(bus, n, 0x008)] == [31]
    assert reg(bus, 31, 0x008) == 3  # a console
    assert bus.transport_of(setup[1]) == 31


def test_devices_take_transports_from_the_top_as_on_qemu():
    first, second = VirtioConsole(), VirtioConsole()
    bus = VirtioMmioBus(guest_ram()[1], [first, second])
    assert (bus.transport_of(first), bus.transport_of(second)) == (31, 30)


def test_register_names_say_which_transport_and_register(setup):
    bus, *_ = setup
    assert bus.register_name(31 * 0x200 + 0x050) == "virtio31.QueueNotify"
    assert bus.register_name(0x070) == "virtio0.Status"
    assert bus.register_name(31 * 0x200 + 0x108) == "virtio31.config+0x8"


# --- features and status -----------------------------------------------------------------

def test_features_offered_are_version_1_event_idx_and_emergency_write(setup):
    bus, _, driver, _ = setup
    words = []
    for sel in (0, 1, 2):
        driver.w(0x014, sel)
        words.append(driver.r(0x010))
    assert words[0] == (1 << 29) | (1 << 2)  # VIRTIO_F_EVENT_IDX, VIRTIO_CONSOLE_F_EMERG_WRITE
    assert words[1] == 1  # bit 32: VIRTIO_F_VERSION_1
    assert words[2] == 0


def test_features_ok_sticks_only_for_an_offered_subset_with_version_1(setup):
    _, _, driver, _ = setup
    assert driver.negotiate(F_VERSION_1)
    assert driver.negotiate(F_VERSION_1 | F_EVENT_IDX)
    assert not driver.negotiate(0)  # a modern device does not serve legacy drivers
    assert not driver.negotiate(F_VERSION_1 | (1 << 28))  # INDIRECT_DESC is not offered
    assert not driver.negotiate(F_VERSION_1 | (1 << 1))  # nor MULTIPORT


def test_writing_0_to_status_resets_the_device(setup):
    _, _, driver, _ = setup
    driver.setup(4)
    assert driver.status == ACK | DRIVER | FEATURES_OK | DRIVER_OK
    driver.w(0x070, 0)
    assert driver.status == 0
    driver.w(0x030, 1)
    assert driver.r(0x044) == 0  # QueueReady cleared
    assert driver.r(0x060) == 0


def test_queue_size_max_is_1024_for_port_0s_two_queues_and_0_for_others(setup):
    _, _, driver, _ = setup
    sizes = []
    for q in range(4):
        driver.w(0x030, q)
        sizes.append(driver.r(0x034))
    assert sizes == [1024, 1024, 0, 0]


def test_there_is_no_shared_memory_region(setup):
    _, _, driver, _ = setup
    driver.w(0x0AC, 0)
    assert [driver.r(off) for off in (0x0B0, 0x0B4, 0x0B8, 0x0BC)] == [0xFFFF_FFFF] * 4


def test_register_accesses_that_are_not_32_bit_read_0_and_write_nothing(setup):
    bus, _, driver, _ = setup
    assert bus.read(31 * 0x200, 2) == 0
    bus.write(31 * 0x200 + 0x070, 1, ACK)
    assert driver.status == 0


def test_console_config_space_reads_no_size_and_one_port(setup):
    bus, *_ = setup
    base = 31 * 0x200 + 0x100
    assert bus.read(base, 2) == 0 and bus.read(base + 2, 2) == 0  # cols, rows: F_SIZE not offered
    assert bus.read(base + 4, 4) == 1  # max_nr_ports
    assert bus.read(base + 12, 4) == 0  # past the config space


def test_emergency_write_prints_a_byte_even_before_setup(setup):
    bus, console, driver, _ = setup
    for byte in b"SOS\n":
        bus.write(31 * 0x200 + 0x108, 4, 0x100 | byte)  # only the low byte counts
    assert console.text == "SOS\n"
    assert driver.status == 0


# --- transmitting ----------------------------------------------------------------------------

def test_a_batch_is_printed_in_order_with_one_notification(setup):
    _, console, driver, lines = setup
    driver.setup(8)
    heads = driver.send_batch([[b"Hello, "], [b"vir", b"tio", b"!\n"], [b"bye\n"]])
    assert console.text == "Hello, virtio!\nbye\n"
    assert driver.kicks == 1 and driver.bus.transports[31].notifications == [0, 1]
    assert driver.reap() == [(h, 0) for h in heads]  # every chain back, nothing written into it
    assert lines == [(48 + 31, True)]  # transport 31 interrupts on SPI 47 = INTID 79
    assert driver.r(0x060) == 1  # a used-buffer notification
    driver.w(0x064, 1)
    assert driver.r(0x060) == 0 and lines[-1] == (79, False)


def test_no_interrupt_flag_suppresses_the_used_buffer_interrupt(setup):
    _, console, driver, lines = setup
    driver.setup(4, no_interrupt=True)
    driver.send_batch([[b"quiet\n"]])
    assert console.text == "quiet\n" and lines == [] and driver.r(0x060) == 0


def test_with_event_idx_the_device_interrupts_when_used_idx_passes_used_event(setup):
    _, console, driver, lines = setup
    driver.setup(8, F_VERSION_1 | F_EVENT_IDX, used_event=2)  # "tell me once entry 2 is used"
    driver.send_batch([[b"a"], [b"b"]])  # used.idx 0 -> 2: entry 2 not yet used
    assert lines == []
    driver.send_batch([[b"c"]])  # used.idx 2 -> 3: entry 2 used
    assert lines == [(79, True)] and console.text == "abc"


def test_with_event_idx_the_device_asks_to_be_notified_for_the_next_entry(setup):
    _, _, driver, _ = setup
    driver.setup(8, F_VERSION_1 | F_EVENT_IDX)
    driver.send_batch([[b"x"], [b"y"], [b"z"]])
    assert driver.u16(driver.used + 4 + 8 * 8) == 3  # avail_event: the next index the driver will use


def test_a_polling_device_asks_for_no_notifications_and_prints_when_polled():
    for features in (F_VERSION_1, F_VERSION_1 | F_EVENT_IDX):
        ram, memory = guest_ram()
        console = VirtioConsole()
        bus = VirtioMmioBus(memory, [console], device_polls=True)
        driver = Driver(bus, ram)
        driver.setup(8, features)
        driver.send_batch([[b"no "], [b"exit\n"]])
        assert driver.kicks == 0 and console.text == ""
        bus.poll()
        assert console.text == "no exit\n"
        driver.send_batch([[b"again\n"]])
        bus.poll()
        assert driver.kicks == 0 and console.text == "no exit\nagain\n"


def test_a_huge_buffer_is_kept_up_to_the_output_limit_and_counted():
    ram, memory = guest_ram()
    console = VirtioConsole(output_limit=100)
    bus = VirtioMmioBus(memory, [console])
    driver = Driver(bus, ram)
    driver.setup(4)
    driver.put_desc(0, RAM_BASE, RAM_SIZE, 0, 0)  # all of RAM, 4 MiB
    driver.make_available(0)
    assert len(console.output) == 100 and console.dropped == RAM_SIZE - 100
    assert driver.reap() == [(0, 0)]


# --- receiving ---------------------------------------------------------------------------------

def test_typed_input_fills_the_receive_buffers_the_driver_offered():
    ram, memory = guest_ram()
    console = VirtioConsole()
    bus = VirtioMmioBus(memory, [console])
    driver = Driver(bus, ram, queue=0)
    driver.setup(4)
    console.feed("hello!")
    heads = driver.send_batch([[bytes(4)], [bytes(8)]], writable=1)
    got = driver.reap()
    assert got == [(heads[0], 4), (heads[1], 2)]
    first = struct.unpack_from("<Q", ram, driver.desc - RAM_BASE)[0] - RAM_BASE
    assert bytes(ram[first:first + 4]) == b"hell"


# --- bad drivers: never a hang, never an exception; DEVICE_NEEDS_RESET and a reason ----------------

def needs_reset(driver: Driver, *words: str) -> None:
    transport = driver.bus.transports[driver.n]
    assert driver.status & NEEDS_RESET, "the device should have asked for a reset"
    for word in words:
        assert word in transport.error, transport.error


def test_a_descriptor_outside_ram_needs_reset_and_reads_nothing(setup):
    _, console, driver, lines = setup
    driver.setup(4)
    driver.put_desc(0, 0x1000_0000, 16, 0, 0)  # below RAM
    driver.make_available(0)
    needs_reset(driver, "0x10000000", "outside the guest's RAM")
    assert console.output == b"" and driver.reap() == []
    assert driver.r(0x060) & 2 and lines[-1] == (79, True)  # a configuration-change interrupt


def test_a_buffer_running_past_the_end_of_ram_needs_reset(setup):
    _, console, driver, _ = setup
    driver.setup(4)
    driver.put_desc(0, RAM_BASE + RAM_SIZE - 4, 8, 0, 0)
    driver.make_available(0)
    needs_reset(driver, "outside")
    assert console.output == b""


@pytest.mark.parametrize("links", [[0], [1, 0], [1, 2, 3, 1]], ids=["self", "pair", "tail-loop"])
def test_a_descriptor_loop_needs_reset(setup, links):
    _, _, driver, _ = setup
    driver.setup(4)
    for index, following in enumerate(links):
        driver.put_desc(index, driver.buffer(b"x"), 1, NEXT, following)
    driver.make_available(0)
    needs_reset(driver, "loop")


def test_a_next_index_past_the_table_needs_reset(setup):
    _, _, driver, _ = setup
    driver.setup(4)
    driver.put_desc(0, driver.buffer(b"x"), 1, NEXT, 9)
    driver.make_available(0)
    needs_reset(driver, "descriptor 9")


def test_an_avail_idx_further_ahead_than_the_queue_needs_reset(setup):
    _, _, driver, _ = setup
    driver.setup(4)
    driver.avail_idx = 5
    driver.publish_and_kick(0)
    needs_reset(driver, "5 new chains", "4 entries")


def test_an_indirect_descriptor_needs_reset_as_the_feature_was_not_offered(setup):
    _, _, driver, _ = setup
    driver.setup(4)
    driver.put_desc(0, driver.buffer(bytes(16)), 16, INDIRECT, 0)
    driver.make_available(0)
    needs_reset(driver, "INDIRECT")


def test_a_device_writable_buffer_on_the_transmitq_needs_reset(setup):
    _, console, driver, _ = setup
    driver.setup(4)
    driver.send_batch([[b"abc", b"def"]], writable=1)
    needs_reset(driver, "device-writable")


@pytest.mark.parametrize("size", [0, 3, 6, 100, 2048])
def test_a_queue_size_that_is_not_a_power_of_2_up_to_the_maximum_needs_reset(setup, size):
    _, _, driver, _ = setup
    driver.setup(size, driver_ok=False)
    needs_reset(driver, f"queue size {size}")


def test_rings_misaligned_or_outside_ram_need_reset(setup):
    _, _, driver, _ = setup
    driver.used += 2  # 4-byte alignment required
    driver.setup(4, driver_ok=False)
    needs_reset(driver, "used ring", "aligned")
    ram, memory = guest_ram()
    other = Driver(VirtioMmioBus(memory, [VirtioConsole()]), ram)
    other.desc = RAM_BASE + RAM_SIZE - 16  # a table of 4 entries does not fit
    other.setup(4, driver_ok=False)
    needs_reset(other, "descriptor table", "outside")


def test_a_notify_before_driver_ok_needs_reset(setup):
    _, console, driver, _ = setup
    driver.setup(4, driver_ok=False)
    driver.send_batch([[b"too early"]])
    needs_reset(driver, "before DRIVER_OK")
    assert console.output == b""
    assert not driver.r(0x060) & 2  # no configuration interrupt: the driver was not running yet


def test_a_notify_of_a_queue_that_is_not_ready_needs_reset(setup):
    _, _, driver, _ = setup
    driver.setup(4)
    driver.w(0x050, 0)  # the receiveq was never set up
    needs_reset(driver, "queue 0", "not a ready queue")


def test_a_queue_made_ready_before_features_ok_needs_reset(setup):
    _, _, driver, _ = setup
    driver.w(0x070, ACK | DRIVER)
    driver.w(0x030, 1)
    driver.w(0x038, 4)
    driver.w(0x044, 1)
    needs_reset(driver, "before FEATURES_OK")


def test_a_device_needing_reset_ignores_notifies_until_reset_then_works_again(setup):
    _, console, driver, _ = setup
    driver.setup(4)
    driver.w(0x050, 7)
    needs_reset(driver, "queue 7")
    driver.send_batch([[b"ignored"]])
    assert console.output == b""
    driver.w(0x070, 0)
    assert driver.status == 0
    fresh = Driver(driver.bus, driver.ram)
    fresh.setup(4)
    fresh.send_batch([[b"back\n"]])
    assert console.text == "back\n"


def test_the_driver_cannot_set_or_clear_needs_reset_itself(setup):
    _, _, driver, _ = setup
    driver.w(0x070, ACK | NEEDS_RESET)
    assert driver.status == ACK
    driver.setup(4)
    driver.w(0x050, 9)
    driver.w(0x070, ACK | DRIVER | FEATURES_OK | DRIVER_OK)  # cannot clear it either
    assert driver.status & NEEDS_RESET


# --- guest memory --------------------------------------------------------------------------------

def test_guest_memory_refuses_anything_not_wholly_inside_ram():
    memory = GuestMemory.of_buffer(bytearray(16), 0x1000)
    assert memory.read(0x1000, 16) == bytes(16)
    for address, size in ((0xFFF, 2), (0x100F, 2), (0x2000, 1), (-8, 4)):
        with pytest.raises(GuestMemoryError, match="outside the guest's RAM"):
            memory.read(address, size)
    with pytest.raises(GuestMemoryError):
        memory.write(0x100C, b"12345")
    assert memory.read(0x100C, 4) == bytes(4)  # nothing written
