/*
 * libFuzzer target: virtio-vsock's packet handling (src/dev/virtio-vsock.c)
 * through the real virtqueue code, driven by the simulated driver of
 * tests/unit/vsock_sim.h against a fake host whose behaviour the input
 * also chooses (refuses, stalls, hits EOF or an error).
 *
 * The input is a list of operations, each an opcode byte and its operands:
 *   0  tx packet: flags byte (bit 0: force the right CIDs, bit 1: ports
 *      modulo 4 so packets meet connections), 44 header bytes, a length
 *      byte and that many payload bytes
 *   1  post rx buffers: count byte, size (2 bytes)
 *   2  host readiness: connection index byte, events byte
 *   3  host connect: port (2 bytes)
 *   4  driver reset and restart
 *   5  host behaviour: refuse byte, accept (2 bytes), recv mode byte
 * After each input: at most VSOCK_MAX_CONNS connections, and at most
 * VSOCK_CONN_BUF buffered per connection; ASan checks every access.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/vsock_sim.h"
#include "base/log.h"

#define MAX_HOST 64

struct fhost {
	bool live;
	uint32_t id;
};

static struct sim sim;
static struct fhost hosts[MAX_HOST];
static bool refuse;
static size_t accept_budget;
static uint8_t recv_mode; /* 0 data, 1 EAGAIN, 2 EOF, 3 error */

static struct fhost *fhost_new(void)
{
	for (unsigned i = 0; i < MAX_HOST; i++)
		if (!hosts[i].live) {
			hosts[i] = (struct fhost){ .live = true };
			return &hosts[i];
		}
	return NULL;
}

static void *fb_connect(void *ctx, uint32_t port, uint32_t id, bool *later)
{
	(void)ctx, (void)port, (void)later;
	struct fhost *f = refuse ? NULL : fhost_new();
	if (f)
		f->id = id;
	return f;
}

static void fb_established(void *ctx, void *conn, uint32_t local_port)
{
	(void)ctx, (void)conn, (void)local_port;
}

static ssize_t fb_send(void *ctx, void *conn, const struct iovec *iov, unsigned n)
{
	(void)ctx;
	if (!((struct fhost *)conn)->live)
		abort();
	size_t total = 0;
	for (unsigned i = 0; i < n; i++) {
		volatile const uint8_t *p = iov[i].iov_base; /* touch it for ASan */
		if (iov[i].iov_len)
			(void)p[iov[i].iov_len - 1];
		total += iov[i].iov_len;
	}
	if (accept_budget == 0)
		return -EAGAIN;
	size_t k = total < accept_budget ? total : accept_budget;
	accept_budget -= k;
	return (ssize_t)k;
}

static ssize_t fb_recv(void *ctx, void *conn, const struct iovec *iov, unsigned n)
{
	(void)ctx;
	if (!((struct fhost *)conn)->live)
		abort();
	switch (recv_mode % 4) {
	case 0:
		for (unsigned i = 0; i < n; i++)
			memset(iov[i].iov_base, 0x5a, iov[i].iov_len);
		return n ? (ssize_t)iov[0].iov_len : -EAGAIN;
	case 1:
		return -EAGAIN;
	case 2:
		return 0;
	default:
		return -ECONNRESET;
	}
}

static void fb_want(void *ctx, void *conn, unsigned want)
{
	(void)ctx, (void)want;
	if (!((struct fhost *)conn)->live)
		abort();
}

static void fb_shutdown_write(void *ctx, void *conn)
{
	(void)ctx;
	if (!((struct fhost *)conn)->live)
		abort();
}

static void fb_close(void *ctx, void *conn)
{
	(void)ctx;
	struct fhost *f = conn;
	if (!f->live)
		abort(); /* closed twice */
	f->live = false;
}

static void fb_wake(void *ctx, struct virtio_dev *vd)
{
	(void)ctx;
	virtio_pci_kick(vd, VIRTIO_VSOCK_QUEUE_RX);
}

static const struct vsock_backend backend = {
	.connect = fb_connect, .established = fb_established, .send = fb_send, .recv = fb_recv,
	.want = fb_want, .shutdown_write = fb_shutdown_write, .close = fb_close, .wake = fb_wake,
};

