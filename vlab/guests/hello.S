// hello.S - the smallest kernel: print through the PL011 UART, then power off.
//
// It runs at EL1 on vlab's board (vlab run vlab/guests/hello.S) and on QEMU's virt board; there,
// from the vlab checkout, GNU as assembles the same source and QEMU boots it:
//   aarch64-linux-gnu-as -o hello.o vlab/guests/hello.S
//   aarch64-linux-gnu-ld -Ttext=0x40080000 -o hello.elf hello.o
//   qemu-system-aarch64 -M virt -cpu cortex-a72 -m 128M -nographic -nodefaults -serial stdio -kernel hello.elf
// (-nodefaults: no network card, whose boot ROM Debian's QEMU package does not ship.)
// Self-check: x19 holds 0x600d and the byte count sits in `count`.
    .global _start
_start:
    ldr     x1, =0x09000000        // PL011 base
    adr     x2, message
    mov     x5, #0                 // bytes printed
next_char:
    ldrb    w3, [x2], #1
    cbz     w3, done
tx_wait:
    ldr     w4, [x1, #0x18]        // UARTFR
    tbnz    w4, #5, tx_wait        // TXFF set means the transmit FIFO is full
    str     w3, [x1]               // UARTDR
    add     x5, x5, #1
    b       next_char
done:
    adr     x6, count
    str     x5, [x6]
    mov     x19, #0x600d           // self-check value the tests look for
    ldr     x0, =0x84000008        // PSCI SYSTEM_OFF
    hvc     #0
    b       .                      // not reached

message:
    .asciz  "Hello from EL1!\n"
    .balign 8
count:
    .quad   0
