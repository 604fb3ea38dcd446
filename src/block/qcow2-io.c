/*
 * The qcow2 data path: guest offsets to host clusters through the L1 table
 * and cached L2 tables; reads (data, zero, compressed, backing), writes with
 * copy-on-write of clusters and L2 tables shared with snapshots or living in
 * the backing file, zeroing and discard, block status, resize and flush.
 *
 * Every L1/L2 entry is validated before use: reserved bits, alignment, and
 * that it points inside the file and away from the header and fixed tables.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "block/qcow2.h"

static struct qcow2 *to_q(struct block_dev *bd)
{
	return (struct qcow2 *)bd;
}

static uint64_t l1_index(const struct qcow2 *q, uint64_t vaddr)
{
	return vaddr >> (2 * q->cluster_bits - 3);
}

static uint64_t l2_index(const struct qcow2 *q, uint64_t vaddr)
{
	return (vaddr >> q->cluster_bits) & (q->l2_entries - 1);
}

static int check_table_offset(struct qcow2 *q, uint64_t off, const char *what)
{
	if ((off & (q->cluster_size - 1)) || !range_within(off, q->cluster_size, qcow2_file_end(q)) ||
	    qcow2_overlaps_metadata(q, off, q->cluster_size))
		return qcow2_mark_corrupt(q, "%s at 0x%llx is misplaced", what,
					  (unsigned long long)off);
	return 0;
}

/* Copies a shared L2 table (or creates an empty one) that the active L1
 * then owns alone. */
static int l2_take(struct qcow2 *q, uint64_t idx, uint64_t old, uint8_t **table)
{
	int64_t n = qcow2_alloc_clusters(q, 1);
	if (n < 0)
		return (int)n;
	uint8_t *t;
	int r = qcow2_cache_get(q, &q->l2c, (uint64_t)n, false, &t);
	if (r < 0)
		return r;
	if (old) {
		uint8_t *o;
		r = qcow2_cache_get(q, &q->l2c, old, true, &o);
		if (r < 0) {
			qcow2_cache_put(&q->l2c, t);
			return r;
		}
		memcpy(t, o, q->cluster_size);
		qcow2_cache_put(&q->l2c, o);
	}
	qcow2_cache_dirty(&q->l2c, t);
	q->l1[idx] = (uint64_t)n | QCOW2_OFLAG_COPIED;
	q->l1_dirty = true;
	if (old && (r = qcow2_free_later(q, old)) < 0) {
		qcow2_cache_put(&q->l2c, t);
		return r;
	}
	*table = t;
	return 0;
}

int qcow2_get_l2(struct qcow2 *q, uint64_t vaddr, bool alloc, uint8_t **table)
{
	uint64_t idx = l1_index(q, vaddr);
	*table = NULL;
	if (idx >= q->l1_size)
		return alloc ? qcow2_mark_corrupt(q, "L1 table too small") : 0;
	uint64_t e = q->l1[idx], off = e & QCOW2_OFFSET_MASK;
	if (e & QCOW2_L1_RESERVED)
		return qcow2_mark_corrupt(q, "L1 entry %llu has reserved bits set",
					  (unsigned long long)idx);
	if (off) {
		int r = check_table_offset(q, off, "L2 table");
		if (r < 0)
			return r;
	}
	if (alloc && (!off || !(e & QCOW2_OFLAG_COPIED)))
		return l2_take(q, idx, off, table);
	if (!off)
		return 0;
	return qcow2_cache_get(q, &q->l2c, off, true, table);
}

/*
 * Takes q->lock for a guest request (or to go on with one after a transfer
 * without it). It says so while it waits, so a long zeroing gives way to it
 * between slices (give_way()) instead of making it wait for all of it.
 */
static void lock_for_request(struct qcow2 *q)
{
	atomic_fetch_add(&q->lock_wanted, 1);
	pthread_mutex_lock(&q->lock);
	atomic_fetch_sub(&q->lock_wanted, 1);
	q->lock_turns++;
	if (q->giving_way)
		pthread_cond_broadcast(&q->turn);
}

