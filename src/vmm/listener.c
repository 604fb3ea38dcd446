/*
 * A listening socket with back-pressure and an out-of-descriptors back-off
 * (see listener.h). The socket's watch stays registered; "not watching" is
 * an empty event mask, which a listening socket never overrides with a
 * hang-up. The back-off is a one-shot timerfd on the same I/O thread.
 */
#include "vmm/listener.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "base/log.h"

struct listener {
	struct iothread *io;
	int fd;
	int timer_fd;
	const char *what;
	listener_accept_fn fn;
	void *ctx;
	pthread_mutex_t lock;     /* the flags below and the watch's mask */
	struct io_watch *w, *timer_w;
	bool held;                /* by the owner: it cannot take a client now */
	bool backing_off;         /* accept ran out of descriptors; the timer runs */
	bool armed;               /* EPOLLIN is on the watch */
	bool warned;              /* this shortage was logged */
};

/* Watches the socket exactly when neither the owner nor a back-off holds it. */
static void listener_update(struct listener *l)
{
	bool want = !l->held && !l->backing_off;
	if (want != l->armed && iothread_watch_events(l->w, want ? EPOLLIN : 0))
		l->armed = want;
}

static bool listener_armed(struct listener *l)
{
	pthread_mutex_lock(&l->lock);
	bool armed = l->armed;
	pthread_mutex_unlock(&l->lock);
	return armed;
}

/* The pending client stays in the backlog; try again after a pause. */
static void listener_back_off(struct listener *l, int err)
{
	if (!l->warned)
		log_warn("%s: cannot accept a client (%s); clients wait until descriptors are free, "
			 "retrying every %d ms", l->what, strerror(err), LISTENER_BACKOFF_MS);
	l->warned = true;
	struct itimerspec t = { .it_value = { 0, LISTENER_BACKOFF_MS * 1000000L } };
	pthread_mutex_lock(&l->lock);
	l->backing_off = true;
	listener_update(l);
	pthread_mutex_unlock(&l->lock);
	timerfd_settime(l->timer_fd, 0, &t, NULL);
}

static void on_listen_ready(void *ctx, uint32_t events)
{
	(void)events;
	struct listener *l = ctx;
	for (int i = 0; i < LISTENER_BATCH && listener_armed(l); i++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			l->warned = false;
			l->fn(l->ctx, fd);
			continue;
		}
		/* The client gave up before we took it (ECONNABORTED): the next one. */
		if (errno == ECONNABORTED)
			continue;
		if (errno != EAGAIN && errno != EINTR)
			listener_back_off(l, errno);
		return;
	}
}

static void on_backoff_over(void *ctx, uint32_t events)
{
	(void)events;
	struct listener *l = ctx;
	uint64_t expirations;
	ssize_t r = read(l->timer_fd, &expirations, sizeof(expirations));
	(void)r; /* EAGAIN: a stale wake-up after a re-arm */
	pthread_mutex_lock(&l->lock);
	l->backing_off = false;
	listener_update(l);
	pthread_mutex_unlock(&l->lock);
}

struct listener *listener_create(struct iothread *io, int listen_fd, const char *what,
				 listener_accept_fn fn, void *ctx)
{
	struct listener *l = calloc(1, sizeof(*l));
	if (!l) {
		log_error("%s: out of memory", what);
		return NULL;
	}
	*l = (struct listener){ .io = io, .fd = listen_fd, .what = what, .fn = fn, .ctx = ctx };
	pthread_mutex_init(&l->lock, NULL);
	l->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (l->timer_fd < 0) {
		log_error("%s: cannot create its back-off timer: %m", what);
		listener_destroy(l, true);
		return NULL;
	}
	l->timer_w = iothread_watch(io, l->timer_fd, EPOLLIN, on_backoff_over, l);
	l->w = l->timer_w ? iothread_watch(io, listen_fd, EPOLLIN, on_listen_ready, l) : NULL;
	if (!l->w) {
		listener_destroy(l, false);
		return NULL;
	}
	l->armed = true;
	return l;
}

void listener_hold(struct listener *l, bool hold)
{
	pthread_mutex_lock(&l->lock);
	l->held = hold;
	listener_update(l);
	pthread_mutex_unlock(&l->lock);
}

void listener_destroy(struct listener *l, bool io_gone)
{
	if (!l)
		return;
	if (!io_gone) {
		iothread_unwatch(l->w);
		iothread_unwatch(l->timer_w);
	}
	if (l->timer_fd >= 0)
		close(l->timer_fd);
	pthread_mutex_destroy(&l->lock);
	free(l);
}
