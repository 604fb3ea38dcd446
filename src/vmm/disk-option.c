/*
 * Parser for --disk path=P[,readonly=on|off][,serial=S][,direct=on|off]
 * [,format=raw|qcow2][,aio=auto|threads|io_uring][,backing-dir=DIR]...: a
 * comma-separated key=value list, one table entry
 * per key. Every mistake is reported in one line naming the key and value
 * and what would be accepted; nothing is ever silently defaulted.
 */
#include "vmm/disk-option.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/errbuf.h"

#define DISK_SYNTAX "path=IMAGE[,readonly=on|off][,serial=S][,direct=on|off][,format=raw|qcow2]" \
	"[,aio=auto|threads|io_uring][,backing-dir=DIR]..."

static bool parse_on_off(const char *key, const char *value, bool *out, char *err, size_t errlen)
{
	if (strcmp(value, "on") == 0)
		*out = true;
	else if (strcmp(value, "off") == 0)
		*out = false;
	else
		return errbuf_fail(err, errlen, "--disk %s=%s: use %s=on or %s=off", key, value, key, key);
	return true;
}

static bool key_path(struct disk_option *d, const char *value, char *err, size_t errlen)
{
	if (strlen(value) >= sizeof(d->path))
		return errbuf_fail(err, errlen, "--disk path=%.40s...: path longer than %zu bytes", value,
			           sizeof(d->path) - 1);
	strcpy(d->path, value);
	return true;
}

static bool key_readonly(struct disk_option *d, const char *value, char *err, size_t errlen)
{
	return parse_on_off("readonly", value, &d->read_only, err, errlen);
}

static bool key_direct(struct disk_option *d, const char *value, char *err, size_t errlen)
{
	return parse_on_off("direct", value, &d->direct, err, errlen);
}

static bool key_format(struct disk_option *d, const char *value, char *err, size_t errlen)
{
	if (strcmp(value, "raw") != 0 && strcmp(value, "qcow2") != 0)
		return errbuf_fail(err, errlen, "--disk format=%s: use format=raw or format=qcow2", value);
	strcpy(d->format, value);
	return true;
}

static bool key_aio(struct disk_option *d, const char *value, char *err, size_t errlen)
{
	if (strcmp(value, "auto") == 0)
		d->aio = VIRTIO_BLK_AIO_AUTO;
	else if (strcmp(value, "threads") == 0)
		d->aio = VIRTIO_BLK_AIO_THREADS;
	else if (strcmp(value, "io_uring") == 0)
		d->aio = VIRTIO_BLK_AIO_IO_URING;
	else
		return errbuf_fail(err, errlen, "--disk aio=%s: use aio=auto, aio=threads or aio=io_uring",
			           value);
	return true;
}

/* May repeat: the directories a qcow2 image's backing files must lie in. */
static bool key_backing_dir(struct disk_option *d, const char *value, char *err, size_t errlen)
{
	if (d->nbacking_dirs == VIRTIO_BLK_MAX_BACKING_DIRS)
		return errbuf_fail(err, errlen, "--disk backing-dir=%s: at most %d backing directories",
			           value, VIRTIO_BLK_MAX_BACKING_DIRS);
	struct stat st;
	if (stat(value, &st) < 0)
		return errbuf_fail(err, errlen, "--disk backing-dir=%s: %s", value, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return errbuf_fail(err, errlen, "--disk backing-dir=%s: not a directory", value);
	if (strlen(value) >= sizeof(d->backing_dirs[0]))
		return errbuf_fail(err, errlen, "--disk backing-dir=%.40s...: path too long", value);
	strcpy(d->backing_dirs[d->nbacking_dirs++], value);
	return true;
}

/* The guest reads the serial as up to 20 bytes of text (GET_ID). */
static bool key_serial(struct disk_option *d, const char *value, char *err, size_t errlen)
{
	size_t len = strlen(value);
	if (len > VIRTIO_BLK_ID_BYTES)
		return errbuf_fail(err, errlen, "--disk serial=%s: %zu bytes, at most %d are accepted",
			           value, len, VIRTIO_BLK_ID_BYTES);
	for (size_t i = 0; i < len; i++)
		if (value[i] < 0x21 || value[i] > 0x7e)
			return errbuf_fail(err, errlen, "--disk serial=%s: only printable ASCII without "
				           "spaces or commas is accepted", value);
	memcpy(d->serial, value, len + 1);
	d->has_serial = true;
	return true;
}

static const struct disk_key {
	const char *name;
	bool (*parse)(struct disk_option *d, const char *value, char *err, size_t errlen);
} disk_keys[] = {
	{ "path", key_path },
	{ "readonly", key_readonly },
	{ "serial", key_serial },
	{ "direct", key_direct },
	{ "format", key_format },
	{ "aio", key_aio },
	{ "backing-dir", key_backing_dir },
};

#define NKEYS (sizeof(disk_keys) / sizeof(disk_keys[0]))

static const struct disk_key *find_key(const char *name, size_t len)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strlen(disk_keys[i].name) == len && strncmp(disk_keys[i].name, name, len) == 0)
			return &disk_keys[i];
	return NULL;
}

