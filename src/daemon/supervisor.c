/*
 * The supervisor thread, starting VMMs, and what happens when one exits
 * (see supervisor.h for the states and the policy).
 */
#include "daemon/supervisor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "daemon/disk-check.h"
#include "daemon/image.h"
#include "daemon/jail-id.h"
#include "daemon/proc.h"
#include "daemon/spawn.h"
#include "daemon/store.h"
#include "daemon/vm.h"
#include "daemon/vmmctl.h"

#define TICK_MS 50
#define PING_TIMEOUT_MS 100
#define VMM_KILL_WAIT_MS 2000

const char *vm_state_name(enum vm_state st)
{
	static const char *const names[] = {
		[VM_STOPPED] = "stopped", [VM_WAITING] = "waiting", [VM_STARTING] = "starting",
		[VM_RUNNING] = "running", [VM_STOPPING] = "stopping", [VM_BACKOFF] = "backoff",
		[VM_FAILED] = "failed",
	};
	return names[st];
}

const char *vm_shown_state(const struct vm *vm)
{
	return vm->paused && vm->state == VM_RUNNING ? "paused" : vm_state_name(vm->state);
}

struct vm *sup_find(struct sup *s, const char *name)
{
	for (struct vm *vm = s->vms; vm; vm = vm->next)
		if (strcmp(vm->def.name, name) == 0)
			return vm;
	return NULL;
}

void sup_wake(struct sup *s)
{
	uint64_t one = 1;
	ssize_t w = write(s->wake_fd, &one, sizeof(one));
	(void)w;
}

static void emit(struct sup *s, const char *type, struct vm *vm, json_t *fields)
{
	events_emit(s->events, type, vm->def.name, fields);
}

/* ---- VM records ---- */

struct vm *vm_new(struct sup *s, const struct vmdef *d)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		return NULL;
	vm->def = *d;
	vm->keeper_fd = vm->vmm_fd = vm->console_fd = -1;
	vm->keeper_w = (struct vm_watch){ vm, WATCH_KEEPER };
	vm->console_w = (struct vm_watch){ vm, WATCH_CONSOLE };
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/logs/%s.log", s->cfg.state_dir, d->name);
	if (!vm_paths_make(s->cfg.run_dir, d->name, &vm->paths) ||
	    !(vm->log = vmlog_open(path, s->cfg.log_max))) {
		free(vm);
		return NULL;
	}
	return vm;
}

void vm_free(struct vm *vm)
{
	if (!vm)
		return;
	vmlog_close(vm->log);
	vm_agent_forget(vm);
	free(vm);
}

/* ---- state on disk, for re-adoption ---- */

static void vm_save_state(struct vm *vm)
{
	json_t *o = json_pack("{s:i, s:I, s:i, s:I}", "keeper_pid", (int)vm->keeper, "keeper_start",
			      (json_int_t)vm->keeper_start, "vmm_pid", (int)vm->vmm, "vmm_start",
			      (json_int_t)vm->vmm_start);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	char err[256];
	if (!text || !store_write(vm->paths.state, text, err, sizeof(err)))
		log_warn("%s: cannot record the VMM's pid; a restarted shojid will not re-adopt it",
			 vm->def.name);
	free(text);
	json_decref(o);
}

/* ---- starting ---- */

/* Two VM names whose jail ids collide must not share a user. */
static bool vm_jail_id_unique(struct sup *s, struct vm *vm, uint32_t id)
{
	for (struct vm *o = s->vms; o; o = o->next) {
		if (o != vm && jail_id_of(o->def.name) == id) {
			log_error("%s: not starting: its jail user id %u is also VM %s's; rename one "
				  "of them", vm->def.name, id, o->def.name);
			return false;
		}
	}
	return true;
}

/*
 * The VM's private run directory: root's, mode 0700, or for a jailed VMM
 * 0710 with the VM's own group, so that as its unprivileged user it can
 * still reach the host's PATH_<port> vsock listeners in it. It may never
 * create, rename or remove anything there: root (the daemon and the
 * keeper) writes state.json and exit-status in this directory and
 * connects to the sockets, and a compromised VMM that owned the directory
 * could swap them for links to anything. Its sockets are made before it
 * drops to its user; the daemon removes them here before the next start.
 */
