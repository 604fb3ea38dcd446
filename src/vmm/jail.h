/*
 * The VMM's jail (--jail uid=N,gid=M): after the VMM has opened everything
 * it needs (/dev/kvm, guest RAM, its disks with their chains, a tap, its
 * listening sockets) and before the seccomp filter goes in, it leaves the
 * host's world:
 *
 *   - new mount, IPC and UTS namespaces, and a new network namespace
 *     unless user-mode networking needs the host's (a tap's descriptor
 *     keeps working from any namespace);
 *   - a root that is an empty read-only tmpfs holding only, at their own
 *     paths, the directories of its sockets (the vsock socket's directory
 *     is where guest connections to PATH_<port> go; removing its sockets at
 *     exit works where the user may, and is the daemon's job under shojid)
 *     and, for user-mode
 *     networking, /etc/resolv.conf; no /proc, /sys or /dev: nothing else
 *     of the host's file system is reachable;
 *   - core dumps off (they would hold guest memory), then no supplementary
 *     groups and an unprivileged uid/gid of its own, so it has no
 *     capabilities left, cannot signal other VMs (each has its own uid) and
 *     can only touch files that user may touch.
 *
 * The daemon asks for it with a uid of the VM's own (see daemon/jail-id.h),
 * lets its group (only) enter the VM's root-owned run directory, and starts it as pid 1 of a PID
 * namespace of its own (daemon/spawn.h), which a process cannot enter by
 * itself. What a compromised VMM can and
 * cannot reach is written down in docs/security.md.
 */
#ifndef SHOJI_VMM_JAIL_H
#define SHOJI_VMM_JAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct jail_option {
	bool enabled;
	uid_t uid;
	gid_t gid;
};

/* --jail uid=N,gid=M (both required, neither 0). False with one line in err. */
bool jail_option_parse(const char *text, struct jail_option *out, char *err, size_t errlen);

/* What the jailed VMM still needs of the host. */
struct jail_needs {
	const char *keep[4];  /* host paths (directories or files) kept at the same
			       * path, read-write; NULL entries are skipped */
	bool host_network;    /* user-mode networking opens host sockets */
	bool resolv_conf;     /* keep /etc/resolv.conf read-only (libslirp's DNS) */
};

/*
 * Enters the jail. Must be called before any thread other than the
 * caller's is started (namespaces and credentials are per thread until
 * then shared). False, after one log line naming the step, when any step
 * fails: the VMM must then not run unjailed.
 */
bool jail_enter(const struct jail_option *j, const struct jail_needs *needs);

#endif
