/* The I/O thread (see iothread.h). */
#include "vmm/iothread.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/log.h"

#define IOTHREAD_MAX_SOURCES 256

struct io_source {
	int fd;
	iothread_fn fn;
	void *ctx;
};

struct iothread {
	int epoll_fd;
	int stop_fd;
	pthread_t thread;
	bool started;
	unsigned count;
	struct io_source sources[IOTHREAD_MAX_SOURCES];
};

struct iothread *iothread_create(void)
{
	struct iothread *io = calloc(1, sizeof(*io));
	if (!io)
		return NULL;
	io->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	io->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	if (io->epoll_fd < 0 || io->stop_fd < 0 ||
	    epoll_ctl(io->epoll_fd, EPOLL_CTL_ADD, io->stop_fd, &ev) < 0) {
		log_error("cannot create the I/O thread's epoll set: %m");
		iothread_destroy(io);
		return NULL;
	}
	return io;
}

bool iothread_add(struct iothread *io, int fd, iothread_fn fn, void *ctx)
{
	if (io->started || io->count == IOTHREAD_MAX_SOURCES)
		return false;
	struct io_source *src = &io->sources[io->count];
	*src = (struct io_source){ fd, fn, ctx };
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = src };
	if (epoll_ctl(io->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		log_error("I/O thread: cannot watch fd %d: %m", fd);
		return false;
	}
	io->count++;
	return true;
}

static void *iothread_main(void *arg)
{
	struct iothread *io = arg;
	for (;;) {
		struct epoll_event events[32];
		int n = epoll_wait(io->epoll_fd, events, 32, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_error("I/O thread: epoll_wait failed: %m");
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			struct io_source *src = events[i].data.ptr;
			if (!src)
				return NULL; /* the stop eventfd */
			src->fn(src->ctx);
		}
	}
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
		uint64_t one = 1;
		ssize_t w = write(io->stop_fd, &one, sizeof(one));
		(void)w;
		pthread_join(io->thread, NULL);
	}
	if (io->epoll_fd >= 0)
		close(io->epoll_fd);
	if (io->stop_fd >= 0)
		close(io->stop_fd);
	free(io);
}