static bool vm_prepare_dir(struct vm *vm, uint32_t jail_id)
{
	mode_t mode = jail_id ? 0710 : 0700;
	if (!store_mkdirs(vm->paths.dir, 0700) || chown(vm->paths.dir, 0, (gid_t)jail_id) < 0 ||
	    chmod(vm->paths.dir, mode) < 0) {
		log_error("%s: cannot prepare %s: %m", vm->def.name, vm->paths.dir);
		return false;
	}
	/* Stale sockets of an earlier run: shoji-vmm's console refuses to bind over one. */
	unlink(vm->paths.console);
	unlink(vm->paths.api);
	unlink(vm->paths.vsock);
	return true;
}

/* STATE/logs/NAME.vmm.log: the VMM's stderr. */
static void vmm_log_path(struct sup *s, struct vm *vm, char *out, size_t len)
{
	snprintf(out, len, "%s/logs/%s.vmm.log", s->cfg.state_dir, vm->def.name);
}

/*
 * The VMM's stderr: STATE/logs/NAME.vmm.log, kept under --vmm-log-max by its
 * keeper (NAME.vmm.log.1 holds the part before). fd -1 when it cannot be
 * opened: the VMM then runs without a log rather than not at all.
 */
static void vm_open_stderr(struct sup *s, struct vm *vm, struct capped_file *log)
{
	char path[PATH_MAX + 16];
	vmm_log_path(s, vm, path, sizeof(path));
	if (!capped_file_open(log, path, s->cfg.vmm_log_max, -1)) {
		log_warn("%s: cannot open the VMM's log %s: %m", vm->def.name, path);
		log->fd = -1;
	}
}

bool vm_kill(struct vm *vm)
{
	if (proc_pidfd_signal(vm->vmm_fd, SIGKILL))
		return true;
	/*
	 * No pidfd for the VMM (re-adopted, and its pid could not be
	 * confirmed): the keeper's death takes the VMM with it (spawn.h).
	 */
	if (!proc_pidfd_signal(vm->keeper_fd, SIGKILL))
		return false;
	vm->keeper_killed = true;
	return true;
}

void vm_watch_keeper(struct sup *s, struct vm *vm)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &vm->keeper_w };
	if (vm->keeper_fd >= 0 && epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, vm->keeper_fd, &ev) < 0)
		log_error("%s: cannot watch the VMM: %m", vm->def.name);
}

static void vm_start_failed(struct sup *s, struct vm *vm, const char *why)
{
	vm->state = VM_STOPPED;
	snprintf(vm->last_exit, sizeof(vm->last_exit), "start-failed");
	emit(s, "start-failed", vm, why ? json_pack("{s:s}", "reason", why) : NULL);
}

/*
 * Opens the pidfds of a VMM that waits before its exec (spawn.h), so
 * neither pid can have been reused; false (everything closed) if one
 * cannot be opened: a VMM the daemon cannot watch must not run.
 */
static bool vm_take_pids(struct vm *vm, const struct spawned *sp)
{
	vm->keeper = sp->keeper;
	vm->vmm = sp->vmm;
	vm->keeper_fd = proc_pidfd_open(sp->keeper);
	vm->vmm_fd = sp->vmm > 0 ? proc_pidfd_open(sp->vmm) : -1;
	vm->keeper_start = proc_start_time(sp->keeper);
	vm->vmm_start = sp->vmm > 0 ? proc_start_time(sp->vmm) : 0;
	if (vm->keeper_fd >= 0 && vm->vmm_fd >= 0 && vm->keeper_start && vm->vmm_start)
		return true;
	log_error("%s: cannot watch the new VMM (pidfd_open: %m); not starting it", vm->def.name);
	if (vm->keeper_fd >= 0)
		close(vm->keeper_fd);
	if (vm->vmm_fd >= 0)
		close(vm->vmm_fd);
	vm->keeper_fd = vm->vmm_fd = -1;
	vm->keeper = vm->vmm = 0;
	return false;
}

