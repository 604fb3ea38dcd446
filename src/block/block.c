/*
 * The format-independent half of the block layer: the driver table, opening
 * by explicit format (never probing), backing-chain loop and depth checks,
 * and the bounds-checking wrappers that every caller goes through.
 */
#include "block/block.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "block/driver.h"
#include "block/lock.h"

static const struct block_driver *const drivers[] = {
	&block_driver_raw,
	&block_driver_qcow2,
};

/* One member of the backing chain being opened, for loop detection. */
struct block_chain {
	dev_t dev;
	ino_t ino;
	const struct block_chain *next;
};

static int backing_checked(const char *overlay, const char *name, const char *full,
			   const char *const *dirs, struct stat *st);
static bool path_under_any(const char *real, const char *const *dirs);

static const struct block_driver *find_driver(const char *format)
{
	for (size_t i = 0; format && i < ARRAY_SIZE(drivers); i++)
		if (strcmp(drivers[i]->name, format) == 0)
			return drivers[i];
	return NULL;
}

bool block_format_known(const char *format)
{
	return find_driver(format) != NULL;
}

int block_open(struct block_dev **out, const char *path, const char *format,
	       const struct block_open_opts *opts)
{
	struct block_open_opts o = opts ? *opts : (struct block_open_opts){ 0 };
	const struct block_driver *drv = find_driver(format);
	if (!drv) {
		log_error("%s: unknown image format '%s' (use raw or qcow2)", path,
			  format ? format : "(none)");
		return -EINVAL;
	}
	if (o.force_share && !o.read_only) {
		log_error("%s: force share (-U) is only for read-only opens", path);
		return -EINVAL;
	}
	if (o.depth > BLOCK_MAX_CHAIN_DEPTH) {
		log_error("%s: backing chain deeper than %d images", path, BLOCK_MAX_CHAIN_DEPTH);
		return -ELOOP;
	}
	struct stat st;
	if (stat(path, &st) < 0) {
		int err = -errno;
		log_error("%s: cannot open: %s", path, strerror(errno));
		return err;
	}
	for (const struct block_chain *c = o.chain; c; c = c->next) {
		if (c->dev == st.st_dev && c->ino == st.st_ino) {
			log_error("%s: backing chain loops back to this file", path);
			return -ELOOP;
		}
	}
	struct block_chain self = { st.st_dev, st.st_ino, o.chain };
	o.chain = &self;
	return drv->open(out, path, &o);
}

int block_open_backing(struct block_dev **out, const char *overlay, const char *path,
		       const char *format, const struct block_open_opts *opts)
{
	struct block_open_opts o = *opts;
	o.depth++;
	o.read_only = true; /* a backing file is never written through its overlay */
	if (!format) {
		log_error("%s: backing file '%s' has no recorded format; record it with "
			  "'shoji-img rebase -u -b %s -F raw|qcow2'", overlay, path, path);
		return -EINVAL;
	}
	char *full = block_backing_path(overlay, path);
	if (!full)
		return -ENOMEM;
	struct stat st;
	int r = backing_checked(overlay, path, full, o.backing_dirs, &st);
	o.expect = &st;
	if (r == 0)
		r = block_open(out, full, format, &o);
	free(full);
	return r;
}

/*
 * Opens what `resolved` names without following any symbolic link: it was
 * resolved already, so a link in it now means someone swapped a directory
 * for one since.
 */
