/*
 * The qcow2 driver's front door: parsing and validating the header of an
 * untrusted image, loading the L1 and refcount tables, opening the backing
 * file with the format the header records, writing the header back, and
 * closing. The data path is in qcow2-io.c, allocation in qcow2-refcount.c.
 *
 * Every field read from the file is checked here before anything uses it:
 * a hostile image gets one error line, never a crash or an access outside
 * the file.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "block/driver.h"
#include "block/qcow2.h"

#define QCOW2_DEFAULT_L2_CACHE (1u << 20)
#define QCOW2_RB_CACHE_TABLES 8

int qcow2_mark_corrupt(struct qcow2 *q, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error("%s: image is corrupt: %s", q->bd.filename, msg);
	if (!q->bd.read_only && !(q->incompat & QCOW2_INCOMPAT_CORRUPT)) {
		/* Like QEMU: flag it so nobody writes to it until it is checked. */
		q->incompat |= QCOW2_INCOMPAT_CORRUPT;
		uint8_t be[8];
		qcow2_put64(be, q->incompat);
		if (qcow2_write_header_field(q, 72, be, 8) == 0)
			bfile_sync(&q->file);
		q->bd.read_only = true;
	}
	return -EIO;
}

int qcow2_write_header_field(struct qcow2 *q, unsigned off, const void *be, unsigned len)
{
	q->unsynced = true;
	return bfile_pwrite(&q->file, be, len, off);
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return alen && blen && a < b + blen && b < a + alen;
}

bool qcow2_overlaps_metadata(struct qcow2 *q, uint64_t off, uint64_t len)
{
	return ranges_overlap(off, len, 0, q->cluster_size) ||
	       ranges_overlap(off, len, q->l1_offset, (uint64_t)q->l1_size * 8) ||
	       ranges_overlap(off, len, q->rt_offset, (uint64_t)q->rt_clusters * q->cluster_size) ||
	       ranges_overlap(off, len, q->snapshots_offset, q->snapshots_size);
}

/* Serialises the header cluster: fixed fields, extensions, backing name. */
static int build_header(struct qcow2 *q, uint8_t *h, uint64_t cap, uint64_t *used)
{
	memset(h, 0, cap);
	qcow2_put32(h + 0, QCOW2_MAGIC);
	qcow2_put32(h + 4, 3);
	qcow2_put32(h + 20, q->cluster_bits);
	qcow2_put64(h + 24, q->bd.size);
	qcow2_put32(h + 36, q->l1_size);
	qcow2_put64(h + 40, q->l1_offset);
	qcow2_put64(h + 48, q->rt_offset);
	qcow2_put32(h + 56, q->rt_clusters);
	qcow2_put32(h + 60, q->nb_snapshots);
	qcow2_put64(h + 64, q->snapshots_offset);
	qcow2_put64(h + 72, q->incompat);
	qcow2_put64(h + 80, q->compat);
	qcow2_put64(h + 88, q->autoclear);
	qcow2_put32(h + 96, q->refcount_order);
	qcow2_put32(h + 100, QCOW2_OUR_HEADER_LEN);
	h[104] = q->compression_type;
	uint64_t p = QCOW2_OUR_HEADER_LEN;
	if (q->backing_fmt) {
		size_t n = strlen(q->backing_fmt);
		if (p + 8 + align_up(n, 8) > cap)
			return -ENOSPC;
		qcow2_put32(h + p, QCOW2_EXT_BACKING_FORMAT);
		qcow2_put32(h + p + 4, (uint32_t)n);
		memcpy(h + p + 8, q->backing_fmt, n);
		p += 8 + align_up(n, 8);
	}
	if (p + q->unknown_ext_len + 8 > cap)
		return -ENOSPC;
	if (q->unknown_ext_len)
		memcpy(h + p, q->unknown_ext, q->unknown_ext_len);
	p += q->unknown_ext_len + 8; /* end-of-extensions marker is all zeros */
	if (q->backing_name) {
		size_t n = strlen(q->backing_name);
		if (p + n > cap)
			return -ENOSPC;
		qcow2_put64(h + 8, p);
		qcow2_put32(h + 16, (uint32_t)n);
		memcpy(h + p, q->backing_name, n);
		p += n;
	}
	*used = p;
	return 0;
}

