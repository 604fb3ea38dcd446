/*
 * A simulated virtio-vsock driver for tests, the fuzzer and bench/vsock:
 * the three split queues live in real guest memory (no KVM), a fake
 * transport implements the four calls of dev/virtio.h, and the helpers
 * below play the guest: tx packets (a 44-byte header descriptor, then a
 * payload descriptor), rx buffers of a chosen size, and used rx entries
 * read back as packets.
 *
 * Include it in exactly one file of an executable: it defines the
 * transport's functions. The transport serialises callers with a mutex,
 * as dev/virtio-pci.c does with its lock.
 */
#ifndef SHOJI_TESTS_VSOCK_SIM_H
#define SHOJI_TESTS_VSOCK_SIM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "dev/virtio-pci.h"
#include "dev/virtio-vsock.h"
#include "dev/virtio.h"
#include "hv/mem.h"

#define SIM_RAM       (128u << 20)
#define SIM_QSIZE     256u
#define SIM_RING_GPA  0x100000u            /* queue q at + q * 0x10000 */
#define SIM_TXHDR_GPA 0x400000u            /* 64 bytes per tx descriptor pair */
#define SIM_TXDAT_GPA 0x1000000u           /* 64 KiB per tx slot */
#define SIM_RXBUF_GPA 0x2000000u           /* SIM_RX_STRIDE per rx descriptor */
#define SIM_RX_STRIDE 0x20000u
#define SIM_GUEST_CID 42u

/* ---- the fake transport ---- */

struct virtio_dev {
	pthread_mutex_t lock;
	pthread_cond_t irq;      /* broadcast at every interrupt call */
	void *dev;               /* the struct virtio_vsock */
	struct vq vq[3];
	unsigned interrupts[3];
	unsigned needs_reset;
	char why[128];
	uint32_t later;          /* queues virtio_queue_notify_later() asked for */
};

struct vq *virtio_queue(struct virtio_dev *vd, unsigned q)
{
	return q < 3 && vd->vq[q].enabled ? &vd->vq[q] : NULL;
}

void virtio_queue_interrupt(struct virtio_dev *vd, unsigned q)
{
	if (q < 3 && vq_should_interrupt(&vd->vq[q]))
		vd->interrupts[q]++;
	pthread_cond_broadcast(&vd->irq);
}

void virtio_config_changed(struct virtio_dev *vd)
{
	(void)vd;
}

void virtio_needs_reset(struct virtio_dev *vd, const char *why)
{
	vd->needs_reset++;
	snprintf(vd->why, sizeof(vd->why), "%s", why);
}

/* Under the transport's lock: the queue is served again after this kick. */
void virtio_queue_notify_later(struct virtio_dev *vd, unsigned q)
{
	vd->later |= 1u << q;
}

/*
 * What vmm/vsock-host's wake() calls: a kick under the transport's lock;
 * then the later turns the device asked for, at once (the VMM's I/O thread
 * would serve other work between them).
 */
void virtio_pci_kick(struct virtio_dev *vd, unsigned queue)
{
	pthread_mutex_lock(&vd->lock);
	vd->later |= 1u << queue;
	while (vd->later) {
		unsigned q = (unsigned)__builtin_ctz(vd->later);
		vd->later &= ~(1u << q);
		if (vd->dev && q < 3 && vd->vq[q].enabled)
			virtio_vsock_ops.queue_notify(vd->dev, vd, q, VIRTIO_ON_IO_THREAD);
	}
	pthread_mutex_unlock(&vd->lock);
}

/* ---- the simulated driver ---- */

struct sim {
	struct guest_mem mem;
	struct virtio_dev vd;
	struct virtio_vsock *vs;
	uint16_t tx_next;        /* next tx descriptor (pairs) */
	uint16_t tx_used_seen;
	uint32_t rx_posted;      /* rx buffers published */
	uint16_t rx_used_seen;
	uint32_t rx_size[SIM_QSIZE];
	/* When >= 0, the driver's kick of queue q is a write to this eventfd,
	 * as a guest's notify is an ioeventfd the VMM's I/O thread serves
	 * (bench/vsock); otherwise the kick runs the device right here. */
	int kick_fd[3];
	/* 0: each tx descriptor pair has its own 64 KiB payload slot. N: the
	 * payloads reuse N slots in turn, as a guest's socket layer reuses the
	 * few buffers its credit lets it have in flight (bench/vsock); only
	 * where no one checks the bytes (a slot may come round again before
	 * the device has read it). */
	unsigned tx_data_slots;
};

struct sim_pkt {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len, flags, buf_alloc, fwd_cnt;
	uint16_t type, op;
	uint32_t used;           /* bytes the device wrote */
	const uint8_t *data;     /* the payload, in guest memory */
};

static inline uint64_t sim_ring(unsigned q)
{
	return SIM_RING_GPA + q * 0x10000u;
}

static inline struct vring_desc *sim_desc(struct sim *s, unsigned q)
{
	return guest_mem_ptr(&s->mem, sim_ring(q), 16 * SIM_QSIZE);
}

