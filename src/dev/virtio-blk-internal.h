/*
 * virtio-blk's rooms share this header; nothing outside src/dev/virtio-blk*.c
 * includes it. Reading order: virtio-blk.c (the device: ops, the I/O
 * thread's serving of the queue, creation), virtio-blk-request.c (one
 * request, parsed and served on whichever thread runs it),
 * virtio-blk-pool.c (the worker threads), virtio-blk-ring.c (the io_uring
 * rings of a raw image: the I/O thread's, and the vCPU threads' with its
 * watchdog).
 *
 * Locking: every function here runs under the transport's lock (the
 * device's callbacks are serialised by it) unless it says otherwise; the
 * pool's lists are guarded by virtio_blk.lock, which workers take and the
 * transport's lock holders take after it, never before.
 */
#ifndef SHOJI_DEV_VIRTIO_BLK_INTERNAL_H
#define SHOJI_DEV_VIRTIO_BLK_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "block/aio.h"
#include "block/block.h"
#include "dev/virtio-blk.h"
#include "dev/virtqueue.h"

/*
 * Worker threads per disk: 4 per host CPU, from 8 to 32. Each request costs
 * a worker a wake-up and a sleep in the kernel, so on a small host more
 * threads than this cost more in switches than they add in depth
 * (bench/README.md has the figures); a larger host keeps up to 32 in
 * flight. The bound also caps what a hostile guest can make us start.
 */
#define BLK_MIN_WORKERS 8
#define BLK_MAX_WORKERS 32

/* Requests on the vCPU ring at most: what a kick pops and submits on the
 * vCPU thread before it leaves the rest to the I/O thread
 * (virtio-blk-ring.c). */
#define BLK_VCPU_RING_DEPTH 32

/* How long a request may sit on the vCPU ring before the I/O thread looks
 * (virtio-blk-ring.c): the worst-case delay of a completion whose wake-up
 * the vCPU missed, and the I/O thread's wake-up period for a slower
 * request. */
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
	struct block_aio *vcpu_aio;   /* the vCPU threads' ring (virtio-blk-ring.c);
					 NULL when aio is */
	struct blk_list handed;       /* popped on a vCPU, for the I/O thread */
	int watchdog_fd;              /* timerfd: a vCPU ring request may be
					 waiting unseen (virtio-blk-ring.c) */
	uint64_t watchdog_deadline;   /* when it fires (CLOCK_MONOTONIC ns) */
	bool watchdog_error_logged;
	bool aio_error_logged;
	unsigned pool_writes;         /* may-RMW requests in the pool (virtio-blk-ring.c) */

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


/* ---- virtio-blk-request.c: one request ---- */

/* Logs a hostile driver's mistake: one warning per device, then debug. Any thread. */
void blk_warn(struct virtio_blk *blk, const char *what);
/* Whether len bytes at `sector` lie inside the disk, without overflow. */
bool blk_range_ok(const struct virtio_blk *blk, uint64_t sector, uint64_t len);
/* The chain's status byte (its last writable byte), taken off the chain; NULL if none. */
uint8_t *blk_take_status(struct vq_chain *c);
/* A popped chain (without its status byte) as a request of its own; NULL without memory. */
struct blk_io *blk_io_new(const struct vq_chain *c, uint8_t *status);
/* Parses and serves io, writes its status byte and used length. Any thread, no lock. */
void blk_io_run(struct virtio_blk *blk, struct blk_io *io);
/* The request type in io's header, peeked from guest memory; UINT32_MAX if short. */
uint32_t blk_peek_type(const struct blk_io *io);

/* ---- virtio-blk-pool.c: the worker threads ---- */

void blk_list_init(struct blk_list *l);
void blk_list_add(struct blk_list *l, struct blk_io *io);
struct blk_io *blk_list_take(struct blk_list *l);
void blk_list_free(struct blk_list *l);
/* Sets up the lists, the lock and the bound on workers (none start yet). */
void blk_pool_init(struct virtio_blk *blk);
/* Hands io to the workers; false when there are none (serve it here). */
bool blk_queue_io(struct virtio_blk *blk, struct blk_io *io);
/* Drops unstarted requests, waits for running ones, forgets finished ones
 * and everything on the rings: reset. */
void blk_quiesce(struct virtio_blk *blk);
/* Drops queued requests, lets running ones finish and joins every worker. */
void blk_stop_workers(struct virtio_blk *blk);
/* Frees the lock and conditions (after blk_stop_workers). */
void blk_pool_destroy(struct virtio_blk *blk);

/* ---- virtio-blk-ring.c: the io_uring rings ---- */

/* Opens the rings cfg->aio asks for; false when aio=io_uring cannot be had. */
bool blk_open_ring(struct virtio_blk *blk, const struct virtio_blk_config *cfg);
/* Queues a plain read or write of io on `ring`; false: the pool serves it. */
bool blk_ring_start(struct virtio_blk *blk, struct block_aio *ring, struct blk_io *io);
/* Hands the batch queued on the I/O thread's ring to the kernel. */
void blk_ring_submit(struct virtio_blk *blk);
/* Returns what both rings have finished to the driver; the count. */
unsigned blk_ring_reap(struct virtio_blk *blk, struct vq *vq);
/* Waits for the writes on both rings and returns them; the count. */
unsigned blk_ring_wait_writes(struct virtio_blk *blk, struct vq *vq);
/* Waits for everything on both rings and forgets it unreturned. */
void blk_ring_drop(struct virtio_blk *blk);
/* Whether io, headed for the pool, may read-modify-write blocks a ring writes. */
bool blk_pool_may_rmw(const struct virtio_blk *blk, const struct blk_io *io);
/* Makes the I/O thread look at the vCPU ring within BLK_VCPU_WATCHDOG_NS. */
void blk_arm_watchdog(struct virtio_blk *blk);
/* A kick or a poll on the vCPU path (VIRTIO_ON_VCPU): never blocks. */
void blk_vcpu_serve(struct virtio_blk *blk, struct virtio_dev *vd, struct vq *vq);

/* ---- virtio-blk.c: the queue ---- */

/* Returns the served requests (pool and rings) to the driver; the count. */
unsigned blk_push_done(struct virtio_blk *blk, struct vq *vq);
/* A popped chain as a request of its own; NULL when it was completed at
 * once with an error (counted in *completed). */
struct blk_io *blk_io_take(struct virtio_blk *blk, struct vq *vq, struct vq_chain *c,
			   unsigned *completed);

#endif
