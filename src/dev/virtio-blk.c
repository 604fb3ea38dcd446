/*
 * virtio-blk (virtio 1.2, section 5.2): turns requests the driver places on
 * the one request queue into block layer calls on the disk image.
 *
 * A request is one descriptor chain: a 16-byte header (type, reserved,
 * sector) at the start of the readable part, then the data (readable for
 * writes, discard segments; writable for reads and GET_ID), and the status
 * byte as the very last writable byte. Everything in it is hostile: every
 * length, sector and segment is checked here before the block layer sees it
 * (which checks again), and every malformed request is completed with an
 * error status rather than dropped, so a broken or malicious driver gets an
 * answer and the VMM keeps running. vq_pop() has already checked that every
 * buffer lies in guest RAM.
 *
 * Requests run on a small pool of worker threads per disk (started as
 * requests arrive, 8 to 32 of them by the host's CPU count), so the guest's
 * queue depth reaches the host file: requests in the ring are transfers in
 * the kernel side by side, not one after the other. A request alone in the
 * ring with nothing in flight (queue depth 1) is served on the I/O thread
 * itself, as before, which saves it two thread hops.
 *
 * Reads and writes of a raw image skip the pool: the I/O thread checks
 * them as blk_in/blk_out would and queues them on the disk's io_uring
 * (block/aio.h), one submission per batch, and reaps them when the ring
 * signals the same event_fd the workers do. Whatever the ring cannot take
 * (qcow2, flushes, discards, buffers O_DIRECT cannot use, a request that
 * fails a check and needs its error) goes to the pool as before.
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
 * Reads and O_DIRECT writes are started on the guest's own vCPU thread,
 * which is cheaper than any hand-over: a raw disk on io_uring has a second
 * ring, vcpu_aio, and its queue is kicked on the vCPU thread
 * (vcpu_notify_queues: no ioeventfd). The kick pops what the ring has room
 * for (BLK_VCPU_RING_DEPTH) and submits it in one system call (the first
 * request that would block, a flush or a buffered write, is handed to the
 * I/O thread unstarted, on the `handed` list, and ends the kick's popping). The kernel completes each request as
 * task work on the submitting thread, which interrupts its KVM_RUN
 * (-EINTR); the vCPU loop then calls virtio_pci_poll(), which returns the
 * requests and interrupts: one thread wake-up per batch, the vCPU's,
 * instead of the I/O thread's and then the vCPU's. This is what fio does
 * (one thread submits and reaps); on the development machine it served
 * 4 KiB writes at queue depth 32 about a quarter faster (155-180k IOPS
 * against 116-148k) than a ring of one that left everything behind the
 * first request to the I/O thread. What the kernel
 * finishes on its own worker threads signals event_fd instead
 * (BLOCK_AIO_SIGNAL_WORKER). What is left in the avail ring when the
 * vCPU ring is full goes to the I/O thread through event_fd as above.
 * One window is left: task work that runs when the vCPU thread returns to
 * user space between its last look at the ring and KVM_RUN (a timer
 * interrupt there) posts the completion without interrupting anything, and
 * a halted guest would wait for it. So a submission makes sure a watchdog
 * (a timerfd the I/O thread watches as a second event fd) fires within
 * BLK_VCPU_WATCHDOG_NS; when it fires, the I/O thread reaps the vCPU ring
 * as it reaps its own. A missed wake-up costs at most that delay; a
 * request slower than half of it costs an I/O thread wake-up per period.
 *
 * Who touches what:
 *   - a vCPU thread (vcpu_queue_notify, under the transport's lock) pops
 *     what its ring has room for, and touches the lists and rings as the
 *     I/O thread does;
 *   - the I/O thread (queue_notify, under the transport's lock) pops
 *     chains, takes the status byte, copies the chain into a struct blk_io
 *     and queues it; it and a vCPU thread (both under that lock) push to
 *     the used ring and interrupt once per batch, so EVENT_IDX
 *     suppression works as with synchronous requests. vq_push()
 *     publishes with release ordering;
 *   - a worker parses and serves a blk_io (the checks are the ones the
 *     synchronous device made, in the same order), writes its status byte
 *     and puts it on the done list, then signals event_fd; the transport
 *     treats that as a kick of the queue (queue_event_fd) and calls
 *     queue_notify, which pushes the done list. The mutex between the
 *     worker's writes into guest memory and the I/O thread's push orders
 *     the data before the used index the driver reads.
 *   - At most the queue's size of requests is in flight (popped, not yet
 *     pushed): a driver that re-publishes heads it has not got back cannot
 *     make us queue more, and no more than BLK_MAX_WORKERS threads exist.
 *   - reset() drops the requests no worker has started and waits for the
 *     running ones, so once it returns nothing writes into guest memory of
 *     the old rings; destroy() also joins the workers.
 * A chain the walker refuses breaks the queue: requests already in flight
 * finish their I/O but are not returned (the driver must reset the device,
 * and the reset waits for them).
 */