static inline uint16_t *sim_avail(struct sim *s, unsigned q)
{
	return guest_mem_ptr(&s->mem, sim_ring(q) + 0x4000, 6 + 2 * SIM_QSIZE);
}

static inline uint16_t *sim_used(struct sim *s, unsigned q)
{
	return guest_mem_ptr(&s->mem, sim_ring(q) + 0x8000, 6 + 8 * SIM_QSIZE);
}

static inline void sim_publish(struct sim *s, unsigned q, uint16_t head)
{
	uint16_t *avail = sim_avail(s, q);
	avail[2 + avail[1] % SIM_QSIZE] = head;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	avail[1]++;
}

static inline void sim_kick(struct sim *s, unsigned q)
{
	if (s->kick_fd[q] >= 0) {
		uint64_t one = 1;
		ssize_t w = write(s->kick_fd[q], &one, sizeof(one));
		(void)w; /* the counter is never near its limit: the reader resets it */
		return;
	}
	virtio_pci_kick(&s->vd, q);
}

/* What the VMM does for backend->wake(): a kick of the rx queue. */
static inline void sim_wake(struct sim *s)
{
	sim_kick(s, VIRTIO_VSOCK_QUEUE_RX);
}

/* Driver (re)initialisation: fresh rings, queues enabled, DRIVER_OK. */
static inline void sim_start(struct sim *s, uint64_t features)
{
	for (unsigned q = 0; q < 3; q++) {
		memset(guest_mem_ptr(&s->mem, sim_ring(q), 0x10000), 0, 0x10000);
		struct vq *vq = &s->vd.vq[q];
		vq_reset(vq, &s->mem);
		vq->size = SIM_QSIZE;
		vq->desc_gpa = sim_ring(q);
		vq->avail_gpa = sim_ring(q) + 0x4000;
		vq->used_gpa = sim_ring(q) + 0x8000;
		vq->event_idx = features & VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT);
		vq_enable(vq);
	}
	s->tx_next = s->tx_used_seen = s->rx_used_seen = 0;
	s->rx_posted = 0;
	pthread_mutex_lock(&s->vd.lock);
	virtio_vsock_ops.activate(s->vs, &s->vd, features);
	pthread_mutex_unlock(&s->vd.lock);
}

static inline void sim_reset(struct sim *s)
{
	pthread_mutex_lock(&s->vd.lock);
	virtio_vsock_ops.reset(s->vs);
	for (unsigned q = 0; q < 3; q++)
		vq_reset(&s->vd.vq[q], &s->mem);
	pthread_mutex_unlock(&s->vd.lock);
}

static inline bool sim_init(struct sim *s, const struct vsock_backend *be)
{
	memset(s, 0, sizeof(*s));
	for (unsigned q = 0; q < 3; q++)
		s->kick_fd[q] = -1;
	pthread_mutex_init(&s->vd.lock, NULL);
	pthread_cond_init(&s->vd.irq, NULL);
	if (!guest_mem_alloc(&s->mem, SIM_RAM))
		return false;
	s->vs = virtio_vsock_create(SIM_GUEST_CID, be);
	if (!s->vs)
		return false;
	s->vd.dev = s->vs;
	sim_start(s, virtio_vsock_ops.features(s->vs));
	return true;
}

static inline void sim_fini(struct sim *s)
{
	sim_reset(s);
	virtio_vsock_destroy(s->vs);
	guest_mem_free(&s->mem);
	pthread_mutex_destroy(&s->vd.lock);
	pthread_cond_destroy(&s->vd.irq);
}

static inline void sim_hdr(uint8_t *h, uint64_t src_cid, uint64_t dst_cid, uint32_t src_port,
			   uint32_t dst_port, uint32_t len, uint16_t type, uint16_t op, uint32_t flags,
			   uint32_t buf_alloc, uint32_t fwd_cnt)
{
	le_store(h + VSOCK_HDR_SRC_CID, src_cid, 8);
	le_store(h + VSOCK_HDR_DST_CID, dst_cid, 8);
	le_store(h + VSOCK_HDR_SRC_PORT, src_port, 4);
	le_store(h + VSOCK_HDR_DST_PORT, dst_port, 4);
	le_store(h + VSOCK_HDR_LEN, len, 4);
	le_store(h + VSOCK_HDR_TYPE, type, 2);
	le_store(h + VSOCK_HDR_OP, op, 2);
	le_store(h + VSOCK_HDR_FLAGS, flags, 4);
	le_store(h + VSOCK_HDR_BUF_ALLOC, buf_alloc, 4);
	le_store(h + VSOCK_HDR_FWD_CNT, fwd_cnt, 4);
}

/*
 * Publishes one tx chain: `hdr_len` header bytes, then `data_len` payload
 * bytes (a second descriptor when non-zero), without kicking.
 */
