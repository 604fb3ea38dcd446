/* The daemon's agent client (see agent-link.h). */
#include "daemon/agent-link.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/agent-proto.h"
#include "base/util.h"
#include "daemon/vmmctl.h"

/* The VMM's answer to "CONNECT": "OK <port>" or "ERR <why>" (vmm/vsock-host.h). */
static bool handshake(int fd, long deadline, char *err, size_t errlen)
{
	char req[32], line[128];
	int n = snprintf(req, sizeof(req), "CONNECT %u\n", AGENT_VSOCK_PORT);
	if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		snprintf(err, errlen, "vsock socket: %s", strerror(errno));
		return false;
	}
	if (!ctl_read_line(fd, line, sizeof(line), deadline)) {
		snprintf(err, errlen, "no answer from the VM's vsock socket");
		return false;
	}
	if (strncmp(line, "OK ", 3) == 0)
		return true;
	if (strncmp(line, "ERR ", 4) == 0)
		snprintf(err, errlen, "no agent answers on vsock port %u (%.80s)", AGENT_VSOCK_PORT, line + 4);
	else
		snprintf(err, errlen, "the VM's vsock socket said '%.80s'", line);
	return false;
}

int agent_link_connect(const char *vsock_path, int timeout_ms, char *err, size_t errlen)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(vsock_path) >= sizeof(addr.sun_path)) {
		snprintf(err, errlen, "%s: path too long", vsock_path);
		return -1;
	}
	memcpy(addr.sun_path, vsock_path, strlen(vsock_path) + 1);
	long deadline = monotonic_ms() + timeout_ms;
	int fd = ctl_connect_before(&addr, deadline);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", vsock_path, strerror(errno));
		return -1;
	}
	if (!handshake(fd, deadline, err, errlen)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The REPLY to the request just sent: the object if ok, NULL with err otherwise. */
static json_t *read_reply(int fd, int timeout_ms, char *err, size_t errlen)
{
	static _Thread_local uint8_t buf[AGENT_FRAME_MAX];
	unsigned type;
	size_t len;
	int r = agent_frame_recv(fd, &type, buf, &len, timeout_ms);
	if (r < 0) {
		snprintf(err, errlen, "agent: %s", r == -ETIMEDOUT ? "no reply within the deadline"
			 : r == -ENODATA ? "closed without a reply" : strerror(-r));
		return NULL;
	}
	if (type != AGENT_REPLY) {
		snprintf(err, errlen, "agent: a %s frame where a REPLY belongs", agent_frame_type_name(type));
		return NULL;
	}
	char why[160];
	json_t *reply = agent_json_parse(buf, len, why, sizeof(why));
	if (!reply) {
		snprintf(err, errlen, "agent: bad reply: %s", why);
		return NULL;
	}
	if (json_is_true(json_object_get(reply, "ok")))
		return reply;
	const char *e = json_string_value(json_object_get(reply, "error"));
	snprintf(err, errlen, "agent: %.200s", e ? e : "a reply without ok or error");
	json_decref(reply);
	return NULL;
}

json_t *agent_link_call(const char *vsock_path, json_t *request, int timeout_ms, char *err,
			size_t errlen)
{
	long deadline = monotonic_ms() + timeout_ms;
	int fd = agent_link_connect(vsock_path, timeout_ms, err, errlen);
	if (fd < 0)
		return NULL;
	json_t *reply = NULL;
	int r = agent_frame_send_json(fd, AGENT_REQUEST, request, (int)(deadline - monotonic_ms()));
	if (r < 0)
		snprintf(err, errlen, "agent: cannot send the request: %s", strerror(-r));
	else
		reply = read_reply(fd, (int)(deadline - monotonic_ms()), err, errlen);
	close(fd);
	return reply;
}