#include "dev/virtio-blk.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "block/aio.h"
#include "block/block.h"

/*
 * Worker threads per disk: 4 per host CPU, from 8 to 32. Each request costs
 * a worker a wake-up and a sleep in the kernel, so on a small host more
 * threads than this cost more in switches than they add in depth (on the
 * 2-core development machine 8 workers served 4 KiB random reads at QD32
 * about 1.5x faster than 32); a larger host keeps up to 32 in flight. The
 * bound also caps what a hostile guest can make us start.
 */
#define BLK_MIN_WORKERS 8
#define BLK_MAX_WORKERS 32

/* Requests on the vCPU ring at most: what a kick pops and submits on the
 * vCPU thread before it leaves the rest to the I/O thread (see the
 * header). */
#define BLK_VCPU_RING_DEPTH 32

/* How long a request may sit on the vCPU ring before the I/O thread looks
 * (see the header): the worst-case delay of a completion whose wake-up the
 * vCPU missed, and the I/O thread's wake-up period for a slower request. */
#define BLK_VCPU_WATCHDOG_NS (2 * 1000 * 1000)

/* A request between vq_pop() and vq_push(): the chain without its status
 * byte, copied because the device's scratch chain is reused at once. */
struct blk_io {
	struct blk_io *next;          /* on the pending or the done list */
	uint16_t head;
	uint8_t *status;              /* the chain's last writable byte */
	uint32_t used;                /* used length, set by the worker */
	unsigned nr_iov, nr_readable;
	uint64_t readable_len, writable_len;
	bool direct_read;             /* on the ring: a read of direct_len bytes */
	uint32_t direct_len;
	bool pool_write;              /* counted in pool_writes */
	struct iovec iov[];
};

struct blk_list {
	struct blk_io *first, **tail;
	unsigned count;
};

struct virtio_blk {
	struct block_dev *bd;
	const struct guest_mem *mem;
	bool read_only;
	bool active;                  /* between activate and reset */
	bool warned;                  /* one warning per device for a hostile driver */
	uint64_t features;            /* negotiated; fixed while requests are in flight */
	uint64_t capacity;            /* in 512-byte sectors */
	char serial[VIRTIO_BLK_ID_BYTES];
	uint8_t config[VIRTIO_BLK_CONFIG_SIZE];
	struct vq_chain chain;        /* the chain being popped; too big for a stack */
	unsigned inflight;            /* popped, not yet pushed (transport's lock) */
	int event_fd;                 /* workers: the done list became non-empty;
					 the ring: a request completed */
	struct block_aio *aio;        /* NULL: every request goes to the pool */
	struct block_aio *vcpu_aio;   /* the vCPU threads' ring (see the header);
					 NULL when aio is */
	struct blk_list handed;       /* popped on a vCPU, for the I/O thread */
	int watchdog_fd;              /* timerfd: a vCPU ring request may be
					 waiting unseen (see the header) */
	uint64_t watchdog_deadline;   /* when it fires (CLOCK_MONOTONIC ns) */
	bool watchdog_error_logged;
	bool aio_error_logged;
	unsigned pool_writes;         /* may-RMW requests in the pool (see header) */

