"""Chapter 7 exercises: para- and full virtualization. Expectations come from running vlab (a VM and
its Xen handlers) or from virtio's and Xen's rules, written out here."""

from __future__ import annotations

import struct

from vlab.asm import assemble
from vlab.errors import AssemblyError
from vlab.grading.exercise import Case, Exercise, Test
from vlab.grading.kinds import AssemblyAnswer, FunctionAnswer
from vlab.grading.plain import Unplain, show

MODULE = "ch07_para_and_full"
OFF = "    ldr x0, =0x84000008\n    hvc #0\n"
RAM_BASE, U64 = 0x4000_0000, (1 << 64) - 1
EFAULT, ENOSYS = -14, -38  # xen/include/public/errno.h
LETTERS = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?-"


def _text(rng, length: int) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(length))


# --- ch07.console_write_source: a trapping routine made a hypercall -----------------------------

WILD = 0x1000  # a guest address with no RAM behind it


def _harness(calls: list, kept: dict) -> str:
    """Calls console_write once per (text, length, wild), storing each x0 it returns at `results`.
    With `kept` (register -> value), those registers are set first and, with sp, checked after:
    x9 = 0 if all were kept."""
    keep = "".join(f"    ldr {r}, ={v:#x}\n" for r, v in kept.items())
    body = "".join((f"    ldr x0, ={WILD:#x}\n" if wild else f"    adr x0, text{i}\n")
                   + f"    ldr x1, ={length:#x}\n    bl console_write\n    adr x2, results\n    str x0, [x2, #{8 * i}]\n"
                   for i, (_, length, wild) in enumerate(calls))
    check = "".join(f"    ldr x3, ={v:#x}\n    cmp {r}, x3\n    b.ne broken\n" for r, v in kept.items())
    if kept:
        check = "    mov x3, sp\n    ldr x4, =0x40080000\n    cmp x3, x4\n    b.ne broken\n" + check
    return f"""_start:
    ldr x1, =0x40080000
    mov sp, x1
{keep}{body}{check}    mov x9, #0
    b checked
broken:
    mov x9, #1
checked:
{OFF}"""


def run_console_write(source: str, case: Case) -> dict:
    """The student's routine after the harness, in a VM (vlab's Xen handlers serve its hypercalls)."""
    from vlab.hyp.vm import VM
    from vlab.machine.loader import image_from_program

    calls, kept = case.args
    harness = _harness(calls, kept)
    data = ("\n    .balign 8\nresults:\n    .space 64\n"
            + "".join(f'text{i}:\n    .ascii "{text}"\n' for i, (text, _, _) in enumerate(calls)) + "    .balign 4\n")
    try:
        program = assemble(harness + source + data)
    except AssemblyError as e:
        if e.line is None or e.line <= harness.count("\n") or e.line > (harness + source).count("\n"):
            raise AssertionError(f"your assembly: {e}") from None
        raise AssertionError(f"your assembly, line {e.line - harness.count(chr(10))}: {e.text.strip()!r}: "
                             f"{e.reason}") from None
    vm = VM.from_image(image_from_program(program), ram_size=0x10_0000)
    result = vm.run(max_insns=500_000, timeout_s=5)
    results = struct.unpack(f"<{len(calls)}q", vm.read_memory(program.address_of("results"), 8 * len(calls)))
    return {"reason": result.reason.value, "message": result.message, "uart": result.uart,
            "exits": dict(vm.exits), "results": list(results), "kept": result.registers["x9"] == 0}


def judge_console_write(case: Case, observed: dict) -> str:
    expected = case.expected
    if observed["reason"] != "powered_off":
        return f"the caller never got back from console_write: {observed['message']}"
    if observed["uart"] != expected["uart"]:
        return f"the VM's console printed {observed['uart']!r}, expected {expected['uart']!r}"
    if observed["exits"] != expected["exits"]:
        return f"exits by class: expected {expected['exits']} (one a call, and the power-off), got {observed['exits']}"
    if observed["results"] != expected["results"]:
        return f"x0 after each call: expected {show(expected['results'])}, got {show(observed['results'])}"
    if not observed["kept"]:
        return "the caller's x19-x29 or sp changed across console_write"
    return ""


