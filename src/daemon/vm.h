/*
 * One supervised VM and the supervisor's state, shared by supervisor.c
 * (the thread, lifecycle and policy), adopt.c (re-adoption after a daemon
 * restart) and control.c (what the API asks). Private to the daemon.
 *
 * Read supervisor.c first. control.c only calls down into it (finding,
 * creating, starting and killing VMs). adopt.c and supervisor.c call each
 * other, on purpose: re-adoption is one step of the supervisor's start
 * (sup_create() calls sup_adopt() for each VM before any autostart), and
 * what it finds goes back into the ordinary lifecycle (a keeper that ended
 * while no daemon ran to vm_handle_exit(), a live one to
 * vm_watch_keeper()). It is a file of its own only to keep supervisor.c
 * readable; a callback in between would hide two plain calls.
 */
#ifndef SHOJI_DAEMON_VM_H
#define SHOJI_DAEMON_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon/events.h"
#include "daemon/supervisor.h"
#include "daemon/vmdef.h"
#include "daemon/vmlog.h"
#include "daemon/vmm-args.h"

enum vm_state {
	VM_STOPPED,
	VM_WAITING,    /* for its depends_on VM to run */
	VM_STARTING,   /* VMM started, control socket not answering yet */
	VM_RUNNING,
	VM_STOPPING,   /* power button pressed; killed at the deadline */
	VM_BACKOFF,    /* exited; restarts at next_start_ms */
	VM_FAILED,     /* too many failures: not restarted */
};

enum watch_kind { WATCH_KEEPER, WATCH_CONSOLE };

/* How far a `stop` has gone (agent-watch.c): agent, then power button, then kill. */
enum stop_step {
	STOP_NONE,
	STOP_ASK_AGENT,     /* the agent answers: ask it to shut down first */
	STOP_AGENT_ASKED,   /* it said yes; the button follows at stop_button_ms */
	STOP_BUTTON,        /* the power button was pressed (or is being pressed) */
};

/* Operations relayed to one VM's agent at once (docs/agent.md), the heartbeat included. */
#define AGENT_OPS_PER_VM 8

struct vm_watch {
	struct vm *vm;
	enum watch_kind kind;
};

struct vm {
	struct vmdef def;
	struct vm_paths paths;
	enum vm_state state;
	bool want_running;        /* the user's or the policy's wish */
	bool restart_after_exit;  /* `restart`: start again once it is down */
	bool removed;
	unsigned refs;            /* API readers holding the log */

	pid_t keeper, vmm;
	uint64_t keeper_start, vmm_start;
	int keeper_fd, vmm_fd, console_fd;
	struct vm_watch keeper_w, console_w;
	struct vmlog *log;
	unsigned gen;             /* counts VMM starts and adoptions: tells this VMM from the next */
	bool start_timed_out;     /* killed for not answering within start_timeout_ms */
	bool keeper_killed;       /* vm_kill had to kill the keeper: no status will come */

	char last_exit[24];       /* "", poweroff, reboot, panic, ... */
	int last_status;
	char last_error[200];     /* the VMM's last stderr line after a start failure or crash */
	long started_ms;
	long fail_ms[RESTART_LIMIT];
	unsigned nfail;
	unsigned restarts;
	long next_start_ms;
	long stop_deadline_ms;
	enum stop_step stop_step;
	long stop_button_ms;

	/* The guest's agent (agent-watch.c); meaningful while the VM is running. */
	bool agent_ready;         /* it answered; `ready` was emitted */
	json_t *agent_info;       /* its last info reply */
	unsigned agent_misses;    /* heartbeats missed in a row */
	long agent_next_ms;       /* when to ping it next */
	unsigned agent_ops;       /* operations on it now, at most AGENT_OPS_PER_VM */
	long clock_set_ms;        /* when its clock was last set (0: never) */
	bool paused;              /* its vCPUs are paused (`vm pause`; the VMM's status says so) */
	struct vm *next;
};

struct sup {
	pthread_mutex_t lock;
	struct sup_config cfg;
	struct events *events;
	struct vm *vms;
	json_t *invalid;          /* definition files that failed to load */
	int epoll_fd;
	int wake_fd;
	pthread_t thread;
	bool thread_started;
	pthread_t agent_thread;   /* agent-watch.c */
	bool agent_thread_started;
	bool stopping;
};

const char *vm_state_name(enum vm_state st);
/* What users see: the state's name, or "paused" for a running VM that is. */
const char *vm_shown_state(const struct vm *vm);
struct vm *sup_find(struct sup *s, const char *name);
/* Under the lock: */
void sup_wake(struct sup *s);
bool vm_spawn(struct sup *s, struct vm *vm);
void vm_request_start(struct sup *s, struct vm *vm);
void vm_watch_keeper(struct sup *s, struct vm *vm);
/* SIGKILL to the VMM, or to its keeper when there is no pidfd for the VMM; false if neither. */
bool vm_kill(struct vm *vm);
void vm_handle_exit(struct sup *s, struct vm *vm);
void vm_free(struct vm *vm);
struct vm *vm_new(struct sup *s, const struct vmdef *d);
void sup_adopt(struct sup *s, struct vm *vm);
/*
 * Without the lock, with a reference held on vm: presses the power button
 * of the VM being stopped (control.c); a VMM that does not answer is killed.
 */
void vm_press_button(struct sup *s, struct vm *vm);
/* Without the lock: drops a reference taken under it (control.c). */
void vm_put(struct sup *s, struct vm *vm);
/* The agent watcher's thread (agent-watch.c): ready, heartbeat, clean stop. */
bool agent_watch_start(struct sup *s);
void agent_watch_join(struct sup *s);
/* Under the lock: the VMM is gone, and with it what its agent said. */
void vm_agent_forget(struct vm *vm);

#endif
