/* The I/O thread (see iothread.h). */
#include "vmm/iothread.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/log.h"

struct io_watch {
	struct iothread *io;
	int fd;
	iothread_event_fn fn;
	void *ctx;
	atomic_bool dead;
	struct io_watch *prev, *next; /* io->live, or io->dead (next only) */
};

struct io_call {
	iothread_fn fn;
	void *ctx;
	struct io_call *next;
};

struct iothread {
	int epoll_fd;
	int wake_fd; /* eventfd: a call was queued, or stop */
	pthread_t thread;
	bool started;
	atomic_bool stopping;
	/*
	 * Guards the lists below; never held while a callback runs, so any
	 * thread may add or remove watches while holding its own locks.
	 */
	pthread_mutex_t lock;
	struct io_watch *live;
	/* Unwatched, freed at the top of the next loop turn: epoll may have
	 * handed out their pointer in the batch being dispatched. */
	struct io_watch *dead;
	struct io_call *calls, **calls_tail;
	iothread_fn on_wake;  /* set before the thread starts */
	void *on_wake_ctx;
};

struct iothread *iothread_create(void)
{
	struct iothread *io = calloc(1, sizeof(*io));
	if (!io)
		return NULL;
	pthread_mutex_init(&io->lock, NULL);
	io->calls_tail = &io->calls;
	io->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	io->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	if (io->epoll_fd < 0 || io->wake_fd < 0 ||
	    epoll_ctl(io->epoll_fd, EPOLL_CTL_ADD, io->wake_fd, &ev) < 0) {
		log_error("cannot create the I/O thread's epoll set: %m");
		iothread_destroy(io);
		return NULL;
	}
	return io;
}

static void wake(struct iothread *io)
{
	uint64_t one = 1;
	ssize_t w = write(io->wake_fd, &one, sizeof(one));
	(void)w; /* EAGAIN: the counter is already non-zero, a wake-up is pending */
}

struct io_watch *iothread_watch(struct iothread *io, int fd, uint32_t events,
				iothread_event_fn fn, void *ctx)
{
	struct io_watch *w = calloc(1, sizeof(*w));
	if (!w) {
		log_error("I/O thread: out of memory watching fd %d", fd);
		return NULL;
	}
	*w = (struct io_watch){ .io = io, .fd = fd, .fn = fn, .ctx = ctx };
	pthread_mutex_lock(&io->lock);
	w->next = io->live;
	if (io->live)
		io->live->prev = w;
	io->live = w;
	pthread_mutex_unlock(&io->lock);
	struct epoll_event ev = { .events = events, .data.ptr = w };
	if (epoll_ctl(io->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		log_error("I/O thread: cannot watch fd %d: %m", fd);
		iothread_unwatch(w);
		return NULL;
	}
	return w;
}

bool iothread_watch_events(struct io_watch *w, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = w };
	if (epoll_ctl(w->io->epoll_fd, EPOLL_CTL_MOD, w->fd, &ev) < 0) {
		log_error("I/O thread: cannot change the events of fd %d: %m", w->fd);
		return false;
	}
	return true;
}

void iothread_unwatch(struct io_watch *w)
{
	if (!w)
		return;
	struct iothread *io = w->io;
	atomic_store(&w->dead, true);
	/* ENOENT/EBADF when the add failed or the fd is already closed: fine. */
	epoll_ctl(io->epoll_fd, EPOLL_CTL_DEL, w->fd, NULL);
	pthread_mutex_lock(&io->lock);
	if (w->prev)
		w->prev->next = w->next;
	else
		io->live = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->next = io->dead;
	io->dead = w;
	pthread_mutex_unlock(&io->lock);
}

bool iothread_call(struct iothread *io, iothread_fn fn, void *ctx)
{
	struct io_call *c = malloc(sizeof(*c));
	if (!c) {
		log_error("I/O thread: out of memory queueing work");
		return false;
	}
	*c = (struct io_call){ fn, ctx, NULL };
	pthread_mutex_lock(&io->lock);
	*io->calls_tail = c;
	io->calls_tail = &c->next;
	pthread_mutex_unlock(&io->lock);
	wake(io);
	return true;
}

bool iothread_is_current(const struct iothread *io)
{
	return io->started && pthread_equal(pthread_self(), io->thread);
}

static void free_watch_list(struct io_watch *w)
{
	while (w) {
		struct io_watch *next = w->next;
		free(w);
		w = next;
	}
}

static void free_dead_watches(struct iothread *io)
{
	pthread_mutex_lock(&io->lock);
	struct io_watch *dead = io->dead;
	io->dead = NULL;
	pthread_mutex_unlock(&io->lock);
	free_watch_list(dead);
}

/* Runs the queued calls, including any a call queues. */
static void run_calls(struct iothread *io)
{
	for (;;) {
		pthread_mutex_lock(&io->lock);
		struct io_call *c = io->calls;
		io->calls = NULL;
		io->calls_tail = &io->calls;
		pthread_mutex_unlock(&io->lock);
		if (!c)
			return;
		while (c) {
			struct io_call *next = c->next;
			c->fn(c->ctx);
			free(c);
			c = next;
		}
	}
}

static void dispatch(struct iothread *io, struct epoll_event *events, int n)
{
	for (int i = 0; i < n; i++) {
		struct io_watch *w = events[i].data.ptr;
		if (!w) {
			uint64_t count;
			ssize_t r = read(io->wake_fd, &count, sizeof(count));
			(void)r;
			run_calls(io);
		} else if (!atomic_load(&w->dead)) {
			w->fn(w->ctx, events[i].events);
		}
	}
}

static void *iothread_main(void *arg)
{
	struct iothread *io = arg;
	while (!atomic_load(&io->stopping)) {
		free_dead_watches(io);
		struct epoll_event events[64];
		int n = epoll_wait(io->epoll_fd, events, 64, -1);
		if (io->on_wake)
			io->on_wake(io->on_wake_ctx);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_error("I/O thread: epoll_wait failed: %m");
			return NULL;
		}
		dispatch(io, events, n);
	}
	return NULL;
}

void iothread_on_wake(struct iothread *io, iothread_fn fn, void *ctx)
{
	io->on_wake = fn;
	io->on_wake_ctx = ctx;
}

bool iothread_start(struct iothread *io)
{
	int rc = pthread_create(&io->thread, NULL, iothread_main, io);
	if (rc != 0) {
		log_error("cannot start the I/O thread: %s", strerror(rc));
		return false;
	}
	io->started = true;
	return true;
}

void iothread_destroy(struct iothread *io)
{
	if (!io)
		return;
	if (io->started) {
		atomic_store(&io->stopping, true);
		wake(io);
		pthread_join(io->thread, NULL);
	}
	run_calls(io); /* they may free what the watches point to */
	free_watch_list(io->live);
	free_watch_list(io->dead);
	if (io->epoll_fd >= 0)
		close(io->epoll_fd);
	if (io->wake_fd >= 0)
		close(io->wake_fd);
	pthread_mutex_destroy(&io->lock);
	free(io);
}
