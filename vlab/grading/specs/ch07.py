"""Chapter 7 exercises: para- and full virtualization. Every expectation comes from running vlab --
a VM and its Xen handlers, or the virtio device model -- or from Xen's and virtio's own numbers,
written out here."""

from __future__ import annotations

import struct
from types import SimpleNamespace

from vlab.arch.esr import ExceptionClass
from vlab.asm import assemble
from vlab.errors import AssemblyError
from vlab.grading.exercise import Exercise, Test, expect
from vlab.hyp import xen
from vlab.hyp.handlers import handle_hvc
from vlab.hyp.vm import VM
from vlab.machine.board import RAM_BASE, StopReason
from vlab.machine.guest_memory import GuestMemory
from vlab.machine.loader import image_from_program
from vlab.machine.virtio_console import VirtioConsole
from vlab.machine.virtio_mmio import Transport

MODULE = "ch07_para_and_full"
OFF = "    ldr x0, =0x84000008\n    hvc #0\n"
RAM = 0x10_0000
U64 = (1 << 64) - 1
EFAULT, ENOSYS = -14, -38  # xen/include/public/errno.h


def run_vm(source: str, handler=None, max_insns: int = 200_000):
    """Assemble `source` into a VM (its HVC exits to `handler` when given) and run it: (vm, result, program)."""
    program = assemble(source)
    vm = VM.from_image(image_from_program(program), ram_size=RAM)
    if handler is not None:
        vm.set_handler(ExceptionClass.HVC64, handler)
    return vm, vm.run(max_insns=max_insns, timeout_s=5), program


def results_at(vm: VM, address: int, count: int) -> list[int]:
    """`count` signed 64-bit results the guest stored at `address`."""
    return list(struct.unpack(f"<{count}q", vm.read_memory(address, 8 * count)))


# --- ch07.console_write_source: a trapping routine made a hypercall -----------------------------

CALLEE_SAVED = {f"x{n}": 0x1111_0000 + n for n in range(19, 30)}


def run_console_write(source: str, calls: list[tuple[str, int]]):
    """The student's routine after a harness calling it once per (text label, length); the result of
    call i goes to memory at `results` + 8 i. The callee-saved registers and sp are set beforehand
    and compared afterwards: x9 = 0 if all kept."""
    texts = [f'text{i}:\n    .ascii "{text}"\n' for i, (text, _) in enumerate(calls)]
    body = "".join(f"    adr x0, text{i}\n    mov x1, #{length}\n    bl console_write\n"
                   f"    adr x2, results\n    str x0, [x2, #{8 * i}]\n" for i, (_, length) in enumerate(calls))
    keep = "".join(f"    ldr {r}, ={v:#x}\n" for r, v in CALLEE_SAVED.items())
    check = "".join(f"    ldr x3, ={v:#x}\n    cmp {r}, x3\n    b.ne broken\n" for r, v in CALLEE_SAVED.items())
    harness = f"""_start:
    ldr x1, =0x40080000
    mov sp, x1
{keep}{body}    mov x3, sp
    ldr x4, =0x40080000
    cmp x3, x4
    b.ne broken
{check}    mov x9, #0
    b done
broken:
    mov x9, #1
done:
{OFF}"""
    data = "\n    .balign 8\nresults:\n    .space 64\n" + "".join(texts) + "    .balign 4\n"
    try:
        program = assemble(harness + source + data)
    except AssemblyError as e:
        if e.line is None or e.line <= harness.count("\n"):
            raise
        raise AssertionError(f"your assembly, line {e.line - harness.count(chr(10))}: {e.text.strip()!r}: "
                             f"{e.reason}") from None
    vm = VM.from_image(image_from_program(program), ram_size=RAM)
    result = vm.run(max_insns=200_000, timeout_s=5)
    if result.reason is not StopReason.POWERED_OFF:
        raise AssertionError(f"the harness never got back from console_write: {result.message}")
    return vm, result, results_at(vm, program.address_of("results"), len(calls))


def _source_of(console_write_source) -> str:
    source = console_write_source()
    if not isinstance(source, str):
        raise AssertionError(f"console_write_source() should return assembly source (a str), "
                             f"not {type(source).__name__}")
    return source


