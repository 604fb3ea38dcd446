/* Implementation of daemon/disk-check.h. */
#include "daemon/disk-check.h"

#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "block/block.h"

/* Opens the disk read-only, with its chain, without locking: the VMM
 * takes the locks when it opens the disk a moment later, and a look must
 * not make a running VM's second disk look busy. */
static bool chain_ok(const struct vmdef_disk *disk, const char *const *dirs)
{
	char copy[PATH_MAX];
	snprintf(copy, sizeof(copy), "%s", disk->path);
	/* Without --image-dir: the disk's own folder, or the one the daemon named for it. */
	const char *own[2] = { disk->backing_dir[0] ? disk->backing_dir : dirname(copy), NULL };
	struct block_open_opts o = { .read_only = true, .force_share = true,
				     .backing_dirs = dirs ? dirs : own };
	struct block_dev *bd;
	if (block_open(&bd, disk->path, disk->qcow2 ? "qcow2" : "raw", &o) < 0)
		return false;
	block_close(bd);
	return true;
}

bool disk_check_chains(const struct vmdef *d, const char *const *image_dirs, char *why,
		       size_t whylen)
{
	for (unsigned i = 0; i < d->ndisks; i++) {
		if (!chain_ok(&d->disks[i], image_dirs)) {
			snprintf(why, whylen, "disk %s cannot be used (see shojid's log)",
				 d->disks[i].path);
			return false;
		}
	}
	return true;
}
