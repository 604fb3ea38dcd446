/*
 * virtio-vsock's protocol (src/dev/virtio-vsock.c) driven by the simulated
 * driver of vsock_sim.h against a fake host side recorded below: handshakes
 * both ways, data both ways with credit accounting, half-close in each
 * direction, close, RST, device reset, the connection limit, the bounded
 * per-connection buffer against a host that stops reading, and each kind of
 * hostile packet (answered with RST or dropped, never a crash or a leak).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vsock_sim.h"

#define PEER_PORT 5555u   /* the guest's port in these tests */
#define HOST_PORT 1234u

/* ---- the fake host side ---- */

struct fconn {
	uint32_t port, id;
	bool in_use, closed, shut_wr, established;
	uint32_t local_port;
	unsigned want;
	size_t accept;           /* bytes send() still takes before EAGAIN */
	uint8_t *sent;           /* FCONN_SENT_MAX bytes, allocated on first use */
	size_t sent_len;
	const uint8_t *src;      /* what recv() returns, then EAGAIN or EOF */
	size_t src_len, src_off;
	bool src_eof;
	int recv_error;
};

#define MAX_FCONN (VSOCK_MAX_CONNS + 8)
/*
 * What one fake connection records of the guest's data. Allocated on the
 * first send: a fixed array per connection would make setup() clear a
 * gigabyte for every test (slow under MALLOC_PERTURB_, which meson sets).
 */
#define FCONN_SENT_MAX (1u << 20)
static struct fconn *fconns;
static bool refuse;
static bool defer;  /* connect() says the host end is not there yet */
static unsigned connects, closes, wakes;
static struct sim sim;
static const char *last_why; /* virtio_vsock_host_connect's reason for a refusal */
static struct fconn *last_fconn; /* the newest connect() */

static struct fconn *fconn_new(uint32_t port)
{
	for (unsigned i = 0; i < MAX_FCONN; i++) {
		struct fconn *f = &fconns[i];
		if (!f->in_use) {
			f->in_use = true;
			f->closed = f->shut_wr = f->established = f->src_eof = false;
			f->port = port;
			f->want = 0;
			f->accept = SIZE_MAX;
			f->sent_len = f->src_len = f->src_off = 0;
			f->src = NULL;
			f->recv_error = 0;
			return f;
		}
	}
	fail_msg("out of fake connections");
	return NULL;
}

static void *fb_connect(void *ctx, uint32_t port, uint32_t id, bool *later)
{
	(void)ctx;
	connects++;
	if (refuse)
		return NULL;
	*later = defer;
	struct fconn *f = fconn_new(port);
	f->id = id;
	last_fconn = f;
	return f;
}

static void fb_established(void *ctx, void *conn, uint32_t local_port)
{
	(void)ctx;
	struct fconn *f = conn;
	f->established = true;
	f->local_port = local_port;
}

static ssize_t fb_send(void *ctx, void *conn, const struct iovec *iov, unsigned n)
{
	(void)ctx;
	struct fconn *f = conn;
	assert_false(f->closed);
	assert_false(f->shut_wr);
	size_t done = 0;
	for (unsigned i = 0; i < n && f->accept > 0; i++) {
		size_t k = iov[i].iov_len < f->accept ? iov[i].iov_len : f->accept;
		assert_true(f->sent_len + k <= FCONN_SENT_MAX);
		if (!f->sent) {
			f->sent = malloc(FCONN_SENT_MAX);
			assert_non_null(f->sent);
		}
		memcpy(f->sent + f->sent_len, iov[i].iov_base, k);
		f->sent_len += k;
		f->accept -= k;
		done += k;
	}
	return done ? (ssize_t)done : -EAGAIN;
}

static ssize_t fb_recv(void *ctx, void *conn, const struct iovec *iov, unsigned n)
{
	(void)ctx;
	struct fconn *f = conn;
	if (f->recv_error)
		return -f->recv_error;
	size_t done = 0;
	for (unsigned i = 0; i < n && f->src_off < f->src_len; i++) {
		size_t k = f->src_len - f->src_off;
		if (k > iov[i].iov_len)
			k = iov[i].iov_len;
		memcpy(iov[i].iov_base, f->src + f->src_off, k);
		f->src_off += k;
		done += k;
	}
	if (done)
		return (ssize_t)done;
	return f->src_eof ? 0 : -EAGAIN;
}

static void fb_want(void *ctx, void *conn, unsigned want)
{
	(void)ctx;
	((struct fconn *)conn)->want = want;
}

static void fb_shutdown_write(void *ctx, void *conn)
{
	(void)ctx;
	((struct fconn *)conn)->shut_wr = true;
}

static void fb_close(void *ctx, void *conn)
{
	(void)ctx;
	struct fconn *f = conn;
	assert_false(f->closed);
	f->closed = true;
	f->in_use = false;
	closes++;
}

static void fb_wake(void *ctx, struct virtio_dev *vd)
{
	(void)ctx;
	assert_ptr_equal(vd, &sim.vd);
	wakes++;
	sim_wake(&sim);
}

static const struct vsock_backend fake_backend = {
	.connect = fb_connect, .established = fb_established, .send = fb_send, .recv = fb_recv,
	.want = fb_want, .shutdown_write = fb_shutdown_write, .close = fb_close, .wake = fb_wake,
};

/* ---- helpers ---- */

static int setup(void **state)
{
	(void)state;
	fconns = calloc(MAX_FCONN, sizeof(*fconns));
	refuse = defer = false;
	connects = closes = wakes = 0;
	last_fconn = NULL;
	return fconns && sim_init(&sim, &fake_backend) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	sim_fini(&sim);
	for (unsigned i = 0; i < MAX_FCONN; i++)
		free(fconns[i].sent);
	free(fconns);
	return 0;
}

static struct virtio_vsock_stats stats(void)
{
	struct virtio_vsock_stats st;
	virtio_vsock_get_stats(sim.vs, &st);
	return st;
}

