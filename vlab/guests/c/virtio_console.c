/* virtio_console.c - print through a virtio console: one notification per batch, not two exits per byte.
 *
 * QEMU's virt board has 32 virtio-mmio transports, at 0x0a00_0000 + 0x200 n. This driver
 * follows the virtio 1.2 specification ("Virtio Over MMIO", "Split Virtqueues"):
 *   1. scan the transports for a console (device ID 3) speaking version 2 (not legacy);
 *   2. reset it, set ACKNOWLEDGE and DRIVER, accept VIRTIO_F_VERSION_1 and nothing else,
 *      set FEATURES_OK and check that the device kept it;
 *   3. set up queue 1, port 0's transmitq: a descriptor table, an available ring (driver
 *      area) and a used ring (device area) in its own RAM; then DRIVER_OK;
 *   4. send its text in batches of growing size: each line is a chain of two descriptors
 *      (a "[batch.line] " prefix, then the text); put every chain of a batch in the
 *      available ring, publish the new index once, and notify the device once -- unless
 *      the device asked for no notifications (VIRTQ_USED_F_NO_NOTIFY);
 *   5. wait for the used ring to return every chain (polling, so it asks for no
 *      interrupts: VIRTQ_AVAIL_F_NO_INTERRUPT).
 * What it sends goes to the virtio console; its report goes to the PL011.
 */
#include "virt.h"

typedef unsigned short u16;

#define MMIO_BASE 0x0a000000UL
#define MMIO_STRIDE 0x200UL
#define MMIO_TRANSPORTS 32
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
#define F_VERSION_1_HIGH (1u << 0)      /* feature bit 32: bit 0 of the second feature word */

#define TRANSMITQ 1                     /* port 0's transmit queue */
#define QSIZE 16                        /* descriptors: a power of 2, 8 chains of two in flight */
#define DESC_F_NEXT 1
#define AVAIL_F_NO_INTERRUPT 1
#define USED_F_NO_NOTIFY 1
#define BATCHES 6                       /* batch b sends b lines: 21 in all, so the rings wrap */
#define POLL_LIMIT 1000000

struct virtq_desc { u64 addr; u32 len; u16 flags; u16 next; };
struct virtq_avail { u16 flags; u16 idx; u16 ring[QSIZE]; u16 used_event; };
struct virtq_used_elem { u32 id; u32 len; };
struct virtq_used { u16 flags; u16 idx; struct virtq_used_elem ring[QSIZE]; u16 avail_event; };

static volatile struct virtq_desc desc[QSIZE] __attribute__((aligned(16)));
static volatile struct virtq_avail avail __attribute__((aligned(2)));
static volatile struct virtq_used used __attribute__((aligned(4)));
static char prefix[QSIZE / 2][16];

static const char *const text[] = {
    "A virtqueue is three tables in guest memory.\n",
    "The descriptor table says where each buffer is,\n",
    "the available ring lists what the driver offers,\n",
    "the used ring lists what the device has finished.\n",
    "Each ring has a free-running 16-bit index;\n",
    "a slot is the index modulo the queue size.\n",
    "The driver fills descriptors, chains them with NEXT,\n",
    "puts each chain's head in the available ring,\n",
    "and publishes them all with a single index store.\n",
    "Then one write to QueueNotify, one exit,\n",
    "tells the device about the whole batch.\n",
    "The device takes every chain up to that index,\n",
    "copies the bytes out, and returns the heads\n",
    "in the used ring, with the bytes it wrote.\n",
    "A driver that polls asks for no interrupts;\n",
    "a device that polls asks for no notifications.\n",
    "An emulated UART costs two exits per byte:\n",
    "one to read its flags, one to write the byte.\n",
    "A paravirtual device costs one per batch.\n",
    "That is the bargain of paravirtualization:\n",
    "the guest knows, and works with its hypervisor.\n",
};
#define LINES (sizeof(text) / sizeof(text[0]))

static u32 reg(u64 base, u32 offset) { return mmio_read32(base + offset); }
static void set(u64 base, u32 offset, u32 value) { mmio_write32(base + offset, value); }
static void barrier(void) { __asm__ volatile("dmb sy" ::: "memory"); }

/* The base address of the first transport holding a modern console, or 0. */
static u64 find_console(int *index)
{
    for (int n = 0; n < MMIO_TRANSPORTS; n++) {
        u64 base = MMIO_BASE + MMIO_STRIDE * n;
        if (reg(base, MAGIC_VALUE) != MAGIC || reg(base, VERSION) != 2)
            continue;                   /* not virtio-mmio, or the legacy interface (version 1) */
        if (reg(base, DEVICE_ID) == CONSOLE_ID) {
            *index = n;
            return base;
        }
    }
    return 0;
}

