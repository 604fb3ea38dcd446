/*
 * virtio-net (src/dev/virtio-net.c) driven by a simulated driver in this
 * process: both queues live in real guest memory (16 MiB, no KVM), a fake
 * transport implements the four calls of dev/virtio.h, and a fake back end
 * records what the device sends and hands it frames to receive.
 * Covered: features by back end and their dependencies, the configuration
 * space, transmit (scattered, the header copy, every hostile header), and
 * receive with and without MRG_RXBUF (num_buffers, one publication for all
 * buffers of a frame, buffers given back when the ring runs dry, a frame
 * no ring could hold, buffers too small, offloads the guest refused), and
 * the per-kick budget of both queues (at most VIRTIO_QUEUE_BUDGET per
 * notify, the rest on a later one, none lost, in order).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dev/virtio-net.h"
#include "dev/virtio.h"
#include "hv/mem.h"
#include "virtio_drv.h"

#define RAM_SIZE  (16u << 20)
#define QSIZE     256
#define BUF_GPA   0x400000u   /* driver buffers, 64 KiB apart */
#define BUF_STEP  0x10000u

static struct guest_mem mem;
static const uint64_t ring_gpa[2] = { 0x10000, 0x40000 }; /* desc, avail +0x10000, used +0x20000 */

/* ---- the fake transport ---- */

struct virtio_dev {
	struct vq vq[2];
	unsigned interrupts[2];
	unsigned needs_reset;
	char why[128];
	unsigned later[2];      /* virtio_queue_notify_later() calls per queue */
};

struct vq *virtio_queue(struct virtio_dev *vd, unsigned q)
{
	return q < 2 && vd->vq[q].enabled ? &vd->vq[q] : NULL;
}

