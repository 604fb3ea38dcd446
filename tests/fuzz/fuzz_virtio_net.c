/*
 * libFuzzer target: virtio-net's transmit and receive paths
 * (src/dev/virtio-net.c) against arbitrary queue contents, through the real
 * split-virtqueue walker, with a fake back end that checks what it is given
 * and offers frames the input describes.
 *
 * Input layout:
 *   byte 0      queue size as a power of two (1 .. 256), both queues
 *   byte 1      bit 0 INDIRECT_DESC, bit 1 EVENT_IDX, bit 2 MRG_RXBUF,
 *               bit 3 the back end has offloads (CSUM, TSO4, TSO6) and the
 *               driver takes them, bit 4 kick receive before transmit
 *   bytes 2-3   length of the frame the back end offers (LE, up to 64 KiB
 *               plus headers), byte 4 its header flags, byte 5 its GSO type
 *   36 bytes    transmit available ring: flags, idx, ring[16]
 *   36 bytes    receive available ring
 *   the rest    guest memory from the descriptor tables on (gpa 0x1000,
 *               transmit table first, receive table at +0x1000), up to
 *               0xe000 bytes: descriptors, headers, frames, buffers
 * Checks: ASan for any access outside guest RAM or the device's buffers;
 * every transmit chain completed unless the queue broke; a frame handed to
 * the back end carries a header the device negotiated; used lengths within
 * the chains' writable bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "dev/virtio-net.h"
#include "dev/virtio.h"
#include "hv/mem.h"
#include "fake_transport.h"

#define RAM_SIZE   (1u << 20)
#define DESC_GPA   0x1000u
#define AVAIL_GPA  0x10000u   /* tx; rx at +0x100 */
#define USED_GPA   0x11000u   /* tx; rx at +0x1000 */
#define AVAIL_IN   (4 + 2 * 16)
#define HDR_IN     6

/* ---- fake back end ---- */

static uint8_t rx_frame[NET_HDR_LEN + NET_MAX_FRAME];
static size_t rx_len;
static bool rx_held;
static uint64_t negotiated;

static void fb_send(struct net_backend *nb, const struct iovec *iov, unsigned n, size_t len)
{
	(void)nb;
	size_t total = 0;
	volatile uint8_t sink = 0;
	for (unsigned i = 0; i < n; i++) {
		for (size_t k = 0; k < iov[i].iov_len; k++)
			sink ^= ((const uint8_t *)iov[i].iov_base)[k]; /* ASan checks every byte */
		total += iov[i].iov_len;
	}
	if (total != len || len < NET_HDR_LEN || len > NET_HDR_LEN + NET_MAX_FRAME || n == 0 ||
	    iov[0].iov_len != NET_HDR_LEN)
		abort();
	const uint8_t *h = iov[0].iov_base;
	if ((h[0] & 1) && !(negotiated & VIRTIO_FEATURE(VIRTIO_NET_F_CSUM)))
		abort(); /* a checksum request the device never agreed to */
	if (h[1] != 0 && !(negotiated & (VIRTIO_FEATURE(VIRTIO_NET_F_HOST_TSO4) |
					 VIRTIO_FEATURE(VIRTIO_NET_F_HOST_TSO6))))
		abort();
}

static uint8_t *fb_peek(struct net_backend *nb, size_t *len)
{
	(void)nb;
	if (!rx_held)
		return NULL;
	*len = rx_len;
	return rx_frame;
}

static void fb_pop(struct net_backend *nb)
{
	(void)nb;
	rx_held = false;
}

static bool fb_set_offloads(struct net_backend *nb, unsigned off)
{
	(void)nb, (void)off;
	return true;
}

static const struct net_backend_ops fb_ops = {
	.kind = "fuzz", .send = fb_send, .peek = fb_peek, .pop = fb_pop,
	.set_offloads = fb_set_offloads,
};

static struct guest_mem mem;
static struct net_backend nb_plain = { .ops = &fb_ops };
static struct net_backend nb_offl = { .ops = &fb_ops,
	.offloads = NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 };
