// gic_smp.S - where a secondary CPU starts, and the PSCI call that starts it.

// A CPU started by PSCI CPU_ON begins here at EL1, MMU off, x0 = the context id CPU 0
// passed: the top of this CPU's stack.
    .text
    .global secondary_entry
secondary_entry:
    mov     sp, x0
    bl      secondary_main
1:  wfi                                 // not reached: secondary_main never returns
    b       1b

// i64 psci(u64 function, u64 a, u64 b, u64 c): a PSCI call through HVC, as on QEMU virt at EL1.
    .global psci
psci:
    hvc     #0
    ret
