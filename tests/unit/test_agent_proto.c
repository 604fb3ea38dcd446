/*
 * Unit tests for src/base/agent-proto.h, the host<->guest agent codec
 * (docs/agent.md): frame headers at their limits, frames over a socketpair
 * (partial reads and writes, EOF inside a frame, overall timeouts, oversize
 * frames left unread), and every refusal of agent_request_parse and
 * agent_control_parse, each a single line naming the key at fault.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/agent-proto.h"

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static void pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

/* ---- headers ---- */

static void test_header_limits(void **state)
{
	(void)state;
	uint8_t h[4] = { 9, 9, 9, 9 };
	assert_false(agent_frame_header(h, 0, 1));
	assert_false(agent_frame_header(h, 9, 1));
	assert_false(agent_frame_header(h, AGENT_DATA, AGENT_FRAME_MAX + 1));
	assert_int_equal(h[0], 9); /* untouched on refusal */
	assert_true(agent_frame_header(h, AGENT_DATA, AGENT_FRAME_MAX));
	assert_memory_equal(h, ((uint8_t[]){ 8, 1, 0, 0 }), 4);
	assert_true(agent_frame_header(h, AGENT_REQUEST, 0x1234));
	assert_memory_equal(h, ((uint8_t[]){ 1, 0, 0x12, 0x34 }), 4);

	unsigned t;
	size_t n;
	assert_int_equal(agent_frame_parse_header((uint8_t[]){ 8, 1, 0, 0 }, &t, &n), 0);
	assert_int_equal(t, AGENT_DATA);
	assert_int_equal(n, AGENT_FRAME_MAX);
	assert_int_equal(agent_frame_parse_header((uint8_t[]){ 8, 1, 0, 1 }, &t, &n), -EPROTO);
	assert_int_equal(agent_frame_parse_header((uint8_t[]){ 8, 0xff, 0xff, 0xff }, &t, &n), -EPROTO);
	assert_int_equal(agent_frame_parse_header((uint8_t[]){ 0, 0, 0, 0 }, &t, &n), -EPROTO);
	assert_int_equal(agent_frame_parse_header((uint8_t[]){ 9, 0, 0, 0 }, &t, &n), -EPROTO);
	assert_int_equal(agent_frame_parse_header((uint8_t[]){ 2, 0, 0, 0 }, &t, &n), 0);
	assert_int_equal(n, 0);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(agent_frame_type_name(AGENT_REQUEST), "REQUEST");
	assert_string_equal(agent_frame_type_name(AGENT_DATA), "DATA");
	assert_string_equal(agent_frame_type_name(0), "unknown");
	assert_string_equal(agent_frame_type_name(200), "unknown");
	assert_string_equal(agent_op_name(AGENT_OP_WRITE_FILE), "write-file");
	assert_string_equal(agent_op_name(AGENT_OP_SET_TIME), "set-time");
}

/* ---- frames over a socket ---- */

