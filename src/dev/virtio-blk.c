/*
 * virtio-blk (virtio 1.2, section 5.2): turns requests the driver places on
 * the one request queue into block layer calls on the disk image. This
 * file is the device: its ops table, the I/O thread's serving of the
 * queue, and creation. Its rooms, in reading order (virtio-blk-internal.h
 * has what they share):
 *   - virtio-blk-request.c: one request, parsed and served (any thread);
 *   - virtio-blk-pool.c: the worker threads;
 *   - virtio-blk-ring.c: the io_uring rings of a raw image, the vCPU
 *     threads' ring and its watchdog.
 *
 * Where a request runs (the queue is served as dev/virtio.h's rule says):
 *   - a request alone in the ring with nothing in flight (queue depth 1)
 *     is served on the I/O thread itself, which saves it two thread hops;
 *   - reads and writes of a raw image go to an io_uring ring: the vCPU
 *     threads' when the kick came on a vCPU, else the I/O thread's;
 *   - everything else goes to the worker pool, whose completions wake the
 *     I/O thread through the device's event fd.
 *
 * Who touches what: the I/O thread and the vCPU threads run queue_notify
 * under the transport's lock: they pop chains, take the status byte, copy
 * the chain into a struct blk_io and start it; they push to the used ring
 * and interrupt once per batch, so EVENT_IDX suppression works as with
 * synchronous requests (vq_push() publishes with release ordering). At
 * most the queue's size of requests is in flight (popped, not yet
 * pushed): a driver that re-publishes heads it has not got back cannot
 * make us queue more, and no more than BLK_MAX_WORKERS threads exist.
 * reset() drops the requests no worker has started and waits for the
 * running ones, so once it returns nothing writes into guest memory of
 * the old rings; destroy() also joins the workers. A chain the walker
 * refuses breaks the queue: requests already in flight finish their I/O
 * but are not returned (the driver must reset the device, and the reset
 * waits for them).
 */
#include "dev/virtio-blk.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "dev/virtio-blk-internal.h"

/* ---- the queue (I/O thread) ---- */

/* Returns the served requests to the driver; the count pushed. */
unsigned blk_push_done(struct virtio_blk *blk, struct vq *vq)
{
	pthread_mutex_lock(&blk->lock);
	struct blk_list done = blk->done;
	blk_list_init(&blk->done);
	pthread_mutex_unlock(&blk->lock);
	unsigned n = 0;
	struct blk_io *io;
	while ((io = blk_list_take(&done))) {
		blk->pool_writes -= io->pool_write;
		vq_push(vq, io->head, io->used);
		free(io);
		blk->inflight--;
		n++;
	}
	n += blk_ring_reap(blk, vq);
	return vq->broken ? 0 : n; /* vq_push() drops them on a broken queue */
}

/*
 * Whether the I/O thread may serve this request itself: a read or write of
 * at most BLK_INLINE_MAX_BYTES. Anything longer, and flushes, discards and
 * zeroing (whose time the guest chooses), go to a worker, so that the other
 * devices and the control socket on the I/O thread never wait for them. The
 * type is peeked from guest memory; a guest that changes it afterwards only
 * changes where its request runs (the worker parses its own copy).
 */
#define BLK_INLINE_MAX_BYTES (128u * 1024)
static bool blk_io_is_quick(const struct blk_io *io)
{
	uint32_t type = blk_peek_type(io);
	uint64_t data = io->readable_len + io->writable_len;
	return (type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_OUT) &&
	       data <= BLK_INLINE_MAX_BYTES + VIRTIO_BLK_REQ_HDR_BYTES;
}

/* Hands io to the ring or the pool; false when neither takes it. Returns
 * in *pushed the requests that finished while waiting for the ring. */
static bool blk_hand_over(struct virtio_blk *blk, struct vq *vq, struct blk_io *io,
			  unsigned *pushed)
{
	if (blk_ring_start(blk, blk->aio, io))
		return true;
	io->pool_write = blk_pool_may_rmw(blk, io);
	if (io->pool_write)
		*pushed += blk_ring_wait_writes(blk, vq);
	if (!blk_queue_io(blk, io))
		return false;
	blk->pool_writes += io->pool_write;
	return true;
}

/* Serves or hands over a request the I/O thread now owns (not counted in
 * inflight); returns the count of requests completed here. */
