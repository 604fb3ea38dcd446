/*
 * virtio-blk's io_uring rings (block/aio.h), for raw images only.
 *
 * The I/O thread's ring: reads and writes of a raw image skip the pool;
 * the I/O thread checks them as blk_in/blk_out would and queues them on
 * the disk's ring, one submission per batch, and reaps them when the ring
 * signals the same event fd the workers do. Whatever the ring cannot take
 * (flushes, discards, buffers O_DIRECT cannot use, a request that fails a
 * check and needs its error) goes to the pool.
 * One ordering rule joins the two: on an O_DIRECT file, a write the ring
 * cannot take (not aligned; also discard and write-zeroes, whose fallback
 * writes zeros) may be a read-modify-write of whole blocks in file.c,
 * which must not overlap a ring write into the same blocks (the ring write
 * would be lost under the stale copy). file.c's rmw_lock orders it against
 * the pool's other writes but cannot see the ring's. So before such a
 * request goes to the pool the I/O thread waits for the ring's writes, and
 * while one is in the pool, writes go to the pool too (pool_writes).
 * Guests write whole aligned pages, so this is rare.
 *
 * The vCPU threads' ring (the queue is VIRTIO_SERVE_VCPU, dev/virtio.h):
 * reads and O_DIRECT writes are started on the guest's own vCPU thread,
 * which is cheaper than any hand-over. A kick pops what the ring has room
 * for (BLK_VCPU_RING_DEPTH) and submits it in one system call; the first
 * request that would block (a flush, a buffered write) is handed to the
 * I/O thread unstarted, on the `handed` list, and ends the kick's popping.
 * The kernel completes each request as task work on the submitting
 * thread, which interrupts its KVM_RUN (-EINTR); the vCPU loop then calls
 * virtio_pci_poll(), which returns the requests and interrupts: one
 * thread wake-up per batch, the vCPU's, instead of the I/O thread's and
 * then the vCPU's (what fio does: one thread submits and reaps;
 * bench/README.md has the figures). What the kernel finishes on its own
 * worker threads signals event_fd instead (BLOCK_AIO_SIGNAL_WORKER). What
 * is left in the avail ring when the vCPU ring is full goes to the I/O
 * thread (virtio_queue_notify_later()).
 *
 * The watchdog: task work that runs when the vCPU thread returns to user
 * space between its last look at the ring and KVM_RUN (a timer interrupt
 * there) posts the completion without interrupting anything, and a halted
 * guest would wait for it. So a submission makes sure a watchdog (a
 * timerfd, the queue's second wake fd) fires within BLK_VCPU_WATCHDOG_NS;
 * when it fires, the I/O thread reaps the vCPU ring as it reaps its own. A
 * missed wake-up costs at most that delay; a request slower than half of
 * it costs an I/O thread wake-up per period.
 *
 * Threads: everything here runs under the transport's lock, on the I/O
 * thread or (blk_vcpu_serve) on a vCPU thread or its poll.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "dev/virtio-blk-internal.h"

/* ---- the rings ---- */

/*
 * Queues a plain read or write on the ring, checked as blk_in and blk_out
 * check it, from one copy of the header. False for any other request, one
 * that fails a check (the pool answers it, with its warning) or one the
 * ring refuses (O_DIRECT cannot take its buffers): the pool serves those.
 */
