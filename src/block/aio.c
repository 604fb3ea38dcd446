/* Implementation of block/aio.h on liburing. */
#include "block/aio.h"

#include <errno.h>
#include <limits.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* One request: where it stands, so that a short transfer can go on. */
struct aio_slot {
	void *tag;
	const struct iovec *iov;  /* the caller's, until something was moved */
	struct iovec *rest;       /* malloc'd remainder after a short transfer */
	unsigned n;
	uint64_t off;             /* file offset of iov[0] */
	unsigned retries;         /* -EAGAIN/-EINTR answers so far */
	bool write;
	bool busy;
};

/* A request the kernel keeps answering "try again" fails after this many
 * tries rather than spinning the I/O thread. */
#define AIO_MAX_RETRIES 16

struct block_aio {
	struct io_uring ring;
	struct block_dev *bd;
	int fd;                   /* the image's descriptor, fixed file 0 */
	uint32_t align;
	bool read_only;
	unsigned depth;
	unsigned inflight, writes; /* queued or in the kernel, not yet reaped */
	unsigned queued;           /* prepared, not yet submitted */
	unsigned *free_slots;      /* stack of free slot indices */
	unsigned nfree;
	struct aio_slot *slots;
};

/* Only READV/WRITEV (READV alone when read-only) on fixed file 0; no
 * registration of anything after the ring is enabled. */
static int restrict_ring(struct io_uring *ring, bool read_only)
{
	struct io_uring_restriction res[4];
	memset(res, 0, sizeof(res));
	unsigned n = 0;
	res[n].opcode = IORING_RESTRICTION_SQE_OP;
	res[n++].sqe_op = IORING_OP_READV;
	if (!read_only) {
		res[n].opcode = IORING_RESTRICTION_SQE_OP;
		res[n++].sqe_op = IORING_OP_WRITEV;
	}
	res[n].opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED;
	res[n++].sqe_flags = IOSQE_FIXED_FILE;
	res[n].opcode = IORING_RESTRICTION_SQE_FLAGS_REQUIRED;
	res[n++].sqe_flags = IOSQE_FIXED_FILE;
	/* Through io_uring_register(): Debian's liburing 2.3 declares
	 * io_uring_register_restrictions() and io_uring_enable_rings() but
	 * does not export them. */
	int r = io_uring_register((unsigned)ring->ring_fd, IORING_REGISTER_RESTRICTIONS, res, n);
	return r < 0 ? r : io_uring_register((unsigned)ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
}

static int setup_ring(struct block_aio *a, int event_fd, enum block_aio_signal signal)
{
	/* No IORING_SETUP_COOP_TASKRUN or DEFER_TASKRUN: completions must
	 * interrupt the submitter's sleep (see block_aio_signal). */
	struct io_uring_params p = { .flags = IORING_SETUP_R_DISABLED };
	int r = io_uring_queue_init_params(a->depth, &a->ring, &p);
	if (r < 0)
		return r;
	if ((r = io_uring_register_files(&a->ring, &a->fd, 1)) < 0 ||
	    (r = signal == BLOCK_AIO_SIGNAL_WORKER
			 ? io_uring_register_eventfd_async(&a->ring, event_fd)
			 : io_uring_register_eventfd(&a->ring, event_fd)) < 0 ||
	    (r = restrict_ring(&a->ring, a->read_only)) < 0) {
		io_uring_queue_exit(&a->ring);
		return r;
	}
	return 0;
}

int block_aio_open(struct block_aio **out, struct block_dev *bd, unsigned depth, int event_fd,
		   enum block_aio_signal signal)
{
	struct block_extent ext;
	int r = block_map_direct(bd, 0, 0, &ext);
	if (r < 0)
		return r == -EINVAL ? -ENOTSUP : r;
	if (depth == 0)
		return -EINVAL;
	struct block_aio *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	*a = (struct block_aio){ .bd = bd, .fd = ext.fd, .align = ext.align ? ext.align : 1,
				 .read_only = bd->read_only, .depth = depth, .nfree = depth };
	a->slots = calloc(depth, sizeof(*a->slots));
	a->free_slots = calloc(depth, sizeof(*a->free_slots));
	if (!a->slots || !a->free_slots) {
		r = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < depth; i++)
		a->free_slots[i] = depth - 1 - i;
	if ((r = setup_ring(a, event_fd, signal)) < 0)
		goto fail;
	*out = a;
	return 0;
fail:
	free(a->slots);
	free(a->free_slots);
	free(a);
	return r;
}

void block_aio_close(struct block_aio *a)
{
	if (!a)
		return;
	/* Requests still in the kernel would write into freed memory. */
	struct block_aio_done d;
	while (a->inflight > 0 && block_aio_wait(a) == 0)
		while (block_aio_reap(a, &d, 1) > 0)
			;
	io_uring_queue_exit(&a->ring);
	for (unsigned i = 0; i < a->depth; i++)
		free(a->slots[i].rest);
	free(a->slots);
	free(a->free_slots);
	free(a);
}

static bool aligned_to(uint64_t v, uint32_t align)
{
	return (v & (align - 1)) == 0;
}

bool block_aio_direct(const struct block_aio *a)
{
	return a->align > 1;
}

bool block_aio_may_rmw(const struct block_aio *a)
{
	return block_aio_direct(a); /* file.c patches only what O_DIRECT cannot take */
}

static bool unaligned(const struct block_aio *a, const struct iovec *iov, unsigned n, uint64_t off)
{
	if (a->align <= 1)
		return false;
	if (!aligned_to(off, a->align))
		return true;
	for (unsigned i = 0; i < n; i++)
		if (!aligned_to((uintptr_t)iov[i].iov_base, a->align) ||
		    !aligned_to(iov[i].iov_len, a->align))
			return true;
	return false;
}

/* Puts slot s's (remaining) transfer on the submission queue. */
static void prep_slot(struct block_aio *a, unsigned s)
{
	struct aio_slot *sl = &a->slots[s];
	struct io_uring_sqe *sqe = io_uring_get_sqe(&a->ring);
	/* Never NULL: at most depth requests exist and the SQ has depth entries,
	 * and every prepared entry is consumed by the next submit. */
	const struct iovec *iov = sl->rest ? sl->rest : sl->iov;
	if (sl->write)
		io_uring_prep_writev(sqe, 0, iov, sl->n, sl->off);
	else
		io_uring_prep_readv(sqe, 0, iov, sl->n, sl->off);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, s);
	a->queued++;
}