def _prints_with_one_exit_a_call(calls: list[tuple[str, int]]):
    def test(console_write_source):
        vm, result, _ = run_console_write(_source_of(console_write_source), calls)
        expect(result.uart, "".join(text[:length] for text, length in calls), "what the VM's console printed")
        expect(dict(vm.exits), {"HVC64": len(calls) + 1}, "exits by class (one a call, and the power-off)")
    return test


def _returns_xens_answer(console_write_source):
    vm, result, answers = run_console_write(_source_of(console_write_source), [("ok", 2)])
    expect(answers, [0], "x0 after a write Xen served")
    wild = _source_of(console_write_source).replace("console_write", "console_write_inner")
    # the same routine, called with a buffer that is not in the VM's RAM
    source = f"console_write:\n    mov x0, #0x1000\n    b console_write_inner\n{wild}"
    _, result, answers = run_console_write(source, [("lost", 4)])
    expect(answers, [EFAULT], "x0 after a write from a buffer outside the VM (Xen's -EFAULT)")
    expect(result.uart, "", "what a write from outside the VM printed")


def _keeps_the_callers_registers(console_write_source):
    _, result, _ = run_console_write(_source_of(console_write_source), [("a", 1), ("bc", 2)])
    if result.registers["x9"]:
        changed = [r for r, v in CALLEE_SAVED.items() if result.registers[r] != v]
        raise AssertionError(f"console_write changed what its caller keeps: {', '.join(changed) or 'sp'}")


CONSOLE_WRITE = Exercise(
    id="ch07.console_write_source",
    title="Turn a trapping routine into a hypercall",
    statement=("uart_write prints x1 bytes from x0 through the PL011, two exits a byte in a VM. Write "
               "console_write, which prints them with one Xen console_io hypercall (HVC #0xEA1; x16 = 18; "
               "x0 = CONSOLEIO_write = 0, x1 = count, x2 = buffer) each time it is called, even for 0 bytes, "
               "returns Xen's result in x0 and keeps x19-x29 and sp. console_write_source() returns its "
               "source; it runs in a VM."),
    points=4,
    module=MODULE,
    tests=(
        Test("prints a line with one exit", _prints_with_one_exit_a_call([("Hello, Xen", 10)]),
             hint="x16 = 18 and HVC #0xea1 (not #0: that is PSCI); no loop over the bytes, no UART access"),
        Test("three calls, one of them empty", _prints_with_one_exit_a_call([("abc", 3), ("", 0), ("de", 2)]),
             hint="the count goes in x1 and the buffer's address in x2; x0 is the command, 0"),
        Test("a long buffer in one call", _prints_with_one_exit_a_call([("x" * 300, 300)]), hidden=True,
             hint="Xen copies the buffer in chunks itself: the guest makes one call"),
        Test("returns Xen's answer in x0", _returns_xens_answer, hidden=True,
             hint="leave the hypercall's result in x0 when you return"),
        Test("keeps x19-x29 and sp", _keeps_the_callers_registers, hidden=True,
             hint="use x0-x18 for scratch; save anything else you change"),
    ),
)


# --- ch07.offer_buffer: the guest's side of a virtqueue ----------------------------------------

QSIZE = 4
DESC, AVAIL, USED, DATA = RAM_BASE + 0x1000, RAM_BASE + 0x2000, RAM_BASE + 0x3000, RAM_BASE + 0x8000


def virtio_setup(polls: bool = False, garbage: bool = False, start: int = 0):
    """vlab's virtio console on one transport, its transmitq (queue 1, QSIZE entries) set up through
    its registers as a driver does; RAM in a bytearray. With `start`, the queue has already carried
    that many buffers (both free-running indices there). Returns (memory, queue, transport, console)."""
    ram = bytearray(RAM)
    memory = GuestMemory.of_buffer(ram, RAM_BASE)
    console = VirtioConsole()
    transport = Transport(console, memory, device_polls=polls)
    if garbage:
        ram[DESC - RAM_BASE:DESC - RAM_BASE + 16 * QSIZE] = b"\xff" * (16 * QSIZE)
    for offset, value in ((0x070, 1), (0x070, 3), (0x024, 1), (0x020, 1), (0x070, 11), (0x030, 1),
                          (0x038, QSIZE), (0x080, DESC), (0x090, AVAIL), (0x0A0, USED)):
        transport.write(offset, 4, value)
    for area in (AVAIL, USED):
        memory.write_u16(area + 2, start)
    transport.write(0x044, 4, 1)  # QueueReady
    transport.write(0x070, 4, 15)  # DRIVER_OK
    ring = transport.queues[1].ring
    ring.last_avail = ring.used_idx = start  # the device's own counters, where a long run left them
    queue = SimpleNamespace(size=QSIZE, desc=DESC, avail=AVAIL, used=USED)
    return memory, queue, transport, console


