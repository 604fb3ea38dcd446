/*
 * virtio-blk (virtio 1.2, section 5.2): turns requests the driver places on
 * the one request queue into block layer calls on the disk image.
 *
 * A request is one descriptor chain: a 16-byte header (type, reserved,
 * sector) at the start of the readable part, then the data (readable for
 * writes, discard segments; writable for reads and GET_ID), and the status
 * byte as the very last writable byte. Everything in it is hostile: every
 * length, sector and segment is checked here before the block layer sees it
 * (which checks again), and every malformed request is completed with an
 * error status rather than dropped, so a broken or malicious driver gets an
 * answer and the VMM keeps running. vq_pop() has already checked that every
 * buffer lies in guest RAM.
 *
 * Requests complete synchronously inside queue_notify(), so nothing is in
 * flight when the transport resets the device.
 */
#include "dev/virtio-blk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "block/block.h"

struct virtio_blk {
	struct block_dev *bd;
	int lock_fd;                  /* holds the OFD lock on the image */
	const struct guest_mem *mem;
	bool read_only;
	bool active;                  /* between activate and reset */
	bool warned;                  /* one warning per device for a hostile driver */
	uint64_t features;            /* negotiated */
	uint64_t capacity;            /* in 512-byte sectors */
	char serial[VIRTIO_BLK_ID_BYTES];
	uint8_t config[VIRTIO_BLK_CONFIG_SIZE];
	struct vq_chain chain;        /* the chain being served; too big for a stack */
};

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

/* ---- iovec helpers ---- */

/* Copies up to len bytes from the front of iov into dst; returns the count. */
static size_t iov_gather(const struct iovec *iov, unsigned n, void *dst, size_t len)
{
	size_t done = 0;
	for (unsigned i = 0; i < n && done < len; i++) {
		size_t k = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;
		memcpy((uint8_t *)dst + done, iov[i].iov_base, k);
		done += k;
	}
	return done;
}

static size_t iov_scatter(const struct iovec *iov, unsigned n, const void *src, size_t len)
{
	size_t done = 0;
	for (unsigned i = 0; i < n && done < len; i++) {
		size_t k = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;
		memcpy(iov[i].iov_base, (const uint8_t *)src + done, k);
		done += k;
	}
	return done;
}

/* Drops `skip` bytes from the front of *iov (in place); the caller has
 * checked that the segments hold at least that many. */
static void iov_skip(struct iovec **iov, unsigned *n, size_t skip)
{
	while (*n > 0 && skip >= (*iov)->iov_len) {
		skip -= (*iov)->iov_len;
		(*iov)++;
		(*n)--;
	}
	if (*n > 0 && skip > 0) {
		(*iov)->iov_base = (uint8_t *)(*iov)->iov_base + skip;
		(*iov)->iov_len -= skip;
	}
}

/* ---- request handlers ---- */

static void blk_warn(struct virtio_blk *blk, const char *what)
{
	/* A guest must not flood the host's log: one warning per device. */
	if (!blk->warned)
		log_warn("virtio-blk %s: %s (further ones at debug level)", blk->bd->filename, what);
	else
		log_debug("virtio-blk %s: %s", blk->bd->filename, what);
	blk->warned = true;
}

/* Whether len bytes at `sector` lie inside the disk, without overflow. */
static bool blk_range_ok(const struct virtio_blk *blk, uint64_t sector, uint64_t len)
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

