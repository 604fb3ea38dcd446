/*
 * qcow2 consistency check and repair, in the terms of qemu-img check:
 * every reference reachable from the header, the refcount table, the active
 * L1 table and each snapshot's L1 table is counted, and the counts are
 * compared with the stored refcounts. A stored count that is too high is a
 * leak (wasted space, harmless); one that is too low is a corruption (the
 * cluster could be handed out twice). Also checked: the COPIED flag of
 * active L1/L2 entries, which must be set exactly when the count is 1.
 *
 * Repair (-r leaks / -r all) lowers or raises stored counts to the computed
 * ones and fixes COPIED flags, through the ordinary ordered metadata flush.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "block/qcow2.h"

#define CHECK_MAX_CLUSTERS (UINT64_C(1) << 28) /* 1 GiB of counters */

struct chk {
	struct qcow2 *q;
	uint32_t *ref;
	uint64_t n;             /* clusters in the file */
	struct block_check *res;
	uint8_t *l2;            /* scratch for reading L2 tables */
};

static void count(struct chk *c, uint64_t off, uint64_t len, const char *what)
{
	if (len == 0)
		return;
	uint64_t first = off >> c->q->cluster_bits, last = (off + len - 1) >> c->q->cluster_bits;
	for (uint64_t i = first; i <= last; i++) {
		if (i >= c->n) {
			fprintf(stderr, "ERROR %s at 0x%llx is beyond the end of the image\n", what,
				(unsigned long long)off);
			c->res->corruptions++;
			return;
		}
		if (c->ref[i] != UINT32_MAX)
			c->ref[i]++;
	}
}

static void count_entry(struct chk *c, uint64_t e, bool active, uint64_t *prev)
{
	struct qcow2 *q = c->q;
	if (e & QCOW2_OFLAG_COMPRESSED) {
		uint64_t off, len;
		qcow2_compressed_range(q, e, &off, &len);
		count(c, off, len, "compressed cluster");
		if (active) {
			c->res->allocated_clusters++;
			c->res->compressed_clusters++;
		}
		return;
	}
	uint64_t off = e & QCOW2_OFFSET_MASK;
	if (active && off && !(e & QCOW2_OFLAG_ZERO))
		c->res->allocated_clusters++;
	if (!off)
		return;
	if (off & (q->cluster_size - 1)) {
		fprintf(stderr, "ERROR data cluster 0x%llx is not cluster aligned\n",
			(unsigned long long)off);
		c->res->corruptions++;
		return;
	}
	if (active && *prev && off != *prev + q->cluster_size)
		c->res->fragmented_clusters++;
	*prev = off;
	count(c, off, q->cluster_size, "data cluster");
}

static int count_l1(struct chk *c, const uint64_t *l1, uint64_t l1_size, bool active)
{
	struct qcow2 *q = c->q;
	uint64_t prev = 0;
	for (uint64_t i = 0; i < l1_size; i++) {
		uint64_t l2 = l1[i] & QCOW2_OFFSET_MASK;
		if (!l2)
			continue;
		if ((l2 & (q->cluster_size - 1)) || !range_within(l2, q->cluster_size, q->file.size)) {
			fprintf(stderr, "ERROR L2 table 0x%llx is misplaced\n", (unsigned long long)l2);
			c->res->corruptions++;
			continue;
		}
		count(c, l2, q->cluster_size, "L2 table");
		int r = bfile_pread(&q->file, c->l2, q->cluster_size, l2);
		if (r < 0)
			return r;
		for (uint64_t j = 0; j < q->l2_entries; j++)
			count_entry(c, qcow2_l2_get(c->l2, j), active, &prev);
	}
	return 0;
}

