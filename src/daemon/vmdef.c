/*
 * Definition parsing and checking (see vmdef.h). Keys are dispatched
 * through tables, one small checker per key; an unknown key is an error
 * (a typo in a hand-edited file must not silently drop a setting). Messages
 * carry the key's line, found again in the text by jsonpos.c.
 */
#include "daemon/vmdef.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "daemon/jsonpos.h"

struct ctx {
	const char *text;
	const char *source;
	char *err;
	size_t errlen;
	struct vmdef *d;
};

static bool fail_at(struct ctx *c, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool fail_at(struct ctx *c, const char *path, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	int line = jsonpos_key_line(c->text, path);
	snprintf(c->err, c->errlen, "%s:%d: key '%s': %s", c->source, line ? line : 1, path, msg);
	return false;
}

/* A key's path below `p`; truncation only shortens a message. */
static void subpath(char *out, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void subpath(char *out, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out, len, fmt, ap);
	va_end(ap);
}

const char *vm_role_name(enum vm_role role)
{
	return role == VM_ROLE_SERVICE ? "service" : "client";
}

/* ---- value helpers ---- */

static bool get_string(struct ctx *c, const char *path, json_t *v, char *out, size_t len)
{
	if (!json_is_string(v))
		return fail_at(c, path, "must be a string");
	const char *s = json_string_value(v);
	if (strlen(s) != json_string_length(v))
		return fail_at(c, path, "must not contain NUL bytes");
	if (strlen(s) >= len)
		return fail_at(c, path, "longer than %zu bytes", len - 1);
	memcpy(out, s, strlen(s) + 1);
	return true;
}

static bool get_bool(struct ctx *c, const char *path, json_t *v, bool *out)
{
	if (!json_is_boolean(v))
		return fail_at(c, path, "must be true or false");
	*out = json_is_true(v);
	return true;
}

/* An absolute path to a readable regular file (and writable unless readonly). */
static bool get_file(struct ctx *c, const char *path, json_t *v, char *out, size_t len, bool write)
{
	if (!get_string(c, path, v, out, len))
		return false;
	if (out[0] != '/')
		return fail_at(c, path, "'%s' must be an absolute path", out);
	struct stat st;
	if (stat(out, &st) < 0)
		return fail_at(c, path, "%s: %s", out, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail_at(c, path, "%s: not a regular file", out);
	if (access(out, write ? R_OK | W_OK : R_OK) < 0)
		return fail_at(c, path, "%s: %s", out, strerror(errno));
	return true;
}

/* ---- top-level keys ---- */

static bool key_name(struct ctx *c, const char *p, json_t *v)
{
	if (!get_string(c, p, v, c->d->name, sizeof(c->d->name)))
		return false;
	if (!vmdef_name_valid(c->d->name))
		return fail_at(c, p, "'%s': use 1-32 of a-z, 0-9, '-' and '_', starting with a letter or digit",
			       c->d->name);
	return true;
}

static bool key_role(struct ctx *c, const char *p, json_t *v)
{
	const char *s = json_string_value(v);
	if (s && strcmp(s, "client") == 0)
		c->d->role = VM_ROLE_CLIENT;
	else if (s && strcmp(s, "service") == 0)
		c->d->role = VM_ROLE_SERVICE;
	else
		return fail_at(c, p, "must be \"client\" or \"service\"");
	return true;
}

/*
 * A bundle of shoji-img build (docs/images.md): OUT.qcow2, OUT.vmlinuz,
 * OUT.initrd and OUT.json must be there; the kernel, initrd and command
 * line come from it unless the definition names its own.
 */
static bool key_image(struct ctx *c, const char *p, json_t *v)
{
	char *out = c->d->image;
	if (!get_string(c, p, v, out, sizeof(c->d->image) - 16))
		return false;
	if (out[0] != '/')
		return fail_at(c, p, "'%s' must be an absolute path (the bundle's OUT, without .qcow2)", out);
	static const char *const parts[] = { ".qcow2", ".vmlinuz", ".initrd", ".json" };
	char file[PATH_MAX + 16];
	for (size_t i = 0; i < ARRAY_SIZE(parts); i++) {
		snprintf(file, sizeof(file), "%s%s", out, parts[i]);
		struct stat st;
		const char *why = stat(file, &st) < 0 ? strerror(errno)
				  : !S_ISREG(st.st_mode)  ? "not a regular file"
				  : access(file, R_OK) < 0 ? strerror(errno) : NULL;
		if (why)
			return fail_at(c, p, "%s: %s (an image is the OUT of 'shoji-img build RECIPE OUT')", file, why);
	}
	return true;
}

/* The bundle's kernel command line (OUT.json's "cmdline"). */
static bool image_cmdline(struct ctx *c)
{
	char file[PATH_MAX + 16];
	snprintf(file, sizeof(file), "%s.json", c->d->image);
	json_error_t jerr;
	json_t *j = json_load_file(file, JSON_REJECT_DUPLICATES, &jerr);
	const char *line = json_string_value(json_object_get(j, "cmdline"));
	bool ok = line && strlen(line) < sizeof(c->d->cmdline);
	if (ok)
		snprintf(c->d->cmdline, sizeof(c->d->cmdline), "%s", line);
	json_decref(j);
	return ok || fail_at(c, "image", "%s: no usable \"cmdline\" (%s)", file, j ? "missing or too long" : jerr.text);
}

static bool key_kernel(struct ctx *c, const char *p, json_t *v)
{
	return get_file(c, p, v, c->d->kernel, sizeof(c->d->kernel), false);
}

static bool key_initrd(struct ctx *c, const char *p, json_t *v)
{
	return get_file(c, p, v, c->d->initrd, sizeof(c->d->initrd), false);
}

static bool key_cmdline(struct ctx *c, const char *p, json_t *v)
{
	return get_string(c, p, v, c->d->cmdline, sizeof(c->d->cmdline));
}

static bool key_cpus(struct ctx *c, const char *p, json_t *v)
{
	json_int_t n = json_integer_value(v);
	if (!json_is_integer(v) || n < 1 || n > VMDEF_MAX_CPUS)
		return fail_at(c, p, "must be a number from 1 to %d", VMDEF_MAX_CPUS);
	c->d->cpus = (unsigned)n;
	return true;
}

/* "2G", "512M", or a bare number of MiB (a string or an integer), as shoji-vmm --memory. */
static bool key_memory(struct ctx *c, const char *p, json_t *v)
{
	uint64_t bytes, mib;
	char text[32];
	if (json_is_integer(v) && json_integer_value(v) >= 0)
		snprintf(text, sizeof(text), "%lld", (long long)json_integer_value(v));
	else if (!json_is_string(v) || strlen(json_string_value(v)) >= sizeof(text))
		return fail_at(c, p, "must be a size such as \"512M\" or \"2G\"");
	else
		snprintf(text, sizeof(text), "%s", json_string_value(v));
	if (parse_uint(text, 0, UINT64_MAX >> 20, &mib))
		bytes = mib << 20;
	else if (!parse_size(text, &bytes))
		return fail_at(c, p, "'%s' is not a size (use e.g. \"512M\" or \"2G\")", text);
	if (bytes < VMDEF_MIN_MEMORY || bytes > VMDEF_MAX_MEMORY)
		return fail_at(c, p, "'%s': must be from 32M to 1T", text);
	if (bytes % MiB)
		return fail_at(c, p, "'%s': must be a whole number of MiB", text);
	c->d->memory = bytes;
	return true;
}

static bool key_vsock(struct ctx *c, const char *p, json_t *v)
{
	char path[160];
	subpath(path, sizeof(path), "%s.cid", p);
	json_t *cid = json_object_get(v, "cid");
	if (!json_is_object(v) || json_object_size(v) != 1 || !cid)
		return fail_at(c, p, "must be an object with one key, \"cid\"");
	json_int_t n = json_integer_value(cid);
	if (!json_is_integer(cid) || n < 3 || n > 0xfffffffe)
		return fail_at(c, path, "must be a number from 3 to 4294967294");
	c->d->vsock_cid = (unsigned)n;
	return true;
}

static bool key_rng(struct ctx *c, const char *p, json_t *v)
{
	return get_bool(c, p, v, &c->d->rng);
}

static bool key_autostart(struct ctx *c, const char *p, json_t *v)
{
	return get_bool(c, p, v, &c->d->autostart);
}

static bool key_depends_on(struct ctx *c, const char *p, json_t *v)
{
	const char *s = json_string_value(v);
	if (!s || !vmdef_name_valid(s))
		return fail_at(c, p, "must be the name of a service VM");
	snprintf(c->d->depends_on, sizeof(c->d->depends_on), "%s", s);
	return true;
}

/* ---- disks ---- */

static bool disk_path_key(struct ctx *c, const char *p, json_t *obj, struct vmdef_disk *disk)
{
	char path[160];
	subpath(path, sizeof(path), "%s.path", p);
	json_t *v = json_object_get(obj, "path");
	if (!v)
		return fail_at(c, p, "needs a \"path\"");
	if (!get_file(c, path, v, disk->path, sizeof(disk->path), !disk->readonly))
		return false;
	if (strchr(disk->path, ','))
		return fail_at(c, path, "'%s': shoji-vmm --disk cannot take a path with a comma; rename it",
			       disk->path);
	return true;
}

static bool disk_readonly(struct ctx *c, const char *p, json_t *v, struct vmdef_disk *disk)
{
	return get_bool(c, p, v, &disk->readonly);
}

static bool disk_format(struct ctx *c, const char *p, json_t *v, struct vmdef_disk *disk)
{
	const char *f = json_string_value(v);
	if (!f || (strcmp(f, "raw") != 0 && strcmp(f, "qcow2") != 0))
		return fail_at(c, p, "must be \"raw\" or \"qcow2\"");
	disk->qcow2 = strcmp(f, "qcow2") == 0;
	return true;
}

static bool disk_direct(struct ctx *c, const char *p, json_t *v, struct vmdef_disk *disk)
{
	return get_bool(c, p, v, &disk->direct);
}

/* As shoji-vmm --disk serial= takes it: the guest reads it as text. */
static bool disk_serial(struct ctx *c, const char *p, json_t *v, struct vmdef_disk *disk)
{
	const char *s = json_string_value(v);
	size_t len = s ? strlen(s) : 0;
	bool ok = json_is_string(v) && len == json_string_length(v) && len >= 1 &&
		  len <= VMDEF_SERIAL_MAX;
	for (size_t i = 0; ok && i < len; i++)
		ok = s[i] >= 0x21 && s[i] <= 0x7e && s[i] != ',';
	if (!ok)
		return fail_at(c, p, "must be 1 to %d printable ASCII characters without spaces or "
			       "commas", VMDEF_SERIAL_MAX);
	memcpy(disk->serial, s, len + 1);
	return true;
}

static bool disk_aio(struct ctx *c, const char *p, json_t *v, struct vmdef_disk *disk)
{
	const char *a = json_string_value(v);
	if (!a || (strcmp(a, "auto") != 0 && strcmp(a, "threads") != 0 &&
		   strcmp(a, "io_uring") != 0))
		return fail_at(c, p, "must be \"auto\", \"threads\" or \"io_uring\"");
	snprintf(disk->aio, sizeof(disk->aio), "%s", a);
	return true;
}

/* "path" is read last (disk_path_key): whether it must be writable depends on "readonly". */
static const struct {
	const char *key;
	bool (*check)(struct ctx *c, const char *path, json_t *v, struct vmdef_disk *disk);
} disk_keys[] = {
	{ "readonly", disk_readonly },
	{ "format", disk_format },
	{ "direct", disk_direct },
	{ "serial", disk_serial },
	{ "aio", disk_aio },
};

static bool disk_one(struct ctx *c, const char *p, json_t *obj, struct vmdef_disk *disk)
{
	if (!json_is_object(obj))
		return fail_at(c, p, "must be an object such as {\"path\": \"/var/lib/shoji/disk.qcow2\"}");
	const char *key;
	json_t *v;
	char path[160];
	json_object_foreach(obj, key, v) {
		subpath(path, sizeof(path), "%s.%s", p, key);
		size_t i = 0;
		while (i < ARRAY_SIZE(disk_keys) && strcmp(disk_keys[i].key, key) != 0)
			i++;
		if (i < ARRAY_SIZE(disk_keys) && !disk_keys[i].check(c, path, v, disk))
			return false;
		if (i == ARRAY_SIZE(disk_keys) && strcmp(key, "path") != 0)
			return fail_at(c, path, "unknown key (known: path, format, readonly, direct, "
				       "serial, aio)");
	}
	return disk_path_key(c, p, obj, disk);
}

static bool key_disks(struct ctx *c, const char *p, json_t *v)
{
	if (!json_is_array(v))
		return fail_at(c, p, "must be a list of disks");
	if (json_array_size(v) > VMDEF_MAX_DISKS)
		return fail_at(c, p, "at most %d disks", VMDEF_MAX_DISKS);
	size_t i;
	json_t *disk;
	json_array_foreach(v, i, disk) {
		char path[160];
		subpath(path, sizeof(path), "%s[%zu]", p, i);
		if (!disk_one(c, path, disk, &c->d->disks[i]))
			return false;
		c->d->ndisks = (unsigned)i + 1;
	}
	return true;
}

/* ---- nets ---- */

/* "tcp:127.0.0.1:2222-:22" in shoji-vmm's syntax: the VMM checks the numbers at start. */
static bool net_hostfwd(struct ctx *c, const char *p, json_t *v, struct vmdef_net *n)
{
	if (!json_is_array(v) || json_array_size(v) > VMDEF_MAX_HOSTFWD)
		return fail_at(c, p, "must be a list of at most %d forwards", VMDEF_MAX_HOSTFWD);
	size_t i;
	json_t *f;
	json_array_foreach(v, i, f) {
		char path[160];
		subpath(path, sizeof(path), "%s[%zu]", p, i);
		if (!get_string(c, path, f, n->hostfwd[i], sizeof(n->hostfwd[i])))
			return false;
		const char *s = n->hostfwd[i];
		if ((strncmp(s, "tcp:", 4) != 0 && strncmp(s, "udp:", 4) != 0) || strchr(s, ',') ||
		    !strstr(s, "-:"))
			return fail_at(c, path, "'%s': use tcp:HOSTADDR:HOSTPORT-:GUESTPORT", s);
		n->nhostfwd = (unsigned)i + 1;
	}
	return true;
}

static bool net_mac(struct ctx *c, const char *p, json_t *v, struct vmdef_net *n)
{
	unsigned b[6];
	char end;
	if (!get_string(c, p, v, n->mac, sizeof(n->mac)) ||
	    sscanf(n->mac, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &end) != 6 ||
	    strlen(n->mac) != 17)
		return fail_at(c, p, "must be a MAC address such as \"52:54:00:12:34:56\"");
	if (b[0] & 1)
		return fail_at(c, p, "'%s' is a multicast address", n->mac);
	return true;
}

static bool net_type(struct ctx *c, const char *p, json_t *obj, struct vmdef_net *n)
{
	char path[160];
	subpath(path, sizeof(path), "%s.type", p);
	const char *t = json_string_value(json_object_get(obj, "type"));
	if (!t || (strcmp(t, "user") != 0 && strcmp(t, "tap") != 0))
		return fail_at(c, json_object_get(obj, "type") ? path : p,
			       "needs \"type\": \"user\" or \"tap\"");
	n->tap = strcmp(t, "tap") == 0;
	if (n->tap && !n->tap_name[0])
		return fail_at(c, p, "a tap NIC needs \"tap\": \"NAME\"");
	if (!n->tap && n->tap_name[0])
		return fail_at(c, p, "\"tap\" is only for \"type\": \"tap\"");
	if (n->tap && n->nhostfwd)
		return fail_at(c, p, "\"hostfwd\" is only for \"type\": \"user\"");
	if (n->tap && n->host_loopback)
		return fail_at(c, p, "\"host_loopback\" is only for \"type\": \"user\"");
	return true;
}

static bool net_one(struct ctx *c, const char *p, json_t *obj, struct vmdef_net *n)
{
	if (!json_is_object(obj))
		return fail_at(c, p, "must be an object such as {\"type\": \"user\"}");
	const char *key;
	json_t *v;
	char path[160];
	json_object_foreach(obj, key, v) {
		subpath(path, sizeof(path), "%s.%s", p, key);
		bool ok = true;
		if (strcmp(key, "hostfwd") == 0)
			ok = net_hostfwd(c, path, v, n);
		else if (strcmp(key, "mac") == 0)
			ok = net_mac(c, path, v, n);
		else if (strcmp(key, "tap") == 0)
			ok = get_string(c, path, v, n->tap_name, sizeof(n->tap_name)) &&
			     (n->tap_name[0] && !strpbrk(n->tap_name, ",/ ") ? true :
			      fail_at(c, path, "must be an interface name"));
		else if (strcmp(key, "host_loopback") == 0)
			ok = get_bool(c, path, v, &n->host_loopback);
		else if (strcmp(key, "type") != 0)
			ok = fail_at(c, path, "unknown key (known: type, tap, hostfwd, host_loopback, mac)");
		if (!ok)
			return false;
	}
	return net_type(c, p, obj, n);
}

static bool key_nets(struct ctx *c, const char *p, json_t *v)
{
	if (!json_is_array(v))
		return fail_at(c, p, "must be a list of NICs");
	if (json_array_size(v) > VMDEF_MAX_NETS)
		return fail_at(c, p, "at most %d NICs", VMDEF_MAX_NETS);
	size_t i;
	json_t *net;
	json_array_foreach(v, i, net) {
		char path[160];
		subpath(path, sizeof(path), "%s[%zu]", p, i);
		if (!net_one(c, path, net, &c->d->nets[i]))
			return false;
		c->d->nnets = (unsigned)i + 1;
	}
	return true;
}

/* ---- the document ---- */

static const struct {
	const char *key;
	bool (*check)(struct ctx *c, const char *path, json_t *v);
	bool required;
} keys[] = {
	{ "name", key_name, true },
	{ "role", key_role, true },
	{ "image", key_image, false },
	{ "kernel", key_kernel, false },   /* required unless image gives it */
	{ "initrd", key_initrd, false },
	{ "cmdline", key_cmdline, false },
	{ "cpus", key_cpus, false },
	{ "memory", key_memory, false },
	{ "disks", key_disks, false },
	{ "nets", key_nets, false },
	{ "vsock", key_vsock, false },
	{ "rng", key_rng, false },
	{ "autostart", key_autostart, false },
	{ "depends_on", key_depends_on, false },
};

static bool check_keys(struct ctx *c, json_t *root)
{
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		size_t i = 0;
		while (i < ARRAY_SIZE(keys) && strcmp(keys[i].key, key) != 0)
			i++;
		if (i == ARRAY_SIZE(keys))
			return fail_at(c, key, "unknown key (known: name, role, image, kernel, initrd, cmdline, "
				       "cpus, memory, disks, nets, vsock, rng, autostart, depends_on)");
	}
	/* The table lists role before autostart: autostart's default depends on the role. */
	c->d->autostart = false;
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		v = json_object_get(root, keys[i].key);
		if (!v && keys[i].required) {
			snprintf(c->err, c->errlen, "%s:1: key '%s': is required", c->source, keys[i].key);
			return false;
		}
		if (v && !keys[i].check(c, keys[i].key, v))
			return false;
		/* Named, not by its index: reordering the table must not move the default. */
		if (keys[i].check == key_role)
			c->d->autostart = c->d->role == VM_ROLE_SERVICE;
	}
	return true;
}

