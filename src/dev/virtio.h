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
 *   - queue_notify() on the I/O thread when the driver kicks a queue, or
 *     when the device signalled the queue's queue_event_fd(); for a queue
 *     in vcpu_notify_queues(), on the kicking vCPU's thread instead (or
 *     vcpu_queue_notify(), which the device has for that thread);
 *   - reset() when the driver resets the device (status 0) or the machine
 *     stops; afterwards no queue may be touched until the next activate().
 *
 * All callbacks of one device are serialised by the transport's lock, so a
 * device needs no lock of its own for state shared with them.
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
#define VIRTIO_ID_VSOCK   19

#define VIRTIO_MAX_QUEUES 16

struct virtio_dev;

struct virtio_device_ops {
	const char *name;        /* for log lines: "virtio-blk" */
	uint16_t device_id;
	unsigned num_queues;     /* 1 .. VIRTIO_MAX_QUEUES */
	uint16_t queue_max_size; /* power of two */
	uint32_t config_size;    /* bytes of device-specific configuration */
	/*
	 * Optional: the queues (bit q for queue q) whose kicks the device
	 * serves on the vCPU thread that wrote the notify register, with no
	 * ioeventfd; asked once per activation. The MMIO exit to user space
	 * costs less than waking the I/O thread, for a queue where latency
	 * counts and each kick's work is short and never blocks (vsock's tx:
	 * one non-blocking sendmsg per packet; virtio-blk's reads and O_DIRECT
	 * writes: one io_uring submission per kick, see vcpu_queue_notify).
	 */
	uint32_t (*vcpu_notify_queues)(void *dev);
	/* Device features; VERSION_1 is added by the transport. */
	uint64_t (*features)(void *dev);
	void (*config_read)(void *dev, uint32_t offset, uint8_t *data, uint32_t len);
	void (*config_write)(void *dev, uint32_t offset, const uint8_t *data, uint32_t len);
	/* May refuse a feature combination; the transport then fails FEATURES_OK. */
	bool (*features_ok)(void *dev, uint64_t features);
	void (*activate)(void *dev, struct virtio_dev *vd, uint64_t features);
	void (*queue_notify)(void *dev, struct virtio_dev *vd, unsigned queue);
	/*
	 * Optional: what a kick of a vcpu_notify_queues queue calls instead
	 * of queue_notify, on the vCPU thread; also called from
	 * virtio_pci_poll() for the queues vcpu_completions() names. Must not
	 * block: the guest's CPU waits for it to return.
	 */
	void (*vcpu_queue_notify)(void *dev, struct virtio_dev *vd, unsigned queue);
	/*
	 * Optional, called without the transport's lock from any thread:
	 * the queues (bit q for queue q) where work started by
	 * vcpu_queue_notify has finished and waits for it to be returned.
	 * Work a vCPU thread starts in the kernel (an io_uring request)
	 * finishes as task work on that same thread, which interrupts its
	 * KVM_RUN; the vCPU loop then calls virtio_pci_poll(), and so the
	 * completion reaches the guest with one thread wake-up, the vCPU's.
	 */
	uint32_t (*vcpu_completions)(void *dev);
	void (*reset)(void *dev);
	/*
	 * Optional: an eventfd (owned by the device, open until it is
	 * destroyed) that the device's own threads signal when `queue` has
	 * work that only queue_notify() may do, such as completions to put in
	 * the used ring. The host watches it on the I/O thread and handles it
	 * as a kick. -1 when the queue has none.
	 */
	int (*queue_event_fd)(void *dev, unsigned queue);
	/* Optional: a second one, watched and handled the same way (read 8
	 * bytes, then queue_notify); virtio-blk's watchdog timerfd. */
	int (*queue_timer_fd)(void *dev, unsigned queue);
};

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
 * Has queue_notify() called again for queue `q` on a later turn of the I/O
 * thread, after the work that is ready there now: for a device that
 * stopped at its budget with work left. Any number of calls before that
 * turn make one call.
 */
void virtio_queue_notify_later(struct virtio_dev *vd, unsigned q);

#endif
