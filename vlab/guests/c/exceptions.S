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

// x2..x29 to (stp) or from (ldp) their slots in the frame
.macro frame_pairs op
    \op     x2, x3, [sp, #16]
    \op     x4, x5, [sp, #32]
    \op     x6, x7, [sp, #48]
    \op     x8, x9, [sp, #64]
    \op     x10, x11, [sp, #80]
    \op     x12, x13, [sp, #96]
    \op     x14, x15, [sp, #112]
    \op     x16, x17, [sp, #128]
    \op     x18, x19, [sp, #144]
    \op     x20, x21, [sp, #160]
    \op     x22, x23, [sp, #176]
    \op     x24, x25, [sp, #192]
    \op     x26, x27, [sp, #208]
    \op     x28, x29, [sp, #224]
.endm

save_and_handle:
    frame_pairs stp
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
    frame_pairs ldp
    ldr     x30, [sp, #240]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #FRAME_SIZE
    eret

// The kernel's callee-saved registers x19..x30 to (stp) or from (ldp) kernel_context (x2)
.macro kernel_context_pairs op
    \op     x19, x20, [x2, #0]
    \op     x21, x22, [x2, #16]
    \op     x23, x24, [x2, #32]
    \op     x25, x26, [x2, #48]
    \op     x27, x28, [x2, #64]
    \op     x29, x30, [x2, #80]
.endm

// u64 run_at_el0(void (*user)(void), u64 user_stack): run `user` at EL0 until it
// calls exit (svc #0 with x8 = 93); return its exit value. The kernel's callee-saved
// registers and stack pointer wait in kernel_context meanwhile.
    .global run_at_el0
run_at_el0:
    adrp    x2, kernel_context
    add     x2, x2, :lo12:kernel_context
    kernel_context_pairs stp
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
    kernel_context_pairs ldp
    ldr     x3, [x2, #96]
    mov     sp, x3
    ret

// Each raises one exception, with x0 as the address or function id; the handler resumes after it.
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
