/* Non-blocking frame pumps (see agent-pump.h). */
#include "base/agent-pump.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void agent_pump_reset(struct agent_pump *p)
{
	p->have = p->need = p->sent = 0;
	p->full = false;
}

/* Bytes still wanted: the header first, then the rest of the frame. */
static size_t wanted(const struct agent_pump *p)
{
	return p->need ? p->need - p->have : AGENT_FRAME_HEADER - p->have;
}

/* Once the header is in: checks it and sets the frame's size. */
static int take_header(struct agent_pump *p)
{
	unsigned type;
	size_t len;
	if (agent_frame_parse_header(p->frame, &type, &len) < 0)
		return -EPROTO;
	p->need = AGENT_FRAME_HEADER + len;
	return 0;
}

int agent_pump_fill(struct agent_pump *p, int fd)
{
	if (p->full)
		return 1;
	for (;;) {
		if (p->have == AGENT_FRAME_HEADER && !p->need && take_header(p) < 0)
			return -EPROTO;
		if (p->need && p->have == p->need) {
			p->full = true;
			return 1;
		}
		ssize_t r = read(fd, p->frame + p->have, wanted(p));
		if (r > 0) {
			p->have += (size_t)r;
			continue;
		}
		if (r == 0)
			return p->have ? -EPROTO : -ENODATA;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	}
}

unsigned agent_pump_type(const struct agent_pump *p)
{
	return p->frame[0];
}

const uint8_t *agent_pump_payload(const struct agent_pump *p)
{
	return p->frame + AGENT_FRAME_HEADER;
}

size_t agent_pump_len(const struct agent_pump *p)
{
	return p->need - AGENT_FRAME_HEADER;
}

bool agent_pump_load(struct agent_pump *p, unsigned type, const void *payload, size_t len)
{
	if (p->have || !agent_frame_header(p->frame, type, len))
		return false;
	if (len)
		memcpy(p->frame + AGENT_FRAME_HEADER, payload, len);
	p->have = p->need = AGENT_FRAME_HEADER + len;
	p->sent = 0;
	p->full = true;
	return true;
}

int agent_pump_drain(struct agent_pump *p, int fd)
{
	while (p->full && p->sent < p->need) {
		ssize_t w = send(fd, p->frame + p->sent, p->need - p->sent, MSG_NOSIGNAL);
		if (w > 0) {
			p->sent += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return w < 0 ? -errno : -EPIPE;
	}
	agent_pump_reset(p);
	return 1;
}