/* Lets a request that waits for q->lock have it once (the lock is held,
 * nothing pinned; dropped while waiting). */
static void give_way(struct qcow2 *q)
{
	uint64_t turns = q->lock_turns;
	q->giving_way++;
	while (atomic_load(&q->lock_wanted) && q->lock_turns == turns)
		pthread_cond_wait(&q->turn, &q->lock);
	q->giving_way--;
}

/* Looks up the L2 entry of vaddr (0 when no L2 table). */
static int lookup(struct qcow2 *q, uint64_t vaddr, uint64_t *entry)
{
	uint8_t *t;
	int r = qcow2_get_l2(q, vaddr, false, &t);
	*entry = 0;
	if (r < 0 || !t)
		return r;
	*entry = qcow2_l2_get(t, l2_index(q, vaddr));
	qcow2_cache_put(&q->l2c, t);
	return 0;
}

static bool entry_is_zero(const struct qcow2 *q, uint64_t e)
{
	return q->version >= 3 && !(e & QCOW2_OFLAG_COMPRESSED) && (e & QCOW2_OFLAG_ZERO);
}

/* Checks a standard (uncompressed) data cluster entry. */
static int check_data_entry(struct qcow2 *q, uint64_t e, uint64_t *host)
{
	uint64_t off = e & QCOW2_OFFSET_MASK;
	if (e & QCOW2_L2_RESERVED || (off & (q->cluster_size - 1)))
		return qcow2_mark_corrupt(q, "L2 entry 0x%llx is malformed", (unsigned long long)e);
	if (off && (off >= qcow2_file_end(q) || qcow2_overlaps_metadata(q, off, q->cluster_size)))
		return qcow2_mark_corrupt(q, "data cluster 0x%llx is outside the file or overlaps "
					  "metadata", (unsigned long long)off);
	*host = off;
	return 0;
}

/* Reads n bytes at vaddr (inside one cluster) given its L2 entry. */
static int read_cluster(struct qcow2 *q, uint64_t e, uint64_t vaddr, uint8_t *buf, uint64_t n)
{
	uint64_t in = qcow2_offset_into_cluster(q, vaddr), host;
	if (e & QCOW2_OFLAG_COMPRESSED) {
		if (q->dbuf_entry != e) {
			/* A failed inflate leaves part of its output in dbuf: it
			 * holds no cluster until one decompresses completely. */
			q->dbuf_entry = 0;
			int r = qcow2_decompress(q, e, q->dbuf);
			if (r < 0)
				return r;
			q->dbuf_entry = e;
		}
		memcpy(buf, q->dbuf + in, n);
		return 0;
	}
	if (entry_is_zero(q, e)) {
		memset(buf, 0, n);
		return 0;
	}
	int r = check_data_entry(q, e, &host);
	if (r < 0)
		return r;
	if (host)
		return bfile_pread(&q->file, buf, n, host + in);
	if (q->bd.backing)
		return block_read_padded(q->bd.backing, buf, n, vaddr);
	memset(buf, 0, n);
	return 0;
}

/* Waits (q->lock held, dropped while waiting) until no write runs without
 * the lock. New writes wait in write_gate() meanwhile, so the count drains
 * however many requests keep coming. Returns with the lock held and the
 * count zero; it stays zero until the caller drops the lock. */
void qcow2_quiesce(struct qcow2 *q)
{
	if (!q->inflight)
		return;
	q->quiescing++;
	while (q->inflight)
		pthread_cond_wait(&q->idle, &q->lock);
	if (--q->quiescing == 0)
		pthread_cond_broadcast(&q->resume);
}

