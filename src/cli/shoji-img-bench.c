/*
 * shoji-img bench: qemu-img bench's options and access pattern, through
 * shoji's block layer. Requests go in order: offset, offset+step, ...
 * wrapping at (image size - buffer size) exactly as qemu-img does, so a
 * large odd step gives the same scattered pattern with both tools. Depth is
 * served by that many threads sharing one block_dev.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/util.h"
#include "block/file.h"
#include "cli/shoji-img.h"

struct bench {
	struct block_dev *bd;
	uint64_t *offsets;
	uint64_t count;
	uint64_t bufsize;
	bool write;
	int pattern;
	uint64_t flush_interval;
	atomic_uint_fast64_t next;
	atomic_int error;
};

static void *bench_worker(void *arg)
{
	struct bench *b = arg;
	uint8_t *buf = bfile_alloc(b->bufsize);
	if (!buf) {
		atomic_store(&b->error, -ENOMEM);
		return NULL;
	}
	memset(buf, b->pattern, b->bufsize);
	for (;;) {
		uint64_t i = atomic_fetch_add(&b->next, 1);
		if (i >= b->count || atomic_load(&b->error))
			break;
		int r = b->write ? block_write(b->bd, buf, b->bufsize, b->offsets[i])
				 : block_read(b->bd, buf, b->bufsize, b->offsets[i]);
		if (r == 0 && b->write && b->flush_interval && (i + 1) % b->flush_interval == 0)
			r = block_flush(b->bd);
		if (r < 0)
			atomic_store(&b->error, r);
	}
	free(buf);
	return NULL;
}

struct bench_args {
	uint64_t count, depth, bufsize, offset, step, flush_interval;
	bool write, step_set, shared;
	int pattern;
	enum block_cache cache;
	const char *fmt;
};

static bool bench_parse(int argc, char **argv, struct bench_args *a)
{
	static const struct option longopts[] = {
		{ "pattern", required_argument, NULL, 'P' },
		{ "flush-interval", required_argument, NULL, 'F' }, { NULL, 0, NULL, 0 } };
	*a = (struct bench_args){ .count = 75000, .depth = 64, .bufsize = 4096, .pattern = 0 };
	int c;
	while ((c = getopt_long(argc, argv, "c:d:f:ni:o:qs:S:t:wU", longopts, NULL)) != -1) {
		bool ok = true;
		uint64_t v;
		switch (c) {
		case 'c': ok = parse_uint(optarg, 1, UINT32_MAX, &a->count); break;
		case 'd': ok = parse_uint(optarg, 1, 1024, &a->depth); break;
		case 'f': a->fmt = optarg; break;
		case 'o': ok = parse_size(optarg, &a->offset); break;
		case 's': ok = parse_size(optarg, &a->bufsize) && a->bufsize && a->bufsize <= (64u << 20); break;
		case 'S': ok = parse_size(optarg, &a->step); a->step_set = true; break;
		case 't': ok = img_parse_cache(optarg, &a->cache); break;
		case 'w': a->write = true; break;
		case 'P': ok = parse_uint(optarg, 0, 255, &v); a->pattern = (int)v; break;
		case 'F': ok = parse_uint(optarg, 0, UINT32_MAX, &a->flush_interval); break;
		case 'U': a->shared = true; break;
		case 'n': case 'i': case 'q': break;
		default: ok = false;
		}
		if (!ok) {
			img_usage_error("bench");
			return false;
		}
	}
	if (!a->step_set)
		a->step = a->bufsize;
	return optind == argc - 1 || (img_usage_error("bench"), false);
}

int img_bench(int argc, char **argv)
{
	struct bench_args a;
	if (!bench_parse(argc, argv, &a))
		return 1;
	struct block_dev *bd = img_open(argv[optind], a.fmt, a.write, a.cache, false, a.shared);
	if (!bd)
		return 1;
	uint64_t size = block_get_size(bd);
	if (size < a.bufsize) {
		block_close(bd);
		return log_error("image is smaller than the buffer"), 1;
	}
	struct bench b = { .bd = bd, .count = a.count, .bufsize = a.bufsize, .write = a.write,
			   .pattern = a.pattern, .flush_interval = a.flush_interval };
	b.offsets = malloc(a.count * sizeof(uint64_t));
	pthread_t *th = calloc(a.depth, sizeof(*th));
	if (!b.offsets || !th) {
		block_close(bd);
		return 1;
	}
	uint64_t off = a.offset;
	for (uint64_t i = 0; i < a.count; i++) {
		b.offsets[i] = off;
		off = size <= a.bufsize ? 0 : (off + a.step) % (size - a.bufsize);
	}
	printf("Sending %llu %s requests, %llu bytes each, %llu in parallel (starting at offset "
	       "%llu, step size %llu)\n", (unsigned long long)a.count, a.write ? "write" : "read",
	       (unsigned long long)a.bufsize, (unsigned long long)a.depth,
	       (unsigned long long)a.offset, (unsigned long long)a.step);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	uint64_t started = 0;
	for (; started < a.depth; started++)
		if (pthread_create(&th[started], NULL, bench_worker, &b) != 0)
			break;
	for (uint64_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	int r = atomic_load(&b.error);
	if (r == 0 && a.write)
		r = block_flush(bd);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (r < 0)
		log_error("bench: request failed: %s", strerror(-r));
	else
		printf("Run completed in %.3f seconds.\n", secs);
	free(b.offsets);
	free(th);
	block_close(bd);
	return r < 0 ? 1 : 0;
}