/* The data reaches stable storage (fdatasync) before the request completes. */
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
	req->written = (uint32_t)iov_scatter(req->wr, req->nwr, blk->serial, VIRTIO_BLK_ID_BYTES);
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
	size_t n = iov_gather(req->rd, req->nrd, raw, (size_t)req->rd_len);
	*nseg = (unsigned)(n / VIRTIO_BLK_DISCARD_SEG_BYTES);
	for (unsigned i = 0; i < *nseg; i++) {
		const uint8_t *p = raw + i * VIRTIO_BLK_DISCARD_SEG_BYTES;
		segs[i] = (struct blk_seg){ le_load(p, 8), (uint32_t)le_load(p + 8, 4),
					    (uint32_t)le_load(p + 12, 4) };
		/* 5.2.6.2: unknown flags, and unmap on a discard, are unsupported. */
		uint32_t allowed = discard ? 0 : VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
		if (segs[i].flags & ~allowed)
			return VIRTIO_BLK_S_UNSUPP;
		if (segs[i].num_sectors > VIRTIO_BLK_MAX_DISCARD_SECTORS ||
		    !blk_range_ok(blk, segs[i].sector,
				  (uint64_t)segs[i].num_sectors * VIRTIO_BLK_SECTOR_SIZE)) {
			blk_warn(blk, "discard/write-zeroes segment beyond the disk or too long");
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

/* ---- one chain ---- */

/*
 * Takes the status byte off the end of the writable part. Returns NULL when
 * the chain has no writable byte at all.
 */
static uint8_t *blk_take_status(struct vq_chain *c)
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
static uint8_t blk_serve(struct virtio_blk *blk, struct vq_chain *c, struct blk_req *req)
{
	*req = (struct blk_req){ .rd = c->iov, .nrd = c->nr_readable,
				 .wr = c->iov + c->nr_readable, .nwr = c->nr_iov - c->nr_readable,
				 .wr_len = c->writable_len };
	if (c->readable_len < VIRTIO_BLK_REQ_HDR_BYTES) {
		blk_warn(blk, "request header shorter than 16 bytes");
		return VIRTIO_BLK_S_IOERR;
	}
	uint8_t hdr[VIRTIO_BLK_REQ_HDR_BYTES] = { 0 };
	iov_gather(req->rd, req->nrd, hdr, sizeof(hdr));
	req->type = (uint32_t)le_load(hdr, 4);
	req->sector = le_load(hdr + 8, 8);
	iov_skip(&req->rd, &req->nrd, sizeof(hdr));
	req->rd_len = c->readable_len - sizeof(hdr);
	return blk_dispatch(blk, req);
}

static void blk_complete_chain(struct virtio_blk *blk, struct vq *vq, struct vq_chain *c)
{
	uint16_t head = c->head;
	uint8_t *status = blk_take_status(c);
	if (!status) {
		/* Nowhere to put a status: still complete it so the driver is not hung. */
		blk_warn(blk, "request without a writable status byte");
		vq_push(vq, head, 0);
		return;
	}
	struct blk_req req;
	*status = blk_serve(blk, c, &req);
	vq_push(vq, head, req.written + 1);
}

/* ---- the ops table ---- */

static uint64_t blk_features(void *dev)
{
	struct virtio_blk *blk = dev;
	uint64_t f = VIRTIO_FEATURE(VIRTIO_BLK_F_SEG_MAX) | VIRTIO_FEATURE(VIRTIO_BLK_F_BLK_SIZE) |
		     VIRTIO_FEATURE(VIRTIO_BLK_F_FLUSH) |
		     VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC_BIT) |
		     VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT);
	/* A read-only disk offers nothing that would change it. */
	if (blk->read_only)
		f |= VIRTIO_FEATURE(VIRTIO_BLK_F_RO);
	else
		f |= VIRTIO_FEATURE(VIRTIO_BLK_F_DISCARD) | VIRTIO_FEATURE(VIRTIO_BLK_F_WRITE_ZEROES);
	return f;
}

static void blk_config_read(void *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_blk *blk = dev;
	virtio_config_copy(blk->config, sizeof(blk->config), offset, data, len);
}

static void blk_config_write(void *dev, uint32_t offset, const uint8_t *data, uint32_t len)
{
	/* Nothing is writable without VIRTIO_BLK_F_CONFIG_WCE, which we do not offer. */
	(void)dev, (void)offset, (void)data, (void)len;
}

static bool blk_features_ok(void *dev, uint64_t features)
{
	(void)dev, (void)features;
	return true;
}

static void blk_activate(void *dev, struct virtio_dev *vd, uint64_t features)
{
	struct virtio_blk *blk = dev;
	blk->features = features;
	struct vq *vq = virtio_queue(vd, 0);
	if (vq) {
		vq->indirect = features & VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC_BIT);
		vq->event_idx = features & VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT);
	}
	blk->active = true;
}

/*
 * Serves the queue until it is empty. Notifications are off while we work
 * and back on before the last look, so a kick that races with the end of
 * the loop is seen either by vq_enable_notify() or by the next notify.
 */
static void blk_queue_notify(void *dev, struct virtio_dev *vd, unsigned queue)
{
	struct virtio_blk *blk = dev;
	struct vq *vq = blk->active && queue == 0 ? virtio_queue(vd, 0) : NULL;
	if (!vq)
		return;
	unsigned served = 0;
	enum vq_pop_result r;
	do {
		vq_enable_notify(vq, false);
		while ((r = vq_pop(vq, &blk->chain)) == VQ_CHAIN) {
			blk_complete_chain(blk, vq, &blk->chain);
			served++;
		}
	} while (r == VQ_EMPTY && vq_enable_notify(vq, true));
	if (served)
		virtio_queue_interrupt(vd, 0);
	if (r == VQ_BROKEN)
		virtio_needs_reset(vd, vq->why_broken ? vq->why_broken : "broken request queue");
}

static void blk_reset(void *dev)
{
	struct virtio_blk *blk = dev;
	blk->active = false;
	blk->features = 0;
}

