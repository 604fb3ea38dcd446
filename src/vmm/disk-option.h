/*
 * The --disk option of shoji-vmm:
 *
 *   --disk path=P[,readonly=on|off][,serial=S][,direct=on|off][,format=raw|qcow2]
 *          [,aio=auto|threads|io_uring][,backing-dir=DIR]...
 *
 * parsed into a disk definition for dev/virtio-blk. Parsing does no I/O
 * except checking that the image exists and can be read (and written,
 * unless readonly=on), so a mistake costs one line before any VM resource
 * is taken. The format defaults to raw and is never probed: a raw image
 * whose guest wrote a qcow2 header must not turn into a qcow2 image.
 */
#ifndef SHOJI_VMM_DISK_OPTION_H
#define SHOJI_VMM_DISK_OPTION_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "dev/virtio-blk.h"

struct disk_option {
	char path[PATH_MAX];
	char format[8];                          /* "raw" or "qcow2" */
	char serial[VIRTIO_BLK_ID_BYTES + 1];    /* "" when not given */
	bool has_serial;
	bool read_only;
	bool direct;
	enum virtio_blk_aio aio;
	/* backing-dir=, in order given; may repeat up to VIRTIO_BLK_MAX_BACKING_DIRS */
	char backing_dirs[VIRTIO_BLK_MAX_BACKING_DIRS][PATH_MAX];
	unsigned nbacking_dirs;
};

/*
 * Fills `out` from the option's value. Returns false with one line in `err`
 * naming the key and value at fault and what is accepted.
 */
bool disk_option_parse(const char *text, struct disk_option *out, char *err, size_t errlen);

/* The device configuration for `d`; its strings point into *d. */
struct virtio_blk_config disk_option_config(const struct disk_option *d);

#endif