/* Without an image the kernel is required; with one, what it does not name comes from the bundle. */
static bool fill_from_image(struct ctx *c, json_t *root)
{
	struct vmdef *d = c->d;
	if (!d->image[0]) {
		if (d->kernel[0])
			return true;
		snprintf(c->err, c->errlen, "%s:1: key 'kernel': is required (or give 'image', a shoji-img build bundle)",
			 c->source);
		return false;
	}
	if (d->ndisks >= VMDEF_MAX_DISKS)
		return fail_at(c, "disks", "an image VM has room for %d disks besides its image's", VMDEF_MAX_DISKS - 1);
	if (!d->kernel[0])
		snprintf(d->kernel, sizeof(d->kernel), "%.*s.vmlinuz", (int)sizeof(d->kernel) - 16, d->image);
	if (!d->initrd[0] && !json_object_get(root, "initrd"))
		snprintf(d->initrd, sizeof(d->initrd), "%.*s.initrd", (int)sizeof(d->initrd) - 16, d->image);
	return json_object_get(root, "cmdline") || image_cmdline(c);
}

static bool check_relations(struct ctx *c, const char *expect_name)
{
	struct vmdef *d = c->d;
	if (expect_name && strcmp(expect_name, d->name) != 0)
		return fail_at(c, "name", "'%s' differs from the file's name '%s'; make them equal",
			       d->name, expect_name);
	if (d->depends_on[0] && strcmp(d->depends_on, d->name) == 0)
		return fail_at(c, "depends_on", "a VM cannot depend on itself");
	if (d->depends_on[0] && d->role == VM_ROLE_SERVICE)
		return fail_at(c, "depends_on", "only client VMs depend on a service VM");
	return true;
}

