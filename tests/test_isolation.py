"""Isolation between VMs on one host memory, with page sharing, dirty tracking and several vCPUs.

The promise: a VM never sees another VM's memory. Three ways it broke (issue 19): frames given back
by page sharing kept their data, so the next VM to get one could read it; a stage-2 change reached
only the TLB of the vCPU that faulted; dirty tracking missed writes through translations cached
before write protection. Each has its reproduction here; the properties in general are in
test_isolation_properties.py.
"""

from __future__ import annotations

import pytest

from vlab.asm import assemble
from vlab.hyp import VM
from vlab.hyp.memory import PAGE, HostMemory, VmMemory
from vlab.hyp.vm import share_identical_pages
from vlab.machine.board import StopReason
from vlab.machine.loader import image_from_program
from vlab.mmu.memory import BufferMemory
from vlab.mmu.tables import FrameAllocator

OFF = "    ldr x0, =0x84000008\n    hvc #0\n"
CPU_ON, CPU_OFF = 0xC400_0003, 0x8400_0002
RAM = 0x10_0000


def writer(address: int, value: int) -> str:
    return f"    ldr x1, ={address:#x}\n    ldr x2, ={value:#x}\n    str x2, [x1]\n" + OFF


# --- item 1: frames given back are scrubbed ---------------------------------------------------------

def test_a_frame_freed_by_page_sharing_reaches_the_next_vm_zeroed():
    # The reproduction: A and B write the same secret at IPA 0x4008_0000; sharing maps both
    # pages onto one frame and frees the other (B's). A new VM C on the same host gets freed frames.
    host = HostMemory(0x40_0000)
    secret = 0x5EC2_E7C0_FFEE
    a = VM.from_source(writer(0x4008_0000, secret), stage2="contiguous", host=host, ram_size=RAM, vmid=1)
    b = VM.from_source(writer(0x4008_0000, secret), stage2="contiguous", host=host, ram_size=RAM, vmid=2)
    assert a.run().reason is b.run().reason is StopReason.POWERED_OFF
    assert share_identical_pages(a, b) > 0
    c = VM(stage2="contiguous", host=host, ram_size=RAM, vmid=3)
    assert secret.to_bytes(8, "little") not in c.memory.read(0x4000_0000, RAM)
    assert c.memory.read(0x4000_0000, RAM) == bytes(RAM), "every frame C received is zero"


def test_a_frame_allocator_scrubs_what_it_is_given_back():
    memory = BufferMemory(0, 0x4000)
    frames = FrameAllocator(0, 0x4000, memory=memory)
    frame = frames.allocate()
    memory.write(frame, b"\xA5" * PAGE)
    frames.release(frame)
    assert memory.read(frame, PAGE) == bytes(PAGE)
    with pytest.raises(ValueError, match="scrub"):
        FrameAllocator(0, 0x4000).release(0)  # no memory to zero it in: refused, not silently kept


def test_writing_a_vms_memory_by_ipa_never_changes_a_page_another_vm_shares():
    # The loader's (or a debugger's) writes by IPA go through copy-on-write as the guest's do.
    host = HostMemory(0x40_0000)
    a = VM(stage2="scattered", host=host, ram_size=RAM, vmid=1)
    b = VM(stage2="scattered", host=host, ram_size=RAM, vmid=2, seed=3)
    share_identical_pages(a, b)
    assert a.memory.frame_of(0x4008_0000) == b.memory.frame_of(0x4008_0000)
    a.memory.write(0x4008_0010, b"A's own")
    assert b.memory.read(0x4008_0000, PAGE) == bytes(PAGE)
    assert a.memory.read(0x4008_0010, 7) == b"A's own"


# --- item 3: dirty tracking sees every write ----------------------------------------------------------

def test_write_protection_and_every_change_of_a_valid_stage2_entry_tell_the_vm():
    calls = []
    host = HostMemory(0x40_0000)
    memory = VmMemory(host, 0x4000_0000, RAM, "contiguous")
    other = VmMemory(host, 0x4000_0000, RAM, "contiguous", vmid=2)
    memory.on_change = calls.append
    memory.write(0x4000_0000, b"\x01")
    assert calls == [], "writing memory changes no stage-2 entry"
    memory.write_protect()
    assert calls == [None], "write protection must reach every TLB: cached entries allow writes"
    memory.resolve(0x4000_0008, write=True)
    assert calls == [None, 0x4000_0000], "the page is writable again"
    from vlab.hyp.memory import share_identical_pages as share_memories

    share_memories([memory, other])
    assert calls == [None, 0x4000_0000, None], "sharing remapped its zero pages: once per VM, not once per page"
    share_memories([memory, other])
    assert len(calls) == 3, "nothing left to share: nothing changed"
    memory.resolve(0x4000_1000, write=True)  # copy-on-write of a shared zero page
    assert calls[3:] == [0x4000_1000]


def test_after_write_protection_every_write_is_dirty_demand_paged_and_loader_writes_included():
    host = HostMemory(0x40_0000)
    memory = VmMemory(host, 0x4000_0000, RAM, "demand")
    memory.write(0x4000_0000, b"code")
    memory.write_protect()
    assert memory.resolve(0x4000_2000, write=True) and 0x4000_2000 in memory.dirty, "demand-paged by a write"
    assert memory.resolve(0x4000_3000, write=False) and 0x4000_3000 not in memory.dirty, "read: not dirty..."
    assert memory.translate(0x4000_3000).fault is None and memory.resolve(0x4000_3000, write=True)
    assert 0x4000_3000 in memory.dirty, "...until written: it was mapped read-only so the write is seen"
    memory.write(0x4000_5000, b"loader")
    assert memory.dirty == {0x4000_2000, 0x4000_3000, 0x4000_5000}


