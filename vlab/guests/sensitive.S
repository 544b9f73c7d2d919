// sensitive.S - a kernel that does the sensitive things a kernel does, and checks each result.
//
// It installs its vector table (VBAR_EL1), reads the CPU's identity (MIDR_EL1, MPIDR_EL1)
// and memory features (ID_AA64MMFR0_EL1), writes and reads back its memory attributes
// (MAIR_EL1) and translation control (TCR_EL1), reads its implementation-defined control
// (ACTLR_EL1), asks the firmware for its PSCI version through HVC and through SMC,
// turns the GIC on, sleeps in WFI until its virtual timer interrupts it (PPI 27, through the
// GIC: acknowledged with GICC_IAR, completed with GICC_EOIR), and prints through the
// PL011. Run it on the bare board and in a VM under any trap controls: it must print the
// same and end with the same self-check, x19 = 0x600d.
_start:
    ldr     x0, =0x40100000
    mov     sp, x0
    mov     x19, #0xbad
    adr     x0, vectors
    msr     vbar_el1, x0

    mrs     x20, midr_el1          // identity: who am I running on?
    mrs     x21, mpidr_el1
    mrs     x22, id_aa64mmfr0_el1  // which physical address sizes and granules exist

    ldr     x1, =0x000000000044ff04
    msr     mair_el1, x1           // memory attributes: a virtual-memory control (TVM)
    mrs     x2, mair_el1           // ... and read back (TRVM)
    cmp     x1, x2
    b.ne    fail
    ldr     x1, =0x25b5103510
    msr     tcr_el1, x1
    mrs     x2, tcr_el1
    cmp     x1, x2
    b.ne    fail

    mrs     x24, actlr_el1         // the implementation-defined control (TACR)

    ldr     x0, =0x84000000        // PSCI_VERSION: a call to the firmware (on QEMU virt, through HVC)
    hvc     #0
    ldr     x1, =0x10001           // PSCI 1.1
    cmp     x0, x1
    b.ne    fail
    ldr     x0, =0x84000000        // the same call through SMC, the secure monitor's door (TSC)
    smc     #0
    cmp     x0, x1
    b.ne    fail

    ldr     x1, =0x08000000        // the GIC distributor
    mov     w2, #1
    str     w2, [x1]               // GICD_CTLR, forward interrupts
    mov     w2, #(1 << 27)
    str     w2, [x1, #0x100]       // GICD_ISENABLER0, PPI 27 (the virtual timer)
    ldr     x1, =0x08010000        // this CPU's GIC interface
    mov     w2, #0xff
    str     w2, [x1, #4]           // GICC_PMR, every priority gets through
    mov     w2, #1
    str     w2, [x1]               // GICC_CTLR, signal interrupts to the CPU

    mov     x23, #0                // the IRQ handler sets this
    mov     x1, #1000
    msr     cntv_tval_el0, x1      // the virtual timer fires in 1000 ticks
    mov     x1, #1
    msr     cntv_ctl_el0, x1
    msr     daifclr, #2            // unmask IRQs
sleep:
    wfi                            // idle until the interrupt (TWI traps it)
    cbz     x23, sleep
    msr     daifset, #2
    msr     cntv_ctl_el0, xzr

    adr     x1, message
    bl      puts
    mov     x19, #0x600d
    b       off
fail:
    adr     x1, failed
    bl      puts
off:
    ldr     x0, =0x84000008        // PSCI SYSTEM_OFF
    hvc     #0
    b       .

// puts: print the zero-terminated string at x1 through the PL011
puts:
    ldr     x2, =0x09000000
next:
    ldrb    w3, [x1], #1
    cbz     w3, done
wait:
    ldr     w4, [x2, #0x18]        // UARTFR
    tbnz    w4, #5, wait           // TXFF: transmit FIFO full
    str     w3, [x2]               // UARTDR
    b       next
done:
    ret

message:
    .asciz  "sensitive: identity, MAIR, TCR, PSCI and the timer all checked out\n"
failed:
    .asciz  "sensitive: a check failed\n"

    .balign 0x800
vectors:
    b       .                      // current EL with SP_EL0: synchronous
    .balign 0x200
    b       .                      // current EL with SP_ELx: synchronous (unexpected)
    .balign 0x80
    mov     x23, #1                // current EL with SP_ELx, IRQ -- the timer
    ldr     x2, =0x08010000
    ldr     w3, [x2, #0xc]         // GICC_IAR, acknowledge it (INTID 27)
    msr     cntv_ctl_el0, xzr      // quiet the timer, or its line would stay high
    str     w3, [x2, #0x10]        // GICC_EOIR, complete it
    eret
