/*
 * virtio-vsock (see virtio-vsock.h): the stream protocol between the
 * guest's driver and the host side.
 *
 * Every tx packet is hostile. The checks, in order: a header of 44 bytes
 * (else dropped), the guest's own CID as source and the host's as
 * destination (else dropped: an answer could not be addressed), `len` no
 * larger than the payload that follows (else RST), stream type (else RST),
 * a known op (else RST), a connection for the ports, and credit: a driver
 * that sends more than the buf_alloc we gave it gets RST. Packets for no
 * connection get RST (except RST itself). Each of these is logged at debug
 * level only: a guest must not flood the host's log.
 *
 * Connections needing the rx queue (a control packet to send, or host bytes
 * the guest has credit for) sit on a FIFO work list; each rx buffer takes
 * one packet from the connection at its head, which then goes to the tail,
 * so one busy connection cannot starve the others. Resets for packets
 * without a connection wait in a fixed ring (dropped when it is full).
 */
#include "dev/virtio-vsock.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/iov.h"
#include "base/log.h"
#include "base/util.h"

#define VSOCK_QUEUE_SIZE   256

/* conn_grow doubles a ring from VSOCK_BUF_MIN and must land on VSOCK_CONN_BUF. */
_Static_assert((VSOCK_CONN_BUF & (VSOCK_CONN_BUF - 1)) == 0 && VSOCK_CONN_BUF % VSOCK_BUF_MIN == 0 &&
	       VSOCK_BUFFER_MAX >= VSOCK_CONN_BUF, "vsock buffer sizes");
#define VSOCK_HASH_BUCKETS 1024u

/* Control packets a connection owes the guest. */
#define P_REQUEST  1u
#define P_RESPONSE 2u
#define P_CREDIT   4u

enum conn_state {
	CONN_FREE,
	CONN_CONNECTING, /* host-initiated, REQUEST sent or owed */
	CONN_ACCEPTING,  /* guest-initiated, the host program has not accepted yet */
	CONN_ESTABLISHED,
	CONN_DRAINING,   /* the guest is gone; buffered bytes still go to the host */
};

struct vsock_conn {
	uint32_t id;
	enum conn_state state;
	void *host;
	uint32_t local_port, peer_port;  /* host side, guest side */
	unsigned pending;                /* P_* */
	unsigned want;                   /* last told to the backend */
	bool host_readable, host_eof;
	bool guest_no_send, guest_no_rcv;
	bool on_work_list, hashed;
	/* Credit the guest gave us (host to guest). */
	uint32_t peer_buf_alloc, peer_fwd_cnt, rx_cnt;
	/* Guest to host: bytes forwarded, and the count the guest last saw. */
	uint32_t fwd_cnt, fwd_cnt_sent;
	const char *refusal;             /* CONNECTING: what the host program hears if it ends */
	uint8_t *txbuf;                  /* a ring of tx_cap bytes, only while needed */
	uint32_t tx_cap, tx_head, tx_len;
	struct vsock_conn *hnext, *wnext;
};

struct rst_entry {
	uint32_t src_port, dst_port;     /* as the guest sent them */
};

struct virtio_vsock {
	pthread_mutex_t lock;
	uint64_t guest_cid;
	struct vsock_backend be;
	struct virtio_dev *vd;
	bool active;
	uint8_t config[VSOCK_CONFIG_SIZE];

	struct vsock_conn conns[VSOCK_MAX_CONNS];
	unsigned nconns;
	uint32_t generation;
	uint32_t next_local_port;
	struct vsock_conn *hash[VSOCK_HASH_BUCKETS];
	struct vsock_conn *work_head, *work_tail;
	struct rst_entry rst[VSOCK_RST_BACKLOG];
	unsigned rst_head, rst_len;
	uint64_t buffered, buffered_peak;
	uint64_t buffer_bytes;           /* heap the rings hold: at most VSOCK_BUFFER_MAX */

	struct vq_chain chain;           /* tx chain being served */
	struct vq_chain rx_chain;        /* rx buffer popped and not yet filled */
	bool rx_held;
	struct iovec iov[VQ_MAX_SEGS];   /* payload view of a chain */
};

/* ---- small helpers ---- */

static unsigned port_hash(uint32_t local, uint32_t peer)
{
	return (local * 2654435761u ^ peer * 40503u) % VSOCK_HASH_BUCKETS;
}

static struct vsock_conn *conn_lookup(struct virtio_vsock *vs, uint32_t local, uint32_t peer)
{
	for (struct vsock_conn *c = vs->hash[port_hash(local, peer)]; c; c = c->hnext)
		if (c->local_port == local && c->peer_port == peer)
			return c;
	return NULL;
}

static struct vsock_conn *conn_by_id(struct virtio_vsock *vs, uint32_t id)
{
	if (id == 0)
		return NULL;
	struct vsock_conn *c = &vs->conns[(id - 1) % VSOCK_MAX_CONNS];
	return c->state != CONN_FREE && c->id == id ? c : NULL;
}

