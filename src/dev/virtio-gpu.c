/*
 * virtio-gpu 2D device (see virtio-gpu.h). Every control request is read
 * into a local copy of its fixed-size command first (a request shorter than
 * its command gets ERR_INVALID_PARAMETER), checked field by field, executed
 * at once, and answered with a response header that echoes the fence: all
 * work is done when the response is pushed, so a fence is signalled by its
 * own response. Nothing the guest sends is dropped without an answer,
 * unless it gave no room for one.
 *
 * Pixels travel twice: guest backing pages -> the resource's host copy on
 * TRANSFER_TO_HOST_2D, host copy -> the scanout on RESOURCE_FLUSH. The
 * scanout does not point into a resource because a resource's lifetime is
 * the guest's to choose (it may unref or overwrite it at any time), while
 * the scanout is what the host shows and will live in memory shared with
 * the viewer: it changes only on a flush and then only inside the flushed
 * rectangle, so the viewer never sees a half-transferred frame. (The
 * one-copy goal of bench/display would make the shared memory the host copy
 * of the resource on the scanout; that is the viewer issue's to measure.)
 *
 * Backing entries are checked against guest RAM once, at ATTACH_BACKING,
 * and kept as host pointers: guest RAM stays mapped for the VM's lifetime.
 * Entries may overlap or repeat each other; that only scrambles the
 * guest's own picture, so it is allowed (as QEMU does).
 */
#include "dev/virtio-gpu.h"

#include <linux/virtio_gpu.h>
#include <stdlib.h>
#include <string.h>

#include "base/iov.h"
#include "base/log.h"
#include "base/ratelimit.h"
#include "dev/edid.h"

#define GPU_QUEUE_SIZE  256
#define GPU_BPP         4
/* Control requests per turn of the I/O thread: a transfer may copy 64 MiB. */
#define GPU_CTRL_BUDGET 16

struct gpu_entry {
	uint8_t *host;
	uint64_t start;          /* byte offset of this entry in the backing */
	uint32_t len;
};

struct gpu_res {
	struct gpu_res *next;
	uint32_t id, format, width, height, stride;
	uint8_t *data;           /* height * stride bytes */
	struct gpu_entry *backing;
	uint32_t nr_entries;
	uint64_t backing_len;
	uint64_t charged;        /* bytes counted in gpu->mem_used */
};

struct virtio_gpu {
	const struct guest_mem *mem;
	const struct virtio_gpu_host_ops *host;
	void *ctx;
	struct virtio_dev *vd;
	uint64_t features;

	uint32_t pref_w, pref_h;
	uint32_t events_read;

	struct gpu_res *res;
	unsigned nr_res;
	uint64_t mem_used;

	/* The scanout: the resource on it and the rectangle of it shown. */
	struct virtio_gpu_scanout so;
	uint64_t so_charged;
	uint32_t so_res;
	uint32_t so_x, so_y;

	struct virtio_gpu_cursor cursor;
	uint8_t cursor_pixels[VGPU_CURSOR_DIM * VGPU_CURSOR_DIM * GPU_BPP];

	struct ratelimit log_limit;
};

static void gpu_warn(struct virtio_gpu *gpu, const char *what, uint32_t value)
{
	log_limited(&gpu->log_limit, LOG_LEVEL_DEBUG, "virtio-gpu: %s (%u)", what, value);
}

/* ---- resources and host memory ---- */

static bool gpu_charge(struct virtio_gpu *gpu, uint64_t bytes)
{
	if (bytes > VGPU_MAX_MEM - gpu->mem_used)
		return false;
	gpu->mem_used += bytes;
	return true;
}

static struct gpu_res *gpu_res_find(struct virtio_gpu *gpu, uint32_t id)
{
	for (struct gpu_res *r = gpu->res; r; r = r->next)
		if (r->id == id)
			return r;
	return NULL;
}

/* The resource a command names, or NULL after a (limited) log line: "OP: no such resource". */
static struct gpu_res *gpu_res_named(struct virtio_gpu *gpu, uint32_t id, const char *op)
{
	struct gpu_res *r = gpu_res_find(gpu, id);
	if (!r)
		log_limited(&gpu->log_limit, LOG_LEVEL_DEBUG, "virtio-gpu: %s: no such resource (%u)", op, id);
	return r;
}