bool vmdef_parse(const char *text, const char *source, const char *expect_name,
		 struct vmdef *out, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		snprintf(err, errlen, "%s:%d: not valid JSON: %s", source, jerr.line > 0 ? jerr.line : 1,
			 jerr.text);
		return false;
	}
	*out = (struct vmdef){ .cpus = 1, .memory = 512ull << 20 };
	snprintf(out->cmdline, sizeof(out->cmdline), "console=ttyS0");
	struct ctx c = { text, source, err, errlen, out };
	err[0] = '\0';
	bool ok;
	if (!json_is_object(root)) {
		snprintf(err, errlen, "%s:1: the definition must be a JSON object", source);
		ok = false;
	} else {
		ok = check_keys(&c, root) && fill_from_image(&c, root) && check_relations(&c, expect_name);
	}
	json_decref(root);
	return ok;
}

/* ---- output ---- */

/* The keys added after the first release appear only when set, so a
 * definition that does not use them reads as it always did. */
static json_t *disk_to_json(const struct vmdef_disk *disk)
{
	json_t *o = json_pack("{s:s, s:s, s:b}", "path", disk->path,
			      "format", disk->qcow2 ? "qcow2" : "raw", "readonly", disk->readonly);
	if (disk->direct)
		json_object_set_new(o, "direct", json_true());
	if (disk->serial[0])
		json_object_set_new(o, "serial", json_string(disk->serial));
	if (disk->aio[0])
		json_object_set_new(o, "aio", json_string(disk->aio));
	return o;
}

static json_t *net_to_json(const struct vmdef_net *n)
{
	json_t *o = json_pack("{s:s}", "type", n->tap ? "tap" : "user");
	if (n->tap)
		json_object_set_new(o, "tap", json_string(n->tap_name));
	if (n->nhostfwd) {
		json_t *fw = json_array();
		for (unsigned i = 0; i < n->nhostfwd; i++)
			json_array_append_new(fw, json_string(n->hostfwd[i]));
		json_object_set_new(o, "hostfwd", fw);
	}
	if (!n->tap)
		json_object_set_new(o, "host_loopback", json_boolean(n->host_loopback));
	if (n->mac[0])
		json_object_set_new(o, "mac", json_string(n->mac));
	return o;
}

json_t *vmdef_to_json(const struct vmdef *d)
{
	char mem[32];
	snprintf(mem, sizeof(mem), "%lluM", (unsigned long long)(d->memory >> 20));
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:s}", "name", d->name, "role",
			      vm_role_name(d->role), "kernel", d->kernel, "cmdline", d->cmdline, "cpus",
			      (int)d->cpus, "memory", mem);
	if (d->initrd[0])
		json_object_set_new(o, "initrd", json_string(d->initrd));
	if (d->image[0])
		json_object_set_new(o, "image", json_string(d->image));
	json_t *disks = json_array();
	for (unsigned i = 0; i < d->ndisks; i++)
		json_array_append_new(disks, disk_to_json(&d->disks[i]));
	json_object_set_new(o, "disks", disks);
	json_t *nets = json_array();
	for (unsigned i = 0; i < d->nnets; i++)
		json_array_append_new(nets, net_to_json(&d->nets[i]));
	json_object_set_new(o, "nets", nets);
	if (d->vsock_cid)
		json_object_set_new(o, "vsock", json_pack("{s:I}", "cid", (json_int_t)d->vsock_cid));
	json_object_set_new(o, "rng", json_boolean(d->rng));
	json_object_set_new(o, "autostart", json_boolean(d->autostart));
	if (d->depends_on[0])
		json_object_set_new(o, "depends_on", json_string(d->depends_on));
	return o;
}

bool vmdef_dependency_ok(const struct vmdef *d, const struct vmdef *dep, char *err, size_t errlen)
{
	if (!d->depends_on[0])
		return true;
	if (!dep) {
		snprintf(err, errlen, "'%s': no such VM; create the service VM first", d->depends_on);
		return false;
	}
	if (dep->role != VM_ROLE_SERVICE) {
		snprintf(err, errlen, "'%s': it is a client VM; a VM may only depend on a service VM",
			 d->depends_on);
		return false;
	}
	return true;
}
