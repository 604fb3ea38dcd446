/*
 * What the API asks of the supervisor (see supervisor.h): listing,
 * showing, defining, removing, and the lifecycle actions. Each function
 * takes the lock; none of them blocks while holding it (the power button,
 * a request to the VMM's control socket that may take its whole timeout,
 * is pressed with the lock released).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "daemon/image.h"
#include "daemon/proc.h"
#include "daemon/store.h"
#include "daemon/vm.h"
#include "daemon/vmmctl.h"

#define BUTTON_TIMEOUT_MS 500

static json_t *vm_status(const struct vm *vm)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:i}", "name", vm->def.name, "role",
			      vm_role_name(vm->def.role), "state", vm_shown_state(vm), "autostart",
			      vm->def.autostart, "restarts", (int)vm->restarts);
	if (vm->vmm > 0)
		json_object_set_new(o, "pid", json_integer(vm->vmm));
	if (vm->last_exit[0])
		json_object_set_new(o, "last_exit", json_string(vm->last_exit));
	if (vm->last_error[0])
		json_object_set_new(o, "error", json_string(vm->last_error));
	if (vm->def.depends_on[0])
		json_object_set_new(o, "depends_on", json_string(vm->def.depends_on));
	if (vm->def.vsock_cid)
		json_object_set_new(o, "ready", json_boolean(vm->agent_ready));
	if (vm->agent_ready && vm->agent_info)
		json_object_set(o, "agent", vm->agent_info);
	return o;
}

json_t *sup_list(struct sup *s)
{
	json_t *vms = json_array();
	pthread_mutex_lock(&s->lock);
	for (struct vm *vm = s->vms; vm; vm = vm->next)
		json_array_append_new(vms, vm_status(vm));
	json_t *o = json_pack("{s:o, s:O}", "vms", vms, "invalid", s->invalid);
	pthread_mutex_unlock(&s->lock);
	return o;
}

json_t *sup_show(struct sup *s, const char *name)
{
	pthread_mutex_lock(&s->lock);
	struct vm *vm = sup_find(s, name);
	json_t *o = NULL;
	if (vm) {
		o = vm_status(vm);
		json_object_set_new(o, "definition", vmdef_to_json(&vm->def));
		json_t *sockets = json_pack("{s:s}", "console", vm->paths.console);
		if (vm->def.vsock_cid)
			json_object_set_new(sockets, "vsock", json_string(vm->paths.vsock));
		json_object_set_new(o, "sockets", sockets);
	}
	pthread_mutex_unlock(&s->lock);
	return o;
}

char *sup_definition_text(struct sup *s, const char *name, char *err, size_t errlen,
			  enum sup_status *st)
{
	char path[PATH_MAX];
	pthread_mutex_lock(&s->lock);
	bool found = sup_find(s, name) != NULL;
	pthread_mutex_unlock(&s->lock);
	if (!found) {
		snprintf(err, errlen, "no VM named '%s'", name);
		*st = SUP_NOT_FOUND;
		return NULL;
	}
	store_def_path(s->cfg.state_dir, name, path, sizeof(path));
	char *text = store_read(path, err, errlen);
	*st = text ? SUP_OK : SUP_INTERNAL;
	return text;
}

static enum sup_status check_dependency(struct sup *s, const struct vmdef *d, char *err, size_t errlen)
{
	char why[128];
	struct vm *dep = d->depends_on[0] ? sup_find(s, d->depends_on) : NULL;
	if (vmdef_dependency_ok(d, dep ? &dep->def : NULL, why, sizeof(why)))
		return SUP_OK;
	snprintf(err, errlen, "depends_on %s", why);
	return SUP_BAD_REQUEST;
}

static enum sup_status store_definition(struct sup *s, const struct vmdef *d, char *err, size_t errlen)
{
	char path[PATH_MAX];
	store_def_path(s->cfg.state_dir, d->name, path, sizeof(path));
	json_t *j = vmdef_to_json(d);
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(j);
	size_t n = text ? strlen(text) : 0;
	char *with_nl = text ? realloc(text, n + 2) : NULL;
	if (!with_nl) {
		free(text);
		snprintf(err, errlen, "out of memory");
		return SUP_INTERNAL;
	}
	with_nl[n] = '\n';
	with_nl[n + 1] = '\0';
	bool ok = store_write(path, with_nl, err, errlen);
	free(with_nl);
	return ok ? SUP_OK : SUP_INTERNAL;
}

static enum sup_status define_locked(struct sup *s, const char *name, const struct vmdef *d,
				     char *err, size_t errlen)
{
	struct vm *old = sup_find(s, d->name);
	if (!name && old) {
		snprintf(err, errlen, "a VM named '%s' exists already; pick another name or remove it", d->name);
		return SUP_CONFLICT;
	}
	if (name && !old) {
		snprintf(err, errlen, "no VM named '%s'", name);
		return SUP_NOT_FOUND;
	}
	enum sup_status st = check_dependency(s, d, err, errlen);
	if (st != SUP_OK)
		return st;
	if (old && old->def.role == VM_ROLE_SERVICE && d->role == VM_ROLE_CLIENT) {
		for (struct vm *vm = s->vms; vm; vm = vm->next)
			if (strcmp(vm->def.depends_on, d->name) == 0) {
				snprintf(err, errlen, "'%s' depends on it: it must stay a service VM", vm->def.name);
				return SUP_CONFLICT;
			}
	}
	st = store_definition(s, d, err, errlen);
	if (st != SUP_OK)
		return st;
	if (old) {
		old->def = *d; /* a running VM gets the new definition at its next start */
		events_emit(s->events, "defined", d->name, NULL);
		return SUP_OK;
	}
	struct vm *vm = vm_new(s, d);
	if (!vm) {
		snprintf(err, errlen, "cannot open the console log of '%s'", d->name);
		return SUP_INTERNAL;
	}
	vm->next = s->vms;
	s->vms = vm;
	events_emit(s->events, "created", d->name, NULL);
	return SUP_OK;
}