static void gpu_backing_free(struct virtio_gpu *gpu, struct gpu_res *r)
{
	uint64_t bytes = (uint64_t)r->nr_entries * sizeof(*r->backing);
	free(r->backing);
	r->backing = NULL;
	r->nr_entries = 0;
	r->backing_len = 0;
	r->charged -= bytes;
	gpu->mem_used -= bytes;
}

static void gpu_res_free(struct virtio_gpu *gpu, struct gpu_res *r)
{
	gpu_backing_free(gpu, r);
	gpu->mem_used -= r->charged;
	gpu->nr_res--;
	if (gpu->so_res == r->id)
		gpu->so_res = 0; /* the scanout keeps its last frame */
	free(r->data);
	free(r);
}

static void gpu_res_free_all(struct virtio_gpu *gpu)
{
	while (gpu->res) {
		struct gpu_res *r = gpu->res;
		gpu->res = r->next;
		gpu_res_free(gpu, r);
	}
}

static bool gpu_format_ok(uint32_t format)
{
	switch (format) {
	case VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM:
	case VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM:
	case VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM:
	case VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM:
	case VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM:
	case VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM:
	case VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM:
	case VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM:
		return true;
	default:
		return false;
	}
}

/* Whether rect r lies inside a width x height image and is not empty. */
static bool gpu_rect_ok(const struct virtio_gpu_rect *r, uint32_t width, uint32_t height)
{
	return r->width && r->height && (uint64_t)r->x + r->width <= width &&
	       (uint64_t)r->y + r->height <= height;
}

/* Copies len bytes at byte `off` of r's backing into dst; the caller checked
 * off + len <= backing_len. Finds the first entry by binary search. */
static void gpu_backing_read(const struct gpu_res *r, uint64_t off, uint8_t *dst, uint64_t len)
{
	uint32_t lo = 0, hi = r->nr_entries;
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (r->backing[mid].start <= off)
			lo = mid;
		else
			hi = mid;
	}
	for (uint32_t i = lo; len && i < r->nr_entries; i++) {
		const struct gpu_entry *e = &r->backing[i];
		if (off >= e->start + e->len)
			continue; /* an empty entry */
		uint64_t in = off - e->start;
		uint64_t n = e->len - in < len ? e->len - in : len;
		memcpy(dst, e->host + in, n);
		dst += n;
		off += n;
		len -= n;
	}
}

/* ---- the control commands: each fills resp, returns its length ---- */

struct gpu_req {
	const struct vq_chain *chain;
	union {
		struct virtio_gpu_ctrl_hdr hdr;
		struct virtio_gpu_resp_display_info display;
		struct virtio_gpu_resp_edid edid;
	} resp;
};

/* Reads the command of `size` bytes; false when the request is shorter. */
static bool gpu_cmd(struct gpu_req *q, void *cmd, size_t size)
{
	const struct vq_chain *c = q->chain;
	return iov_to_buf(c->iov, c->nr_readable, 0, cmd, size) == size;
}

static uint32_t gpu_err(struct gpu_req *q, uint32_t type)
{
	q->resp.hdr.type = type;
	return sizeof(q->resp.hdr);
}

#define GPU_CMD(q, var) \
	do { \
		if (!gpu_cmd((q), &(var), sizeof(var))) \
			return gpu_err((q), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER); \
	} while (0)

static uint32_t gpu_display_info(struct virtio_gpu *gpu, struct gpu_req *q)
{
	struct virtio_gpu_resp_display_info *d = &q->resp.display;
	d->hdr.type = VIRTIO_GPU_RESP_OK_DISPLAY_INFO;
	d->pmodes[0].r.width = gpu->pref_w;
	d->pmodes[0].r.height = gpu->pref_h;
	d->pmodes[0].enabled = 1;
	return sizeof(*d);
}

