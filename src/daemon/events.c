/* The event ring (see events.h). */
#include "daemon/events.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"

struct events {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t next;                 /* seq of the next event */
	unsigned wakeups;
	char *lines[EVENTS_RING];      /* seq % EVENTS_RING */
};

struct events *events_create(void)
{
	struct events *ev = calloc(1, sizeof(*ev));
	if (!ev)
		return NULL;
	pthread_mutex_init(&ev->lock, NULL);
	pthread_cond_init(&ev->cond, NULL);
	return ev;
}

void events_destroy(struct events *ev)
{
	if (!ev)
		return;
	for (unsigned i = 0; i < EVENTS_RING; i++)
		free(ev->lines[i]);
	pthread_cond_destroy(&ev->cond);
	pthread_mutex_destroy(&ev->lock);
	free(ev);
}

void events_emit(struct events *ev, const char *type, const char *vm, json_t *fields)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	json_t *o = fields && json_is_object(fields) ? fields : json_object();
	if (fields && o != fields)
		json_decref(fields);
	json_object_set_new(o, "event", json_string(type));
	json_object_set_new(o, "vm", json_string(vm));
	json_object_set_new(o, "time", json_real((double)ts.tv_sec + ts.tv_nsec / 1e9));
	pthread_mutex_lock(&ev->lock);
	json_object_set_new(o, "seq", json_integer((json_int_t)ev->next));
	char *line = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	if (line) {
		size_t n = strlen(line);
		char *with_nl = realloc(line, n + 2);
		if (with_nl) {
			with_nl[n] = '\n';
			with_nl[n + 1] = '\0';
			unsigned slot = (unsigned)(ev->next % EVENTS_RING);
			free(ev->lines[slot]);
			ev->lines[slot] = with_nl;
			ev->next++;
			log_info("event: %.*s", (int)n, with_nl);
		} else {
			free(line);
		}
	}
	pthread_cond_broadcast(&ev->cond);
	pthread_mutex_unlock(&ev->lock);
	json_decref(o);
}

uint64_t events_next_seq(struct events *ev)
{
	pthread_mutex_lock(&ev->lock);
	uint64_t n = ev->next;
	pthread_mutex_unlock(&ev->lock);
	return n;
}

char *events_wait(struct events *ev, uint64_t *seq, int timeout_ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&ev->lock);
	unsigned wakeups = ev->wakeups;
	while (*seq >= ev->next && wakeups == ev->wakeups &&
	       pthread_cond_timedwait(&ev->cond, &ev->lock, &until) != ETIMEDOUT)
		;
	char *line = NULL;
	if (*seq < ev->next) {
		if (ev->next - *seq > EVENTS_RING)
			*seq = ev->next - EVENTS_RING; /* the ring lost the older ones */
		line = strdup(ev->lines[*seq % EVENTS_RING]);
		(*seq)++;
	}
	pthread_mutex_unlock(&ev->lock);
	return line;
}

void events_wake(struct events *ev)
{
	pthread_mutex_lock(&ev->lock);
	ev->wakeups++;
	pthread_cond_broadcast(&ev->cond);
	pthread_mutex_unlock(&ev->lock);
}
