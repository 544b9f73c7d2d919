"""A C driver written to the virtio spec (vlab/guests/c/virtio_console.c): on QEMU, and on vlab's device model.

QEMU is the oracle: what its modern virtio-mmio console receives from the guest is
recorded below, and vlab's device model must receive exactly the same from the same
ELF. Until the board has the virtio-mmio bus (the hypervisor core is being rewritten),
the vlab side attaches the bus to a bare board, or adds it to a VM's devices, here.
"""

from __future__ import annotations

from test_c_guests import elf, require_qemu  # noqa: F401 - elf is a fixture

from vlab.guests import SELF_CHECK_OK
from vlab.guests import build as builder
from vlab.guests import qemu as oracle
from vlab.hyp.vm import VM
from vlab.machine.board import RAM_BASE, Board, StopReason
from vlab.machine.guest_memory import GuestMemory
from vlab.machine.loader import image_from_file, load
from vlab.machine.virtio_console import VirtioConsole
from vlab.machine.virtio_mmio import VirtioMmioBus

UART = """\
virtio console at transport 31 (0xa003e00), vendor 0x554d4551
negotiated VIRTIO_F_VERSION_1; transmitq: 16 of at most 1024 descriptors
sent 21 lines in 6 batches with 6 notifications; every chain came back used
"""

VIRTIO_CONSOLE = """\
[1.1] A virtqueue is three tables in guest memory.
[2.1] The descriptor table says where each buffer is,
[2.2] the available ring lists what the driver offers,
[3.1] the used ring lists what the device has finished.
[3.2] Each ring has a free-running 16-bit index;
[3.3] a slot is the index modulo the queue size.
[4.1] The driver fills descriptors, chains them with NEXT,
[4.2] puts each chain's head in the available ring,
[4.3] and publishes them all with a single index store.
[4.4] Then one write to QueueNotify, one exit,
[5.1] tells the device about the whole batch.
[5.2] The device takes every chain up to that index,
[5.3] copies the bytes out, and returns the heads
[5.4] in the used ring, with the bytes it wrote.
[5.5] A driver that polls asks for no interrupts;
[6.1] a device that polls asks for no notifications.
[6.2] An emulated UART costs two exits per byte:
[6.3] one to read its flags, one to write the byte.
[6.4] A paravirtual device costs one per batch.
[6.5] That is the bargain of paravirtualization:
[6.6] the guest knows, and works with its hypervisor.
"""


def run_on_vlab(path):
    """The ELF on a bare board with QEMU virt's virtio-mmio transports and a console on the last one."""
    board = Board()
    memory = GuestMemory(RAM_BASE, board.ram.size, board.read_memory, board.write_memory)
    console = VirtioConsole()
    bus = VirtioMmioBus(memory, [console])
    board._map_device(bus)  # the board's own device list comes with the core's rewrite
    load(board, image_from_file(path))
    result = board.run(max_insns=10_000_000, timeout_s=30)
    return result, console, bus, board


def test_the_virtio_guest_is_built_but_left_out_of_the_plain_board_comparisons(elf):
    assert "virtio_console" in builder.DEVICE_GUESTS
    assert "virtio_console" not in builder.programs()
    assert elf("virtio_console").is_file()


def test_qemu_prints_the_driver_report_and_the_console_gets_every_line_in_order(elf):
    require_qemu()
    on_qemu = oracle.run_on_qemu(elf("virtio_console"), timeout_s=30, virtio_console=True)
    assert on_qemu.powered_off, on_qemu.uart + on_qemu.stderr
    assert on_qemu.uart == UART
    assert on_qemu.virtio_console == VIRTIO_CONSOLE


def test_without_a_modern_transport_qemu_has_no_console_for_the_driver(elf):
    require_qemu()
    on_qemu = oracle.run_on_qemu(elf("virtio_console"), timeout_s=30)  # QEMU's default: legacy transports
    assert on_qemu.powered_off
    assert on_qemu.uart.startswith("no virtio console") and on_qemu.virtio_console == ""


def test_vlabs_device_model_receives_what_qemus_console_receives(elf):
    result, console, bus, board = run_on_vlab(elf("virtio_console"))
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert result.registers["x19"] == SELF_CHECK_OK
    assert result.uart == UART
    assert console.text == VIRTIO_CONSOLE
    transport = bus.transports[31]
    assert transport.notifications == [0, 6] and transport.error is None
    notifies = [a for a in board.mmio_trace if a.register == "virtio31.QueueNotify"]
    assert len(notifies) == 6  # one exit per batch, for 21 lines of text


def test_in_a_vm_the_text_costs_one_exit_per_batch_and_the_uart_two_per_byte(elf):
    vm = VM.from_file(elf("virtio_console"))
    console = VirtioConsole()
    vm.devices.append(VirtioMmioBus(GuestMemory(RAM_BASE, vm.ram_size, vm.read_memory, vm.write_memory), [console]))
    result = vm.run(max_insns=10_000_000)
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert (result.uart, console.text) == (UART, VIRTIO_CONSOLE)
    by_register = [a.register for a in vm.mmio_trace]
    assert by_register.count("virtio31.QueueNotify") == 6  # for len(VIRTIO_CONSOLE) bytes
    assert by_register.count("UARTDR") + by_register.count("UARTFR") == 2 * len(UART)
    assert result.exits["DABT_LOWER"] == len(by_register)  # every device access was an exit