/* The next packet to the guest, which must be there and well addressed. */
static struct sim_pkt rx(void)
{
	struct sim_pkt p;
	assert_true(sim_rx_next(&sim, &p));
	assert_true(p.used >= VSOCK_HDR_BYTES);
	assert_int_equal(p.used, VSOCK_HDR_BYTES + p.len);
	assert_int_equal(p.src_cid, VSOCK_CID_HOST);
	assert_int_equal(p.dst_cid, SIM_GUEST_CID);
	assert_int_equal(p.type, VSOCK_TYPE_STREAM);
	return p;
}

static void expect_rx_op(uint16_t op, uint32_t src_port, uint32_t dst_port)
{
	struct sim_pkt p = rx();
	assert_int_equal(p.op, op);
	assert_int_equal(p.src_port, src_port);
	assert_int_equal(p.dst_port, dst_port);
}

static void expect_no_rx(void)
{
	struct sim_pkt p;
	assert_false(sim_rx_next(&sim, &p));
}

/* A guest connection to HOST_PORT from `peer`, accepted by the fake host. */
static struct fconn *guest_connect(uint32_t peer, uint32_t buf_alloc)
{
	sim_rx_post(&sim, 1, 4096);
	sim_tx(&sim, peer, HOST_PORT, VSOCK_OP_REQUEST, 0, buf_alloc, 0, NULL, 0);
	struct sim_pkt p = rx();
	assert_int_equal(p.op, VSOCK_OP_RESPONSE);
	assert_int_equal(p.src_port, HOST_PORT);
	assert_int_equal(p.dst_port, peer);
	assert_int_equal(p.buf_alloc, VSOCK_CONN_BUF);
	assert_int_equal(p.fwd_cnt, 0);
	assert_non_null(last_fconn);
	assert_int_equal(last_fconn->port, HOST_PORT);
	return last_fconn;
}

static uint8_t pattern(size_t i)
{
	return (uint8_t)(i * 31 + (i >> 8));
}

/* ---- handshakes ---- */

static void test_guest_connect(void **state)
{
	(void)state;
	struct fconn *f = guest_connect(PEER_PORT, 65536);
	assert_int_equal(connects, 1);
	assert_int_equal(f->port, HOST_PORT);
	assert_int_equal(f->want, VSOCK_WANT_READ);
	assert_int_equal(stats().conns, 1);
}

static void test_guest_connect_refused(void **state)
{
	(void)state;
	refuse = true;
	sim_rx_post(&sim, 1, 4096);
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_REQUEST, 0, 65536, 0, NULL, 0);
	expect_rx_op(VSOCK_OP_RST, HOST_PORT, PEER_PORT);
	assert_int_equal(stats().conns, 0);
}

static void test_host_connect(void **state)
{
	(void)state;
	struct fconn *f = fconn_new(0);
	uint32_t id = virtio_vsock_host_connect(sim.vs, 7000, f, &last_why);
	assert_int_not_equal(id, 0);
	/* No rx buffer yet: the REQUEST waits. */
	expect_no_rx();
	sim_rx_post(&sim, 1, 4096);
	struct sim_pkt p = rx();
	assert_int_equal(p.op, VSOCK_OP_REQUEST);
	assert_int_equal(p.dst_port, 7000);
	assert_int_equal(p.src_port, VSOCK_LOCAL_PORT_BASE);
	assert_false(f->established);
	sim_tx(&sim, 7000, p.src_port, VSOCK_OP_RESPONSE, 0, 65536, 0, NULL, 0);
	assert_true(f->established);
	assert_int_equal(f->local_port, VSOCK_LOCAL_PORT_BASE);
	assert_int_equal(f->want, VSOCK_WANT_READ);
	/* A second one gets the next port. */
	struct fconn *g = fconn_new(0);
	assert_int_not_equal(virtio_vsock_host_connect(sim.vs, 7000, g, &last_why), 0);
	sim_rx_post(&sim, 1, 4096);
	assert_int_equal(rx().src_port, VSOCK_LOCAL_PORT_BASE + 1);
}

static void test_host_connect_guest_refuses(void **state)
{
	(void)state;
	struct fconn *f = fconn_new(0);
	assert_int_not_equal(virtio_vsock_host_connect(sim.vs, 7000, f, &last_why), 0);
	sim_rx_post(&sim, 1, 4096);
	struct sim_pkt p = rx();
	sim_tx(&sim, 7000, p.src_port, VSOCK_OP_RST, 0, 0, 0, NULL, 0);
	assert_true(f->closed);
	assert_false(f->established);
	assert_int_equal(stats().conns, 0);
	expect_no_rx(); /* no answer to a RST */
}

static void test_guest_connect_put_off(void **state)
{
	(void)state;
	defer = true;
	sim_rx_post(&sim, 4, 4096);
	/* The host end is not there yet: the guest hears nothing ... */
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_REQUEST, 0, 65536, 0, NULL, 0);
	struct fconn *f = last_fconn;
	expect_no_rx();
	/* ... until the host accepts: RESPONSE, and data flows. */
	virtio_vsock_host_accepted(sim.vs, f->id, true);
	expect_rx_op(VSOCK_OP_RESPONSE, HOST_PORT, PEER_PORT);
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_RW, 0, 65536, 0, "x", 1);
	assert_int_equal(f->sent_len, 1);
	/* One the host gives up on is reset. */
	sim_tx(&sim, PEER_PORT + 1, HOST_PORT, VSOCK_OP_REQUEST, 0, 65536, 0, NULL, 0);
	struct fconn *g = last_fconn;
	expect_no_rx();
	virtio_vsock_host_accepted(sim.vs, g->id, false);
	expect_rx_op(VSOCK_OP_RST, HOST_PORT, PEER_PORT + 1);
	assert_true(g->closed);
	/* Data before the RESPONSE is out of place: reset, and a late accept is ignored. */
	sim_tx(&sim, PEER_PORT + 2, HOST_PORT, VSOCK_OP_REQUEST, 0, 65536, 0, NULL, 0);
	struct fconn *h = last_fconn;
	uint32_t hid = h->id;
	sim_tx(&sim, PEER_PORT + 2, HOST_PORT, VSOCK_OP_RW, 0, 65536, 0, "x", 1);
	expect_rx_op(VSOCK_OP_RST, HOST_PORT, PEER_PORT + 2);
	assert_true(h->closed);
	virtio_vsock_host_accepted(sim.vs, hid, true);
	expect_no_rx();
	assert_int_equal(stats().conns, 1);
}

