/*
 * qcow2 internal snapshots: create, apply (revert) and delete, as
 * `shoji-img snapshot -c|-a|-d` and the differential test use them.
 *
 * Order of writes in each verb: reference counts go up and are synced
 * before the new references (snapshot table, L1 copy) become reachable from
 * the header; counts go down only after the header no longer reaches the old
 * references. A crash in between leaves leaked clusters, never a count that
 * is too low.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/util.h"
#include "block/qcow2.h"

static int find(struct qcow2 *q, const char *name)
{
	for (uint32_t i = 0; i < q->nb_snapshots; i++)
		if (strcmp(q->snaps[i].name, name) == 0)
			return (int)i;
	for (uint32_t i = 0; i < q->nb_snapshots; i++)
		if (strcmp(q->snaps[i].id, name) == 0)
			return (int)i;
	return -1;
}

/* Makes snaps[0..n) the table: writes it, points the header at it, and
 * queues the old table's clusters for freeing. Takes ownership of snaps. */
static int install_table(struct qcow2 *q, struct qcow2_snapshot *snaps, uint32_t n)
{
	uint64_t off, size;
	int r = qcow2_write_snapshot_table(q, snaps, n, &off, &size);
	if (r == 0)
		r = qcow2_flush_metadata(q);
	uint8_t hdr[12];
	qcow2_put32(hdr, n);
	qcow2_put64(hdr + 4, off);
	if (r == 0)
		r = qcow2_write_header_field(q, 60, hdr, sizeof(hdr));
	if (r == 0)
		r = bfile_sync(&q->file);
	if (r < 0)
		return r;
	uint64_t old = q->snapshots_offset, oldcl = align_up(q->snapshots_size, q->cluster_size) >>
						   q->cluster_bits;
	for (uint64_t i = 0; old && i < oldcl && r == 0; i++)
		r = qcow2_free_later(q, old + (i << q->cluster_bits));
	free(q->snaps);
	q->snaps = snaps;
	q->nb_snapshots = n;
	q->snapshots_offset = off;
	q->snapshots_size = size;
	return r;
}

static void next_id(struct qcow2 *q, char *buf, size_t len)
{
	unsigned long max = 0;
	for (uint32_t i = 0; i < q->nb_snapshots; i++) {
		unsigned long v = strtoul(q->snaps[i].id, NULL, 10);
		if (v > max)
			max = v;
	}
	snprintf(buf, len, "%lu", max + 1);
}

static int snap_create(struct qcow2 *q, const char *name)
{
	if (find(q, name) >= 0)
		return log_error("%s: snapshot '%s' already exists", q->bd.filename, name), -EEXIST;
	if (strlen(name) > 1024 || q->nb_snapshots >= QCOW2_MAX_SNAPSHOTS)
		return -EINVAL;
	int r = qcow2_tree_refs(q, q->l1, q->l1_size, 0);
	if (r == 0)
		r = qcow2_tree_refs(q, q->l1, q->l1_size, 1);
	if (r == 0)
		r = qcow2_fix_copied(q); /* everything is shared now */
	uint64_t n = align_up((uint64_t)q->l1_size * 8, q->cluster_size) >> q->cluster_bits;
	int64_t l1off = r < 0 ? r : (q->l1_size ? qcow2_alloc_clusters(q, n) : 0);
	if (l1off < 0)
		return (int)l1off;
	uint64_t *be = calloc(q->l1_size ? q->l1_size : 1, 8);
	if (!be)
		return -ENOMEM;
	for (uint32_t i = 0; i < q->l1_size; i++)
		be[i] = htobe64(q->l1[i]);
	r = bfile_pwrite(&q->file, be, (uint64_t)q->l1_size * 8, (uint64_t)l1off);
	free(be);
	struct qcow2_snapshot *snaps = calloc(q->nb_snapshots + 1, sizeof(*snaps));
	char id[24];
	next_id(q, id, sizeof(id));
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	if (!snaps || r < 0) {
		free(snaps);
		return r < 0 ? r : -ENOMEM;
	}
	if (q->nb_snapshots)
		memcpy(snaps, q->snaps, q->nb_snapshots * sizeof(*snaps));
	snaps[q->nb_snapshots] = (struct qcow2_snapshot){
		.l1_offset = (uint64_t)l1off, .l1_size = q->l1_size, .id = strdup(id),
		.name = strdup(name), .date_sec = (uint32_t)now.tv_sec,
		.date_nsec = (uint32_t)now.tv_nsec, .disk_size = q->bd.size,
		.extra_size = 24, .icount = UINT64_MAX };
	return install_table(q, snaps, q->nb_snapshots + 1);
}

