/*
 * The net device kind (vmm/devices.h): for each --net, a back end
 * (net/slirp.c or net/tap.c), a virtio-net device on the PCI bus, and the
 * wiring between them on the I/O thread. A back end with frames for the guest signals an
 * eventfd; the I/O thread then kicks the NIC's receive queue through the
 * transport (virtio_pci_kick), so the NIC pulls frames under the
 * transport's lock like any other queue work.
 */
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/log.h"
#include "dev/virtio-net.h"
#include "dev/virtio-pci.h"
#include "hv/mem.h"
#include "vmm/devices.h"
#include "vmm/exit.h"
#include "vmm/iothread.h"
#include "vmm/sandbox.h"
#include "vmm/virtio-host.h"

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

/*
 * Creates every back end (binding host forwards, attaching taps) and puts
 * the NICs on the bus. False (logged, one line naming the option) on
 * failure; *out is set either way, for net_host_destroy() to release what
 * was made (NICs already on the bus stay valid until then).
 */
static bool net_host_create(const struct net_option *opts, unsigned n, struct virtio_host *vh,
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

/* Starts the back ends' event handling: after the sandbox is in. */
static bool net_host_start(void *state)
{
	struct net_host *nh = state;
	for (unsigned i = 0; nh && i < nh->count; i++)
		if (!nh->nic[i].nb->ops->start(nh->nic[i].nb))
			return false;
	return true;
}

/*
 * After iothread_destroy() (which freed the watches) and
 * virtio_host_destroy() (which reset the NICs). Accepts NULL.
 */
static void net_host_destroy(void *state)
{
	struct net_host *nh = state;
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

static bool net_parse(const char *value, unsigned index, void *out, char *err, size_t errlen)
{
	return net_option_parse(value, index, out, err, errlen);
}

static int net_create(const struct vmm_device_env *env, const void *opts, unsigned n, void **state)
{
	struct net_host *nh;
	bool ok = net_host_create(opts, n, env->virtio, env->io, env->mem, &nh);
	*state = nh;
	/* A port in use, a tap that cannot be attached: the user's to fix. */
	return ok ? 0 : VMM_EXIT_USAGE;
}

/* The sandbox's calls for each kind of back end; the host's network for user-mode networking. */
static void net_needs(const void *opts, unsigned n, struct vmm_device_needs *needs)
{
	const struct net_option *o = opts;
	for (unsigned i = 0; i < n; i++) {
		needs->sandbox |= o[i].kind == NET_USER ? SANDBOX_NET_USER : SANDBOX_NET_TAP;
		needs->host_network |= o[i].kind == NET_USER;
	}
}

const struct vmm_device_kind net_device = {
	.option = "net",
	.has_value = true,
	.usage = "  --net user[,hostfwd=tcp:127.0.0.1:HOSTPORT-:GUESTPORT]...[,host-loopback=on][,mac=M]\n"
		 "  --net tap=NAME[,mac=M]\n"
		 "                        a virtio-net NIC (up to 8): user-mode networking\n"
		 "                        (10.0.2.0/24, DHCP, DNS) or a host tap interface;\n"
		 "                        host-loopback=on lets the guest reach the host's\n"
		 "                        127.0.0.1 at 10.0.2.2 (default off)\n",
	.parse = net_parse,
	.create = net_create,
	.start = net_host_start,
	.destroy = net_host_destroy,
	.needs = net_needs,
};
