// para_or_full.S -- one small kernel, built for full virtualization or for paravirtualization.
//
// The kernel does the same work either way. It finds out what it runs on, prints a boot log
// and LINES lines of text (64 bytes each), sleeps TICKS times on its timer and powers off.
// How it does each of these is chosen when it is built, by switches in the C preprocessor's
// style (#if NAME ... #elif ... #else ... #endif), which vlab.guests.para_or_full sets.
//
//   (none)       the full-virtualization build, the kernel a bare board runs, unchanged --
//                the PL011 by MMIO (read UARTFR, write UARTDR -- two exits a byte in a VM),
//                the CPU's identification registers, WFI, PSCI SYSTEM_OFF
//   PV_CONSOLE   print with Xen's console_io hypercall (one exit a flush)
//   VIRTIO       print through the virtio console, one buffer and one notify a flush
//   PV_IDENTITY  ask Xen who it is -- xen_version, its domain id and the other domains' --
//                instead of reading the identification registers
//   PV_SCHED     Xen's sched_op -- block instead of WFI, yield once to the other domains,
//                shutdown instead of PSCI SYSTEM_OFF
//   PARAVIRT     the paravirtual build, all three PV_ switches at once
//
// Numbers come as .equ lines before the source. LINES, TICKS, TICK_LENGTH (in counter ticks)
// and BATCH, the lines the kernel collects in its log buffer before it hands them to the
// console in one transaction (at most 64 lines of at most 64 bytes). The kernel leaves what it
// learned about its machine at `seen`, and x19 = 0x600d when every console transaction worked.
//
// Xen's ARM hypercalls are HVC #0xea1 with the number in x16, arguments in x0-x4 and the
// result in x0 (xen/include/public/arch-arm.h).

#if PARAVIRT
#define PV_CONSOLE 1
#define PV_IDENTITY 1
#define PV_SCHED 1
#endif

    .equ    UART, 0x09000000
    .equ    UARTFR, 0x18
    .equ    TXFF, 5                     // UARTFR bit 5, the transmit FIFO is full
    .equ    PSCI_SYSTEM_OFF, 0x84000008
    .equ    XEN_VERSION, 17
    .equ    CONSOLE_IO, 18
    .equ    SCHED_OP, 29
    .equ    DOMAIN_INFO, 48             // vlab_domain_info, vlab's own (see vlab.hyp.xen)
    .equ    VIRTIO_MMIO, 0x0a000000     // QEMU virt's 32 transports, 0x200 bytes apart
    .equ    QSIZE, 4                    // transmitq entries, a power of 2
    .equ    SPIN_LIMIT, 1000000         // how long to wait for the device to return a buffer

_start:
    ldr     x0, =stack_top
    mov     sp, x0
    adr     x0, vectors
    msr     vbar_el1, x0
    mov     x27, #0                     // console transactions that failed
    bl      timer_interrupt_on
    bl      console_init
    bl      identify
    adr     x0, boot_text
    bl      log_line
    adr     x0, ready_text
    bl      log_line

    mov     x20, #1                     // LINES lines of 64 bytes
lines_loop:
    ldr     x1, =LINES
    cmp     x20, x1
    b.hi    lines_done
    mov     x0, x20
    adr     x1, line_number
    bl      put_decimal4
    adr     x0, line_text
    bl      log_line
    add     x20, x20, #1
    b       lines_loop
lines_done:

    mov     x20, #1                     // TICKS sleeps on the timer
ticks_loop:
    ldr     x1, =TICKS
    cmp     x20, x1
    b.hi    ticks_done
    bl      sleep_one_tick
    mov     x0, x20
    adr     x1, tick_number
    bl      put_decimal4
    adr     x0, tick_text
    bl      log_line
    add     x20, x20, #1
    b       ticks_loop
ticks_done:
#if PV_SCHED
    mov     x16, #SCHED_OP              // sched_op(SCHEDOP_yield) -- let the other domains run
    mov     x0, #0
    hvc     #0xea1
#endif
    adr     x0, done_text
    bl      log_line
    bl      flush
    mov     x19, #0                     // the self-check
    cbnz    x27, power_off
    mov     x19, #0x600d
power_off:
#if PV_SCHED
    mov     x16, #SCHED_OP              // sched_op(SCHEDOP_shutdown, reason = poweroff)
    mov     x0, #2
    adr     x1, shutdown_reason
    hvc     #0xea1
