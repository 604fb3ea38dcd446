/*
 * The writer of the kill -9 test (crashtest.py): random sector-aligned
 * writes and zero writes through the qcow2 driver, with a flush every few
 * requests, until it is killed. Before each request it appends
 * "W|Z id offset length" to the log, and after each completed flush
 * "F id" (id of the last request the flush covers), so the checker knows
 * which data must have survived.
 *
 * Every 512-byte sector written by request id holds: id (8 bytes LE), the
 * sector's index (8 bytes LE), then the byte (id & 0xff) repeated.
 *
 * Half of the seeds open the image with O_DIRECT (cache=none) and then make
 * half of the requests 4 KiB aligned, so that fresh clusters take the
 * unlocked path into space grown ahead of allocation (qcow2-io.c).
 *
 * usage: crashwriter IMAGE LOG SEED FIRST_ID
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "block/block.h"

static uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * UINT64_C(2685821657736338717);
}

static void fill(uint8_t *buf, uint64_t id, uint64_t off, uint64_t len)
{
	for (uint64_t s = 0; s < len / 512; s++) {
		uint8_t *p = buf + s * 512;
		uint64_t sector = off / 512 + s;
		memset(p, (int)(id & 0xff), 512);
		memcpy(p, &id, 8);
		memcpy(p + 8, &sector, 8);
	}
}

int main(int argc, char **argv)
{
	if (argc != 5)
		return 2;
	log_init("crashwriter", LOG_LEVEL_WARN);
	rng = strtoull(argv[3], NULL, 0) | 1;
	uint64_t id = strtoull(argv[4], NULL, 0);
	int logfd = open(argv[2], O_WRONLY | O_APPEND | O_CREAT, 0644);
	struct block_dev *bd;
	bool direct = rnd() % 2;
	struct block_open_opts o = { .l2_cache_size = 64 * 1024,
				     .cache = direct ? BLOCK_CACHE_NONE : BLOCK_CACHE_WRITEBACK };
	if (logfd < 0)
		return 1;
	if (block_open(&bd, argv[1], "qcow2", &o) < 0) {
		o.cache = BLOCK_CACHE_WRITEBACK; /* a file system without O_DIRECT */
		direct = false;
		if (block_open(&bd, argv[1], "qcow2", &o) < 0)
			return 1;
	}
	uint64_t sectors = block_get_size(bd) / 512;
	void *mem = NULL;
	if (posix_memalign(&mem, 4096, 256 * 512) != 0)
		return 1;
	uint8_t *buf = mem;
	for (;; id++) {
		uint64_t len = (1 + rnd() % (rnd() % 4 ? 16 : 256)) * 512;
		uint64_t off = (rnd() % sectors) * 512;
		if (direct && rnd() % 2) {
			off &= ~UINT64_C(4095);
			len = (len + 4095) & ~UINT64_C(4095);
		}
		if (off + len > sectors * 512)
			len = sectors * 512 - off;
		bool zero = rnd() % 8 == 0;
		/* Logged before it is issued: it may or may not survive a crash. */
		dprintf(logfd, "%c %llu %llu %llu\n", zero ? 'Z' : 'W', (unsigned long long)id,
			(unsigned long long)off, (unsigned long long)len);
		int r;
		if (zero) {
			r = rnd() % 2 ? block_write_zeroes(bd, off, len) : block_discard(bd, off, len);
		} else {
			fill(buf, id, off, len);
			r = block_write(bd, buf, len, off);
		}
		if (r < 0) {
			fprintf(stderr, "request %llu failed: %d\n", (unsigned long long)id, r);
			return 1;
		}
		if (rnd() % 16 == 0) {
			if ((r = block_flush(bd)) < 0) {
				fprintf(stderr, "flush failed: %d\n", r);
				return 1;
			}
			/* Everything up to id must now survive a crash. */
			dprintf(logfd, "F %llu\n", (unsigned long long)id);
		}
	}
}
