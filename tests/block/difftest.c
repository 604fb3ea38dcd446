/*
 * Randomized differential test of the qcow2 driver: random writes, zero
 * writes, discards, snapshot create/apply/delete, resizes, flushes and
 * reopens are applied both through the block layer and to an in-memory raw
 * model, and every read is compared with the model. At the end the model is
 * written to a raw file so the driver script can run qemu-img check and
 * qemu-img compare on the result.
 *
 * usage: difftest DIR SEED OPS   (prints the seed; exit 0 when equal)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "block/block.h"

#define MAX_SIZE (24u << 20)
#define MAX_SNAPS 4

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64*: reproducible from the printed seed on every platform */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * UINT64_C(2685821657736338717);
}

static uint64_t below(uint64_t n) { return n ? rnd() % n : 0; }

struct snap {
	char name[16];
	uint8_t *data;
	uint64_t size;
};

struct state {
	const char *img;
	struct block_dev *bd;
	uint8_t *model;
	uint64_t size;
	uint64_t cluster;
	unsigned refcount_bits;
	struct snap snaps[MAX_SNAPS];
	int nsnaps, snap_seq;
	uint8_t *buf;
	unsigned long op;
};

#define FAIL(st, ...) do { fprintf(stderr, "op %lu: ", (st)->op); fprintf(stderr, __VA_ARGS__); \
			   fputc('\n', stderr); return 1; } while (0)

static void pick_range(struct state *s, uint64_t *off, uint64_t *len)
{
	uint64_t max = 3 * s->cluster + 4096;
	switch (below(3)) {
	case 0: /* sector aligned */
		*off = below(s->size / 512) * 512;
		*len = (1 + below(max / 512)) * 512;
		break;
	case 1: /* cluster aligned */
		*off = below(s->size / s->cluster) * s->cluster;
		*len = (1 + below(3)) * s->cluster;
		break;
	default: /* any byte */
		*off = below(s->size);
		*len = 1 + below(max);
	}
	if (*off >= s->size)
		*off = s->size - 1;
	if (*len > s->size - *off)
		*len = s->size - *off;
}

static int check_range(struct state *s, uint64_t off, uint64_t len)
{
	int r = block_read(s->bd, s->buf, len, off);
	if (r < 0)
		FAIL(s, "read %llu+%llu failed: %d", (unsigned long long)off, (unsigned long long)len, r);
	if (memcmp(s->buf, s->model + off, len) != 0) {
		uint64_t i = 0;
		while (s->buf[i] == s->model[off + i])
			i++;
		FAIL(s, "mismatch at %llu (read %02x, model %02x)", (unsigned long long)(off + i),
		     s->buf[i], s->model[off + i]);
	}
	return 0;
}

static int check_all(struct state *s)
{
	for (uint64_t off = 0; off < s->size; off += MAX_SIZE / 8) {
		uint64_t n = s->size - off < MAX_SIZE / 8 ? s->size - off : MAX_SIZE / 8;
		if (check_range(s, off, n))
			return 1;
	}
	return 0;
}

static int do_write(struct state *s)
{
	uint64_t off, len;
	pick_range(s, &off, &len);
	uint8_t v = (uint8_t)rnd();
	for (uint64_t i = 0; i < len; i++)
		s->buf[i] = (uint8_t)(v + i / 512); /* compressible yet distinct */
	if (below(4) == 0)
		for (uint64_t i = 0; i < len; i += 7)
			s->buf[i] = (uint8_t)rnd();
	int r = block_write(s->bd, s->buf, len, off);
	if (r < 0)
		FAIL(s, "write %llu+%llu failed: %d", (unsigned long long)off, (unsigned long long)len, r);
	memcpy(s->model + off, s->buf, len);
	return check_range(s, off, len);
}