static int count_snapshots(struct chk *c)
{
	struct qcow2 *q = c->q;
	count(c, q->snapshots_offset, q->snapshots_size, "snapshot table");
	for (uint32_t s = 0; s < q->nb_snapshots; s++) {
		struct qcow2_snapshot *sn = &q->snaps[s];
		uint64_t *l1 = calloc(sn->l1_size ? sn->l1_size : 1, 8);
		if (!l1)
			return -ENOMEM;
		int r = bfile_pread(&q->file, l1, (uint64_t)sn->l1_size * 8, sn->l1_offset);
		for (uint32_t i = 0; i < sn->l1_size; i++)
			l1[i] = be64toh(l1[i]);
		count(c, sn->l1_offset, (uint64_t)sn->l1_size * 8, "snapshot L1 table");
		if (r == 0)
			r = count_l1(c, l1, sn->l1_size, false);
		free(l1);
		if (r < 0)
			return r;
	}
	return 0;
}

static void count_refcount_structures(struct chk *c)
{
	struct qcow2 *q = c->q;
	count(c, q->rt_offset, (uint64_t)q->rt_clusters * q->cluster_size, "refcount table");
	for (uint64_t i = 0; i < q->rt_entries; i++) {
		uint64_t off = q->rt[i] & ~QCOW2_RT_RESERVED;
		if (!off)
			continue;
		if ((off & (q->cluster_size - 1)) || (q->rt[i] & QCOW2_RT_RESERVED)) {
			fprintf(stderr, "ERROR refcount block %llu is misplaced\n", (unsigned long long)i);
			c->res->corruptions++;
			continue;
		}
		count(c, off, q->cluster_size, "refcount block");
	}
}

/* Compares computed with stored counts, fixing what repair allows. */
static int compare(struct chk *c, int repair)
{
	struct qcow2 *q = c->q;
	uint64_t covered = q->rt_entries * q->rb_entries;
	uint64_t end = c->n > covered ? c->n : covered;
	for (uint64_t i = 0; i < end; i++) {
		uint64_t stored = 0, want = i < c->n ? c->ref[i] : 0;
		if (i >= c->n && i % q->rb_entries == 0 &&
		    !(q->rt[i / q->rb_entries] & ~QCOW2_RT_RESERVED)) {
			i += q->rb_entries - 1; /* beyond the file and no block: nothing */
			continue;
		}
		if (i < covered) {
			int r = qcow2_get_refcount(q, i, &stored);
			if (r == -EIO && i % q->rb_entries == 0) {
				/* the block itself is bad: counted once, skipped */
				fprintf(stderr, "ERROR refcount block %llu is unusable\n",
					(unsigned long long)(i / q->rb_entries));
				c->res->corruptions++;
				i += q->rb_entries - 1;
				continue;
			}
			if (r < 0)
				return r;
		}
		if (stored == want)
			continue;
		bool leak = stored > want;
		bool fix = repair == BLOCK_REPAIR_ALL || (leak && repair == BLOCK_REPAIR_LEAKS);
		fprintf(stderr, "%s cluster %llu refcount=%llu reference=%llu\n",
			fix ? "Repairing" : (leak ? "Leaked" : "ERROR"), (unsigned long long)i,
			(unsigned long long)stored, (unsigned long long)want);
		if (fix) {
			int r = qcow2_set_refcount(q, i, want);
			if (r < 0)
				return r;
			*(leak ? &c->res->leaks_fixed : &c->res->corruptions_fixed) += 1;
		} else {
			*(leak ? &c->res->leaks : &c->res->corruptions) += 1;
		}
	}
	return 0;
}

static void find_end(struct chk *c)
{
	for (uint64_t i = c->n; i > 0; i--) {
		if (c->ref[i - 1]) {
			uint64_t e = i * c->q->cluster_size;
			if (e > c->res->image_end_offset)
				c->res->image_end_offset = e;
			return;
		}
	}
}

