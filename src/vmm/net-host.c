/* The machine's NICs and their back ends (see net-host.h). */
#include "vmm/net-host.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/log.h"
#include "dev/virtio-net.h"
#include "dev/virtio-pci.h"

struct nic {
	struct net_host *host;
	struct net_backend *nb;
	struct virtio_net *dev;
	int wake_fd;
};

struct net_host {
	struct iothread *io;
	unsigned count;
	struct nic nic[];
};

/* ---- the poller the back ends see: the I/O thread ---- */

static void *poll_watch(void *ctx, int fd, uint32_t events, net_event_fn fn, void *arg)
{
	struct net_host *nh = ctx;
	return iothread_watch(nh->io, fd, events, fn, arg);
}

static bool poll_set_events(void *watch, uint32_t events)
{
	return iothread_watch_events(watch, events);
}

static void poll_unwatch(void *watch)
{
	(void)watch; /* net_host_destroy runs after iothread_destroy, which freed it */
}

/* ---- waking the NIC ---- */

/* Any thread: the back end has frames. Only schedules the pull. */
static void nic_wake(void *ctx)
{
	struct nic *n = ctx;
	uint64_t one = 1;
	ssize_t w = write(n->wake_fd, &one, sizeof(one));
	(void)w; /* EAGAIN: a wake-up is already pending */
}

/* I/O thread: pull as a kick of the receive queue would. */
static void nic_woken(void *ctx, uint32_t events)
{
	(void)events;
	struct nic *n = ctx;
	uint64_t v;
	if (read(n->wake_fd, &v, sizeof(v)) != sizeof(v))
		return;
	struct virtio_dev *vd = virtio_net_transport(n->dev);
	if (vd)
		virtio_pci_kick(vd, VIRTIO_NET_RXQ); /* ignored unless the driver runs the device */
}

static bool nic_create(struct net_host *nh, struct nic *n, const struct net_option *o,
		       struct virtio_host *vh, const struct guest_mem *mem)
{
	n->host = nh;
	n->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (n->wake_fd < 0) {
		log_error("--net: cannot create an eventfd: %m");
		return false;
	}
	struct net_poller poller = { poll_watch, poll_set_events, poll_unwatch, nh };
	n->nb = o->kind == NET_USER ? net_slirp_create(&o->slirp) : net_tap_create(o->tap, &poller);
	if (!n->nb)
		return false;
	n->nb->wake = nic_wake;
	n->nb->wake_ctx = n;
	n->dev = virtio_net_create(o->mac, n->nb, mem);
	if (!n->dev || !iothread_watch(nh->io, n->wake_fd, EPOLLIN, nic_woken, n))
		return false;
	return virtio_host_add(vh, &virtio_net_ops, n->dev);
}

bool net_host_create(const struct net_option *opts, unsigned n, struct virtio_host *vh,
		     struct iothread *io, const struct guest_mem *mem, struct net_host **out)
{
	struct net_host *nh = calloc(1, sizeof(*nh) + n * sizeof(struct nic));
	*out = nh;
	if (!nh) {
		log_error("--net: out of memory");
		return false;
	}
	nh->io = io;
	for (unsigned i = 0; i < n; i++) {
		nh->nic[i].wake_fd = -1;
		nh->count++; /* counted now so that destroy releases what was made */
		if (!nic_create(nh, &nh->nic[i], &opts[i], vh, mem))
			return false;
	}
	return true;
}

bool net_host_start(struct net_host *nh)
{
	for (unsigned i = 0; nh && i < nh->count; i++)
		if (!nh->nic[i].nb->ops->start(nh->nic[i].nb))
			return false;
	return true;
}

void net_host_destroy(struct net_host *nh)
{
	if (!nh)
		return;
	for (unsigned i = 0; i < nh->count; i++) {
		struct nic *n = &nh->nic[i];
		if (n->nb)
			n->nb->ops->destroy(n->nb); /* stops the slirp thread before the NIC goes */
		virtio_net_destroy(n->dev);
		if (n->wake_fd >= 0)
			close(n->wake_fd);
	}
	free(nh);
}
