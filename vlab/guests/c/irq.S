// irq.S - the exception vectors of the guests that take interrupts (links: irq.S).
//
// Each of the 16 entries saves the registers a C function may clobber, then calls
// handle_irq() for an IRQ taken at EL1 (entry 5, +0x280), or unexpected_exception()
// for anything else, which reports it and powers off. handle_irq() returns here, and
// eret resumes the interrupted code with its registers and PSTATE as they were.

    .equ FRAME_SIZE, 22 * 8             // x0..x18, x30, ELR_EL1, SPSR_EL1

    .text
    .balign 0x800
    .global irq_vectors
irq_vectors:
    .irp entry, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x0, #\entry
    b       save_and_dispatch
    .endr

save_and_dispatch:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x30, [sp, #144]
    mrs     x1, elr_el1
    mrs     x2, spsr_el1
    stp     x1, x2, [sp, #160]
    cmp     x0, #5                      // IRQ, from EL1 using SP_EL1
    b.ne    unexpected
    bl      handle_irq
    ldp     x1, x2, [sp, #160]
    msr     elr_el1, x1
    msr     spsr_el1, x2
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x30, [sp, #144]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #FRAME_SIZE
    eret
unexpected:
    bl      unexpected_exception        // does not return

// void power_off(u64 verdict): PSCI SYSTEM_OFF through HVC, with the verdict in x19 for the tests.
    .global power_off
power_off:
    mov     x19, x0
    ldr     x0, =0x84000008
    hvc     #0
1:  wfi
    b       1b
