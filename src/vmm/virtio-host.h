/*
 * The machine's side of its virtio-pci devices: for each device, one
 * eventfd per queue watched by the I/O thread and attached to the queue's
 * notify register with KVM ioeventfd when the driver starts the device,
 * and MSIs sent with KVM_SIGNAL_MSI (except the queues a device serves on
 * the vCPU threads: no ioeventfd there, see virtio_host_poll()). The devices
 * themselves (dev/virtio-*) know nothing of KVM.
 */
#ifndef SHOJI_VMM_VIRTIO_HOST_H
#define SHOJI_VMM_VIRTIO_HOST_H

#include <stdbool.h>

#include "dev/pci.h"
#include "dev/virtio.h"
#include "hv/kvm.h"
#include "vmm/iothread.h"

#define VIRTIO_HOST_MAX_DEVICES 16

struct virtio_host;

struct virtio_host *virtio_host_create(struct kvm_vm *vm, struct pci_bus *bus, struct iothread *io);
/* Puts a device on the PCI bus. Only before the I/O thread starts. */
bool virtio_host_add(struct virtio_host *h, const struct virtio_device_ops *ops, void *dev);
/*
 * Returns to the guest what the devices finished of the work they started
 * on a vCPU thread (virtio_pci_poll()). The vCPU threads call it before
 * each KVM_RUN; the I/O thread, each time it wakes (set up here). Any
 * thread, no lock; a few loads when there is nothing.
 */
void virtio_host_poll(struct virtio_host *h);

/* After the vCPUs and the I/O thread have stopped: resets and frees every device's transport. */
void virtio_host_destroy(struct virtio_host *h);

#endif
