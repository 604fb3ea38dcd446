/*
 * shoji-img verbs that move data between images: convert (any format to
 * any, flattening a backing chain, optionally compressing), commit (top
 * image into its backing file), rebase (safe and -u), compare and map.
 * All go through the block layer; none looks at a format's internals.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/log.h"
#include "base/util.h"
#include "cli/shoji-img.h"

#define COPY_CHUNK (1u << 20)

/* True (after one line) when out is the source image or a file of its
 * backing chain: creating the output would truncate what is being read. */
static bool convert_onto_source(struct block_dev *src, const char *out)
{
	struct stat o;
	if (stat(out, &o) < 0)
		return false; /* a new file cannot be any of them */
	for (struct block_dev *bd = src; bd; bd = bd->backing) {
		struct stat s;
		if (stat(bd->filename, &s) == 0 && s.st_dev == o.st_dev && s.st_ino == o.st_ino) {
			log_error("%s: is %s; convert to a new file, then rename it", out,
				  bd == src ? "the image being converted"
					    : "a backing file of the image being converted");
			return true;
		}
	}
	return false;
}

int img_convert(int argc, char **argv)
{
	const char *fmt = NULL, *ofmt = "raw";
	struct block_create_opts o = { 0 };
	enum block_cache tcache = BLOCK_CACHE_WRITEBACK, scache = BLOCK_CACHE_WRITEBACK;
	bool compress = false, shared = false;
	int c;
	while ((c = getopt(argc, argv, "f:O:co:t:T:pqWm:U")) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'O': ofmt = optarg; break;
		case 'c': compress = true; break;
		case 'o': if (!img_parse_create_opts(optarg, &o)) return 1; break;
		case 't': if (!img_parse_cache(optarg, &tcache)) return 1; break;
		case 'T': if (!img_parse_cache(optarg, &scache)) return 1; break;
		case 'U': shared = true; break;
		case 'p': case 'q': case 'W': case 'm': break;
		default: return img_usage_error("convert"), 1;
		}
	}
	if (optind != argc - 2)
		return img_usage_error("convert"), 1;
	if (compress && strcmp(ofmt, "qcow2") != 0)
		return log_error("compression (-c) needs -O qcow2"), 1;
	struct block_dev *src = img_open(argv[optind], fmt, false, scache, false, shared);
	if (!src)
		return 1;
	if (convert_onto_source(src, argv[optind + 1])) {
		block_close(src);
		return 1;
	}
	o.size = block_get_size(src);
	struct block_dev *dst = NULL;
	struct block_open_opts oo = { .cache = tcache };
	int r = block_create(argv[optind + 1], ofmt, &o);
	if (r == 0)
		r = block_open(&dst, argv[optind + 1], ofmt, &oo);
	if (r == 0)
		r = block_copy(src, dst, compress);
	if (r < 0)
		log_error("convert failed: %s", strerror(-r));
	block_close(dst);
	block_close(src);
	return r < 0 ? 1 : 0;
}

static bool top_allocated(struct block_dev *bd, uint64_t off, uint64_t len, uint64_t *n)
{
	struct block_status st;
	if (block_get_status(bd, off, len, &st) < 0) {
		*n = len;
		return true;
	}
	*n = st.len ? st.len : len;
	return st.state != BLOCK_UNALLOCATED;
}

