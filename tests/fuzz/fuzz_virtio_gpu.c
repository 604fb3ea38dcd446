/*
 * libFuzzer target: virtio-gpu's control and cursor queues
 * (src/dev/virtio-gpu.c) against arbitrary command sequences, through the
 * real split-virtqueue walker. The rings are well-formed (fuzz_virtqueue
 * covers broken ones); what the guest says in them is not.
 *
 * Input layout:
 *   byte 0      bit 0: the driver takes VIRTIO_GPU_F_EDID
 *   then records, each starting with an op byte:
 *     op % 4 == 0  control request: u16 LE command length (up to 16 KiB),
 *                  u16 LE response buffer length (up to 2 KiB), the
 *                  command's bytes; op bit 7 splits the command into two
 *                  descriptors after its 24-byte header (as Linux sends
 *                  backing entries)
 *     op % 4 == 1  cursor request: u16 LE length (up to 64), the bytes
 *     op % 4 == 2  the host offers a size: u16 LE width, u16 LE height
 *     op % 4 == 3  the driver resets the device and starts again
 *   Backing entries may point anywhere in the 8 MiB of guest RAM (0 ..
 *   0x800000), where the bytes are whatever earlier requests left.
 * Checks: ASan for any access outside guest RAM or the device's buffers,
 * and LeakSanitizer after destroy; every control request with room for a
 * header gets one answer of at least a header and never more than its
 * buffer; the queues never break; the damage and the cursor reported to
 * the host lie inside the scanout's pixels, which the host reads in full.
 */
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_gpu.h>

#include "base/log.h"
#include "dev/virtio-gpu.h"
#include "dev/virtio.h"
#include "hv/mem.h"
#include "fake_transport.h"

#define RAM_SIZE  (8u << 20)
#define QSIZE     16
#define RING_GPA  0x1000u     /* queue q at + q * 0x1000: desc, avail +0x400, used +0x800 */
#define CMD_GPA   0x10000u
#define CMD_MAX   0x4000u
#define RESP_GPA  0x20000u
#define RESP_MAX  0x800u

static struct guest_mem mem;
static struct virtio_dev vd;
static struct virtio_gpu *gpu;
static uint16_t avail_idx[2];
static volatile uint8_t sink;

static void host_mode(void *ctx, uint32_t w, uint32_t h, uint32_t format)
{
	(void)ctx, (void)format;
	const struct virtio_gpu_scanout *so = virtio_gpu_scanout(gpu);
	if (so->width != w || so->height != h || (w && !so->pixels) || (w && so->stride < w * 4))
		abort();
}

static void host_flush(void *ctx, uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
	(void)ctx;
	const struct virtio_gpu_scanout *so = virtio_gpu_scanout(gpu);
	if (!so->pixels || !w || !h || (uint64_t)x + w > so->width || (uint64_t)y + h > so->height)
		abort();
	for (uint32_t r = y; r < y + h; r++)
		for (uint32_t b = x * 4; b < (x + w) * 4; b++)
			sink ^= so->pixels[(uint64_t)r * so->stride + b];
}

static void host_cursor(void *ctx, const struct virtio_gpu_cursor *c)
{
	(void)ctx;
	if (!c->pixels || (c->visible && (c->hot_x >= VGPU_CURSOR_DIM || c->hot_y >= VGPU_CURSOR_DIM)))
		abort();
	for (unsigned i = 0; i < VGPU_CURSOR_DIM * VGPU_CURSOR_DIM * 4; i++)
		sink ^= c->pixels[i];
}

static const struct virtio_gpu_host_ops host_ops = {
	.mode = host_mode, .flush = host_flush, .cursor = host_cursor,
};

static void start(uint64_t features)
{
	memset(&vd, 0, sizeof(vd));
	for (unsigned q = 0; q < 2; q++) {
		memset(guest_mem_ptr(&mem, RING_GPA + q * 0x1000u, 0x1000), 0, 0x1000);
		vq_reset(&vd.vq[q], &mem);
		vd.vq[q].size = QSIZE;
		vd.vq[q].desc_gpa = RING_GPA + q * 0x1000u;
		vd.vq[q].avail_gpa = RING_GPA + q * 0x1000u + 0x400;
		vd.vq[q].used_gpa = RING_GPA + q * 0x1000u + 0x800;
		if (!vq_enable(&vd.vq[q]))
			abort();
		avail_idx[q] = 0;
	}
	virtio_gpu_ops.activate(gpu, &vd, features & virtio_gpu_ops.features(gpu));
}

