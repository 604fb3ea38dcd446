/*
 * virtio-vsock's host side on Unix sockets (see vsock-host.h).
 *
 * A host program's connection starts in the handshake: its command is read
 * one byte at a time, so nothing after the newline is consumed before the
 * guest accepted (those bytes are the stream's first), and a line longer
 * than VSOCK_HOST_LINE_MAX is refused. At most VSOCK_HOST_MAX_HANDSHAKE
 * handshakes are open at once: at the bound the listener is held and later
 * programs wait in the kernel's backlog (vmm/listener.h), so a burst is
 * served in turn, never dropped. Every refusal is an "ERR <why>\n" line.
 * Then the connection belongs to the device,
 * which reads and writes the descriptor through the backend callbacks and
 * says which readiness it waits for (an edge-triggered watch, see
 * be_want).
 */
#include "vmm/vsock-host.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"
#include "base/unix-socket.h"
#include "base/util.h"
#include "dev/virtio-pci.h"
#include "vmm/listener.h"

enum hc_state {
	HC_HANDSHAKE,  /* reading "CONNECT <port>\n"; the host side's */
	HC_DEVICE,     /* the device's, until backend close */
	HC_DEAD,
};

struct host_conn {
	struct vsock_host *h;
	int fd;
	struct io_watch *w;
	atomic_uint id;           /* the device's connection id; 0 until known */
	uint32_t events;          /* EPOLLIN/EPOLLOUT armed on w (be_want) */
	enum hc_state state;
	bool accept_pending;      /* a guest's connect the host program has not accepted */
	uint32_t port;            /* ... to PATH_<port> */
	long deadline;            /* monotonic ms: the accept is given up, or the handshake */
	char line[VSOCK_HOST_LINE_MAX];
	unsigned line_len;
	struct host_conn *prev, *next;
};

struct vsock_host {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;
	struct listener *listener;
	struct iothread *io;      /* NULL once the I/O thread is gone */
	struct virtio_vsock *vs;
	pthread_mutex_t lock;     /* the list, the counts and listen_held */
	struct host_conn *conns;
	unsigned handshakes;      /* HC_HANDSHAKE connections */
	unsigned device_conns;    /* HC_DEVICE connections: one descriptor each */
	unsigned max_conns;       /* the bound on device_conns (vsock_host_fd_budget) */
	bool listen_held;
	unsigned accepts_pending; /* guest connects waiting for a full backlog */
	int timer_fd;             /* retries those, ends silent handshakes (on_timer) */
	struct io_watch *timer_w;
	long timer_ms;            /* its period now; 0: stopped */
};

/* ---- the descriptor budget ---- */

