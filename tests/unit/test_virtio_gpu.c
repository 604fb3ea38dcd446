/*
 * virtio-gpu (src/dev/virtio-gpu.c) driven by a simulated driver in this
 * process: both queues live in real guest memory (64 MiB, no KVM), a fake
 * transport implements the calls of dev/virtio.h, and fake host callbacks
 * record modes, flushed rectangles and cursor changes.
 * Covered: display info, EDID (size, checksum, the timing's size), the
 * path create -> attach -> transfer -> set_scanout -> flush with the right
 * pixels in the scanout and the right damage rectangle (also through a
 * 512-entry scattered backing list), the cursor queue,
 * a host resize (event bit, config interrupt, events_clear), and every
 * hostile request this device checks answered with its error while the
 * device keeps serving (bad ids, sizes, rectangles, offsets, backing lists,
 * memory limits, unknown commands, short buffers), and fences echoed.
 * Leaks show under ASan (meson setup -Db_sanitize=address,undefined).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <linux/virtio_gpu.h>

#include "dev/edid.h"
#include "dev/virtio-gpu.h"
#include "dev/virtio.h"
#include "hv/mem.h"
#include "virtio_drv.h"

#define RAM_SIZE   (64u << 20)
#define QSIZE      256
#define CMD_GPA    0x100000u   /* the command */
#define EXTRA_GPA  0x110000u   /* backing entries, up to 256 KiB */
#define RESP_GPA   0x180000u   /* the response */
#define PIX_GPA    0x400000u   /* backing pages */

static struct guest_mem mem;
static const uint64_t ring_gpa[2] = { 0x10000, 0x40000 }; /* desc, avail +0x10000, used +0x20000 */

/* ---- the fake transport ---- */

struct virtio_dev {
	struct vq vq[2];
	unsigned interrupts[2];
	unsigned config_changed;
	unsigned needs_reset;
	unsigned later[2];
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
	vd->config_changed++;
}

void virtio_needs_reset(struct virtio_dev *vd, const char *why)
{
	(void)why;
	vd->needs_reset++;
}

void virtio_queue_notify_later(struct virtio_dev *vd, unsigned q)
{
	vd->later[q]++;
}

/* ---- the fake host ---- */

struct host {
	unsigned modes, flushes, cursors;
	uint32_t mode_w, mode_h, mode_format;
	uint32_t fx, fy, fw, fh;
	struct virtio_gpu_cursor cur;
	uint8_t cur_px0[4];      /* the cursor image's first pixel */
};

static void host_mode(void *ctx, uint32_t w, uint32_t h, uint32_t format)
{
	struct host *h_ = ctx;
	h_->modes++;
	h_->mode_w = w, h_->mode_h = h, h_->mode_format = format;
}

static void host_flush(void *ctx, uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
	struct host *h_ = ctx;
	h_->flushes++;
	h_->fx = x, h_->fy = y, h_->fw = w, h_->fh = h;
}

static void host_cursor(void *ctx, const struct virtio_gpu_cursor *c)
{
	struct host *h_ = ctx;
	h_->cursors++;
	h_->cur = *c;
	memcpy(h_->cur_px0, c->pixels, 4);
}

static const struct virtio_gpu_host_ops host_ops = {
	.mode = host_mode, .flush = host_flush, .cursor = host_cursor,
};

/* ---- the simulated driver ---- */

struct drv {
	struct virtio_dev vd;
	struct virtio_gpu *gpu;
	struct host host;
	struct vdrv_ring ring[2];
};

static void *gpa(uint64_t addr, uint64_t len)
{
	void *p = guest_mem_ptr(&mem, addr, len);
	assert_non_null(p);
	return p;
}

static void drv_open(struct drv *d, uint64_t features)
{
	memset(d, 0, sizeof(*d));
	d->gpu = virtio_gpu_create(&mem, 1024, 768, &host_ops, &d->host);
	assert_non_null(d->gpu);
	for (unsigned q = 0; q < 2; q++)
		vdrv_start(&d->ring[q], &d->vd.vq[q], &mem, ring_gpa[q], QSIZE, false);
	uint64_t offered = virtio_gpu_ops.features(d->gpu);
	assert_true(offered & VIRTIO_FEATURE(VIRTIO_GPU_F_EDID));
	virtio_gpu_ops.activate(d->gpu, &d->vd, features & offered);
}

static void drv_close(struct drv *d)
{
	assert_int_equal(d->vd.needs_reset, 0);
	virtio_gpu_ops.reset(d->gpu);
	virtio_gpu_destroy(d->gpu);
}

/* Publishes one chain on queue q, kicks, returns the used length. */
static uint32_t drv_chain(struct drv *d, unsigned q, const struct seg *s, unsigned n)
{
	vdrv_publish(&d->ring[q], s, n);
	virtio_gpu_ops.queue_notify(d->gpu, &d->vd, q, VIRTIO_ON_IO_THREAD);
	assert_int_equal(vdrv_used_count(&d->ring[q]), 1);
	return vdrv_take_used(&d->ring[q], NULL);
}

