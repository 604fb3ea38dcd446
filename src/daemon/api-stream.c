/*
 * The API's long-lived responses: the event stream (JSON lines), `logs -f`
 * and interactive consoles (an HTTP upgrade to a raw byte stream). Each
 * runs in its connection's own thread (or, for a console, a relay thread)
 * and wakes at least every second to notice a daemon shutdown; an idle
 * event stream sends an empty line every HEARTBEAT_MS, which is also how a
 * vanished reader is noticed.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "daemon/api-internal.h"
#include "daemon/supervisor.h"
#include "daemon/vmlog.h"

#define HEARTBEAT_MS 10000
#define LOG_DUMP_MAX (2u << 20)

/* ---- /v1/events ---- */

struct event_stream {
	struct api *api;
	uint64_t seq;
	char *line;
	size_t off;
};

static ssize_t events_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct event_stream *es = cls;
	for (int waited = 0; !es->line; waited += 1000) {
		if (atomic_load(&es->api->stopping))
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (waited >= HEARTBEAT_MS) {
			buf[0] = '\n';
			return 1;
		}
		es->line = events_wait(es->api->events, &es->seq, 1000);
	}
	size_t n = strlen(es->line + es->off);
	if (n > max)
		n = max;
	memcpy(buf, es->line + es->off, n);
	es->off += n;
	if (es->line[es->off] == '\0') {
		free(es->line);
		es->line = NULL;
		es->off = 0;
	}
	return (ssize_t)n;
}

static void events_free(void *cls)
{
	struct event_stream *es = cls;
	free(es->line);
	free(es);
}

enum MHD_Result api_stream_events(struct api *api, struct MHD_Connection *c, const char *method)
{
	if (strcmp(method, "GET") != 0)
		return api_send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET on /v1/events");
	struct event_stream *es = calloc(1, sizeof(*es));
	if (!es)
		return MHD_NO;
	es->api = api;
	es->seq = events_next_seq(api->events);
	/* ?since=N: from event N on, as far as the ring still holds them. */
	const char *since = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since");
	if (since) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(since, &end, 10);
		if (!since[0] || *end || errno || since[0] == '-') {
			free(es);
			return api_send_error(c, MHD_HTTP_BAD_REQUEST,
					      "since: give an event number (0 for every event still kept)");
		}
		if (v < es->seq)
			es->seq = v;
	}
	struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, events_reader,
								   es, events_free);
	if (!r) {
		events_free(es);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "application/x-ndjson");
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---- /v1/vms/NAME/logs ---- */

struct log_stream {
	struct api *api;
	struct vmlog *log;
	void *ref;
	char *dump;
	size_t dump_len, dump_off;
	uint64_t pos;
};

static ssize_t logs_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct log_stream *ls = cls;
	if (ls->dump_off < ls->dump_len) {
		size_t n = ls->dump_len - ls->dump_off < max ? ls->dump_len - ls->dump_off : max;
		memcpy(buf, ls->dump + ls->dump_off, n);
		ls->dump_off += n;
		return (ssize_t)n;
	}
	for (;;) {
		if (atomic_load(&ls->api->stopping))
			return MHD_CONTENT_READER_END_OF_STREAM;
		size_t n = vmlog_read(ls->log, &ls->pos, buf, max, 1000);
		if (n)
			return (ssize_t)n;
	}
}

static void logs_free(void *cls)
{
	struct log_stream *ls = cls;
	sup_log_put(ls->api->sup, ls->ref);
	free(ls->dump);
	free(ls);
}

