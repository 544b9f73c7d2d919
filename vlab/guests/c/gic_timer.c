/* gic_timer.c - the virtual timer's interrupt, through the GIC, tick after tick.
 *
 * The virtual timer is PPI 27: a level-sensitive line from the timer to the GIC, high while
 * CNTV_CTL_EL0 says the timer fired (ISTATUS) and is not masked. The kernel gives it a
 * priority, enables it in the distributor, and sleeps in WFI. Each tick: the GIC signals an
 * IRQ, the CPU enters the IRQ vector, handle_irq() acknowledges it (GICC_IAR: pending ->
 * active), moves the timer's compare value one period on -- which lowers the line -- and
 * completes it (GICC_EOIR: active -> inactive). Prints the same on QEMU, on vlab's board and
 * in a VM; the period is in counter ticks, so the schedule does not depend on speed.
 */
// links: gic.c irq.S
#include "gic.h"

#define TICKS 5
#define PERIOD 20000                    /* counter ticks: 320 us at QEMU's 62.5 MHz */
#define PRIORITY 0xa0

static volatile unsigned ticks, spurious;
static u32 iar_seen[TICKS], rpr_seen[TICKS], active_seen[TICKS];

void handle_irq(void)
{
    u32 iar = gicc_read(GICC_IAR);
    if ((iar & 0x3ff) == SPURIOUS) {
        spurious++;
        return;                         /* nothing to complete */
    }
    if ((iar & 0x3ff) == VIRTUAL_TIMER_PPI && ticks < TICKS) {
        iar_seen[ticks] = iar;
        rpr_seen[ticks] = gicc_read(GICC_RPR);
        active_seen[ticks] = gicd_read(GICD_ISACTIVER) >> VIRTUAL_TIMER_PPI & 1;
        if (++ticks < TICKS)
            __asm__ volatile("msr cntv_cval_el0, %0" :: "r"(read_sysreg(cntv_cval_el0) + PERIOD));
        else
            __asm__ volatile("msr cntv_ctl_el0, %0" :: "r"(0UL));   /* off: the line falls for good */
        __asm__ volatile("isb");
    }
    gicc_write(GICC_EOIR, iar);
}

int main(void)
{
    gic_init_cpu();
    gic_init_distributor();
    printf("GIC: %d interrupt IDs, GICC_IIDR 0x%08x\n", gic_interrupt_ids(), gicc_read(GICC_IIDR));
    gic_configure(VIRTUAL_TIMER_PPI, PRIORITY, 0);
    printf("virtual timer: PPI %d, priority 0x%02x, %s-triggered, one tick every %d counter ticks\n",
           VIRTUAL_TIMER_PPI, gic_priority(VIRTUAL_TIMER_PPI),
           gicd_read(GICD_ICFGR + 4) >> (2 * (VIRTUAL_TIMER_PPI - 16) + 1) & 1 ? "edge" : "level", PERIOD);

    irq_mask();
    __asm__ volatile("msr cntv_cval_el0, %0\n msr cntv_ctl_el0, %1\n isb"
                     :: "r"(read_sysreg(cntvct_el0) + PERIOD), "r"(1UL));
    while (ticks < TICKS) {             /* WFI wakes on a pending IRQ even while PSTATE.I masks it, */
        wfi();                          /* so no interrupt slips in between the test and the WFI */
        irq_unmask();
        irq_mask();
    }

    int failures = spurious != 0;
    for (unsigned i = 0; i < TICKS; i++) {
        printf("tick %u: GICC_IAR %u, running priority 0x%02x, PPI 27 active: %u\n",
               i + 1, iar_seen[i], rpr_seen[i], active_seen[i]);
        failures += iar_seen[i] != VIRTUAL_TIMER_PPI || rpr_seen[i] != PRIORITY || active_seen[i] != 1;
    }
    u32 pending = gicd_read(GICD_ISPENDR) >> VIRTUAL_TIMER_PPI & 1;
    u32 active = gicd_read(GICD_ISACTIVER) >> VIRTUAL_TIMER_PPI & 1;
    printf("after the last tick: running priority 0x%02x, PPI 27 pending %u, active %u; %u spurious\n",
           gicc_read(GICC_RPR), pending, active, spurious);
    failures += gicc_read(GICC_RPR) != 0xff || pending || active;
    printf("%s\n", failures ? "FAILED" : "all checks passed");
    return failures ? 0xbad : SELF_CHECK_OK;
}
