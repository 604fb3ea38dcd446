/*
 * The daemon's side of a VMM's control socket (shoji-vmm --api-socket):
 * one JSON request line, one JSON response line, with a short deadline so
 * a hung VMM cannot hold the daemon.
 */
#ifndef SHOJI_DAEMON_VMMCTL_H
#define SHOJI_DAEMON_VMMCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include <sys/un.h>

/*
 * Sends {"op":OP} to the socket at path and waits up to timeout_ms in all
 * (connecting included) for {"ok":true}. False with a one-line reason in
 * err otherwise. It may take the whole timeout: call it without the
 * supervisor's lock.
 */
bool vmmctl_call(const char *path, const char *op, int timeout_ms, char *err, size_t errlen);
/* The same, with the answer object in *reply when true (the caller's to decref). */
bool vmmctl_request(const char *path, const char *op, int timeout_ms, json_t **reply, char *err,
		    size_t errlen);

/* Reads one line (without the newline) before the deadline (monotonic ms). */
bool ctl_read_line(int fd, char *line, size_t len, long deadline);
/*
 * A non-blocking connect, retried until the deadline: on a Unix socket a
 * full backlog (a VMM that accepts nothing) makes a blocking connect()
 * wait for ever, a non-blocking one fails with EAGAIN at once. The socket
 * stays non-blocking; -1 with errno (ETIMEDOUT for the deadline).
 */
int ctl_connect_before(const struct sockaddr_un *addr, long deadline);

#endif
