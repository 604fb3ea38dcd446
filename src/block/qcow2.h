/*
 * Internal to the qcow2 driver: the on-disk constants of QEMU's
 * docs/interop/qcow2.txt and the in-memory state shared by the qcow2-*.c
 * files. Nothing outside src/block includes this; everyone else sees a
 * struct block_dev.
 *
 * Locking: q->lock protects all metadata, and the functions here assume it
 * is held. Only plain data transfers to clusters that are already allocated
 * drop it (qcow2-io.c), so requests run in parallel on the file. Writes in
 * flight without the lock are counted (q->inflight): queued refcount
 * decrements are applied only when none is in flight, so a cluster can
 * never be freed and reused under a write that is still landing in it, and
 * verbs that change ownership wholesale (snapshots, resize, check, flush,
 * close) first wait for the count to reach zero (qcow2_quiesce). A waiting
 * quiesce has priority: writes wait (q->quiescing) before they look up a
 * cluster, so the count drains even under a steady stream of writes.
 *
 * Crash consistency (see docs/qcow2.md): a refcount never drops below the
 * number of references the file holds on disk. New references are created
 * only in cached L2 tables and in the in-memory L1, and reach the file in
 * qcow2_flush_metadata() strictly after the refcount blocks that count them
 * (refcount blocks, fdatasync, L2 tables, fdatasync, L1, fdatasync).
 * Refcount decrements are queued (q->pending) and applied only after the
 * removal of the reference is durable. A kill -9 at any point therefore
 * leaves at most leaked clusters.
 */
#ifndef SHOJI_BLOCK_QCOW2_H
#define SHOJI_BLOCK_QCOW2_H

#include <endian.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"
#include "block/file.h"

#define QCOW2_MAGIC 0x514649fbU
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_V2_HEADER_LEN 72
#define QCOW2_V3_HEADER_LEN 104
#define QCOW2_OUR_HEADER_LEN 112 /* with compression type and padding */
#define QCOW2_MAX_L1_BYTES (32u << 20)      /* as QEMU: caps the virtual size */
#define QCOW2_MAX_RT_BYTES (8u << 20)
#define QCOW2_MAX_SNAPSHOTS 65536
#define QCOW2_MAX_BACKING_NAME 1023
#define QCOW2_MAX_SNAPSHOT_EXTRA 1024

#define QCOW2_OFLAG_COPIED (UINT64_C(1) << 63)
#define QCOW2_OFLAG_COMPRESSED (UINT64_C(1) << 62)
#define QCOW2_OFLAG_ZERO UINT64_C(1)
#define QCOW2_OFFSET_MASK UINT64_C(0x00fffffffffffe00)
#define QCOW2_L1_RESERVED UINT64_C(0x7f000000000001ff)
#define QCOW2_L2_RESERVED UINT64_C(0x3f000000000001fe)
#define QCOW2_RT_RESERVED UINT64_C(0x00000000000001ff)

#define QCOW2_INCOMPAT_DIRTY (UINT64_C(1) << 0)
#define QCOW2_INCOMPAT_CORRUPT (UINT64_C(1) << 1)
#define QCOW2_INCOMPAT_DATA_FILE (UINT64_C(1) << 2)
#define QCOW2_INCOMPAT_COMPRESSION (UINT64_C(1) << 3)
#define QCOW2_INCOMPAT_EXTL2 (UINT64_C(1) << 4)
#define QCOW2_INCOMPAT_KNOWN (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | \
			      QCOW2_INCOMPAT_COMPRESSION)
#define QCOW2_COMPAT_LAZY_REFCOUNTS (UINT64_C(1) << 0)

#define QCOW2_EXT_END 0
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acaU
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857U

#define QCOW2_COMPRESSION_ZLIB 0
#define QCOW2_COMPRESSION_ZSTD 1

/* One cached metadata table (L2 table or refcount block), as on disk. */
struct qcow2_cache_entry {
	uint64_t offset; /* 0 = empty slot */
	uint64_t lru;
	int pins;
	bool dirty;
	uint8_t *table;
};

struct qcow2_cache {
	struct qcow2_cache_entry *e;
	unsigned n;
	uint64_t tick;
};