bool blk_ring_start(struct virtio_blk *blk, struct block_aio *ring, struct blk_io *io)
{
	if (!ring || io->nr_readable == 0 || io->iov[0].iov_len != VIRTIO_BLK_REQ_HDR_BYTES)
		return false;
	uint8_t hdr[VIRTIO_BLK_REQ_HDR_BYTES];
	memcpy(hdr, io->iov[0].iov_base, sizeof(hdr));
	uint32_t type = (uint32_t)le_load(hdr, 4);
	uint64_t sector = le_load(hdr + 8, 8);
	bool write = type == VIRTIO_BLK_T_OUT;
	if ((type != VIRTIO_BLK_T_IN && !write) ||
	    (write && (blk->read_only || blk->pool_writes > 0)))
		return false;
	struct iovec *data = write ? io->iov + 1 : io->iov + io->nr_readable;
	unsigned n = write ? io->nr_readable - 1 : io->nr_iov - io->nr_readable;
	uint64_t len = write ? io->readable_len - VIRTIO_BLK_REQ_HDR_BYTES : io->writable_len;
	if (len == 0 || len >= UINT32_MAX || len % VIRTIO_BLK_SECTOR_SIZE ||
	    !blk_range_ok(blk, sector, len))
		return false;
	uint64_t off = sector * VIRTIO_BLK_SECTOR_SIZE;
	int r = write ? block_aio_writev(ring, data, n, off, io)
		      : block_aio_readv(ring, data, n, off, io);
	if (r < 0)
		return false;
	io->direct_read = !write;
	io->direct_len = (uint32_t)len;
	return true;
}

/* Writes a ring request's status and returns it to the driver. */
static void blk_ring_finish(struct virtio_blk *blk, struct vq *vq, struct blk_io *io, int error)
{
	if (error < 0 && !blk->aio_error_logged) {
		blk->aio_error_logged = true;
		log_warn("virtio-blk %s: %s failed: %s (the guest gets an I/O error; further ones at debug level)",
			 blk->bd->filename, io->direct_read ? "read" : "write", strerror(-error));
	} else if (error < 0) {
		log_debug("virtio-blk %s: %s failed: %s", blk->bd->filename,
			  io->direct_read ? "read" : "write", strerror(-error));
	}
	__atomic_store_n(io->status, error < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK,
			 __ATOMIC_RELAXED); /* see blk_io_run */
	vq_push(vq, io->head, error == 0 && io->direct_read ? io->direct_len + 1 : 1);
	free(io);
	blk->inflight--;
}

/* Returns what one ring has finished to the driver; the count. */
static unsigned blk_ring_reap_one(struct virtio_blk *blk, struct block_aio *ring, struct vq *vq)
{
	struct block_aio_done done[32];
	unsigned n = 0, got;
	while (ring && (got = block_aio_reap(ring, done, ARRAY_SIZE(done))) > 0)
		for (unsigned i = 0; i < got; i++, n++)
			blk_ring_finish(blk, vq, done[i].tag, done[i].error);
	return n;
}

/* Returns what both rings have finished to the driver; the count. */
unsigned blk_ring_reap(struct virtio_blk *blk, struct vq *vq)
{
	return blk_ring_reap_one(blk, blk->aio, vq) + blk_ring_reap_one(blk, blk->vcpu_aio, vq);
}

/* Waits for the writes on both rings and returns them (see the header);
 * the count of requests returned. */
unsigned blk_ring_wait_writes(struct virtio_blk *blk, struct vq *vq)
{
	unsigned n = 0;
	struct block_aio *rings[] = { blk->aio, blk->vcpu_aio };
	for (unsigned i = 0; i < ARRAY_SIZE(rings); i++)
		while (rings[i] && block_aio_writes_inflight(rings[i]) > 0 &&
		       block_aio_wait(rings[i]) == 0)
			n += blk_ring_reap_one(blk, rings[i], vq);
	return n;
}

/* Waits for everything on one ring (it writes into guest memory) and
 * forgets it unreturned: reset and teardown. A request a vCPU thread
 * submitted completes as task work on that thread, which the kernel runs
 * when it interrupts the thread's sleep (KVM_RUN, or the transport's lock
 * this thread may hold), so waiting here from another thread ends. */
static void blk_ring_drop_one(struct block_aio *ring)
{
	struct block_aio_done done[32];
	unsigned got;
	while (ring && block_aio_inflight(ring) > 0 && block_aio_wait(ring) == 0)
		while ((got = block_aio_reap(ring, done, ARRAY_SIZE(done))) > 0)
			for (unsigned i = 0; i < got; i++)
				free(done[i].tag);
}

void blk_ring_drop(struct virtio_blk *blk)
{
	blk_ring_drop_one(blk->aio);
	blk_ring_drop_one(blk->vcpu_aio);
}