/* Called by every write before it looks at any metadata (nothing pinned,
 * nothing decided yet, since the lock may be dropped here): gives way to a
 * waiting quiesce, and applies queued refcount decrements once many have
 * piled up, so the image does not grow without bound when the guest never
 * flushes while writes are in flight. */
static int write_gate(struct qcow2 *q)
{
	while (q->quiescing)
		pthread_cond_wait(&q->resume, &q->lock);
	if (q->n_pending < QCOW2_PENDING_REAP)
		return 0;
	qcow2_quiesce(q);
	return qcow2_flush_locked(q);
}

/* True for an uncompressed, non-zero, allocated and valid data entry. */
static bool plain_data(struct qcow2 *q, uint64_t e, uint64_t *host)
{
	if (e & QCOW2_OFLAG_COMPRESSED || entry_is_zero(q, e) || !(e & QCOW2_OFFSET_MASK))
		return false;
	return check_data_entry(q, e, host) == 0;
}

/* Extends a plain data run at vaddr (n bytes so far, host at host) over
 * following clusters that are contiguous in the file, up to max bytes. */
static uint64_t extend_run(struct qcow2 *q, uint64_t vaddr, uint64_t host, uint64_t n, uint64_t max)
{
	while (n < max) {
		uint64_t e, h;
		if (lookup(q, vaddr + n, &e) < 0 || !plain_data(q, e, &h) || h != host + n)
			break;
		n += max - n < q->cluster_size ? max - n : q->cluster_size;
	}
	return n;
}

/* Reads one run: file data and backing reads happen without the lock. */
static int read_run(struct qcow2 *q, uint64_t off, uint8_t *p, uint64_t len, uint64_t *done)
{
	uint64_t in = qcow2_offset_into_cluster(q, off), n = q->cluster_size - in, e, host;
	if (n > len)
		n = len;
	int r = lookup(q, off, &e);
	if (r < 0)
		return r;
	if (plain_data(q, e, &host)) {
		n = extend_run(q, off, host + in, n, len);
		pthread_mutex_unlock(&q->lock);
		r = bfile_pread(&q->file, p, n, host + in);
		lock_for_request(q);
	} else if (e == 0 && q->bd.backing) {
		pthread_mutex_unlock(&q->lock);
		r = block_read_padded(q->bd.backing, p, n, off);
		lock_for_request(q);
	} else {
		r = read_cluster(q, e, off, p, n);
	}
	*done = n;
	return r;
}

static int qcow2_read(struct block_dev *bd, void *buf, uint64_t len, uint64_t off)
{
	struct qcow2 *q = to_q(bd);
	if (!range_within(off, len, bd->size))
		return -EINVAL;
	lock_for_request(q);
	int r = 0;
	uint8_t *p = buf;
	while (len > 0 && r == 0) {
		uint64_t n;
		r = read_run(q, off, p, len, &n);
		p += n;
		off += n;
		len -= n;
	}
	pthread_mutex_unlock(&q->lock);
	return r;
}

/* The whole current content of the cluster at vaddr, for copy-on-write. */
static int old_content(struct qcow2 *q, uint64_t e, uint64_t vaddr, uint8_t *out)
{
	return read_cluster(q, e, vaddr & ~(q->cluster_size - 1), out, q->cluster_size);
}

static bool reads_as_zero(const struct qcow2 *q, uint64_t e)
{
	return entry_is_zero(q, e) || (e == 0 && !q->bd.backing);
}

/* A data transfer that needs no metadata change runs without the lock
 * (counted in q->inflight) when O_DIRECT needs no read-modify-write for it:
 * writes into clusters this image owns, and first writes into clusters
 * freshly allocated beyond the end of the file (whose unwritten parts are
 * holes, so a racing reader sees zeros, the old content, or the new data). */
