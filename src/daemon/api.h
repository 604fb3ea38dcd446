/*
 * shojid's API: JSON over HTTP/1.1 on a Unix socket, served by
 * libmicrohttpd with one thread per connection (long-lived streams, events
 * and consoles, then simply block in their thread). docs/api.md is the
 * contract: every path, request, response and error.
 */
#ifndef SHOJI_DAEMON_API_H
#define SHOJI_DAEMON_API_H

#include <stdbool.h>

#include "daemon/events.h"
#include "daemon/supervisor.h"

#define API_BODY_MAX     (64u << 10)
#define API_MAX_CLIENTS  64
/* Long-lived streams (events, logs -f, consoles) among them: the rest stay for requests. */
#define API_MAX_STREAMS  32

struct api;

/*
 * Creates the listening socket at path (mode 0600, replacing a stale
 * socket; anything else there is an error). -1 (logged) on failure.
 */
int api_listen(const char *path);
/* Serves the socket; takes ownership of listen_fd. NULL (logged) on failure. */
struct api *api_start(int listen_fd, struct sup *sup, struct events *events);
/* Ends every stream and console and stops serving. */
void api_stop(struct api *api);

#endif
