/*
 * The daemon's side of a guest's shoji-agent (docs/agent.md): a connection
 * through the VM's vsock socket ("CONNECT 1027"), and one-shot calls (ping,
 * info, shutdown, set-time). Every call has a deadline: an agent that is
 * wedged or hostile fails its own call, never a daemon thread for long.
 * Call these without the supervisor's lock.
 */
#ifndef SHOJI_DAEMON_AGENT_LINK_H
#define SHOJI_DAEMON_AGENT_LINK_H

#include <stddef.h>

#include <jansson.h>

/* A REPLY must come this soon after its request (docs/agent.md). */
#define AGENT_REPLY_TIMEOUT_MS 10000

/*
 * Connects to the agent behind the VM's vsock socket at vsock_path within
 * timeout_ms: a non-blocking descriptor ready for the first frame, or -1
 * with a one-line reason in err (e.g. "no agent is listening").
 */
int agent_link_connect(const char *vsock_path, int timeout_ms, char *err, size_t errlen);

/*
 * Sends request (a JSON object with "op") and returns the agent's REPLY
 * object when it says ok; NULL with the agent's error or the failure in err.
 */
json_t *agent_link_call(const char *vsock_path, json_t *request, int timeout_ms, char *err,
			size_t errlen);

#endif
