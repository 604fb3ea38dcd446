/*
 * The build's temporary directory beside OUT (OUT.build-XXXXXX), and its
 * removal: whatever is still mounted in the tree (mmdebstrap mounts /proc,
 * /sys and /dev there while it runs) is unmounted first, and the removal
 * never crosses into another file system, so an interrupted build can
 * never delete the host's /dev.
 */
#ifndef SHOJI_IMAGE_TMPDIR_H
#define SHOJI_IMAGE_TMPDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Creates OUT.build-XXXXXX; its path into buf. False after one line. */
bool tmpdir_make(const char *out, char *buf, size_t len);
/* rm -rf path, as above. False after one line. */
bool tmpdir_remove(const char *path);
/* Bytes the files under path take (du). */
uint64_t tmpdir_usage(const char *path);

#endif
