/*
 * Implementation of daemon/config.h: one setter per key, shared by the
 * file and the command line, and the reader of the file's lines. Setters
 * say only what is wrong with a value; the caller puts the source in front
 * ("--stop-timeout 0: ..." or "FILE:3: stop-timeout = 0: ...").
 */
#include "daemon/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/errbuf.h"
#include "base/util.h"
#include "daemon/vmlog.h"

/* Longer than any key and path: a line beyond it is not a configuration line. */
#define CONFIG_LINE_MAX (PATH_MAX + 128)

static bool set_path(char *dst, const char *value, char *err, size_t errlen)
{
	if (strlen(value) >= PATH_MAX)
		return errbuf_fail(err, errlen, "longer than %d bytes", PATH_MAX - 1);
	memcpy(dst, value, strlen(value) + 1);
	return true;
}

static bool set_state_dir(void *ctx, const char *v, char *err, size_t errlen)
{
	return set_path(((struct shojid_config *)ctx)->state_dir, v, err, errlen);
}

static bool set_run_dir(void *ctx, const char *v, char *err, size_t errlen)
{
	return set_path(((struct shojid_config *)ctx)->run_dir, v, err, errlen);
}

static bool set_socket(void *ctx, const char *v, char *err, size_t errlen)
{
	return set_path(((struct shojid_config *)ctx)->socket, v, err, errlen);
}

static bool set_vmm(void *ctx, const char *v, char *err, size_t errlen)
{
	return set_path(((struct shojid_config *)ctx)->vmm, v, err, errlen);
}

static bool set_image_dir(void *ctx, const char *v, char *err, size_t errlen)
{
	struct shojid_config *c = ctx;
	struct stat st;
	if (c->image_dirs_from_file) {
		c->nimage_dirs = 0;
		c->image_dirs_from_file = false;
	}
	if (c->nimage_dirs == DISK_CHECK_MAX_DIRS)
		return errbuf_fail(err, errlen, "at most %d image directories", DISK_CHECK_MAX_DIRS);
	if (stat(v, &st) < 0)
		return errbuf_fail(err, errlen, "%s", strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return errbuf_fail(err, errlen, "not a directory");
	return set_path(c->image_dirs[c->nimage_dirs++], v, err, errlen);
}

static bool set_jail(void *ctx, const char *v, char *err, size_t errlen)
{
	struct shojid_config *c = ctx;
	if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0)
		return errbuf_fail(err, errlen, "use on or off");
	c->jail = strcmp(v, "on") == 0;
	if (c->jail && geteuid() != 0)
		return errbuf_fail(err, errlen, "needs root (each VMM changes user and namespaces); "
				   "use off");
	return true;
}

static bool set_seconds(unsigned *dst, const char *v, char *err, size_t errlen)
{
	uint64_t n;
	if (!parse_uint(v, 1, 3600, &n))
		return errbuf_fail(err, errlen, "must be a number of seconds from 1 to 3600");
	*dst = (unsigned)n;
	return true;
}

static bool set_stop_timeout(void *ctx, const char *v, char *err, size_t errlen)
{
	return set_seconds(&((struct shojid_config *)ctx)->stop_timeout_s, v, err, errlen);
}

static bool set_start_timeout(void *ctx, const char *v, char *err, size_t errlen)
{
	return set_seconds(&((struct shojid_config *)ctx)->start_timeout_s, v, err, errlen);
}

static bool set_backoff_ms(void *ctx, const char *v, char *err, size_t errlen)
{
	uint64_t n;
	if (!parse_uint(v, 10, 60000, &n))
		return errbuf_fail(err, errlen, "must be a number from 10 to 60000");
	((struct shojid_config *)ctx)->backoff_ms = (unsigned)n;
	return true;
}

static bool set_vmm_log_max(void *ctx, const char *v, char *err, size_t errlen)
{
	uint64_t n;
	if (!parse_size(v, &n) || n < 4 * KiB || n > 64 * GiB)
		return errbuf_fail(err, errlen, "must be a size from 4K to 64G, e.g. 8M");
	((struct shojid_config *)ctx)->vmm_log_max = n;
	return true;
}

static bool set_log_level(void *ctx, const char *v, char *err, size_t errlen)
{
	if (!log_level_parse(v, &((struct shojid_config *)ctx)->level))
		return errbuf_fail(err, errlen, "use error, warn, info or debug");
	return true;
}

static const struct kvopt_key keys[] = {
	{ .name = "state-dir", .set = set_state_dir },
	{ .name = "run-dir", .set = set_run_dir },
	{ .name = "socket", .set = set_socket },
	{ .name = "vmm", .set = set_vmm },
	{ .name = "jail", .set = set_jail },
	{ .name = "image-dir", .set = set_image_dir, .repeat = true },
	{ .name = "stop-timeout", .set = set_stop_timeout },
	{ .name = "start-timeout", .set = set_start_timeout },
	{ .name = "backoff-ms", .set = set_backoff_ms },
	{ .name = "vmm-log-max", .set = set_vmm_log_max },
	{ .name = "log-level", .set = set_log_level },
};

const struct kvopt_spec config_spec = {
	.option = "shojid.conf", .syntax = "key = value", .keys = keys, .nkeys = ARRAY_SIZE(keys),
};

void config_defaults(struct shojid_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->state_dir, sizeof(c->state_dir), "/var/lib/shoji");
	snprintf(c->run_dir, sizeof(c->run_dir), "/run/shoji");
	c->jail = geteuid() == 0;
	c->stop_timeout_s = 30;
	c->start_timeout_s = 30;
	c->backoff_ms = 1000;
	c->vmm_log_max = VMM_LOG_DEFAULT_MAX;
	c->level = LOG_LEVEL_INFO;
}