/* Descriptors open now; a generous guess when /proc is not there. */
static unsigned long long fds_in_use(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return 256;
	unsigned long long n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/*
 * Connections the guest and host programs may hold: each is a descriptor,
 * so they stay below RLIMIT_NOFILE with room for what is open now, for
 * VSOCK_HOST_FD_RESERVE more of the VMM's own and for the handshakes.
 */
static unsigned vsock_host_fd_budget(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return VSOCK_MAX_CONNS;
	unsigned long long reserve = fds_in_use() + VSOCK_HOST_FD_RESERVE + VSOCK_HOST_MAX_HANDSHAKE;
	unsigned long long room = rl.rlim_cur > reserve ? rl.rlim_cur - reserve : 0;
	if (room < VSOCK_MAX_CONNS)
		log_info("vsock: at most %llu connections: the file descriptor limit is %llu",
			 room, (unsigned long long)rl.rlim_cur);
	return room < VSOCK_MAX_CONNS ? (unsigned)room : VSOCK_MAX_CONNS;
}

/*
 * The timer ticks every VSOCK_HOST_RETRY_MS while a guest's connect waits
 * for a full backlog, every second while only handshakes are open (to end
 * those past their deadline), and not at all otherwise. h->lock held.
 */
static void host_update_timer(struct vsock_host *h)
{
	long ms = h->accepts_pending ? VSOCK_HOST_RETRY_MS : h->handshakes ? 1000 : 0;
	if (ms == h->timer_ms || h->timer_fd < 0)
		return;
	struct itimerspec t = { .it_interval = { ms / 1000, ms % 1000 * 1000000L },
				.it_value = { ms / 1000, ms % 1000 * 1000000L } };
	if (timerfd_settime(h->timer_fd, 0, &t, NULL) == 0)
		h->timer_ms = ms;
}

/*
 * Back-pressure on host programs: while VSOCK_HOST_MAX_HANDSHAKE of them
 * have not sent their line, the listener is held and the rest wait in the
 * kernel's backlog. Called with h->lock held, after a count changed.
 */
static void host_update_listener(struct vsock_host *h)
{
	bool hold = h->handshakes >= VSOCK_HOST_MAX_HANDSHAKE;
	if (hold == h->listen_held || !h->io || !h->listener)
		return;
	h->listen_held = hold;
	listener_hold(h->listener, hold);
}

/* ---- connections ---- */

/* A connection on `fd`; NULL when out of memory or, for HC_DEVICE, out of budget. */
static struct host_conn *hc_new(struct vsock_host *h, int fd, enum hc_state state)
{
	struct host_conn *hc = calloc(1, sizeof(*hc));
	if (!hc) {
		log_error("vsock: out of memory for a connection");
		return NULL;
	}
	hc->h = h;
	hc->fd = fd;
	hc->state = state;
	pthread_mutex_lock(&h->lock);
	if (state == HC_DEVICE && h->device_conns >= h->max_conns) {
		pthread_mutex_unlock(&h->lock); /* the budget went meanwhile */
		free(hc);
		return NULL;
	}
	hc->next = h->conns;
	if (h->conns)
		h->conns->prev = hc;
	h->conns = hc;
	if (state == HC_HANDSHAKE) {
		h->handshakes++;
		hc->deadline = monotonic_ms() + VSOCK_HOST_HANDSHAKE_MS;
	} else {
		h->device_conns++;
	}
	host_update_listener(h);
	host_update_timer(h);
	pthread_mutex_unlock(&h->lock);
	return hc;
}

static void hc_free(void *ctx)
{
	struct host_conn *hc = ctx;
	close(hc->fd);
	free(hc);
}

/*
 * Ends a connection: the host program sees EOF at once (shutdown), the
 * descriptor is closed and the memory freed after any callback in progress.
 */
static void hc_release(struct host_conn *hc)
{
	struct vsock_host *h = hc->h;
	if (h->io) /* otherwise the watches went with the I/O thread */
		iothread_unwatch(hc->w);
	hc->w = NULL;
	shutdown(hc->fd, SHUT_RDWR);
	pthread_mutex_lock(&h->lock);
	if (hc->state == HC_HANDSHAKE)
		h->handshakes--;
	else if (hc->state == HC_DEVICE)
		h->device_conns--;
	if (hc->accept_pending)
		h->accepts_pending--;
	hc->accept_pending = false;
	hc->state = HC_DEAD;
	if (hc->prev)
		hc->prev->next = hc->next;
	else
		h->conns = hc->next;
	if (hc->next)
		hc->next->prev = hc->prev;
	host_update_listener(h);
	host_update_timer(h);
	pthread_mutex_unlock(&h->lock);
	if (!h->io || !iothread_call(h->io, hc_free, hc))
		hc_free(hc);
}

/*
 * Tells the host program why it gets no connection: "ERR <why>\n", the
 * only bytes it has been sent (so they fit the empty socket buffer).
 */
static void send_error(int fd, const char *why)
{
	char line[80];
	int n = snprintf(line, sizeof(line), "ERR %s\n", why);
	ssize_t w = send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)w; /* the program went away: nobody to tell */
}

static void hc_send_error(struct host_conn *hc, const char *why)
{
	send_error(hc->fd, why);
}

