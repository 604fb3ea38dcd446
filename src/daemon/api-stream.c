/*
 * The API's long-lived responses: the event stream (JSON lines), `logs -f`
 * and interactive consoles (an HTTP upgrade to a raw byte stream). Each
 * runs in its connection's own thread (or, for a console, a relay thread)
 * and wakes at least every second to notice a daemon shutdown and a
 * client that left (POLLRDHUP on its socket: MHD itself only notices on a
 * write, and a quiet log might never write again); an idle event stream
 * also sends an empty line every HEARTBEAT_MS. Streams have a cap of
 * their own (API_MAX_STREAMS), below the connection limit.
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
#define SEND_STEP_MS 100
#define SEND_STALL_MS 30000

/* ---- the stream cap ---- */

/*
 * Streams live as long as their clients, so they have a cap of their own
 * below the connection limit: API_MAX_STREAMS event readers cannot lock
 * out ordinary requests. False (and nothing held) when the cap is reached.
 */
bool api_stream_take(struct api *api)
{
	if (atomic_fetch_add(&api->streams, 1) < API_MAX_STREAMS)
		return true;
	atomic_fetch_sub(&api->streams, 1);
	return false;
}

void api_stream_put(struct api *api)
{
	atomic_fetch_sub(&api->streams, 1);
}

enum MHD_Result api_too_many_streams(struct MHD_Connection *c)
{
	char msg[128];
	snprintf(msg, sizeof(msg), "too many open streams (%d events, logs -f, consoles and agent operations); close one", API_MAX_STREAMS);
	return api_send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, msg);
}

/*
 * The connection's socket, to notice a client that left while the stream
 * had nothing to send (MHD only notices on a write): -1 if unknown.
 */
static int stream_socket(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	return ci ? (int)ci->connect_fd : -1;
}

static bool client_left(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };
	return fd >= 0 && poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* ---- /v1/events ---- */

struct event_stream {
	struct api *api;
	int sock;
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
		if (client_left(es->sock))
			return MHD_CONTENT_READER_END_WITH_ERROR;
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
	api_stream_put(es->api);
	free(es->line);
	free(es);
}

enum MHD_Result api_stream_events(struct api *api, struct MHD_Connection *c, const char *method)
{
	if (strcmp(method, "GET") != 0)
		return api_send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET on /v1/events");
	if (!api_stream_take(api))
		return api_too_many_streams(c);
	struct event_stream *es = calloc(1, sizeof(*es));
	if (!es) {
		api_stream_put(api);
		return MHD_NO;
	}
	es->api = api;
	es->sock = stream_socket(c);
	es->seq = events_next_seq(api->events);
	/* ?since=N: from event N on, as far as the ring still holds them. */
	const char *since = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since");
	if (since) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(since, &end, 10);
		if (!since[0] || *end || errno || since[0] == '-') {
			events_free(es);
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
	int sock;
	bool counted;             /* holds one of the stream cap's places */
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
		if (client_left(ls->sock))
			return MHD_CONTENT_READER_END_WITH_ERROR;
		size_t n = vmlog_read(ls->log, &ls->pos, buf, max, 1000);
		if (n)
			return (ssize_t)n;
	}
}

static void logs_free(void *cls)
{
	struct log_stream *ls = cls;
	if (ls->counted)
		api_stream_put(ls->api);
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
	bool following = follow && strcmp(follow, "0") != 0;
	if (following && !api_stream_take(api))
		return api_too_many_streams(c);
	struct log_stream *ls = calloc(1, sizeof(*ls));
	if (!ls) {
		if (following)
			api_stream_put(api);
		return MHD_NO;
	}
	ls->api = api;
	ls->counted = following;
	ls->sock = stream_socket(c);
	ls->log = sup_log_get(api->sup, name, &ls->ref);
	if (!ls->log) {
		if (following)
			api_stream_put(api);
		free(ls);
		char err[96];
		snprintf(err, sizeof(err), "no VM named '%s'", name);
		return api_send_error(c, MHD_HTTP_NOT_FOUND, err);
	}
	ls->pos = vmlog_position(ls->log); /* before the dump: a byte may repeat, none is lost */
	ls->dump = vmlog_dump(ls->log, LOG_DUMP_MAX, &ls->dump_len);
	struct MHD_Response *r;
	if (following) {
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

/* ---- relay threads (consoles, agent operations) ---- */

bool api_relay_start(struct api *api, void *(*fn)(void *), void *arg)
{
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	atomic_fetch_add(&api->relays, 1);
	bool started = pthread_create(&t, &attr, fn, arg) == 0;
	if (!started)
		atomic_fetch_sub(&api->relays, 1);
	pthread_attr_destroy(&attr);
	return started;
}

/* ---- /v1/vms/NAME/console ---- */

struct relay {
	struct api *api;
	void *ref;
	struct vmlog *log;
	MHD_socket sock;
	struct MHD_UpgradeResponseHandle *urh;
};

/*
 * The upgraded socket is non-blocking: a client that reads slower than
 * the guest writes gets EAGAIN, which means wait, not close. The wait is
 * in steps (a daemon shutdown is noticed) and ends after SEND_STALL_MS
 * without progress: a client that stopped reading for good.
 */
static bool send_all(struct relay *rl, const char *buf, size_t n)
{
	int stalled = 0;
	while (n > 0) {
		ssize_t w = send(rl->sock, buf, n, MSG_NOSIGNAL);
		if (w > 0) {
			buf += w;
			n -= (size_t)w;
			stalled = 0;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) || stalled >= SEND_STALL_MS ||
		    atomic_load(&rl->api->stopping))
			return false;
		struct pollfd p = { .fd = rl->sock, .events = POLLOUT };
		poll(&p, 1, SEND_STEP_MS);
		stalled += SEND_STEP_MS;
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
			open = send_all(rl, buf, n);
	}
	MHD_upgrade_action(rl->urh, MHD_UPGRADE_ACTION_CLOSE);
	sup_log_put(rl->api->sup, rl->ref);
	api_stream_put(rl->api);
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
	if (!api_relay_start(rl->api, relay_thread, rl)) {
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		sup_log_put(rl->api->sup, rl->ref);
		api_stream_put(rl->api);
		free(rl);
	}
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
	if (!api_stream_take(api))
		return api_too_many_streams(c);
	struct relay *rl = calloc(1, sizeof(*rl));
	if (!rl) {
		api_stream_put(api);
		return MHD_NO;
	}
	rl->api = api;
	rl->log = sup_log_get(api->sup, name, &rl->ref);
	if (!rl->log) {
		api_stream_put(api);
		free(rl);
		char err[96];
		snprintf(err, sizeof(err), "no VM named '%s'", name);
		return api_send_error(c, MHD_HTTP_NOT_FOUND, err);
	}
	struct MHD_Response *r = MHD_create_response_for_upgrade(on_upgrade, rl);
	if (!r) {
		sup_log_put(api->sup, rl->ref);
		api_stream_put(api);
		free(rl);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_UPGRADE, "shoji-console");
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_SWITCHING_PROTOCOLS, r);
	MHD_destroy_response(r);
	return ret;
}