bool config_flag(struct shojid_config *c, const struct kvopt_key *k, const char *value,
		 char *err, size_t errlen)
{
	char why[256];
	if (k->set(c, value, why, sizeof(why)))
		return true;
	return errbuf_fail(err, errlen, "--%s %s: %s", k->name, value, why);
}

bool config_env(struct shojid_config *c, char *err, size_t errlen)
{
	static const struct { const char *var; const char *key; } env[] = {
		{ "SHOJI_STATE_DIR", "state-dir" },
		{ "SHOJI_RUN_DIR", "run-dir" },
		{ "SHOJI_SOCKET", "socket" },
	};
	char why[256];
	for (size_t i = 0; i < ARRAY_SIZE(env); i++) {
		const char *v = getenv(env[i].var);
		const struct kvopt_key *k = kvopt_find(&config_spec, env[i].key, strlen(env[i].key));
		if (v && v[0] && !k->set(c, v, why, sizeof(why)))
			return errbuf_fail(err, errlen, "$%s: %s", env[i].var, why);
	}
	return true;
}

/* Edit distance (adjacent swaps count one) of two short words, for "did you mean". */
static size_t distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t d[40][40];
	if (la >= 40 || lb >= 40)
		return SIZE_MAX;
	for (size_t i = 0; i <= la; i++)
		for (size_t j = 0; j <= lb; j++) {
			if (!i || !j) {
				d[i][j] = i + j;
				continue;
			}
			size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			best = d[i - 1][j] + 1 < best ? d[i - 1][j] + 1 : best;
			best = d[i][j - 1] + 1 < best ? d[i][j - 1] + 1 : best;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	return d[la][lb];
}

static bool unknown_key(const char *where, const char *key, char *err, size_t errlen)
{
	const char *near = NULL;
	size_t best = 3; /* at most two edits away */
	for (size_t i = 0; i < config_spec.nkeys; i++) {
		size_t d = distance(key, config_spec.keys[i].name);
		if (d < best) {
			best = d;
			near = config_spec.keys[i].name;
		}
	}
	if (near)
		return errbuf_fail(err, errlen, "%s: unknown key '%s'; did you mean '%s'?", where, key,
				   near);
	char list[256];
	return errbuf_fail(err, errlen, "%s: unknown key '%s'; keys are %s", where, key,
			   kvopt_key_list(&config_spec, list, sizeof(list)));
}

/* Blanks (and a CR of a file written on Windows) off both ends, in place. */
static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		s[--n] = '\0';
	return s;
}

struct reader {
	struct shojid_config *c;
	const char *path;
	unsigned lineno;
	unsigned first[ARRAY_SIZE(keys)];   /* line where each key came first, 0: not yet */
};

/* One line, `len` bytes at `line` (NUL-terminated at len). */
static bool config_line(struct reader *r, char *line, size_t len, char *err, size_t errlen)
{
	char where[PATH_MAX + 16];
	snprintf(where, sizeof(where), "%s:%u", r->path, r->lineno);
	if (strlen(line) != len)
		return errbuf_fail(err, errlen, "%s: a NUL byte; the file must be text", where);
	if (len > CONFIG_LINE_MAX)
		return errbuf_fail(err, errlen, "%s: line longer than %d bytes", where, CONFIG_LINE_MAX);
	char *text = trim(line);
	if (!text[0] || text[0] == '#')
		return true;
	char *eq = strchr(text, '=');
	if (!eq)
		return errbuf_fail(err, errlen, "%s: '%.60s' is not key = value, e.g. stop-timeout = 60",
				   where, text);
	*eq = '\0';
	char *key = trim(text), *value = trim(eq + 1);
	if (!key[0])
		return errbuf_fail(err, errlen, "%s: no key before '='; use key = value, e.g. "
				   "stop-timeout = 60", where);
	const struct kvopt_key *k = kvopt_find(&config_spec, key, strlen(key));
	if (!k)
		return unknown_key(where, key, err, errlen);
	size_t i = (size_t)(k - keys);
	if (!value[0])
		return errbuf_fail(err, errlen, "%s: %s has an empty value; give one, or remove the "
				   "line for the default", where, key);
	if (r->first[i] && !k->repeat)
		return errbuf_fail(err, errlen, "%s: %s given twice (first on line %u); keep one",
				   where, key, r->first[i]);
	if (!r->first[i])
		r->first[i] = r->lineno;
	char why[256];
	if (!k->set(r->c, value, why, sizeof(why)))
		return errbuf_fail(err, errlen, "%s: %s = %.200s: %s", where, key, value, why);
	return true;
}

bool config_load(struct shojid_config *c, const char *path, bool must_exist, char *err,
		 size_t errlen)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		if (errno == ENOENT && !must_exist)
			return true;
		return errbuf_fail(err, errlen, "%s: %s%s", path, strerror(errno),
				   must_exist ? " (the file given with --config)" : "");
	}
	struct reader r = { .c = c, .path = path };
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	bool ok = true;
	errno = 0;
	while (ok && (n = getline(&line, &cap, f)) >= 0) {
		r.lineno++;
		ok = config_line(&r, line, (size_t)n, err, errlen);
	}
	if (ok && ferror(f))
		ok = errbuf_fail(err, errlen, "%s: %s", path, strerror(errno ? errno : EIO));
	free(line);
	fclose(f);
	/* The command line's first --image-dir replaces these, not adds to them. */
	c->image_dirs_from_file = c->nimage_dirs > 0;
	return ok;
}