static void conn_unhash(struct virtio_vsock *vs, struct vsock_conn *c)
{
	if (!c->hashed)
		return;
	struct vsock_conn **pp = &vs->hash[port_hash(c->local_port, c->peer_port)];
	while (*pp != c)
		pp = &(*pp)->hnext;
	*pp = c->hnext;
	c->hashed = false;
}

/* A free slot with ports set and hashed; NULL when the table is full. */
static struct vsock_conn *conn_new(struct virtio_vsock *vs, uint32_t local, uint32_t peer,
				   enum conn_state state)
{
	if (vs->nconns == VSOCK_MAX_CONNS)
		return NULL;
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vsock_conn *c = &vs->conns[i];
		if (c->state != CONN_FREE)
			continue;
		/* id - 1 is the slot modulo VSOCK_MAX_CONNS; the rest is a generation. */
		uint32_t gen = ++vs->generation;
		*c = (struct vsock_conn){ .id = (gen % (UINT32_MAX / VSOCK_MAX_CONNS)) * VSOCK_MAX_CONNS + i + 1,
					  .state = state, .local_port = local, .peer_port = peer,
					  .hashed = true };
		unsigned h = port_hash(local, peer);
		c->hnext = vs->hash[h];
		vs->hash[h] = c;
		vs->nconns++;
		return c;
	}
	return NULL;
}

/* ---- work list and resets ---- */

