/*
 * libFuzzer target: the agent protocol's codec (src/base/agent-proto.c) as
 * either end meets it. The input is the byte stream a peer sends, frames
 * back to back (docs/agent.md); a thread writes it into a socketpair and
 * closes its end, and agent_frame_recv reads frame after frame until it
 * refuses one or the stream ends. Each payload goes through the parser of
 * its type: REQUEST to agent_request_parse, CONTROL to agent_control_parse,
 * REPLY and EXIT to agent_json_parse.
 *
 * Checked against an independent reading of the frame layout:
 *   - each frame received is exactly the next type byte, 24-bit length and
 *     payload of the input, with a known type and at most 65536 bytes;
 *   - the stream ends in -ENODATA exactly when it ends on a frame boundary,
 *     in -EPROTO otherwise (cut header, cut payload, unknown type, oversize);
 *   - a header re-encoded by agent_frame_header is the input's header;
 *   - a request that parses keeps the promises of agent-proto.h (argv
 *     NULL-terminated with 1..256 entries, env entries NAME=VALUE, absolute
 *     paths, mode <= 07777, rows and cols 1..65535 and only with tty).
 * Anything else aborts (a finding).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/agent-proto.h"

#define MAX_INPUT (2 * (AGENT_FRAME_HEADER + AGENT_FRAME_MAX) + 64)

static _Noreturn void finding(const char *what)
{
	fprintf(stderr, "fuzz_agent_proto: %s\n", what);
	abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

struct feed {
	int fd;
	const uint8_t *data;
	size_t len;
};

static void *writer(void *arg)
{
	struct feed *f = arg;
	size_t off = 0;
	while (off < f->len) {
		ssize_t n = write(f->fd, f->data + off, f->len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* the reader refused a frame and closed: the rest is moot */
		off += (size_t)n;
	}
	close(f->fd);
	return NULL;
}

static void check_request(const struct agent_request *r, const json_t *j)
{
	if (r->op == AGENT_OP_EXEC) {
		if (r->argc < 1 || r->argc > AGENT_ARGV_MAX || r->argv[r->argc] || !r->argv[0][0])
			finding("exec accepted with a bad argv");
		for (size_t i = 0; i < r->envc; i++)
			if (r->env[i][0] == '=' || !strchr(r->env[i], '='))
				finding("exec accepted an env entry without NAME=");
		if (r->envc > AGENT_ENV_MAX || r->env[r->envc] || r->cwd[0] != '/')
			finding("exec accepted a bad env or cwd");
		if (r->rows < 1 || r->rows > 65535 || r->cols < 1 || r->cols > 65535)
			finding("exec accepted rows or cols out of range");
		if (!r->tty && (json_object_get(j, "rows") || json_object_get(j, "cols")))
			finding("exec accepted rows/cols without tty");
	}
	if (r->op == AGENT_OP_READ_FILE || r->op == AGENT_OP_WRITE_FILE)
		if (!r->path || r->path[0] != '/')
			finding("a file op accepted a relative path");
	if (r->op == AGENT_OP_WRITE_FILE && (r->mode > 07777 || r->size >= (1ULL << 53)))
		finding("write-file accepted a bad mode or size");
}

static void parse_payload(unsigned type, const uint8_t *buf, size_t len)
{
	char err[256];
	if (type == AGENT_REQUEST) {
		struct agent_request r;
		if (agent_request_parse(buf, len, &r, err, sizeof(err))) {
			check_request(&r, r.json);
			agent_request_free(&r);
		} else if (!err[0] || strchr(err, '\n')) {
			finding("a refusal without its one line");
		}
	} else if (type == AGENT_CONTROL) {
		struct agent_control c;
		if (agent_control_parse(buf, len, &c, err, sizeof(err)) &&
		    (c.resize ? c.rows < 1 || c.rows > 65535 || c.cols < 1 || c.cols > 65535
			      : c.signal < 1 || c.signal > 64))
			finding("CONTROL accepted out of range");
	} else if (type == AGENT_REPLY || type == AGENT_EXIT) {
		json_t *j = agent_json_parse(buf, len, err, sizeof(err));
		if (j && !json_is_object(j))
			finding("a JSON payload that is not an object");
		json_decref(j);
	}
}

/* What the next agent_frame_recv must answer at `off`: 0 (a frame) or -errno. */
static int expected(const uint8_t *d, size_t n, size_t off, size_t *plen)
{
	if (off == n)
		return -ENODATA;
	if (n - off < AGENT_FRAME_HEADER)
		return -EPROTO;
	size_t len = (size_t)d[off + 1] << 16 | (size_t)d[off + 2] << 8 | d[off + 3];
	if (d[off] < 1 || d[off] > 8 || len > AGENT_FRAME_MAX || n - off - AGENT_FRAME_HEADER < len)
		return -EPROTO;
	*plen = len;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > MAX_INPUT)
		return -1;
	static uint8_t buf[AGENT_FRAME_MAX];
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		finding("no socketpair");
	struct feed f = { sv[0], data, size };
	pthread_t th;
	if (pthread_create(&th, NULL, writer, &f) != 0)
		finding("no thread");
	size_t off = 0;
	for (;;) {
		size_t want_len = 0, len = 0;
		unsigned type = 0;
		int want = expected(data, size, off, &want_len);
		int got = agent_frame_recv(sv[1], &type, buf, &len, 5000);
		if (got != want) {
			fprintf(stderr, "at byte %zu: got %d, expected %d\n", off, got, want);
			finding("agent_frame_recv disagrees with the frame layout");
		}
		if (got < 0)
			break;
		uint8_t hdr[AGENT_FRAME_HEADER];
		if (type != data[off] || len != want_len || memcmp(buf, data + off + 4, len) != 0 ||
		    !agent_frame_header(hdr, type, len) || memcmp(hdr, data + off, 4) != 0)
			finding("a frame other than the input's");
		parse_payload(type, buf, len);
		off += AGENT_FRAME_HEADER + len;
	}
	close(sv[1]);
	pthread_join(th, NULL);
	return 0;
}