struct qcow2_snapshot {
	uint64_t l1_offset;
	uint32_t l1_size;
	char *id;
	char *name;
	uint32_t date_sec, date_nsec;
	uint64_t vm_clock_nsec;
	uint64_t vm_state_size;
	uint64_t disk_size;
	uint32_t extra_size;   /* as found; we write 24 */
	uint64_t icount;
};

struct qcow2 {
	struct block_dev bd;
	struct bfile file;
	pthread_mutex_t lock;
	pthread_cond_t idle;     /* broadcast when inflight drops to zero */
	unsigned inflight;       /* in-place writes running without the lock */
	pthread_cond_t resume;   /* broadcast when quiescing drops to zero */
	unsigned quiescing;      /* threads waiting in qcow2_quiesce(): no new
				  * write starts while one waits */
	atomic_uint lock_wanted; /* requests waiting to take the lock */
	uint64_t lock_turns;     /* times a request took it */
	unsigned giving_way;     /* zeroings waiting for a request to have a
				  * turn (on `turn`, signalled when one does) */
	pthread_cond_t turn;
	struct block_open_opts opts;

	uint32_t version;
	uint32_t cluster_bits;
	uint64_t cluster_size;
	uint64_t l2_entries;     /* entries per L2 table */
	uint32_t refcount_order;
	uint64_t rb_entries;     /* refcounts per refcount block */
	uint64_t refcount_max;
	uint64_t incompat, compat, autoclear;
	uint32_t header_length;
	uint8_t compression_type;

	uint64_t *l1;            /* host byte order */
	uint32_t l1_size;
	uint64_t l1_offset;
	bool l1_dirty;

	uint64_t *rt;            /* refcount table, host byte order */
	uint64_t rt_entries;
	uint64_t rt_offset;
	uint32_t rt_clusters;

	struct qcow2_cache l2c;  /* L2 tables */
	struct qcow2_cache rbc;  /* refcount blocks */

	uint64_t *pending;       /* host cluster offsets awaiting a decrement */
	size_t n_pending, cap_pending;
	uint64_t free_hint;      /* lowest cluster index that may be free */
	uint64_t alloc_end;      /* end of the highest cluster ever allocated */
	bool unsynced;           /* something was written since the last sync */
	uint64_t prealloc_end;   /* real file size once grown ahead (0: not grown);
				  * q->file.size stays the end of what was written */
	bool no_prealloc;        /* fallocate() failed once: grow by writing */

	struct qcow2_snapshot *snaps;
	uint32_t nb_snapshots;
	uint64_t snapshots_offset;
	uint64_t snapshots_size; /* bytes of the snapshot table */

	char *backing_name;
	char *backing_fmt;
	uint8_t *unknown_ext;    /* header extensions we keep verbatim */
	size_t unknown_ext_len;

	uint8_t *cbuf;           /* compressed input buffer (2 clusters) */
	uint8_t *dbuf;           /* last decompressed cluster */
	uint64_t dbuf_entry;     /* L2 entry dbuf holds, 0 = none */
	uint8_t *zbuf;           /* one cluster of zeros */
	uint8_t *tmp;            /* one cluster scratch for COW */
	uint64_t cpack_off;      /* next free byte for packing compressed data */
	uint64_t cpack_end;      /* end of the host cluster being packed */
};

static inline uint64_t qcow2_be64(const uint8_t *p) { uint64_t v; __builtin_memcpy(&v, p, 8); return be64toh(v); }
static inline uint32_t qcow2_be32(const uint8_t *p) { uint32_t v; __builtin_memcpy(&v, p, 4); return be32toh(v); }
static inline uint16_t qcow2_be16(const uint8_t *p) { uint16_t v; __builtin_memcpy(&v, p, 2); return be16toh(v); }
static inline void qcow2_put64(uint8_t *p, uint64_t v) { v = htobe64(v); __builtin_memcpy(p, &v, 8); }
static inline void qcow2_put32(uint8_t *p, uint32_t v) { v = htobe32(v); __builtin_memcpy(p, &v, 4); }
static inline void qcow2_put16(uint8_t *p, uint16_t v) { v = htobe16((uint16_t)v); __builtin_memcpy(p, &v, 2); }