static void test_host_connect_without_driver(void **state)
{
	(void)state;
	sim_reset(&sim);
	struct fconn *f = fconn_new(0);
	assert_int_equal(virtio_vsock_host_connect(sim.vs, 7000, f, &last_why), 0);
}

/* ---- data and credit ---- */

static void test_guest_to_host_data(void **state)
{
	(void)state;
	struct fconn *f = guest_connect(PEER_PORT, 65536);
	static uint8_t buf[70000];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = pattern(i);
	sim_rx_post(&sim, 4, 4096);
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_RW, 0, 65536, 0, buf, 10000);
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_RW, 0, 65536, 0, buf + 10000, 60000);
	assert_int_equal(f->sent_len, 70000);
	assert_memory_equal(f->sent, buf, 70000);
	assert_int_equal(stats().buffered, 0);
	/* 70000 forwarded bytes, under half of buf_alloc: no update unasked. */
	expect_no_rx();
	/* A CREDIT_REQUEST is answered. */
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_CREDIT_REQUEST, 0, 65536, 0, NULL, 0);
	struct sim_pkt p = rx();
	assert_int_equal(p.op, VSOCK_OP_CREDIT_UPDATE);
	assert_int_equal(p.fwd_cnt, 70000);
	/* Half of buf_alloc forwarded since that answer: the guest is told. */
	for (uint32_t sent = 0; sent < VSOCK_CONN_BUF / 2; sent += 60000) {
		expect_no_rx();
		sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_RW, 0, 65536, 0, buf, 60000);
	}
	p = rx();
	assert_int_equal(p.op, VSOCK_OP_CREDIT_UPDATE);
	assert_int_equal(p.fwd_cnt, 70000 + 3 * 60000);
	_Static_assert(2 * 60000 < VSOCK_CONN_BUF / 2 && 3 * 60000 >= VSOCK_CONN_BUF / 2, "sizes");
	assert_int_equal(f->sent_len, 70000 + 3 * 60000);
}

/*
 * The tx queue's budget: on the I/O thread one turn serves at most
 * VIRTIO_QUEUE_BUDGET packets and asks for a later turn (the others on the
 * I/O thread go first); a vCPU serves its own kick whole.
 */
static void serve_tx(enum virtio_path path)
{
	pthread_mutex_lock(&sim.vd.lock);
	sim.vd.later = 0;
	virtio_vsock_ops.queue_notify(sim.vs, &sim.vd, VIRTIO_VSOCK_QUEUE_TX, path);
	pthread_mutex_unlock(&sim.vd.lock);
}

static void test_tx_budget(void **state)
{
	(void)state;
	struct fconn *f = guest_connect(PEER_PORT, 65536);
	enum { N = VIRTIO_QUEUE_BUDGET + 20 };
	uint8_t h[VSOCK_HDR_BYTES];
	sim_hdr(h, SIM_GUEST_CID, VSOCK_CID_HOST, PEER_PORT, HOST_PORT, 1, VSOCK_TYPE_STREAM,
		VSOCK_OP_RW, 0, 65536, 0);
	uint16_t *used = sim_used(&sim, VIRTIO_VSOCK_QUEUE_TX);
	uint16_t before = used[1];
	for (unsigned i = 0; i < N; i++)
		sim_tx_publish(&sim, h, sizeof(h), "b", 1);
	serve_tx(VIRTIO_ON_IO_THREAD);
	assert_int_equal((uint16_t)(used[1] - before), VIRTIO_QUEUE_BUDGET);
	assert_int_equal(sim.vd.later, 1u << VIRTIO_VSOCK_QUEUE_TX);
	serve_tx(VIRTIO_ON_IO_THREAD); /* the later turn */
	assert_int_equal((uint16_t)(used[1] - before), N);
	assert_int_equal(sim.vd.later, 0);
	assert_int_equal(f->sent_len, N);

	before = used[1];
	for (unsigned i = 0; i < N; i++)
		sim_tx_publish(&sim, h, sizeof(h), "v", 1);
	serve_tx(VIRTIO_ON_VCPU);
	assert_int_equal((uint16_t)(used[1] - before), N);
	assert_int_equal(sim.vd.later, 0);
	assert_int_equal(f->sent_len, 2 * N);
}

static void test_host_to_guest_data_and_credit(void **state)
{
	(void)state;
	struct fconn *f = guest_connect(PEER_PORT, 1000); /* the guest gives 1000 bytes */
	static uint8_t src[5000];
	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = pattern(i);
	f->src = src;
	f->src_len = sizeof(src);
	sim_rx_post(&sim, 8, 4096);
	virtio_vsock_host_ready(sim.vs, f->id, VSOCK_EV_READ);
	struct sim_pkt p = rx();
	assert_int_equal(p.op, VSOCK_OP_RW);
	assert_int_equal(p.len, 1000);
	assert_memory_equal(p.data, src, 1000);
	/* No credit left: nothing more, and the host socket is not read. */
	expect_no_rx();
	assert_int_equal(f->src_off, 1000);
	assert_int_equal(f->want, 0);
	/* The guest consumed 600: 600 more may come. */
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_CREDIT_UPDATE, 0, 1000, 600, NULL, 0);
	p = rx();
	assert_int_equal(p.op, VSOCK_OP_RW);
	assert_int_equal(p.len, 600);
	assert_memory_equal(p.data, src + 1000, 600);
	/* A bigger buffer, everything consumed: the rest, in rx-buffer-sized packets. */
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_CREDIT_UPDATE, 0, 1 << 20, 1600, NULL, 0);
	size_t off = 1600;
	while (off < sizeof(src)) {
		p = rx();
		assert_int_equal(p.op, VSOCK_OP_RW);
		assert_true(p.len <= 4096 - VSOCK_HDR_BYTES);
		assert_memory_equal(p.data, src + off, p.len);
		off += p.len;
	}
	assert_int_equal(off, sizeof(src));
	/* Drained: the device waits for the socket again. */
	expect_no_rx();
	assert_int_equal(f->want, VSOCK_WANT_READ);
}

