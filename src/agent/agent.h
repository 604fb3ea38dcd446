/*
 * shoji-agent's rooms (docs/agent.md): shoji-agent.c listens and serves one
 * connection per thread, reads its REQUEST and calls the op's function from
 * a table; exec.c, files.c and system.c hold the ops. An op function owns
 * the connection until it returns: it sends every frame after the REQUEST
 * (the first REPLY included), and the caller only closes.
 */
#ifndef SHOJI_AGENT_AGENT_H
#define SHOJI_AGENT_AGENT_H

#include <stdbool.h>
#include <stdint.h>

#include "base/agent-proto.h"

/*
 * How long the agent waits for the rest of a frame the host started, or for
 * the host to take a reply or a file's DATA. A host that stalls this long
 * is gone; its connection is closed and its slot freed. An exec's wait for
 * output or input has no limit: a command may run for days.
 */
#define AGENT_IO_MS 30000

/* What runs after the connection closed (shutdown answers first). */
enum agent_after { AFTER_NOTHING, AFTER_POWEROFF, AFTER_REBOOT };

struct agent_conn {
	int fd;
	unsigned id;          /* for log lines */
	bool test_mode;       /* --listen-unix: never power off or set the clock */
	enum agent_after after;
	uint8_t buf[AGENT_FRAME_MAX];   /* the last frame received */
};

/* {"ok": true} plus obj's members (obj may be NULL; it is consumed). */
bool agent_reply_ok(struct agent_conn *c, json_t *obj);
/* {"error": "..."}; false, so an op can `return agent_reply_error(...)`. */
bool agent_reply_error(struct agent_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Seconds since boot from /proc/uptime; -1 if unreadable. */
double agent_uptime(void);

typedef void agent_op_fn(struct agent_conn *c, const struct agent_request *r);
agent_op_fn agent_op_ping, agent_op_info, agent_op_shutdown, agent_op_set_time;
agent_op_fn agent_op_exec;
agent_op_fn agent_op_read_file, agent_op_write_file;

/* After a shutdown request's connection closed: powers off or reboots. */
void agent_power(enum agent_after what, bool test_mode);

#endif
