"""Bad virtio drivers, as real guests in VMs: the device stops and asks for a reset, the run goes on.

Each guest below is a virtio-mmio driver in AArch64 assembly that gets one thing wrong -- a
descriptor outside its RAM, a chain that loops, a queue size that is not a power of 2, a notify
before DRIVER_OK, rings outside RAM. None may hang the host, raise a Python error or touch
memory outside the VM: the device sets DEVICE_NEEDS_RESET (the guest reads it back in Status),
and a driver that then resets the device can use it again.
"""

from __future__ import annotations

import hashlib
import time

from hypothesis import example, given, settings
from hypothesis import strategies as st

from vlab.asm import assemble
from vlab.hyp import VM, Host
from vlab.machine.board import RAM_BASE, StopReason

CONSOLE = 0x0A00_3E00  # transport 31, where the console sits (as on QEMU)
NEEDS_RESET = 64
RAM = 0x10_0000
DATA = "hello"
OFF = "    ldr x0, =0x84000008\n    hvc #0\n"


def set_up_queue(queue: int, size: int, desc: str) -> str:
    """Reset the device behind x9, agree on VERSION_1 and make `queue` ready: `size` entries, the
    descriptor table where the instruction `desc` puts x10, the rings at `avail` and `used`."""
    return f"""
    str     wzr, [x9, #0x070]          // Status = 0: reset (what a device that asked for one needs)
    mov     w10, #3
    str     w10, [x9, #0x070]          // ACKNOWLEDGE | DRIVER
    mov     w10, #1
    str     w10, [x9, #0x024]
    str     w10, [x9, #0x020]          // VIRTIO_F_VERSION_1
    mov     w10, #11
    str     w10, [x9, #0x070]          // FEATURES_OK
    mov     w10, #{queue}
    str     w10, [x9, #0x030]          // QueueSel
    mov     w10, #{size}
    str     w10, [x9, #0x038]          // QueueSize
    {desc}
    str     w10, [x9, #0x080]
    lsr     x10, x10, #32
    str     w10, [x9, #0x084]
    adr     x10, avail
    str     w10, [x9, #0x090]
    adr     x10, used
    str     w10, [x9, #0x0a0]
    mov     w10, #1
    str     w10, [x9, #0x044]          // QueueReady
"""


def driver(size: int = 4, addr: str = "=text", length: int = len(DATA), flags: int = 0, following: int = 0,
           second: tuple[int, int, int] | None = None, driver_ok_first: bool = True, rings: str = "",
           queue: int = 1, retry: bool = False) -> str:
    """A driver that offers one chain (descriptor 0, and descriptor 1 = `second`: flags, next, len)
    on `queue`, notifies, then reads Status into x20 and used.idx into x21. With `retry`, it then
    resets the device and sends the text again properly (x22 = Status, x23 = used.idx after)."""
    ok = "    mov w10, #15\n    str w10, [x9, #0x070]     // DRIVER_OK\n"
    second_desc = "" if second is None else f"""
    adr     x11, desc
    adr     x12, text
    str     x12, [x11, #16]
    mov     w12, #{second[2]}
    str     w12, [x11, #24]
    mov     w12, #{second[0]}
    strh    w12, [x11, #28]
    mov     w12, #{second[1]}
    strh    w12, [x11, #30]
"""
    setup = f"    ldr     x9, ={CONSOLE:#x}\n" + set_up_queue(queue, size, rings or "adr x10, desc")
    offer = f"""
    adr     x11, desc
    ldr     x12, {addr}
    str     x12, [x11]
    mov     w12, #{length}
    str     w12, [x11, #8]
    mov     w12, #{flags}
    strh    w12, [x11, #12]
    mov     w12, #{following}
    strh    w12, [x11, #14]
{second_desc}
    adr     x11, avail
    ldrh    w12, [x11, #2]
    add     w12, w12, #1
    strh    w12, [x11, #2]             // ring[0] = descriptor 0 (already zero), published
    dmb     sy
    mov     w10, #{queue}
    str     w10, [x9, #0x050]          // QueueNotify
"""
    report = """
    ldr     w20, [x9, #0x070]          // Status
    adr     x11, used
    ldrh    w21, [x11, #2]             // used.idx
"""
    again = "" if not retry else driver_again()
    return (setup + (ok if driver_ok_first else "") + offer + ("" if driver_ok_first else ok) + report + again
            + OFF + f"""
    .balign 16
desc:
    .space  {16 * max(size, 2)}
avail:
    .space  {6 + 2 * max(size, 2)}
    .balign 4
used:
    .space  {6 + 8 * max(size, 2)}
text:
    .ascii  "{DATA}"
""")


