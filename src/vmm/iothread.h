/*
 * The VMM's I/O thread: one epoll loop that runs device work off the vCPU
 * threads. Today its sources are the eventfds KVM signals when a guest
 * kicks a virtqueue (ioeventfd), so a kick costs the guest no exit to user
 * space. Sources are registered before the thread starts and live as long
 * as it does, so no callback can run on a source that was freed.
 */
#ifndef SHOJI_VMM_IOTHREAD_H
#define SHOJI_VMM_IOTHREAD_H

#include <stdbool.h>

struct iothread;

typedef void (*iothread_fn)(void *ctx);

struct iothread *iothread_create(void);
/* Calls fn(ctx) on the I/O thread whenever fd is readable. Before start only. */
bool iothread_add(struct iothread *io, int fd, iothread_fn fn, void *ctx);
bool iothread_start(struct iothread *io);
/* Stops and joins the thread (if started) and frees it; fds are the caller's. */
void iothread_destroy(struct iothread *io);

#endif
