/*
 * The I/O thread: watches fire on the I/O thread, change their events,
 * stop for good once unwatched (from a callback or from another thread),
 * queued calls run in order and after the callbacks in progress, and
 * destroy frees everything (ASan/LSan check that in the sanitizer build).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "vmm/iothread.h"

struct probe {
	struct iothread *io;
	struct io_watch *watch;
	int fd;
	atomic_int calls;
	atomic_uint last_events;
	atomic_bool on_io_thread;
	bool unwatch_self;
};

static void wait_until(atomic_int *counter, int want)
{
	for (int i = 0; i < 5000 && atomic_load(counter) < want; i++)
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
}

static void settle(void)
{
	nanosleep(&(struct timespec){ 0, 50000000 }, NULL);
}

static void on_event(void *ctx, uint32_t events)
{
	struct probe *p = ctx;
	char buf[64];
	if (events & EPOLLIN) {
		ssize_t r = read(p->fd, buf, sizeof(buf));
		(void)r;
	}
	atomic_store(&p->last_events, events);
	atomic_store(&p->on_io_thread, iothread_is_current(p->io));
	if (p->unwatch_self)
		iothread_unwatch(p->watch);
	atomic_fetch_add(&p->calls, 1);
}

static void make_pipe(int fds[2])
{
	assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
}

static void test_watch_fires_on_io_thread(void **state)
{
	(void)state;
	int fds[2];
	make_pipe(fds);
	struct iothread *io = iothread_create();
	assert_non_null(io);
	assert_true(iothread_start(io));
	struct probe p = { .io = io, .fd = fds[0] };
	/* added after start: the case the network and vsock back ends need */
	p.watch = iothread_watch(io, fds[0], EPOLLIN, on_event, &p);
	assert_non_null(p.watch);
	assert_int_equal(write(fds[1], "x", 1), 1);
	wait_until(&p.calls, 1);
	assert_int_equal(atomic_load(&p.calls), 1);
	assert_true(atomic_load(&p.last_events) & EPOLLIN);
	assert_true(atomic_load(&p.on_io_thread));
	assert_false(iothread_is_current(io));
	iothread_destroy(io);
	close(fds[0]);
	close(fds[1]);
}

static void test_events_can_change_to_out(void **state)
{
	(void)state;
	int fds[2];
	make_pipe(fds);
	struct iothread *io = iothread_create();
	struct probe p = { .io = io, .fd = fds[1], .unwatch_self = true };
	/* a write end is always writable: nothing until EPOLLOUT is asked for */
	p.watch = iothread_watch(io, fds[1], EPOLLIN, on_event, &p);
	assert_true(iothread_start(io));
	settle();
	assert_int_equal(atomic_load(&p.calls), 0);
	assert_true(iothread_watch_events(p.watch, EPOLLOUT));
	wait_until(&p.calls, 1);
	assert_true(atomic_load(&p.last_events) & EPOLLOUT);
	settle(); /* it unwatched itself: still exactly one call */
	assert_int_equal(atomic_load(&p.calls), 1);
	iothread_destroy(io);
	close(fds[0]);
	close(fds[1]);
}

static void test_unwatch_from_another_thread_stops_callbacks(void **state)
{
	(void)state;
	int fds[2];
	make_pipe(fds);
	struct iothread *io = iothread_create();
	assert_true(iothread_start(io));
	struct probe p = { .io = io, .fd = fds[0] };
	p.watch = iothread_watch(io, fds[0], EPOLLIN, on_event, &p);
	assert_int_equal(write(fds[1], "a", 1), 1);
	wait_until(&p.calls, 1);
	iothread_unwatch(p.watch);
	settle();
	int before = atomic_load(&p.calls);
	assert_int_equal(write(fds[1], "b", 1), 1);
	settle();
	assert_int_equal(atomic_load(&p.calls), before);
	iothread_destroy(io);
	close(fds[0]);
	close(fds[1]);
}

struct call_log {
	atomic_int n;
	int order[8];
};

static void record_call(void *ctx)
{
	struct call_log *log = ctx;
	int i = atomic_fetch_add(&log->n, 1);
	if (i < 8)
		log->order[i] = i;
}

static void test_calls_run_in_order(void **state)
{
	(void)state;
	struct iothread *io = iothread_create();
	assert_true(iothread_start(io));
	struct call_log log = { 0 };
	for (int i = 0; i < 5; i++)
		assert_true(iothread_call(io, record_call, &log));
	wait_until(&log.n, 5);
	assert_int_equal(atomic_load(&log.n), 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(log.order[i], i);
	iothread_destroy(io);
}

static void test_destroy_runs_queued_calls_and_frees_watches(void **state)
{
	(void)state;
	int fds[2];
	make_pipe(fds);
	struct iothread *io = iothread_create();
	struct probe p = { .io = io, .fd = fds[0] };
	/* never started: the calls still run, the watch is still freed */
	p.watch = iothread_watch(io, fds[0], EPOLLIN, on_event, &p);
	struct call_log log = { 0 };
	assert_true(iothread_call(io, record_call, &log));
	iothread_destroy(io);
	assert_int_equal(atomic_load(&log.n), 1);
	close(fds[0]);
	close(fds[1]);
}

static void test_many_watches(void **state)
{
	(void)state;
	enum { N = 400 }; /* 800 fds: under the common soft limit of 1024 */
	static int fds[N][2];
	static struct probe probes[N];
	struct iothread *io = iothread_create();
	assert_true(iothread_start(io));
	for (int i = 0; i < N; i++) {
		make_pipe(fds[i]);
		probes[i] = (struct probe){ .io = io, .fd = fds[i][0], .unwatch_self = true };
		probes[i].watch = iothread_watch(io, fds[i][0], EPOLLIN, on_event, &probes[i]);
		assert_non_null(probes[i].watch);
	}
	for (int i = 0; i < N; i++)
		assert_int_equal(write(fds[i][1], "z", 1), 1);
	for (int i = 0; i < N; i++) {
		wait_until(&probes[i].calls, 1);
		assert_int_equal(atomic_load(&probes[i].calls), 1);
	}
	iothread_destroy(io);
	for (int i = 0; i < N; i++) {
		close(fds[i][0]);
		close(fds[i][1]);
	}
}

static void test_bad_fd_is_refused(void **state)
{
	(void)state;
	struct iothread *io = iothread_create();
	struct probe p = { .io = io };
	assert_null(iothread_watch(io, -1, EPOLLIN, on_event, &p));
	iothread_unwatch(NULL);
	iothread_destroy(io);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_watch_fires_on_io_thread),
		cmocka_unit_test(test_events_can_change_to_out),
		cmocka_unit_test(test_unwatch_from_another_thread_stops_callbacks),
		cmocka_unit_test(test_calls_run_in_order),
		cmocka_unit_test(test_destroy_runs_queued_calls_and_frees_watches),
		cmocka_unit_test(test_many_watches),
		cmocka_unit_test(test_bad_fd_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
