/*
 * Concurrent requests on one O_DIRECT raw image (src/block/file.c), as
 * virtio-blk's worker pool issues them: an unaligned write rewrites whole
 * blocks from a copy it read first, so nothing else may change those blocks
 * meanwhile. Here a thread keeps writing sector 1 while the test zeroes
 * (and discards) sectors 2-7 of the same 4 KiB block and reads them back:
 * a completed zeroing must never come undone. Before bfile_zero took the
 * read-modify-write lock, about one round in eight lost its zeros.
 *
 * The image lives in the build directory, not /tmp: O_DIRECT needs a file
 * system that supports it (tmpfs does not), and the test skips, saying so,
 * where opening with O_DIRECT fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "block/block.h"
#include "block/file.h"

#define ROUNDS 1500

static struct block_dev *raw;
static atomic_int stop;

static void *write_sector_1(void *arg)
{
	(void)arg;
	uint8_t b[512];
	memset(b, 'A', sizeof(b));
	while (!atomic_load(&stop))
		assert_int_equal(block_write(raw, b, sizeof(b), 512), 0);
	return NULL;
}

static void zeroing_survives(bool punch)
{
	char path[] = "file-race-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	struct block_open_opts o = { .read_only = false, .cache = BLOCK_CACHE_NONE };
	if (block_open(&raw, path, "raw", &o) < 0) {
		unlink(path);
		skip(); /* no O_DIRECT on this file system */
	}
	atomic_store(&stop, 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, write_sector_1, NULL), 0);
	uint8_t pattern[3072], back[3072];
	memset(pattern, 'B', sizeof(pattern));
	int lost = 0;
	for (int i = 0; i < ROUNDS; i++) {
		assert_int_equal(block_write(raw, pattern, sizeof(pattern), 1024), 0);
		int r = punch ? block_discard(raw, 1024, sizeof(pattern))
			      : block_write_zeroes(raw, 1024, sizeof(pattern));
		assert_int_equal(r, 0);
		assert_int_equal(block_read(raw, back, sizeof(back), 1024), 0);
		for (size_t j = 0; j < sizeof(back); j++)
			if (back[j]) {
				lost++;
				break;
			}
	}
	atomic_store(&stop, 1);
	pthread_join(t, NULL);
	block_close(raw);
	unlink(path);
	if (lost)
		fail_msg("%s undone by a neighbouring write in %d of %d rounds",
			 punch ? "discard" : "write-zeroes", lost, ROUNDS);
}

static void test_write_zeroes_survives(void **state)
{
	(void)state;
	zeroing_survives(false);
}

static void test_discard_survives(void **state)
{
	(void)state;
	zeroing_survives(true);
}

/* A raw image of 1001 sectors ends inside a 4 KiB block: writing its
 * last sector (a read-modify-write of that block) must not make the file,
 * and so the disk, longer; a write past the end grows it only as far as
 * the write goes. */
static void test_tail_block_keeps_size(void **state)
{
	(void)state;
	char path[] = "file-tail-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const off_t size = 1001 * 512;
	assert_int_equal(ftruncate(fd, size), 0);
	struct bfile f;
	if (bfile_open(&f, path, false, true, BLOCK_LOCK_WRITE, NULL) < 0) {
		close(fd);
		unlink(path);
		skip(); /* no O_DIRECT on this file system */
	}
	uint8_t sector[512];
	memset(sector, 'T', sizeof(sector));
	assert_int_equal(bfile_pwrite(&f, sector, sizeof(sector), (uint64_t)size - 512), 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, size);
	uint8_t back[512];
	assert_int_equal(bfile_pread(&f, back, sizeof(back), (uint64_t)size - 512), 0);
	assert_memory_equal(back, sector, sizeof(back));
	struct iovec v = { sector, sizeof(sector) };
	assert_int_equal(bfile_pwritev(&f, &v, 1, (uint64_t)size + 512), 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, size + 1024);
	bfile_close(&f);
	close(fd);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_zeroes_survives),
		cmocka_unit_test(test_discard_survives),
		cmocka_unit_test(test_tail_block_keeps_size),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