static void hc_refuse(struct host_conn *hc, const char *why)
{
	hc_send_error(hc, why);
	hc_release(hc);
}

/* The host side ended a connection itself (be_want); the device learns it as a hang-up. */
static void hc_hung_up(void *ctx)
{
	struct host_conn *hc = ctx;
	virtio_vsock_host_ready(hc->h->vs, atomic_load(&hc->id), VSOCK_EV_HUP);
}

static void on_conn_event(void *ctx, uint32_t events)
{
	struct host_conn *hc = ctx;
	unsigned ev = 0;
	if (events & EPOLLIN)
		ev |= VSOCK_EV_READ;
	if (events & EPOLLOUT)
		ev |= VSOCK_EV_WRITE;
	if (events & (EPOLLHUP | EPOLLERR))
		ev |= VSOCK_EV_HUP;
	virtio_vsock_host_ready(hc->h->vs, atomic_load(&hc->id), ev);
}

/* ---- the handshake ---- */

bool vsock_host_parse_connect(const char *line, size_t len, uint32_t *port)
{
	uint64_t v;
	/* A NUL inside would end the text early: "CONNECT 5\0junk" is not a command. */
	if (len < 8 || memchr(line, '\0', len) || line[len] != '\0')
		return false;
	if (strncmp(line, "CONNECT ", 8) != 0 || !parse_uint(line + 8, 0, UINT32_MAX, &v))
		return false;
	*port = (uint32_t)v;
	return true;
}

/* The handshake slot becomes a device connection, if the budget has room. */
static bool hc_become_device(struct host_conn *hc)
{
	struct vsock_host *h = hc->h;
	pthread_mutex_lock(&h->lock);
	bool room = h->device_conns < h->max_conns;
	if (room) {
		hc->state = HC_DEVICE;
		h->handshakes--;
		h->device_conns++;
		host_update_listener(h);
		host_update_timer(h);
	}
	pthread_mutex_unlock(&h->lock);
	return room;
}

/* The line is complete: hand the connection to the device, or refuse it. */
static void handshake_done(struct host_conn *hc)
{
	struct vsock_host *h = hc->h;
	uint32_t port;
	if (!vsock_host_parse_connect(hc->line, hc->line_len, &port)) {
		log_debug("vsock: host program sent '%.*s', not CONNECT <port>; refusing",
			  VSOCK_HOST_LINE_MAX, hc->line);
		hc_refuse(hc, VSOCK_HOST_ERR_NOT_CONNECT);
		return;
	}
	if (!hc_become_device(hc)) {
		log_debug("vsock: %u connections open; refusing a host program", h->max_conns);
		hc_refuse(hc, VSOCK_WHY_TOO_MANY);
		return;
	}
	iothread_unwatch(hc->w);
	hc->w = NULL;
	const char *why;
	uint32_t id = virtio_vsock_host_connect(h->vs, port, hc, &why);
	if (id == 0) {
		log_debug("vsock: host program for port %u refused: %s", port, why);
		hc_refuse(hc, why);
		return;
	}
	atomic_store(&hc->id, id);
}

static void on_handshake(void *ctx, uint32_t events)
{
	(void)events;
	struct host_conn *hc = ctx;
	for (;;) {
		char c;
		ssize_t n = recv(hc->fd, &c, 1, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			log_debug("vsock: host program closed before CONNECT");
			hc_release(hc);
			return;
		}
		if (c == '\n') {
			hc->line[hc->line_len] = '\0';
			handshake_done(hc);
			return;
		}
		if (hc->line_len == VSOCK_HOST_LINE_MAX - 1) {
			log_debug("vsock: host program sent a line longer than %d bytes; refusing",
				  VSOCK_HOST_LINE_MAX - 1);
			hc_refuse(hc, VSOCK_HOST_ERR_LONG_LINE);
			return;
		}
		hc->line[hc->line_len++] = c;
	}
}