static int write_unlocked(struct qcow2 *q, const uint8_t *buf, uint64_t n, uint64_t host,
			  bool may_grow)
{
	uint64_t a = q->file.align;
	if ((!may_grow && host + n > q->file.size) || (host | n | (uintptr_t)buf) & (a - 1))
		return bfile_pwrite(&q->file, buf, n, host);
	q->inflight++;
	pthread_mutex_unlock(&q->lock);
	int r = bfile_pwrite_within(&q->file, buf, n, host);
	lock_for_request(q);
	if (r == 0 && host + n > q->file.size)
		q->file.size = host + n;
	if (--q->inflight == 0)
		pthread_cond_broadcast(&q->idle);
	return r;
}

#define PREALLOC_MIN (UINT64_C(1) << 20)
#define PREALLOC_MAX (UINT64_C(64) << 20)

/*
 * An O_DIRECT write into a hole of the file, or beyond its end, makes the
 * file system allocate blocks under the exclusive inode lock for the whole
 * write (ext4), so writers into fresh clusters ran one at a time. With
 * O_DIRECT the file is therefore grown ahead of allocation with fallocate()
 * in chunks (an eighth of the file, 1 to 64 MiB): fresh clusters lie in
 * allocated, unwritten extents inside the file and every write into them is
 * an overwrite, which runs in parallel. q->file.size stays the end of what
 * was written (beyond it the file reads as zeros, so a cluster allocated
 * there is still fresh); close trims the unused rest, and a crash leaves
 * at most a tail of zeros that no cluster refers to.
 */
static void prealloc(struct qcow2 *q, uint64_t end)
{
	uint64_t have = q->prealloc_end > q->file.size ? q->prealloc_end : q->file.size;
	if (!q->file.direct || q->no_prealloc || end <= have)
		return;
	uint64_t chunk = have / 8;
	chunk = chunk < PREALLOC_MIN ? PREALLOC_MIN : chunk > PREALLOC_MAX ? PREALLOC_MAX : chunk;
	uint64_t to = align_up(end + chunk, q->cluster_size);
	if (to > INT64_MAX) {
		q->no_prealloc = true;
		return;
	}
	int r;
	while ((r = fallocate(q->file.fd, 0, (off_t)have, (off_t)(to - have))) < 0 && errno == EINTR)
		;
	if (r < 0)
		q->no_prealloc = true; /* writes still work, only serialized */
	else
		q->prealloc_end = to;
}

/* Writes n bytes at vaddr inside one cluster, allocating if needed. */
static int write_cluster(struct qcow2 *q, uint64_t vaddr, const uint8_t *buf, uint64_t n)
{
	uint8_t *t;
	int r = write_gate(q);
	if (r == 0)
		r = qcow2_get_l2(q, vaddr, true, &t);
	if (r < 0)
		return r;
	uint64_t i = l2_index(q, vaddr), e = qcow2_l2_get(t, i), host = 0;
	uint64_t in = qcow2_offset_into_cluster(q, vaddr);
	bool owned = (e & QCOW2_OFLAG_COPIED) && !(e & QCOW2_OFLAG_COMPRESSED);
	if (owned && (r = check_data_entry(q, e, &host)) < 0)
		goto out;
	if (owned && host && !entry_is_zero(q, e)) {
		q->unsynced = true;
		qcow2_cache_put(&q->l2c, t);
		return write_unlocked(q, buf, n, host + in, false);
	}
	bool fresh = false;
	if (!host) { /* a preallocated zero cluster we own is reused as is */
		int64_t a = qcow2_alloc_clusters(q, 1);
		if (a < 0) {
			r = (int)a;
			goto out;
		}
		host = (uint64_t)a;
		fresh = host >= q->file.size;
	}
	if (fresh && reads_as_zero(q, e)) {
		/* Map it first; the rest of the cluster is a hole and reads zero. */
		qcow2_l2_set(t, i, host | QCOW2_OFLAG_COPIED);
		qcow2_cache_dirty(&q->l2c, t);
		qcow2_cache_put(&q->l2c, t);
		q->unsynced = true;
		r = owned ? 0 : qcow2_free_entry_later(q, e);
		if (r < 0)
			return r;
		prealloc(q, host + q->cluster_size);
		return write_unlocked(q, buf, n, host + in, true);
	}
	if (n == q->cluster_size) {
		r = bfile_pwrite(&q->file, buf, n, host + in);
	} else {
		r = reads_as_zero(q, e) ? (memset(q->tmp, 0, q->cluster_size), 0)
					: old_content(q, e, vaddr, q->tmp);
		if (r == 0) {
			memcpy(q->tmp + in, buf, n);
			r = bfile_pwrite(&q->file, q->tmp, q->cluster_size, host);
		}
	}
	q->unsynced = true;
	if (r == 0) {
		qcow2_l2_set(t, i, host | QCOW2_OFLAG_COPIED);
		qcow2_cache_dirty(&q->l2c, t);
		if (!owned)
			r = qcow2_free_entry_later(q, e);
	}
out:
	qcow2_cache_put(&q->l2c, t);
	return r;
}