int qcow2_write_header(struct qcow2 *q)
{
	uint8_t *h = malloc(q->cluster_size);
	if (!h)
		return -ENOMEM;
	uint64_t used;
	int r = build_header(q, h, q->cluster_size, &used);
	if (r < 0)
		log_error("%s: header extensions and backing name do not fit in one cluster",
			  q->bd.filename);
	else
		r = qcow2_write_header_field(q, 0, h, (unsigned)used);
	free(h);
	return r;
}

/* Keeps extensions we do not interpret, so rewriting the header loses
 * nothing another tool stored there. */
static int keep_extension(struct qcow2 *q, const uint8_t *ext, size_t len)
{
	uint8_t *n = realloc(q->unknown_ext, q->unknown_ext_len + len);
	if (!n)
		return -ENOMEM;
	memcpy(n + q->unknown_ext_len, ext, len);
	q->unknown_ext = n;
	q->unknown_ext_len += len;
	return 0;
}

static char *dup_bytes(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);
	if (s) {
		memcpy(s, p, n);
		s[n] = '\0';
	}
	return s;
}

static int parse_extensions(struct qcow2 *q, const uint8_t *h, uint64_t start, uint64_t end)
{
	const char *fn = q->bd.filename;
	uint64_t p = start;
	while (p < end) {
		if (end - p < 8)
			return log_error("%s: header extension is truncated", fn), -EINVAL;
		uint32_t type = qcow2_be32(h + p), len = qcow2_be32(h + p + 4);
		if (type == QCOW2_EXT_END)
			return 0;
		uint64_t padded = align_up(len, 8);
		if (padded > end - p - 8)
			return log_error("%s: header extension 0x%x overruns the header", fn, type), -EINVAL;
		if (type == QCOW2_EXT_BACKING_FORMAT) {
			if (len == 0 || len > 16 || q->backing_fmt)
				return log_error("%s: bad backing format extension", fn), -EINVAL;
			q->backing_fmt = dup_bytes(h + p + 8, len);
			if (!q->backing_fmt)
				return -ENOMEM;
		} else if (type != QCOW2_EXT_FEATURE_TABLE) {
			if (keep_extension(q, h + p, 8 + padded) < 0)
				return -ENOMEM;
		}
		p += 8 + padded;
	}
	return 0;
}

static int check_features(struct qcow2 *q)
{
	const char *fn = q->bd.filename;
	uint64_t unknown = q->incompat & ~(QCOW2_INCOMPAT_KNOWN | QCOW2_INCOMPAT_DATA_FILE |
					   QCOW2_INCOMPAT_EXTL2);
	if (unknown)
		return log_error("%s: unknown incompatible feature bits 0x%llx; this image needs a "
				 "newer tool", fn, (unsigned long long)unknown), -ENOTSUP;
	if (q->incompat & QCOW2_INCOMPAT_DATA_FILE)
		return log_error("%s: external data files are not supported", fn), -ENOTSUP;
	if (q->incompat & QCOW2_INCOMPAT_EXTL2)
		return log_error("%s: extended L2 entries (subclusters) are not supported", fn), -ENOTSUP;
	if (q->bd.read_only)
		return 0;
	if (q->opts.repair && q->version >= 3)
		return 0; /* check -r: the repair is what clears those bits */
	if (q->version < 3)
		return log_error("%s: qcow2 version 2 images are read-only here; convert with "
				 "'shoji-img convert -O qcow2'", fn), -ENOTSUP;
	if (q->incompat & QCOW2_INCOMPAT_CORRUPT)
		return log_error("%s: image is marked corrupt; run 'qemu-img check -r all' "
				 "before writing to it", fn), -EIO;
	if (q->incompat & QCOW2_INCOMPAT_DIRTY)
		return log_error("%s: image was not closed cleanly (lazy refcounts); run "
				 "'shoji-img check -r all' first", fn), -EIO;
	return 0;
}

