/* Implementation of cli/shoji-create-opts.h: one kvopt table per option. */
#include "cli/shoji-create-opts.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/errbuf.h"
#include "base/kvopt.h"
#include "base/util.h"

#define DISK_SYNTAX "path=P[,format=raw|qcow2][,readonly=on|off][,direct=on|off][,serial=S]" \
	"[,aio=auto|threads|io_uring]"
#define NET_SYNTAX "user[,hostfwd=tcp:ADDR:PORT-:PORT]...[,mac=M] or tap=NAME[,mac=M]"

json_t *cli_abs_path(const char *p)
{
	char buf[PATH_MAX];
	return json_string(realpath(p, buf) ? buf : p); /* a missing file: the daemon names it */
}

static bool set_string(json_t *obj, const char *key, const char *value)
{
	json_object_set_new(obj, key, json_string(value));
	return true;
}

static bool set_on_off(json_t *obj, const char *key, const char *value, char *err, size_t errlen)
{
	bool on;
	if (!kvopt_on_off("--disk", key, value, &on, err, errlen))
		return false;
	json_object_set_new(obj, key, json_boolean(on));
	return true;
}

static bool disk_path(void *ctx, const char *value, char *err, size_t errlen)
{
	(void)err, (void)errlen;
	json_object_set_new(ctx, "path", cli_abs_path(value));
	return true;
}

static bool disk_format(void *ctx, const char *value, char *err, size_t errlen)
{
	(void)err, (void)errlen;
	return set_string(ctx, "format", value);
}

static bool disk_readonly(void *ctx, const char *value, char *err, size_t errlen)
{
	return set_on_off(ctx, "readonly", value, err, errlen);
}

static bool disk_direct(void *ctx, const char *value, char *err, size_t errlen)
{
	return set_on_off(ctx, "direct", value, err, errlen);
}

static bool disk_serial(void *ctx, const char *value, char *err, size_t errlen)
{
	(void)err, (void)errlen;
	return set_string(ctx, "serial", value);
}

static bool disk_aio(void *ctx, const char *value, char *err, size_t errlen)
{
	(void)err, (void)errlen;
	return set_string(ctx, "aio", value);
}

/* A definition must not widen what the daemon lets an image's backing chain reach. */
static bool disk_backing_dir(void *ctx, const char *value, char *err, size_t errlen)
{
	(void)ctx;
	return errbuf_fail(err, errlen, "--disk backing-dir=%s: shojid decides where backing files "
			   "may lie (shojid --image-dir); leave backing-dir= out", value);
}

static const struct kvopt_key disk_keys[] = {
	{ .name = "path", .set = disk_path, .required = true },
	{ .name = "format", .set = disk_format },
	{ .name = "readonly", .set = disk_readonly },
	{ .name = "direct", .set = disk_direct },
	{ .name = "serial", .set = disk_serial, .free_text = true },
	{ .name = "aio", .set = disk_aio },
	{ .name = "backing-dir", .set = disk_backing_dir, .repeat = true },
};

static const struct kvopt_spec disk_spec = {
	.option = "--disk",
	.syntax = DISK_SYNTAX,
	.keys = disk_keys,
	.nkeys = sizeof(disk_keys) / sizeof(disk_keys[0]),
};

bool cli_disk_parse(const char *text, json_t *disk, char *err, size_t errlen)
{
	return kvopt_parse(&disk_spec, text, disk, err, errlen);
}

/* May repeat: collected in order into "hostfwd". */
static bool net_hostfwd(void *ctx, const char *value, char *err, size_t errlen)
{
	(void)err, (void)errlen;
	json_t *fw = json_object_get(ctx, "hostfwd");
	if (!fw) {
		fw = json_array();
		json_object_set_new(ctx, "hostfwd", fw);
	}
	json_array_append_new(fw, json_string(value));
	return true;
}

static bool net_mac(void *ctx, const char *value, char *err, size_t errlen)
{
	(void)err, (void)errlen;
	return set_string(ctx, "mac", value);
}

static const struct kvopt_key net_keys[] = {
	{ .name = "hostfwd", .set = net_hostfwd, .repeat = true },
	{ .name = "mac", .set = net_mac },
};

static const struct kvopt_spec net_spec = {
	.option = "--net",
	.syntax = NET_SYNTAX,
	.keys = net_keys,
	.nkeys = sizeof(net_keys) / sizeof(net_keys[0]),
};

/* The first item names the back end, as in shoji-vmm --net. */
static bool net_kind(const char *item, size_t len, json_t *net, char *err, size_t errlen)
{
	if (len == 4 && strncmp(item, "user", 4) == 0)
		return set_string(net, "type", "user");
	if (len > 4 && strncmp(item, "tap=", 4) == 0) {
		json_object_set_new(net, "tap", json_stringn(item + 4, len - 4));
		return set_string(net, "type", "tap");
	}
	return errbuf_fail(err, errlen, "--net %.*s: the first item names the back end; use "
			   NET_SYNTAX, (int)len, item);
}

bool cli_net_parse(const char *text, json_t *net, char *err, size_t errlen)
{
	const char *comma = strchr(text, ',');
	if (!net_kind(text, comma ? (size_t)(comma - text) : strlen(text), net, err, errlen))
		return false;
	return !comma || kvopt_parse(&net_spec, comma + 1, net, err, errlen);
}

/* Only a number here; the daemon checks its range. */
static bool vsock_cid(void *ctx, const char *value, char *err, size_t errlen)
{
	uint64_t cid;
	if (!parse_uint(value, 0, INT64_MAX, &cid))
		return errbuf_fail(err, errlen, "--vsock cid=%s: use a number", value);
	json_object_set_new(ctx, "cid", json_integer((json_int_t)cid));
	return true;
}

static const struct kvopt_key vsock_keys[] = {
	{ .name = "cid", .set = vsock_cid, .required = true },
};

static const struct kvopt_spec vsock_spec = {
	.option = "--vsock",
	.syntax = "cid=N",
	.keys = vsock_keys,
	.nkeys = sizeof(vsock_keys) / sizeof(vsock_keys[0]),
};

bool cli_vsock_parse(const char *text, json_t *vsock, char *err, size_t errlen)
{
	return kvopt_parse(&vsock_spec, text, vsock, err, errlen);
}
