/*
 * The VMM's I/O thread: one epoll loop that runs device work off the vCPU
 * threads: virtqueue kicks (ioeventfds KVM signals, so a kick costs the
 * guest no exit to user space), back-end sockets (network, vsock) and work
 * other threads hand over with iothread_call().
 *
 * Watches may be added, changed and removed at any time from any thread.
 * A callback never runs after iothread_unwatch() returned on the I/O thread
 * itself. From another thread, a callback that is already running may
 * still finish after the unwatch; such a caller must not free the
 * callback's context there, but in a function run by iothread_call() (which
 * runs after every callback in progress), or after iothread_destroy().
 * Nothing here waits for a callback, so a thread holding a lock that
 * callbacks take may unwatch without deadlock.
 */
#ifndef SHOJI_VMM_IOTHREAD_H
#define SHOJI_VMM_IOTHREAD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct iothread;
struct io_watch;

/* `events` is the epoll mask that fired: EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP. */
typedef void (*iothread_event_fn)(void *ctx, uint32_t events);
typedef void (*iothread_fn)(void *ctx);

struct iothread *iothread_create(void);

/*
 * Calls fn(ctx, events) on the I/O thread while fd is ready for any of
 * `events` (EPOLLIN and/or EPOLLOUT; level-triggered; errors and hang-ups
 * are always reported). NULL (logged) when the fd cannot be watched.
 */
struct io_watch *iothread_watch(struct iothread *io, int fd, uint32_t events,
				iothread_event_fn fn, void *ctx);
/* Changes the events a watch waits for (e.g. EPOLLOUT only while a write is pending). */
bool iothread_watch_events(struct io_watch *w, uint32_t events);
/* Stops the watch and frees it (later, when no callback can refer to it). NULL is a no-op. */
void iothread_unwatch(struct io_watch *w);

/* Runs fn(ctx) once on the I/O thread, after the callbacks now running. */
bool iothread_call(struct iothread *io, iothread_fn fn, void *ctx);

/* True on the I/O thread itself. */
bool iothread_is_current(const struct iothread *io);

/*
 * Calls fn(ctx) on the I/O thread each time it wakes, before the ready
 * callbacks, also when the wait was only interrupted (-EINTR): work the
 * thread submitted to an io_uring without an eventfd completes as task
 * work that interrupts the wait and is seen only this way (see
 * block/aio.h, BLOCK_AIO_SIGNAL_WORKER). Only before iothread_start().
 */
void iothread_on_wake(struct iothread *io, iothread_fn fn, void *ctx);

bool iothread_start(struct iothread *io);
/*
 * Stops and joins the thread (if started), runs the calls still queued,
 * frees every watch and the thread. File descriptors are the caller's.
 */
void iothread_destroy(struct iothread *io);

#endif