enum sup_status sup_define(struct sup *s, const char *name, const char *text, char *created,
			   char *err, size_t errlen)
{
	struct vmdef *d = malloc(sizeof(*d));
	if (!d) {
		snprintf(err, errlen, "out of memory");
		return SUP_INTERNAL;
	}
	enum sup_status st = SUP_BAD_REQUEST;
	if (vmdef_parse(text, "request", name, d, err, errlen)) {
		pthread_mutex_lock(&s->lock);
		st = define_locked(s, name, d, err, errlen);
		pthread_mutex_unlock(&s->lock);
		if (created)
			snprintf(created, VMDEF_NAME_MAX + 1, "%s", d->name);
	}
	free(d);
	return st;
}

/* A new VM of the same name must not inherit the old one's console or VMM log. */
static void remove_logs(struct sup *s, const char *name)
{
	static const char *const suffixes[] = { ".log", ".log.1", ".vmm.log", ".vmm.log.1" };
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/logs/%s%s", s->cfg.state_dir, name, suffixes[i]);
		unlink(path);
	}
}

static void unlink_vm(struct sup *s, struct vm *vm)
{
	for (struct vm **p = &s->vms; *p; p = &(*p)->next)
		if (*p == vm) {
			*p = vm->next;
			break;
		}
}

enum sup_status sup_remove(struct sup *s, const char *name, char *err, size_t errlen)
{
	pthread_mutex_lock(&s->lock);
	struct vm *vm = sup_find(s, name);
	enum sup_status st = SUP_OK;
	if (!vm) {
		snprintf(err, errlen, "no VM named '%s'", name);
		st = SUP_NOT_FOUND;
	} else if (vm->keeper_fd >= 0 || vm->state == VM_BACKOFF || vm->state == VM_WAITING) {
		snprintf(err, errlen, "'%s' is %s; stop or kill it first", name, vm_shown_state(vm));
		st = SUP_CONFLICT;
	} else {
		for (struct vm *o = s->vms; o; o = o->next)
			if (strcmp(o->def.depends_on, name) == 0) {
				snprintf(err, errlen, "'%s' depends on '%s'; remove or change it first", o->def.name, name);
				st = SUP_CONFLICT;
			}
	}
	if (st == SUP_OK) {
		char path[PATH_MAX];
		store_def_path(s->cfg.state_dir, name, path, sizeof(path));
		unlink(path);
		rmdir(vm->paths.dir);
		remove_logs(s, name);
		if (vm->def.image[0])
			image_remove_overlay(s->cfg.state_dir, name);
		unlink_vm(s, vm);
		vm->removed = true;
		events_emit(s->events, "removed", name, NULL);
		if (vm->refs == 0)
			vm_free(vm);
	}
	pthread_mutex_unlock(&s->lock);
	return st;
}