static int queue_rw(struct block_aio *a, bool write, const struct iovec *iov, unsigned n,
		    uint64_t off, void *tag)
{
	int64_t len = block_iov_len(iov, (int)n);
	if (len <= 0 || n > IOV_MAX || (write && a->read_only))
		return -EAGAIN;
	struct block_extent ext;
	if (block_map_direct(a->bd, off, (uint64_t)len, &ext) < 0 || ext.fd != a->fd)
		return -EAGAIN;
	if (unaligned(a, iov, n, ext.host_off))
		return -EAGAIN;
	if (a->nfree == 0 || io_uring_sq_space_left(&a->ring) == 0)
		return -EBUSY;
	unsigned s = a->free_slots[--a->nfree];
	a->slots[s] = (struct aio_slot){ .tag = tag, .iov = iov, .n = n, .off = ext.host_off,
					 .write = write, .busy = true };
	prep_slot(a, s);
	a->inflight++;
	a->writes += write;
	return 0;
}

int block_aio_readv(struct block_aio *a, const struct iovec *iov, unsigned n, uint64_t off,
		    void *tag)
{
	return queue_rw(a, false, iov, n, off, tag);
}

int block_aio_writev(struct block_aio *a, const struct iovec *iov, unsigned n, uint64_t off,
		     void *tag)
{
	return queue_rw(a, true, iov, n, off, tag);
}

int block_aio_submit(struct block_aio *a)
{
	int r = 0;
	for (int tries = 0; a->queued > 0 && tries < 3; tries++) {
		r = io_uring_submit(&a->ring);
		if (r >= 0) {
			a->queued -= (unsigned)r < a->queued ? (unsigned)r : a->queued;
			r = 0;
		} else if (r != -EINTR && r != -EAGAIN && r != -EBUSY) {
			break;
		}
	}
	return r;
}

