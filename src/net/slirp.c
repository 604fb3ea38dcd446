/*
 * User-mode networking through libslirp (see net.h): the guest sees a
 * private 10.0.2.0/24 with a gateway, DHCP and DNS at 10.0.2.2/.3; its TCP
 * and UDP become ordinary sockets of this process, so it needs no
 * privileges. Host forwards are listening sockets bound when the back end
 * is created.
 *
 * Threading: libslirp runs on its own thread with poll(). Its API is built
 * around that loop (slirp_pollfds_fill() rebuilds the whole descriptor set
 * and its events on every turn, slirp_pollfds_poll() hands back revents by
 * index), and its register_poll_fd hook is not called for every socket it
 * opens, so mirroring the set into the I/O thread's epoll would mean
 * diffing it after every call and guessing at descriptor reuse. A thread
 * also keeps slirp's socket work off the I/O thread that serves the disks.
 * libslirp is not thread-safe: every call into it holds `lock`; frames for
 * the guest wait in a bounded queue under `q_lock` until the NIC pulls them
 * (lock order: the NIC's transport lock, then `lock`, then `q_lock`).
 *
 * slirp offers no checksum or segmentation offloads (offloads = 0): the NIC
 * then never offers them, so every frame here is complete, and the header
 * in front of it is all zeros.
 */
#include "net/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <slirp/libslirp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/ratelimit.h"
#include "base/util.h"

#define ETH_HDR_LEN 14

/* Frames waiting for guest buffers; past this, slirp's frames are dropped
 * and TCP retransmits them, as with a real NIC whose ring is full. */
#define SLIRP_QUEUE_MAX 512
#define SLIRP_MAX_TIMERS 8

struct slirp_frame {
	struct slirp_frame *next;
	size_t len;                   /* header + frame */
	uint8_t data[];
};

struct slirp_timer {
	bool used;
	int64_t expire_ms;            /* -1: not armed */
	SlirpTimerId id;              /* timer_new_opaque timers */
	SlirpTimerCb cb;              /* timer_new timers */
	void *cb_opaque;
	bool opaque_kind;
};

struct net_slirp {
	struct net_backend nb;
	Slirp *slirp;
	pthread_mutex_t lock;         /* every call into libslirp */
	pthread_t thread;
	bool started;
	atomic_bool stop;
	int poke_fd;                  /* eventfd: re-read slirp's poll set, or stop */
	atomic_bool poked;
	struct pollfd *pfd;
	unsigned npfd, pfd_cap;
	/* What the thread last filled pfd with (under `lock`): digests of
	 * the descriptors in order (which fixes the indices slirp holds) and
	 * of their events, and when its poll times out. A frame from the
	 * guest wakes the thread only when these change. */
	uint64_t wait_layout, wait_digest;
	int64_t wait_deadline_ms;
	bool wait_unknown;            /* the last fill lost a socket (no memory) */
	unsigned fill_gen;            /* bumped when pfd's indices may be stale */
	struct slirp_timer timers[SLIRP_MAX_TIMERS];
	bool guest_error_logged;
	struct ratelimit guest_error_limit; /* for the ones after the first */
	uint8_t tx_buf[NET_MAX_FRAME];
	uint64_t frags_dropped;       /* see is_ipv4_fragment() */

	pthread_mutex_t q_lock;       /* the queue below */
	struct slirp_frame *q_head, **q_tail;
	unsigned q_len;
	atomic_bool added;            /* frames queued since the last wake */
	uint64_t dropped;
};


/* ---- IPv4 fragments from the guest ---- */

/*
 * libslirp 4.7 (Debian 12's) reads through a wild pointer on some IPv4
 * fragments from the guest: one frame, a last fragment that arrives before
 * the rest of its datagram, ends the VMM, and tests/fuzz/fuzz_net_slirp.c
 * found other orders within seconds once that one was filtered. So no
 * fragment reaches libslirp: a guest's datagram larger than its MTU is
 * dropped (and counted). Linux sends TCP with DF set and sizes UDP to the
 * path MTU; what this loses is UDP datagrams larger than the link.
 */
static bool is_ipv4_fragment(const uint8_t *frame, size_t len)
{
	if (len < ETH_HDR_LEN + 20 || frame[12] != 0x08 || frame[13] != 0x00)
		return false;
	const uint8_t *ip = frame + ETH_HDR_LEN;
	bool more = ip[6] & 0x20;
	unsigned offset = (unsigned)(ip[6] & 0x1f) << 8 | ip[7];
	return more || offset != 0;
}

