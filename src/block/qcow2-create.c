/*
 * Creating a qcow2 v3 image: the header (with the backing file name and its
 * format), a one-cluster refcount table and the first refcount block are
 * written by hand; the L1 table is then grown to the virtual size by the
 * driver's own resize code, so there is one way to lay out an L1 table.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "block/qcow2.h"

static int pick_geometry(const char *path, const struct block_create_opts *o, unsigned *cbits,
			 unsigned *rorder)
{
	uint64_t cs = o->cluster_size ? o->cluster_size : 65536;
	unsigned rb = o->refcount_bits ? o->refcount_bits : 16;
	if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1)))
		return log_error("%s: cluster size must be a power of two from 512 to 2M", path),
		       -EINVAL;
	if (rb > 64 || (rb & (rb - 1)))
		return log_error("%s: refcount bits must be a power of two up to 64", path), -EINVAL;
	*cbits = (unsigned)__builtin_ctzll(cs);
	*rorder = (unsigned)__builtin_ctz(rb);
	if (o->backing_file && strlen(o->backing_file) > QCOW2_MAX_BACKING_NAME)
		return log_error("%s: backing file name too long", path), -ENAMETOOLONG;
	if (o->backing_file && !o->backing_format)
		return log_error("%s: the backing file's format is required (-F raw|qcow2)", path),
		       -EINVAL;
	if (o->compression_type != 0 && o->compression_type != 1)
		return log_error("%s: compression type must be zlib or zstd", path), -EINVAL;
	return 0;
}

static int write_skeleton(const char *path, struct qcow2 *q)
{
	/* block_create holds the image's write lock on another descriptor. */
	int r = bfile_open(&q->file, path, false, false, BLOCK_LOCK_NONE, NULL);
	if (r < 0)
		return r;
	r = qcow2_write_header(q);
	uint8_t *buf = calloc(1, q->cluster_size);
	if (!buf)
		r = -ENOMEM;
	if (r == 0) {
		qcow2_put64(buf, 2 * q->cluster_size); /* refcount block 0 at cluster 2 */
		r = bfile_pwrite(&q->file, buf, q->cluster_size, q->cluster_size);
	}
	if (r == 0) {
		memset(buf, 0, q->cluster_size);
		for (unsigned i = 0; i < 3; i++)
			qcow2_rb_set(q, buf, i, 1);
		r = bfile_pwrite(&q->file, buf, q->cluster_size, 2 * q->cluster_size);
	}
	if (r == 0)
		r = bfile_sync(&q->file);
	free(buf);
	bfile_close(&q->file);
	return r;
}

int qcow2_create(const char *path, const struct block_create_opts *opts)
{
	unsigned cbits, rorder;
	int r = pick_geometry(path, opts, &cbits, &rorder);
	if (r < 0)
		return r;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		log_error("%s: cannot create: %s", path, strerror(errno));
		return r;
	}
	close(fd);
	/* A zero-sized image first; its header names the backing file. */
	struct qcow2 q = { .cluster_bits = cbits, .cluster_size = UINT64_C(1) << cbits,
			   .refcount_order = rorder, .rt_offset = UINT64_C(1) << cbits,
			   .rt_clusters = 1,
			   .compression_type = (uint8_t)opts->compression_type,
			   .backing_name = (char *)opts->backing_file,
			   .backing_fmt = (char *)opts->backing_format };
	q.bd.filename = (char *)path;
	q.rb_entries = (q.cluster_size * 8) >> rorder;
	if (opts->compression_type)
		q.incompat |= QCOW2_INCOMPAT_COMPRESSION;
	r = write_skeleton(path, &q);
	if (r < 0) {
		log_error("%s: cannot write: %s", path, strerror(-r));
		return r;
	}
	struct block_dev *bd;
	struct block_open_opts oo = { .no_backing = true, .no_lock = true };
	r = block_open(&bd, path, "qcow2", &oo);
	if (r < 0)
		return r;
	r = block_truncate(bd, opts->size);
	if (r < 0)
		log_error("%s: cannot set size: %s", path, strerror(-r));
	block_close(bd);
	return r;
}
