/* Implementation of block/file.h. */
#include "block/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

/*
 * The image lock lives on a descriptor of its own: an io_uring that has
 * the data descriptor registered keeps its open file alive until the
 * ring's asynchronous teardown ends, and the lock with it, so a disk closed
 * and opened again at once would find itself still locked. A second
 * descriptor is closed when we say. `st` is the data descriptor's, so both
 * must be the same file.
 */
static int lock_open(const char *path, const struct stat *st, enum block_lock_mode mode,
		     int *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	struct stat ls;
	if (fstat(fd, &ls) < 0 || ls.st_dev != st->st_dev || ls.st_ino != st->st_ino) {
		log_error("%s: the file changed while it was being opened; try again", path);
		close(fd);
		return -EAGAIN;
	}
	int r = block_lock_fd(fd, mode, path);
	if (r < 0) {
		close(fd);
		return r;
	}
	*out = fd;
	return 0;
}

/* The same file as *expect (when given): a file swapped in since is refused. */
static int same_file(const char *path, const struct stat *st, const struct stat *expect)
{
	if (!expect || (st->st_dev == expect->st_dev && st->st_ino == expect->st_ino))
		return 0;
	log_error("%s: the file changed while it was being opened; refusing it", path);
	return -EAGAIN;
}

int bfile_open(struct bfile *f, const char *path, bool read_only, bool direct,
	       enum block_lock_mode lock, const struct stat *expect)
{
	/* O_NONBLOCK only while opening: a FIFO put in the file's place must
	 * not block us; a regular file ignores it, and it is cleared below. */
	int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
	if (direct)
		flags |= O_DIRECT;
	int fd = open(path, flags);
	if (fd < 0)
		return -errno;
	struct stat st;
	int r = fstat(fd, &st) < 0 ? -errno : same_file(path, &st, expect);
	if (r == 0 && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
		r = -errno;
	if (r < 0) {
		close(fd);
		return r;
	}
	int lock_fd = -1;
	r = lock == BLOCK_LOCK_NONE ? 0 : lock_open(path, &st, lock, &lock_fd);
	if (r < 0) {
		close(fd);
		return r;
	}
	off_t end = lseek(fd, 0, SEEK_END); /* block devices report 0 in st_size */
	if (end < 0) {
		int err = -errno;
		close(fd);
		if (lock_fd >= 0)
			close(lock_fd);
		return err;
	}
	*f = (struct bfile){ .fd = fd, .lock_fd = lock_fd, .direct = direct, .read_only = read_only,
			     .align = direct ? BFILE_DIRECT_ALIGN : 1, .size = (uint64_t)end };
	pthread_rwlock_init(&f->rmw_lock, NULL);
	return 0;
}

void bfile_close(struct bfile *f)
{
	if (f->fd >= 0) {
		close(f->fd);
		if (f->lock_fd >= 0)
			close(f->lock_fd);
		pthread_rwlock_destroy(&f->rmw_lock);
	}
	f->fd = -1;
	f->lock_fd = -1;
}

/*
 * An O_DIRECT write that is not aligned reads, patches and rewrites whole
 * blocks, so it must not interleave with any other write into those blocks
 * (that write would be lost under the stale copy): it takes rmw_lock
 * exclusively, every other O_DIRECT write takes it shared. Reads need no
 * lock: a read racing a write may see either content anyway. Buffered files
 * never read-modify-write.
 */
static void write_lock(struct bfile *f, bool rmw)
{
	if (!f->direct)
		return;
	if (rmw)
		pthread_rwlock_wrlock(&f->rmw_lock);
	else
		pthread_rwlock_rdlock(&f->rmw_lock);
}

static void write_unlock(struct bfile *f)
{
	if (f->direct)
		pthread_rwlock_unlock(&f->rmw_lock);
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

/*
 * A read-modify-write whose last block runs past the end of the file
 * (a raw image whose size is not a multiple of the block) writes that
 * whole block and so makes the file longer than any write asked for: the
 * disk would grow at the next open. Cut it back to where the data ends.
 * The caller holds rmw_lock exclusively, so no other write moves the end
 * meanwhile. A crash between the two calls leaves less than one block of
 * zeros at the end.
 */
static int trim_rmw_tail(struct bfile *f, uint64_t old_end, uint64_t data_end, uint64_t block_end)
{
	uint64_t want = old_end > data_end ? old_end : data_end;
	if (block_end <= want)
		return 0;
	return ftruncate(f->fd, (off_t)want) < 0 ? -errno : 0;
}

static int file_end(const struct bfile *f, uint64_t *end)
{
	struct stat st;
	if (fstat(f->fd, &st) < 0)
		return -errno;
	*end = (uint64_t)st.st_size;
	return 0;
}

/* Unaligned O_DIRECT access goes through an aligned bounce buffer covering
 * the request; writes read-modify-write the partial edge blocks. */
static int bounce_io(struct bfile *f, void *buf, size_t len, uint64_t off, bool write)
{
	uint64_t start = off & ~(uint64_t)(f->align - 1);
	uint64_t end = (off + len + f->align - 1) & ~(uint64_t)(f->align - 1);
	size_t blen = (size_t)(end - start);
	uint64_t old_end = 0;
	if (write && end > f->size) {
		int e = file_end(f, &old_end);
		if (e < 0)
			return e;
	}
	char *b = bfile_alloc(blen);
	if (!b)
		return -ENOMEM;
	int r = raw_pread(f->fd, b, blen, start);
	if (r == 0) {
		if (write) {
			memcpy(b + (off - start), buf, len);
			r = raw_pwrite(f->fd, b, blen, start);
			if (r == 0 && end > f->size)
				r = trim_rmw_tail(f, old_end, off + len, end);
		} else {
			memcpy(buf, b + (off - start), len);
		}
	}
	free(b);
	return r;
}

/* One buffer, bounced when O_DIRECT cannot take it as it is. */
static int seg_io(struct bfile *f, void *buf, size_t len, uint64_t off, bool write)
{
	if (len == 0)
		return 0;
	if (f->direct && !is_aligned(f, buf, len, off))
		return bounce_io(f, buf, len, off, write);
	return write ? raw_pwrite(f->fd, buf, len, off) : raw_pread(f->fd, buf, len, off);
}

static int check_range(uint64_t off, uint64_t len)
{
	return off > INT64_MAX || len > INT64_MAX - off ? -EINVAL : 0;
}

int bfile_pread(struct bfile *f, void *buf, size_t len, uint64_t off)
{
	if (len == 0)
		return 0;
	if (check_range(off, len) < 0)
		return -EINVAL;
	return seg_io(f, buf, len, off, false);
}

int bfile_pwrite(struct bfile *f, const void *buf, size_t len, uint64_t off)
{
	if (len == 0)
		return 0;
	if (f->read_only)
		return -EROFS;
	if (check_range(off, len) < 0)
		return -EINVAL;
	write_lock(f, !is_aligned(f, buf, len, off));
	int r = seg_io(f, (void *)buf, len, off, true);
	write_unlock(f);
	if (r == 0 && off + len > f->size)
		f->size = off + len;
	return r;
}

int bfile_pwrite_within(struct bfile *f, const void *buf, size_t len, uint64_t off)
{
	if (f->read_only)
		return -EROFS;
	write_lock(f, false);
	int r = raw_pwrite(f->fd, buf, len, off);
	write_unlock(f);
	return r;
}

static void iov_zero(const struct iovec *iov, int n)
{
	for (int i = 0; i < n; i++)
		memset(iov[i].iov_base, 0, iov[i].iov_len);
}

/*
 * Segments that O_DIRECT can take as they are (or any, for a buffered
 * file) in as few preadv/pwritev calls as IOV_MAX allows: a guest's 1 MiB
 * request in 4 KiB pages is one transfer, not 256. After a short transfer
 * the partly done segment is finished on its own and the vector resumes
 * after it; EINTR retries; end of file on a read leaves zeros, as in
 * raw_pread.
 */
static int vec_run(struct bfile *f, const struct iovec *iov, int n, uint64_t off, bool write)
{
	while (n > 0) {
		int cnt = n < IOV_MAX ? n : IOV_MAX;
		ssize_t r = write ? pwritev(f->fd, iov, cnt, (off_t)off)
				  : preadv(f->fd, iov, cnt, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0) {
			if (write)
				return -EIO;
			iov_zero(iov, n);
			return 0;
		}
		size_t done = (size_t)r;
		off += done;
		while (n > 0 && done >= iov->iov_len) {
			done -= iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0 && done > 0) {
			size_t rest = iov->iov_len - done;
			int e = seg_io(f, (uint8_t *)iov->iov_base + done, rest, off, write);
			if (e < 0)
				return e;
			off += rest;
			iov++;
			n--;
		}
	}
	return 0;
}

/*
 * Splits the vector into runs of segments O_DIRECT takes as they are, each
 * done by vec_run(), and segments that are not, each bounced on its own
 * (the per-segment path is kept only for those).
 */
static int vec_io(struct bfile *f, const struct iovec *iov, int iovcnt, uint64_t off, bool write)
{
	int i = 0;
	while (i < iovcnt) {
		int j = i;
		uint64_t end = off;
		while (j < iovcnt && is_aligned(f, iov[j].iov_base, iov[j].iov_len, end))
			end += iov[j++].iov_len;
		int r;
		if (j > i) {
			r = vec_run(f, iov + i, j - i, off, write);
			i = j;
		} else {
			end = off + iov[i].iov_len;
			r = seg_io(f, iov[i].iov_base, iov[i].iov_len, off, write);
			i++;
		}
		if (r < 0)
			return r;
		off = end;
	}
	return 0;
}

/* Total length of iov from off, or -EINVAL when it overflows. */
static int64_t vec_len(const struct iovec *iov, int iovcnt, uint64_t off)
{
	if (iovcnt < 0)
		return -EINVAL;
	uint64_t len = 0;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > INT64_MAX - len)
			return -EINVAL;
		len += iov[i].iov_len;
	}
	return check_range(off, len) < 0 ? -EINVAL : (int64_t)len;
}