/* Validates the fixed header fields; h holds at least 112 bytes. */
static int parse_fixed(struct qcow2 *q, const uint8_t *h, uint64_t fsize)
{
	const char *fn = q->bd.filename;
	if (qcow2_be32(h) != QCOW2_MAGIC)
		return log_error("%s: not a qcow2 image (bad magic)", fn), -EINVAL;
	q->version = qcow2_be32(h + 4);
	if (q->version != 2 && q->version != 3)
		return log_error("%s: unsupported qcow2 version %u", fn, q->version), -ENOTSUP;
	q->cluster_bits = qcow2_be32(h + 20);
	if (q->cluster_bits < QCOW2_MIN_CLUSTER_BITS || q->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
		return log_error("%s: cluster size 2^%u is outside 512 B..2 MiB", fn,
				 q->cluster_bits), -EINVAL;
	q->cluster_size = UINT64_C(1) << q->cluster_bits;
	q->l2_entries = q->cluster_size / 8;
	if (qcow2_be32(h + 32) != 0)
		return log_error("%s: encrypted qcow2 images are not supported", fn), -ENOTSUP;
	q->bd.size = qcow2_be64(h + 24);
	q->l1_size = qcow2_be32(h + 36);
	q->l1_offset = qcow2_be64(h + 40);
	q->rt_offset = qcow2_be64(h + 48);
	q->rt_clusters = qcow2_be32(h + 56);
	q->nb_snapshots = qcow2_be32(h + 60);
	q->snapshots_offset = qcow2_be64(h + 64);
	if (q->version == 2) {
		q->refcount_order = 4;
		q->header_length = QCOW2_V2_HEADER_LEN;
	} else {
		q->incompat = qcow2_be64(h + 72);
		q->compat = qcow2_be64(h + 80);
		q->autoclear = qcow2_be64(h + 88);
		q->refcount_order = qcow2_be32(h + 96);
		q->header_length = qcow2_be32(h + 100);
		if (q->header_length < QCOW2_V3_HEADER_LEN || q->header_length > q->cluster_size ||
		    q->header_length > fsize)
			return log_error("%s: bad header length %u", fn, q->header_length), -EINVAL;
		if (q->incompat & QCOW2_INCOMPAT_COMPRESSION) {
			if (q->header_length < 105)
				return log_error("%s: compression type bit without field", fn), -EINVAL;
			q->compression_type = h[104];
		} else if (q->header_length > 104 && h[104] != 0) {
			return log_error("%s: compression type set without its feature bit", fn), -EINVAL;
		}
		if (q->compression_type > QCOW2_COMPRESSION_ZSTD)
			return log_error("%s: unknown compression type %u", fn, q->compression_type),
			       -ENOTSUP;
	}
	if (q->refcount_order > 6)
		return log_error("%s: refcount order %u is above 6", fn, q->refcount_order), -EINVAL;
	return check_features(q);
}

static int check_table(struct qcow2 *q, const char *what, uint64_t off, uint64_t bytes,
		       uint64_t fsize)
{
	if (bytes == 0)
		return 0;
	if (off & (q->cluster_size - 1))
		return log_error("%s: %s offset 0x%llx is not cluster aligned", q->bd.filename, what,
				 (unsigned long long)off), -EINVAL;
	if (!range_within(off, bytes, fsize))
		return log_error("%s: %s lies beyond the end of the file", q->bd.filename, what),
		       -EINVAL;
	if (off < q->cluster_size)
		return log_error("%s: %s overlaps the header", q->bd.filename, what), -EINVAL;
	return 0;
}

static int check_geometry(struct qcow2 *q, uint64_t fsize)
{
	const char *fn = q->bd.filename;
	unsigned per_l1_bits = 2 * q->cluster_bits - 3;
	if (q->bd.size > INT64_MAX / 2)
		return log_error("%s: virtual size is absurd", fn), -EINVAL;
	uint64_t need = (q->bd.size + (UINT64_C(1) << per_l1_bits) - 1) >> per_l1_bits;
	if (need > QCOW2_MAX_L1_BYTES / 8)
		return log_error("%s: virtual size too large for this cluster size", fn), -EFBIG;
	if (q->l1_size < need || q->l1_size > QCOW2_MAX_L1_BYTES / 8)
		return log_error("%s: L1 table size %u does not fit the virtual size", fn,
				 q->l1_size), -EINVAL;
	if (q->rt_clusters == 0 || (uint64_t)q->rt_clusters * q->cluster_size > QCOW2_MAX_RT_BYTES)
		return log_error("%s: bad refcount table size", fn), -EINVAL;
	if (q->nb_snapshots > QCOW2_MAX_SNAPSHOTS)
		return log_error("%s: too many snapshots (%u)", fn, q->nb_snapshots), -EINVAL;
	int r = check_table(q, "L1 table", q->l1_offset, (uint64_t)q->l1_size * 8, fsize);
	if (!r)
		r = check_table(q, "refcount table", q->rt_offset,
				(uint64_t)q->rt_clusters * q->cluster_size, fsize);
	if (!r && q->nb_snapshots)
		r = check_table(q, "snapshot table", q->snapshots_offset, 40, fsize);
	if (r)
		return r;
	if (ranges_overlap(q->l1_offset, (uint64_t)q->l1_size * 8, q->rt_offset,
			   (uint64_t)q->rt_clusters * q->cluster_size))
		return log_error("%s: L1 table overlaps the refcount table", fn), -EINVAL;
	q->rb_entries = (q->cluster_size * 8) >> q->refcount_order;
	q->refcount_max = q->refcount_order == 6 ? UINT64_MAX
						 : (UINT64_C(1) << (1u << q->refcount_order)) - 1;
	return 0;
}

static int load_table(struct qcow2 *q, uint64_t off, uint64_t n, uint64_t **out)
{
	uint64_t *t = calloc(n ? n : 1, 8);
	if (!t)
		return -ENOMEM;
	int r = bfile_pread(&q->file, t, n * 8, off);
	if (r < 0) {
		free(t);
		return r;
	}
	for (uint64_t i = 0; i < n; i++)
		t[i] = be64toh(t[i]);
	*out = t;
	return 0;
}

static int read_header(struct qcow2 *q)
{
	uint64_t fsize = q->file.size;
	uint8_t fixed[QCOW2_OUR_HEADER_LEN] = { 0 };
	if (fsize < QCOW2_V2_HEADER_LEN)
		return log_error("%s: file too short for a qcow2 header", q->bd.filename), -EINVAL;
	int r = bfile_pread(&q->file, fixed, sizeof(fixed), 0);
	if (r == 0)
		r = parse_fixed(q, fixed, fsize);
	if (r < 0)
		return r;
	uint8_t *h = malloc(q->cluster_size);
	if (!h)
		return -ENOMEM;
	r = bfile_pread(&q->file, h, q->cluster_size, 0);
	uint64_t boff = qcow2_be64(h + 8), blen = qcow2_be32(h + 16);
	uint64_t ext_end = boff ? boff : q->cluster_size;
	if (r == 0 && boff && (blen == 0 || blen > QCOW2_MAX_BACKING_NAME ||
			       !range_within(boff, blen, q->cluster_size) || boff < q->header_length)) {
		log_error("%s: bad backing file name location", q->bd.filename);
		r = -EINVAL;
	}
	if (r == 0 && boff) {
		q->backing_name = dup_bytes(h + boff, blen);
		if (!q->backing_name || strlen(q->backing_name) != blen) {
			log_error("%s: bad backing file name", q->bd.filename);
			r = -EINVAL;
		}
	}
	if (r == 0)
		r = parse_extensions(q, h, q->header_length, ext_end);
	free(h);
	return r;
}

static int open_tables(struct qcow2 *q)
{
	int r = check_geometry(q, q->file.size);
	if (r == 0)
		r = load_table(q, q->l1_offset, q->l1_size, &q->l1);
	if (r == 0) {
		q->rt_entries = (uint64_t)q->rt_clusters * q->cluster_size / 8;
		r = load_table(q, q->rt_offset, q->rt_entries, &q->rt);
	}
	if (r == 0)
		r = qcow2_read_snapshots(q);
	if (r < 0)
		return r;
	uint64_t l2_bytes = q->opts.l2_cache_size ? q->opts.l2_cache_size : QCOW2_DEFAULT_L2_CACHE;
	uint64_t n = l2_bytes / q->cluster_size;
	n = n < 4 ? 4 : (n > 65536 ? 65536 : n);
	if (qcow2_cache_init(&q->l2c, (unsigned)n, q->cluster_size) < 0 ||
	    qcow2_cache_init(&q->rbc, QCOW2_RB_CACHE_TABLES, q->cluster_size) < 0)
		return -ENOMEM;
	q->cbuf = malloc(2 * q->cluster_size + 512);
	q->dbuf = malloc(q->cluster_size);
	q->zbuf = calloc(1, q->cluster_size);
	q->tmp = bfile_alloc(q->cluster_size);
	if (!q->cbuf || !q->dbuf || !q->zbuf || !q->tmp)
		return -ENOMEM;
	return 0;
}

static void qcow2_destroy(struct qcow2 *q)
{
	if (q->bd.backing)
		block_close(q->bd.backing);
	qcow2_cache_destroy(&q->l2c);
	qcow2_cache_destroy(&q->rbc);
	qcow2_free_snapshots(q);
	bfile_close(&q->file);
	free(q->l1);
	free(q->rt);
	free(q->pending);
	free(q->backing_name);
	free(q->backing_fmt);
	free(q->unknown_ext);
	free(q->cbuf);
	free(q->dbuf);
	free(q->zbuf);
	free(q->tmp);
	free(q->bd.filename);
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->idle);
	pthread_cond_destroy(&q->resume);
	pthread_cond_destroy(&q->turn);
	free(q);
}

