/*
 * The API's listening socket and libmicrohttpd daemon (see api.h).
 *
 * The accept loop is shojid's own, in front of libmicrohttpd, which gets
 * each client through MHD_add_connection(): MHD 0.9 closes a client past
 * MHD_OPTION_CONNECTION_LIMIT the moment it accepts it (the client reads
 * EOF, no answer), and with no connection open it polls a listener whose
 * accept fails for lack of descriptors in a loop. Here, while
 * API_MAX_CLIENTS are connected the listener is not polled, so a further
 * client waits in the listen backlog until one leaves; and a failing
 * accept pauses the loop for API_ACCEPT_BACKOFF_MS.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/unix-socket.h"
#include "daemon/api-internal.h"

#define API_BACKLOG           64
#define API_ACCEPT_BACKOFF_MS 100

struct api_acceptor {
	struct api *api;
	int listen_fd;
	int stop_fd;              /* eventfd: the loop ends */
	pthread_t thread;
	bool running;             /* the thread */
	pthread_mutex_t lock;
	pthread_cond_t changed;   /* a client came or left, or stopping */
	unsigned clients;         /* connections MHD has open */
	unsigned long started;    /* connections MHD has taken, ever */
	bool stopping;
};

int api_listen(const char *path)
{
	return unix_listen("API socket", path, API_BACKLOG, SOCK_NONBLOCK);
}

/* MHD counts its connections for us: the loop waits while API_MAX_CLIENTS are open. */
static void api_connection_notify(void *cls, struct MHD_Connection *c, void **socket_context,
				  enum MHD_ConnectionNotificationCode toe)
{
	(void)c, (void)socket_context;
	struct api_acceptor *a = cls;
	pthread_mutex_lock(&a->lock);
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		a->clients++;
		a->started++;
	} else if (a->clients > 0) {
		a->clients--;
	}
	pthread_cond_signal(&a->changed);
	pthread_mutex_unlock(&a->lock);
}

/* False once the server stops. */
static bool acceptor_wait_for_room(struct api_acceptor *a)
{
	pthread_mutex_lock(&a->lock);
	while (a->clients >= API_MAX_CLIENTS && !a->stopping)
		pthread_cond_wait(&a->changed, &a->lock);
	bool go = !a->stopping;
	pthread_mutex_unlock(&a->lock);
	return go;
}

/* Waits for a client or the stop; false on the stop. */
static bool acceptor_poll(struct api_acceptor *a, int timeout_ms, bool listen)
{
	struct pollfd p[2] = { { a->stop_fd, POLLIN, 0 }, { a->listen_fd, POLLIN, 0 } };
	int n = poll(p, listen ? 2 : 1, timeout_ms);
	return !(n > 0 && p[0].revents);
}

/*
 * Hands a client to MHD and waits (at most a second) until MHD has taken
 * it: MHD 0.9 adds it on its own thread, and only then counts it, so the
 * next turn's room check would otherwise not see it.
 */
static void acceptor_add(struct api_acceptor *a, int fd, struct sockaddr *addr, socklen_t len)
{
	pthread_mutex_lock(&a->lock);
	unsigned long before = a->started;
	pthread_mutex_unlock(&a->lock);
	/* MHD owns the descriptor now, and closes it if it cannot take it. */
	if (MHD_add_connection(a->api->mhd, fd, addr, len) != MHD_YES)
		return;
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 1;
	pthread_mutex_lock(&a->lock);
	while (a->started == before && !a->stopping &&
	       pthread_cond_timedwait(&a->changed, &a->lock, &deadline) == 0)
		;
	pthread_mutex_unlock(&a->lock);
}

static void *acceptor_main(void *arg)
{
	struct api_acceptor *a = arg;
	bool warned = false;
	while (acceptor_wait_for_room(a) && acceptor_poll(a, -1, true)) {
		struct sockaddr_storage addr;
		socklen_t len = sizeof(addr);
		int fd = accept4(a->listen_fd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			warned = false;
			acceptor_add(a, fd, (struct sockaddr *)&addr, len);
			continue;
		}
		if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
			continue;
		/* Out of descriptors or memory: the client stays in the backlog. */
		if (!warned)
			log_warn("API socket: cannot accept a client: %m; retrying every %d ms",
				 API_ACCEPT_BACKOFF_MS);
		warned = true;
		if (!acceptor_poll(a, API_ACCEPT_BACKOFF_MS, false))
			break;
	}
	return NULL;
}

static struct api_acceptor *acceptor_new(struct api *api, int listen_fd)
{
	struct api_acceptor *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	*a = (struct api_acceptor){ .api = api, .listen_fd = listen_fd };
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->changed, NULL);
	a->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (a->stop_fd < 0) {
		pthread_mutex_destroy(&a->lock);
		pthread_cond_destroy(&a->changed);
		free(a);
		return NULL;
	}
	return a;
}

static bool acceptor_start(struct api_acceptor *a)
{
	int rc = pthread_create(&a->thread, NULL, acceptor_main, a);
	if (rc != 0) {
		log_error("cannot start the API's accept thread: %s", strerror(rc));
		return false;
	}
	a->running = true;
	return true;
}

/* Ends the loop: no client reaches MHD afterwards (the listener stays open). */
static void acceptor_stop(struct api_acceptor *a)
{
	pthread_mutex_lock(&a->lock);
	a->stopping = true;
	pthread_cond_broadcast(&a->changed);
	pthread_mutex_unlock(&a->lock);
	uint64_t one = 1;
	ssize_t w = write(a->stop_fd, &one, sizeof(one));
	(void)w;
	if (a->running)
		pthread_join(a->thread, NULL);
	a->running = false;
}

/* After MHD_stop_daemon(): MHD's last connection notices name `a`. */
static void acceptor_free(struct api_acceptor *a)
{
	acceptor_stop(a);
	close(a->stop_fd);
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->changed);
	free(a);
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
	api->acceptor = acceptor_new(api, listen_fd);
	if (!api->acceptor) {
		log_error("cannot start the API server: out of memory or descriptors");
		close(listen_fd);
		free(api);
		return NULL;
	}
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
			 MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET;
	api->mhd = MHD_start_daemon(flags, 0, NULL, NULL, api_handle, api,
				    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				    /* Only a backstop: the accept loop keeps to API_MAX_CLIENTS.
				     * MHD frees a closed connection after telling us, and
				     * would refuse the next client meanwhile at the same limit. */
				    MHD_OPTION_CONNECTION_LIMIT, (unsigned)(2 * API_MAX_CLIENTS),
				    MHD_OPTION_CONNECTION_TIMEOUT, 120u,
				    MHD_OPTION_NOTIFY_COMPLETED, api_request_done, api,
				    MHD_OPTION_NOTIFY_CONNECTION, api_connection_notify, api->acceptor,
				    MHD_OPTION_END);
	if (!api->mhd || !acceptor_start(api->acceptor)) {
		log_error("cannot start the API server (libmicrohttpd)");
		if (api->mhd)
			MHD_stop_daemon(api->mhd);
		acceptor_free(api->acceptor);
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
	/*
	 * Relays notice `stopping` within a poll interval, an agent relay in the
	 * middle of a frame once that frame is through (at most its 30 s
	 * deadline): they use api, so it is not freed under them.
	 */
	for (int i = 0; i < 4000 && atomic_load(&api->relays) > 0; i++)
		usleep(10000);
	acceptor_stop(api->acceptor); /* no new client reaches MHD from here */
	MHD_stop_daemon(api->mhd);
	acceptor_free(api->acceptor);
	close(api->listen_fd);
	free(api);
}
