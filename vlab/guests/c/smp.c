/* smp.c - four CPUs share one spinlock: PSCI CPU_ON, LDAXR/STXR, and an answer no interleaving changes.
 *
 * CPU 0 (the boot CPU) starts CPUs 1..3 with PSCI CPU_ON (through HVC, QEMU virt's conduit at
 * EL1); each one enters at secondary_entry (smp.S) with its index as the context id. Every CPU
 * then adds TERMS terms of its own series to one shared total, each addition under the lock,
 * and says it has finished. CPU 0 waits for all of them and prints what each added and the
 * total, checked against a recomputation of its own. The CPUs interleave differently on every
 * machine and every run (QEMU runs them on host threads, vlab on whatever physical CPUs its
 * scheduler gives them), but what is printed depends only on how many CPUs started: a CPU that
 * CPU_ON cannot start (a machine with fewer CPUs) is reported and its share is not added.
 *
 * Only CPU 0 prints, after every other CPU has finished: text from several CPUs at once would
 * interleave. The memory is never cached (the MMU is off): the exclusives then work on QEMU,
 * which checks them by value, and on vlab; on hardware they need the MMU on and Normal memory.
 */
#include "virt.h"

#define CPUS 4
#define TERMS 500
#define PSCI_CPU_ON 0xc4000003UL
#define NO_OWNER 0xffffffffu

void secondary_entry(void);              /* smp.S: give the CPU its stack, call secondary_main */
u8 secondary_stacks[CPUS][4096] __attribute__((aligned(16)));  /* used by smp.S, one per CPU */

static u32 lock;                         /* 0 free, 1 taken */
/* Guarded by the lock: */
static u64 total, additions;
static volatile u32 owner = NO_OWNER;    /* who is inside; another CPU found there is a violation */
static u32 violations;
static u32 finished;                     /* secondaries done; CPU 0 reads it with a load-acquire */
/* Each CPU writes its own slot, before it finishes: */
static u64 mpidr_of[CPUS], sum_of[CPUS];

/* Take the lock: a load-exclusive sees it free, the store-exclusive claims it. Acquire semantics
 * (LDAXR) keep the critical section's accesses after it. */
static void lock_take(u32 *l)
{
    u32 seen, failed;
    __asm__ volatile(
        "1: ldaxr   %w0, [%2]\n"
        "   cbnz    %w0, 1b\n"            /* taken: look again */
        "   stxr    %w1, %w3, [%2]\n"
        "   cbnz    %w1, 1b\n"            /* someone else wrote it between the two: again */
        : "=&r"(seen), "=&r"(failed) : "r"(l), "r"(1) : "memory");
}

/* Release it: a store-release, so the critical section's accesses are seen before it is free. */
static void lock_give(u32 *l)
{
    __asm__ volatile("stlr wzr, [%0]" :: "r"(l) : "memory");
}

static u32 load_acquire(u32 *p)
{
    u32 v;
    __asm__ volatile("ldar %w0, [%1]" : "=r"(v) : "r"(p) : "memory");
    return v;
}

/* The k-th term of CPU `cpu`'s series: a small multiplicative hash, so that a lost or doubled
 * addition shows in the total. */
static u64 term(u64 cpu, u64 k)
{
    return ((cpu + 1) * 2654435761UL ^ k * 40503UL) % 1000003UL;
}

static void add_my_share(u64 cpu)
{
    u64 mine = 0;
    for (u64 k = 0; k < TERMS; k++) {
        u64 t = term(cpu, k);
        lock_take(&lock);
        if (owner != NO_OWNER)
            violations++;
        owner = cpu;
        total += t;                      /* a read-modify-write: lost without the lock */
        additions++;
        owner = NO_OWNER;
        lock_give(&lock);
        mine += t;
    }
    mpidr_of[cpu] = read_sysreg(mpidr_el1);
    sum_of[cpu] = mine;
}

/* CPUs 1..3 come here from smp.S; they turn themselves off (PSCI CPU_OFF) when this returns. */
void secondary_main(u64 cpu)
{
    add_my_share(cpu);
    lock_take(&lock);
    finished++;
    lock_give(&lock);
}

static i64 cpu_on(u64 mpidr, void (*entry)(void), u64 context)
{
    register u64 x0 __asm__("x0") = PSCI_CPU_ON;
    register u64 x1 __asm__("x1") = mpidr;
    register u64 x2 __asm__("x2") = (u64)entry;
    register u64 x3 __asm__("x3") = context;
    __asm__ volatile("hvc #0" : "+r"(x0) : "r"(x1), "r"(x2), "r"(x3) : "memory");
    return (i64)x0;
}

int main(void)
{
    int started = 1;
    int on[CPUS] = {1, 0, 0, 0};
    puts("smp: CPU 0 starts CPUs 1-3 with PSCI CPU_ON\n");
    for (u64 cpu = 1; cpu < CPUS; cpu++) {
        i64 answer = cpu_on(cpu, secondary_entry, cpu);  /* QEMU virt: MPIDR Aff0 is the CPU's index */
        printf("smp: CPU_ON(%lu) = %ld%s\n", cpu, answer, answer == 0 ? "" : " (not started)");
        if (answer == 0) {
            on[cpu] = 1;
            started++;
        }
    }
    add_my_share(0);
    while (load_acquire(&finished) != (u32)(started - 1))
        ;                                /* the others are still adding */

    int failures = 0;
    u64 expected = 0;
    for (u64 cpu = 0; cpu < CPUS; cpu++) {
        if (!on[cpu])
            continue;
        u64 own = 0;
        for (u64 k = 0; k < TERMS; k++)
            own += term(cpu, k);
        printf("smp: CPU %lu (MPIDR 0x%lx) added %u terms, sum %lu\n", cpu, mpidr_of[cpu], TERMS, sum_of[cpu]);
        failures += sum_of[cpu] != own || (mpidr_of[cpu] & 0xff) != cpu;
        expected += own;
    }
    printf("smp: %d CPU%s, %lu additions under one lock, total %lu (expected %lu)\n",
           started, started == 1 ? "" : "s", additions, total, expected);
    failures += total != expected || additions != (u64)started * TERMS;
    printf("smp: %u mutual-exclusion violations\n", violations);
    failures += violations != 0;
    printf("smp: %s\n", failures ? "FAILED" : "all checks passed");
    return failures ? 0xbad : SELF_CHECK_OK;
}
