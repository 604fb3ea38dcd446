/*
 * qcow2 refcounts: reading and changing the count of a host cluster,
 * allocating runs of free clusters, queueing decrements until the removal
 * of a reference is durable, and creating refcount blocks and growing the
 * refcount table when the file outgrows them.
 *
 * New refcount blocks and a grown refcount table are written and synced
 * before anything points to them, so a crash in the middle leaves at most
 * unreferenced clusters.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "block/qcow2.h"

#define QCOW2_MAX_HOST_CLUSTER_BYTES (UINT64_C(1) << 56)

uint64_t qcow2_rb_get(const struct qcow2 *q, const uint8_t *rb, uint64_t i)
{
	unsigned order = q->refcount_order;
	if (order < 3) {
		unsigned per_byte = 8u >> order, bits = 1u << order;
		unsigned shift = (unsigned)(i % per_byte) * bits;
		return (rb[i / per_byte] >> shift) & ((1u << bits) - 1);
	}
	switch (order) {
	case 3: return rb[i];
	case 4: return qcow2_be16(rb + 2 * i);
	case 5: return qcow2_be32(rb + 4 * i);
	default: return qcow2_be64(rb + 8 * i);
	}
}

void qcow2_rb_set(const struct qcow2 *q, uint8_t *rb, uint64_t i, uint64_t v)
{
	unsigned order = q->refcount_order;
	if (order < 3) {
		unsigned per_byte = 8u >> order, bits = 1u << order;
		unsigned shift = (unsigned)(i % per_byte) * bits;
		uint8_t mask = (uint8_t)(((1u << bits) - 1) << shift);
		rb[i / per_byte] = (uint8_t)((rb[i / per_byte] & ~mask) | ((v << shift) & mask));
		return;
	}
	switch (order) {
	case 3: rb[i] = (uint8_t)v; break;
	case 4: qcow2_put16(rb + 2 * i, (uint16_t)v); break;
	case 5: qcow2_put32(rb + 4 * i, (uint32_t)v); break;
	default: qcow2_put64(rb + 8 * i, v); break;
	}
}

void qcow2_compressed_range(const struct qcow2 *q, uint64_t entry, uint64_t *off, uint64_t *len)
{
	unsigned shift = 62 - (q->cluster_bits - 8);
	uint64_t nsect = ((entry >> shift) & ((UINT64_C(1) << (q->cluster_bits - 8)) - 1)) + 1;
	*off = (entry & ((UINT64_C(1) << shift) - 1)) & ~UINT64_C(511);
	*len = nsect * 512;
}

/* Offset of the refcount block for table index i, 0 when none; checks it. */
static int rb_offset(struct qcow2 *q, uint64_t i, uint64_t *off)
{
	*off = 0;
	if (i >= q->rt_entries)
		return 0;
	uint64_t e = q->rt[i];
	uint64_t o = e & ~QCOW2_RT_RESERVED;
	if (e & QCOW2_RT_RESERVED || (o & (q->cluster_size - 1)))
		return qcow2_mark_corrupt(q, "refcount table entry %llu is malformed",
					  (unsigned long long)i);
	if (o && (o < q->cluster_size || !range_within(o, q->cluster_size, q->file.size)))
		return qcow2_mark_corrupt(q, "refcount block %llu lies outside the file",
					  (unsigned long long)i);
	*off = o;
	return 0;
}

int qcow2_get_refcount(struct qcow2 *q, uint64_t cluster, uint64_t *rc)
{
	uint64_t off;
	int r = rb_offset(q, cluster / q->rb_entries, &off);
	*rc = 0;
	if (r < 0 || off == 0)
		return r;
	uint8_t *rb;
	r = qcow2_cache_get(q, &q->rbc, off, true, &rb);
	if (r < 0)
		return r;
	*rc = qcow2_rb_get(q, rb, cluster % q->rb_entries);
	qcow2_cache_put(&q->rbc, rb);
	return 0;
}

/* Writes a new refcount table (grown to hold index need) with refcount
 * blocks covering itself, then switches the header to it. */