enum MHD_Result api_stream_logs(struct api *api, struct MHD_Connection *c, const char *method,
				const char *name)
{
	if (strcmp(method, "GET") != 0)
		return api_send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET on /v1/vms/NAME/logs");
	const char *follow = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "follow");
	struct log_stream *ls = calloc(1, sizeof(*ls));
	if (!ls)
		return MHD_NO;
	ls->api = api;
	ls->log = sup_log_get(api->sup, name, &ls->ref);
	if (!ls->log) {
		free(ls);
		char err[96];
		snprintf(err, sizeof(err), "no VM named '%s'", name);
		return api_send_error(c, MHD_HTTP_NOT_FOUND, err);
	}
	ls->pos = vmlog_position(ls->log); /* before the dump: a byte may repeat, none is lost */
	ls->dump = vmlog_dump(ls->log, LOG_DUMP_MAX, &ls->dump_len);
	struct MHD_Response *r;
	if (follow && strcmp(follow, "0") != 0) {
		r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, logs_reader, ls, logs_free);
	} else {
		r = MHD_create_response_from_buffer(ls->dump ? ls->dump_len : 0, ls->dump,
						    MHD_RESPMEM_MUST_COPY);
		logs_free(ls);
	}
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---- /v1/vms/NAME/console ---- */

struct relay {
	struct api *api;
	void *ref;
	struct vmlog *log;
	MHD_socket sock;
	struct MHD_UpgradeResponseHandle *urh;
};

static bool send_all(int fd, const char *buf, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
		if (w <= 0)
			return false;
		buf += w;
		n -= (size_t)w;
	}
	return true;
}

/* Guest output to the client, the client's keys to the guest, until either side ends. */
static void *relay_thread(void *arg)
{
	struct relay *rl = arg;
	uint64_t pos = vmlog_position(rl->log);
	char buf[4096];
	bool open = true;
	while (open && !atomic_load(&rl->api->stopping)) {
		struct pollfd p = { .fd = rl->sock, .events = POLLIN };
		if (poll(&p, 1, 20) > 0) {
			ssize_t r = recv(rl->sock, buf, sizeof(buf), 0);
			open = r > 0 && (sup_console_write(rl->api->sup, rl->ref, buf, (size_t)r), true);
		}
		size_t n;
		while (open && (n = vmlog_read(rl->log, &pos, buf, sizeof(buf), 0)) > 0)
			open = send_all(rl->sock, buf, n);
	}
	MHD_upgrade_action(rl->urh, MHD_UPGRADE_ACTION_CLOSE);
	sup_log_put(rl->api->sup, rl->ref);
	atomic_fetch_sub(&rl->api->relays, 1);
	free(rl);
	return NULL;
}

static void on_upgrade(void *cls, struct MHD_Connection *c, void *req_cls, const char *extra,
		       size_t extra_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
	(void)c;
	(void)req_cls;
	struct relay *rl = cls;
	rl->sock = sock;
	rl->urh = urh;
	if (extra_size)
		sup_console_write(rl->api->sup, rl->ref, extra, extra_size);
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	atomic_fetch_add(&rl->api->relays, 1);
	if (pthread_create(&t, &attr, relay_thread, rl) != 0) {
		atomic_fetch_sub(&rl->api->relays, 1);
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		sup_log_put(rl->api->sup, rl->ref);
		free(rl);
	}
	pthread_attr_destroy(&attr);
}

enum MHD_Result api_stream_console(struct api *api, struct MHD_Connection *c, const char *method,
				   const char *name)
{
	if (strcmp(method, "POST") != 0)
		return api_send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use POST with Upgrade: shoji-console");
	const char *up = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Upgrade");
	if (!up || strcmp(up, "shoji-console") != 0)
		return api_send_error(c, MHD_HTTP_BAD_REQUEST,
				      "a console needs the headers Connection: Upgrade and Upgrade: shoji-console");
	struct relay *rl = calloc(1, sizeof(*rl));
	if (!rl)
		return MHD_NO;
	rl->api = api;
	rl->log = sup_log_get(api->sup, name, &rl->ref);
	if (!rl->log) {
		free(rl);
		char err[96];
		snprintf(err, sizeof(err), "no VM named '%s'", name);
		return api_send_error(c, MHD_HTTP_NOT_FOUND, err);
	}
	struct MHD_Response *r = MHD_create_response_for_upgrade(on_upgrade, rl);
	if (!r) {
		sup_log_put(api->sup, rl->ref);
		free(rl);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_UPGRADE, "shoji-console");
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_SWITCHING_PROTOCOLS, r);
	MHD_destroy_response(r);
	return ret;
}
