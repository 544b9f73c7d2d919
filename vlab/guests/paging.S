// paging.S - a kernel that builds its own stage-1 translation tables and turns its MMU on.
//
// Three 1 GiB regions, 4 KB granule, T0SZ = 25 (39-bit VAs: the walk starts at level 1):
//   VA 0x0000_0000 -> PA 0x0000_0000  device memory (the UART lives here)
//   VA 0x4000_0000 -> PA 0x4000_0000  normal memory (this kernel, identity mapped)
//   VA 0x8000_0000 -> PA 0x4000_0000  an alias, through a level-2 table: 2 MiB blocks
// It stores a magic word before the MMU is on, reads it back through the alias after,
// and prints. Self-check: x19 = 0x600d when the alias saw the word.
_start:
    ldr     x0, =0x40100000
    mov     sp, x0
    mov     x19, #0xbad
    ldr     x20, =0x40020000       // where the magic word lives (physical)
    ldr     x1, =0x5eed600d
    str     x1, [x20]

    ldr     x1, =0x40010000        // level-1 table
    ldr     x2, =0x00000405        // block at PA 0, AttrIndx 1 (device), AF
    str     x2, [x1]
    ldr     x2, =0x40000701        // block at PA 0x4000_0000, AttrIndx 0 (normal), inner shareable, AF
    str     x2, [x1, #8]
    ldr     x3, =0x40011000        // level-2 table for the alias
    orr     x2, x3, #3             // a table descriptor
    str     x2, [x1, #16]
    ldr     x2, =0x40000701        // level-2 block: VA 0x8000_0000 -> PA 0x4000_0000 (2 MiB)
    str     x2, [x3]

    ldr     x2, =0xff              // MAIR: attr0 normal write-back, attr1 device-nGnRnE
    msr     mair_el1, x2
    ldr     x2, =0x200803519       // TCR: T0SZ 25, WB caches, inner shareable, EPD1, 40-bit IPS
    msr     tcr_el1, x2
    msr     ttbr0_el1, x1
    isb
    mrs     x2, sctlr_el1
    orr     x2, x2, #1             // M: the MMU on
    msr     sctlr_el1, x2
    isb

    ldr     x4, =0x80020000        // the magic word, through the alias
    ldr     x5, [x4]
    ldr     x6, =0x5eed600d
    cmp     x5, x6
    b.ne    report
    mov     x19, #0x600d
report:
    adr     x1, message
    ldr     x2, =0x09000000
next:
    ldrb    w3, [x1], #1
    cbz     w3, off
wait:
    ldr     w4, [x2, #0x18]
    tbnz    w4, #5, wait
    str     w3, [x2]
    b       next
off:
    ldr     x0, =0x84000008
    hvc     #0
    b       .

message:
    .asciz  "paging: the MMU is on, and the alias reads what was stored\n"
