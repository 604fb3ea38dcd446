/*
 * Unit tests of the block layer: bounds checks at the interface, the raw
 * backend never interpreting content, and one test per kind of hostile
 * qcow2 image (issue 6): each must be refused or fail the request with an
 * error, never crash or read outside the file. Runs in about a second.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <endian.h>
#include <cmocka.h>
#include <stdatomic.h>
#include <time.h>

#include "base/log.h"
#include "block/block.h"
#include "image_patch.h"

static void make_qcow2(const char *name, uint64_t size, uint32_t cs)
{
	struct block_create_opts o = { .size = size, .cluster_size = cs };
	assert_int_equal(block_create(path_of(name), "qcow2", &o), 0);
}

static int try_open(const char *name, bool rw)
{
	struct block_dev *bd = NULL;
	struct block_open_opts o = { .read_only = !rw };
	int r = block_open(&bd, path_of(name), "qcow2", &o);
	if (r == 0)
		block_close(bd);
	return r;
}

static struct block_dev *open_ok(const char *name, const char *fmt, bool rw)
{
	struct block_dev *bd = NULL;
	struct block_open_opts o = { .read_only = !rw };
	assert_int_equal(block_open(&bd, path_of(name), fmt, &o), 0);
	return bd;
}

/* --- the interface checks ranges itself --- */

static void test_bounds(void **unused)
{
	(void)unused;
	make_qcow2("b.qcow2", 1 << 20, 65536);
	static const char *const fmts[] = { "qcow2", "raw" };
	for (int i = 0; i < 2; i++) {
		struct block_dev *bd = open_ok("b.qcow2", fmts[i], true);
		uint64_t size = block_get_size(bd);
		char buf[16] = { 0 };
		assert_int_equal(block_read(bd, buf, 1, size), -EINVAL);
		assert_int_equal(block_read(bd, buf, 2, size - 1), -EINVAL);
		assert_int_equal(block_read(bd, buf, 2, UINT64_MAX), -EINVAL);
		assert_int_equal(block_read(bd, buf, UINT64_MAX, 1), -EINVAL);
		assert_int_equal(block_write(bd, buf, 1, size), -EINVAL);
		assert_int_equal(block_write_zeroes(bd, size - 1, 2), -EINVAL);
		assert_int_equal(block_discard(bd, UINT64_MAX, 1), -EINVAL);
		assert_int_equal(block_read(bd, buf, 1, size - 1), 0);
		assert_int_equal(block_write(bd, buf, 1, size - 1), 0);
		struct iovec iov[2] = { { buf, SIZE_MAX }, { buf, 2 } };
		assert_int_equal(block_readv(bd, iov, 2, 0), -EINVAL);
		assert_int_equal(block_readv(bd, iov, -1, 0), -EINVAL);
		block_close(bd);
	}
	struct block_dev *ro = open_ok("b.qcow2", "qcow2", false);
	char c = 0;
	assert_int_equal(block_write(ro, &c, 1, 0), -EROFS);
	block_close(ro);
}

static void test_qcow2_roundtrip(void **unused)
{
	(void)unused;
	make_qcow2("rt.qcow2", 8 << 20, 4096);
	struct block_dev *bd = open_ok("rt.qcow2", "qcow2", true);
	char w[10000], r[10000];
	for (size_t i = 0; i < sizeof(w); i++)
		w[i] = (char)(i * 7);
	assert_int_equal(block_write(bd, w, sizeof(w), 12345), 0);
	struct iovec iov[2] = { { r, 100 }, { r + 100, sizeof(r) - 100 } };
	assert_int_equal(block_readv(bd, iov, 2, 12345), 0);
	assert_memory_equal(w, r, sizeof(w));
	assert_int_equal(block_flush(bd), 0);
	block_close(bd);
	bd = open_ok("rt.qcow2", "qcow2", false);
	assert_int_equal(block_read(bd, r, sizeof(r), 12345), 0);
	assert_memory_equal(w, r, sizeof(w));
	block_close(bd);
}