def driver_again() -> str:
    """Reset, set the queue up again (zeroed rings, size 4), and send the text once more."""
    return """
    adr     x11, desc
    mov     x12, #0
zero:
    str     xzr, [x11, x12]
    add     x12, x12, #8
    cmp     x12, #0x70             // the descriptors and both rings, not the text or the literals after it
    b.lo    zero
""" + set_up_queue(1, 4, "adr x10, desc") + """    mov     w10, #15
    str     w10, [x9, #0x070]
    adr     x11, desc
    adr     x12, text
    str     x12, [x11]
    mov     w12, #5
    str     w12, [x11, #8]
    adr     x11, avail
    mov     w12, #1
    strh    w12, [x11, #2]
    dmb     sy
    str     w12, [x9, #0x050]
    ldr     w22, [x9, #0x070]
    adr     x11, used
    ldrh    w23, [x11, #2]
"""


def digest(vm: VM) -> str:
    return hashlib.sha256(vm.read_memory(RAM_BASE, vm.ram_size)).hexdigest()


def run(source: str) -> tuple[VM, dict, VM, str]:
    """The driver in a VM beside a neighbour on one host; (vm, registers, neighbour, its RAM digest before)."""
    host = Host(pcpus=1)
    vm = VM.from_source(source, host=host, stage2="scattered", ram_size=RAM, seed=3)
    neighbour = VM.from_source("    b .\n", host=host, stage2="scattered", ram_size=RAM, seed=4)
    before = digest(neighbour)
    result = host.run(max_insns=100_000, timeout_s=20, vms=[vm]).vms[0]
    assert result.reason is StopReason.POWERED_OFF, result.message
    return vm, result.registers, neighbour, before


def test_a_correct_driver_in_a_vm_prints_through_the_device():
    vm, regs, *_ = run(driver())
    assert vm.virtio_console.text == DATA and regs["x21"] == 1 and not regs["x20"] & NEEDS_RESET


def assert_refused(source: str, reason: str) -> VM:
    vm, regs, neighbour, before = run(source)
    transport = vm.virtio.transports[31]
    assert regs["x20"] & NEEDS_RESET, f"Status {regs['x20']:#x}"
    assert reason in transport.error, transport.error
    assert vm.virtio_console.text == "" and regs["x21"] == 0  # nothing printed, nothing returned
    assert digest(neighbour) == before
    return vm


def test_a_descriptor_outside_the_vms_ram_makes_the_device_ask_for_a_reset():
    assert_refused(driver(addr="=0x1000"), "outside the guest's RAM")
    assert_refused(driver(addr=f"={RAM_BASE + RAM - 2:#x}"), "outside the guest's RAM")  # straddles the end
    assert_refused(driver(addr="=0xffffffffffff0000"), "outside the guest's RAM")


def test_a_descriptor_chain_that_loops_is_refused_without_hanging():
    start = time.perf_counter()
    vm = assert_refused(driver(flags=1, following=1, second=(1, 0, 5)), "loop")  # 0 -> 1 -> 0 -> ...
    assert time.perf_counter() - start < 10
    assert vm.exits["DABT_LOWER"] < 100  # the guest went on: a handful of device accesses, no spinning


def test_a_queue_size_that_is_not_a_power_of_2_is_refused_when_the_queue_is_made_ready():
    vm = assert_refused(driver(size=3), "not a power of 2")
    assert "queue 1" in vm.virtio.transports[31].errors[0]


