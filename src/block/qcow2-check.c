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

#define CHECK_MAX_CLUSTERS (UINT64_C(1) << 28) /* 2 GiB of counters */

/*
 * The work is bounded by the file's real size, never by what its tables
 * claim: the counters cover the clusters the file holds, and an L2 table is
 * read and walked once however many L1 entries point to it. A table met
 * n times adds n references to every cluster it points to, exactly what
 * walking it n times would add, so the counts are those of qemu-img check.
 * Before the bound, four million L1 entries naming one L2 table meant 10^12
 * steps.
 */
struct chk {
	struct qcow2 *q;
	uint32_t *ref;          /* computed references per cluster, saturating */
	uint32_t *l2_refs;      /* L1 entries naming the L2 table at each cluster,
				 * 0 once it has been walked */
	uint64_t n;             /* clusters in the file */
	struct block_check *res;
	uint8_t *l2;            /* scratch for reading L2 tables */
};

static uint32_t add_sat(uint32_t a, uint32_t b)
{
	return UINT32_MAX - a < b ? UINT32_MAX : a + b;
}

/* Adds refs references to every cluster of [off, off + len). */
static void count_n(struct chk *c, uint64_t off, uint64_t len, uint32_t refs, const char *what)
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
		c->ref[i] = add_sat(c->ref[i], refs);
	}
}

static void count(struct chk *c, uint64_t off, uint64_t len, const char *what)
{
	count_n(c, off, len, 1, what);
}