def _offer_all(offer_buffer, texts: list[bytes], descriptors: list[int], polls=False, garbage=False, start=0):
    memory, queue, transport, console = virtio_setup(polls, garbage, start)
    notified = []
    for i, (text, descriptor) in enumerate(zip(texts, descriptors)):
        address = DATA + 0x100 * i
        memory.write(address, text)
        answer = offer_buffer(memory, queue, descriptor, address, len(text), lambda: transport.write(0x050, 4, 1))
        notified.append(answer)
        if transport.error:
            raise AssertionError(f"after offering buffer {i} on descriptor {descriptor}, the device stopped: "
                                 f"{transport.error}")
    return notified, transport, console


def _delivers(count: int, descriptors=None, garbage: bool = False, start: int = 0):
    def test(offer_buffer):
        texts = [f"buffer {i};".encode() for i in range(count)]
        chosen = descriptors or [i % QSIZE for i in range(count)]
        notified, transport, console = _offer_all(offer_buffer, texts, chosen, garbage=garbage, start=start)
        expect(bytes(console.output), b"".join(texts), "what the device printed, in order")
        last = DESC + 16 * chosen[-1]
        expect(struct.unpack("<QIHH", transport.memory.read(last, 16)),
               (DATA + 0x100 * (count - 1), len(texts[-1]), 0, 0), f"descriptor {chosen[-1]} (addr, len, flags, next)")
        expect(notified, [True] * count, "what offer_buffer returned (True: it notified)")
        expect(transport.notifications[1], count, "notifications the device received")
    return test


def _a_polling_device_is_not_notified(offer_buffer):
    notified, transport, console = _offer_all(offer_buffer, [b"one", b"two"], [0, 1], polls=True)
    expect(transport.notifications[1], 0, "notifications to a device that set VIRTQ_USED_F_NO_NOTIFY")
    expect(notified, [False, False], "what offer_buffer returned")
    transport.poll()  # the device's own look at the ring
    expect(bytes(console.output), b"onetwo", "what the device printed when it polled")


OFFER_BUFFER = Exercise(
    id="ch07.offer_buffer",
    title="The driver's side of a virtqueue: fill a descriptor, publish it, notify",
    statement=("Offer one device-readable buffer on a split virtqueue: fill descriptor `descriptor` "
               "(addr, len, flags 0, next 0), put its number in the available ring at slot avail.idx % size, "
               "advance avail.idx (mod 2^16), then call notify() unless the device set "
               "VIRTQ_USED_F_NO_NOTIFY in used.flags. Return whether it notified. vlab's virtio console "
               "is the device."),
    points=4,
    module=MODULE,
    tests=(
        Test("one buffer reaches the device", _delivers(1),
             hint="descriptor i is 16 bytes at queue.desc + 16*i: le64 addr, le32 len, le16 flags, le16 next"),
        Test("forty buffers through a queue of four", _delivers(40),
             hint="the ring slot is avail.idx % queue.size; avail.idx itself keeps counting"),
        Test("descriptors in another order than the slots", _delivers(8, descriptors=[3, 1, 2, 0, 2, 3, 0, 1]),
             hidden=True, hint="the ring holds the descriptor's number; the slot comes from avail.idx"),
        Test("a descriptor table full of garbage", _delivers(4, garbage=True), hidden=True,
             hint="write all four fields: flags 0 (the device reads the buffer) and next 0"),
        Test("the 16-bit index wraps", _delivers(6, start=0xFFFD), hidden=True,
             hint="avail.idx is a le16: after 0xffff comes 0"),
        Test("a device that polls is not notified", _a_polling_device_is_not_notified, hidden=True,
             hint="read used.flags (le16 at queue.used) after publishing avail.idx"),
    ),
)


