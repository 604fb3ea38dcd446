/*
 * shoji-img: the offline image tool, with qemu-img's verbs, options and
 * exit codes where they exist. This file holds main, the verb table and the
 * verbs that only look at one image (create, info, check, resize,
 * snapshot); copying verbs are in shoji-img-copy.c, bench in
 * shoji-img-bench.c, build (master images from Debian packages) in
 * shoji-img-build.c. See docs/shoji-img.1.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/log.h"
#include "base/util.h"
#include "cli/shoji-img.h"

static const struct img_verb *find_verb(const char *name);

const char *img_format(const char *path, const char *fmt)
{
	if (fmt) {
		if (!block_format_known(fmt)) {
			log_error("unknown format '%s' (use raw or qcow2)", fmt);
			return NULL;
		}
		return fmt;
	}
	const char *dot = strrchr(path, '.');
	if (dot && strcmp(dot, ".qcow2") == 0)
		return "qcow2";
	if (dot && (strcmp(dot, ".raw") == 0 || strcmp(dot, ".img") == 0 || strcmp(dot, ".iso") == 0))
		return "raw";
	log_error("%s: say which format it is with -f raw|qcow2 (images are never probed)", path);
	return NULL;
}

struct block_dev *img_open_opts(const char *path, const char *fmt, const struct block_open_opts *o)
{
	const char *f = img_format(path, fmt);
	struct block_dev *bd;
	return !f || block_open(&bd, path, f, o) < 0 ? NULL : bd;
}

struct block_dev *img_open(const char *path, const char *fmt, bool rw, enum block_cache cache,
			   bool no_backing, bool force_share)
{
	struct block_open_opts o = { .read_only = !rw, .cache = cache, .no_backing = no_backing,
				     .force_share = force_share };
	return img_open_opts(path, fmt, &o);
}

bool img_parse_cache(const char *arg, enum block_cache *out)
{
	if (strcmp(arg, "none") == 0 || strcmp(arg, "directsync") == 0)
		*out = BLOCK_CACHE_NONE;
	else if (strcmp(arg, "writeback") == 0 || strcmp(arg, "unsafe") == 0 ||
		 strcmp(arg, "writethrough") == 0)
		*out = BLOCK_CACHE_WRITEBACK;
	else
		return log_error("unknown cache mode '%s' (use none or writeback)", arg), false;
	return true;
}

void img_usage_error(const char *verb)
{
	const struct img_verb *v = find_verb(verb);
	fprintf(stderr, "usage: shoji-img %s\n", v ? v->usage : verb);
}

/* -o cluster_size=64K,refcount_bits=16,compression_type=zstd,... */
bool img_parse_create_opts(const char *arg, struct block_create_opts *o)
{
	char *copy = strdup(arg), *save = NULL;
	bool ok = copy != NULL;
	for (char *kv = copy ? strtok_r(copy, ",", &save) : NULL; ok && kv;
	     kv = strtok_r(NULL, ",", &save)) {
		char *v = strchr(kv, '=');
		uint64_t n;
		if (!v) {
			ok = false;
			break;
		}
		*v++ = '\0';
		if (strcmp(kv, "cluster_size") == 0 && parse_size(v, &n) && n <= UINT32_MAX)
			o->cluster_size = (uint32_t)n;
		else if (strcmp(kv, "refcount_bits") == 0 && parse_uint(v, 1, 64, &n))
			o->refcount_bits = (unsigned)n;
		else if (strcmp(kv, "compression_type") == 0 && (!strcmp(v, "zlib") || !strcmp(v, "zstd")))
			o->compression_type = strcmp(v, "zstd") == 0;
		else if (strcmp(kv, "compat") == 0 && (!strcmp(v, "1.1") || !strcmp(v, "v3")))
			continue;
		else if (strcmp(kv, "size") == 0 && parse_size(v, &n))
			o->size = n;
		else
			ok = false;
		if (!ok)
			log_error("bad or unsupported creation option '%s=%s'", kv, v);
	}
	if (!ok && copy && !save)
		log_error("bad creation options '%s'", arg);
	free(copy);
	return ok;
}

