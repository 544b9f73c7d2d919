/* virtio.c - finding, negotiating with and setting up a virtio-mmio device (see virtio.h). */
#include "virtio.h"

u64 find_console(int *index)
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

/* Device initialization (virtio 1.2, 3.1.1). */
const char *negotiate(u64 base)
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

/* Queue setup (4.2.3.2). */
u32 setup_queue(u64 base, u32 queue, u32 size, volatile void *desc, volatile void *avail, volatile void *used)
{
    set(base, QUEUE_SEL, queue);
    u32 max = reg(base, QUEUE_SIZE_MAX);
    if (max < size || reg(base, QUEUE_READY))
        return 0;
    set(base, QUEUE_SIZE, size);
    set(base, QUEUE_DESC, (u32)(u64)desc);
    set(base, QUEUE_DESC + 4, (u32)((u64)desc >> 32));
    set(base, QUEUE_DRIVER, (u32)(u64)avail);
    set(base, QUEUE_DRIVER + 4, (u32)((u64)avail >> 32));
    set(base, QUEUE_DEVICE, (u32)(u64)used);
    set(base, QUEUE_DEVICE + 4, (u32)((u64)used >> 32));
    set(base, QUEUE_READY, 1);
    return max;
}