/* A host program the listener accepted (it holds itself when handshakes are full). */
static void on_accept(void *ctx, int fd)
{
	struct vsock_host *h = ctx;
	struct host_conn *hc = hc_new(h, fd, HC_HANDSHAKE);
	if (!hc) {
		send_error(fd, VSOCK_HOST_ERR_RESOURCES);
		close(fd);
		return;
	}
	hc->w = iothread_watch(h->io, fd, EPOLLIN, on_handshake, hc);
	if (!hc->w)
		hc_refuse(hc, VSOCK_HOST_ERR_RESOURCES);
}

/* ---- the device's callbacks ---- */

/* PATH_<port>: where a host program listens for the guest's connections to port. */
static bool host_port_addr(const struct vsock_host *h, uint32_t port, struct sockaddr_un *addr)
{
	*addr = (struct sockaddr_un){ .sun_family = AF_UNIX };
	int len = snprintf(addr->sun_path, sizeof(addr->sun_path), "%.*s_%u", VSOCK_HOST_PATH_MAX, h->path, port);
	return len > 0 && (size_t)len < sizeof(addr->sun_path);
}

/*
 * The guest connects to PATH_<port>. A Unix connect completes at once or
 * fails; EAGAIN means the host program's backlog is full, not that nobody
 * listens, so the connection waits (the guest hears nothing yet) and is
 * retried until VSOCK_HOST_ACCEPT_WAIT_MS have passed.
 *
 * A host program slow to accept() therefore costs nothing: while its
 * backlog has room the kernel completes the connect without the accept
 * (the guest's first bytes wait in the new socket), and the socket is
 * non-blocking, so neither the vCPU thread serving the guest's REQUEST
 * here nor the I/O thread retrying (retry_pending) ever waits for it.
 */
static void *be_connect(void *ctx, uint32_t port, uint32_t id, bool *later)
{
	struct vsock_host *h = ctx;
	pthread_mutex_lock(&h->lock);
	bool room = h->device_conns < h->max_conns;
	pthread_mutex_unlock(&h->lock);
	if (!room) {
		log_debug("vsock: %u connections open; refusing the guest's to port %u", h->max_conns, port);
		return NULL;
	}
	struct sockaddr_un addr;
	if (!host_port_addr(h, port, &addr))
		return NULL;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	bool full = false;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		full = errno == EAGAIN && h->io;
		if (!full) {
			log_debug("vsock: guest connection to %s refused: %m", addr.sun_path);
			close(fd);
			return NULL;
		}
	}
	struct host_conn *hc = hc_new(h, fd, HC_DEVICE);
	if (!hc) {
		close(fd);
		return NULL;
	}
	atomic_store(&hc->id, id);
	if (full) {
		log_debug("vsock: %s is not accepting yet; the guest's connection waits", addr.sun_path);
		pthread_mutex_lock(&h->lock);
		hc->accept_pending = true;
		hc->port = port;
		hc->deadline = monotonic_ms() + VSOCK_HOST_ACCEPT_WAIT_MS;
		h->accepts_pending++;
		host_update_timer(h);
		pthread_mutex_unlock(&h->lock);
		*later = true;
	}
	return hc;
}

struct accept_result {
	uint32_t id;
	bool ok;
};

/*
 * Connects the waiting guest connections whose host program made room,
 * gives up those past their deadline; at most `max` answers into `out`
 * (the device is told after h->lock is dropped: it is taken inside the
 * device's lock elsewhere).
 */
