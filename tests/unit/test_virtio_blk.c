/*
 * virtio-blk (src/dev/virtio-blk.c) driven by a simulated driver in this
 * process: the request queue lives in real guest memory (16 MiB, no KVM),
 * a fake transport below implements the four calls of dev/virtio.h, and the
 * disk is a temporary raw image (and a qcow2 one when qemu-img is present).
 * Every request type is checked against the file's bytes; every hostile
 * request must complete with an error status; a broken chain must end in
 * DEVICE_NEEDS_RESET; reset in the middle of I/O, the read-only disk, the
 * OFD lock and interrupt suppression with EVENT_IDX are covered too.
 *
 * The device serves requests on worker threads. drv_kick() stands for a
 * kick followed by the completion event once everything is served (the
 * device drained), so the older cases see one batch per kick; the cases
 * under "many requests in flight" wait on the device's event fd as the
 * VMM's I/O thread does, and complete out of order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <errno.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "block/block.h"
#include "dev/virtio-blk.h"
#include "dev/virtio.h"
#include "hv/mem.h"

#define RAM_SIZE    (16u << 20)
#define DESC_GPA    0x10000u
#define AVAIL_GPA   0x20000u
#define USED_GPA    0x30000u
#define IND_GPA     0x40000u
#define HDR_GPA     0x100000u   /* request headers, 32 bytes apart */
#define STATUS_GPA  0x110000u   /* status bytes, one per slot */
#define OUT_GPA     0x200000u   /* data the driver sends */
#define IN_GPA      0x600000u   /* data the device returns */
#define QSIZE       256
#define DISK_BYTES  (1u << 20)
#define DISK_SECTORS (DISK_BYTES / 512)

static struct guest_mem mem;
/* Every test runs twice: with the disks' default (raw images on io_uring)
 * and with aio=threads (every request on the worker pool). */
static enum virtio_blk_aio test_aio;
/* The third run: aio=auto with kicks on the vCPU thread, as the VMM
 * delivers them for a raw disk (see drv_notify). */
static bool test_vcpu_kicks;
static char dir[64];
static char raw_path[128];

/* ---- the fake transport ---- */

struct virtio_dev {
	struct vq vq;
	unsigned interrupt_calls;   /* virtio_queue_interrupt() calls */
	unsigned interrupts;        /* ... that vq_should_interrupt() let through */
	unsigned needs_reset;
	char why[128];
	unsigned later;             /* virtio_queue_notify_later() calls not yet served */
};

struct vq *virtio_queue(struct virtio_dev *vd, unsigned q)
{
	return q == 0 && vd->vq.enabled ? &vd->vq : NULL;
}

void virtio_queue_interrupt(struct virtio_dev *vd, unsigned q)
{
	assert_int_equal(q, 0);
	vd->interrupt_calls++;
	if (vq_should_interrupt(&vd->vq))
		vd->interrupts++;
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

/* The hand-over to the I/O thread: drv_event_fired() sees it. */
void virtio_queue_notify_later(struct virtio_dev *vd, unsigned q)
{
	assert_int_equal(q, 0);
	__atomic_add_fetch(&vd->later, 1, __ATOMIC_RELAXED);
}

/* What the device declares about its queue (the transport asks once). */
static struct virtio_queue_info blk_info(struct virtio_blk *blk)
{
	return virtio_queue_info_of(&virtio_blk_ops, blk, 0);
}

static bool blk_on_vcpu(struct virtio_blk *blk)
{
	return blk_info(blk).serve == VIRTIO_SERVE_VCPU;
}

/* The device's completion event fd, and the vCPU ring's watchdog timer fd. */
static int blk_event_fd(struct virtio_blk *blk)
{
	return blk_info(blk).wake_fd[0];
}

static int blk_timer_fd(struct virtio_blk *blk)
{
	return blk_info(blk).wake_fd[1];
}

/* ---- the simulated driver ---- */

struct drv {
	struct virtio_dev vd;
	struct virtio_blk *blk;
	uint16_t next_desc;
	uint16_t used_seen;
};

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

static struct vring_desc *drv_desc(void) { return guest_mem_ptr(&mem, DESC_GPA, 16 * QSIZE); }
static uint16_t *drv_avail(void) { return guest_mem_ptr(&mem, AVAIL_GPA, 6 + 2 * QSIZE); }
static uint16_t *drv_used_hdr(void) { return guest_mem_ptr(&mem, USED_GPA, 4); }
static uint32_t *drv_used_ring(void) { return guest_mem_ptr(&mem, USED_GPA + 4, 8 * QSIZE + 2); }
static uint8_t *gpa(uint64_t a, uint64_t len) { return guest_mem_ptr(&mem, a, len); }

/* Driver reinitialisation: fresh rings, queue enabled, features accepted. */
static void drv_start(struct drv *d, uint64_t features)
{
	memset(gpa(DESC_GPA, 0x40000), 0, 0x40000);
	vq_reset(&d->vd.vq, &mem);
	d->vd.vq.size = QSIZE;
	d->vd.vq.desc_gpa = DESC_GPA;
	d->vd.vq.avail_gpa = AVAIL_GPA;
	d->vd.vq.used_gpa = USED_GPA;
	assert_true(vq_enable(&d->vd.vq));
	d->next_desc = 0;
	d->used_seen = 0;
	virtio_blk_ops.activate(d->blk, &d->vd, features);
}

static void drv_open(struct drv *d, const struct virtio_blk_config *cfg)
{
	memset(d, 0, sizeof(*d));
	struct virtio_blk_config c = *cfg;
	if (c.aio == VIRTIO_BLK_AIO_AUTO)
		c.aio = test_aio;
	d->blk = virtio_blk_create(&c, &mem);
	assert_non_null(d->blk);
	drv_start(d, virtio_blk_ops.features(d->blk));
}

static void drv_open_raw(struct drv *d)
{
	struct virtio_blk_config cfg = { .path = raw_path, .format = "raw", .serial = "shoji-serial-01" };
	drv_open(d, &cfg);
}

static void drv_close(struct drv *d)
{
	virtio_blk_ops.reset(d->blk);
	virtio_blk_destroy(d->blk);
}

/* Chains segs into descriptors (through an indirect table if asked) and
 * publishes the chain. */
static void drv_publish(struct drv *d, const struct seg *segs, unsigned n, bool indirect)
{
	struct vring_desc *table = indirect ? (struct vring_desc *)gpa(IND_GPA, 16 * n) : drv_desc();
	uint16_t first = indirect ? 0 : d->next_desc;
	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((first + i) % (indirect ? n : QSIZE));
		uint16_t next = (uint16_t)((first + i + 1) % (indirect ? n : QSIZE));
		uint16_t flags = (uint16_t)((segs[i].write ? VRING_DESC_F_WRITE : 0) |
					    (i + 1 < n ? VRING_DESC_F_NEXT : 0));
		table[idx] = (struct vring_desc){ segs[i].gpa, segs[i].len, flags, next };
	}
	uint16_t head = d->next_desc;
	if (indirect)
		drv_desc()[head] = (struct vring_desc){ IND_GPA, 16 * n, VRING_DESC_F_INDIRECT, 0 };
	d->next_desc = (uint16_t)((d->next_desc + (indirect ? 1 : n)) % QSIZE);
	uint16_t *avail = drv_avail();
	avail[2 + avail[1] % QSIZE] = head;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	avail[1]++;
}

/* Whether kicks of this disk go to the vCPU thread (third run, and the
 * disk has a vCPU ring), as virtio-pci.c asks the device at activation. */
static bool drv_on_vcpu(const struct drv *d)
{
	return test_vcpu_kicks && blk_on_vcpu(d->blk);
}

/* What the I/O thread does when the device's event fd fires. */
static void drv_event(struct drv *d)
{
	virtio_blk_ops.queue_notify(d->blk, &d->vd, 0, VIRTIO_ON_IO_THREAD);
}

/* What a vCPU thread does before it enters the guest again (virtio_pci_poll). */
static void drv_vcpu_poll(struct drv *d)
{
	if (drv_on_vcpu(d) && virtio_blk_ops.vcpu_work_done(d->blk, 0))
		virtio_blk_ops.queue_notify(d->blk, &d->vd, 0, VIRTIO_ON_VCPU);
}

/* Whether the I/O thread was woken, by the device's event fd or by a
 * hand-over (and clears both). */
static bool drv_event_fired(struct drv *d)
{
	uint64_t n;
	bool handed = __atomic_exchange_n(&d->vd.later, 0, __ATOMIC_RELAXED) > 0;
	return (read(blk_event_fd(d->blk), &n, sizeof(n)) == sizeof(n)) | handed;
}

/* A kick as the VMM delivers it: one queue_notify on the I/O thread; or,
 * for a disk served on the vCPU thread, queue_notify(VIRTIO_ON_VCPU) there, then
 * queue_notify if it handed work to the I/O thread. */
static void drv_notify(struct drv *d)
{
	if (!drv_on_vcpu(d)) {
		drv_event(d);
		return;
	}
	virtio_blk_ops.queue_notify(d->blk, &d->vd, 0, VIRTIO_ON_VCPU);
	if (drv_event_fired(d))
		drv_event(d);
}

/* Everything the VMM's threads do with completions: both of the above. */
static void drv_serve(struct drv *d)
{
	drv_vcpu_poll(d);
	drv_event(d);
}

/* A kick, then the completion event once the device has served it all. */
static void drv_kick(struct drv *d)
{
	drv_notify(d);
	virtio_blk_drain(d->blk);
	drv_serve(d);
}

/* What the VMM's I/O thread does with the device's event fd: waits for it
 * and calls queue_notify, until the used index reaches `want` (5 s at most). */
static void drv_wait_used(struct drv *d, uint16_t want)
{
	int fd = blk_event_fd(d->blk);
	assert_true(fd >= 0);
	for (int turns = 0; __atomic_load_n(&drv_used_hdr()[1], __ATOMIC_ACQUIRE) != want; turns++) {
		assert_true(turns < 5000);
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 1) == 1) {
			uint64_t n;
			assert_int_equal(read(fd, &n, sizeof(n)), sizeof(n));
		}
		drv_serve(d);
	}
}

/* The next used entry, which must be there. */
static uint32_t drv_take_used(struct drv *d)
{
	assert_int_not_equal(drv_used_hdr()[1], d->used_seen);
	uint32_t len = drv_used_ring()[2 * (d->used_seen % QSIZE) + 1];
	d->used_seen++;
	return len;
}

static void write_hdr(unsigned slot, uint32_t type, uint64_t sector)
{
	uint8_t *h = gpa(HDR_GPA + 32 * slot, 16);
	memset(h, 0, 16);
	memcpy(h, &type, 4);
	memcpy(h + 8, &sector, 8);
}

/*
 * One complete request: header, `out` bytes from OUT_GPA, `in_len` bytes
 * into IN_GPA, status. Returns the status; *used gets the used length.
 */
