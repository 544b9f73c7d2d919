// smp.S - where a CPU started by PSCI CPU_ON begins (smp.c passes secondary_entry to CPU_ON).
//
// PSCI starts the CPU at EL1 with its MMU off, no stack, and the context id given to CPU_ON
// in x0: here, the CPU's index. It gets the stack secondary_stacks[index] and runs
// secondary_main(index); then it turns itself off with PSCI CPU_OFF, which does not return.
    .text
    .global secondary_entry
secondary_entry:
    ldr     x1, =secondary_stacks
    add     x2, x0, #1
    lsl     x2, x2, #12                 // the top of its 4 KiB slot
    add     x1, x1, x2
    mov     sp, x1
    bl      secondary_main
    ldr     x0, =0x84000002             // PSCI CPU_OFF
    hvc     #0
off:
    b       off                         // not reached: CPU_OFF does not return
