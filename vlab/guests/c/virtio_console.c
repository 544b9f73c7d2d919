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
// links: virtio.c
#include "virtio.h"

#define QSIZE 16                        /* descriptors: a power of 2, 8 chains of two in flight */
#define BATCHES 6                       /* batch b sends b lines: 21 in all, so the rings wrap */
#define POLL_LIMIT 1000000

struct virtq_avail { u16 flags; u16 idx; u16 ring[QSIZE]; u16 used_event; };
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
    avail.flags = AVAIL_F_NO_INTERRUPT; /* we poll the used ring */
    u32 max = setup_queue(base, TRANSMITQ, QSIZE, desc, &avail, &used);
    if (!max) {
        puts("the transmit queue cannot be set up\n");
        return 0xbad;
    }
    set(base, STATUS, STATUS_RUNNING);
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