def _console_write_case(label: str, calls: list, kept: dict | None = None) -> Case:
    """`kept`: the callee-saved registers' values, set before and checked after (only where a test
    is about them, so that each requirement fails its own test)."""
    kept = kept or {}
    expected = {"uart": "".join(text[:length] for text, length, wild in calls if not wild),
                "exits": {"HVC64": len(calls) + 1},
                "results": [EFAULT if wild and length else 0 for _, length, wild in calls]}
    return Case(label, (calls, kept), expected)


def _uart_used(case: Case, got) -> str | None:
    if "DABT_LOWER" in got[1]["exits"]:
        return "no UART access at all: the hypervisor prints for you, with one hvc #0xea1 (x16 = 18)"


def _psci_called(case: Case, got) -> str | None:
    if any(line.split("//")[0].split() == ["hvc", "#0"] for line in got[0].splitlines()):
        return "HVC #0 is PSCI (the firmware); Xen's hypercalls are HVC #0xea1"


def _a_call_a_byte(case: Case, got) -> str | None:
    if got[1]["exits"].get("HVC64", 0) > case.expected["exits"]["HVC64"]:
        return "one hypercall for the whole buffer: x1 is the count, Xen copies the bytes itself"
    if got[1]["exits"].get("HVC64", 0) < case.expected["exits"]["HVC64"]:
        return "make the hypercall every time, even for 0 bytes (Xen answers 0)"


def _result_lost(case: Case, got) -> str | None:
    if got[1]["results"] != case.expected["results"]:
        return "leave the hypercall's result in x0 when you return"


def _registers_lost(case: Case, got) -> str | None:
    if not got[1]["kept"]:
        return "use x0-x18 for scratch; x19-x29 and sp belong to the caller"


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
    kind=AssemblyAnswer(run_console_write, judge_console_write,
                        (_psci_called, _uart_used, _a_call_a_byte, _result_lost, _registers_lost)),
    tests=(
        Test("prints a line with one exit", lambda rng: [_console_write_case(
            "console_write of 10 bytes", [("Hello, Xen", 10, False)])],
             hint="x16 = 18 and HVC #0xea1; no loop over the bytes, no UART access"),
        Test("three calls, one of them empty", lambda rng: [_console_write_case(
            "three calls of 3, 0 and 2 bytes", [("abc", 3, False), ("", 0, False), ("de", 2, False)])],
             hint="the count goes in x1 and the buffer's address in x2; x0 is the command, 0"),
        Test("a long buffer in one call", lambda rng: [_console_write_case(
            f"one call of {n} bytes", [(_text(rng, n), n, False)]) for n in (rng.randrange(200, 900),)],
             hidden=True, hint="Xen copies the buffer in chunks itself: the guest makes one call"),
        Test("returns Xen's answer in x0", lambda rng: [_console_write_case(
            "a write Xen serves, then one from a buffer outside the VM",
            [(_text(rng, n), n, False), ("lost", rng.randrange(1, 60), True)]) for n in (rng.randrange(1, 40),)],
             hidden=True, hint="leave the hypercall's result in x0 when you return"),
        Test("keeps x19-x29 and sp", lambda rng: [_console_write_case(
            "two calls, the caller's registers set before", [("a", 1, False), ("bc", 2, False)],
            {f"x{n}": rng.getrandbits(64) for n in range(19, 30)})],
             hidden=True, hint="use x0-x18 for scratch; save anything else you change"),
    ),
)


# --- ch07.offer_buffer: the driver's side of a virtqueue ---------------------------------------

def ring_after_offer(queue: dict, descriptor: int, address: int, length: int) -> tuple[bytes, bytes, bool]:
    """Virtio's rules for offering one device-readable buffer (virtio 1.2, 2.7.13), written out:
    the descriptor filled, its number in the available ring at slot idx % size, idx + 1 (mod 2^16);
    a notification unless the device set VIRTQ_USED_F_NO_NOTIFY (bit 0 of used.flags)."""
    size, desc, avail = queue["size"], bytearray(queue["desc"]), bytearray(queue["avail"])
    desc[16 * descriptor:16 * descriptor + 16] = struct.pack("<QIHH", address, length, 0, 0)
    idx = struct.unpack_from("<H", avail, 2)[0]
    struct.pack_into("<H", avail, 4 + 2 * (idx % size), descriptor)
    struct.pack_into("<H", avail, 2, (idx + 1) & 0xFFFF)
    return bytes(desc), bytes(avail), not queue["used_flags"] & 1


