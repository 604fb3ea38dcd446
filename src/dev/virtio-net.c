/*
 * virtio-net (see virtio-net.h): moves frames between the guest's two
 * queues and a network back end.
 *
 * Transmit: each chain on the transmit queue is one frame: the 12-byte
 * header, then the Ethernet frame, all device-readable. The header is
 * copied once and checked against what was negotiated (a checksum or GSO
 * request the device never offered, a checksum position outside the frame,
 * an unknown GSO type) and the back end gets that copy, never the guest's
 * bytes, so the guest cannot change it after the check. A bad frame is
 * dropped and its chain completed; the driver is not hung and the device
 * keeps working.
 *
 * Receive: the back end holds frames until the device pulls them, which it
 * does whenever the driver posts buffers (a kick on the receive queue) and
 * whenever the back end wakes it (the glue in vmm/ turns a wake into a
 * kick). With MRG_RXBUF a frame spreads over as many chains as it needs,
 * and if the queue runs dry half way the chains are given back (rewound)
 * and the frame waits for more buffers; without it a frame must fit in one
 * chain, and a chain too small for it is completed empty and the frame is
 * dropped.
 *
 * All of it runs under the transport's lock (see dev/virtio.h), so nothing
 * here needs a lock; only `transport` is read from other threads.
 */
#include "dev/virtio-net.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/iov.h"
#include "base/log.h"
#include "base/ratelimit.h"
#include "base/util.h"

struct net_used {
	uint16_t head;
	uint32_t len;
};

struct virtio_net {
	struct net_backend *nb;
	const struct guest_mem *mem;
	uint8_t config[VIRTIO_NET_CONFIG_SIZE];
	_Atomic(struct virtio_dev *) transport;
	struct virtio_dev *vd;        /* between activate and reset */
	uint64_t features;            /* negotiated */
	bool warned;                  /* one warning per device for a hostile driver, */
	struct ratelimit log_limit;   /* and few lines at debug level after it */
	struct virtio_net_stats stats;
	struct vq_chain chain;        /* the chain being served; too big for a stack */
	struct iovec tx_iov[VQ_MAX_SEGS + 1];
	uint8_t tx_hdr[NET_HDR_LEN];  /* the checked copy the back end sends */
	struct net_used used[VIRTIO_NET_QUEUE_SIZE];
};

enum rx_result {
	RX_DONE,     /* delivered, or dropped for good: take the next frame */
	RX_NO_ROOM,  /* not enough buffers now: keep the frame */
	RX_BROKEN,   /* the driver broke the queue */
};

static bool net_has(const struct virtio_net *net, int bit)
{
	return net->features & VIRTIO_FEATURE(bit);
}

static void net_warn(struct virtio_net *net, const char *what)
{
	/* A guest must not flood the host's log: one warning per device. */
	if (!net->warned)
		log_warn("virtio-net: %s (further ones at debug level)", what);
	else
		log_limited(&net->log_limit, LOG_LEVEL_DEBUG, "virtio-net: %s", what);
	net->warned = true;
}

/* ---- queue helpers the split-ring API does not have ---- */

/*
 * Publishes n used entries with one index update: with MRG_RXBUF the driver
 * reads num_buffers from the first and expects all of them there at once
 * (Linux drops the frame, counting "buffers missing", if it sees fewer).
 */
static void net_push_batch(struct vq *vq, const struct net_used *u, unsigned n)
{
	if (!vq->enabled || vq->broken || n == 0)
		return;
	for (unsigned i = 0; i < n; i++) {
		uint16_t slot = (uint16_t)(vq->used_idx + i) % vq->size;
		__atomic_store_n(&vq->used_ring[2 * slot], (uint32_t)u[i].head, __ATOMIC_RELAXED);
		__atomic_store_n(&vq->used_ring[2 * slot + 1], u[i].len, __ATOMIC_RELAXED);
	}
	vq->used_idx = (uint16_t)(vq->used_idx + n);
	__atomic_store_n(&vq->used_hdr[1], vq->used_idx, __ATOMIC_RELEASE);
}

/* Gives back n chains popped but not used: they are read again next time. */
static void net_unpop(struct vq *vq, unsigned n)
{
	vq->last_avail = (uint16_t)(vq->last_avail - n);
}