static unsigned blk_route(struct virtio_blk *blk, struct vq *vq, struct blk_io *io)
{
	/* A request on its own (nothing in flight, nothing behind it: a guest
	 * at queue depth 1) is served right here: a hand-over to a worker and
	 * back would add two thread wake-ups to its latency and buy nothing. */
	bool alone = blk->inflight == 0 && !vq_has_avail(vq) && blk_io_is_quick(io);
	unsigned pushed = 0;
	if (!alone && blk_hand_over(blk, vq, io, &pushed)) {
		blk->inflight++;
		return pushed;
	}
	blk_io_run(blk, io);
	vq_push(vq, io->head, io->used);
	free(io);
	return pushed + 1;
}

/* A popped chain as a request of its own; NULL when it was completed
 * at once with an error (counted in *completed). */
struct blk_io *blk_io_take(struct virtio_blk *blk, struct vq *vq, struct vq_chain *c,
				  unsigned *completed)
{
	uint16_t head = c->head;
	uint8_t *status = blk_take_status(c);
	if (!status) {
		/* Nowhere to put a status: still complete it so the driver is not hung. */
		blk_warn(blk, "request without a writable status byte");
		vq_push(vq, head, 0);
		++*completed;
		return NULL;
	}
	struct blk_io *io = blk_io_new(c, status);
	if (!io) {
		__atomic_store_n(status, VIRTIO_BLK_S_IOERR, __ATOMIC_RELAXED); /* see blk_io_run */
		vq_push(vq, head, 1);
		++*completed;
	}
	return io;
}

/* Starts one popped chain; returns the count of requests completed here. */
static unsigned blk_start(struct virtio_blk *blk, struct vq *vq, struct vq_chain *c)
{
	unsigned completed = 0;
	struct blk_io *io = blk_io_take(blk, vq, c, &completed);
	return io ? blk_route(blk, vq, io) : completed;
}

/* Serves the requests a vCPU thread popped and left to us (see
 * blk_vcpu_queue_notify); the count completed here. */
static unsigned blk_take_handed(struct virtio_blk *blk, struct vq *vq)
{
	unsigned n = 0;
	struct blk_io *io;
	while ((io = blk_list_take(&blk->handed))) {
		blk->inflight--;
		n += blk_route(blk, vq, io);
	}
	return n;
}

/*
 * Pops and starts chains until the ring is empty or broken (the result of
 * vq_pop) or the queue's size of requests is in flight (VQ_CHAIN: a
 * completion will call queue_notify again).
 */
static enum vq_pop_result blk_take_requests(struct virtio_blk *blk, struct vq *vq,
					    unsigned *completed)
{
	while (blk->inflight < vq->size) {
		enum vq_pop_result r = vq_pop(vq, &blk->chain);
		if (r != VQ_CHAIN)
			return r;
		*completed += blk_start(blk, vq, &blk->chain);
	}
	return VQ_CHAIN;
}

/* ---- the ops table ---- */

static uint64_t blk_features(void *dev)
{
	struct virtio_blk *blk = dev;
	uint64_t f = VIRTIO_FEATURE(VIRTIO_BLK_F_SEG_MAX) | VIRTIO_FEATURE(VIRTIO_BLK_F_BLK_SIZE) |
		     VIRTIO_FEATURE(VIRTIO_BLK_F_FLUSH) |
		     VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC_BIT) |
		     VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT);
	/* A read-only disk offers nothing that would change it. */
	if (blk->read_only)
		f |= VIRTIO_FEATURE(VIRTIO_BLK_F_RO);
	else
		f |= VIRTIO_FEATURE(VIRTIO_BLK_F_DISCARD) | VIRTIO_FEATURE(VIRTIO_BLK_F_WRITE_ZEROES);
	return f;
}

static void blk_config_read(void *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_blk *blk = dev;
	virtio_config_copy(blk->config, sizeof(blk->config), offset, data, len);
}

static void blk_config_write(void *dev, uint32_t offset, const uint8_t *data, uint32_t len)
{
	/* Nothing is writable without VIRTIO_BLK_F_CONFIG_WCE, which we do not offer. */
	(void)dev, (void)offset, (void)data, (void)len;
}

static bool blk_features_ok(void *dev, uint64_t features)
{
	(void)dev, (void)features;
	return true;
}

