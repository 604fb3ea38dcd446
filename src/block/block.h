/*
 * The block layer's public interface: a disk image opened with an explicit
 * format ("raw" or "qcow2", never probed) becomes a struct block_dev with an
 * ops table. virtio-blk, shoji-img and the tests all talk to images only
 * through the block_* functions declared here.
 *
 * Every function returns 0 (or a non-negative count) on success and -errno
 * on failure. Offsets and lengths come from guests and from hostile image
 * files: the block_* wrappers check them against the device size, and each
 * backend checks them again itself, so no caller can reach a backend with a
 * range outside the disk.
 *
 * A block_dev is safe to use from several threads: backends serialise their
 * metadata internally.
 */
#ifndef SHOJI_BLOCK_BLOCK_H
#define SHOJI_BLOCK_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/uio.h>

struct block_dev;

/* What a range of the disk is backed by (block_status, for map/convert). */
enum block_state {
	BLOCK_DATA,        /* allocated in this image's file */
	BLOCK_ZERO,        /* reads as zeros, decided by this image */
	BLOCK_UNALLOCATED, /* falls through to the backing file (or zeros) */
	BLOCK_COMPRESSED,  /* allocated, stored compressed */
};

struct block_status {
	enum block_state state;
	uint64_t len;      /* bytes from the query offset with this state */
	uint64_t host_off; /* file offset for BLOCK_DATA, else 0 */
};

/* Where a range of the disk lies as is in a host file (for block/aio.c). */
struct block_extent {
	int fd;
	uint64_t host_off;
	uint32_t align; /* O_DIRECT alignment of offsets, lengths, buffers; 1 if buffered */
};

struct block_snapshot_info {
	char id[32];
	char name[256];
	uint64_t vm_state_size;
	uint32_t date_sec, date_nsec;
	uint64_t vm_clock_nsec;
	uint64_t disk_size;
	uint64_t icount; /* UINT64_MAX when absent */
};

struct block_info {
	uint64_t cluster_size;
	unsigned refcount_bits;
	unsigned version;           /* qcow2 2 or 3 */
	const char *compression;    /* "zlib" or "zstd" */
	bool corrupt, dirty, lazy_refcounts;
	const char *backing_file;   /* as recorded; valid while open */
	const char *backing_format;
	unsigned nb_snapshots;
	struct block_snapshot_info *snapshots; /* malloc'd, caller frees */
};

/* Result of a consistency check, in qemu-img check's terms. */
struct block_check {
	uint64_t corruptions, leaks, check_errors;
	uint64_t corruptions_fixed, leaks_fixed;
	uint64_t allocated_clusters, total_clusters, fragmented_clusters, compressed_clusters;
	uint64_t image_end_offset;
};

#define BLOCK_REPAIR_LEAKS 1
#define BLOCK_REPAIR_ALL 2

enum block_snap_op { BLOCK_SNAP_CREATE, BLOCK_SNAP_APPLY, BLOCK_SNAP_DELETE };

struct block_ops {
	const char *name;
	int (*read)(struct block_dev *bd, void *buf, uint64_t len, uint64_t off);
	int (*write)(struct block_dev *bd, const void *buf, uint64_t len, uint64_t off);
	/* Optional vectored variants; block.c falls back to read/write. */
	int (*readv)(struct block_dev *bd, const struct iovec *iov, int iovcnt, uint64_t off);
	int (*writev)(struct block_dev *bd, const struct iovec *iov, int iovcnt, uint64_t off);
	int (*flush)(struct block_dev *bd);
	/* Afterwards the range reads as zeros; whole clusters are released. */
	int (*discard)(struct block_dev *bd, uint64_t off, uint64_t len);
	int (*write_zeroes)(struct block_dev *bd, uint64_t off, uint64_t len);
	int (*truncate)(struct block_dev *bd, uint64_t size);
	int (*block_status)(struct block_dev *bd, uint64_t off, uint64_t len,
			    struct block_status *st);
	void (*close)(struct block_dev *bd);

	/* Optional, format-specific (NULL when the format has no such thing). */
	int (*write_compressed)(struct block_dev *bd, const void *buf, uint64_t off);
	int (*info)(struct block_dev *bd, struct block_info *info);
	int (*check)(struct block_dev *bd, struct block_check *res, int repair);
	int (*snapshot)(struct block_dev *bd, enum block_snap_op op, const char *name);
	int (*set_backing)(struct block_dev *bd, const char *file, const char *format);
	/* Drops all data so every range falls through to the backing file. */
	int (*make_empty)(struct block_dev *bd);
	/* Where [off, off+len) lies untranslated in one host file (raw). */
	int (*map_direct)(struct block_dev *bd, uint64_t off, uint64_t len,
			  struct block_extent *ext);
};

struct block_dev {
	const struct block_ops *ops;
	uint64_t size;         /* virtual disk size in bytes */
	bool read_only;
	const char *format;    /* "raw" or "qcow2" */
	char *filename;
	struct block_dev *backing; /* NULL when none (or opened without) */
};

/* Cache modes of qemu-img's -t: "writeback" uses the page cache, "none"
 * opens with O_DIRECT. */
enum block_cache { BLOCK_CACHE_WRITEBACK, BLOCK_CACHE_NONE };

