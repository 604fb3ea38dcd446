/*
 * Hostile qcow2 images against check, repair and the read path, and a
 * guest's zeroing request against the file (issue 16):
 * each image is built here, from a shoji-created image patched byte by
 * byte, so every case says what it crafts. What each test proves:
 *   - repair of 64-bit refcounts at or above 2^63 is defined arithmetic
 *     (run under UBSan with halt_on_error, as meson.build does);
 *   - a compressed cluster that fails to decompress leaves no damaged
 *     cluster behind in the decompression cache;
 *   - check and repair of a small file whose tables point many times at
 *     one table end within seconds (meson's timeout ends them otherwise),
 *     and L1 tables that cannot fit in the file are refused up front;
 *   - where the file system cannot zero a range, zeroing writes only over
 *     the data the range holds, and a long qcow2 zeroing lets other
 *     requests in between its slices.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <endian.h>
#include <cmocka.h>

#include "base/log.h"
#include "block/block.h"
#include "image_patch.h"

#define OFFSET_MASK UINT64_C(0x00fffffffffffe00)
#define OFLAG_COPIED (UINT64_C(1) << 63)
#define OFLAG_COMPRESSED (UINT64_C(1) << 62)

static void create(const char *name, uint64_t size, uint32_t cs, unsigned refcount_bits)
{
	struct block_create_opts o = { .size = size, .cluster_size = cs,
				       .refcount_bits = refcount_bits };
	assert_int_equal(block_create(path_of(name), "qcow2", &o), 0);
}

static struct block_dev *open_ok(const char *name, bool rw)
{
	struct block_dev *bd = NULL;
	struct block_open_opts o = { .read_only = !rw };
	assert_int_equal(block_open(&bd, path_of(name), "qcow2", &o), 0);
	return bd;
}

static uint64_t file_size(const char *name)
{
	int fd = open(path_of(name), O_RDONLY);
	assert_true(fd >= 0);
	off_t end = lseek(fd, 0, SEEK_END);
	close(fd);
	return (uint64_t)end;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Header fields (QEMU's docs/interop/qcow2.txt). */
#define HDR_L1_SIZE 36
#define HDR_L1_OFFSET 40
#define HDR_RT_OFFSET 48
#define HDR_SNAPSHOTS_OFFSET 64

/* --- item 4: repair with 64-bit refcounts at and above 2^63 --- */

static void test_repair_huge_refcounts(void **unused)
{
	(void)unused;
	create("huge.qcow2", 1 << 20, 65536, 64);
	uint64_t rb = peek64("huge.qcow2", peek64("huge.qcow2", HDR_RT_OFFSET));
	assert_true(rb != 0);
	/* The header cluster (referenced once) claims 2^63 + 1 references and
	 * cluster 100 (beyond the end of the file) 2^63. As int64_t these counts
	 * are INT64_MIN + 1 and INT64_MIN, and 1 - (INT64_MIN + 1) and
	 * 0 - INT64_MIN overflow: a repair that subtracts signed counts is
	 * undefined here. */
	poke64("huge.qcow2", rb + 0 * 8, (UINT64_C(1) << 63) + 1);
	poke64("huge.qcow2", rb + 100 * 8, UINT64_C(1) << 63);

	struct block_dev *bd = open_ok("huge.qcow2", true);
	struct block_check res = { 0 };
	assert_int_equal(block_check(bd, &res, BLOCK_REPAIR_ALL), 0);
	assert_int_equal(res.leaks_fixed, 2);
	assert_int_equal(res.corruptions, 0);
	block_close(bd);

	assert_int_equal(peek64("huge.qcow2", rb + 0 * 8), 1);
	assert_int_equal(peek64("huge.qcow2", rb + 100 * 8), 0);
	bd = open_ok("huge.qcow2", false);
	memset(&res, 0, sizeof(res));
	assert_int_equal(block_check(bd, &res, 0), 0);
	assert_int_equal(res.leaks + res.corruptions, 0);
	block_close(bd);
}

/* --- item 10: a failed decompression leaves nothing stale cached --- */