static inline uint64_t qcow2_l2_get(const uint8_t *t, uint64_t i) { return qcow2_be64(t + i * 8); }
static inline void qcow2_l2_set(uint8_t *t, uint64_t i, uint64_t v) { qcow2_put64(t + i * 8, v); }
static inline uint64_t qcow2_offset_into_cluster(const struct qcow2 *q, uint64_t off)
{
	return off & (q->cluster_size - 1);
}

/* Where the file will end once cached tables are written: allocated but
 * not yet written clusters lie beyond the current file size. */
static inline uint64_t qcow2_file_end(const struct qcow2 *q)
{
	return q->alloc_end > q->file.size ? q->alloc_end : q->file.size;
}

/* qcow2.c */
int qcow2_mark_corrupt(struct qcow2 *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int qcow2_write_header(struct qcow2 *q);
int qcow2_write_header_field(struct qcow2 *q, unsigned off, const void *be, unsigned len);
bool qcow2_overlaps_metadata(struct qcow2 *q, uint64_t off, uint64_t len);

/* qcow2-cache.c */
int qcow2_cache_init(struct qcow2_cache *c, unsigned n, uint64_t table_size);
void qcow2_cache_destroy(struct qcow2_cache *c);
int qcow2_cache_get(struct qcow2 *q, struct qcow2_cache *c, uint64_t off, bool read, uint8_t **table);
void qcow2_cache_put(struct qcow2_cache *c, uint8_t *table);
void qcow2_cache_dirty(struct qcow2_cache *c, uint8_t *table);
void qcow2_cache_drop(struct qcow2_cache *c, uint64_t off);
int qcow2_flush_metadata(struct qcow2 *q);

/* qcow2-refcount.c */
int qcow2_get_refcount(struct qcow2 *q, uint64_t cluster, uint64_t *rc);
int qcow2_update_refcount(struct qcow2 *q, uint64_t cluster, int64_t delta);
int qcow2_set_refcount(struct qcow2 *q, uint64_t cluster, uint64_t value);
int64_t qcow2_alloc_clusters(struct qcow2 *q, uint64_t n);
int qcow2_free_later(struct qcow2 *q, uint64_t host_off);
int qcow2_free_entry_later(struct qcow2 *q, uint64_t l2_entry);
int qcow2_apply_pending(struct qcow2 *q);
uint64_t qcow2_rb_get(const struct qcow2 *q, const uint8_t *rb, uint64_t i);
void qcow2_rb_set(const struct qcow2 *q, uint8_t *rb, uint64_t i, uint64_t v);
void qcow2_compressed_range(const struct qcow2 *q, uint64_t entry, uint64_t *off, uint64_t *len);

/* qcow2-io.c */
void qcow2_quiesce(struct qcow2 *q);
/* Queued decrements that make a write stop for a flush to apply them. */
#define QCOW2_PENDING_REAP 1024
extern const struct block_ops qcow2_ops;
int qcow2_get_l2(struct qcow2 *q, uint64_t vaddr, bool alloc, uint8_t **table);
int qcow2_grow_l1(struct qcow2 *q, uint64_t min_size);
int qcow2_flush_locked(struct qcow2 *q);

/* qcow2-compress.c */
int qcow2_decompress(struct qcow2 *q, uint64_t entry, uint8_t *out);
/* Returns compressed length (< cluster size) or 0 when it does not pay. */
int64_t qcow2_compress(int type, const uint8_t *in, uint64_t in_len, uint8_t *out, uint64_t out_len);
int qcow2_write_compressed(struct block_dev *bd, const void *buf, uint64_t off);

/* qcow2.c, qcow2-check.c, qcow2-snapshot-ops.c: the optional ops */
int qcow2_info(struct block_dev *bd, struct block_info *info);
int qcow2_set_backing(struct block_dev *bd, const char *file, const char *format);
int qcow2_check(struct block_dev *bd, struct block_check *res, int repair);
int qcow2_snapshot(struct block_dev *bd, enum block_snap_op op, const char *name);

/* qcow2-snapshot.c */
int qcow2_read_snapshots(struct qcow2 *q);
void qcow2_free_snapshots(struct qcow2 *q);
int qcow2_fix_copied(struct qcow2 *q);

#endif
