/*
 * The wire format between shojid (the host) and shoji-agent (the guest),
 * docs/agent.md: frames of a type byte and a 24-bit big-endian length, JSON
 * objects in REQUEST, REPLY, EXIT and CONTROL frames. Both sides use these
 * functions, and both treat the other as hostile: every length and every
 * JSON key is checked here, once.
 *
 * The I/O functions work on blocking or non-blocking sockets alike: they
 * poll for at most `timeout_ms` in all (-1: no limit) and return -ETIMEDOUT
 * when that runs out.
 */
#ifndef SHOJI_BASE_AGENT_PROTO_H
#define SHOJI_BASE_AGENT_PROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_VSOCK_PORT     1027
#define AGENT_PROTOCOL       1
#define AGENT_FRAME_HEADER   4
#define AGENT_FRAME_MAX      65536
#define AGENT_ARGV_MAX       256
#define AGENT_ENV_MAX        256
#define AGENT_MAX_OPS        32   /* connections the agent serves at once */

enum agent_frame_type {
	AGENT_REQUEST = 1,
	AGENT_REPLY   = 2,
	AGENT_STDIN   = 3,
	AGENT_STDOUT  = 4,
	AGENT_STDERR  = 5,
	AGENT_EXIT    = 6,
	AGENT_CONTROL = 7,
	AGENT_DATA    = 8,
};

/* "REQUEST", ... or "unknown". */
const char *agent_frame_type_name(unsigned type);

/* Fills hdr; false (nothing written) for an unknown type or len > max. */
bool agent_frame_header(uint8_t hdr[AGENT_FRAME_HEADER], unsigned type, size_t len);
/* Reads hdr: 0 with *type and *len, or -EPROTO (unknown type, too long). */
int agent_frame_parse_header(const uint8_t hdr[AGENT_FRAME_HEADER], unsigned *type, size_t *len);

/*
 * Sends one frame (header and payload, all of it): 0, -ETIMEDOUT, or
 * -errno (-EPIPE when the peer left).
 */
int agent_frame_send(int fd, unsigned type, const void *payload, size_t len, int timeout_ms);
/* Sends obj as a JSON frame: -EMSGSIZE if it encodes to more than the max. */
int agent_frame_send_json(int fd, unsigned type, const json_t *obj, int timeout_ms);
/*
 * Receives one frame into buf (AGENT_FRAME_MAX bytes): 0 with *type and
 * *len; -ENODATA on a clean end of stream before a header; -EPROTO for a bad
 * header or an end inside a frame; -ETIMEDOUT; other -errno.
 */
int agent_frame_recv(int fd, unsigned *type, uint8_t *buf, size_t *len, int timeout_ms);

/*
 * Parses a JSON frame's payload: exactly one JSON object (no NUL inside).
 * NULL with a one-line reason in err otherwise.
 */
json_t *agent_json_parse(const uint8_t *buf, size_t len, char *err, size_t errlen);

enum agent_op {
	AGENT_OP_PING,
	AGENT_OP_INFO,
	AGENT_OP_EXEC,
	AGENT_OP_READ_FILE,
	AGENT_OP_WRITE_FILE,
	AGENT_OP_SHUTDOWN,
	AGENT_OP_SET_TIME,
};

/*
 * A REQUEST, checked against docs/agent.md: known op, only that op's keys,
 * each of its type and range. Strings point into `json`, which the request
 * owns; agent_request_free() releases it.
 */
struct agent_request {
	enum agent_op op;
	json_t *json;
	/* exec */
	const char *argv[AGENT_ARGV_MAX + 1];   /* NULL-terminated */
	size_t argc;
	const char *env[AGENT_ENV_MAX + 1];     /* NULL-terminated, each NAME=VALUE */
	size_t envc;
	const char *cwd;                        /* "/" when absent */
	bool tty;
	unsigned rows, cols;                    /* 24 x 80 when absent */
	/* read-file, write-file */
	const char *path;                       /* absolute */
	unsigned mode;                          /* 0644 when absent; <= 07777 */
	uint64_t size;
	/* shutdown */
	bool reboot;
	/* set-time */
	double time;
};

/* Parses a REQUEST payload; false with a one-line reason in err. */
bool agent_request_parse(const uint8_t *buf, size_t len, struct agent_request *req,
			 char *err, size_t errlen);
void agent_request_free(struct agent_request *req);

/*
 * A CONTROL frame during an exec: {"rows": R, "cols": C} (both, 1 to 65535)
 * or {"signal": N} (1 to 64), nothing else.
 */
struct agent_control {
	bool resize;            /* rows and cols; otherwise signal */
	unsigned rows, cols;
	int signal;
};

/* Parses a CONTROL payload; false with a one-line reason in err. */
bool agent_control_parse(const uint8_t *buf, size_t len, struct agent_control *ctl,
			 char *err, size_t errlen);

/* The op's name in the protocol ("exec", ...). */
const char *agent_op_name(enum agent_op op);

#endif