def test_a_notify_before_driver_ok_is_refused():
    assert_refused(driver(driver_ok_first=False), "before DRIVER_OK")


def test_rings_outside_ram_are_refused_when_the_queue_is_made_ready():
    assert_refused(driver(rings="ldr x10, =0x100000"), "outside the guest's RAM")


def test_after_the_reset_the_device_asked_for_the_driver_can_use_it_again():
    vm, regs, *_ = run(driver(addr="=0x1000", retry=True))
    assert regs["x20"] & NEEDS_RESET
    assert not regs["x22"] & NEEDS_RESET and regs["x23"] == 1
    assert vm.virtio_console.text == DATA and vm.virtio.transports[31].error is None


def test_a_receive_buffer_outside_ram_gets_nothing_written_anywhere():
    source = driver(queue=0, flags=2, addr=f"={RAM_BASE + RAM - 2:#x}")  # device-writable, straddling the end
    host = Host(pcpus=1)
    vm = VM.from_source(source, host=host, stage2="scattered", ram_size=RAM, seed=3)
    neighbour = VM.from_source("    b .\n", host=host, stage2="scattered", ram_size=RAM, seed=4)
    vm.virtio_console.feed("typed")
    before, own_end = digest(neighbour), vm.read_memory(RAM_BASE + RAM - 2, 2)
    result = host.run(max_insns=100_000, vms=[vm]).vms[0]
    assert result.reason is StopReason.POWERED_OFF and result.registers["x20"] & NEEDS_RESET
    assert vm.read_memory(RAM_BASE + RAM - 2, 2) == own_end and digest(neighbour) == before


@settings(max_examples=20)
@example(RAM_BASE, 275, 0, 0)  # the guest's image up to its used ring (found by the property)
@given(st.one_of(st.integers(0, (1 << 64) - 1), st.integers(RAM_BASE - 16, RAM_BASE + RAM + 16)),
       st.integers(0, 0x2_0000), st.integers(0, 7), st.integers(0, 7))
def test_any_descriptor_is_served_exactly_or_refused_and_nothing_outside_the_vm_changes(address, length, flags,
                                                                                      following):
    source = driver(addr=f"={address:#x}", length=length % 0x1_0000, flags=flags, following=following)
    vm, regs, neighbour, before = run(source)
    assert digest(neighbour) == before
    transport = vm.virtio.transports[31]
    if regs["x20"] & NEEDS_RESET:
        assert transport.error and vm.virtio_console.text == ""
    else:  # served: the device printed exactly the bytes the descriptor named (the second one is empty)
        assert regs["x21"] == 1 and transport.error is None
        length %= 0x1_0000
        named = bytearray(vm.read_memory(address, length) if length else b"")
        # The used ring (driver()'s 4 entries) was all zeros when the device read the buffer; it wrote
        # the ring afterwards -- a descriptor over the guest's own image covers it.
        used = assemble(source).address_of("used")
        for at in range(max(used, address), min(used + 6 + 8 * 4, address + length)):
            named[at - address] = 0
        assert bytes(vm.virtio_console.output) == bytes(named)


def test_a_device_writing_into_a_page_shared_copy_on_write_does_not_change_the_other_vm():
    from vlab.hyp.vm import share_identical_pages

    host = Host(pcpus=1)
    source = driver(queue=0, flags=2, addr="=0x40080000")  # a receive buffer in a page both VMs hold alike
    vm = VM.from_source(source, host=host, stage2="scattered", ram_size=RAM, seed=3)
    twin = VM.from_source(source, host=host, stage2="scattered", ram_size=RAM, seed=4)
    assert share_identical_pages(vm, twin) > 0
    before = digest(twin)
    vm.virtio_console.feed("typed")
    result = host.run(max_insns=100_000, vms=[vm]).vms[0]
    assert result.reason is StopReason.POWERED_OFF and vm.read_memory(0x4008_0000, 5) == b"typed"
    assert digest(twin) == before
