/*
 * OUT.json, the manifest of a bundle (format in docs/images.md): what was
 * built from what (recipe, packages with versions), the files with their
 * sizes and sha256, the kernel command line the image expects, and which
 * fields differ between two builds of the same recipe (the build's times).
 */
#ifndef SHOJI_IMAGE_MANIFEST_H
#define SHOJI_IMAGE_MANIFEST_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "image/recipe.h"

struct manifest_file {
	const char *role;     /* "disk", "kernel", "initrd" */
	const char *name;     /* the file's name in the bundle (no folder) */
	const char *path;     /* where it is now, to hash */
};

struct manifest {
	const struct recipe *recipe;
	const char *kernel_version;
	const char *packages;       /* dpkg-query lines: name TAB version TAB arch */
	const char *fs_uuid;
	time_t source_date_epoch;
	bool epoch_from_env;
	time_t started;
	double seconds;
	struct manifest_file files[3];
};

/* Writes the manifest to path. False after one line. */
bool manifest_write(const char *path, const struct manifest *m);

#endif