static unsigned retry_pending(struct vsock_host *h, struct accept_result *out, unsigned max)
{
	unsigned n = 0;
	long now = monotonic_ms();
	pthread_mutex_lock(&h->lock);
	for (struct host_conn *hc = h->conns; hc && n < max; hc = hc->next) {
		if (hc->state != HC_DEVICE || !hc->accept_pending)
			continue;
		struct sockaddr_un addr;
		host_port_addr(h, hc->port, &addr);
		bool ok = connect(hc->fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 || errno == EISCONN;
		if (!ok && errno == EAGAIN && now < hc->deadline)
			continue;
		hc->accept_pending = false;
		h->accepts_pending--;
		out[n++] = (struct accept_result){ atomic_load(&hc->id), ok };
	}
	host_update_timer(h);
	pthread_mutex_unlock(&h->lock);
	return n;
}

/*
 * Host programs that sent no line by their deadline: a silent one must
 * not hold a handshake place, and with it the listener, for ever. Only
 * the I/O thread ends handshakes, so the pointers stay good after the
 * lock is dropped.
 */
static void end_silent_handshakes(struct vsock_host *h)
{
	struct host_conn *late[VSOCK_HOST_MAX_HANDSHAKE];
	unsigned n = 0;
	long now = monotonic_ms();
	pthread_mutex_lock(&h->lock);
	for (struct host_conn *hc = h->conns; hc && n < ARRAY_SIZE(late); hc = hc->next)
		if (hc->state == HC_HANDSHAKE && now >= hc->deadline)
			late[n++] = hc;
	pthread_mutex_unlock(&h->lock);
	for (unsigned i = 0; i < n; i++) {
		log_debug("vsock: host program sent no CONNECT line in %d ms; refusing", VSOCK_HOST_HANDSHAKE_MS);
		hc_refuse(late[i], VSOCK_HOST_ERR_TIMEOUT);
	}
}

static void on_timer(void *ctx, uint32_t events)
{
	(void)events;
	struct vsock_host *h = ctx;
	uint64_t ticks;
	ssize_t r = read(h->timer_fd, &ticks, sizeof(ticks));
	(void)r;
	struct accept_result res[64];
	unsigned n = retry_pending(h, res, ARRAY_SIZE(res));
	for (unsigned i = 0; i < n; i++)
		virtio_vsock_host_accepted(h->vs, res[i].id, res[i].ok);
	end_silent_handshakes(h);
}

static void be_established(void *ctx, void *conn, uint32_t local_port)
{
	(void)ctx;
	struct host_conn *hc = conn;
	char ok[24];
	int n = snprintf(ok, sizeof(ok), "OK %u\n", local_port);
	/* A few bytes into an empty socket buffer; a failure shows at the next read. */
	ssize_t w = send(hc->fd, ok, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)w;
}

static ssize_t be_send(void *ctx, void *conn, const struct iovec *iov, unsigned n)
{
	(void)ctx;
	struct host_conn *hc = conn;
	struct msghdr msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = n };
	ssize_t r = sendmsg(hc->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	return r < 0 ? -errno : r;
}

static ssize_t be_recv(void *ctx, void *conn, const struct iovec *iov, unsigned n)
{
	(void)ctx;
	struct host_conn *hc = conn;
	struct msghdr msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = n };
	ssize_t r = recvmsg(hc->fd, &msg, MSG_DONTWAIT);
	return r < 0 ? -errno : r;
}

/*
 * The watch is edge-triggered and, once armed, keeps EPOLLIN: the device
 * reads until EAGAIN before it waits again (host_readable), so no edge is
 * lost, and leaving EPOLLIN armed while the device does not want it costs at
 * most one wake-up per write of the host program (bounded by its socket
 * buffer), where re-arming cost two epoll_ctl calls per packet. EPOLLOUT
 * follows the device exactly (the peer's reads would wake us for nothing).
 * An empty mask still reports a hang-up, but edge-triggered only once.
 */
