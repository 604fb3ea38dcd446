/*
 * A host tap interface as a network back end (see net.h). The tap is opened
 * with IFF_VNET_HDR and a 12-byte header (TUNSETVNETHDRSZ), which is the
 * virtio-net header itself: frames go out with writev() straight from guest
 * memory after the NIC's checked header copy, and come in with one read()
 * into a 64 KiB buffer that the NIC copies into guest buffers.
 *
 * Offloads: TUNSETOFFLOAD says which offloaded frames *we* can take from
 * the kernel. It is probed once at creation (what the kernel supports
 * decides what the NIC offers), then set to exactly what the guest accepted
 * at each activation, and cleared on reset.
 *
 * Receive flow control: the tap's EPOLLIN watch is off while a frame waits
 * here for guest buffers or for the NIC to pull it, so a guest that posts
 * no buffers leaves packets queued in the kernel (which drops beyond the
 * tap's queue length) instead of spinning the I/O thread.
 */
#include "net/net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/log.h"
#include "base/ratelimit.h"

struct net_tap {
	struct net_backend nb;
	int fd;
	char name[IFNAMSIZ];
	struct net_poller poller;
	void *watch;
	pthread_mutex_t lock;         /* `reading` and the watch's events */
	bool reading;                 /* EPOLLIN is on */
	size_t held;                  /* bytes of the frame in buf; 0: none */
	uint64_t tx_errors;
	uint8_t buf[NET_HDR_LEN + NET_MAX_FRAME];
};

static struct net_tap *to_tap(struct net_backend *nb)
{
	return (struct net_tap *)nb;
}

static void tap_set_reading(struct net_tap *t, bool on)
{
	pthread_mutex_lock(&t->lock);
	if (t->watch && t->reading != on && t->poller.set_events(t->watch, on ? EPOLLIN : 0))
		t->reading = on;
	pthread_mutex_unlock(&t->lock);
}

/* The tap has frames: stop watching until the NIC has pulled them. */
static void tap_readable(void *arg, uint32_t events)
{
	(void)events;
	struct net_tap *t = arg;
	tap_set_reading(t, false);
	if (t->nb.wake)
		t->nb.wake(t->nb.wake_ctx);
}

static void tap_send(struct net_backend *nb, const struct iovec *iov, unsigned n, size_t len)
{
	struct net_tap *t = to_tap(nb);
	(void)len;
	ssize_t w;
	do
		w = writev(t->fd, iov, (int)n);
	while (w < 0 && errno == EINTR);
	/* A full queue or a frame the kernel refuses: dropped, as on a wire. */
	if (w < 0 && t->tx_errors++ == 0)
		log_warn("net tap %s: a frame was not sent: %s (further ones not logged)", t->name,
			 strerror(errno));
}

static uint8_t *tap_peek(struct net_backend *nb, size_t *len)
{
	struct net_tap *t = to_tap(nb);
	while (t->held == 0) {
		ssize_t r = read(t->fd, t->buf, sizeof(t->buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			/* Drained (EAGAIN) or failing: wait for the next frame. */
			tap_set_reading(t, true);
			return NULL;
		}
		if ((size_t)r >= NET_HDR_LEN + NET_ETH_HLEN)
			t->held = (size_t)r; /* shorter: not a frame, skip it */
	}
	*len = t->held;
	return t->buf;
}

static void tap_pop(struct net_backend *nb)
{
	to_tap(nb)->held = 0;
}

static unsigned to_tun_flags(unsigned offloads)
{
	unsigned f = 0;
	if (offloads & NET_OFFLOAD_CSUM)
		f |= TUN_F_CSUM;
	if (offloads & NET_OFFLOAD_TSO4)
		f |= TUN_F_TSO4;
	if (offloads & NET_OFFLOAD_TSO6)
		f |= TUN_F_TSO6;
	return f;
}

/* Called at every start of the guest's driver, which the guest may repeat at will. */
static struct ratelimit offload_limit = RATELIMIT_GUEST;

static bool tap_set_offloads(struct net_backend *nb, unsigned offloads)
{
	struct net_tap *t = to_tap(nb);
	if (ioctl(t->fd, TUNSETOFFLOAD, (unsigned long)to_tun_flags(offloads & nb->offloads)) < 0) {
		log_limited(&offload_limit, LOG_LEVEL_WARN, "net tap %s: TUNSETOFFLOAD: %s", t->name,
			    strerror(errno));
		return false;
	}
	return true;
}

static bool tap_start(struct net_backend *nb)
{
	struct net_tap *t = to_tap(nb);
	t->watch = t->poller.watch(t->poller.ctx, t->fd, EPOLLIN, tap_readable, t);
	t->reading = t->watch != NULL;
	return t->watch != NULL;
}

static void tap_destroy(struct net_backend *nb)
{
	struct net_tap *t = to_tap(nb);
	if (!t)
		return;
	if (t->watch)
		t->poller.unwatch(t->watch);
	if (t->fd >= 0)
		close(t->fd);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static const struct net_backend_ops tap_ops = {
	.kind = "tap",
	.send = tap_send,
	.peek = tap_peek,
	.pop = tap_pop,
	.set_offloads = tap_set_offloads,
	.start = tap_start,
	.destroy = tap_destroy,
};

/* The largest set of offloads the kernel takes, all or nothing per step. */
static unsigned tap_probe_offloads(int fd)
{
	static const unsigned tries[] = {
		NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6,
		NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4,
		NET_OFFLOAD_CSUM,
	};
	unsigned got = 0;
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]) && !got; i++)
		if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)to_tun_flags(tries[i])) == 0)
			got = tries[i];
	/* Nothing offloaded until a guest accepts it. */
	if (ioctl(fd, TUNSETOFFLOAD, 0ul) < 0)
		got = 0;
	return got;
}

static int tap_open(const char *name)
{
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		log_error("--net tap=%s: cannot open /dev/net/tun: %s", name, strerror(errno));
		return -1;
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	memcpy(ifr.ifr_name, name, strlen(name));
	int hdr = NET_HDR_LEN;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		log_error("--net tap=%s: cannot attach (%s); create it first with "
			  "'ip tuntap add %s mode tap user $USER vnet_hdr' or run with CAP_NET_ADMIN",
			  name, strerror(errno), name);
		close(fd);
		return -1;
	}
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
		log_error("--net tap=%s: TUNSETVNETHDRSZ: %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

struct net_backend *net_tap_create(const char *name, const struct net_poller *poller)
{
	if (strlen(name) == 0 || strlen(name) >= IFNAMSIZ) {
		log_error("--net tap=%s: a name of 1 to %d bytes is needed", name, IFNAMSIZ - 1);
		return NULL;
	}
	struct net_tap *t = calloc(1, sizeof(*t));
	if (!t) {
		log_error("--net tap=%s: out of memory", name);
		return NULL;
	}
	t->nb.ops = &tap_ops;
	t->poller = *poller;
	pthread_mutex_init(&t->lock, NULL);
	memcpy(t->name, name, strlen(name) + 1);
	t->fd = tap_open(name);
	if (t->fd < 0) {
		tap_destroy(&t->nb);
		return NULL;
	}
	t->nb.offloads = tap_probe_offloads(t->fd);
	return &t->nb;
}