static void test_roundtrip(void **state)
{
	(void)state;
	int sv[2];
	pair(sv);
	static uint8_t buf[AGENT_FRAME_MAX];
	unsigned t;
	size_t n;
	/* two frames back to back: each recv takes exactly one */
	assert_int_equal(agent_frame_send(sv[0], AGENT_STDOUT, "hello", 5, 1000), 0);
	assert_int_equal(agent_frame_send(sv[0], AGENT_STDOUT, "", 0, 1000), 0);
	assert_int_equal(agent_frame_recv(sv[1], &t, buf, &n, 1000), 0);
	assert_int_equal(t, AGENT_STDOUT);
	assert_int_equal(n, 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(agent_frame_recv(sv[1], &t, buf, &n, 1000), 0);
	assert_int_equal(n, 0);

	json_t *o = json_pack("{s:b,s:i}", "ok", 1, "pid", 42);
	assert_int_equal(agent_frame_send_json(sv[0], AGENT_REPLY, o, 1000), 0);
	json_decref(o);
	assert_int_equal(agent_frame_recv(sv[1], &t, buf, &n, 1000), 0);
	assert_int_equal(t, AGENT_REPLY);
	char err[256];
	json_t *back = agent_json_parse(buf, n, err, sizeof(err));
	assert_non_null(back);
	assert_int_equal(json_integer_value(json_object_get(back, "pid")), 42);
	json_decref(back);
	close(sv[0]);
	assert_int_equal(agent_frame_recv(sv[1], &t, buf, &n, 1000), -ENODATA);
	close(sv[1]);
}

struct sender {
	int fd;
	const uint8_t *data;
	size_t len;
	size_t chunk;   /* 0: one agent_frame_send of DATA; else raw chunks with pauses */
	int result;
};

static void *send_thread(void *arg)
{
	struct sender *s = arg;
	if (s->chunk == 0) {
		s->result = agent_frame_send(s->fd, AGENT_DATA, s->data, s->len, 5000);
		return NULL;
	}
	for (size_t off = 0; off < s->len; off += s->chunk) {
		size_t c = s->len - off < s->chunk ? s->len - off : s->chunk;
		if (write(s->fd, s->data + off, c) != (ssize_t)c)
			s->result = -1;
		sleep_ms(2);
	}
	return NULL;
}

/* A full-size frame through a small non-blocking send buffer: many partial writes. */
static void test_partial_writes(void **state)
{
	(void)state;
	int sv[2];
	pair(sv);
	int small = 4096;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	static uint8_t data[AGENT_FRAME_MAX], buf[AGENT_FRAME_MAX];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + i / 251);
	struct sender s = { sv[0], data, sizeof(data), 0, 0 };
	pthread_t th;
	pthread_create(&th, NULL, send_thread, &s);
	sleep_ms(50); /* let the sender fill the buffer and wait */
	unsigned t;
	size_t n;
	assert_int_equal(agent_frame_recv(sv[1], &t, buf, &n, 5000), 0);
	pthread_join(th, NULL);
	assert_int_equal(s.result, 0);
	assert_int_equal(t, AGENT_DATA);
	assert_int_equal(n, sizeof(data));
	assert_memory_equal(buf, data, sizeof(data));
	close(sv[0]);
	close(sv[1]);
}

/* A frame arriving a few bytes at a time, header split too: partial reads. */
static void test_partial_reads(void **state)
{
	(void)state;
	int sv[2];
	pair(sv);
	uint8_t frame[4 + 40];
	agent_frame_header(frame, AGENT_STDERR, 40);
	for (int i = 0; i < 40; i++)
		frame[4 + i] = (uint8_t)i;
	struct sender s = { sv[0], frame, sizeof(frame), 3, 0 };
	pthread_t th;
	pthread_create(&th, NULL, send_thread, &s);
	uint8_t buf[AGENT_FRAME_MAX];
	unsigned t;
	size_t n;
	assert_int_equal(agent_frame_recv(sv[1], &t, buf, &n, 5000), 0);
	pthread_join(th, NULL);
	assert_int_equal(t, AGENT_STDERR);
	assert_int_equal(n, 40);
	assert_memory_equal(buf, frame + 4, 40);
	close(sv[0]);
	close(sv[1]);
}

static int recv_after(const void *bytes, size_t len)
{
	int sv[2];
	pair(sv);
	assert_int_equal(write(sv[0], bytes, len), (ssize_t)len);
	close(sv[0]);
	static uint8_t buf[AGENT_FRAME_MAX];
	unsigned t;
	size_t n;
	int r = agent_frame_recv(sv[1], &t, buf, &n, 1000);
	close(sv[1]);
	return r;
}

static void test_eof(void **state)
{
	(void)state;
	assert_int_equal(recv_after("", 0), -ENODATA);
	assert_int_equal(recv_after("\x04", 1), -EPROTO);
	assert_int_equal(recv_after("\x04\x00\x00", 3), -EPROTO);
	assert_int_equal(recv_after("\x04\x00\x00\x05" "abc", 7), -EPROTO);
	assert_int_equal(recv_after("\x04\x00\x00\x03" "abc", 7), 0);
}