static uint32_t conn_credit(const struct vsock_conn *c)
{
	/* A guest claiming to have consumed more than we sent gets no credit. */
	uint32_t in_flight = c->rx_cnt - c->peer_fwd_cnt;
	return in_flight > c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static bool conn_has_work(const struct vsock_conn *c)
{
	if (c->state == CONN_FREE || c->state == CONN_DRAINING)
		return false;
	if (c->pending)
		return true;
	return c->state == CONN_ESTABLISHED && c->host_readable && !c->host_eof &&
	       !c->guest_no_rcv && conn_credit(c) > 0;
}

static void work_push(struct virtio_vsock *vs, struct vsock_conn *c)
{
	if (c->on_work_list || !conn_has_work(c))
		return;
	c->on_work_list = true;
	c->wnext = NULL;
	if (vs->work_tail)
		vs->work_tail->wnext = c;
	else
		vs->work_head = c;
	vs->work_tail = c;
}

static struct vsock_conn *work_pop(struct virtio_vsock *vs)
{
	struct vsock_conn *c = vs->work_head;
	if (!c)
		return NULL;
	vs->work_head = c->wnext;
	if (!vs->work_head)
		vs->work_tail = NULL;
	c->on_work_list = false;
	return c;
}

static void work_remove(struct virtio_vsock *vs, struct vsock_conn *c)
{
	if (!c->on_work_list)
		return;
	struct vsock_conn *prev = NULL;
	for (struct vsock_conn *p = vs->work_head; p && p != c; p = p->wnext)
		prev = p;
	if (prev)
		prev->wnext = c->wnext;
	else
		vs->work_head = c->wnext;
	if (vs->work_tail == c)
		vs->work_tail = prev;
	c->on_work_list = false;
}

/* Queues a RST answering a guest packet with these ports. */
static void rst_queue(struct virtio_vsock *vs, uint32_t guest_port, uint32_t host_port)
{
	if (vs->rst_len == VSOCK_RST_BACKLOG) {
		log_debug("virtio-vsock: reset backlog full, dropping RST to port %u", guest_port);
		return;
	}
	vs->rst[(vs->rst_head + vs->rst_len++) % VSOCK_RST_BACKLOG] =
		(struct rst_entry){ guest_port, host_port };
}

static bool have_rx_work(const struct virtio_vsock *vs)
{
	return vs->active && (vs->rst_len > 0 || vs->work_head);
}

/* ---- connection lifecycle ---- */

static void conn_want(struct virtio_vsock *vs, struct vsock_conn *c)
{
	unsigned want = 0;
	if (c->state == CONN_ESTABLISHED && !c->host_readable && !c->host_eof && !c->guest_no_rcv &&
	    conn_credit(c) > 0)
		want |= VSOCK_WANT_READ;
	if (c->tx_len > 0)
		want |= VSOCK_WANT_WRITE;
	if (want != c->want && c->host) {
		c->want = want;
		vs->be.want(vs->be.ctx, c->host, want);
	}
}

static void conn_free_buf(struct virtio_vsock *vs, struct vsock_conn *c)
{
	vs->buffered -= c->tx_len;
	vs->buffer_bytes -= c->tx_cap;
	free(c->txbuf);
	c->txbuf = NULL;
	c->tx_len = c->tx_head = c->tx_cap = 0;
}

/* Ends a connection on both sides; `rst` tells the guest. */
static void conn_close(struct virtio_vsock *vs, struct vsock_conn *c, bool rst)
{
	if (rst && c->state != CONN_DRAINING)
		rst_queue(vs, c->peer_port, c->local_port);
	/* A host program waiting for the guest's answer hears why it never came. */
	if (c->state == CONN_CONNECTING && c->host && vs->be.refused)
		vs->be.refused(vs->be.ctx, c->host, c->refusal ? c->refusal : VSOCK_WHY_RESET);
	conn_unhash(vs, c);
	work_remove(vs, c);
	conn_free_buf(vs, c);
	if (c->host)
		vs->be.close(vs->be.ctx, c->host);
	c->host = NULL;
	c->state = CONN_FREE;
	vs->nconns--;
}

/*
 * The guest is done with the connection (both directions shut, or it
 * closed): RST it, then give the host what is still buffered before EOF.
 */
static void conn_finish(struct virtio_vsock *vs, struct vsock_conn *c)
{
	if (c->tx_len == 0) {
		conn_close(vs, c, true);
		return;
	}
	rst_queue(vs, c->peer_port, c->local_port);
	conn_unhash(vs, c); /* the guest may reuse the ports at once */
	work_remove(vs, c);
	c->state = CONN_DRAINING;
	conn_want(vs, c);
}

/* ---- guest to host bytes ---- */

/* Writes the buffered bytes to the host; false when the host failed. */
static bool conn_flush(struct virtio_vsock *vs, struct vsock_conn *c)
{
	while (c->tx_len > 0) {
		uint32_t first = c->tx_cap - c->tx_head;
		if (first > c->tx_len)
			first = c->tx_len;
		struct iovec iov[2] = { { c->txbuf + c->tx_head, first },
					{ c->txbuf, c->tx_len - first } };
		ssize_t n = vs->be.send(vs->be.ctx, c->host, iov, iov[1].iov_len ? 2 : 1);
		if (n == -EAGAIN || n == -EINTR)
			break;
		if (n <= 0)
			return false;
		c->tx_head = (uint32_t)((c->tx_head + (size_t)n) % c->tx_cap);
		c->tx_len -= (uint32_t)n;
		c->fwd_cnt += (uint32_t)n;
		vs->buffered -= (uint64_t)n;
	}
	if (c->tx_len == 0) {
		conn_free_buf(vs, c);
		if (c->fwd_cnt != c->fwd_cnt_sent)
			c->pending |= P_CREDIT; /* drained: the guest may be waiting */
	}
	return true;
}

/*
 * Makes c's ring hold at least `need` bytes (need <= VSOCK_CONN_BUF): it
 * doubles from VSOCK_BUF_MIN, so a connection whose host reader lags a
 * little holds a little, and the rings of all connections stay within
 * VSOCK_BUFFER_MAX. False when that bound or malloc says no.
 */
static bool conn_grow(struct virtio_vsock *vs, struct vsock_conn *c, uint32_t need)
{
	if (need <= c->tx_cap)
		return true;
	uint32_t cap = c->tx_cap ? c->tx_cap : VSOCK_BUF_MIN;
	while (cap < need)
		cap *= 2;
	if (vs->buffer_bytes - c->tx_cap + cap > VSOCK_BUFFER_MAX)
		return false;
	uint8_t *buf = malloc(cap);
	if (!buf)
		return false;
	uint32_t first = c->tx_cap - c->tx_head < c->tx_len ? c->tx_cap - c->tx_head : c->tx_len;
	if (c->tx_len) {
		memcpy(buf, c->txbuf + c->tx_head, first);
		memcpy(buf + first, c->txbuf, c->tx_len - first);
	}
	free(c->txbuf);
	vs->buffer_bytes += cap - c->tx_cap;
	c->txbuf = buf;
	c->tx_cap = cap;
	c->tx_head = 0;
	return true;
}

/* Keeps the bytes the host did not take; NULL, or why the connection must be reset. */
static const char *conn_buffer(struct virtio_vsock *vs, struct vsock_conn *c, const struct iovec *iov,
			       unsigned n, size_t off, size_t len)
{
	if (len == 0)
		return NULL;
	if (len > VSOCK_CONN_BUF - c->tx_len)
		return "sent beyond its credit";
	if (!conn_grow(vs, c, c->tx_len + (uint32_t)len))
		return "host readers too slow: the VM's vsock buffers are full";
	while (len > 0) {
		uint32_t tail = (c->tx_head + c->tx_len) % c->tx_cap;
		size_t k = c->tx_cap - tail < len ? c->tx_cap - tail : len;
		iov_to_buf(iov, n, off, c->txbuf + tail, k);
		c->tx_len += (uint32_t)k;
		vs->buffered += k;
		off += k;
		len -= k;
	}
	if (vs->buffered > vs->buffered_peak)
		vs->buffered_peak = vs->buffered;
	return NULL;
}

/* An RW packet's payload: to the host now, or into the buffer. */
static void conn_rw(struct virtio_vsock *vs, struct vsock_conn *c, const struct iovec *iov,
		    unsigned n, size_t len)
{
	size_t sent = 0;
	if (c->tx_len == 0 && len > 0) {
		unsigned w = iov_slice(iov, n, VSOCK_HDR_BYTES, len, vs->iov);
		ssize_t r = vs->be.send(vs->be.ctx, c->host, vs->iov, w);
		if (r < 0 && r != -EAGAIN && r != -EINTR) {
			log_debug("virtio-vsock: host port %u: write failed, reset", c->local_port);
			conn_close(vs, c, true);
			return;
		}
		sent = r > 0 ? (size_t)r : 0;
		c->fwd_cnt += (uint32_t)sent;
	}
	const char *why = conn_buffer(vs, c, iov, n, VSOCK_HDR_BYTES + sent, len - sent);
	if (why) {
		log_debug("virtio-vsock: port %u: %s, reset", c->peer_port, why);
		conn_close(vs, c, true);
		return;
	}
	/*
	 * Tell the guest about freed space before it can run dry: at half the
	 * credit, so a guest whose bytes the host takes at once always has at
	 * least half left. (At a quarter, every 64 KiB packet cost the guest
	 * a credit packet too.)
	 */
	if (c->fwd_cnt - c->fwd_cnt_sent >= VSOCK_CONN_BUF / 2)
		c->pending |= P_CREDIT;
}

/* ---- tx: one packet from the guest ---- */

struct pkt {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len, flags, buf_alloc, fwd_cnt;
	uint16_t type, op;
};

static void pkt_parse(const uint8_t *h, struct pkt *p)
{
	*p = (struct pkt){
		.src_cid = le_load(h + VSOCK_HDR_SRC_CID, 8),
		.dst_cid = le_load(h + VSOCK_HDR_DST_CID, 8),
		.src_port = (uint32_t)le_load(h + VSOCK_HDR_SRC_PORT, 4),
		.dst_port = (uint32_t)le_load(h + VSOCK_HDR_DST_PORT, 4),
		.len = (uint32_t)le_load(h + VSOCK_HDR_LEN, 4),
		.type = (uint16_t)le_load(h + VSOCK_HDR_TYPE, 2),
		.op = (uint16_t)le_load(h + VSOCK_HDR_OP, 2),
		.flags = (uint32_t)le_load(h + VSOCK_HDR_FLAGS, 4),
		.buf_alloc = (uint32_t)le_load(h + VSOCK_HDR_BUF_ALLOC, 4),
		.fwd_cnt = (uint32_t)le_load(h + VSOCK_HDR_FWD_CNT, 4),
	};
}

static void tx_request(struct virtio_vsock *vs, const struct pkt *p, struct vsock_conn *c)
{
	if (c) {
		log_debug("virtio-vsock: REQUEST for port %u which is connected, reset", p->src_port);
		conn_close(vs, c, true);
		return;
	}
	c = conn_new(vs, p->dst_port, p->src_port, CONN_ESTABLISHED);
	if (!c) {
		log_debug("virtio-vsock: %u connections, refusing port %u", VSOCK_MAX_CONNS, p->dst_port);
		rst_queue(vs, p->src_port, p->dst_port);
		return;
	}
	c->peer_buf_alloc = p->buf_alloc;
	c->peer_fwd_cnt = p->fwd_cnt;
	bool later = false;
	c->host = vs->be.connect(vs->be.ctx, p->dst_port, c->id, &later);
	if (!c->host) {
		log_debug("virtio-vsock: nothing listens on host port %u, reset", p->dst_port);
		conn_close(vs, c, true);
		return;
	}
	if (later) {
		c->state = CONN_ACCEPTING; /* RESPONSE waits for virtio_vsock_host_accepted() */
		return;
	}
	c->pending |= P_RESPONSE;
	conn_want(vs, c);
	work_push(vs, c);
}

static void tx_shutdown(struct virtio_vsock *vs, struct vsock_conn *c, uint32_t flags)
{
	if (flags & VSOCK_SHUTDOWN_SEND && !c->guest_no_send) {
		c->guest_no_send = true;
		if (c->tx_len == 0)
			vs->be.shutdown_write(vs->be.ctx, c->host);
	}
	if (flags & VSOCK_SHUTDOWN_RCV)
		c->guest_no_rcv = true;
	/* Both ways shut, or the host already sent EOF and the guest too. */
	if ((c->guest_no_send && c->guest_no_rcv) || (c->guest_no_send && c->host_eof))
		conn_finish(vs, c);
}

/* Handles a packet for an existing connection. */
static void tx_conn(struct virtio_vsock *vs, const struct pkt *p, struct vsock_conn *c,
		    const struct vq_chain *ch)
{
	if (p->op == VSOCK_OP_RST) {
		c->refusal = VSOCK_WHY_REFUSED; /* no listener on that port in the guest */
		conn_close(vs, c, false);
		return;
	}
	c->peer_buf_alloc = p->buf_alloc;
	c->peer_fwd_cnt = p->fwd_cnt;
	bool connecting = c->state == CONN_CONNECTING || c->state == CONN_ACCEPTING;
	if (p->op == VSOCK_OP_RESPONSE && c->state == CONN_CONNECTING && !(c->pending & P_REQUEST)) {
		c->state = CONN_ESTABLISHED;
		vs->be.established(vs->be.ctx, c->host, c->local_port);
	} else if (connecting || (p->op != VSOCK_OP_RW && p->len != 0)) {
		log_debug("virtio-vsock: port %u: op %u out of place, reset", p->src_port, p->op);
		conn_close(vs, c, true);
		return;
	} else if (p->op == VSOCK_OP_RW) {
		if (c->guest_no_send) {
			log_debug("virtio-vsock: port %u: data after SHUTDOWN, reset", p->src_port);
			conn_close(vs, c, true);
			return;
		}
		conn_rw(vs, c, ch->iov, ch->nr_readable, p->len);
	} else if (p->op == VSOCK_OP_SHUTDOWN) {
		tx_shutdown(vs, c, p->flags);
	} else if (p->op == VSOCK_OP_CREDIT_REQUEST) {
		c->pending |= P_CREDIT;
	} else if (p->op != VSOCK_OP_CREDIT_UPDATE) {
		log_debug("virtio-vsock: port %u: op %u unexpected, reset", p->src_port, p->op);
		conn_close(vs, c, true);
		return;
	}
	if (c->state == CONN_ESTABLISHED) {
		conn_want(vs, c);
		work_push(vs, c);
	}
}

static void tx_packet(struct virtio_vsock *vs, const struct vq_chain *ch)
{
	uint8_t h[VSOCK_HDR_BYTES];
	if (ch->readable_len < VSOCK_HDR_BYTES) {
		log_debug("virtio-vsock: tx buffer of %llu bytes has no header, dropped",
			  (unsigned long long)ch->readable_len);
		return;
	}
	iov_to_buf(ch->iov, ch->nr_readable, 0, h, VSOCK_HDR_BYTES);
	struct pkt p;
	pkt_parse(h, &p);
	if (p.src_cid != vs->guest_cid || p.dst_cid != VSOCK_CID_HOST) {
		log_debug("virtio-vsock: packet from CID %llu to CID %llu, dropped",
			  (unsigned long long)p.src_cid, (unsigned long long)p.dst_cid);
		return;
	}
	struct vsock_conn *c = conn_lookup(vs, p.dst_port, p.src_port);
	const char *bad = NULL;
	if (p.len > ch->readable_len - VSOCK_HDR_BYTES)
		bad = "length beyond its buffer";
	else if (p.type != VSOCK_TYPE_STREAM)
		bad = "not a stream packet";
	else if (p.op == VSOCK_OP_INVALID || p.op > VSOCK_OP_CREDIT_REQUEST)
		bad = "unknown op";
	else if (!c && p.op != VSOCK_OP_REQUEST)
		bad = "no such connection";
	if (bad) {
		log_debug("virtio-vsock: port %u -> %u op %u: %s, reset", p.src_port, p.dst_port, p.op, bad);
		if (c)
			conn_close(vs, c, true);
		else if (p.op != VSOCK_OP_RST)
			rst_queue(vs, p.src_port, p.dst_port);
		return;
	}
	if (p.op == VSOCK_OP_REQUEST)
		tx_request(vs, &p, c);
	else
		tx_conn(vs, &p, c, ch);
}

/* One tx packet: nothing is written into a tx buffer. */
static uint32_t tx_chain(void *ctx, struct vq_chain *c)
{
	tx_packet(ctx, c);
	return 0;
}

/* The I/O thread serves at most VIRTIO_QUEUE_BUDGET packets a turn; a
 * vCPU (the queue is VIRTIO_SERVE_VCPU) spends its own time, unbounded. */
static void tx_process(struct virtio_vsock *vs, struct virtio_dev *vd, enum virtio_path path)
{
	virtio_queue_serve(vd, VIRTIO_VSOCK_QUEUE_TX, &vs->chain,
			   path == VIRTIO_ON_VCPU ? 0 : VIRTIO_QUEUE_BUDGET, "broken tx queue",
			   tx_chain, vs);
}

/* ---- rx: one packet to the guest ---- */

/* Writes a header into the held rx chain for connection ports and counters. */
static void rx_header(struct virtio_vsock *vs, uint32_t src_port, uint32_t dst_port, uint16_t op,
		      uint32_t flags, uint32_t len, uint32_t fwd_cnt)
{
	uint8_t h[VSOCK_HDR_BYTES] = { 0 };
	le_store(h + VSOCK_HDR_SRC_CID, VSOCK_CID_HOST, 8);
	le_store(h + VSOCK_HDR_DST_CID, vs->guest_cid, 8);
	le_store(h + VSOCK_HDR_SRC_PORT, src_port, 4);
	le_store(h + VSOCK_HDR_DST_PORT, dst_port, 4);
	le_store(h + VSOCK_HDR_LEN, len, 4);
	le_store(h + VSOCK_HDR_TYPE, VSOCK_TYPE_STREAM, 2);
	le_store(h + VSOCK_HDR_OP, op, 2);
	le_store(h + VSOCK_HDR_FLAGS, flags, 4);
	le_store(h + VSOCK_HDR_BUF_ALLOC, VSOCK_CONN_BUF, 4);
	le_store(h + VSOCK_HDR_FWD_CNT, fwd_cnt, 4);
	struct vq_chain *ch = &vs->rx_chain;
	iov_from_buf(ch->iov + ch->nr_readable, ch->nr_iov - ch->nr_readable, 0, h, sizeof(h));
}

static uint32_t rx_control(struct virtio_vsock *vs, struct vsock_conn *c, uint16_t op, uint32_t flags)
{
	c->fwd_cnt_sent = c->fwd_cnt;
	c->pending &= ~P_CREDIT; /* every header carries our fwd_cnt */
	rx_header(vs, c->local_port, c->peer_port, op, flags, 0, c->fwd_cnt);
	return VSOCK_HDR_BYTES;
}

/* Host bytes into the rx buffer; returns the packet length or 0 for none. */
static uint32_t rx_data(struct virtio_vsock *vs, struct vsock_conn *c)
{
	struct vq_chain *ch = &vs->rx_chain;
	uint64_t room = ch->writable_len - VSOCK_HDR_BYTES;
	uint32_t max = conn_credit(c);
	if (max > room)
		max = (uint32_t)room;
	if (max > VSOCK_MAX_PKT_DATA)
		max = VSOCK_MAX_PKT_DATA;
	if (max == 0)
		return 0;
	struct iovec *wr = ch->iov + ch->nr_readable;
	unsigned w = iov_slice(wr, ch->nr_iov - ch->nr_readable, VSOCK_HDR_BYTES, max, vs->iov);
	ssize_t n = vs->be.recv(vs->be.ctx, c->host, vs->iov, w);
	if (n == -EAGAIN || n == -EINTR) {
		c->host_readable = false;
		return 0;
	}
	if (n < 0) {
		log_debug("virtio-vsock: host port %u: read failed, reset", c->local_port);
		conn_close(vs, c, true);
		return 0;
	}
	if (n == 0) {
		c->host_eof = true;
		c->host_readable = false;
		/*
		 * The guest sent its SHUTDOWN already: both directions are done.
		 * Bytes the host has not taken yet still reach it (conn_finish);
		 * telling the guest SHUTDOWN instead would leave the connection
		 * open until the guest resets it (Linux: 8 s after its close()).
		 */
		if (c->guest_no_send) {
			conn_finish(vs, c);
			return 0;
		}
		return rx_control(vs, c, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_SEND);
	}
	c->rx_cnt += (uint32_t)n;
	c->fwd_cnt_sent = c->fwd_cnt;
	c->pending &= ~P_CREDIT;
	rx_header(vs, c->local_port, c->peer_port, VSOCK_OP_RW, 0, (uint32_t)n, c->fwd_cnt);
	return VSOCK_HDR_BYTES + (uint32_t)n;
}

/* The next packet `c` owes the guest, into the held rx buffer. */
static uint32_t rx_conn_packet(struct virtio_vsock *vs, struct vsock_conn *c)
{
	if (c->pending & P_REQUEST) {
		c->pending &= ~P_REQUEST;
		return rx_control(vs, c, VSOCK_OP_REQUEST, 0);
	}
	if (c->pending & P_RESPONSE) {
		c->pending &= ~P_RESPONSE;
		return rx_control(vs, c, VSOCK_OP_RESPONSE, 0);
	}
	if (c->state == CONN_ESTABLISHED && c->host_readable && !c->host_eof && !c->guest_no_rcv) {
		uint32_t len = rx_data(vs, c);
		if (len || c->state != CONN_ESTABLISHED)
			return len; /* a packet, or the connection ended (its RST is queued) */
	}
	if (c->pending & P_CREDIT)
		return rx_control(vs, c, VSOCK_OP_CREDIT_UPDATE, 0);
	return 0;
}

/* A queued RST into the held rx buffer; 0 when none is queued. */
static uint32_t rx_rst(struct virtio_vsock *vs)
{
	if (vs->rst_len == 0)
		return 0;
	struct rst_entry e = vs->rst[vs->rst_head];
	vs->rst_head = (vs->rst_head + 1) % VSOCK_RST_BACKLOG;
	vs->rst_len--;
	rx_header(vs, e.dst_port, e.src_port, VSOCK_OP_RST, 0, 0, 0);
	return VSOCK_HDR_BYTES;
}

/* Fills the held rx buffer with one packet; returns its length (0: none). */
static uint32_t rx_fill(struct virtio_vsock *vs)
{
	uint32_t len = rx_rst(vs);
	if (len)
		return len;
	/* Each connection on the list gets one try per buffer. */
	for (struct vsock_conn *last = vs->work_tail, *c; (c = work_pop(vs));) {
		bool was_last = c == last;
		len = rx_conn_packet(vs, c);
		if (c->state != CONN_FREE) {
			conn_want(vs, c);
			work_push(vs, c);
		}
		if (len)
			return len;
		if (was_last)
			break;
	}
	return rx_rst(vs); /* a host error on the way reset a connection */
}

/* Takes an rx buffer from the driver unless one is held; false when none. */
static bool rx_take(struct virtio_vsock *vs, struct virtio_dev *vd, struct vq *vq)
{
	while (!vs->rx_held) {
		enum vq_pop_result r = vq_pop(vq, &vs->rx_chain);
		if (r == VQ_BROKEN) {
			virtio_needs_reset(vd, vq->why_broken ? vq->why_broken : "broken rx queue");
			return false;
		}
		if (r == VQ_EMPTY) {
			if (!vq_enable_notify(vq, true))
				return false;
			continue;
		}
		if (vs->rx_chain.writable_len < VSOCK_HDR_BYTES) {
			log_debug("virtio-vsock: rx buffer of %llu bytes, returned unused",
				  (unsigned long long)vs->rx_chain.writable_len);
			vq_push(vq, vs->rx_chain.head, 0);
			continue;
		}
		vs->rx_held = true;
	}
	return true;
}

static void rx_process(struct virtio_vsock *vs, struct virtio_dev *vd)
{
	struct vq *vq = virtio_queue(vd, VIRTIO_VSOCK_QUEUE_RX);
	if (!vq)
		return;
	bool pushed = false;
	while (have_rx_work(vs) && rx_take(vs, vd, vq)) {
		uint32_t len = rx_fill(vs);
		if (len == 0)
			break; /* the work left is waiting for the host */
		vq_push(vq, vs->rx_chain.head, len);
		vs->rx_held = false;
		pushed = true;
	}
	if (pushed)
		virtio_queue_interrupt(vd, VIRTIO_VSOCK_QUEUE_RX);
}

/* ---- the host side's entry points ---- */

static void unlock_and_wake(struct virtio_vsock *vs)
{
	bool work = have_rx_work(vs);
	struct virtio_dev *vd = vs->vd;
	pthread_mutex_unlock(&vs->lock);
	if (work && vd)
		vs->be.wake(vs->be.ctx, vd);
}

/* A local port no connection to `peer` uses. */
static uint32_t pick_local_port(struct virtio_vsock *vs, uint32_t peer)
{
	for (;;) {
		uint32_t port = vs->next_local_port++;
		if (vs->next_local_port < VSOCK_LOCAL_PORT_BASE)
			vs->next_local_port = VSOCK_LOCAL_PORT_BASE;
		if (!conn_lookup(vs, port, peer))
			return port;
	}
}

uint32_t virtio_vsock_host_connect(struct virtio_vsock *vs, uint32_t port, void *host,
				   const char **why)
{
	pthread_mutex_lock(&vs->lock);
	struct vsock_conn *c = NULL;
	if (vs->active)
		c = conn_new(vs, pick_local_port(vs, port), port, CONN_CONNECTING);
	*why = !vs->active ? VSOCK_WHY_NO_DRIVER : VSOCK_WHY_TOO_MANY;
	if (c) {
		c->host = host;
		c->pending = P_REQUEST;
		work_push(vs, c);
	}
	uint32_t id = c ? c->id : 0;
	unlock_and_wake(vs);
	return id;
}

void virtio_vsock_host_accepted(struct virtio_vsock *vs, uint32_t id, bool ok)
{
	pthread_mutex_lock(&vs->lock);
	struct vsock_conn *c = conn_by_id(vs, id);
	if (c && c->state == CONN_ACCEPTING && ok) {
		c->state = CONN_ESTABLISHED;
		c->pending |= P_RESPONSE;
		conn_want(vs, c);
		work_push(vs, c);
	} else if (c && c->state == CONN_ACCEPTING) {
		log_debug("virtio-vsock: host port %u did not accept in time, reset", c->local_port);
		conn_close(vs, c, true);
	}
	unlock_and_wake(vs);
}

void virtio_vsock_host_ready(struct virtio_vsock *vs, uint32_t id, unsigned events)
{
	pthread_mutex_lock(&vs->lock);
	struct vsock_conn *c = conn_by_id(vs, id);
	if (c && (events & (VSOCK_EV_WRITE | VSOCK_EV_HUP)) && c->tx_len > 0) {
		if (!conn_flush(vs, c)) {
			conn_close(vs, c, true);
			c = NULL;
		} else if (c->tx_len == 0 && c->state == CONN_DRAINING) {
			conn_close(vs, c, false);
			c = NULL;
		} else if (c->tx_len == 0 && c->guest_no_send) {
			vs->be.shutdown_write(vs->be.ctx, c->host);
		}
	}
	if (c && (events & (VSOCK_EV_READ | VSOCK_EV_HUP)) && c->state == CONN_ESTABLISHED)
		c->host_readable = true;
	if (c) {
		conn_want(vs, c);
		work_push(vs, c);
	}
	unlock_and_wake(vs);
}

void virtio_vsock_get_stats(struct virtio_vsock *vs, struct virtio_vsock_stats *st)
{
	pthread_mutex_lock(&vs->lock);
	*st = (struct virtio_vsock_stats){ .conns = vs->nconns, .buffered = vs->buffered,
					   .buffered_peak = vs->buffered_peak, .buffer_bytes = vs->buffer_bytes,
					   .rst_queued = vs->rst_len };
	pthread_mutex_unlock(&vs->lock);
}

/* ---- the ops table ---- */

static uint64_t vsock_features(void *dev)
{
	(void)dev;
	return VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC_BIT) | VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT);
}