/* A whole cluster stored compressed (what convert -c does). */
static int do_compressed(struct state *s)
{
	if (s->cluster > (1u << 20) || s->size < s->cluster)
		return 0;
	uint64_t off = below(s->size / s->cluster) * s->cluster;
	uint8_t v = (uint8_t)rnd();
	for (uint64_t i = 0; i < s->cluster; i++)
		s->buf[i] = (uint8_t)(v + i / 1024);
	int r = block_write_compressed(s->bd, s->buf, off);
	if (r < 0)
		FAIL(s, "compressed write at %llu failed: %d", (unsigned long long)off, r);
	memcpy(s->model + off, s->buf, s->cluster);
	return check_range(s, off, s->cluster);
}

static int do_zero(struct state *s, bool discard)
{
	uint64_t off, len;
	pick_range(s, &off, &len);
	int r = discard ? block_discard(s->bd, off, len) : block_write_zeroes(s->bd, off, len);
	if (r < 0)
		FAIL(s, "%s %llu+%llu failed: %d", discard ? "discard" : "zero",
		     (unsigned long long)off, (unsigned long long)len, r);
	memset(s->model + off, 0, len);
	return check_range(s, off, len);
}

static int do_resize(struct state *s)
{
	uint64_t size = (1 + below(MAX_SIZE / 512)) * 512;
	int r = block_truncate(s->bd, size);
	if (r < 0)
		FAIL(s, "resize to %llu failed: %d", (unsigned long long)size, r);
	if (size < s->size)
		memset(s->model + size, 0, s->size - size);
	s->size = size;
	return block_get_size(s->bd) == size ? 0 : 1;
}

static int do_snapshot(struct state *s)
{
	int r, which = s->nsnaps ? (int)below((uint64_t)s->nsnaps) : 0;
	switch (s->nsnaps == 0 ? 0 : below(s->nsnaps == MAX_SNAPS ? 2 : 3) + (s->nsnaps == MAX_SNAPS)) {
	case 0: {
		struct snap *sn = &s->snaps[s->nsnaps];
		snprintf(sn->name, sizeof(sn->name), "s%d", s->snap_seq++);
		r = block_snapshot(s->bd, BLOCK_SNAP_CREATE, sn->name);
		if (r == -ERANGE && s->refcount_bits < 16)
			return 0; /* too narrow refcounts: refused, image unchanged */
		if (r < 0)
			FAIL(s, "snapshot create failed: %d", r);
		sn->data = malloc(MAX_SIZE);
		memcpy(sn->data, s->model, MAX_SIZE);
		sn->size = s->size;
		s->nsnaps++;
		return 0;
	}
	case 1: {
		struct snap *sn = &s->snaps[which];
		r = block_snapshot(s->bd, BLOCK_SNAP_APPLY, sn->name);
		if (r == -ERANGE && s->refcount_bits < 16)
			return 0;
		if (r < 0)
			FAIL(s, "snapshot apply failed: %d", r);
		memcpy(s->model, sn->data, MAX_SIZE);
		s->size = sn->size;
		if (block_get_size(s->bd) != s->size)
			FAIL(s, "size after apply is %llu", (unsigned long long)block_get_size(s->bd));
		return check_all(s);
	}
	default: {
		if ((r = block_snapshot(s->bd, BLOCK_SNAP_DELETE, s->snaps[which].name)) < 0)
			FAIL(s, "snapshot delete failed: %d", r);
		free(s->snaps[which].data);
		s->snaps[which] = s->snaps[--s->nsnaps];
		return 0;
	}
	}
}

static int reopen(struct state *s)
{
	block_close(s->bd);
	s->bd = NULL;
	struct block_open_opts o = { .l2_cache_size = (1 + below(4)) * s->cluster * 2,
				     .cache = below(3) ? BLOCK_CACHE_WRITEBACK : BLOCK_CACHE_NONE };
	if (block_open(&s->bd, s->img, "qcow2", &o) < 0)
		FAIL(s, "reopen failed");
	return 0;
}

