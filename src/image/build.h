/*
 * `shoji-img build RECIPE OUT`: a bootable master image from Debian
 * packages. mmdebstrap makes the tree, tree.c adapts it to shoji, mke2fs
 * makes the ext4, the block layer the qcow2 (bundle.c), manifest.c the
 * OUT.json. Everything happens in OUT.build-XXXXXX beside OUT; the four
 * files are moved into place only at the end, and any failure or
 * SIGINT/SIGTERM removes that directory: never half a bundle.
 */
#ifndef SHOJI_IMAGE_BUILD_H
#define SHOJI_IMAGE_BUILD_H

#include <stdbool.h>

struct build_opts {
	const char *recipe;   /* path of the recipe file */
	const char *out;      /* OUT: the bundle is OUT.qcow2, .vmlinuz, .initrd, .json */
	const char *agent;    /* the shoji-agent binary to install */
	bool compress;        /* qcow2 with compressed clusters */
	bool verbose;         /* the tools' output on stderr instead of in a log */
};

/* The exit status: 0, or 1 after one line (130/143 after SIGINT/SIGTERM). */
int image_build(const struct build_opts *o);

#endif
