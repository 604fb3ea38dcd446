/*
 * The raw format: the file is the disk, byte for byte. Nothing in the file
 * is ever interpreted, so a guest that writes a qcow2 header into a raw disk
 * gains nothing (the format is named by the disk's definition, not probed).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "block/driver.h"
#include "block/file.h"

struct raw_dev {
	struct block_dev bd;
	struct bfile file;
};

static struct raw_dev *to_raw(struct block_dev *bd)
{
	return (struct raw_dev *)bd;
}

static int raw_read(struct block_dev *bd, void *buf, uint64_t len, uint64_t off)
{
	if (!range_within(off, len, bd->size))
		return -EINVAL;
	return bfile_pread(&to_raw(bd)->file, buf, len, off);
}

static int raw_write(struct block_dev *bd, const void *buf, uint64_t len, uint64_t off)
{
	if (bd->read_only)
		return -EROFS;
	if (!range_within(off, len, bd->size))
		return -EINVAL;
	return bfile_pwrite(&to_raw(bd)->file, buf, len, off);
}

static int raw_readv(struct block_dev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	int64_t len = block_iov_len(iov, iovcnt);
	if (len < 0 || !range_within(off, (uint64_t)len, bd->size))
		return -EINVAL;
	return bfile_preadv(&to_raw(bd)->file, iov, iovcnt, off);
}

static int raw_writev(struct block_dev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	int64_t len = block_iov_len(iov, iovcnt);
	if (bd->read_only)
		return -EROFS;
	if (len < 0 || !range_within(off, (uint64_t)len, bd->size))
		return -EINVAL;
	return bfile_pwritev(&to_raw(bd)->file, iov, iovcnt, off);
}

static int raw_flush(struct block_dev *bd)
{
	return bfile_sync(&to_raw(bd)->file);
}

static int raw_discard(struct block_dev *bd, uint64_t off, uint64_t len)
{
	if (bd->read_only)
		return -EROFS;
	if (!range_within(off, len, bd->size))
		return -EINVAL;
	return bfile_zero(&to_raw(bd)->file, off, len, true);
}

static int raw_write_zeroes(struct block_dev *bd, uint64_t off, uint64_t len)
{
	if (bd->read_only)
		return -EROFS;
	if (!range_within(off, len, bd->size))
		return -EINVAL;
	return bfile_zero(&to_raw(bd)->file, off, len, false);
}

static int raw_truncate(struct block_dev *bd, uint64_t size)
{
	if (bd->read_only)
		return -EROFS;
	int r = bfile_truncate(&to_raw(bd)->file, size);
	if (r == 0)
		bd->size = size;
	return r;
}

/* Holes in the file are reported as zeros, the rest as data. */
static int raw_block_status(struct block_dev *bd, uint64_t off, uint64_t len,
			    struct block_status *st)
{
	if (!range_within(off, len, bd->size) || len == 0)
		return -EINVAL;
	int fd = to_raw(bd)->file.fd;
	off_t data = lseek(fd, (off_t)off, SEEK_DATA);
	if (data < 0 && errno != ENXIO) {
		*st = (struct block_status){ BLOCK_DATA, len, off };
		return 0;
	}
	if (data < 0 || (uint64_t)data >= off + len) {
		*st = (struct block_status){ BLOCK_ZERO, len, 0 };
		return 0;
	}
	if ((uint64_t)data > off) {
		*st = (struct block_status){ BLOCK_ZERO, (uint64_t)data - off, 0 };
		return 0;
	}
	off_t hole = lseek(fd, (off_t)off, SEEK_HOLE);
	uint64_t n = hole < 0 ? len : (uint64_t)hole - off;
	if (n > len || n == 0)
		n = len;
	*st = (struct block_status){ BLOCK_DATA, n, off };
	return 0;
}

/* The disk is the file: every byte is where the guest thinks it is. */
static int raw_map_direct(struct block_dev *bd, uint64_t off, uint64_t len,
			  struct block_extent *ext)
{
	const struct bfile *f = &to_raw(bd)->file;
	if (!range_within(off, len, bd->size) || !range_within(off, len, f->size))
		return -EINVAL;
	*ext = (struct block_extent){ .fd = f->fd, .host_off = off, .align = f->align };
	return 0;
}

static void raw_close(struct block_dev *bd)
{
	struct raw_dev *r = to_raw(bd);
	bfile_close(&r->file);
	free(bd->filename);
	free(r);
}

static const struct block_ops raw_ops = {
	.name = "raw",
	.read = raw_read,
	.write = raw_write,
	.readv = raw_readv,
	.writev = raw_writev,
	.flush = raw_flush,
	.discard = raw_discard,
	.write_zeroes = raw_write_zeroes,
	.truncate = raw_truncate,
	.block_status = raw_block_status,
	.close = raw_close,
	.map_direct = raw_map_direct,
};

static int raw_open(struct block_dev **out, const char *path, const struct block_open_opts *opts)
{
	struct raw_dev *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	int err = bfile_open(&r->file, path, opts->read_only, opts->cache == BLOCK_CACHE_NONE,
			     block_lock_mode_of(opts), opts->expect);
	if (err < 0) {
		if (err != -EBUSY && err != -EAGAIN) /* bfile_open said why */
			log_error("%s: cannot open: %s", path, strerror(-err));
		free(r);
		return err;
	}
	r->bd = (struct block_dev){ .ops = &raw_ops, .size = r->file.size,
				    .read_only = opts->read_only, .format = "raw",
				    .filename = strdup(path) };
	if (!r->bd.filename) {
		bfile_close(&r->file);
		free(r);
		return -ENOMEM;
	}
	*out = &r->bd;
	return 0;
}

static int raw_create(const char *path, const struct block_create_opts *opts)
{
	if (opts->backing_file) {
		log_error("%s: raw images cannot have a backing file", path);
		return -EINVAL;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)opts->size) < 0) {
		int err = -errno;
		log_error("%s: cannot create: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return err;
	}
	close(fd);
	return 0;
}

const struct block_driver block_driver_raw = {
	.name = "raw",
	.open = raw_open,
	.create = raw_create,
};