static void test_guest_lies_about_fwd_cnt(void **state)
{
	(void)state;
	struct fconn *f = guest_connect(PEER_PORT, 1000);
	static const uint8_t src[100] = { 1 };
	f->src = src;
	f->src_len = sizeof(src);
	/* fwd_cnt ahead of what was ever sent: that is no credit at all. */
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_CREDIT_UPDATE, 0, 1000, 50, NULL, 0);
	sim_rx_post(&sim, 2, 4096);
	virtio_vsock_host_ready(sim.vs, f->id, VSOCK_EV_READ);
	expect_no_rx();
	assert_int_equal(f->src_off, 0);
}

static void test_slow_host_reader_is_bounded(void **state)
{
	(void)state;
	struct fconn *f = guest_connect(PEER_PORT, 65536);
	f->accept = 1000; /* the host reader takes 1000 bytes, then stops */
	static uint8_t buf[VSOCK_CONN_BUF + 4096];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = pattern(i);
	/* The guest fills exactly the credit it has: 1000 sent, 64 KiB buffered. */
	uint32_t sent = 0, chunk = 16384;
	while (sent < VSOCK_CONN_BUF + 1000) {
		uint32_t k = VSOCK_CONN_BUF + 1000 - sent < chunk ? VSOCK_CONN_BUF + 1000 - sent : chunk;
		sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_RW, 0, 65536, 0, buf + sent, k);
		sent += k;
	}
	assert_int_equal(f->sent_len, 1000);
	assert_int_equal(stats().buffered, VSOCK_CONN_BUF);
	assert_int_equal(f->want, VSOCK_WANT_READ | VSOCK_WANT_WRITE);
	/* The reader wakes up: everything arrives in order, the guest hears of it. */
	f->accept = SIZE_MAX;
	sim_rx_post(&sim, 2, 4096);
	virtio_vsock_host_ready(sim.vs, f->id, VSOCK_EV_WRITE);
	assert_int_equal(f->sent_len, VSOCK_CONN_BUF + 1000);
	assert_memory_equal(f->sent, buf, VSOCK_CONN_BUF + 1000);
	assert_int_equal(stats().buffered, 0);
	assert_int_equal(stats().buffered_peak, VSOCK_CONN_BUF);
	struct sim_pkt p = rx();
	assert_int_equal(p.op, VSOCK_OP_CREDIT_UPDATE);
	assert_int_equal(p.fwd_cnt, VSOCK_CONN_BUF + 1000);
	assert_int_equal(f->want, VSOCK_WANT_READ);
}

static void test_buffer_grows_with_need(void **state)
{
	(void)state;
	struct fconn *f = guest_connect(PEER_PORT, 65536);
	static uint8_t buf[VSOCK_CONN_BUF + 1000];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = pattern(i);
	/* The host takes everything: nothing is held (it was 256 KiB). */
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_RW, 0, 65536, 0, buf, 1000);
	assert_int_equal(f->sent_len, 1000);
	assert_int_equal(stats().buffer_bytes, 0);
	/* The host stops reading: the ring holds what waits, in powers of two. */
	f->accept = 0;
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_RW, 0, 65536, 0, buf + 1000, 100);
	assert_int_equal(stats().buffer_bytes, VSOCK_BUF_MIN);
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_RW, 0, 65536, 0, buf + 1100, 5000);
	assert_int_equal(stats().buffer_bytes, 2 * VSOCK_BUF_MIN);
	uint32_t sent = 6100;
	while (sent < sizeof(buf)) {
		uint32_t k = sizeof(buf) - sent < 60000 ? (uint32_t)(sizeof(buf) - sent) : 60000;
		sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_RW, 0, 65536, 0, buf + sent, k);
		sent += k;
	}
	assert_int_equal(stats().buffered, VSOCK_CONN_BUF);
	assert_int_equal(stats().buffer_bytes, VSOCK_CONN_BUF);
	assert_false(f->closed);
	/* The reader is back: every byte in order, and the ring is gone. */
	f->accept = SIZE_MAX;
	sim_rx_post(&sim, 2, 4096);
	virtio_vsock_host_ready(sim.vs, f->id, VSOCK_EV_WRITE);
	assert_int_equal(f->sent_len, sizeof(buf));
	assert_memory_equal(f->sent, buf, sizeof(buf));
	assert_int_equal(stats().buffer_bytes, 0);
}

