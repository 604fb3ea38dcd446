/*
 * Implementation of image/recipe.h. One table row per key (its name, whether
 * it may repeat, and the function that checks and stores its value), so a
 * new key is one function and one row. Every message starts with
 * "file:line: key 'name'" and ends with what would be accepted.
 */
#include "image/recipe.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/errbuf.h"
#include "base/util.h"

#define MAX_WORDS 64 /* per line; more packages go on another packages = line */
#define MAX_RECIPE_BYTES (1u << 20)

/* What a key's function gets: where it is, for its messages. */
struct at {
	const char *file;
	unsigned line;
	const char *key;
	char *err;
	size_t errlen;
};

#define FAIL(a, fmt, ...) \
	errbuf_fail((a)->err, (a)->errlen, "%s:%u: key '%s': " fmt, (a)->file, (a)->line, (a)->key, \
		    __VA_ARGS__)

/* Debian policy 5.6.1: lower case letters, digits, + - . ; at least two
 * characters, starting with a letter or digit. */
static bool is_package_name(const char *s)
{
	if (strlen(s) < 2 || !(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])))
		return false;
	for (; *s; s++)
		if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && !strchr("+-.", *s))
			return false;
	return true;
}

/* RFC 1123 host name label: 1-63 letters, digits, '-', no '-' at the ends. */
static bool is_hostname(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-')
			return false;
	return true;
}

static bool has_dotdot(const char *path)
{
	for (const char *p = path; (p = strstr(p, "..")); p += 2)
		if ((p == path || p[-1] == '/') && (p[2] == '\0' || p[2] == '/'))
			return true;
	return false;
}

static bool set_word(struct recipe_word *w, const char *text, unsigned line)
{
	w->text = strdup(text);
	w->line = line;
	return w->text != NULL;
}

static bool one_word(struct at *a, size_t n, const char *example)
{
	return n == 1 || FAIL(a, "takes one value, e.g. '%s = %s'", a->key, example);
}

static bool key_suite(struct recipe *r, char **w, size_t n, struct at *a)
{
	if (!one_word(a, n, "bookworm"))
		return false;
	for (const char *p = w[0]; *p; p++)
		if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '-')
			return FAIL(a, "'%s' is not a suite name (lower case letters, digits, '-'), "
				    "e.g. bookworm", w[0]);
	return set_word(&r->suite, w[0], a->line);
}

static bool key_kernel(struct recipe *r, char **w, size_t n, struct at *a)
{
	if (!one_word(a, n, "linux-image-cloud-amd64"))
		return false;
	if (!is_package_name(w[0]))
		return FAIL(a, "'%s' is not a Debian package name (lower case letters, digits, + - .), "
			    "e.g. linux-image-amd64", w[0]);
	return set_word(&r->kernel, w[0], a->line);
}

static bool key_packages(struct recipe *r, char **w, size_t n, struct at *a)
{
	for (size_t i = 0; i < n; i++)
		if (!is_package_name(w[i]))
			return FAIL(a, "'%s' is not a Debian package name (lower case letters, digits, "
				    "+ - .); separate names with spaces", w[i]);
	struct recipe_word *p = realloc(r->packages, (r->npackages + n) * sizeof(*p));
	if (!p)
		return FAIL(a, "%s", "out of memory");
	r->packages = p;
	for (size_t i = 0; i < n; i++)
		if (!set_word(&r->packages[r->npackages++], w[i], a->line))
			return FAIL(a, "%s", "out of memory");
	return true;
}

static bool key_copy(struct recipe *r, char **w, size_t n, struct at *a)
{
	if (n != 2)
		return FAIL(a, "takes SRC DEST, e.g. 'copy = files/motd /etc/motd' (%zu value%s given)",
			    n, n == 1 ? "" : "s");
	if (w[0][0] == '/')
		return FAIL(a, "source '%s' must be relative to the recipe's folder, e.g. files/motd",
			    w[0]);
	if (w[1][0] != '/')
		return FAIL(a, "destination '%s' must be an absolute path in the image, e.g. /etc/motd",
			    w[1]);
	if (has_dotdot(w[1]))
		return FAIL(a, "destination '%s' must not contain '..'; name the directory itself", w[1]);
	struct recipe_copy *c = realloc(r->copies, (r->ncopies + 1) * sizeof(*c));
	if (!c)
		return FAIL(a, "%s", "out of memory");
	r->copies = c;
	c = &r->copies[r->ncopies++];
	*c = (struct recipe_copy){ strdup(w[0]), strdup(w[1]), a->line };
	return (c->src && c->dest) || FAIL(a, "%s", "out of memory");
}

