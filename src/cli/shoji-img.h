/*
 * Shared between the shoji-img source files: the verb table entry, and the
 * helpers every verb uses to open images and report errors the way
 * qemu-img does (one line, exit code 1).
 */
#ifndef SHOJI_CLI_SHOJI_IMG_H
#define SHOJI_CLI_SHOJI_IMG_H

#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"

struct img_verb {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
};

/* The format to use for path: -f if given, else decided by the file name's
 * extension (.qcow2 -> qcow2; .raw, .img, .iso -> raw). The file's content
 * is never looked at. NULL (after an error line) when neither says. */
const char *img_format(const char *path, const char *fmt);
/* force_share (-U): a read-only look that takes no image lock and so works
 * on an image a VM is running on (what it reads may be inconsistent). */
struct block_dev *img_open(const char *path, const char *fmt, bool rw, enum block_cache cache,
			   bool no_backing, bool force_share);
struct block_dev *img_open_opts(const char *path, const char *fmt, const struct block_open_opts *o);
bool img_parse_cache(const char *arg, enum block_cache *out);
void img_usage_error(const char *verb);

/* What a verb that only reads an image takes: -f FMT, -U, --output human|json, one path. */
struct img_view_args {
	const char *fmt;
	const char *path;
	bool shared;
	bool json;
};
/* False, after the usage error for `verb`, on anything else. */
bool img_view_args_parse(int argc, char **argv, const char *verb, struct img_view_args *a);
bool img_parse_create_opts(const char *arg, struct block_create_opts *o);

int img_convert(int argc, char **argv);
int img_commit(int argc, char **argv);
int img_rebase(int argc, char **argv);
int img_compare(int argc, char **argv);
int img_map(int argc, char **argv);
int img_bench(int argc, char **argv);
int img_build(int argc, char **argv);

#endif