static void test_vm_buffer_bound(void **state)
{
	(void)state;
	/* Stalled host readers, each guest connection sending its full credit. */
	enum { FIT = VSOCK_BUFFER_MAX / VSOCK_CONN_BUF, OVER = 8 };
	static uint8_t buf[65536];
	unsigned rsts = 0;
	for (uint32_t i = 0; i < FIT + OVER; i++) {
		struct fconn *f = guest_connect(20000 + i, 65536);
		f->accept = 0;
		for (uint32_t k = 0; k < VSOCK_CONN_BUF / sizeof(buf) && !f->closed; k++)
			sim_tx(&sim, 20000 + i, HOST_PORT, VSOCK_OP_RW, 0, 65536, 0, buf, sizeof(buf));
		if (f->closed) {
			sim_rx_post(&sim, 1, 4096);
			struct sim_pkt p = rx();
			assert_int_equal(p.op, VSOCK_OP_RST);
			assert_int_equal(p.dst_port, 20000 + i);
			rsts++;
		}
	}
	/* The VM holds VSOCK_BUFFER_MAX, not (FIT + OVER) * 256 KiB; the rest were reset. */
	struct virtio_vsock_stats st = stats();
	assert_int_equal(st.buffered, VSOCK_BUFFER_MAX);
	assert_int_equal(st.buffer_bytes, VSOCK_BUFFER_MAX);
	assert_int_equal(st.conns, FIT);
	assert_int_equal(closes, OVER);
	assert_int_equal(rsts, OVER);
}

static void test_credit_overrun_is_reset(void **state)
{
	(void)state;
	struct fconn *f = guest_connect(PEER_PORT, 65536);
	f->accept = 0;
	static uint8_t buf[60000];
	_Static_assert(4 * 60000 <= VSOCK_CONN_BUF && 5 * 60000 > VSOCK_CONN_BUF, "sizes");
	sim_rx_post(&sim, 2, 4096);
	for (int i = 0; i < 4; i++)
		sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_RW, 0, 65536, 0, buf, 60000);
	expect_no_rx();
	assert_int_equal(stats().buffered, 240000);
	/* 300000 bytes outstanding is more than the buf_alloc it was given. */
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_RW, 0, 65536, 0, buf, 60000);
	expect_rx_op(VSOCK_OP_RST, HOST_PORT, PEER_PORT);
	assert_true(f->closed);
	assert_int_equal(stats().buffered, 0);
	assert_int_equal(stats().conns, 0);
}

/* ---- shutdown, close, reset ---- */

static void test_guest_half_close(void **state)
{
	(void)state;
	struct fconn *f = guest_connect(PEER_PORT, 65536);
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_SEND, 65536, 0, NULL, 0);
	assert_true(f->shut_wr);
	assert_false(f->closed);
	/* The host still talks to the guest. */
	static const uint8_t msg[] = "reply after the guest's EOF";
	f->src = msg;
	f->src_len = sizeof(msg);
	f->src_eof = true;
	sim_rx_post(&sim, 4, 4096);
	virtio_vsock_host_ready(sim.vs, f->id, VSOCK_EV_READ);
	struct sim_pkt p = rx();
	assert_int_equal(p.op, VSOCK_OP_RW);
	assert_memory_equal(p.data, msg, sizeof(msg));
	/* Then the host's EOF ends it: both directions are done. */
	expect_rx_op(VSOCK_OP_RST, HOST_PORT, PEER_PORT);
	assert_true(f->closed);
	assert_int_equal(stats().conns, 0);
}

static void test_host_half_close(void **state)
{
	(void)state;
	struct fconn *f = guest_connect(PEER_PORT, 65536);
	f->src_eof = true; /* the host program shut its write side */
	sim_rx_post(&sim, 4, 4096);
	virtio_vsock_host_ready(sim.vs, f->id, VSOCK_EV_READ | VSOCK_EV_HUP);
	struct sim_pkt p = rx();
	assert_int_equal(p.op, VSOCK_OP_SHUTDOWN);
	assert_int_equal(p.flags, VSOCK_SHUTDOWN_SEND);
	/* The guest still sends. */
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_RW, 0, 65536, 0, "late", 4);
	assert_int_equal(f->sent_len, 4);
	assert_false(f->closed);
	/* Its own SHUTDOWN then closes the connection. */
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_SEND, 65536, 0, NULL, 0);
	expect_rx_op(VSOCK_OP_RST, HOST_PORT, PEER_PORT);
	assert_true(f->closed);
}

static void test_guest_close_drains_buffer(void **state)
{
	(void)state;
	struct fconn *f = guest_connect(PEER_PORT, 65536);
	f->accept = 10;
	static uint8_t buf[3000];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = pattern(i);
	sim_rx_post(&sim, 4, 4096);
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_RW, 0, 65536, 0, buf, sizeof(buf));
	/* close() in the guest: SHUTDOWN both ways. The guest is answered at once... */
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_SHUTDOWN,
	       VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RCV, 65536, 0, NULL, 0);
	expect_rx_op(VSOCK_OP_RST, HOST_PORT, PEER_PORT);
	/* ...but the host gets every byte before its EOF. */
	assert_false(f->closed);
	assert_int_equal(f->want, VSOCK_WANT_WRITE);
	f->accept = SIZE_MAX;
	virtio_vsock_host_ready(sim.vs, f->id, VSOCK_EV_WRITE);
	assert_int_equal(f->sent_len, sizeof(buf));
	assert_memory_equal(f->sent, buf, sizeof(buf));
	assert_true(f->closed);
	assert_int_equal(stats().conns, 0);
	expect_no_rx();
	/* The guest may reuse its port at once. */
	guest_connect(PEER_PORT, 65536);
}

/*
 * Both sides half-close while the host has not taken all of the guest's
 * bytes: the guest's SHUTDOWN(SEND) first, the host's EOF second. Nothing
 * is left to do but hand the host those bytes, so the guest gets RST at
 * once (as when the order is reversed), not a SHUTDOWN that leaves the
 * connection, its descriptor and its slot open until the guest resets it.
 */
