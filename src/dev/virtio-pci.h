/*
 * The virtio 1.x modern PCI transport (virtio 1.2, section 4.1): one PCI
 * function per virtio device, a 32 KiB memory BAR 0 holding the common
 * configuration (0x0000), ISR (0x1000), device configuration (0x2000),
 * notification area (0x3000, 4 bytes per queue), MSI-X table (0x4000) and
 * PBA (0x5000), each announced by a capability.
 *
 * The machine supplies two services: sending an MSI, and routing a queue's
 * notification address to an eventfd (KVM ioeventfd) so kicks reach the I/O
 * thread without a vCPU exit; it then calls virtio_pci_kick() for them.
 * Without an eventfd, a kick arrives as an MMIO write and is handled the
 * same way on the vCPU thread; a device may ask for that on purpose
 * (VIRTIO_SERVE_VCPU, dev/virtio.h) and then finish the work with
 * virtio_pci_poll().
 *
 * A driver that does not enable MSI-X gets INTx: the function's line is
 * high while an ISR bit is set. Not there yet: the VIRTIO_PCI_CAP_PCI_CFG
 * window.
 */
#ifndef SHOJI_DEV_VIRTIO_PCI_H
#define SHOJI_DEV_VIRTIO_PCI_H

#include <stdbool.h>
#include <stdint.h>

#include "dev/pci.h"
#include "dev/virtio.h"
#include "hv/mem.h"

#define VIRTIO_PCI_BAR_SIZE     0x8000
#define VIRTIO_PCI_COMMON_OFF   0x0000
#define VIRTIO_PCI_ISR_OFF      0x1000
#define VIRTIO_PCI_DEVICE_OFF   0x2000
#define VIRTIO_PCI_NOTIFY_OFF   0x3000
#define VIRTIO_PCI_NOTIFY_MULT  4
#define VIRTIO_PCI_MSIX_OFF     0x4000
#define VIRTIO_PCI_PBA_OFF      0x5000

struct virtio_pci_host {
	void (*send_msi)(void *ctx, uint64_t addr, uint32_t data);
	/* Attach (on) or detach an eventfd for the 4-byte notify register at gpa. */
	bool (*set_ioeventfd)(void *ctx, struct virtio_dev *vd, unsigned queue, uint64_t gpa, bool on);
	/*
	 * Have virtio_pci_kick(vd, queue) called on a later turn of the I/O
	 * thread (virtio_queue_notify_later()); called with or without the
	 * transport's lock, from any thread, so it must only schedule. The
	 * vCPU path's hand-over depends on it (dev/virtio.h): a host without
	 * it has no VIRTIO_SERVE_VCPU queues worth the name.
	 */
	void (*kick_later)(void *ctx, struct virtio_dev *vd, unsigned queue);
	void *ctx;
};

/* Adds the device to the bus; NULL (logged) when it cannot. */
struct virtio_dev *virtio_pci_create(struct pci_bus *bus, const struct guest_mem *mem,
				     const struct virtio_device_ops *ops, void *dev,
				     const struct virtio_pci_host *host);
/* Resets the device (detaching eventfds) and frees the transport. */
void virtio_pci_destroy(struct virtio_dev *vd);

/* A notification for `queue` arrived through its eventfd. */
void virtio_pci_kick(struct virtio_dev *vd, unsigned queue);

/*
 * Returns to the driver what the device finished of the work it started
 * from vCPU kicks (virtio_device_ops.vcpu_work_done). Every thread that
 * may have started such work calls this whenever it wakes: the vCPU
 * threads before each KVM_RUN (and so after every -EINTR), the I/O thread
 * after each epoll_wait. Cheap when there is nothing: no lock is taken.
 */
void virtio_pci_poll(struct virtio_dev *vd);

/* The BAR 0 ops, for tests that drive the transport as a driver would. */
extern const struct io_ops virtio_pci_bar_ops;

#endif
