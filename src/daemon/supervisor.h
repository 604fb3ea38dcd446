/*
 * The supervisor: the table of VMs, their lifecycle and the role policy.
 *
 *   stopped -> [waiting for depends_on] -> starting -> running
 *   running -> stopping (power button, then SIGKILL after the timeout)
 *   exit    -> stopped, or backoff -> starting (service VMs), or failed
 *
 * A VM is "running" once its VMM answers a ping on its control socket.
 * Service VMs start when the daemon starts (autostart) and are restarted
 * after any exit but poweroff, with a back-off that doubles from
 * backoff_ms up to 60 s; RESTART_LIMIT failures within RESTART_WINDOW_S
 * make the VM "failed" until someone starts it again. A guest reboot
 * restarts any VM at once.
 *
 * Every VMM runs under a keeper (spawn.h) and its pids and start times are
 * kept in RUN/vms/NAME/state.json, so a daemon that was killed and started
 * again re-adopts the VMMs that still run, instead of starting them twice.
 *
 * One lock guards everything; the supervisor thread waits on the keepers'
 * pidfds and the console sockets, and API threads call the sup_* functions.
 */
#ifndef SHOJI_DAEMON_SUPERVISOR_H
#define SHOJI_DAEMON_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "daemon/events.h"
#include "daemon/vmlog.h"

#define RESTART_LIMIT     5
#define RESTART_WINDOW_S  600
#define BACKOFF_MAX_MS    60000

struct sup_config {
	const char *state_dir;
	const char *run_dir;
	const char *vmm_path;
	int stop_timeout_ms;
	int start_timeout_ms;     /* a VMM not answering its control socket by then is killed */
	int backoff_ms;
	uint64_t log_max;         /* each console log, NAME.log */
	uint64_t vmm_log_max;     /* each VMM's stderr, NAME.vmm.log */
	/* Where disks' backing files may lie (NULL-terminated; NULL: each
	 * disk's own directory). See daemon/disk-check.h. */
	const char *const *image_dirs;
	bool jail;                /* run each VMM jailed as its own user (daemon/jail-id.h) */
};

/* What went wrong, for the API's status codes. */
enum sup_status { SUP_OK, SUP_BAD_REQUEST, SUP_NOT_FOUND, SUP_CONFLICT, SUP_BUSY, SUP_INTERNAL };

struct sup;

/* Loads the definitions, re-adopts running VMMs, autostarts. NULL (logged) on failure. */
struct sup *sup_create(const struct sup_config *cfg, struct events *events);
bool sup_start(struct sup *s);
/* Stops the thread and frees everything; running VMMs are left running. */
void sup_destroy(struct sup *s);

/* {"vms": [...], "invalid": [...]} */
json_t *sup_list(struct sup *s);
/* One VM's definition and status; NULL if there is no such VM. */
json_t *sup_show(struct sup *s, const char *name);
/* The definition file's text (malloc'd), for `shoji vm edit`. */
char *sup_definition_text(struct sup *s, const char *name, char *err, size_t errlen,
			  enum sup_status *st);

/*
 * Creates (name == NULL) or replaces a definition from JSON text; the new
 * VM's name goes to created (VMDEF_NAME_MAX + 1 bytes) when not NULL.
 */
enum sup_status sup_define(struct sup *s, const char *name, const char *text, char *created,
			   char *err, size_t errlen);
enum sup_status sup_remove(struct sup *s, const char *name, char *err, size_t errlen);
/* "start", "stop", "kill" or "restart". */
enum sup_status sup_action(struct sup *s, const char *name, const char *action, char *err,
			   size_t errlen);

/* The VM's console log with a reference held; release with sup_log_put. */
struct vmlog *sup_log_get(struct sup *s, const char *name, void **ref);
void sup_log_put(struct sup *s, void *ref);
/* Console input to the guest; false when the VM has no console now. */
bool sup_console_write(struct sup *s, void *ref, const void *buf, size_t n);

/*
 * One operation on a ready VM's agent (exec, cp), counted against its
 * bound (SUP_BUSY beyond it): the VM's vsock socket path goes to vsock and
 * a reference to *ref, released with sup_agent_put.
 */
enum sup_status sup_agent_take(struct sup *s, const char *name, char *vsock, size_t vsock_len,
			       void **ref, char *err, size_t errlen);
void sup_agent_put(struct sup *s, void *ref);

#endif
