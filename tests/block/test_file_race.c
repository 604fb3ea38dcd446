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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_zeroes_survives),
		cmocka_unit_test(test_discard_survives),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