/*
 * Backing files named inside an image are untrusted input: a hostile image
 * could name /etc/shadow as its raw backing file and let a guest read it.
 * So a backing file must be a regular file, and when backing_dirs is set
 * its real path (symbolic links resolved) must lie under one of those
 * directories. Callers that run guests (the VMM, the daemon) always set
 * it; shoji-img, run by a user on images of their choice with their own
 * rights, leaves it NULL as qemu-img does.
 */
struct block_open_opts {
	bool read_only;
	enum block_cache cache;
	bool no_backing;        /* do not open the backing chain (info, rebase -u) */
	bool repair;            /* allow writing to images marked dirty or corrupt */
	bool force_share;       /* read-only look without taking or checking locks (-U) */
	uint64_t l2_cache_size; /* bytes of L2 tables cached; 0 = default 1 MiB */
	/* NULL-terminated list of directories backing files must lie in, or
	 * NULL for no restriction (see above). */
	const char *const *backing_dirs;
	bool no_lock;           /* internal: block_create holds the lock already */
	/* internal: a backing file must turn out to be this very file (its
	 * device and inode, checked when the chain was walked) */
	const struct stat *expect;
	unsigned depth;         /* internal: position in a backing chain */
	const void *chain;      /* internal: files already in the chain (loops) */
};

#define BLOCK_MAX_CHAIN_DEPTH 64

/* Opens path with the named format, locking each file of its chain (see
 * block/lock.h: -EBUSY when another VM or program has it). On error logs
 * one line and returns -errno; *out is untouched. */
int block_open(struct block_dev **out, const char *path, const char *format,
	       const struct block_open_opts *opts);
void block_close(struct block_dev *bd);

/* True when format names a backend this build knows. */
bool block_format_known(const char *format);

int block_read(struct block_dev *bd, void *buf, uint64_t len, uint64_t off);
int block_write(struct block_dev *bd, const void *buf, uint64_t len, uint64_t off);
int block_readv(struct block_dev *bd, const struct iovec *iov, int iovcnt, uint64_t off);
int block_writev(struct block_dev *bd, const struct iovec *iov, int iovcnt, uint64_t off);
int block_flush(struct block_dev *bd);
int block_discard(struct block_dev *bd, uint64_t off, uint64_t len);
int block_write_zeroes(struct block_dev *bd, uint64_t off, uint64_t len);
int block_truncate(struct block_dev *bd, uint64_t size);
int block_get_status(struct block_dev *bd, uint64_t off, uint64_t len, struct block_status *st);
uint64_t block_get_size(const struct block_dev *bd);

/* Sum of iovec lengths, or -EINVAL when it overflows or iovcnt is bad. */
int64_t block_iov_len(const struct iovec *iov, int iovcnt);

/* Reads [off, off+len) of bd where bytes beyond bd's size read as zero;
 * used for backing files shorter than their overlay. */
int block_read_padded(struct block_dev *bd, void *buf, uint64_t len, uint64_t off);

/* Creation options shared by the formats (shoji-img create, convert). */
struct block_create_opts {
	uint64_t size;
	uint32_t cluster_size;     /* qcow2: 0 = 64 KiB */
	unsigned refcount_bits;    /* qcow2: 0 = 16 */
	const char *backing_file;  /* qcow2: as recorded in the header */
	const char *backing_format;
	int compression_type;      /* qcow2: 0 zlib, 1 zstd */
};

/* The path a backing file name recorded in overlay refers to (relative
 * names are relative to the overlay's directory). Caller frees. */
char *block_backing_path(const char *overlay, const char *backing);

/* Format-specific operations; -ENOTSUP when the format lacks them. */
int block_write_compressed(struct block_dev *bd, const void *buf, uint64_t off);
int block_info(struct block_dev *bd, struct block_info *info);
int block_check(struct block_dev *bd, struct block_check *res, int repair);
int block_snapshot(struct block_dev *bd, enum block_snap_op op, const char *name);
int block_set_backing(struct block_dev *bd, const char *file, const char *format);
int block_make_empty(struct block_dev *bd);

/* 0 and *ext when [off, off+len) lies as is in one host file, so a caller
 * may move its bytes itself (io_uring); -ENOTSUP when the format stands in
 * between (qcow2), -EINVAL when the range is outside the disk. */
int block_map_direct(struct block_dev *bd, uint64_t off, uint64_t len, struct block_extent *ext);

/* Creates (or truncates and rewrites) path, holding the write lock on it
 * throughout: an image in use by a VM or program is refused, never
 * truncated. */
int block_create(const char *path, const char *format, const struct block_create_opts *opts);

/* Copies src's whole disk into dst (at least as large) and flushes dst:
 * what reads as zeros is not written, so dst stays sparse; compress writes
 * full clusters compressed (qcow2 only). -errno on failure, logs nothing. */
int block_copy(struct block_dev *src, struct block_dev *dst, bool compress);
/* True when the n bytes at buf are all zero. */
bool block_buf_is_zero(const void *buf, size_t n);

/*
 * 0 when the real path of `path` lies under one of dirs (NULL-terminated),
 * else -EACCES; -errno when it cannot be resolved. Logs nothing.
 */
int block_path_within(const char *path, const char *const *dirs);

#endif
