/*
 * virtio-gpu, 2D only (virtio 1.2, section 5.7): the guest-facing half of
 * a VM's screen (issue 19). The guest's DRM driver creates resources (2D
 * images in one of the 32-bit formats), backs them with lists of its own
 * pages, copies pages into the device's copy of a resource with
 * TRANSFER_TO_HOST_2D, shows a resource on the scanout with SET_SCANOUT and
 * says what changed with RESOURCE_FLUSH. The cursor has its own queue.
 *
 * The host side sees only a scanout (struct virtio_gpu_scanout: pixels the
 * device owns, the last frame the guest flushed) and three callbacks
 * (struct virtio_gpu_host_ops): a new mode, a damaged rectangle, a cursor
 * change. It offers the guest a preferred size with
 * virtio_gpu_set_preferred() (the viewer's window was resized); the guest
 * sees it in GET_DISPLAY_INFO and GET_EDID after a config interrupt.
 *
 * One scanout: a VM shows one desktop in one viewer window, and Linux's
 * driver sets a mode on every scanout it is offered, so a second one would
 * be a second monitor nobody looks at. The structs below carry no scanout
 * index on purpose; several monitors would add one.
 *
 * What the VMM side will do (not here yet): create the device with the
 * --display size, add it to the virtio-pci transport with
 * virtio_gpu_ops, allocate the scanout's pixels in a memfd it shares with
 * the viewer (today the device callocs them, see virtio_gpu_scanout), and
 * forward mode/flush/cursor to the viewer's socket; a resize from the viewer
 * becomes virtio_gpu_set_preferred() on the I/O thread, under the
 * transport's lock.
 *
 * Limits a hostile guest meets (each answered with an error response, the
 * device keeps serving): see the VGPU_* constants below.
 */
#ifndef SHOJI_DEV_VIRTIO_GPU_H
#define SHOJI_DEV_VIRTIO_GPU_H

#include <stdbool.h>
#include <stdint.h>

#include "dev/edid.h"
#include "dev/virtio.h"
#include "hv/mem.h"

#define VIRTIO_GPU_QUEUE_CTRL   0
#define VIRTIO_GPU_QUEUE_CURSOR 1

/* Host memory one device may hold for the guest: resources' copies, their
 * backing lists, the scanout and the cursor. A guest asking for more gets
 * ERR_OUT_OF_MEMORY. 256 MiB holds a 4K desktop triple-buffered with room. */
#define VGPU_MAX_MEM        (256u << 20)
/* One resource's pixels: 64 MiB is 4096x4096 at 4 bytes. */
#define VGPU_MAX_RES_BYTES  (64u << 20)
/* Width and height of a resource. */
#define VGPU_MAX_DIM        16384u
/* Resources alive at once (each lookup walks them). */
#define VGPU_MAX_RESOURCES  4096u
/* Entries of one ATTACH_BACKING: a 64 MiB resource in 4 KiB pages. */
#define VGPU_MAX_ENTRIES    16384u
/* The preferred size the host may offer: an EDID detailed timing holds 12
 * bits per dimension (dev/edid.h); below 640x480 a desktop is of no use
 * (a smaller window scales the picture down). */
#define VGPU_MIN_PREF_W     640u
#define VGPU_MIN_PREF_H     480u
#define VGPU_MAX_PREF_DIM   EDID_MAX_DIM
/* The cursor image: Linux's driver uses 64x64 resources. */
#define VGPU_CURSOR_DIM     64u

/*
 * The frame the host shows. `pixels` holds height rows of `stride` bytes in
 * `format` (VIRTIO_GPU_FORMAT_*, always 4 bytes a pixel). The device writes
 * it only on RESOURCE_FLUSH and calls flush() after; it may move when the
 * mode changes (mode() is called after). NULL pixels: no picture yet.
 */
struct virtio_gpu_scanout {
	uint8_t *pixels;
	uint32_t width, height, stride;
	uint32_t format;
};

/* The cursor as the host draws it: 64x64 pixels in `format`, 256-byte rows. */
struct virtio_gpu_cursor {
	bool visible;
	bool image_changed;      /* pixels/hot spot differ from the last call */
	int32_t x, y;            /* top-left of the image on the scanout (may be < 0) */
	uint32_t hot_x, hot_y;
	uint32_t format;
	const uint8_t *pixels;   /* VGPU_CURSOR_DIM^2 * 4 bytes */
};

/* What the device tells the host; called under the transport's lock. */
struct virtio_gpu_host_ops {
	/* The scanout's size or format changed (0x0: the guest turned it off). */
	void (*mode)(void *ctx, uint32_t width, uint32_t height, uint32_t format);
	/* The rectangle changed in the scanout's pixels (inside its size). */
	void (*flush)(void *ctx, uint32_t x, uint32_t y, uint32_t w, uint32_t h);
	void (*cursor)(void *ctx, const struct virtio_gpu_cursor *cursor);
};

extern const struct virtio_device_ops virtio_gpu_ops;

struct virtio_gpu;

/*
 * A device offering `width`x`height` (clamped to the VGPU_*_PREF limits)
 * that translates backing pages through `mem`. `host` may have NULL
 * members. NULL (logged) when out of memory.
 */
struct virtio_gpu *virtio_gpu_create(const struct guest_mem *mem, uint32_t width, uint32_t height,
				     const struct virtio_gpu_host_ops *host, void *ctx);
void virtio_gpu_destroy(struct virtio_gpu *gpu);

/* The scanout (valid until the next call into the device). */
const struct virtio_gpu_scanout *virtio_gpu_scanout(const struct virtio_gpu *gpu);

/*
 * Offers the guest a new preferred size: sets VIRTIO_GPU_EVENT_DISPLAY and
 * raises the config interrupt when a driver is active. False (nothing
 * changes) for a size outside the VGPU_*_PREF limits. Under the
 * transport's lock, like a device callback.
 */
bool virtio_gpu_set_preferred(struct virtio_gpu *gpu, uint32_t width, uint32_t height);

#endif