#endif
    ldr     x0, =PSCI_SYSTEM_OFF        // the firmware's way (and, after a refused shutdown, the fallback)
    hvc     #0
    b       .

// --- what the kernel runs on ---------------------------------------------------------------

identify:
#if PV_IDENTITY
    mov     x16, #XEN_VERSION           // xen_version(XENVER_version) = major << 16 | minor
    mov     x0, #0
    hvc     #0xea1
    adr     x9, seen_xen_version
    str     x0, [x9]
    mov     x16, #XEN_VERSION           // xen_version(XENVER_extraversion, char[16])
    mov     x0, #1
    adr     x1, seen_extraversion
    hvc     #0xea1
    mov     x16, #XEN_VERSION           // xen_version(XENVER_get_features, {submap_idx 0, submap})
    mov     x0, #6
    adr     x1, seen_features
    hvc     #0xea1
    mov     x16, #DOMAIN_INFO           // vlab_domain_info(VLAB_DOMAIN_self) = its domain id
    mov     x0, #0
    hvc     #0xea1
    adr     x9, seen_domain_id
    str     x0, [x9]
    mov     x16, #DOMAIN_INFO           // vlab_domain_info(VLAB_DOMAIN_list, domid_t[8], 8)
    mov     x0, #1
    adr     x1, seen_domains
    mov     x2, #8
    hvc     #0xea1
    adr     x9, seen_domain_count
    str     x0, [x9]
#else
    adr     x9, seen_midr               // the identification registers, as on any machine
    mrs     x0, midr_el1
    str     x0, [x9], #8
    mrs     x0, mpidr_el1
    str     x0, [x9], #8
    mrs     x0, currentel
    str     x0, [x9], #8
    mrs     x0, cntfrq_el0
    str     x0, [x9], #8
    mrs     x0, id_aa64pfr0_el1         // from here, the feature registers a hypervisor may trap (TID3)
    str     x0, [x9], #8
    mrs     x0, id_aa64pfr1_el1
    str     x0, [x9], #8
    mrs     x0, id_aa64dfr0_el1
    str     x0, [x9], #8
    mrs     x0, id_aa64isar0_el1
    str     x0, [x9], #8
    mrs     x0, id_aa64isar1_el1
    str     x0, [x9], #8
    mrs     x0, id_aa64mmfr0_el1
    str     x0, [x9], #8
    mrs     x0, id_aa64mmfr1_el1
    str     x0, [x9], #8
    mrs     x0, s3_0_c0_c7_2            // ID_AA64MMFR2_EL1, by its encoding
    str     x0, [x9], #8
#endif
    ret

// --- time ----------------------------------------------------------------------------------