void virtio_queue_interrupt(struct virtio_dev *vd, unsigned q)
{
	if (vq_should_interrupt(&vd->vq[q]))
		vd->interrupts[q]++;
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

/* What the I/O thread would do on its next turn: the test calls it. */
void virtio_queue_notify_later(struct virtio_dev *vd, unsigned q)
{
	vd->later[q]++;
}

/* ---- the fake back end ---- */

#define FAKE_MAX 160
struct fake_nb {
	struct net_backend nb;
	unsigned sent;
	uint8_t last[NET_HDR_LEN + NET_MAX_FRAME + 64];
	size_t last_len;
	const void *first_base;            /* where the header handed over lives */
	unsigned nrx;                      /* frames waiting for the guest */
	uint8_t *rx[FAKE_MAX];
	size_t rx_len[FAKE_MAX];
	unsigned offloads_set;
	unsigned set_calls;
	unsigned out_of_order;             /* frames sent not in their tag's order */
};

/* A frame's tag: two bytes right after its Ethernet header. */
static unsigned frame_tag(const uint8_t *frame)
{
	return (unsigned)frame[NET_ETH_HLEN] | (unsigned)frame[NET_ETH_HLEN + 1] << 8;
}

static struct fake_nb *fake(struct net_backend *nb)
{
	return (struct fake_nb *)nb;
}

static void fake_send(struct net_backend *nb, const struct iovec *iov, unsigned n, size_t len)
{
	struct fake_nb *f = fake(nb);
	size_t done = 0;
	for (unsigned i = 0; i < n; i++) {
		assert_true(done + iov[i].iov_len <= sizeof(f->last));
		memcpy(f->last + done, iov[i].iov_base, iov[i].iov_len);
		done += iov[i].iov_len;
	}
	assert_int_equal(done, len);
	f->first_base = iov[0].iov_base;
	f->last_len = len;
	if (len >= NET_HDR_LEN + NET_ETH_HLEN + 2 && frame_tag(f->last + NET_HDR_LEN) != f->sent)
		f->out_of_order++;
	f->sent++;
}

static uint8_t *fake_peek(struct net_backend *nb, size_t *len)
{
	struct fake_nb *f = fake(nb);
	if (!f->nrx)
		return NULL;
	*len = f->rx_len[0];
	return f->rx[0];
}

static void fake_pop(struct net_backend *nb)
{
	struct fake_nb *f = fake(nb);
	free(f->rx[0]);
	memmove(f->rx, f->rx + 1, (FAKE_MAX - 1) * sizeof(f->rx[0]));
	memmove(f->rx_len, f->rx_len + 1, (FAKE_MAX - 1) * sizeof(f->rx_len[0]));
	f->nrx--;
}

static bool fake_set_offloads(struct net_backend *nb, unsigned off)
{
	fake(nb)->offloads_set = off;
	fake(nb)->set_calls++;
	return true;
}

static const struct net_backend_ops fake_ops = {
	.kind = "fake", .send = fake_send, .peek = fake_peek, .pop = fake_pop,
	.set_offloads = fake_set_offloads,
};

static uint8_t frame_byte(size_t i)
{
	return (uint8_t)(i * 13 + 7);
}

/* Queues a frame of `len` bytes after a header with these flags/gso type. */
static void fake_queue(struct fake_nb *f, size_t len, uint8_t flags, uint8_t gso)
{
	assert_true(f->nrx < FAKE_MAX);
	uint8_t *p = calloc(1, NET_HDR_LEN + len);
	p[NET_HDR_FLAGS] = flags;
	p[NET_HDR_GSO_TYPE] = gso;
	p[NET_HDR_NUM_BUFFERS] = 0xee; /* the device must overwrite it */
	for (size_t i = 0; i < len; i++)
		p[NET_HDR_LEN + i] = frame_byte(i);
	f->rx[f->nrx] = p;
	f->rx_len[f->nrx++] = NET_HDR_LEN + len;
}

/* ---- the simulated driver ---- */

struct drv {
	struct virtio_dev vd;
	struct fake_nb fb;
	struct virtio_net *net;
	struct vdrv_ring ring[2];
	unsigned next_buf;
};

static uint8_t *gpa(uint64_t a, uint64_t len) { return guest_mem_ptr(&mem, a, len); }

static void drv_start(struct drv *d, uint64_t features, uint16_t qsize)
{
	for (unsigned q = 0; q < 2; q++)
		vdrv_start(&d->ring[q], &d->vd.vq[q], &mem, ring_gpa[q], qsize, false);
	d->next_buf = 0;
	assert_true(virtio_net_ops.features_ok(d->net, features));
	virtio_net_ops.activate(d->net, &d->vd, features);
}

static const uint8_t test_mac[6] = { 0x02, 0x11, 0x22, 0x33, 0x44, 0x55 };

static void drv_open(struct drv *d, unsigned offloads, uint64_t drop_features)
{
	memset(d, 0, sizeof(*d));
	d->fb.nb.ops = &fake_ops;
	d->fb.nb.offloads = offloads;
	d->net = virtio_net_create(test_mac, &d->fb.nb, &mem);
	assert_non_null(d->net);
	drv_start(d, virtio_net_ops.features(d->net) & ~drop_features, QSIZE);
}

static void drv_close(struct drv *d)
{
	virtio_net_ops.reset(d->net);
	virtio_net_destroy(d->net);
	while (d->fb.nrx)
		fake_pop(&d->fb.nb);
}

static void drv_publish(struct drv *d, unsigned q, const struct seg *s, unsigned n)
{
	vdrv_publish(&d->ring[q], s, n);
}

static void drv_kick(struct drv *d, unsigned q)
{
	virtio_net_ops.queue_notify(d->net, &d->vd, q, VIRTIO_ON_IO_THREAD);
}

static unsigned drv_used_count(struct drv *d, unsigned q)
{
	return vdrv_used_count(&d->ring[q]);
}

/* The next used entry of queue q, which must be there; returns its length. */
static uint32_t drv_take_used(struct drv *d, unsigned q, uint32_t *id)
{
	return vdrv_take_used(&d->ring[q], id);
}

static uint64_t drv_buf(struct drv *d)
{
	return BUF_GPA + (uint64_t)(d->next_buf++ % 128) * BUF_STEP;
}

/* Transmits header + frame of `len` pattern bytes, split into `pieces`. */
static void drv_tx(struct drv *d, const uint8_t hdr[NET_HDR_LEN], size_t len, unsigned pieces)
{
	uint64_t b = drv_buf(d);
	uint8_t *p = gpa(b, NET_HDR_LEN + len);
	memcpy(p, hdr, NET_HDR_LEN);
	for (size_t i = 0; i < len; i++)
		p[NET_HDR_LEN + i] = frame_byte(i);
	struct seg s[8];
	size_t total = NET_HDR_LEN + len, off = 0;
	for (unsigned i = 0; i < pieces; i++) {
		size_t k = i + 1 == pieces ? total - off : total / pieces;
		s[i] = (struct seg){ b + off, (uint32_t)k, false };
		off += k;
	}
	drv_publish(d, VIRTIO_NET_TXQ, s, pieces);
	drv_kick(d, VIRTIO_NET_TXQ);
}

static void drv_post_rx(struct drv *d, uint32_t len)
{
	struct seg s = { drv_buf(d), len, true };
	memset(gpa(s.gpa, len), 0xcc, len);
	drv_publish(d, VIRTIO_NET_RXQ, &s, 1);
}

static int group_setup(void **state)
{
	(void)state;
	return guest_mem_alloc(&mem, RAM_SIZE) ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	guest_mem_free(&mem);
	return 0;
}

/* Publishes a 60-byte frame tagged `tag` on the transmit queue, no kick. */
static void drv_tx_tagged(struct drv *d, unsigned tag)
{
	uint64_t b = drv_buf(d);
	uint8_t *p = gpa(b, NET_HDR_LEN + 60);
	memset(p, 0, NET_HDR_LEN + 60);
	p[NET_HDR_LEN + NET_ETH_HLEN] = (uint8_t)tag;
	p[NET_HDR_LEN + NET_ETH_HLEN + 1] = (uint8_t)(tag >> 8);
	struct seg s = { b, NET_HDR_LEN + 60, false };
	drv_publish(d, VIRTIO_NET_TXQ, &s, 1);
}

/* ---- features and configuration ---- */

static void test_features_follow_back_end(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0, 0);
	uint64_t f = virtio_net_ops.features(d.net);
	const int always[] = { VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_F_MRG_RXBUF,
			       VIRTIO_F_EVENT_IDX_BIT, VIRTIO_F_INDIRECT_DESC_BIT };
	for (size_t i = 0; i < sizeof(always) / sizeof(always[0]); i++)
		assert_true(f & VIRTIO_FEATURE(always[i]));
	const int offl[] = { VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_HOST_TSO4,
			     VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6 };
	for (size_t i = 0; i < sizeof(offl) / sizeof(offl[0]); i++)
		assert_false(f & VIRTIO_FEATURE(offl[i])); /* slirp-like: none */
	assert_false(f & VIRTIO_FEATURE(VIRTIO_NET_F_CTRL_VQ));
	assert_int_equal(d.fb.set_calls, 0); /* a back end without offloads is not asked */
	drv_close(&d);

	drv_open(&d, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6, 0);
	f = virtio_net_ops.features(d.net);
	for (size_t i = 0; i < sizeof(offl) / sizeof(offl[0]); i++)
		assert_true(f & VIRTIO_FEATURE(offl[i]));
	/* The guest took all of them: the back end is told which rx offloads. */
	assert_int_equal(d.fb.offloads_set, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6);
	virtio_net_ops.reset(d.net);
	assert_int_equal(d.fb.offloads_set, 0);
	drv_close(&d);

	drv_open(&d, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4, 0);
	f = virtio_net_ops.features(d.net);
	assert_true(f & VIRTIO_FEATURE(VIRTIO_NET_F_HOST_TSO4));
	assert_false(f & VIRTIO_FEATURE(VIRTIO_NET_F_HOST_TSO6));
	drv_close(&d);
}

