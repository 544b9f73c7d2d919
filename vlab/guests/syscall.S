// syscall.S - a tiny kernel with one user program and one system call.
//
// The kernel installs its vector table, drops to EL0 with ERET and serves the
// user's SVC #0: x8 = 64 (write), x0 = fd, x1 = buffer, x2 = length; it returns
// the number of bytes written in x0. The user checks that result and the
// kernel powers off. Self-check: x19 = 0x600d when the user saw the right count.
_start:
    ldr     x0, =0x40100000        // kernel stack (SP_EL1)
    mov     sp, x0
    ldr     x0, =0x40200000        // user stack (SP_EL0)
    msr     sp_el0, x0
    adr     x0, vectors
    msr     vbar_el1, x0
    adr     x0, user_main
    msr     elr_el1, x0
    msr     spsr_el1, xzr          // return to EL0t with interrupts unmasked
    eret

// ---- the user program, at EL0 ----
user_main:
    mov     x0, #1                 // fd: stdout
    adr     x1, greeting
    adr     x2, greeting_end
    sub     x2, x2, x1             // length
    mov     x21, x2
    mov     x8, #64                // the write system call
    svc     #0
    mov     x20, x0                // what the kernel returned
    mov     x19, #0xbad
    cmp     x0, x21
    b.ne    user_exit
    mov     x19, #0x600d
user_exit:
    mov     x8, #93                // exit
    svc     #0
    b       .

greeting:
    .ascii  "Hello from EL0, through a system call!\n"
greeting_end:

// ---- the kernel's exception vectors: 16 entries of 0x80 bytes, in four groups of four ----
// (synchronous, IRQ, FIQ, SError) for: the current EL with SP_EL0, the current EL with SP_ELx,
// a lower EL running AArch64, a lower EL running AArch32. An entry holds up to 32 instructions.
    .balign 0x800
vectors:
    b       unexpected             // +0x000 current EL with SP_EL0: synchronous
    .balign 0x80
    b       unexpected             // +0x080 IRQ
    .balign 0x80
    b       unexpected             // +0x100 FIQ
    .balign 0x80
    b       unexpected             // +0x180 SError
    .balign 0x80
    b       unexpected             // +0x200 current EL with SP_ELx: synchronous
    .balign 0x80
    b       unexpected             // +0x280 IRQ
    .balign 0x80
    b       unexpected             // +0x300 FIQ
    .balign 0x80
    b       unexpected             // +0x380 SError
    .balign 0x80
el0_sync:                          // +0x400 lower EL (AArch64): synchronous -- the user's SVC lands here
    mrs     x9, esr_el1
    lsr     x10, x9, #26           // exception class
    cmp     x10, #0x15             // SVC from AArch64
    b.ne    unexpected
    cmp     x8, #64
    b.eq    sys_write
    cmp     x8, #93
    b.eq    sys_exit
    mov     x0, #-38               // -ENOSYS
    eret
    .balign 0x80
    b       unexpected             // +0x480 IRQ
    .balign 0x80
    b       unexpected             // +0x500 FIQ
    .balign 0x80
    b       unexpected             // +0x580 SError
    .balign 0x80
    b       unexpected             // +0x600 lower EL (AArch32): synchronous
    .balign 0x80
    b       unexpected             // +0x680 IRQ
    .balign 0x80
    b       unexpected             // +0x700 FIQ
    .balign 0x80
    b       unexpected             // +0x780 SError
    .balign 0x80

sys_write:                         // x1 = buffer, x2 = length
    ldr     x11, =0x09000000
    mov     x12, #0
write_next:
    cmp     x12, x2
    b.eq    write_done
    ldrb    w13, [x1, x12]
tx_wait:
    ldr     w14, [x11, #0x18]
    tbnz    w14, #5, tx_wait
    str     w13, [x11]
    add     x12, x12, #1
    b       write_next
write_done:
    mov     x0, x12                // bytes written
    eret

sys_exit:
    ldr     x0, =0x84000008        // PSCI SYSTEM_OFF
    hvc     #0

unexpected:
    mrs     x9, esr_el1
    mrs     x10, elr_el1
    mov     x19, #0xdead
    ldr     x0, =0x84000008
    hvc     #0
