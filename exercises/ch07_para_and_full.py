"""Chapter 7 exercises: para- and full virtualization.

Fill in each function where it says so, then check it in a notebook:

    from vlab.grading import check
    from ch07_para_and_full import offer_buffer
    check("ch07.offer_buffer", offer_buffer)

Xen's ARM hypercalls: HVC #0xEA1, the hypercall number in x16, arguments in x0-x4, the result in
x0 (xen/include/public/arch-arm.h). console_io is number 18, CONSOLEIO_write its command 0.
"""

UART_WRITE = """
uart_write:                    // x0 = bytes, x1 = how many: two device accesses (two exits) a byte
    ldr     x9, =0x09000000
    cbz     x1, uart_done
uart_wait:
    ldr     w10, [x9, #0x18]   // UARTFR
    tbnz    w10, #5, uart_wait // TXFF: the transmit FIFO is full
    ldrb    w10, [x0], #1
    strb    w10, [x9]          // UARTDR
    subs    x1, x1, #1
    b.ne    uart_wait
uart_done:
    ret
"""


def console_write_source():
    """AArch64 assembly source defining `console_write`: uart_write (above) made a hypercall.

    Called with `bl console_write`, x0 = the bytes' address and x1 = how many. Print them
    with ONE console_io hypercall each time you are called, even for 0 bytes (Xen answers 0):
    x16 = 18, x0 = 0 (CONSOLEIO_write), x1 = the count, x2 = the address, then `hvc #0xea1`.
    Return with `ret`, leaving Xen's result in x0 (0, or -14 for a buffer outside the VM), and
    keep x19-x29 and sp as they were (use x0-x18 for scratch).
    """
    raise NotImplementedError("write your answer here (see the docstring above)")


def offer_buffer(memory, queue, descriptor, address, length, notify):
    """Offer one device-readable buffer on a split virtqueue, as a virtio driver does; True if it notified.

    memory: the guest's RAM -- memory.read(address, size) -> bytes, memory.write(address, data),
            memory.read_u16(address), memory.write_u16(address, value) (little-endian)
    queue:  queue.size (a power of 2), and the guest-physical addresses of its three areas:
            queue.desc (descriptor table), queue.avail (available ring), queue.used (used ring)
    descriptor: the number of a free descriptor to use; notify: call it to notify the device

    1. Fill descriptor `descriptor`, 16 bytes at queue.desc + 16 * descriptor:
       le64 addr = address, le32 len = length, le16 flags = 0 (the device reads it), le16 next = 0.
    2. The available ring is le16 flags at queue.avail, le16 idx at +2, le16 ring[size] from +4:
       write `descriptor` into ring[idx % size].
    3. Then advance idx by one, modulo 2**16 (it runs free: only its slot wraps at size).
    4. Then, unless the device set VIRTQ_USED_F_NO_NOTIFY (bit 0 of the le16 flags at
       queue.used), call notify() and return True; otherwise return False.
    """
    raise NotImplementedError("write your answer here (see the docstring above)")


def console_io(vcpu, console_write):
    """The hypervisor's handler of Xen's console_io hypercall; returns the result (an int) for x0.

    vcpu.x(n) reads the guest's register xn; vcpu.read_memory(address, size) reads the VM's RAM
    and raises ValueError when any of it is outside; console_write(data) prints bytes on the VM's
    console. The arguments are C ints: keep the low 32 bits of x0 (cmd) and x1 (count); x2 is
    the buffer's guest address.

    cmd 0, CONSOLEIO_write: print the count bytes at x2 and return 0 (a count of 0 prints
    nothing and returns 0). If any byte is outside the VM's RAM, print nothing and return
    -EFAULT (-14). Any other cmd: return -ENOSYS (-38).
    """
    raise NotImplementedError("write your answer here (see the docstring above)")
