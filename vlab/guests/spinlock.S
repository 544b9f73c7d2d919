// spinlock.S - CPUs that share one spinlock, each counting the instructions it wastes spinning.
//
// The boot CPU starts every other CPU the machine has with PSCI CPU_ON (CPUs 1 to 7; one that
// does not exist answers INVALID_PARAMETERS and is skipped). Then every CPU takes jobs until
// none is left. A job runs entirely under the lock: it folds its number into a shared checksum,
// ROUNDS rounds of multiply-and-add, so the checksum comes out right only if every job ran
// once, alone and in order. Between jobs a CPU works on its own (OWN_WORK loop rounds). The
// CPU that finishes last recomputes the checksum alone, prints it and powers the machine off;
// the others turn themselves off (PSCI CPU_OFF). What it prints is the same whatever the
// number of CPUs and however they interleave.
//
// The lock word holds the holder's CPU number + 1 (0 when free). Taking it is a load-exclusive
// that sees it free and a store-exclusive that claims it. Every instruction a CPU executes
// because an attempt failed is added to its slot in `spin`, as the spin loop runs
//   the lock was taken     BUSY_COST instructions   (ldaxr, cbnz, then the 7 of take_busy)
//   the claim was lost     LOST_COST instructions   (ldaxr, cbnz, stxr, cbnz, then take_lost)
//   a yield                YIELD_COST more          (take_yield)
// A paravirtual guest gives the CPU back instead of spinning on: after `yield_after` failed
// attempts in a row it calls Xen's SCHEDOP_yield (HVC #0xEA1, x16 = 29 sched_op, x0 = 0
// SCHEDOP_yield), so that the hypervisor can run another vCPU -- perhaps the lock holder it
// preempted. The image says never (all ones); a host sets `yield_after` before the run. On
// QEMU, which has no Xen to answer HVC #0xEA1, leave it so.
//
// The block after the first instruction is the interface to the host (offsets from _start).
    .equ YIELD_AFTER, 0x08
    .equ LOCK, 0x10
    .equ NEXT_JOB, 0x18
    .equ CHECKSUM, 0x20
    .equ RUNNING, 0x28
    .equ VERDICT, 0x30
    .equ SPIN, 0x38                     // 8 slots of 8 bytes, one per CPU
    .equ YIELDS, 0x78
    .equ JOBS_DONE, 0xb8
    .equ JOBS, 48
    .equ ROUNDS, 300
    .equ OWN_WORK, 3000
    .equ BUSY_COST, 9
    .equ LOST_COST, 8
    .equ YIELD_COST, 11
    .equ MAX_CPUS, 8

_start:
    b       boot
    .balign 8
    .quad   0xffffffffffffffff          // yield_after
    .quad   0                           // lock
    .quad   0                           // next_job
    .quad   0                           // checksum
    .quad   0                           // running
    .quad   0                           // verdict (0x600d when the checksum is right)
    .space  64                          // spin, a slot per CPU
    .space  64                          // yields
    .space  64                          // jobs_done