static void blk_activate(void *dev, struct virtio_dev *vd, uint64_t features)
{
	struct virtio_blk *blk = dev;
	blk->features = features;
	struct vq *vq = virtio_queue(vd, 0);
	if (vq) {
		vq->indirect = features & VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC_BIT);
		vq->event_idx = features & VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT);
	}
	blk->active = true;
}

/*
 * A kick, or completions from the workers: pushes what was served, then
 * takes new requests until the ring is empty. Notifications are off while
 * we work and back on before the last look, so a kick that races with the
 * end of the loop is seen either by vq_enable_notify() or by the next
 * notify. One interrupt (if the driver wants it) covers the whole batch.
 */
static void blk_io_thread_serve(struct virtio_blk *blk, struct virtio_dev *vd, struct vq *vq)
{
	unsigned completed = blk_push_done(blk, vq);
	completed += blk_take_handed(blk, vq);
	if (blk->vcpu_aio && block_aio_inflight(blk->vcpu_aio) > 0)
		blk_arm_watchdog(blk); /* still slower than the watchdog: look again */
	enum vq_pop_result r;
	do {
		vq_enable_notify(vq, false);
		r = blk_take_requests(blk, vq, &completed);
	} while (r == VQ_EMPTY && vq_enable_notify(vq, true));
	blk_ring_submit(blk);
	if (completed)
		virtio_queue_interrupt(vd, 0);
	if (r == VQ_BROKEN)
		virtio_needs_reset(vd, vq->why_broken ? vq->why_broken : "broken request queue");
}

/* Raw images on io_uring have their kicks served on the vCPU threads
 * (virtio-blk-ring.c); the workers' and the rings' completions, and the vCPU
 * ring's watchdog, wake the I/O thread. */
static void blk_queue_info(void *dev, unsigned queue, struct virtio_queue_info *info)
{
	struct virtio_blk *blk = dev;
	if (queue != 0)
		return;
	info->serve = blk->vcpu_aio ? VIRTIO_SERVE_VCPU : VIRTIO_SERVE_IO_THREAD;
	info->wake_fd[0] = blk->event_fd;
	info->wake_fd[1] = blk->vcpu_aio ? blk->watchdog_fd : -1;
}

static bool blk_vcpu_work_done(void *dev, unsigned queue)
{
	struct virtio_blk *blk = dev;
	return queue == 0 && blk->vcpu_aio && block_aio_has_completions(blk->vcpu_aio);
}

/*
 * A kick, completions (the workers', the rings'), a hand-over or the
 * watchdog: on the vCPU path (virtio-blk-ring.c) or the I/O thread's.
 */
static void blk_queue_notify(void *dev, struct virtio_dev *vd, unsigned queue,
			     enum virtio_path path)
{
	struct virtio_blk *blk = dev;
	struct vq *vq = blk->active && queue == 0 ? virtio_queue(vd, 0) : NULL;
	if (!vq)
		return;
	if (path == VIRTIO_ON_VCPU && blk->vcpu_aio)
		blk_vcpu_serve(blk, vd, vq);
	else
		blk_io_thread_serve(blk, vd, vq);
}

/* Called with the transport's lock held; workers never take it, so waiting
 * for them here cannot deadlock. */
static void blk_reset(void *dev)
{
	struct virtio_blk *blk = dev;
	blk_quiesce(blk);
	blk->active = false;
	blk->features = 0;
}

const struct virtio_device_ops virtio_blk_ops = {
	.name = "virtio-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.num_queues = 1,
	.queue_max_size = VIRTIO_BLK_QUEUE_SIZE,
	.config_size = VIRTIO_BLK_CONFIG_SIZE,
	.features = blk_features,
	.config_read = blk_config_read,
	.config_write = blk_config_write,
	.features_ok = blk_features_ok,
	.activate = blk_activate,
	.queue_notify = blk_queue_notify,
	.reset = blk_reset,
	.queue_info = blk_queue_info,
	.vcpu_work_done = blk_vcpu_work_done,
};

/* ---- creation ---- */

/* Opens (and so locks) the image, its backing files confined to the
 * directories cfg allows or else to the image's own directory. */