static bool vec_aligned(const struct bfile *f, const struct iovec *iov, int iovcnt, uint64_t off)
{
	for (int i = 0; i < iovcnt; i++) {
		if (!is_aligned(f, iov[i].iov_base, iov[i].iov_len, off))
			return false;
		off += iov[i].iov_len;
	}
	return true;
}

int bfile_preadv(struct bfile *f, const struct iovec *iov, int iovcnt, uint64_t off)
{
	int64_t len = vec_len(iov, iovcnt, off);
	if (len <= 0)
		return (int)len;
	return vec_io(f, iov, iovcnt, off, false);
}

int bfile_pwritev(struct bfile *f, const struct iovec *iov, int iovcnt, uint64_t off)
{
	if (f->read_only)
		return -EROFS;
	int64_t len = vec_len(iov, iovcnt, off);
	if (len <= 0)
		return (int)len;
	write_lock(f, !vec_aligned(f, iov, iovcnt, off));
	int r = vec_io(f, iov, iovcnt, off, true);
	write_unlock(f);
	if (r == 0 && off + (uint64_t)len > f->size)
		f->size = off + (uint64_t)len;
	return r;
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

/*
 * Zeros written where the file system cannot zero a range (tmpfs has no
 * FALLOC_FL_ZERO_RANGE; some have no hole punching): a guest chooses the
 * length, so the work is bounded twice. Only the data the range holds is
 * written (holes read as zeros already; SEEK_DATA finds the rest), and it
 * is written in chunks that each take rmw_lock on their own, so a long
 * zeroing never holds up other requests on the file for more than a chunk.
 */
#define BFILE_ZERO_CHUNK (1u << 20)

/* Writes zeros over [off, off + len) in chunks. */
static int write_zeros(struct bfile *f, const char *zeros, uint64_t off, uint64_t len)
{
	int r = 0;
	while (len > 0 && r == 0) {
		size_t n = len < BFILE_ZERO_CHUNK ? (size_t)len : BFILE_ZERO_CHUNK;
		r = bfile_pwrite(f, zeros, n, off);
		off += n;
		len -= n;
	}
	return r;
}

/* The first data extent [*data, *data_end) of [off, end); *data == end
 * when only holes are left. Where SEEK_DATA fails, all of it is data. */
static void next_data(const struct bfile *f, uint64_t off, uint64_t end, uint64_t *data,
		      uint64_t *data_end)
{
	*data = off;
	*data_end = end;
	off_t d = lseek(f->fd, (off_t)off, SEEK_DATA);
	if (d < 0) {
		if (errno == ENXIO)
			*data = end; /* a hole up to the end of the file */
		return;
	}
	*data = (uint64_t)d < end ? (uint64_t)d : end;
	off_t h = *data < end ? lseek(f->fd, d, SEEK_HOLE) : -1;
	if (h >= 0 && (uint64_t)h > *data && (uint64_t)h < end)
		*data_end = (uint64_t)h;
}

static int write_zeros_over_data(struct bfile *f, uint64_t off, uint64_t len)
{
	uint64_t chunk = len < BFILE_ZERO_CHUNK ? len : BFILE_ZERO_CHUNK, end = off + len;
	char *zeros = bfile_alloc((size_t)chunk);
	if (!zeros)
		return -ENOMEM;
	memset(zeros, 0, (size_t)chunk);
	int r = 0;
	while (off < end && r == 0) {
		uint64_t data, data_end;
		next_data(f, off, end, &data, &data_end);
		r = write_zeros(f, zeros, data, data_end - data);
		off = data_end;
	}
	free(zeros);
	return r;
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
	/*
	 * Shared like any O_DIRECT write: an unaligned write next to the range
	 * rewrites whole blocks from a copy read before, and must not undo the
	 * zeroing (it waits, or goes first and the zeroing wins).
	 */
	write_lock(f, false);
	int rc = fallocate(f->fd, mode, (off_t)off, (off_t)len);
	int err = errno;
	write_unlock(f);
	if (rc == 0)
		return 0;
	if (err != EOPNOTSUPP && err != ENOSYS)
		return -err; /* a real failure: writing zeros would not help */
	return write_zeros_over_data(f, off, len);
}