def _queue(size: int, idx: int, desc: bytes | None = None, avail_flags: int = 0, used_flags: int = 0,
           ring: list[int] | None = None, used_event: int = 0) -> dict:
    ring = ring if ring is not None else [0] * size
    return {"size": size, "desc": desc if desc is not None else bytes(16 * size),
            "avail": struct.pack(f"<HH{size}HH", avail_flags, idx, *ring, used_event), "used_flags": used_flags}


def _offer_case(label: str, queue: dict, descriptor: int, address: int, length: int) -> Case:
    return Case(label, (queue, descriptor, address, length), ring_after_offer(queue, descriptor, address, length))


def _random_queue(rng, idx: int | None = None, garbage: bool = False, used_flags: int = 0) -> dict:
    size = 1 << rng.randrange(2, 7)
    return _queue(size, rng.getrandbits(16) if idx is None else idx,
                  bytes(rng.getrandbits(8) for _ in range(16 * size)) if garbage else None,
                  avail_flags=rng.getrandbits(1), used_flags=used_flags,
                  ring=[rng.randrange(size) for _ in range(size)], used_event=rng.getrandbits(16))


def _random_offer(rng, label: str, **queue) -> Case:
    q = _random_queue(rng, **queue)
    slot = struct.unpack_from("<H", q["avail"], 2)[0] % q["size"]
    descriptor = rng.choice([d for d in range(q["size"]) if d != slot])  # never the slot's own number
    return _offer_case(label, q, descriptor, RAM_BASE + rng.randrange(0x1000, 0x10_0000, 8), rng.randrange(1, 4096))


def _returned(got) -> tuple | None:
    return got if type(got) is tuple and len(got) == 3 else None


def _not_bytes(case: Case, got) -> str | None:
    if isinstance(got, Unplain) or _returned(got) and any(isinstance(g, Unplain) for g in got):
        return "return bytes, not a bytearray: bytes(table)"
    if _returned(got) is None:
        return "return a tuple of three: (the descriptor table's bytes, the available ring's bytes, notify)"


def _descriptor_wrong(case: Case, got) -> str | None:
    if _returned(got) and type(got[0]) is bytes and got[0] != case.expected[0]:
        d = case.args[1]
        return (f"descriptor {d} is the 16 bytes at 16*{d}: le64 addr, le32 len, le16 flags = 0 (the device "
                "reads the buffer), le16 next = 0; the other descriptors stay as they were")


def _ring_wrong(case: Case, got) -> str | None:
    if _returned(got) and type(got[1]) is bytes and got[1] != case.expected[1]:
        size, before = case.args[0]["size"], case.args[0]["avail"]
        idx = struct.unpack_from("<H", before, 2)[0]
        return (f"the ring slot is avail.idx % size = {idx % size} (the descriptor's number goes there), and "
                f"avail.idx becomes {(idx + 1) & 0xFFFF:#x} (mod 2**16); flags and used_event stay as they were")


def _notify_wrong(case: Case, got) -> str | None:
    if _returned(got) and got[2] != case.expected[2]:
        return "notify unless bit 0 (VIRTQ_USED_F_NO_NOTIFY) of used_flags is set; the other bits do not say"