static void vsock_config_read(void *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_vsock *vs = dev;
	virtio_config_copy(vs->config, sizeof(vs->config), offset, data, len);
}

static void vsock_config_write(void *dev, uint32_t offset, const uint8_t *data, uint32_t len)
{
	(void)dev, (void)offset, (void)data, (void)len; /* guest_cid is read-only */
}

static void vsock_activate(void *dev, struct virtio_dev *vd, uint64_t features)
{
	(void)features;
	struct virtio_vsock *vs = dev;
	pthread_mutex_lock(&vs->lock);
	vs->vd = vd;
	vs->active = true;
	pthread_mutex_unlock(&vs->lock);
}

static void vsock_queue_notify(void *dev, struct virtio_dev *vd, unsigned queue,
			       enum virtio_path path)
{
	struct virtio_vsock *vs = dev;
	pthread_mutex_lock(&vs->lock);
	if (vs->active && queue == VIRTIO_VSOCK_QUEUE_TX)
		tx_process(vs, vd, path);
	/* Either way the rx queue: buffers arrived, or the tx packets owe answers. */
	if (vs->active && queue != VIRTIO_VSOCK_QUEUE_EVENT)
		rx_process(vs, vd);
	pthread_mutex_unlock(&vs->lock);
}

/* Every connection ends: host peers see EOF, the driver starts afresh. */
static void vsock_close_all(struct virtio_vsock *vs)
{
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
		if (vs->conns[i].state == CONN_FREE)
			continue;
		vs->conns[i].refusal = VSOCK_WHY_NO_DRIVER; /* the driver reset */
		conn_close(vs, &vs->conns[i], false);
	}
	vs->rst_len = vs->rst_head = 0;
	vs->work_head = vs->work_tail = NULL;
	vs->rx_held = false;
}