static struct net_slirp *to_slirp(struct net_backend *nb)
{
	return (struct net_slirp *)nb;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Makes the slirp thread rebuild its poll set (new sockets, new timers). */
static void slirp_poke(struct net_slirp *s)
{
	if (atomic_exchange(&s->poked, true))
		return; /* a poke is already pending */
	uint64_t one = 1;
	ssize_t w = write(s->poke_fd, &one, sizeof(one));
	(void)w; /* EAGAIN: the counter is already non-zero */
}

/* After a call into slirp: tells the NIC if frames arrived for it. */
static void slirp_wake_nic(struct net_slirp *s)
{
	if (atomic_exchange(&s->added, false) && s->nb.wake)
		s->nb.wake(s->nb.wake_ctx);
}

/* ---- callbacks from libslirp (called with `lock` held) ---- */

static ssize_t cb_send_packet(const void *buf, size_t len, void *opaque)
{
	struct net_slirp *s = opaque;
	if (len > NET_MAX_FRAME)
		return (ssize_t)len;
	pthread_mutex_lock(&s->q_lock);
	if (s->q_len >= SLIRP_QUEUE_MAX) {
		s->dropped++;
		pthread_mutex_unlock(&s->q_lock);
		return (ssize_t)len; /* dropped: TCP recovers, as on a full NIC ring */
	}
	pthread_mutex_unlock(&s->q_lock);
	struct slirp_frame *f = malloc(sizeof(*f) + NET_HDR_LEN + len);
	if (!f)
		return -1;
	f->next = NULL;
	f->len = NET_HDR_LEN + len;
	memset(f->data, 0, NET_HDR_LEN);
	memcpy(f->data + NET_HDR_LEN, buf, len);
	pthread_mutex_lock(&s->q_lock);
	*s->q_tail = f;
	s->q_tail = &f->next;
	s->q_len++;
	pthread_mutex_unlock(&s->q_lock);
	atomic_store(&s->added, true);
	return (ssize_t)len;
}

static void cb_guest_error(const char *msg, void *opaque)
{
	struct net_slirp *s = opaque;
	if (!s->guest_error_logged)
		log_warn("net user: guest error: %s (further ones at debug level)", msg);
	else
		log_limited(&s->guest_error_limit, LOG_LEVEL_DEBUG, "net user: guest error: %s", msg);
	s->guest_error_logged = true;
}

static int64_t cb_clock_get_ns(void *opaque)
{
	(void)opaque;
	return now_ns();
}

static struct slirp_timer *timer_alloc(struct net_slirp *s)
{
	for (unsigned i = 0; i < SLIRP_MAX_TIMERS; i++)
		if (!s->timers[i].used) {
			s->timers[i] = (struct slirp_timer){ .used = true, .expire_ms = -1 };
			return &s->timers[i];
		}
	log_error("net user: libslirp asked for more than %d timers", SLIRP_MAX_TIMERS);
	return NULL;
}

static void *cb_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
	struct slirp_timer *t = timer_alloc(opaque);
	if (t) {
		t->cb = cb;
		t->cb_opaque = cb_opaque;
	}
	return t;
}

static void *cb_timer_new_opaque(SlirpTimerId id, void *cb_opaque, void *opaque)
{
	struct slirp_timer *t = timer_alloc(opaque);
	if (t) {
		t->opaque_kind = true;
		t->id = id;
		t->cb_opaque = cb_opaque;
	}
	return t;
}

static void cb_timer_free(void *timer, void *opaque)
{
	(void)opaque;
	if (timer)
		((struct slirp_timer *)timer)->used = false;
}

static void cb_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
	if (!timer)
		return;
	((struct slirp_timer *)timer)->expire_ms = expire_ms;
	slirp_poke(opaque);
}

static void cb_register_poll_fd(int fd, void *opaque)
{
	(void)fd, (void)opaque; /* the poll set is rebuilt every turn */
}

static void cb_notify(void *opaque)
{
	slirp_poke(opaque);
}

static const SlirpCb slirp_callbacks = {
	.send_packet = cb_send_packet,
	.guest_error = cb_guest_error,
	.clock_get_ns = cb_clock_get_ns,
	.timer_new = cb_timer_new,
	.timer_free = cb_timer_free,
	.timer_mod = cb_timer_mod,
	.register_poll_fd = cb_register_poll_fd,
	.unregister_poll_fd = cb_register_poll_fd,
	.notify = cb_notify,
	.timer_new_opaque = cb_timer_new_opaque,
};