static void test_feature_dependencies(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6, 0);
	uint64_t all = virtio_net_ops.features(d.net);
	assert_true(virtio_net_ops.features_ok(d.net, all));
	assert_false(virtio_net_ops.features_ok(d.net, all & ~VIRTIO_FEATURE(VIRTIO_NET_F_GUEST_CSUM)));
	assert_false(virtio_net_ops.features_ok(d.net, all & ~VIRTIO_FEATURE(VIRTIO_NET_F_CSUM)));
	assert_true(virtio_net_ops.features_ok(
		d.net, all & ~(VIRTIO_FEATURE(VIRTIO_NET_F_CSUM) | VIRTIO_FEATURE(VIRTIO_NET_F_HOST_TSO4) |
			       VIRTIO_FEATURE(VIRTIO_NET_F_HOST_TSO6))));
	drv_close(&d);
}

static void test_config(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0, 0);
	uint8_t cfg[VIRTIO_NET_CONFIG_SIZE];
	virtio_net_ops.config_read(d.net, 0, cfg, sizeof(cfg));
	assert_memory_equal(cfg + VIRTIO_NET_CFG_MAC, test_mac, 6);
	assert_int_equal(cfg[VIRTIO_NET_CFG_STATUS], VIRTIO_NET_S_LINK_UP);
	assert_int_equal(cfg[VIRTIO_NET_CFG_MAX_VQP], 1);
	/* Writes change nothing (the MAC is read-only in virtio 1.x). */
	uint8_t junk[6] = { 1, 2, 3, 4, 5, 6 };
	virtio_net_ops.config_write(d.net, 0, junk, 6);
	virtio_net_ops.config_read(d.net, 0, cfg, 6);
	assert_memory_equal(cfg, test_mac, 6);
	/* Past the end: zeros. */
	uint32_t v = 0xffffffff;
	virtio_net_ops.config_read(d.net, VIRTIO_NET_CONFIG_SIZE - 2, (uint8_t *)&v, 4);
	assert_int_equal(v, 0);
	drv_close(&d);
}