/* An oversize or unknown header is refused without reading its payload. */
static void test_oversize(void **state)
{
	(void)state;
	int sv[2];
	pair(sv);
	static uint8_t buf[AGENT_FRAME_MAX + 8];
	assert_int_equal(agent_frame_send(sv[0], AGENT_DATA, buf, AGENT_FRAME_MAX + 1, 1000), -EMSGSIZE);
	assert_int_equal(agent_frame_send(sv[0], 42, buf, 1, 1000), -EINVAL);
	assert_int_equal(write(sv[0], "\x08\x01\x00\x01xyz", 7), 7);
	unsigned t;
	size_t n;
	assert_int_equal(agent_frame_recv(sv[1], &t, buf, &n, 1000), -EPROTO);
	assert_int_equal(read(sv[1], buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "xyz", 3);
	assert_int_equal(write(sv[0], "\x63\x00\x00\x01z", 5), 5);
	assert_int_equal(agent_frame_recv(sv[1], &t, buf, &n, 1000), -EPROTO);

	/* a JSON object that encodes to more than a frame */
	json_t *o = json_object();
	char *big = calloc(1, AGENT_FRAME_MAX + 1);
	memset(big, 'a', AGENT_FRAME_MAX);
	json_object_set_new(o, "x", json_string(big));
	assert_int_equal(agent_frame_send_json(sv[0], AGENT_REPLY, o, 1000), -EMSGSIZE);
	json_decref(o);
	free(big);
	close(sv[0]);
	close(sv[1]);
}

static void test_timeouts(void **state)
{
	(void)state;
	int sv[2];
	pair(sv);
	uint8_t buf[AGENT_FRAME_MAX];
	unsigned t;
	size_t n;
	long t0 = now_ms();
	assert_int_equal(agent_frame_recv(sv[1], &t, buf, &n, 100), -ETIMEDOUT);
	long took = now_ms() - t0;
	assert_true(took >= 95 && took < 1000);

	/* a byte every 2 ms, 48 ms for the frame: a 20 ms deadline for the
	 * whole frame runs out, though no single read waits that long */
	uint8_t frame[4 + 20];
	agent_frame_header(frame, AGENT_DATA, 20);
	memset(frame + 4, 'q', 20);
	struct sender s = { sv[0], frame, sizeof(frame), 1, 0 };
	pthread_t th;
	pthread_create(&th, NULL, send_thread, &s);
	t0 = now_ms();
	assert_int_equal(agent_frame_recv(sv[1], &t, buf, &n, 20), -ETIMEDOUT);
	took = now_ms() - t0;
	assert_true(took < 500);
	pthread_join(th, NULL);
	close(sv[0]);
	close(sv[1]);

	/* nobody reads: a send times out once the buffer is full */
	pair(sv);
	int small = 4096;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	static uint8_t big[AGENT_FRAME_MAX];
	int r = 0;
	t0 = now_ms();
	for (int i = 0; i < 64 && r == 0; i++)
		r = agent_frame_send(sv[0], AGENT_DATA, big, sizeof(big), 100);
	assert_int_equal(r, -ETIMEDOUT);
	assert_true(now_ms() - t0 < 5000);
	close(sv[0]);
	close(sv[1]);
}

static void test_peer_gone(void **state)
{
	(void)state;
	int sv[2];
	pair(sv);
	close(sv[1]);
	int r = agent_frame_send(sv[0], AGENT_DATA, "x", 1, 1000);
	assert_true(r == -EPIPE || r == -ECONNRESET);
	close(sv[0]);
}

/* ---- JSON and requests ---- */

static void test_json_parse(void **state)
{
	(void)state;
	char err[256];
	static const char *const bad[] = {
		"", "[1]", "\"x\"", "3", "{} {}", "{\"a\":1,\"a\":2}", "{", "{\"a\":1}x",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		json_t *j = agent_json_parse((const uint8_t *)bad[i], strlen(bad[i]), err, sizeof(err));
		if (j)
			fail_msg("accepted %s", bad[i]);
		assert_true(err[0] != '\0' && !strchr(err, '\n'));
	}
	assert_null(agent_json_parse((const uint8_t *)"{\"a\":1}\0", 8, err, sizeof(err)));
	assert_non_null(strstr(err, "NUL"));
	json_t *j = agent_json_parse((const uint8_t *)" {\"a\":1} ", 9, err, sizeof(err));
	assert_non_null(j);
	json_decref(j);
}

static bool parse(const char *json, struct agent_request *r, char *err)
{
	return agent_request_parse((const uint8_t *)json, strlen(json), r, err, 256);
}

static void test_request_ok(void **state)
{
	(void)state;
	struct agent_request r;
	char err[256];
	assert_true(parse("{\"op\":\"ping\"}", &r, err));
	assert_int_equal(r.op, AGENT_OP_PING);
	agent_request_free(&r);
	assert_true(parse("{\"op\":\"info\"}", &r, err));
	assert_int_equal(r.op, AGENT_OP_INFO);
	agent_request_free(&r);

	assert_true(parse("{\"op\":\"exec\",\"argv\":[\"ls\",\"-l\"]}", &r, err));
	assert_int_equal(r.op, AGENT_OP_EXEC);
	assert_int_equal(r.argc, 2);
	assert_string_equal(r.argv[1], "-l");
	assert_null(r.argv[2]);
	assert_int_equal(r.envc, 0);
	assert_null(r.env[0]);
	assert_string_equal(r.cwd, "/");
	assert_false(r.tty);
	assert_int_equal(r.rows, 24);
	assert_int_equal(r.cols, 80);
	agent_request_free(&r);

	assert_true(parse("{\"op\":\"exec\",\"argv\":[\"sh\"],\"env\":[\"A=1\",\"B=\"],\"cwd\":\"/tmp\","
			  "\"tty\":true,\"rows\":65535,\"cols\":1}", &r, err));
	assert_int_equal(r.envc, 2);
	assert_string_equal(r.env[1], "B=");
	assert_string_equal(r.cwd, "/tmp");
	assert_true(r.tty);
	assert_int_equal(r.rows, 65535);
	assert_int_equal(r.cols, 1);
	agent_request_free(&r);

	assert_true(parse("{\"op\":\"read-file\",\"path\":\"/etc/hostname\"}", &r, err));
	assert_string_equal(r.path, "/etc/hostname");
	agent_request_free(&r);
	assert_true(parse("{\"op\":\"write-file\",\"path\":\"/x\",\"size\":0}", &r, err));
	assert_int_equal(r.mode, 0644);
	assert_int_equal(r.size, 0);
	agent_request_free(&r);
	assert_true(parse("{\"op\":\"write-file\",\"path\":\"/x\",\"size\":9007199254740991,\"mode\":4095}",
			  &r, err));
	assert_int_equal(r.mode, 07777);
	assert_int_equal(r.size, 9007199254740991ULL);
	agent_request_free(&r);
	assert_true(parse("{\"op\":\"shutdown\",\"reboot\":true}", &r, err));
	assert_true(r.reboot);
	agent_request_free(&r);
	assert_true(parse("{\"op\":\"set-time\",\"time\":1765100000.25}", &r, err));
	assert_true(r.time == 1765100000.25);
	agent_request_free(&r);
	assert_true(parse("{\"op\":\"set-time\",\"time\":0}", &r, err));
	agent_request_free(&r);
}

/* A request to refuse and a piece of the one line that must say why. */
struct bad {
	const char *json;
	const char *why;
};

static char *argv_of(size_t n, const char *item)
{
	size_t len = 32 + n * (strlen(item) + 1);
	char *s = malloc(len);
	strcpy(s, "{\"op\":\"exec\",\"argv\":[");
	for (size_t i = 0; i < n; i++) {
		strcat(s, i ? "," : "");
		strcat(s, item);
	}
	strcat(s, "]}");
	return s;
}

static void test_request_errors(void **state)
{
	(void)state;
	static const struct bad bad[] = {
		{ "", "request: empty payload" },
		{ "[\"ping\"]", "not a JSON object" },
		{ "{\"op\":\"ping\"", "bad JSON" },
		{ "{}", "'op' must be a string" },
		{ "{\"op\":7}", "'op' must be a string" },
		{ "{\"op\":\"reboot\"}", "unknown op 'reboot'" },
		{ "{\"op\":\"ping\",\"x\":1}", "ping: unknown key 'x'" },
		{ "{\"op\":\"info\",\"argv\":[\"a\"]}", "info: unknown key 'argv'" },
		{ "{\"op\":\"read-file\",\"path\":\"/a\",\"size\":1}", "read-file: unknown key 'size'" },
		{ "{\"op\":\"exec\"}", "exec: 'argv' is required" },
		{ "{\"op\":\"exec\",\"argv\":\"ls\"}", "'argv' must be an array of 1 to 256" },
		{ "{\"op\":\"exec\",\"argv\":[]}", "'argv' must be an array of 1 to 256" },
		{ "{\"op\":\"exec\",\"argv\":[\"ls\",3]}", "'argv[1]' must be a string" },
		{ "{\"op\":\"exec\",\"argv\":[\"ls\",\"a\\u0000b\"]}", "bad JSON" },
		{ "{\"op\":\"exec\",\"argv\":[\"\"]}", "'argv[0]' is empty" },
		{ "{\"op\":\"exec\",\"argv\":[\"ls\"],\"env\":\"A=1\"}", "'env' must be an array of 0 to 256" },
		{ "{\"op\":\"exec\",\"argv\":[\"ls\"],\"env\":[\"A\"]}", "'env[0]' must be NAME=VALUE" },
		{ "{\"op\":\"exec\",\"argv\":[\"ls\"],\"env\":[\"A=1\",\"=1\"]}", "'env[1]' must be NAME=VALUE" },
		{ "{\"op\":\"exec\",\"argv\":[\"ls\"],\"env\":[null]}", "'env[0]' must be a string" },
		{ "{\"op\":\"exec\",\"argv\":[\"ls\"],\"cwd\":\"tmp\"}", "'cwd' must be an absolute path" },
		{ "{\"op\":\"exec\",\"argv\":[\"ls\"],\"cwd\":1}", "'cwd' must be an absolute path" },
		{ "{\"op\":\"exec\",\"argv\":[\"ls\"],\"tty\":1}", "'tty' must be true or false" },
		{ "{\"op\":\"exec\",\"argv\":[\"ls\"],\"rows\":24}", "'rows' and 'cols' need \"tty\": true" },
		{ "{\"op\":\"exec\",\"argv\":[\"ls\"],\"tty\":false,\"cols\":80}", "need \"tty\": true" },
		{ "{\"op\":\"exec\",\"argv\":[\"ls\"],\"tty\":true,\"rows\":0}", "'rows' must be 1 to 65535, not 0" },
		{ "{\"op\":\"exec\",\"argv\":[\"ls\"],\"tty\":true,\"cols\":65536}", "'cols' must be 1 to 65535" },
		{ "{\"op\":\"exec\",\"argv\":[\"ls\"],\"tty\":true,\"cols\":-1}", "'cols' must be 1 to 65535" },
		{ "{\"op\":\"exec\",\"argv\":[\"ls\"],\"tty\":true,\"rows\":2.5}", "'rows' must be an integer" },
		{ "{\"op\":\"exec\",\"argv\":[\"ls\"],\"tty\":true,\"foo\":1}", "exec: unknown key 'foo'" },
		{ "{\"op\":\"read-file\"}", "read-file: 'path' is required" },
		{ "{\"op\":\"read-file\",\"path\":\"etc/x\"}", "'path' must be absolute, not 'etc/x'" },
		{ "{\"op\":\"read-file\",\"path\":\"\"}", "'path' must be absolute" },
		{ "{\"op\":\"read-file\",\"path\":[]}", "'path' must be a string" },
		{ "{\"op\":\"write-file\",\"path\":\"/x\"}", "write-file: 'size' is required" },
		{ "{\"op\":\"write-file\",\"size\":1}", "write-file: 'path' is required" },
		{ "{\"op\":\"write-file\",\"path\":\"/x\",\"size\":-1}", "'size' must be 0 to 9007199254740991" },
		{ "{\"op\":\"write-file\",\"path\":\"/x\",\"size\":9007199254740992}", "'size' must be 0 to" },
		{ "{\"op\":\"write-file\",\"path\":\"/x\",\"size\":\"1\"}", "'size' must be an integer" },
		{ "{\"op\":\"write-file\",\"path\":\"/x\",\"size\":1,\"mode\":4096}", "'mode' must be 0 to 4095" },
		{ "{\"op\":\"write-file\",\"path\":\"/x\",\"size\":1,\"mode\":-1}", "'mode' must be 0 to 4095" },
		{ "{\"op\":\"write-file\",\"path\":\"/x\",\"size\":1,\"mode\":\"644\"}", "'mode' must be an integer" },
		{ "{\"op\":\"shutdown\",\"reboot\":\"yes\"}", "'reboot' must be true or false" },
		{ "{\"op\":\"shutdown\",\"halt\":true}", "shutdown: unknown key 'halt'" },
		{ "{\"op\":\"set-time\"}", "set-time: 'time' is required" },
		{ "{\"op\":\"set-time\",\"time\":\"now\"}", "'time' must be seconds" },
		{ "{\"op\":\"set-time\",\"time\":-1}", "'time' must be seconds" },
		{ "{\"op\":\"set-time\",\"time\":1e300}", "'time' must be seconds" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct agent_request r = { .path = "untouched" };
		char err[256] = "";
		if (parse(bad[i].json, &r, err))
			fail_msg("accepted %s", bad[i].json);
		if (!strstr(err, bad[i].why) || strchr(err, '\n'))
			fail_msg("%s: got '%s', wanted '%s'", bad[i].json, err, bad[i].why);
		assert_string_equal(r.path, "untouched");
	}

	/* argv and env at and past their bounds */
	struct agent_request r;
	char err[256];
	char *s = argv_of(AGENT_ARGV_MAX, "\"a\"");
	assert_true(parse(s, &r, err));
	assert_int_equal(r.argc, AGENT_ARGV_MAX);
	assert_null(r.argv[AGENT_ARGV_MAX]);
	agent_request_free(&r);
	free(s);
	s = argv_of(AGENT_ARGV_MAX + 1, "\"a\"");
	assert_false(parse(s, &r, err));
	assert_non_null(strstr(err, "1 to 256"));
	free(s);

	/* env: 256 entries at most */
	for (size_t n = AGENT_ENV_MAX; n <= AGENT_ENV_MAX + 1; n++) {
		char *e = malloc(64 + n * 6);
		strcpy(e, "{\"op\":\"exec\",\"argv\":[\"a\"],\"env\":[");
		for (size_t i = 0; i < n; i++)
			strcat(e, i ? ",\"A=1\"" : "\"A=1\"");
		strcat(e, "]}");
		bool ok = parse(e, &r, err);
		assert_int_equal(ok, n == AGENT_ENV_MAX);
		if (ok)
			agent_request_free(&r);
		else
			assert_non_null(strstr(err, "'env' must be an array of 0 to 256"));
		free(e);
	}

	/* a path just too long for a temporary name beside it */
	static char name[4002], p[4100];
	memset(name, 'a', 4001);
	snprintf(p, sizeof(p), "{\"op\":\"read-file\",\"path\":\"/%s\"}", name);
	assert_false(parse(p, &r, err));
	assert_non_null(strstr(err, "longer than"));
	name[3999] = '\0'; /* "/" and 3999 bytes: 4000, the most there is room for */
	snprintf(p, sizeof(p), "{\"op\":\"read-file\",\"path\":\"/%s\"}", name);
	assert_true(parse(p, &r, err));
	agent_request_free(&r);
}

static void test_control(void **state)
{
	(void)state;
	struct agent_control c;
	char err[256];
#define CTL(s) agent_control_parse((const uint8_t *)(s), strlen(s), &c, err, sizeof(err))
	assert_true(CTL("{\"rows\":50,\"cols\":132}"));
	assert_true(c.resize);
	assert_int_equal(c.rows, 50);
	assert_int_equal(c.cols, 132);
	assert_true(CTL("{\"signal\":15}"));
	assert_false(c.resize);
	assert_int_equal(c.signal, 15);
	static const char *const bad[] = {
		"{}", "{\"rows\":5}", "{\"rows\":5,\"cols\":0}", "{\"rows\":5,\"cols\":7,\"x\":1}",
		"{\"signal\":0}", "{\"signal\":65}", "{\"signal\":9,\"rows\":1}", "{\"signal\":\"KILL\"}",
		"[]", "{\"rows\":1,\"x\":2}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (CTL(bad[i]))
			fail_msg("accepted %s", bad[i]);
		assert_non_null(strstr(err, "control: "));
	}
#undef CTL
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_limits),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_partial_writes),
		cmocka_unit_test(test_partial_reads),
		cmocka_unit_test(test_eof),
		cmocka_unit_test(test_oversize),
		cmocka_unit_test(test_timeouts),
		cmocka_unit_test(test_peer_gone),
		cmocka_unit_test(test_json_parse),
		cmocka_unit_test(test_request_ok),
		cmocka_unit_test(test_request_errors),
		cmocka_unit_test(test_control),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