/* ---- the slirp thread ---- */

static short to_poll_events(int e)
{
	short p = 0;
	if (e & SLIRP_POLL_IN)
		p |= POLLIN;
	if (e & SLIRP_POLL_OUT)
		p |= POLLOUT;
	if (e & SLIRP_POLL_PRI)
		p |= POLLPRI;
	return p;
}

static uint64_t digest_add(uint64_t d, int fd, int events)
{
	/* FNV-1a over (fd, events): only compared for equality. */
	uint64_t v = (uint64_t)(uint32_t)fd << 8 | (uint64_t)(events & 0xff);
	for (unsigned i = 0; i < 5; i++, v >>= 8)
		d = (d ^ (v & 0xff)) * 0x100000001b3ull;
	return d;
}

static int cb_add_poll(int fd, int events, void *opaque)
{
	struct net_slirp *s = opaque;
	if (s->npfd == s->pfd_cap) {
		unsigned cap = s->pfd_cap ? 2 * s->pfd_cap : 32;
		struct pollfd *p = realloc(s->pfd, cap * sizeof(*p));
		if (!p) {
			s->wait_unknown = true;
			return -1; /* slirp skips a socket it has no index for */
		}
		s->pfd = p;
		s->pfd_cap = cap;
	}
	s->pfd[s->npfd] = (struct pollfd){ .fd = fd, .events = to_poll_events(events) };
	s->wait_layout = digest_add(s->wait_layout, fd, 0);
	s->wait_digest = digest_add(s->wait_digest, fd, events);
	return (int)s->npfd++;
}

/* The poll set slirp would ask for now, as a digest, without touching
 * pfd: slirp_pollfds_fill stores each socket's index, so this hands out
 * the indices the thread's own fill gave while the set is the same. */
struct poll_probe {
	uint64_t layout, digest;
	int next;
};

static int cb_probe_poll(int fd, int events, void *opaque)
{
	struct poll_probe *p = opaque;
	p->layout = digest_add(p->layout, fd, 0);
	p->digest = digest_add(p->digest, fd, events);
	return p->next++;
}

static int cb_get_revents(int idx, void *opaque)
{
	struct net_slirp *s = opaque;
	if (idx < 0 || (unsigned)idx >= s->npfd)
		return 0;
	short r = s->pfd[idx].revents;
	return (r & POLLIN ? SLIRP_POLL_IN : 0) | (r & POLLOUT ? SLIRP_POLL_OUT : 0) |
	       (r & POLLPRI ? SLIRP_POLL_PRI : 0) | (r & POLLERR ? SLIRP_POLL_ERR : 0) |
	       (r & POLLHUP ? SLIRP_POLL_HUP : 0);
}

static int cb_no_revents(int idx, void *opaque)
{
	(void)idx, (void)opaque;
	return 0;
}

/* Milliseconds until the first armed timer, capped at `limit`. */
static uint32_t timers_timeout(const struct net_slirp *s, uint32_t limit)
{
	int64_t now = now_ns() / 1000000;
	for (unsigned i = 0; i < SLIRP_MAX_TIMERS; i++) {
		const struct slirp_timer *t = &s->timers[i];
		if (!t->used || t->expire_ms < 0)
			continue;
		int64_t left = t->expire_ms > now ? t->expire_ms - now : 0;
		if (left < limit)
			limit = (uint32_t)left;
	}
	return limit;
}

static void timers_run(struct net_slirp *s)
{
	int64_t now = now_ns() / 1000000;
	for (unsigned i = 0; i < SLIRP_MAX_TIMERS; i++) {
		struct slirp_timer *t = &s->timers[i];
		if (!t->used || t->expire_ms < 0 || t->expire_ms > now)
			continue;
		t->expire_ms = -1;
		if (t->opaque_kind)
			slirp_handle_timer(s->slirp, t->id, t->cb_opaque);
		else if (t->cb)
			t->cb(t->cb_opaque);
	}
}

static int64_t deadline_ms(uint32_t timeout)
{
	return timeout == UINT32_MAX ? INT64_MAX : now_ns() / 1000000 + timeout;
}

/* After slirp_input (under `lock`): wakes the thread only if the frame
 * changed what it should wait for (a new socket, output queued for a host
 * socket, room to read more for the guest, an earlier timeout such as a
 * delayed ACK). Waking it for every frame cost a thread switch and a
 * rebuilt poll set per guest packet. */
