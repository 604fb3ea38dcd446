/*
 * block_copy(): every byte of one image into another through the block
 * layer, the loop behind `shoji-img convert` and `shoji-img build` (which
 * turns the raw ext4 it made into qcow2). Ranges the source reports as
 * zero, and 64 KiB pieces that read as zeros, are not written, so the
 * output stays sparse.
 */
#include <errno.h>
#include <stdlib.h>

#include "block/block.h"

#define COPY_CHUNK (1u << 20)
#define ZERO_PIECE 65536u

bool block_buf_is_zero(const void *buf, size_t n)
{
	const uint8_t *p = buf;
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* True when [off, off+len) of bd reads as zeros without reading data. */
static bool known_zero(struct block_dev *bd, uint64_t off, uint64_t len)
{
	while (len) {
		struct block_status st;
		if (block_get_status(bd, off, len, &st) < 0)
			return false;
		if (!(st.state == BLOCK_ZERO || (st.state == BLOCK_UNALLOCATED && !bd->backing)))
			return false;
		if (st.len == 0 || st.len > len)
			return false;
		off += st.len;
		len -= st.len;
	}
	return true;
}

static int copy_chunk(struct block_dev *src, struct block_dev *dst, uint8_t *buf, uint64_t off,
		      uint64_t n, bool compress, uint64_t cluster)
{
	if (known_zero(src, off, n))
		return 0;
	int r = block_read(src, buf, n, off);
	uint64_t piece = compress ? cluster : ZERO_PIECE;
	for (uint64_t p = 0; p < n && r == 0; p += piece) {
		uint64_t m = n - p < piece ? n - p : piece;
		if (block_buf_is_zero(buf + p, m))
			continue;
		if (compress && m == cluster)
			r = block_write_compressed(dst, buf + p, off + p);
		else
			r = block_write(dst, buf + p, m, off + p);
	}
	return r;
}

int block_copy(struct block_dev *src, struct block_dev *dst, bool compress)
{
	uint64_t size = block_get_size(src);
	if (block_get_size(dst) < size)
		return -EINVAL;
	struct block_info in = { 0 };
	int r = compress ? block_info(dst, &in) : 0;
	free(in.snapshots);
	uint64_t cluster = in.cluster_size ? in.cluster_size : 65536;
	uint8_t *buf = r == 0 ? malloc(COPY_CHUNK) : NULL;
	if (r == 0 && !buf)
		r = -ENOMEM;
	for (uint64_t off = 0; r == 0 && off < size; off += COPY_CHUNK) {
		uint64_t n = size - off < COPY_CHUNK ? size - off : COPY_CHUNK;
		r = copy_chunk(src, dst, buf, off, n, compress, cluster);
	}
	free(buf);
	return r == 0 ? block_flush(dst) : r;
}
