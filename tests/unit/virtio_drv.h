/*
 * The simulated driver of the virtio device tests (net, input, gpu): split
 * virtqueues laid out in guest memory from a ring's base (descriptors at
 * +0, the available ring at +0x10000, the used ring at +0x20000), chains
 * published and used entries taken the way a Linux driver does it. One
 * copy, so that each device's test only says what it sends.
 *
 * Include after <cmocka.h> (the helpers assert) and the device headers.
 */
#ifndef SHOJI_TESTS_VIRTIO_DRV_H
#define SHOJI_TESTS_VIRTIO_DRV_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "dev/virtqueue.h"
#include "hv/mem.h"

#define VDRV_AVAIL_OFF 0x10000u
#define VDRV_USED_OFF  0x20000u
#define VDRV_SPAN      0x30000u   /* what one ring takes from its base */

/* One descriptor of a chain: a guest buffer, device-writable or not. */
struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

struct vdrv_ring {
	struct guest_mem *mem;
	uint64_t base;
	uint16_t size;
	uint16_t next_desc;       /* where the next chain's head goes */
	uint16_t used_seen;       /* used entries taken so far */
};

static inline void *vdrv_ptr(const struct vdrv_ring *r, uint64_t off, uint64_t len)
{
	void *p = guest_mem_ptr(r->mem, r->base + off, len);
	assert_non_null(p);
	return p;
}

static inline struct vring_desc *vdrv_desc(const struct vdrv_ring *r)
{
	return vdrv_ptr(r, 0, 16u * r->size);
}

static inline uint16_t *vdrv_avail(const struct vdrv_ring *r)
{
	return vdrv_ptr(r, VDRV_AVAIL_OFF, 6u + 2u * r->size);
}

/* flags and idx */
static inline uint16_t *vdrv_used_hdr(const struct vdrv_ring *r)
{
	return vdrv_ptr(r, VDRV_USED_OFF, 4);
}

/* id and len of each entry, then avail_event (as the low half of [2 * size]) */
static inline uint32_t *vdrv_used_ring(const struct vdrv_ring *r)
{
	return vdrv_ptr(r, VDRV_USED_OFF + 4, 8u * r->size + 4);
}

/* Zeroes the ring's memory and enables vq on it, as a driver's DRIVER_OK would. */
static inline void vdrv_start(struct vdrv_ring *r, struct vq *vq, struct guest_mem *mem, uint64_t base,
			      uint16_t size, bool event_idx)
{
	*r = (struct vdrv_ring){ .mem = mem, .base = base, .size = size };
	memset(vdrv_ptr(r, 0, VDRV_SPAN), 0, VDRV_SPAN);
	vq_reset(vq, mem);
	vq->size = size;
	vq->desc_gpa = base;
	vq->avail_gpa = base + VDRV_AVAIL_OFF;
	vq->used_gpa = base + VDRV_USED_OFF;
	vq->event_idx = event_idx;
	assert_true(vq_enable(vq));
}

/* Publishes one chain of n segments (descriptors taken in turn around the table). */
static inline void vdrv_publish(struct vdrv_ring *r, const struct seg *s, unsigned n)
{
	struct vring_desc *t = vdrv_desc(r);
	uint16_t head = r->next_desc;
	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((head + i) % r->size), next = (uint16_t)((head + i + 1) % r->size);
		uint16_t flags = (uint16_t)((s[i].write ? VRING_DESC_F_WRITE : 0) |
					    (i + 1 < n ? VRING_DESC_F_NEXT : 0));
		t[idx] = (struct vring_desc){ s[i].gpa, s[i].len, flags, next };
	}
	r->next_desc = (uint16_t)((head + n) % r->size);
	uint16_t *avail = vdrv_avail(r);
	avail[2 + avail[1] % r->size] = head;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	avail[1]++;
}

/* Used entries the device returned and the driver has not taken yet. */
static inline unsigned vdrv_used_count(const struct vdrv_ring *r)
{
	return (uint16_t)(vdrv_used_hdr(r)[1] - r->used_seen);
}

/* The next used entry, which must be there: its length, and its head in *id. */
static inline uint32_t vdrv_take_used(struct vdrv_ring *r, uint32_t *id)
{
	assert_true(vdrv_used_count(r) > 0);
	uint16_t slot = r->used_seen % r->size;
	uint32_t *used = vdrv_used_ring(r);
	if (id)
		*id = used[2 * slot];
	r->used_seen++;
	return used[2 * slot + 1];
}

#endif