static void slirp_poke_if_changed(struct net_slirp *s)
{
	struct poll_probe p = { .layout = digest_add(0, s->poke_fd, 0),
				.digest = digest_add(0, s->poke_fd, SLIRP_POLL_IN),
				.next = 1 };
	uint32_t timeout = UINT32_MAX;
	slirp_pollfds_fill(s->slirp, &timeout, cb_probe_poll, &p);
	timeout = timers_timeout(s, timeout);
	if (s->wait_unknown || p.layout != s->wait_layout)
		s->fill_gen++; /* the indices slirp now holds may not match pfd */
	if (s->wait_unknown || p.digest != s->wait_digest || deadline_ms(timeout) < s->wait_deadline_ms)
		slirp_poke(s);
}

/* One turn: build the set, wait, hand slirp what is ready, run timers. */
static void slirp_turn(struct net_slirp *s)
{
	pthread_mutex_lock(&s->lock);
	atomic_store(&s->poked, false);
	s->npfd = 0;
	s->wait_layout = s->wait_digest = 0;
	s->wait_unknown = false;
	cb_add_poll(s->poke_fd, SLIRP_POLL_IN, s);
	uint32_t timeout = UINT32_MAX;
	slirp_pollfds_fill(s->slirp, &timeout, cb_add_poll, s);
	timeout = timers_timeout(s, timeout);
	s->wait_deadline_ms = deadline_ms(timeout);
	unsigned gen = s->fill_gen;
	pthread_mutex_unlock(&s->lock);

	int n = poll(s->pfd, s->npfd, timeout == UINT32_MAX ? -1 : (int)timeout);
	if (n > 0 && (s->pfd[0].revents & POLLIN)) {
		uint64_t v;
		ssize_t r = read(s->poke_fd, &v, sizeof(v));
		(void)r;
	}
	pthread_mutex_lock(&s->lock);
	/* If a probe found the set changed, slirp's indices may not match pfd:
	 * skip its readiness this turn (poll is level-triggered, the next turn
	 * sees it again), but still run its timers. */
	slirp_pollfds_poll(s->slirp, n < 0 && errno != EINTR, gen == s->fill_gen ? cb_get_revents : cb_no_revents, s);
	timers_run(s);
	pthread_mutex_unlock(&s->lock);
	slirp_wake_nic(s);
}

static void *slirp_thread(void *arg)
{
	struct net_slirp *s = arg;
	while (!atomic_load(&s->stop))
		slirp_turn(s);
	return NULL;
}

/* ---- the ops table ---- */

static void slirp_send(struct net_backend *nb, const struct iovec *iov, unsigned n, size_t len)
{
	struct net_slirp *s = to_slirp(nb);
	if (len <= NET_HDR_LEN || len - NET_HDR_LEN > sizeof(s->tx_buf))
		return;
	pthread_mutex_lock(&s->lock);
	/* slirp wants one contiguous frame; the header (no offloads) is not needed. */
	size_t done = 0, skip = NET_HDR_LEN;
	for (unsigned i = 0; i < n && done < len - NET_HDR_LEN; i++) {
		size_t seg = iov[i].iov_len;
		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		size_t k = seg - skip;
		if (k > len - NET_HDR_LEN - done)
			k = len - NET_HDR_LEN - done;
		memcpy(s->tx_buf + done, (const uint8_t *)iov[i].iov_base + skip, k);
		done += k;
		skip = 0;
	}
	if (is_ipv4_fragment(s->tx_buf, done)) {
		s->frags_dropped++;
		pthread_mutex_unlock(&s->lock);
		return;
	}
	slirp_input(s->slirp, s->tx_buf, (int)done);
	slirp_poke_if_changed(s);
	pthread_mutex_unlock(&s->lock);
	slirp_wake_nic(s);
}

static uint8_t *slirp_peek(struct net_backend *nb, size_t *len)
{
	struct net_slirp *s = to_slirp(nb);
	pthread_mutex_lock(&s->q_lock);
	struct slirp_frame *f = s->q_head;
	pthread_mutex_unlock(&s->q_lock);
	if (!f)
		return NULL;
	*len = f->len;
	return f->data;
}

static void slirp_pop(struct net_backend *nb)
{
	struct net_slirp *s = to_slirp(nb);
	pthread_mutex_lock(&s->q_lock);
	struct slirp_frame *f = s->q_head;
	if (f) {
		s->q_head = f->next;
		if (!s->q_head)
			s->q_tail = &s->q_head;
		s->q_len--;
	}
	pthread_mutex_unlock(&s->q_lock);
	free(f);
}