static uint32_t gpu_get_edid(struct virtio_gpu *gpu, struct gpu_req *q)
{
	struct virtio_gpu_cmd_get_edid cmd;
	GPU_CMD(q, cmd);
	if (cmd.scanout != 0)
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
	struct virtio_gpu_resp_edid *e = &q->resp.edid;
	e->hdr.type = VIRTIO_GPU_RESP_OK_EDID;
	e->size = EDID_BLOCK;
	edid_make(e->edid, gpu->pref_w, gpu->pref_h);
	return sizeof(*e);
}

static uint32_t gpu_create_2d(struct virtio_gpu *gpu, struct gpu_req *q)
{
	struct virtio_gpu_resource_create_2d cmd;
	GPU_CMD(q, cmd);
	if (cmd.resource_id == 0 || gpu_res_find(gpu, cmd.resource_id)) {
		gpu_warn(gpu, "create: resource id 0 or in use", cmd.resource_id);
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
	}
	if (!gpu_format_ok(cmd.format) || cmd.width == 0 || cmd.height == 0 ||
	    cmd.width > VGPU_MAX_DIM || cmd.height > VGPU_MAX_DIM) {
		gpu_warn(gpu, "create: bad format or size", cmd.resource_id);
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	}
	/* At most 16384 * 4 * 16384: no overflow in 64 bits. */
	uint64_t bytes = (uint64_t)cmd.width * GPU_BPP * cmd.height;
	uint64_t charge = bytes + sizeof(struct gpu_res);
	if (bytes > VGPU_MAX_RES_BYTES || gpu->nr_res >= VGPU_MAX_RESOURCES ||
	    !gpu_charge(gpu, charge)) {
		gpu_warn(gpu, "create: over the memory limit", cmd.resource_id);
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
	}
	struct gpu_res *r = calloc(1, sizeof(*r));
	uint8_t *data = calloc(1, bytes);
	if (!r || !data) {
		free(r);
		free(data);
		gpu->mem_used -= charge;
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
	}
	*r = (struct gpu_res){ .next = gpu->res, .id = cmd.resource_id, .format = cmd.format,
			       .width = cmd.width, .height = cmd.height,
			       .stride = cmd.width * GPU_BPP, .data = data, .charged = charge };
	gpu->res = r;
	gpu->nr_res++;
	return gpu_err(q, VIRTIO_GPU_RESP_OK_NODATA);
}