static void test_both_half_closed_with_bytes_buffered(void **state)
{
	(void)state;
	struct fconn *f = guest_connect(PEER_PORT, 65536);
	f->accept = 10;
	static uint8_t buf[3000];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = pattern(i);
	sim_rx_post(&sim, 4, 4096);
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_RW, 0, 65536, 0, buf, sizeof(buf));
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_SEND, 65536, 0, NULL, 0);
	assert_false(f->shut_wr); /* the host's EOF waits behind the bytes */
	expect_no_rx();
	/* The host program shuts its write side too. */
	f->src_eof = true;
	virtio_vsock_host_ready(sim.vs, f->id, VSOCK_EV_READ);
	expect_rx_op(VSOCK_OP_RST, HOST_PORT, PEER_PORT);
	expect_no_rx();
	assert_false(f->closed);
	assert_int_equal(f->want, VSOCK_WANT_WRITE);
	/* The host still gets every byte, then the connection is gone. */
	f->accept = SIZE_MAX;
	virtio_vsock_host_ready(sim.vs, f->id, VSOCK_EV_WRITE);
	assert_int_equal(f->sent_len, sizeof(buf));
	assert_memory_equal(f->sent, buf, sizeof(buf));
	assert_true(f->closed);
	assert_int_equal(stats().conns, 0);
	assert_int_equal(stats().buffer_bytes, 0);
	/* The guest may reuse its port at once. */
	guest_connect(PEER_PORT, 65536);
}

static void test_guest_rst(void **state)
{
	(void)state;
	struct fconn *f = guest_connect(PEER_PORT, 65536);
	sim_rx_post(&sim, 1, 4096);
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_RST, 0, 0, 0, NULL, 0);
	assert_true(f->closed);
	expect_no_rx();
	assert_int_equal(stats().conns, 0);
}

static void test_host_error_resets(void **state)
{
	(void)state;
	struct fconn *f = guest_connect(PEER_PORT, 65536);
	f->recv_error = ECONNRESET;
	sim_rx_post(&sim, 2, 4096);
	virtio_vsock_host_ready(sim.vs, f->id, VSOCK_EV_READ);
	expect_rx_op(VSOCK_OP_RST, HOST_PORT, PEER_PORT);
	assert_true(f->closed);
}

static void test_reset_closes_everything(void **state)
{
	(void)state;
	struct fconn *a = guest_connect(PEER_PORT, 65536);
	struct fconn *b = guest_connect(PEER_PORT + 1, 65536);
	struct fconn *h = fconn_new(0);
	uint32_t hid = virtio_vsock_host_connect(sim.vs, 9, h, &last_why);
	b->accept = 0;
	sim_tx(&sim, PEER_PORT + 1, HOST_PORT, VSOCK_OP_RW, 0, 65536, 0, "buffered", 8);
	assert_int_equal(stats().buffered, 8);
	sim_reset(&sim);
	assert_true(a->closed);
	assert_true(b->closed);
	assert_true(h->closed);
	assert_int_equal(closes, 3);
	struct virtio_vsock_stats st = stats();
	assert_int_equal(st.conns, 0);
	assert_int_equal(st.buffered, 0);
	/* Events for the old connections are ignored; a new driver starts clean. */
	virtio_vsock_host_ready(sim.vs, hid, VSOCK_EV_READ | VSOCK_EV_WRITE);
	sim_start(&sim, virtio_vsock_ops.features(sim.vs));
	guest_connect(PEER_PORT, 65536);
	assert_int_equal(stats().conns, 1);
}

static void test_connection_limit(void **state)
{
	(void)state;
	sim_rx_post(&sim, 200, 256);
	for (uint32_t i = 0; i < VSOCK_MAX_CONNS; i++) {
		sim_tx(&sim, 10000 + i, HOST_PORT, VSOCK_OP_REQUEST, 0, 65536, 0, NULL, 0);
		struct sim_pkt p;
		assert_true(sim_rx_next(&sim, &p));
		assert_int_equal(p.op, VSOCK_OP_RESPONSE);
		assert_int_equal(p.dst_port, 10000 + i);
		if (sim_rx_outstanding(&sim) < 8)
			sim_rx_post(&sim, 200, 256);
	}
	assert_int_equal(stats().conns, VSOCK_MAX_CONNS);
	sim_tx(&sim, 99, HOST_PORT, VSOCK_OP_REQUEST, 0, 65536, 0, NULL, 0);
	expect_rx_op(VSOCK_OP_RST, HOST_PORT, 99);
	assert_int_equal(connects, VSOCK_MAX_CONNS);
	/* The host cannot open one either. */
	struct fconn *f = fconn_new(0);
	assert_int_equal(virtio_vsock_host_connect(sim.vs, 7, f, &last_why), 0);
	/* Every connection still moves data. */
	sim_tx(&sim, 10000 + VSOCK_MAX_CONNS - 1, HOST_PORT, VSOCK_OP_RW, 0, 65536, 0, "x", 1);
	unsigned got = 0;
	for (unsigned i = 0; i < MAX_FCONN; i++)
		got += fconns[i].in_use && fconns[i].sent_len == 1;
	assert_int_equal(got, 1);
}

/* ---- hostile packets ---- */

/* A raw tx packet; `len` is what the header claims, `data_len` what follows. */
static void tx_raw(uint64_t src_cid, uint64_t dst_cid, uint32_t src_port, uint16_t type,
		   uint16_t op, uint32_t len, uint32_t data_len)
{
	uint8_t h[VSOCK_HDR_BYTES];
	static const uint8_t data[256];
	sim_hdr(h, src_cid, dst_cid, src_port, HOST_PORT, len, type, op, 0, 65536, 0);
	sim_tx_publish(&sim, h, sizeof(h), data, data_len);
	sim_kick(&sim, VIRTIO_VSOCK_QUEUE_TX);
}

static void test_hostile_short_header(void **state)
{
	(void)state;
	sim_rx_post(&sim, 2, 4096);
	uint8_t h[VSOCK_HDR_BYTES];
	sim_hdr(h, SIM_GUEST_CID, VSOCK_CID_HOST, PEER_PORT, HOST_PORT, 0, 1, VSOCK_OP_REQUEST, 0, 0, 0);
	sim_tx_publish(&sim, h, VSOCK_HDR_BYTES - 1, NULL, 0);
	sim_kick(&sim, VIRTIO_VSOCK_QUEUE_TX);
	expect_no_rx();
	assert_int_equal(connects, 0);
	/* The chain is still completed, so the driver gets it back. */
	assert_int_equal(sim_used(&sim, VIRTIO_VSOCK_QUEUE_TX)[1], 1);
	assert_int_equal(sim.vd.needs_reset, 0);
}

