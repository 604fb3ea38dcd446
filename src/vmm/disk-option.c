/*
 * Parser for --disk path=P[,readonly=on|off][,serial=S][,direct=on|off]
 * [,format=raw|qcow2][,aio=auto|threads|io_uring][,backing-dir=DIR]...: a
 * comma-separated key=value list split by base/kvopt, one table entry per
 * key. Every mistake is reported in one line naming the key and value and
 * what would be accepted; nothing is ever silently defaulted. At its end,
 * the disk device kind (vmm/devices.h): one virtio-blk device per --disk.
 */
#include "vmm/disk-option.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/errbuf.h"
#include "base/kvopt.h"
#include "vmm/devices.h"
#include "vmm/exit.h"
#include "vmm/virtio-host.h"

#define DISK_SYNTAX "path=IMAGE[,readonly=on|off][,serial=S][,direct=on|off][,format=raw|qcow2]" \
	"[,aio=auto|threads|io_uring][,backing-dir=DIR]..."

static bool key_path(void *ctx, const char *value, char *err, size_t errlen)
{
	struct disk_option *d = ctx;
	if (strlen(value) >= sizeof(d->path))
		return errbuf_fail(err, errlen, "--disk path=%.40s...: path longer than %zu bytes", value,
				   sizeof(d->path) - 1);
	strcpy(d->path, value);
	return true;
}

static bool key_readonly(void *ctx, const char *value, char *err, size_t errlen)
{
	struct disk_option *d = ctx;
	return kvopt_on_off("--disk", "readonly", value, &d->read_only, err, errlen);
}

static bool key_direct(void *ctx, const char *value, char *err, size_t errlen)
{
	struct disk_option *d = ctx;
	return kvopt_on_off("--disk", "direct", value, &d->direct, err, errlen);
}

static bool key_format(void *ctx, const char *value, char *err, size_t errlen)
{
	struct disk_option *d = ctx;
	if (strcmp(value, "raw") != 0 && strcmp(value, "qcow2") != 0)
		return errbuf_fail(err, errlen, "--disk format=%s: use format=raw or format=qcow2", value);
	strcpy(d->format, value);
	return true;
}

static bool key_aio(void *ctx, const char *value, char *err, size_t errlen)
{
	struct disk_option *d = ctx;
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
static bool key_backing_dir(void *ctx, const char *value, char *err, size_t errlen)
{
	struct disk_option *d = ctx;
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
static bool key_serial(void *ctx, const char *value, char *err, size_t errlen)
{
	struct disk_option *d = ctx;
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

static const struct kvopt_key disk_keys[] = {
	{ .name = "path", .set = key_path, .required = true },
	{ .name = "readonly", .set = key_readonly },
	{ .name = "serial", .set = key_serial, .free_text = true },
	{ .name = "direct", .set = key_direct },
	{ .name = "format", .set = key_format },
	{ .name = "aio", .set = key_aio },
	{ .name = "backing-dir", .set = key_backing_dir, .repeat = true },
};

static const struct kvopt_spec disk_spec = {
	.option = "--disk",
	.syntax = DISK_SYNTAX,
	.keys = disk_keys,
	.nkeys = sizeof(disk_keys) / sizeof(disk_keys[0]),
};

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
	if (!kvopt_parse(&disk_spec, text, &d, err, errlen) || !check_file(&d, err, errlen))
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

static bool disk_parse(const char *value, unsigned index, void *out, char *err, size_t errlen)
{
	(void)index;
	return disk_option_parse(value, out, err, errlen);
}

/* The disks, in command-line order, and how many there are. */
struct disks {
	unsigned n;
	struct virtio_blk *blk[];
};

static int disk_create(const struct vmm_device_env *env, const void *opts, unsigned n, void **state)
{
	const struct disk_option *d = opts;
	struct disks *disks = calloc(1, sizeof(*disks) + n * sizeof(disks->blk[0]));
	*state = disks;
	if (!disks)
		return VMM_EXIT_FAILURE;
	for (unsigned i = 0; i < n; i++) {
		struct virtio_blk_config cfg = disk_option_config(&d[i]);
		disks->blk[i] = virtio_blk_create(&cfg, env->mem);
		if (!disks->blk[i])
			return VMM_EXIT_USAGE; /* in use, corrupt, unreadable: the user's to fix */
		disks->n = i + 1;
		if (!virtio_host_add(env->virtio, &virtio_blk_ops, disks->blk[i]))
			return VMM_EXIT_FAILURE;
	}
	return 0;
}

static void disk_destroy(void *state)
{
	struct disks *disks = state;
	for (unsigned i = 0; disks && i < disks->n; i++)
		virtio_blk_destroy(disks->blk[i]); /* flushes, closes and unlocks */
	free(disks);
}

const struct vmm_device_kind disk_device = {
	.option = "disk",
	.has_value = true,
	.usage = "  --disk path=P[,format=raw|qcow2][,readonly=on][,serial=S][,direct=on][,aio=MODE]\n"
		 "         [,backing-dir=DIR]...\n"
		 "                        a virtio-blk disk (up to 8; raw unless format= says);\n"
		 "                        backing files only in the image's directory or a backing-dir\n",
	.parse = disk_parse,
	.create = disk_create,
	.destroy = disk_destroy,
};
