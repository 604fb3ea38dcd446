/*
 * POST /v1/vms/NAME/agent with Upgrade: shoji-agent: after the 101, the
 * client speaks the agent protocol (docs/agent.md) and shojid relays it to
 * the guest's agent, one frame at a time, checking each on the way:
 *
 *   - the client's first frame is a REQUEST for exec, read-file, write-file,
 *     info or ping (shutdown and set-time are the daemon's own);
 *   - afterwards the client may send STDIN, CONTROL and DATA, the agent
 *     REPLY, STDOUT, STDERR, EXIT and DATA; anything else ends the relay;
 *   - the agent's first frame must come within AGENT_REPLY_TIMEOUT_MS, and
 *     a frame once begun must finish within FRAME_MS on either side.
 *
 * A frame is read only once the other side took the previous one, so a
 * slow reader stalls its writer and shojid holds at most one frame per
 * direction; both directions move under one poll (base/agent-pump.h). The
 * relay runs in its own thread and counts as a stream (API_MAX_STREAMS) and
 * as one of the VM's agent operations (AGENT_OPS_PER_VM).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/agent-proto.h"
#include "base/agent-pump.h"
#include "base/log.h"
#include "base/ratelimit.h"
#include "base/util.h"
#include "daemon/agent-link.h"
#include "daemon/api-internal.h"
#include "daemon/supervisor.h"

#define FRAME_MS       30000   /* to finish a frame once its first byte came */
#define POLL_STEP_MS   1000    /* to notice a daemon shutdown */

/* What a hostile agent (or client) can make shojid log as often as it runs
 * operations: limited per kind of line, for all VMs together. */
static struct ratelimit refused_frame_log = RATELIMIT_GUEST;
static struct ratelimit failed_side_log = RATELIMIT_GUEST;
static struct ratelimit late_reply_log = RATELIMIT_GUEST;

struct agent_relay {
	struct api *api;
	void *ref;                /* the VM's agent operation (sup_agent_take) */
	char vsock[128];
	MHD_socket client;
	int agent;
	struct MHD_UpgradeResponseHandle *urh;
	uint8_t buf[AGENT_FRAME_MAX];      /* the request */
	struct agent_pump down, up;        /* agent to client, client to agent */
	bool agent_deaf;                   /* writing to the agent failed: input is dropped */
};

static bool client_may_send(unsigned type)
{
	return type == AGENT_STDIN || type == AGENT_CONTROL || type == AGENT_DATA;
}

static bool agent_may_send(unsigned type)
{
	return type == AGENT_REPLY || type == AGENT_STDOUT || type == AGENT_STDERR || type == AGENT_EXIT ||
	       type == AGENT_DATA;
}

static void tell_client(struct agent_relay *rl, const char *fmt, const char *what)
{
	char msg[300];
	snprintf(msg, sizeof(msg), fmt, what);
	json_t *o = json_pack("{s:s}", "error", msg);
	agent_frame_send_json(rl->client, AGENT_REPLY, o, FRAME_MS);
	json_decref(o);
}

/* The client's REQUEST, checked: true once it went to the agent. */
static bool relay_request(struct agent_relay *rl)
{
	unsigned type;
	size_t len;
	if (agent_frame_recv(rl->client, &type, rl->buf, &len, AGENT_REPLY_TIMEOUT_MS) < 0)
		return false;
	char err[256];
	struct agent_request req;
	if (type != AGENT_REQUEST) {
		tell_client(rl, "expected a REQUEST frame, not %s", agent_frame_type_name(type));
		return false;
	}
	if (!agent_request_parse(rl->buf, len, &req, err, sizeof(err))) {
		tell_client(rl, "%s", err);
		return false;
	}
	bool allowed = req.op != AGENT_OP_SHUTDOWN && req.op != AGENT_OP_SET_TIME;
	const char *op = agent_op_name(req.op);
	agent_request_free(&req);
	if (!allowed) {
		tell_client(rl, "'%s' is the daemon's to ask (use shoji vm stop)", op);
		return false;
	}
	rl->agent = agent_link_connect(rl->vsock, AGENT_REPLY_TIMEOUT_MS, err, sizeof(err));
	if (rl->agent < 0) {
		tell_client(rl, "%s", err);
		return false;
	}
	return agent_frame_send(rl->agent, AGENT_REQUEST, rl->buf, len, FRAME_MS) == 0;
}

/* One pump's frame is in: true if its sender may send that type. */
static bool frame_allowed(struct agent_relay *rl, const struct agent_pump *p, bool from_agent)
{
	unsigned type = agent_pump_type(p);
	if (from_agent ? agent_may_send(type) : client_may_send(type))
		return true;
	log_limited(&refused_frame_log, LOG_LEVEL_WARN, "%s: a %s frame from the %s ends its operation",
		    rl->vsock, agent_frame_type_name(type), from_agent ? "agent" : "client");
	return false;
}

/*
 * Fills p from `from` when it is empty and drains it into `to` when full;
 * false when the relay ends (a side closed or failed, a frame not allowed).
 */