static int qcow2_write(struct block_dev *bd, const void *buf, uint64_t len, uint64_t off)
{
	struct qcow2 *q = to_q(bd);
	if (bd->read_only)
		return -EROFS;
	if (!range_within(off, len, bd->size))
		return -EINVAL;
	lock_for_request(q);
	int r = 0;
	const uint8_t *p = buf;
	while (len > 0 && r == 0) {
		uint64_t n = q->cluster_size - qcow2_offset_into_cluster(q, off);
		if (n > len)
			n = len;
		r = write_cluster(q, off, p, n);
		p += n;
		off += n;
		len -= n;
	}
	pthread_mutex_unlock(&q->lock);
	return r;
}

/* Sets a whole cluster's entry to want (0: falls through to the backing
 * file; ZERO: reads as zeros) and releases its host cluster. */
static int set_cluster(struct qcow2 *q, uint64_t vaddr, uint64_t want)
{
	uint64_t e;
	int r = lookup(q, vaddr, &e);
	if (r < 0)
		return r;
	if (e == want || (want && entry_is_zero(q, e) && !(e & QCOW2_OFFSET_MASK)))
		return 0;
	uint8_t *t;
	r = qcow2_get_l2(q, vaddr, true, &t);
	if (r < 0)
		return r;
	uint64_t i = l2_index(q, vaddr);
	e = qcow2_l2_get(t, i);
	qcow2_l2_set(t, i, want);
	qcow2_cache_dirty(&q->l2c, t);
	qcow2_cache_put(&q->l2c, t);
	if ((e & QCOW2_OFLAG_COMPRESSED) || (e & QCOW2_OFFSET_MASK))
		return qcow2_free_entry_later(q, e);
	return 0;
}

static int zero_range(struct qcow2 *q, uint64_t off, uint64_t len)
{
	int r = 0;
	while (len > 0 && r == 0) {
		uint64_t in = qcow2_offset_into_cluster(q, off);
		uint64_t n = q->cluster_size - in, e;
		if (n > len)
			n = len;
		if ((r = write_gate(q)) < 0)
			break;
		if (n == q->cluster_size) {
			r = set_cluster(q, off, q->bd.backing ? QCOW2_OFLAG_ZERO : 0);
		} else {
			r = lookup(q, off, &e);
			if (r == 0 && !reads_as_zero(q, e))
				r = write_cluster(q, off, q->zbuf, n);
		}
		off += n;
		len -= n;
	}
	return r;
}

/*
 * A guest zeroes or discards up to 1 GiB at once (virtio-blk's limit): with
 * small clusters that is millions of entries, and flushes of the queued
 * frees, all under q->lock. It is done in slices, and between them every
 * request that waits for the lock has its turn, so reads and writes on the
 * disk wait for a slice, not for the whole zeroing.
 */
#define QCOW2_ZERO_SLICE_CLUSTERS 64