/*
 * Out of receive buffers: asks the driver to kick when it posts any beyond
 * what it has posted now (chains given back by net_unpop() are still
 * available, so vq_enable_notify() would not do). Returns true when more
 * arrived meanwhile.
 */
static bool net_rx_want_kick(struct vq *vq)
{
	if (!vq->enabled || vq->broken)
		return false;
	uint16_t seen = __atomic_load_n(&vq->avail[1], __ATOMIC_ACQUIRE);
	if (vq->event_idx)
		__atomic_store_n((uint16_t *)&vq->used_ring[2 * vq->size], seen, __ATOMIC_RELAXED);
	else
		__atomic_store_n(&vq->used_hdr[0], 0, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return __atomic_load_n(&vq->avail[1], __ATOMIC_ACQUIRE) != seen;
}

/* ---- the header ---- */

struct net_hdr {
	uint8_t flags, gso_type;
	uint16_t hdr_len, gso_size, csum_start, csum_offset;
};

static struct net_hdr hdr_parse(const uint8_t *h)
{
	return (struct net_hdr){
		.flags = h[NET_HDR_FLAGS],
		.gso_type = h[NET_HDR_GSO_TYPE],
		.hdr_len = (uint16_t)le_load(h + NET_HDR_HDR_LEN, 2),
		.gso_size = (uint16_t)le_load(h + NET_HDR_GSO_SIZE, 2),
		.csum_start = (uint16_t)le_load(h + NET_HDR_CSUM_START, 2),
		.csum_offset = (uint16_t)le_load(h + NET_HDR_CSUM_OFFSET, 2),
	};
}

/*
 * Whether a header asks only for what the side that will act on it accepted:
 * `csum`, `tso4`, `tso6` are the features of the receiving side (the
 * device's for transmit, the driver's for receive). `data_valid` allows the
 * receive-only DATA_VALID flag. Returns NULL or what is wrong.
 */
static const char *hdr_check(const struct net_hdr *h, size_t frame_len, bool csum, bool tso4,
			     bool tso6, bool data_valid)
{
	uint8_t allowed = VIRTIO_NET_HDR_F_NEEDS_CSUM | (data_valid ? VIRTIO_NET_HDR_F_DATA_VALID : 0);
	if (h->flags & ~allowed)
		return "header flags the device does not know";
	if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		if (!csum)
			return "checksum offload asked for without VIRTIO_NET_F_CSUM/GUEST_CSUM";
		if ((size_t)h->csum_start + h->csum_offset + 2 > frame_len)
			return "checksum position outside the frame";
	}
	uint8_t gso = h->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
	if (h->gso_type & VIRTIO_NET_HDR_GSO_ECN)
		return "GSO with ECN, which is not offered";
	if (gso == VIRTIO_NET_HDR_GSO_NONE)
		return NULL;
	if ((gso == VIRTIO_NET_HDR_GSO_TCPV4 && !tso4) || (gso == VIRTIO_NET_HDR_GSO_TCPV6 && !tso6) ||
	    (gso != VIRTIO_NET_HDR_GSO_TCPV4 && gso != VIRTIO_NET_HDR_GSO_TCPV6))
		return "segmentation offload type not negotiated";
	if (!(h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) || h->gso_size == 0)
		return "segmentation offload without a checksum request or a segment size";
	return NULL;
}

/* ---- transmit ---- */

/* Sends one transmit chain to the back end, or drops it. */
static void net_tx_one(struct virtio_net *net, struct vq_chain *c)
{
	if (c->readable_len < NET_HDR_LEN + NET_ETH_HLEN) {
		net_warn(net, "transmit chain shorter than the header and an Ethernet header");
		net->stats.tx_dropped++;
		return;
	}
	size_t frame_len = (size_t)c->readable_len - NET_HDR_LEN;
	if (frame_len > NET_MAX_FRAME) {
		net_warn(net, "transmit frame larger than 64 KiB plus headers");
		net->stats.tx_dropped++;
		return;
	}
	uint8_t *hdr = net->tx_hdr;
	iov_to_buf(c->iov, c->nr_readable, 0, hdr, NET_HDR_LEN);
	struct net_hdr h = hdr_parse(hdr);
	const char *bad = hdr_check(&h, frame_len, net_has(net, VIRTIO_NET_F_CSUM),
				    net_has(net, VIRTIO_NET_F_HOST_TSO4),
				    net_has(net, VIRTIO_NET_F_HOST_TSO6), false);
	if (bad) {
		net_warn(net, bad);
		net->stats.tx_dropped++;
		return;
	}
	le_store(hdr + NET_HDR_NUM_BUFFERS, 0, 2); /* meaningless on transmit */
	/* The checked copy of the header, then the guest's frame bytes. */
	net->tx_iov[0] = (struct iovec){ hdr, NET_HDR_LEN };
	unsigned n = 1 + iov_slice(c->iov, c->nr_readable, NET_HDR_LEN, SIZE_MAX, net->tx_iov + 1);
	net->nb->ops->send(net->nb, net->tx_iov, n, c->readable_len);
	net->stats.tx_frames++;
}