# --- ch07.console_io: the hypervisor's side --------------------------------------------------------

def serve_with(console_io):
    """An HVC handler that gives Xen's console_io (x16 = 18) to the student's function; the rest
    goes to vlab's own Xen and PSCI handlers."""
    def your_console_io(vcpu, exit):
        if xen.is_xen_hypercall(exit) and vcpu.x(16) == xen.HYPERVISOR_console_io:
            result = console_io(vcpu, vcpu.platform.console)
            if not isinstance(result, int):
                raise TypeError(f"console_io returned {result!r}, not an int")
            vcpu.set_x(0, result & U64)
            return f"student's console_io -> {result}"
        return handle_hvc(vcpu, exit)
    return your_console_io


def console_io_guest(calls: list[tuple[int, int, str]]) -> str:
    """A guest making console_io calls (x0, x1, buffer): each result at `results` + 8 i."""
    body = "".join(f"    mov x16, #18\n    ldr x0, ={cmd:#x}\n    ldr x1, ={count:#x}\n    ldr x2, {buffer}\n"
                   f"    hvc #0xea1\n    adr x3, results\n    str x0, [x3, #{8 * i}]\n"
                   for i, (cmd, count, buffer) in enumerate(calls))
    return (body + OFF + '    .balign 8\nresults:\n    .space 64\nhello:\n    .ascii "Hello, world!\\n"\n'
            + "    .balign 4\n")


def _console_io_test(calls, printed: str, results: list[int]):
    def test(console_io):
        vm, result, program = run_vm(console_io_guest(calls), serve_with(console_io))
        if result.reason is not StopReason.POWERED_OFF:
            raise AssertionError(f"the guest did not finish: {result.message}")
        expect(results_at(vm, program.address_of("results"), len(calls)), results, "x0 after each call")
        expect(result.uart, printed, "what the VM's console printed")
    return test


HELLO = "Hello, world!\n"
CONSOLE_IO = Exercise(
    id="ch07.console_io",
    title="The hypervisor's console_io handler",
    statement=("Serve Xen's console_io hypercall: x0 = cmd and x1 = count (C ints: their low 32 bits), "
               "x2 = a guest address. For CONSOLEIO_write (0) pass the count bytes at x2 to console_write "
               "and return 0 (a count of 0 writes nothing and returns 0); if any of the bytes is outside the "
               "VM's RAM, write nothing and return -EFAULT (-14); any other cmd returns -ENOSYS (-38)."),
    points=4,
    module=MODULE,
    tests=(
        Test("a guest prints a line", _console_io_test([(0, 14, "=hello")], HELLO, [0]),
             hint="data = vcpu.read_memory(vcpu.x(2), count); console_write(data); return 0"),
        Test("a command Xen has but vlab does not serve", _console_io_test([(1, 14, "=hello")], "", [ENOSYS]),
             hint="CONSOLEIO_read is 1: anything but 0 answers -ENOSYS, and prints nothing"),
        Test("a buffer outside the VM's RAM", _console_io_test([(0, 4, "=0x1000"), (0, 8, f"={RAM_BASE + RAM - 4:#x}")],
                                                               "", [EFAULT, EFAULT]), hidden=True,
             hint="vcpu.read_memory raises ValueError outside the VM: catch it and return -14"),
        Test("cmd and count are 32 bits", _console_io_test([(1 << 32, 5, "=hello"), (0, (7 << 32) | 7, "=hello")],
                                                           "HelloHello, ", [0, 0]), hidden=True,
             hint="keep the low 32 bits of x0 and x1: x & 0xffffffff"),
        Test("an empty write", _console_io_test([(0, 0, "=hello"), (0, 0, "=0x1000")], "", [0, 0]), hidden=True,
             hint="count 0 writes nothing and succeeds"),
    ),
)

EXERCISES = (CONSOLE_WRITE, OFFER_BUFFER, CONSOLE_IO)