static void count_entry(struct chk *c, uint64_t e, uint32_t refs, bool active, uint64_t *prev)
{
	struct qcow2 *q = c->q;
	if (e & QCOW2_OFLAG_COMPRESSED) {
		uint64_t off, len;
		qcow2_compressed_range(q, e, &off, &len);
		count_n(c, off, len, refs, "compressed cluster");
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
	count_n(c, off, q->cluster_size, refs, "data cluster");
}

/* The L2 table an L1 entry names, 0 when none or when it is misplaced
 * (reported when report is set). */
static uint64_t l2_of(struct chk *c, uint64_t l1_entry, bool report)
{
	struct qcow2 *q = c->q;
	uint64_t l2 = l1_entry & QCOW2_OFFSET_MASK;
	if (l2 && ((l2 & (q->cluster_size - 1)) || !range_within(l2, q->cluster_size, q->file.size))) {
		if (report) {
			fprintf(stderr, "ERROR L2 table 0x%llx is misplaced\n", (unsigned long long)l2);
			c->res->corruptions++;
		}
		return 0;
	}
	return l2;
}

/* First pass over an L1 table: counts the references to its L2 tables and
 * notes how often each is named, without reading them. */
static void note_l1(struct chk *c, const uint64_t *l1, uint64_t l1_size)
{
	for (uint64_t i = 0; i < l1_size; i++) {
		uint64_t l2 = l2_of(c, l1[i], true);
		if (!l2)
			continue;
		count(c, l2, c->q->cluster_size, "L2 table");
		uint64_t k = l2 >> c->q->cluster_bits;
		c->l2_refs[k] = add_sat(c->l2_refs[k], 1);
	}
}

/* Walks the L2 table at l2 once, for all the L1 entries that name it. */
static int walk_l2(struct chk *c, uint64_t l2, bool active, uint64_t *prev)
{
	struct qcow2 *q = c->q;
	uint64_t k = l2 >> q->cluster_bits;
	uint32_t refs = c->l2_refs[k];
	if (!refs)
		return 0; /* walked already */
	c->l2_refs[k] = 0;
	int r = bfile_pread(&q->file, c->l2, q->cluster_size, l2);
	for (uint64_t j = 0; r == 0 && j < q->l2_entries; j++)
		count_entry(c, qcow2_l2_get(c->l2, j), refs, active, prev);
	return r;
}

static int read_snapshot_l1(struct qcow2 *q, const struct qcow2_snapshot *sn, uint64_t **l1)
{
	*l1 = calloc(sn->l1_size ? sn->l1_size : 1, 8);
	if (!*l1)
		return -ENOMEM;
	int r = bfile_pread(&q->file, *l1, (uint64_t)sn->l1_size * 8, sn->l1_offset);
	for (uint32_t i = 0; i < sn->l1_size; i++)
		(*l1)[i] = be64toh((*l1)[i]);
	if (r < 0)
		free(*l1);
	return r;
}

static int note_snapshots(struct chk *c)
{
	struct qcow2 *q = c->q;
	count(c, q->snapshots_offset, q->snapshots_size, "snapshot table");
	for (uint32_t s = 0; s < q->nb_snapshots; s++) {
		struct qcow2_snapshot *sn = &q->snaps[s];
		uint64_t *l1;
		int r = read_snapshot_l1(q, sn, &l1);
		if (r < 0)
			return r;
		count(c, sn->l1_offset, (uint64_t)sn->l1_size * 8, "snapshot L1 table");
		note_l1(c, l1, sn->l1_size);
		free(l1);
	}
	return 0;
}

/*
 * Counts everything reachable from the L1 tables: the active L2 tables are
 * walked first and in L1 order (they make the allocation statistics), then
 * those only snapshots name.
 */
static int count_tables(struct chk *c)
{
	struct qcow2 *q = c->q;
	count(c, q->l1_offset, (uint64_t)q->l1_size * 8, "L1 table");
	note_l1(c, q->l1, q->l1_size);
	int r = note_snapshots(c);
	uint64_t prev = 0;
	for (uint64_t i = 0; r == 0 && i < q->l1_size; i++) {
		uint64_t l2 = l2_of(c, q->l1[i], false);
		if (l2)
			r = walk_l2(c, l2, true, &prev);
	}
	prev = 0;
	for (uint64_t k = 0; r == 0 && k < c->n; k++)
		if (c->l2_refs[k])
			r = walk_l2(c, k << q->cluster_bits, false, &prev);
	return r;
}

/* Every L1 table occupies its own bytes of the file: tables that add up to
 * more than the file overlap, and reading them all could take forever. */
static int check_l1_sizes(struct qcow2 *q)
{
	uint64_t bytes = (uint64_t)q->l1_size * 8;
	for (uint32_t s = 0; s < q->nb_snapshots; s++)
		bytes += (uint64_t)q->snaps[s].l1_size * 8;
	if (bytes > q->file.size)
		return log_error("%s: its L1 tables (%llu bytes in all) cannot fit in the %llu-byte "
				 "file; refusing to check an image whose tables overlap",
				 q->bd.filename, (unsigned long long)bytes,
				 (unsigned long long)q->file.size), -EINVAL;
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

/* Compares one cluster's stored count with the computed one, fixing what
 * repair allows. */
static int compare_one(struct chk *c, uint64_t i, uint64_t stored, int repair)
{
	struct qcow2 *q = c->q;
	uint64_t want = i < c->n ? c->ref[i] : 0;
	if (stored == want)
		return 0;
	if (want > q->refcount_max) {
		fprintf(stderr, "ERROR cluster %llu has %llu references, more than %u-bit "
			"refcounts can count\n", (unsigned long long)i, (unsigned long long)want,
			1u << q->refcount_order);
		c->res->corruptions++;
		return 0;
	}
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
	return 0;
}

/* Compares the clusters of refcount block b (table index b). */
static int compare_block(struct chk *c, uint64_t b, int repair)
{
	struct qcow2 *q = c->q;
	for (uint64_t i = b * q->rb_entries; i < (b + 1) * q->rb_entries; i++) {
		uint64_t stored;
		int r = qcow2_get_refcount(q, i, &stored);
		if (r == -EIO) {
			/* the block itself is bad: counted once, skipped */
			fprintf(stderr, "ERROR refcount block %llu is unusable\n",
				(unsigned long long)b);
			c->res->corruptions++;
			return 0;
		}
		if (r == 0)
			r = compare_one(c, i, stored, repair);
		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * Whether the block of table index b, which covers only clusters beyond the
 * end of the file, needs reading: all its counts should be zero. A block
 * that any other table entry or table also names (its cluster counted more
 * than once) is not read again for each name: it is a corruption already,
 * reported by its own count, and the file's size bounds the blocks left.
 */
static bool block_beyond_file_needs_reading(struct chk *c, uint64_t b, uint64_t *shared)
{
	struct qcow2 *q = c->q;
	uint64_t e = b < q->rt_entries ? q->rt[b] : 0, off = e & ~QCOW2_RT_RESERVED;
	if (!off)
		return false;
	if (!(e & QCOW2_RT_RESERVED) && (off >> q->cluster_bits) < c->n &&
	    c->ref[off >> q->cluster_bits] > 1) {
		(*shared)++;
		return false;
	}
	return true;
}

/* Compares computed with stored counts, fixing what repair allows. */
static int compare(struct chk *c, int repair)
{
	struct qcow2 *q = c->q;
	uint64_t file_blocks = (c->n + q->rb_entries - 1) / q->rb_entries, shared = 0;
	uint64_t blocks = q->rt_entries > file_blocks ? q->rt_entries : file_blocks;
	for (uint64_t b = 0; b < blocks; b++) {
		if (b >= file_blocks && !block_beyond_file_needs_reading(c, b, &shared))
			continue;
		int r = compare_block(c, b, repair);
		if (r < 0)
			return r;
	}
	if (shared) {
		fprintf(stderr, "ERROR %llu refcount table entries beyond the end of the file name "
			"refcount blocks used elsewhere\n", (unsigned long long)shared);
		c->res->corruptions++;
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

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The COPIED flag of an active L1 entry must say "refcount is exactly 1".
 * Notes the L2 tables worth looking into in tabs[*ntabs]. */
static int check_l1_copied(struct qcow2 *q, struct block_check *res, bool fix, uint64_t *tabs,
			   uint64_t *ntabs)
{
	*ntabs = 0;
	for (uint64_t i = 0; i < q->l1_size; i++) {
		uint64_t l2 = q->l1[i] & QCOW2_OFFSET_MASK, rc;
		if (!l2 || (l2 & (q->cluster_size - 1)) || l2 >= q->file.size)
			continue;
		int r = qcow2_get_refcount(q, l2 >> q->cluster_bits, &rc);
		if (r < 0)
			return r;
		tabs[(*ntabs)++] = l2;
		if ((rc == 1) == !!(q->l1[i] & QCOW2_OFLAG_COPIED))
			continue;
		if (fix) {
			q->l1[i] = rc == 1 ? q->l1[i] | QCOW2_OFLAG_COPIED : q->l1[i] & ~QCOW2_OFLAG_COPIED;
			q->l1_dirty = true;
		} else {
			fprintf(stderr, "ERROR OFLAG_COPIED L2 cluster: l1_index=%llu\n",
				(unsigned long long)i);
			res->corruptions++;
		}
	}
	return 0;
}

/* The COPIED flag of the data entries of the L2 table at l2. */
static int check_l2_copied(struct qcow2 *q, uint64_t l2, struct block_check *res, bool fix)
{
	uint8_t *t;
	uint64_t rc;
	int r = qcow2_cache_get(q, &q->l2c, l2, true, &t);
	if (r < 0)
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
	return r;
}

/* The COPIED flags of the active L1 table and of each L2 table it names,
 * each table looked into once however often it is named. */
static int check_copied(struct qcow2 *q, struct block_check *res, bool fix)
{
	uint64_t *tabs = malloc((q->l1_size ? q->l1_size : 1) * sizeof(*tabs)), n;
	if (!tabs)
		return -ENOMEM;
	int r = check_l1_copied(q, res, fix, tabs, &n);
	if (r == 0)
		qsort(tabs, n, sizeof(*tabs), cmp_u64);
	for (uint64_t i = 0; r == 0 && i < n; i++)
		if (i == 0 || tabs[i] != tabs[i - 1])
			r = check_l2_copied(q, tabs[i], res, fix);
	free(tabs);
	return r;
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
	int r = check_l1_sizes(q);
	if (r < 0)
		return r;
	c.ref = calloc(c.n ? c.n : 1, sizeof(*c.ref));
	c.l2_refs = calloc(c.n ? c.n : 1, sizeof(*c.l2_refs));
	c.l2 = malloc(q->cluster_size);
	r = c.ref && c.l2_refs && c.l2 ? 0 : -ENOMEM;
	if (r == 0) {
		count(&c, 0, q->cluster_size, "header");
		r = count_tables(&c);
	}
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
	free(c.l2_refs);
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