int img_commit(int argc, char **argv)
{
	const char *fmt = NULL;
	enum block_cache cache = BLOCK_CACHE_WRITEBACK;
	bool keep = false;
	int c;
	while ((c = getopt(argc, argv, "f:t:qdpb:")) != -1) {
		if (c == 'f')
			fmt = optarg;
		else if (c == 'd')
			keep = true;
		else if (c == 't' && !img_parse_cache(optarg, &cache))
			return 1;
		else if (c == '?')
			return img_usage_error("commit"), 1;
	}
	if (optind != argc - 1)
		return img_usage_error("commit"), 1;
	const char *path = argv[optind];
	struct block_dev *top = img_open(path, fmt, !keep, cache, true, false);
	if (!top)
		return 1;
	struct block_info in;
	int r = block_info(top, &in);
	struct block_dev *base = NULL;
	if (r == 0 && !in.backing_file)
		r = (log_error("%s: image has no backing file to commit to", path), -EINVAL);
	char *bpath = r == 0 ? block_backing_path(path, in.backing_file) : NULL;
	if (r == 0 && !(base = img_open(bpath, in.backing_format, true, cache, false, false)))
		r = -EIO;
	uint8_t *buf = malloc(COPY_CHUNK);
	uint64_t size = block_get_size(top);
	if (r == 0 && size > block_get_size(base))
		r = block_truncate(base, size);
	for (uint64_t off = 0, n; r == 0 && buf && off < size; off += n) {
		uint64_t want = size - off < COPY_CHUNK ? size - off : COPY_CHUNK;
		if (!top_allocated(top, off, want, &n))
			continue;
		r = block_read(top, buf, n, off);
		if (r == 0)
			r = block_buf_is_zero(buf, n) ? block_write_zeroes(base, off, n) : block_write(base, buf, n, off);
	}
	if (r == 0)
		r = block_flush(base);
	if (r == 0 && !keep) { /* like qemu-img: the top now adds nothing */
		r = block_make_empty(top);
		if (r == -ENOTSUP)
			r = 0;
	}
	if (r < 0)
		log_error("commit failed: %s", strerror(-r));
	else
		printf("Image committed.\n");
	free(buf);
	free(bpath);
	block_close(base);
	block_close(top);
	return r < 0 ? 1 : 0;
}

/* Copies into top every unallocated range where the old backing chain and
 * the new backing file differ, so the guest sees the same disk after. */
static int rebase_copy(struct block_dev *top, struct block_dev *nb)
{
	uint8_t *a = malloc(COPY_CHUNK), *b = malloc(COPY_CHUNK);
	int r = a && b ? 0 : -ENOMEM;
	uint64_t size = block_get_size(top);
	for (uint64_t off = 0, n; r == 0 && off < size; off += n) {
		uint64_t want = size - off < COPY_CHUNK ? size - off : COPY_CHUNK;
		if (top_allocated(top, off, want, &n))
			continue;
		r = block_read(top, a, n, off);
		if (r == 0)
			r = nb ? block_read_padded(nb, b, n, off) : (memset(b, 0, n), 0);
		if (r == 0 && memcmp(a, b, n) != 0)
			r = block_write(top, a, n, off);
	}
	free(a);
	free(b);
	return r;
}

int img_rebase(int argc, char **argv)
{
	const char *fmt = NULL, *backing = NULL, *bfmt = NULL;
	bool unsafe = false;
	int c;
	while ((c = getopt(argc, argv, "f:b:F:uqpt:T:")) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'b': backing = optarg; break;
		case 'F': bfmt = optarg; break;
		case 'u': unsafe = true; break;
		case 'q': case 'p': case 't': case 'T': break;
		default: return img_usage_error("rebase"), 1;
		}
	}
	if (optind != argc - 1 || !backing)
		return img_usage_error("rebase"), 1;
	const char *path = argv[optind];
	if (backing[0] == '\0')
		backing = NULL;
	if (backing && !bfmt)
		return log_error("-b needs the backing file's format with -F raw|qcow2"), 1;
	struct block_dev *top = img_open(path, fmt, true, BLOCK_CACHE_WRITEBACK, unsafe, false);
	if (!top)
		return 1;
	int r = 0;
	if (!unsafe) {
		struct block_dev *nb = NULL;
		char *full = backing ? block_backing_path(path, backing) : NULL;
		if (backing && !(nb = img_open(full, bfmt, false, BLOCK_CACHE_WRITEBACK, false, false)))
			r = -EIO;
		if (r == 0)
			r = rebase_copy(top, nb);
		block_close(nb);
		free(full);
	}
	if (r == 0)
		r = block_set_backing(top, backing, bfmt);
	if (r < 0 && r != -EIO)
		log_error("rebase failed: %s", strerror(-r));
	block_close(top);
	return r < 0 ? 1 : 0;
}

