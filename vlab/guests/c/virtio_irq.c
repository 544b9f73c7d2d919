/* virtio_irq.c - a virtio console driver that sleeps until the device's interrupt says its buffer is back.
 *
 * The polling driver (virtio_console.c) asks for no interrupts. This one asks for them: each
 * line is one descriptor offered in the available ring and one notification; then it sleeps in
 * WFI until transport n's interrupt (SPI 16 + n, level-sensitive) comes through the GIC. The
 * handler reads InterruptStatus (bit 0: a used buffer), acknowledges it in InterruptACK -- which
 * lowers the line -- and completes the interrupt at the GIC. Prints the same on QEMU, on vlab's
 * board and in a VM. What it sends goes to the virtio console; its report goes to the PL011.
 */
// links: gic.c irq.S virtio.c
#include "gic.h"
#include "virtio.h"

#define QSIZE 4
#define PRIORITY 0x80
#define WAIT_LIMIT 1000                 /* WFIs without the interrupt: the device never raised it */

struct virtq_avail { u16 flags; u16 idx; u16 ring[QSIZE]; u16 used_event; };
struct virtq_used { u16 flags; u16 idx; struct virtq_used_elem ring[QSIZE]; u16 avail_event; };

static volatile struct virtq_desc desc[QSIZE] __attribute__((aligned(16)));
static volatile struct virtq_avail avail __attribute__((aligned(2)));
static volatile struct virtq_used used __attribute__((aligned(4)));

static const char *const text[] = {
    "This driver offers one buffer at a time,\n",
    "notifies the device, and sleeps in WFI:\n",
    "the used-buffer interrupt wakes it.\n",
};
#define LINES (sizeof(text) / sizeof(text[0]))

static u64 base;
static unsigned intid;
static volatile unsigned interrupts, spurious, others;
static u32 status_seen[LINES];

void handle_irq(void)
{
    u32 iar = gicc_read(GICC_IAR);
    if ((iar & 0x3ff) == SPURIOUS) {
        spurious++;
        return;
    }
    if ((iar & 0x3ff) == intid) {
        u32 status = reg(base, INTERRUPT_STATUS);
        set(base, INTERRUPT_ACK, status);  /* the transport lowers its line */
        if (interrupts < LINES)
            status_seen[interrupts] = status;
        interrupts++;
    } else {
        others++;
    }
    gicc_write(GICC_EOIR, iar);
}

int main(void)
{
    int index = -1;
    base = find_console(&index);
    if (!base) {
        puts("no virtio console (device ID 3, virtio-mmio version 2) on any of the 32 transports\n");
        return 0xbad;
    }
    intid = MMIO_FIRST_INTID + (unsigned)index;
    const char *refused = negotiate(base);
    if (refused || !setup_queue(base, TRANSMITQ, QSIZE, desc, &avail, &used)) {
        printf("the console cannot be set up: %s\n", refused ? refused : "its transmit queue is unusable");
        return 0xbad;
    }
    set(base, STATUS, STATUS_RUNNING);
    gic_init_cpu();
    gic_init_distributor();
    gic_configure(intid, PRIORITY, 0);
    printf("virtio console at transport %d: its interrupt is SPI %u (INTID %u), %s-triggered\n", index,
           intid - 32, intid, gicd_read(GICD_ICFGR + 4 * (intid / 16)) >> (2 * (intid % 16) + 1) & 1 ? "edge" : "level");

    int failures = 0;
    irq_mask();
    for (unsigned i = 0; i < LINES; i++) {
        desc[0].addr = (u64)text[i];
        desc[0].len = (u32)strlen(text[i]);
        desc[0].flags = 0;
        avail.ring[avail.idx % QSIZE] = 0;
        barrier();                      /* the entry before the index that publishes it */
        avail.idx = (u16)(avail.idx + 1);
        barrier();
        set(base, QUEUE_NOTIFY, TRANSMITQ);
        for (int waits = 0; interrupts <= i; waits++) {
            if (waits == WAIT_LIMIT) {
                printf("line %u: no interrupt after %d WFIs (InterruptStatus 0x%x)\n", i + 1, waits,
                       reg(base, INTERRUPT_STATUS));
                return 0xbad;
            }
            wfi();                      /* wakes on the pending IRQ though PSTATE.I masks it */
            irq_unmask();
            irq_mask();
        }
        barrier();
        int back = used.idx == avail.idx && used.ring[i % QSIZE].id == 0;
        printf("line %u: used-buffer interrupt, InterruptStatus 0x%x, buffer %s\n", i + 1, status_seen[i],
               back ? "back in the used ring" : "NOT back");
        failures += !back || status_seen[i] != INTERRUPT_USED_BUFFER;
    }
    u32 pending = gicd_read(GICD_ISPENDR + 4 * (intid / 32)) >> (intid % 32) & 1;
    printf("after %u interrupts: InterruptStatus 0x%x, INTID %u pending %u; %u spurious, %u other\n", interrupts,
           reg(base, INTERRUPT_STATUS), intid, pending, spurious, others);
    failures += interrupts != LINES || pending || spurious || others;
    printf("%s\n", failures ? "FAILED" : "all checks passed");
    return failures ? 0xbad : SELF_CHECK_OK;
}