static int open_no_links(const char *resolved)
{
	struct open_how how = { .flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
				.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
	long fd = syscall(SYS_openat2, AT_FDCWD, resolved, &how, sizeof(how));
	return fd < 0 ? -errno : (int)fd;
}

/*
 * The backing file `full` (named `name` in `overlay`) checked on an open
 * descriptor, whose identity goes to *st: the driver's own open must then
 * find that very file (block_open_opts.expect), so nothing swapped in
 * between is used. It must be a regular file (a device node is no disk,
 * and a FIFO would block the open: O_NONBLOCK here), and with dirs its
 * real path must lie under one of them. Logs one line when refused.
 */
static int backing_checked(const char *overlay, const char *name, const char *full,
			   const char *const *dirs, struct stat *st)
{
	char *real = dirs ? realpath(full, NULL) : NULL;
	int r = 0;
	bool outside = false;
	if (dirs && !real)
		r = -errno;
	else if (dirs && !path_under_any(real, dirs))
		outside = true, r = -EACCES;
	int fd = r;
	if (r == 0)
		fd = real ? open_no_links(real)
			  : open(full, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (r == 0 && fd < 0)
		r = fd < -1 ? fd : -errno;
	if (r == 0 && fstat(fd, st) < 0)
		r = -errno;
	if (r == 0 && !S_ISREG(st->st_mode))
		r = -EINVAL;
	if (fd >= 0)
		close(fd);
	free(real);
	if (outside)
		log_error("%s: backing file '%s' lies outside the directories allowed for "
			  "backing files (%s%s); move it there or allow its directory "
			  "(shoji-vmm --disk ...,backing-dir=DIR; shojid --image-dir DIR)",
			  overlay, name, dirs[0] ? dirs[0] : "none", dirs[0] && dirs[1] ? ", ..." : "");
	else if (r == -EINVAL)
		log_error("%s: a backing file must be a regular file", full);
	else if (r < 0)
		log_error("%s: backing file '%s': %s", overlay, name, strerror(-r));
	return r;
}

/* True when `path` (resolved) is `dir` (resolved) or below it. */
static bool under_dir(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	if (n == 1 && dir[0] == '/')
		return true;
	return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* True when the resolved `real` lies under one of dirs (each resolved here). */
static bool path_under_any(const char *real, const char *const *dirs)
{
	bool found = false;
	for (const char *const *d = dirs; *d && !found; d++) {
		char *rd = realpath(*d, NULL);
		found = rd && under_dir(real, rd);
		free(rd);
	}
	return found;
}

int block_path_within(const char *path, const char *const *dirs)
{
	char *real = realpath(path, NULL);
	if (!real)
		return -errno;
	int r = path_under_any(real, dirs) ? 0 : -EACCES;
	free(real);
	return r;
}

char *block_backing_path(const char *overlay, const char *path)
{
	if (path[0] == '/')
		return strdup(path);
	/* Relative names are relative to the overlay's directory, as in QEMU. */
	const char *slash = strrchr(overlay, '/');
	size_t dirlen = slash ? (size_t)(slash - overlay) + 1 : 0;
	char *full = malloc(dirlen + strlen(path) + 1);
	if (!full)
		return NULL;
	memcpy(full, overlay, dirlen);
	strcpy(full + dirlen, path);
	return full;
}

void block_close(struct block_dev *bd)
{
	if (bd)
		bd->ops->close(bd);
}

uint64_t block_get_size(const struct block_dev *bd)
{
	return bd->size;
}

int64_t block_iov_len(const struct iovec *iov, int iovcnt)
{
	if (iovcnt < 0 || iovcnt > IOV_MAX)
		return -EINVAL;
	uint64_t total = 0;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > INT64_MAX - total)
			return -EINVAL;
		total += iov[i].iov_len;
	}
	return (int64_t)total;
}

int block_read(struct block_dev *bd, void *buf, uint64_t len, uint64_t off)
{
	if (!range_within(off, len, bd->size))
		return -EINVAL;
	return len ? bd->ops->read(bd, buf, len, off) : 0;
}

int block_write(struct block_dev *bd, const void *buf, uint64_t len, uint64_t off)
{
	if (bd->read_only)
		return -EROFS;
	if (!range_within(off, len, bd->size))
		return -EINVAL;
	return len ? bd->ops->write(bd, buf, len, off) : 0;
}

/* A driver without readv/writev: one read or write per segment. */
static int block_each_segment(struct block_dev *bd, const struct iovec *iov, int iovcnt,
			      uint64_t off, bool write)
{
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len == 0)
			continue;
		int r = write ? bd->ops->write(bd, iov[i].iov_base, iov[i].iov_len, off)
			      : bd->ops->read(bd, iov[i].iov_base, iov[i].iov_len, off);
		if (r < 0)
			return r;
		off += iov[i].iov_len;
	}
	return 0;
}

int block_readv(struct block_dev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	int64_t len = block_iov_len(iov, iovcnt);
	if (len < 0)
		return (int)len;
	if (!range_within(off, (uint64_t)len, bd->size))
		return -EINVAL;
	if (bd->ops->readv)
		return bd->ops->readv(bd, iov, iovcnt, off);
	return block_each_segment(bd, iov, iovcnt, off, false);
}

int block_writev(struct block_dev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	if (bd->read_only)
		return -EROFS;
	int64_t len = block_iov_len(iov, iovcnt);
	if (len < 0)
		return (int)len;
	if (!range_within(off, (uint64_t)len, bd->size))
		return -EINVAL;
	if (bd->ops->writev)
		return bd->ops->writev(bd, iov, iovcnt, off);
	return block_each_segment(bd, iov, iovcnt, off, true);
}