void qcow2_close(struct block_dev *bd)
{
	struct qcow2 *q = (struct qcow2 *)bd;
	if (!bd->read_only) {
		pthread_mutex_lock(&q->lock);
		qcow2_quiesce(q);
		int r = qcow2_flush_locked(q);
		/* Trim what was grown ahead of allocation (see prealloc()). */
		uint64_t end = align_up(qcow2_file_end(q), q->cluster_size);
		if (r == 0 && q->prealloc_end > end)
			r = bfile_truncate(&q->file, end);
		pthread_mutex_unlock(&q->lock);
		if (r < 0)
			log_error("%s: flushing metadata on close failed: %s", bd->filename, strerror(-r));
	}
	qcow2_destroy(q);
}

static int qcow2_open(struct block_dev **out, const char *path, const struct block_open_opts *opts)
{
	struct qcow2 *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->idle, NULL);
	pthread_cond_init(&q->resume, NULL);
	pthread_cond_init(&q->turn, NULL);
	q->opts = *opts;
	q->opts.expect = NULL; /* points into the opener's frame; used only below */
	q->bd = (struct block_dev){ .ops = &qcow2_ops, .read_only = opts->read_only,
				    .format = "qcow2", .filename = strdup(path) };
	q->file.fd = -1;
	int r = q->bd.filename ? 0 : -ENOMEM;
	if (r == 0) {
		r = bfile_open(&q->file, path, opts->read_only, opts->cache == BLOCK_CACHE_NONE,
			       block_lock_mode_of(opts), opts->expect);
		if (r < 0 && r != -EBUSY && r != -EAGAIN) /* bfile_open said why */
			log_error("%s: cannot open: %s", path, strerror(-r));
	}
	if (r == 0)
		r = read_header(q);
	if (r == 0)
		r = open_tables(q);
	if (r == 0 && q->backing_name && !opts->no_backing)
		r = block_open_backing(&q->bd.backing, path, q->backing_name, q->backing_fmt, opts);
	if (r < 0) {
		qcow2_destroy(q);
		return r;
	}
	*out = &q->bd;
	return 0;
}

