/*
 * shojid's settings and where they come from: built-in defaults, then the
 * configuration file (/etc/shoji/shojid.conf, or --config PATH), then the
 * environment ($SHOJI_STATE_DIR, $SHOJI_RUN_DIR, $SHOJI_SOCKET), then the
 * command line. Each later source overrides the earlier ones key by key:
 * the environment and the flags belong to one invocation (a test, a unit's
 * Environment=), the file to the host.
 *
 * The file's keys are the daemon's long options, one table (config.c) for
 * both, so a key and its flag take the same values and refuse a mistake
 * with the same words. The file holds one "key = value" a line; blank
 * lines and lines whose first non-blank character is '#' are ignored. A
 * '#' later in a line is part of the value (paths may hold one). A value
 * runs to the end of its line, blanks around it removed: no quoting.
 * image-dir may be given more than once; any other key once. Every mistake
 * is refused in one line, "FILE:LINE: ..." naming the key and what would
 * be accepted, and the daemon does not start (shojid(8), packaging/shojid.conf).
 */
#ifndef SHOJI_DAEMON_CONFIG_H
#define SHOJI_DAEMON_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/kvopt.h"
#include "base/log.h"
#include "daemon/disk-check.h"

#define CONFIG_DEFAULT_PATH "/etc/shoji/shojid.conf"

struct shojid_config {
	char state_dir[PATH_MAX];
	char run_dir[PATH_MAX];
	char socket[PATH_MAX];   /* "": RUN-DIR/shojid.sock */
	char vmm[PATH_MAX];      /* "": shoji-vmm next to shojid */
	char image_dirs[DISK_CHECK_MAX_DIRS][PATH_MAX];
	unsigned nimage_dirs;
	bool jail;
	unsigned stop_timeout_s;
	unsigned start_timeout_s;
	unsigned backoff_ms;
	uint64_t vmm_log_max;
	enum log_level level;
	/* The image directories came from the file: the first --image-dir
	 * replaces them instead of adding to them. */
	bool image_dirs_from_file;
};

/* The key table: the file's keys and the daemon's long options alike. */
extern const struct kvopt_spec config_spec;

/* The built-in defaults (jail on when running as root). */
void config_defaults(struct shojid_config *c);

/*
 * Reads the file at path over c. A missing file is no error unless
 * must_exist (it was named with --config). False with one line in err,
 * "PATH:LINE: ...", at the first mistake.
 */
bool config_load(struct shojid_config *c, const char *path, bool must_exist, char *err,
		 size_t errlen);

/* $SHOJI_STATE_DIR, $SHOJI_RUN_DIR and $SHOJI_SOCKET over c, where set and not empty. */
bool config_env(struct shojid_config *c, char *err, size_t errlen);

/*
 * One command-line flag, --KEY VALUE (k is an entry of config_spec). The
 * first --image-dir replaces the file's directories; more add to them.
 */
bool config_flag(struct shojid_config *c, const struct kvopt_key *k, const char *value,
		 char *err, size_t errlen);

#endif