/* One transmit chain: nothing is written into a transmit buffer. */
static uint32_t net_tx_chain(void *ctx, struct vq_chain *c)
{
	net_tx_one(ctx, c);
	return 0;
}

/* Sends at most VIRTIO_QUEUE_BUDGET frames, then comes back on a later turn. */
static void net_tx(struct virtio_net *net, struct virtio_dev *vd)
{
	virtio_queue_serve(vd, VIRTIO_NET_TXQ, &net->chain, VIRTIO_QUEUE_BUDGET,
			   "broken transmit queue", net_tx_chain, net);
}

/* ---- receive ---- */

/* A frame from the back end the driver did not agree to take. */
static const char *net_rx_frame_bad(struct virtio_net *net, const uint8_t *frame, size_t len)
{
	if (len < NET_HDR_LEN + NET_ETH_HLEN || len - NET_HDR_LEN > NET_MAX_FRAME)
		return "back end frame too short or too long";
	struct net_hdr h = hdr_parse(frame);
	return hdr_check(&h, len - NET_HDR_LEN, net_has(net, VIRTIO_NET_F_GUEST_CSUM),
			 net_has(net, VIRTIO_NET_F_GUEST_TSO4), net_has(net, VIRTIO_NET_F_GUEST_TSO6),
			 true);
}

/* Without MRG_RXBUF: the whole frame in one chain. */
static enum rx_result net_rx_single(struct virtio_net *net, struct vq *vq, uint8_t *frame,
				    size_t len)
{
	struct vq_chain *c = &net->chain;
	enum vq_pop_result r = vq_pop(vq, c);
	if (r != VQ_CHAIN)
		return r == VQ_EMPTY ? RX_NO_ROOM : RX_BROKEN;
	if (c->writable_len < len) {
		net_warn(net, "receive buffer too small for the frame; frame dropped");
		net->stats.rx_dropped++;
		vq_push(vq, c->head, 0);
		return RX_DONE;
	}
	le_store(frame + NET_HDR_NUM_BUFFERS, 1, 2);
	iov_from_buf(c->iov + c->nr_readable, c->nr_iov - c->nr_readable, 0, frame, len);
	vq_push(vq, c->head, (uint32_t)len);
	net->stats.rx_frames++;
	return RX_DONE;
}

/*
 * With MRG_RXBUF: as many chains as the frame needs, num_buffers in the
 * first one, all published at once.
 */
static enum rx_result net_rx_merged(struct virtio_net *net, struct vq *vq, uint8_t *frame,
				    size_t len)
{
	struct vq_chain *c = &net->chain;
	uint8_t *nbuf[2] = { NULL, NULL }; /* where num_buffers lands in the first chain */
	unsigned k = 0;
	size_t done = 0;
	while (done < len) {
		if (k == vq->size || k == ARRAY_SIZE(net->used)) {
			/* Every buffer the ring can hold is not enough: it never will be. */
			net_unpop(vq, k);
			net_warn(net, "receive buffers too small for the frame even all together; "
				 "frame dropped");
			net->stats.rx_dropped++;
			return RX_DONE;
		}
		enum vq_pop_result r = vq_pop(vq, c);
		if (r == VQ_BROKEN)
			return RX_BROKEN;
		if (r == VQ_EMPTY) {
			net_unpop(vq, k);
			return RX_NO_ROOM;
		}
		if (c->writable_len < NET_HDR_LEN) {
			/* 5.1.6.3.1: each buffer must hold at least a header. */
			vq->broken = true;
			vq->why_broken = "receive buffer smaller than the 12-byte header";
			return RX_BROKEN;
		}
		const struct iovec *wr = c->iov + c->nr_readable;
		unsigned nwr = c->nr_iov - c->nr_readable;
		size_t want = len - done < c->writable_len ? len - done : (size_t)c->writable_len;
		iov_from_buf(wr, nwr, 0, frame + done, want);
		if (k == 0) {
			/* Remember where bytes 10 and 11 went, to fill in the count at the end. */
			for (unsigned b = 0; b < 2; b++) {
				size_t off = NET_HDR_NUM_BUFFERS + b;
				for (unsigned i = 0; i < nwr; off -= wr[i].iov_len, i++)
					if (off < wr[i].iov_len) {
						nbuf[b] = (uint8_t *)wr[i].iov_base + off;
						break;
					}
			}
		}
		net->used[k++] = (struct net_used){ c->head, (uint32_t)want };
		done += want;
	}
	*nbuf[0] = (uint8_t)k;
	*nbuf[1] = (uint8_t)(k >> 8);
	net_push_batch(vq, net->used, k);
	net->stats.rx_frames++;
	return RX_DONE;
}

