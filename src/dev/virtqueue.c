/*
 * Split virtqueue, device side (see virtqueue.h). The rings are shared with
 * a running guest: each descriptor is copied once and only the copy is
 * used, the available index is read with acquire ordering before the
 * entries it publishes, and the used index is stored with release ordering
 * after the entries it publishes.
 */
#include "dev/virtqueue.h"

#include <string.h>

#include "base/util.h"

#define DESC_ALIGN  16
#define AVAIL_ALIGN 2
#define USED_ALIGN  4

uint64_t vq_desc_bytes(uint16_t size) { return 16ull * size; }
uint64_t vq_avail_bytes(uint16_t size) { return 6ull + 2ull * size; }
uint64_t vq_used_bytes(uint16_t size) { return 6ull + 8ull * size; }

void vq_reset(struct vq *vq, const struct guest_mem *mem)
{
	memset(vq, 0, sizeof(*vq));
	vq->mem = mem;
}

static enum vq_pop_result vq_break(struct vq *vq, const char *why)
{
	if (!vq->broken) {
		vq->broken = true;
		vq->why_broken = why;
	}
	return VQ_BROKEN;
}

static void *vq_map(struct vq *vq, uint64_t gpa, uint64_t len, uint64_t align)
{
	if (gpa % align)
		return NULL;
	return guest_mem_ptr(vq->mem, gpa, len);
}

bool vq_enable(struct vq *vq)
{
	vq->enabled = false;
	if (vq->size == 0 || vq->size > VQ_MAX_SIZE || (vq->size & (vq->size - 1))) {
		vq_break(vq, "queue size is not a power of two from 1 to 32768");
		return false;
	}
	vq->desc = vq_map(vq, vq->desc_gpa, vq_desc_bytes(vq->size), DESC_ALIGN);
	vq->avail = vq_map(vq, vq->avail_gpa, vq_avail_bytes(vq->size), AVAIL_ALIGN);
	vq->used_hdr = vq_map(vq, vq->used_gpa, vq_used_bytes(vq->size), USED_ALIGN);
	if (!vq->desc || !vq->avail || !vq->used_hdr) {
		vq_break(vq, "ring outside guest RAM or misaligned");
		return false;
	}
	vq->used_ring = (uint32_t *)(vq->used_hdr + 2);
	vq->enabled = true;
	vq->broken = false;
	vq->why_broken = NULL;
	vq->last_avail = vq->used_idx = vq->signalled_used = 0;
	vq->signalled_valid = false;
	return true;
}

static uint16_t vq_avail_idx(const struct vq *vq)
{
	return __atomic_load_n(&vq->avail[1], __ATOMIC_ACQUIRE);
}

static uint16_t *vq_used_event(const struct vq *vq)
{
	return &vq->avail[2 + vq->size];
}

static uint16_t *vq_avail_event(const struct vq *vq)
{
	return (uint16_t *)&vq->used_ring[2 * vq->size];
}

static struct vring_desc vq_read_desc(const struct vring_desc *table, uint16_t i)
{
	struct vring_desc d;
	/* One copy: the guest may rewrite the table while we look at it. */
	memcpy(&d, (const void *)&table[i], sizeof(d));
	return d;
}

static bool vq_add_segment(struct vq *vq, struct vq_chain *c, const struct vring_desc *d)
{
	bool writable = d->flags & VRING_DESC_F_WRITE;
	if (!writable && c->nr_iov > c->nr_readable) {
		vq_break(vq, "device-readable buffer after a device-writable one");
		return false;
	}
	if (d->len == 0)
		return true;
	void *p = guest_mem_ptr(vq->mem, d->addr, d->len);
	if (!p) {
		vq_break(vq, "buffer outside guest RAM");
		return false;
	}
	if (c->nr_iov == VQ_MAX_SEGS) {
		vq_break(vq, "descriptor chain has too many buffers");
		return false;
	}
	c->iov[c->nr_iov++] = (struct iovec){ p, d->len };
	if (writable) {
		c->writable_len += d->len;
	} else {
		c->nr_readable++;
		c->readable_len += d->len;
	}
	return true;
}

static bool vq_walk_indirect(struct vq *vq, struct vq_chain *c, const struct vring_desc *ind)
{
	if (!vq->indirect) {
		vq_break(vq, "indirect descriptor without VIRTIO_F_INDIRECT_DESC");
		return false;
	}
	if (ind->flags & VRING_DESC_F_NEXT) {
		vq_break(vq, "indirect descriptor with the NEXT flag");
		return false;
	}
	if (ind->len == 0 || ind->len % sizeof(struct vring_desc) ||
	    ind->len / sizeof(struct vring_desc) > VQ_MAX_INDIRECT) {
		vq_break(vq, "indirect table length is not a multiple of 16 up to 16 KiB");
		return false;
	}
	uint16_t n = (uint16_t)(ind->len / sizeof(struct vring_desc));
	const struct vring_desc *table = vq_map(vq, ind->addr, ind->len, DESC_ALIGN);
	if (!table) {
		vq_break(vq, "indirect table outside guest RAM or misaligned");
		return false;
	}
	uint16_t i = 0;
	for (unsigned count = 1;; count++) {
		if (count > n) {
			vq_break(vq, "indirect chain longer than its table (a loop)");
			return false;
		}
		struct vring_desc d = vq_read_desc(table, i);
		if (d.flags & VRING_DESC_F_INDIRECT) {
			vq_break(vq, "indirect descriptor inside an indirect table");
			return false;
		}
		if (!vq_add_segment(vq, c, &d))
			return false;
		if (!(d.flags & VRING_DESC_F_NEXT))
			return true;
		if (d.next >= n) {
			vq_break(vq, "indirect descriptor's next is outside its table");
			return false;
		}
		i = d.next;
	}
}