static bool key_hostname(struct recipe *r, char **w, size_t n, struct at *a)
{
	if (!one_word(a, n, "desk"))
		return false;
	if (!is_hostname(w[0]))
		return FAIL(a, "'%s' is not a host name (1-63 letters, digits, '-', not at either end)",
			    w[0]);
	return set_word(&r->hostname, w[0], a->line);
}

static bool key_size(struct recipe *r, char **w, size_t n, struct at *a)
{
	uint64_t v;
	if (!one_word(a, n, "2G"))
		return false;
	if (!parse_size(w[0], &v))
		return FAIL(a, "'%s' is not a size; write e.g. 2G or 1536M", w[0]);
	if (v < RECIPE_MIN_SIZE)
		return FAIL(a, "%s is too small for a system with a kernel; use at least 256M", w[0]);
	if (v % 4096)
		return FAIL(a, "%s is not a multiple of 4K (the file system's block); e.g. 2G", w[0]);
	r->size = v;
	r->size_line = a->line;
	return true;
}

static bool key_first_boot(struct recipe *r, char **w, size_t n, struct at *a)
{
	if (!one_word(a, n, "first-boot.sh"))
		return false;
	if (w[0][0] == '/')
		return FAIL(a, "'%s' must be relative to the recipe's folder, e.g. first-boot.sh", w[0]);
	return set_word(&r->first_boot, w[0], a->line);
}

static bool key_mirror(struct recipe *r, char **w, size_t n, struct at *a)
{
	if (!one_word(a, n, "http://deb.debian.org/debian"))
		return false;
	if (strncmp(w[0], "http://", 7) && strncmp(w[0], "https://", 8) && strncmp(w[0], "file:/", 6))
		return FAIL(a, "'%s' is not an http://, https:// or file:/ URL, e.g. "
			    "http://deb.debian.org/debian", w[0]);
	return set_word(&r->mirror, w[0], a->line);
}

static const struct key {
	const char *name;
	bool repeats;
	bool (*set)(struct recipe *r, char **w, size_t n, struct at *a);
} keys[] = {
	{ "suite", false, key_suite },
	{ "kernel", false, key_kernel },
	{ "packages", true, key_packages },
	{ "copy", true, key_copy },
	{ "hostname", false, key_hostname },
	{ "size", false, key_size },
	{ "first-boot", false, key_first_boot },
	{ "mirror", false, key_mirror },
};
#define KEY_LIST "suite, kernel, packages, copy, hostname, size, first-boot, mirror"

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* A '#' at the start of a line or after a blank starts a comment. */
static void strip_comment(char *s)
{
	for (char *p = s; *p; p++)
		if (*p == '#' && (p == s || isspace((unsigned char)p[-1]))) {
			*p = '\0';
			return;
		}
}

static size_t split_words(char *s, char **w, size_t max)
{
	size_t n = 0;
	for (char *save = NULL, *t = strtok_r(s, " \t", &save); t; t = strtok_r(NULL, " \t", &save))
		if (n < max)
			w[n++] = t;
		else
			return max + 1;
	return n;
}

/* One non-blank, non-comment line. seen[] holds the line each key was
 * first given on, to refuse a second one. */
static bool parse_line(struct recipe *r, char *line, struct at *a, unsigned *seen)
{
	char *eq = strchr(line, '=');
	if (!eq)
		return errbuf_fail(a->err, a->errlen, "%s:%u: '%s' is not 'key = value'; "
				   "e.g. 'packages = curl', or start a comment with '#'",
				   a->file, a->line, line);
	*eq = '\0';
	char *key = trim(line), *value = trim(eq + 1), *w[MAX_WORDS];
	size_t k = 0;
	while (k < ARRAY_SIZE(keys) && strcmp(keys[k].name, key) != 0)
		k++;
	if (k == ARRAY_SIZE(keys))
		return errbuf_fail(a->err, a->errlen, "%s:%u: unknown key '%s'; the keys are " KEY_LIST,
				   a->file, a->line, key);
	a->key = keys[k].name;
	if (!keys[k].repeats && seen[k])
		return FAIL(a, "given twice (first on line %u); keep one", seen[k]);
	size_t n = split_words(value, w, MAX_WORDS);
	if (n == 0)
		return FAIL(a, "has no value; write '%s = VALUE' or remove the line", a->key);
	if (n > MAX_WORDS)
		return FAIL(a, "more than %d values on one line; continue on another '%s =' line",
			    MAX_WORDS, a->key);
	seen[k] = a->line;
	return keys[k].set(r, w, n, a);
}

