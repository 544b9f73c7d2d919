/* virtio.h - virtio-mmio for bare-metal guests on QEMU virt: the transport's registers, split
 * virtqueues, and a small driver (virtio.c) for finding a device, negotiating and setting up a
 * queue, after the virtio 1.2 specification ("Virtio Over MMIO", "Split Virtqueues").
 *
 * A guest that drives a virtio device links the driver:   // links: virtio.c
 * QEMU's virt board has 32 transports, at 0x0a00_0000 + 0x200 n; transport n interrupts on
 * SPI 16 + n (INTID 48 + n), a level-sensitive line, high while InterruptStatus is non-zero.
 */
#ifndef VIRTIO_H
#define VIRTIO_H

#include "virt.h"

typedef unsigned short u16;

#define MMIO_BASE 0x0a000000UL
#define MMIO_STRIDE 0x200UL
#define MMIO_TRANSPORTS 32
#define MMIO_FIRST_INTID 48             /* transport n: SPI 16 + n */
#define MAGIC_VALUE 0x000
#define VERSION 0x004
#define DEVICE_ID 0x008
#define VENDOR_ID 0x00c
#define DEVICE_FEATURES 0x010
#define DEVICE_FEATURES_SEL 0x014
#define DRIVER_FEATURES 0x020
#define DRIVER_FEATURES_SEL 0x024
#define QUEUE_SEL 0x030
#define QUEUE_SIZE_MAX 0x034
#define QUEUE_SIZE 0x038
#define QUEUE_READY 0x044
#define QUEUE_NOTIFY 0x050
#define INTERRUPT_STATUS 0x060          /* bit 0: a used buffer; bit 1: the configuration changed */
#define INTERRUPT_ACK 0x064
#define STATUS 0x070
#define QUEUE_DESC 0x080                /* low word; the high word follows at +4 */
#define QUEUE_DRIVER 0x090
#define QUEUE_DEVICE 0x0a0

#define MAGIC 0x74726976                /* "virt" */
#define CONSOLE_ID 3
#define STATUS_ACKNOWLEDGE 1
#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4
#define STATUS_FEATURES_OK 8
#define STATUS_NEEDS_RESET 64
#define STATUS_RUNNING (STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK)
#define F_VERSION_1_HIGH (1u << 0)      /* feature bit 32: bit 0 of the second feature word */
#define INTERRUPT_USED_BUFFER 1

#define TRANSMITQ 1                     /* a console's port 0 transmit queue */
#define DESC_F_NEXT 1
#define AVAIL_F_NO_INTERRUPT 1
#define USED_F_NO_NOTIFY 1

struct virtq_desc { u64 addr; u32 len; u16 flags; u16 next; };
struct virtq_used_elem { u32 id; u32 len; };

static inline u32 reg(u64 base, u32 offset) { return mmio_read32(base + offset); }
static inline void set(u64 base, u32 offset, u32 value) { mmio_write32(base + offset, value); }
static inline void barrier(void) { __asm__ volatile("dmb sy" ::: "memory"); }

u64 find_console(int *index);           /* the first modern console's base (its transport in *index), or 0 */
const char *negotiate(u64 base);        /* VIRTIO_F_VERSION_1 and nothing else: 0, or why not */
/* Queue `queue` with `size` descriptors at `desc`, its driver area (available ring) at `avail`
 * and device area (used ring) at `used`, made ready: the device's maximum size, or 0 if unusable. */
u32 setup_queue(u64 base, u32 queue, u32 size, volatile void *desc, volatile void *avail, volatile void *used);

#endif