boot:
    adr     x27, _start
    mov     x0, #1
    str     x0, [x27, #RUNNING]         // the boot CPU counts itself, until it finishes
    mov     x28, #0
    bl      per_cpu
    mov     x20, #1                     // the next CPU to start
start_next:
    bl      lock_take
    ldr     x1, [x27, #RUNNING]         // counted before it starts, so that no CPU can think
    add     x1, x1, #1                  // itself the last while others are still coming
    str     x1, [x27, #RUNNING]
    bl      lock_give
    ldr     x0, =0xc4000003             // PSCI CPU_ON
    mov     x1, x20                     // target MPIDR (Aff0 = the CPU's number)
    adr     x2, secondary               // entry point
    mov     x3, x20                     // context id = the CPU's number, in its x0
    hvc     #0
    cbz     x0, started
    bl      lock_take                   // it does not exist: not running after all
    ldr     x1, [x27, #RUNNING]
    sub     x1, x1, #1
    str     x1, [x27, #RUNNING]
    bl      lock_give
started:
    add     x20, x20, #1
    cmp     x20, #MAX_CPUS
    b.lo    start_next
    b       work

secondary:                              // PSCI CPU_ON starts a CPU here, x0 = its number
    adr     x27, _start
    mov     x28, x0
    bl      per_cpu
    b       work

// x23 the lock, x25 this CPU's spin slot, x24 its yields slot, x22 its jobs_done slot
per_cpu:
    add     x23, x27, #LOCK
    add     x25, x27, #SPIN
    add     x25, x25, x28, lsl #3
    add     x24, x27, #YIELDS
    add     x24, x24, x28, lsl #3
    add     x22, x27, #JOBS_DONE
    add     x22, x22, x28, lsl #3
    ret

work:
    bl      lock_take
    ldr     x4, [x27, #NEXT_JOB]
    cmp     x4, #JOBS
    b.hs    no_more_jobs
    add     x5, x4, #1
    str     x5, [x27, #NEXT_JOB]
    ldr     x6, [x27, #CHECKSUM]
    bl      fold                        // checksum = fold(checksum, job)
    str     x6, [x27, #CHECKSUM]
    ldr     x1, [x22]
    add     x1, x1, #1
    str     x1, [x22]
    bl      lock_give
    mov     x7, #OWN_WORK
own_work:
    subs    x7, x7, #1
    b.ne    own_work
    b       work

no_more_jobs:
    ldr     x1, [x27, #RUNNING]
    sub     x1, x1, #1
    str     x1, [x27, #RUNNING]
    cbz     x1, last
    ldr     x0, =0x84000002             // PSCI CPU_OFF, set before the lock is given back
    bl      lock_give
    hvc     #0
off:
    b       off                         // not reached

last:                                   // every job is done, every other CPU is off or leaving
    bl      lock_give
    mov     x6, #0
    mov     x4, #0
alone:
    bl      fold
    add     x4, x4, #1
    cmp     x4, #JOBS
    b.lo    alone
    ldr     x9, [x27, #CHECKSUM]
    mov     x19, #0xbad
    adr     x21, wrong
    cmp     x6, x9
    b.ne    report
    mov     x19, #0x600d
    str     x19, [x27, #VERDICT]
    adr     x21, checked
report:
    ldr     x1, =0x09000000             // PL011
    adr     x2, message
    bl      puts
    mov     x10, #60                    // the checksum in hex, most significant digit first
hex_digit:
    lsr     x3, x9, x10
    and     x3, x3, #0xf
    cmp     x3, #10
    add     x11, x3, #0x30              // '0' + digit
    add     x12, x3, #0x57              // 'a' - 10 + digit
    csel    x3, x11, x12, lo
    bl      putc
    subs    x10, x10, #4
    b.pl    hex_digit
    mov     x2, x21
    bl      puts
    ldr     x0, =0x84000008             // PSCI SYSTEM_OFF
    hvc     #0
    b       off

// x6 = x6 * 0x100000001b3 + x4 + round, ROUNDS times (FNV-1a's prime as the multiplier)
fold:
    ldr     x8, =0x100000001b3
    mov     x7, #ROUNDS
fold_round:
    madd    x6, x6, x8, x4
    add     x6, x6, x7
    subs    x7, x7, #1
    b.ne    fold_round
    ret

lock_take:
    mov     x26, #0                     // failed attempts in a row
    add     x3, x28, #1                 // this CPU's mark
take_try:
    ldaxr   x1, [x23]
    cbnz    x1, take_busy
    stxr    w2, x3, [x23]
    cbnz    w2, take_lost
    ret
take_busy:
    add     x26, x26, #1
    ldr     x1, [x25]
    add     x1, x1, #BUSY_COST
    str     x1, [x25]
    ldr     x2, [x27, #YIELD_AFTER]
    cmp     x26, x2
    b.lo    take_try
take_yield:
    mov     x26, #0
    mov     x16, #29                    // sched_op
    mov     x0, #0                      // SCHEDOP_yield
    hvc     #0xea1
    ldr     x1, [x24]
    add     x1, x1, #1
    str     x1, [x24]
    ldr     x1, [x25]
    add     x1, x1, #YIELD_COST
    str     x1, [x25]
    b       take_try
take_lost:
    ldr     x1, [x25]
    add     x1, x1, #LOST_COST
    str     x1, [x25]
    b       take_try

lock_give:
    stlr    xzr, [x23]                  // a store-release: the job's stores are seen first
    ret

// x3 a byte to print, x1 the PL011
putc:
    ldr     w13, [x1, #0x18]            // UARTFR
    tbnz    w13, #5, putc               // TXFF, the transmit FIFO is full
    str     w3, [x1]
    ret

// x2 a NUL-terminated string, x1 the PL011 (bl putc overwrites x30, so puts keeps its own in x14)
puts:
    mov     x14, x30
puts_next:
    ldrb    w3, [x2], #1
    cbz     w3, puts_done
    bl      putc
    b       puts_next
puts_done:
    ret     x14

message:
    .asciz  "spinlock: 48 jobs, each alone under one lock, checksum 0x"
checked:
    .asciz  " (as computed alone)\n"
wrong:
    .asciz  " (WRONG, not what one CPU computes alone)\n"
