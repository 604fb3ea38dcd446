/*
 * virtio-blk, one request (virtio 1.2, section 5.2.6): parses a chain and
 * serves it on the block layer. Runs on whichever thread serves the
 * request: a worker (virtio-blk-pool.c), or the I/O thread for a request
 * alone in the ring; never under a lock of the device's, so nothing here
 * touches the device's lists or rings.
 *
 * A request is one descriptor chain: a 16-byte header (type, reserved,
 * sector) at the start of the readable part, then the data (readable for
 * writes, discard segments; writable for reads and GET_ID), and the status
 * byte as the very last writable byte. Everything in it is hostile: every
 * length, sector and segment is checked here before the block layer sees
 * it (which checks again), and every malformed request is completed with
 * an error status rather than dropped, so a broken or malicious driver
 * gets an answer and the VMM keeps running. vq_pop() has already checked
 * that every buffer lies in guest RAM.
 */
#include <stdlib.h>
#include <string.h>

#include "base/iov.h"
#include "base/log.h"
#include "base/util.h"
#include "dev/virtio-blk-internal.h"

/* One request, split into its parts. The iovec arrays point into the chain. */
struct blk_req {
	uint32_t type;
	uint64_t sector;
	struct iovec *rd;             /* readable data after the header */
	unsigned nrd;
	uint64_t rd_len;
	struct iovec *wr;             /* writable data before the status byte */
	unsigned nwr;
	uint64_t wr_len;
	uint32_t written;             /* bytes written into wr, for the used ring */
};

void blk_warn(struct virtio_blk *blk, const char *what)
{
	/* A guest must not flood the host's log: one warning per device
	 * (workers may race here; the exchange lets one of them warn). */
	if (!__atomic_exchange_n(&blk->warned, true, __ATOMIC_RELAXED))
		log_warn("virtio-blk %s: %s (further ones at debug level)", blk->bd->filename, what);
	else
		log_debug("virtio-blk %s: %s", blk->bd->filename, what);
}

/* Whether len bytes at `sector` lie inside the disk, without overflow. */
bool blk_range_ok(const struct virtio_blk *blk, uint64_t sector, uint64_t len)
{
	if (sector > UINT64_MAX / VIRTIO_BLK_SECTOR_SIZE)
		return false;
	return range_within(sector * VIRTIO_BLK_SECTOR_SIZE, len,
			    blk->capacity * VIRTIO_BLK_SECTOR_SIZE);
}