/* A raw deflate stream that writes `good` bytes of 0xAA to its output and
 * then fails: a stored block, then a block of the reserved type 3. */
static size_t failing_deflate_stream(uint8_t *out, uint16_t good)
{
	size_t n = 0;
	out[n++] = 0x00;                  /* BFINAL=0, BTYPE=00 (stored) */
	out[n++] = (uint8_t)good;         /* LEN, little endian */
	out[n++] = (uint8_t)(good >> 8);
	out[n++] = (uint8_t)~good;        /* NLEN */
	out[n++] = (uint8_t)(~good >> 8);
	memset(out + n, 0xAA, good);
	n += good;
	out[n++] = 0x07;                  /* BFINAL=1, BTYPE=11: invalid */
	return n;
}

static void test_bad_compressed_cluster_not_cached(void **unused)
{
	(void)unused;
	const uint32_t cs = 65536;
	create("z.qcow2", 1 << 20, cs, 0);
	uint8_t *a = malloc(cs), *b = malloc(cs);
	assert_non_null(a);
	assert_non_null(b);
	memset(a, 0x11, cs);
	struct block_dev *bd = open_ok("z.qcow2", true);
	assert_int_equal(block_write_compressed(bd, a, 0), 0);
	block_close(bd);

	/* Cluster 1 becomes a compressed cluster at the end of the file whose
	 * stream inflates 1000 bytes and then turns out to be corrupt. */
	uint8_t stream[1100];
	size_t len = failing_deflate_stream(stream, 1000);
	uint64_t at = (file_size("z.qcow2") + 511) & ~UINT64_C(511);
	poke("z.qcow2", at, stream, len);
	uint64_t l2 = peek64("z.qcow2", peek64("z.qcow2", HDR_L1_OFFSET)) & OFFSET_MASK;
	assert_true(l2 != 0);
	uint64_t nsect = (len + 511) / 512;
	poke64("z.qcow2", l2 + 8, OFLAG_COMPRESSED | ((nsect - 1) << (62 - 8)) | at);

	bd = open_ok("z.qcow2", false);
	assert_int_equal(block_read(bd, b, cs, 0), 0); /* cluster 0 is now cached */
	assert_memory_equal(b, a, cs);
	assert_int_equal(block_read(bd, b, cs, cs), -EIO);
	assert_int_equal(block_read(bd, b, cs, cs), -EIO);
	/* The failed inflate wrote into the decompression buffer: the cached
	 * cluster 0 must not be served from it. */
	memset(b, 0, cs);
	assert_int_equal(block_read(bd, b, cs, 0), 0);
	assert_memory_equal(b, a, cs);
	block_close(bd);
	free(a);
	free(b);
}

/* --- item 11: check on tables that point many times at one table --- */

#define BIG_CLUSTER (UINT32_C(2) << 20) /* 262144 entries per table */

/* Checks name (read-only, then with repair) and returns the read-only
 * result; each must end within a few seconds. */
static struct block_check check_quickly(const char *name)
{
	struct block_check res = { 0 }, fixed = { 0 };
	struct block_dev *bd = open_ok(name, false);
	double t0 = now();
	assert_int_equal(block_check(bd, &res, 0), 0);
	double t1 = now();
	block_close(bd);
	bd = open_ok(name, true);
	assert_int_equal(block_check(bd, &fixed, BLOCK_REPAIR_ALL), 0);
	double t2 = now();
	block_close(bd);
	print_message("check %.2f s, repair %.2f s, %llu corruptions\n", t1 - t0, t2 - t1,
		      (unsigned long long)res.corruptions);
	assert_true(t1 - t0 < 5.0);
	assert_true(t2 - t1 < 5.0);
	return res;
}

