/*
 * Host-file I/O for the block backends: full-length pread/pwrite that retry
 * on short transfers and EINTR, and, for files opened with O_DIRECT (cache
 * mode "none"), transparent bounce buffering of requests that are not
 * aligned to the device's block size. Reads beyond the end of the file return
 * zeros, like a hole: a hostile image cannot make us read outside the file.
 *
 * Vectored calls move a whole iovec in one preadv/pwritev (IOV_MAX segments
 * at a time) when O_DIRECT can take its segments as they are; only the
 * segments it cannot take are bounced one by one. Reads and writes may run
 * from several threads at once; an unaligned O_DIRECT write (which
 * rewrites whole blocks) excludes the other writes while it runs.
 */
#ifndef SHOJI_BLOCK_FILE_H
#define SHOJI_BLOCK_FILE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "block/lock.h"

struct bfile {
	int fd;
	int lock_fd;     /* holds the image lock, or -1 (see bfile_open) */
	bool direct;
	bool read_only;
	uint32_t align;  /* O_DIRECT alignment of offsets, lengths and buffers */
	uint64_t size;   /* current file size, kept up to date by our writes */
	pthread_rwlock_t rmw_lock; /* see write_lock() in file.c */
};

/* Opens path and takes the image lock `lock` on it before returning (see
 * block/lock.h); -EBUSY, logged, when another user holds a conflicting one.
 * With `expect`, the file must be that one (device and inode): -EAGAIN,
 * logged, when it was swapped since it was checked. */
int bfile_open(struct bfile *f, const char *path, bool read_only, bool direct,
	       enum block_lock_mode lock, const struct stat *expect);
void bfile_close(struct bfile *f);
int bfile_pread(struct bfile *f, void *buf, size_t len, uint64_t off);
int bfile_pwrite(struct bfile *f, const void *buf, size_t len, uint64_t off);
/* Like bfile_pwrite for a range known to lie inside the file and to be
 * aligned; touches no shared state, so it may run without the caller's lock. */
int bfile_pwrite_within(struct bfile *f, const void *buf, size_t len, uint64_t off);
int bfile_preadv(struct bfile *f, const struct iovec *iov, int iovcnt, uint64_t off);
int bfile_pwritev(struct bfile *f, const struct iovec *iov, int iovcnt, uint64_t off);
int bfile_sync(struct bfile *f);
int bfile_truncate(struct bfile *f, uint64_t size);
/* Makes [off, off+len) read as zeros; punch=true also frees the space. */
int bfile_zero(struct bfile *f, uint64_t off, uint64_t len, bool punch);
/* Allocates a buffer aligned for O_DIRECT; free with free(). */
void *bfile_alloc(size_t len);

#endif
