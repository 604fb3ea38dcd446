/*
 * A definition turned into a shoji-vmm command line, and the per-VM run
 * directory's paths. This is where device policy is enforced: the VMM gets
 * exactly the devices in the definition and nothing else, and its sockets
 * (console, control, vsock) live in a directory only root can enter.
 */
#ifndef SHOJI_DAEMON_VMM_ARGS_H
#define SHOJI_DAEMON_VMM_ARGS_H

#include <limits.h>
#include <stdbool.h>

#include "daemon/vmdef.h"

/* sun_path is 108 bytes: the longest socket path, "vsock.sock_4294967295", must fit. */
#define VM_SOCKET_PATH_MAX 96

struct vm_paths {
	char dir[VM_SOCKET_PATH_MAX];        /* RUN/vms/NAME, mode 0700 */
	char console[VM_SOCKET_PATH_MAX + 32];    /* the VMM's --serial socket= */
	char api[VM_SOCKET_PATH_MAX + 32];        /* the VMM's --api-socket */
	char vsock[VM_SOCKET_PATH_MAX + 32];      /* the VMM's --vsock socket= */
	char status[VM_SOCKET_PATH_MAX + 32];     /* the keeper's exit status */
	char state[VM_SOCKET_PATH_MAX + 32];      /* pids and start times, for re-adoption */
};

/* False when the paths would not fit a Unix socket address. */
bool vm_paths_make(const char *run_dir, const char *name, struct vm_paths *out);

#define VMM_ARGV_MAX 96

struct vmm_argv {
	char *argv[VMM_ARGV_MAX + 1];
	int argc;
	char buf[24576];
	size_t used;
};

/* Fills `out` for running `vmm` with definition `d` (jailed as user and
 * group jail_id unless it is 0); false if it does not fit. */
bool vmm_argv_build(const char *vmm, const struct vmdef *d, const struct vm_paths *p,
		    const char *const *image_dirs, uint32_t jail_id, struct vmm_argv *out);

#endif
