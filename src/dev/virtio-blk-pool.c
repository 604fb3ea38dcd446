/*
 * virtio-blk's worker pool: the threads that serve requests the rings
 * cannot take (qcow2 images, flushes, discards, buffers O_DIRECT cannot
 * use, requests that fail a check and need their error), so that the
 * guest's queue depth reaches the host file: requests in the ring are
 * transfers in the kernel side by side, not one after the other. Workers
 * start as requests arrive, BLK_MIN_WORKERS to BLK_MAX_WORKERS of them.
 *
 * Threads: the I/O thread queues requests (blk_queue_io, under the
 * transport's lock); a worker takes one, serves it (blk_io_run, no lock),
 * puts it on the done list and signals the device's event fd, which the
 * transport treats as a wake-up of the queue: the I/O thread then pushes
 * the done list (blk_push_done). The mutex between the worker's writes
 * into guest memory and the I/O thread's push orders the data before the
 * used index the driver reads. Workers never take the transport's lock,
 * so reset, which holds it, may wait for them (blk_quiesce).
 */
#include <stdlib.h>
#include <unistd.h>

#include "base/log.h"
#include "dev/virtio-blk-internal.h"

void blk_list_init(struct blk_list *l)
{
	l->first = NULL;
	l->tail = &l->first;
	l->count = 0;
}

void blk_list_add(struct blk_list *l, struct blk_io *io)
{
	io->next = NULL;
	*l->tail = io;
	l->tail = &io->next;
	l->count++;
}

struct blk_io *blk_list_take(struct blk_list *l)
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

void blk_list_free(struct blk_list *l)
{
	struct blk_io *io;
	while ((io = blk_list_take(l)))
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
		struct blk_io *io = blk_list_take(&blk->pending);
		blk->running++;
		pthread_mutex_unlock(&blk->lock);

		blk_io_run(blk, io);

		pthread_mutex_lock(&blk->lock);
		blk->running--;
		bool first = blk->done.count == 0;
		blk_list_add(&blk->done, io);
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
bool blk_queue_io(struct virtio_blk *blk, struct blk_io *io)
{
	pthread_mutex_lock(&blk->lock);
	bool ok = blk_ensure_worker(blk);
	if (ok) {
		blk_list_add(&blk->pending, io);
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
void blk_quiesce(struct virtio_blk *blk)
{
	pthread_mutex_lock(&blk->lock);
	blk_list_free(&blk->pending);
	while (blk->running > 0)
		pthread_cond_wait(&blk->idle, &blk->lock);
	blk_list_free(&blk->done);
	pthread_mutex_unlock(&blk->lock);
	blk_list_free(&blk->handed);
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


void blk_pool_init(struct virtio_blk *blk)
{
	pthread_mutex_init(&blk->lock, NULL);
	pthread_cond_init(&blk->work, NULL);
	pthread_cond_init(&blk->idle, NULL);
	blk_list_init(&blk->pending);
	blk_list_init(&blk->done);
	blk_list_init(&blk->handed);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	blk->max_workers = cpus > 0 && cpus < BLK_MAX_WORKERS / 4 ? (unsigned)cpus * 4 : BLK_MAX_WORKERS;
	if (blk->max_workers < BLK_MIN_WORKERS)
		blk->max_workers = BLK_MIN_WORKERS;
}

void blk_pool_destroy(struct virtio_blk *blk)
{
	pthread_cond_destroy(&blk->idle);
	pthread_cond_destroy(&blk->work);
	pthread_mutex_destroy(&blk->lock);
}

/* Drops queued requests, lets running ones finish and joins every worker. */
void blk_stop_workers(struct virtio_blk *blk)
{
	pthread_mutex_lock(&blk->lock);
	blk->stopping = true;
	blk_list_free(&blk->pending);
	pthread_cond_broadcast(&blk->work);
	pthread_mutex_unlock(&blk->lock);
	for (unsigned i = 0; i < blk->nworkers; i++)
		pthread_join(blk->workers[i], NULL);
	blk->nworkers = 0;
	blk_list_free(&blk->done);
}
