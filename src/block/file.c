/* Implementation of block/file.h. */
#include "block/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"

#define BFILE_DIRECT_ALIGN 4096 /* safe for 512e and 4Kn devices alike */

void *bfile_alloc(size_t len)
{
	void *p = NULL;
	if (posix_memalign(&p, BFILE_DIRECT_ALIGN, len ? len : 1) != 0)
		return NULL;
	return p;
}

int bfile_open(struct bfile *f, const char *path, bool read_only, bool direct)
{
	int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	if (direct)
		flags |= O_DIRECT;
	int fd = open(path, flags);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	off_t end = lseek(fd, 0, SEEK_END); /* block devices report 0 in st_size */
	if (end < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	*f = (struct bfile){ .fd = fd, .direct = direct, .read_only = read_only,
			     .align = direct ? BFILE_DIRECT_ALIGN : 1, .size = (uint64_t)end };
	return 0;
}

void bfile_close(struct bfile *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

static bool is_aligned(const struct bfile *f, const void *buf, size_t len, uint64_t off)
{
	uint64_t a = f->align;
	return (off % a) == 0 && (len % a) == 0 && ((uintptr_t)buf % a) == 0;
}

/* Plain loops; beyond EOF the rest of the buffer is zero-filled. */
static int raw_pread(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) {
			memset(p, 0, len);
			return 0;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int raw_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/* Unaligned O_DIRECT access goes through an aligned bounce buffer covering
 * the request; writes read-modify-write the partial edge blocks. */
static int bounce_io(struct bfile *f, void *buf, size_t len, uint64_t off, bool write)
{
	uint64_t start = off & ~(uint64_t)(f->align - 1);
	uint64_t end = (off + len + f->align - 1) & ~(uint64_t)(f->align - 1);
	size_t blen = (size_t)(end - start);
	char *b = bfile_alloc(blen);
	if (!b)
		return -ENOMEM;
	int r = raw_pread(f->fd, b, blen, start);
	if (r == 0) {
		if (write) {
			memcpy(b + (off - start), buf, len);
			r = raw_pwrite(f->fd, b, blen, start);
		} else {
			memcpy(buf, b + (off - start), len);
		}
	}
	free(b);
	return r;
}

int bfile_pread(struct bfile *f, void *buf, size_t len, uint64_t off)
{
	if (len == 0)
		return 0;
	if (off > INT64_MAX || len > INT64_MAX - off)
		return -EINVAL;
	if (f->direct && !is_aligned(f, buf, len, off))
		return bounce_io(f, buf, len, off, false);
	return raw_pread(f->fd, buf, len, off);
}

int bfile_pwrite(struct bfile *f, const void *buf, size_t len, uint64_t off)
{
	if (len == 0)
		return 0;
	if (f->read_only)
		return -EROFS;
	if (off > INT64_MAX || len > INT64_MAX - off)
		return -EINVAL;
	int r;
	if (f->direct && !is_aligned(f, buf, len, off))
		r = bounce_io(f, (void *)buf, len, off, true);
	else
		r = raw_pwrite(f->fd, buf, len, off);
	if (r == 0 && off + len > f->size)
		f->size = off + len;
	return r;
}

int bfile_pwrite_within(struct bfile *f, const void *buf, size_t len, uint64_t off)
{
	if (f->read_only)
		return -EROFS;
	return raw_pwrite(f->fd, buf, len, off);
}

int bfile_preadv(struct bfile *f, const struct iovec *iov, int iovcnt, uint64_t off)
{
	for (int i = 0; i < iovcnt; i++) {
		int r = bfile_pread(f, iov[i].iov_base, iov[i].iov_len, off);
		if (r < 0)
			return r;
		off += iov[i].iov_len;
	}
	return 0;
}

int bfile_pwritev(struct bfile *f, const struct iovec *iov, int iovcnt, uint64_t off)
{
	for (int i = 0; i < iovcnt; i++) {
		int r = bfile_pwrite(f, iov[i].iov_base, iov[i].iov_len, off);
		if (r < 0)
			return r;
		off += iov[i].iov_len;
	}
	return 0;
}

int bfile_sync(struct bfile *f)
{
	if (f->read_only)
		return 0;
	while (fdatasync(f->fd) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

int bfile_truncate(struct bfile *f, uint64_t size)
{
	if (f->read_only)
		return -EROFS;
	if (size > INT64_MAX)
		return -EINVAL;
	if (ftruncate(f->fd, (off_t)size) < 0)
		return -errno;
	f->size = size;
	return 0;
}

int bfile_zero(struct bfile *f, uint64_t off, uint64_t len, bool punch)
{
	if (f->read_only)
		return -EROFS;
	if (len == 0)
		return 0;
	if (off > INT64_MAX || len > INT64_MAX - off)
		return -EINVAL;
	if (off >= f->size)
		return 0; /* beyond EOF already reads as zeros */
	if (len > f->size - off)
		len = f->size - off; /* never grow the file just to hold zeros */
	int mode = punch ? (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)
			 : (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE);
	if (fallocate(f->fd, mode, (off_t)off, (off_t)len) == 0)
		return 0;
	/* The file system cannot do it: write zeros ourselves. */
	size_t chunk = len < 1024 * 1024 ? (size_t)len : 1024 * 1024;
	char *z = bfile_alloc(chunk);
	if (!z)
		return -ENOMEM;
	memset(z, 0, chunk);
	int r = 0;
	while (len > 0 && r == 0) {
		size_t n = len < chunk ? (size_t)len : chunk;
		r = bfile_pwrite(f, z, n, off);
		off += n;
		len -= n;
	}
	free(z);
	return r;
}