static void vsock_reset(void *dev)
{
	struct virtio_vsock *vs = dev;
	pthread_mutex_lock(&vs->lock);
	vs->active = false;
	vsock_close_all(vs);
	pthread_mutex_unlock(&vs->lock);
}

/* A guest's send then reaches the host socket without waking a thread;
 * rx refills stay on the I/O thread, as they may read many sockets. */
static void vsock_queue_info(void *dev, unsigned queue, struct virtio_queue_info *info)
{
	(void)dev;
	if (queue == VIRTIO_VSOCK_QUEUE_TX)
		info->serve = VIRTIO_SERVE_VCPU;
}

const struct virtio_device_ops virtio_vsock_ops = {
	.name = "virtio-vsock",
	.device_id = VIRTIO_ID_VSOCK,
	.num_queues = 3,
	.queue_max_size = VSOCK_QUEUE_SIZE,
	.config_size = VSOCK_CONFIG_SIZE,
	.features = vsock_features,
	.config_read = vsock_config_read,
	.config_write = vsock_config_write,
	.activate = vsock_activate,
	.queue_notify = vsock_queue_notify,
	.reset = vsock_reset,
	.queue_info = vsock_queue_info,
};

/* ---- creation ---- */

struct virtio_vsock *virtio_vsock_create(uint64_t guest_cid, const struct vsock_backend *be)
{
	if (guest_cid < VSOCK_CID_MIN || guest_cid > VSOCK_CID_MAX) {
		log_error("vsock: guest CID %llu is reserved; use 3 to %u",
			  (unsigned long long)guest_cid, VSOCK_CID_MAX);
		return NULL;
	}
	struct virtio_vsock *vs = calloc(1, sizeof(*vs));
	if (!vs) {
		log_error("vsock: out of memory");
		return NULL;
	}
	pthread_mutex_init(&vs->lock, NULL);
	vs->guest_cid = guest_cid;
	vs->be = *be;
	vs->next_local_port = VSOCK_LOCAL_PORT_BASE;
	le_store(vs->config, guest_cid, VSOCK_CONFIG_SIZE);
	return vs;
}

void virtio_vsock_destroy(struct virtio_vsock *vs)
{
	if (!vs)
		return;
	pthread_mutex_lock(&vs->lock);
	vsock_close_all(vs);
	pthread_mutex_unlock(&vs->lock);
	pthread_mutex_destroy(&vs->lock);
	free(vs);
}
