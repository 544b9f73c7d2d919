// ticks.S - the virtual timer's interrupt through the GIC, three ticks, and a self-check.
//
// The kernel turns the GIC on -- the distributor forwards, PPI 27 (the virtual timer) is
// enabled with priority 0xa0, its CPU interface signals every priority -- arms the virtual
// timer and sleeps in WFI with IRQs masked, unmasking them between sleeps. Each tick enters
// VBAR_EL1 + 0x280, where the handler acknowledges the interrupt (GICC_IAR, which must say 27),
// moves the timer's compare value one period on (its line falls) and completes it (GICC_EOIR).
// After three ticks it prints and powers off, x19 = 0x600d. On the board the timer's line goes
// through the GIC to the core; in a VM through the hypervisor, a list register and the GIC's
// virtual CPU interface -- the guest cannot tell.
    .equ    PERIOD, 2000           // counter ticks between interrupts
_start:
    ldr     x0, =0x40100000
    mov     sp, x0
    adr     x0, vectors
    msr     vbar_el1, x0
    ldr     x1, =0x08000000        // the GIC distributor
    mov     w2, #1
    str     w2, [x1]               // GICD_CTLR, forward interrupts
    ldr     w2, =0x8000000
    str     w2, [x1, #0x100]       // GICD_ISENABLER0, PPI 27
    mov     w2, #0xa0
    strb    w2, [x1, #0x41b]       // GICD_IPRIORITYR, the byte of INTID 27
    ldr     x9, =0x08010000        // this CPU's GIC interface
    mov     w2, #0xff
    str     w2, [x9, #4]           // GICC_PMR, every priority gets through
    mov     w2, #1
    str     w2, [x9]               // GICC_CTLR, signal interrupts to the CPU
    mov     x20, #0                // ticks taken
    mov     x21, #0                // acknowledged INTIDs that were not 27
    mrs     x1, cntvct_el0
    add     x1, x1, #PERIOD
    msr     cntv_cval_el0, x1
    mov     x1, #1
    msr     cntv_ctl_el0, x1       // enabled, not masked
sleep:
    msr     daifset, #2            // masked while deciding, so no tick slips in before the WFI
    cmp     x20, #3
    b.hs    awake
    wfi                            // wakes when the GIC signals, masked or not
    msr     daifclr, #2            // the interrupt is taken here
    b       sleep
awake:
    msr     cntv_ctl_el0, xzr
    cbnz    x21, fail
    adr     x1, message
    bl      puts
    mov     x19, #0x600d
    b       off
fail:
    adr     x1, failed
    bl      puts
    mov     x19, #0xbad
off:
    ldr     x0, =0x84000008        // PSCI SYSTEM_OFF
    hvc     #0
    b       .

// puts, the zero-terminated string at x1 through the PL011
puts:
    ldr     x2, =0x09000000
next:
    ldrb    w3, [x1], #1
    cbz     w3, done
wait:
    ldr     w4, [x2, #0x18]        // UARTFR
    tbnz    w4, #5, wait           // TXFF, transmit FIFO full
    str     w3, [x2]               // UARTDR
    b       next
done:
    ret

message:
    .asciz  "ticks: three virtual timer interrupts, each acknowledged as INTID 27 and completed\n"
failed:
    .asciz  "ticks: an interrupt other than 27 was acknowledged\n"

    .balign 0x800
vectors:
    b       .                      // current EL with SP_EL0, synchronous
    .balign 0x200
    b       .                      // current EL with SP_ELx, synchronous (unexpected)
    .balign 0x80
    ldr     w3, [x9, #0xc]         // current EL with SP_ELx, IRQ -- GICC_IAR, acknowledge
    cmp     w3, #27
    cinc    x21, x21, ne
    add     x20, x20, #1
    mrs     x4, cntv_cval_el0
    add     x4, x4, #PERIOD
    msr     cntv_cval_el0, x4      // the next tick, one period on -- the line falls now
    str     w3, [x9, #0x10]        // GICC_EOIR, complete it
    eret