static void test_check_one_l2_table_named_by_every_l1_entry(void **unused)
{
	(void)unused;
	/* 2 MiB clusters: one L1 cluster holds 262144 entries, all naming the
	 * same L2 table, whose first entry maps a data cluster. Walking the
	 * table once per entry would be 262144^2 steps. The file is 12 MiB,
	 * sparse but for the L1 table. */
	create("l1.qcow2", 2 << 20, BIG_CLUSTER, 16);
	uint64_t l1 = peek64("l1.qcow2", HDR_L1_OFFSET);
	uint64_t l2 = l1 + BIG_CLUSTER, data = l2 + BIG_CLUSTER;
	uint64_t entries = BIG_CLUSTER / 8;
	uint64_t *t = malloc(BIG_CLUSTER);
	assert_non_null(t);
	for (uint64_t i = 0; i < entries; i++)
		t[i] = htobe64(l2);
	poke("l1.qcow2", l1, t, BIG_CLUSTER);
	free(t);
	poke64("l1.qcow2", l2, data | OFLAG_COPIED);
	poke("l1.qcow2", data + BIG_CLUSTER - 1, "", 1);
	poke32("l1.qcow2", HDR_L1_SIZE, (uint32_t)entries);

	struct block_check res = check_quickly("l1.qcow2");
	/* The L2 table and the data cluster have 262144 references each, more
	 * than 16-bit refcounts hold: both are corruptions. */
	assert_true(res.corruptions >= 2);
}

static void test_check_one_refcount_block_named_by_every_rt_entry(void **unused)
{
	(void)unused;
	/* Every entry of a 2 MiB refcount table (262144 of them) names the one
	 * refcount block, which holds 2^20 counts: reading it once per entry,
	 * for counts of clusters far beyond the file, would be 2^38 steps. */
	create("rt.qcow2", 2 << 20, BIG_CLUSTER, 16);
	uint64_t rt = peek64("rt.qcow2", HDR_RT_OFFSET), rb = peek64("rt.qcow2", rt);
	assert_true(rb != 0);
	uint64_t *t = malloc(BIG_CLUSTER);
	assert_non_null(t);
	for (uint64_t i = 0; i < BIG_CLUSTER / 8; i++)
		t[i] = htobe64(rb);
	poke("rt.qcow2", rt, t, BIG_CLUSTER);
	free(t);

	struct block_check res = check_quickly("rt.qcow2");
	assert_true(res.corruptions >= 1);
}

static void test_check_refuses_overlapping_l1_tables(void **unused)
{
	(void)unused;
	/* A snapshot whose L1 table spans the file from its second cluster to
	 * the end, and an active L1 table of 8193 entries: together more bytes
	 * than the file has, so they overlap, and a check would read whatever
	 * the overlap names as often as the tables repeat it. */
	create("ov.qcow2", 1 << 20, 65536, 16);
	struct block_dev *bd = open_ok("ov.qcow2", true);
	assert_int_equal(block_snapshot(bd, BLOCK_SNAP_CREATE, "s"), 0);
	block_close(bd);
	const uint64_t size = 1 << 20;
	assert_true(file_size("ov.qcow2") <= size);
	poke("ov.qcow2", size - 1, "", 1);
	uint64_t sn = peek64("ov.qcow2", HDR_SNAPSHOTS_OFFSET);
	poke64("ov.qcow2", sn, 65536);
	poke32("ov.qcow2", sn + 8, (uint32_t)((size - 65536) / 8));
	poke32("ov.qcow2", HDR_L1_SIZE, 8193);

	bd = open_ok("ov.qcow2", false);
	struct block_check res = { 0 };
	assert_int_equal(block_check(bd, &res, 0), -EINVAL);
	block_close(bd);
}

/* --- item 12: zeroing where the file system cannot zero a range --- */

/* On tmpfs (no FALLOC_FL_ZERO_RANGE) write-zeroes falls back to writing
 * zeros. Over a 64 MiB range of a sparse file holding 8 KiB of data it
 * must write those 8 KiB, not 64 MiB: the guest picks the length, the file
 * bounds the work. */