static bool fill_defaults(struct recipe *r, const char *file, char *err, size_t errlen)
{
	if (!r->kernel.text)
		return errbuf_fail(err, errlen, "%s: key 'kernel' is missing; add e.g. "
				   "'kernel = linux-image-cloud-amd64'", file);
	if ((!r->suite.text && !set_word(&r->suite, RECIPE_DEFAULT_SUITE, 0)) ||
	    (!r->hostname.text && !set_word(&r->hostname, RECIPE_DEFAULT_HOSTNAME, 0)))
		return errbuf_fail(err, errlen, "%s: out of memory", file);
	if (!r->size)
		r->size = RECIPE_DEFAULT_SIZE;
	return true;
}

bool recipe_parse(const char *file, const char *text, struct recipe *out, char *err, size_t errlen)
{
	struct recipe r = { .file = strdup(file), .text = strdup(text) };
	unsigned seen[ARRAY_SIZE(keys)] = { 0 };
	char *copy = strdup(text);
	bool ok = r.file && r.text && copy;
	if (!ok)
		errbuf_fail(err, errlen, "%s: out of memory", file);
	/* strsep, not strtok: empty lines must still count. */
	char *rest = copy;
	unsigned lineno = 0;
	for (char *line; ok && (line = strsep(&rest, "\n"));) {
		struct at a = { file, ++lineno, NULL, err, errlen };
		strip_comment(line);
		line = trim(line);
		if (*line)
			ok = parse_line(&r, line, &a, seen);
	}
	free(copy);
	if (ok)
		ok = fill_defaults(&r, file, err, errlen);
	if (!ok) {
		recipe_free(&r);
		return false;
	}
	*out = r;
	return true;
}

bool recipe_load(const char *path, struct recipe *out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return errbuf_fail(err, errlen, "%s: cannot read the recipe: %m", path);
	char *buf = malloc(MAX_RECIPE_BYTES + 1);
	size_t n = buf ? fread(buf, 1, MAX_RECIPE_BYTES + 1, f) : 0;
	bool bad = ferror(f);
	fclose(f);
	bool ok = false;
	if (!buf)
		errbuf_fail(err, errlen, "%s: out of memory", path);
	else if (bad)
		errbuf_fail(err, errlen, "%s: cannot read the recipe", path);
	else if (n > MAX_RECIPE_BYTES)
		errbuf_fail(err, errlen, "%s: longer than 1 MiB; is it really a recipe?", path);
	else if (memchr(buf, '\0', n))
		errbuf_fail(err, errlen, "%s: contains a NUL byte; a recipe is a text file", path);
	else {
		buf[n] = '\0';
		ok = recipe_parse(path, buf, out, err, errlen);
	}
	free(buf);
	return ok;
}

static bool check_file(const char *file, unsigned line, const char *key, const char *dir,
		       const char *rel, bool dir_ok, char *err, size_t errlen)
{
	char path[4096];
	struct stat st;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, rel) >= sizeof(path))
		return errbuf_fail(err, errlen, "%s:%u: key '%s': path too long (%zu bytes); "
				   "use a shorter one", file, line, key, strlen(rel));
	if (stat(path, &st) < 0)
		return errbuf_fail(err, errlen, "%s:%u: key '%s': %s: %m (paths are relative to the "
				   "recipe's folder %s)", file, line, key, rel, dir);
	if (!S_ISREG(st.st_mode) && !(dir_ok && S_ISDIR(st.st_mode)))
		return errbuf_fail(err, errlen, "%s:%u: key '%s': %s is not a regular file%s", file,
				   line, key, rel, dir_ok ? " or a directory" : "");
	return true;
}

bool recipe_check_files(const struct recipe *r, const char *dir, char *err, size_t errlen)
{
	for (size_t i = 0; i < r->ncopies; i++)
		if (!check_file(r->file, r->copies[i].line, "copy", dir, r->copies[i].src, true, err,
				errlen))
			return false;
	return !r->first_boot.text ||
	       check_file(r->file, r->first_boot.line, "first-boot", dir, r->first_boot.text, false,
			  err, errlen);
}

unsigned recipe_package_line(const struct recipe *r, const char *name)
{
	if (r->kernel.text && strcmp(r->kernel.text, name) == 0)
		return r->kernel.line;
	for (size_t i = 0; i < r->npackages; i++)
		if (strcmp(r->packages[i].text, name) == 0)
			return r->packages[i].line;
	return 0;
}

void recipe_free(struct recipe *r)
{
	free(r->file);
	free(r->text);
	free(r->suite.text);
	free(r->kernel.text);
	free(r->hostname.text);
	free(r->first_boot.text);
	free(r->mirror.text);
	for (size_t i = 0; i < r->npackages; i++)
		free(r->packages[i].text);
	free(r->packages);
	for (size_t i = 0; i < r->ncopies; i++) {
		free(r->copies[i].src);
		free(r->copies[i].dest);
	}
	free(r->copies);
	*r = (struct recipe){ 0 };
}
