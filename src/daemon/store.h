/*
 * The definitions directory, STATE/vms/NAME.json: reading a definition
 * file (bounded), writing one atomically (a crash leaves the old file or
 * the new one, never half of either), removing one. Files are opened
 * with O_NOFOLLOW: a symlink in their place is an error, not a redirect.
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
/*
 * Whoever may write into the state or run directory could plant symlinks
 * or sockets the daemon then trusts: dir must be a directory (not a
 * symlink), owned by the daemon's euid and not writable by group or
 * others. False with a one-line reason in err.
 */
bool store_check_dir(const char *dir, char *err, size_t errlen);
/* The file's text, NUL-terminated and malloc'd; NULL with a reason in err. */
char *store_read(const char *path, char *err, size_t errlen);
/* Writes text to path through path.tmp, fsync and rename; mode 0600. */
bool store_write(const char *path, const char *text, char *err, size_t errlen);

#endif