static bool vm_spawn_def(struct sup *s, struct vm *vm, const struct vmdef *def)
{
	char why[PATH_MAX + 64] = "";
	if (!disk_check_chains(def, s->cfg.image_dirs, why, sizeof(why))) {
		log_error("%s: not starting: %s", vm->def.name, why);
		vm_start_failed(s, vm, why);
		return false;
	}
	uint32_t jail_id = s->cfg.jail ? jail_id_of(vm->def.name) : 0;
	if (jail_id && !vm_jail_id_unique(s, vm, jail_id)) {
		vm_start_failed(s, vm, "its jail user id is another VM's; rename one of them");
		return false;
	}
	struct vmm_argv *a = malloc(sizeof(*a));
	bool ok = a && vm_prepare_dir(vm, jail_id) &&
		  vmm_argv_build(s->cfg.vmm_path, def, &vm->paths, s->cfg.image_dirs, jail_id, a);
	struct spawned sp = { -1, -1, -1 };
	if (ok) {
		struct capped_file log;
		vm_open_stderr(s, vm, &log);
		ok = spawn_vmm(a->argv, vm->paths.status, &log, jail_id != 0, &sp);
		if (!ok)
			log_error("%s: cannot start %s: %m", vm->def.name, s->cfg.vmm_path);
		capped_file_close(&log);
	}
	free(a);
	if (ok && !vm_take_pids(vm, &sp)) {
		spawn_abort(&sp);
		ok = false;
	}
	if (!ok) {
		vm_start_failed(s, vm, NULL);
		return false;
	}
	vm->state = VM_STARTING;
	vm->gen++;
	vm->start_timed_out = false;
	vm->started_ms = monotonic_ms();
	vm_save_state(vm);
	vm_watch_keeper(s, vm);
	spawn_release(&sp);
	emit(s, "starting", vm, json_pack("{s:i}", "pid", (int)vm->vmm));
	return true;
}

bool vm_spawn(struct sup *s, struct vm *vm)
{
	char why[PATH_MAX + 64] = "";
	/* An image VM's overlay is its first disk (daemon/image.h). */
	struct vmdef *def = malloc(sizeof(*def));
	if (!def || !image_effective_def(s->cfg.state_dir, &vm->def, def, why, sizeof(why))) {
		log_error("%s: not starting: %s", vm->def.name, def ? why : "out of memory");
		vm_start_failed(s, vm, def ? why : "out of memory");
		free(def);
		return false;
	}
	bool spawned = vm_spawn_def(s, vm, def);
	free(def);
	return spawned;
}

/* Start now, or once the VM it depends on is running. */
void vm_request_start(struct sup *s, struct vm *vm)
{
	vm->want_running = true;
	struct vm *dep = vm->def.depends_on[0] ? sup_find(s, vm->def.depends_on) : NULL;
	if (vm->def.depends_on[0] && (!dep || dep->state != VM_RUNNING)) {
		if (vm->state != VM_WAITING)
			emit(s, "waiting", vm, json_pack("{s:s}", "for", vm->def.depends_on));
		vm->state = VM_WAITING;
		return;
	}
	vm_spawn(s, vm);
}

/* ---- exits ---- */

/* Signals that someone sent to end the VMM; any other one is the VMM's own fault. */
static bool is_kill_signal(int sig)
{
	return sig == SIGKILL || sig == SIGTERM || sig == SIGINT || sig == SIGHUP;
}

/*
 * Exit statuses of a VMM that never got as far as its control socket and
 * mean it could not start: 1 (it failed: /dev/kvm, memory, a file), 2 (bad
 * usage or input: the definition and the VMM disagree) and 127 (the keeper
 * could not exec it).
 */
static bool is_start_failure(int status)
{
	return status == 1 || status == 2 || status == 127;
}

static const char *exit_reason(bool known, bool signaled, int value, bool starting, bool keeper_killed)
{
	if (!known)
		return keeper_killed ? "killed" : "unknown";
	if (signaled)
		return is_kill_signal(value) ? "killed" : "vmm-crash";
	if (starting && is_start_failure(value))
		return "start-failed";
	switch (value) {
	case 0: return "poweroff";
	case 3: return "reboot";
	case 4: return "vcpu-crash";
	case 5: return "panic";
	case 6: return "stopped";
	default: return "vmm-crash";
	}
}

/* The last line the VMM wrote to stderr (what it said when it failed), printable, into out. */
static void vm_read_last_error(struct sup *s, struct vm *vm, char *out, size_t len)
{
	char path[PATH_MAX + 16], buf[1024];
	out[0] = '\0';
	vmm_log_path(s, vm, path, sizeof(path));
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return;
	}
	off_t from = st.st_size > (off_t)sizeof(buf) - 1 ? st.st_size - (off_t)sizeof(buf) + 1 : 0;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
	close(fd);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	if (n <= 0)
		return;
	buf[n] = '\0';
	char *line = strrchr(buf, '\n');
	line = line ? line + 1 : buf;
	size_t o = 0;
	for (; *line && o + 1 < len; line++)
		out[o++] = (*line >= 0x20 && *line < 0x7f) ? *line : '?';
	out[o] = '\0';
}