static int grow_reftable(struct qcow2 *q, uint64_t need)
{
	uint64_t per_cl = q->cluster_size / 8;
	uint64_t c0 = q->rt_entries * q->rb_entries; /* first uncovered cluster */
	uint64_t entries = q->rt_entries * 2 > need + 1 ? q->rt_entries * 2 : need + 1;
	uint64_t nb = 1, tcl;
	for (;;) {
		if (entries < q->rt_entries + nb + 1)
			entries = q->rt_entries + nb + 1;
		entries = align_up(entries, per_cl);
		tcl = entries / per_cl;
		if (nb * q->rb_entries >= nb + tcl)
			break;
		nb++;
	}
	if (tcl * q->cluster_size > QCOW2_MAX_RT_BYTES ||
	    (c0 + nb + tcl) * q->cluster_size > QCOW2_MAX_HOST_CLUSTER_BYTES)
		return log_error("%s: image file too large for its refcount table", q->bd.filename),
		       -EFBIG;
	uint64_t *nt = calloc(entries, 8);
	uint8_t *buf = calloc(1, q->cluster_size);
	int r = (nt && buf) ? 0 : -ENOMEM;
	for (uint64_t i = 0; r == 0 && i < q->rt_entries; i++)
		nt[i] = htobe64(q->rt[i]);
	for (uint64_t b = 0; r == 0 && b < nb; b++) {
		memset(buf, 0, q->cluster_size);
		for (uint64_t c = c0; c < c0 + nb + tcl; c++)
			if (c / q->rb_entries == q->rt_entries + b)
				qcow2_rb_set(q, buf, c % q->rb_entries, 1);
		uint64_t off = (c0 + b) * q->cluster_size;
		qcow2_cache_drop(&q->rbc, off);
		qcow2_cache_drop(&q->l2c, off);
		r = bfile_pwrite(&q->file, buf, q->cluster_size, off);
		nt[q->rt_entries + b] = htobe64(off);
	}
	uint64_t toff = (c0 + nb) * q->cluster_size;
	if (r == 0)
		r = bfile_pwrite(&q->file, nt, entries * 8, toff);
	if (r == 0)
		r = bfile_sync(&q->file);
	uint8_t hdr[12];
	qcow2_put64(hdr, toff);
	qcow2_put32(hdr + 8, (uint32_t)tcl);
	if (r == 0)
		r = qcow2_write_header_field(q, 48, hdr, sizeof(hdr));
	if (r == 0)
		r = bfile_sync(&q->file);
	free(buf);
	if (r < 0) {
		free(nt);
		return r;
	}
	for (uint64_t i = 0; i < entries; i++)
		nt[i] = be64toh(nt[i]);
	uint64_t old_off = q->rt_offset, old_cl = q->rt_clusters;
	free(q->rt);
	q->rt = nt;
	q->rt_entries = entries;
	q->rt_offset = toff;
	q->rt_clusters = (uint32_t)tcl;
	for (uint64_t i = 0; i < old_cl; i++)
		if ((r = qcow2_free_later(q, old_off + i * q->cluster_size)) < 0)
			return r;
	return 0;
}

/* Creates the missing refcount block for table index b, placed in the first
 * cluster it covers (free, since nothing there can have a count yet). */
static int create_refblock(struct qcow2 *q, uint64_t b)
{
	if (b >= q->rt_entries) {
		int r = grow_reftable(q, b);
		if (r < 0 || q->rt[b])
			return r;
	}
	uint64_t cl = b * q->rb_entries;
	if (cl == 0 || cl * q->cluster_size >= QCOW2_MAX_HOST_CLUSTER_BYTES)
		return qcow2_mark_corrupt(q, "refcount block 0 is missing");
	uint64_t off = cl * q->cluster_size;
	if (qcow2_overlaps_metadata(q, off, q->cluster_size))
		return qcow2_mark_corrupt(q, "refcount block %llu would overlap metadata",
					  (unsigned long long)b);
	qcow2_cache_drop(&q->l2c, off);
	uint8_t *rb;
	int r = qcow2_cache_get(q, &q->rbc, off, false, &rb);
	if (r < 0)
		return r;
	qcow2_rb_set(q, rb, 0, 1);
	r = bfile_pwrite(&q->file, rb, q->cluster_size, off);
	qcow2_cache_put(&q->rbc, rb);
	if (r == 0)
		r = bfile_sync(&q->file); /* the block before the table entry to it */
	uint8_t be[8];
	qcow2_put64(be, off);
	q->unsynced = true;
	if (r == 0)
		r = bfile_pwrite(&q->file, be, 8, q->rt_offset + b * 8);
	if (r == 0)
		q->rt[b] = off;
	return r;
}

static int ensure_refblock(struct qcow2 *q, uint64_t cluster)
{
	uint64_t b = cluster / q->rb_entries, off;
	int r = rb_offset(q, b, &off);
	if (r < 0 || off)
		return r;
	return create_refblock(q, b);
}

/* Pins the refcount block that holds cluster's count, creating it first
 * when create is set (a count is about to rise from zero). */
static int refblock_pin(struct qcow2 *q, uint64_t cluster, bool create, uint8_t **rb)
{
	int r = create ? ensure_refblock(q, cluster) : 0;
	uint64_t off;
	if (r == 0)
		r = rb_offset(q, cluster / q->rb_entries, &off);
	if (r < 0)
		return r;
	if (off == 0)
		return qcow2_mark_corrupt(q, "freeing cluster %llu that has no refcount",
					  (unsigned long long)cluster);
	return qcow2_cache_get(q, &q->rbc, off, true, rb);
}

static void refblock_store(struct qcow2 *q, uint8_t *rb, uint64_t cluster, uint64_t v)
{
	qcow2_rb_set(q, rb, cluster % q->rb_entries, v);
	qcow2_cache_dirty(&q->rbc, rb);
	if (v == 0 && cluster < q->free_hint)
		q->free_hint = cluster;
}

