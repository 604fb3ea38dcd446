/*
 * Compressed qcow2 clusters: decompression (zlib raw deflate or zstd, as the
 * header's compression type says) for reads, and compression plus byte-level
 * packing of compressed clusters into host clusters for convert -c.
 *
 * The compressed length comes from an untrusted L2 entry; it is bounded by
 * the entry format (at most two clusters) and the output must fill exactly
 * one cluster, or the read fails with EIO.
 */
#include <errno.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "base/log.h"
#include "base/util.h"
#include "block/qcow2.h"

static int inflate_zlib(const uint8_t *in, uint64_t in_len, uint8_t *out, uint64_t out_len)
{
	z_stream s = { 0 };
	if (inflateInit2(&s, -12) != Z_OK)
		return -ENOMEM;
	s.next_in = (uint8_t *)in;
	s.avail_in = (uInt)in_len;
	s.next_out = out;
	s.avail_out = (uInt)out_len;
	int zr = inflate(&s, Z_FINISH);
	inflateEnd(&s);
	/* Trailing sector padding makes Z_BUF_ERROR with a full output normal. */
	if ((zr != Z_STREAM_END && zr != Z_BUF_ERROR) || s.avail_out != 0)
		return -EIO;
	return 0;
}

static int inflate_zstd(const uint8_t *in, uint64_t in_len, uint8_t *out, uint64_t out_len)
{
	ZSTD_DCtx *d = ZSTD_createDCtx();
	if (!d)
		return -ENOMEM;
	ZSTD_inBuffer ib = { in, in_len, 0 };
	ZSTD_outBuffer ob = { out, out_len, 0 };
	int r = 0;
	while (ob.pos < ob.size) {
		size_t zr = ZSTD_decompressStream(d, &ob, &ib);
		if (ZSTD_isError(zr) || (zr == 0 && ob.pos < ob.size) ||
		    (ib.pos == ib.size && ob.pos < ob.size)) {
			r = -EIO;
			break;
		}
		if (zr == 0)
			break;
	}
	ZSTD_freeDCtx(d);
	return r;
}

int qcow2_decompress(struct qcow2 *q, uint64_t entry, uint8_t *out)
{
	unsigned shift = 62 - (q->cluster_bits - 8);
	uint64_t coff = entry & ((UINT64_C(1) << shift) - 1);
	uint64_t nsect = ((entry >> shift) & ((UINT64_C(1) << (q->cluster_bits - 8)) - 1)) + 1;
	uint64_t clen = nsect * 512 - (coff & 511);
	if (coff < q->cluster_size || coff >= q->file.size)
		return qcow2_mark_corrupt(q, "compressed cluster at 0x%llx is outside the file",
					  (unsigned long long)coff);
	int r = bfile_pread(&q->file, q->cbuf, clen, coff);
	if (r < 0)
		return r;
	if (q->compression_type == QCOW2_COMPRESSION_ZSTD)
		r = inflate_zstd(q->cbuf, clen, out, q->cluster_size);
	else
		r = inflate_zlib(q->cbuf, clen, out, q->cluster_size);
	if (r == -EIO)
		log_error("%s: compressed cluster at 0x%llx does not decompress", q->bd.filename,
			  (unsigned long long)coff);
	return r;
}

int64_t qcow2_compress(int type, const uint8_t *in, uint64_t in_len, uint8_t *out, uint64_t out_len)
{
	if (type == QCOW2_COMPRESSION_ZSTD) {
		size_t n = ZSTD_compress(out, out_len, in, in_len, 3);
		return ZSTD_isError(n) || n >= in_len ? 0 : (int64_t)n;
	}
	z_stream s = { 0 };
	if (deflateInit2(&s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	s.next_in = (uint8_t *)in;
	s.avail_in = (uInt)in_len;
	s.next_out = out;
	s.avail_out = (uInt)out_len;
	int zr = deflate(&s, Z_FINISH);
	uint64_t n = out_len - s.avail_out;
	deflateEnd(&s);
	return zr != Z_STREAM_END || n >= in_len ? 0 : (int64_t)n;
}

/* True when the host cluster being packed can take one more reference:
 * with narrow refcounts (refcount_bits 1 or 2) a few compressed clusters
 * (or a snapshot) already fill it, and then packing moves to a new cluster. */
static int pack_cluster_has_room(struct qcow2 *q, uint64_t len, bool *room)
{
	*room = false;
	if (!q->cpack_off || q->cpack_end - q->cpack_off < len)
		return 0;
	uint64_t rc;
	int r = qcow2_get_refcount(q, (q->cpack_off - 1) >> q->cluster_bits, &rc);
	*room = r == 0 && rc < q->refcount_max;
	return r;
}

/* Finds room for len compressed bytes: the rest of the host cluster being
 * packed (which then counts one more reference) or a new cluster. */
static int64_t pack_bytes(struct qcow2 *q, uint64_t len)
{
	bool room;
	int r = pack_cluster_has_room(q, len, &room);
	if (r < 0)
		return r;
	if (room) {
		r = qcow2_update_refcount(q, (q->cpack_off - 1) >> q->cluster_bits, 1);
		if (r < 0)
			return r;
	} else {
		int64_t a = qcow2_alloc_clusters(q, 1);
		if (a < 0)
			return a;
		q->cpack_off = (uint64_t)a;
		q->cpack_end = (uint64_t)a + q->cluster_size;
	}
	uint64_t at = q->cpack_off;
	q->cpack_off += len;
	return (int64_t)at;
}

int qcow2_write_compressed(struct block_dev *bd, const void *buf, uint64_t off)
{
	struct qcow2 *q = (struct qcow2 *)bd;
	if (bd->read_only)
		return -EROFS;
	if ((off & (q->cluster_size - 1)) || !range_within(off, q->cluster_size, bd->size))
		return -EINVAL;
	pthread_mutex_lock(&q->lock);
	int64_t clen = qcow2_compress(q->compression_type, buf, q->cluster_size, q->cbuf,
				      q->cluster_size);
	if (clen <= 0) {
		pthread_mutex_unlock(&q->lock);
		return clen < 0 ? (int)clen : block_write(bd, buf, q->cluster_size, off);
	}
	uint8_t *t;
	int r = qcow2_get_l2(q, off, true, &t);
	if (r < 0)
		goto out;
	uint64_t i = (off >> q->cluster_bits) & (q->l2_entries - 1);
	uint64_t old = qcow2_l2_get(t, i);
	int64_t at = pack_bytes(q, (uint64_t)clen);
	r = at < 0 ? (int)at : bfile_pwrite(&q->file, q->cbuf, (uint64_t)clen, (uint64_t)at);
	if (r == 0) {
		uint64_t a = (uint64_t)at;
		uint64_t nsect = ((a + (uint64_t)clen - 1) >> 9) - (a >> 9) + 1;
		unsigned shift = 62 - (q->cluster_bits - 8);
		qcow2_l2_set(t, i, QCOW2_OFLAG_COMPRESSED | ((nsect - 1) << shift) | a);
		qcow2_cache_dirty(&q->l2c, t);
		q->unsynced = true;
		if (old & (QCOW2_OFLAG_COMPRESSED | QCOW2_OFFSET_MASK))
			r = qcow2_free_entry_later(q, old);
	}
	qcow2_cache_put(&q->l2c, t);
out:
	pthread_mutex_unlock(&q->lock);
	return r;
}