/* ---- actions ---- */

static enum sup_status act_start(struct sup *s, struct vm *vm, char *err, size_t errlen)
{
	if (vm->keeper_fd >= 0 || vm->state == VM_WAITING) {
		snprintf(err, errlen, "'%s' is %s already", vm->def.name, vm_shown_state(vm));
		return SUP_CONFLICT;
	}
	vm->nfail = 0; /* a person's start clears the failure count */
	vm_request_start(s, vm);
	if (vm->state == VM_STOPPED) {
		snprintf(err, errlen, "'%s' could not be started (see shojid's log)", vm->def.name);
		return SUP_INTERNAL;
	}
	return SUP_OK;
}

/*
 * A stop asks the guest's agent for a clean shutdown first when it
 * answers (agent-watch.c does, and presses the button if that does not
 * end the VM in time); otherwise the power button is pressed at once,
 * after sup_action has released the lock (vm_press_button): a VMM that does not answer must not hold up every other
 * request for BUTTON_TIMEOUT_MS. Here only the state changes; the SIGKILL
 * at the deadline is supervisor.c's tick.
 */
static enum sup_status act_stop(struct sup *s, struct vm *vm, char *err, size_t errlen, bool restart,
				bool *press)
{
	if (vm->keeper_fd < 0) {
		bool pending = vm->state == VM_WAITING || vm->state == VM_BACKOFF || vm->state == VM_FAILED;
		if (!pending || restart) {
			if (restart)
				return act_start(s, vm, err, errlen);
			snprintf(err, errlen, "'%s' is not running", vm->def.name);
			return SUP_CONFLICT;
		}
		vm->state = VM_STOPPED; /* a planned start is cancelled */
		vm->want_running = false;
		return SUP_OK;
	}
	if (vm->state == VM_STARTING) {
		/* Its control socket is not up yet: the button could not be pressed, only a kill. */
		snprintf(err, errlen, "'%s' is still starting; %s it once it runs, or kill it", vm->def.name,
			 restart ? "restart" : "stop");
		return SUP_CONFLICT;
	}
	vm->want_running = restart;
	vm->restart_after_exit = restart;
	if (vm->state != VM_STOPPING) {
		vm->state = VM_STOPPING;
		vm->stop_deadline_ms = monotonic_ms() + s->cfg.stop_timeout_ms;
		/* A paused guest's agent cannot answer: the button, which resumes it first. */
		vm->stop_step = vm->agent_ready && !vm->paused ? STOP_ASK_AGENT : STOP_BUTTON;
		*press = vm->stop_step == STOP_BUTTON;
	}
	return SUP_OK;
}

/* Under the lock: the VMM said its vCPUs are paused (or go on again). */
static void vm_set_paused(struct sup *s, struct vm *vm, bool paused)
{
	if (vm->paused == paused)
		return;
	vm->paused = paused;
	log_info("%s: %s", vm->def.name, paused ? "paused" : "resumed");
	events_emit(s->events, paused ? "paused" : "resumed", vm->def.name, NULL);
	if (!paused) {
		/* Ping its agent at once: the heartbeat resumes and the guest's clock is checked. */
		vm->agent_next_ms = 0;
		vm->agent_misses = 0;
	}
}

/*
 * Called without the lock, with a reference held on vm (so a removal
 * cannot free it). gen tells whether the VMM is still the one being
 * stopped when the answer comes.
 */
