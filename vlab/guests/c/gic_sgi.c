/* gic_sgi.c - a CPU interrupting itself with SGIs: priorities, preemption, masking, and bad input.
 *
 * A software-generated interrupt (SGI 0-15) is sent by writing GICD_SGIR; here every one goes
 * to this same CPU ("this CPU only" filter). The first is taken at the IRQ vector; the others
 * are sent with IRQs masked (PSTATE.I) and acknowledged by reading GICC_IAR directly, which
 * shows the GIC's own rules one at a time: the most urgent (lowest) priority first, then the
 * lowest INTID; an active interrupt is preempted only by a more urgent group priority; GICC_PMR
 * hides what is not more urgent than it. Then what the architecture does with bad input.
 */
// links: gic.c irq.S
#include "gic.h"

static int failures;
static unsigned taken;
static u32 taken_iar[4], taken_rpr[4];

void handle_irq(void)
{
    u32 iar = gicc_read(GICC_IAR);
    if ((iar & 0x3ff) == SPURIOUS)
        return;
    if (taken < 4) {
        taken_iar[taken] = iar;
        taken_rpr[taken] = gicc_read(GICC_RPR);
    }
    taken++;
    gicc_write(GICC_EOIR, iar);
}

static void expect(const char *what, u32 got, u32 want)
{
    printf("  %s: 0x%x%s\n", what, got, got == want ? "" : "  <-- FAILED");
    failures += got != want;
}

static void sgi(unsigned n, u8 priority)
{
    gic_configure(n, priority, 1);
    gic_send_sgi(n, SGI_TO_SELF, 0);
}

int main(void)
{
    gic_init_cpu();
    gic_init_distributor();
    irq_mask();
    printf("GIC: %d CPU(s), %d interrupt IDs; SGIs enabled: 0x%04x\n", gic_cpus(), gic_interrupt_ids(),
           gicd_read(GICD_ISENABLER) & 0xffff);

    puts("SGI 3 to this CPU, IRQs masked:\n");
    sgi(3, 0x80);
    expect("GICD_ISPENDR0 (SGI 3 pending)", gicd_read(GICD_ISPENDR), 1u << 3);
    expect("GICC_HPPIR", gicc_read(GICC_HPPIR), 3);
    puts("IRQs unmasked: taken at the IRQ vector\n");
    irq_unmask();
    irq_mask();
    expect("interrupts taken", taken, 1);
    expect("GICC_IAR in the handler (SGI 3 from CPU 0)", taken_iar[0], 3);
    expect("GICC_RPR in the handler", taken_rpr[0], 0x80);
    expect("GICC_RPR after GICC_EOIR", gicc_read(GICC_RPR), 0xff);

    puts("SGIs 5 (priority 0xc0), 6 (0x40) and 4 (0xc0), then IRQs unmasked:\n");
    taken = 0;
    sgi(5, 0xc0);
    sgi(6, 0x40);
    sgi(4, 0xc0);
    irq_unmask();
    irq_mask();
    expect("taken first (most urgent)", taken_iar[0], 6);
    expect("then (same priority: lowest INTID)", taken_iar[1], 4);
    expect("then", taken_iar[2], 5);

    puts("preemption, polling GICC_IAR with IRQs masked:\n");
    sgi(5, 0xc0);
    u32 first = gicc_read(GICC_IAR);
    expect("GICC_IAR", first, 5);
    sgi(7, 0x20);
    u32 second = gicc_read(GICC_IAR);
    expect("GICC_IAR after SGI 7 (0x20): it preempts SGI 5 (0xc0)", second, 7);
    expect("GICC_RPR", gicc_read(GICC_RPR), 0x20);
    sgi(8, 0xc0);
    expect("GICC_IAR after SGI 8 (0xc0): not more urgent, no", gicc_read(GICC_IAR), SPURIOUS);
    gicc_write(GICC_EOIR, second);
    expect("GICC_RPR after completing SGI 7", gicc_read(GICC_RPR), 0xc0);
    gicc_write(GICC_EOIR, first);
    u32 third = gicc_read(GICC_IAR);
    expect("GICC_IAR after completing SGI 5", third, 8);
    gicc_write(GICC_EOIR, third);

    puts("a handler that never completes SGI 10 (0x80):\n");
    sgi(10, 0x80);
    u32 ten = gicc_read(GICC_IAR);
    sgi(11, 0x80);
    expect("GICC_IAR with SGI 11 (0x80) pending: equal priority waits", gicc_read(GICC_IAR), SPURIOUS);
    expect("GICD_ISACTIVER0 (SGI 10 active)", gicd_read(GICD_ISACTIVER), 1u << 10);
    expect("GICD_ISPENDR0 (SGI 11 pending)", gicd_read(GICD_ISPENDR), 1u << 11);
    gicc_write(GICC_EOIR, ten);
    u32 eleven = gicc_read(GICC_IAR);
    expect("GICC_IAR once SGI 10 is completed", eleven, 11);
    gicc_write(GICC_EOIR, eleven);

    puts("GICC_PMR 0x80 masks SGI 9 (0xa0):\n");
    gicc_write(GICC_PMR, 0x80);
    sgi(9, 0xa0);
    expect("GICD_ISPENDR0 (still pending)", gicd_read(GICD_ISPENDR), 1u << 9);
    expect("GICC_HPPIR", gicc_read(GICC_HPPIR), SPURIOUS);
    expect("GICC_IAR", gicc_read(GICC_IAR), SPURIOUS);
    gicc_write(GICC_PMR, 0xb0);
    u32 nine = gicc_read(GICC_IAR);
    expect("GICC_IAR with GICC_PMR 0xb0", nine, 9);
    gicc_write(GICC_EOIR, nine);
    gicc_write(GICC_PMR, 0xff);

    puts("bad input:\n");
    expect("GICC_IAR with nothing pending (spurious)", gicc_read(GICC_IAR), SPURIOUS);
    gicc_write(GICC_EOIR, SPURIOUS);
    expect("GICC_RPR after GICC_EOIR of 1023 (ignored)", gicc_read(GICC_RPR), 0xff);
    u32 others = 0xfe & ~((1u << gic_cpus()) - 1);
    gic_send_sgi(12, SGI_TO_LIST, others);
    expect("GICD_ISPENDR0 after SGI 12 to CPUs that do not exist", gicd_read(GICD_ISPENDR), 0);
    gicd_write(GICD_ISENABLER + 4 * 9, 0xffffffff);
    expect("GICD_ISENABLER9 (INTIDs 288-319 do not exist) after writing ~0", gicd_read(GICD_ISENABLER + 4 * 9), 0);
    gicd_write(GICD_IPRIORITYR + 300, 0x80);
    expect("GICD_IPRIORITYR75 (INTID 300) after writing 0x80", gicd_read(GICD_IPRIORITYR + 300), 0);
    gicd_write(0x00c, 0xffffffff);
    expect("reserved GICD+0x00c after writing ~0", gicd_read(0x00c), 0);
    gicd_write(GICD_ICENABLER, 0xffff);
    expect("SGIs enabled after GICD_ICENABLER0 <- 0xffff (they stay on)", gicd_read(GICD_ISENABLER) & 0xffff, 0xffff);
    expect("GICD_ISPENDR0 at the end", gicd_read(GICD_ISPENDR), 0);
    expect("GICD_ISACTIVER0 at the end", gicd_read(GICD_ISACTIVER), 0);

    printf("%s\n", failures ? "FAILED" : "all checks passed");
    return failures ? 0xbad : SELF_CHECK_OK;
}
