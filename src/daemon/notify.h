/*
 * The service manager's readiness protocol (sd_notify(3)) without
 * libsystemd: under a unit of Type=notify, systemd puts the path of a
 * datagram socket in $NOTIFY_SOCKET and waits for "READY=1" on it before it
 * counts shojid as started (and starts the units ordered after it).
 */
#ifndef SHOJI_DAEMON_NOTIFY_H
#define SHOJI_DAEMON_NOTIFY_H

#include <stdbool.h>

/*
 * Sends `state` ("READY=1", "STOPPING=1", ...) as one datagram to
 * $NOTIFY_SOCKET: a path, or an abstract name written with a leading '@'.
 * True when sent or when there is no $NOTIFY_SOCKET (not under a service
 * manager); false, with a warning logged, when it could not be sent.
 */
bool notify_send(const char *state);

#endif