static bool pump_step(struct agent_relay *rl, struct agent_pump *p, int from, int to, bool from_agent,
		      bool *got)
{
	if (!p->full) {
		int r = agent_pump_fill(p, from);
		if (r < 0) {
			if (r != -ENODATA)
				log_limited(&failed_side_log, LOG_LEVEL_WARN, "%s: %s: %s", rl->vsock,
					    from_agent ? "the agent" : "a client", strerror(-r));
			return false;
		}
		if (r == 1 && !frame_allowed(rl, p, from_agent))
			return false;
		*got |= r == 1;
	}
	if (p->full && !from_agent && rl->agent_deaf)
		agent_pump_reset(p); /* input for an agent that takes no more */
	if (!p->full || agent_pump_drain(p, to) >= 0)
		return true;
	if (from_agent)
		return false;
	/*
	 * The agent stopped reading (its command ended while stdin was still
	 * coming) but may have output and the exit status left to send: the
	 * relay goes on until the agent's stream ends, dropping the client's.
	 */
	rl->agent_deaf = true;
	agent_pump_reset(p);
	return true;
}

/* A frame begun must be finished within FRAME_MS; the first reply is due in AGENT_REPLY_TIMEOUT_MS. */
static bool relay_late(struct agent_relay *rl, const struct agent_pump *p, long *since, bool replied,
		       long asked)
{
	long now = monotonic_ms();
	if (!replied && now - asked > AGENT_REPLY_TIMEOUT_MS) {
		log_limited(&late_reply_log, LOG_LEVEL_WARN, "%s: the agent did not reply within %d ms",
			    rl->vsock, AGENT_REPLY_TIMEOUT_MS);
		return true;
	}
	bool partial = p->have && !p->full;
	if (!partial)
		*since = now;
	return partial && now - *since > FRAME_MS;
}

/* Both directions under one poll, a frame at most held in each (agent-pump.h). */
static void relay_frames(struct agent_relay *rl)
{
	struct agent_pump *down = &rl->down, *up = &rl->up;
	agent_pump_reset(down);
	agent_pump_reset(up);
	bool replied = false;
	long asked = monotonic_ms(), down_since = asked, up_since = asked;
	while (!atomic_load(&rl->api->stopping)) {
		struct pollfd p[2] = {
			{ .fd = rl->agent, .events = (short)((down->full ? 0 : POLLIN) | (up->full ? POLLOUT : 0)) },
			{ .fd = rl->client, .events = (short)((up->full ? 0 : POLLIN) | (down->full ? POLLOUT : 0)) },
		};
		if (poll(p, 2, POLL_STEP_MS) < 0 && errno != EINTR)
			return;
		if (!pump_step(rl, down, rl->agent, rl->client, true, &replied) ||
		    !pump_step(rl, up, rl->client, rl->agent, false, &(bool){ false }))
			return;
		if (relay_late(rl, down, &down_since, replied, asked) ||
		    relay_late(rl, up, &up_since, true, asked))
			return;
	}
}

static void *agent_relay_thread(void *arg)
{
	struct agent_relay *rl = arg;
	if (relay_request(rl))
		relay_frames(rl);
	if (rl->agent >= 0)
		close(rl->agent);
	MHD_upgrade_action(rl->urh, MHD_UPGRADE_ACTION_CLOSE);
	sup_agent_put(rl->api->sup, rl->ref);
	api_stream_put(rl->api);
	atomic_fetch_sub(&rl->api->relays, 1);
	free(rl);
	return NULL;
}

static void release(struct agent_relay *rl)
{
	sup_agent_put(rl->api->sup, rl->ref);
	api_stream_put(rl->api);
	free(rl);
}

static void on_upgrade(void *cls, struct MHD_Connection *c, void *req_cls, const char *extra,
		       size_t extra_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
	(void)c;
	(void)req_cls;
	(void)extra;
	struct agent_relay *rl = cls;
	rl->client = sock;
	rl->urh = urh;
	if (extra_size) {
		/* A client must wait for the 101 before its first frame (docs/api.md). */
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		release(rl);
		return;
	}
	if (!api_relay_start(rl->api, agent_relay_thread, rl)) {
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		release(rl);
	}
}

enum MHD_Result api_stream_agent(struct api *api, struct MHD_Connection *c, const char *method,
				 const char *name)
{
	if (strcmp(method, "POST") != 0)
		return api_send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use POST with Upgrade: shoji-agent");
	const char *up = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Upgrade");
	if (!up || strcmp(up, "shoji-agent") != 0)
		return api_send_error(c, MHD_HTTP_BAD_REQUEST,
				      "the agent needs the headers Connection: Upgrade and Upgrade: shoji-agent");
	if (!api_stream_take(api))
		return api_too_many_streams(c);
	struct agent_relay *rl = calloc(1, sizeof(*rl));
	if (!rl) {
		api_stream_put(api);
		return MHD_NO;
	}
	rl->api = api;
	rl->agent = -1;
	char err[512];
	enum sup_status st = sup_agent_take(api->sup, name, rl->vsock, sizeof(rl->vsock), &rl->ref, err,
					    sizeof(err));
	if (st != SUP_OK) {
		api_stream_put(api);
		free(rl);
		return api_send_error(c, api_http_status(st), err);
	}
	struct MHD_Response *r = MHD_create_response_for_upgrade(on_upgrade, rl);
	if (!r) {
		release(rl);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_UPGRADE, "shoji-agent");
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_SWITCHING_PROTOCOLS, r);
	MHD_destroy_response(r);
	return ret;
}