static int blk_open_image(struct virtio_blk *blk, const struct virtio_blk_config *cfg)
{
	char *own_dir = NULL;
	const char *const *dirs = cfg->backing_dirs;
	const char *own[2] = { NULL, NULL };
	if (!dirs[0]) {
		own_dir = strdup(cfg->path);
		if (!own_dir)
			return -ENOMEM;
		char *slash = strrchr(own_dir, '/');
		if (!slash)
			strcpy(own_dir, ".");
		else if (slash == own_dir)
			own_dir[1] = '\0'; /* "/img" lies in "/" */
		else
			*slash = '\0';
		own[0] = own_dir;
		dirs = own;
	}
	struct block_open_opts opts = {
		.read_only = cfg->read_only,
		.cache = cfg->direct ? BLOCK_CACHE_NONE : BLOCK_CACHE_WRITEBACK,
		.backing_dirs = dirs,
	};
	int r = block_open(&blk->bd, cfg->path, cfg->format ? cfg->format : "raw", &opts);
	free(own_dir);
	return r;
}

static void blk_fill_config(struct virtio_blk *blk)
{
	uint8_t *c = blk->config;
	le_store(c + VIRTIO_BLK_CFG_CAPACITY, blk->capacity, 8);
	le_store(c + VIRTIO_BLK_CFG_SEG_MAX, VIRTIO_BLK_SEG_MAX, 4);
	le_store(c + VIRTIO_BLK_CFG_BLK_SIZE, VIRTIO_BLK_SECTOR_SIZE, 4);
	le_store(c + VIRTIO_BLK_CFG_NUM_QUEUES, 1, 2);
	le_store(c + VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS, VIRTIO_BLK_MAX_DISCARD_SECTORS, 4);
	le_store(c + VIRTIO_BLK_CFG_MAX_DISCARD_SEG, VIRTIO_BLK_MAX_DISCARD_SEG, 4);
	le_store(c + VIRTIO_BLK_CFG_DISCARD_ALIGNMENT, VIRTIO_BLK_DISCARD_ALIGNMENT, 4);
	le_store(c + VIRTIO_BLK_CFG_MAX_WZ_SECTORS, VIRTIO_BLK_MAX_DISCARD_SECTORS, 4);
	le_store(c + VIRTIO_BLK_CFG_MAX_WZ_SEG, VIRTIO_BLK_MAX_DISCARD_SEG, 4);
	c[VIRTIO_BLK_CFG_WZ_MAY_UNMAP] = 1;
}

struct virtio_blk *virtio_blk_create(const struct virtio_blk_config *cfg,
				     const struct guest_mem *mem)
{
	if (cfg->serial && strlen(cfg->serial) > VIRTIO_BLK_ID_BYTES) {
		log_error("%s: serial '%s' is longer than %d bytes", cfg->path, cfg->serial,
			  VIRTIO_BLK_ID_BYTES);
		return NULL;
	}
	struct virtio_blk *blk = calloc(1, sizeof(*blk));
	if (!blk) {
		log_error("%s: out of memory", cfg->path);
		return NULL;
	}
	blk->mem = mem;
	blk->read_only = cfg->read_only;
	blk->event_fd = -1;
	blk->watchdog_fd = -1;
	if (cfg->serial)
		memcpy(blk->serial, cfg->serial, strlen(cfg->serial));
	if (blk_open_image(blk, cfg) < 0) {
		free(blk);
		return NULL;
	}
	blk->capacity = block_get_size(blk->bd) / VIRTIO_BLK_SECTOR_SIZE;
	blk_fill_config(blk);
	blk->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (blk->event_fd < 0) {
		log_error("%s: cannot create an eventfd: %s", cfg->path, strerror(errno));
		block_close(blk->bd);
		free(blk);
		return NULL;
	}
	if (!blk_open_ring(blk, cfg)) {
		close(blk->event_fd);
		block_close(blk->bd);
		free(blk);
		return NULL;
	}
	blk_pool_init(blk);
	return blk;
}

void virtio_blk_destroy(struct virtio_blk *blk)
{
	if (!blk)
		return;
	blk_stop_workers(blk);
	blk_ring_drop(blk);
	block_aio_close(blk->vcpu_aio);
	block_aio_close(blk->aio);
	if (blk->watchdog_fd >= 0)
		close(blk->watchdog_fd);
	if (!blk->read_only && block_flush(blk->bd) < 0)
		log_error("%s: flush at close failed", blk->bd->filename);
	block_close(blk->bd);
	close(blk->event_fd);
	blk_pool_destroy(blk);
	free(blk);
}