static int img_create(int argc, char **argv)
{
	const char *fmt = NULL, *backing = NULL, *bfmt = NULL;
	struct block_create_opts o = { 0 };
	bool have_size = false;
	int c;
	while ((c = getopt(argc, argv, "f:b:F:o:qu")) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'b': backing = optarg; break;
		case 'F': bfmt = optarg; break;
		case 'o':
			if (!img_parse_create_opts(optarg, &o))
				return 1;
			have_size = o.size != 0;
			break;
		case 'q': case 'u': break;
		default: return img_usage_error("create"), 1;
		}
	}
	if (optind >= argc || argc - optind > 2)
		return img_usage_error("create"), 1;
	const char *path = argv[optind];
	if (!fmt) { /* by name as everywhere else; otherwise qemu-img's default */
		const char *dot = strrchr(path, '.');
		fmt = dot && strcmp(dot, ".qcow2") == 0 ? "qcow2" : "raw";
	}
	if (!block_format_known(fmt))
		return log_error("unknown format '%s' (use raw or qcow2)", fmt), 1;
	if (optind + 1 < argc) {
		if (!parse_size(argv[optind + 1], &o.size))
			return log_error("bad size '%s' (examples: 10G, 512M, 1048576)", argv[optind + 1]), 1;
		have_size = true;
	}
	if (backing && !bfmt)
		return log_error("-b needs the backing file's format with -F raw|qcow2"), 1;
	if (backing && !have_size) {
		char *full = block_backing_path(path, backing);
		struct block_dev *b = full ? img_open(full, bfmt, false, BLOCK_CACHE_WRITEBACK, false, false) : NULL;
		free(full);
		if (!b)
			return 1;
		o.size = block_get_size(b);
		block_close(b);
		have_size = true;
	}
	if (!have_size)
		return log_error("%s: image size required", path), 1;
	o.backing_file = backing;
	o.backing_format = bfmt;
	return block_create(path, fmt, &o) < 0 ? 1 : 0;
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static const char *human(uint64_t v, char *buf, size_t len)
{
	static const char *const u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double d = (double)v;
	unsigned i = 0;
	while (d >= 1024 && i + 1 < ARRAY_SIZE(u)) {
		d /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)v);
	else
		snprintf(buf, len, "%.3g %s", d, u[i]);
	return buf;
}

