/*
 * Internal to the block layer: the table of format drivers. Adding a format
 * means adding a file that defines one struct block_driver and one line in
 * block.c's driver list.
 */
#ifndef SHOJI_BLOCK_DRIVER_H
#define SHOJI_BLOCK_DRIVER_H

#include "block/block.h"

struct block_driver {
	const char *name;
	int (*open)(struct block_dev **out, const char *path, const struct block_open_opts *opts);
	int (*create)(const char *path, const struct block_create_opts *opts);
};

extern const struct block_driver block_driver_raw;
extern const struct block_driver block_driver_qcow2;

/* Opens the backing file of an image: path is resolved against the
 * directory of the overlay's filename, format is the one recorded in the
 * overlay, and the chain/depth of opts are extended for loop detection. */
int block_open_backing(struct block_dev **out, const char *overlay, const char *path,
		       const char *format, const struct block_open_opts *opts);

#endif