/*
 * A control request: the command (and `extra` bytes after it in a second
 * descriptor, as Linux sends backing entries), a response buffer of
 * resp_len. Returns the response's type; *used gets the used length.
 */
static uint32_t drv_ctrl_ex(struct drv *d, const void *cmd, uint32_t cmd_len, const void *extra,
			    uint32_t extra_len, uint32_t resp_len, uint32_t *used)
{
	memcpy(gpa(CMD_GPA, cmd_len), cmd, cmd_len);
	memset(gpa(RESP_GPA, 4096), 0xee, 4096);
	struct seg s[3];
	unsigned n = 0;
	s[n++] = (struct seg){ CMD_GPA, cmd_len, false };
	if (extra_len) {
		memcpy(gpa(EXTRA_GPA, extra_len), extra, extra_len);
		s[n++] = (struct seg){ EXTRA_GPA, extra_len, false };
	}
	s[n++] = (struct seg){ RESP_GPA, resp_len, true };
	uint32_t len = drv_chain(d, VIRTIO_GPU_QUEUE_CTRL, s, n);
	if (used)
		*used = len;
	const struct virtio_gpu_ctrl_hdr *r = gpa(RESP_GPA, sizeof(*r));
	return len >= sizeof(*r) ? r->type : 0;
}

static uint32_t drv_ctrl(struct drv *d, const void *cmd, uint32_t cmd_len)
{
	return drv_ctrl_ex(d, cmd, cmd_len, NULL, 0, 2048, NULL);
}

static const struct virtio_gpu_resp_display_info *drv_display_info(struct drv *d)
{
	struct virtio_gpu_ctrl_hdr h = { .type = VIRTIO_GPU_CMD_GET_DISPLAY_INFO };
	assert_int_equal(drv_ctrl(d, &h, sizeof(h)), VIRTIO_GPU_RESP_OK_DISPLAY_INFO);
	return gpa(RESP_GPA, sizeof(struct virtio_gpu_resp_display_info));
}

/* The device still answers and nobody reset it. */
static void assert_serving(struct drv *d)
{
	assert_int_equal(drv_display_info(d)->pmodes[0].enabled, 1);
	assert_int_equal(d->vd.needs_reset, 0);
}

static uint32_t drv_create(struct drv *d, uint32_t id, uint32_t format, uint32_t w, uint32_t h)
{
	struct virtio_gpu_resource_create_2d c = {
		.hdr.type = VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, .resource_id = id, .format = format,
		.width = w, .height = h,
	};
	return drv_ctrl(d, &c, sizeof(c));
}

static uint32_t drv_unref(struct drv *d, uint32_t id)
{
	struct virtio_gpu_resource_unref c = { .hdr.type = VIRTIO_GPU_CMD_RESOURCE_UNREF, .resource_id = id };
	return drv_ctrl(d, &c, sizeof(c));
}

static uint32_t drv_attach(struct drv *d, uint32_t id, const struct virtio_gpu_mem_entry *e, uint32_t n)
{
	struct virtio_gpu_resource_attach_backing c = {
		.hdr.type = VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, .resource_id = id, .nr_entries = n,
	};
	return drv_ctrl_ex(d, &c, sizeof(c), e, n * (uint32_t)sizeof(*e), 2048, NULL);
}

/* Backing for id: one entry of len at PIX_GPA. */
static uint32_t drv_attach_flat(struct drv *d, uint32_t id, uint32_t len)
{
	struct virtio_gpu_mem_entry e = { .addr = PIX_GPA, .length = len };
	return drv_attach(d, id, &e, 1);
}

static uint32_t drv_detach(struct drv *d, uint32_t id)
{
	struct virtio_gpu_resource_detach_backing c = {
		.hdr.type = VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING, .resource_id = id,
	};
	return drv_ctrl(d, &c, sizeof(c));
}

static uint32_t drv_transfer(struct drv *d, uint32_t id, uint32_t x, uint32_t y, uint32_t w, uint32_t h,
			     uint64_t offset)
{
	struct virtio_gpu_transfer_to_host_2d c = {
		.hdr.type = VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, .r = { x, y, w, h }, .offset = offset,
		.resource_id = id,
	};
	return drv_ctrl(d, &c, sizeof(c));
}

static uint32_t drv_set_scanout(struct drv *d, uint32_t scanout, uint32_t id, uint32_t x, uint32_t y,
				uint32_t w, uint32_t h)
{
	struct virtio_gpu_set_scanout c = {
		.hdr.type = VIRTIO_GPU_CMD_SET_SCANOUT, .r = { x, y, w, h }, .scanout_id = scanout,
		.resource_id = id,
	};
	return drv_ctrl(d, &c, sizeof(c));
}

static uint32_t drv_flush(struct drv *d, uint32_t id, uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
	struct virtio_gpu_resource_flush c = {
		.hdr.type = VIRTIO_GPU_CMD_RESOURCE_FLUSH, .r = { x, y, w, h }, .resource_id = id,
	};
	return drv_ctrl(d, &c, sizeof(c));
}