static uint32_t gpu_unref(struct virtio_gpu *gpu, struct gpu_req *q)
{
	struct virtio_gpu_resource_unref cmd;
	GPU_CMD(q, cmd);
	for (struct gpu_res **p = &gpu->res; *p; p = &(*p)->next) {
		if ((*p)->id == cmd.resource_id) {
			struct gpu_res *r = *p;
			*p = r->next;
			gpu_res_free(gpu, r);
			return gpu_err(q, VIRTIO_GPU_RESP_OK_NODATA);
		}
	}
	gpu_warn(gpu, "unref: no such resource", cmd.resource_id);
	return gpu_err(q, VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
}

/*
 * Turns the scanout to w x h in `format` (0x0: off) and tells the host.
 * False when over the memory limit: the scanout is then off.
 */
static bool gpu_scanout_mode(struct virtio_gpu *gpu, uint32_t w, uint32_t h, uint32_t format)
{
	struct virtio_gpu_scanout *so = &gpu->so;
	if (so->width == w && so->height == h && so->format == format)
		return true;
	uint64_t bytes = (uint64_t)w * GPU_BPP * h;
	bool ok = true;
	gpu->mem_used -= gpu->so_charged;
	gpu->so_charged = 0;
	free(so->pixels);
	*so = (struct virtio_gpu_scanout){ 0 };
	if (bytes && gpu_charge(gpu, bytes)) {
		uint8_t *pixels = calloc(1, bytes);
		if (pixels) {
			gpu->so_charged = bytes;
			*so = (struct virtio_gpu_scanout){ .pixels = pixels, .width = w, .height = h,
							   .stride = w * GPU_BPP, .format = format };
		} else {
			gpu->mem_used -= bytes;
			ok = false;
		}
	} else if (bytes) {
		ok = false;
	}
	if (gpu->host && gpu->host->mode)
		gpu->host->mode(gpu->ctx, so->width, so->height, so->format);
	return ok;
}

static uint32_t gpu_set_scanout(struct virtio_gpu *gpu, struct gpu_req *q)
{
	struct virtio_gpu_set_scanout cmd;
	GPU_CMD(q, cmd);
	if (cmd.scanout_id != 0) {
		gpu_warn(gpu, "set_scanout: no such scanout", cmd.scanout_id);
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
	}
	if (cmd.resource_id == 0) {
		gpu->so_res = 0;
		gpu_scanout_mode(gpu, 0, 0, 0);
		return gpu_err(q, VIRTIO_GPU_RESP_OK_NODATA);
	}
	struct gpu_res *r = gpu_res_named(gpu, cmd.resource_id, "set_scanout");
	if (!r)
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
	if (!gpu_rect_ok(&cmd.r, r->width, r->height)) {
		gpu_warn(gpu, "set_scanout: rectangle outside the resource", cmd.resource_id);
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	}
	if (!gpu_scanout_mode(gpu, cmd.r.width, cmd.r.height, r->format)) {
		gpu->so_res = 0;
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
	}
	gpu->so_res = r->id;
	gpu->so_x = cmd.r.x;
	gpu->so_y = cmd.r.y;
	return gpu_err(q, VIRTIO_GPU_RESP_OK_NODATA);
}

static uint32_t gpu_flush(struct virtio_gpu *gpu, struct gpu_req *q)
{
	struct virtio_gpu_resource_flush cmd;
	GPU_CMD(q, cmd);
	struct gpu_res *r = gpu_res_named(gpu, cmd.resource_id, "flush");
	if (!r)
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
	if (!gpu_rect_ok(&cmd.r, r->width, r->height)) {
		gpu_warn(gpu, "flush: rectangle outside the resource", cmd.resource_id);
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	}
	if (gpu->so_res != r->id || !gpu->so.pixels)
		return gpu_err(q, VIRTIO_GPU_RESP_OK_NODATA);
	/* The flushed rectangle and the scanout's, in resource coordinates
	 * (all below VGPU_MAX_DIM * 2: no overflow). */
	uint32_t x0 = cmd.r.x > gpu->so_x ? cmd.r.x : gpu->so_x;
	uint32_t y0 = cmd.r.y > gpu->so_y ? cmd.r.y : gpu->so_y;
	uint32_t x1 = cmd.r.x + cmd.r.width, sx1 = gpu->so_x + gpu->so.width;
	uint32_t y1 = cmd.r.y + cmd.r.height, sy1 = gpu->so_y + gpu->so.height;
	x1 = x1 < sx1 ? x1 : sx1;
	y1 = y1 < sy1 ? y1 : sy1;
	if (x0 >= x1 || y0 >= y1)
		return gpu_err(q, VIRTIO_GPU_RESP_OK_NODATA);
	for (uint32_t y = y0; y < y1; y++)
		memcpy(gpu->so.pixels + (uint64_t)(y - gpu->so_y) * gpu->so.stride +
			       (uint64_t)(x0 - gpu->so_x) * GPU_BPP,
		       r->data + (uint64_t)y * r->stride + (uint64_t)x0 * GPU_BPP,
		       (uint64_t)(x1 - x0) * GPU_BPP);
	if (gpu->host && gpu->host->flush)
		gpu->host->flush(gpu->ctx, x0 - gpu->so_x, y0 - gpu->so_y, x1 - x0, y1 - y0);
	return gpu_err(q, VIRTIO_GPU_RESP_OK_NODATA);
}

static uint32_t gpu_transfer(struct virtio_gpu *gpu, struct gpu_req *q)
{
	struct virtio_gpu_transfer_to_host_2d cmd;
	GPU_CMD(q, cmd);
	struct gpu_res *r = gpu_res_named(gpu, cmd.resource_id, "transfer");
	if (!r)
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
	if (!r->backing) {
		gpu_warn(gpu, "transfer: resource has no backing", cmd.resource_id);
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_UNSPEC);
	}
	/*
	 * Row h of the rectangle comes from offset + h * stride of the backing
	 * (the resource's stride, as QEMU and Linux's driver have it). The last
	 * byte read must lie inside the backing: offset is the guest's full 64
	 * bits, so compare without adding to it.
	 */
	uint64_t row = (uint64_t)cmd.r.width * GPU_BPP;
	if (!gpu_rect_ok(&cmd.r, r->width, r->height) ||
	    (uint64_t)(cmd.r.height - 1) * r->stride + row > r->backing_len ||
	    cmd.offset > r->backing_len - ((uint64_t)(cmd.r.height - 1) * r->stride + row)) {
		gpu_warn(gpu, "transfer: rectangle or offset outside", cmd.resource_id);
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	}
	uint8_t *dst = r->data + (uint64_t)cmd.r.y * r->stride + (uint64_t)cmd.r.x * GPU_BPP;
	if (cmd.r.x == 0 && cmd.r.width == r->width) {
		gpu_backing_read(r, cmd.offset, dst, (uint64_t)cmd.r.height * r->stride);
	} else {
		for (uint32_t h = 0; h < cmd.r.height; h++)
			gpu_backing_read(r, cmd.offset + (uint64_t)h * r->stride,
					 dst + (uint64_t)h * r->stride, row);
	}
	return gpu_err(q, VIRTIO_GPU_RESP_OK_NODATA);
}

