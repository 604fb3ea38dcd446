/*
 * The VMM's control socket (--api-socket PATH): how shojid asks a running
 * VM to do something. A Unix stream socket, mode 0600; each request is one
 * JSON object on one line, each answer one line:
 *
 *   {"op":"ping"}          -> {"ok":true}
 *   {"op":"power-button"}  -> {"ok":true}   (ACPI power button pressed)
 *   {"op":"pause"}         -> {"ok":true}   (vCPUs leave the guest and wait)
 *   {"op":"resume"}        -> {"ok":true}
 *   {"op":"status"}        -> {"ok":true,"paused":false}
 *   anything else          -> {"ok":false,"error":"..."} and the
 *                             connection is closed
 *
 * Served on the I/O thread; at most VMM_API_MAX_CLIENTS connections (more
 * wait in the listen backlog, up to VMM_API_BACKLOG, until one closes),
 * lines of at most VMM_API_LINE_MAX bytes. Nothing a client sends can stop the
 * VMM: the worst it gets is its own connection closed.
 */
#ifndef SHOJI_VMM_API_H
#define SHOJI_VMM_API_H

#include <stdbool.h>

#include "vmm/iothread.h"

#define VMM_API_MAX_CLIENTS 8
#define VMM_API_BACKLOG     64
#define VMM_API_LINE_MAX    128

struct vmm_api_ops {
	void (*power_button)(void *ctx);
	void (*pause)(void *ctx, bool pause);
	bool (*paused)(void *ctx);
	void *ctx;
};

struct vmm_api;

/*
 * Listens at path (a stale socket there is replaced, anything else is an
 * error) and serves it on `io`. NULL (logged) on failure.
 */
struct vmm_api *vmm_api_create(const char *path, struct iothread *io, const struct vmm_api_ops *ops);
/* After iothread_destroy(): closes every connection and removes PATH. */
void vmm_api_destroy(struct vmm_api *api);

/* The request parser, for tests: the op of `line`, or false. */
bool vmm_api_parse(const char *line, char *op, unsigned oplen);

#endif
