/*
 * Implementation of base/agent-proto.h: frame I/O with an overall deadline,
 * and the one place where a REQUEST's JSON is checked key by key. Each op is
 * a row of `ops[]` (its name, the keys it takes, its parser); adding an op
 * means adding a row and a parser, never another branch elsewhere.
 */
#include "base/agent-proto.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/errbuf.h"

/* ---- frames ---- */

static const char *const type_names[] = {
	[AGENT_REQUEST] = "REQUEST", [AGENT_REPLY] = "REPLY",   [AGENT_STDIN] = "STDIN",
	[AGENT_STDOUT] = "STDOUT",   [AGENT_STDERR] = "STDERR", [AGENT_EXIT] = "EXIT",
	[AGENT_CONTROL] = "CONTROL", [AGENT_DATA] = "DATA",
};

static bool type_known(unsigned type)
{
	return type >= AGENT_REQUEST && type <= AGENT_DATA;
}

const char *agent_frame_type_name(unsigned type)
{
	return type_known(type) ? type_names[type] : "unknown";
}

bool agent_frame_header(uint8_t hdr[AGENT_FRAME_HEADER], unsigned type, size_t len)
{
	if (!type_known(type) || len > AGENT_FRAME_MAX)
		return false;
	hdr[0] = (uint8_t)type;
	hdr[1] = (uint8_t)(len >> 16);
	hdr[2] = (uint8_t)(len >> 8);
	hdr[3] = (uint8_t)len;
	return true;
}

