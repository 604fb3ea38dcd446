/*
 * bench/net: the cost of the virtio-net device path (src/dev/virtio-net.c
 * with the real virtqueue code and a simulated driver, no KVM) against a
 * plain socket pair moving the same frames. The device's back end here is
 * a SOCK_DGRAM socket pair, so both sides pay the same system calls and
 * the difference is what the device adds: chain walking, header checks,
 * copies into guest buffers, used-ring updates.
 *
 *   tx: the driver queues 64 frames, kicks; the device sends each to the
 *       socket; the bench drains the other end.  plain: write 64, read 64.
 *   rx: 64 frames are written to the socket; the driver posts 64 buffers
 *       (mergeable, 1536 bytes each) and kicks; the device pulls each
 *       frame (one recv) and copies it in.        plain: write 64, read 64.
 *
 * usage: net-bench [FRAMES] [FRAME_BYTES]     (default 200000 1500)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "dev/virtio-net.h"
#include "dev/virtio.h"
#include "hv/mem.h"

#define BATCH 64
#define QSIZE 256
#define BUF_GPA 0x100000u

static struct guest_mem mem;
static int sp[2];            /* device side [0], far side [1] */
static uint8_t rxbuf[NET_HDR_LEN + NET_MAX_FRAME];
static size_t rxheld;

struct virtio_dev { struct vq vq[2]; };
struct vq *virtio_queue(struct virtio_dev *vd, unsigned q) { return &vd->vq[q]; }
void virtio_queue_interrupt(struct virtio_dev *vd, unsigned q) { vq_should_interrupt(&vd->vq[q]); }
void virtio_config_changed(struct virtio_dev *vd) { (void)vd; }
/* Batches are VIRTIO_QUEUE_BUDGET frames: one notify serves each whole. */
void virtio_queue_notify_later(struct virtio_dev *vd, unsigned q) { (void)vd, (void)q; }
void virtio_needs_reset(struct virtio_dev *vd, const char *why)
{
	(void)vd;
	fprintf(stderr, "needs reset: %s\n", why);
	exit(1);
}

static void sp_send(struct net_backend *nb, const struct iovec *iov, unsigned n, size_t len)
{
	(void)nb, (void)len;
	/* The header stays here, as slirp does; the frame goes out. */
	if (writev(sp[0], iov + 1, (int)n - 1) < 0)
		perror("writev");
}

static uint8_t *sp_peek(struct net_backend *nb, size_t *len)
{
	(void)nb;
	if (!rxheld) {
		ssize_t r = recv(sp[0], rxbuf + NET_HDR_LEN, NET_MAX_FRAME, MSG_DONTWAIT);
		if (r <= 0)
			return NULL;
		memset(rxbuf, 0, NET_HDR_LEN);
		rxheld = NET_HDR_LEN + (size_t)r;
	}
	*len = rxheld;
	return rxbuf;
}

static void sp_pop(struct net_backend *nb) { (void)nb; rxheld = 0; }
static bool sp_offl(struct net_backend *nb, unsigned o) { (void)nb; return o == 0; }
static const struct net_backend_ops sp_ops = { "socketpair", sp_send, sp_peek, sp_pop, sp_offl, NULL, NULL };

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static struct virtio_dev vd;
static uint16_t next_desc[2];

static void start_queue(unsigned q)
{
	uint64_t base = 0x10000 + q * 0x30000;
	vq_reset(&vd.vq[q], &mem);
	vd.vq[q].size = QSIZE;
	vd.vq[q].desc_gpa = base;
	vd.vq[q].avail_gpa = base + 0x10000;
	vd.vq[q].used_gpa = base + 0x20000;
	if (!vq_enable(&vd.vq[q]))
		exit(1);
}

static void publish(unsigned q, uint64_t gpa, uint32_t len, bool write)
{
	struct vq *vq = &vd.vq[q];
	uint16_t i = next_desc[q]++ % QSIZE;
	struct vring_desc *d = guest_mem_ptr(&mem, vq->desc_gpa, 16 * QSIZE);
	d[i] = (struct vring_desc){ gpa, len, write ? VRING_DESC_F_WRITE : 0, 0 };
	uint16_t *avail = guest_mem_ptr(&mem, vq->avail_gpa, 6 + 2 * QSIZE);
	avail[2 + avail[1] % QSIZE] = i;
	__atomic_store_n(&avail[1], (uint16_t)(avail[1] + 1), __ATOMIC_RELEASE);
}