static int snap_apply(struct qcow2 *q, int idx)
{
	struct qcow2_snapshot *sn = &q->snaps[idx];
	uint64_t *sl1, *old = NULL;
	int r = qcow2_read_l1(q, sn->l1_offset, sn->l1_size, &sl1);
	if (r < 0)
		return r;
	r = qcow2_tree_refs(q, sl1, sn->l1_size, 0);
	if (r == 0)
		r = qcow2_tree_refs(q, sl1, sn->l1_size, 1);
	if (r == 0)
		r = qcow2_grow_l1(q, sn->l1_size);
	if (r == 0 && !(old = malloc((size_t)q->l1_size * 8 + 8)))
		r = -ENOMEM;
	uint32_t old_size = q->l1_size;
	if (r == 0) {
		memcpy(old, q->l1, (size_t)q->l1_size * 8);
		memset(q->l1, 0, (size_t)q->l1_size * 8);
		memcpy(q->l1, sl1, (size_t)sn->l1_size * 8);
		q->l1_dirty = true;
		r = qcow2_flush_metadata(q);
	}
	uint8_t be[8];
	qcow2_put64(be, sn->disk_size);
	if (r == 0)
		r = qcow2_write_header_field(q, 24, be, 8);
	if (r == 0 && (r = bfile_sync(&q->file)) == 0)
		q->bd.size = sn->disk_size;
	if (r == 0)
		r = qcow2_tree_refs(q, old, old_size, -1);
	if (r == 0)
		r = qcow2_flush_metadata(q);
	if (r == 0)
		r = qcow2_fix_copied(q);
	free(sl1);
	free(old);
	return r;
}

static int snap_delete(struct qcow2 *q, int idx)
{
	struct qcow2_snapshot victim = q->snaps[idx];
	uint64_t *sl1;
	int r = qcow2_read_l1(q, victim.l1_offset, victim.l1_size, &sl1);
	if (r < 0)
		return r;
	struct qcow2_snapshot *snaps = calloc(q->nb_snapshots, sizeof(*snaps));
	if (!snaps) {
		free(sl1);
		return -ENOMEM;
	}
	uint32_t n = 0;
	for (uint32_t i = 0; i < q->nb_snapshots; i++)
		if ((int)i != idx)
			snaps[n++] = q->snaps[i];
	r = install_table(q, snaps, n);
	if (r == 0)
		r = qcow2_tree_refs(q, sl1, victim.l1_size, -1);
	uint64_t ncl = align_up((uint64_t)victim.l1_size * 8, q->cluster_size) >> q->cluster_bits;
	for (uint64_t i = 0; r == 0 && victim.l1_size && i < ncl; i++)
		r = qcow2_free_later(q, victim.l1_offset + (i << q->cluster_bits));
	if (r == 0)
		r = qcow2_flush_metadata(q);
	if (r == 0)
		r = qcow2_fix_copied(q);
	free(victim.id);
	free(victim.name);
	free(sl1);
	return r;
}

int qcow2_snapshot(struct block_dev *bd, enum block_snap_op op, const char *name)
{
	struct qcow2 *q = (struct qcow2 *)bd;
	if (bd->read_only)
		return -EROFS;
	pthread_mutex_lock(&q->lock);
	qcow2_quiesce(q);
	int r = qcow2_flush_locked(q);
	int idx = op == BLOCK_SNAP_CREATE ? 0 : find(q, name);
	if (r == 0 && idx < 0) {
		log_error("%s: no snapshot named '%s'", bd->filename, name);
		r = -ENOENT;
	}
	if (r == 0) {
		if (op == BLOCK_SNAP_CREATE)
			r = snap_create(q, name);
		else if (op == BLOCK_SNAP_APPLY)
			r = snap_apply(q, idx);
		else
			r = snap_delete(q, idx);
	}
	if (r == 0)
		r = qcow2_flush_locked(q);
	pthread_mutex_unlock(&q->lock);
	return r;
}
