/* gic_smp.c - CPU 0 wakes the other CPUs from WFI with SGIs.
 *
 * QEMU's virt board (and vlab's) starts with only CPU 0 running; the others wait, powered off,
 * until CPU 0 asks the firmware for them with PSCI CPU_ON (entry point, context id). Each one
 * sets up its stack and its own CPU interface -- the GICC registers are banked: every CPU sees
 * its own at the same address -- says it is ready and sleeps in WFI. CPU 0 wakes them with
 * SGIs, one by one and then all at once, and each answers with an SGI back, so that CPU 0 sees
 * the sender in GICC_IAR. Only CPU 0 prints: the output is the same whatever order the CPUs
 * run in. Run with -smp 1 to 8.
 */
// links: gic.c irq.S
#include "gic.h"

#define PSCI_CPU_ON 0xc4000003UL
#define MAX_CPUS 8
#define WAKE_ONE 1                      /* the SGIs this program sends */
#define WAKE_ALL 2
#define ANSWER 3

i64 psci(u64 function, u64 a, u64 b, u64 c);
void secondary_entry(void);

static u8 stacks[MAX_CPUS][4096] __attribute__((aligned(16)));
static volatile u32 woken_by[MAX_CPUS][2];  /* GICC_IAR of each wake-up, written by that CPU */
static volatile int state[MAX_CPUS];        /* 1: ready in WFI, then the number of wake-ups */
static volatile u32 targets_seen[MAX_CPUS];

static int me(void)
{
    return (int)(read_sysreg(mpidr_el1) & 0xff);
}

static void publish(volatile int *where, int value)
{
    __asm__ volatile("dsb sy" ::: "memory");    /* what this CPU wrote before is visible first */
    *where = value;
    __asm__ volatile("dsb sy" ::: "memory");
}

void handle_irq(void)
{
    u32 iar = gicc_read(GICC_IAR);
    int cpu = me();
    if ((iar & 0x3ff) == WAKE_ONE || (iar & 0x3ff) == WAKE_ALL) {
        int n = state[cpu];
        woken_by[cpu][n - 1] = iar;
        gicc_write(GICC_EOIR, iar);
        gic_send_sgi(ANSWER, SGI_TO_LIST, 1);   /* to CPU 0 */
        publish(&state[cpu], n + 1);
    } else if ((iar & 0x3ff) != SPURIOUS) {
        gicc_write(GICC_EOIR, iar);
    }
}

void secondary_main(void)
{
    int cpu = me();
    gic_init_cpu();
    targets_seen[cpu] = gicd_read(GICD_ITARGETSR);     /* SGIs' targets: this CPU itself */
    irq_mask();
    publish(&state[cpu], 1);
    for (;;) {                          /* sleep until an SGI; take it; sleep again */
        wfi();
        irq_unmask();
        irq_mask();
    }
}

static void wait_for(int cpu, int value)
{
    while (state[cpu] < value)
        ;
}

/* CPU 0 takes the answers by polling GICC_IAR (IRQs masked): the SGI and its sender. */
static u32 answer(void)
{
    u32 iar;
    while ((iar = gicc_read(GICC_IAR)) == SPURIOUS)
        ;
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
        wait_for(cpu, 1);
        printf("CPU %d: PSCI CPU_ON returned %ld; it sees GICD_ITARGETSR0 = 0x%08x, and waits in WFI\n",
               cpu, result, targets_seen[cpu]);
        failures += result != 0 || targets_seen[cpu] != 0x01010101u << cpu;
    }
    i64 missing = psci(PSCI_CPU_ON, cpus, (u64)secondary_entry, 0);
    printf("PSCI CPU_ON for CPU %d, which does not exist: %ld\n", cpus, missing);
    failures += missing != -2;              /* INVALID_PARAMETERS */

    for (int cpu = 1; cpu < cpus; cpu++) {
        gic_send_sgi(WAKE_ONE, SGI_TO_LIST, 1u << cpu);
        wait_for(cpu, 2);
        u32 back = answer();
        printf("SGI %d to CPU %d: it woke with GICC_IAR 0x%03x, and answered: ", WAKE_ONE, cpu, woken_by[cpu][0]);
        show(back);
        printf("\n");
        failures += woken_by[cpu][0] != WAKE_ONE || back != (ANSWER | (u32)cpu << 10);
    }

    if (cpus > 1) {
        gic_send_sgi(WAKE_ALL, SGI_TO_OTHERS, 0);
        printf("SGI %d to all other CPUs; the answers, as CPU 0 acknowledges them:", WAKE_ALL);
        for (int cpu = 1; cpu < cpus; cpu++)
            wait_for(cpu, 3);
        for (int cpu = 1; cpu < cpus; cpu++) {
            u32 back = answer();
            printf(cpu == 1 ? " " : ", ");
            show(back);
            failures += woken_by[cpu][1] != WAKE_ALL || back != (ANSWER | (u32)cpu << 10);
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
