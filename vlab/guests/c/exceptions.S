// exceptions.S - the vector table, trap frame and EL0 trampoline of exceptions.c,
// and the small functions that each raise one exception.

    .equ FRAME_SIZE, 36 * 8             // struct frame in exceptions.c: x0..x30, vector, elr, spsr, sp_el0, pad

// One vector entry: make room for the frame, save x0/x1, say which entry this is.
.macro vector_entry offset
    .balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x0, #\offset
    b       save_and_handle
.endm

    .text
    .balign 0x800
    .global vectors
vectors:
    .irp offset, 0x000, 0x080, 0x100, 0x180, 0x200, 0x280, 0x300, 0x380, 0x400, 0x480, 0x500, 0x580, 0x600, 0x680, 0x700, 0x780
    vector_entry \offset
    .endr

save_and_handle:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    str     x30, [sp, #240]
    str     x0, [sp, #248]              // the vector offset
    mrs     x1, elr_el1
    mrs     x2, spsr_el1
    stp     x1, x2, [sp, #256]
    mrs     x1, sp_el0
    str     x1, [sp, #272]
    mov     x0, sp
    bl      handle_exception            // may change the frame's elr and spsr
    ldp     x1, x2, [sp, #256]
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
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldr     x30, [sp, #240]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #FRAME_SIZE
    eret

// u64 run_at_el0(void (*user)(void), u64 user_stack): run `user` at EL0 until it
// calls exit (svc #0 with x8 = 93); return its exit value. The kernel's callee-saved
// registers and stack pointer wait in kernel_context meanwhile.
    .global run_at_el0
run_at_el0:
    adrp    x2, kernel_context
    add     x2, x2, :lo12:kernel_context
    stp     x19, x20, [x2, #0]
    stp     x21, x22, [x2, #16]
    stp     x23, x24, [x2, #32]
    stp     x25, x26, [x2, #48]
    stp     x27, x28, [x2, #64]
    stp     x29, x30, [x2, #80]
    mov     x3, sp
    str     x3, [x2, #96]
    msr     sp_el0, x1
    msr     elr_el1, x0
    msr     spsr_el1, xzr               // EL0t, interrupts unmasked
    eret

// Where the exit system call "returns" (ELR_EL1), at EL1 with x0 = the exit value.
    .global back_from_el0
back_from_el0:
    adrp    x2, kernel_context
    add     x2, x2, :lo12:kernel_context
    ldp     x19, x20, [x2, #0]
    ldp     x21, x22, [x2, #16]
    ldp     x23, x24, [x2, #32]
    ldp     x25, x26, [x2, #48]
    ldp     x27, x28, [x2, #64]
    ldp     x29, x30, [x2, #80]
    ldr     x3, [x2, #96]
    mov     sp, x3
    ret

// Each raises one exception; the handler resumes after it.
    .global raise_svc, raise_brk, raise_undefined, raise_load, raise_store, raise_hvc
raise_svc:
    svc     #0x42
    ret
raise_brk:
    brk     #0x7
    ret
raise_undefined:
    udf     #0
    ret
raise_load:                             // x0 = address
    ldr     x0, [x0]
    ret
raise_store:                            // x0 = address
    str     w1, [x0]
    ret
raise_hvc:                              // x0 = function id
    hvc     #0
    ret

// The user program, at EL0: ELRs are printed relative to its first instruction.
    .global user_program
user_program:
    mov     x1, #5
    cmp     x1, #7                      // N=1, C=0: visible in SPSR_EL1
    svc     #0x99                       // a system call the kernel only logs
    mrs     x2, sctlr_el1               // an EL1 register at EL0: UNDEFINED
    mrs     x2, cntvct_el0              // the virtual counter at EL0: trapped unless CNTKCTL_EL1.EL0VCTEN
    mov     x0, #3
    mov     x8, #93                     // exit(3)
    svc     #0

    .bss
    .balign 16
kernel_context:
    .space  13 * 8
