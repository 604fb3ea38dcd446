/*
 * Internal to the block layer: image locking, compatible with QEMU's.
 *
 * Every image file the block layer opens (top image and each backing file,
 * raw or qcow2) is locked on its own descriptor before anything is read
 * from it or written to it, so that two writers, or a writer and a reader,
 * never share an image: not two shoji VMs, not shoji-img and a running VM,
 * not shoji and QEMU. The locks are QEMU's (block/file-posix.c): one-byte
 * shared OFD locks at offset 100 + p for each permission p a user holds
 * and at 200 + p for each permission it does not let others have. A
 * reader holds "consistent read" and shares everything but "write" and
 * "resize"; a writer also holds "write" and "resize". So `qemu-img info`
 * on a disk a shoji VM writes fails as it would against QEMU, and the
 * other way round; `-U` (force share) takes no lock and checks none.
 *
 * OFD locks belong to the open file, not the process: they conflict inside
 * one process too, survive fork and vanish with the last descriptor.
 */
#ifndef SHOJI_BLOCK_LOCK_H
#define SHOJI_BLOCK_LOCK_H

#include <stdbool.h>

#include "block/block.h"

enum block_lock_mode {
	BLOCK_LOCK_NONE,   /* force share: no lock, no check */
	BLOCK_LOCK_READ,   /* may read; nobody else may write or resize */
	BLOCK_LOCK_WRITE,  /* may write and resize; nobody else may write or resize,
			    * and readers that deny writing (all of shoji's, QEMU's by
			    * default) are kept out by their own denial */
};

/* The lock an open with these options takes. */
static inline enum block_lock_mode block_lock_mode_of(const struct block_open_opts *o)
{
	if (o->force_share || o->no_lock)
		return BLOCK_LOCK_NONE;
	return o->read_only ? BLOCK_LOCK_READ : BLOCK_LOCK_WRITE;
}

/*
 * Takes the locks of `mode` on fd (path is for the message). Returns 0, or
 * -EBUSY after logging one line naming path when another user's locks
 * conflict (nothing is left locked then), or another -errno. A file system
 * without OFD locks gets a warning and no lock.
 */
int block_lock_fd(int fd, enum block_lock_mode mode, const char *path);

#endif