static bool vq_walk(struct vq *vq, struct vq_chain *c, uint16_t head)
{
	uint16_t i = head;
	for (unsigned count = 1;; count++) {
		if (count > vq->size) {
			vq_break(vq, "descriptor chain longer than the queue (a loop)");
			return false;
		}
		struct vring_desc d = vq_read_desc(vq->desc, i);
		if (d.flags & VRING_DESC_F_INDIRECT)
			return vq_walk_indirect(vq, c, &d); /* it ends the chain */
		if (!vq_add_segment(vq, c, &d))
			return false;
		if (!(d.flags & VRING_DESC_F_NEXT))
			return true;
		if (d.next >= vq->size) {
			vq_break(vq, "descriptor's next is outside the table");
			return false;
		}
		i = d.next;
	}
}

enum vq_pop_result vq_pop(struct vq *vq, struct vq_chain *c)
{
	if (vq->broken)
		return VQ_BROKEN;
	if (!vq->enabled)
		return VQ_EMPTY;
	uint16_t avail_idx = vq_avail_idx(vq);
	uint16_t pending = (uint16_t)(avail_idx - vq->last_avail);
	if (pending == 0)
		return VQ_EMPTY;
	if (pending > vq->size)
		return vq_break(vq, "driver made more buffers available than the queue holds");

	uint16_t head = __atomic_load_n(&vq->avail[2 + vq->last_avail % vq->size], __ATOMIC_RELAXED);
	if (head >= vq->size)
		return vq_break(vq, "available ring names a descriptor outside the table");

	c->head = head;
	c->nr_iov = c->nr_readable = 0;
	c->readable_len = c->writable_len = 0;
	if (!vq_walk(vq, c, head))
		return VQ_BROKEN;
	if (c->readable_len + c->writable_len > UINT32_MAX)
		return vq_break(vq, "descriptor chain longer than 4 GiB");

	vq->last_avail++;
	if (vq->event_idx)
		__atomic_store_n(vq_avail_event(vq), vq->last_avail, __ATOMIC_RELEASE);
	return VQ_CHAIN;
}

bool vq_has_avail(const struct vq *vq)
{
	return vq->enabled && !vq->broken && vq_avail_idx(vq) != vq->last_avail;
}

void vq_push(struct vq *vq, uint16_t head, uint32_t written)
{
	if (!vq->enabled || vq->broken)
		return;
	uint16_t slot = vq->used_idx % vq->size;
	__atomic_store_n(&vq->used_ring[2 * slot], (uint32_t)head, __ATOMIC_RELAXED);
	__atomic_store_n(&vq->used_ring[2 * slot + 1], written, __ATOMIC_RELAXED);
	vq->used_idx++;
	__atomic_store_n(&vq->used_hdr[1], vq->used_idx, __ATOMIC_RELEASE);
}

bool vq_should_interrupt(struct vq *vq)
{
	if (!vq->enabled)
		return false;
	/* The used index must be visible before we read what the driver asked for. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx)
		return !(__atomic_load_n(&vq->avail[0], __ATOMIC_RELAXED) & VRING_AVAIL_F_NO_INTERRUPT);

	uint16_t old = vq->signalled_used, now = vq->used_idx;
	bool valid = vq->signalled_valid;
	vq->signalled_used = now;
	vq->signalled_valid = true;
	if (!valid)
		return true;
	uint16_t event = __atomic_load_n(vq_used_event(vq), __ATOMIC_RELAXED);
	/* virtio 1.2, 2.7.10: interrupt if used_event lies in (old, now]. */
	return (uint16_t)(now - event - 1) < (uint16_t)(now - old);
}

bool vq_enable_notify(struct vq *vq, bool enable)
{
	if (!vq->enabled || vq->broken)
		return false;
	if (vq->event_idx) {
		if (enable)
			__atomic_store_n(vq_avail_event(vq), vq->last_avail, __ATOMIC_RELAXED);
	} else {
		uint16_t flags = enable ? 0 : VRING_USED_F_NO_NOTIFY;
		__atomic_store_n(&vq->used_hdr[0], flags, __ATOMIC_RELAXED);
	}
	/* Publish the request before looking for buffers that raced with it. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return vq_avail_idx(vq) != vq->last_avail;
}
