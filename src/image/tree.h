/*
 * What `shoji-img build` changes in the tree mmdebstrap made, so that it
 * boots in shoji-vmm as root=/dev/vda and talks to the host: host name,
 * fstab, the vsock module, the agent and its unit, the serial console, the
 * "multi-user.target reached" marker, DHCP, the recipe's files and
 * first-boot script, and nothing that reaches the internet on its own.
 * docs/images.md lists every file written here.
 */
#ifndef SHOJI_IMAGE_TREE_H
#define SHOJI_IMAGE_TREE_H

#include <stdbool.h>
#include <time.h>

#include "image/recipe.h"

/* What goes into /etc/systemd/system: the agent, the marker, first boot. */
#define TREE_MARKER "shoji: multi-user.target reached"

/* /etc/fstab, and /etc/initramfs-tools/hooks/shoji-fsck: mmdebstrap puts
 * them in place before the kernel and initramfs-tools are installed
 * (build.c), so the initrd gets e2fsck for the root. */
extern const char tree_fstab[];
extern const char tree_fsck_hook[];

/* False after one line. log_fd takes the output of the commands run
 * (cp, systemctl in a chroot). */
bool tree_customise(const char *root, const struct recipe *r, const char *recipe_dir,
		    const char *agent, int log_fd);
/* Sets every mtime later than epoch to epoch (SOURCE_DATE_EPOCH), and
 * every atime to the mtime, so that the files written and read at build
 * time do not make two builds differ. */
bool tree_clamp_mtimes(const char *root, time_t epoch);

#endif