/* ---- transmit ---- */

static void test_tx_frame_reaches_back_end(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0, 0);
	uint8_t hdr[NET_HDR_LEN] = { 0 };
	hdr[NET_HDR_NUM_BUFFERS] = 7; /* meaningless on transmit: not passed on */
	drv_tx(&d, hdr, 1500, 5);    /* header split over the first two buffers */
	assert_int_equal(d.fb.sent, 1);
	assert_int_equal(d.fb.last_len, NET_HDR_LEN + 1500);
	assert_int_equal(d.fb.last[NET_HDR_NUM_BUFFERS], 0);
	for (size_t i = 0; i < 1500; i++)
		assert_int_equal(d.fb.last[NET_HDR_LEN + i], frame_byte(i));
	assert_int_equal(drv_take_used(&d, VIRTIO_NET_TXQ, NULL), 0);
	assert_int_equal(d.vd.interrupts[VIRTIO_NET_TXQ], 1);
	/* The largest frame passes. */
	drv_tx(&d, hdr, NET_MAX_FRAME, 2);
	assert_int_equal(d.fb.sent, 2);
	assert_int_equal(d.fb.last_len, NET_HDR_LEN + NET_MAX_FRAME);
	assert_int_equal(virtio_net_stats(d.net).tx_frames, 2);
	drv_close(&d);
}

static void test_tx_offloads_when_negotiated(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6, 0);
	uint8_t hdr[NET_HDR_LEN] = { VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4 };
	hdr[NET_HDR_GSO_SIZE] = 0xb4, hdr[NET_HDR_GSO_SIZE + 1] = 0x05; /* 1460 */
	hdr[NET_HDR_CSUM_START] = 34, hdr[NET_HDR_CSUM_OFFSET] = 16;
	drv_tx(&d, hdr, 60000, 3);
	assert_int_equal(d.fb.sent, 1);
	assert_memory_equal(d.fb.last, hdr, NET_HDR_LEN);
	drv_close(&d);
}

/* Every hostile transmit chain is completed, nothing reaches the back end,
 * and the device keeps working. */
static void test_tx_hostile(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4, 0);
	/* Header only, and shorter than the header. */
	uint64_t b = drv_buf(&d);
	struct seg s1 = { b, 5, false };
	drv_publish(&d, VIRTIO_NET_TXQ, &s1, 1);
	struct seg s2 = { b, NET_HDR_LEN, false };
	drv_publish(&d, VIRTIO_NET_TXQ, &s2, 1);
	drv_kick(&d, VIRTIO_NET_TXQ);
	uint8_t ok[NET_HDR_LEN] = { 0 };
	drv_tx(&d, ok, NET_MAX_FRAME + 1, 2);                   /* oversized */
	struct { uint8_t flags, gso; uint16_t csum_start, csum_off, gso_size; } bad[] = {
		{ 0x80, 0, 0, 0, 0 },                             /* unknown flag */
		{ VIRTIO_NET_HDR_F_DATA_VALID, 0, 0, 0, 0 },     /* receive-only flag */
		{ VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 1000, 16, 0 }, /* checksum past the end */
		{ VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0xffff, 0xffff, 0 },
		{ VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV6, 34, 16, 1460 }, /* not offered */
		{ VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP, 34, 16, 1460 },
		{ VIRTIO_NET_HDR_F_NEEDS_CSUM, 2, 34, 16, 1460 },                        /* unknown */
		{ VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN, 34, 16, 1460 },
		{ 0, VIRTIO_NET_HDR_GSO_TCPV4, 0, 0, 1460 },                             /* no csum */
		{ VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 34, 16, 0 },    /* no size */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t h[NET_HDR_LEN] = { bad[i].flags, bad[i].gso };
		memcpy(h + NET_HDR_CSUM_START, &bad[i].csum_start, 2);
		memcpy(h + NET_HDR_CSUM_OFFSET, &bad[i].csum_off, 2);
		memcpy(h + NET_HDR_GSO_SIZE, &bad[i].gso_size, 2);
		drv_tx(&d, h, 1000, 1);
	}
	unsigned n = 3 + (unsigned)(sizeof(bad) / sizeof(bad[0]));
	assert_int_equal(d.fb.sent, 0);
	assert_int_equal(drv_used_count(&d, VIRTIO_NET_TXQ), n);
	assert_int_equal(virtio_net_stats(d.net).tx_dropped, n);
	assert_int_equal(d.vd.needs_reset, 0);
	drv_tx(&d, ok, 100, 1);
	assert_int_equal(d.fb.sent, 1);
	drv_close(&d);

	/* Without CSUM negotiated (slirp), a checksum request is refused. */
	drv_open(&d, 0, 0);
	uint8_t h[NET_HDR_LEN] = { VIRTIO_NET_HDR_F_NEEDS_CSUM };
	h[NET_HDR_CSUM_START] = 34, h[NET_HDR_CSUM_OFFSET] = 16;
	drv_tx(&d, h, 1000, 1);
	assert_int_equal(d.fb.sent, 0);
	drv_close(&d);
}