const struct virtio_device_ops virtio_blk_ops = {
	.name = "virtio-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.num_queues = 1,
	.queue_max_size = VIRTIO_BLK_QUEUE_SIZE,
	.config_size = VIRTIO_BLK_CONFIG_SIZE,
	.features = blk_features,
	.config_read = blk_config_read,
	.config_write = blk_config_write,
	.features_ok = blk_features_ok,
	.activate = blk_activate,
	.queue_notify = blk_queue_notify,
	.reset = blk_reset,
};

/* ---- creation ---- */

/*
 * An OFD lock on a second descriptor of the image: write for a writable
 * disk, read for a read-only one, so two writers (or a writer and a
 * reader) never share an image. OFD locks belong to the open file, not the
 * process, so they also conflict inside one process and survive fork.
 */
static int blk_lock(const char *path, bool read_only)
{
	int fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0) {
		log_error("%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	struct flock fl = { .l_type = read_only ? F_RDLCK : F_WRLCK, .l_whence = SEEK_SET };
	if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
		return fd;
	if (errno == EAGAIN || errno == EACCES)
		log_error("%s: is in use by another VM (%s); stop that VM first", path,
			  read_only ? "open for writing there"
				    : "a disk may be open in only one VM when writable");
	else
		log_error("%s: cannot lock: %s", path, strerror(errno));
	close(fd);
	return -1;
}

static void blk_fill_config(struct virtio_blk *blk)
{
	uint8_t *c = blk->config;
	le_store(c + VIRTIO_BLK_CFG_CAPACITY, blk->capacity, 8);
	le_store(c + VIRTIO_BLK_CFG_SEG_MAX, VIRTIO_BLK_SEG_MAX, 4);
	le_store(c + VIRTIO_BLK_CFG_BLK_SIZE, VIRTIO_BLK_SECTOR_SIZE, 4);
	le_store(c + VIRTIO_BLK_CFG_NUM_QUEUES, 1, 2);
	le_store(c + VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS, VIRTIO_BLK_MAX_DISCARD_SECTORS, 4);
	le_store(c + VIRTIO_BLK_CFG_MAX_DISCARD_SEG, VIRTIO_BLK_MAX_DISCARD_SEG, 4);
	le_store(c + VIRTIO_BLK_CFG_DISCARD_ALIGNMENT, VIRTIO_BLK_DISCARD_ALIGNMENT, 4);
	le_store(c + VIRTIO_BLK_CFG_MAX_WZ_SECTORS, VIRTIO_BLK_MAX_DISCARD_SECTORS, 4);
	le_store(c + VIRTIO_BLK_CFG_MAX_WZ_SEG, VIRTIO_BLK_MAX_DISCARD_SEG, 4);
	c[VIRTIO_BLK_CFG_WZ_MAY_UNMAP] = 1;
}

struct virtio_blk *virtio_blk_create(const struct virtio_blk_config *cfg,
				     const struct guest_mem *mem)
{
	if (cfg->serial && strlen(cfg->serial) > VIRTIO_BLK_ID_BYTES) {
		log_error("%s: serial '%s' is longer than %d bytes", cfg->path, cfg->serial,
			  VIRTIO_BLK_ID_BYTES);
		return NULL;
	}
	struct virtio_blk *blk = calloc(1, sizeof(*blk));
	if (!blk) {
		log_error("%s: out of memory", cfg->path);
		return NULL;
	}
	blk->mem = mem;
	blk->read_only = cfg->read_only;
	if (cfg->serial)
		memcpy(blk->serial, cfg->serial, strlen(cfg->serial));
	/* Lock before opening: opening a qcow2 image for writing changes it. */
	blk->lock_fd = blk_lock(cfg->path, cfg->read_only);
	if (blk->lock_fd < 0) {
		free(blk);
		return NULL;
	}
	struct block_open_opts opts = {
		.read_only = cfg->read_only,
		.cache = cfg->direct ? BLOCK_CACHE_NONE : BLOCK_CACHE_WRITEBACK,
	};
	if (block_open(&blk->bd, cfg->path, cfg->format ? cfg->format : "raw", &opts) < 0) {
		close(blk->lock_fd);
		free(blk);
		return NULL;
	}
	blk->capacity = block_get_size(blk->bd) / VIRTIO_BLK_SECTOR_SIZE;
	blk_fill_config(blk);
	return blk;
}

void virtio_blk_destroy(struct virtio_blk *blk)
{
	if (!blk)
		return;
	if (!blk->read_only && block_flush(blk->bd) < 0)
		log_error("%s: flush at close failed", blk->bd->filename);
	block_close(blk->bd);
	close(blk->lock_fd);
	free(blk);
}
