/*
 * Asynchronous reads and writes of a disk image through io_uring, for the
 * requests the image's format needs no part in: a range that lies as is at
 * the same place of one host file (a raw image). One ring per disk, driven
 * from one thread (the VMM's I/O thread): it queues requests, submits them
 * in a batch, and reaps completions when the ring signals the eventfd it
 * was given. Everything else (flushes, discards, qcow2, requests that
 * O_DIRECT cannot take as they are) stays with the blocking block_* calls.
 *
 * Why a ring and not only threads: at queue depth 32 a thread per request
 * costs two wake-ups and a sleep per request; one ring moves a whole batch
 * in one system call (bench/blk: 4 KiB random reads at QD32).
 *
 * The ring is locked down before it is used: it may only read and write
 * (only read, for a read-only disk) the image's own descriptor, registered
 * as fixed file 0 (IORING_REGISTER_RESTRICTIONS). io_uring operations do
 * not pass through seccomp, so without this a compromised VMM could use the
 * ring to open files its seccomp filter forbids.
 *
 * Not thread-safe: one thread at a time per struct block_aio (the caller's
 * lock), which is also the only one to touch the iovecs until completion.
 * That thread may change from call to call (vCPU threads submit to one
 * ring in turn); block_aio_has_completions() needs no lock.
 */
#ifndef SHOJI_BLOCK_AIO_H
#define SHOJI_BLOCK_AIO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "block/block.h"

struct block_aio;

struct block_aio_done {
	void *tag;  /* as given to block_aio_readv/writev */
	int error;  /* 0, or -errno */
};

/*
 * Which completions signal a ring's eventfd.
 *
 * BLOCK_AIO_SIGNAL_ALL: every one; for a ring one thread submits to and
 * sleeps on (the I/O thread's epoll loop).
 *
 * BLOCK_AIO_SIGNAL_WORKER: only those the kernel posts from its own worker
 * threads (io-wq: a buffered write, a request it could not start without
 * blocking). Every other completion of a read or write on a file runs as
 * task work on the thread that submitted the request: the kernel
 * interrupts that thread's sleep to post it (KVM_RUN and epoll_wait return
 * -EINTR, so the thread looks at the ring itself), or it was posted before
 * the submit call returned. A ring submitted to from threads that sleep
 * elsewhere (vCPU threads in KVM_RUN) then wakes exactly the submitter,
 * with no other thread in between, and the eventfd covers the rest.
 * The ring must not be set up for cooperative task running (it is not).
 * A thread must look at the ring (block_aio_has_completions) before each
 * sleep; task work that runs when it returns to user space after that look
 * (an interrupt) posts the completion without interrupting the sleep that
 * follows, so such a caller also needs a timeout of its own.
 */
enum block_aio_signal { BLOCK_AIO_SIGNAL_ALL, BLOCK_AIO_SIGNAL_WORKER };

/*
 * Sets up a ring of `depth` requests for bd that signals event_fd (an
 * eventfd) when a request completes, as `signal` says. Returns -ENOTSUP
 * when bd's format cannot be read and written straight (qcow2), another
 * -errno when this host cannot give us a restricted ring (no io_uring, or
 * a kernel older than 5.10); logs nothing, so the caller says what it
 * falls back to.
 */
int block_aio_open(struct block_aio **out, struct block_dev *bd, unsigned depth, int event_fd,
		   enum block_aio_signal signal);
/* Waits for the requests in flight (dropping their results), then frees
 * the ring. Accepts NULL. */
void block_aio_close(struct block_aio *a);

/*
 * Queues a read into (or a write from) iov of the disk at off; the iovec
 * array and its buffers must stay valid until the request is reaped.
 * Returns 0 when queued; -EAGAIN when this request cannot go straight to
 * the file (outside it, or its buffers or offset are not aligned as the
 * file's O_DIRECT needs), -EBUSY when `depth`
 * requests are already in flight. The caller then serves it with
 * block_readv/block_writev. Nothing is submitted before block_aio_submit().
 */
int block_aio_readv(struct block_aio *a, const struct iovec *iov, unsigned n, uint64_t off,
		    void *tag);
int block_aio_writev(struct block_aio *a, const struct iovec *iov, unsigned n, uint64_t off,
		     void *tag);

/* Whether a write this ring refuses may be a read-modify-write of whole
 * blocks in file.c (the file is O_DIRECT and the write is not aligned to
 * its blocks), which must not run while the ring writes those blocks (see
 * virtio-blk.c). False for buffered files: they never read-modify-write. */
bool block_aio_may_rmw(const struct block_aio *a);

/* Whether the file is open O_DIRECT (so writes do not wait in the page
 * cache's locks, and the kernel rarely needs a worker thread for them). */
bool block_aio_direct(const struct block_aio *a);

/* Hands the queued requests to the kernel; 0 or -errno (they stay queued
 * and the next call retries them). */
int block_aio_submit(struct block_aio *a);

/*
 * Collects up to max finished requests without waiting; returns the count.
 * A short transfer is not finished: its remainder is resubmitted here.
 */
unsigned block_aio_reap(struct block_aio *a, struct block_aio_done *done, unsigned max);

/* Waits until every request in flight has a completion to reap (and stays
 * to be reaped). Reaping may resubmit the rest of a short transfer, so a
 * caller that needs none in flight loops on wait and reap while
 * block_aio_inflight() is not 0. 0, or -errno when waiting failed. */
int block_aio_wait(struct block_aio *a);

/*
 * Whether the kernel has posted completions not yet reaped. The one call
 * that any thread may make without holding the caller's lock (it only
 * reads the completion queue's indices), so that a thread can look
 * cheaply before taking the lock to reap.
 */
bool block_aio_has_completions(const struct block_aio *a);

/* Requests queued or in the kernel, not yet reaped. */
unsigned block_aio_inflight(const struct block_aio *a);
/* Of those, the writes. */
unsigned block_aio_writes_inflight(const struct block_aio *a);

#endif