/*
 * Moves frames from the back end into the guest while there is room, at
 * most VIRTIO_QUEUE_BUDGET of them (delivered or dropped) per call; the
 * rest on a later turn.
 */
static void net_rx(struct virtio_net *net, struct virtio_dev *vd)
{
	struct vq *vq = virtio_queue(vd, VIRTIO_NET_RXQ);
	if (!vq)
		return;
	unsigned moved = 0, handled = 0;
	enum rx_result r = RX_DONE;
	uint8_t *frame;
	size_t len;
	while ((frame = net->nb->ops->peek(net->nb, &len)) != NULL) {
		if (handled == VIRTIO_QUEUE_BUDGET) {
			virtio_queue_notify_later(vd, VIRTIO_NET_RXQ);
			break;
		}
		handled++;
		const char *bad = net_rx_frame_bad(net, frame, len);
		if (bad) {
			log_limited(&net->log_limit, LOG_LEVEL_DEBUG, "virtio-net: %s; frame dropped", bad);
			net->stats.rx_dropped++;
			net->nb->ops->pop(net->nb);
			continue;
		}
		r = net_has(net, VIRTIO_NET_F_MRG_RXBUF) ? net_rx_merged(net, vq, frame, len)
							 : net_rx_single(net, vq, frame, len);
		if (r == RX_BROKEN)
			break;
		if (r == RX_NO_ROOM) {
			if (net_rx_want_kick(vq))
				continue; /* buffers arrived meanwhile */
			break;
		}
		net->nb->ops->pop(net->nb);
		moved++;
	}
	if (moved)
		virtio_queue_interrupt(vd, VIRTIO_NET_RXQ);
	if (r == RX_BROKEN)
		virtio_needs_reset(vd, vq->why_broken ? vq->why_broken : "broken receive queue");
}

/* ---- the ops table ---- */

static uint64_t net_features(void *dev)
{
	struct virtio_net *net = dev;
	uint64_t f = VIRTIO_FEATURE(VIRTIO_NET_F_MAC) | VIRTIO_FEATURE(VIRTIO_NET_F_STATUS) |
		     VIRTIO_FEATURE(VIRTIO_NET_F_MRG_RXBUF) |
		     VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC_BIT) |
		     VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT);
	unsigned off = net->nb->offloads;
	/* Only what the back end can finish: slirp offers none of these. */
	if (off & NET_OFFLOAD_CSUM) {
		f |= VIRTIO_FEATURE(VIRTIO_NET_F_CSUM) | VIRTIO_FEATURE(VIRTIO_NET_F_GUEST_CSUM);
		if (off & NET_OFFLOAD_TSO4)
			f |= VIRTIO_FEATURE(VIRTIO_NET_F_HOST_TSO4) | VIRTIO_FEATURE(VIRTIO_NET_F_GUEST_TSO4);
		if (off & NET_OFFLOAD_TSO6)
			f |= VIRTIO_FEATURE(VIRTIO_NET_F_HOST_TSO6) | VIRTIO_FEATURE(VIRTIO_NET_F_GUEST_TSO6);
	}
	return f;
}