/* The back end gets the device's checked copy of the header, never the
 * guest's bytes, which the guest could change after the check. */
static void test_tx_header_is_a_copy(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0, 0);
	uint8_t hdr[NET_HDR_LEN] = { 0 };
	drv_tx(&d, hdr, 64, 1);
	assert_int_equal(d.fb.sent, 1);
	const uint8_t *ram = gpa(0, RAM_SIZE), *h = d.fb.first_base;
	assert_true(h < ram || h >= ram + RAM_SIZE);
	drv_close(&d);
}

static void test_tx_broken_chain(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0, 0);
	struct seg s = { RAM_SIZE - 8, 64, false };
	drv_publish(&d, VIRTIO_NET_TXQ, &s, 1);
	drv_kick(&d, VIRTIO_NET_TXQ);
	assert_int_equal(d.vd.needs_reset, 1);
	assert_non_null(strstr(d.vd.why, "outside guest RAM"));
	drv_close(&d);
}

/* ---- receive ---- */

static void check_rx_bytes(const uint8_t *p, size_t from, size_t n)
{
	for (size_t i = 0; i < n; i++)
		assert_int_equal(p[i], frame_byte(from + i));
}

static void test_rx_single_buffer(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0, VIRTIO_FEATURE(VIRTIO_NET_F_MRG_RXBUF));
	fake_queue(&d.fb, 1000, 0, 0);
	drv_kick(&d, VIRTIO_NET_RXQ); /* no buffers yet: the frame waits */
	assert_int_equal(d.fb.nrx, 1);
	drv_post_rx(&d, 1526);
	drv_kick(&d, VIRTIO_NET_RXQ);
	assert_int_equal(d.fb.nrx, 0);
	assert_int_equal(drv_take_used(&d, VIRTIO_NET_RXQ, NULL), NET_HDR_LEN + 1000);
	uint8_t *p = gpa(BUF_GPA, 1526);
	assert_int_equal(p[NET_HDR_NUM_BUFFERS], 1);
	assert_int_equal(p[NET_HDR_NUM_BUFFERS + 1], 0);
	check_rx_bytes(p + NET_HDR_LEN, 0, 1000);
	assert_int_equal(d.vd.interrupts[VIRTIO_NET_RXQ], 1);

	/* A buffer too small for the frame: completed empty, the frame dropped,
	 * the next frame goes into the next buffer. */
	fake_queue(&d.fb, 2000, 0, 0);
	fake_queue(&d.fb, 100, 0, 0);
	drv_post_rx(&d, 1526);
	drv_post_rx(&d, 1526);
	drv_kick(&d, VIRTIO_NET_RXQ);
	assert_int_equal(drv_take_used(&d, VIRTIO_NET_RXQ, NULL), 0);
	assert_int_equal(drv_take_used(&d, VIRTIO_NET_RXQ, NULL), NET_HDR_LEN + 100);
	assert_int_equal(virtio_net_stats(d.net).rx_dropped, 1);
	assert_int_equal(d.vd.needs_reset, 0);
	drv_close(&d);
}