static void test_hostile_wrong_cids_dropped(void **state)
{
	(void)state;
	sim_rx_post(&sim, 4, 4096);
	tx_raw(SIM_GUEST_CID + 1, VSOCK_CID_HOST, PEER_PORT, 1, VSOCK_OP_REQUEST, 0, 0);
	tx_raw(SIM_GUEST_CID, 3, PEER_PORT, 1, VSOCK_OP_REQUEST, 0, 0);
	tx_raw(SIM_GUEST_CID | (1ull << 32), VSOCK_CID_HOST, PEER_PORT, 1, VSOCK_OP_REQUEST, 0, 0);
	tx_raw(SIM_GUEST_CID, VSOCK_CID_HOST | (1ull << 40), PEER_PORT, 1, VSOCK_OP_REQUEST, 0, 0);
	expect_no_rx();
	assert_int_equal(connects, 0);
	assert_int_equal(sim_used(&sim, VIRTIO_VSOCK_QUEUE_TX)[1], 4);
}

static void test_hostile_answered_with_rst(void **state)
{
	(void)state;
	sim_rx_post(&sim, 16, 4096);
	/* len beyond the payload that follows. */
	tx_raw(SIM_GUEST_CID, VSOCK_CID_HOST, 1, 1, VSOCK_OP_REQUEST, 100, 10);
	expect_rx_op(VSOCK_OP_RST, HOST_PORT, 1);
	tx_raw(SIM_GUEST_CID, VSOCK_CID_HOST, 2, 1, VSOCK_OP_RW, UINT32_MAX, 10);
	expect_rx_op(VSOCK_OP_RST, HOST_PORT, 2);
	/* Unknown ops, INVALID, and a seqpacket (not offered). */
	tx_raw(SIM_GUEST_CID, VSOCK_CID_HOST, 3, 1, 8, 0, 0);
	expect_rx_op(VSOCK_OP_RST, HOST_PORT, 3);
	tx_raw(SIM_GUEST_CID, VSOCK_CID_HOST, 4, 1, 0xffff, 0, 0);
	expect_rx_op(VSOCK_OP_RST, HOST_PORT, 4);
	tx_raw(SIM_GUEST_CID, VSOCK_CID_HOST, 5, 1, VSOCK_OP_INVALID, 0, 0);
	expect_rx_op(VSOCK_OP_RST, HOST_PORT, 5);
	tx_raw(SIM_GUEST_CID, VSOCK_CID_HOST, 6, 2, VSOCK_OP_REQUEST, 0, 0);
	expect_rx_op(VSOCK_OP_RST, HOST_PORT, 6);
	/* Packets for connections that do not exist. */
	const uint16_t ops[] = { VSOCK_OP_RESPONSE, VSOCK_OP_SHUTDOWN, VSOCK_OP_RW,
				 VSOCK_OP_CREDIT_UPDATE, VSOCK_OP_CREDIT_REQUEST };
	for (unsigned i = 0; i < ARRAY_SIZE(ops); i++) {
		tx_raw(SIM_GUEST_CID, VSOCK_CID_HOST, 100 + i, 1, ops[i], 0, 0);
		expect_rx_op(VSOCK_OP_RST, HOST_PORT, 100 + i);
	}
	/* A RST for nothing is not answered. */
	tx_raw(SIM_GUEST_CID, VSOCK_CID_HOST, 200, 1, VSOCK_OP_RST, 0, 0);
	expect_no_rx();
	assert_int_equal(connects, 0);
	assert_int_equal(sim.vd.needs_reset, 0);
}

static void test_hostile_on_live_connection(void **state)
{
	(void)state;
	/* Each kind resets the connection it names and closes the host side. */
	const struct { uint16_t op; uint32_t len; } bad[] = {
		{ VSOCK_OP_RESPONSE, 0 },      /* it is already established */
		{ VSOCK_OP_REQUEST, 0 },       /* a second REQUEST for the same ports */
		{ VSOCK_OP_SHUTDOWN, 4 },      /* control packets carry no payload */
		{ 9, 0 },                      /* unknown op */
	};
	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		struct fconn *f = guest_connect(PEER_PORT, 65536);
		sim_rx_post(&sim, 2, 4096);
		tx_raw(SIM_GUEST_CID, VSOCK_CID_HOST, PEER_PORT, 1, bad[i].op, bad[i].len, bad[i].len);
		expect_rx_op(VSOCK_OP_RST, HOST_PORT, PEER_PORT);
		assert_true(f->closed);
		assert_int_equal(stats().conns, 0);
		expect_no_rx();
	}
	/* Data after the guest's own SHUTDOWN(SEND). */
	struct fconn *f = guest_connect(PEER_PORT, 65536);
	sim_rx_post(&sim, 2, 4096);
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_SEND, 65536, 0, NULL, 0);
	sim_tx(&sim, PEER_PORT, HOST_PORT, VSOCK_OP_RW, 0, 65536, 0, "x", 1);
	expect_rx_op(VSOCK_OP_RST, HOST_PORT, PEER_PORT);
	assert_true(f->closed);
	assert_int_equal(f->sent_len, 0);
}