static void vm_close_process(struct sup *s, struct vm *vm)
{
	if (vm->keeper_fd >= 0) {
		epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, vm->keeper_fd, NULL);
		close(vm->keeper_fd);
	}
	if (vm->console_fd >= 0) {
		epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, vm->console_fd, NULL);
		close(vm->console_fd);
	}
	if (vm->vmm_fd >= 0)
		close(vm->vmm_fd);
	vm->keeper_fd = vm->vmm_fd = vm->console_fd = -1;
	vm->keeper = vm->vmm = 0;
	unlink(vm->paths.state);
	unlink(vm->paths.status);
}

/* A service VM failed: count it, and either schedule the restart or give up. */
static void vm_schedule_restart(struct sup *s, struct vm *vm)
{
	long now = monotonic_ms();
	unsigned kept = 0;
	for (unsigned i = 0; i < vm->nfail; i++)
		if (now - vm->fail_ms[i] < RESTART_WINDOW_S * 1000L)
			vm->fail_ms[kept++] = vm->fail_ms[i];
	vm->nfail = kept;
	if (vm->nfail == RESTART_LIMIT) {
		memmove(vm->fail_ms, vm->fail_ms + 1, (RESTART_LIMIT - 1) * sizeof(long));
		vm->nfail--;
	}
	vm->fail_ms[vm->nfail++] = now;
	if (vm->nfail >= RESTART_LIMIT) {
		vm->state = VM_FAILED;
		vm->want_running = false;
		emit(s, "failed", vm, json_pack("{s:i, s:i}", "failures", RESTART_LIMIT, "window_s",
						RESTART_WINDOW_S));
		return;
	}
	long delay = s->cfg.backoff_ms;
	for (unsigned i = 1; i < vm->nfail && delay < BACKOFF_MAX_MS; i++)
		delay *= 2;
	if (delay > BACKOFF_MAX_MS)
		delay = BACKOFF_MAX_MS;
	vm->state = VM_BACKOFF;
	vm->next_start_ms = now + delay;
	emit(s, "restarting", vm, json_pack("{s:I}", "in_ms", (json_int_t)delay));
}

/*
 * The keeper ended; its VMM must be gone before anything starts another.
 * It normally is (the keeper waits for it, and the VMM gets SIGKILL when
 * its keeper dies), but a keeper killed from outside, or one of an older
 * daemon, may leave it running for a moment or for good.
 */
static void vm_end_vmm(struct vm *vm)
{
	struct pollfd p = { .fd = vm->vmm_fd, .events = POLLIN };
	if (vm->vmm_fd < 0 || poll(&p, 1, 0) == 1)
		return;
	log_warn("%s: the keeper ended but its VMM %d still runs; killing it", vm->def.name, (int)vm->vmm);
	proc_pidfd_signal(vm->vmm_fd, SIGKILL);
	if (poll(&p, 1, VMM_KILL_WAIT_MS) != 1)
		log_error("%s: VMM %d did not end after SIGKILL", vm->def.name, (int)vm->vmm);
}

/* What happens after an exit: a restart now, one after the back-off, or none. */
static void vm_after_exit(struct sup *s, struct vm *vm, const char *reason, bool signaled, int value)
{
	bool restart = vm->restart_after_exit;
	vm->restart_after_exit = false;
	vm->state = VM_STOPPED;
	bool hopeless = strcmp(reason, "start-failed") == 0 && !signaled && value == 2;
	if (restart || (vm->want_running && strcmp(reason, "reboot") == 0)) {
		vm->restarts++;
		vm_request_start(s, vm);
	} else if (hopeless && vm->want_running && vm->def.role == VM_ROLE_SERVICE) {
		/* Bad usage or input: the same VMM with the same definition fails the same way. */
		vm->state = VM_FAILED;
		vm->want_running = false;
		emit(s, "failed", vm, json_pack("{s:s, s:s}", "reason", "start-failed", "error", vm->last_error));
	} else if (vm->want_running && vm->def.role == VM_ROLE_SERVICE && strcmp(reason, "poweroff") != 0) {
		vm->restarts++;
		vm_schedule_restart(s, vm);
	} else {
		vm->want_running = false;
	}
}