void vm_press_button(struct sup *s, struct vm *vm)
{
	char path[sizeof(vm->paths.api)], why[256];
	pthread_mutex_lock(&s->lock);
	unsigned gen = vm->gen;
	bool paused = vm->paused;
	snprintf(path, sizeof(path), "%s", vm->paths.api);
	pthread_mutex_unlock(&s->lock);
	/* A paused guest would never see the button: it goes on first. */
	bool resumed = paused && vmmctl_call(path, "resume", BUTTON_TIMEOUT_MS, why, sizeof(why));
	bool pressed = (!paused || resumed) &&
		       vmmctl_call(path, "power-button", BUTTON_TIMEOUT_MS, why, sizeof(why));
	pthread_mutex_lock(&s->lock);
	if (resumed && gen == vm->gen)
		vm_set_paused(s, vm, false);
	if (gen == vm->gen && vm->state == VM_STOPPING && vm->keeper_fd >= 0) {
		if (pressed) {
			log_info("%s: pressed the power button", vm->def.name);
			events_emit(s->events, "stopping", vm->def.name,
				    json_pack("{s:i, s:s}", "timeout_ms", s->cfg.stop_timeout_ms, "via",
					      "power-button"));
		} else {
			log_warn("%s: %s; killing the VMM", vm->def.name, why);
			vm_kill(vm);
		}
	}
	pthread_mutex_unlock(&s->lock);
}


/* Pause and resume are checked under the lock and asked of the VMM without it (vm_pause_call). */
static enum sup_status act_pause(struct vm *vm, bool pause, char *err, size_t errlen)
{
	if (vm->keeper_fd < 0 || vm->state != VM_RUNNING) {
		snprintf(err, errlen, "'%s' is %s, not running: nothing to %s", vm->def.name, vm_shown_state(vm),
			 pause ? "pause" : "resume");
		return SUP_CONFLICT;
	}
	if (vm->paused == pause) {
		snprintf(err, errlen, "'%s' is %s already", vm->def.name, pause ? "paused" : "running");
		return SUP_CONFLICT;
	}
	return SUP_OK;
}

/* Without the lock, with a reference held on vm. */
static enum sup_status vm_pause_call(struct sup *s, struct vm *vm, bool pause, char *err, size_t errlen)
{
	char path[sizeof(vm->paths.api)], why[256];
	pthread_mutex_lock(&s->lock);
	unsigned gen = vm->gen;
	snprintf(path, sizeof(path), "%s", vm->paths.api);
	pthread_mutex_unlock(&s->lock);
	bool ok = vmmctl_call(path, pause ? "pause" : "resume", BUTTON_TIMEOUT_MS, why, sizeof(why));
	pthread_mutex_lock(&s->lock);
	if (ok && gen == vm->gen && vm->keeper_fd >= 0)
		vm_set_paused(s, vm, pause);
	pthread_mutex_unlock(&s->lock);
	if (!ok) {
		snprintf(err, errlen, "'%s': %s", vm->def.name, why);
		return SUP_INTERNAL;
	}
	return SUP_OK;
}

static enum sup_status act_kill(struct sup *s, struct vm *vm, char *err, size_t errlen)
{
	(void)s;
	if (vm->keeper_fd < 0) {
		snprintf(err, errlen, "'%s' is not running", vm->def.name);
		return SUP_CONFLICT;
	}
	vm->want_running = false;
	vm->restart_after_exit = false;
	if (!vm_kill(vm)) {
		snprintf(err, errlen, "'%s': cannot signal its VMM (already exiting?)", vm->def.name);
		return SUP_CONFLICT;
	}
	return SUP_OK;
}