/* 5.1.3.1: a feature may be accepted only with the ones it depends on. */
static bool net_features_ok(void *dev, uint64_t f)
{
	(void)dev;
	static const struct { int feature, needs; } deps[] = {
		{ VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_CSUM },
		{ VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_CSUM },
		{ VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_CSUM },
		{ VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_CSUM },
	};
	for (size_t i = 0; i < ARRAY_SIZE(deps); i++)
		if ((f & VIRTIO_FEATURE(deps[i].feature)) && !(f & VIRTIO_FEATURE(deps[i].needs)))
			return false;
	return true;
}

static void net_config_read(void *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_net *net = dev;
	virtio_config_copy(net->config, sizeof(net->config), offset, data, len);
}

static void net_config_write(void *dev, uint32_t offset, const uint8_t *data, uint32_t len)
{
	/* The MAC is read-only in virtio 1.x (changed through the control queue, not offered). */
	(void)dev, (void)offset, (void)data, (void)len;
}

/* The receive offloads the driver accepted, for the back end. */
static unsigned net_rx_offloads(uint64_t f)
{
	unsigned off = 0;
	if (f & VIRTIO_FEATURE(VIRTIO_NET_F_GUEST_CSUM))
		off |= NET_OFFLOAD_CSUM;
	if (f & VIRTIO_FEATURE(VIRTIO_NET_F_GUEST_TSO4))
		off |= NET_OFFLOAD_TSO4;
	if (f & VIRTIO_FEATURE(VIRTIO_NET_F_GUEST_TSO6))
		off |= NET_OFFLOAD_TSO6;
	return off;
}

static void net_activate(void *dev, struct virtio_dev *vd, uint64_t features)
{
	struct virtio_net *net = dev;
	net->features = features;
	net->vd = vd;
	for (unsigned q = 0; q < 2; q++) {
		struct vq *vq = virtio_queue(vd, q);
		if (vq) {
			vq->indirect = features & VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC_BIT);
			vq->event_idx = features & VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT);
		}
	}
	if (net->nb->offloads && !net->nb->ops->set_offloads(net->nb, net_rx_offloads(features)))
		log_limited(&net->log_limit, LOG_LEVEL_WARN,
			    "virtio-net: the %s back end refused the guest's offloads", net->nb->ops->kind);
	atomic_store(&net->transport, vd);
}

static void net_queue_notify(void *dev, struct virtio_dev *vd, unsigned queue,
			     enum virtio_path path)
{
	(void)path; /* served on the I/O thread only */
	struct virtio_net *net = dev;
	if (!net->vd)
		return;
	if (queue == VIRTIO_NET_TXQ)
		net_tx(net, vd);
	else if (queue == VIRTIO_NET_RXQ)
		net_rx(net, vd);
}

static void net_reset(void *dev)
{
	struct virtio_net *net = dev;
	net->vd = NULL;
	net->features = 0;
	if (net->nb->offloads)
		net->nb->ops->set_offloads(net->nb, 0);
}

const struct virtio_device_ops virtio_net_ops = {
	.name = "virtio-net",
	.device_id = VIRTIO_ID_NET,
	.num_queues = 2,
	.queue_max_size = VIRTIO_NET_QUEUE_SIZE,
	.config_size = VIRTIO_NET_CONFIG_SIZE,
	.features = net_features,
	.config_read = net_config_read,
	.config_write = net_config_write,
	.features_ok = net_features_ok,
	.activate = net_activate,
	.queue_notify = net_queue_notify,
	.reset = net_reset,
};

/* ---- creation ---- */

struct virtio_net *virtio_net_create(const uint8_t mac[6], struct net_backend *nb,
				     const struct guest_mem *mem)
{
	struct virtio_net *net = calloc(1, sizeof(*net));
	if (!net) {
		log_error("virtio-net: out of memory");
		return NULL;
	}
	net->nb = nb;
	net->mem = mem;
	ratelimit_init(&net->log_limit, 60, 5);
	memcpy(net->config + VIRTIO_NET_CFG_MAC, mac, 6);
	le_store(net->config + VIRTIO_NET_CFG_STATUS, VIRTIO_NET_S_LINK_UP, 2);
	le_store(net->config + VIRTIO_NET_CFG_MAX_VQP, 1, 2);
	return net;
}

void virtio_net_destroy(struct virtio_net *net)
{
	free(net);
}

struct virtio_dev *virtio_net_transport(struct virtio_net *net)
{
	return atomic_load(&net->transport);
}

struct virtio_net_stats virtio_net_stats(const struct virtio_net *net)
{
	return net->stats;
}