static uint64_t disk_usage(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

static void print_snapshots(const struct block_info *in)
{
	printf("Snapshot list:\n%-10s%-17s%11s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE",
	       "VM CLOCK", "ICOUNT");
	for (unsigned i = 0; i < in->nb_snapshots; i++) {
		const struct block_snapshot_info *s = &in->snapshots[i];
		char date[32], vs[32];
		time_t t = s->date_sec;
		struct tm tm;
		strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
		uint64_t ms = s->vm_clock_nsec / 1000000;
		printf("%-9s %-16s %10s %s %02llu:%02llu:%02llu.%03llu %10llu\n", s->id, s->name,
		       human(s->vm_state_size, vs, sizeof(vs)), date,
		       (unsigned long long)(ms / 3600000), (unsigned long long)(ms / 60000 % 60),
		       (unsigned long long)(ms / 1000 % 60), (unsigned long long)(ms % 1000),
		       (unsigned long long)(s->icount == UINT64_MAX ? 0 : s->icount));
	}
}

static void info_human(const char *path, struct block_dev *bd, const struct block_info *in)
{
	char b1[32], b2[32];
	printf("image: %s\nfile format: %s\n", path, bd->format);
	printf("virtual size: %s (%llu bytes)\n", human(bd->size, b1, sizeof(b1)),
	       (unsigned long long)bd->size);
	printf("disk size: %s\n", human(disk_usage(path), b2, sizeof(b2)));
	if (strcmp(bd->format, "qcow2") != 0)
		return;
	printf("cluster_size: %llu\n", (unsigned long long)in->cluster_size);
	if (in->backing_file) {
		printf("backing file: %s\n", in->backing_file);
		if (in->backing_format)
			printf("backing file format: %s\n", in->backing_format);
	}
	if (in->nb_snapshots)
		print_snapshots(in);
	printf("Format specific information:\n    compat: %s\n", in->version == 2 ? "0.10" : "1.1");
	printf("    compression type: %s\n    lazy refcounts: %s\n    refcount bits: %u\n"
	       "    corrupt: %s\n    extended l2: false\n", in->compression,
	       in->lazy_refcounts ? "true" : "false", in->refcount_bits,
	       in->corrupt ? "true" : "false");
}

static void info_json(const char *path, struct block_dev *bd, const struct block_info *in)
{
	bool q = strcmp(bd->format, "qcow2") == 0;
	printf("{\n    \"virtual-size\": %llu,\n    \"filename\": ", (unsigned long long)bd->size);
	json_str(path);
	if (q)
		printf(",\n    \"cluster-size\": %llu", (unsigned long long)in->cluster_size);
	printf(",\n    \"format\": \"%s\"", bd->format);
	printf(",\n    \"actual-size\": %llu", (unsigned long long)disk_usage(path));
	if (q && in->nb_snapshots) {
		printf(",\n    \"snapshots\": [");
		for (unsigned i = 0; i < in->nb_snapshots; i++) {
			const struct block_snapshot_info *s = &in->snapshots[i];
			printf("%s\n        {\n            \"icount\": %llu,\n            \"vm-state-size\": %llu,"
			       "\n            \"date-sec\": %u,\n            \"date-nsec\": %u,"
			       "\n            \"vm-clock-sec\": %llu,\n            \"vm-clock-nsec\": %llu,"
			       "\n            \"id\": ", i ? "," : "",
			       (unsigned long long)(s->icount == UINT64_MAX ? 0 : s->icount),
			       (unsigned long long)s->vm_state_size, s->date_sec, s->date_nsec,
			       (unsigned long long)(s->vm_clock_nsec / 1000000000),
			       (unsigned long long)(s->vm_clock_nsec % 1000000000));
			json_str(s->id);
			printf(",\n            \"name\": ");
			json_str(s->name);
			printf("\n        }");
		}
		printf("\n    ]");
	}
	if (q) {
		printf(",\n    \"format-specific\": {\n        \"type\": \"qcow2\",\n        \"data\": {\n"
		       "            \"compat\": \"%s\",\n            \"compression-type\": \"%s\",\n"
		       "            \"lazy-refcounts\": %s,\n            \"refcount-bits\": %u,\n"
		       "            \"corrupt\": %s,\n            \"extended-l2\": false\n        }\n    }",
		       in->version == 2 ? "0.10" : "1.1", in->compression,
		       in->lazy_refcounts ? "true" : "false", in->refcount_bits,
		       in->corrupt ? "true" : "false");
	}
	if (in->backing_file) {
		char *full = block_backing_path(path, in->backing_file);
		printf(",\n    \"full-backing-filename\": ");
		json_str(full ? full : in->backing_file);
		printf(",\n    \"backing-filename\": ");
		json_str(in->backing_file);
		if (in->backing_format) {
			printf(",\n    \"backing-filename-format\": ");
			json_str(in->backing_format);
		}
		free(full);
	}
	printf(",\n    \"dirty-flag\": %s\n}\n", in->dirty ? "true" : "false");
}

bool img_view_args_parse(int argc, char **argv, const char *verb, struct img_view_args *a)
{
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'O' }, { NULL, 0, NULL, 0 } };
	const char *output = "human";
	*a = (struct img_view_args){ NULL, NULL, false, false };
	int c;
	while ((c = getopt_long(argc, argv, "f:U", longopts, NULL)) != -1) {
		if (c == 'f')
			a->fmt = optarg;
		else if (c == 'O')
			output = optarg;
		else if (c == 'U')
			a->shared = true;
		else
			return img_usage_error(verb), false;
	}
	if (optind != argc - 1 || (strcmp(output, "human") && strcmp(output, "json")))
		return img_usage_error(verb), false;
	a->path = argv[optind];
	a->json = strcmp(output, "json") == 0;
	return true;
}

static int img_info(int argc, char **argv)
{
	struct img_view_args a;
	if (!img_view_args_parse(argc, argv, "info", &a))
		return 1;
	struct block_dev *bd = img_open(a.path, a.fmt, false, BLOCK_CACHE_WRITEBACK, true, a.shared);
	if (!bd)
		return 1;
	struct block_info in;
	int r = block_info(bd, &in);
	if (r == 0 && a.json)
		info_json(a.path, bd, &in);
	else if (r == 0)
		info_human(a.path, bd, &in);
	free(in.snapshots);
	block_close(bd);
	return r < 0 ? 1 : 0;
}