static inline void sim_tx_publish(struct sim *s, const uint8_t *hdr, uint32_t hdr_len,
				  const void *data, uint32_t data_len)
{
	struct vring_desc *d = sim_desc(s, VIRTIO_VSOCK_QUEUE_TX);
	uint16_t head = s->tx_next;
	uint16_t slot = (uint16_t)(head / 2);
	unsigned data_slot = s->tx_data_slots ? slot % s->tx_data_slots : slot;
	uint64_t hgpa = SIM_TXHDR_GPA + 64u * slot, dgpa = SIM_TXDAT_GPA + 0x10000u * data_slot;
	memcpy(guest_mem_ptr(&s->mem, hgpa, 64), hdr, hdr_len < 64 ? hdr_len : 64);
	if (data_len && data) /* NULL: the payload is in the slot already (bench/vsock) */
		memcpy(guest_mem_ptr(&s->mem, dgpa, data_len), data, data_len);
	d[head] = (struct vring_desc){ hgpa, hdr_len, data_len ? VRING_DESC_F_NEXT : 0,
				       (uint16_t)(head + 1) };
	d[head + 1] = (struct vring_desc){ dgpa, data_len, 0, 0 };
	s->tx_next = (uint16_t)((head + 2) % SIM_QSIZE);
	sim_publish(s, VIRTIO_VSOCK_QUEUE_TX, head);
}

/* One well-formed packet from the guest (its CID to the host's), kicked. */
static inline void sim_tx(struct sim *s, uint32_t src_port, uint32_t dst_port, uint16_t op,
			  uint32_t flags, uint32_t buf_alloc, uint32_t fwd_cnt, const void *data,
			  uint32_t len)
{
	uint8_t h[VSOCK_HDR_BYTES];
	sim_hdr(h, SIM_GUEST_CID, VSOCK_CID_HOST, src_port, dst_port, len, VSOCK_TYPE_STREAM, op,
		flags, buf_alloc, fwd_cnt);
	sim_tx_publish(s, h, sizeof(h), data, len);
	sim_kick(s, VIRTIO_VSOCK_QUEUE_TX);
}

/* Publishes n rx buffers of `size` bytes each (one descriptor each), kicked. */
static inline void sim_rx_post(struct sim *s, unsigned n, uint32_t size)
{
	struct vring_desc *d = sim_desc(s, VIRTIO_VSOCK_QUEUE_RX);
	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)(s->rx_posted++ % SIM_QSIZE);
		d[idx] = (struct vring_desc){ SIM_RXBUF_GPA + (uint64_t)SIM_RX_STRIDE * idx, size,
					      VRING_DESC_F_WRITE, 0 };
		s->rx_size[idx] = size;
		sim_publish(s, VIRTIO_VSOCK_QUEUE_RX, idx);
	}
	sim_kick(s, VIRTIO_VSOCK_QUEUE_RX);
}

/* rx buffers published and not yet used. */
static inline unsigned sim_rx_outstanding(struct sim *s)
{
	return (uint16_t)(sim_avail(s, VIRTIO_VSOCK_QUEUE_RX)[1] - s->rx_used_seen);
}

/* The next used rx entry as a packet; false when there is none. */
static inline bool sim_rx_next(struct sim *s, struct sim_pkt *p)
{
	uint16_t *used = sim_used(s, VIRTIO_VSOCK_QUEUE_RX);
	if (__atomic_load_n(&used[1], __ATOMIC_ACQUIRE) == s->rx_used_seen)
		return false;
	const uint32_t *ring = (const uint32_t *)(used + 2);
	uint32_t id = ring[2 * (s->rx_used_seen % SIM_QSIZE)];
	uint32_t len = ring[2 * (s->rx_used_seen % SIM_QSIZE) + 1];
	s->rx_used_seen++;
	const uint8_t *h = guest_mem_ptr(&s->mem, SIM_RXBUF_GPA + (uint64_t)SIM_RX_STRIDE * (id % SIM_QSIZE),
					 SIM_RX_STRIDE);
	*p = (struct sim_pkt){ .used = len, .data = h + VSOCK_HDR_BYTES };
	if (len < VSOCK_HDR_BYTES)
		return true;
	p->src_cid = le_load(h + VSOCK_HDR_SRC_CID, 8);
	p->dst_cid = le_load(h + VSOCK_HDR_DST_CID, 8);
	p->src_port = (uint32_t)le_load(h + VSOCK_HDR_SRC_PORT, 4);
	p->dst_port = (uint32_t)le_load(h + VSOCK_HDR_DST_PORT, 4);
	p->len = (uint32_t)le_load(h + VSOCK_HDR_LEN, 4);
	p->type = (uint16_t)le_load(h + VSOCK_HDR_TYPE, 2);
	p->op = (uint16_t)le_load(h + VSOCK_HDR_OP, 2);
	p->flags = (uint32_t)le_load(h + VSOCK_HDR_FLAGS, 4);
	p->buf_alloc = (uint32_t)le_load(h + VSOCK_HDR_BUF_ALLOC, 4);
	p->fwd_cnt = (uint32_t)le_load(h + VSOCK_HDR_FWD_CNT, 4);
	return true;
}

#endif