static void drv_cursor(struct drv *d, uint32_t type, uint32_t scanout, uint32_t id, uint32_t x,
		       uint32_t y, uint32_t hx, uint32_t hy)
{
	struct virtio_gpu_update_cursor c = {
		.hdr.type = type, .pos = { .scanout_id = scanout, .x = x, .y = y },
		.resource_id = id, .hot_x = hx, .hot_y = hy,
	};
	memcpy(gpa(CMD_GPA, sizeof(c)), &c, sizeof(c));
	struct seg s = { CMD_GPA, sizeof(c), false };
	assert_int_equal(drv_chain(d, VIRTIO_GPU_QUEUE_CURSOR, &s, 1), 0);
}

/* The pixel the tests paint at (x, y) of a resource. */
static uint32_t pattern(uint32_t x, uint32_t y)
{
	return 0xff000000u | x << 12 | y;
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

/* ---- display info and EDID ---- */

static void test_display_info(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0);
	const struct virtio_gpu_resp_display_info *di = drv_display_info(&d);
	assert_int_equal(di->pmodes[0].r.width, 1024);
	assert_int_equal(di->pmodes[0].r.height, 768);
	assert_int_equal(di->pmodes[0].enabled, 1);
	assert_int_equal(di->pmodes[1].enabled, 0);
	uint8_t cfg[16];
	virtio_gpu_ops.config_read(d.gpu, 0, cfg, 16);
	struct virtio_gpu_config c;
	memcpy(&c, cfg, sizeof(c));
	assert_int_equal(c.num_scanouts, 1);
	assert_int_equal(c.events_read, 0);
	assert_int_equal(c.num_capsets, 0);
	drv_close(&d);
}

/* Decodes the preferred timing's active size from an EDID block. */
static void edid_size(const uint8_t *e, uint32_t *w, uint32_t *h)
{
	const uint8_t *t = e + 54;
	*w = t[2] | (uint32_t)(t[4] >> 4) << 8;
	*h = t[5] | (uint32_t)(t[7] >> 4) << 8;
}

static void test_edid(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, VIRTIO_FEATURE(VIRTIO_GPU_F_EDID));
	struct virtio_gpu_cmd_get_edid c = { .hdr.type = VIRTIO_GPU_CMD_GET_EDID };
	uint32_t used;
	assert_int_equal(drv_ctrl_ex(&d, &c, sizeof(c), NULL, 0, 2048, &used), VIRTIO_GPU_RESP_OK_EDID);
	assert_int_equal(used, sizeof(struct virtio_gpu_resp_edid));
	const struct virtio_gpu_resp_edid *r = gpa(RESP_GPA, sizeof(*r));
	assert_int_equal(r->size, 128);
	static const uint8_t header[8] = { 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0 };
	assert_memory_equal(r->edid, header, 8);
	uint8_t sum = 0;
	for (unsigned i = 0; i < 128; i++)
		sum = (uint8_t)(sum + r->edid[i]);
	assert_int_equal(sum, 0);
	assert_int_equal(r->edid[18], 1);
	assert_int_equal(r->edid[19], 4);
	uint32_t w, h;
	edid_size(r->edid, &w, &h);
	assert_int_equal(w, 1024);
	assert_int_equal(h, 768);
	assert_true(r->edid[54] | r->edid[55]); /* a pixel clock */

	/* Only scanout 0 exists. */
	c.scanout = 1;
	assert_int_equal(drv_ctrl(&d, &c, sizeof(c)), VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);

	/* The largest size an EDID timing holds still sums to 0. */
	uint8_t e[128];
	edid_make(e, 4095, 4095);
	sum = 0;
	for (unsigned i = 0; i < 128; i++)
		sum = (uint8_t)(sum + e[i]);
	assert_int_equal(sum, 0);
	edid_size(e, &w, &h);
	assert_int_equal(w, 4095);
	assert_int_equal(h, 4095);
	drv_close(&d);

	/* Without VIRTIO_GPU_F_EDID the command does not exist. */
	drv_open(&d, 0);
	c.scanout = 0;
	assert_int_equal(drv_ctrl(&d, &c, sizeof(c)), VIRTIO_GPU_RESP_ERR_UNSPEC);
	drv_close(&d);
}

/* ---- the 2D path ---- */

