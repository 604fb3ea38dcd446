/*
 * Re-adoption: a daemon that starts finds RUN/vms/NAME/state.json of each
 * VM that was running under the previous daemon. The keeper and the VMM
 * are taken over only if their pids still name processes with the start
 * times recorded, so a recycled pid is never mistaken for our VMM; the
 * pidfds opened then make any later mix-up impossible. A keeper that ended
 * while no daemon ran left its exit status behind, which is handled like
 * any exit (a service VM that panicked meanwhile is restarted).
 */
#include <jansson.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "daemon/proc.h"
#include "daemon/store.h"
#include "daemon/vm.h"

static bool read_state(struct vm *vm)
{
	char err[256];
	char *text = store_read(vm->paths.state, err, sizeof(err)); /* O_NOFOLLOW */
	json_t *o = text ? json_loads(text, 0, NULL) : NULL;
	free(text);
	json_int_t kp = json_integer_value(json_object_get(o, "keeper_pid"));
	json_int_t ks = json_integer_value(json_object_get(o, "keeper_start"));
	json_int_t vp = json_integer_value(json_object_get(o, "vmm_pid"));
	json_int_t vs = json_integer_value(json_object_get(o, "vmm_start"));
	json_decref(o);
	if (kp <= 1 || ks <= 0)
		return false;
	vm->keeper = (pid_t)kp;
	vm->keeper_start = (uint64_t)ks;
	vm->vmm = vp > 1 ? (pid_t)vp : 0;
	vm->vmm_start = vs > 0 ? (uint64_t)vs : 0;
	return true;
}

void sup_adopt(struct sup *s, struct vm *vm)
{
	if (access(vm->paths.state, F_OK) != 0)
		return;
	if (!read_state(vm)) {
		log_warn("%s: %s is unreadable; not re-adopting", vm->def.name, vm->paths.state);
		unlink(vm->paths.state);
		return;
	}
	vm->want_running = true;
	if (proc_start_time(vm->keeper) != vm->keeper_start ||
	    (vm->keeper_fd = proc_pidfd_open(vm->keeper)) < 0 ||
	    proc_start_time(vm->keeper) != vm->keeper_start) {
		/* Gone while no daemon watched: its exit status tells what happened. */
		if (vm->keeper_fd >= 0)
			close(vm->keeper_fd);
		vm->keeper_fd = -1;
		vm->keeper = vm->vmm = 0;
		vm_handle_exit(s, vm);
		return;
	}
	/* The start time again after pidfd_open: the pid may have been reused in between. */
	if (vm->vmm && proc_start_time(vm->vmm) == vm->vmm_start &&
	    (vm->vmm_fd = proc_pidfd_open(vm->vmm)) >= 0 && proc_start_time(vm->vmm) != vm->vmm_start) {
		close(vm->vmm_fd);
		vm->vmm_fd = -1;
	}
	if (vm->vmm_fd < 0)
		log_warn("%s: VMM %d is not the recorded process; watching its keeper only", vm->def.name,
			 (int)vm->vmm);
	vm->state = VM_STARTING; /* running as soon as its control socket answers */
	vm->gen++;
	vm->started_ms = monotonic_ms();
	vm_watch_keeper(s, vm);
	events_emit(s->events, "adopted", vm->def.name, json_pack("{s:i}", "pid", (int)vm->vmm));
}