/* One chain of up to three segments on queue q; the used length. */
static uint32_t chain(unsigned q, const uint64_t *addr, const uint32_t *len, const bool *write,
		      unsigned n)
{
	uint64_t base = RING_GPA + q * 0x1000u;
	struct vring_desc *desc = guest_mem_ptr(&mem, base, 16 * QSIZE);
	for (unsigned i = 0; i < n; i++)
		desc[i] = (struct vring_desc){ .addr = addr[i], .len = len[i],
					       .flags = (uint16_t)((write[i] ? VRING_DESC_F_WRITE : 0) |
								   (i + 1 < n ? VRING_DESC_F_NEXT : 0)),
					       .next = (uint16_t)(i + 1) };
	uint16_t *avail = guest_mem_ptr(&mem, base + 0x400, 4 + 2 * QSIZE);
	avail[2 + avail_idx[q] % QSIZE] = 0;
	avail[1] = ++avail_idx[q];
	virtio_gpu_ops.queue_notify(gpu, &vd, q, VIRTIO_ON_IO_THREAD);
	uint16_t *used = guest_mem_ptr(&mem, base + 0x800, 4 + 8 * QSIZE);
	if (vd.needs_reset || used[1] != avail_idx[q])
		abort(); /* a well-formed chain went unanswered */
	uint32_t got;
	memcpy(&got, &used[2 + 4 * ((avail_idx[q] - 1) % QSIZE) + 2], sizeof(got));
	return got;
}

static unsigned take16(const uint8_t **p, size_t *n)
{
	unsigned v = 0;
	for (unsigned i = 0; i < 2 && *n; i++, (*p)++, (*n)--)
		v |= (unsigned)**p << (8 * i);
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool once;
	if (!once) {
		log_init("fuzz-virtio-gpu", LOG_LEVEL_ERROR);
		if (!guest_mem_alloc(&mem, RAM_SIZE))
			abort();
		once = true;
	}
	if (size < 1)
		return 0;
	uint64_t features = data[0] & 1 ? VIRTIO_FEATURE(VIRTIO_GPU_F_EDID) : 0;
	data++, size--;
	gpu = virtio_gpu_create(&mem, 1024, 768, &host_ops, NULL);
	if (!gpu)
		abort();
	start(features);
	while (size) {
		uint8_t op = *data++;
		size--;
		switch (op % 4) {
		case 0: {
			uint32_t clen = take16(&data, &size) % (CMD_MAX + 1);
			uint32_t rlen = take16(&data, &size) % (RESP_MAX + 1);
			if (clen > size)
				clen = (uint32_t)size;
			memcpy(guest_mem_ptr(&mem, CMD_GPA, CMD_MAX), data, clen);
			data += clen, size -= clen;
			uint64_t addr[3];
			uint32_t len[3];
			bool write[3];
			unsigned n = 0;
			/* Non-empty segments only: a zero-length one is the driver's to avoid. */
			uint32_t head = (op & 0x80) && clen > 24 ? 24 : clen;
			if (head)
				addr[n] = CMD_GPA, len[n] = head, write[n++] = false;
			if (clen > head)
				addr[n] = CMD_GPA + head, len[n] = clen - head, write[n++] = false;
			if (rlen)
				addr[n] = RESP_GPA, len[n] = rlen, write[n++] = true;
			if (!n)
				break;
			uint32_t used = chain(VIRTIO_GPU_QUEUE_CTRL, addr, len, write, n);
			if (used > rlen || (rlen >= 24) != (used >= 24) || (used && used < 24))
				abort();
			break;
		}
		case 1: {
			uint32_t clen = take16(&data, &size) % 65;
			if (clen > size)
				clen = (uint32_t)size;
			if (!clen)
				break;
			memcpy(guest_mem_ptr(&mem, CMD_GPA, 64), data, clen);
			data += clen, size -= clen;
			uint64_t addr = CMD_GPA;
			bool write = false;
			if (chain(VIRTIO_GPU_QUEUE_CURSOR, &addr, &clen, &write, 1) != 0)
				abort();
			break;
		}
		case 2: {
			uint32_t w = take16(&data, &size), h = take16(&data, &size);
			virtio_gpu_set_preferred(gpu, w, h);
			break;
		}
		case 3:
			virtio_gpu_ops.reset(gpu);
			start(features);
			break;
		}
	}
	virtio_gpu_ops.reset(gpu);
	virtio_gpu_destroy(gpu);
	gpu = NULL;
	return 0;
}