static void be_want(void *ctx, void *conn, unsigned want)
{
	struct vsock_host *h = ctx;
	struct host_conn *hc = conn;
	uint32_t events = (want & VSOCK_WANT_READ ? EPOLLIN : 0) |
			  (want & VSOCK_WANT_WRITE ? EPOLLOUT : 0);
	if (!h->io)
		return;
	events |= hc->events & EPOLLIN;
	bool ok = true;
	if (!hc->w) {
		if (!events)
			return;
		hc->w = iothread_watch(h->io, hc->fd, events | EPOLLET, on_conn_event, hc);
		ok = hc->w != NULL;
	} else if (events != hc->events) {
		ok = iothread_watch_events(hc->w, events | EPOLLET);
	}
	if (ok) {
		hc->events = events;
		return;
	}
	/*
	 * Unwatched, the connection would wait for ever (the device asks
	 * again only when what it wants changes): end it. Both sides read
	 * EOF; the device hears of it on the I/O thread (it holds its lock
	 * here), before hc can be freed (iothread_call runs in order).
	 */
	shutdown(hc->fd, SHUT_RDWR);
	if (!iothread_call(h->io, hc_hung_up, hc))
		log_error("vsock: connection %u cannot be watched and stays open", atomic_load(&hc->id));
}

static void be_shutdown_write(void *ctx, void *conn)
{
	(void)ctx;
	shutdown(((struct host_conn *)conn)->fd, SHUT_WR);
}

static void be_refused(void *ctx, void *conn, const char *why)
{
	(void)ctx;
	hc_send_error(conn, why);
}

static void be_close(void *ctx, void *conn)
{
	(void)ctx;
	hc_release(conn);
}

static void be_wake(void *ctx, struct virtio_dev *vd)
{
	(void)ctx;
	virtio_pci_kick(vd, VIRTIO_VSOCK_QUEUE_RX);
}

struct vsock_backend vsock_host_backend(struct vsock_host *h)
{
	return (struct vsock_backend){
		.connect = be_connect, .established = be_established, .send = be_send,
		.recv = be_recv, .want = be_want, .shutdown_write = be_shutdown_write,
		.refused = be_refused, .close = be_close, .wake = be_wake, .ctx = h,
	};
}

/* ---- lifecycle ---- */

/* Removes a stale socket at path; false (logged) if something else is there. */
struct vsock_host *vsock_host_create(const char *path, struct iothread *io)
{
	if (strlen(path) > VSOCK_HOST_PATH_MAX) {
		log_error("vsock socket %s: longer than %d bytes", path, VSOCK_HOST_PATH_MAX);
		return NULL;
	}
	struct vsock_host *h = calloc(1, sizeof(*h));
	if (!h) {
		log_error("vsock: out of memory");
		return NULL;
	}
	pthread_mutex_init(&h->lock, NULL);
	memcpy(h->path, path, strlen(path) + 1);
	h->io = io;
	h->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (h->timer_fd < 0) {
		log_error("vsock: cannot create a timer: %m");
		pthread_mutex_destroy(&h->lock);
		free(h);
		return NULL;
	}
	h->listen_fd = unix_listen("vsock socket", path, VSOCK_HOST_BACKLOG, SOCK_NONBLOCK);
	if (h->listen_fd < 0) {
		close(h->timer_fd);
		pthread_mutex_destroy(&h->lock);
		free(h);
		return NULL;
	}
	return h;
}

bool vsock_host_start(struct vsock_host *h, struct virtio_vsock *vs)
{
	h->vs = vs;
	h->max_conns = vsock_host_fd_budget();
	h->timer_w = iothread_watch(h->io, h->timer_fd, EPOLLIN, on_timer, h);
	h->listener = listener_create(h->io, h->listen_fd, "vsock socket", on_accept, h);
	return h->timer_w && h->listener;
}

unsigned vsock_host_max_conns(struct vsock_host *h)
{
	return h->max_conns;
}

void vsock_host_detach_io(struct vsock_host *h)
{
	if (h)
		h->io = NULL;
}

void vsock_host_destroy(struct vsock_host *h)
{
	if (!h)
		return;
	listener_destroy(h->listener, !h->io);
	h->listener = NULL;
	if (h->io)
		iothread_unwatch(h->timer_w);
	close(h->timer_fd);
	h->timer_fd = -1; /* hc_release below must not set it */
	close(h->listen_fd);
	unlink(h->path);
	/* Handshakes still open, or connections of a device that was never reset. */
	while (h->conns)
		hc_release(h->conns);
	pthread_mutex_destroy(&h->lock);
	free(h);
}