static void print_check(const struct block_check *res, bool json, const char *path)
{
	if (json) {
		printf("{\n    \"image-end-offset\": %llu,\n    \"total-clusters\": %llu,\n"
		       "    \"check-errors\": %llu,\n    \"leaks\": %llu,\n    \"corruptions\": %llu,\n"
		       "    \"filename\": ", (unsigned long long)res->image_end_offset,
		       (unsigned long long)res->total_clusters, (unsigned long long)res->check_errors,
		       (unsigned long long)res->leaks, (unsigned long long)res->corruptions);
		json_str(path);
		printf(",\n    \"format\": \"qcow2\"\n}\n");
		return;
	}
	if (res->leaks_fixed || res->corruptions_fixed)
		printf("The following inconsistencies were found and repaired:\n\n"
		       "    %llu leaked clusters\n    %llu corruptions\n\n",
		       (unsigned long long)res->leaks_fixed, (unsigned long long)res->corruptions_fixed);
	if (!res->corruptions && !res->leaks && !res->check_errors)
		printf("No errors were found on the image.\n");
	if (res->corruptions)
		printf("\n%llu errors were found on the image.\nData may be corrupted, or further "
		       "writes to the image may corrupt it.\n", (unsigned long long)res->corruptions);
	if (res->leaks)
		printf("\n%llu leaked clusters were found on the image.\nThis means waste of disk "
		       "space, but no harm to data.\n", (unsigned long long)res->leaks);
	if (res->total_clusters)
		printf("%llu/%llu = %.2f%% allocated, %.2f%% fragmented, %.2f%% compressed clusters\n",
		       (unsigned long long)res->allocated_clusters, (unsigned long long)res->total_clusters,
		       100.0 * (double)res->allocated_clusters / (double)res->total_clusters,
		       res->allocated_clusters ? 100.0 * (double)res->fragmented_clusters /
							 (double)res->allocated_clusters : 0.0,
		       res->allocated_clusters ? 100.0 * (double)res->compressed_clusters /
							 (double)res->allocated_clusters : 0.0);
	printf("Image end offset: %llu\n", (unsigned long long)res->image_end_offset);
}

static int img_check(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'O' }, { NULL, 0, NULL, 0 } };
	const char *fmt = NULL, *output = "human";
	int c, repair = 0;
	bool shared = false;
	while ((c = getopt_long(argc, argv, "f:r:qU", longopts, NULL)) != -1) {
		if (c == 'f')
			fmt = optarg;
		else if (c == 'O')
			output = optarg;
		else if (c == 'r' && strcmp(optarg, "leaks") == 0)
			repair = BLOCK_REPAIR_LEAKS;
		else if (c == 'r' && strcmp(optarg, "all") == 0)
			repair = BLOCK_REPAIR_ALL;
		else if (c == 'U')
			shared = true;
		else if (c != 'q')
			return img_usage_error("check"), 1;
	}
	if (optind != argc - 1)
		return img_usage_error("check"), 1;
	const char *path = argv[optind];
	struct block_open_opts oo = { .read_only = !repair, .no_backing = true,
				      .repair = repair == BLOCK_REPAIR_ALL, .force_share = shared };
	struct block_dev *bd = img_open_opts(path, fmt, &oo);
	if (!bd)
		return 1;
	struct block_check res;
	int r = block_check(bd, &res, repair);
	if (r == -ENOTSUP) {
		printf("This image format does not support checks\n");
		block_close(bd);
		return 63;
	}
	if (r == 0 && repair && (res.leaks_fixed || res.corruptions_fixed)) {
		struct block_check again;
		uint64_t lf = res.leaks_fixed, cf = res.corruptions_fixed;
		printf("Double checking the fixed image now...\n");
		r = block_check(bd, &again, 0);
		res = again;
		res.leaks_fixed = lf;
		res.corruptions_fixed = cf;
	}
	block_close(bd);
	if (r < 0) {
		log_error("%s: check failed: %s", path, strerror(-r));
		return 1;
	}
	print_check(&res, strcmp(output, "json") == 0, path);
	return res.corruptions ? 2 : res.leaks ? 3 : 0;
}

static int img_resize(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "shrink", no_argument, NULL, 's' }, { NULL, 0, NULL, 0 } };
	const char *fmt = NULL;
	bool shrink = false;
	int c;
	while ((c = getopt_long(argc, argv, "f:q", longopts, NULL)) != -1) {
		if (c == 'f')
			fmt = optarg;
		else if (c == 's')
			shrink = true;
		else if (c != 'q')
			return img_usage_error("resize"), 1;
	}
	if (optind != argc - 2)
		return img_usage_error("resize"), 1;
	const char *arg = argv[optind + 1];
	int sign = arg[0] == '+' ? 1 : arg[0] == '-' ? -1 : 0;
	uint64_t n, size;
	if (!parse_size(arg + (sign != 0), &n))
		return log_error("bad size '%s'", arg), 1;
	struct block_dev *bd = img_open(argv[optind], fmt, true, BLOCK_CACHE_WRITEBACK, false, false);
	if (!bd)
		return 1;
	uint64_t cur = block_get_size(bd);
	size = sign > 0 ? cur + n : sign < 0 ? cur - n : n;
	int r = 0;
	if ((sign < 0 && n > cur) || (sign > 0 && size < cur))
		r = (log_error("bad size '%s'", arg), -EINVAL);
	else if (size < cur && !shrink && strcmp(bd->format, "qcow2") == 0)
		r = (log_error("use --shrink to shrink an image (data beyond the new size is lost)"),
		     -EINVAL);
	else if ((r = block_truncate(bd, size)) < 0)
		log_error("%s: resize failed: %s", argv[optind], strerror(-r));
	block_close(bd);
	if (r == 0)
		printf("Image resized.\n");
	return r < 0 ? 1 : 0;
}