static void test_rx_mergeable(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0, 0);
	for (int i = 0; i < 4; i++)
		drv_post_rx(&d, 1500);
	fake_queue(&d.fb, 4000, 0, 0); /* 4012 bytes: three buffers */
	fake_queue(&d.fb, 60, 0, 0);
	drv_kick(&d, VIRTIO_NET_RXQ);
	assert_int_equal(d.fb.nrx, 0);
	assert_int_equal(drv_used_count(&d, VIRTIO_NET_RXQ), 4);
	uint32_t id;
	assert_int_equal(drv_take_used(&d, VIRTIO_NET_RXQ, &id), 1500);
	assert_int_equal(id, 0);
	uint8_t *b0 = gpa(BUF_GPA, 1500);
	assert_int_equal(b0[NET_HDR_NUM_BUFFERS], 3);
	check_rx_bytes(b0 + NET_HDR_LEN, 0, 1500 - NET_HDR_LEN);
	assert_int_equal(drv_take_used(&d, VIRTIO_NET_RXQ, &id), 1500);
	assert_int_equal(id, 1);
	check_rx_bytes(gpa(BUF_GPA + BUF_STEP, 1500), 1500 - NET_HDR_LEN, 1500);
	assert_int_equal(drv_take_used(&d, VIRTIO_NET_RXQ, NULL), 4012 - 3000);
	check_rx_bytes(gpa(BUF_GPA + 2 * BUF_STEP, 1012), 3000 - NET_HDR_LEN, 1012);
	assert_int_equal(drv_take_used(&d, VIRTIO_NET_RXQ, NULL), NET_HDR_LEN + 60);
	assert_int_equal(gpa(BUF_GPA + 3 * BUF_STEP, 12)[NET_HDR_NUM_BUFFERS], 1);
	assert_int_equal(d.vd.interrupts[VIRTIO_NET_RXQ], 1); /* one for the batch */
	drv_close(&d);
}

/* num_buffers split across two descriptors of the first chain. */
static void test_rx_mergeable_split_header(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0, 0);
	uint64_t b = drv_buf(&d);
	struct seg s[2] = { { b, 11, true }, { b + 0x1000, 2000, true } };
	drv_publish(&d, VIRTIO_NET_RXQ, s, 2);
	drv_post_rx(&d, 2000);
	fake_queue(&d.fb, 3000, 0, 0);
	drv_kick(&d, VIRTIO_NET_RXQ);
	assert_int_equal(drv_take_used(&d, VIRTIO_NET_RXQ, NULL), 2011);
	assert_int_equal(gpa(b, 11)[NET_HDR_NUM_BUFFERS], 2);
	assert_int_equal(gpa(b + 0x1000, 1)[0], 0);
	check_rx_bytes(gpa(b + 0x1001, 10), 0, 10);
	drv_close(&d);
}

/* The ring runs dry half way through a frame: the buffers go back, nothing
 * is published, and the frame arrives whole once the driver posts more. */
static void test_rx_mergeable_waits_for_buffers(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0, 0);
	drv_post_rx(&d, 1500);
	drv_post_rx(&d, 1500);
	fake_queue(&d.fb, 4000, 0, 0);
	drv_kick(&d, VIRTIO_NET_RXQ);
	assert_int_equal(d.fb.nrx, 1);
	assert_int_equal(vdrv_used_hdr(&d.ring[VIRTIO_NET_RXQ])[1], 0);
	assert_int_equal(d.vd.vq[VIRTIO_NET_RXQ].last_avail, 0);
	/* EVENT_IDX: the driver is asked to kick once it posts beyond buffer 2. */
	uint16_t avail_event = (uint16_t)vdrv_used_ring(&d.ring[VIRTIO_NET_RXQ])[2 * QSIZE];
	assert_int_equal(avail_event, 2);
	assert_int_equal(d.vd.interrupts[VIRTIO_NET_RXQ], 0);
	drv_post_rx(&d, 1500);
	drv_kick(&d, VIRTIO_NET_RXQ);
	assert_int_equal(d.fb.nrx, 0);
	assert_int_equal(drv_used_count(&d, VIRTIO_NET_RXQ), 3);
	assert_int_equal(gpa(BUF_GPA, 12)[NET_HDR_NUM_BUFFERS], 3);
	drv_close(&d);

	/* The same without EVENT_IDX: notifications are on (flags 0). */
	drv_open(&d, 0, VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT));
	vdrv_used_hdr(&d.ring[VIRTIO_NET_RXQ])[0] = VRING_USED_F_NO_NOTIFY;
	drv_post_rx(&d, 1500);
	fake_queue(&d.fb, 4000, 0, 0);
	drv_kick(&d, VIRTIO_NET_RXQ);
	assert_int_equal(vdrv_used_hdr(&d.ring[VIRTIO_NET_RXQ])[0], 0);
	assert_int_equal(d.fb.nrx, 1);
	drv_close(&d);
}

