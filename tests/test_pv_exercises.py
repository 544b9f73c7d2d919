"""Chapter 7's exercises: the reference answers pass every test, and each requirement the statements
make is a test that an answer breaking only that requirement fails."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

from vlab.grading import EXERCISES
from vlab.grading.runner import run_tests

SOLUTIONS = Path(__file__).resolve().parent.parent / "solutions"
sys.path.insert(0, str(SOLUTIONS))
import ch07_para_and_full as reference  # noqa: E402

sys.path.remove(str(SOLUTIONS))


def failed(exercise_id: str, answer) -> set[str]:
    result = run_tests(EXERCISES[exercise_id], answer, hidden=True, timeout_s=10)
    return {t.name for t in result.tests if not t.passed}


@pytest.mark.parametrize("exercise_id, answer", [
    ("ch07.console_write_source", reference.console_write_source),
    ("ch07.offer_buffer", reference.offer_buffer),
    ("ch07.console_io", reference.console_io),
])
def test_the_reference_answer_passes_every_test_public_and_hidden(exercise_id, answer):
    assert failed(exercise_id, answer) == set()


# --- console_write_source --------------------------------------------------------------------------

HYPERCALL = "    mov x2, x0\n    mov x0, #0\n    mov x16, #18\n    hvc #0xea1\n"


def routine(body: str):
    return lambda: "console_write:\n" + body + "    ret\n"


ONE_EXIT = {"prints a line with one exit", "three calls, one of them empty", "a long buffer in one call"}


@pytest.mark.parametrize("answer, breaks", [
    (lambda: reference.UART_WRITE.replace("uart_", "console_"), ONE_EXIT | {"returns Xen's answer in x0"}),
    (routine("    mov x9, x0\n    mov x10, x1\n    cbz x10, sent\nper_byte:\n    mov x0, #0\n    mov x1, #1\n"
             "    mov x2, x9\n    mov x16, #18\n    hvc #0xea1\n    add x9, x9, #1\n    subs x10, x10, #1\n"
             "    b.ne per_byte\nsent:\n"), ONE_EXIT),
    (routine("    mov x2, x0\n    mov x0, #0\n    mov x16, #18\n    hvc #0\n"), ONE_EXIT | {"returns Xen's answer in x0"}),
    (routine("    cbz x1, skip\n" + HYPERCALL + "skip:\n"), {"three calls, one of them empty"}),
    (routine(HYPERCALL + "    mov x0, #0\n"), {"returns Xen's answer in x0"}),
    (routine(HYPERCALL + "    mov x19, #0\n"), {"keeps x19-x29 and sp"}),
    (routine("    sub sp, sp, #16\n" + HYPERCALL), {"keeps x19-x29 and sp"}),
], ids=["the UART loop", "a hypercall a byte", "HVC #0", "no call for 0 bytes", "x0 = 0 after",
        "clobbers x19", "moves sp"])
def test_console_write_answers_breaking_one_requirement_fail_its_tests(answer, breaks):
    assert failed("ch07.console_write_source", answer) == breaks


# --- offer_buffer ------------------------------------------------------------------------------------

def offer(slot=None, fields=None, index=None, notify_when=None, notify_first=False):
    """The reference answer with one thing done wrong."""
    def answer(memory, queue, descriptor, address, length, notify):
        if fields is None:
            memory.write(queue.desc + 16 * descriptor, struct.pack("<QIHH", address, length, 0, 0))
        else:
            fields(memory, queue, descriptor, address, length)
        idx = memory.read_u16(queue.avail + 2)
        wanted = not memory.read_u16(queue.used) & 1 if notify_when is None else notify_when(memory, queue)
        if notify_first and wanted:
            notify()
        where = idx % queue.size if slot is None else slot(idx, descriptor, queue)
        memory.write_u16(queue.avail + 4 + 2 * where, descriptor)
        memory.write(queue.avail + 2, ((idx + 1) & 0xFFFF if index is None else index(idx)).to_bytes(2, "little"))
        if wanted and not notify_first:
            notify()
        return wanted
    return answer


def addr_and_len_only(memory, queue, descriptor, address, length):
    memory.write(queue.desc + 16 * descriptor, struct.pack("<QI", address, length))


@pytest.mark.parametrize("answer, breaks", [
    (offer(slot=lambda idx, d, q: d), {"descriptors in another order than the slots", "the 16-bit index wraps"}),
    (offer(slot=lambda idx, d, q: idx), {"the 16-bit index wraps", "descriptors in another order than the slots"}),
    (offer(fields=addr_and_len_only), {"a descriptor table full of garbage"}),
    (offer(index=lambda idx: idx + 1), {"the 16-bit index wraps"}),
    (offer(notify_when=lambda m, q: True), {"a device that polls is not notified"}),
    (offer(notify_first=True), {"one buffer reaches the device", "forty buffers through a queue of four",
                                "descriptors in another order than the slots", "a descriptor table full of garbage",
                                "the 16-bit index wraps"}),
], ids=["slot = descriptor", "no modulo", "flags and next left", "no 16-bit wrap", "always notifies",
        "notifies before publishing"])
def test_offer_buffer_answers_breaking_one_requirement_fail_its_tests(answer, breaks):
    assert failed("ch07.offer_buffer", answer) == breaks


# --- console_io --------------------------------------------------------------------------------------

def serve(mask=0xFFFF_FFFF, on_fault=-14, unknown=-38, read_empty=False, bytewise=False):
    def answer(vcpu, console_write):
        cmd, count, buffer = vcpu.x(0) & mask, vcpu.x(1) & mask, vcpu.x(2)
        if cmd != 0:
            return unknown
        if count == 0 and not read_empty:
            return 0
        try:
            if bytewise:
                for i in range(count):
                    console_write(vcpu.read_memory(buffer + i, 1))
                return 0
            data = vcpu.read_memory(buffer, count)
        except ValueError:
            return on_fault
        console_write(data)
        return 0
    return answer


@pytest.mark.parametrize("answer, breaks", [
    (serve(mask=(1 << 64) - 1), {"cmd and count are 32 bits"}),
    (serve(on_fault=-1), {"a buffer outside the VM's RAM"}),
    (serve(unknown=0), {"a command Xen has but vlab does not serve"}),
    (serve(read_empty=True), {"an empty write"}),
    (serve(read_empty=False, bytewise=True), {"a buffer outside the VM's RAM"}),
], ids=["64-bit arguments", "-1 for a fault", "0 for CONSOLEIO_read", "reads 0 bytes at 0x1000",
        "prints up to the fault"])
def test_console_io_answers_breaking_one_requirement_fail_its_tests(answer, breaks):
    assert failed("ch07.console_io", answer) == breaks