static void test_create_transfer_flush(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0);
	const uint32_t W = 64, H = 32, stride = W * 4;
	assert_int_equal(drv_create(&d, 7, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, W, H),
			 VIRTIO_GPU_RESP_OK_NODATA);

	/* The picture in guest memory, then backing in three scattered pieces
	 * of odd lengths (the device must stitch them together). */
	uint8_t *img = malloc(stride * H);
	for (uint32_t y = 0; y < H; y++)
		for (uint32_t x = 0; x < W; x++)
			memcpy(img + y * stride + x * 4, &(uint32_t){ pattern(x, y) }, 4);
	const uint32_t cut[3] = { 1000, 3001, stride * H - 4001 };
	const uint64_t at[3] = { PIX_GPA + 0x100000, PIX_GPA, PIX_GPA + 0x200003 };
	struct virtio_gpu_mem_entry e[3];
	uint32_t off = 0;
	for (unsigned i = 0; i < 3; i++) {
		memcpy(gpa(at[i], cut[i]), img + off, cut[i]);
		e[i] = (struct virtio_gpu_mem_entry){ .addr = at[i], .length = cut[i] };
		off += cut[i];
	}
	assert_int_equal(drv_attach(&d, 7, e, 3), VIRTIO_GPU_RESP_OK_NODATA);

	/* Full rows 0..9, then a 5x4 block at (20, 20) (row by row). */
	assert_int_equal(drv_transfer(&d, 7, 0, 0, W, 10, 0), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_transfer(&d, 7, 20, 20, 5, 4, 20 * stride + 20 * 4),
			 VIRTIO_GPU_RESP_OK_NODATA);

	/* Show the resource from (4, 2), 48x28: the mode changes. */
	assert_int_equal(drv_set_scanout(&d, 0, 7, 4, 2, 48, 28), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(d.host.modes, 1);
	assert_int_equal(d.host.mode_w, 48);
	assert_int_equal(d.host.mode_h, 28);
	assert_int_equal(d.host.mode_format, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM);
	const struct virtio_gpu_scanout *so = virtio_gpu_scanout(d.gpu);
	assert_non_null(so->pixels);
	assert_int_equal(so->stride, 48 * 4);

	/* Flush the whole resource: damage is clipped to the scanout. */
	assert_int_equal(drv_flush(&d, 7, 0, 0, W, H), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(d.host.flushes, 1);
	assert_int_equal(d.host.fx, 0);
	assert_int_equal(d.host.fy, 0);
	assert_int_equal(d.host.fw, 48);
	assert_int_equal(d.host.fh, 28);
	for (uint32_t y = 0; y < 28; y++) {
		for (uint32_t x = 0; x < 48; x++) {
			uint32_t rx = x + 4, ry = y + 2, px;
			memcpy(&px, so->pixels + y * so->stride + x * 4, 4);
			bool sent = ry < 10 || (rx >= 20 && rx < 25 && ry >= 20 && ry < 24);
			assert_int_equal(px, sent ? pattern(rx, ry) : 0);
		}
	}

	/* A partial flush reports its rectangle in scanout coordinates. */
	assert_int_equal(drv_transfer(&d, 7, 0, 0, W, H, 0), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_flush(&d, 7, 10, 12, 3, 2), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(d.host.flushes, 2);
	assert_int_equal(d.host.fx, 6);
	assert_int_equal(d.host.fy, 10);
	assert_int_equal(d.host.fw, 3);
	assert_int_equal(d.host.fh, 2);
	uint32_t px;
	memcpy(&px, so->pixels + 10 * so->stride + 6 * 4, 4);
	assert_int_equal(px, pattern(10, 12));
	memcpy(&px, so->pixels + 15 * so->stride + 6 * 4, 4); /* not flushed yet */
	assert_int_equal(px, 0);

	/* A flush outside what is shown: nothing to tell the host. */
	assert_int_equal(drv_flush(&d, 7, 60, 0, 4, 4), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(d.host.flushes, 2);

	/* Same mode again: no mode call. Off: a 0x0 mode. */
	assert_int_equal(drv_set_scanout(&d, 0, 7, 4, 2, 48, 28), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(d.host.modes, 1);
	assert_int_equal(drv_set_scanout(&d, 0, 0, 0, 0, 0, 0), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(d.host.modes, 2);
	assert_int_equal(d.host.mode_w, 0);
	assert_null(virtio_gpu_scanout(d.gpu)->pixels);

	/* Detach, and transfers are refused; attach again works. */
	assert_int_equal(drv_detach(&d, 7), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_transfer(&d, 7, 0, 0, W, H, 0), VIRTIO_GPU_RESP_ERR_UNSPEC);
	assert_int_equal(drv_attach(&d, 7, e, 3), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_unref(&d, 7), VIRTIO_GPU_RESP_OK_NODATA);
	free(img);
	assert_serving(&d);
	drv_close(&d);
}

/* A backing list of 512 two-byte pieces, scattered and out of order (past
 * the device's 256-entry read batches): every byte lands in its place. */
static void test_many_entries(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0);
	assert_int_equal(drv_create(&d, 2, VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM, 16, 16), VIRTIO_GPU_RESP_OK_NODATA);
	enum { N = 512 };
	static struct virtio_gpu_mem_entry e[N];
	for (unsigned i = 0; i < N; i++) {
		uint64_t at = PIX_GPA + (uint64_t)((i * 97) % N) * 64;
		uint8_t *p = gpa(at, 2);
		p[0] = (uint8_t)(2 * i), p[1] = (uint8_t)(2 * i + 1) ^ 0x5a;
		e[i] = (struct virtio_gpu_mem_entry){ .addr = at, .length = 2 };
	}
	assert_int_equal(drv_attach(&d, 2, e, N), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_transfer(&d, 2, 0, 0, 16, 16, 0), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_set_scanout(&d, 0, 2, 0, 0, 16, 16), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_flush(&d, 2, 0, 0, 16, 16), VIRTIO_GPU_RESP_OK_NODATA);
	const struct virtio_gpu_scanout *so = virtio_gpu_scanout(d.gpu);
	for (unsigned b = 0; b < 1024; b++)
		assert_int_equal(so->pixels[b], b % 2 ? (uint8_t)b ^ 0x5a : (uint8_t)b);
	assert_serving(&d);
	drv_close(&d);
}

/* Unref of the resource on the scanout: the host keeps the last frame, and
 * a new resource under the same id is not shown until set_scanout. */
static void test_unref_on_scanout(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0);
	assert_int_equal(drv_create(&d, 1, VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM, 16, 16), VIRTIO_GPU_RESP_OK_NODATA);
	memset(gpa(PIX_GPA, 1024), 0x11, 1024);
	assert_int_equal(drv_attach_flat(&d, 1, 1024), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_transfer(&d, 1, 0, 0, 16, 16, 0), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_set_scanout(&d, 0, 1, 0, 0, 16, 16), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_flush(&d, 1, 0, 0, 16, 16), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_unref(&d, 1), VIRTIO_GPU_RESP_OK_NODATA);
	const struct virtio_gpu_scanout *so = virtio_gpu_scanout(d.gpu);
	assert_int_equal(so->pixels[0], 0x11);
	assert_int_equal(drv_create(&d, 1, VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM, 16, 16), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_flush(&d, 1, 0, 0, 16, 16), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(d.host.flushes, 1);
	assert_int_equal(so->pixels[0], 0x11);
	assert_serving(&d);
	drv_close(&d); /* resource 1 still alive: reset frees it */
}

/* ---- cursor ---- */

static void test_cursor(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0);
	assert_int_equal(drv_create(&d, 3, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 64, 64), VIRTIO_GPU_RESP_OK_NODATA);
	uint8_t *p = gpa(PIX_GPA, 64 * 64 * 4);
	memset(p, 0, 64 * 64 * 4);
	p[0] = 0xab;
	assert_int_equal(drv_attach_flat(&d, 3, 64 * 64 * 4), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_transfer(&d, 3, 0, 0, 64, 64, 0), VIRTIO_GPU_RESP_OK_NODATA);

	drv_cursor(&d, VIRTIO_GPU_CMD_UPDATE_CURSOR, 0, 3, 100, 50, 2, 3);
	assert_int_equal(d.host.cursors, 1);
	assert_true(d.host.cur.visible);
	assert_true(d.host.cur.image_changed);
	assert_int_equal(d.host.cur.x, 100);
	assert_int_equal(d.host.cur.y, 50);
	assert_int_equal(d.host.cur.hot_x, 2);
	assert_int_equal(d.host.cur.hot_y, 3);
	assert_int_equal(d.host.cur.format, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM);
	assert_int_equal(d.host.cur_px0[0], 0xab);

	drv_cursor(&d, VIRTIO_GPU_CMD_MOVE_CURSOR, 0, 0, (uint32_t)-5, 7, 0, 0);
	assert_int_equal(d.host.cursors, 2);
	assert_true(d.host.cur.visible);
	assert_false(d.host.cur.image_changed);
	assert_int_equal(d.host.cur.x, -5);
	assert_int_equal(d.host.cur.y, 7);
	assert_int_equal(d.host.cur.hot_x, 2);

	/* Hostile: another scanout, no such resource, a hot spot outside, a
	 * resource larger than a cursor, an unknown command, a short request:
	 * ignored, no callback. */
	assert_int_equal(drv_create(&d, 4, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 65, 64), VIRTIO_GPU_RESP_OK_NODATA);
	drv_cursor(&d, VIRTIO_GPU_CMD_UPDATE_CURSOR, 1, 3, 0, 0, 0, 0);
	drv_cursor(&d, VIRTIO_GPU_CMD_MOVE_CURSOR, 16, 3, 0, 0, 0, 0);
	drv_cursor(&d, VIRTIO_GPU_CMD_UPDATE_CURSOR, 0, 99, 0, 0, 0, 0);
	drv_cursor(&d, VIRTIO_GPU_CMD_UPDATE_CURSOR, 0, 3, 0, 0, 64, 0);
	drv_cursor(&d, VIRTIO_GPU_CMD_UPDATE_CURSOR, 0, 4, 0, 0, 0, 0);
	drv_cursor(&d, VIRTIO_GPU_CMD_RESOURCE_FLUSH, 0, 3, 0, 0, 0, 0);
	struct seg s = { CMD_GPA, 8, false };
	assert_int_equal(drv_chain(&d, VIRTIO_GPU_QUEUE_CURSOR, &s, 1), 0);
	assert_int_equal(d.host.cursors, 2);

	/* Resource 0 hides it. */
	drv_cursor(&d, VIRTIO_GPU_CMD_UPDATE_CURSOR, 0, 0, 0, 0, 0, 0);
	assert_int_equal(d.host.cursors, 3);
	assert_false(d.host.cur.visible);
	assert_serving(&d);
	drv_close(&d);
}

/* ---- the host offers a new size ---- */

static void test_resize_event(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, VIRTIO_FEATURE(VIRTIO_GPU_F_EDID));
	assert_false(virtio_gpu_set_preferred(d.gpu, 100, 100));
	assert_false(virtio_gpu_set_preferred(d.gpu, 4096, 1000));
	assert_int_equal(d.vd.config_changed, 0);
	assert_true(virtio_gpu_set_preferred(d.gpu, 1280, 800));
	assert_int_equal(d.vd.config_changed, 1);
	uint32_t ev;
	virtio_gpu_ops.config_read(d.gpu, 0, (uint8_t *)&ev, 4);
	assert_int_equal(ev, VIRTIO_GPU_EVENT_DISPLAY);

	const struct virtio_gpu_resp_display_info *di = drv_display_info(&d);
	assert_int_equal(di->pmodes[0].r.width, 1280);
	assert_int_equal(di->pmodes[0].r.height, 800);
	struct virtio_gpu_cmd_get_edid c = { .hdr.type = VIRTIO_GPU_CMD_GET_EDID };
	assert_int_equal(drv_ctrl(&d, &c, sizeof(c)), VIRTIO_GPU_RESP_OK_EDID);
	uint32_t w, h;
	edid_size(((const struct virtio_gpu_resp_edid *)gpa(RESP_GPA, 1024))->edid, &w, &h);
	assert_int_equal(w, 1280);
	assert_int_equal(h, 800);

	/* The driver acknowledges through events_clear; events_read is read-only. */
	uint32_t junk = 0xffffffff;
	virtio_gpu_ops.config_write(d.gpu, 0, (uint8_t *)&junk, 4);
	virtio_gpu_ops.config_read(d.gpu, 0, (uint8_t *)&ev, 4);
	assert_int_equal(ev, VIRTIO_GPU_EVENT_DISPLAY);
	uint32_t clr = VIRTIO_GPU_EVENT_DISPLAY;
	virtio_gpu_ops.config_write(d.gpu, 4, (uint8_t *)&clr, 4);
	virtio_gpu_ops.config_read(d.gpu, 0, (uint8_t *)&ev, 4);
	assert_int_equal(ev, 0);
	drv_close(&d);
}

/* ---- hostile requests ---- */

static void test_hostile_resources(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0);
	const uint32_t F = VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM;
	assert_int_equal(drv_create(&d, 0, F, 8, 8), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
	assert_int_equal(drv_create(&d, 1, F, 8, 8), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_create(&d, 1, F, 8, 8), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
	assert_int_equal(drv_create(&d, 2, 0, 8, 8), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	assert_int_equal(drv_create(&d, 2, 5, 8, 8), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	assert_int_equal(drv_create(&d, 2, F, 0, 8), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	assert_int_equal(drv_create(&d, 2, F, 8, 0), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	assert_int_equal(drv_create(&d, 2, F, VGPU_MAX_DIM + 1, 1), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	assert_int_equal(drv_create(&d, 2, F, 0xffffffff, 0xffffffff), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	assert_int_equal(drv_create(&d, 2, F, VGPU_MAX_DIM, VGPU_MAX_DIM), VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
	assert_int_equal(drv_unref(&d, 2), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
	assert_int_equal(drv_unref(&d, 0), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);

	/* The per-device limit: three 64 MiB resources fit, a fourth does not
	 * (the small one and bookkeeping take the rest); freeing one makes room. */
	for (uint32_t id = 10; id < 13; id++)
		assert_int_equal(drv_create(&d, id, F, 4096, 4096), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_create(&d, 13, F, 4096, 4096), VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
	assert_int_equal(drv_unref(&d, 11), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_create(&d, 13, F, 4096, 4096), VIRTIO_GPU_RESP_OK_NODATA);
	assert_serving(&d);
	drv_close(&d);
}

static void test_hostile_backing(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0);
	assert_int_equal(drv_create(&d, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 32, 32), VIRTIO_GPU_RESP_OK_NODATA);
	const uint32_t size = 32 * 32 * 4;
	struct virtio_gpu_mem_entry e[2] = { { .addr = PIX_GPA, .length = size } };

	assert_int_equal(drv_attach(&d, 9, e, 1), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
	assert_int_equal(drv_attach(&d, 1, e, 0), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	/* nr_entries far beyond the entries sent, and beyond the limit. */
	struct virtio_gpu_resource_attach_backing a = {
		.hdr.type = VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, .resource_id = 1, .nr_entries = 0xffffffff,
	};
	assert_int_equal(drv_ctrl_ex(&d, &a, sizeof(a), e, sizeof(e[0]), 64, NULL),
			 VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	a.nr_entries = VGPU_MAX_ENTRIES + 1;
	assert_int_equal(drv_ctrl_ex(&d, &a, sizeof(a), e, sizeof(e[0]), 64, NULL),
			 VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	a.nr_entries = 2;
	assert_int_equal(drv_ctrl_ex(&d, &a, sizeof(a), e, sizeof(e[0]), 64, NULL),
			 VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	/* Outside guest RAM; wrapping around 2^64; in RAM but too short. */
	e[0] = (struct virtio_gpu_mem_entry){ .addr = RAM_SIZE * 4ull, .length = size };
	assert_int_equal(drv_attach(&d, 1, e, 1), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	e[0] = (struct virtio_gpu_mem_entry){ .addr = PIX_GPA, .length = size };
	e[1] = (struct virtio_gpu_mem_entry){ .addr = ~0ull - 100, .length = 4096 };
	assert_int_equal(drv_attach(&d, 1, e, 2), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	e[0].length = size - 1;
	assert_int_equal(drv_attach(&d, 1, e, 1), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	/* Overlapping entries are the guest's own business. */
	e[0].length = size / 2;
	e[1] = (struct virtio_gpu_mem_entry){ .addr = PIX_GPA + 16, .length = size / 2 };
	assert_int_equal(drv_attach(&d, 1, e, 2), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_attach(&d, 1, e, 2), VIRTIO_GPU_RESP_ERR_UNSPEC);
	assert_int_equal(drv_detach(&d, 1), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_detach(&d, 1), VIRTIO_GPU_RESP_ERR_UNSPEC);
	assert_int_equal(drv_detach(&d, 5), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);

	/* Entries in the command's own descriptor work too (a driver may). */
	uint8_t one[sizeof(a) + sizeof(e[0])];
	a.nr_entries = 1;
	e[0] = (struct virtio_gpu_mem_entry){ .addr = PIX_GPA, .length = size };
	memcpy(one, &a, sizeof(a));
	memcpy(one + sizeof(a), e, sizeof(e[0]));
	assert_int_equal(drv_ctrl(&d, one, sizeof(one)), VIRTIO_GPU_RESP_OK_NODATA);
	assert_serving(&d);
	drv_close(&d); /* backing still attached: reset frees it */
}

static void test_hostile_rectangles(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0);
	const uint32_t W = 32, H = 16, size = W * H * 4;
	assert_int_equal(drv_create(&d, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, W, H), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_transfer(&d, 1, 0, 0, W, H, 0), VIRTIO_GPU_RESP_ERR_UNSPEC); /* no backing */
	assert_int_equal(drv_transfer(&d, 2, 0, 0, W, H, 0), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
	assert_int_equal(drv_attach_flat(&d, 1, size), VIRTIO_GPU_RESP_OK_NODATA);

	const uint32_t P = VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
	assert_int_equal(drv_transfer(&d, 1, 0, 0, W, H, 0), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_transfer(&d, 1, 0, 0, W + 1, H, 0), P);
	assert_int_equal(drv_transfer(&d, 1, 0, 0, W, H + 1, 0), P);
	assert_int_equal(drv_transfer(&d, 1, 0xffffffff, 0, 2, 1, 0), P);
	assert_int_equal(drv_transfer(&d, 1, 0, 0xfffffff0, 1, 0x20, 0), P);
	assert_int_equal(drv_transfer(&d, 1, 0, 0, 0, 1, 0), P);
	assert_int_equal(drv_transfer(&d, 1, 0, 0, 1, 0, 0), P);
	/* Offsets: the last row must end inside the backing. */
	assert_int_equal(drv_transfer(&d, 1, 0, 0, W, H, 4), P);
	assert_int_equal(drv_transfer(&d, 1, 0, 0, W, 1, size - W * 4), VIRTIO_GPU_RESP_OK_NODATA);
	assert_int_equal(drv_transfer(&d, 1, 0, 0, W, 1, size - W * 4 + 1), P);
	assert_int_equal(drv_transfer(&d, 1, 0, 0, 1, 1, ~0ull), P);
	assert_int_equal(drv_transfer(&d, 1, 0, 0, 1, 1, ~0ull - 3), P);

	assert_int_equal(drv_set_scanout(&d, 1, 1, 0, 0, W, H), VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
	assert_int_equal(drv_set_scanout(&d, 0xffffffff, 0, 0, 0, 0, 0), VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
	assert_int_equal(drv_set_scanout(&d, 0, 2, 0, 0, W, H), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
	assert_int_equal(drv_set_scanout(&d, 0, 1, 1, 0, W, H), P);
	assert_int_equal(drv_set_scanout(&d, 0, 1, 0, 0xffffffff, W, 2), P);
	assert_int_equal(drv_set_scanout(&d, 0, 1, 0, 0, 0, H), P);
	assert_int_equal(d.host.modes, 0);

	assert_int_equal(drv_flush(&d, 2, 0, 0, W, H), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
	assert_int_equal(drv_flush(&d, 1, 0, 0, W + 1, H), P);
	assert_int_equal(drv_flush(&d, 1, 0xfffffff0, 0, 0x20, 1), P);
	assert_int_equal(d.host.flushes, 0);
	assert_serving(&d);
	drv_close(&d);
}

static void test_hostile_requests(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0);
	struct virtio_gpu_ctrl_hdr h = { .type = VIRTIO_GPU_CMD_CTX_CREATE };
	assert_int_equal(drv_ctrl(&d, &h, sizeof(h)), VIRTIO_GPU_RESP_ERR_UNSPEC);
	h.type = 0;
	assert_int_equal(drv_ctrl(&d, &h, sizeof(h)), VIRTIO_GPU_RESP_ERR_UNSPEC);
	h.type = VIRTIO_GPU_CMD_UPDATE_CURSOR; /* a cursor command on the control queue */
	assert_int_equal(drv_ctrl(&d, &h, sizeof(h)), VIRTIO_GPU_RESP_ERR_UNSPEC);
	h.type = VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB; /* not offered */
	assert_int_equal(drv_ctrl(&d, &h, sizeof(h)), VIRTIO_GPU_RESP_ERR_UNSPEC);

	/* Shorter than a header; a header without the command's body. */
	h.type = VIRTIO_GPU_CMD_GET_DISPLAY_INFO;
	assert_int_equal(drv_ctrl(&d, &h, 8), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	h.type = VIRTIO_GPU_CMD_RESOURCE_CREATE_2D;
	assert_int_equal(drv_ctrl(&d, &h, sizeof(h)), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	uint8_t part[sizeof(h) + 4] = { 0 };
	h.type = VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING;
	memcpy(part, &h, sizeof(h));
	assert_int_equal(drv_ctrl(&d, part, sizeof(part)), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);

	/* A response buffer too small for display info: an error header, the
	 * command not run; smaller than a header: nothing written. */
	uint32_t used;
	h.type = VIRTIO_GPU_CMD_GET_DISPLAY_INFO;
	assert_int_equal(drv_ctrl_ex(&d, &h, sizeof(h), NULL, 0, sizeof(h), &used), VIRTIO_GPU_RESP_ERR_UNSPEC);
	assert_int_equal(used, sizeof(h));
	drv_ctrl_ex(&d, &h, sizeof(h), NULL, 0, 10, &used);
	assert_int_equal(used, 0);
	/* No writable buffer at all. */
	memcpy(gpa(CMD_GPA, sizeof(h)), &h, sizeof(h));
	struct seg s = { CMD_GPA, sizeof(h), false };
	assert_int_equal(drv_chain(&d, VIRTIO_GPU_QUEUE_CTRL, &s, 1), 0);

	/* Fences are echoed, on success and on error. */
	h = (struct virtio_gpu_ctrl_hdr){ .type = VIRTIO_GPU_CMD_GET_DISPLAY_INFO,
					  .flags = VIRTIO_GPU_FLAG_FENCE, .fence_id = 0x123456789abcull };
	assert_int_equal(drv_ctrl(&d, &h, sizeof(h)), VIRTIO_GPU_RESP_OK_DISPLAY_INFO);
	const struct virtio_gpu_ctrl_hdr *r = gpa(RESP_GPA, sizeof(*r));
	assert_int_equal(r->flags & VIRTIO_GPU_FLAG_FENCE, VIRTIO_GPU_FLAG_FENCE);
	assert_int_equal(r->fence_id, 0x123456789abcull);
	h.type = 0x9999;
	h.fence_id = 77;
	assert_int_equal(drv_ctrl(&d, &h, sizeof(h)), VIRTIO_GPU_RESP_ERR_UNSPEC);
	assert_int_equal(r->flags & VIRTIO_GPU_FLAG_FENCE, VIRTIO_GPU_FLAG_FENCE);
	assert_int_equal(r->fence_id, 77);
	/* Without the flag, no fence in the answer. */
	h.flags = 0;
	drv_ctrl(&d, &h, sizeof(h));
	assert_int_equal(r->flags, 0);
	assert_int_equal(r->fence_id, 0);

	/* Config space: reads past the end are zeros, odd writes ignored. */
	uint8_t cfg[8];
	virtio_gpu_ops.config_read(d.gpu, 12, cfg, 8);
	assert_int_equal(cfg[0] | cfg[7], 0);
	uint8_t one = 1;
	virtio_gpu_ops.config_write(d.gpu, 5, &one, 1);
	assert_serving(&d);
	drv_close(&d);
}

/* A reset frees everything and the device serves the next driver. */
static void test_reset_frees(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, 0);
	for (uint32_t id = 1; id <= 3; id++)
		assert_int_equal(drv_create(&d, id, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 4096, 4096),
				 VIRTIO_GPU_RESP_OK_NODATA);
	virtio_gpu_ops.reset(d.gpu);
	struct virtio_gpu *gpu = d.gpu;
	memset(&d.vd, 0, sizeof(d.vd));
	for (unsigned q = 0; q < 2; q++)
		vdrv_start(&d.ring[q], &d.vd.vq[q], &mem, ring_gpa[q], QSIZE, false);
	virtio_gpu_ops.activate(gpu, &d.vd, 0);
	/* All of the memory is free again, and id 1 is free. */
	for (uint32_t id = 1; id <= 3; id++)
		assert_int_equal(drv_create(&d, id, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 4096, 4096),
				 VIRTIO_GPU_RESP_OK_NODATA);
	drv_close(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_display_info),
		cmocka_unit_test(test_edid),
		cmocka_unit_test(test_create_transfer_flush),
		cmocka_unit_test(test_many_entries),
		cmocka_unit_test(test_unref_on_scanout),
		cmocka_unit_test(test_cursor),
		cmocka_unit_test(test_resize_event),
		cmocka_unit_test(test_hostile_resources),
		cmocka_unit_test(test_hostile_backing),
		cmocka_unit_test(test_hostile_rectangles),
		cmocka_unit_test(test_hostile_requests),
		cmocka_unit_test(test_reset_frees),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
