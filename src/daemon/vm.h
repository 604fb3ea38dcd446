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
	bool stopping;
};

const char *vm_state_name(enum vm_state st);
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

#endif
