/* gic.h - the GICv2 of QEMU virt for bare-metal guests: its registers, and a small driver (gic.c).
 *
 * A guest that takes interrupts links the driver and the vector table:   // links: gic.c irq.S
 * It writes handle_irq(), which irq.S calls for every IRQ with the interrupted registers saved.
 */
#ifndef GIC_H
#define GIC_H

#include "virt.h"

#define GICD_BASE 0x08000000UL          /* the distributor */
#define GICC_BASE 0x08010000UL          /* this CPU's interface: each CPU sees its own here */

#define GICD_CTLR 0x000
#define GICD_TYPER 0x004
#define GICD_ISENABLER 0x100            /* one bit per interrupt, 32 per register */
#define GICD_ICENABLER 0x180
#define GICD_ISPENDR 0x200
#define GICD_ICPENDR 0x280
#define GICD_ISACTIVER 0x300
#define GICD_IPRIORITYR 0x400           /* one byte per interrupt */
#define GICD_ITARGETSR 0x800            /* one byte per interrupt: a mask of CPUs */
#define GICD_ICFGR 0xc00                /* two bits per interrupt: edge (0b10) or level (0b00) */
#define GICD_SGIR 0xf00

#define GICC_CTLR 0x00
#define GICC_PMR 0x04                   /* only priorities below this one are signalled */
#define GICC_IAR 0x0c                   /* acknowledge: INTID [9:0], source CPU of an SGI [12:10] */
#define GICC_EOIR 0x10                  /* complete what IAR returned */
#define GICC_RPR 0x14                   /* the running priority: 0xff when nothing is active */
#define GICC_HPPIR 0x18                 /* the best pending interrupt, without acknowledging it */
#define GICC_IIDR 0xfc

#define SGI_TO_LIST 0u                  /* GICD_SGIR TargetListFilter: the CPUs in [23:16] */
#define SGI_TO_OTHERS 1u                /* every CPU but this one */
#define SGI_TO_SELF 2u
#define VIRTUAL_TIMER_PPI 27
#define PHYSICAL_TIMER_PPI 30
#define SPURIOUS 1023

static inline u32 gicd_read(u32 offset) { return mmio_read32(GICD_BASE + offset); }
static inline void gicd_write(u32 offset, u32 value) { mmio_write32(GICD_BASE + offset, value); }
static inline u32 gicc_read(u32 offset) { return mmio_read32(GICC_BASE + offset); }
static inline void gicc_write(u32 offset, u32 value) { mmio_write32(GICC_BASE + offset, value); }

static inline void irq_mask(void) { __asm__ volatile("msr daifset, #2" ::: "memory"); }
static inline void irq_unmask(void) { __asm__ volatile("msr daifclr, #2\n isb" ::: "memory"); }
static inline void wfi(void) { __asm__ volatile("dsb sy\n wfi" ::: "memory"); }

void gic_init_cpu(void);                /* vectors installed, this CPU's interface on, priority mask open */
void gic_init_distributor(void);        /* forwarding on: once, by one CPU, after gic_init_cpu() */
void gic_configure(unsigned intid, u8 priority, int edge);  /* priority, trigger, enabled */
u8 gic_priority(unsigned intid);
void gic_send_sgi(unsigned sgi, unsigned filter, unsigned targets);
int gic_cpus(void);                     /* from GICD_TYPER.CPUNumber */
int gic_interrupt_ids(void);            /* from GICD_TYPER.ITLinesNumber */

void handle_irq(void);                  /* the guest's own: called by irq.S for each IRQ */
void power_off(u64 verdict);            /* irq.S: PSCI SYSTEM_OFF, leaving `verdict` in x19 */

#endif