static uint8_t request(struct drv *d, uint32_t type, uint64_t sector, uint32_t out_len,
		       uint32_t in_len, uint32_t *used)
{
	struct seg s[4];
	unsigned n = 0;
	write_hdr(0, type, sector);
	s[n++] = (struct seg){ HDR_GPA, 16, false };
	if (out_len)
		s[n++] = (struct seg){ OUT_GPA, out_len, false };
	if (in_len)
		s[n++] = (struct seg){ IN_GPA, in_len, true };
	s[n++] = (struct seg){ STATUS_GPA, 1, true };
	*gpa(STATUS_GPA, 1) = 0xee;
	drv_publish(d, s, n, false);
	drv_kick(d);
	uint32_t len = drv_take_used(d);
	if (used)
		*used = len;
	return *gpa(STATUS_GPA, 1);
}

/* Publishes a one-sector read into slot `slot` without kicking. */
static void publish_read(struct drv *d, unsigned slot, uint64_t sector)
{
	write_hdr(slot, VIRTIO_BLK_T_IN, sector);
	struct seg s[3] = {
		{ HDR_GPA + 32 * slot, 16, false },
		{ IN_GPA + 512 * slot, 512, true },
		{ STATUS_GPA + slot, 1, true },
	};
	*gpa(STATUS_GPA + slot, 1) = 0xee;
	drv_publish(d, s, 3, false);
}

/* ---- the disk image ---- */

static uint8_t pattern_byte(uint64_t off)
{
	return (uint8_t)(off * 7 + (off >> 9));
}

