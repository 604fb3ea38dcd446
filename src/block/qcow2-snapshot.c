/*
 * qcow2 internal snapshots: reading and validating the snapshot table, and
 * the refcount walk shared by snapshot create, apply and delete (every L2
 * table and data cluster reachable from an L1 table gains or loses one
 * reference). The snapshot verbs themselves are in qcow2-snapshot-ops.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "block/qcow2.h"

#define SNAP_HEADER 40
#define SNAP_MAX_TABLE (64u << 20)

void qcow2_free_snapshots(struct qcow2 *q)
{
	for (uint32_t i = 0; q->snaps && i < q->nb_snapshots; i++) {
		free(q->snaps[i].id);
		free(q->snaps[i].name);
	}
	free(q->snaps);
	q->snaps = NULL;
}

static int read_string(struct qcow2 *q, uint64_t off, uint32_t len, char **out)
{
	char *s = malloc((size_t)len + 1);
	if (!s)
		return -ENOMEM;
	int r = bfile_pread(&q->file, s, len, off);
	s[len] = '\0';
	if (r < 0 || strlen(s) != len) {
		free(s);
		return r < 0 ? r : (log_error("%s: snapshot name contains NUL", q->bd.filename), -EINVAL);
	}
	*out = s;
	return 0;
}

static int read_one(struct qcow2 *q, uint64_t *pos, struct qcow2_snapshot *sn)
{
	const char *fn = q->bd.filename;
	uint8_t h[SNAP_HEADER + QCOW2_MAX_SNAPSHOT_EXTRA];
	uint64_t p = *pos;
	if (!range_within(p, SNAP_HEADER, q->file.size) || p - q->snapshots_offset > SNAP_MAX_TABLE)
		return log_error("%s: snapshot table runs past the end of the file", fn), -EINVAL;
	int r = bfile_pread(&q->file, h, SNAP_HEADER, p);
	if (r < 0)
		return r;
	sn->l1_offset = qcow2_be64(h);
	sn->l1_size = qcow2_be32(h + 8);
	uint16_t id_len = qcow2_be16(h + 12), name_len = qcow2_be16(h + 14);
	sn->date_sec = qcow2_be32(h + 16);
	sn->date_nsec = qcow2_be32(h + 20);
	sn->vm_clock_nsec = qcow2_be64(h + 24);
	sn->vm_state_size = qcow2_be32(h + 32);
	sn->extra_size = qcow2_be32(h + 36);
	if (sn->extra_size > QCOW2_MAX_SNAPSHOT_EXTRA)
		return log_error("%s: snapshot extra data too large", fn), -EINVAL;
	r = bfile_pread(&q->file, h + SNAP_HEADER, sn->extra_size, p + SNAP_HEADER);
	if (r < 0)
		return r;
	sn->disk_size = q->bd.size;
	if (sn->extra_size >= 8)
		sn->vm_state_size = qcow2_be64(h + SNAP_HEADER);
	if (sn->extra_size >= 16)
		sn->disk_size = qcow2_be64(h + SNAP_HEADER + 8);
	sn->icount = sn->extra_size >= 24 ? qcow2_be64(h + SNAP_HEADER + 16) : UINT64_MAX;
	p += SNAP_HEADER + sn->extra_size;
	if ((r = read_string(q, p, id_len, &sn->id)) < 0)
		return r;
	p += id_len;
	if ((r = read_string(q, p, name_len, &sn->name)) < 0)
		return r;
	p = align_up(p + name_len, 8);
	if (sn->l1_size > QCOW2_MAX_L1_BYTES / 8 ||
	    (sn->l1_size && ((sn->l1_offset & (q->cluster_size - 1)) || sn->l1_offset < q->cluster_size ||
			     !range_within(sn->l1_offset, (uint64_t)sn->l1_size * 8, q->file.size))))
		return log_error("%s: snapshot '%s' has a bad L1 table", fn, sn->name), -EINVAL;
	*pos = p;
	return 0;
}

int qcow2_read_snapshots(struct qcow2 *q)
{
	if (q->nb_snapshots == 0)
		return 0;
	q->snaps = calloc(q->nb_snapshots, sizeof(*q->snaps));
	if (!q->snaps)
		return -ENOMEM;
	uint64_t pos = q->snapshots_offset;
	for (uint32_t i = 0; i < q->nb_snapshots; i++) {
		int r = read_one(q, &pos, &q->snaps[i]);
		if (r < 0)
			return r;
	}
	q->snapshots_size = pos - q->snapshots_offset;
	if (q->snapshots_offset < q->cluster_size)
		return log_error("%s: snapshot table overlaps the header", q->bd.filename), -EINVAL;
	return 0;
}

/* Reads a snapshot's L1 table into host byte order. */
int qcow2_read_l1(struct qcow2 *q, uint64_t off, uint32_t n, uint64_t **out)
{
	uint64_t *l1 = calloc(n ? n : 1, 8);
	if (!l1)
		return -ENOMEM;
	int r = bfile_pread(&q->file, l1, (uint64_t)n * 8, off);
	if (r < 0) {
		free(l1);
		return r;
	}
	for (uint32_t i = 0; i < n; i++)
		l1[i] = be64toh(l1[i]);
	*out = l1;
	return 0;
}

