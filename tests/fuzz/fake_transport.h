/*
 * The virtio transport as the device fuzzers (virtio-net, virtio-input,
 * virtio-gpu) stand it in for dev/virtio-pci.c: two queues, interrupts
 * only decided (vq_should_interrupt runs its event-index logic), a
 * device's "needs reset" recorded for the fuzzer to check, and work left
 * for later simply left in the ring (one kick per input). Definitions, not
 * declarations: include it in exactly one file of a fuzz target.
 */
#ifndef SHOJI_TESTS_FUZZ_FAKE_TRANSPORT_H
#define SHOJI_TESTS_FUZZ_FAKE_TRANSPORT_H

#include <stdbool.h>

#include "dev/virtio.h"
#include "dev/virtqueue.h"

struct virtio_dev {
	struct vq vq[2];
	bool needs_reset;
};

struct vq *virtio_queue(struct virtio_dev *vd, unsigned q)
{
	return q < 2 && vd->vq[q].enabled ? &vd->vq[q] : NULL;
}

void virtio_queue_interrupt(struct virtio_dev *vd, unsigned q)
{
	vq_should_interrupt(&vd->vq[q]);
}

void virtio_config_changed(struct virtio_dev *vd)
{
	(void)vd;
}

void virtio_needs_reset(struct virtio_dev *vd, const char *why)
{
	(void)why;
	vd->needs_reset = true;
}

void virtio_queue_notify_later(struct virtio_dev *vd, unsigned q)
{
	(void)vd, (void)q; /* one kick per input: what is left stays in the ring */
}

#endif
