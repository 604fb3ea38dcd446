/*
 * A listening socket served on the I/O thread, for the VMM's Unix sockets
 * (--api-socket, --vsock). Two rules every such socket keeps:
 *
 *   - back-pressure, not refusal: while its owner cannot take another
 *     client it holds the listener (listener_hold); the kernel's listen
 *     backlog keeps the clients that arrive meanwhile, and they are
 *     accepted, in order, once the owner releases it;
 *   - no busy loop when descriptors run out: accept4 failing with EMFILE,
 *     ENFILE, ENOBUFS or ENOMEM leaves the connection in the backlog and
 *     the socket readable, so a level-triggered watch would fire forever
 *     (a core at 100%, a log line per wake-up). The listener stops watching
 *     the socket instead, logs once, and tries again after
 *     LISTENER_BACKOFF_MS.
 *
 * The owner's callback runs on the I/O thread; listener_hold may be called
 * from any thread.
 */
#ifndef SHOJI_VMM_LISTENER_H
#define SHOJI_VMM_LISTENER_H

#include <stdbool.h>

#include "vmm/iothread.h"

#define LISTENER_BACKOFF_MS 100
/* Connections accepted per wake-up, so a burst cannot hold the I/O thread. */
#define LISTENER_BATCH      16

/* A new client (non-blocking, close-on-exec): the descriptor is the owner's now. */
typedef void (*listener_accept_fn)(void *ctx, int fd);

struct listener;

/*
 * Serves `listen_fd` (non-blocking, listening; it stays the caller's) on
 * `io`; `what` names it in log lines. NULL (logged) on failure.
 */
struct listener *listener_create(struct iothread *io, int listen_fd, const char *what,
				 listener_accept_fn fn, void *ctx);
/* Stops accepting (hold) or resumes (!hold). Holds do not nest. */
void listener_hold(struct listener *l, bool hold);
/*
 * Frees the listener. Call it on the I/O thread or after iothread_destroy();
 * the I/O thread being gone, pass io_gone so no watch is touched.
 */
void listener_destroy(struct listener *l, bool io_gone);

#endif