static struct virtio_net *net_plain, *net_offl;

static void setup_once(void)
{
	log_init("fuzz-virtio-net", LOG_LEVEL_ERROR);
	if (!guest_mem_alloc(&mem, RAM_SIZE))
		abort();
	static const uint8_t mac[6] = { 2, 0, 0, 0, 0, 1 };
	net_plain = virtio_net_create(mac, &nb_plain, &mem);
	net_offl = virtio_net_create(mac, &nb_offl, &mem);
	if (!net_plain || !net_offl)
		abort();
}

static bool queue_start(struct vq *vq, uint16_t size, unsigned q)
{
	vq_reset(vq, &mem);
	vq->size = size;
	vq->desc_gpa = DESC_GPA + q * 0x1000u;
	vq->avail_gpa = AVAIL_GPA + q * 0x100u;
	vq->used_gpa = USED_GPA + q * 0x1000u;
	return vq_enable(vq);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!mem.count)
		setup_once();
	size_t fixed = HDR_IN + 2 * AVAIL_IN;
	if (size < fixed)
		return 0;
	uint8_t *ram = guest_mem_ptr(&mem, 0, RAM_SIZE);
	memset(ram, 0, 0x13000);
	memcpy(ram + AVAIL_GPA, data + 6, AVAIL_IN);
	memcpy(ram + AVAIL_GPA + 0x100, data + 6 + AVAIL_IN, AVAIL_IN);
	size_t body = size - fixed < 0xe000 ? size - fixed : 0xe000;
	memcpy(ram + DESC_GPA, data + fixed, body);

	uint8_t mode = data[1];
	struct virtio_net *net = mode & 8 ? net_offl : net_plain;
	uint64_t f = virtio_net_ops.features(net);
	if (!(mode & 1))
		f &= ~VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC_BIT);
	if (!(mode & 2))
		f &= ~VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT);
	if (!(mode & 4))
		f &= ~VIRTIO_FEATURE(VIRTIO_NET_F_MRG_RXBUF);
	if (!virtio_net_ops.features_ok(net, f))
		abort();
	negotiated = f;

	/* The frame the back end offers: pattern bytes after the given header. */
	rx_len = NET_HDR_LEN + (size_t)(data[2] | data[3] << 8) * 2;
	if (rx_len > sizeof(rx_frame))
		rx_len = sizeof(rx_frame);
	memset(rx_frame, 0x5a, rx_len);
	memset(rx_frame, 0, NET_HDR_LEN);
	rx_frame[0] = data[4];
	rx_frame[1] = data[5];
	rx_held = true;

	static struct virtio_dev vd;
	vd.needs_reset = false;
	uint16_t qsize = (uint16_t)(1u << (data[0] % 9));
	if (!queue_start(&vd.vq[0], qsize, 0) || !queue_start(&vd.vq[1], qsize, 1))
		return 0;
	virtio_net_ops.activate(net, &vd, f);
	unsigned first = mode & 16 ? VIRTIO_NET_RXQ : VIRTIO_NET_TXQ;
	virtio_net_ops.queue_notify(net, &vd, first, VIRTIO_ON_IO_THREAD);
	virtio_net_ops.queue_notify(net, &vd, 1 - first, VIRTIO_ON_IO_THREAD);
	virtio_net_ops.queue_notify(net, &vd, VIRTIO_NET_RXQ, VIRTIO_ON_IO_THREAD); /* a wake with nothing new */
	struct vq *tx = &vd.vq[VIRTIO_NET_TXQ];
	/* Unless the queue broke, every transmit chain was completed. */
	if (!tx->broken && tx->used_idx != tx->last_avail)
		abort();
	/* Receive: never more used than taken. */
	struct vq *rx = &vd.vq[VIRTIO_NET_RXQ];
	if ((uint16_t)(rx->last_avail - rx->used_idx) > rx->size)
		abort();
	virtio_net_ops.reset(net);
	return 0;
}