static int qcow2_write_zeroes(struct block_dev *bd, uint64_t off, uint64_t len)
{
	struct qcow2 *q = to_q(bd);
	if (bd->read_only)
		return -EROFS;
	if (!range_within(off, len, bd->size))
		return -EINVAL;
	uint64_t slice = QCOW2_ZERO_SLICE_CLUSTERS * q->cluster_size;
	lock_for_request(q);
	int r = 0;
	while (len > 0 && r == 0) {
		uint64_t n = slice - (off & (slice - 1));
		if (n > len)
			n = len;
		r = zero_range(q, off, n);
		off += n;
		len -= n;
		if (len > 0)
			give_way(q);
	}
	pthread_mutex_unlock(&q->lock);
	return r;
}

/* Empties the image (qemu-img commit does this after committing): every
 * cluster falls through to the backing file again. */
static int qcow2_make_empty(struct block_dev *bd)
{
	struct qcow2 *q = to_q(bd);
	if (bd->read_only)
		return -EROFS;
	pthread_mutex_lock(&q->lock);
	qcow2_quiesce(q);
	int r = 0;
	for (uint64_t off = 0; off < bd->size && r == 0; off += q->cluster_size)
		r = set_cluster(q, off, 0);
	if (r == 0)
		r = qcow2_flush_locked(q);
	pthread_mutex_unlock(&q->lock);
	return r;
}

static enum block_state entry_state(const struct qcow2 *q, uint64_t e)
{
	if (e & QCOW2_OFLAG_COMPRESSED)
		return BLOCK_COMPRESSED;
	if (entry_is_zero(q, e))
		return BLOCK_ZERO;
	return (e & QCOW2_OFFSET_MASK) ? BLOCK_DATA : BLOCK_UNALLOCATED;
}

static int qcow2_block_status(struct block_dev *bd, uint64_t off, uint64_t len,
			      struct block_status *st)
{
	struct qcow2 *q = to_q(bd);
	if (!range_within(off, len, bd->size) || len == 0)
		return -EINVAL;
	lock_for_request(q);
	uint64_t done = 0, e, host0 = 0;
	int r = 0;
	enum block_state s0 = BLOCK_DATA;
	while (done < len) {
		uint64_t v = off + done;
		uint64_t n = q->cluster_size - qcow2_offset_into_cluster(q, v);
		if (n > len - done)
			n = len - done;
		if ((r = lookup(q, v, &e)) < 0)
			break;
		enum block_state s = entry_state(q, e);
		uint64_t host = s == BLOCK_DATA ? (e & QCOW2_OFFSET_MASK) +
						  qcow2_offset_into_cluster(q, v) : 0;
		if (done == 0) {
			s0 = s;
			host0 = host;
		} else if (s != s0 || (s == BLOCK_DATA && host != host0 + done) ||
			   s == BLOCK_COMPRESSED) {
			break;
		}
		done += n;
	}
	pthread_mutex_unlock(&q->lock);
	*st = (struct block_status){ s0, done, host0 };
	return r;
}

int qcow2_flush_locked(struct qcow2 *q)
{
	return qcow2_flush_metadata(q);
}

static int qcow2_flush(struct block_dev *bd)
{
	struct qcow2 *q = to_q(bd);
	if (bd->read_only)
		return 0;
	lock_for_request(q);
	qcow2_quiesce(q);
	int r = qcow2_flush_locked(q);
	pthread_mutex_unlock(&q->lock);
	return r;
}

