/*
 * The pieces of the bundle `shoji-img build` writes (docs/images.md): the
 * ext4 file system made by mke2fs from the tree, turned into qcow2 by
 * shoji's block layer; the tree's own kernel and initrd; and the manifest
 * (OUT.json) with the sha256 of each file. Every function writes into the
 * build's temporary directory; build.c moves the results into place.
 */
#ifndef SHOJI_IMAGE_BUNDLE_H
#define SHOJI_IMAGE_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* The kernel command line the images expect (also in OUT.json "cmdline"). */
#define BUNDLE_CMDLINE "root=/dev/vda rw console=ttyS0"

/* mke2fs -t ext4 -d root into raw (size bytes), reproducibly: fixed UUID
 * and directory hash seed, file system times at epoch. The status of
 * mke2fs (its output goes to log_fd), or -1. */
int bundle_mkfs(const char *root, const char *raw, uint64_t size, const char *uuid,
		const char *hash_seed, time_t epoch, int log_fd);
/* mke2fs -d copies each inode's change time from the tree, where it is
 * the time of the build (no system call sets it), and directories' access
 * times, which mke2fs's own reading changes: debugfs sets both to epoch in
 * every inode in use. script: a scratch file for its commands. */
bool bundle_fix_ctimes(const char *raw, const char *script, time_t epoch, int log_fd);
/* raw -> qcow2 through the block layer (what `shoji-img convert` does).
 * 0 or -errno after one line. */
int bundle_qcow2(const char *raw, const char *qcow2, bool compress);
/* Copies the tree's only /boot/vmlinuz-VERSION and its initrd.img-VERSION
 * to the two paths; version gets VERSION. False after one line. */
bool bundle_kernel(const char *root, const char *vmlinuz, const char *initrd, char *version,
		   size_t len);
/* sha256 of a file, as 64 hex digits, and its size. False after one line. */
bool bundle_sha256(const char *path, char hex[65], uint64_t *bytes);
/* A UUID (8-4-4-4-12 hex) derived from sha256(salt, text): the same recipe
 * gives the same file system UUID, two recipes two. */
bool bundle_uuid(const char *salt, const char *text, char out[37]);

#endif
