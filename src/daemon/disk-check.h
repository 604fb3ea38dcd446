/*
 * Before a VM starts, the daemon opens each of its qcow2 disks' backing
 * chains itself and checks them: every backing file a regular file inside
 * the daemon's image directories (--image-dir), or, without any, inside
 * the disk's own directory, as shoji-vmm allows by default. The daemon has
 * the right to say which host files a VM may reach; an image, which anyone
 * may have written, does not. The VMM enforces the same directories again
 * (it is given them as --disk ...,backing-dir=), so neither check alone is
 * trusted.
 */
#ifndef SHOJI_DAEMON_DISK_CHECK_H
#define SHOJI_DAEMON_DISK_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon/vmdef.h"

#define DISK_CHECK_MAX_DIRS 4

/*
 * True when every disk of d may be used. Otherwise false, with the block
 * layer's line naming the file in the log and a short reason in `why`.
 * image_dirs is NULL-terminated, or NULL for each disk's own directory.
 */
bool disk_check_chains(const struct vmdef *d, const char *const *image_dirs, char *why,
		       size_t whylen);

#endif