static bool slirp_set_offloads(struct net_backend *nb, unsigned offloads)
{
	(void)nb;
	return offloads == 0;
}

static bool slirp_start(struct net_backend *nb)
{
	struct net_slirp *s = to_slirp(nb);
	int rc = pthread_create(&s->thread, NULL, slirp_thread, s);
	if (rc != 0) {
		log_error("net user: cannot start its thread: %s", strerror(rc));
		return false;
	}
	s->started = true;
	return true;
}

static void slirp_destroy(struct net_backend *nb)
{
	struct net_slirp *s = to_slirp(nb);
	if (!s)
		return;
	if (s->started) {
		atomic_store(&s->stop, true);
		atomic_store(&s->poked, false);
		slirp_poke(s);
		pthread_join(s->thread, NULL);
	}
	if (s->slirp)
		slirp_cleanup(s->slirp);
	if (s->frags_dropped)
		log_info("net user: %llu IPv4 fragments from the guest were dropped (libslirp "
			 "cannot be trusted with them; see slirp.c)",
			 (unsigned long long)s->frags_dropped);
	if (s->dropped)
		log_info("net user: %llu frames for the guest were dropped (its receive ring "
			 "stayed full past %d queued frames)",
			 (unsigned long long)s->dropped, SLIRP_QUEUE_MAX);
	while (s->q_head)
		slirp_pop(nb);
	if (s->poke_fd >= 0)
		close(s->poke_fd);
	free(s->pfd);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->q_lock);
	free(s);
}

static const struct net_backend_ops slirp_ops = {
	.kind = "user",
	.send = slirp_send,
	.peek = slirp_peek,
	.pop = slirp_pop,
	.set_offloads = slirp_set_offloads,
	.start = slirp_start,
	.destroy = slirp_destroy,
};

/* ---- creation ---- */

static struct in_addr addr(const char *text)
{
	struct in_addr a;
	inet_pton(AF_INET, text, &a);
	return a;
}

static bool slirp_add_forwards(struct net_slirp *s, const struct net_slirp_config *cfg)
{
	for (unsigned i = 0; i < cfg->nfwd; i++) {
		const struct net_hostfwd *f = &cfg->fwd[i];
		if (slirp_add_hostfwd(s->slirp, f->udp, f->host_addr, f->host_port,
				      addr(NET_SLIRP_GUEST), f->guest_port) < 0) {
			char host[INET_ADDRSTRLEN];
			inet_ntop(AF_INET, &f->host_addr, host, sizeof(host));
			log_error("--net user,hostfwd=%s:%s:%u-:%u: cannot listen there (%s); "
				  "choose a free host port", f->udp ? "udp" : "tcp", host,
				  f->host_port, f->guest_port, strerror(errno ? errno : EADDRINUSE));
			return false;
		}
	}
	return true;
}

struct net_backend *net_slirp_create(const struct net_slirp_config *cfg)
{
	struct net_slirp *s = calloc(1, sizeof(*s));
	if (!s) {
		log_error("net user: out of memory");
		return NULL;
	}
	s->nb.ops = &slirp_ops;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->q_lock, NULL);
	ratelimit_init(&s->guest_error_limit, 60, 5);
	s->q_tail = &s->q_head;
	s->poke_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	SlirpConfig sc = {
		.version = 4,
		.in_enabled = true,
		.vnetwork = addr(NET_SLIRP_NETWORK),
		.vnetmask = addr("255.255.255.0"),
		.vhost = addr(NET_SLIRP_HOST),
		.vdhcp_start = addr(NET_SLIRP_GUEST),
		.vnameserver = addr(NET_SLIRP_DNS),
		.vhostname = "shoji",
		.if_mtu = NET_SLIRP_MTU,
		.if_mru = NET_SLIRP_MTU,
		/* IPv6 is off: one fewer stack (router advertisements, NDP) for a guest to probe. */
		.in6_enabled = false,
		/* The host's loopback only when asked for (see net_slirp_config). */
		.disable_host_loopback = !cfg->host_loopback,
		.enable_emu = false,
	};
	if (s->poke_fd >= 0)
		s->slirp = slirp_new(&sc, &slirp_callbacks, s);
	if (!s->slirp) {
		log_error("net user: cannot create the user-mode network stack");
		slirp_destroy(&s->nb);
		return NULL;
	}
	if (!slirp_add_forwards(s, cfg)) {
		slirp_destroy(&s->nb);
		return NULL;
	}
	return &s->nb;
}
