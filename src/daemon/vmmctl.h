/*
 * The daemon's side of a VMM's control socket (shoji-vmm --api-socket):
 * one JSON request line, one JSON response line, with a short deadline so
 * a hung VMM cannot hold the daemon.
 */
#ifndef SHOJI_DAEMON_VMMCTL_H
#define SHOJI_DAEMON_VMMCTL_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Sends {"op":OP} to the socket at path and waits up to timeout_ms in all
 * (connecting included) for {"ok":true}. False with a one-line reason in
 * err otherwise. It may take the whole timeout: call it without the
 * supervisor's lock.
 */
bool vmmctl_call(const char *path, const char *op, int timeout_ms, char *err, size_t errlen);

#endif
