// ipi.S - an inter-processor interrupt: CPU 0 wakes CPU 1 from WFI with an SGI.
//
// CPU 0 turns the GIC on and starts CPU 1 with PSCI CPU_ON. CPU 1 sets up its own CPU interface
// (the GICC registers are banked), tells CPU 0 it is ready with SGI 1 and sleeps in WFI. CPU 0,
// which waits for SGIs in WFI too (IRQs masked, polling GICC_IAR), gets SGI 1 from CPU 1 and
// sends SGI 2 to CPU 1 (GICD_SGIR, target list = CPU 1). CPU 1 wakes, takes it at its IRQ
// vector and answers with SGI 3. With one CPU only (the board, QEMU -smp 1) CPU_ON says
// INVALID_PARAMETERS, and the program says so. Self-check x19 = 0x600d either way.
_start:
    ldr     x0, =0x40100000
    mov     sp, x0
    adr     x0, vectors
    msr     vbar_el1, x0
    ldr     x1, =0x08000000        // the GIC distributor
    mov     w2, #1
    str     w2, [x1]               // GICD_CTLR, forward interrupts
    bl      cpu_interface_on
    ldr     x0, =0xc4000003        // PSCI CPU_ON (SMC64 convention, through HVC)
    mov     x1, #1                 // MPIDR of CPU 1
    adr     x2, secondary          // where it starts
    mov     x3, #0
    hvc     #0
    cbnz    x0, alone
    bl      next_sgi               // CPU 1 is ready
    ldr     w1, =0x401             // SGI 1 from CPU 1 (source in bits 12-10)
    cmp     w0, w1
    b.ne    fail
    ldr     x1, =0x08000000
    ldr     w2, =0x20002           // GICD_SGIR, target list CPU 1, SGI 2
    str     w2, [x1, #0xf00]
    bl      next_sgi               // its answer
    ldr     w1, =0x403             // SGI 3 from CPU 1
    cmp     w0, w1
    b.ne    fail
    adr     x1, woke
    b       report
alone:
    adr     x1, one_cpu
report:
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

// next_sgi, with IRQs masked -- wait in WFI for an SGI, acknowledge and complete it, w0 = GICC_IAR
next_sgi:
    ldr     x9, =0x08010000
poll:
    ldr     w0, [x9, #0xc]         // GICC_IAR
    cmp     w0, #0x3ff             // 1023, spurious, nothing pending
    b.ne    got
    wfi                            // wakes when one is pending, though PSTATE.I masks it
    b       poll
got:
    str     w0, [x9, #0x10]        // GICC_EOIR
    ret

cpu_interface_on:
    ldr     x9, =0x08010000        // this CPU's GIC interface
    mov     w2, #0xff
    str     w2, [x9, #4]           // GICC_PMR, every priority gets through
    mov     w2, #1
    str     w2, [x9]               // GICC_CTLR, signal interrupts to the CPU
    ret

// CPU 1, started by CPU_ON at EL1, MMU off
secondary:
    ldr     x0, =0x40110000
    mov     sp, x0
    adr     x0, vectors
    msr     vbar_el1, x0
    bl      cpu_interface_on
    ldr     x1, =0x08000000
    ldr     w2, =0x10001           // GICD_SGIR, target list CPU 0, SGI 1 -- ready
    str     w2, [x1, #0xf00]
sleep:
    wfi                            // until CPU 0's SGI
    msr     daifclr, #2            // taken here
    msr     daifset, #2
    b       sleep

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

woke:
    .asciz  "ipi: CPU 1 woke from WFI on SGI 2 from CPU 0, and answered with SGI 3\n"
one_cpu:
    .asciz  "ipi: one CPU, no other to interrupt\n"
failed:
    .asciz  "ipi: an unexpected interrupt was acknowledged\n"

    .balign 0x800
vectors:
    b       .                      // current EL with SP_EL0, synchronous
    .balign 0x200
    b       .                      // current EL with SP_ELx, synchronous (unexpected)
    .balign 0x80
    ldr     x9, =0x08010000        // current EL with SP_ELx, IRQ -- on CPU 1, CPU 0's SGI 2
    ldr     w3, [x9, #0xc]         // GICC_IAR
    str     w3, [x9, #0x10]        // GICC_EOIR
    ldr     x1, =0x08000000
    ldr     w2, =0x10003           // GICD_SGIR, target list CPU 0, SGI 3 -- the answer
    str     w2, [x1, #0xf00]
    eret
