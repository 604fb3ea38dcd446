/*
 * The daemon's event log: lifecycle changes ("started", "exited",
 * "restarting", ...) as one JSON object per line, kept in a ring of the
 * last EVENTS_RING events and streamed to every /v1/events reader. A slow
 * reader more than EVENTS_RING events behind skips ahead to the oldest
 * one kept (a gap in its seq numbers shows what it missed) instead of
 * holding the daemon up.
 */
#ifndef SHOJI_DAEMON_EVENTS_H
#define SHOJI_DAEMON_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define EVENTS_RING 256

struct events;

struct events *events_create(void);
void events_destroy(struct events *ev);

/*
 * Records {"seq":N, "time":T, "event":TYPE, "vm":VM, ...fields}; takes the
 * reference to `fields` (NULL for none). Also logged at info level.
 */
void events_emit(struct events *ev, const char *type, const char *vm, json_t *fields);

/* The sequence number the next event will carry. */
uint64_t events_next_seq(struct events *ev);
/*
 * The event numbered *seq or the next one still kept (a malloc'd line with
 * its newline), waiting up to timeout_ms; NULL on timeout or after
 * events_wake(). Advances *seq past it.
 */
char *events_wait(struct events *ev, uint64_t *seq, int timeout_ms);
void events_wake(struct events *ev);

#endif