/* Whether io, headed for the pool, may read-modify-write blocks that the
 * ring could be writing (see the header). */
bool blk_pool_may_rmw(const struct virtio_blk *blk, const struct blk_io *io)
{
	if (!blk->aio || !block_aio_may_rmw(blk->aio))
		return false;
	uint32_t type = blk_peek_type(io);
	return type != VIRTIO_BLK_T_IN && type != VIRTIO_BLK_T_FLUSH && type != VIRTIO_BLK_T_GET_ID;
}

/* Hands the batch queued on the ring to the kernel. */
void blk_ring_submit(struct virtio_blk *blk)
{
	if (!blk->aio)
		return;
	int r = block_aio_submit(blk->aio);
	if (r < 0 && !blk->aio_error_logged) {
		blk->aio_error_logged = true;
		log_warn("virtio-blk %s: cannot submit to io_uring: %s (retried at the next request)",
			 blk->bd->filename, strerror(-r));
	}
}

/* Makes the I/O thread look at the vCPU ring within BLK_VCPU_WATCHDOG_NS
 * from now, and not before half of it. Most calls find the deadline far
 * enough away and make no system call: at queue depth 1 the timer is set
 * about once per half period, not once per request, and never fires while
 * requests keep completing. */
void blk_arm_watchdog(struct virtio_blk *blk)
{
	uint64_t now = monotonic_ns();
	if (blk->watchdog_deadline > now + BLK_VCPU_WATCHDOG_NS / 2)
		return;
	struct itimerspec t = { .it_value = { .tv_nsec = BLK_VCPU_WATCHDOG_NS } };
	if (timerfd_settime(blk->watchdog_fd, 0, &t, NULL) == 0) {
		blk->watchdog_deadline = now + BLK_VCPU_WATCHDOG_NS;
	} else if (!blk->watchdog_error_logged) {
		blk->watchdog_error_logged = true;
		log_warn("virtio-blk %s: cannot arm the vCPU ring's watchdog: %s", blk->bd->filename,
			 strerror(errno));
	}
}

/* ---- the vCPU side ---- */

/* Whether a request popped on a vCPU goes on the vCPU ring: reads, and
 * writes to an O_DIRECT file. The kernel hands a buffered write to one of
 * its worker threads (io-wq), whose completion then reaches the guest
 * through the I/O thread: one wake-up more than the I/O thread writing it
 * itself, so those go there. */
static bool blk_vcpu_may_start(const struct virtio_blk *blk, const struct blk_io *io)
{
	uint32_t type = blk_peek_type(io);
	return type == VIRTIO_BLK_T_IN ||
	       (type == VIRTIO_BLK_T_OUT && block_aio_direct(blk->vcpu_aio));
}

/* Starts a chain popped on a vCPU thread without blocking: on the vCPU
 * ring (*submit), or else on the list for the I/O thread (*handed).
 * Returns the count of requests completed here (malformed ones). */
static unsigned blk_vcpu_start(struct virtio_blk *blk, struct vq *vq, struct vq_chain *c,
			       bool *handed, bool *submit)
{
	unsigned completed = 0;
	struct blk_io *io = blk_io_take(blk, vq, c, &completed);
	if (!io)
		return completed;
	blk->inflight++;
	if (blk_vcpu_may_start(blk, io) && blk_ring_start(blk, blk->vcpu_aio, io)) {
		*submit = true;
		return 0;
	}
	blk_list_add(&blk->handed, io);
	*handed = true;
	return 0;
}

/* Pops requests onto the vCPU ring while it has room (and the queue's
 * bound on requests in flight allows), then submits them in one system
 * call; the count completed here. It stops at the first request it must
 * hand over (a flush, a buffered write): the rest are the I/O thread's,
 * so a guest writing to a buffered disk costs its vCPU one request's
 * parsing per kick, not a queue's. */