void vm_handle_exit(struct sup *s, struct vm *vm)
{
	vm_end_vmm(vm);
	if (vm->keeper_fd >= 0)
		proc_pidfd_reap(vm->keeper_fd); /* our child unless re-adopted */
	bool signaled = false;
	int value = 0;
	bool known = spawn_read_status(vm->paths.status, &signaled, &value);
	const char *reason = vm->start_timed_out ? "start-failed"
						 : exit_reason(known, signaled, value, vm->state == VM_STARTING,
							       vm->keeper_killed);
	vm->start_timed_out = vm->keeper_killed = false;
	snprintf(vm->last_exit, sizeof(vm->last_exit), "%s", reason);
	vm->last_status = value;
	vm->last_error[0] = '\0';
	if (strcmp(reason, "start-failed") == 0 || strcmp(reason, "vmm-crash") == 0)
		vm_read_last_error(s, vm, vm->last_error, sizeof(vm->last_error));
	vm_close_process(s, vm);
	vm_agent_forget(vm);
	vm->paused = false;
	json_t *fields = json_pack("{s:s, s:i}", "reason", reason, signaled ? "signal" : "status", value);
	if (vm->last_error[0])
		json_object_set_new(fields, "error", json_string(vm->last_error));
	emit(s, "exited", vm, fields);
	vm_after_exit(s, vm, reason, signaled, value);
}

/* ---- the console ---- */

static void vm_connect_console(struct sup *s, struct vm *vm)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(vm->paths.console) >= sizeof(addr.sun_path))
		return;
	memcpy(addr.sun_path, vm->paths.console, strlen(vm->paths.console) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		close(fd); /* not there yet: the next tick tries again */
		return;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &vm->console_w };
	if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		close(fd);
		return;
	}
	vm->console_fd = fd;
}

/* Reads what the guest wrote; bounded per call so one chatty guest cannot starve the rest. */
static void vm_read_console(struct sup *s, struct vm *vm)
{
	char buf[16384];
	for (int i = 0; i < 16 && vm->console_fd >= 0; i++) {
		ssize_t r = read(vm->console_fd, buf, sizeof(buf));
		if (r > 0) {
			vmlog_append(vm->log, buf, (size_t)r);
			continue;
		}
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		/* EOF: the VMM is going away, or it had another client already. */
		epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, vm->console_fd, NULL);
		close(vm->console_fd);
		vm->console_fd = -1;
	}
}

/* ---- the loop ---- */

/* The VMM answered its first ping: it is up. */
static void vm_mark_running(struct sup *s, struct vm *vm, long now)
{
	vm->state = VM_RUNNING;
	emit(s, "running", vm, json_pack("{s:i, s:I}", "pid", (int)vm->vmm, "start_ms",
					 (json_int_t)(now - vm->started_ms)));
}

/* A VMM whose control socket never answered: killed, and its exit reported as start-failed. */
static void vm_check_start_timeout(struct sup *s, struct vm *vm, long now)
{
	if (vm->state != VM_STARTING || vm->start_timed_out ||
	    now - vm->started_ms < s->cfg.start_timeout_ms)
		return;
	vm->start_timed_out = true;
	emit(s, "start-timeout", vm, json_pack("{s:i}", "timeout_ms", s->cfg.start_timeout_ms));
	vm_kill(vm);
}

static void vm_tick(struct sup *s, struct vm *vm, long now)
{
	bool alive = vm->keeper_fd >= 0;
	if (alive && vm->console_fd < 0 && vm->state != VM_STOPPING)
		vm_connect_console(s, vm);
	vm_check_start_timeout(s, vm, now);
	if (vm->state == VM_STOPPING && now >= vm->stop_deadline_ms && vm->stop_deadline_ms) {
		vm->stop_deadline_ms = 0;
		emit(s, "stop-timeout", vm, json_pack("{s:i}", "timeout_ms", s->cfg.stop_timeout_ms));
		vm_kill(vm);
	}
	if (vm->state == VM_BACKOFF && now >= vm->next_start_ms)
		vm_request_start(s, vm);
	if (vm->state == VM_WAITING) {
		struct vm *dep = sup_find(s, vm->def.depends_on);
		if (dep && dep->state == VM_RUNNING)
			vm_spawn(s, vm);
	}
}

/* ---- pings, made without the lock ---- */

