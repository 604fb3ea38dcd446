/*
 * What a virtio device model (virtio-blk, virtio-rng, ...) sees of its
 * transport. A device is one file with a `struct virtio_device_ops` table;
 * the transport (dev/virtio-pci.c) owns the common configuration, feature
 * negotiation, the virtqueues and interrupts, and calls the device:
 *
 *   - config_read/config_write from vCPU threads, with the device's offset
 *     and length already checked against config_size;
 *   - activate() once the driver sets DRIVER_OK, with the negotiated
 *     features (always a subset of what the device offered);
 *   - queue_notify() when a queue has work, on the thread the rule below
 *     names;
 *   - reset() when the driver resets the device (status 0) or the machine
 *     stops; afterwards no queue may be touched until the next activate().
 *
 * All callbacks of one device are serialised by the transport's lock, so a
 * device needs no lock of its own for state shared with them.
 *
 * WHERE A QUEUE IS SERVED (the one rule; the transport implements it, a
 * device only declares it in queue_info() and handles requests):
 *
 *   - VIRTIO_SERVE_IO_THREAD (the default): the driver's kicks reach the
 *     I/O thread through an ioeventfd, without stopping the vCPU, and
 *     queue_notify(..., VIRTIO_ON_IO_THREAD) serves them there. For queues
 *     whose work may block or take long: net (the back end), rng, vsock's
 *     rx (it reads host sockets), disks served by worker threads.
 *   - VIRTIO_SERVE_VCPU: no ioeventfd; the kick is an MMIO exit and the
 *     kicking vCPU serves it itself, queue_notify(..., VIRTIO_ON_VCPU),
 *     which must not block: the guest's CPU waits for it. The exit costs
 *     less than waking the I/O thread, so this is for queues where latency
 *     counts and a kick's work is short (vsock's tx: one non-blocking
 *     sendmsg per packet; a raw disk's reads and O_DIRECT writes: one
 *     io_uring submission per kick). When another thread holds the
 *     device's lock, the vCPU does not wait for it: the transport hands the
 *     kick to the I/O thread instead.
 *   - The hand-over: work a VIRTIO_ON_VCPU call must not do (it would
 *     block, or exceeds its share) goes to the I/O thread with
 *     virtio_queue_notify_later(), which calls queue_notify(...,
 *     VIRTIO_ON_IO_THREAD) on a later turn of it.
 *   - Work a vCPU started that finishes later (an io_uring request
 *     completes as task work on the vCPU's thread and interrupts its
 *     KVM_RUN): vcpu_work_done() says so, without any lock; every vCPU
 *     before each KVM_RUN, and the I/O thread after each wake, call
 *     virtio_pci_poll(), which then calls queue_notify(...,
 *     VIRTIO_ON_VCPU) (non-blocking, whichever of them it is).
 *   - Either way, a device's own threads or timers that finish work for a
 *     queue make one of the queue's wake fds (queue_info()) readable; the
 *     I/O thread then calls queue_notify(..., VIRTIO_ON_IO_THREAD).
 *
 * The I/O thread is shared by every device, the back ends and the control
 * socket, and a guest can keep a ring full from another vCPU for ever: a
 * queue_notify() on the I/O thread serves at most VIRTIO_QUEUE_BUDGET
 * chains (or frames), then calls virtio_queue_notify_later() and returns,
 * so the others get their turn before it goes on.
 *
 * A device reports a broken driver with virtio_needs_reset(): the device
 * then sets DEVICE_NEEDS_RESET, tells the driver, logs one line, and
 * ignores its queues until reset. It never ends the VMM.
 */
#ifndef SHOJI_DEV_VIRTIO_H
#define SHOJI_DEV_VIRTIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dev/virtqueue.h"

/* Transport feature bits a device may offer (virtio 1.2, section 6). */
#define VIRTIO_F_INDIRECT_DESC_BIT 28
#define VIRTIO_F_EVENT_IDX_BIT     29
#define VIRTIO_F_VERSION_1_BIT     32
#define VIRTIO_FEATURE(bit)        (1ull << (bit))

/* Device IDs (virtio 1.2, section 5). */
#define VIRTIO_ID_NET     1
#define VIRTIO_ID_BLOCK   2
#define VIRTIO_ID_RNG     4
#define VIRTIO_ID_GPU     16
#define VIRTIO_ID_INPUT   18
#define VIRTIO_ID_VSOCK   19

#define VIRTIO_MAX_QUEUES 16

struct virtio_dev;

/* Where a queue's kicks are served (the rule above). */
enum virtio_serve {
	VIRTIO_SERVE_IO_THREAD = 0,
	VIRTIO_SERVE_VCPU,
};

/* Which path a queue_notify() call is on (the rule above). */
enum virtio_path {
	VIRTIO_ON_IO_THREAD, /* the I/O thread: may wait for the device's own work */
	VIRTIO_ON_VCPU,      /* a vCPU's kick or poll: must not block */
};

#define VIRTIO_QUEUE_WAKE_FDS 2