int img_compare(int argc, char **argv)
{
	const char *f1 = NULL, *f2 = NULL;
	bool strict = false, shared = false;
	int c;
	while ((c = getopt(argc, argv, "f:F:sqpU")) != -1) {
		if (c == 'U')
			shared = true;
		else if (c == 'f')
			f1 = optarg;
		else if (c == 'F')
			f2 = optarg;
		else if (c == 's')
			strict = true;
		else if (c == '?')
			return img_usage_error("compare"), 2;
	}
	if (optind != argc - 2)
		return img_usage_error("compare"), 2;
	struct block_dev *a = img_open(argv[optind], f1, false, BLOCK_CACHE_WRITEBACK, false, shared);
	struct block_dev *b = a ? img_open(argv[optind + 1], f2 ? f2 : f1, false,
					   BLOCK_CACHE_WRITEBACK, false, shared) : NULL;
	if (!a || !b) {
		block_close(a);
		return 2;
	}
	uint64_t sa = block_get_size(a), sb = block_get_size(b), size = sa > sb ? sa : sb;
	int rc = 0;
	if (strict && sa != sb) {
		printf("Strict mode: Image size mismatch!\n");
		rc = 1;
	}
	uint8_t *x = malloc(COPY_CHUNK), *y = malloc(COPY_CHUNK);
	if (!x || !y)
		rc = 2;
	for (uint64_t off = 0; rc == 0 && off < size; off += COPY_CHUNK) {
		uint64_t n = size - off < COPY_CHUNK ? size - off : COPY_CHUNK;
		if (block_read_padded(a, x, n, off) < 0 || block_read_padded(b, y, n, off) < 0) {
			log_error("error while reading at offset %llu", (unsigned long long)off);
			rc = 2;
			break;
		}
		if (memcmp(x, y, n) == 0)
			continue;
		uint64_t i = 0;
		while (x[i] == y[i])
			i++;
		printf("Content mismatch at offset %llu!\n", (unsigned long long)(off + (i & ~511ULL)));
		rc = 1;
	}
	if (rc == 0)
		printf("Images are identical.\n");
	free(x);
	free(y);
	block_close(a);
	block_close(b);
	return rc;
}

/* Resolves a range down the backing chain: the image that decides it. */
static int map_one(struct block_dev *top, uint64_t off, uint64_t len, struct block_status *st,
		   int *depth, struct block_dev **where)
{
	struct block_dev *bd = top;
	*depth = 0;
	for (;;) {
		uint64_t avail = off < bd->size ? bd->size - off : 0;
		if (avail == 0) {
			*st = (struct block_status){ BLOCK_ZERO, len, 0 };
			break;
		}
		int r = block_get_status(bd, off, len < avail ? len : avail, st);
		if (r < 0)
			return r;
		len = st->len;
		if (st->state != BLOCK_UNALLOCATED || !bd->backing)
			break;
		bd = bd->backing;
		(*depth)++;
	}
	*where = bd;
	return 0;
}

int img_map(int argc, char **argv)
{
	struct img_view_args a;
	if (!img_view_args_parse(argc, argv, "map", &a))
		return 1;
	bool json = a.json;
	struct block_dev *bd = img_open(a.path, a.fmt, false, BLOCK_CACHE_WRITEBACK, false, a.shared);
	if (!bd)
		return 1;
	if (json)
		printf("[");
	else
		printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
	int r = 0;
	bool first = true;
	for (uint64_t off = 0; off < bd->size;) {
		struct block_status st;
		struct block_dev *where;
		int depth;
		if ((r = map_one(bd, off, bd->size - off, &st, &depth, &where)) < 0)
			break;
		bool data = st.state == BLOCK_DATA || st.state == BLOCK_COMPRESSED;
		bool zero = st.state == BLOCK_ZERO || st.state == BLOCK_UNALLOCATED;
		if (json) {
			printf("%s{ \"start\": %llu, \"length\": %llu, \"depth\": %d, \"present\": %s, "
			       "\"zero\": %s, \"data\": %s", first ? "" : ",\n", (unsigned long long)off,
			       (unsigned long long)st.len, depth,
			       st.state == BLOCK_UNALLOCATED ? "false" : "true", zero ? "true" : "false",
			       data ? "true" : "false");
			if (st.state == BLOCK_DATA)
				printf(", \"offset\": %llu", (unsigned long long)st.host_off);
			printf("}");
		} else if (st.state == BLOCK_DATA) {
			printf("0x%-14llx0x%-14llx0x%-14llx%s\n", (unsigned long long)off,
			       (unsigned long long)st.len, (unsigned long long)st.host_off, where->filename);
		}
		first = false;
		off += st.len;
	}
	if (json)
		printf("]\n");
	block_close(bd);
	return r < 0 ? 1 : 0;
}