struct ping {
	struct vm *vm;
	unsigned gen;
	bool ok;
	bool paused;              /* the VMM's status: a VMM adopted while paused */
	char path[sizeof(((struct vm_paths *)0)->api)];
};

/*
 * The VMs still starting, to ping once the lock is released: a ping may
 * take PING_TIMEOUT_MS, and the API must not wait for it. The vm pointers
 * stay valid while unlocked: a VM whose keeper runs cannot be removed, and
 * only this thread notices a keeper's exit. NULL when there is none.
 */
static struct ping *pings_collect(struct sup *s, size_t *n)
{
	*n = 0;
	for (struct vm *vm = s->vms; vm; vm = vm->next)
		*n += vm->state == VM_STARTING && vm->keeper_fd >= 0;
	struct ping *p = *n ? calloc(*n, sizeof(*p)) : NULL;
	size_t i = 0;
	for (struct vm *vm = s->vms; p && vm; vm = vm->next)
		if (vm->state == VM_STARTING && vm->keeper_fd >= 0) {
			p[i] = (struct ping){ .vm = vm, .gen = vm->gen };
			snprintf(p[i].path, sizeof(p[i].path), "%s", vm->paths.api);
			i++;
		}
	return p;
}

static void pings_apply(struct sup *s, struct ping *p, size_t n)
{
	long now = monotonic_ms();
	for (size_t i = 0; i < n; i++)
		if (p[i].ok && p[i].vm->gen == p[i].gen && p[i].vm->state == VM_STARTING) {
			p[i].vm->paused = p[i].paused;
			vm_mark_running(s, p[i].vm, now);
		}
}

static void sup_handle_event(struct sup *s, struct epoll_event *ev)
{
	if (ev->data.ptr == NULL) {
		uint64_t v;
		ssize_t r = read(s->wake_fd, &v, sizeof(v));
		(void)r;
		return;
	}
	struct vm_watch *w = ev->data.ptr;
	if (w->kind == WATCH_KEEPER && w->vm->keeper_fd >= 0)
		vm_handle_exit(s, w->vm);
	else if (w->kind == WATCH_CONSOLE && w->vm->console_fd >= 0)
		vm_read_console(s, w->vm);
}

static void *sup_thread(void *arg)
{
	struct sup *s = arg;
	for (;;) {
		struct epoll_event evs[16];
		int n = epoll_wait(s->epoll_fd, evs, 16, TICK_MS);
		pthread_mutex_lock(&s->lock);
		if (s->stopping) {
			pthread_mutex_unlock(&s->lock);
			return NULL;
		}
		for (int i = 0; i < n; i++)
			sup_handle_event(s, &evs[i]);
		long now = monotonic_ms();
		for (struct vm *vm = s->vms; vm; vm = vm->next)
			vm_tick(s, vm, now);
		size_t np;
		struct ping *p = pings_collect(s, &np);
		pthread_mutex_unlock(&s->lock);
		if (!p)
			continue;
		char err[256];
		for (size_t i = 0; i < np; i++) {
			json_t *reply = NULL;
			p[i].ok = vmmctl_request(p[i].path, "status", PING_TIMEOUT_MS, &reply, err, sizeof(err));
			p[i].paused = json_is_true(json_object_get(reply, "paused"));
			json_decref(reply);
		}
		pthread_mutex_lock(&s->lock);
		pings_apply(s, p, np);
		pthread_mutex_unlock(&s->lock);
		free(p);
	}
}

/* ---- loading ---- */

static void sup_note_invalid(struct sup *s, const char *file, const char *err)
{
	log_error("%s", err);
	json_array_append_new(s->invalid, json_pack("{s:s, s:s}", "file", file, "error", err));
}

static void sup_load_one(struct sup *s, const char *dir, const char *file)
{
	size_t len = strlen(file);
	if (len < 6 || strcmp(file + len - 5, ".json") != 0)
		return;
	char path[PATH_MAX + NAME_MAX + 2], name[VMDEF_NAME_MAX + 2], err[768];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	snprintf(name, sizeof(name), "%.*s", (int)(len - 5), file);
	char *text = store_read(path, err, sizeof(err));
	struct vmdef *d = malloc(sizeof(*d));
	bool ok = text && d && vmdef_parse(text, path, name, d, err, sizeof(err));
	free(text);
	if (!ok) {
		sup_note_invalid(s, path, d ? err : "out of memory");
		free(d);
		return;
	}
	struct vm *vm = vm_new(s, d);
	free(d);
	if (!vm) {
		sup_note_invalid(s, path, "cannot open the VM's console log or its run directory is too long");
		return;
	}
	vm->next = s->vms;
	s->vms = vm;
}