/* The COPIED flag of active entries must say "refcount is exactly 1". */
static int check_copied(struct qcow2 *q, struct block_check *res, bool fix)
{
	for (uint64_t i = 0; i < q->l1_size; i++) {
		uint64_t l2 = q->l1[i] & QCOW2_OFFSET_MASK, rc;
		if (!l2 || (l2 & (q->cluster_size - 1)) || l2 >= q->file.size)
			continue;
		int r = qcow2_get_refcount(q, l2 >> q->cluster_bits, &rc);
		if (r < 0)
			return r;
		if ((rc == 1) != !!(q->l1[i] & QCOW2_OFLAG_COPIED)) {
			if (fix) {
				q->l1[i] = rc == 1 ? q->l1[i] | QCOW2_OFLAG_COPIED
						   : q->l1[i] & ~QCOW2_OFLAG_COPIED;
				q->l1_dirty = true;
			} else {
				fprintf(stderr, "ERROR OFLAG_COPIED L2 cluster: l1_index=%llu\n",
					(unsigned long long)i);
				res->corruptions++;
			}
		}
		uint8_t *t;
		if ((r = qcow2_cache_get(q, &q->l2c, l2, true, &t)) < 0)
			return r;
		for (uint64_t j = 0; j < q->l2_entries && r == 0; j++) {
			uint64_t e = qcow2_l2_get(t, j), d = e & QCOW2_OFFSET_MASK;
			if ((e & QCOW2_OFLAG_COMPRESSED) || !d || (d & (q->cluster_size - 1)))
				continue;
			if ((r = qcow2_get_refcount(q, d >> q->cluster_bits, &rc)) < 0)
				break;
			if ((rc == 1) == !!(e & QCOW2_OFLAG_COPIED))
				continue;
			if (fix) {
				qcow2_l2_set(t, j, rc == 1 ? e | QCOW2_OFLAG_COPIED : e & ~QCOW2_OFLAG_COPIED);
				qcow2_cache_dirty(&q->l2c, t);
			} else {
				fprintf(stderr, "ERROR OFLAG_COPIED data cluster: l2_entry=%llx refcount=%llu\n",
					(unsigned long long)e, (unsigned long long)rc);
				res->corruptions++;
			}
		}
		qcow2_cache_put(&q->l2c, t);
		if (r < 0)
			return r;
	}
	return 0;
}

int qcow2_fix_copied(struct qcow2 *q)
{
	struct block_check dummy;
	return check_copied(q, &dummy, true);
}

static int check_locked(struct qcow2 *q, struct block_check *res, int repair)
{
	if (!q->bd.read_only) {
		int r = qcow2_flush_locked(q);
		if (r < 0)
			return r;
	}
	struct chk c = { .q = q, .res = res };
	c.n = (q->file.size + q->cluster_size - 1) >> q->cluster_bits;
	if (c.n > CHECK_MAX_CLUSTERS)
		return log_error("%s: file too large to check", q->bd.filename), -EFBIG;
	c.ref = calloc(c.n ? c.n : 1, sizeof(*c.ref));
	c.l2 = malloc(q->cluster_size);
	int r = c.ref && c.l2 ? 0 : -ENOMEM;
	if (r == 0) {
		count(&c, 0, q->cluster_size, "header");
		count(&c, q->l1_offset, (uint64_t)q->l1_size * 8, "L1 table");
		r = count_l1(&c, q->l1, q->l1_size, true);
	}
	if (r == 0)
		r = count_snapshots(&c);
	if (r == 0) {
		count_refcount_structures(&c);
		find_end(&c);
		r = compare(&c, repair);
	}
	if (r == 0)
		r = check_copied(q, res, repair == BLOCK_REPAIR_ALL);
	if (r == 0 && repair)
		r = qcow2_flush_locked(q);
	uint64_t bad = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT;
	if (r == 0 && repair == BLOCK_REPAIR_ALL && !res->corruptions && (q->incompat & bad)) {
		/* Refcounts are exact again: the image may be written normally. */
		uint8_t be[8];
		q->incompat &= ~bad;
		qcow2_put64(be, q->incompat);
		r = qcow2_write_header_field(q, 72, be, 8);
		if (r == 0)
			r = bfile_sync(&q->file);
	}
	res->total_clusters = (q->bd.size + q->cluster_size - 1) >> q->cluster_bits;
	free(c.ref);
	free(c.l2);
	return r;
}

int qcow2_check(struct block_dev *bd, struct block_check *res, int repair)
{
	struct qcow2 *q = (struct qcow2 *)bd;
	pthread_mutex_lock(&q->lock);
	qcow2_quiesce(q);
	int r = check_locked(q, res, repair);
	pthread_mutex_unlock(&q->lock);
	return r;
}