OFFER_BUFFER = Exercise(
    id="ch07.offer_buffer",
    title="The driver's side of a virtqueue: fill a descriptor, publish it, notify",
    statement=("Offer one device-readable buffer on a split virtqueue: in the descriptor table, fill descriptor "
               "`descriptor` (addr, len, flags 0, next 0); in the available ring, put its number at slot "
               "avail.idx % size and advance avail.idx (mod 2^16); change nothing else. Return (the descriptor "
               "table's bytes, the available ring's bytes, whether to notify: unless VIRTQ_USED_F_NO_NOTIFY, "
               "bit 0 of used.flags, is set)."),
    points=4,
    module=MODULE,
    kind=FunctionAnswer((_not_bytes, _descriptor_wrong, _ring_wrong, _notify_wrong)),
    tests=(
        Test("one buffer into an empty queue", lambda rng: [_offer_case(
            "descriptor 0 into a queue of 4, idx 0", _queue(4, 0), 0, 0x4000_8000, 5)],
             hint="descriptor i is 16 bytes at 16*i: le64 addr, le32 len, le16 flags, le16 next (struct.pack)"),
        Test("a queue that has carried buffers", lambda rng: [_offer_case(
            "descriptor 2 into a queue of 8 at idx 13", _queue(8, 13, ring=[7, 6, 5, 4, 3, 1, 0, 1]), 2,
            0x4001_0000, 64)],
             hint="the slot is avail.idx % size: 13 % 8 = 5, not the descriptor's number"),
        Test("descriptors in another order than the slots", lambda rng: [
            _random_offer(rng, "a random queue and a descriptor other than its slot's") for _ in range(4)],
             hidden=True, hint="the ring holds the descriptor's number; the slot comes from avail.idx"),
        Test("a descriptor table full of garbage", lambda rng: [
            _random_offer(rng, "a descriptor table of random bytes", garbage=True) for _ in range(3)], hidden=True,
             hint="write all four fields: flags 0 (the device reads the buffer) and next 0"),
        Test("the 16-bit index wraps", lambda rng: [
            _random_offer(rng, f"avail.idx = {idx:#x}", idx=idx) for idx in (0xFFFF, rng.randrange(0xFFF0, 0xFFFF))],
             hidden=True, hint="avail.idx is a le16: after 0xffff comes 0"),
        Test("a device that polls is not notified", lambda rng: [
            _random_offer(rng, f"used.flags = {flags:#x}", used_flags=flags)
            for flags in (1, 1 | rng.getrandbits(15) << 1, rng.getrandbits(15) << 1 or 2)], hidden=True,
             hint="read bit 0 of used_flags: set, the device polls and wants no notification"),
    ),
)


# --- ch07.console_io: the hypervisor's side of the same hypercall ---------------------------------

class _Guest:
    """A vCPU's registers and RAM, as vlab's Xen handlers read them (read_memory raises outside RAM)."""

    def __init__(self, registers: tuple, ram_base: int, ram: bytes):
        self.regs = dict(enumerate(registers))
        self.base, self.ram = ram_base, ram

    def x(self, n: int) -> int:
        return self.regs.get(n, 0)

    def set_x(self, n: int, value: int) -> None:
        self.regs[n] = value

    def read_memory(self, address: int, size: int) -> bytes:
        if not (self.base <= address and address + size <= self.base + len(self.ram)):
            raise ValueError(f"{size} bytes at {address:#x} are outside the guest's RAM")
        return self.ram[address - self.base:address - self.base + size]

    def write_memory(self, address: int, data: bytes) -> None:
        raise ValueError("console_io writes nothing into the guest")


def xen_answers(x0: int, x1: int, x2: int, ram_base: int, ram: bytes) -> tuple[int, bytes]:
    """What vlab's Xen handler answers a console_io hypercall with these registers: (x0, bytes printed)."""
    from types import SimpleNamespace

    from vlab.arch.esr import ExceptionClass, imm16_syndrome
    from vlab.hyp import xen

    printed = bytearray()
    nothing = lambda *_: ""  # noqa: E731 - console_io asks nothing else of the hypervisor
    services = xen.XenServices(lambda vcpu, data: printed.extend(data), nothing, nothing, nothing,
                               lambda vcpu: 1, lambda vcpu: [1])
    guest = _Guest((x0, x1, x2), ram_base, ram)
    guest.set_x(16, xen.HYPERVISOR_console_io)
    xen.xen_handler(services)(guest, SimpleNamespace(syndrome=imm16_syndrome(ExceptionClass.HVC64, 0xEA1)))
    result = guest.x(0)
    return result - (1 << 64) if result >> 63 else result, bytes(printed)


RAM_SIZE = 0x100


def _ram(rng=None) -> bytes:
    text = b"Hello, world!\n" if rng is None else _text(rng, 14).encode()
    return bytes(16) + text + bytes(RAM_SIZE - 16 - len(text))


def _io_case(label: str, x0: int, x1: int, x2: int, ram: bytes) -> Case:
    return Case(label, (x0, x1, x2, RAM_BASE, ram), xen_answers(x0, x1, x2, RAM_BASE, ram))


