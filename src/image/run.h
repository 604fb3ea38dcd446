/*
 * Child processes of `shoji-img build` (mmdebstrap, mke2fs, chroot
 * systemctl, dpkg-query, cp), and the SIGINT/SIGTERM that stop a build.
 * A signal only sets a flag: the running child's process group gets
 * SIGTERM and is waited for (mmdebstrap then unmounts what it mounted in
 * the tree), and the build removes its temporary directory before it
 * exits.
 */
#ifndef SHOJI_IMAGE_RUN_H
#define SHOJI_IMAGE_RUN_H

#include <stdbool.h>
#include <stddef.h>

/* Installs the handlers of SIGINT, SIGTERM and SIGHUP (without
 * SA_RESTART, so a blocked wait returns and the child is stopped). */
void run_catch_signals(void);
/* The signal that asked the build to stop, 0 if none. */
int run_stop_signal(void);

/*
 * Runs argv (argv[0] searched in PATH) with envp added to the environment
 * (NULL-terminated "NAME=value" strings, or NULL), stdin /dev/null. Its
 * stderr, and its stdout when out is NULL, go to log_fd (-1: inherited).
 * With out, stdout is collected into *out (malloc'd, NUL-terminated).
 * Returns the exit status (0-255), 256 + signal when it was killed by one,
 * or -1 when it could not be started or the build was interrupted; logs
 * nothing.
 */
int run_cmd(char *const argv[], char *const envp[], int log_fd, char **out);

/* argv[0] found in PATH (or /usr/sbin, /sbin: mke2fs lives there and a
 * sudo'ed PATH may lack them)? */
bool run_have(const char *prog);

#endif