static double run_plain(long frames, size_t len)
{
	static uint8_t f[NET_MAX_FRAME], in[NET_MAX_FRAME];
	memset(f, 0x42, len);
	double t0 = now();
	for (long done = 0; done < frames; done += BATCH) {
		for (int i = 0; i < BATCH; i++)
			if (write(sp[1], f, len) < 0)
				perror("write");
		for (int i = 0; i < BATCH; i++)
			if (read(sp[0], in, sizeof(in)) < 0)
				perror("read");
	}
	return now() - t0;
}

static double run_tx(struct virtio_net *net, long frames, size_t len)
{
	static uint8_t in[NET_MAX_FRAME];
	for (int i = 0; i < QSIZE; i++) {
		uint8_t *p = guest_mem_ptr(&mem, BUF_GPA + (uint64_t)i * 0x10000, NET_HDR_LEN + len);
		memset(p, 0, NET_HDR_LEN);
		memset(p + NET_HDR_LEN, 0x42, len);
	}
	double t0 = now();
	for (long done = 0; done < frames; done += BATCH) {
		for (int i = 0; i < BATCH; i++)
			publish(VIRTIO_NET_TXQ, BUF_GPA + (uint64_t)(next_desc[1] % QSIZE) * 0x10000,
				(uint32_t)(NET_HDR_LEN + len), false);
		virtio_net_ops.queue_notify(net, &vd, VIRTIO_NET_TXQ, VIRTIO_ON_IO_THREAD);
		for (int i = 0; i < BATCH; i++)
			if (read(sp[1], in, sizeof(in)) < 0)
				perror("read");
	}
	return now() - t0;
}

static double run_rx(struct virtio_net *net, long frames, size_t len)
{
	static uint8_t f[NET_MAX_FRAME];
	memset(f, 0x42, len);
	double t0 = now();
	for (long done = 0; done < frames; done += BATCH) {
		for (int i = 0; i < BATCH; i++)
			if (write(sp[1], f, len) < 0)
				perror("write");
		for (int i = 0; i < BATCH; i++)
			publish(VIRTIO_NET_RXQ, BUF_GPA + 0x1000000 + (uint64_t)(next_desc[0] % QSIZE) * 0x1000,
				1536, true);
		virtio_net_ops.queue_notify(net, &vd, VIRTIO_NET_RXQ, VIRTIO_ON_IO_THREAD);
	}
	return now() - t0;
}

int main(int argc, char **argv)
{
	long frames = argc > 1 ? atol(argv[1]) : 200000;
	size_t len = argc > 2 ? (size_t)atol(argv[2]) : 1500;
	if (frames <= 0 || len < 60 || len > 1536 - NET_HDR_LEN) {
		fprintf(stderr, "usage: net-bench [FRAMES] [FRAME_BYTES 60..1524]\n");
		return 2;
	}
	log_init("net-bench", LOG_LEVEL_WARN);
	if (!guest_mem_alloc(&mem, 64u << 20) || socketpair(AF_UNIX, SOCK_DGRAM, 0, sp) < 0)
		return 1;
	int big = 4 << 20;
	setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sp[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	struct net_backend nb = { .ops = &sp_ops };
	static const uint8_t mac[6] = { 2, 0, 0, 0, 0, 1 };
	struct virtio_net *net = virtio_net_create(mac, &nb, &mem);
	start_queue(0);
	start_queue(1);
	virtio_net_ops.activate(net, &vd, virtio_net_ops.features(net));

	run_plain(frames / 10, len); /* warm-up */
	double plain = run_plain(frames, len);
	double tx = run_tx(net, frames, len);
	double rx = run_rx(net, frames, len);
	struct virtio_net_stats st = virtio_net_stats(net);
	if (st.tx_frames < (uint64_t)frames || st.rx_frames < (uint64_t)frames) {
		fprintf(stderr, "lost frames: tx %llu rx %llu of %ld\n", (unsigned long long)st.tx_frames,
			(unsigned long long)st.rx_frames, frames);
		return 1;
	}
	printf("%ld frames of %zu bytes, batches of %d\n", frames, len, BATCH);
	printf("%-28s %10s %10s %8s\n", "path", "frames/s", "MB/s", "ratio");
	printf("%-28s %10.0f %10.1f %8s\n", "plain socket pair", frames / plain,
	       frames * (double)len / plain / 1e6, "1.00");
	printf("%-28s %10.0f %10.1f %8.2f\n", "virtio-net tx -> socket", frames / tx,
	       frames * (double)len / tx / 1e6, tx / plain);
	printf("%-28s %10.0f %10.1f %8.2f\n", "socket -> virtio-net rx", frames / rx,
	       frames * (double)len / rx / 1e6, rx / plain);
	printf("ratio: time of the path / time of the plain socket pair (1.00 = no added cost)\n");
	virtio_net_destroy(net);
	guest_mem_free(&mem);
	return 0;
}