int qcow2_info(struct block_dev *bd, struct block_info *info)
{
	struct qcow2 *q = (struct qcow2 *)bd;
	pthread_mutex_lock(&q->lock);
	*info = (struct block_info){
		.cluster_size = q->cluster_size, .refcount_bits = 1u << q->refcount_order,
		.version = q->version,
		.compression = q->compression_type == QCOW2_COMPRESSION_ZSTD ? "zstd" : "zlib",
		.corrupt = q->incompat & QCOW2_INCOMPAT_CORRUPT,
		.dirty = q->incompat & QCOW2_INCOMPAT_DIRTY,
		.lazy_refcounts = q->compat & QCOW2_COMPAT_LAZY_REFCOUNTS,
		.backing_file = q->backing_name, .backing_format = q->backing_fmt,
		.nb_snapshots = q->nb_snapshots,
	};
	int r = 0;
	if (q->nb_snapshots) {
		info->snapshots = calloc(q->nb_snapshots, sizeof(*info->snapshots));
		if (!info->snapshots)
			r = -ENOMEM;
	}
	for (uint32_t i = 0; r == 0 && i < q->nb_snapshots; i++) {
		struct qcow2_snapshot *sn = &q->snaps[i];
		struct block_snapshot_info *o = &info->snapshots[i];
		snprintf(o->id, sizeof(o->id), "%s", sn->id);
		snprintf(o->name, sizeof(o->name), "%s", sn->name);
		o->vm_state_size = sn->vm_state_size;
		o->date_sec = sn->date_sec;
		o->date_nsec = sn->date_nsec;
		o->vm_clock_nsec = sn->vm_clock_nsec;
		o->disk_size = sn->disk_size;
		o->icount = sn->icount;
	}
	pthread_mutex_unlock(&q->lock);
	return r;
}