/* Before adding references: every count reachable from one tree at most
 * doubles, so refuse while anything is above half the maximum. */
static int ref_room(struct qcow2 *q, uint64_t cluster)
{
	uint64_t rc;
	int r = qcow2_get_refcount(q, cluster, &rc);
	if (r == 0 && rc > q->refcount_max / 2)
		r = (log_error("%s: refcounts of %u bits cannot count another snapshot",
			       q->bd.filename, 1u << q->refcount_order), -ERANGE);
	return r;
}

static int ref_entry(struct qcow2 *q, uint64_t e, int delta)
{
	if (!(e & QCOW2_OFLAG_COMPRESSED) && !(e & QCOW2_OFFSET_MASK))
		return 0;
	if (delta == 0 && !(e & QCOW2_OFLAG_COMPRESSED))
		return ref_room(q, (e & QCOW2_OFFSET_MASK) >> q->cluster_bits);
	if (delta < 0)
		return qcow2_free_entry_later(q, e);
	if (e & QCOW2_OFLAG_COMPRESSED) {
		uint64_t off, len;
		qcow2_compressed_range(q, e, &off, &len);
		for (uint64_t c = off >> q->cluster_bits; c <= (off + len - 1) >> q->cluster_bits; c++) {
			int r = delta ? qcow2_update_refcount(q, c, 1) : ref_room(q, c);
			if (r < 0)
				return r;
		}
		return 0;
	}
	return qcow2_update_refcount(q, (e & QCOW2_OFFSET_MASK) >> q->cluster_bits, 1);
}

/* Adds (+1, at once) or removes (-1, queued until durable) one reference to
 * every L2 table and data cluster reachable from the L1 table l1; delta 0
 * only checks that +1 cannot overflow, so a refused snapshot changes nothing. */
int qcow2_tree_refs(struct qcow2 *q, const uint64_t *l1, uint32_t l1_size, int delta)
{
	for (uint32_t i = 0; i < l1_size; i++) {
		uint64_t l2 = l1[i] & QCOW2_OFFSET_MASK;
		if (!l2)
			continue;
		if ((l2 & (q->cluster_size - 1)) || !range_within(l2, q->cluster_size, qcow2_file_end(q)))
			return qcow2_mark_corrupt(q, "L2 table 0x%llx is misplaced",
						  (unsigned long long)l2);
		uint8_t *t = NULL;
		int r = qcow2_cache_get(q, &q->l2c, l2, true, &t);
		for (uint64_t j = 0; r == 0 && j < q->l2_entries; j++)
			r = ref_entry(q, qcow2_l2_get(t, j), delta);
		if (t)
			qcow2_cache_put(&q->l2c, t);
		if (r == 0)
			r = delta < 0 ? qcow2_free_later(q, l2)
				      : delta ? qcow2_update_refcount(q, l2 >> q->cluster_bits, 1)
					      : ref_room(q, l2 >> q->cluster_bits);
		if (r < 0)
			return r;
	}
	return 0;
}

static uint64_t entry_bytes(const struct qcow2_snapshot *sn)
{
	return align_up(40 + 24 + strlen(sn->id) + strlen(sn->name), 8);
}

/* Writes the table of snaps[0..n) to new clusters; *off = 0 when n == 0. */
int qcow2_write_snapshot_table(struct qcow2 *q, const struct qcow2_snapshot *snaps, uint32_t n,
			       uint64_t *off, uint64_t *size)
{
	uint64_t total = 0;
	for (uint32_t i = 0; i < n; i++)
		total += entry_bytes(&snaps[i]);
	*off = 0;
	*size = total;
	if (n == 0)
		return 0;
	uint8_t *buf = calloc(1, total);
	if (!buf)
		return -ENOMEM;
	uint64_t p = 0;
	for (uint32_t i = 0; i < n; i++) {
		const struct qcow2_snapshot *sn = &snaps[i];
		uint8_t *e = buf + p;
		size_t il = strlen(sn->id), nl = strlen(sn->name);
		qcow2_put64(e, sn->l1_offset);
		qcow2_put32(e + 8, sn->l1_size);
		qcow2_put16(e + 12, (uint16_t)il);
		qcow2_put16(e + 14, (uint16_t)nl);
		qcow2_put32(e + 16, sn->date_sec);
		qcow2_put32(e + 20, sn->date_nsec);
		qcow2_put64(e + 24, sn->vm_clock_nsec);
		qcow2_put32(e + 32, sn->vm_state_size > UINT32_MAX ? 0 : (uint32_t)sn->vm_state_size);
		qcow2_put32(e + 36, 24);
		qcow2_put64(e + 40, sn->vm_state_size);
		qcow2_put64(e + 48, sn->disk_size);
		qcow2_put64(e + 56, sn->icount);
		memcpy(e + 64, sn->id, il);
		memcpy(e + 64 + il, sn->name, nl);
		p += entry_bytes(sn);
	}
	int64_t a = qcow2_alloc_clusters(q, align_up(total, q->cluster_size) >> q->cluster_bits);
	int r = a < 0 ? (int)a : bfile_pwrite(&q->file, buf, total, (uint64_t)a);
	free(buf);
	if (r == 0)
		*off = (uint64_t)a;
	return r;
}