def _outside(rng) -> list[Case]:
    ram = _ram(rng)
    end = RAM_BASE + RAM_SIZE
    starts = [(rng.getrandbits(64), rng.randrange(1, 200)), (RAM_BASE - rng.randrange(1, 64), rng.randrange(70, 120)),
              (end - rng.randrange(1, 100), 120)]  # wild; just below RAM, into it; from inside past its end
    return [_io_case(f"{count} bytes at {start:#x}", 0, count, start, ram) for start, count in starts]


def _wide_arguments(rng) -> list[Case]:
    ram = _ram(rng)
    return [_io_case("cmd with bits above 31", rng.getrandbits(32) << 32, 14, RAM_BASE + 16, ram),
            _io_case("count with bits above 31", 0, rng.getrandbits(32) << 32 | 5, RAM_BASE + 16, ram)]


def _empty(rng) -> list[Case]:
    ram = _ram(rng)
    return [_io_case("0 bytes from a wild pointer", 0, 0, rng.getrandbits(64), ram),
            _io_case("a count whose low 32 bits are 0", 0, rng.getrandbits(32) << 32, rng.getrandbits(64), ram)]


def _io_not_a_pair(case: Case, got) -> str | None:
    if not (type(got) is tuple and len(got) == 2):
        return "return a pair: (the result for x0, an int; the bytes printed, bytes)"
    if type(got[1]) is not bytes:
        return "the bytes printed are bytes (b'' when nothing is), not a str or a bytearray"


def _io_errno(case: Case, got) -> str | None:
    if type(got) is tuple and len(got) == 2 and got[0] in (-1, 1, 14, 38, 0xFFFF_FFFF_FFFF_FFF2):
        return "Xen's errors are negative errno values: -14 (EFAULT), -38 (ENOSYS)"


def _io_widths(case: Case, got) -> str | None:
    if case.args[0] >> 32 or case.args[1] >> 32:
        return "cmd and count are C ints: keep the low 32 bits of x0 and x1 (x & 0xffffffff)"


def _io_partial(case: Case, got) -> str | None:
    if case.expected[0] == EFAULT and type(got) is tuple and len(got) == 2 and got[1]:
        return "a buffer not wholly inside the VM's RAM prints nothing: check [x2, x2 + count) first"


CONSOLE_IO = Exercise(
    id="ch07.console_io",
    title="The hypervisor's console_io handler",
    statement=("Serve Xen's console_io hypercall from the guest's x0 = cmd and x1 = count (C ints: their low 32 "
               "bits) and x2 = buffer, and the VM's RAM (`ram`, from guest address `ram_base`). For "
               "CONSOLEIO_write (0) the count bytes at the buffer are printed: return (0, those bytes); a count "
               "of 0 prints nothing. If any byte is outside the RAM: (-14, b''), -EFAULT. Any other cmd: "
               "(-38, b''), -ENOSYS."),
    points=4,
    module=MODULE,
    kind=FunctionAnswer((_io_not_a_pair, _io_errno, _io_widths, _io_partial)),
    tests=(
        Test("a guest prints a line", lambda rng: [_io_case("console_io(0, 14, ram_base + 16)", 0, 14,
                                                            RAM_BASE + 16, _ram())],
             hint="the buffer is at offset x2 - ram_base in ram: return (0, ram[offset:offset + count])"),
        Test("a command Xen has but vlab does not serve", lambda rng: [
            _io_case("console_io(1, ...): CONSOLEIO_read", 1, 14, RAM_BASE + 16, _ram())],
             hint="anything but CONSOLEIO_write (0) answers -ENOSYS (-38), and prints nothing"),
        Test("a buffer outside the VM's RAM", _outside, hidden=True,
             hint="print nothing and return -14 unless ram_base <= x2 and x2 + count <= ram_base + len(ram)"),
        Test("cmd and count are 32 bits", _wide_arguments, hidden=True,
             hint="keep the low 32 bits of x0 and x1: x & 0xffffffff"),
        Test("an empty write", _empty, hidden=True, hint="a count of 0 writes nothing and succeeds, wherever x2 points"),
    ),
)

EXERCISES = (CONSOLE_WRITE, OFFER_BUFFER, CONSOLE_IO)
