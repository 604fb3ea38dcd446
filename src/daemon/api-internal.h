/*
 * Shared between the API's request handlers (api.c), its long-lived
 * streams (api-stream.c: events, logs -f, consoles) and its server set-up
 * (api-server.c). Private to the daemon.
 */
#ifndef SHOJI_DAEMON_API_INTERNAL_H
#define SHOJI_DAEMON_API_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

#include "daemon/api.h"
#include "daemon/supervisor.h"

struct api {
	struct MHD_Daemon *mhd;
	struct sup *sup;
	struct events *events;
	atomic_bool stopping;
	atomic_int relays;        /* console and agent relay threads still running */
	atomic_int streams;       /* events, logs -f and consoles open, at most API_MAX_STREAMS */
	int listen_fd;
	struct api_acceptor *acceptor; /* the accept loop in front of MHD (api-server.c) */
};

static inline struct sup *api_sup(struct api *api)
{
	return api->sup;
}

enum MHD_Result api_handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			   const char *version, const char *data, size_t *data_size, void **con_cls);
void api_request_done(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe);

/* {"error": msg} with the status. */
enum MHD_Result api_send_error(struct MHD_Connection *c, unsigned status, const char *msg);

enum MHD_Result api_stream_events(struct api *api, struct MHD_Connection *c, const char *method);
enum MHD_Result api_stream_logs(struct api *api, struct MHD_Connection *c, const char *method,
				const char *name);
enum MHD_Result api_stream_console(struct api *api, struct MHD_Connection *c, const char *method,
				   const char *name);
enum MHD_Result api_stream_agent(struct api *api, struct MHD_Connection *c, const char *method,
				 const char *name);

/* The stream cap (api-stream.c): false (nothing held) when API_MAX_STREAMS are open. */
bool api_stream_take(struct api *api);
void api_stream_put(struct api *api);
enum MHD_Result api_too_many_streams(struct MHD_Connection *c);
/*
 * Runs fn(arg) in a detached thread counted in api->relays (api_stop waits
 * for them); false if no thread could be made (nothing counted).
 */
bool api_relay_start(struct api *api, void *(*fn)(void *), void *arg);
/* The HTTP status for a supervisor's answer. */
unsigned api_http_status(enum sup_status st);

#endif
