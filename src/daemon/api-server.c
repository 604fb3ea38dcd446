/* The API's listening socket and libmicrohttpd daemon (see api.h). */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"
#include "base/unix-socket.h"
#include "daemon/api-internal.h"

int api_listen(const char *path)
{
	return unix_listen("API socket", path, 64, 0);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	size_t n = strlen(msg);
	if (n && msg[n - 1] == '\n')
		msg[n - 1] = '\0';
	log_debug("libmicrohttpd: %s", msg);
}

struct api *api_start(int listen_fd, struct sup *sup, struct events *events)
{
	struct api *api = calloc(1, sizeof(*api));
	if (!api) {
		close(listen_fd);
		return NULL;
	}
	api->sup = sup;
	api->events = events;
	api->listen_fd = listen_fd;
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
			 MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG;
	api->mhd = MHD_start_daemon(flags, 0, NULL, NULL, api_handle, api,
				    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				    MHD_OPTION_LISTEN_SOCKET, listen_fd,
				    MHD_OPTION_CONNECTION_LIMIT, (unsigned)API_MAX_CLIENTS,
				    MHD_OPTION_CONNECTION_TIMEOUT, 120u,
				    MHD_OPTION_NOTIFY_COMPLETED, api_request_done, api,
				    MHD_OPTION_END);
	if (!api->mhd) {
		log_error("cannot start the API server (libmicrohttpd)");
		close(listen_fd);
		free(api);
		return NULL;
	}
	return api;
}

void api_stop(struct api *api)
{
	if (!api)
		return;
	atomic_store(&api->stopping, true);
	events_wake(api->events);
	/* Console relays notice `stopping` within a poll interval. */
	for (int i = 0; i < 200 && atomic_load(&api->relays) > 0; i++)
		usleep(10000);
	/* MHD_stop_daemon closes the MHD_OPTION_LISTEN_SOCKET itself: a second close could hit another thread's descriptor. */
	MHD_stop_daemon(api->mhd);
	free(api);
}