static int img_snapshot(int argc, char **argv)
{
	const char *fmt = NULL, *name = NULL;
	int c, op = -1;
	bool shared = false;
	while ((c = getopt(argc, argv, "f:c:a:d:lqU")) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'c': op = BLOCK_SNAP_CREATE; name = optarg; break;
		case 'a': op = BLOCK_SNAP_APPLY; name = optarg; break;
		case 'd': op = BLOCK_SNAP_DELETE; name = optarg; break;
		case 'l': op = -2; break;
		case 'U': shared = true; break;
		case 'q': break;
		default: return img_usage_error("snapshot"), 1;
		}
	}
	if (optind != argc - 1 || op == -1)
		return img_usage_error("snapshot"), 1;
	struct block_dev *bd = img_open(argv[optind], fmt, op != -2, BLOCK_CACHE_WRITEBACK, op == -2,
					shared);
	if (!bd)
		return 1;
	int r;
	if (op == -2) {
		struct block_info in;
		r = block_info(bd, &in);
		if (r == 0 && in.nb_snapshots)
			print_snapshots(&in);
		free(in.snapshots);
	} else {
		r = block_snapshot(bd, (enum block_snap_op)op, name);
		if (r < 0 && r != -ENOENT && r != -EEXIST)
			log_error("%s: snapshot operation failed: %s", argv[optind], strerror(-r));
	}
	block_close(bd);
	return r < 0 ? 1 : 0;
}

static const struct img_verb verbs[] = {
	{ "create", img_create, "create [-f fmt] [-b backing -F backing_fmt] [-o options] file [size]" },
	{ "info", img_info, "info [-f fmt] [-U] [--output human|json] file" },
	{ "check", img_check, "check [-f fmt] [-U] [-r leaks|all] [--output human|json] file" },
	{ "convert", img_convert, "convert [-f fmt] [-U] [-O output_fmt] [-c] [-o options] [-t cache] "
				  "[-T src_cache] src dst" },
	{ "commit", img_commit, "commit [-f fmt] [-t cache] [-d] file" },
	{ "rebase", img_rebase, "rebase [-f fmt] [-u] -b backing [-F backing_fmt] file" },
	{ "resize", img_resize, "resize [-f fmt] [--shrink] file [+|-]size" },
	{ "snapshot", img_snapshot, "snapshot [-f fmt] [-U] -l | -c name | -a name | -d name file" },
	{ "map", img_map, "map [-f fmt] [-U] [--output human|json] file" },
	{ "compare", img_compare, "compare [-f fmt] [-F fmt] [-U] [-s] file1 file2" },
	{ "bench", img_bench, "bench [-c count] [-d depth] [-s size] [-w] [-t cache] [-f fmt] "
			      "[-o offset] [-S step] [--pattern=N] [--flush-interval=N] file" },
	{ "build", img_build, "build [--agent path] [-c] [--verbose] recipe out" },
};

static const struct img_verb *find_verb(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
		if (strcmp(verbs[i].name, name) == 0)
			return &verbs[i];
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: shoji-img <command> [options]\ncommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
		fprintf(f, "  %s\n", verbs[i].usage);
	fprintf(f, "  --help | --version\n"
		   "Images are opened with the format -f names, else by file name: .qcow2 is\n"
		   "qcow2; .raw, .img and .iso are raw. Content is never probed.\n");
}

int main(int argc, char **argv)
{
	log_init("shoji-img", getenv("SHOJI_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO);
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 1 : 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("shoji-img version %s\n", SHOJI_VERSION);
		return 0;
	}
	const struct img_verb *v = find_verb(argv[1]);
	if (!v) {
		log_error("unknown command '%s'", argv[1]);
		usage(stderr);
		return 1;
	}
	optind = 1;
	return v->run(argc - 1, argv + 1);
}
