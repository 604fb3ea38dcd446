/*
 * The agent watcher: one thread of shojid that talks to the shoji-agent of
 * every running VM with a vsock device (docs/agent.md).
 *
 *   - ready: a running VM is pinged every second until its agent answers;
 *     then its info is read, the VM is `ready` and the event says so;
 *   - heartbeat: a ready VM is pinged every HEARTBEAT_MS; HEARTBEAT_MISSES
 *     missed in a row make it not ready (event `agent-lost`); a guest clock
 *     more than CLOCK_SLACK_S off the host's (a host that slept, a VM that
 *     was paused) is set again (event `clock-set`);
 *   - stop: a VM being stopped whose agent answers is asked to shut down;
 *     the power button follows after half the stop timeout, then the kill
 *     at the deadline (supervisor.c's tick).
 *
 * Every call is made without the lock, with a reference held on the VM
 * and its generation noted: an answer about a VMM that has since exited is
 * dropped. The calls are short (AGENT_CALL_MS), so one wedged agent delays
 * the others by at most that.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "daemon/agent-link.h"
#include "daemon/vm.h"

#define WATCH_TICK_MS     250
#define FIRST_PING_MS     1000
#define HEARTBEAT_MS      5000
#define HEARTBEAT_MISSES  3
#define AGENT_CALL_MS     2000
#define CLOCK_SLACK_S     2.0
/* A guest whose clock is still off after it was set (a clock that cannot
 * be set, an agent that lies) is set again at most this often, so it
 * cannot make shojid write an event and a log line every heartbeat. */
#define CLOCK_SET_EVERY_MS 60000

enum job_kind { JOB_PING, JOB_SHUTDOWN, JOB_BUTTON };

struct job {
	struct vm *vm;
	unsigned gen;
	enum job_kind kind;
	bool was_ready;
	bool may_set_clock;
	bool clock_tried;         /* result: set-time was sent */
	char vsock[sizeof(((struct vm_paths *)0)->vsock)];
	/* results */
	json_t *reply;            /* ping or shutdown reply */
	json_t *info;             /* info, read once on the way to ready */
	char err[256];
};

static double wall_clock(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- what to do, chosen under the lock ---- */

static bool vm_has_agent_job(const struct vm *vm, long now, enum job_kind *kind)
{
	if (vm->keeper_fd < 0 || !vm->def.vsock_cid)
		return false;
	if (vm->state == VM_RUNNING && !vm->paused && now >= vm->agent_next_ms &&
	    vm->agent_ops < AGENT_OPS_PER_VM) {
		*kind = JOB_PING;
		return true;
	}
	if (vm->state != VM_STOPPING)
		return false;
	if (vm->stop_step == STOP_ASK_AGENT) {
		*kind = JOB_SHUTDOWN;
		return true;
	}
	if (vm->stop_step == STOP_AGENT_ASKED && now >= vm->stop_button_ms) {
		*kind = JOB_BUTTON;
		return true;
	}
	return false;
}

/* The jobs of this tick, each holding a reference on its VM; NULL if none. */
static struct job *jobs_collect(struct sup *s, size_t *n)
{
	long now = monotonic_ms();
	enum job_kind kind;
	*n = 0;
	for (struct vm *vm = s->vms; vm; vm = vm->next)
		*n += vm_has_agent_job(vm, now, &kind);
	struct job *jobs = *n ? calloc(*n, sizeof(*jobs)) : NULL;
	size_t i = 0;
	for (struct vm *vm = s->vms; jobs && vm; vm = vm->next) {
		if (!vm_has_agent_job(vm, now, &kind))
			continue;
		jobs[i] = (struct job){ .vm = vm, .gen = vm->gen, .kind = kind, .was_ready = vm->agent_ready,
				      .may_set_clock = !vm->clock_set_ms ||
						       now - vm->clock_set_ms >= CLOCK_SET_EVERY_MS };
		snprintf(jobs[i].vsock, sizeof(jobs[i].vsock), "%s", vm->paths.vsock);
		vm->refs++;
		if (kind == JOB_PING)
			vm->agent_ops++;
		else if (kind == JOB_SHUTDOWN)
			vm->stop_step = STOP_AGENT_ASKED; /* asked once, whatever the answer */
		else
			vm->stop_step = STOP_BUTTON;
		i++;
	}
	if (!jobs)
		*n = 0;
	return jobs;
}

/* ---- the calls, without the lock ---- */

static json_t *call_op(struct job *j, const char *op)
{
	json_t *req = json_pack("{s:s}", "op", op);
	json_t *reply = agent_link_call(j->vsock, req, AGENT_CALL_MS, j->err, sizeof(j->err));
	json_decref(req);
	return reply;
}

/* A guest clock far from the host's is set; the reply's "time" is the guest's. */
static void sync_clock(struct job *j)
{
	json_t *t = json_object_get(j->reply, "time");
	if (!j->may_set_clock || !json_is_number(t) ||
	    fabs(json_number_value(t) - wall_clock()) <= CLOCK_SLACK_S)
		return;
	j->clock_tried = true;
	json_t *req = json_pack("{s:s, s:f}", "op", "set-time", "time", wall_clock());
	char err[256];
	json_t *r = agent_link_call(j->vsock, req, AGENT_CALL_MS, err, sizeof(err));
	if (r)
		json_object_set_new(j->reply, "clock_set_s", json_real(json_number_value(t) - wall_clock()));
	else
		log_warn("%s: cannot set the guest's clock: %s", j->vsock, err);
	json_decref(r);
	json_decref(req);
}

static void job_run(struct sup *s, struct job *j)
{
	switch (j->kind) {
	case JOB_PING:
		j->reply = call_op(j, "ping");
		if (j->reply && !j->was_ready)
			j->info = call_op(j, "info");
		if (j->reply)
			sync_clock(j);
		break;
	case JOB_SHUTDOWN:
		j->reply = call_op(j, "shutdown");
		break;
	case JOB_BUTTON:
		vm_press_button(s, j->vm);
		break;
	}
}

/* ---- the answers, under the lock ---- */

static void emit(struct sup *s, struct vm *vm, const char *type, json_t *fields)
{
	events_emit(s->events, type, vm->def.name, fields);
}

static json_t *ready_fields(const json_t *info)
{
	json_t *f = json_object();
	const char *keys[] = { "version", "kernel", "hostname" };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		json_t *v = json_object_get(info, keys[i]);
		if (json_is_string(v))
			json_object_set(f, keys[i], v);
	}
	json_t *os = json_object_get(json_object_get(info, "os"), "pretty_name");
	if (json_is_string(os))
		json_object_set(f, "os", os);
	return f;
}