/* Records a new backing file name and format in the header. The open
 * device keeps reading through its old backing file until reopened. */
int qcow2_set_backing(struct block_dev *bd, const char *file, const char *format)
{
	struct qcow2 *q = (struct qcow2 *)bd;
	if (bd->read_only)
		return -EROFS;
	if ((file && strlen(file) > QCOW2_MAX_BACKING_NAME) || (file && !format))
		return -EINVAL;
	pthread_mutex_lock(&q->lock);
	qcow2_quiesce(q);
	char *nf = file ? strdup(file) : NULL, *nfmt = file ? strdup(format) : NULL;
	int r = (file && (!nf || !nfmt)) ? -ENOMEM : qcow2_flush_locked(q);
	if (r == 0) {
		char *of = q->backing_name, *ofmt = q->backing_fmt;
		q->backing_name = nf;
		q->backing_fmt = nfmt;
		r = qcow2_write_header(q);
		if (r < 0) {
			q->backing_name = of;
			q->backing_fmt = ofmt;
			of = nf;
			ofmt = nfmt;
		}
		free(of);
		free(ofmt);
		nf = nfmt = NULL;
	}
	if (r == 0)
		r = bfile_sync(&q->file);
	free(nf);
	free(nfmt);
	pthread_mutex_unlock(&q->lock);
	return r;
}

const struct block_driver block_driver_qcow2 = {
	.name = "qcow2",
	.open = qcow2_open,
	.create = qcow2_create,
};