static void make_raw_image(void)
{
	int fd = open(raw_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	static uint8_t buf[DISK_BYTES];
	for (uint64_t i = 0; i < DISK_BYTES; i++)
		buf[i] = pattern_byte(i);
	assert_int_equal(pwrite(fd, buf, DISK_BYTES, 0), DISK_BYTES);
	close(fd);
}

static void file_read(const char *path, void *buf, size_t len, uint64_t off)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static bool is_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

static int test_setup(void **state)
{
	(void)state;
	make_raw_image();
	return 0;
}

static int group_setup(void **state)
{
	(void)state;
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp";
	snprintf(dir, sizeof(dir), "%.40s/vblk-XXXXXX", tmp);
	if (!mkdtemp(dir))
		return -1;
	snprintf(raw_path, sizeof(raw_path), "%s/disk.raw", dir);
	return guest_mem_alloc(&mem, RAM_SIZE) ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		return -1;
	guest_mem_free(&mem);
	return 0;
}

/* Runs fn with stderr going to a file; returns what was logged (static). */
static const char *capture_stderr(void (*fn)(void *), void *arg)
{
	static char text[2048];
	char path[160];
	snprintf(path, sizeof(path), "%s/stderr.txt", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	int saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	fn(arg);
	dup2(saved, STDERR_FILENO);
	close(saved);
	ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
	text[n > 0 ? n : 0] = '\0';
	close(fd);
	return text;
}

/* ---- configuration ---- */

static uint32_t cfg32(struct drv *d, uint32_t off)
{
	uint32_t v;
	virtio_blk_ops.config_read(d->blk, off, (uint8_t *)&v, 4);
	return v;
}

static void test_features_and_config(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	uint64_t f = virtio_blk_ops.features(d.blk);
	const int want[] = { VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH,
			     VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES,
			     VIRTIO_F_INDIRECT_DESC_BIT, VIRTIO_F_EVENT_IDX_BIT };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		assert_true(f & VIRTIO_FEATURE(want[i]));
	assert_false(f & VIRTIO_FEATURE(VIRTIO_BLK_F_RO));
	assert_int_equal(virtio_blk_ops.num_queues, 1);
	assert_int_equal(virtio_blk_ops.queue_max_size, 256);
	assert_int_equal(virtio_blk_ops.device_id, VIRTIO_ID_BLOCK);

	uint64_t cap;
	virtio_blk_ops.config_read(d.blk, VIRTIO_BLK_CFG_CAPACITY, (uint8_t *)&cap, 8);
	assert_int_equal(cap, DISK_SECTORS);
	assert_int_equal(cfg32(&d, VIRTIO_BLK_CFG_SEG_MAX), VQ_MAX_SEGS - 2);
	assert_int_equal(cfg32(&d, VIRTIO_BLK_CFG_BLK_SIZE), 512);
	assert_int_equal(cfg32(&d, VIRTIO_BLK_CFG_MAX_DISCARD_SEG), VIRTIO_BLK_MAX_DISCARD_SEG);
	assert_int_equal(cfg32(&d, VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS), VIRTIO_BLK_MAX_DISCARD_SECTORS);
	assert_int_equal(cfg32(&d, VIRTIO_BLK_CFG_DISCARD_ALIGNMENT), 8);
	assert_int_equal(cfg32(&d, VIRTIO_BLK_CFG_MAX_WZ_SEG), VIRTIO_BLK_MAX_DISCARD_SEG);
	/* One request's work is bounded: 1 GiB, all segments together. */
	assert_int_equal(VIRTIO_BLK_MAX_DISCARD_SECTORS, 1u << 21);
	assert_int_equal(cfg32(&d, VIRTIO_BLK_CFG_MAX_WZ_SECTORS), VIRTIO_BLK_MAX_DISCARD_SECTORS);
	uint8_t b = 0xff;
	virtio_blk_ops.config_read(d.blk, VIRTIO_BLK_CFG_WZ_MAY_UNMAP, &b, 1);
	assert_int_equal(b, 1);
	/* A read past the end (the transport should prevent it) gives zeros. */
	uint32_t v = 0xffffffff;
	virtio_blk_ops.config_read(d.blk, VIRTIO_BLK_CONFIG_SIZE - 2, (uint8_t *)&v, 4);
	assert_int_equal(v, 0);
	drv_close(&d);
}

/* ---- every request type ---- */

static void test_read(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	uint32_t used;
	assert_int_equal(request(&d, VIRTIO_BLK_T_IN, 3, 0, 3 * 512, &used), VIRTIO_BLK_S_OK);
	assert_int_equal(used, 3 * 512 + 1);
	uint8_t want[3 * 512];
	file_read(raw_path, want, sizeof(want), 3 * 512);
	assert_memory_equal(gpa(IN_GPA, sizeof(want)), want, sizeof(want));
	/* The last sector of the disk. */
	assert_int_equal(request(&d, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, 0, 512, &used),
			 VIRTIO_BLK_S_OK);
	file_read(raw_path, want, 512, DISK_BYTES - 512);
	assert_memory_equal(gpa(IN_GPA, 512), want, 512);
	drv_close(&d);
}

static void test_write(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	uint8_t *out = gpa(OUT_GPA, 2 * 512);
	for (int i = 0; i < 2 * 512; i++)
		out[i] = (uint8_t)(i ^ 0x5a);
	uint32_t used;
	assert_int_equal(request(&d, VIRTIO_BLK_T_OUT, 10, 2 * 512, 0, &used), VIRTIO_BLK_S_OK);
	assert_int_equal(used, 1);
	uint8_t got[3 * 512];
	file_read(raw_path, got, sizeof(got), 9 * 512);
	for (int i = 0; i < 512; i++)
		assert_int_equal(got[i], pattern_byte(9 * 512 + (uint64_t)i)); /* untouched */
	assert_memory_equal(got + 512, out, 2 * 512);
	drv_close(&d);
}

/* Header split over two buffers, data over odd-sized ones, and the status
 * byte sharing its buffer with read data. */
static void test_scattered_buffers(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	write_hdr(0, VIRTIO_BLK_T_OUT, 20);
	uint8_t *src = gpa(OUT_GPA, 1024);
	for (int i = 0; i < 1024; i++)
		src[i] = (uint8_t)(255 - i);
	struct seg w[] = {
		{ HDR_GPA, 10, false }, { HDR_GPA + 10, 6, false },
		{ OUT_GPA, 100, false }, { OUT_GPA + 100, 412, false }, { OUT_GPA + 512, 512, false },
		{ STATUS_GPA, 1, true },
	};
	drv_publish(&d, w, 6, false);
	drv_kick(&d);
	assert_int_equal(drv_take_used(&d), 1);
	assert_int_equal(*gpa(STATUS_GPA, 1), VIRTIO_BLK_S_OK);
	uint8_t got[1024];
	file_read(raw_path, got, sizeof(got), 20 * 512);
	assert_memory_equal(got, src, sizeof(got));

	write_hdr(1, VIRTIO_BLK_T_IN, 20);
	memset(gpa(IN_GPA, 1025), 0xcc, 1025);
	struct seg r[] = {
		{ HDR_GPA + 32, 16, false },
		{ IN_GPA, 700, true }, { IN_GPA + 700, 325, true }, /* 324 data + status */
	};
	drv_publish(&d, r, 3, false);
	drv_kick(&d);
	assert_int_equal(drv_take_used(&d), 1025);
	assert_int_equal(*gpa(IN_GPA + 1024, 1), VIRTIO_BLK_S_OK);
	assert_memory_equal(gpa(IN_GPA, 1024), src, 1024);
	drv_close(&d);
}

static void test_indirect(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	write_hdr(0, VIRTIO_BLK_T_IN, 7);
	struct seg s[] = { { HDR_GPA, 16, false }, { IN_GPA, 512, true }, { STATUS_GPA, 1, true } };
	drv_publish(&d, s, 3, true);
	drv_kick(&d);
	assert_int_equal(drv_take_used(&d), 513);
	assert_int_equal(*gpa(STATUS_GPA, 1), VIRTIO_BLK_S_OK);
	uint8_t want[512];
	file_read(raw_path, want, 512, 7 * 512);
	assert_memory_equal(gpa(IN_GPA, 512), want, 512);
	drv_close(&d);
}

static void test_flush(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	uint32_t used;
	assert_int_equal(request(&d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, &used), VIRTIO_BLK_S_OK);
	assert_int_equal(used, 1);
	drv_close(&d);
}

/*
 * Which lone requests the I/O thread serves itself (completed within the
 * kick, no worker): small reads and writes only. A flush or a large read
 * goes to a worker even alone, so the I/O thread never waits for
 * fdatasync or for a transfer whose size the guest chose.
 */
static bool served_within_kick(struct drv *d, uint32_t type, uint32_t out_len, uint32_t in_len)
{
	struct seg s[4];
	unsigned n = 0;
	write_hdr(0, type, 0);
	s[n++] = (struct seg){ HDR_GPA, 16, false };
	if (out_len)
		s[n++] = (struct seg){ OUT_GPA, out_len, false };
	if (in_len)
		s[n++] = (struct seg){ IN_GPA, in_len, true };
	s[n++] = (struct seg){ STATUS_GPA, 1, true };
	*gpa(STATUS_GPA, 1) = 0xee;
	drv_publish(d, s, n, false);
	uint16_t before = drv_used_hdr()[1];
	drv_notify(d);
	bool at_once = drv_used_hdr()[1] != before;
	drv_wait_used(d, (uint16_t)(before + 1));
	drv_take_used(d);
	assert_int_equal(*gpa(STATUS_GPA, 1), VIRTIO_BLK_S_OK);
	return at_once;
}

static void test_lone_request_placement(void **state)
{
	(void)state;
	if (test_vcpu_kicks) {
		print_message("SKIP: the I/O thread's placement; test_vcpu_placement covers this run\n");
		return;
	}
	struct drv d;
	drv_open_raw(&d);
	assert_true(served_within_kick(&d, VIRTIO_BLK_T_IN, 0, 4096));
	assert_true(served_within_kick(&d, VIRTIO_BLK_T_OUT, 4096, 0));
	assert_false(served_within_kick(&d, VIRTIO_BLK_T_IN, 0, 1024 * 1024));
	assert_false(served_within_kick(&d, VIRTIO_BLK_T_FLUSH, 0, 0));
	drv_close(&d);
}

static void test_get_id(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	uint32_t used;
	memset(gpa(IN_GPA, 20), 0xaa, 20);
	assert_int_equal(request(&d, VIRTIO_BLK_T_GET_ID, 0, 0, 20, &used), VIRTIO_BLK_S_OK);
	assert_int_equal(used, 21);
	uint8_t want[20] = "shoji-serial-01"; /* NUL-padded */
	assert_memory_equal(gpa(IN_GPA, 20), want, 20);
	/* Hostile: a buffer too short for the serial. */
	assert_int_equal(request(&d, VIRTIO_BLK_T_GET_ID, 0, 0, 19, &used), VIRTIO_BLK_S_IOERR);
	assert_int_equal(used, 1);
	drv_close(&d);

	/* A 20-byte serial has no NUL at all. */
	struct virtio_blk_config cfg = { .path = raw_path, .serial = "ABCDEFGHIJKLMNOPQRST" };
	drv_open(&d, &cfg);
	assert_int_equal(request(&d, VIRTIO_BLK_T_GET_ID, 0, 0, 20, &used), VIRTIO_BLK_S_OK);
	assert_memory_equal(gpa(IN_GPA, 20), "ABCDEFGHIJKLMNOPQRST", 20);
	drv_close(&d);
	cfg.serial = "ABCDEFGHIJKLMNOPQRSTU";
	assert_null(virtio_blk_create(&cfg, &mem));
}

static void put_seg(unsigned i, uint64_t sector, uint32_t num, uint32_t flags)
{
	uint8_t *p = gpa(OUT_GPA + 16 * i, 16);
	memcpy(p, &sector, 8);
	memcpy(p + 8, &num, 4);
	memcpy(p + 12, &flags, 4);
}

static void expect_range(uint64_t off, size_t len, bool zero)
{
	static uint8_t got[DISK_BYTES];
	file_read(raw_path, got, len, off);
	if (zero) {
		assert_true(is_zero(got, len));
		return;
	}
	for (size_t i = 0; i < len; i++)
		assert_int_equal(got[i], pattern_byte(off + i));
}

static void test_discard(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	put_seg(0, 8, 8, 0);
	put_seg(1, 64, 16, 0);
	assert_int_equal(request(&d, VIRTIO_BLK_T_DISCARD, 0, 32, 0, NULL), VIRTIO_BLK_S_OK);
	expect_range(0, 8 * 512, false);
	expect_range(8 * 512, 8 * 512, true);
	expect_range(16 * 512, 48 * 512, false);
	expect_range(64 * 512, 16 * 512, true);
	expect_range(80 * 512, 512, false);
	/* The unmap flag on a discard and unknown flags are unsupported. */
	put_seg(0, 100, 1, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
	assert_int_equal(request(&d, VIRTIO_BLK_T_DISCARD, 0, 16, 0, NULL), VIRTIO_BLK_S_UNSUPP);
	put_seg(0, 100, 1, 2);
	assert_int_equal(request(&d, VIRTIO_BLK_T_DISCARD, 0, 16, 0, NULL), VIRTIO_BLK_S_UNSUPP);
	expect_range(100 * 512, 512, false);
	drv_close(&d);
}

static void test_write_zeroes(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	put_seg(0, 3, 2, 0);                                  /* unaligned, allocated zeros */
	put_seg(1, 200, 24, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP); /* may punch a hole */
	assert_int_equal(request(&d, VIRTIO_BLK_T_WRITE_ZEROES, 0, 32, 0, NULL), VIRTIO_BLK_S_OK);
	expect_range(2 * 512, 512, false);
	expect_range(3 * 512, 2 * 512, true);
	expect_range(5 * 512, 512, false);
	expect_range(199 * 512, 512, false);
	expect_range(200 * 512, 24 * 512, true);
	expect_range(224 * 512, 512, false);
	put_seg(0, 300, 1, 4);
	assert_int_equal(request(&d, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, 0, NULL), VIRTIO_BLK_S_UNSUPP);
	expect_range(300 * 512, 512, false);
	drv_close(&d);
}

static void test_unsupported_types(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	const uint32_t types[] = { 2, 3, 5, VIRTIO_BLK_T_GET_LIFETIME, VIRTIO_BLK_T_SECURE_ERASE,
				   0x80000000u, UINT32_MAX };
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		uint32_t used;
		assert_int_equal(request(&d, types[i], 0, 0, 512, &used), VIRTIO_BLK_S_UNSUPP);
		assert_int_equal(used, 1);
	}
	/* DISCARD and WRITE_ZEROES need their features. */
	virtio_blk_ops.reset(d.blk);
	drv_start(&d, VIRTIO_FEATURE(VIRTIO_BLK_F_FLUSH));
	put_seg(0, 8, 8, 0);
	assert_int_equal(request(&d, VIRTIO_BLK_T_DISCARD, 0, 16, 0, NULL), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(request(&d, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, 0, NULL), VIRTIO_BLK_S_UNSUPP);
	expect_range(8 * 512, 8 * 512, false);
	drv_close(&d);
}

/* ---- hostile requests: each completes with an error status ---- */

static void test_short_header(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	write_hdr(0, VIRTIO_BLK_T_IN, 0);
	struct seg s1[] = { { HDR_GPA, 15, false }, { IN_GPA, 512, true }, { STATUS_GPA, 1, true } };
	drv_publish(&d, s1, 3, false);
	struct seg s2[] = { { STATUS_GPA + 1, 1, true } }; /* no header at all */
	*gpa(STATUS_GPA, 2) = 0xee;
	*gpa(STATUS_GPA + 1, 1) = 0xee;
	drv_publish(&d, s2, 1, false);
	drv_kick(&d);
	assert_int_equal(drv_take_used(&d), 1);
	assert_int_equal(drv_take_used(&d), 1);
	assert_int_equal(*gpa(STATUS_GPA, 1), VIRTIO_BLK_S_IOERR);
	assert_int_equal(*gpa(STATUS_GPA + 1, 1), VIRTIO_BLK_S_IOERR);
	assert_int_equal(d.vd.needs_reset, 0);
	drv_close(&d);
}

static void test_no_status_byte(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	write_hdr(0, VIRTIO_BLK_T_FLUSH, 0);
	struct seg s[] = { { HDR_GPA, 16, false } };
	drv_publish(&d, s, 1, false);
	drv_kick(&d);
	/* Completed, not dropped: the driver gets its buffer back. */
	assert_int_equal(drv_take_used(&d), 0);
	assert_int_equal(d.vd.needs_reset, 0);
	/* The device still serves the next request. */
	assert_int_equal(request(&d, VIRTIO_BLK_T_IN, 0, 0, 512, NULL), VIRTIO_BLK_S_OK);
	drv_close(&d);
}

static void test_out_of_range(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	const struct {
		uint64_t sector;
		uint32_t len;
	} bad[] = {
		{ DISK_SECTORS, 512 },            /* just past the end */
		{ DISK_SECTORS - 1, 1024 },       /* straddles the end */
		{ UINT64_MAX / 512 + 1, 512 },    /* sector * 512 overflows */
		{ UINT64_MAX / 512, 512 },        /* offset + length overflows */
		{ UINT64_MAX, 512 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint32_t used;
		assert_int_equal(request(&d, VIRTIO_BLK_T_IN, bad[i].sector, 0, bad[i].len, &used),
				 VIRTIO_BLK_S_IOERR);
		assert_int_equal(used, 1);
		assert_int_equal(request(&d, VIRTIO_BLK_T_OUT, bad[i].sector, bad[i].len, 0, &used),
				 VIRTIO_BLK_S_IOERR);
	}
	/* Zero-length request at the very end is fine; one sector past is not. */
	assert_int_equal(request(&d, VIRTIO_BLK_T_IN, DISK_SECTORS, 0, 0, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(request(&d, VIRTIO_BLK_T_IN, DISK_SECTORS + 1, 0, 0, NULL),
			 VIRTIO_BLK_S_IOERR);
	expect_range(0, DISK_BYTES, false);
	drv_close(&d);
}

static void test_unaligned_length(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	const uint32_t lens[] = { 1, 100, 511, 513, 1023 };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		assert_int_equal(request(&d, VIRTIO_BLK_T_IN, 0, 0, lens[i], NULL), VIRTIO_BLK_S_IOERR);
		assert_int_equal(request(&d, VIRTIO_BLK_T_OUT, 0, lens[i], 0, NULL), VIRTIO_BLK_S_IOERR);
	}
	expect_range(0, 4096, false);
	drv_close(&d);
}

static void test_bad_segments(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	const uint32_t types[] = { VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES };
	for (size_t t = 0; t < 2; t++) {
		uint32_t type = types[t];
		/* No segment, a partial one, one too many. */
		assert_int_equal(request(&d, type, 0, 0, 0, NULL), VIRTIO_BLK_S_IOERR);
		put_seg(0, 8, 8, 0);
		assert_int_equal(request(&d, type, 0, 15, 0, NULL), VIRTIO_BLK_S_IOERR);
		assert_int_equal(request(&d, type, 0, 17, 0, NULL), VIRTIO_BLK_S_IOERR);
		for (unsigned i = 0; i <= VIRTIO_BLK_MAX_DISCARD_SEG; i++)
			put_seg(i, 8 * i, 8, 0);
		assert_int_equal(request(&d, type, 0, 16 * (VIRTIO_BLK_MAX_DISCARD_SEG + 1), 0, NULL),
				 VIRTIO_BLK_S_IOERR);
		/* A segment beyond the disk, overflowing, or longer than the maximum;
		 * the good first segment must not have been applied. */
		const uint64_t sectors[] = { DISK_SECTORS, DISK_SECTORS - 1, UINT64_MAX / 512 + 1,
					     UINT64_MAX };
		for (size_t i = 0; i < sizeof(sectors) / sizeof(sectors[0]); i++) {
			put_seg(0, 8, 8, 0);
			put_seg(1, sectors[i], 2, 0);
			assert_int_equal(request(&d, type, 0, 32, 0, NULL), VIRTIO_BLK_S_IOERR);
		}
		put_seg(1, 0, VIRTIO_BLK_MAX_DISCARD_SECTORS + 1, 0);
		assert_int_equal(request(&d, type, 0, 32, 0, NULL), VIRTIO_BLK_S_IOERR);
		expect_range(0, 32 * 8 * 512, false);
		/* The boundary: up to the last sector is fine. */
		put_seg(0, DISK_SECTORS - 1, 1, 0);
		assert_int_equal(request(&d, type, 0, 16, 0, NULL), VIRTIO_BLK_S_OK);
		make_raw_image();
	}
	drv_close(&d);
}

/*
 * A DISCARD or WRITE_ZEROES request may cover at most max_discard_sectors
 * (1 GiB) in all its segments, and at most the disk: more, spread over
 * segments that are each fine, is completed with IOERR (not dropped) and
 * nothing of it is done. Before, 32 segments of 2 GiB each were accepted.
 */
static void test_zeroing_request_bounded(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	const uint32_t types[] = { VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES };
	for (size_t t = 0; t < 2; t++) {
		/* Two segments, each the whole (1 MiB) disk: twice the disk. */
		put_seg(0, 0, DISK_SECTORS, 0);
		put_seg(1, 0, DISK_SECTORS, 0);
		assert_int_equal(request(&d, types[t], 0, 32, 0, NULL), VIRTIO_BLK_S_IOERR);
		assert_int_equal(drv_used_hdr()[1], d.used_seen); /* completed, not dropped */
		expect_range(0, DISK_BYTES, false);
	}
	drv_close(&d);

	/* A sparse 4 GiB disk: 1 GiB in two segments is the limit, 1.5 GiB in
	 * three is refused. Unmapping keeps the file sparse. */
	char big[160];
	snprintf(big, sizeof(big), "%s/big.raw", dir);
	int fd = open(big, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)4 << 30), 0);
	const uint64_t marker_sector = 3u << 20; /* 1.5 GiB */
	assert_int_equal(pwrite(fd, "keep", 4, (off_t)(marker_sector * 512)), 4);
	struct virtio_blk_config cfg = { .path = big, .format = "raw", .serial = "big" };
	drv_open(&d, &cfg);
	const uint32_t half_gib = 1u << 20; /* sectors */
	for (size_t t = 0; t < 2; t++) {
		uint32_t flags = types[t] == VIRTIO_BLK_T_WRITE_ZEROES ?
				 VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;
		for (unsigned i = 0; i < 3; i++)
			put_seg(i, (uint64_t)i * half_gib, half_gib, flags);
		assert_int_equal(request(&d, types[t], 0, 48, 0, NULL), VIRTIO_BLK_S_IOERR);
		char got[4] = { 0 };
		assert_int_equal(pread(fd, got, 4, (off_t)(marker_sector * 512)), 4);
		assert_memory_equal(got, "keep", 4);
		assert_int_equal(request(&d, types[t], 0, 32, 0, NULL), VIRTIO_BLK_S_OK);
	}
	drv_close(&d);
	close(fd);
	unlink(big);
}

/* A chain the walker refuses puts the device in DEVICE_NEEDS_RESET, after
 * the good requests before it were completed and signalled. */
static void test_broken_chain(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	publish_read(&d, 0, 1);
	struct seg s[] = { { HDR_GPA + 32, 16, false }, { RAM_SIZE - 8, 16, true } };
	drv_publish(&d, s, 2, false);
	drv_notify(&d);
	assert_int_equal(d.vd.needs_reset, 1);
	assert_non_null(strstr(d.vd.why, "outside guest RAM"));
	/* The read before it is served but not returned: the queue stays broken
	 * until the driver resets the device. (A read on the ring gets its
	 * status when the completion is reaped, at the next notify.) */
	virtio_blk_drain(d.blk);
	/* Further kicks find the queue broken and do nothing else. */
	drv_notify(&d);
	assert_int_equal(*gpa(STATUS_GPA, 1), VIRTIO_BLK_S_OK);
	/* On the vCPU thread the read goes on the vCPU ring, and may finish
	 * (from the page cache, at once) before the I/O thread pops the broken
	 * chain behind it; it is then returned, as it may be. */
	uint16_t returned = drv_on_vcpu(&d) ? drv_used_hdr()[1] : 0;
	assert_int_equal(drv_used_hdr()[1], returned);
	assert_true(returned <= 1);
	assert_int_equal(d.vd.interrupt_calls, returned);

	/* A loop, after a reset. */
	virtio_blk_ops.reset(d.blk);
	drv_start(&d, virtio_blk_ops.features(d.blk));
	drv_desc()[0] = (struct vring_desc){ HDR_GPA, 16, VRING_DESC_F_NEXT, 1 };
	drv_desc()[1] = (struct vring_desc){ HDR_GPA, 16, VRING_DESC_F_NEXT, 0 };
	drv_avail()[2] = 0;
	drv_avail()[1] = 1;
	d.vd.needs_reset = 0;
	drv_notify(&d);
	assert_int_equal(d.vd.needs_reset, 1);
	assert_non_null(strstr(d.vd.why, "loop"));
	drv_close(&d);
}

/* ---- reset, read-only, lock, interrupts ---- */

static void test_reset_mid_io(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	/* Two requests the driver published but the device had not served. */
	publish_read(&d, 0, 1);
	publish_read(&d, 1, 2);
	virtio_blk_ops.reset(d.blk);
	/* A late kick after reset touches nothing. */
	drv_kick(&d);
	assert_int_equal(drv_used_hdr()[1], 0);
	assert_int_equal(*gpa(STATUS_GPA, 1), 0xee);

	/* The driver starts over with fresh rings and continues. */
	drv_start(&d, virtio_blk_ops.features(d.blk));
	memset(gpa(OUT_GPA, 512), 0x77, 512);
	assert_int_equal(request(&d, VIRTIO_BLK_T_OUT, 5, 512, 0, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(request(&d, VIRTIO_BLK_T_IN, 5, 0, 512, NULL), VIRTIO_BLK_S_OK);
	assert_memory_equal(gpa(IN_GPA, 512), gpa(OUT_GPA, 512), 512);
	uint8_t got[512];
	file_read(raw_path, got, 512, 5 * 512);
	assert_memory_equal(got, gpa(OUT_GPA, 512), 512);

	/* Reset with served requests in the used ring, then again. */
	publish_read(&d, 0, 1);
	drv_kick(&d);
	virtio_blk_ops.reset(d.blk);
	drv_start(&d, virtio_blk_ops.features(d.blk));
	assert_int_equal(request(&d, VIRTIO_BLK_T_IN, 6, 0, 512, NULL), VIRTIO_BLK_S_OK);
	drv_close(&d);
}

static void test_read_only(void **state)
{
	(void)state;
	struct drv d;
	struct virtio_blk_config cfg = { .path = raw_path, .format = "raw", .read_only = true };
	chmod(raw_path, 0400); /* a read-only disk needs no write permission */
	drv_open(&d, &cfg);
	uint64_t f = virtio_blk_ops.features(d.blk);
	assert_true(f & VIRTIO_FEATURE(VIRTIO_BLK_F_RO));
	assert_false(f & VIRTIO_FEATURE(VIRTIO_BLK_F_DISCARD));
	assert_false(f & VIRTIO_FEATURE(VIRTIO_BLK_F_WRITE_ZEROES));
	memset(gpa(OUT_GPA, 512), 0x11, 512);
	assert_int_equal(request(&d, VIRTIO_BLK_T_OUT, 0, 512, 0, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(&d, VIRTIO_BLK_T_IN, 0, 0, 512, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(request(&d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, NULL), VIRTIO_BLK_S_OK);
	put_seg(0, 0, 8, 0);
	assert_int_not_equal(request(&d, VIRTIO_BLK_T_DISCARD, 0, 16, 0, NULL), VIRTIO_BLK_S_OK);
	assert_int_not_equal(request(&d, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, 0, NULL), VIRTIO_BLK_S_OK);
	/* Even a driver that accepted DISCARD cannot change a read-only disk. */
	virtio_blk_ops.reset(d.blk);
	drv_start(&d, VIRTIO_FEATURE(VIRTIO_BLK_F_DISCARD) | VIRTIO_FEATURE(VIRTIO_BLK_F_WRITE_ZEROES));
	assert_int_equal(request(&d, VIRTIO_BLK_T_DISCARD, 0, 16, 0, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(&d, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, 0, NULL), VIRTIO_BLK_S_IOERR);
	drv_close(&d);
	chmod(raw_path, 0600);
	expect_range(0, 8 * 512, false);
}

struct create_arg {
	struct virtio_blk_config cfg;
	struct virtio_blk *blk;
};

static void create_fn(void *arg)
{
	struct create_arg *a = arg;
	a->blk = virtio_blk_create(&a->cfg, &mem);
}

static void test_lock_conflict(void **state)
{
	(void)state;
	struct virtio_blk_config w = { .path = raw_path };
	struct virtio_blk_config r = { .path = raw_path, .read_only = true };
	struct virtio_blk *first = virtio_blk_create(&w, &mem);
	assert_non_null(first);

	struct create_arg a = { .cfg = w };
	const char *log = capture_stderr(create_fn, &a);
	assert_null(a.blk);
	assert_non_null(strstr(log, raw_path));
	assert_non_null(strstr(log, "is in use: another VM or program"));
	const char *nl = strchr(log, '\n');
	assert_true(nl && nl[1] == '\0'); /* exactly one line */

	a.cfg = r; /* nor may anyone read it while it is written */
	log = capture_stderr(create_fn, &a);
	assert_null(a.blk);
	assert_non_null(strstr(log, "is in use: another VM or program"));

	virtio_blk_destroy(first);
	/* Readers share; a writer is then refused. */
	first = virtio_blk_create(&r, &mem);
	struct virtio_blk *second = virtio_blk_create(&r, &mem);
	assert_non_null(first);
	assert_non_null(second);
	a.cfg = w;
	capture_stderr(create_fn, &a);
	assert_null(a.blk);
	virtio_blk_destroy(first);
	virtio_blk_destroy(second);
	/* Once everyone is gone, a writer gets it. */
	second = virtio_blk_create(&w, &mem);
	assert_non_null(second);
	virtio_blk_destroy(second);
}

static void test_open_errors(void **state)
{
	(void)state;
	char missing[160];
	snprintf(missing, sizeof(missing), "%s/missing.raw", dir);
	struct virtio_blk_config cfg = { .path = missing };
	assert_null(virtio_blk_create(&cfg, &mem));
	cfg = (struct virtio_blk_config){ .path = raw_path, .format = "vmdk" };
	assert_null(virtio_blk_create(&cfg, &mem));
	/* The failed open left no lock behind. */
	cfg.format = "raw";
	struct virtio_blk *b = virtio_blk_create(&cfg, &mem);
	assert_non_null(b);
	virtio_blk_destroy(b);
}

/*
 * A qcow2 disk names its own backing file: one naming a host file outside
 * the image's directory (the default) or outside backing-dir is refused
 * with one line; one inside is used.
 */
static void test_backing_confined(void **state)
{
	(void)state;
	char secret[160], over[160], good[160];
	snprintf(secret, sizeof(secret), "%s.secret", dir); /* beside dir, not in it */
	snprintf(over, sizeof(over), "%s/hostile.qcow2", dir);
	snprintf(good, sizeof(good), "%s/good.qcow2", dir);
	int fd = open(secret, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	close(fd);
	struct block_create_opts co = { .size = 4096, .backing_file = secret, .backing_format = "raw" };
	assert_int_equal(block_create(over, "qcow2", &co), 0);
	co.backing_file = "disk.raw";
	assert_int_equal(block_create(good, "qcow2", &co), 0);

	struct create_arg a = { .cfg = { .path = over, .format = "qcow2", .read_only = true } };
	const char *log = capture_stderr(create_fn, &a);
	assert_null(a.blk);
	assert_non_null(strstr(log, "outside the directories allowed"));
	const char *nl = strchr(log, '\n');
	assert_true(nl && nl[1] == '\0'); /* exactly one line */
	/* backing-dir replaces the default: the image's own directory is then
	 * not allowed either. */
	a.cfg = (struct virtio_blk_config){ .path = good, .format = "qcow2", .read_only = true,
					    .backing_dirs = { "/proc" } };
	capture_stderr(create_fn, &a);
	assert_null(a.blk);
	a.cfg.backing_dirs[0] = dir;
	capture_stderr(create_fn, &a);
	assert_non_null(a.blk);
	virtio_blk_destroy(a.blk);
	a.cfg.backing_dirs[0] = NULL; /* the default: good.qcow2's own directory */
	capture_stderr(create_fn, &a);
	assert_non_null(a.blk);
	virtio_blk_destroy(a.blk);
	unlink(over);
	unlink(good);
	unlink(secret);
}

static void test_interrupts_event_idx(void **state)
{
	(void)state;
	if (test_vcpu_kicks) {
		/* The counts below are of one thread's batches; the vCPU thread
		 * and the I/O thread split a batch between them. */
		print_message("SKIP: interrupt counts per batch are the I/O thread's; test_vcpu_placement counts the vCPU path's\n");
		return;
	}
	struct drv d;
	drv_open_raw(&d);
	assert_true(d.vd.vq.event_idx);
	assert_true(d.vd.vq.indirect);
	uint16_t *used_event = &drv_avail()[2 + QSIZE];
	uint16_t *avail_event = (uint16_t *)&drv_used_ring()[2 * QSIZE];

	/* A batch of three: one interrupt call, one interrupt. */
	for (unsigned i = 0; i < 3; i++)
		publish_read(&d, i, i);
	drv_kick(&d);
	assert_int_equal(drv_used_hdr()[1], 3);
	assert_int_equal(d.vd.interrupt_calls, 1);
	assert_int_equal(d.vd.interrupts, 1);
	assert_int_equal(*avail_event, 3); /* notify me when entry 3 is published */

	/* The driver wants an interrupt only once used idx passes 5. */
	*used_event = 5;
	for (unsigned i = 0; i < 3; i++) {
		publish_read(&d, 0, 0);
		drv_kick(&d);
	}
	assert_int_equal(drv_used_hdr()[1], 6);
	assert_int_equal(d.vd.interrupt_calls, 4);
	assert_int_equal(d.vd.interrupts, 2); /* only for used idx 6 */
	publish_read(&d, 0, 0);
	drv_kick(&d);
	assert_int_equal(d.vd.interrupts, 2);
	/* A kick with nothing new asks for no interrupt at all. */
	drv_kick(&d);
	assert_int_equal(d.vd.interrupt_calls, 5);
	d.used_seen = drv_used_hdr()[1];
	drv_close(&d);

	/* Without EVENT_IDX, VRING_AVAIL_F_NO_INTERRUPT silences the device. */
	struct drv e;
	struct virtio_blk_config cfg = { .path = raw_path };
	memset(&e, 0, sizeof(e));
	e.blk = virtio_blk_create(&cfg, &mem);
	assert_non_null(e.blk);
	drv_start(&e, VIRTIO_FEATURE(VIRTIO_BLK_F_FLUSH));
	assert_false(e.vd.vq.event_idx);
	drv_avail()[0] = VRING_AVAIL_F_NO_INTERRUPT;
	publish_read(&e, 0, 0);
	drv_kick(&e);
	assert_int_equal(e.vd.interrupt_calls, 1);
	assert_int_equal(e.vd.interrupts, 0);
	assert_int_equal(drv_used_hdr()[0], 0); /* notifications left enabled */
	drv_close(&e);
}

/* A raw image is never taken for qcow2, whatever the guest writes in it. */
static void test_raw_never_probed(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	uint8_t *out = gpa(OUT_GPA, 512);
	memset(out, 0, 512);
	memcpy(out, "QFI\xfb\0\0\0\3", 8);
	assert_int_equal(request(&d, VIRTIO_BLK_T_OUT, 0, 512, 0, NULL), VIRTIO_BLK_S_OK);
	drv_close(&d);
	drv_open_raw(&d);
	uint64_t cap;
	virtio_blk_ops.config_read(d.blk, VIRTIO_BLK_CFG_CAPACITY, (uint8_t *)&cap, 8);
	assert_int_equal(cap, DISK_SECTORS);
	assert_int_equal(request(&d, VIRTIO_BLK_T_IN, 0, 0, 512, NULL), VIRTIO_BLK_S_OK);
	assert_memory_equal(gpa(IN_GPA, 8), "QFI\xfb\0\0\0\3", 8);
	drv_close(&d);
}

/* Whether the image's file system takes O_DIRECT (tmpfs does not); when
 * not and `skipping` names a case, says that the case is skipped. */
static bool direct_supported(const char *skipping)
{
	int fd = open(raw_path, O_RDONLY | O_DIRECT);
	if (fd >= 0)
		close(fd);
	else if (skipping)
		print_message("SKIP %s: %s does not support O_DIRECT\n", skipping, dir);
	return fd >= 0;
}

static void test_direct(void **state)
{
	(void)state;
	if (!direct_supported("direct=on"))
		return;
	struct drv d;
	struct virtio_blk_config cfg = { .path = raw_path, .direct = true };
	drv_open(&d, &cfg);
	/* Guest buffers need not be aligned: the block layer bounces them. */
	memset(gpa(OUT_GPA + 3, 512), 0x3c, 512);
	write_hdr(0, VIRTIO_BLK_T_OUT, 9);
	struct seg s[] = { { HDR_GPA, 16, false }, { OUT_GPA + 3, 512, false }, { STATUS_GPA, 1, true } };
	drv_publish(&d, s, 3, false);
	drv_kick(&d);
	drv_take_used(&d);
	assert_int_equal(*gpa(STATUS_GPA, 1), VIRTIO_BLK_S_OK);
	assert_int_equal(request(&d, VIRTIO_BLK_T_IN, 9, 0, 512, NULL), VIRTIO_BLK_S_OK);
	assert_memory_equal(gpa(IN_GPA, 512), gpa(OUT_GPA + 3, 512), 512);
	drv_close(&d);
}

/* The data of one request as the segments `lens` at `base` (gaps of
 * `gap` bytes between them, the one at index `odd` moved by 3 bytes so
 * O_DIRECT cannot take it as it is), through an indirect table. */
static uint8_t vec_request(struct drv *d, uint32_t type, uint64_t sector, uint64_t base,
			   const uint32_t *lens, unsigned n, uint32_t gap, unsigned odd)
{
	static struct seg s[64];
	assert_true(n + 2 <= 64);
	write_hdr(0, type, sector);
	s[0] = (struct seg){ HDR_GPA, 16, false };
	uint64_t a = base;
	for (unsigned i = 0; i < n; i++) {
		s[1 + i] = (struct seg){ a + (i == odd ? 3 : 0), lens[i], type == VIRTIO_BLK_T_IN };
		a += lens[i] + gap;
	}
	s[n + 1] = (struct seg){ STATUS_GPA, 1, true };
	*gpa(STATUS_GPA, 1) = 0xee;
	drv_publish(d, s, n + 2, true);
	drv_kick(d);
	drv_take_used(d);
	return *gpa(STATUS_GPA, 1);
}

/* Vectored requests go to the file as whole vectors where they can and by
 * segment where O_DIRECT needs a bounce: aligned pages, a page at an odd
 * address, lengths that leave the next segment unaligned on the disk. */
static void vectored_case(bool direct)
{
	struct drv d;
	struct virtio_blk_config cfg = { .path = raw_path, .direct = direct };
	drv_open(&d, &cfg);
	uint32_t lens[24];
	unsigned n = 0;
	uint64_t total = 0;
	for (; n < 16; n++)
		lens[n] = 4096;
	lens[n++] = 4096; /* index 16: moved to an odd address */
	lens[n++] = 512;
	lens[n++] = 3584;
	for (; n < 24; n++)
		lens[n] = 4096;
	for (unsigned i = 0; i < n; i++)
		total += lens[i];
	const uint32_t gap = 8192;
	uint8_t *out = gpa(OUT_GPA, 0x100000);
	for (unsigned i = 0; i < 0x100000; i++)
		out[i] = (uint8_t)(i * 31 + (direct ? 7 : 1));
	assert_int_equal(vec_request(&d, VIRTIO_BLK_T_OUT, 16, OUT_GPA, lens, n, gap, 16),
			 VIRTIO_BLK_S_OK);
	memset(gpa(IN_GPA, 0x100000), 0, 0x100000);
	assert_int_equal(vec_request(&d, VIRTIO_BLK_T_IN, 16, IN_GPA, lens, n, gap, 16),
			 VIRTIO_BLK_S_OK);
	drv_close(&d);
	static uint8_t file[0x40000];
	file_read(raw_path, file, total, 16 * 512);
	uint64_t at = 0, a = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t shift = i == 16 ? 3 : 0;
		assert_memory_equal(file + at, out + a + shift, lens[i]);
		assert_memory_equal(gpa(IN_GPA + a + shift, lens[i]), out + a + shift, lens[i]);
		at += lens[i];
		a += lens[i] + gap;
	}
	expect_range(16 * 512 + total, 4096, false);
	expect_range(0, 16 * 512, false);
}

static void test_vectored(void **state)
{
	(void)state;
	vectored_case(false);
	if (!direct_supported("vectored direct=on"))
		return;
	make_raw_image();
	vectored_case(true);
}

/* ---- many requests in flight ---- */

#define NREQ 64
#define REQ_BYTES 4096u

/* Publishes request `slot`: REQ_BYTES at sector 8*slot, from OUT or into IN. */
static uint16_t publish_slot(struct drv *d, unsigned slot, uint32_t type)
{
	bool in = type == VIRTIO_BLK_T_IN;
	write_hdr(slot, type, 8 * slot);
	uint64_t data = (in ? IN_GPA : OUT_GPA) + (uint64_t)REQ_BYTES * slot;
	struct seg s[3] = {
		{ HDR_GPA + 32 * slot, 16, false },
		{ data, REQ_BYTES, in },
		{ STATUS_GPA + slot, 1, true },
	};
	*gpa(STATUS_GPA + slot, 1) = 0xee;
	uint16_t head = d->next_desc;
	drv_publish(d, s, 3, false);
	return head;
}

/* Every head of heads[] comes back exactly once, with status OK and the
 * used length of its type. */
static void expect_all_used(struct drv *d, const uint16_t *heads, uint32_t len)
{
	bool seen[NREQ] = { false };
	for (unsigned k = 0; k < NREQ; k++) {
		uint32_t id = drv_used_ring()[2 * (d->used_seen % QSIZE)];
		assert_int_equal(drv_take_used(d), len);
		unsigned slot = NREQ;
		for (unsigned i = 0; i < NREQ; i++)
			if (heads[i] == id)
				slot = i;
		assert_true(slot < NREQ && !seen[slot]);
		seen[slot] = true;
		assert_int_equal(*gpa(STATUS_GPA + slot, 1), VIRTIO_BLK_S_OK);
	}
}

/* 64 writes then 64 reads outstanding at once on the disk `cfg`; the file
 * `raw_view` (if not NULL) then holds what was written. */
static void many_case(const struct virtio_blk_config *cfg, const char *raw_view)
{
	struct drv d;
	drv_open(&d, cfg);
	uint8_t *out = gpa(OUT_GPA, NREQ * REQ_BYTES);
	for (unsigned i = 0; i < NREQ * REQ_BYTES; i++)
		out[i] = (uint8_t)(i * 13 + i / 4096);
	uint16_t heads[NREQ];
	for (unsigned i = 0; i < NREQ; i++)
		heads[i] = publish_slot(&d, i, VIRTIO_BLK_T_OUT);
	drv_notify(&d);
	drv_wait_used(&d, NREQ);
	expect_all_used(&d, heads, 1);

	memset(gpa(IN_GPA, NREQ * REQ_BYTES), 0, NREQ * REQ_BYTES);
	for (unsigned i = 0; i < NREQ; i++)
		heads[i] = publish_slot(&d, i, VIRTIO_BLK_T_IN);
	drv_notify(&d);
	drv_wait_used(&d, 2 * NREQ);
	expect_all_used(&d, heads, REQ_BYTES + 1);
	assert_memory_equal(gpa(IN_GPA, NREQ * REQ_BYTES), out, NREQ * REQ_BYTES);
	assert_int_equal(d.vd.needs_reset, 0);
	drv_close(&d);
	if (!raw_view)
		return;
	static uint8_t file[NREQ * REQ_BYTES];
	file_read(raw_view, file, sizeof(file), 0);
	assert_memory_equal(file, out, sizeof(file));
}

static void test_many_outstanding(void **state)
{
	(void)state;
	struct virtio_blk_config cfg = { .path = raw_path, .format = "raw" };
	many_case(&cfg, raw_path);

	/* qcow2: concurrent first writes allocate clusters side by side. */
	char img[160], view[160], cmd[640];
	snprintf(img, sizeof(img), "%s/many.qcow2", dir);
	snprintf(view, sizeof(view), "%s/many-as.raw", dir);
	snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 -o cluster_size=4096 '%s' 1M 2>/dev/null",
		 img);
	if (system("command -v qemu-img >/dev/null 2>&1") != 0 || system(cmd) != 0) {
		print_message("SKIP qcow2 case: qemu-img is not installed\n");
		return;
	}
	cfg = (struct virtio_blk_config){ .path = img, .format = "qcow2" };
	many_case(&cfg, NULL);
	snprintf(cmd, sizeof(cmd), "qemu-img check -q '%s' && qemu-img convert -f qcow2 -O raw '%s' '%s'",
		 img, img, view);
	assert_int_equal(system(cmd), 0);
	static uint8_t file[NREQ * REQ_BYTES];
	file_read(view, file, sizeof(file), 0);
	assert_memory_equal(file, gpa(OUT_GPA, sizeof(file)), sizeof(file));
}

/* A driver that re-publishes heads it has not got back cannot have more
 * than the queue's size in flight: all 2 * QSIZE flushes here share one
 * chain, and the device stops taking them at QSIZE until some complete. */
static void test_inflight_bound(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	write_hdr(0, VIRTIO_BLK_T_FLUSH, 0);
	drv_desc()[0] = (struct vring_desc){ HDR_GPA, 16, VRING_DESC_F_NEXT, 1 };
	drv_desc()[1] = (struct vring_desc){ STATUS_GPA, 1, VRING_DESC_F_WRITE, 0 };
	uint16_t *avail = drv_avail();
	uint16_t *avail_event = (uint16_t *)&drv_used_ring()[2 * QSIZE];
	for (unsigned round = 0; round < 2; round++) {
		for (unsigned i = 0; i < QSIZE; i++)
			avail[2 + (avail[1] + i) % QSIZE] = 0;
		__atomic_store_n(&avail[1], (uint16_t)(avail[1] + QSIZE), __ATOMIC_RELEASE);
		drv_notify(&d);
		uint16_t used = drv_used_hdr()[1];
		/* Popped (avail_event) minus returned never exceeds the queue size. */
		assert_true((uint16_t)(*avail_event - used) <= QSIZE);
		assert_int_equal(d.vd.needs_reset, 0);
	}
	drv_wait_used(&d, 2 * QSIZE);
	assert_int_equal(*avail_event, 2 * QSIZE);
	assert_int_equal(d.vd.needs_reset, 0);
	d.used_seen = 2 * QSIZE;
	drv_close(&d);
}

/*
 * A flush covers every write that completed before the flush was
 * submitted: 16 writes complete, then a flush goes in together with 16 more
 * writes (which it need not cover, and which may overtake it). When the
 * flush is in the used ring, the first 16 are in the file. The file is
 * read through another descriptor; that the data is also on stable storage
 * rests on fdatasync (the device calls it after popping the flush, so it
 * follows every write that had completed; see blk_flush()).
 */
static void test_flush_order(void **state)
{
	(void)state;
	struct drv d;
	drv_open_raw(&d);
	uint8_t *out = gpa(OUT_GPA, NREQ * REQ_BYTES);
	for (unsigned i = 0; i < NREQ * REQ_BYTES; i++)
		out[i] = (uint8_t)(i * 29 + 5);
	for (unsigned i = 0; i < 16; i++)
		publish_slot(&d, i, VIRTIO_BLK_T_OUT);
	drv_notify(&d);
	drv_wait_used(&d, 16);
	d.used_seen = 16;

	write_hdr(40, VIRTIO_BLK_T_FLUSH, 0);
	struct seg f[] = { { HDR_GPA + 32 * 40, 16, false }, { STATUS_GPA + 40, 1, true } };
	*gpa(STATUS_GPA + 40, 1) = 0xee;
	uint16_t flush_head = d.next_desc;
	drv_publish(&d, f, 2, false);
	for (unsigned i = 16; i < 32; i++)
		publish_slot(&d, i, VIRTIO_BLK_T_OUT);
	drv_notify(&d);
	int fd = blk_event_fd(d.blk);
	bool flushed = false;
	for (int turns = 0; !flushed; turns++) {
		assert_true(turns < 5000);
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t n;
		if (poll(&p, 1, 1) == 1)
			assert_int_equal(read(fd, &n, sizeof(n)), sizeof(n));
		drv_notify(&d);
		for (; d.used_seen != drv_used_hdr()[1]; d.used_seen++)
			if (drv_used_ring()[2 * (d.used_seen % QSIZE)] == flush_head)
				flushed = true;
	}
	assert_int_equal(*gpa(STATUS_GPA + 40, 1), VIRTIO_BLK_S_OK);
	static uint8_t file[16 * REQ_BYTES];
	file_read(raw_path, file, sizeof(file), 0);
	assert_memory_equal(file, out, sizeof(file));
	drv_wait_used(&d, 33);
	drv_close(&d);
}

/* Reset with requests in flight: once reset returns nothing writes into
 * guest memory, nothing comes back into the old ring, a late completion
 * event is harmless, and the driver starts over on fresh rings. Direct
 * I/O when the file system has it, so the disk is slow enough for some
 * requests to be running when the reset comes. */
static void test_reset_in_flight(void **state)
{
	(void)state;
	struct virtio_blk_config cfg = { .path = raw_path, .direct = direct_supported(NULL) };
	struct drv d;
	for (unsigned round = 0; round < 20; round++) {
		drv_open(&d, &cfg);
		memset(gpa(IN_GPA, NREQ * REQ_BYTES), 0xcc, NREQ * REQ_BYTES);
		for (unsigned i = 0; i < NREQ; i++)
			publish_slot(&d, i, VIRTIO_BLK_T_IN);
		drv_notify(&d);
		/* On the vCPU path the reads on the vCPU ring (32) may already be
		 * back (the I/O thread's notify returned them); nothing may come
		 * after the reset. */
		uint16_t returned = drv_used_hdr()[1];
		assert_true(returned <= (drv_on_vcpu(&d) ? 32 : 0));
		if (round % 2)
			usleep(200); /* let some start */
		virtio_blk_ops.reset(d.blk);
		static uint8_t in[NREQ * REQ_BYTES], status[NREQ];
		memcpy(in, gpa(IN_GPA, sizeof(in)), sizeof(in));
		memcpy(status, gpa(STATUS_GPA, NREQ), NREQ);
		usleep(2000);
		assert_memory_equal(gpa(IN_GPA, sizeof(in)), in, sizeof(in));
		assert_memory_equal(gpa(STATUS_GPA, NREQ), status, NREQ);
		assert_int_equal(drv_used_hdr()[1], returned);
		/* A completion event left over from before the reset. */
		drv_notify(&d);
		assert_int_equal(drv_used_hdr()[1], returned);

		drv_start(&d, virtio_blk_ops.features(d.blk));
		assert_int_equal(request(&d, VIRTIO_BLK_T_IN, 3, 0, 512, NULL), VIRTIO_BLK_S_OK);
		uint8_t want[512];
		file_read(raw_path, want, 512, 3 * 512);
		assert_memory_equal(gpa(IN_GPA, 512), want, 512);
		drv_close(&d);
	}
}

/* Teardown with requests in flight, with and without a reset first: the
 * workers finish or are dropped and joined, the lock is released. */
static void test_teardown_in_flight(void **state)
{
	(void)state;
	for (unsigned round = 0; round < 10; round++) {
		struct drv d;
		drv_open_raw(&d);
		for (unsigned i = 0; i < NREQ; i++)
			publish_slot(&d, i, i % 2 ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT);
		drv_notify(&d);
		if (round % 2)
			virtio_blk_ops.reset(d.blk);
		virtio_blk_destroy(d.blk);
	}
	struct virtio_blk_config cfg = { .path = raw_path };
	struct virtio_blk *b = virtio_blk_create(&cfg, &mem);
	assert_non_null(b);
	virtio_blk_destroy(b);
}

static void test_qcow2(void **state)
{
	(void)state;
	char img[160], out[160], cmd[512];
	snprintf(img, sizeof(img), "%s/disk.qcow2", dir);
	snprintf(out, sizeof(out), "%s/qcow2-as.raw", dir);
	snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 '%s' 1M 2>/dev/null", img);
	if (system("command -v qemu-img >/dev/null 2>&1") != 0 || system(cmd) != 0) {
		print_message("SKIP qcow2 case: qemu-img is not installed\n");
		return;
	}
	struct drv d;
	struct virtio_blk_config cfg = { .path = img, .format = "qcow2" };
	drv_open(&d, &cfg);
	uint8_t *src = gpa(OUT_GPA, 4096);
	for (int i = 0; i < 4096; i++)
		src[i] = (uint8_t)(i * 13);
	assert_int_equal(request(&d, VIRTIO_BLK_T_OUT, 100, 4096, 0, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(request(&d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(request(&d, VIRTIO_BLK_T_IN, 100, 0, 4096, NULL), VIRTIO_BLK_S_OK);
	assert_memory_equal(gpa(IN_GPA, 4096), src, 4096);
	uint8_t want[4096];
	memcpy(want, src, sizeof(want));
	put_seg(0, 101, 2, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
	assert_int_equal(request(&d, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, 0, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(request(&d, VIRTIO_BLK_T_IN, DISK_SECTORS, 0, 512, NULL), VIRTIO_BLK_S_IOERR);
	drv_close(&d);
	/* What qemu-img reads from the image is what the guest wrote. */
	snprintf(cmd, sizeof(cmd), "qemu-img convert -f qcow2 -O raw '%s' '%s'", img, out);
	assert_int_equal(system(cmd), 0);
	uint8_t got[4096];
	file_read(out, got, sizeof(got), 100 * 512);
	memset(want + 512, 0, 1024);
	assert_memory_equal(got, want, sizeof(want));
	snprintf(cmd, sizeof(cmd), "qemu-img check -q '%s'", img);
	assert_int_equal(system(cmd), 0);
}

/*
 * On O_DIRECT, a write O_DIRECT cannot take (a read-modify-write of its
 * 4 KiB block) published behind an aligned write of that block: the
 * aligned write's bytes are never lost under the stale copy. With the ring
 * the device makes the RMW wait for the ring's writes, so it lands second;
 * without the rule, the RMW's copy of the block, read before the ring's
 * write landed, puts the file's old bytes back around its sector.
 */
static void test_rmw_after_ring_write(void **state)
{
	(void)state;
	if (!direct_supported("the RMW ordering case"))
		return;
	struct drv d;
	struct virtio_blk_config cfg = { .path = raw_path, .direct = true };
	drv_open(&d, &cfg);
	/* Eight pairs, one per 4 KiB block k: all of block k, then its second
	 * sector from an odd address, published together. */
	enum { PAIRS = 8 };
	for (unsigned k = 0; k < PAIRS; k++) {
		uint64_t buf = OUT_GPA + k * 16384;
		memset(gpa(buf, 4096), 0xa1, 4096);
		memset(gpa(buf + 8192 + 3, 512), 0xb2, 512);
		write_hdr(2 * k, VIRTIO_BLK_T_OUT, 8 * k);
		write_hdr(2 * k + 1, VIRTIO_BLK_T_OUT, 8 * k + 1);
		struct seg w[] = { { HDR_GPA + 64 * k, 16, false }, { buf, 4096, false },
				   { STATUS_GPA + 2 * k, 1, true } };
		struct seg r[] = { { HDR_GPA + 64 * k + 32, 16, false }, { buf + 8192 + 3, 512, false },
				   { STATUS_GPA + 2 * k + 1, 1, true } };
		drv_publish(&d, w, 3, false);
		drv_publish(&d, r, 3, false);
	}
	drv_notify(&d);
	drv_wait_used(&d, 2 * PAIRS);
	for (unsigned i = 0; i < 2 * PAIRS; i++)
		assert_int_equal(*gpa(STATUS_GPA + i, 1), VIRTIO_BLK_S_OK);
	drv_close(&d);
	static uint8_t blocks[PAIRS * 4096];
	file_read(raw_path, blocks, sizeof(blocks), 0);
	/* Overlapping writes in flight together may land in either order, but
	 * never torn: outside the second sector every byte is the aligned
	 * write's (a stale copy put back would show the file's old bytes),
	 * and the second sector is one write's. With the ring, the first pair
	 * is ordered (the RMW waited for the ring); later pairs both go to the
	 * pool (pool_writes), whose workers run them in either order. */
	for (unsigned k = 0; k < PAIRS; k++) {
		const uint8_t *b = blocks + k * 4096;
		uint8_t second = b[512];
		if (k == 0 && test_aio == VIRTIO_BLK_AIO_AUTO)
			assert_int_equal(second, 0xb2);
		assert_true(second == 0xa1 || second == 0xb2);
		for (unsigned i = 0; i < 4096; i++)
			assert_int_equal(b[i], i >= 512 && i < 1024 ? second : 0xa1);
	}
}

static void create_qcow2_with_aio(void *arg)
{
	const char *img = arg;
	struct virtio_blk_config cfg = { .path = img, .format = "qcow2",
					 .aio = VIRTIO_BLK_AIO_IO_URING };
	assert_null(virtio_blk_create(&cfg, &mem));
}

/* aio=io_uring is a demand: refused for an image the ring cannot serve. */
static void test_io_uring_needs_raw(void **state)
{
	(void)state;
	char img[160], cmd[512];
	snprintf(img, sizeof(img), "%s/aio.qcow2", dir);
	snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 '%s' 1M 2>/dev/null", img);
	if (system("command -v qemu-img >/dev/null 2>&1") != 0 || system(cmd) != 0) {
		print_message("SKIP: qemu-img is not installed\n");
		return;
	}
	const char *log = capture_stderr(create_qcow2_with_aio, img);
	assert_non_null(strstr(log, "aio=io_uring needs a raw image"));
	unlink(img);
}

/* ---- kicks on the vCPU thread (raw disks with io_uring) ---- */

static uint16_t drv_used_idx(void)
{
	return __atomic_load_n(&drv_used_hdr()[1], __ATOMIC_ACQUIRE);
}

/* Waits (5 s at most) until the vCPU ring has a completion, as the vCPU
 * loop would see after KVM_RUN; any system call lets the kernel run the
 * task work that posts it. */
static void wait_vcpu_completion(struct drv *d)
{
	for (int turns = 0; !virtio_blk_ops.vcpu_work_done(d->blk, 0); turns++) {
		assert_true(turns < 50000);
		usleep(100);
	}
}

/* A disk served on the vCPU threads, or (aio=threads) asserted not to be. */
static bool open_vcpu_disk(struct drv *d, bool direct)
{
	struct virtio_blk_config cfg = { .path = raw_path, .direct = direct };
	drv_open(d, &cfg);
	if (test_aio == VIRTIO_BLK_AIO_THREADS) {
		/* No ring: kicks go to the I/O thread through an ioeventfd. */
		assert_false(blk_on_vcpu(d->blk));
		assert_false(virtio_blk_ops.vcpu_work_done(d->blk, 0));
		drv_close(d);
		return false;
	}
	assert_true(blk_on_vcpu(d->blk));
	drv_event_fired(d); /* start from a quiet event fd */
	return true;
}

/* Calls the vCPU's poll, as its loop does after KVM_RUN, until the used
 * index reaches `want`: no I/O thread involved. */
static void vcpu_wait_used(struct drv *d, uint16_t want)
{
	while (drv_used_idx() != want) {
		wait_vcpu_completion(d);
		virtio_blk_ops.queue_notify(d->blk, &d->vd, 0, VIRTIO_ON_VCPU);
	}
}

/* The avail_event the device last published: how far it has popped. */
static uint16_t drv_avail_event(void)
{
	return *(uint16_t *)&drv_used_ring()[2 * QSIZE];
}

/*
 * Where a kick on the vCPU thread puts each request: reads (and O_DIRECT
 * writes) on the vCPU ring, as many as it holds, returned by the vCPU's
 * poll and not by the I/O thread; what is left when the ring is full, and
 * anything that would block, to the I/O thread through the event fd.
 */
static void test_vcpu_placement(void **state)
{
	(void)state;
	bool direct = direct_supported(NULL);
	struct drv d;
	if (!open_vcpu_disk(&d, direct))
		return;
	uint8_t want[REQ_BYTES];
	file_read(raw_path, want, REQ_BYTES, 8 * 5 * 512);

	/* A lone read: submitted here, returned by the poll, one interrupt. */
	publish_slot(&d, 5, VIRTIO_BLK_T_IN);
	virtio_blk_ops.queue_notify(d.blk, &d.vd, 0, VIRTIO_ON_VCPU);
	assert_int_equal(drv_used_idx(), 0);
	wait_vcpu_completion(&d);
	unsigned calls = d.vd.interrupt_calls;
	virtio_blk_ops.queue_notify(d.blk, &d.vd, 0, VIRTIO_ON_VCPU);
	assert_int_equal(drv_used_idx(), 1);
	assert_int_equal(drv_take_used(&d), REQ_BYTES + 1);
	assert_int_equal(*gpa(STATUS_GPA + 5, 1), VIRTIO_BLK_S_OK);
	assert_memory_equal(gpa(IN_GPA + 5 * REQ_BYTES, REQ_BYTES), want, REQ_BYTES);
	assert_int_equal(d.vd.interrupt_calls, calls + 1);
	assert_false(virtio_blk_ops.vcpu_work_done(d.blk, 0));
	/* avail_event asks for the next request's kick. */
	assert_int_equal(drv_avail_event(), 1);

	/* Two at once, then a third kicked while they are in flight: all on
	 * the vCPU ring, the I/O thread never woken. */
	publish_slot(&d, 1, VIRTIO_BLK_T_IN);
	publish_slot(&d, 2, VIRTIO_BLK_T_IN);
	virtio_blk_ops.queue_notify(d.blk, &d.vd, 0, VIRTIO_ON_VCPU);
	publish_slot(&d, 3, VIRTIO_BLK_T_IN);
	virtio_blk_ops.queue_notify(d.blk, &d.vd, 0, VIRTIO_ON_VCPU);
	assert_false(drv_event_fired(&d));
	assert_int_equal(drv_avail_event(), 4);
	vcpu_wait_used(&d, 4);
	d.used_seen = 4;
	for (unsigned slot = 1; slot <= 3; slot++)
		assert_int_equal(*gpa(STATUS_GPA + slot, 1), VIRTIO_BLK_S_OK);
	assert_false(drv_event_fired(&d));

	/* More than the vCPU ring holds (32): it takes 32, the I/O thread the
	 * rest. Each read lands where it was asked for. */
	enum { MANY = 40, FIRST = 10 };
	for (unsigned i = 0; i < MANY; i++)
		publish_slot(&d, FIRST + i, VIRTIO_BLK_T_IN);
	virtio_blk_ops.queue_notify(d.blk, &d.vd, 0, VIRTIO_ON_VCPU);
	assert_int_equal(drv_avail_event(), 4 + 32);
	assert_true(drv_event_fired(&d));
	drv_event(&d);
	drv_wait_used(&d, 4 + MANY);
	d.used_seen = 4 + MANY;
	static uint8_t disk_part[MANY * REQ_BYTES];
	file_read(raw_path, disk_part, sizeof(disk_part), 8 * FIRST * 512);
	assert_memory_equal(gpa(IN_GPA + FIRST * REQ_BYTES, sizeof(disk_part)), disk_part,
			    sizeof(disk_part));
	for (unsigned i = 0; i < MANY; i++)
		assert_int_equal(*gpa(STATUS_GPA + FIRST + i, 1), VIRTIO_BLK_S_OK);
	drv_event_fired(&d);

	/* A flush is the I/O thread's (it blocks): handed over, then served
	 * by the pool; the read behind it is left in the avail ring for the
	 * I/O thread too (the vCPU stops at the first request handed). */
	write_hdr(6, VIRTIO_BLK_T_FLUSH, 0);
	struct seg f[] = { { HDR_GPA + 32 * 6, 16, false }, { STATUS_GPA + 6, 1, true } };
	*gpa(STATUS_GPA + 6, 1) = 0xee;
	drv_publish(&d, f, 2, false);
	publish_slot(&d, 7, VIRTIO_BLK_T_IN);
	virtio_blk_ops.queue_notify(d.blk, &d.vd, 0, VIRTIO_ON_VCPU);
	assert_true(drv_event_fired(&d));
	assert_int_equal(drv_avail_event(), 4 + MANY + 1);
	assert_int_equal(drv_used_idx(), 4 + MANY);
	drv_event(&d);
	drv_wait_used(&d, 4 + MANY + 2);
	assert_int_equal(*gpa(STATUS_GPA + 6, 1), VIRTIO_BLK_S_OK);
	assert_int_equal(*gpa(STATUS_GPA + 7, 1), VIRTIO_BLK_S_OK);
	drv_close(&d);

	/* A lone write to a buffered file is the I/O thread's too (the kernel
	 * would hand it to a worker thread); it serves it at once. */
	if (!open_vcpu_disk(&d, false))
		return;
	memset(gpa(OUT_GPA + 7 * REQ_BYTES, REQ_BYTES), 0x6b, REQ_BYTES);
	publish_slot(&d, 7, VIRTIO_BLK_T_OUT);
	virtio_blk_ops.queue_notify(d.blk, &d.vd, 0, VIRTIO_ON_VCPU);
	assert_true(drv_event_fired(&d));
	assert_int_equal(drv_used_idx(), 0);
	drv_event(&d);
	assert_int_equal(drv_used_idx(), 1);
	assert_int_equal(*gpa(STATUS_GPA + 7, 1), VIRTIO_BLK_S_OK);
	d.used_seen = 1;
	uint8_t got[REQ_BYTES];
	file_read(raw_path, got, REQ_BYTES, 8 * 7 * 512);
	assert_memory_equal(got, gpa(OUT_GPA + 7 * REQ_BYTES, REQ_BYTES), REQ_BYTES);
	drv_close(&d);
}

/*
 * What the design rests on: a read the vCPU thread submitted interrupts
 * that thread's sleep when it completes (epoll_wait returns -EINTR, as
 * KVM_RUN does), or signals the event fd when a kernel worker finished it;
 * it never completes silently. A ring set up for cooperative task running
 * would fail this. O_DIRECT, so the read is still in flight when the
 * thread goes to sleep.
 */
static void test_vcpu_completion_wakes_submitter(void **state)
{
	(void)state;
	if (!direct_supported("the vCPU wake-up case"))
		return;
	struct drv d;
	if (!open_vcpu_disk(&d, true))
		return;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	assert_true(ep >= 0);
	struct epoll_event ev = { .events = EPOLLIN };
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, blk_event_fd(d.blk), &ev), 0);
	unsigned interrupted = 0, slept = 0;
	for (unsigned round = 0; round < 16; round++) {
		unsigned slot = round % 8;
		publish_slot(&d, slot, VIRTIO_BLK_T_IN);
		virtio_blk_ops.queue_notify(d.blk, &d.vd, 0, VIRTIO_ON_VCPU);
		if (!virtio_blk_ops.vcpu_work_done(d.blk, 0)) {
			slept++;
			int n = epoll_wait(ep, &ev, 1, 5000);
			assert_true(n == 1 || (n < 0 && errno == EINTR)); /* 0: a lost wake-up */
			interrupted += n < 0;
			drv_event_fired(&d);
		}
		wait_vcpu_completion(&d);
		virtio_blk_ops.queue_notify(d.blk, &d.vd, 0, VIRTIO_ON_VCPU);
		assert_int_equal(drv_used_idx(), round + 1);
		d.used_seen++;
		assert_int_equal(*gpa(STATUS_GPA + slot, 1), VIRTIO_BLK_S_OK);
	}
	close(ep);
	drv_close(&d);
	if (slept == 0)
		print_message("SKIP the wake-up check: every read completed before the thread slept\n");
	else
		assert_true(interrupted > 0); /* the task-work path, not only kernel workers */
}

/* A completion the vCPU thread never polls for (its wake-up lost in the
 * window between its last look and KVM_RUN) still reaches the guest: the
 * watchdog timer fd fires and the I/O thread returns it. */
static void test_vcpu_watchdog(void **state)
{
	(void)state;
	struct drv d;
	if (!open_vcpu_disk(&d, direct_supported(NULL)))
		return;
	int timer = blk_timer_fd(d.blk);
	assert_true(timer >= 0);
	struct pollfd p = { .fd = timer, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 0), 0); /* not armed before a request */
	publish_slot(&d, 2, VIRTIO_BLK_T_IN);
	virtio_blk_ops.queue_notify(d.blk, &d.vd, 0, VIRTIO_ON_VCPU);
	wait_vcpu_completion(&d);
	assert_int_equal(drv_used_idx(), 0);
	assert_int_equal(poll(&p, 1, 5000), 1);
	uint64_t n;
	assert_int_equal(read(timer, &n, sizeof(n)), sizeof(n));
	drv_event(&d); /* what the I/O thread does for the timer fd */
	assert_int_equal(drv_used_idx(), 1);
	d.used_seen = 1;
	assert_int_equal(*gpa(STATUS_GPA + 2, 1), VIRTIO_BLK_S_OK);
	/* Nothing in flight: the I/O thread does not re-arm it. */
	assert_int_equal(poll(&p, 1, 10), 0);
	drv_close(&d);
}

/* Reset with requests on the vCPU ring (one, or as many as it holds):
 * once reset returns nothing is written into guest memory or returned,
 * nothing is left to poll, and the driver starts over. */
static void test_vcpu_reset_in_flight(void **state)
{
	(void)state;
	struct drv d;
	static uint8_t in[32 * REQ_BYTES];
	for (unsigned round = 0; round < 20; round++) {
		if (!open_vcpu_disk(&d, direct_supported(NULL)))
			return;
		unsigned n = round % 4 < 2 ? 1 : 32;
		memset(gpa(IN_GPA, n * REQ_BYTES), 0xcc, n * REQ_BYTES);
		for (unsigned slot = 0; slot < n; slot++)
			publish_slot(&d, slot, VIRTIO_BLK_T_IN);
		virtio_blk_ops.queue_notify(d.blk, &d.vd, 0, VIRTIO_ON_VCPU);
		if (round % 2)
			usleep(50);
		virtio_blk_ops.reset(d.blk);
		memcpy(in, gpa(IN_GPA, n * REQ_BYTES), n * REQ_BYTES);
		uint8_t status[32];
		memcpy(status, gpa(STATUS_GPA, n), n);
		assert_false(virtio_blk_ops.vcpu_work_done(d.blk, 0));
		usleep(2000);
		assert_memory_equal(gpa(IN_GPA, n * REQ_BYTES), in, n * REQ_BYTES);
		assert_memory_equal(gpa(STATUS_GPA, n), status, n);
		assert_int_equal(drv_used_idx(), 0);
		/* A poll or a kick after the reset touches nothing. */
		virtio_blk_ops.queue_notify(d.blk, &d.vd, 0, VIRTIO_ON_VCPU);
		assert_int_equal(drv_used_idx(), 0);

		drv_start(&d, virtio_blk_ops.features(d.blk));
		publish_slot(&d, 40, VIRTIO_BLK_T_IN);
		virtio_blk_ops.queue_notify(d.blk, &d.vd, 0, VIRTIO_ON_VCPU);
		vcpu_wait_used(&d, 1);
		d.used_seen = 1;
		assert_int_equal(*gpa(STATUS_GPA + 40, 1), VIRTIO_BLK_S_OK);
		drv_close(&d);
	}
}

int main(void)
{
#define T(f) cmocka_unit_test_setup(f, test_setup)
	const struct CMUnitTest tests[] = {
		T(test_features_and_config),
		T(test_read),
		T(test_write),
		T(test_scattered_buffers),
		T(test_indirect),
		T(test_flush),
		T(test_lone_request_placement),
		T(test_get_id),
		T(test_discard),
		T(test_write_zeroes),
		T(test_unsupported_types),
		T(test_short_header),
		T(test_no_status_byte),
		T(test_out_of_range),
		T(test_unaligned_length),
		T(test_bad_segments),
		T(test_zeroing_request_bounded),
		T(test_broken_chain),
		T(test_reset_mid_io),
		T(test_read_only),
		T(test_lock_conflict),
		T(test_open_errors),
		T(test_backing_confined),
		T(test_interrupts_event_idx),
		T(test_raw_never_probed),
		T(test_direct),
		T(test_vectored),
		T(test_many_outstanding),
		T(test_inflight_bound),
		T(test_flush_order),
		T(test_reset_in_flight),
		T(test_teardown_in_flight),
		T(test_qcow2),
		T(test_rmw_after_ring_write),
		T(test_io_uring_needs_raw),
		T(test_vcpu_placement),
		T(test_vcpu_completion_wakes_submitter),
		T(test_vcpu_watchdog),
		T(test_vcpu_reset_in_flight),
	};
	test_aio = VIRTIO_BLK_AIO_AUTO;
	int failed = cmocka_run_group_tests_name("aio=auto (io_uring)", tests, group_setup,
						 group_teardown);
	test_aio = VIRTIO_BLK_AIO_THREADS;
	failed += cmocka_run_group_tests_name("aio=threads", tests, group_setup, group_teardown);
	test_aio = VIRTIO_BLK_AIO_AUTO;
	test_vcpu_kicks = true;
	return failed + cmocka_run_group_tests_name("aio=auto, kicks on the vCPU thread", tests,
						    group_setup, group_teardown);
}