static int step(struct state *s)
{
	uint64_t k = below(100);
	if (k < 50)
		return do_write(s);
	if (k < 55)
		return do_compressed(s);
	if (k < 65)
		return do_zero(s, false);
	if (k < 75)
		return do_zero(s, true);
	if (k < 82) {
		uint64_t off, len;
		pick_range(s, &off, &len);
		return check_range(s, off, len);
	}
	if (k < 86)
		return block_flush(s->bd) < 0;
	if (k < 90)
		return do_snapshot(s);
	if (k < 93)
		return do_resize(s);
	if (k < 95)
		return reopen(s);
	return 0;
}

static int setup(struct state *s, const char *dir, bool backing)
{
	static char img[4096], base[4096];
	static const uint32_t clusters[] = { 512, 4096, 65536, 2u << 20 };
	s->cluster = clusters[below(4)];
	s->size = (1 + below(MAX_SIZE / 512)) * 512;
	snprintf(img, sizeof(img), "%s/diff.qcow2", dir);
	snprintf(base, sizeof(base), "%s/base.raw", dir);
	s->img = img;
	struct block_create_opts o = { .size = s->size, .cluster_size = (uint32_t)s->cluster,
				       .refcount_bits = below(3) == 0 ? 1u << below(7) : 16 };
	if (backing) {
		uint64_t bsize = (1 + below(MAX_SIZE / 512)) * 512;
		FILE *f = fopen(base, "wb");
		for (uint64_t i = 0; f && i < bsize; i++)
			fputc((int)(i * 31 / 512 % 251) + 1, f);
		if (!f || fclose(f))
			return 1;
		for (uint64_t i = 0; i < s->size && i < bsize; i++)
			s->model[i] = (uint8_t)((int)(i * 31 / 512 % 251) + 1);
		o.backing_file = "base.raw"; /* relative to the overlay */
		o.backing_format = "raw";
	}
	s->refcount_bits = o.refcount_bits;
	printf("cluster %llu, size %llu, refcount bits %u, backing %s\n",
	       (unsigned long long)s->cluster, (unsigned long long)s->size,
	       o.refcount_bits, backing ? "raw" : "none");
	if (block_create(img, "qcow2", &o) < 0)
		return 1;
	struct block_open_opts oo = { 0 };
	return block_open(&s->bd, img, "qcow2", &oo) < 0;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: difftest DIR SEED OPS\n");
		return 2;
	}
	log_init("difftest", LOG_LEVEL_WARN);
	uint64_t seed = strtoull(argv[2], NULL, 0);
	unsigned long ops = strtoul(argv[3], NULL, 0);
	rng_state = seed ? seed : 1;
	printf("seed %llu\n", (unsigned long long)seed);
	struct state s = { .model = calloc(1, MAX_SIZE), .buf = malloc(8u << 20) };
	int r = !s.model || !s.buf || setup(&s, argv[1], below(2));
	for (s.op = 0; r == 0 && s.op < ops; s.op++) {
		if (step(&s) || (s.op % 500 == 499 && check_all(&s))) {
			printf("FAILED: replay with: difftest DIR %llu %lu\n", (unsigned long long)seed, ops);
			r = 1;
		}
	}
	if (r == 0)
		r = check_all(&s);
	if (s.bd)
		block_close(s.bd);
	char path[4200];
	snprintf(path, sizeof(path), "%s/model.raw", argv[1]);
	FILE *f = r == 0 ? fopen(path, "wb") : NULL;
	if (r == 0 && (!f || fwrite(s.model, 1, s.size, f) != s.size || fclose(f)))
		r = 1;
	/* freed on failure too, so a sanitizer run reports the failure, not a leak */
	for (int i = 0; i < s.nsnaps; i++)
		free(s.snaps[i].data);
	free(s.model);
	free(s.buf);
	if (r == 0)
		printf("%lu ops ok\n", ops);
	return r;
}
