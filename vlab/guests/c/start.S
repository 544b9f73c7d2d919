// start.S - what runs before main() in a bare-metal C guest, on QEMU virt and on vlab.
//
// Both boot an ELF the same way: execution starts at _start, at EL1, with the
// MMU and caches off and no stack. We enable the FPU/SIMD registers (QEMU's
// -kernel boot leaves CPACR_EL1.FPEN = 0, so any FP/SIMD instruction would trap),
// set up the stack, clear .bss and call main(). main's return value lands in
// x19 -- the self-check register the tests read -- and PSCI SYSTEM_OFF, through
// HVC (the conduit QEMU's virt board uses at EL1), powers the machine off.
    .section .text.start, "ax"
    .global _start
_start:
    mov     x0, #(3 << 20)              // CPACR_EL1.FPEN = 0b11: no FP/SIMD traps at EL0/EL1
    msr     cpacr_el1, x0
    isb
    ldr     x0, =__stack_top
    mov     sp, x0
    ldr     x0, =__bss_start
    ldr     x1, =__bss_end
clear_bss:
    cmp     x0, x1
    b.hs    call_main
    stp     xzr, xzr, [x0], #16
    b       clear_bss
call_main:
    bl      main
    mov     x19, x0                     // the program's verdict
    ldr     x0, =0x84000008             // PSCI SYSTEM_OFF
    hvc     #0
halt:
    wfi                                 // not reached: SYSTEM_OFF does not return
    b       halt