static void op_tx(const uint8_t **p, const uint8_t *end)
{
	if (end - *p < 2 + (long)VSOCK_HDR_BYTES)
		return;
	uint8_t flags = *(*p)++;
	uint8_t h[VSOCK_HDR_BYTES];
	memcpy(h, *p, sizeof(h));
	*p += sizeof(h);
	uint8_t len = *(*p)++;
	if (end - *p < len)
		len = (uint8_t)(end - *p);
	if (flags & 1) {
		le_store(h + VSOCK_HDR_SRC_CID, SIM_GUEST_CID, 8);
		le_store(h + VSOCK_HDR_DST_CID, VSOCK_CID_HOST, 8);
	}
	if (flags & 2) {
		le_store(h + VSOCK_HDR_SRC_PORT, le_load(h + VSOCK_HDR_SRC_PORT, 4) % 4, 4);
		le_store(h + VSOCK_HDR_DST_PORT, le_load(h + VSOCK_HDR_DST_PORT, 4) % 4, 4);
	}
	sim_tx_publish(&sim, h, (flags & 4) ? (uint32_t)(flags >> 3) : VSOCK_HDR_BYTES, *p, len);
	*p += len;
	sim_kick(&sim, VIRTIO_VSOCK_QUEUE_TX);
}

static void op_rx_post(const uint8_t **p, const uint8_t *end)
{
	if (end - *p < 3)
		return;
	unsigned count = (*p)[0] % 32;
	uint32_t size = (uint32_t)le_load(*p + 1, 2);
	*p += 3;
	/* Never more outstanding than the ring holds: the driver's own rule. */
	unsigned room = SIM_QSIZE - sim_rx_outstanding(&sim);
	sim_rx_post(&sim, count < room ? count : room, size % SIM_RX_STRIDE);
	struct sim_pkt pkt;
	while (sim_rx_next(&sim, &pkt))
		;
}

static void run(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	while (p < end) {
		uint8_t op = *p++;
		switch (op % 6) {
		case 0:
			op_tx(&p, end);
			break;
		case 1:
			op_rx_post(&p, end);
			break;
		case 2:
			if (end - p >= 2) {
				struct fhost *f = &hosts[p[0] % MAX_HOST];
				virtio_vsock_host_ready(sim.vs, f->live ? f->id : p[0], p[1] & 7);
				p += 2;
			}
			break;
		case 3:
			if (end - p >= 2) {
				struct fhost *f = fhost_new();
				const char *why;
				uint32_t id = f ? virtio_vsock_host_connect(sim.vs, (uint32_t)le_load(p, 2), f, &why) : 0;
				if (f && !id)
					f->live = false;
				else if (f)
					f->id = id;
				p += 2;
			}
			break;
		case 4:
			sim_reset(&sim);
			sim_start(&sim, virtio_vsock_ops.features(sim.vs));
			break;
		case 5:
			if (end - p >= 4) {
				refuse = p[0] & 1;
				accept_budget = (size_t)le_load(p + 1, 2) * 16;
				recv_mode = p[3];
				p += 4;
			}
			break;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		log_init("fuzz", LOG_LEVEL_ERROR);
		if (!sim_init(&sim, &backend))
			abort();
		ready = true;
	}
	refuse = false;
	accept_budget = SIZE_MAX;
	recv_mode = 0;
	sim_reset(&sim);
	sim_start(&sim, virtio_vsock_ops.features(sim.vs));
	memset(&sim.vd.needs_reset, 0, sizeof(sim.vd.needs_reset));
	run(data, size);
	struct virtio_vsock_stats st;
	virtio_vsock_get_stats(sim.vs, &st);
	if (st.conns > VSOCK_MAX_CONNS || st.buffered > (uint64_t)st.conns * VSOCK_CONN_BUF ||
	    st.rst_queued > VSOCK_RST_BACKLOG)
		abort();
	sim_reset(&sim);
	for (unsigned i = 0; i < MAX_HOST; i++)
		if (hosts[i].live)
			abort(); /* a reset must close every host connection */
	return 0;
}