static uint8_t blk_check_io(struct virtio_blk *blk, const struct blk_req *req, uint64_t len)
{
	/* The used length (data plus status) must fit in 32 bits. */
	if (len >= UINT32_MAX) {
		blk_warn(blk, "request larger than 4 GiB");
		return VIRTIO_BLK_S_IOERR;
	}
	if (len % VIRTIO_BLK_SECTOR_SIZE) {
		blk_warn(blk, "data length is not a multiple of 512");
		return VIRTIO_BLK_S_IOERR;
	}
	if (!blk_range_ok(blk, req->sector, len)) {
		blk_warn(blk, "request beyond the end of the disk");
		return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_in(struct virtio_blk *blk, struct blk_req *req)
{
	uint8_t s = blk_check_io(blk, req, req->wr_len);
	if (s != VIRTIO_BLK_S_OK)
		return s;
	if (req->wr_len == 0)
		return VIRTIO_BLK_S_OK;
	if (block_readv(blk->bd, req->wr, (int)req->nwr, req->sector * VIRTIO_BLK_SECTOR_SIZE) < 0)
		return VIRTIO_BLK_S_IOERR;
	req->written = (uint32_t)req->wr_len;
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_out(struct virtio_blk *blk, struct blk_req *req)
{
	if (blk->read_only)
		return VIRTIO_BLK_S_IOERR;
	uint8_t s = blk_check_io(blk, req, req->rd_len);
	if (s != VIRTIO_BLK_S_OK || req->rd_len == 0)
		return s;
	if (block_writev(blk->bd, req->rd, (int)req->nrd, req->sector * VIRTIO_BLK_SECTOR_SIZE) < 0)
		return VIRTIO_BLK_S_IOERR;
	return VIRTIO_BLK_S_OK;
}

/*
 * The data reaches stable storage (fdatasync) before the request completes.
 * Ordering with concurrent requests: virtio lets the device reorder
 * requests, and a flush must cover the writes that *completed* (were in the
 * used ring) before the driver *submitted* the flush. Such a write's
 * pwrite returned before we pushed it, hence before the driver saw it,
 * submitted the flush and we popped it, hence before this fdatasync starts:
 * fdatasync covers every write that returned before it is called. Writes
 * still in flight when the flush was submitted need not be covered (they
 * may or may not be). So no barrier or queue drain is needed, and writes
 * submitted after the flush may overtake it.
 */
static uint8_t blk_flush(struct virtio_blk *blk, struct blk_req *req)
{
	(void)req;
	return block_flush(blk->bd) < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
}

static uint8_t blk_get_id(struct virtio_blk *blk, struct blk_req *req)
{
	if (req->wr_len < VIRTIO_BLK_ID_BYTES) {
		blk_warn(blk, "GET_ID buffer shorter than 20 bytes");
		return VIRTIO_BLK_S_IOERR;
	}
	/* Shorter serials are NUL-padded: blk->serial is zero-filled. */
	req->written = (uint32_t)iov_from_buf(req->wr, req->nwr, 0, blk->serial, VIRTIO_BLK_ID_BYTES);
	return VIRTIO_BLK_S_OK;
}

struct blk_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

/*
 * Reads and checks every segment of a DISCARD or WRITE_ZEROES request before
 * any is executed, so a bad segment never leaves the request half done.
 * Returns the status and fills segs/nseg.
 */
static uint8_t blk_parse_segs(struct virtio_blk *blk, const struct blk_req *req, bool discard,
			      struct blk_seg *segs, unsigned *nseg)
{
	if (req->rd_len == 0 || req->rd_len % VIRTIO_BLK_DISCARD_SEG_BYTES ||
	    req->rd_len / VIRTIO_BLK_DISCARD_SEG_BYTES > VIRTIO_BLK_MAX_DISCARD_SEG) {
		blk_warn(blk, "malformed or too many discard/write-zeroes segments");
		return VIRTIO_BLK_S_IOERR;
	}
	uint8_t raw[VIRTIO_BLK_MAX_DISCARD_SEG * VIRTIO_BLK_DISCARD_SEG_BYTES] = { 0 };
	size_t n = iov_to_buf(req->rd, req->nrd, 0, raw, (size_t)req->rd_len);
	/* What one request may cost: the sectors of all its segments, at most
	 * what the configuration space advertises and at most the disk (more
	 * than the disk only repeats ranges). */
	uint64_t total = 0, max = VIRTIO_BLK_MAX_DISCARD_SECTORS;
	if (blk->capacity < max)
		max = blk->capacity;
	*nseg = (unsigned)(n / VIRTIO_BLK_DISCARD_SEG_BYTES);
	for (unsigned i = 0; i < *nseg; i++) {
		const uint8_t *p = raw + i * VIRTIO_BLK_DISCARD_SEG_BYTES;
		segs[i] = (struct blk_seg){ le_load(p, 8), (uint32_t)le_load(p + 8, 4),
					    (uint32_t)le_load(p + 12, 4) };
		/* 5.2.6.2: unknown flags, and unmap on a discard, are unsupported. */
		uint32_t allowed = discard ? 0 : VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
		if (segs[i].flags & ~allowed)
			return VIRTIO_BLK_S_UNSUPP;
		total += segs[i].num_sectors;
		if (total > max || !blk_range_ok(blk, segs[i].sector,
						 (uint64_t)segs[i].num_sectors * VIRTIO_BLK_SECTOR_SIZE)) {
			blk_warn(blk, "discard/write-zeroes segment beyond the disk, or request "
				 "longer than the advertised maximum");
			return VIRTIO_BLK_S_IOERR;
		}
	}
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_zero_segs(struct virtio_blk *blk, struct blk_req *req, bool discard)
{
	if (blk->read_only)
		return VIRTIO_BLK_S_IOERR;
	struct blk_seg segs[VIRTIO_BLK_MAX_DISCARD_SEG];
	unsigned nseg = 0;
	uint8_t s = blk_parse_segs(blk, req, discard, segs, &nseg);
	for (unsigned i = 0; s == VIRTIO_BLK_S_OK && i < nseg; i++) {
		uint64_t off = segs[i].sector * VIRTIO_BLK_SECTOR_SIZE;
		uint64_t len = (uint64_t)segs[i].num_sectors * VIRTIO_BLK_SECTOR_SIZE;
		/* Discard and zeroing with unmap may free space: block_discard
		 * leaves the range reading as zeros, which both need. */
		bool unmap = discard || (segs[i].flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
		int r = unmap ? block_discard(blk->bd, off, len) : block_write_zeroes(blk->bd, off, len);
		if (r < 0)
			s = VIRTIO_BLK_S_IOERR;
	}
	return s;
}

static uint8_t blk_discard(struct virtio_blk *blk, struct blk_req *req)
{
	return blk_zero_segs(blk, req, true);
}

static uint8_t blk_write_zeroes(struct virtio_blk *blk, struct blk_req *req)
{
	return blk_zero_segs(blk, req, false);
}

static const struct blk_handler {
	uint32_t type;
	uint8_t (*run)(struct virtio_blk *blk, struct blk_req *req);
	int feature; /* feature bit the driver must have accepted, or -1 */
} blk_handlers[] = {
	{ VIRTIO_BLK_T_IN, blk_in, -1 },
	{ VIRTIO_BLK_T_OUT, blk_out, -1 },
	{ VIRTIO_BLK_T_FLUSH, blk_flush, -1 },
	{ VIRTIO_BLK_T_GET_ID, blk_get_id, -1 },
	{ VIRTIO_BLK_T_DISCARD, blk_discard, VIRTIO_BLK_F_DISCARD },
	{ VIRTIO_BLK_T_WRITE_ZEROES, blk_write_zeroes, VIRTIO_BLK_F_WRITE_ZEROES },
};

static uint8_t blk_dispatch(struct virtio_blk *blk, struct blk_req *req)
{
	for (size_t i = 0; i < ARRAY_SIZE(blk_handlers); i++) {
		const struct blk_handler *h = &blk_handlers[i];
		if (h->type != req->type)
			continue;
		if (h->feature >= 0 && !(blk->features & VIRTIO_FEATURE(h->feature)))
			return VIRTIO_BLK_S_UNSUPP;
		return h->run(blk, req);
	}
	return VIRTIO_BLK_S_UNSUPP;
}


/*
 * Takes the status byte off the end of the writable part. Returns NULL when
 * the chain has no writable byte at all.
 */
uint8_t *blk_take_status(struct vq_chain *c)
{
	if (c->writable_len == 0 || c->nr_iov == c->nr_readable)
		return NULL;
	struct iovec *last = &c->iov[c->nr_iov - 1];
	uint8_t *status = (uint8_t *)last->iov_base + last->iov_len - 1;
	if (--last->iov_len == 0)
		c->nr_iov--;
	c->writable_len--;
	return status;
}

/* Parses the header and serves the request; returns the status. */
static uint8_t blk_serve(struct virtio_blk *blk, struct blk_io *io, struct blk_req *req)
{
	*req = (struct blk_req){ .rd = io->iov, .nrd = io->nr_readable,
				 .wr = io->iov + io->nr_readable, .nwr = io->nr_iov - io->nr_readable,
				 .wr_len = io->writable_len };
	if (io->readable_len < VIRTIO_BLK_REQ_HDR_BYTES) {
		blk_warn(blk, "request header shorter than 16 bytes");
		return VIRTIO_BLK_S_IOERR;
	}
	uint8_t hdr[VIRTIO_BLK_REQ_HDR_BYTES] = { 0 };
	iov_to_buf(req->rd, req->nrd, 0, hdr, sizeof(hdr));
	req->type = (uint32_t)le_load(hdr, 4);
	req->sector = le_load(hdr + 8, 8);
	iov_skip(&req->rd, &req->nrd, sizeof(hdr));
	req->rd_len = io->readable_len - sizeof(hdr);
	return blk_dispatch(blk, req);
}

/* Serves io and records its status and used length (on a worker). */
void blk_io_run(struct virtio_blk *blk, struct blk_io *io)
{
	struct blk_req req;
	uint8_t status = blk_serve(blk, io, &req);
	/* Guest memory: a hostile driver may give requests served at once the
	 * same status byte. Its own loss, but the store must not be a data race. */
	__atomic_store_n(io->status, status, __ATOMIC_RELAXED);
	io->used = req.written + 1;
}

/* A copy of the chain (status byte already taken) to hand to a worker. */
struct blk_io *blk_io_new(const struct vq_chain *c, uint8_t *status)
{
	struct blk_io *io = malloc(sizeof(*io) + c->nr_iov * sizeof(struct iovec));
	if (!io)
		return NULL;
	*io = (struct blk_io){ .head = c->head, .status = status, .nr_iov = c->nr_iov,
			       .nr_readable = c->nr_readable, .readable_len = c->readable_len,
			       .writable_len = c->writable_len };
	memcpy(io->iov, c->iov, c->nr_iov * sizeof(struct iovec));
	return io;
}


/* The type in a request's header, peeked from guest memory; UINT32_MAX
 * when the first buffer is too short to hold it. It decides only where the
 * request runs: whoever serves it parses a copy of its own. */
uint32_t blk_peek_type(const struct blk_io *io)
{
	uint8_t le[4];
	if (io->nr_readable == 0 || io->iov[0].iov_len < sizeof(le))
		return UINT32_MAX;
	memcpy(le, io->iov[0].iov_base, sizeof(le));
	return (uint32_t)le_load(le, 4);
}