/* A frame the whole ring could not hold is dropped, not waited for forever. */
static void test_rx_mergeable_ring_too_small(void **state)
{
	(void)state;
	struct drv d;
	memset(&d, 0, sizeof(d));
	d.fb.nb.ops = &fake_ops;
	d.net = virtio_net_create(test_mac, &d.fb.nb, &mem);
	drv_start(&d, virtio_net_ops.features(d.net), 4);
	for (int i = 0; i < 4; i++)
		drv_post_rx(&d, 100);
	fake_queue(&d.fb, 1000, 0, 0);
	fake_queue(&d.fb, 50, 0, 0);
	drv_kick(&d, VIRTIO_NET_RXQ);
	assert_int_equal(d.fb.nrx, 0);
	assert_int_equal(virtio_net_stats(d.net).rx_dropped, 1);
	assert_int_equal(drv_take_used(&d, VIRTIO_NET_RXQ, NULL), NET_HDR_LEN + 50);
	assert_int_equal(d.vd.needs_reset, 0);
	drv_close(&d);
}

static void test_rx_buffer_smaller_than_header(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0, 0);
	drv_post_rx(&d, 11);
	fake_queue(&d.fb, 100, 0, 0);
	drv_kick(&d, VIRTIO_NET_RXQ);
	assert_int_equal(d.vd.needs_reset, 1);
	assert_non_null(strstr(d.vd.why, "12-byte header"));
	drv_close(&d);
}

/* Offloaded frames the guest did not accept never reach it. */
static void test_rx_refused_offloads(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4,
		 VIRTIO_FEATURE(VIRTIO_NET_F_GUEST_TSO4) | VIRTIO_FEATURE(VIRTIO_NET_F_GUEST_TSO6));
	assert_int_equal(d.fb.offloads_set, NET_OFFLOAD_CSUM);
	for (int i = 0; i < 4; i++)
		drv_post_rx(&d, 4096);
	fake_queue(&d.fb, 3000, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4);
	fake_queue(&d.fb, 100, 0x40, 0);                            /* unknown flag */
	fake_queue(&d.fb, 5, 0, 0);                                 /* runt */
	fake_queue(&d.fb, 100, VIRTIO_NET_HDR_F_DATA_VALID, 0);     /* fine */
	drv_kick(&d, VIRTIO_NET_RXQ);
	assert_int_equal(d.fb.nrx, 0);
	assert_int_equal(virtio_net_stats(d.net).rx_dropped, 3);
	assert_int_equal(drv_take_used(&d, VIRTIO_NET_RXQ, NULL), NET_HDR_LEN + 100);
	assert_int_equal(drv_used_count(&d, VIRTIO_NET_RXQ), 0);
	drv_close(&d);
}

static void test_rx_broken_chain(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0, 0);
	struct seg s = { RAM_SIZE - 8, 1500, true };
	drv_publish(&d, VIRTIO_NET_RXQ, &s, 1);
	fake_queue(&d.fb, 100, 0, 0);
	drv_kick(&d, VIRTIO_NET_RXQ);
	assert_int_equal(d.vd.needs_reset, 1);
	assert_int_equal(d.fb.nrx, 1); /* the frame stays with the back end */
	drv_close(&d);
}

/* After reset nothing is touched; a new activation works again. */
/*
 * A guest that keeps the transmit ring full: one notify sends at most
 * VIRTIO_QUEUE_BUDGET frames and asks to be called again; the rest go on
 * the later calls, all of them, in order, and then no more is asked.
 */
#define MANY_FRAMES 120  /* fewer than drv_buf()'s 128 buffers: none reused */

