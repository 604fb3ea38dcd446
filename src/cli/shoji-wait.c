/*
 * `shoji vm start|stop|restart NAME` and their outcome (see shoji-wait.h).
 *
 * The event stream is opened before the request is sent, and its answer's
 * head read: shojid fixes a stream's first event when it answers, so every
 * event the request causes is on it. An event from before the request
 * (the VM's last exit, say) could still come first, so a start counts only
 * after its own "starting" event, and a stop's "exited" only while the VM
 * was stopping, which shojid refuses to begin unless the VM runs.
 */
#include "cli/shoji-wait.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/shoji-http.h"
#include "cli/shoji.h"

/* Where the VM is on its way; see follow(). */
enum phase {
	PHASE_STOPPING,   /* waits for "exited" */
	PHASE_TO_START,   /* waits for "starting" (after "waiting", or the restart's exit) */
	PHASE_STARTING,   /* waits for "running" */
};

struct waiter {
	const struct cli *cli;
	const char *action, *name;
	enum phase phase;
	bool said_waiting;
};

static const char *field(json_t *ev, const char *key)
{
	return json_string_value(json_object_get(ev, key));
}

/* The outcome: the deciding event for --json, else one line for people. */
static int done(struct waiter *w, const char *line, const char *state, const char *note)
{
	if (w->cli->json)
		puts(line);
	else
		printf("%s: %s%s\n", w->name, state, note);
	return 0;
}

static int failed(struct waiter *w, const char *line, const char *fmt, const char *what)
{
	if (w->cli->json)
		puts(line);
	fprintf(stderr, "shoji: %s did not start: ", w->name);
	fprintf(stderr, fmt, what);
	fputc('\n', stderr);
	return 1;
}

/* Why a start ended in "exited": the VMM's last words if it had any. */
static int start_exited(struct waiter *w, const char *line, json_t *ev)
{
	if (field(ev, "error"))
		return failed(w, line, "%s", field(ev, "error"));
	char what[128];
	json_t *status = json_object_get(ev, "status"), *sig = json_object_get(ev, "signal");
	snprintf(what, sizeof(what), "its VMM exited (%s, %s %lld)", field(ev, "reason") ? field(ev, "reason") : "?",
		 sig ? "signal" : "status", (long long)json_integer_value(sig ? sig : status));
	return failed(w, line, "%s", what);
}

/* One event of our VM; -1 while it is not decided, else the exit status. */
static int on_event(struct waiter *w, const char *line, json_t *ev)
{
	const char *type = field(ev, "event");
	if (strcmp(type, "removed") == 0) {
		fprintf(stderr, "shoji: %s was removed\n", w->name);
		return 1;
	}
	switch (w->phase) {
	case PHASE_STOPPING:
		if (strcmp(type, "exited") != 0)
			return -1;
		if (strcmp(w->action, "stop") == 0) {
			bool killed = field(ev, "reason") && strcmp(field(ev, "reason"), "killed") == 0;
			return done(w, line, "stopped", killed ? " (killed: the guest did not power off in time)" : "");
		}
		w->phase = PHASE_TO_START;
		return -1;
	case PHASE_TO_START:
		if (strcmp(type, "waiting") == 0 && !w->said_waiting && !w->cli->json) {
			printf("%s: waiting for %s to run\n", w->name, field(ev, "for") ? field(ev, "for") : "its service VM");
			fflush(stdout);
			w->said_waiting = true;
		} else if (strcmp(type, "starting") == 0) {
			w->phase = PHASE_STARTING;
		} else if (strcmp(type, "start-failed") == 0 || strcmp(type, "failed") == 0) {
			return failed(w, line, "%s", field(ev, "reason") ? field(ev, "reason") : "see shojid's log");
		}
		return -1;
	case PHASE_STARTING:
		if (strcmp(type, "running") == 0)
			return done(w, line, "running", "");
		if (strcmp(type, "exited") == 0)
			return start_exited(w, line, ev);
		return -1;
	}
	return -1;
}

/* Reads the stream until our VM's outcome is known. */
static int follow(struct waiter *w, struct http_lines *s)
{
	const char *line;
	while ((line = http_lines_next(s, -1))) {
		if (!line[0])
			continue; /* the stream's heartbeat */
		json_t *ev = json_loads(line, 0, NULL);
		const char *vm = field(ev, "vm");
		int code = vm && field(ev, "event") && strcmp(vm, w->name) == 0 ? on_event(w, line, ev) : -1;
		json_decref(ev);
		if (code >= 0)
			return code;
	}
	fprintf(stderr, "shoji: shojid ended the event stream before %s %s; see shoji vm ls\n", w->name,
		w->phase == PHASE_STOPPING && strcmp(w->action, "stop") == 0 ? "stopped" : "ran");
	return 1;
}

/*
 * A start shojid refused with 500 failed at once (a disk's check, say):
 * its "start-failed" event, already on the stream, says why.
 */
static void explain_refusal(struct waiter *w, struct http_lines *s)
{
	const char *line;
	while ((line = http_lines_next(s, 1000))) {
		json_t *ev = json_loads(line, 0, NULL);
		bool ours = field(ev, "vm") && strcmp(field(ev, "vm"), w->name) == 0 && field(ev, "event") &&
			    strcmp(field(ev, "event"), "start-failed") == 0;
		if (ours && field(ev, "reason"))
			fprintf(stderr, "shoji: %s: %s\n", w->name, field(ev, "reason"));
		json_decref(ev);
		if (ours)
			return;
	}
}

int cli_vm_action_wait(const struct cli *cli, const char *action, const char *name)
{
	struct waiter w = { cli, action, name, PHASE_STOPPING, false };
	struct http_lines s;
	if (!http_lines_open(cli->socket, "/v1/events", &s))
		return 1;
	char path[96];
	snprintf(path, sizeof(path), "/v1/vms/%s/%s", name, action);
	struct http_response r;
	if (!http_call(cli->socket, "POST", path, NULL, &r)) {
		http_lines_close(&s);
		return 1;
	}
	int code = 1;
	json_t *answer = r.status == 202 ? json_loads(r.body, 0, NULL) : NULL;
	const char *state = field(answer, "state");
	if (r.status != 202) {
		cli_api_error(r.status, r.body);
		if (r.status == 500 && strcmp(action, "stop") != 0)
			explain_refusal(&w, &s);
	} else if (!state) {
		fprintf(stderr, "shoji: shojid's answer has no state\n");
	} else if (strcmp(state, "stopped") == 0 && strcmp(action, "stop") == 0) {
		/* A planned start (waiting, backoff, failed) was cancelled: nothing runs. */
		code = done(&w, r.body, "stopped", "");
	} else if (strcmp(state, "stopping") == 0) {
		code = follow(&w, &s);
	} else if (strcmp(state, "starting") == 0 || strcmp(state, "waiting") == 0) {
		w.phase = PHASE_TO_START;
		code = follow(&w, &s);
	} else {
		fprintf(stderr, "shoji: %s: unexpected state '%s' after %s\n", name, state, action);
	}
	json_decref(answer);
	free(r.body);
	http_lines_close(&s);
	return code;
}