static void test_hostile_response_before_request_sent(void **state)
{
	(void)state;
	struct fconn *f = fconn_new(0);
	assert_int_not_equal(virtio_vsock_host_connect(sim.vs, 7000, f, &last_why), 0);
	/* The guest guesses the port and answers a REQUEST it never received. */
	sim_tx(&sim, 7000, VSOCK_LOCAL_PORT_BASE, VSOCK_OP_RESPONSE, 0, 65536, 0, NULL, 0);
	assert_false(f->established);
	assert_true(f->closed);
	sim_rx_post(&sim, 2, 4096);
	expect_rx_op(VSOCK_OP_RST, VSOCK_LOCAL_PORT_BASE, 7000);
	expect_no_rx();
}

static void test_rst_backlog_is_bounded(void **state)
{
	(void)state;
	/* No rx buffers: the answers queue, up to the backlog, then are dropped. */
	for (uint32_t i = 0; i < VSOCK_RST_BACKLOG + 100; i++) {
		tx_raw(SIM_GUEST_CID, VSOCK_CID_HOST, i, 1, VSOCK_OP_RW, 0, 0);
	}
	assert_int_equal(stats().rst_queued, VSOCK_RST_BACKLOG);
	sim_rx_post(&sim, 200, 64);
	sim_rx_post(&sim, 56, 64);
	unsigned n = 0;
	struct sim_pkt p;
	while (sim_rx_next(&sim, &p)) {
		assert_int_equal(p.op, VSOCK_OP_RST);
		assert_int_equal(p.dst_port, n);
		n++;
	}
	assert_int_equal(n, VSOCK_RST_BACKLOG);
	assert_int_equal(stats().rst_queued, 0);
}

static void test_small_rx_buffer_returned(void **state)
{
	(void)state;
	sim_rx_post(&sim, 1, VSOCK_HDR_BYTES - 1);
	sim_rx_post(&sim, 1, 4096);
	tx_raw(SIM_GUEST_CID, VSOCK_CID_HOST, 1, 1, VSOCK_OP_RW, 0, 0);
	struct sim_pkt p;
	assert_true(sim_rx_next(&sim, &p));
	assert_int_equal(p.used, 0);
	expect_rx_op(VSOCK_OP_RST, HOST_PORT, 1);
	assert_int_equal(sim.vd.needs_reset, 0);
}

static void test_config_and_cid(void **state)
{
	(void)state;
	uint8_t cfg[8];
	virtio_vsock_ops.config_read(sim.vs, 0, cfg, 8);
	assert_int_equal(le_load(cfg, 8), SIM_GUEST_CID);
	virtio_vsock_ops.config_read(sim.vs, 4, cfg, 4);
	assert_int_equal(le_load(cfg, 4), 0);
	const uint8_t junk[8] = { 9, 9, 9, 9, 9, 9, 9, 9 };
	virtio_vsock_ops.config_write(sim.vs, 0, junk, 8);
	virtio_vsock_ops.config_read(sim.vs, 0, cfg, 8);
	assert_int_equal(le_load(cfg, 8), SIM_GUEST_CID);
	assert_null(virtio_vsock_create(2, &fake_backend));
	assert_null(virtio_vsock_create(0xffffffffu, &fake_backend));
	assert_null(virtio_vsock_create(1ull << 32, &fake_backend));
	struct virtio_vsock *ok = virtio_vsock_create(3, &fake_backend);
	assert_non_null(ok);
	virtio_vsock_destroy(ok);
}

static void test_broken_queue_needs_reset(void **state)
{
	(void)state;
	/* A descriptor index outside the table breaks only this device. */
	uint16_t *avail = sim_avail(&sim, VIRTIO_VSOCK_QUEUE_TX);
	avail[2 + avail[1] % SIM_QSIZE] = SIM_QSIZE + 5;
	avail[1]++;
	sim_kick(&sim, VIRTIO_VSOCK_QUEUE_TX);
	assert_int_equal(sim.vd.needs_reset, 1);
}

static void test_fair_between_connections(void **state)
{
	(void)state;
	struct fconn *a = guest_connect(PEER_PORT, 1 << 20);
	struct fconn *b = guest_connect(PEER_PORT + 1, 1 << 20);
	static uint8_t big[100000];
	a->src = big;
	a->src_len = sizeof(big);
	b->src = big;
	b->src_len = sizeof(big);
	virtio_vsock_host_ready(sim.vs, a->id, VSOCK_EV_READ);
	virtio_vsock_host_ready(sim.vs, b->id, VSOCK_EV_READ);
	sim_rx_post(&sim, 10, 4096);
	unsigned to_a = 0, to_b = 0;
	struct sim_pkt p;
	while (sim_rx_next(&sim, &p)) {
		to_a += p.dst_port == PEER_PORT;
		to_b += p.dst_port == PEER_PORT + 1;
	}
	assert_int_equal(to_a, 5);
	assert_int_equal(to_b, 5);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_guest_connect),
		T(test_guest_connect_refused),
		T(test_host_connect),
		T(test_host_connect_guest_refuses),
		T(test_guest_connect_put_off),
		T(test_host_connect_without_driver),
		T(test_guest_to_host_data),
		T(test_tx_budget),
		T(test_host_to_guest_data_and_credit),
		T(test_guest_lies_about_fwd_cnt),
		T(test_slow_host_reader_is_bounded),
		T(test_buffer_grows_with_need),
		T(test_vm_buffer_bound),
		T(test_credit_overrun_is_reset),
		T(test_guest_half_close),
		T(test_host_half_close),
		T(test_guest_close_drains_buffer),
		T(test_both_half_closed_with_bytes_buffered),
		T(test_guest_rst),
		T(test_host_error_resets),
		T(test_reset_closes_everything),
		T(test_connection_limit),
		T(test_hostile_short_header),
		T(test_hostile_wrong_cids_dropped),
		T(test_hostile_answered_with_rst),
		T(test_hostile_on_live_connection),
		T(test_hostile_response_before_request_sent),
		T(test_rst_backlog_is_bounded),
		T(test_small_rx_buffer_returned),
		T(test_config_and_cid),
		T(test_broken_queue_needs_reset),
		T(test_fair_between_connections),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