static void test_zero_fallback_writes_only_data(void **unused)
{
	(void)unused;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "/dev/shm/shoji-test-zero-%d.raw", (int)getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		skip();
	const uint64_t size = 64 << 20, data_at = 32 << 20;
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	if (fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0, 4096) == 0) {
		close(fd);
		unlink(path);
		skip(); /* this tmpfs can zero: there is no fallback to test */
	}
	char buf[8192];
	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(pwrite(fd, buf, sizeof(buf), (off_t)data_at), (ssize_t)sizeof(buf));

	struct block_dev *bd = NULL;
	struct block_open_opts o = { 0 };
	assert_int_equal(block_open(&bd, path, "raw", &o), 0);
	unlink(path); /* both descriptors keep it; nothing is left on failure */
	assert_int_equal(block_write_zeroes(bd, 0, size), 0);
	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(block_read(bd, buf, sizeof(buf), data_at), 0);
	block_close(bd);

	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	print_message("allocated after zeroing: %lld KiB\n", (long long)st.st_blocks / 2);
	assert_true((uint64_t)st.st_blocks * 512 <= (1 << 20));
	close(fd);
}

/* A guest's zeroing of a large range of a qcow2 image runs under the
 * image's lock; other requests on the disk must get their turn between its
 * slices instead of waiting for all of it. */
struct reader {
	struct block_dev *bd;
	atomic_bool zeroing, stop;
	atomic_uint reads, reads_during;
};

static void *read_while_zeroing(void *p)
{
	struct reader *rd = p;
	char buf[512];
	while (!atomic_load(&rd->stop)) {
		bool before = atomic_load(&rd->zeroing);
		assert_int_equal(block_read(rd->bd, buf, sizeof(buf), 0), 0);
		atomic_fetch_add(&rd->reads, 1);
		if (before && atomic_load(&rd->zeroing))
			atomic_fetch_add(&rd->reads_during, 1);
	}
	return NULL;
}

static void test_qcow2_zeroing_gives_way(void **unused)
{
	(void)unused;
	/* 512-byte clusters, 16 MiB allocated: zeroing the last 15 MiB
	 * releases 30720 clusters, 30 flushes of queued frees included. */
	const uint64_t size = 16 << 20, from = 1 << 20;
	create("zw.qcow2", size, 512, 16);
	struct block_dev *bd = open_ok("zw.qcow2", true);
	char *data = malloc(1 << 20);
	assert_non_null(data);
	memset(data, 0x33, 1 << 20);
	for (uint64_t off = 0; off < size; off += 1 << 20)
		assert_int_equal(block_write(bd, data, 1 << 20, off), 0);
	free(data);

	struct reader rd = { .bd = bd };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, read_while_zeroing, &rd), 0);
	while (atomic_load(&rd.reads) < 10)
		usleep(1000);
	atomic_store(&rd.zeroing, true);
	double t0 = now();
	assert_int_equal(block_write_zeroes(bd, from, size - from), 0);
	double t1 = now();
	atomic_store(&rd.zeroing, false);
	atomic_store(&rd.stop, true);
	pthread_join(t, NULL);
	print_message("zeroing took %.3f s, %u reads finished meanwhile\n", t1 - t0,
		      atomic_load(&rd.reads_during));
	assert_true(atomic_load(&rd.reads_during) >= 10);

	char got[512];
	assert_int_equal(block_read(bd, got, sizeof(got), size - 512), 0);
	for (size_t i = 0; i < sizeof(got); i++)
		assert_int_equal(got[i], 0);
	block_close(bd);
}

int main(void)
{
	log_init("test-hostile", getenv("VERBOSE") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR + 0);
	log_set_level(getenv("VERBOSE") ? LOG_LEVEL_DEBUG : (enum log_level)-1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_repair_huge_refcounts),
		cmocka_unit_test(test_bad_compressed_cluster_not_cached),
		cmocka_unit_test(test_check_one_l2_table_named_by_every_l1_entry),
		cmocka_unit_test(test_check_one_refcount_block_named_by_every_rt_entry),
		cmocka_unit_test(test_check_refuses_overlapping_l1_tables),
		cmocka_unit_test(test_zero_fallback_writes_only_data),
		cmocka_unit_test(test_qcow2_zeroing_gives_way),
	};
	return cmocka_run_group_tests(tests, scratch_dir_setup, scratch_dir_teardown);
}