static uint32_t gpu_attach(struct virtio_gpu *gpu, struct gpu_req *q)
{
	struct virtio_gpu_resource_attach_backing cmd;
	GPU_CMD(q, cmd);
	struct gpu_res *r = gpu_res_named(gpu, cmd.resource_id, "attach");
	if (!r)
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
	if (r->backing) {
		gpu_warn(gpu, "attach: resource already has backing", cmd.resource_id);
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_UNSPEC);
	}
	const struct vq_chain *c = q->chain;
	if (cmd.nr_entries == 0 || cmd.nr_entries > VGPU_MAX_ENTRIES ||
	    c->readable_len < sizeof(cmd) + (uint64_t)cmd.nr_entries * sizeof(struct virtio_gpu_mem_entry)) {
		gpu_warn(gpu, "attach: bad entry count", cmd.nr_entries);
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	}
	uint64_t bytes = (uint64_t)cmd.nr_entries * sizeof(struct gpu_entry);
	if (!gpu_charge(gpu, bytes))
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
	struct gpu_entry *b = malloc(bytes);
	if (!b) {
		gpu->mem_used -= bytes;
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
	}
	uint64_t total = 0; /* at most 16384 * 4 GiB: no overflow */
	struct virtio_gpu_mem_entry batch[256]; /* each iov_to_buf walks the chain from its start */
	for (uint32_t i = 0; i < cmd.nr_entries; i++) {
		if (i % 256 == 0) {
			uint32_t n = cmd.nr_entries - i < 256 ? cmd.nr_entries - i : 256;
			iov_to_buf(c->iov, c->nr_readable, sizeof(cmd) + (size_t)i * sizeof(batch[0]), batch,
				   n * sizeof(batch[0]));
		}
		struct virtio_gpu_mem_entry e = batch[i % 256];
		uint8_t *host = e.length ? guest_mem_ptr(gpu->mem, e.addr, e.length) : NULL;
		if (e.length && !host) {
			free(b);
			gpu->mem_used -= bytes;
			gpu_warn(gpu, "attach: entry outside guest RAM", cmd.resource_id);
			return gpu_err(q, VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
		}
		b[i] = (struct gpu_entry){ .host = host, .start = total, .len = e.length };
		total += e.length;
	}
	if (total < (uint64_t)r->stride * r->height) {
		free(b);
		gpu->mem_used -= bytes;
		gpu_warn(gpu, "attach: backing smaller than the resource", cmd.resource_id);
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	}
	r->backing = b;
	r->nr_entries = cmd.nr_entries;
	r->backing_len = total;
	r->charged += bytes;
	return gpu_err(q, VIRTIO_GPU_RESP_OK_NODATA);
}