timer_interrupt_on:                     // the GIC forwards the virtual timer (PPI 27) to this CPU:
    ldr     x2, =0x08000000             // on QEMU virt only an interrupt it signals ends a WFI
    mov     w3, #1
    str     w3, [x2]                    // GICD_CTLR, forward
    ldr     w3, =0x8000000
    str     w3, [x2, #0x100]            // GICD_ISENABLER0, PPI 27
    ldr     x2, =0x08010000
    mov     w3, #0xff
    str     w3, [x2, #4]                // GICC_PMR, every priority
    mov     w3, #1
    str     w3, [x2]                    // GICC_CTLR, signal
    ret

sleep_one_tick:                         // program the virtual timer TICK_LENGTH ahead, idle until then
    mrs     x1, cntvct_el0
    ldr     x2, =TICK_LENGTH
    add     x1, x1, x2
    msr     cntv_cval_el0, x1
    mov     x2, #1                      // enabled; PSTATE.I keeps the interrupt from being taken
    msr     cntv_ctl_el0, x2
idle:
#if PV_SCHED
    mov     x16, #SCHED_OP              // sched_op(SCHEDOP_block) -- wake me when my timer fires
    mov     x0, #1
    hvc     #0xea1
#else
    wfi
#endif
    mrs     x3, cntvct_el0
    cmp     x3, x1
    b.lo    idle                        // woken early: idle again
    msr     cntv_ctl_el0, xzr
    ret

// --- the log buffer: lines collect here, BATCH at a time go to the console -------------------

log_line:                               // x0 = a line, NUL-terminated
    adr     x9, log_state               // [x9] bytes held, [x9, #8] lines held
    ldr     x10, [x9]
    adr     x11, log_buffer
log_copy:
    ldrb    w12, [x0], #1
    cbz     w12, log_copied
    strb    w12, [x11, x10]
    add     x10, x10, #1
    b       log_copy
log_copied:
    ldr     x12, [x9, #8]
    add     x12, x12, #1
    stp     x10, x12, [x9]
    cmp     x12, #BATCH
    b.hs    flush                       // a full batch, to the console (flush returns to our caller)
    ret

flush:                                  // hand what the buffer holds to the console in one go
    stp     x29, x30, [sp, #-16]!
    adr     x9, log_state
    ldr     x1, [x9]
    cbz     x1, flushed
    adr     x0, log_buffer
    bl      console_write
    adr     x9, log_state
    stp     xzr, xzr, [x9]
flushed:
    ldp     x29, x30, [sp], #16
    ret

// --- the console -----------------------------------------------------------------------------

#if VIRTIO
console_init:                           // find the virtio console and set up its transmitq (virtio 1.2, 3.1.1)
    ldr     x9, =VIRTIO_MMIO
    mov     x10, #32
    ldr     w11, =0x74726976            // MagicValue, "virt"
virtio_scan:
    ldr     w12, [x9]
    cmp     w12, w11
    b.ne    virtio_next
    ldr     w12, [x9, #0x004]           // Version 2, the modern interface
    cmp     w12, #2
    b.ne    virtio_next
    ldr     w12, [x9, #0x008]           // DeviceID 3, a console
    cmp     w12, #3
    b.eq    virtio_found
virtio_next:
    add     x9, x9, #0x200
    subs    x10, x10, #1
    b.ne    virtio_scan
    add     x27, x27, #1                // no console: nothing can be printed
    ret
virtio_found:
    adr     x10, virtio_base
    str     x9, [x10]
    str     wzr, [x9, #0x070]           // Status = 0 resets the device
    mov     w10, #1                     // ACKNOWLEDGE
    str     w10, [x9, #0x070]
    mov     w10, #3                     // and DRIVER
    str     w10, [x9, #0x070]
    mov     w10, #1
    str     w10, [x9, #0x014]           // DeviceFeaturesSel = 1, bits 32-63
    ldr     w11, [x9, #0x010]
    tbz     w11, #0, virtio_refused     // VIRTIO_F_VERSION_1 is bit 32
    str     wzr, [x9, #0x024]           // DriverFeaturesSel = 0
    str     wzr, [x9, #0x020]           // none of bits 0-31
    str     w10, [x9, #0x024]           // DriverFeaturesSel = 1
    str     w10, [x9, #0x020]           // VERSION_1 and nothing else
    mov     w10, #11                    // and FEATURES_OK
    str     w10, [x9, #0x070]
    ldr     w10, [x9, #0x070]
    tbz     w10, #3, virtio_refused     // the device did not keep FEATURES_OK
    mov     w10, #1
    str     w10, [x9, #0x030]           // QueueSel = 1, port 0's transmitq
    ldr     w10, [x9, #0x034]           // QueueSizeMax
    cmp     w10, #QSIZE
    b.lo    virtio_refused
    mov     w10, #QSIZE
    str     w10, [x9, #0x038]
    adr     x11, vq_avail
    mov     w10, #1                     // VIRTQ_AVAIL_F_NO_INTERRUPT, the kernel polls the used ring
    strh    w10, [x11]
    adr     x10, vq_desc
    str     w10, [x9, #0x080]           // QueueDesc, low and high
    lsr     x10, x10, #32
    str     w10, [x9, #0x084]
    str     w11, [x9, #0x090]           // QueueDriver, the available ring
    lsr     x11, x11, #32
    str     w11, [x9, #0x094]
    adr     x10, vq_used
    str     w10, [x9, #0x0a0]           // QueueDevice, the used ring
    lsr     x10, x10, #32
    str     w10, [x9, #0x0a4]
    mov     w10, #1
    str     w10, [x9, #0x044]           // QueueReady
    mov     w10, #15                    // and DRIVER_OK
    str     w10, [x9, #0x070]
    ret
virtio_refused:
    adr     x10, virtio_base
    str     xzr, [x10]
    add     x27, x27, #1
    ret

console_write:                          // x0 = bytes, x1 = how many -- one descriptor, one notify
    adr     x9, virtio_base
    ldr     x15, [x9]
    cbz     x15, console_failed
    adr     x9, vq_desc                 // descriptor 0 = {addr, len, flags 0 (device reads it), next}
    str     x0, [x9]
    str     w1, [x9, #8]
    str     wzr, [x9, #12]
    adr     x10, vq_avail
    ldrh    w11, [x10, #2]              // avail.idx, free-running
    and     w12, w11, #(QSIZE - 1)      // its slot
    add     x13, x10, #4
    strh    wzr, [x13, x12, lsl #1]     // ring[slot] = descriptor 0
    dmb     sy                          // the entry before the index that publishes it
    add     w11, w11, #1
    strh    w11, [x10, #2]
    dmb     sy                          // the index before the device's flags are read
    adr     x13, vq_used
    ldrh    w14, [x13]
    tbnz    w14, #0, virtio_wait        // VIRTQ_USED_F_NO_NOTIFY, the device polls the ring itself
    mov     w14, #1                     // QueueNotify = 1, the transmitq
    str     w14, [x15, #0x050]
virtio_wait:
    ldr     x12, =SPIN_LIMIT
virtio_spin:
    ldrh    w14, [x13, #2]              // used.idx
    cmp     w14, w11, uxth
    b.eq    console_done
    subs    x12, x12, #1
    b.ne    virtio_spin
console_failed:
    add     x27, x27, #1
console_done:
    ret

#elif PV_CONSOLE
console_init:
    ret

console_write:                          // console_io(CONSOLEIO_write, count, buffer) -- one exit
    mov     x2, x0
    mov     x0, #0
    mov     x16, #CONSOLE_IO
    hvc     #0xea1
    cbz     x0, console_done
    add     x27, x27, #1                // -EFAULT, or no Xen to answer
console_done:
    ret

#else
console_init:
    ret

console_write:                          // the PL011, a byte at a time -- two device accesses a byte
    ldr     x9, =UART
uart_wait:
    ldr     w10, [x9, #UARTFR]
    tbnz    w10, #TXFF, uart_wait
    ldrb    w10, [x0], #1
    strb    w10, [x9]
    subs    x1, x1, #1
    b.ne    uart_wait
    ret
#endif

// --- helpers ---------------------------------------------------------------------------------

put_decimal4:                           // the four decimal digits of x0 (mod 10000) at x1
    mov     x2, #4
    mov     x3, #10
digit:
    sub     x2, x2, #1
    udiv    x4, x0, x3
    msub    x5, x4, x3, x0
    add     w5, w5, #48                 // '0'
    strb    w5, [x1, x2]
    mov     x0, x4
    cbnz    x2, digit
    ret

    .balign 2048
vectors:                                // any exception the kernel did not expect ends the run
    .space  0x200
    mrs     x20, esr_el1                // +0x200, synchronous, from the kernel itself
    mrs     x21, elr_el1
    mov     x19, #0xbad
    ldr     x0, =PSCI_SYSTEM_OFF
    hvc     #0
    b       .

// --- data ------------------------------------------------------------------------------------

boot_text:
    .asciz  "kernel: booted, and found out what it runs on\n"
ready_text:
    .asciz  "kernel: console ready\n"
line_text:
    .ascii  "line "
line_number:
    .asciz  "0000: the same text, whichever way this kernel gets built.\n"
tick_text:
    .ascii  "tick "
tick_number:
    .asciz  "0000: the timer woke the kernel\n"
done_text:
    .asciz  "kernel: done, powering off\n"

    .balign 8
seen:                                   // what the kernel learned about its machine
seen_midr:          .quad 0             // the full-virtualization build's registers ...
seen_mpidr:         .quad 0
seen_current_el:    .quad 0
seen_cntfrq:        .quad 0
seen_id_registers:  .space 64           // ID_AA64PFR0 .. ID_AA64MMFR2, 8 bytes each
seen_xen_version:   .quad 0             // ... the paravirtual build's answers
seen_extraversion:  .space 16
seen_features:      .quad 0             // struct xen_feature_info {u32 submap_idx = 0, u32 submap}
seen_domain_id:     .quad 0
seen_domain_count:  .quad 0
seen_domains:       .space 16           // domid_t[8]
shutdown_reason:    .word 0             // struct sched_shutdown, SHUTDOWN_poweroff
    .balign 8
virtio_base:        .quad 0
log_state:          .quad 0, 0
    .balign 16
vq_desc:            .space 16 * QSIZE
vq_avail:           .space 6 + 2 * QSIZE
    .balign 4
vq_used:            .space 6 + 8 * QSIZE
log_buffer:         .space 4096
    .balign 16
stack:              .space 4096
stack_top:
