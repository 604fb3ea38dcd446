/* Implementation of image/manifest.h, with jansson (sorted keys: two
 * builds' manifests differ only in the fields listed in "varying"). */
#include "image/manifest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/log.h"
#include "image/bundle.h"

static json_t *recipe_json(const struct recipe *r)
{
	json_t *pk = json_array(), *cp = json_array();
	for (size_t i = 0; i < r->npackages; i++)
		json_array_append_new(pk, json_string(r->packages[i].text));
	for (size_t i = 0; i < r->ncopies; i++)
		json_array_append_new(cp, json_pack("{s:s,s:s}", "src", r->copies[i].src, "dest",
						    r->copies[i].dest));
	const char *base = strrchr(r->file, '/');
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:o,s:o,s:s?,s:s?}", "file",
			 base ? base + 1 : r->file, "text", r->text, "suite", r->suite.text, "kernel",
			 r->kernel.text, "hostname", r->hostname.text, "size", (json_int_t)r->size,
			 "packages", pk, "copy", cp, "first-boot", r->first_boot.text, "mirror",
			 r->mirror.text);
}

/* "name\tversion\tarch\n" lines into [{name, version, arch}]. */
static json_t *packages_json(const char *text)
{
	json_t *a = json_array();
	char *copy = strdup(text ? text : ""), *rest = copy;
	for (char *line; rest && (line = strsep(&rest, "\n"));) {
		char *name = strsep(&line, "\t"), *ver = strsep(&line, "\t"), *arch = line;
		if (name && *name && ver && arch)
			json_array_append_new(a, json_pack("{s:s,s:s,s:s}", "name", name, "version", ver,
							   "arch", arch));
	}
	free(copy);
	return a;
}

static json_t *files_json(const struct manifest *m)
{
	json_t *o = json_object();
	for (size_t i = 0; i < 3; i++) {
		char hex[65];
		uint64_t bytes;
		if (!bundle_sha256(m->files[i].path, hex, &bytes)) {
			json_decref(o);
			return NULL;
		}
		json_object_set_new(o, m->files[i].role,
				    json_pack("{s:s,s:I,s:s}", "name", m->files[i].name, "bytes",
					      (json_int_t)bytes, "sha256", hex));
	}
	return o;
}

bool manifest_write(const char *path, const struct manifest *m)
{
	json_t *files = files_json(m);
	if (!files)
		return false;
	char started[32];
	struct tm tm;
	strftime(started, sizeof(started), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&m->started, &tm));
	json_t *varying = json_pack("[s,s]", "build.started", "build.seconds");
	/* Without SOURCE_DATE_EPOCH in the environment the build's own start
	 * time was used: rebuilding with that value reproduces the image. */
	if (!m->epoch_from_env)
		json_array_append_new(varying, json_string("source-date-epoch"));
	json_t *root = json_pack(
		"{s:i,s:s,s:s,s:s,s:I,s:o,s:{s:s,s:s,s:s,s:I},s:{s:s,s:f},s:o,s:o,s:o}",
		"bundle-format", 1, "shoji-version", SHOJI_VERSION, "cmdline", BUNDLE_CMDLINE,
		"kernel-version", m->kernel_version, "source-date-epoch",
		(json_int_t)m->source_date_epoch, "recipe", recipe_json(m->recipe), "disk",
		"format", "qcow2", "filesystem", "ext4", "uuid", m->fs_uuid, "virtual-size",
		(json_int_t)m->recipe->size, "build", "started", started, "seconds", m->seconds,
		"varying", varying, "files", files, "packages", packages_json(m->packages));
	if (!root)
		return log_error("cannot build the manifest (out of memory?)"), false;
	int r = json_dump_file(root, path, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(root);
	if (r < 0)
		return log_error("%s: cannot write the manifest: %m", path), false;
	return true;
}