int agent_frame_parse_header(const uint8_t hdr[AGENT_FRAME_HEADER], unsigned *type, size_t *len)
{
	size_t n = (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
	if (!type_known(hdr[0]) || n > AGENT_FRAME_MAX)
		return -EPROTO;
	*type = hdr[0];
	*len = n;
	return 0;
}

/* ---- I/O against a deadline ---- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* -1: no deadline. */
static int64_t deadline_after(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/*
 * Waits until fd is ready for `events` (or has an error or hang-up, which
 * the following read or write reports) before the deadline. Polling before
 * every transfer is what makes a blocking socket honour the deadline too.
 */
static int wait_ready(int fd, short events, int64_t deadline)
{
	for (;;) {
		int left = -1;
		if (deadline >= 0) {
			int64_t l = deadline - now_ms();
			if (l < 0)
				return -ETIMEDOUT;
			left = l > INT_MAX ? INT_MAX : (int)l;
		}
		struct pollfd p = { .fd = fd, .events = events };
		int r = poll(&p, 1, left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
		/* r == 0 or EINTR: the loop head decides whether time is left */
		if (r == 0 && deadline >= 0 && deadline - now_ms() <= 0)
			return -ETIMEDOUT;
	}
}

/*
 * One transfer that never blocks, on a socket or (for tests and tools) on
 * any other fd; MSG_NOSIGNAL so a departed peer is -EPIPE, not SIGPIPE.
 */
static ssize_t xfer(int fd, void *buf, size_t n, bool out)
{
	ssize_t r = out ? send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL)
			: recv(fd, buf, n, MSG_DONTWAIT);
	if (r < 0 && errno == ENOTSOCK)
		r = out ? write(fd, buf, n) : read(fd, buf, n);
	return r;
}

/* Writes all n bytes: 0 or -errno. */
static int write_all(int fd, const uint8_t *p, size_t n, int64_t deadline)
{
	while (n > 0) {
		int w = wait_ready(fd, POLLOUT, deadline);
		if (w < 0)
			return w;
		ssize_t r = xfer(fd, (void *)p, n, true);
		if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (r < 0)
			return -errno;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Reads exactly n bytes: 0, or -errno; *got says how far it came (EOF: -ENODATA). */
static int read_all(int fd, uint8_t *p, size_t n, int64_t deadline, size_t *got)
{
	*got = 0;
	while (*got < n) {
		int w = wait_ready(fd, POLLIN, deadline);
		if (w < 0)
			return w;
		ssize_t r = xfer(fd, p + *got, n - *got, false);
		if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ENODATA;
		*got += (size_t)r;
	}
	return 0;
}

int agent_frame_send(int fd, unsigned type, const void *payload, size_t len, int timeout_ms)
{
	uint8_t hdr[AGENT_FRAME_HEADER];
	if (!agent_frame_header(hdr, type, len))
		return len > AGENT_FRAME_MAX ? -EMSGSIZE : -EINVAL;
	int64_t deadline = deadline_after(timeout_ms);
	int r = write_all(fd, hdr, sizeof(hdr), deadline);
	return r < 0 ? r : write_all(fd, payload, len, deadline);
}

int agent_frame_send_json(int fd, unsigned type, const json_t *obj, int timeout_ms)
{
	/* One byte more than a frame holds tells "too big" from "just fits". */
	char *buf = malloc(AGENT_FRAME_MAX + 1);
	if (!buf)
		return -ENOMEM;
	size_t n = json_dumpb(obj, buf, AGENT_FRAME_MAX + 1, JSON_COMPACT);
	int r = n == 0 ? -EINVAL
		: n > AGENT_FRAME_MAX ? -EMSGSIZE
		: agent_frame_send(fd, type, buf, n, timeout_ms);
	free(buf);
	return r;
}

int agent_frame_recv(int fd, unsigned *type, uint8_t *buf, size_t *len, int timeout_ms)
{
	int64_t deadline = deadline_after(timeout_ms);
	uint8_t hdr[AGENT_FRAME_HEADER];
	size_t got;
	int r = read_all(fd, hdr, sizeof(hdr), deadline, &got);
	if (r == -ENODATA && got > 0)
		return -EPROTO;
	if (r < 0)
		return r;
	unsigned t;
	size_t n;
	if (agent_frame_parse_header(hdr, &t, &n) < 0)
		return -EPROTO;
	r = read_all(fd, buf, n, deadline, &got);
	if (r == -ENODATA)
		return -EPROTO;
	if (r < 0)
		return r;
	*type = t;
	*len = n;
	return 0;
}

/* ---- JSON ---- */

json_t *agent_json_parse(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	if (len == 0) {
		errbuf_fail(err, errlen, "empty payload, expected a JSON object");
		return NULL;
	}
	if (memchr(buf, '\0', len)) {
		errbuf_fail(err, errlen, "payload contains a NUL byte");
		return NULL;
	}
	json_error_t je;
	/* Duplicate keys are refused: two readers could pick different ones. */
	json_t *j = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		errbuf_fail(err, errlen, "bad JSON at byte %d: %s", je.position, je.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		errbuf_fail(err, errlen, "payload is not a JSON object");
		return NULL;
	}
	return j;
}

/* ---- requests ---- */

/*
 * The largest size write-file takes: 2^53 - 1, the largest integer every
 * JSON reader (doubles included) reads exactly.
 */
#define FILE_SIZE_MAX ((1ULL << 53) - 1)
/* set-time: from the epoch to the year 10000; anything else is a bug. */
#define TIME_MAX 253402300800.0
/* Room for the temporary name write-file puts beside the path. */
#define AGENT_PATH_MAX 4000

typedef bool parse_fn(json_t *j, struct agent_request *r, char *err, size_t errlen);

struct op_def {
	const char *name;
	enum agent_op op;
	const char *const *keys;   /* NULL-terminated; "op" is always allowed */
	parse_fn *parse;
};

static bool fail(char *err, size_t errlen, const char *op, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* "OP: what" in err; false. */
static bool fail(char *err, size_t errlen, const char *op, const char *fmt, ...)
{
	char what[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return errbuf_fail(err, errlen, "%s: %s", op, what);
}

/* A string value without a NUL inside (JSON allows "\u0000"). */
static const char *plain_string(json_t *v)
{
	if (!json_is_string(v))
		return NULL;
	const char *s = json_string_value(v);
	return strlen(s) == json_string_length(v) ? s : NULL;
}

static bool get_path(json_t *j, const char *op, const char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(j, "path");
	if (!v)
		return fail(err, errlen, op, "'path' is required");
	const char *s = plain_string(v);
	if (!s)
		return fail(err, errlen, op, "'path' must be a string without NUL");
	if (s[0] != '/')
		return fail(err, errlen, op, "'path' must be absolute, not '%.100s'", s);
	if (strlen(s) > AGENT_PATH_MAX)
		return fail(err, errlen, op, "'path' is longer than %d bytes", AGENT_PATH_MAX);
	*out = s;
	return true;
}

/* An optional integer key in [lo, hi]; *out untouched when absent. */
static bool get_uint(json_t *j, const char *op, const char *key, uint64_t lo, uint64_t hi,
		     uint64_t *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(j, key);
	if (!v)
		return true;
	if (!json_is_integer(v))
		return fail(err, errlen, op, "'%s' must be an integer", key);
	json_int_t n = json_integer_value(v);
	if (n < 0 || (uint64_t)n < lo || (uint64_t)n > hi)
		return fail(err, errlen, op, "'%s' must be %llu to %llu, not %lld", key,
			    (unsigned long long)lo, (unsigned long long)hi, (long long)n);
	*out = (uint64_t)n;
	return true;
}

static bool get_bool(json_t *j, const char *op, const char *key, bool *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(j, key);
	if (!v)
		return true;
	if (!json_is_boolean(v))
		return fail(err, errlen, op, "'%s' must be true or false", key);
	*out = json_is_true(v);
	return true;
}

/* A JSON array of 1..max strings (min 0 for env) into a NULL-terminated list. */
static bool get_strings(json_t *j, const char *key, size_t min, size_t max, const char **list,
			size_t *count, char *err, size_t errlen)
{
	json_t *v = json_object_get(j, key);
	if (!v)
		return min == 0 || fail(err, errlen, "exec", "'%s' is required", key);
	size_t n = json_is_array(v) ? json_array_size(v) : 0;
	if (!json_is_array(v) || n < min || n > max)
		return fail(err, errlen, "exec", "'%s' must be an array of %zu to %zu strings", key, min, max);
	for (size_t i = 0; i < n; i++) {
		list[i] = plain_string(json_array_get(v, i));
		if (!list[i])
			return fail(err, errlen, "exec", "'%s[%zu]' must be a string without NUL", key, i);
	}
	list[n] = NULL;
	*count = n;
	return true;
}

static bool parse_env(json_t *j, struct agent_request *r, char *err, size_t errlen)
{
	if (!get_strings(j, "env", 0, AGENT_ENV_MAX, r->env, &r->envc, err, errlen))
		return false;
	for (size_t i = 0; i < r->envc; i++) {
		const char *eq = strchr(r->env[i], '=');
		if (!eq || eq == r->env[i])
			return fail(err, errlen, "exec", "'env[%zu]' must be NAME=VALUE, not '%.100s'",
				    i, r->env[i]);
	}
	return true;
}

static bool parse_exec(json_t *j, struct agent_request *r, char *err, size_t errlen)
{
	if (!get_strings(j, "argv", 1, AGENT_ARGV_MAX, r->argv, &r->argc, err, errlen))
		return false;
	if (r->argv[0][0] == '\0')
		return fail(err, errlen, "exec", "'argv[0]' is empty");
	if (!parse_env(j, r, err, errlen))
		return false;
	json_t *cwd = json_object_get(j, "cwd");
	if (cwd) {
		r->cwd = plain_string(cwd);
		if (!r->cwd || r->cwd[0] != '/')
			return fail(err, errlen, "exec", "'cwd' must be an absolute path");
	}
	if (!get_bool(j, "exec", "tty", &r->tty, err, errlen))
		return false;
	if (!r->tty && (json_object_get(j, "rows") || json_object_get(j, "cols")))
		return fail(err, errlen, "exec", "'rows' and 'cols' need \"tty\": true");
	uint64_t rows = r->rows, cols = r->cols;
	if (!get_uint(j, "exec", "rows", 1, 65535, &rows, err, errlen) ||
	    !get_uint(j, "exec", "cols", 1, 65535, &cols, err, errlen))
		return false;
	r->rows = (unsigned)rows;
	r->cols = (unsigned)cols;
	return true;
}

static bool parse_read_file(json_t *j, struct agent_request *r, char *err, size_t errlen)
{
	return get_path(j, "read-file", &r->path, err, errlen);
}

static bool parse_write_file(json_t *j, struct agent_request *r, char *err, size_t errlen)
{
	uint64_t mode = r->mode;
	if (!get_path(j, "write-file", &r->path, err, errlen) ||
	    !get_uint(j, "write-file", "mode", 0, 07777, &mode, err, errlen))
		return false;
	r->mode = (unsigned)mode;
	if (!json_object_get(j, "size"))
		return fail(err, errlen, "write-file", "'size' is required");
	return get_uint(j, "write-file", "size", 0, FILE_SIZE_MAX, &r->size, err, errlen);
}

static bool parse_shutdown(json_t *j, struct agent_request *r, char *err, size_t errlen)
{
	return get_bool(j, "shutdown", "reboot", &r->reboot, err, errlen);
}

static bool parse_set_time(json_t *j, struct agent_request *r, char *err, size_t errlen)
{
	json_t *v = json_object_get(j, "time");
	if (!v)
		return fail(err, errlen, "set-time", "'time' is required");
	double t = json_number_value(v);
	if (!json_is_number(v) || !isfinite(t) || t < 0 || t >= TIME_MAX)
		return fail(err, errlen, "set-time", "'time' must be seconds since the epoch (0 to %.0f)",
			    TIME_MAX);
	r->time = t;
	return true;
}

static bool parse_nothing(json_t *j, struct agent_request *r, char *err, size_t errlen)
{
	(void)j, (void)r, (void)err, (void)errlen;
	return true;
}

static const char *const no_keys[] = { NULL };
static const char *const exec_keys[] = { "argv", "env", "cwd", "tty", "rows", "cols", NULL };
static const char *const read_keys[] = { "path", NULL };
static const char *const write_keys[] = { "path", "mode", "size", NULL };
static const char *const shutdown_keys[] = { "reboot", NULL };
static const char *const time_keys[] = { "time", NULL };

static const struct op_def ops[] = {
	{ "ping", AGENT_OP_PING, no_keys, parse_nothing },
	{ "info", AGENT_OP_INFO, no_keys, parse_nothing },
	{ "exec", AGENT_OP_EXEC, exec_keys, parse_exec },
	{ "read-file", AGENT_OP_READ_FILE, read_keys, parse_read_file },
	{ "write-file", AGENT_OP_WRITE_FILE, write_keys, parse_write_file },
	{ "shutdown", AGENT_OP_SHUTDOWN, shutdown_keys, parse_shutdown },
	{ "set-time", AGENT_OP_SET_TIME, time_keys, parse_set_time },
};
#define N_OPS (sizeof(ops) / sizeof(ops[0]))

const char *agent_op_name(enum agent_op op)
{
	for (size_t i = 0; i < N_OPS; i++)
		if (ops[i].op == op)
			return ops[i].name;
	return "unknown";
}

static const struct op_def *find_op(json_t *j, char *err, size_t errlen)
{
	const char *name = plain_string(json_object_get(j, "op"));
	if (!name) {
		errbuf_fail(err, errlen, "request: 'op' must be a string naming the operation");
		return NULL;
	}
	for (size_t i = 0; i < N_OPS; i++)
		if (strcmp(ops[i].name, name) == 0)
			return &ops[i];
	errbuf_fail(err, errlen, "request: unknown op '%.64s' (ping, info, exec, read-file, "
		    "write-file, shutdown, set-time)", name);
	return NULL;
}

static bool keys_known(json_t *j, const struct op_def *d, char *err, size_t errlen)
{
	const char *key;
	json_t *v;
	json_object_foreach(j, key, v) {
		bool ok = strcmp(key, "op") == 0;
		for (const char *const *k = d->keys; !ok && *k; k++)
			ok = strcmp(key, *k) == 0;
		if (!ok)
			return fail(err, errlen, d->name, "unknown key '%.64s'", key);
	}
	return true;
}

bool agent_request_parse(const uint8_t *buf, size_t len, struct agent_request *req,
			 char *err, size_t errlen)
{
	char why[200];
	json_t *j = agent_json_parse(buf, len, why, sizeof(why));
	if (!j)
		return errbuf_fail(err, errlen, "request: %s", why);
	/* Parsed into a local: *req is untouched on failure (docs/hacking.md). */
	struct agent_request r = { .json = j, .cwd = "/", .rows = 24, .cols = 80, .mode = 0644 };
	const struct op_def *d = find_op(j, err, errlen);
	if (!d || !keys_known(j, d, err, errlen) || !d->parse(j, &r, err, errlen)) {
		json_decref(j);
		return false;
	}
	r.op = d->op;
	*req = r;
	return true;
}

void agent_request_free(struct agent_request *req)
{
	json_decref(req->json);
	req->json = NULL;
}

/* ---- CONTROL ---- */

static bool parse_control(json_t *j, struct agent_control *c, char *err, size_t errlen)
{
	size_t n = json_object_size(j);
	if (json_object_get(j, "signal")) {
		uint64_t sig = 0;
		if (n != 1)
			return fail(err, errlen, "control", "'signal' comes alone");
		if (!get_uint(j, "control", "signal", 1, 64, &sig, err, errlen))
			return false;
		c->signal = (int)sig;
		return true;
	}
	if (n != 2 || !json_object_get(j, "rows") || !json_object_get(j, "cols"))
		return fail(err, errlen, "control", "expected {\"rows\": R, \"cols\": C} or {\"signal\": N}");
	uint64_t rows = 0, cols = 0;
	if (!get_uint(j, "control", "rows", 1, 65535, &rows, err, errlen) ||
	    !get_uint(j, "control", "cols", 1, 65535, &cols, err, errlen))
		return false;
	c->resize = true;
	c->rows = (unsigned)rows;
	c->cols = (unsigned)cols;
	return true;
}

bool agent_control_parse(const uint8_t *buf, size_t len, struct agent_control *ctl,
			 char *err, size_t errlen)
{
	char why[200];
	json_t *j = agent_json_parse(buf, len, why, sizeof(why));
	if (!j)
		return errbuf_fail(err, errlen, "control: %s", why);
	struct agent_control c = { 0 };
	bool ok = parse_control(j, &c, err, errlen);
	json_decref(j);
	if (ok)
		*ctl = c;
	return ok;
}
