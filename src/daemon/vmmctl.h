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
 * Sends {"op":OP} to the socket at path and waits up to timeout_ms for
 * {"ok":true}. False with a one-line reason in err otherwise.
 */
bool vmmctl_call(const char *path, const char *op, int timeout_ms, char *err, size_t errlen);

#endif
