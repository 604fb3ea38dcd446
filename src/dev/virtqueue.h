/*
 * A split virtqueue (virtio 1.2, section 2.7) as the device sees it: the
 * driver's descriptor table, available ring and used ring live in guest
 * memory, and every value read from them is hostile. vq_pop() turns the next
 * available descriptor chain into host iovecs, checking on the way:
 *   - the head and every `next` index are inside the table;
 *   - a chain has at most `size` descriptors (so loops end), an indirect
 *     table at most VQ_MAX_INDIRECT, and no descriptor inside an indirect
 *     table is itself indirect or both indirect and chained;
 *   - indirect descriptors only when VIRTIO_F_INDIRECT_DESC was negotiated;
 *   - every buffer lies wholly in guest RAM (not in a hole, no overflow);
 *   - device-writable buffers come after all device-readable ones;
 *   - the driver never claims more new buffers than the queue holds.
 * Any violation marks the queue broken: it returns VQ_BROKEN from then on,
 * and the device is expected to set DEVICE_NEEDS_RESET and log once.
 *
 * Not thread-safe: one thread (the device's I/O thread) owns a queue.
 */
#ifndef SHOJI_DEV_VIRTQUEUE_H
#define SHOJI_DEV_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "hv/mem.h"

#define VQ_MAX_SIZE     32768
#define VQ_MAX_INDIRECT 1024
/* Segments of one chain handed to a device; longer chains are refused. */
#define VQ_MAX_SEGS     1024

#define VRING_DESC_F_NEXT      1
#define VRING_DESC_F_WRITE     2
#define VRING_DESC_F_INDIRECT  4
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY     1

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vq {
	const struct guest_mem *mem;
	uint16_t size;            /* power of two, 1 .. VQ_MAX_SIZE */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool indirect;            /* VIRTIO_F_INDIRECT_DESC negotiated */
	bool event_idx;           /* VIRTIO_F_EVENT_IDX negotiated */

	/* Set by vq_enable() from the addresses above. */
	bool enabled;
	bool broken;
	const char *why_broken;
	struct vring_desc *desc;
	uint16_t *avail;          /* flags, idx, ring[size], used_event */
	uint16_t *used_hdr;       /* flags, idx */
	uint32_t *used_ring;      /* (id, len) pairs, then avail_event as u16 */

	uint16_t last_avail;      /* next available entry to consume */
	uint16_t used_idx;        /* our copy of used->idx */
	uint16_t signalled_used;  /* used_idx when we last interrupted the driver */
	bool signalled_valid;
};

/* One chain: readable segments first (nr_readable of them), then writable. */
struct vq_chain {
	uint16_t head;
	unsigned nr_iov;
	unsigned nr_readable;
	uint64_t readable_len;
	uint64_t writable_len;
	struct iovec iov[VQ_MAX_SEGS];
};

enum vq_pop_result {
	VQ_EMPTY,
	VQ_CHAIN,
	VQ_BROKEN,
};

/* Sizes in guest memory of the three areas, for a queue of `size`. */
uint64_t vq_desc_bytes(uint16_t size);
uint64_t vq_avail_bytes(uint16_t size);
uint64_t vq_used_bytes(uint16_t size);

/* Resets all state; the queue keeps `mem` and is disabled. */
void vq_reset(struct vq *vq, const struct guest_mem *mem);

/*
 * Validates size, alignment and placement of the rings and maps them.
 * Returns false (queue left disabled, why_broken set) when the driver's
 * configuration is invalid.
 */
bool vq_enable(struct vq *vq);

enum vq_pop_result vq_pop(struct vq *vq, struct vq_chain *chain);

/* Whether the driver has made buffers available that vq_pop() has not
 * taken yet (false for a disabled or broken queue). */
bool vq_has_avail(const struct vq *vq);

/* Returns a chain to the driver with `written` bytes written into it. */
void vq_push(struct vq *vq, uint16_t head, uint32_t written);

/*
 * Whether the driver wants an interrupt for what was pushed since the last
 * one (VRING_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX). Call once
 * after a batch of vq_push(); it records that the driver was signalled.
 */
bool vq_should_interrupt(struct vq *vq);

/*
 * Tells the driver whether to notify us (EVENT_IDX: avail_event; otherwise
 * VRING_USED_F_NO_NOTIFY). Returns true when new buffers arrived meanwhile,
 * so a device that disables notifications while it polls does not miss any.
 */
bool vq_enable_notify(struct vq *vq, bool enable);

#endif