/* A guest writing a qcow2 header into a raw disk gains nothing. */
static void test_raw_never_probed(void **unused)
{
	(void)unused;
	make_qcow2("inner.qcow2", 1 << 20, 65536);
	struct block_create_opts o = { .size = 1 << 20 };
	assert_int_equal(block_create(path_of("disk.raw"), "raw", &o), 0);
	char hdr[512];
	int fd = open(path_of("inner.qcow2"), O_RDONLY);
	assert_int_equal(pread(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
	close(fd);
	struct block_dev *bd = open_ok("disk.raw", "raw", true);
	assert_int_equal(block_write(bd, hdr, sizeof(hdr), 0), 0);
	block_close(bd);
	bd = open_ok("disk.raw", "raw", false);
	char back[512];
	assert_int_equal(block_read(bd, back, sizeof(back), 0), 0);
	assert_memory_equal(hdr, back, sizeof(hdr));
	assert_int_equal(block_get_size(bd), 1 << 20);
	assert_null(bd->backing);
	block_close(bd);
	struct block_dev *x;
	assert_int_equal(block_open(&x, path_of("disk.raw"), "vmdk", NULL), -EINVAL);
	assert_int_equal(block_open(&x, path_of("disk.raw"), NULL, NULL), -EINVAL);
}

/* --- hostile headers: each is refused at open --- */

struct header_case {
	const char *what;
	uint64_t off;
	unsigned width; /* 4 or 8 */
	uint64_t value;
	int rw;         /* 1: only a read-write open must fail */
};

static void test_hostile_headers(void **unused)
{
	(void)unused;
	static const struct header_case cases[] = {
		{ "bad magic", 0, 4, 0x12345678, 0 },
		{ "version 1", 4, 4, 1, 0 },
		{ "version 4", 4, 4, 4, 0 },
		{ "cluster bits 8", 20, 4, 8, 0 },
		{ "cluster bits 22", 20, 4, 22, 0 },
		{ "cluster bits huge", 20, 4, 0xffffffff, 0 },
		{ "encrypted", 32, 4, 1, 0 },
		{ "huge size", 24, 8, UINT64_C(1) << 62, 0 },
		{ "size beyond L1", 24, 8, UINT64_C(1) << 50, 0 },
		{ "L1 size huge", 36, 4, 0xffffffff, 0 },
		{ "L1 beyond file", 40, 8, UINT64_C(1) << 40, 0 },
		{ "L1 unaligned", 40, 8, 0x30008, 0 },
		{ "L1 in header", 40, 8, 0, 0 },
		{ "L1 overlaps refcount table", 40, 8, 0x10000, 0 },
		{ "refcount table beyond file", 48, 8, UINT64_C(1) << 40, 0 },
		{ "refcount table unaligned", 48, 8, 0x10200, 0 },
		{ "refcount table empty", 56, 4, 0, 0 },
		{ "refcount table huge", 56, 4, 0x10000, 0 },
		{ "snapshots absurd", 60, 4, 0x7fffffff, 0 },
		{ "snapshot table beyond file", 60, 4, 1, 0 },
		{ "unknown incompatible bit", 72, 8, UINT64_C(1) << 40, 0 },
		{ "external data file", 72, 8, 4, 0 },
		{ "extended L2", 72, 8, 16, 0 },
		{ "refcount order 7", 96, 4, 7, 0 },
		{ "header length short", 100, 4, 50, 0 },
		{ "header length huge", 100, 4, 0x100000, 0 },
		{ "backing name beyond cluster", 8, 8, 0x20000, 0 },
		{ "corrupt bit", 72, 8, 2, 1 },
		{ "dirty bit", 72, 8, 1, 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct header_case *c = &cases[i];
		make_qcow2("h.qcow2", 64 << 20, 65536);
		if (c->off == 8)
			poke32("h.qcow2", 16, 10);
		if (c->off == 60)
			poke64("h.qcow2", 64, c->value == 1 ? UINT64_C(1) << 40 : 0x50000);
		if (c->width == 8)
			poke64("h.qcow2", c->off, c->value);
		else
			poke32("h.qcow2", c->off, (uint32_t)c->value);
		print_message("hostile header: %s\n", c->what);
		assert_true(try_open("h.qcow2", true) < 0);
		if (c->rw)
			assert_int_equal(try_open("h.qcow2", false), 0);
	}
	/* truncated files */
	make_qcow2("t.qcow2", 1 << 20, 65536);
	assert_int_equal(truncate(path_of("t.qcow2"), 50), 0);
	assert_true(try_open("t.qcow2", false) < 0);
	make_qcow2("t.qcow2", 1 << 20, 65536);
	assert_int_equal(truncate(path_of("t.qcow2"), 0x30000), 0); /* L1 cut off */
	assert_true(try_open("t.qcow2", false) < 0);
	/* a header extension whose length runs past the cluster */
	make_qcow2("x.qcow2", 1 << 20, 65536);
	poke32("x.qcow2", 112, 0x12345678);
	poke32("x.qcow2", 116, 0xfffffff0);
	assert_true(try_open("x.qcow2", false) < 0);
}

/* --- hostile metadata found at run time: the request fails, no crash --- */

static void expect_read_fails(const char *name)
{
	struct block_dev *bd = open_ok(name, "qcow2", false);
	char buf[4096];
	assert_int_equal(block_read(bd, buf, sizeof(buf), 0), -EIO);
	block_close(bd);
}

static void test_hostile_metadata(void **unused)
{
	(void)unused;
	make_qcow2("m.qcow2", 1 << 20, 65536);
	struct block_dev *bd = open_ok("m.qcow2", "qcow2", true);
	char buf[4096] = { 1 };
	assert_int_equal(block_write(bd, buf, sizeof(buf), 0), 0);
	block_close(bd);
	uint64_t l1 = peek64("m.qcow2", 40), l2 = peek64("m.qcow2", l1) & 0x00fffffffffffe00;
	assert_true(l2 != 0);
	static const struct { uint64_t where; uint64_t value; } bad[] = {
		{ 0, UINT64_C(1) << 50 },     /* L1 -> L2 far beyond the file */
		{ 0, 0x10001 | (UINT64_C(1) << 63) }, /* L1 entry unaligned + reserved */
		{ 0, 0x10000 | (UINT64_C(1) << 63) }, /* L2 table on the refcount table */
		{ 1, 0x8000000000012200 },    /* L2 entry unaligned */
		{ 1, 0x8000000000000000 | (UINT64_C(1) << 50) }, /* data beyond the file */
		{ 1, 0x8000000000030000 },    /* data cluster on the L1 table */
		{ 1, 0x4000000000050000 },    /* compressed, garbage */
		{ 1, 0x40ffffffffffffff },    /* compressed, beyond the file */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int fd = open(path_of("m.qcow2"), O_RDONLY);
		char *copy = malloc(1 << 20);
		ssize_t n = pread(fd, copy, 1 << 20, 0);
		close(fd);
		poke64("m.qcow2", bad[i].where ? l2 : l1, bad[i].value);
		print_message("hostile metadata case %zu\n", i);
		expect_read_fails("m.qcow2");
		poke("m.qcow2", 0, copy, (size_t)n); /* restore */
		free(copy);
	}
	/* a refcount table entry pointing nowhere: allocation fails cleanly */
	uint64_t rt = peek64("m.qcow2", 48);
	poke64("m.qcow2", rt, 0x12345);
	bd = open_ok("m.qcow2", "qcow2", true);
	assert_int_equal(block_write(bd, buf, sizeof(buf), 512 * 1024), -EIO);
	block_close(bd);
}

/* --- backing chains: loops, depth, missing format --- */

static void make_overlay(const char *name, const char *backing, const char *fmt)
{
	struct block_create_opts o = { .size = 1 << 20, .backing_file = backing,
				       .backing_format = fmt };
	assert_int_equal(block_create(path_of(name), "qcow2", &o), 0);
}

static void test_backing_chains(void **unused)
{
	(void)unused;
	make_qcow2("loop-b.qcow2", 1 << 20, 65536);
	make_overlay("loop-a.qcow2", "loop-b.qcow2", "qcow2");
	/* point b back at a: a -> b -> a */
	struct block_dev *b = NULL;
	struct block_open_opts nb = { .no_backing = true };
	assert_int_equal(block_open(&b, path_of("loop-b.qcow2"), "qcow2", &nb), 0);
	assert_int_equal(block_set_backing(b, "loop-a.qcow2", "qcow2"), 0);
	block_close(b);
	assert_int_equal(try_open("loop-a.qcow2", false), -ELOOP);
	make_overlay("self.qcow2", "self.qcow2", "qcow2");
	assert_int_equal(try_open("self.qcow2", false), -ELOOP);

	make_qcow2("d0.qcow2", 1 << 20, 65536);
	char name[32], prev[32] = "d0.qcow2";
	for (int i = 1; i <= BLOCK_MAX_CHAIN_DEPTH + 2; i++) {
		snprintf(name, sizeof(name), "d%d.qcow2", i);
		make_overlay(name, prev, "qcow2");
		strcpy(prev, name);
		if (i == 10)
			assert_int_equal(try_open(name, false), 0);
	}
	assert_int_equal(try_open(prev, false), -ELOOP);

	make_overlay("nofmt.qcow2", "d0.qcow2", "qcow2");
	struct block_dev *n = NULL;
	assert_int_equal(block_open(&n, path_of("nofmt.qcow2"), "qcow2", &nb), 0);
	/* rewrite with no recorded format: the overlay must be refused */
	assert_int_equal(block_set_backing(n, NULL, NULL), 0);
	block_close(n);
	poke64("nofmt.qcow2", 8, 0x200);
	poke32("nofmt.qcow2", 16, 8);
	poke("nofmt.qcow2", 0x200, "d0.qcow2", 8);
	assert_int_equal(try_open("nofmt.qcow2", false), -EINVAL);
	make_overlay("missing.qcow2", "does-not-exist.qcow2", "qcow2");
	assert_true(try_open("missing.qcow2", false) < 0);
}

/* --- several threads on one device: disjoint regions stay intact --- */

#define PAR_THREADS 8
#define PAR_REGION (1u << 20)

struct par_arg {
	struct block_dev *bd;
	int id;
	uint8_t model[PAR_REGION];
	int err;
};

static void *par_worker(void *p)
{
	struct par_arg *a = p;
	uint64_t seed = (uint64_t)a->id * 7919 + 1;
	uint8_t buf[3 * 4096 + 100];
	uint64_t base = (uint64_t)a->id * PAR_REGION;
	for (int i = 0; i < 400 && !a->err; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		uint64_t off = (seed >> 33) % (PAR_REGION - sizeof(buf));
		uint64_t len = 1 + (seed >> 17) % sizeof(buf);
		int kind = (int)((seed >> 7) % 10);
		if (kind == 0) {
			a->err = block_discard(a->bd, base + off, len);
			memset(a->model + off, 0, len);
		} else if (kind == 1) {
			a->err = block_flush(a->bd);
		} else {
			memset(buf, (int)(seed >> 40) | 1, len);
			a->err = block_write(a->bd, buf, len, base + off);
			memcpy(a->model + off, buf, len);
		}
		if (!a->err && kind == 2) {
			a->err = block_read(a->bd, buf, len, base + off);
			if (!a->err && memcmp(buf, a->model + off, len))
				a->err = -EILSEQ;
		}
	}
	return NULL;
}

static void test_parallel(void **unused)
{
	(void)unused;
	make_qcow2("par.qcow2", PAR_THREADS * PAR_REGION, 4096);
	struct block_dev *bd = NULL;
	struct block_open_opts o = { .l2_cache_size = 16384 }; /* force evictions */
	assert_int_equal(block_open(&bd, path_of("par.qcow2"), "qcow2", &o), 0);
	static struct par_arg args[PAR_THREADS];
	pthread_t th[PAR_THREADS];
	for (int i = 0; i < PAR_THREADS; i++) {
		memset(&args[i], 0, sizeof(args[i]));
		args[i].bd = bd;
		args[i].id = i;
		assert_int_equal(pthread_create(&th[i], NULL, par_worker, &args[i]), 0);
	}
	for (int i = 0; i < PAR_THREADS; i++)
		pthread_join(th[i], NULL);
	block_close(bd);
	bd = open_ok("par.qcow2", "qcow2", false);
	uint8_t *buf = malloc(PAR_REGION);
	for (int i = 0; i < PAR_THREADS; i++) {
		assert_int_equal(args[i].err, 0);
		assert_int_equal(block_read(bd, buf, PAR_REGION, (uint64_t)i * PAR_REGION), 0);
		assert_memory_equal(buf, args[i].model, PAR_REGION);
	}
	struct block_check res;
	assert_int_equal(block_check(bd, &res, 0), 0);
	assert_int_equal(res.corruptions, 0);
	free(buf);
	block_close(bd);
}

/* --- flush under a steady stream of writes into owned clusters ---
 * Such writes run without the lock; a flush waits until none is in flight
 * and used to wait forever while other threads kept starting new ones. A
 * watchdog stops the writers when one flush takes too long, so a regression
 * fails instead of hanging. */

#define FW_THREADS 4
#define FW_CLUSTERS 16 /* per thread */
#define FW_CS 65536u
#define FW_LIMIT_MS 5000

static atomic_int fw_stop, fw_timed_out;
static atomic_long fw_writes;
static atomic_llong fw_flush_start_ms; /* 0: no flush running */

static long long fw_now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

struct fw_arg {
	struct block_dev *bd;
	int id, err;
};

static void *fw_writer(void *p)
{
	struct fw_arg *a = p;
	uint8_t *buf = malloc(FW_CS);
	memset(buf, a->id + 1, FW_CS);
	for (unsigned k = 0; !atomic_load(&fw_stop) && !a->err; k++) {
		uint64_t cl = (uint64_t)a->id * FW_CLUSTERS + k % FW_CLUSTERS;
		a->err = block_write(a->bd, buf, FW_CS, cl * FW_CS);
		atomic_fetch_add(&fw_writes, 1);
	}
	free(buf);
	return NULL;
}

static void *fw_watchdog(void *p)
{
	(void)p;
	while (!atomic_load(&fw_stop)) {
		long long s = atomic_load(&fw_flush_start_ms);
		if (s && fw_now_ms() - s > FW_LIMIT_MS) {
			atomic_store(&fw_timed_out, 1);
			atomic_store(&fw_stop, 1); /* lets the stuck flush finish */
		}
		usleep(20000);
	}
	return NULL;
}

static void test_flush_under_writes(void **unused)
{
	(void)unused;
	make_qcow2("fw.qcow2", (uint64_t)FW_THREADS * FW_CLUSTERS * FW_CS, FW_CS);
	struct block_dev *bd = open_ok("fw.qcow2", "qcow2", true);
	uint8_t *buf = calloc(1, FW_CS);
	for (uint64_t i = 0; i < FW_THREADS * FW_CLUSTERS; i++) /* owned clusters */
		assert_int_equal(block_write(bd, buf, FW_CS, i * FW_CS), 0);
	assert_int_equal(block_flush(bd), 0);
	atomic_store(&fw_stop, 0);
	atomic_store(&fw_timed_out, 0);
	atomic_store(&fw_flush_start_ms, 0);
	static struct fw_arg args[FW_THREADS];
	pthread_t th[FW_THREADS], wd;
	assert_int_equal(pthread_create(&wd, NULL, fw_watchdog, NULL), 0);
	for (int i = 0; i < FW_THREADS; i++) {
		args[i] = (struct fw_arg){ .bd = bd, .id = i };
		assert_int_equal(pthread_create(&th[i], NULL, fw_writer, &args[i]), 0);
	}
	while (atomic_load(&fw_writes) < 100 && !atomic_load(&fw_stop))
		usleep(1000);
	int flushes = 0, err = 0;
	long long end = fw_now_ms() + 1000;
	while (fw_now_ms() < end && !atomic_load(&fw_stop) && !err) {
		atomic_store(&fw_flush_start_ms, fw_now_ms());
		err = block_flush(bd);
		atomic_store(&fw_flush_start_ms, 0);
		flushes++;
	}
	long writes = atomic_load(&fw_writes);
	atomic_store(&fw_stop, 1);
	for (int i = 0; i < FW_THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_join(wd, NULL);
	if (atomic_load(&fw_timed_out))
		fail_msg("a flush did not return within %d ms under writes", FW_LIMIT_MS);
	assert_int_equal(err, 0);
	assert_true(flushes > 1 && writes > 100);
	for (int i = 0; i < FW_THREADS; i++) {
		assert_int_equal(args[i].err, 0);
		for (uint64_t k = 0; k < FW_CLUSTERS; k++) {
			uint64_t cl = (uint64_t)i * FW_CLUSTERS + k;
			assert_int_equal(block_read(bd, buf, FW_CS, cl * FW_CS), 0);
			for (uint32_t j = 0; j < FW_CS; j += 4096)
				assert_true(buf[j] == 0 || buf[j] == i + 1);
		}
	}
	struct block_check res;
	assert_int_equal(block_check(bd, &res, 0), 0);
	assert_int_equal(res.corruptions, 0);
	free(buf);
	block_close(bd);
}

int main(void)
{
	log_init("test-block", getenv("VERBOSE") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR + 0);
	log_set_level(getenv("VERBOSE") ? LOG_LEVEL_DEBUG : (enum log_level)-1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_qcow2_roundtrip),
		cmocka_unit_test(test_raw_never_probed),
		cmocka_unit_test(test_hostile_headers),
		cmocka_unit_test(test_hostile_metadata),
		cmocka_unit_test(test_backing_chains),
		cmocka_unit_test(test_parallel),
		cmocka_unit_test(test_flush_under_writes),
	};
	return cmocka_run_group_tests(tests, scratch_dir_setup, scratch_dir_teardown);
}