LOOP_WRITER = """    ldr x1, =0x40080000
    mov x2, #0
again:
    add x2, x2, #1
    str x2, [x1]
    b again
"""


@pytest.mark.parametrize("layout", ["contiguous", "scattered", "demand"])
def test_a_guest_writing_in_a_loop_while_write_protected_is_seen_through_translations_cached_before(layout):
    vm = VM.from_source(LOOP_WRITER, stage2=layout, ram_size=RAM)
    vm.run(max_insns=1_000)
    vm.memory.write_protect()
    before = vm.memory.read(0x4008_0000, 8)
    vm.run(max_insns=1_000)
    assert vm.memory.read(0x4008_0000, 8) != before, "the guest kept writing"
    assert 0x4008_0000 in vm.memory.dirty


# --- item 2: a stage-2 change reaches every vCPU ------------------------------------------------------

PEEK, FLAG1 = 0x4008_0000, 0x4009_0000
HOSTILE = f"""    ldr x0, ={CPU_ON:#x}
    mov x1, #1
    adr x2, breaker
    hvc #0
    ldr x4, ={PEEK:#x}
    ldr x19, [x4]                // vCPU0 caches its translation of the page it shares with the victim
    adr x5, flags
wait1:
    ldr x6, [x5, #8]
    cbz x6, wait1                // until vCPU1 has broken the sharing
wait2:
    ldr x6, [x5]
    cmp x6, #2
    b.ne wait2                   // until the host says the victim has written
    ldr x20, [x4]                // what vCPU0 reads there now
{OFF}
breaker:
    ldr x4, ={PEEK:#x}
    ldr x2, =0xaaaa
    str x2, [x4]                 // copy-on-write: this VM's page gets a frame of its own
    adr x5, flags
    str x2, [x5, #8]
    ldr x0, ={CPU_OFF:#x}
    hvc #0
    .balign 0x1000
flags:                           // unlike any page of the victim's: never shared
    .quad 0xa11ce                // the host's: 2 once the victim has written
    .quad 0                      // vCPU1's: set once it has broken the sharing
"""


def shareable(*vms: VM, peek: bytes = bytes(8)) -> None:
    """Give each VM the same PEEK page (`peek`, then zeros) and a zero FLAG1 page: identical, so shared."""
    for vm in vms:
        vm.memory.write(PEEK, peek)
        vm.memory.write(FLAG1, bytes(8))


@pytest.mark.parametrize("layout", ["contiguous", "scattered", "demand"])
def test_a_vcpu_never_reads_through_a_translation_another_vcpu_made_stale(layout):
    # The reproduction. Both VMs hold the same page (a library, say), so it is shared by the two of
    # them only. When vCPU1 breaks the sharing, the victim is the frame's last sharer: its copy-on-write
    # keeps the frame, writable, and its private data lands there. vCPU0 must not see it.
    host = HostMemory(0x80_0000)
    secret = 0x5EC2_E7C0_FFEE
    program = assemble(HOSTILE)
    hostile = VM.from_image(image_from_program(program), vcpus=2, stage2=layout, host=host, ram_size=RAM, vmid=1)
    victim = VM.from_source(writer(PEEK, secret), stage2=layout, host=host, ram_size=RAM, vmid=2)
    flags = program.symbols["flags"]
    shareable(hostile, victim, peek=b"the same library page")
    share_identical_pages(hostile, victim)
    assert hostile.memory.frame_of(PEEK) == victim.memory.frame_of(PEEK)
    hostile.run(max_insns=2_000_000)  # vCPU0 now waits for FLAG2
    assert hostile.vcpus[1].read_memory(flags + 8, 8) != bytes(8), "vCPU1 broke the sharing"
    assert victim.run().reason is StopReason.POWERED_OFF
    hostile.memory.write(flags, (2).to_bytes(8, "little"))
    result = hostile.run(max_insns=2_000_000)
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert hostile.vcpus[0].x(20) == 0xAAAA != secret


SMP_STALE = f"""    ldr x0, ={CPU_ON:#x}
    mov x1, #1
    adr x2, second
    hvc #0
    ldr x4, ={PEEK:#x}
    ldr x19, [x4]                // vCPU0 caches the shared zero page
    ldr x5, ={FLAG1:#x}
wait:
    ldr x6, [x5]
    cbz x6, wait
    ldr x20, [x4]                // vCPU1 stored 0xbbbb there before setting the flag
{OFF}
second:
    ldr x4, ={PEEK:#x}
    ldr x2, =0xbbbb
    str x2, [x4]
    ldr x5, ={FLAG1:#x}
    str x2, [x5]
    ldr x0, ={CPU_OFF:#x}
    hvc #0
"""


@pytest.mark.parametrize("layout", ["contiguous", "scattered", "demand"])
def test_after_sharing_a_store_by_one_vcpu_is_seen_by_the_other(layout):
    host = HostMemory(0x80_0000)
    vm = VM.from_source(SMP_STALE, vcpus=2, stage2=layout, host=host, ram_size=RAM, vmid=1)
    other = VM(stage2=layout, host=host, ram_size=RAM, vmid=2)
    shareable(vm, other)
    share_identical_pages(vm, other)
    result = vm.run(max_insns=2_000_000)
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert vm.vcpus[0].x(20) == 0xBBBB
