/* Host glue of the virtio-pci devices (see virtio-host.h). */
#include "vmm/virtio-host.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <linux/kvm.h>
#include <unistd.h>

#include "base/log.h"
#include "dev/virtio-pci.h"

struct kick_source {
	struct virtio_dev *vd;
	unsigned queue;
	int fd;
};

struct host_device {
	struct virtio_host *host;
	struct virtio_dev *vd;
	unsigned nqueues;
	struct kick_source kick[VIRTIO_MAX_QUEUES];
	/* The device's own wake fds (virtio_queue_info; its fds: not closed here). */
	struct kick_source wake[VIRTIO_MAX_QUEUES][VIRTIO_QUEUE_WAKE_FDS];
};

struct virtio_host {
	struct kvm_vm *vm;
	struct pci_bus *bus;
	struct iothread *io;
	bool any_length_ioeventfd;
	unsigned count;
	struct host_device dev[VIRTIO_HOST_MAX_DEVICES];
	/* The devices with vcpu_work_done, for virtio_host_poll(); only
	 * added to before the vCPUs and the I/O thread start. */
	unsigned npolled;
	struct virtio_dev *polled[VIRTIO_HOST_MAX_DEVICES];
};

static void host_send_msi(void *ctx, uint64_t addr, uint32_t data)
{
	struct host_device *hd = ctx;
	kvm_vm_signal_msi(hd->host->vm, addr, data);
}

static bool host_set_ioeventfd(void *ctx, struct virtio_dev *vd, unsigned queue, uint64_t gpa, bool on)
{
	struct host_device *hd = ctx;
	(void)vd;
	if (queue >= hd->nqueues)
		return false;
	/*
	 * Linux kicks with a 16-bit write (the queue index) and KVM matches an
	 * ioeventfd's length exactly: match any width where KVM can, else 2.
	 */
	unsigned len = hd->host->any_length_ioeventfd ? 0 : 2;
	return kvm_vm_ioeventfd(hd->host->vm, gpa, len, hd->kick[queue].fd, on);
}

/*
 * A device stopped at its budget, or a vCPU handed a queue's work over (or
 * found the device's lock busy): the queue's eventfd makes the I/O thread
 * kick it again once it has served what else was ready (epoll reports the
 * ready descriptors in turn, so the others go first).
 */
static void host_kick_later(void *ctx, struct virtio_dev *vd, unsigned queue)
{
	struct host_device *hd = ctx;
	(void)vd;
	if (queue >= hd->nqueues || hd->kick[queue].fd < 0)
		return;
	uint64_t one = 1;
	ssize_t w = write(hd->kick[queue].fd, &one, sizeof(one));
	(void)w; /* EAGAIN: the counter is huge, a kick is pending anyway */
}

static void host_kick(void *ctx, uint32_t events)
{
	(void)events;
	struct kick_source *k = ctx;
	uint64_t n;
	if (read(k->fd, &n, sizeof(n)) == sizeof(n))
		virtio_pci_kick(k->vd, k->queue);
}

/* A device that finishes work on its own threads (virtio-blk's workers)
 * signals a wake fd; its queue is then served as if kicked. */
static bool watch_wake_fd(struct virtio_host *h, struct kick_source *k, struct virtio_dev *vd,
			  const char *name, int fd, unsigned q)
{
	if (fd < 0)
		return true;
	*k = (struct kick_source){ vd, q, fd };
	if (!iothread_watch(h->io, fd, EPOLLIN, host_kick, k)) {
		log_error("%s: cannot watch the completions of queue %u", name, q);
		return false;
	}
	return true;
}

static bool watch_wake_fds(struct virtio_host *h, struct host_device *hd,
			   const struct virtio_device_ops *ops, void *dev, unsigned q)
{
	struct virtio_queue_info info = virtio_queue_info_of(ops, dev, q);
	for (unsigned i = 0; i < VIRTIO_QUEUE_WAKE_FDS; i++)
		if (!watch_wake_fd(h, &hd->wake[q][i], hd->vd, ops->name, info.wake_fd[i], q))
			return false;
	return true;
}

static void host_poll_on_wake(void *ctx)
{
	virtio_host_poll(ctx);
}

struct virtio_host *virtio_host_create(struct kvm_vm *vm, struct pci_bus *bus, struct iothread *io)
{
	struct virtio_host *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->vm = vm;
	h->bus = bus;
	h->io = io;
	h->any_length_ioeventfd = kvm_vm_has_cap(vm, KVM_CAP_IOEVENTFD_ANY_LENGTH);
	iothread_on_wake(io, host_poll_on_wake, h);
	return h;
}

void virtio_host_poll(struct virtio_host *h)
{
	for (unsigned i = 0; i < h->npolled; i++)
		virtio_pci_poll(h->polled[i]);
}

bool virtio_host_add(struct virtio_host *h, const struct virtio_device_ops *ops, void *dev)
{
	if (h->count == VIRTIO_HOST_MAX_DEVICES) {
		log_error("too many virtio devices (at most %d)", VIRTIO_HOST_MAX_DEVICES);
		return false;
	}
	struct host_device *hd = &h->dev[h->count];
	hd->host = h;
	hd->nqueues = ops->num_queues;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		hd->kick[q].fd = -1;
	struct virtio_pci_host glue = {
		.send_msi = host_send_msi, .set_ioeventfd = host_set_ioeventfd,
		.kick_later = host_kick_later, .ctx = hd,
	};
	hd->vd = virtio_pci_create(h->bus, &h->vm->mem, ops, dev, &glue);
	h->count++; /* counted now so that destroy releases what was made */
	if (!hd->vd)
		return false;
	if (ops->vcpu_work_done)
		h->polled[h->npolled++] = hd->vd;
	for (unsigned q = 0; q < hd->nqueues; q++) {
		struct kick_source *k = &hd->kick[q];
		k->vd = hd->vd;
		k->queue = q;
		k->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (k->fd < 0 || !iothread_watch(h->io, k->fd, EPOLLIN, host_kick, k)) {
			log_error("%s: cannot set up the notification of queue %u: %m", ops->name, q);
			return false;
		}
		if (!watch_wake_fds(h, hd, ops, dev, q))
			return false;
	}
	return true;
}

void virtio_host_destroy(struct virtio_host *h)
{
	if (!h)
		return;
	for (unsigned i = 0; i < h->count; i++) {
		struct host_device *hd = &h->dev[i];
		virtio_pci_destroy(hd->vd); /* detaches the ioeventfds first */
		for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
			if (hd->kick[q].fd >= 0)
				close(hd->kick[q].fd);
	}
	free(h);
}