static uint32_t gpu_detach(struct virtio_gpu *gpu, struct gpu_req *q)
{
	struct virtio_gpu_resource_detach_backing cmd;
	GPU_CMD(q, cmd);
	struct gpu_res *r = gpu_res_named(gpu, cmd.resource_id, "detach");
	if (!r)
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
	if (!r->backing) {
		gpu_warn(gpu, "detach: resource has no backing", cmd.resource_id);
		return gpu_err(q, VIRTIO_GPU_RESP_ERR_UNSPEC);
	}
	gpu_backing_free(gpu, r);
	return gpu_err(q, VIRTIO_GPU_RESP_OK_NODATA);
}

/* One row per command: what it is called, and who serves it. */
static const struct {
	uint32_t type;
	uint32_t (*run)(struct virtio_gpu *gpu, struct gpu_req *q);
	uint32_t resp_size;      /* room the response needs */
	bool edid;               /* needs VIRTIO_GPU_F_EDID */
} gpu_cmds[] = {
	{ VIRTIO_GPU_CMD_GET_DISPLAY_INFO, gpu_display_info, sizeof(struct virtio_gpu_resp_display_info), false },
	{ VIRTIO_GPU_CMD_GET_EDID, gpu_get_edid, sizeof(struct virtio_gpu_resp_edid), true },
	{ VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, gpu_create_2d, sizeof(struct virtio_gpu_ctrl_hdr), false },
	{ VIRTIO_GPU_CMD_RESOURCE_UNREF, gpu_unref, sizeof(struct virtio_gpu_ctrl_hdr), false },
	{ VIRTIO_GPU_CMD_SET_SCANOUT, gpu_set_scanout, sizeof(struct virtio_gpu_ctrl_hdr), false },
	{ VIRTIO_GPU_CMD_RESOURCE_FLUSH, gpu_flush, sizeof(struct virtio_gpu_ctrl_hdr), false },
	{ VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, gpu_transfer, sizeof(struct virtio_gpu_ctrl_hdr), false },
	{ VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, gpu_attach, sizeof(struct virtio_gpu_ctrl_hdr), false },
	{ VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING, gpu_detach, sizeof(struct virtio_gpu_ctrl_hdr), false },
};