/* Device initialization (virtio 1.2, 3.1.1): returns 0, or a reason for failing. */
static const char *negotiate(u64 base)
{
    set(base, STATUS, 0);               /* reset */
    set(base, STATUS, STATUS_ACKNOWLEDGE);
    set(base, STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    set(base, DEVICE_FEATURES_SEL, 1);
    if (!(reg(base, DEVICE_FEATURES) & F_VERSION_1_HIGH))
        return "the device does not offer VIRTIO_F_VERSION_1";
    set(base, DRIVER_FEATURES_SEL, 0);
    set(base, DRIVER_FEATURES, 0);
    set(base, DRIVER_FEATURES_SEL, 1);
    set(base, DRIVER_FEATURES, F_VERSION_1_HIGH);
    set(base, STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    if (!(reg(base, STATUS) & STATUS_FEATURES_OK))
        return "the device refused our features";
    return 0;
}

/* Queue setup (4.2.3.2): returns the device's maximum size, or 0 when the queue is unusable. */
static u32 setup_transmitq(u64 base)
{
    set(base, QUEUE_SEL, TRANSMITQ);
    u32 max = reg(base, QUEUE_SIZE_MAX);
    if (max < QSIZE || reg(base, QUEUE_READY))
        return 0;
    set(base, QUEUE_SIZE, QSIZE);
    avail.flags = AVAIL_F_NO_INTERRUPT; /* we poll the used ring */
    set(base, QUEUE_DESC, (u32)(u64)desc);
    set(base, QUEUE_DESC + 4, (u32)((u64)desc >> 32));
    set(base, QUEUE_DRIVER, (u32)(u64)&avail);
    set(base, QUEUE_DRIVER + 4, (u32)((u64)&avail >> 32));
    set(base, QUEUE_DEVICE, (u32)(u64)&used);
    set(base, QUEUE_DEVICE + 4, (u32)((u64)&used >> 32));
    set(base, QUEUE_READY, 1);
    return max;
}

/* Format "[b.i] " into out (b and i below 10). */
static void format_prefix(char *out, int b, int i)
{
    out[0] = '[', out[1] = (char)('0' + b), out[2] = '.', out[3] = (char)('0' + i);
    out[4] = ']', out[5] = ' ', out[6] = 0;
}

/* Send `count` lines starting at text[first] as one batch; returns how many notifications it took. */
static int send_batch(u64 base, int batch, unsigned first, int count, int *failed)
{
    u16 start = avail.idx;
    for (int i = 0; i < count; i++) {
        int d = 2 * i;                  /* chain: prefix (d) -> text (d + 1) */
        format_prefix(prefix[i], batch, i + 1);
        desc[d].addr = (u64)prefix[i];
        desc[d].len = (u32)strlen(prefix[i]);
        desc[d].flags = DESC_F_NEXT;
        desc[d].next = (u16)(d + 1);
        desc[d + 1].addr = (u64)text[first + i];
        desc[d + 1].len = (u32)strlen(text[first + i]);
        desc[d + 1].flags = 0;
        desc[d + 1].next = 0;
        avail.ring[(u16)(start + i) % QSIZE] = (u16)d;
    }
    barrier();                          /* the ring entries before the index that publishes them */
    avail.idx = (u16)(start + count);
    barrier();                          /* the index before reading the device's flags */
    int notified = 0;
    if (!(used.flags & USED_F_NO_NOTIFY)) {
        set(base, QUEUE_NOTIFY, TRANSMITQ);
        notified = 1;
    }
    for (int spin = 0; used.idx != avail.idx; spin++)
        if (spin == POLL_LIMIT) {
            *failed = 1;
            return notified;
        }
    barrier();                          /* the used index before the entries it covers */
    for (int i = 0; i < count; i++) {
        volatile struct virtq_used_elem *e = &used.ring[(u16)(start + i) % QSIZE];
        if (e->id != (u32)(2 * i) || e->len != 0)
            *failed = 1;                /* a transmitq buffer comes back whole, with nothing written */
    }
    return notified;
}

int main(void)
{
    int index = -1;
    u64 base = find_console(&index);
    if (!base) {
        puts("no virtio console (device ID 3, virtio-mmio version 2) on any of the 32 transports\n");
        return 0xbad;
    }
    printf("virtio console at transport %d (0x%lx), vendor 0x%x\n", index, base, reg(base, VENDOR_ID));
    const char *refused = negotiate(base);
    if (refused) {
        printf("negotiation failed: %s\n", refused);
        return 0xbad;
    }
    u32 max = setup_transmitq(base);
    if (!max) {
        puts("the transmit queue cannot be set up\n");
        return 0xbad;
    }
    set(base, STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    printf("negotiated VIRTIO_F_VERSION_1; transmitq: %d of at most %u descriptors\n", QSIZE, max);

    unsigned line = 0;
    int notifications = 0, failed = 0;
    for (int batch = 1; batch <= BATCHES && !failed; batch++) {
        notifications += send_batch(base, batch, line, batch, &failed);
        line += (unsigned)batch;
    }
    if (failed || reg(base, STATUS) & STATUS_NEEDS_RESET) {
        printf("the device did not return every buffer (status 0x%x)\n", reg(base, STATUS));
        return 0xbad;
    }
    printf("sent %u lines in %d batches with %d notifications; every chain came back used\n",
           line, BATCHES, notifications);
    return line == LINES ? SELF_CHECK_OK : 0xbad;
}