int qcow2_grow_l1(struct qcow2 *q, uint64_t min_size)
{
	if (min_size <= q->l1_size)
		return 0;
	if (min_size > QCOW2_MAX_L1_BYTES / 8)
		return -EFBIG;
	uint64_t n = align_up(min_size * 8, q->cluster_size) / 8; /* fill the clusters */
	uint64_t ncl = n * 8 / q->cluster_size;
	int r = qcow2_flush_metadata(q); /* no L1 entry may point to unwritten L2 */
	int64_t a = r < 0 ? r : qcow2_alloc_clusters(q, ncl);
	if (a < 0)
		return (int)a;
	uint64_t *nl = calloc(n, 8), *be = calloc(n, 8);
	if (!nl || !be) {
		free(nl);
		free(be);
		return -ENOMEM;
	}
	memcpy(nl, q->l1, (size_t)q->l1_size * 8);
	for (uint64_t i = 0; i < n; i++)
		be[i] = htobe64(nl[i]);
	r = qcow2_flush_metadata(q); /* the refcounts of the new table first */
	if (r == 0)
		r = bfile_pwrite(&q->file, be, n * 8, (uint64_t)a);
	if (r == 0)
		r = bfile_sync(&q->file);
	uint8_t hdr[12];
	qcow2_put32(hdr, (uint32_t)n);
	qcow2_put64(hdr + 4, (uint64_t)a);
	if (r == 0)
		r = qcow2_write_header_field(q, 36, hdr, 12);
	if (r == 0)
		r = bfile_sync(&q->file);
	free(be);
	if (r < 0) {
		free(nl);
		return r;
	}
	uint64_t old = q->l1_offset, oldcl = align_up((uint64_t)q->l1_size * 8, q->cluster_size) /
					     q->cluster_size;
	free(q->l1);
	q->l1 = nl;
	q->l1_size = (uint32_t)n;
	q->l1_offset = (uint64_t)a;
	for (uint64_t i = 0; old && i < oldcl && r == 0; i++)
		r = qcow2_free_later(q, old + i * q->cluster_size);
	return r;
}

static int qcow2_truncate(struct block_dev *bd, uint64_t size)
{
	struct qcow2 *q = to_q(bd);
	if (bd->read_only)
		return -EROFS;
	unsigned per_l1_bits = 2 * q->cluster_bits - 3;
	uint64_t need = (size >> per_l1_bits) + ((size & ((UINT64_C(1) << per_l1_bits) - 1)) != 0);
	if (size > INT64_MAX / 2 || need > QCOW2_MAX_L1_BYTES / 8)
		return log_error("%s: size too large for this cluster size", bd->filename), -EFBIG;
	pthread_mutex_lock(&q->lock);
	qcow2_quiesce(q);
	uint64_t old = bd->size;
	int r = qcow2_grow_l1(q, need);
	if (r == 0 && size < old)
		r = zero_range(q, size, old - size); /* so a later grow reads zeros */
	if (r == 0 && size > old && bd->backing && bd->backing->size > old) {
		/* The grown part must read as zeros, not show the backing file. */
		uint64_t end = bd->backing->size < size ? bd->backing->size : size;
		r = zero_range(q, old, end - old);
	}
	if (r == 0)
		r = qcow2_flush_metadata(q);
	uint8_t be[8];
	qcow2_put64(be, size);
	if (r == 0)
		r = qcow2_write_header_field(q, 24, be, 8);
	if (r == 0) {
		bd->size = size;
		r = bfile_sync(&q->file);
	}
	pthread_mutex_unlock(&q->lock);
	return r;
}

static void qcow2_close_op(struct block_dev *bd);

const struct block_ops qcow2_ops = {
	.name = "qcow2",
	.read = qcow2_read,
	.write = qcow2_write,
	.flush = qcow2_flush,
	.discard = qcow2_write_zeroes,
	.write_zeroes = qcow2_write_zeroes,
	.truncate = qcow2_truncate,
	.block_status = qcow2_block_status,
	.close = qcow2_close_op,
	.write_compressed = qcow2_write_compressed,
	.info = qcow2_info,
	.check = qcow2_check,
	.snapshot = qcow2_snapshot,
	.set_backing = qcow2_set_backing,
	.make_empty = qcow2_make_empty,
};

static void qcow2_close_op(struct block_dev *bd)
{
	qcow2_close(bd);
}