enum sup_status sup_action(struct sup *s, const char *name, const char *action, char *err,
			   size_t errlen)
{
	pthread_mutex_lock(&s->lock);
	struct vm *vm = sup_find(s, name);
	enum sup_status st;
	bool press = false, pause_call = false;
	if (!vm) {
		snprintf(err, errlen, "no VM named '%s'", name);
		st = SUP_NOT_FOUND;
	} else if (strcmp(action, "start") == 0) {
		st = act_start(s, vm, err, errlen);
	} else if (strcmp(action, "stop") == 0) {
		st = act_stop(s, vm, err, errlen, false, &press);
	} else if (strcmp(action, "restart") == 0) {
		st = act_stop(s, vm, err, errlen, true, &press);
	} else if (strcmp(action, "kill") == 0) {
		st = act_kill(s, vm, err, errlen);
	} else if (strcmp(action, "pause") == 0 || strcmp(action, "resume") == 0) {
		st = act_pause(vm, action[0] == 'p', err, errlen);
		pause_call = st == SUP_OK;
	} else {
		snprintf(err, errlen, "unknown action '%.32s' (use start, stop, kill, restart, pause or resume)",
			 action);
		st = SUP_NOT_FOUND;
	}
	if (press || pause_call)
		vm->refs++;
	pthread_mutex_unlock(&s->lock);
	if (press)
		vm_press_button(s, vm);
	if (pause_call)
		st = vm_pause_call(s, vm, action[0] == 'p', err, errlen);
	if (press || pause_call)
		vm_put(s, vm);
	sup_wake(s);
	return st;
}

/* ---- console and log readers ---- */

struct vmlog *sup_log_get(struct sup *s, const char *name, void **ref)
{
	pthread_mutex_lock(&s->lock);
	struct vm *vm = sup_find(s, name);
	if (vm)
		vm->refs++;
	pthread_mutex_unlock(&s->lock);
	*ref = vm;
	return vm ? vm->log : NULL;
}

void sup_log_put(struct sup *s, void *ref)
{
	vm_put(s, ref);
}

void vm_put(struct sup *s, struct vm *vm)
{
	if (!vm)
		return;
	pthread_mutex_lock(&s->lock);
	bool gone = --vm->refs == 0 && vm->removed;
	pthread_mutex_unlock(&s->lock);
	if (gone)
		vm_free(vm);
}

bool sup_console_write(struct sup *s, void *ref, const void *buf, size_t n)
{
	struct vm *vm = ref;
	pthread_mutex_lock(&s->lock);
	bool ok = !vm->removed && vm->console_fd >= 0;
	/* Non-blocking: keys typed faster than the guest reads them are dropped. */
	if (ok && write(vm->console_fd, buf, n) < 0 && errno != EAGAIN)
		ok = false;
	pthread_mutex_unlock(&s->lock);
	return ok;
}

/* ---- operations relayed to a guest's agent ---- */

enum sup_status sup_agent_take(struct sup *s, const char *name, char *vsock, size_t vsock_len,
			       void **ref, char *err, size_t errlen)
{
	pthread_mutex_lock(&s->lock);
	struct vm *vm = sup_find(s, name);
	enum sup_status st = SUP_OK;
	if (!vm) {
		snprintf(err, errlen, "no VM named '%s'", name);
		st = SUP_NOT_FOUND;
	} else if (!vm->def.vsock_cid) {
		snprintf(err, errlen, "'%s' has no vsock device, so no agent (define \"vsock\": {\"cid\": N})", name);
		st = SUP_CONFLICT;
	} else if (vm->paused) {
		snprintf(err, errlen, "'%s' is paused: its agent cannot answer (shoji vm resume %s)", name, name);
		st = SUP_CONFLICT;
	} else if (vm->state != VM_RUNNING || !vm->agent_ready) {
		snprintf(err, errlen, "'%s' is %s: its agent does not answer (yet)", name,
			 vm->state == VM_RUNNING ? "running but not ready" : vm_state_name(vm->state));
		st = SUP_CONFLICT;
	} else if (vm->agent_ops >= AGENT_OPS_PER_VM) {
		snprintf(err, errlen, "'%s' has %d agent operations running; wait for one to end", name,
			 AGENT_OPS_PER_VM);
		st = SUP_BUSY;
	} else {
		vm->agent_ops++;
		vm->refs++;
		snprintf(vsock, vsock_len, "%s", vm->paths.vsock);
		*ref = vm;
	}
	pthread_mutex_unlock(&s->lock);
	return st;
}

void sup_agent_put(struct sup *s, void *ref)
{
	struct vm *vm = ref;
	pthread_mutex_lock(&s->lock);
	vm->agent_ops--;
	pthread_mutex_unlock(&s->lock);
	vm_put(s, vm);
}
