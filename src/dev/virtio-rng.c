/*
 * virtio-rng device (see virtio-rng.h). A request is any chain of
 * device-writable buffers; readable buffers in it are ignored. Each request
 * gets at most RNG_MAX_PER_REQUEST bytes so a guest asking for gigabytes
 * cannot keep the I/O thread busy: it just asks again. For the same reason
 * one kick serves at most VIRTIO_RNG_BUDGET requests (1 MiB) and the rest comes on
 * a later turn of the I/O thread: a guest that keeps re-posting buffers
 * from another vCPU does not hold the thread the disks and sockets share.
 */
#include "dev/virtio-rng.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include "base/log.h"

#define RNG_QUEUE_SIZE      256
#define RNG_MAX_PER_REQUEST 65536

struct virtio_rng {
	struct virtio_dev *vd;
};

static uint64_t rng_features(void *dev)
{
	(void)dev;
	return VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC_BIT) | VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT);
}

static void rng_activate(void *dev, struct virtio_dev *vd, uint64_t features)
{
	(void)features;
	struct virtio_rng *rng = dev;
	rng->vd = vd;
}

/* Fills the writable part of the chain; returns the bytes written. */
static uint32_t rng_fill(const struct vq_chain *c)
{
	uint32_t written = 0;
	for (unsigned i = c->nr_readable; i < c->nr_iov && written < RNG_MAX_PER_REQUEST; i++) {
		size_t want = c->iov[i].iov_len;
		if (want > RNG_MAX_PER_REQUEST - written)
			want = RNG_MAX_PER_REQUEST - written;
		ssize_t got = getrandom(c->iov[i].iov_base, want, 0);
		if (got < 0 && errno == EINTR)
			got = 0;
		if (got <= 0)
			break;
		written += (uint32_t)got;
		if ((size_t)got < want)
			break;
	}
	return written;
}

static uint32_t rng_serve(void *ctx, struct vq_chain *c)
{
	(void)ctx;
	return rng_fill(c);
}

static void rng_queue_notify(void *dev, struct virtio_dev *vd, unsigned queue,
			     enum virtio_path path)
{
	(void)dev, (void)path; /* served on the I/O thread only */
	static _Thread_local struct vq_chain chain;
	virtio_queue_serve(vd, queue, &chain, VIRTIO_RNG_BUDGET, "broken request queue", rng_serve,
			   NULL);
}

static void rng_reset(void *dev)
{
	struct virtio_rng *rng = dev;
	rng->vd = NULL;
}

const struct virtio_device_ops virtio_rng_ops = {
	.name = "virtio-rng",
	.device_id = VIRTIO_ID_RNG,
	.num_queues = 1,
	.queue_max_size = RNG_QUEUE_SIZE,
	.config_size = 0,
	.features = rng_features,
	.activate = rng_activate,
	.queue_notify = rng_queue_notify,
	.reset = rng_reset,
};

struct virtio_rng *virtio_rng_create(void)
{
	return calloc(1, sizeof(struct virtio_rng));
}

void virtio_rng_destroy(struct virtio_rng *rng)
{
	free(rng);
}