	pthread_mutex_t lock;         /* guards what follows */
	pthread_cond_t work;          /* pending is not empty, or stopping */
	pthread_cond_t idle;          /* no request is pending or running */
	struct blk_list pending;      /* queued, not started by a worker */
	struct blk_list done;         /* served, not yet pushed */
	unsigned running;             /* requests a worker is serving now */
	unsigned nworkers, idle_workers;
	unsigned max_workers;         /* BLK_MIN_WORKERS .. BLK_MAX_WORKERS */
	bool stopping;
	pthread_t workers[BLK_MAX_WORKERS];
};

/* One request, split into its parts. The iovec arrays point into the chain. */
struct blk_req {
	uint32_t type;
	uint64_t sector;
	struct iovec *rd;             /* readable data after the header */
	unsigned nrd;
	uint64_t rd_len;
	struct iovec *wr;             /* writable data before the status byte */
	unsigned nwr;
	uint64_t wr_len;
	uint32_t written;             /* bytes written into wr, for the used ring */
};

/* ---- iovec helpers ---- */

/* Copies up to len bytes from the front of iov into dst; returns the count. */
static size_t iov_gather(const struct iovec *iov, unsigned n, void *dst, size_t len)
{
	size_t done = 0;
	for (unsigned i = 0; i < n && done < len; i++) {
		size_t k = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;
		memcpy((uint8_t *)dst + done, iov[i].iov_base, k);
		done += k;
	}
	return done;
}

static size_t iov_scatter(const struct iovec *iov, unsigned n, const void *src, size_t len)
{
	size_t done = 0;
	for (unsigned i = 0; i < n && done < len; i++) {
		size_t k = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;
		memcpy(iov[i].iov_base, (const uint8_t *)src + done, k);
		done += k;
	}
	return done;
}

/* Drops `skip` bytes from the front of *iov (in place); the caller has
 * checked that the segments hold at least that many. */
static void iov_skip(struct iovec **iov, unsigned *n, size_t skip)
{
	while (*n > 0 && skip >= (*iov)->iov_len) {
		skip -= (*iov)->iov_len;
		(*iov)++;
		(*n)--;
	}
	if (*n > 0 && skip > 0) {
		(*iov)->iov_base = (uint8_t *)(*iov)->iov_base + skip;
		(*iov)->iov_len -= skip;
	}
}

/* ---- request handlers ---- */

static void blk_warn(struct virtio_blk *blk, const char *what)
{
	/* A guest must not flood the host's log: one warning per device
	 * (workers may race here; the exchange lets one of them warn). */
	if (!__atomic_exchange_n(&blk->warned, true, __ATOMIC_RELAXED))
		log_warn("virtio-blk %s: %s (further ones at debug level)", blk->bd->filename, what);
	else
		log_debug("virtio-blk %s: %s", blk->bd->filename, what);
}

/* Whether len bytes at `sector` lie inside the disk, without overflow. */
static bool blk_range_ok(const struct virtio_blk *blk, uint64_t sector, uint64_t len)
{
	if (sector > UINT64_MAX / VIRTIO_BLK_SECTOR_SIZE)
		return false;
	return range_within(sector * VIRTIO_BLK_SECTOR_SIZE, len,
			    blk->capacity * VIRTIO_BLK_SECTOR_SIZE);
}