static void apply_ping(struct sup *s, struct vm *vm, struct job *j, long now)
{
	if (j->reply && (vm->agent_ready || j->info)) {
		vm->agent_misses = 0;
		vm->agent_next_ms = now + HEARTBEAT_MS;
		if (!vm->agent_ready) {
			vm->agent_ready = true;
			json_decref(vm->agent_info);
			json_object_del(j->info, "ok");
			vm->agent_info = json_incref(j->info);
			log_info("%s: the agent answers; the VM is ready", vm->def.name);
			emit(s, vm, "ready", ready_fields(j->info));
		}
		if (j->clock_tried)
			vm->clock_set_ms = now;
		json_t *set = json_object_get(j->reply, "clock_set_s");
		if (set)
			emit(s, vm, "clock-set", json_pack("{s:O}", "off_by_s", set));
		return;
	}
	if (!vm->agent_ready) {
		vm->agent_next_ms = now + FIRST_PING_MS;
		return;
	}
	vm->agent_next_ms = now + FIRST_PING_MS;
	if (++vm->agent_misses < HEARTBEAT_MISSES)
		return;
	vm->agent_ready = false;
	log_warn("%s: the agent missed %d heartbeats: %s", vm->def.name, HEARTBEAT_MISSES, j->err);
	emit(s, vm, "agent-lost", json_pack("{s:s}", "error", j->err));
}

static void apply_shutdown(struct sup *s, struct vm *vm, struct job *j, long now)
{
	if (vm->state != VM_STOPPING || vm->stop_step != STOP_AGENT_ASKED)
		return;
	if (j->reply) {
		vm->stop_button_ms = now + s->cfg.stop_timeout_ms / 2;
		log_info("%s: asked the agent to shut down; the power button follows in %d ms", vm->def.name,
			 s->cfg.stop_timeout_ms / 2);
		emit(s, vm, "stopping", json_pack("{s:i, s:s}", "timeout_ms", s->cfg.stop_timeout_ms, "via",
						  "agent"));
		return;
	}
	log_warn("%s: the agent did not take the shutdown (%s); pressing the power button", vm->def.name,
		 j->err);
	vm->stop_button_ms = now; /* the next tick presses it */
}

static void jobs_apply(struct sup *s, struct job *jobs, size_t n)
{
	long now = monotonic_ms();
	for (size_t i = 0; i < n; i++) {
		struct job *j = &jobs[i];
		struct vm *vm = j->vm;
		if (j->kind == JOB_PING)
			vm->agent_ops--;
		if (vm->gen == j->gen && !vm->removed) {
			/* A ping that met a pause says nothing about the agent. */
			if (j->kind == JOB_PING && vm->state == VM_RUNNING && !vm->paused)
				apply_ping(s, vm, j, now);
			else if (j->kind == JOB_SHUTDOWN)
				apply_shutdown(s, vm, j, now);
		}
		json_decref(j->reply);
		json_decref(j->info);
	}
}

/* ---- the thread ---- */

static void *agent_watch_thread(void *arg)
{
	struct sup *s = arg;
	for (;;) {
		usleep(WATCH_TICK_MS * 1000);
		pthread_mutex_lock(&s->lock);
		if (s->stopping) {
			pthread_mutex_unlock(&s->lock);
			return NULL;
		}
		size_t n;
		struct job *jobs = jobs_collect(s, &n);
		pthread_mutex_unlock(&s->lock);
		for (size_t i = 0; i < n; i++)
			job_run(s, &jobs[i]);
		pthread_mutex_lock(&s->lock);
		jobs_apply(s, jobs, n);
		pthread_mutex_unlock(&s->lock);
		for (size_t i = 0; i < n; i++)
			vm_put(s, jobs[i].vm);
		free(jobs);
	}
}

bool agent_watch_start(struct sup *s)
{
	if (pthread_create(&s->agent_thread, NULL, agent_watch_thread, s) != 0)
		return false;
	s->agent_thread_started = true;
	return true;
}

void agent_watch_join(struct sup *s)
{
	if (s->agent_thread_started)
		pthread_join(s->agent_thread, NULL);
	s->agent_thread_started = false;
}

void vm_agent_forget(struct vm *vm)
{
	vm->agent_ready = false;
	json_decref(vm->agent_info);
	vm->agent_info = NULL;
	vm->agent_misses = 0;
	vm->agent_next_ms = 0;
	vm->clock_set_ms = 0;
	vm->stop_step = STOP_NONE;
}