int qcow2_update_refcount(struct qcow2 *q, uint64_t cluster, int64_t delta)
{
	uint8_t *rb;
	int r = refblock_pin(q, cluster, delta > 0, &rb);
	if (r < 0)
		return r;
	/* Counts are unsigned and may use all 64 bits: the size of the change
	 * is taken in unsigned arithmetic, where -INT64_MIN is defined. */
	uint64_t v = qcow2_rb_get(q, rb, cluster % q->rb_entries);
	uint64_t step = delta < 0 ? -(uint64_t)delta : (uint64_t)delta;
	if (delta < 0 && v < step)
		r = qcow2_mark_corrupt(q, "refcount of cluster %llu drops below zero",
				       (unsigned long long)cluster);
	else if (delta > 0 && q->refcount_max - v < step)
		r = (log_error("%s: refcount of cluster %llu would overflow", q->bd.filename,
			       (unsigned long long)cluster), -ERANGE);
	if (r == 0)
		refblock_store(q, rb, cluster, delta < 0 ? v - step : v + step);
	qcow2_cache_put(&q->rbc, rb);
	return r;
}

/* Repair: the stored count becomes value, whatever it was. A difference of
 * two 64-bit counts does not fit in an int64_t, so this is no delta. */
int qcow2_set_refcount(struct qcow2 *q, uint64_t cluster, uint64_t value)
{
	if (value > q->refcount_max)
		return log_error("%s: refcount %llu of cluster %llu does not fit in %u bits",
				 q->bd.filename, (unsigned long long)value,
				 (unsigned long long)cluster, 1u << q->refcount_order), -ERANGE;
	uint8_t *rb;
	int r = refblock_pin(q, cluster, value > 0, &rb);
	if (r < 0)
		return r;
	refblock_store(q, rb, cluster, value);
	qcow2_cache_put(&q->rbc, rb);
	return 0;
}

int64_t qcow2_alloc_clusters(struct qcow2 *q, uint64_t n)
{
	uint64_t start = q->free_hint, run = 0, s = start;
	uint64_t limit = QCOW2_MAX_HOST_CLUSTER_BYTES >> q->cluster_bits;
	for (uint64_t c = start; run < n; c++) {
		if (c >= limit)
			return log_error("%s: image file is full", q->bd.filename), -ENOSPC;
		int r = ensure_refblock(q, c);
		uint64_t rc;
		if (r == 0)
			r = qcow2_get_refcount(q, c, &rc);
		if (r < 0)
			return r;
		if (rc || qcow2_overlaps_metadata(q, c * q->cluster_size, q->cluster_size)) {
			run = 0;
			s = c + 1;
		} else {
			run++;
		}
	}
	for (uint64_t c = s; c < s + n; c++) {
		int r = qcow2_update_refcount(q, c, 1);
		if (r < 0)
			return r;
	}
	if (s == start || n == 1)
		q->free_hint = s + n;
	if ((s + n) * q->cluster_size > q->alloc_end)
		q->alloc_end = (s + n) * q->cluster_size;
	return (int64_t)(s * q->cluster_size);
}

int qcow2_free_later(struct qcow2 *q, uint64_t host_off)
{
	if (q->n_pending == q->cap_pending) {
		size_t cap = q->cap_pending ? q->cap_pending * 2 : 64;
		uint64_t *p = realloc(q->pending, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		q->pending = p;
		q->cap_pending = cap;
	}
	q->pending[q->n_pending++] = host_off;
	return 0;
}

int qcow2_free_entry_later(struct qcow2 *q, uint64_t entry)
{
	if (entry & QCOW2_OFLAG_COMPRESSED) {
		uint64_t off, len;
		qcow2_compressed_range(q, entry, &off, &len);
		uint64_t first = off >> q->cluster_bits, last = (off + len - 1) >> q->cluster_bits;
		for (uint64_t c = first; c <= last; c++) {
			int r = qcow2_free_later(q, c << q->cluster_bits);
			if (r < 0)
				return r;
		}
		return 0;
	}
	uint64_t off = entry & QCOW2_OFFSET_MASK;
	return off ? qcow2_free_later(q, off) : 0;
}

int qcow2_apply_pending(struct qcow2 *q)
{
	q->dbuf_entry = 0; /* a freed cluster may come back with other content */
	q->cpack_off = 0;  /* and the cluster being packed may be among them */
	for (size_t i = 0; i < q->n_pending; i++) {
		uint64_t off = q->pending[i];
		int r = qcow2_update_refcount(q, off >> q->cluster_bits, -1);
		if (r < 0) {
			q->n_pending = 0;
			return r;
		}
		uint64_t rc;
		if (qcow2_get_refcount(q, off >> q->cluster_bits, &rc) == 0 && rc == 0)
			qcow2_cache_drop(&q->l2c, off);
	}
	q->n_pending = 0;
	return 0;
}