static void test_tx_budget_per_notify(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0, 0);
	for (unsigned i = 0; i < MANY_FRAMES; i++)
		drv_tx_tagged(&d, i);
	drv_kick(&d, VIRTIO_NET_TXQ);
	assert_int_equal(d.fb.sent, VIRTIO_QUEUE_BUDGET);
	assert_int_equal(drv_used_count(&d, VIRTIO_NET_TXQ), VIRTIO_QUEUE_BUDGET);
	assert_int_equal(d.vd.later[VIRTIO_NET_TXQ], 1);
	/* The I/O thread's later turns, until the device stops asking. */
	unsigned turns = 0;
	while (d.vd.later[VIRTIO_NET_TXQ] > turns && turns < 10) {
		unsigned before = d.fb.sent;
		turns++;
		drv_kick(&d, VIRTIO_NET_TXQ);
		assert_true(d.fb.sent - before <= VIRTIO_QUEUE_BUDGET);
	}
	assert_int_equal(turns, 1);
	assert_int_equal(d.fb.sent, MANY_FRAMES);
	assert_int_equal(d.fb.out_of_order, 0);
	assert_int_equal(drv_used_count(&d, VIRTIO_NET_TXQ), MANY_FRAMES);
	assert_int_equal(d.vd.later[VIRTIO_NET_TXQ], 1);
	/* Exactly a budget's worth asks for no later call: the ring is empty. */
	for (unsigned i = 0; i < VIRTIO_QUEUE_BUDGET; i++)
		drv_tx_tagged(&d, MANY_FRAMES + i);
	drv_kick(&d, VIRTIO_NET_TXQ);
	assert_int_equal(d.fb.sent, MANY_FRAMES + VIRTIO_QUEUE_BUDGET);
	assert_int_equal(d.vd.later[VIRTIO_NET_TXQ], 1);
	assert_int_equal(d.fb.out_of_order, 0);
	drv_close(&d);
}

/* The same on receive: at most a budget of frames per notify, none lost. */
static void test_rx_budget_per_notify(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0, 0);
	const unsigned frames = 100;
	for (unsigned i = 0; i < frames; i++) {
		drv_post_rx(&d, 2048);
		fake_queue(&d.fb, 60, 0, 0);
	}
	drv_kick(&d, VIRTIO_NET_RXQ);
	assert_int_equal(drv_used_count(&d, VIRTIO_NET_RXQ), VIRTIO_QUEUE_BUDGET);
	assert_int_equal(d.fb.nrx, frames - VIRTIO_QUEUE_BUDGET);
	assert_int_equal(d.vd.later[VIRTIO_NET_RXQ], 1);
	drv_kick(&d, VIRTIO_NET_RXQ); /* the later turn */
	assert_int_equal(drv_used_count(&d, VIRTIO_NET_RXQ), frames);
	assert_int_equal(d.fb.nrx, 0);
	assert_int_equal(d.vd.later[VIRTIO_NET_RXQ], 1);
	for (unsigned i = 0; i < frames; i++)
		assert_int_equal(drv_take_used(&d, VIRTIO_NET_RXQ, NULL), NET_HDR_LEN + 60);
	assert_int_equal(virtio_net_stats(d.net).rx_frames, frames);
	drv_close(&d);
}

static void test_reset_and_restart(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0, 0);
	virtio_net_ops.reset(d.net);
	fake_queue(&d.fb, 100, 0, 0);
	drv_post_rx(&d, 1500);
	drv_kick(&d, VIRTIO_NET_RXQ);
	assert_int_equal(d.fb.nrx, 1);
	drv_start(&d, virtio_net_ops.features(d.net), QSIZE);
	assert_ptr_equal(virtio_net_transport(d.net), &d.vd);
	drv_post_rx(&d, 1500);
	drv_kick(&d, VIRTIO_NET_RXQ);
	assert_int_equal(d.fb.nrx, 0);
	drv_close(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_features_follow_back_end),
		cmocka_unit_test(test_feature_dependencies),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_tx_frame_reaches_back_end),
		cmocka_unit_test(test_tx_offloads_when_negotiated),
		cmocka_unit_test(test_tx_hostile),
		cmocka_unit_test(test_tx_header_is_a_copy),
		cmocka_unit_test(test_tx_broken_chain),
		cmocka_unit_test(test_rx_single_buffer),
		cmocka_unit_test(test_rx_mergeable),
		cmocka_unit_test(test_rx_mergeable_split_header),
		cmocka_unit_test(test_rx_mergeable_waits_for_buffers),
		cmocka_unit_test(test_rx_mergeable_ring_too_small),
		cmocka_unit_test(test_rx_buffer_smaller_than_header),
		cmocka_unit_test(test_rx_refused_offloads),
		cmocka_unit_test(test_rx_broken_chain),
		cmocka_unit_test(test_reset_and_restart),
		cmocka_unit_test(test_tx_budget_per_notify),
		cmocka_unit_test(test_rx_budget_per_notify),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
