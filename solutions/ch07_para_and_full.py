"""Chapter 7 exercises: para- and full virtualization.

Fill in each function where it says so, then check it in a notebook:

    from vlab.grading import check, load
    ch07 = load("ch07_para_and_full")   # this file, as saved now
    check("ch07.offer_buffer", ch07.offer_buffer)

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
    ### BEGIN SOLUTION
    return """
console_write:
    mov     x2, x0             // the buffer
    mov     x0, #0             // CONSOLEIO_write; x1 is already the count
    mov     x16, #18           // __HYPERVISOR_console_io
    hvc     #0xea1
    ret
"""
    ### END SOLUTION


def offer_buffer(queue, descriptor, address, length):
    """Offer one device-readable buffer on a split virtqueue, as a virtio driver does.

    queue is a dict: "size" (the queue's size, a power of 2), "desc" (the descriptor table's
    bytes, 16 per descriptor), "avail" (the available ring's bytes) and "used_flags" (the le16
    flags of the used ring, which the device writes). Every field is little-endian.

    1. Descriptor `descriptor` is the 16 bytes at 16 * descriptor of the table: set them to
       le64 addr = address, le32 len = length, le16 flags = 0 (the device reads the buffer),
       le16 next = 0.
    2. The available ring is le16 flags, le16 idx, le16 ring[size], le16 used_event: write
       `descriptor` into ring[idx % size],
    3. then advance idx by one, modulo 2**16 (it runs free: only its slot wraps at size).
       Change nothing else in either table.
    4. Notify the device unless it set VIRTQ_USED_F_NO_NOTIFY, bit 0 of used_flags.

    Return (the descriptor table's bytes, the available ring's bytes, whether to notify):
    bytes, not bytearrays (bytes(table) makes one).
    """
    ### BEGIN SOLUTION
    import struct

    desc, avail = bytearray(queue["desc"]), bytearray(queue["avail"])
    struct.pack_into("<QIHH", desc, 16 * descriptor, address, length, 0, 0)
    idx = struct.unpack_from("<H", avail, 2)[0]
    struct.pack_into("<H", avail, 4 + 2 * (idx % queue["size"]), descriptor)
    struct.pack_into("<H", avail, 2, (idx + 1) & 0xFFFF)  # after the entry it publishes
    return bytes(desc), bytes(avail), not queue["used_flags"] & 1
    ### END SOLUTION


def console_io(x0, x1, x2, ram_base, ram):
    """The hypervisor's side of Xen's console_io hypercall: (the result for x0, the bytes printed).

    x0, x1, x2 are the guest's registers when it made the hypercall; `ram` is the VM's RAM (bytes),
    whose first byte is at guest address `ram_base`. The arguments are C ints: keep the low 32 bits
    of x0 (cmd) and x1 (count); x2 is the buffer's guest address.

    cmd 0, CONSOLEIO_write: the count bytes at x2 are printed -- return (0, those bytes); a count of
    0 prints nothing: (0, b""). If any of the bytes is outside the RAM, print nothing and return
    (-14, b""), -EFAULT. Any other cmd: (-38, b""), -ENOSYS. (Xen itself prints the 127-byte chunks
    it could read before a bad one; in these tests a bad byte is always in the first chunk.)
    """
    ### BEGIN SOLUTION
    cmd, count = x0 & 0xFFFF_FFFF, x1 & 0xFFFF_FFFF
    if cmd != 0:
        return -38, b""
    if count == 0:
        return 0, b""
    if not (ram_base <= x2 and x2 + count <= ram_base + len(ram)):
        return -14, b""
    return 0, ram[x2 - ram_base:x2 - ram_base + count]
    ### END SOLUTION