static uint8_t blk_check_io(struct virtio_blk *blk, const struct blk_req *req, uint64_t len)
{
	/* The used length (data plus status) must fit in 32 bits. */
	if (len >= UINT32_MAX) {
		blk_warn(blk, "request larger than 4 GiB");
		return VIRTIO_BLK_S_IOERR;
	}
	if (len % VIRTIO_BLK_SECTOR_SIZE) {
		blk_warn(blk, "data length is not a multiple of 512");
		return VIRTIO_BLK_S_IOERR;
	}
	if (!blk_range_ok(blk, req->sector, len)) {
		blk_warn(blk, "request beyond the end of the disk");
		return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_in(struct virtio_blk *blk, struct blk_req *req)
{
	uint8_t s = blk_check_io(blk, req, req->wr_len);
	if (s != VIRTIO_BLK_S_OK)
		return s;
	if (req->wr_len == 0)
		return VIRTIO_BLK_S_OK;
	if (block_readv(blk->bd, req->wr, (int)req->nwr, req->sector * VIRTIO_BLK_SECTOR_SIZE) < 0)
		return VIRTIO_BLK_S_IOERR;
	req->written = (uint32_t)req->wr_len;
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_out(struct virtio_blk *blk, struct blk_req *req)
{
	if (blk->read_only)
		return VIRTIO_BLK_S_IOERR;
	uint8_t s = blk_check_io(blk, req, req->rd_len);
	if (s != VIRTIO_BLK_S_OK || req->rd_len == 0)
		return s;
	if (block_writev(blk->bd, req->rd, (int)req->nrd, req->sector * VIRTIO_BLK_SECTOR_SIZE) < 0)
		return VIRTIO_BLK_S_IOERR;
	return VIRTIO_BLK_S_OK;
}

/*
 * The data reaches stable storage (fdatasync) before the request completes.
 * Ordering with concurrent requests: virtio lets the device reorder
 * requests, and a flush must cover the writes that *completed* (were in the
 * used ring) before the driver *submitted* the flush. Such a write's
 * pwrite returned before we pushed it, hence before the driver saw it,
 * submitted the flush and we popped it, hence before this fdatasync starts:
 * fdatasync covers every write that returned before it is called. Writes
 * still in flight when the flush was submitted need not be covered (they
 * may or may not be). So no barrier or queue drain is needed, and writes
 * submitted after the flush may overtake it.
 */
static uint8_t blk_flush(struct virtio_blk *blk, struct blk_req *req)
{
	(void)req;
	return block_flush(blk->bd) < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
}

static uint8_t blk_get_id(struct virtio_blk *blk, struct blk_req *req)
{
	if (req->wr_len < VIRTIO_BLK_ID_BYTES) {
		blk_warn(blk, "GET_ID buffer shorter than 20 bytes");
		return VIRTIO_BLK_S_IOERR;
	}
	/* Shorter serials are NUL-padded: blk->serial is zero-filled. */
	req->written = (uint32_t)iov_scatter(req->wr, req->nwr, blk->serial, VIRTIO_BLK_ID_BYTES);
	return VIRTIO_BLK_S_OK;
}

struct blk_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

/*
 * Reads and checks every segment of a DISCARD or WRITE_ZEROES request before
 * any is executed, so a bad segment never leaves the request half done.
 * Returns the status and fills segs/nseg.
 */
static uint8_t blk_parse_segs(struct virtio_blk *blk, const struct blk_req *req, bool discard,
			      struct blk_seg *segs, unsigned *nseg)
{
	if (req->rd_len == 0 || req->rd_len % VIRTIO_BLK_DISCARD_SEG_BYTES ||
	    req->rd_len / VIRTIO_BLK_DISCARD_SEG_BYTES > VIRTIO_BLK_MAX_DISCARD_SEG) {
		blk_warn(blk, "malformed or too many discard/write-zeroes segments");
		return VIRTIO_BLK_S_IOERR;
	}
	uint8_t raw[VIRTIO_BLK_MAX_DISCARD_SEG * VIRTIO_BLK_DISCARD_SEG_BYTES] = { 0 };
	size_t n = iov_gather(req->rd, req->nrd, raw, (size_t)req->rd_len);
	/* What one request may cost: the sectors of all its segments, at most
	 * what the configuration space advertises and at most the disk (more
	 * than the disk only repeats ranges). */
	uint64_t total = 0, max = VIRTIO_BLK_MAX_DISCARD_SECTORS;
	if (blk->capacity < max)
		max = blk->capacity;
	*nseg = (unsigned)(n / VIRTIO_BLK_DISCARD_SEG_BYTES);
	for (unsigned i = 0; i < *nseg; i++) {
		const uint8_t *p = raw + i * VIRTIO_BLK_DISCARD_SEG_BYTES;
		segs[i] = (struct blk_seg){ le_load(p, 8), (uint32_t)le_load(p + 8, 4),
					    (uint32_t)le_load(p + 12, 4) };
		/* 5.2.6.2: unknown flags, and unmap on a discard, are unsupported. */
		uint32_t allowed = discard ? 0 : VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
		if (segs[i].flags & ~allowed)
			return VIRTIO_BLK_S_UNSUPP;
		total += segs[i].num_sectors;
		if (total > max || !blk_range_ok(blk, segs[i].sector,
						 (uint64_t)segs[i].num_sectors * VIRTIO_BLK_SECTOR_SIZE)) {
			blk_warn(blk, "discard/write-zeroes segment beyond the disk, or request "
				 "longer than the advertised maximum");
			return VIRTIO_BLK_S_IOERR;
		}
	}
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_zero_segs(struct virtio_blk *blk, struct blk_req *req, bool discard)
{
	if (blk->read_only)
		return VIRTIO_BLK_S_IOERR;
	struct blk_seg segs[VIRTIO_BLK_MAX_DISCARD_SEG];
	unsigned nseg = 0;
	uint8_t s = blk_parse_segs(blk, req, discard, segs, &nseg);
	for (unsigned i = 0; s == VIRTIO_BLK_S_OK && i < nseg; i++) {
		uint64_t off = segs[i].sector * VIRTIO_BLK_SECTOR_SIZE;
		uint64_t len = (uint64_t)segs[i].num_sectors * VIRTIO_BLK_SECTOR_SIZE;
		/* Discard and zeroing with unmap may free space: block_discard
		 * leaves the range reading as zeros, which both need. */
		bool unmap = discard || (segs[i].flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
		int r = unmap ? block_discard(blk->bd, off, len) : block_write_zeroes(blk->bd, off, len);
		if (r < 0)
			s = VIRTIO_BLK_S_IOERR;
	}
	return s;
}

static uint8_t blk_discard(struct virtio_blk *blk, struct blk_req *req)
{
	return blk_zero_segs(blk, req, true);
}

static uint8_t blk_write_zeroes(struct virtio_blk *blk, struct blk_req *req)
{
	return blk_zero_segs(blk, req, false);
}

static const struct blk_handler {
	uint32_t type;
	uint8_t (*run)(struct virtio_blk *blk, struct blk_req *req);
	int feature; /* feature bit the driver must have accepted, or -1 */
} blk_handlers[] = {
	{ VIRTIO_BLK_T_IN, blk_in, -1 },
	{ VIRTIO_BLK_T_OUT, blk_out, -1 },
	{ VIRTIO_BLK_T_FLUSH, blk_flush, -1 },
	{ VIRTIO_BLK_T_GET_ID, blk_get_id, -1 },
	{ VIRTIO_BLK_T_DISCARD, blk_discard, VIRTIO_BLK_F_DISCARD },
	{ VIRTIO_BLK_T_WRITE_ZEROES, blk_write_zeroes, VIRTIO_BLK_F_WRITE_ZEROES },
};

static uint8_t blk_dispatch(struct virtio_blk *blk, struct blk_req *req)
{
	for (size_t i = 0; i < ARRAY_SIZE(blk_handlers); i++) {
		const struct blk_handler *h = &blk_handlers[i];
		if (h->type != req->type)
			continue;
		if (h->feature >= 0 && !(blk->features & VIRTIO_FEATURE(h->feature)))
			return VIRTIO_BLK_S_UNSUPP;
		return h->run(blk, req);
	}
	return VIRTIO_BLK_S_UNSUPP;
}

/* ---- one request ---- */

/*
 * Takes the status byte off the end of the writable part. Returns NULL when
 * the chain has no writable byte at all.
 */
static uint8_t *blk_take_status(struct vq_chain *c)
{
	if (c->writable_len == 0 || c->nr_iov == c->nr_readable)
		return NULL;
	struct iovec *last = &c->iov[c->nr_iov - 1];
	uint8_t *status = (uint8_t *)last->iov_base + last->iov_len - 1;
	if (--last->iov_len == 0)
		c->nr_iov--;
	c->writable_len--;
	return status;
}

/* Parses the header and serves the request; returns the status. */
static uint8_t blk_serve(struct virtio_blk *blk, struct blk_io *io, struct blk_req *req)
{
	*req = (struct blk_req){ .rd = io->iov, .nrd = io->nr_readable,
				 .wr = io->iov + io->nr_readable, .nwr = io->nr_iov - io->nr_readable,
				 .wr_len = io->writable_len };
	if (io->readable_len < VIRTIO_BLK_REQ_HDR_BYTES) {
		blk_warn(blk, "request header shorter than 16 bytes");
		return VIRTIO_BLK_S_IOERR;
	}
	uint8_t hdr[VIRTIO_BLK_REQ_HDR_BYTES] = { 0 };
	iov_gather(req->rd, req->nrd, hdr, sizeof(hdr));
	req->type = (uint32_t)le_load(hdr, 4);
	req->sector = le_load(hdr + 8, 8);
	iov_skip(&req->rd, &req->nrd, sizeof(hdr));
	req->rd_len = io->readable_len - sizeof(hdr);
	return blk_dispatch(blk, req);
}

/* Serves io and records its status and used length (on a worker). */
static void blk_io_run(struct virtio_blk *blk, struct blk_io *io)
{
	struct blk_req req;
	uint8_t status = blk_serve(blk, io, &req);
	/* Guest memory: a hostile driver may give requests served at once the
	 * same status byte. Its own loss, but the store must not be a data race. */
	__atomic_store_n(io->status, status, __ATOMIC_RELAXED);
	io->used = req.written + 1;
}

/* A copy of the chain (status byte already taken) to hand to a worker. */
static struct blk_io *blk_io_new(const struct vq_chain *c, uint8_t *status)
{
	struct blk_io *io = malloc(sizeof(*io) + c->nr_iov * sizeof(struct iovec));
	if (!io)
		return NULL;
	*io = (struct blk_io){ .head = c->head, .status = status, .nr_iov = c->nr_iov,
			       .nr_readable = c->nr_readable, .readable_len = c->readable_len,
			       .writable_len = c->writable_len };
	memcpy(io->iov, c->iov, c->nr_iov * sizeof(struct iovec));
	return io;
}

/* ---- the ring (raw images; see the header) ---- */

/* The type in a request's header, peeked from guest memory; UINT32_MAX
 * when the first buffer is too short to hold it. It decides only where the
 * request runs: whoever serves it parses a copy of its own. */
static uint32_t blk_peek_type(const struct blk_io *io)
{
	uint8_t le[4];
	if (io->nr_readable == 0 || io->iov[0].iov_len < sizeof(le))
		return UINT32_MAX;
	memcpy(le, io->iov[0].iov_base, sizeof(le));
	return (uint32_t)le_load(le, 4);
}

/*
 * Queues a plain read or write on the ring, checked as blk_in and blk_out
 * check it, from one copy of the header. False for any other request, one
 * that fails a check (the pool answers it, with its warning) or one the
 * ring refuses (O_DIRECT cannot take its buffers): the pool serves those.
 */
static bool blk_ring_start(struct virtio_blk *blk, struct block_aio *ring, struct blk_io *io)
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
static unsigned blk_ring_reap(struct virtio_blk *blk, struct vq *vq)
{
	return blk_ring_reap_one(blk, blk->aio, vq) + blk_ring_reap_one(blk, blk->vcpu_aio, vq);
}

/* Waits for the writes on both rings and returns them (see the header);
 * the count of requests returned. */
static unsigned blk_ring_wait_writes(struct virtio_blk *blk, struct vq *vq)
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

static void blk_ring_drop(struct virtio_blk *blk)
{
	blk_ring_drop_one(blk->aio);
	blk_ring_drop_one(blk->vcpu_aio);
}

/* Whether io, headed for the pool, may read-modify-write blocks that the
 * ring could be writing (see the header). */
static bool blk_pool_may_rmw(const struct virtio_blk *blk, const struct blk_io *io)
{
	if (!blk->aio || !block_aio_may_rmw(blk->aio))
		return false;
	uint32_t type = blk_peek_type(io);
	return type != VIRTIO_BLK_T_IN && type != VIRTIO_BLK_T_FLUSH && type != VIRTIO_BLK_T_GET_ID;
}

/* ---- the lists and the workers ---- */

static void list_init(struct blk_list *l)
{
	l->first = NULL;
	l->tail = &l->first;
	l->count = 0;
}

static void list_add(struct blk_list *l, struct blk_io *io)
{
	io->next = NULL;
	*l->tail = io;
	l->tail = &io->next;
	l->count++;
}

static struct blk_io *list_take(struct blk_list *l)
{
	struct blk_io *io = l->first;
	if (io) {
		l->first = io->next;
		if (!l->first)
			l->tail = &l->first;
		l->count--;
	}
	return io;
}

static void list_free(struct blk_list *l)
{
	struct blk_io *io;
	while ((io = list_take(l)))
		free(io);
}

/* Tells the I/O thread that the done list has something (see header). */
static void blk_signal_done(struct virtio_blk *blk)
{
	uint64_t one = 1;
	ssize_t w = write(blk->event_fd, &one, sizeof(one));
	(void)w; /* EAGAIN: the counter is huge, a wake-up is pending anyway */
}

static void *blk_worker(void *arg)
{
	struct virtio_blk *blk = arg;
	pthread_mutex_lock(&blk->lock);
	for (;;) {
		blk->idle_workers++;
		while (!blk->pending.first && !blk->stopping)
			pthread_cond_wait(&blk->work, &blk->lock);
		blk->idle_workers--;
		if (blk->stopping)
			break;
		struct blk_io *io = list_take(&blk->pending);
		blk->running++;
		pthread_mutex_unlock(&blk->lock);

		blk_io_run(blk, io);

		pthread_mutex_lock(&blk->lock);
		blk->running--;
		bool first = blk->done.count == 0;
		list_add(&blk->done, io);
		if (blk->running == 0 && blk->pending.count == 0)
			pthread_cond_broadcast(&blk->idle);
		if (first)
			blk_signal_done(blk);
	}
	pthread_mutex_unlock(&blk->lock);
	return NULL;
}

/* Starts a worker when every one is busy; false when none can be had. */
static bool blk_ensure_worker(struct virtio_blk *blk)
{
	if (blk->pending.count < blk->idle_workers || blk->nworkers == blk->max_workers)
		return blk->nworkers > 0;
	if (pthread_create(&blk->workers[blk->nworkers], NULL, blk_worker, blk) == 0)
		blk->nworkers++;
	else if (blk->nworkers == 0)
		log_warn("virtio-blk %s: cannot start a worker thread; serving requests one by one",
			 blk->bd->filename);
	return blk->nworkers > 0;
}

/* Hands io to the workers; false when there are none (serve it here). */
static bool blk_queue_io(struct virtio_blk *blk, struct blk_io *io)
{
	pthread_mutex_lock(&blk->lock);
	bool ok = blk_ensure_worker(blk);
	if (ok) {
		list_add(&blk->pending, io);
		pthread_cond_signal(&blk->work);
	}
	pthread_mutex_unlock(&blk->lock);
	return ok;
}

/*
 * Drops the requests no worker has started (they have not touched guest
 * memory), waits for the running ones and forgets the finished ones.
 * Afterwards no worker touches guest memory until new requests come.
 */
static void blk_quiesce(struct virtio_blk *blk)
{
	pthread_mutex_lock(&blk->lock);
	list_free(&blk->pending);
	while (blk->running > 0)
		pthread_cond_wait(&blk->idle, &blk->lock);
	list_free(&blk->done);
	pthread_mutex_unlock(&blk->lock);
	list_free(&blk->handed);
	blk_ring_drop(blk);
	blk->inflight = 0;
	blk->pool_writes = 0;
}

void virtio_blk_drain(struct virtio_blk *blk)
{
	pthread_mutex_lock(&blk->lock);
	while (blk->pending.count > 0 || blk->running > 0)
		pthread_cond_wait(&blk->idle, &blk->lock);
	pthread_mutex_unlock(&blk->lock);
	if (blk->aio)
		block_aio_wait(blk->aio);
	if (blk->vcpu_aio)
		block_aio_wait(blk->vcpu_aio);
}

/* ---- the queue (I/O thread) ---- */

/* Returns the served requests to the driver; the count pushed. */
static unsigned blk_push_done(struct virtio_blk *blk, struct vq *vq)
{
	pthread_mutex_lock(&blk->lock);
	struct blk_list done = blk->done;
	list_init(&blk->done);
	pthread_mutex_unlock(&blk->lock);
	unsigned n = 0;
	struct blk_io *io;
	while ((io = list_take(&done))) {
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
static struct blk_io *blk_io_take(struct virtio_blk *blk, struct vq *vq, struct vq_chain *c,
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
	while ((io = list_take(&blk->handed))) {
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

/* Hands the batch queued on the ring to the kernel. */
static void blk_ring_submit(struct virtio_blk *blk)
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
static void blk_arm_watchdog(struct virtio_blk *blk)
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

/* ---- the vCPU side (see the header) ---- */

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
	list_add(&blk->handed, io);
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
static void blk_vcpu_serve(struct virtio_blk *blk, struct virtio_dev *vd, struct vq *vq)
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

/* Raw images on io_uring have their kicks served on the vCPU threads (see
 * the header); the workers' and the rings' completions, and the vCPU
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
 * watchdog: on the vCPU path (see the header) or the I/O thread's.
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
static bool blk_open_ring(struct virtio_blk *blk, const struct virtio_blk_config *cfg)
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
	pthread_mutex_init(&blk->lock, NULL);
	pthread_cond_init(&blk->work, NULL);
	pthread_cond_init(&blk->idle, NULL);
	list_init(&blk->pending);
	list_init(&blk->done);
	list_init(&blk->handed);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	blk->max_workers = cpus > 0 && cpus < BLK_MAX_WORKERS / 4 ? (unsigned)cpus * 4 : BLK_MAX_WORKERS;
	if (blk->max_workers < BLK_MIN_WORKERS)
		blk->max_workers = BLK_MIN_WORKERS;
	return blk;
}

/* Drops queued requests, lets running ones finish and joins every worker. */
static void blk_stop_workers(struct virtio_blk *blk)
{
	pthread_mutex_lock(&blk->lock);
	blk->stopping = true;
	list_free(&blk->pending);
	pthread_cond_broadcast(&blk->work);
	pthread_mutex_unlock(&blk->lock);
	for (unsigned i = 0; i < blk->nworkers; i++)
		pthread_join(blk->workers[i], NULL);
	blk->nworkers = 0;
	list_free(&blk->done);
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
	pthread_cond_destroy(&blk->idle);
	pthread_cond_destroy(&blk->work);
	pthread_mutex_destroy(&blk->lock);
	free(blk);
}