static unsigned blk_vcpu_take_requests(struct virtio_blk *blk, struct vq *vq,
				       enum vq_pop_result *r, bool *wake_io_thread)
{
	unsigned completed = 0;
	bool submit = false, handed = false;
	while (!handed && block_aio_inflight(blk->vcpu_aio) < BLK_VCPU_RING_DEPTH &&
	       blk->inflight < vq->size && (*r = vq_pop(vq, &blk->chain)) == VQ_CHAIN)
		completed += blk_vcpu_start(blk, vq, &blk->chain, &handed, &submit);
	if (handed)
		*wake_io_thread = true;
	if (submit) {
		/* A failed submission stays queued; the I/O thread's next reap
		 * submits it again. */
		if (block_aio_submit(blk->vcpu_aio) < 0)
			*wake_io_thread = true;
		blk_arm_watchdog(blk);
	}
	return completed;
}

/*
 * A kick on the vCPU thread, or completions on the vCPU ring (from
 * virtio_pci_poll). Returns what is finished, then pops what the vCPU ring
 * has room for and starts it. What is left in the avail ring when the
 * vCPU ring is full, and requests the vCPU must not start (they block),
 * are the I/O thread's, woken through event_fd as if a worker had
 * finished: it pops them with notifications off, and turns them back on
 * when it is done. Nothing here blocks.
 */
void blk_vcpu_serve(struct virtio_blk *blk, struct virtio_dev *vd, struct vq *vq)
{
	unsigned completed = blk_push_done(blk, vq);
	bool wake_io_thread = blk->handed.count > 0;
	enum vq_pop_result r = VQ_EMPTY;
	completed += blk_vcpu_take_requests(blk, vq, &r, &wake_io_thread);
	/* Publishes avail_event past what we took, so that the next request
	 * is kicked, unless more are already there (the I/O thread's). */
	if (r != VQ_BROKEN && vq_enable_notify(vq, true)) {
		vq_enable_notify(vq, false);
		wake_io_thread = true;
	}
	if (wake_io_thread)
		virtio_queue_notify_later(vd, 0); /* the hand-over */
	if (completed)
		virtio_queue_interrupt(vd, 0);
	if (r == VQ_BROKEN)
		virtio_needs_reset(vd, vq->why_broken ? vq->why_broken : "broken request queue");
}


/* ---- opening ---- */

/* The vCPU threads' ring (see the header). Without it kicks go to the I/O
 * thread through an ioeventfd, as for any other disk. */
static void blk_open_vcpu_ring(struct virtio_blk *blk)
{
	blk->watchdog_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	int r = blk->watchdog_fd < 0 ? -errno
		: block_aio_open(&blk->vcpu_aio, blk->bd, BLK_VCPU_RING_DEPTH, blk->event_fd,
				 BLOCK_AIO_SIGNAL_WORKER);
	if (r < 0)
		log_info("%s: no second io_uring for the vCPU threads (%s); all requests go through the I/O thread",
			 blk->bd->filename, strerror(-r));
}

/*
 * The io_uring of a raw image, as cfg->aio asks. Without one (qcow2, or a
 * host that cannot give us a restricted ring: aio=auto says so and goes
 * on) every request goes to the worker threads. False when aio=io_uring
 * cannot be had.
 */
bool blk_open_ring(struct virtio_blk *blk, const struct virtio_blk_config *cfg)
{
	if (cfg->aio == VIRTIO_BLK_AIO_THREADS)
		return true;
	int r = block_aio_open(&blk->aio, blk->bd, VIRTIO_BLK_QUEUE_SIZE, blk->event_fd,
			       BLOCK_AIO_SIGNAL_ALL);
	if (r == 0) {
		blk_open_vcpu_ring(blk);
		return true;
	}
	if (cfg->aio == VIRTIO_BLK_AIO_IO_URING) {
		if (r == -ENOTSUP)
			log_error("%s: aio=io_uring needs a raw image (use aio=threads or aio=auto for %s)",
				  cfg->path, blk->bd->format);
		else
			log_error("%s: aio=io_uring: this host gives no restricted io_uring (%s); use aio=threads",
				  cfg->path, strerror(-r));
		return false;
	}
	if (r != -ENOTSUP)
		log_info("%s: io_uring is not available here (%s); using worker threads",
			 cfg->path, strerror(-r));
	return true;
}