/* What a device declares about one queue (queue_info()). */
struct virtio_queue_info {
	enum virtio_serve serve;
	/*
	 * Descriptors the device owns (open until it is destroyed) and makes
	 * readable when the queue has work that only queue_notify() may do,
	 * such as completions from its worker threads to put in the used ring,
	 * or a timer. The I/O thread watches them, reads 8 bytes and calls
	 * queue_notify(..., VIRTIO_ON_IO_THREAD). -1: unused.
	 */
	int wake_fd[VIRTIO_QUEUE_WAKE_FDS];
};

struct virtio_device_ops {
	const char *name;        /* for log lines: "virtio-blk" */
	uint16_t device_id;
	unsigned num_queues;     /* 1 .. VIRTIO_MAX_QUEUES */
	uint16_t queue_max_size; /* power of two */
	uint32_t config_size;    /* bytes of device-specific configuration */
	/* Device features; VERSION_1 is added by the transport. */
	uint64_t (*features)(void *dev);
	void (*config_read)(void *dev, uint32_t offset, uint8_t *data, uint32_t len);
	void (*config_write)(void *dev, uint32_t offset, const uint8_t *data, uint32_t len);
	/* May refuse a feature combination; the transport then fails FEATURES_OK. */
	bool (*features_ok)(void *dev, uint64_t features);
	void (*activate)(void *dev, struct virtio_dev *vd, uint64_t features);
	/* Queue `queue` has work: serve it (see the rule above for `path`). */
	void (*queue_notify)(void *dev, struct virtio_dev *vd, unsigned queue, enum virtio_path path);
	void (*reset)(void *dev);
	/*
	 * Optional: how queue `queue` is served, asked once when the device
	 * is added to the transport. Without it: on the I/O thread, no wake fds.
	 */
	void (*queue_info)(void *dev, unsigned queue, struct virtio_queue_info *info);
	/*
	 * Optional, for VIRTIO_SERVE_VCPU queues: whether work a vCPU started
	 * has finished and waits for queue_notify(..., VIRTIO_ON_VCPU) to
	 * return it. Called from any thread, without the transport's lock,
	 * before every KVM_RUN: a few loads, no system call.
	 */
	bool (*vcpu_work_done)(void *dev, unsigned queue);
};

/* What queue_info() declares, for a device without it or a queue it leaves alone. */
static inline void virtio_queue_info_default(struct virtio_queue_info *info)
{
	info->serve = VIRTIO_SERVE_IO_THREAD;
	for (unsigned i = 0; i < VIRTIO_QUEUE_WAKE_FDS; i++)
		info->wake_fd[i] = -1;
}

/* The transport's view of queue `q`'s declaration: queue_info() over the default. */
static inline struct virtio_queue_info virtio_queue_info_of(const struct virtio_device_ops *ops,
							     void *dev, unsigned q)
{
	struct virtio_queue_info info;
	virtio_queue_info_default(&info);
	if (ops->queue_info)
		ops->queue_info(dev, q, &info);
	return info;
}

/*
 * A config_read over a device's byte image of its configuration: the bytes
 * asked for, zeros for any read the image cannot fully serve.
 */
static inline void virtio_config_copy(const uint8_t *config, size_t size, uint32_t offset,
				      uint8_t *data, uint32_t len)
{
	memset(data, 0, len);
	if (offset < size && len <= size - offset)
		memcpy(data, config + offset, len);
}

/* Queue `q` of the device (valid between activate and reset). */
struct vq *virtio_queue(struct virtio_dev *vd, unsigned q);

/*
 * Interrupts the driver for queue `q` if it wants one for what was pushed
 * since the last interrupt (vq_should_interrupt()).
 */
void virtio_queue_interrupt(struct virtio_dev *vd, unsigned q);

/* The device configuration changed (e.g. disk resized). */
void virtio_config_changed(struct virtio_dev *vd);

/* Puts the device in DEVICE_NEEDS_RESET; logs `why` once. */
void virtio_needs_reset(struct virtio_dev *vd, const char *why);

/* What one queue_notify() serves at most before it yields (see above). */
#define VIRTIO_QUEUE_BUDGET 64

/*
 * Has queue_notify(..., VIRTIO_ON_IO_THREAD) called for queue `q` on a
 * later turn of the I/O thread, after the work that is ready there now:
 * for a device that stopped at its budget with work left, and for the
 * vCPU path's hand-over (see the rule above). Any number of calls before
 * that turn make one call. Any thread; with or without the lock.
 */
void virtio_queue_notify_later(struct virtio_dev *vd, unsigned q);

/*
 * Serves queue `q` for a device that answers each chain at once: pops
 * chains into `chain` with notifications off, has serve(ctx, chain) handle
 * each and return its used length, pushes it; stops after `budget` chains
 * (0: no bound) and then, if more wait, calls virtio_queue_notify_later();
 * one interrupt for the batch; a broken ring puts the device in
 * DEVICE_NEEDS_RESET (`what` names the queue when the walker gave no
 * reason). The count served. For queue_notify(), under the transport's lock.
 */
unsigned virtio_queue_serve(struct virtio_dev *vd, unsigned q, struct vq_chain *chain,
			    unsigned budget, const char *what,
			    uint32_t (*serve)(void *ctx, struct vq_chain *chain), void *ctx);

#endif