int block_flush(struct block_dev *bd)
{
	return bd->ops->flush ? bd->ops->flush(bd) : 0;
}

int block_discard(struct block_dev *bd, uint64_t off, uint64_t len)
{
	if (bd->read_only)
		return -EROFS;
	if (!range_within(off, len, bd->size))
		return -EINVAL;
	if (!len)
		return 0;
	return bd->ops->discard ? bd->ops->discard(bd, off, len) : -EOPNOTSUPP;
}

int block_write_zeroes(struct block_dev *bd, uint64_t off, uint64_t len)
{
	if (bd->read_only)
		return -EROFS;
	if (!range_within(off, len, bd->size))
		return -EINVAL;
	if (!len)
		return 0;
	return bd->ops->write_zeroes ? bd->ops->write_zeroes(bd, off, len) : -EOPNOTSUPP;
}

int block_truncate(struct block_dev *bd, uint64_t size)
{
	if (bd->read_only)
		return -EROFS;
	return bd->ops->truncate ? bd->ops->truncate(bd, size) : -EOPNOTSUPP;
}

int block_get_status(struct block_dev *bd, uint64_t off, uint64_t len, struct block_status *st)
{
	if (!range_within(off, len, bd->size) || len == 0)
		return -EINVAL;
	if (!bd->ops->block_status) {
		*st = (struct block_status){ .state = BLOCK_DATA, .len = len, .host_off = off };
		return 0;
	}
	return bd->ops->block_status(bd, off, len, st);
}

int block_map_direct(struct block_dev *bd, uint64_t off, uint64_t len, struct block_extent *ext)
{
	if (!range_within(off, len, bd->size))
		return -EINVAL;
	if (!bd->ops->map_direct)
		return -ENOTSUP;
	return bd->ops->map_direct(bd, off, len, ext);
}

int block_read_padded(struct block_dev *bd, void *buf, uint64_t len, uint64_t off)
{
	uint64_t size = bd->size;
	uint64_t avail = off >= size ? 0 : (size - off < len ? size - off : len);
	if (avail) {
		int r = block_read(bd, buf, avail, off);
		if (r < 0)
			return r;
	}
	memset((char *)buf + avail, 0, len - avail);
	return 0;
}

int block_write_compressed(struct block_dev *bd, const void *buf, uint64_t off)
{
	if (bd->read_only)
		return -EROFS;
	if (!bd->ops->write_compressed)
		return -ENOTSUP;
	return bd->ops->write_compressed(bd, buf, off);
}

int block_info(struct block_dev *bd, struct block_info *info)
{
	memset(info, 0, sizeof(*info));
	return bd->ops->info ? bd->ops->info(bd, info) : 0;
}

int block_check(struct block_dev *bd, struct block_check *res, int repair)
{
	memset(res, 0, sizeof(*res));
	if (repair && bd->read_only)
		return -EROFS;
	return bd->ops->check ? bd->ops->check(bd, res, repair) : -ENOTSUP;
}

int block_snapshot(struct block_dev *bd, enum block_snap_op op, const char *name)
{
	if (bd->read_only)
		return -EROFS;
	return bd->ops->snapshot ? bd->ops->snapshot(bd, op, name) : -ENOTSUP;
}

int block_set_backing(struct block_dev *bd, const char *file, const char *format)
{
	if (bd->read_only)
		return -EROFS;
	return bd->ops->set_backing ? bd->ops->set_backing(bd, file, format) : -ENOTSUP;
}

int block_make_empty(struct block_dev *bd)
{
	if (bd->read_only)
		return -EROFS;
	return bd->ops->make_empty ? bd->ops->make_empty(bd) : -ENOTSUP;
}

int block_create(const char *path, const char *format, const struct block_create_opts *opts)
{
	const struct block_driver *drv = find_driver(format);
	if (!drv) {
		log_error("%s: unknown image format '%s' (use raw or qcow2)", path,
			  format ? format : "(none)");
		return -EINVAL;
	}
	/* Lock first: creating truncates, and the file may be a disk in use
	 * (or the very image a convert reads from). */
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		int err = -errno;
		log_error("%s: cannot create: %s", path, strerror(errno));
		return err;
	}
	int r = block_lock_fd(fd, BLOCK_LOCK_WRITE, path);
	if (r == 0)
		r = drv->create(path, opts);
	close(fd);
	return r;
}
