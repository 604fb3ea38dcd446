/*
 * The definitions directory, STATE/vms/NAME.json: reading a definition
 * file (bounded), writing one atomically (a crash leaves the old file or
 * the new one, never half of either), removing one.
 */
#ifndef SHOJI_DAEMON_STORE_H
#define SHOJI_DAEMON_STORE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#define STORE_FILE_MAX (64u << 10)

/* STATE/vms/NAME.json into out. */
void store_def_path(const char *state_dir, const char *name, char *out, size_t len);
/* Creates dir (and missing parents) with `mode`; false (errno) if it cannot. */
bool store_mkdirs(const char *dir, unsigned mode);
/* The file's text, NUL-terminated and malloc'd; NULL with a reason in err. */
char *store_read(const char *path, char *err, size_t errlen);
/* Writes text to path through path.tmp, fsync and rename; mode 0600. */
bool store_write(const char *path, const char *text, char *err, size_t errlen);

#endif
