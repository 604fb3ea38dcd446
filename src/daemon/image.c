/* Image VMs' overlays (see image.h). */
#include "daemon/image.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "block/block.h"
#include "daemon/store.h"

bool image_overlay_path(const char *state_dir, const char *name, char *out, size_t len)
{
	return (size_t)snprintf(out, len, "%s/disks/%s.qcow2", state_dir, name) < len;
}

/* A new overlay of master (absolute) at path, of the master's size. */
static bool create_overlay(const char *path, const char *master, char *why, size_t whylen)
{
	struct block_open_opts o = { .read_only = true, .force_share = true, .no_backing = true };
	struct block_dev *b;
	if (block_open(&b, master, "qcow2", &o) < 0) {
		snprintf(why, whylen, "cannot open the master image %s (see shojid's log)", master);
		return false;
	}
	struct block_create_opts c = { .size = block_get_size(b), .backing_file = master,
				       .backing_format = "qcow2" };
	block_close(b);
	if (block_create(path, "qcow2", &c) < 0) {
		snprintf(why, whylen, "cannot create the overlay %s (see shojid's log)", path);
		return false;
	}
	log_info("created %s over the master image %s", path, master);
	return true;
}

bool image_effective_def(const char *state_dir, const struct vmdef *d, struct vmdef *out, char *why,
			 size_t whylen)
{
	*out = *d;
	if (!d->image[0])
		return true;
	if (d->ndisks >= VMDEF_MAX_DISKS) {
		snprintf(why, whylen, "an image VM has room for %d disks besides its image", VMDEF_MAX_DISKS - 1);
		return false;
	}
	char dir[PATH_MAX], overlay[PATH_MAX], master[PATH_MAX + 16], folder[PATH_MAX + 16];
	snprintf(dir, sizeof(dir), "%s/disks", state_dir);
	snprintf(master, sizeof(master), "%s.qcow2", d->image);
	if (!store_mkdirs(dir, 0700) || !image_overlay_path(state_dir, d->name, overlay, sizeof(overlay))) {
		snprintf(why, whylen, "%s: %s", dir, strerror(errno));
		return false;
	}
	struct stat st;
	if (stat(overlay, &st) < 0 && !create_overlay(overlay, master, why, whylen))
		return false;
	/* The overlay is the first disk, /dev/vda, where the image's root file system is. */
	memmove(&out->disks[1], &d->disks[0], d->ndisks * sizeof(d->disks[0]));
	out->ndisks = d->ndisks + 1;
	struct vmdef_disk *root = &out->disks[0];
	*root = (struct vmdef_disk){ .qcow2 = true };
	snprintf(root->path, sizeof(root->path), "%s", overlay);
	snprintf(folder, sizeof(folder), "%s", master);
	snprintf(root->backing_dir, sizeof(root->backing_dir), "%s", dirname(folder));
	return true;
}

void image_remove_overlay(const char *state_dir, const char *name)
{
	char path[PATH_MAX];
	if (image_overlay_path(state_dir, name, path, sizeof(path)) && unlink(path) == 0)
		log_info("removed %s", path);
}