/* Drops the first `moved` bytes of slot s's transfer, copying its iovec
 * into the slot's own array the first time (the caller's stays intact). */
static int advance_slot(struct aio_slot *sl, uint64_t moved)
{
	if (!sl->rest) {
		sl->rest = malloc(sl->n * sizeof(*sl->rest));
		if (!sl->rest)
			return -ENOMEM;
		memcpy(sl->rest, sl->iov, sl->n * sizeof(*sl->rest));
	}
	sl->off += moved;
	unsigned i = 0;
	while (i < sl->n && moved >= sl->rest[i].iov_len)
		moved -= sl->rest[i++].iov_len;
	memmove(sl->rest, sl->rest + i, (sl->n - i) * sizeof(*sl->rest));
	sl->n -= i;
	if (sl->n > 0) {
		sl->rest[0].iov_base = (char *)sl->rest[0].iov_base + moved;
		sl->rest[0].iov_len -= moved;
	}
	return sl->n > 0 ? 0 : -EIO;
}

static void free_slot(struct block_aio *a, unsigned s)
{
	struct aio_slot *sl = &a->slots[s];
	free(sl->rest);
	a->writes -= sl->write;
	*sl = (struct aio_slot){ 0 };
	a->free_slots[a->nfree++] = s;
	a->inflight--;
}

/* What a completion means for slot s: -EINPROGRESS when the rest of a
 * short transfer was queued again, else the request's final result. */
static int complete_slot(struct block_aio *a, unsigned s, int res)
{
	struct aio_slot *sl = &a->slots[s];
	if ((res == -EINTR || res == -EAGAIN) && sl->retries++ < AIO_MAX_RETRIES) {
		prep_slot(a, s);
		return -EINPROGRESS;
	}
	if (res < 0)
		return res;
	int64_t left = block_iov_len(sl->rest ? sl->rest : sl->iov, (int)sl->n);
	if (res == left)
		return 0;
	/* Nothing moved at all means the file ends early (truncated under
	 * us): an error, not a loop. */
	if (res == 0 || res > left)
		return -EIO;
	int r = advance_slot(sl, (uint64_t)res);
	if (r < 0)
		return r;
	prep_slot(a, s);
	return -EINPROGRESS;
}

unsigned block_aio_reap(struct block_aio *a, struct block_aio_done *done, unsigned max)
{
	unsigned got = 0;
	struct io_uring_cqe *cqe;
	while (got < max && io_uring_peek_cqe(&a->ring, &cqe) == 0) {
		uint64_t s = io_uring_cqe_get_data64(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&a->ring, cqe);
		if (s >= a->depth || !a->slots[s].busy)
			continue; /* cannot happen: we give only slot numbers */
		int r = complete_slot(a, (unsigned)s, res);
		if (r == -EINPROGRESS)
			continue;
		done[got++] = (struct block_aio_done){ .tag = a->slots[s].tag, .error = r };
		free_slot(a, (unsigned)s);
	}
	if (a->queued)
		block_aio_submit(a);
	return got;
}

int block_aio_wait(struct block_aio *a)
{
	if (a->queued)
		block_aio_submit(a);
	while (a->inflight > 0 && io_uring_cq_ready(&a->ring) < a->inflight) {
		struct io_uring_cqe *cqe;
		int r = io_uring_wait_cqe_nr(&a->ring, &cqe, a->inflight);
		if (r < 0 && r != -EINTR && r != -EAGAIN)
			return r;
	}
	return 0;
}

bool block_aio_has_completions(const struct block_aio *a)
{
	/* The kernel publishes the tail with release ordering; the head is
	 * ours, moved under the caller's lock: a stale one only sends the
	 * caller to the lock to find nothing. */
	unsigned tail = __atomic_load_n(a->ring.cq.ktail, __ATOMIC_ACQUIRE);
	unsigned head = __atomic_load_n(a->ring.cq.khead, __ATOMIC_RELAXED);
	return tail != head;
}

unsigned block_aio_inflight(const struct block_aio *a)
{
	return a->inflight;
}

unsigned block_aio_writes_inflight(const struct block_aio *a)
{
	return a->writes;
}
