/*
 * The recipe of `shoji-img build`: a small text file of `key = value` lines
 * that names what goes into a master image (suite, kernel, packages, files
 * to copy, hostname, size, first-boot script, mirror). The format is
 * documented in images/README.md. Parsing follows the "bool + message
 * buffer" convention of docs/hacking.md: every mistake is one line naming
 * file:line, the key and the fix, and the output is untouched on failure.
 */
#ifndef SHOJI_IMAGE_RECIPE_H
#define SHOJI_IMAGE_RECIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RECIPE_DEFAULT_SUITE "bookworm"
#define RECIPE_DEFAULT_HOSTNAME "shoji"
#define RECIPE_DEFAULT_SIZE (UINT64_C(2) << 30)
/* Below this even a minbase system with a kernel does not fit. */
#define RECIPE_MIN_SIZE (UINT64_C(256) << 20)

/* A word of the recipe with the line it came from, so that a later failure
 * (mmdebstrap does not know a package, a file to copy is missing) can still
 * name file:line. */
struct recipe_word {
	char *text;
	unsigned line;
};

struct recipe_copy {
	char *src;      /* relative to the recipe's folder */
	char *dest;     /* absolute path inside the image */
	unsigned line;
};

struct recipe {
	char *file;             /* the name errors use */
	char *text;             /* the whole recipe, as read (for OUT.json) */
	struct recipe_word suite;
	struct recipe_word kernel;
	struct recipe_word hostname;
	struct recipe_word first_boot;  /* text NULL: none */
	struct recipe_word mirror;      /* text NULL: the host's apt sources */
	uint64_t size;
	unsigned size_line;             /* 0: the default */
	struct recipe_word *packages;
	size_t npackages;
	struct recipe_copy *copies;
	size_t ncopies;
};

/* Parses text (the recipe `file` names, for messages). False after one
 * line in err; out is then untouched. */
bool recipe_parse(const char *file, const char *text, struct recipe *out, char *err,
		  size_t errlen);
/* Reads and parses the file at path. */
bool recipe_load(const char *path, struct recipe *out, char *err, size_t errlen);
/* Checks that every file the recipe names (copy sources, the first-boot
 * script) exists, relative to dir (the recipe's folder). */
bool recipe_check_files(const struct recipe *r, const char *dir, char *err, size_t errlen);
/* The line a package name came from (kernel included), 0 if none. */
unsigned recipe_package_line(const struct recipe *r, const char *name);
void recipe_free(struct recipe *r);

#endif
