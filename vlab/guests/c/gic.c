/* gic.c - a small driver for QEMU virt's GICv2, shared by the guests that take interrupts. */
#include "gic.h"

extern char irq_vectors[];

static inline void mmio_write8(u64 address, u8 value)
{
    __asm__ volatile("strb %w0, [%1]" :: "rZ"(value), "r"(address) : "memory");
}

static inline u8 mmio_read8(u64 address)
{
    u8 value;
    __asm__ volatile("ldrb %w0, [%1]" : "=r"(value) : "r"(address) : "memory");
    return value;
}

void gic_init_distributor(void)
{
    gicd_write(GICD_CTLR, 1);           /* forward Group 0 interrupts (all of them, at reset) */
}

/* The vectors first: should a GIC access fault (no GIC there), unexpected_exception() says so. */
void gic_init_cpu(void)
{
    __asm__ volatile("msr vbar_el1, %0\n isb" :: "r"(irq_vectors));
    gicc_write(GICC_PMR, 0xff);         /* let every priority through */
    gicc_write(GICC_CTLR, 1);           /* signal Group 0 interrupts as IRQs */
}

void gic_configure(unsigned intid, u8 priority, int edge)
{
    mmio_write8(GICD_BASE + GICD_IPRIORITYR + intid, priority);   /* IPRIORITYR is byte-accessible */
    if (intid >= 16) {                  /* SGIs are always edge-triggered */
        u32 shift = 2 * (intid % 16) + 1, offset = GICD_ICFGR + 4 * (intid / 16);
        gicd_write(offset, (gicd_read(offset) & ~(1u << shift)) | ((u32)!!edge << shift));
    }
    gicd_write(GICD_ISENABLER + 4 * (intid / 32), 1u << (intid % 32));
}

u8 gic_priority(unsigned intid)
{
    return mmio_read8(GICD_BASE + GICD_IPRIORITYR + intid);
}

void gic_send_sgi(unsigned sgi, unsigned filter, unsigned targets)
{
    __asm__ volatile("dsb sy" ::: "memory");    /* what we wrote before reaches the target first */
    gicd_write(GICD_SGIR, filter << 24 | (targets & 0xff) << 16 | (sgi & 0xf));
}

int gic_cpus(void)
{
    return (int)((gicd_read(GICD_TYPER) >> 5) & 7) + 1;
}

int gic_interrupt_ids(void)
{
    return 32 * (int)((gicd_read(GICD_TYPER) & 0x1f) + 1);
}

/* Called by irq.S for every exception that is not an IRQ: say what happened, and power off. */
void unexpected_exception(u64 entry)
{
    printf("unexpected exception: vector +0x%03lx, ESR_EL1 0x%08lx, ELR_EL1 0x%lx, FAR_EL1 0x%lx\n",
           entry * 0x80, read_sysreg(esr_el1), read_sysreg(elr_el1), read_sysreg(far_el1));
    power_off(0xbad);
}