/*
 * One "key=value" item (item points into the option text, len bytes).
 * `prev` is the key of the previous item, to explain a comma in a serial.
 */
static bool parse_item(struct disk_option *d, const char *item, size_t len, bool seen[NKEYS],
		       const struct disk_key *prev, const struct disk_key **out,
		       char *err, size_t errlen)
{
	const char *eq = memchr(item, '=', len);
	if (len == 0)
		return errbuf_fail(err, errlen, "--disk: empty item (a doubled or trailing comma); "
			           "use " DISK_SYNTAX);
	if (!eq && prev && strcmp(prev->name, "serial") == 0)
		return errbuf_fail(err, errlen, "--disk serial: '%.*s' follows a comma; a serial may not "
			           "contain commas", (int)len, item);
	if (!eq)
		return errbuf_fail(err, errlen, "--disk '%.*s': not key=value; use " DISK_SYNTAX,
			           (int)len, item);
	size_t klen = (size_t)(eq - item);
	const struct disk_key *k = find_key(item, klen);
	if (!k)
		return errbuf_fail(err, errlen, "--disk %.*s: unknown key '%.*s'; keys are path, readonly, "
			           "serial, direct, format, aio, backing-dir", (int)len, item, (int)klen, item);
	if (seen[k - disk_keys] && k->parse != key_backing_dir)
		return errbuf_fail(err, errlen, "--disk %.*s: key '%s' given twice", (int)len, item, k->name);
	seen[k - disk_keys] = true;
	char value[PATH_MAX + 1];
	size_t vlen = len - klen - 1;
	if (vlen == 0)
		return errbuf_fail(err, errlen, "--disk %s=: empty value", k->name);
	if (vlen >= sizeof(value))
		return errbuf_fail(err, errlen, "--disk %s=%.40s...: value too long", k->name, eq + 1);
	memcpy(value, eq + 1, vlen);
	value[vlen] = '\0';
	*out = k;
	return k->parse(d, value, err, errlen);
}

/* The image must be there and usable as asked, so a typo fails now. */
static bool check_file(const struct disk_option *d, char *err, size_t errlen)
{
	struct stat st;
	if (stat(d->path, &st) < 0)
		return errbuf_fail(err, errlen, "--disk path=%s: %s", d->path, strerror(errno));
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return errbuf_fail(err, errlen, "--disk path=%s: not a regular file or block device",
			           d->path);
	if (access(d->path, R_OK) < 0)
		return errbuf_fail(err, errlen, "--disk path=%s: cannot read: %s", d->path,
			           strerror(errno));
	if (!d->read_only && access(d->path, W_OK) < 0)
		return errbuf_fail(err, errlen, "--disk path=%s: cannot write: %s; add readonly=on to "
			           "use it read-only", d->path, strerror(errno));
	return true;
}

bool disk_option_parse(const char *text, struct disk_option *out, char *err, size_t errlen)
{
	struct disk_option d = { .format = "raw" };
	bool seen[NKEYS] = { false };
	const struct disk_key *prev = NULL;
	const char *p = text;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		const struct disk_key *k = NULL;
		if (!parse_item(&d, p, len, seen, prev, &k, err, errlen))
			return false;
		prev = k;
		if (!comma)
			break;
		p = comma + 1;
	}
	if (!d.path[0])
		return errbuf_fail(err, errlen, "--disk %s: path= is missing; use " DISK_SYNTAX, text);
	if (!check_file(&d, err, errlen))
		return false;
	*out = d;
	return true;
}

struct virtio_blk_config disk_option_config(const struct disk_option *d)
{
	struct virtio_blk_config c = {
		.path = d->path,
		.format = d->format,
		.read_only = d->read_only,
		.serial = d->has_serial ? d->serial : NULL,
		.direct = d->direct,
		.aio = d->aio,
	};
	for (unsigned i = 0; i < d->nbacking_dirs; i++)
		c.backing_dirs[i] = d->backing_dirs[i];
	return c;
}
