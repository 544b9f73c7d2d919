"""dom0: the privileged domain of a type 1 hypervisor, at its smallest -- a guest that serves the
other domains' consoles (vlab.hyp.type1 is the hypervisor around it).

Xen itself drives no device beyond the interrupt controller and the timer: I/O to a domain's
emulated devices goes to a device model in dom0, another VM on the same host. Here that model is
real AArch64 code running in dom0 (`SOURCE`). For each domain it serves:

    Xen: the domain's access exits -> an ioreq_t in the domain's ring (a page of dom0's RAM,
         vlab.hyp.ioring) -> an event for dom0, which wakes; the domain's vCPU waits
    dom0: takes the request, performs it on the domain's PL011 -- the real one, mapped into dom0
          by passthrough, so these accesses make no exits -- and writes the answer in the slot;
          then EVTCHNOP_send (event_channel_op 32) tells Xen, and SCHEDOP_block (sched_op 29)
          sleeps until the next request
    Xen: completes the domain's load or store from the answer, and wakes its vCPU

dom0's memory (IPAs): its code at 0x4000_0000; INFO at 0x4000_8000 (u32: how many domains it
serves; then the struct evtchn_send it fills); domain k's ring at RINGS + 0x1000 k; domain k's
PL011 at BACKENDS + 0x1000 k (QEMU virt's platform-bus window, free for dom0's devices).
"""

from __future__ import annotations

from vlab.hyp.assign import passthrough
from vlab.hyp.ioring import HEADER, RING_SIZE, RSP_PROD, Ring
from vlab.machine.board import RAM_BASE

DOM0_RAM = 0x20_0000
INFO = RAM_BASE + 0x8000
RINGS = RAM_BASE + 0x10_0000
BACKENDS = 0x0C00_0000
MAX_DOMAINS = (DOM0_RAM - (RINGS - RAM_BASE)) // 0x1000  # one ring page each
EVTCHNOP_send = 4  # xen/include/public/event_channel.h: struct evtchn_send { evtchn_port_t port; }
HYPERVISOR_event_channel_op, HYPERVISOR_sched_op, SCHEDOP_block = 32, 29, 1

SOURCE = f"""// dom0 -- the device model of the domains it serves (vlab.hyp.dom0). For each domain, it takes
// the I/O requests Xen put in the domain's ring, performs each on the domain's real PL011 (passed
// through to dom0, so no exit), answers in the same slot, tells Xen, and sleeps until Xen has more.
    ldr     x20, ={RINGS:#x}
    ldr     x21, ={BACKENDS:#x}
    ldr     x22, ={INFO:#x}
serve:
    ldr     w19, [x22]              // how many domains Xen asked dom0 to serve
    mov     x10, #0                 // domain k
next_domain:
    cmp     x10, x19
    b.hs    sleep
    add     x11, x20, x10, lsl #12  // its ring
    add     x12, x21, x10, lsl #12  // its PL011
    mov     x9, #0                  // answers given on this ring
drain:
    ldr     w1, [x11]               // req_prod
    ldr     w2, [x11, #{RSP_PROD}]  // rsp_prod, the next request to answer
    cmp     w1, w2
    b.eq    notify
    dmb     ishld                   // the request after its index (Xen's rmb)
    and     w3, w2, #{RING_SIZE - 1}
    add     x3, x11, x3, lsl #5
    add     x3, x3, #{HEADER}       // its slot, an ioreq_t
    ldr     x4, [x3]                // addr, the guest's IPA
    and     x4, x4, #0xfff
    add     x4, x12, x4             // the same register of the real PL011
    ldr     w5, [x3, #20]           // size
    ldrb    w6, [x3, #30]           // state, data_is_ptr, dir
    tbnz    w6, #5, read
    ldr     x7, [x3, #8]            // data, to write
    cmp     w5, #1
    b.eq    write1
    cmp     w5, #2
    b.eq    write2
    cmp     w5, #4
    b.eq    write4
    str     x7, [x4]
    b       answered
write1:
    strb    w7, [x4]
    b       answered
write2:
    strh    w7, [x4]
    b       answered
write4:
    str     w7, [x4]
    b       answered
read:
    cmp     w5, #1
    b.eq    read1
    cmp     w5, #2
    b.eq    read2
    cmp     w5, #4
    b.eq    read4
    ldr     x7, [x4]
    b       reply
read1:
    ldrb    w7, [x4]
    b       reply
read2:
    ldrh    w7, [x4]
    b       reply
read4:
    ldr     w7, [x4]
reply:
    str     x7, [x3, #8]            // data, the value read
answered:
    and     w6, w6, #0xf0
    orr     w6, w6, #3              // STATE_IORESP_READY
    strb    w6, [x3, #30]
    dmb     ishst                   // the answer before its index (Xen's wmb)
    add     w2, w2, #1
    str     w2, [x11, #{RSP_PROD}]
    mov     x9, #1
    b       drain
notify:
    cbz     x9, next
    str     w10, [x22, #8]          // struct evtchn_send, port = k
    mov     x0, #{EVTCHNOP_send}
    add     x1, x22, #8
    mov     x16, #{HYPERVISOR_event_channel_op}
    hvc     #0xea1
next:
    add     x10, x10, #1
    b       next_domain
sleep:
    mov     x0, #{SCHEDOP_block}
    mov     x1, #0
    mov     x16, #{HYPERVISOR_sched_op}
    hvc     #0xea1
    b       serve
"""


class Dom0Device:
    """A domain's device that dom0's model serves: in the domain, a place whose accesses Xen forwards
    to dom0 (its registers are those of `real`, the device dom0 drives)."""

    def __init__(self, real):
        self.real = real
        self.name, self.base, self.size = real.name, real.base, real.size

    def register_name(self, offset: int) -> str:
        return self.real.register_name(offset)

    def read(self, offset: int, size: int) -> int:
        raise RuntimeError(f"{self.name} is served by dom0: Xen forwards its accesses, it has none of its own")

    write = read


def make_dom0(host, source: str = SOURCE):
    """dom0 on `host` (the first VM, so domain 0), running `source` (default: the model above)."""
    from vlab.hyp.vm import VM  # vm imports this package's handlers

    if host.vms:
        raise ValueError("dom0 is a host's first VM (domain 0): make it before the other domains")
    dom0 = VM.from_source(source, host=host, stage2="contiguous", ram_size=DOM0_RAM)
    dom0.write_memory(INFO, bytes(16))
    return dom0


def serve(dom0, domain, port: int) -> Ring:
    """Make dom0 the device model of `domain`'s console, on event channel `port` (its ring's number):
    the domain's PL011 becomes dom0's (passthrough), the domain keeps a Dom0Device in its place."""
    if port >= MAX_DOMAINS:
        raise ValueError(f"this dom0 serves at most {MAX_DOMAINS} domains (one ring page each)")
    uart = domain.uart
    domain.devices[domain.devices.index(uart)] = Dom0Device(uart)
    passthrough(uart, dom0, BACKENDS + 0x1000 * port)
    ring = Ring(dom0, RINGS + 0x1000 * port)
    ring.reset()
    dom0.write_memory(INFO, (port + 1).to_bytes(4, "little"))
    return ring