static uint32_t gpu_ctrl_serve(void *ctx, struct vq_chain *c)
{
	struct virtio_gpu *gpu = ctx;
	struct gpu_req q = { .chain = c };
	struct virtio_gpu_ctrl_hdr hdr = { 0 };
	bool whole = iov_to_buf(c->iov, c->nr_readable, 0, &hdr, sizeof(hdr)) == sizeof(hdr);
	uint32_t len;
	const char *bad = NULL;
	unsigned i = 0;
	while (i < sizeof(gpu_cmds) / sizeof(gpu_cmds[0]) && gpu_cmds[i].type != hdr.type)
		i++;
	if (!whole) {
		bad = "request shorter than its header";
		len = gpu_err(&q, VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
	} else if (i == sizeof(gpu_cmds) / sizeof(gpu_cmds[0]) ||
		   (gpu_cmds[i].edid && !(gpu->features & VIRTIO_FEATURE(VIRTIO_GPU_F_EDID)))) {
		bad = "unknown command";
		len = gpu_err(&q, VIRTIO_GPU_RESP_ERR_UNSPEC);
	} else if (c->writable_len < gpu_cmds[i].resp_size) {
		/* Not run: its answer would not fit. */
		bad = "response buffer too small";
		len = gpu_err(&q, VIRTIO_GPU_RESP_ERR_UNSPEC);
	} else {
		len = gpu_cmds[i].run(gpu, &q);
	}
	if (bad)
		gpu_warn(gpu, bad, hdr.type);
	if (hdr.flags & VIRTIO_GPU_FLAG_FENCE) {
		q.resp.hdr.flags = VIRTIO_GPU_FLAG_FENCE | (hdr.flags & VIRTIO_GPU_FLAG_INFO_RING_IDX);
		q.resp.hdr.fence_id = hdr.fence_id;
		q.resp.hdr.ctx_id = hdr.ctx_id;
		if (hdr.flags & VIRTIO_GPU_FLAG_INFO_RING_IDX)
			q.resp.hdr.ring_idx = hdr.ring_idx;
	}
	if (c->writable_len < len) {
		if (c->writable_len < sizeof(q.resp.hdr))
			return 0; /* no room for even an error: the chain goes back empty */
		len = sizeof(q.resp.hdr);
	}
	return (uint32_t)iov_from_buf(c->iov + c->nr_readable, c->nr_iov - c->nr_readable, 0,
				      &q.resp, len);
}

/* ---- the cursor queue: no responses ---- */

static void gpu_cursor_update(struct virtio_gpu *gpu, const struct virtio_gpu_update_cursor *u)
{
	struct virtio_gpu_cursor *cur = &gpu->cursor;
	cur->image_changed = false;
	if (u->hdr.type == VIRTIO_GPU_CMD_UPDATE_CURSOR) {
		if (u->resource_id == 0) {
			cur->visible = false;
		} else {
			struct gpu_res *r = gpu_res_find(gpu, u->resource_id);
			if (!r || r->width > VGPU_CURSOR_DIM || r->height > VGPU_CURSOR_DIM ||
			    u->hot_x >= VGPU_CURSOR_DIM || u->hot_y >= VGPU_CURSOR_DIM) {
				gpu_warn(gpu, "cursor: bad resource or hot spot", u->resource_id);
				return;
			}
			memset(gpu->cursor_pixels, 0, sizeof(gpu->cursor_pixels));
			for (uint32_t y = 0; y < r->height; y++)
				memcpy(gpu->cursor_pixels + y * VGPU_CURSOR_DIM * GPU_BPP,
				       r->data + (uint64_t)y * r->stride, r->stride);
			cur->visible = true;
			cur->hot_x = u->hot_x;
			cur->hot_y = u->hot_y;
			cur->format = r->format;
		}
		cur->image_changed = true;
	}
	cur->x = (int32_t)u->pos.x;
	cur->y = (int32_t)u->pos.y;
	cur->pixels = gpu->cursor_pixels;
	if (gpu->host && gpu->host->cursor)
		gpu->host->cursor(gpu->ctx, cur);
}

static uint32_t gpu_cursor_serve(void *ctx, struct vq_chain *c)
{
	struct virtio_gpu *gpu = ctx;
	struct virtio_gpu_update_cursor u;
	if (iov_to_buf(c->iov, c->nr_readable, 0, &u, sizeof(u)) != sizeof(u))
		gpu_warn(gpu, "cursor: request too short", (uint32_t)c->readable_len);
	else if (u.hdr.type != VIRTIO_GPU_CMD_UPDATE_CURSOR && u.hdr.type != VIRTIO_GPU_CMD_MOVE_CURSOR)
		gpu_warn(gpu, "cursor: unknown command", u.hdr.type);
	else if (u.pos.scanout_id != 0)
		gpu_warn(gpu, "cursor: no such scanout", u.pos.scanout_id);
	else
		gpu_cursor_update(gpu, &u);
	return 0;
}

/* ---- the device ops ---- */

static uint64_t gpu_features(void *dev)
{
	(void)dev;
	return VIRTIO_FEATURE(VIRTIO_GPU_F_EDID) | VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC_BIT) |
	       VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT);
}

static void gpu_config_read(void *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_gpu *gpu = dev;
	struct virtio_gpu_config cfg = { .events_read = gpu->events_read, .num_scanouts = 1 };
	virtio_config_copy((const uint8_t *)&cfg, sizeof(cfg), offset, data, len);
}

static void gpu_config_write(void *dev, uint32_t offset, const uint8_t *data, uint32_t len)
{
	struct virtio_gpu *gpu = dev;
	/* Only events_clear is writable: a 1 clears that event. */
	if (offset == offsetof(struct virtio_gpu_config, events_clear) && len == 4) {
		uint32_t v;
		memcpy(&v, data, 4);
		gpu->events_read &= ~v;
	}
}