static bool sup_check_dir(const char *dir)
{
	char err[PATH_MAX + 128];
	if (store_check_dir(dir, err, sizeof(err)))
		return true;
	log_error("%s", err);
	return false;
}

static bool sup_load(struct sup *s)
{
	char dir[PATH_MAX], logs[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/vms", s->cfg.state_dir);
	snprintf(logs, sizeof(logs), "%s/logs", s->cfg.state_dir);
	if (!store_mkdirs(dir, 0700) || !store_mkdirs(logs, 0700)) {
		log_error("state directory %s: %m", s->cfg.state_dir);
		return false;
	}
	const char *const checked[] = { s->cfg.state_dir, dir, logs };
	for (size_t i = 0; i < sizeof(checked) / sizeof(checked[0]); i++)
		if (!sup_check_dir(checked[i]))
			return false;
	DIR *d = opendir(dir);
	if (!d) {
		log_error("%s: %m", dir);
		return false;
	}
	struct dirent *e;
	while ((e = readdir(d)))
		sup_load_one(s, dir, e->d_name);
	closedir(d);
	return true;
}

/*
 * A hand-edited file may name a dependency that is not there or is a
 * client VM; the API refuses that (check_dependency in control.c), and so
 * does loading: the VM is listed under "invalid" and not loaded.
 */
static void sup_check_dependencies(struct sup *s)
{
	for (struct vm **p = &s->vms; *p;) {
		struct vm *vm = *p;
		char err[256], path[PATH_MAX + 64];
		struct vm *dep = vm->def.depends_on[0] ? sup_find(s, vm->def.depends_on) : NULL;
		if (vmdef_dependency_ok(&vm->def, dep ? &dep->def : NULL, err, sizeof(err))) {
			p = &vm->next;
			continue;
		}
		store_def_path(s->cfg.state_dir, vm->def.name, path, sizeof(path));
		char msg[PATH_MAX + 400];
		snprintf(msg, sizeof(msg), "%s: key 'depends_on': %s", path, err);
		sup_note_invalid(s, path, msg);
		*p = vm->next;
		vm_free(vm);
	}
}

struct sup *sup_create(const struct sup_config *cfg, struct events *events)
{
	struct sup *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->cfg = *cfg;
	s->events = events;
	s->invalid = json_array();
	pthread_mutex_init(&s->lock, NULL);
	s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	if (s->epoll_fd < 0 || s->wake_fd < 0 || epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->wake_fd, &ev) < 0 ||
	    !store_mkdirs(cfg->run_dir, 0700) || !sup_check_dir(cfg->run_dir) || !sup_load(s)) {
		log_error("supervisor: cannot start: %m");
		sup_destroy(s);
		return NULL;
	}
	sup_check_dependencies(s);
	/* Adopt first: a VMM that survived the last daemon is not started twice. */
	for (struct vm *vm = s->vms; vm; vm = vm->next)
		sup_adopt(s, vm);
	for (struct vm *vm = s->vms; vm; vm = vm->next)
		if (vm->state == VM_STOPPED && vm->def.autostart && !vm->last_exit[0])
			vm_request_start(s, vm);
	return s;
}

bool sup_start(struct sup *s)
{
	if (pthread_create(&s->thread, NULL, sup_thread, s) != 0)
		return false;
	s->thread_started = true;
	return agent_watch_start(s);
}

void sup_destroy(struct sup *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_mutex_unlock(&s->lock);
	if (s->thread_started) {
		sup_wake(s);
		pthread_join(s->thread, NULL);
	}
	agent_watch_join(s);
	while (s->vms) {
		struct vm *vm = s->vms;
		s->vms = vm->next;
		/* The VMMs keep running; only our descriptors go. */
		if (vm->keeper_fd >= 0)
			close(vm->keeper_fd);
		if (vm->vmm_fd >= 0)
			close(vm->vmm_fd);
		if (vm->console_fd >= 0)
			close(vm->console_fd);
		vm_free(vm);
	}
	json_decref(s->invalid);
	if (s->epoll_fd >= 0)
		close(s->epoll_fd);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
