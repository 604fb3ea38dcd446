/*
 * libFuzzer target: virtio-blk's request handling (src/dev/virtio-blk.c)
 * against arbitrary queue contents, through the real split-virtqueue walker
 * and the real raw block backend on a 64 KiB memfd image.
 *
 * Input layout:
 *   byte 0      queue size as a power of two (1 .. 256)
 *   byte 1      bit 0 INDIRECT_DESC, bit 1 EVENT_IDX, bit 2 use the
 *               read-only disk, bit 3 withhold DISCARD/WRITE_ZEROES
 *   36 bytes    the available ring: flags, idx, ring[16]
 *   the rest    guest memory from the descriptor table (gpa 0x1000) on, up
 *               to 0xf000 bytes: descriptors, headers, data, segments
 * The harness activates the device with the chosen features and kicks it;
 * the device serves requests on worker threads, so the harness waits until
 * they are done (virtio_blk_drain) and notifies again, as the completion
 * event would; a further kick must find nothing new or a broken queue.
 * Then it resets the device, as the transport would. ASan sees any access outside guest RAM or the
 * device's own buffers; a request that is never completed would show as a
 * used index behind the available one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/log.h"
#include "block/driver.h"
#include "dev/virtio-blk.h"
#include "dev/virtio.h"
#include "hv/mem.h"

#define RAM_SIZE   (1u << 20)
#define DESC_GPA   0x1000u
#define AVAIL_GPA  0x10000u
#define USED_GPA   0x11000u
#define AVAIL_IN   (4 + 2 * 16)
#define DISK_BYTES (64u << 10)

/* Only raw images here: the qcow2 backend has its own fuzzer
 * (tests/block/fuzz_qcow2.c), and leaving it out keeps zlib/zstd out of
 * this build. */
static int no_qcow2_open(struct block_dev **out, const char *path,
			 const struct block_open_opts *opts)
{
	(void)out, (void)path, (void)opts;
	return -ENOTSUP;
}

static int no_qcow2_create(const char *path, const struct block_create_opts *opts)
{
	(void)path, (void)opts;
	return -ENOTSUP;
}

const struct block_driver block_driver_qcow2 = { "qcow2", no_qcow2_open, no_qcow2_create };

/* ---- fake transport ---- */

struct virtio_dev {
	struct vq vq;
	bool needs_reset;
	bool later;          /* virtio_queue_notify_later() was called */
};

struct vq *virtio_queue(struct virtio_dev *vd, unsigned q)
{
	return q == 0 && vd->vq.enabled ? &vd->vq : NULL;
}

void virtio_queue_interrupt(struct virtio_dev *vd, unsigned q)
{
	(void)q;
	vq_should_interrupt(&vd->vq);
}

void virtio_config_changed(struct virtio_dev *vd)
{
	(void)vd;
}

void virtio_needs_reset(struct virtio_dev *vd, const char *why)
{
	(void)why;
	vd->needs_reset = true;
}

void virtio_queue_notify_later(struct virtio_dev *vd, unsigned q)
{
	if (q != 0)
		abort();
	vd->later = true;
}

/* ---- setup, once ---- */

static struct guest_mem mem;
static struct virtio_blk *rw_blk, *ro_blk;

static struct virtio_blk *make_disk(const char *name, bool read_only)
{
	int fd = memfd_create(name, MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, DISK_BYTES) < 0)
		abort();
	for (unsigned i = 0; i < DISK_BYTES; i += 512) {
		char sector[512];
		memset(sector, (int)(i / 512), sizeof(sector));
		if (pwrite(fd, sector, sizeof(sector), i) != (ssize_t)sizeof(sector))
			abort();
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	struct virtio_blk_config cfg = { .path = path, .format = "raw", .read_only = read_only,
					 .serial = "fuzz" };
	struct virtio_blk *blk = virtio_blk_create(&cfg, &mem);
	if (!blk)
		abort();
	return blk; /* fd stays open for the process's life: it holds the memfd */
}

static void setup_once(void)
{
	log_init("fuzz-virtio-blk", LOG_LEVEL_ERROR);
	if (!guest_mem_alloc(&mem, RAM_SIZE))
		abort();
	rw_blk = make_disk("rw", false);
	ro_blk = make_disk("ro", true);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!mem.count)
		setup_once();
	if (size < 2 + AVAIL_IN)
		return 0;
	uint8_t *ram = guest_mem_ptr(&mem, 0, RAM_SIZE);
	memset(ram, 0, 0x12000);
	memcpy(ram + AVAIL_GPA, data + 2, AVAIL_IN);
	size_t body = size - 2 - AVAIL_IN < 0xf000 ? size - 2 - AVAIL_IN : 0xf000;
	memcpy(ram + DESC_GPA, data + 2 + AVAIL_IN, body);

	struct virtio_blk *blk = data[1] & 4 ? ro_blk : rw_blk;
	uint64_t features = virtio_blk_ops.features(blk);
	if (!(data[1] & 1))
		features &= ~VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC_BIT);
	if (!(data[1] & 2))
		features &= ~VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT);
	if (data[1] & 8)
		features &= ~(VIRTIO_FEATURE(VIRTIO_BLK_F_DISCARD) |
			      VIRTIO_FEATURE(VIRTIO_BLK_F_WRITE_ZEROES));

	static struct virtio_dev vd;
	vd.needs_reset = false;
	vq_reset(&vd.vq, &mem);
	vd.vq.size = (uint16_t)(1u << (data[0] % 9));
	vd.vq.desc_gpa = DESC_GPA;
	vd.vq.avail_gpa = AVAIL_GPA;
	vd.vq.used_gpa = USED_GPA;
	if (!vq_enable(&vd.vq))
		return 0;
	virtio_blk_ops.activate(blk, &vd, features);
	/* The kick on the vCPU path, as the VMM serves a raw disk on io_uring,
	 * with its hand-over to the I/O thread; or on the I/O thread. */
	bool on_vcpu = (data[1] & 16) &&
		       virtio_queue_info_of(&virtio_blk_ops, blk, 0).serve == VIRTIO_SERVE_VCPU;
	vd.later = false;
	virtio_blk_ops.queue_notify(blk, &vd, 0, on_vcpu ? VIRTIO_ON_VCPU : VIRTIO_ON_IO_THREAD);
	if (vd.later)
		virtio_blk_ops.queue_notify(blk, &vd, 0, VIRTIO_ON_IO_THREAD);
	virtio_blk_drain(blk);
	virtio_blk_ops.queue_notify(blk, &vd, 0, VIRTIO_ON_IO_THREAD); /* the completion event */
	uint16_t used = vd.vq.used_idx;
	virtio_blk_ops.queue_notify(blk, &vd, 0, VIRTIO_ON_IO_THREAD);
	/* Every chain was served after the first kick: the next adds nothing. */
	if (vd.vq.used_idx != used)
		abort();
	/* Unless the queue broke, nothing the driver made available was dropped. */
	if (!vd.needs_reset && vd.vq.used_idx != vd.vq.last_avail)
		abort();
	virtio_blk_ops.reset(blk);
	return 0;
}
