/*
 * Crafting hostile images in the block tests: the test's scratch directory
 * and byte-level reads and patches of the files in it (big-endian, as
 * qcow2 stores its fields). Each test program includes this once and runs
 * its tests with scratch_dir_setup and scratch_dir_teardown as the group's
 * setup and teardown. Failures are cmocka assertions, so include
 * <cmocka.h> first.
 */
#ifndef SHOJI_TESTS_BLOCK_IMAGE_PATCH_H
#define SHOJI_TESTS_BLOCK_IMAGE_PATCH_H

#include <endian.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char dir[256];

/* Group setup: a fresh scratch directory, removed by the teardown. */
static inline int scratch_dir_setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/shoji-test-block-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static inline int scratch_dir_teardown(void **state)
{
	(void)state;
	char cmd[sizeof(dir) + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* The path of a test image; the last four results stay valid. */
static inline const char *path_of(const char *name)
{
	static char p[4][PATH_MAX];
	static int i;
	i = (i + 1) % 4;
	snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
	return p[i];
}

static inline void poke(const char *name, uint64_t off, const void *data, size_t len)
{
	int fd = open(path_of(name), O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, data, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static inline void poke64(const char *name, uint64_t off, uint64_t v)
{
	v = htobe64(v);
	poke(name, off, &v, 8);
}

static inline void poke32(const char *name, uint64_t off, uint32_t v)
{
	v = htobe32(v);
	poke(name, off, &v, 4);
}

static inline uint64_t peek64(const char *name, uint64_t off)
{
	uint64_t v = 0;
	int fd = open(path_of(name), O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &v, 8, (off_t)off), 8);
	close(fd);
	return be64toh(v);
}

#endif
