/*
 * Starting a VMM so that it outlives the daemon. The daemon forks a keeper
 * in a new session (so a signal to the daemon's process group or session
 * does not reach it); the keeper forks and execs shoji-vmm, waits for it
 * and writes its exit status to a file, which is how the daemon learns the
 * exit reason even of a VMM it re-adopted after a restart (only a parent
 * can wait for a process; the keeper stays the VMM's parent throughout).
 *
 * The keeper is named "shojid-keeper" (comm), and its VMM gets SIGKILL when
 * the keeper dies (PR_SET_PDEATHSIG), so a killed keeper never leaves an
 * unsupervised VMM behind.
 *
 * The keeper holds no descriptor of the daemon's: the VMM's stdin and
 * stdout are /dev/null, its stderr is a pipe to the keeper, which copies
 * it into the VM's capped log file (NAME.vmm.log, rotated to NAME.vmm.log.1
 * at its bound while the VM runs: a guest that makes its VMM log without
 * end cannot fill the host's disk). Nothing of the VMM's is a pipe the
 * daemon reads, so a dead daemon cannot SIGPIPE it.
 */
#ifndef SHOJI_DAEMON_SPAWN_H
#define SHOJI_DAEMON_SPAWN_H

#include <stdbool.h>
#include <sys/types.h>

#include "daemon/vmlog.h"

struct spawned {
	pid_t keeper;
	pid_t vmm;      /* -1 if the keeper could not start it */
	int go_fd;      /* the VMM waits before exec until spawn_release */
};

/*
 * Runs argv[0] with argv under a keeper that writes "exit N" or "signal N"
 * to `status_path` (atomically, through status_path.tmp) when it ends.
 * The VMM's stderr goes into `log` (opened by the caller; its fd -1: thrown
 * away), which the keeper owns from then on: the caller closes its copy.
 * False (errno set) if the keeper could not be started; a failed exec
 * shows as "exit 127".
 *
 * The VMM process waits before its exec until spawn_release(), so the
 * caller can open pidfds for both pids knowing neither has been reaped
 * and reused; spawn_abort() instead ends both (the keeper is reaped). One
 * of the two must follow every successful spawn_vmm.
 *
 * pid_ns: the VMM runs as pid 1 of a new PID namespace (part of its jail,
 * see vmm/jail.h); out->vmm is still its pid on the host.
 */
bool spawn_vmm(char *const argv[], const char *status_path, const struct capped_file *log,
	       bool pid_ns, struct spawned *out);
/* Lets the VMM exec; false if it is already gone (its exit shows as usual). */
bool spawn_release(struct spawned *sp);
void spawn_abort(struct spawned *sp);

/* Parses what the keeper wrote: *signaled and *value. False if unreadable. */
bool spawn_read_status(const char *status_path, bool *signaled, int *value);

#endif
