"""A C driver written to the virtio spec (vlab/guests/c/virtio_console.c): on QEMU, and on vlab's device model.

QEMU is the oracle: what its modern virtio-mmio console receives from the guest is
recorded below, and vlab's board and VMs, which have the same console on the same
transport, must receive exactly the same from the same ELF.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_c_guests import elf, require_qemu  # noqa: F401 - elf is a fixture

from vlab.arch.hcr import HCR
from vlab.guests import SELF_CHECK_OK
from vlab.guests import build as builder
from vlab.guests import qemu as oracle
from vlab.hyp.vm import VM
from vlab.machine.board import Board, StopReason
from vlab.machine.loader import image_from_file, load

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


def run_on_vlab(path, **options):
    """The ELF on the bare board, which has QEMU virt's virtio-mmio transports and a console on the last one."""
    board = Board(**options)
    load(board, image_from_file(path))
    result = board.run(max_insns=10_000_000, timeout_s=30)
    return result, board


def test_the_virtio_guest_is_one_of_the_c_guests_every_board_runs(elf):
    assert "virtio_console" in builder.programs()  # so test_c_guests compares it with QEMU too
    assert elf("virtio_console").is_file()


def test_qemu_prints_the_driver_report_and_the_console_gets_every_line_in_order(elf):
    require_qemu()
    on_qemu = oracle.run_on_qemu(elf("virtio_console"), timeout_s=30)
    assert on_qemu.powered_off, on_qemu.uart + on_qemu.stderr
    assert on_qemu.uart == UART
    assert on_qemu.virtio_console == VIRTIO_CONSOLE


def test_without_a_modern_transport_qemu_has_no_console_for_the_driver(elf):
    require_qemu()
    on_qemu = oracle.run_on_qemu(elf("virtio_console"), timeout_s=30, virtio_console=False)  # legacy transports
    assert on_qemu.powered_off
    assert on_qemu.uart.startswith("no virtio console") and on_qemu.virtio_console == ""


def test_vlabs_board_receives_what_qemus_console_receives(elf):
    result, board = run_on_vlab(elf("virtio_console"))
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert result.registers["x19"] == SELF_CHECK_OK
    assert result.uart == UART
    assert result.virtio_console == board.virtio_console.text == VIRTIO_CONSOLE
    transport = board.virtio.transports[31]
    assert transport.notifications == [0, 6] and transport.error is None
    notifies = [a for a in board.mmio_trace if a.register == "virtio31.QueueNotify"]
    assert len(notifies) == 6  # one exit per batch, for 21 lines of text


def test_a_polling_device_asks_the_driver_not_to_notify_and_still_gets_every_line(elf):
    result, board = run_on_vlab(elf("virtio_console"), virtio_polls=True)
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert (result.uart, result.virtio_console) == (UART.replace("6 notifications", "0 notifications"), VIRTIO_CONSOLE)
    assert board.virtio.transports[31].notifications == [0, 0]


def test_in_a_vm_the_text_costs_one_exit_per_batch_and_the_uart_two_per_byte(elf):
    vm = VM.from_file(elf("virtio_console"))
    result = vm.run(max_insns=10_000_000)
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert (result.uart, result.virtio_console) == (UART, VIRTIO_CONSOLE)
    by_register = [a.register for a in vm.mmio_trace]
    assert by_register.count("virtio31.QueueNotify") == 6  # for len(VIRTIO_CONSOLE) bytes
    assert by_register.count("UARTDR") + by_register.count("UARTFR") == 2 * len(UART)
    assert result.exits["DABT_LOWER"] == len(by_register)  # every device access was an exit


def vlab_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlab", "run", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("where", [(), ("--virt",)], ids=["board", "vm"])
def test_vlab_run_json_has_the_virtio_consoles_text_beside_the_uarts(elf, where):
    done = vlab_run(str(elf("virtio_console")), "--json", *where)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["uart"], result["virtio_console"]) == (UART, VIRTIO_CONSOLE)


@pytest.mark.parametrize("where", [(), ("--virt",)], ids=["board", "vm"])
def test_vlab_run_prints_the_virtio_console_after_the_uart_under_a_heading(elf, where):
    done = vlab_run(str(elf("virtio_console")), *where)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{UART}--- virtio console ---\n{VIRTIO_CONSOLE}"


def test_several_vms_each_report_their_own_virtio_console(elf, tmp_path):
    quiet = tmp_path / "quiet.S"
    quiet.write_text("    ldr x0, =0x84000008\n    hvc #0\n")
    done = vlab_run(str(elf("virtio_console")), str(quiet), "--virt", "--json")
    assert done.returncode == 0, done.stderr
    assert [vm["virtio_console"] for vm in json.loads(done.stdout)["vms"]] == [VIRTIO_CONSOLE, ""]


def test_a_guest_that_never_uses_virtio_prints_no_heading_and_an_empty_key(tmp_path):
    source = tmp_path / "quiet.S"
    source.write_text("    ldr x0, =0x84000008\n    hvc #0\n")
    assert vlab_run(str(source)).stdout == ""
    assert json.loads(vlab_run(str(source), "--json").stdout)["virtio_console"] == ""


# --- the transports' interrupts: SPI 16 + n through the GIC, as on QEMU virt ------------------------------

IRQ_DRIVEN_TEXT = "This driver offers one buffer at a time,\nnotifies the device, and sleeps in WFI:\n" \
                  "the used-buffer interrupt wakes it.\n"


@pytest.mark.parametrize("where", ["board", "vm", "vm-TWI"])
def test_a_driver_that_sleeps_until_the_used_buffer_interrupt_runs_as_on_qemu(elf, where):
    require_qemu()
    path = elf("virtio_irq")
    on_qemu = oracle.run_on_qemu(path, timeout_s=30)
    assert on_qemu.powered_off and on_qemu.uart.endswith("all checks passed\n"), on_qemu.uart
    assert on_qemu.virtio_console == IRQ_DRIVEN_TEXT
    if where == "board":
        result, machine = run_on_vlab(path)
    else:
        machine = VM.from_file(path, traps=HCR.TWI if where == "vm-TWI" else HCR(0))
        result = machine.run(max_insns=10_000_000)
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert (result.uart, result.virtio_console) == (on_qemu.uart, on_qemu.virtio_console)
    assert machine.virtio.transports[31].interrupts == 3  # one used-buffer interrupt a line

