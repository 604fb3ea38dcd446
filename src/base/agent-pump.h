/*
 * Frames of the agent protocol (agent-proto.h) moved without blocking: a
 * pump holds at most one frame, filled from one descriptor as its bytes
 * arrive and drained into another as that one takes them. shojid's relay
 * and `shoji exec` run one pump per direction under one poll(), so neither
 * ever waits on one direction while the other is stuck (a command whose
 * output nobody reads while its input is still being sent would otherwise
 * deadlock the chain), and nobody buffers more than a frame.
 */
#ifndef SHOJI_BASE_AGENT_PUMP_H
#define SHOJI_BASE_AGENT_PUMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/agent-proto.h"

struct agent_pump {
	uint8_t frame[AGENT_FRAME_HEADER + AGENT_FRAME_MAX];
	size_t have;       /* bytes of the frame read so far */
	size_t need;       /* its whole size once the header is in, else 0 */
	size_t sent;       /* bytes written while draining */
	bool full;         /* a whole frame is in and not yet drained */
};

/* Empties the pump. */
void agent_pump_reset(struct agent_pump *p);

/*
 * Reads from a non-blocking fd what it has toward one frame: 1 once a
 * whole frame is in (full; then its type and payload are below), 0 for
 * more later, -ENODATA for an end of stream between frames, -EPROTO for a
 * bad header or an end inside a frame, other -errno.
 */
int agent_pump_fill(struct agent_pump *p, int fd);

/* The full frame's type, payload and payload length. */
unsigned agent_pump_type(const struct agent_pump *p);
const uint8_t *agent_pump_payload(const struct agent_pump *p);
size_t agent_pump_len(const struct agent_pump *p);

/*
 * Puts a frame of our own into an empty pump, to be drained like one read:
 * false if the pump is not empty or the frame is invalid.
 */
bool agent_pump_load(struct agent_pump *p, unsigned type, const void *payload, size_t len);

/*
 * Writes what a non-blocking fd takes of the full frame: 1 once all of it
 * is out (the pump is empty again), 0 for more later, -errno.
 */
int agent_pump_drain(struct agent_pump *p, int fd);

#endif
