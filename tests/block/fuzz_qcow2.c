/*
 * libFuzzer target for qcow2 header and metadata parsing: the input is an
 * image file. It is opened read-only (header, extensions, L1, refcount and
 * snapshot tables), read through the L2 tables, checked, and then opened
 * read-write and written to, so allocation and refcount updates meet
 * hostile metadata too. Any crash or sanitizer report is a bug; errors are
 * the expected outcome. The seed corpus is tests/block/corpus/.
 *
 * Built by fuzz.sh with clang -fsanitize=fuzzer,address,undefined.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "block/block.h"

#define READ_LIMIT (4u << 20)

static char path[64];

static void exercise(struct block_dev *bd, uint8_t *buf)
{
	uint64_t size = block_get_size(bd), end = size < READ_LIMIT ? size : READ_LIMIT;
	for (uint64_t off = 0; off < end; off += 65536) {
		uint64_t n = end - off < 65536 ? end - off : 65536;
		struct block_status st;
		block_get_status(bd, off, n, &st);
		block_read(bd, buf, n, off);
	}
	struct block_check res;
	block_check(bd, &res, 0);
	struct block_info info;
	if (block_info(bd, &info) == 0)
		free(info.snapshots);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static uint8_t *buf;
	if (!buf) {
		log_init("fuzz", LOG_LEVEL_ERROR);
		log_set_level((enum log_level)-1);
		/* tmpfs when there is one: fdatasync there costs nothing */
		const char *d = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
		snprintf(path, sizeof(path), "%s/shoji-fuzz-%d.qcow2", d, (int)getpid());
		buf = malloc(65536);
	}
	FILE *f = fopen(path, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, len, f);
	fclose(f);
	struct block_dev *bd;
	struct block_open_opts ro = { .read_only = true, .no_backing = true };
	if (block_open(&bd, path, "qcow2", &ro) == 0) {
		exercise(bd, buf);
		block_close(bd);
	}
	struct block_open_opts rw = { .no_backing = true, .l2_cache_size = 4096 };
	if (block_open(&bd, path, "qcow2", &rw) == 0) {
		memset(buf, 0xa5, 65536);
		uint64_t size = block_get_size(bd);
		if (size)
			block_write(bd, buf, size < 3000 ? size : 3000, size / 3);
		if (size > 70000)
			block_write_zeroes(bd, 0, 65536);
		block_flush(bd);
		block_close(bd);
	}
	unlink(path);
	return 0;
}
