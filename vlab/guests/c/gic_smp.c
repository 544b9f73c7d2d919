/* gic_smp.c - CPU 0 wakes the other CPUs from WFI with SGIs.
 *
 * QEMU's virt board (and vlab's) starts with only CPU 0 running; the others wait, powered off,
 * until CPU 0 asks the firmware for them with PSCI CPU_ON (entry point, context id). Each one
 * sets up its stack and its own CPU interface -- the GICC registers are banked: every CPU sees
 * its own at the same address --, tells CPU 0 it is ready with an SGI, and sleeps in WFI. CPU 0
 * wakes them with SGIs, one by one and then all at once, and each answers with an SGI back, so
 * that CPU 0 sees the sender in GICC_IAR. CPU 0 waits for those answers in WFI too, never
 * spinning on memory, and only CPU 0 prints: the output is the same whatever order the CPUs
 * run in. Run with -smp 1 to 8.
 */
// links: gic.c irq.S
#include "gic.h"

#define PSCI_CPU_ON 0xc4000003UL
#define MAX_CPUS 8
#define WAKE_ONE 1                      /* the SGIs this program sends */
#define WAKE_ALL 2
#define ANSWER 3
#define READY 4

i64 psci(u64 function, u64 a, u64 b, u64 c);
void secondary_entry(void);

static u8 stacks[MAX_CPUS][4096] __attribute__((aligned(16)));
static volatile u32 woken_by[MAX_CPUS][2];  /* GICC_IAR of each wake-up, written by that CPU */
static volatile int wakeups[MAX_CPUS];
static volatile u32 targets_seen[MAX_CPUS];

static int me(void)
{
    return (int)(read_sysreg(mpidr_el1) & 0xff);
}

/* On a secondary CPU: an SGI woke it. Note which, and answer CPU 0 with an SGI. */
void handle_irq(void)
{
    u32 iar = gicc_read(GICC_IAR);
    int cpu = me();
    if ((iar & 0x3ff) == SPURIOUS)
        return;
    if (wakeups[cpu] < 2)
        woken_by[cpu][wakeups[cpu]] = iar;
    wakeups[cpu]++;
    gicc_write(GICC_EOIR, iar);
    gic_send_sgi(ANSWER, SGI_TO_LIST, 1);       /* to CPU 0; gic_send_sgi orders the writes before it */
}

void secondary_main(void)
{
    gic_init_cpu();
    targets_seen[me()] = gicd_read(GICD_ITARGETSR);     /* SGIs' targets: this CPU itself */
    irq_mask();
    gic_send_sgi(READY, SGI_TO_LIST, 1);
    for (;;) {                          /* sleep until an SGI; take it; sleep again */
        wfi();
        irq_unmask();
        irq_mask();
    }
}

/* On CPU 0 (IRQs masked): wait in WFI for the next SGI, acknowledge and complete it. */
static u32 next_sgi(void)
{
    u32 iar;
    while ((iar = gicc_read(GICC_IAR)) == SPURIOUS)
        wfi();                          /* wakes as soon as one is pending, though PSTATE.I masks it */
    gicc_write(GICC_EOIR, iar);
    return iar;
}

static void show(u32 iar)
{
    printf("SGI %u from CPU %u", iar & 0x3ff, iar >> 10 & 7);
}

int main(void)
{
    gic_init_cpu();
    gic_init_distributor();
    irq_mask();
    int failures = 0, cpus = gic_cpus();
    printf("%d CPU(s), says GICD_TYPER; CPU 0 is MPIDR_EL1 0x%lx\n", cpus, read_sysreg(mpidr_el1));
    for (int cpu = 1; cpu < cpus; cpu++) {
        i64 result = psci(PSCI_CPU_ON, cpu, (u64)secondary_entry, (u64)(stacks[cpu] + sizeof stacks[cpu]));
        u32 ready = next_sgi();
        printf("CPU %d: PSCI CPU_ON returned %ld; it sees GICD_ITARGETSR0 = 0x%08x, says ", cpu, result,
               targets_seen[cpu]);
        show(ready);
        printf(", and waits in WFI\n");
        failures += result != 0 || targets_seen[cpu] != 0x01010101u << cpu || ready != (READY | (u32)cpu << 10);
    }
    i64 missing = psci(PSCI_CPU_ON, cpus, (u64)secondary_entry, 0);
    printf("PSCI CPU_ON for CPU %d, which does not exist: %ld\n", cpus, missing);
    failures += missing != -2;              /* INVALID_PARAMETERS */

    for (int cpu = 1; cpu < cpus; cpu++) {
        gic_send_sgi(WAKE_ONE, SGI_TO_LIST, 1u << cpu);
        u32 back = next_sgi();
        printf("SGI %d to CPU %d: it woke with GICC_IAR 0x%03x, and answered: ", WAKE_ONE, cpu, woken_by[cpu][0]);
        show(back);
        printf("\n");
        failures += woken_by[cpu][0] != WAKE_ONE || back != (ANSWER | (u32)cpu << 10);
    }

    if (cpus > 1) {
        gic_send_sgi(WAKE_ALL, SGI_TO_OTHERS, 0);
        u32 answered = 0;                   /* one bit per CPU: they may answer in any order */
        for (int n = 1; n < cpus; n++) {
            u32 back = next_sgi();
            failures += (back & 0x3ff) != ANSWER;
            answered |= 1u << (back >> 10 & 7);
        }
        printf("SGI %d to all other CPUs; answers came from CPUs", WAKE_ALL);
        for (int cpu = 1; cpu < cpus; cpu++) {
            printf(" %d", cpu);
            failures += !(answered >> cpu & 1) || woken_by[cpu][1] != WAKE_ALL;
        }
        printf("\n");
    } else {
        puts("no other CPU to wake\n");
    }
    gic_send_sgi(WAKE_ALL, SGI_TO_LIST, 0xff & ~((1u << cpus) - 1));
    printf("SGI %d to the CPUs that do not exist: GICC_HPPIR 0x%x\n", WAKE_ALL, gicc_read(GICC_HPPIR));
    failures += gicc_read(GICC_HPPIR) != SPURIOUS;
    printf("%s\n", failures ? "FAILED" : "all checks passed");
    return failures ? 0xbad : SELF_CHECK_OK;
}