static void gpu_activate(void *dev, struct virtio_dev *vd, uint64_t features)
{
	struct virtio_gpu *gpu = dev;
	gpu->vd = vd;
	gpu->features = features;
}

static void gpu_queue_notify(void *dev, struct virtio_dev *vd, unsigned queue,
			     enum virtio_path path)
{
	(void)path; /* both queues are served on the I/O thread */
	static _Thread_local struct vq_chain chain;
	struct virtio_gpu *gpu = dev;
	if (queue == VIRTIO_GPU_QUEUE_CTRL)
		virtio_queue_serve(vd, queue, &chain, GPU_CTRL_BUDGET, "broken control queue",
				   gpu_ctrl_serve, gpu);
	else if (queue == VIRTIO_GPU_QUEUE_CURSOR)
		virtio_queue_serve(vd, queue, &chain, VIRTIO_QUEUE_BUDGET, "broken cursor queue",
				   gpu_cursor_serve, gpu);
}

static void gpu_reset(void *dev)
{
	struct virtio_gpu *gpu = dev;
	gpu_res_free_all(gpu);
	gpu->so_res = 0; /* the host keeps showing the last frame */
	gpu->vd = NULL;
	gpu->features = 0;
	gpu->events_read = 0;
	if (gpu->cursor.visible) {
		gpu->cursor.visible = false;
		gpu->cursor.image_changed = true;
		if (gpu->host && gpu->host->cursor)
			gpu->host->cursor(gpu->ctx, &gpu->cursor);
	}
}

const struct virtio_device_ops virtio_gpu_ops = {
	.name = "virtio-gpu",
	.device_id = VIRTIO_ID_GPU,
	.num_queues = 2,
	.queue_max_size = GPU_QUEUE_SIZE,
	.config_size = sizeof(struct virtio_gpu_config),
	.features = gpu_features,
	.config_read = gpu_config_read,
	.config_write = gpu_config_write,
	.activate = gpu_activate,
	.queue_notify = gpu_queue_notify,
	.reset = gpu_reset,
};

/* ---- the host's side ---- */

static bool gpu_pref_ok(uint32_t w, uint32_t h)
{
	return w >= VGPU_MIN_PREF_W && h >= VGPU_MIN_PREF_H && w <= VGPU_MAX_PREF_DIM &&
	       h <= VGPU_MAX_PREF_DIM;
}

struct virtio_gpu *virtio_gpu_create(const struct guest_mem *mem, uint32_t width, uint32_t height,
				     const struct virtio_gpu_host_ops *host, void *ctx)
{
	struct virtio_gpu *gpu = calloc(1, sizeof(*gpu));
	if (!gpu) {
		log_error("virtio-gpu: out of memory");
		return NULL;
	}
	gpu->mem = mem;
	gpu->host = host;
	gpu->ctx = ctx;
	gpu->pref_w = width < VGPU_MIN_PREF_W ? VGPU_MIN_PREF_W :
		      width > VGPU_MAX_PREF_DIM ? VGPU_MAX_PREF_DIM : width;
	gpu->pref_h = height < VGPU_MIN_PREF_H ? VGPU_MIN_PREF_H :
		      height > VGPU_MAX_PREF_DIM ? VGPU_MAX_PREF_DIM : height;
	gpu->cursor.pixels = gpu->cursor_pixels;
	ratelimit_init(&gpu->log_limit, 60, 5);
	return gpu;
}

void virtio_gpu_destroy(struct virtio_gpu *gpu)
{
	if (!gpu)
		return;
	gpu_res_free_all(gpu);
	free(gpu->so.pixels);
	free(gpu);
}

const struct virtio_gpu_scanout *virtio_gpu_scanout(const struct virtio_gpu *gpu)
{
	return &gpu->so;
}

bool virtio_gpu_set_preferred(struct virtio_gpu *gpu, uint32_t width, uint32_t height)
{
	if (!gpu_pref_ok(width, height))
		return false;
	gpu->pref_w = width;
	gpu->pref_h = height;
	gpu->events_read |= VIRTIO_GPU_EVENT_DISPLAY;
	if (gpu->vd)
		virtio_config_changed(gpu->vd);
	return true;
}
