/*
 * The qcow2 metadata caches (L2 tables and refcount blocks, kept in their
 * on-disk byte order) and the one function that writes metadata back in
 * the order crash consistency needs: refcount blocks, sync, L2 tables, sync,
 * L1, sync, and only then the queued refcount decrements.
 *
 * An entry is pinned while a caller holds a pointer into it, so eviction
 * never pulls a table from under its user. Evicting a dirty L2 table goes
 * through the full ordered flush; a dirty refcount block may be written at
 * any time, because it only ever counts too much, never too little.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "block/qcow2.h"

int qcow2_cache_init(struct qcow2_cache *c, unsigned n, uint64_t table_size)
{
	c->e = calloc(n, sizeof(*c->e));
	if (!c->e)
		return -ENOMEM;
	c->n = n;
	for (unsigned i = 0; i < n; i++) {
		c->e[i].table = bfile_alloc(table_size);
		if (!c->e[i].table)
			return -ENOMEM;
	}
	return 0;
}

void qcow2_cache_destroy(struct qcow2_cache *c)
{
	for (unsigned i = 0; c->e && i < c->n; i++)
		free(c->e[i].table);
	free(c->e);
	c->e = NULL;
	c->n = 0;
}

static struct qcow2_cache_entry *find_table(struct qcow2_cache *c, const uint8_t *table)
{
	for (unsigned i = 0; i < c->n; i++)
		if (c->e[i].table == table)
			return &c->e[i];
	return NULL;
}

static int write_entry(struct qcow2 *q, struct qcow2_cache_entry *e)
{
	if (qcow2_overlaps_metadata(q, e->offset, q->cluster_size))
		return qcow2_mark_corrupt(q, "table at 0x%llx overlaps fixed metadata",
					  (unsigned long long)e->offset);
	int r = bfile_pwrite(&q->file, e->table, q->cluster_size, e->offset);
	if (r == 0) {
		e->dirty = false;
		q->unsynced = true;
	}
	return r;
}

static int write_dirty(struct qcow2 *q, struct qcow2_cache *c, bool *wrote)
{
	for (unsigned i = 0; i < c->n; i++) {
		if (!c->e[i].dirty)
			continue;
		int r = write_entry(q, &c->e[i]);
		if (r < 0)
			return r;
		*wrote = true;
	}
	return 0;
}

static int sync_if_needed(struct qcow2 *q)
{
	if (!q->unsynced)
		return 0;
	int r = bfile_sync(&q->file);
	if (r == 0)
		q->unsynced = false;
	return r;
}

static int write_l1(struct qcow2 *q)
{
	uint64_t n = q->l1_size;
	uint64_t *be = malloc(n ? n * 8 : 8);
	if (!be)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++)
		be[i] = htobe64(q->l1[i]);
	int r = bfile_pwrite(&q->file, be, n * 8, q->l1_offset);
	free(be);
	if (r == 0) {
		q->l1_dirty = false;
		q->unsynced = true;
	}
	return r;
}

int qcow2_flush_metadata(struct qcow2 *q)
{
	bool wrote = false;
	int r = write_dirty(q, &q->rbc, &wrote);
	if (r == 0)
		r = sync_if_needed(q); /* refcounts (and data) before references */
	if (r == 0)
		r = write_dirty(q, &q->l2c, &wrote);
	if (r == 0 && q->l1_dirty) {
		r = sync_if_needed(q); /* L2 tables before the L1 entries to them */
		if (r == 0)
			r = write_l1(q);
	}
	if (r == 0)
		r = sync_if_needed(q);
	if (r == 0 && q->n_pending && q->inflight == 0) {
		/* References are gone on disk: now the counts may go down. */
		r = qcow2_apply_pending(q);
		if (r == 0)
			r = write_dirty(q, &q->rbc, &wrote);
	}
	return r;
}

static struct qcow2_cache_entry *pick_victim(struct qcow2_cache *c)
{
	struct qcow2_cache_entry *best = NULL;
	for (unsigned i = 0; i < c->n; i++) {
		struct qcow2_cache_entry *e = &c->e[i];
		if (e->pins)
			continue;
		if (e->offset == 0)
			return e;
		if (!best || e->lru < best->lru)
			best = e;
	}
	return best;
}

int qcow2_cache_get(struct qcow2 *q, struct qcow2_cache *c, uint64_t off, bool read, uint8_t **table)
{
	for (unsigned i = 0; i < c->n; i++) {
		struct qcow2_cache_entry *e = &c->e[i];
		if (e->offset == off) {
			e->pins++;
			e->lru = ++c->tick;
			if (!read)
				memset(e->table, 0, q->cluster_size);
			*table = e->table;
			return 0;
		}
	}
	struct qcow2_cache_entry *e = pick_victim(c);
	if (!e)
		return -EBUSY; /* every slot pinned: a bug, not an image problem */
	if (e->dirty) {
		int r = c == &q->l2c ? qcow2_flush_metadata(q) : write_entry(q, e);
		if (r < 0)
			return r;
	}
	e->offset = 0;
	if (read) {
		int r = bfile_pread(&q->file, e->table, q->cluster_size, off);
		if (r < 0)
			return r;
	} else {
		memset(e->table, 0, q->cluster_size);
	}
	e->offset = off;
	e->pins = 1;
	e->dirty = false;
	e->lru = ++c->tick;
	*table = e->table;
	return 0;
}

void qcow2_cache_put(struct qcow2_cache *c, uint8_t *table)
{
	struct qcow2_cache_entry *e = find_table(c, table);
	if (e && e->pins > 0)
		e->pins--;
}

void qcow2_cache_dirty(struct qcow2_cache *c, uint8_t *table)
{
	struct qcow2_cache_entry *e = find_table(c, table);
	if (e)
		e->dirty = true;
}

void qcow2_cache_drop(struct qcow2_cache *c, uint64_t off)
{
	for (unsigned i = 0; i < c->n; i++) {
		if (c->e[i].offset == off && c->e[i].pins == 0) {
			c->e[i].offset = 0;
			c->e[i].dirty = false;
		}
	}
}
