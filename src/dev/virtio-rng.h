/*
 * virtio-rng (virtio 1.2, section 5.4): one queue of device-writable
 * buffers that the device fills from the host's getrandom(2).
 */
#ifndef SHOJI_DEV_VIRTIO_RNG_H
#define SHOJI_DEV_VIRTIO_RNG_H

#include "dev/virtio.h"

/* Requests one kick serves (64 KiB each at most) before it yields the I/O
 * thread: a smaller budget than VIRTIO_QUEUE_BUDGET, as each costs more. */
#define VIRTIO_RNG_BUDGET 16

extern const struct virtio_device_ops virtio_rng_ops;

struct virtio_rng;
struct virtio_rng *virtio_rng_create(void);
void virtio_rng_destroy(struct virtio_rng *rng);

#endif
