/*
 * `shoji exec VM [-t] [-e NAME=VALUE]... [-w DIR] [--] CMD ARGS...` and
 * `shoji cp [-m MODE] SRC DST`: a command or a file copy through the
 * guest's shoji-agent. The CLI speaks the agent protocol (docs/agent.md)
 * over shojid's upgraded API connection (POST /v1/vms/NAME/agent); shojid
 * checks and relays it.
 *
 * exec passes the command's stdin, stdout, stderr and exit status through
 * (a signal N gives 128+N); a failure before the command runs (no such VM,
 * agent not ready, program not found) is one line and exit status 125, as
 * docker exec does. cp exits 0, 1 on failure, 2 for bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <jansson.h>

#include "base/agent-proto.h"
#include "base/agent-pump.h"
#include "cli/shoji-http.h"
#include "cli/shoji.h"
#include "daemon/vmdef.h"

#define EXEC_FAILED   125
#define REPLY_MS      30000   /* shojid allows the agent 10 s; this covers shojid too */
#define FRAME_MS      30000

static volatile sig_atomic_t window_changed;

static void on_winch(int sig)
{
	(void)sig;
	window_changed = 1;
}

/* ---- the connection ---- */

/* An upgraded connection to NAME's agent that sent `request`: the fd, or -1 (message printed). */
static int agent_open(const struct cli *cli, const char *name, json_t *request)
{
	char path[96];
	snprintf(path, sizeof(path), "/v1/vms/%s/agent", name);
	int fd = http_upgrade(cli->socket, path, "shoji-agent");
	if (fd < 0)
		return -1;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	int r = agent_frame_send_json(fd, AGENT_REQUEST, request, FRAME_MS);
	if (r < 0) {
		fprintf(stderr, "shoji: cannot send the request to shojid: %s\n", strerror(-r));
		close(fd);
		return -1;
	}
	return fd;
}

/* The agent's REPLY: the object if ok; NULL (message printed) otherwise. */
static json_t *agent_reply(int fd, const char *what)
{
	static uint8_t buf[AGENT_FRAME_MAX];
	unsigned type;
	size_t len;
	int r = agent_frame_recv(fd, &type, buf, &len, REPLY_MS);
	if (r < 0) {
		fprintf(stderr, "shoji: %s: %s\n", what,
			r == -ENODATA ? "the agent closed the connection without a reply" : strerror(-r));
		return NULL;
	}
	char err[200];
	json_t *reply = type == AGENT_REPLY ? agent_json_parse(buf, len, err, sizeof(err)) : NULL;
	if (!reply) {
		fprintf(stderr, "shoji: %s: a bad reply from the agent\n", what);
		return NULL;
	}
	if (json_is_true(json_object_get(reply, "ok")))
		return reply;
	const char *e = json_string_value(json_object_get(reply, "error"));
	fprintf(stderr, "shoji: %s: %s\n", what, e ? e : "the agent refused");
	json_decref(reply);
	return NULL;
}

static bool write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* ---- exec ---- */

struct exec_opts {
	bool tty;
	const char *cwd;
	json_t *env;
	json_t *argv;
};

struct exec_run {
	int fd;
	bool stdin_open;
	bool tty;
	struct agent_pump in, out;   /* from and to shojid */
	int status;                  /* the exit status, once EXIT came */
	bool done;
	bool raw;
	struct termios saved;
};

static void window_size(unsigned *rows, unsigned *cols)
{
	struct winsize ws;
	*rows = 24, *cols = 80;
	if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col)
		*rows = ws.ws_row, *cols = ws.ws_col;
}

static json_t *exec_request(const struct exec_opts *o)
{
	json_t *req = json_pack("{s:s, s:O, s:b}", "op", "exec", "argv", o->argv, "tty", o->tty);
	if (json_array_size(o->env))
		json_object_set(req, "env", o->env);
	if (o->cwd)
		json_object_set_new(req, "cwd", json_string(o->cwd));
	if (o->tty) {
		unsigned rows, cols;
		window_size(&rows, &cols);
		json_object_set_new(req, "rows", json_integer(rows));
		json_object_set_new(req, "cols", json_integer(cols));
	}
	return req;
}

static void raw_mode(struct exec_run *x)
{
	if (!x->tty || !isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &x->saved) != 0)
		return;
	struct termios t = x->saved;
	cfmakeraw(&t);
	x->raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
}

static void restore_mode(struct exec_run *x)
{
	if (x->raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &x->saved);
	x->raw = false;
}

/* The EXIT frame's status: N, or 128 + signal. */
static int exit_status(const struct agent_pump *p)
{
	char err[160];
	json_t *o = agent_json_parse(agent_pump_payload(p), agent_pump_len(p), err, sizeof(err));
	json_t *st = json_object_get(o, "status"), *sig = json_object_get(o, "signal");
	int r = json_is_integer(st) ? (int)(json_integer_value(st) & 0xff)
		: json_is_integer(sig) ? 128 + (int)(json_integer_value(sig) & 0x7f) : EXEC_FAILED;
	json_decref(o);
	return r;
}

/* A whole frame from shojid: output written out, EXIT noted. False on a protocol error. */
static bool exec_take(struct exec_run *x)
{
	unsigned type = agent_pump_type(&x->in);
	const uint8_t *p = agent_pump_payload(&x->in);
	size_t n = agent_pump_len(&x->in);
	bool ok = true;
	if (type == AGENT_STDOUT)
		ok = !n || write_all(STDOUT_FILENO, p, n);
	else if (type == AGENT_STDERR)
		ok = !n || write_all(STDERR_FILENO, p, n);
	else if (type == AGENT_EXIT)
		x->status = exit_status(&x->in), x->done = true;
	else
		ok = false;
	agent_pump_reset(&x->in);
	return ok || type == AGENT_STDOUT || type == AGENT_STDERR; /* a closed stdout is not the agent's fault */
}

/* What goes to the agent next: a window size, stdin's bytes or its end. */
static void exec_feed(struct exec_run *x, bool stdin_ready)
{
	if (x->out.full)
		return;
	if (window_changed && x->tty) {
		window_changed = 0;
		unsigned rows, cols;
		window_size(&rows, &cols);
		char ctl[64];
		int n = snprintf(ctl, sizeof(ctl), "{\"rows\":%u,\"cols\":%u}", rows, cols);
		agent_pump_load(&x->out, AGENT_CONTROL, ctl, (size_t)n);
		return;
	}
	if (!x->stdin_open || !stdin_ready)
		return;
	static uint8_t buf[AGENT_FRAME_MAX];
	ssize_t r = read(STDIN_FILENO, buf, sizeof(buf));
	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (r <= 0)
		x->stdin_open = false;
	agent_pump_load(&x->out, AGENT_STDIN, buf, r > 0 ? (size_t)r : 0);
}

static int exec_loop(struct exec_run *x)
{
	while (!x->done) {
		struct pollfd p[2] = {
			{ .fd = x->fd, .events = (short)(POLLIN | (x->out.full ? POLLOUT : 0)) },
			{ .fd = x->stdin_open && !x->out.full ? STDIN_FILENO : -1, .events = POLLIN },
		};
		if (poll(p, 2, 1000) < 0 && errno != EINTR)
			break;
		exec_feed(x, p[1].revents != 0);
		if (x->out.full && agent_pump_drain(&x->out, x->fd) < 0) {
			/* No more input taken; the output and the exit status may still come. */
			x->stdin_open = false;
			agent_pump_reset(&x->out);
		}
		int r = agent_pump_fill(&x->in, x->fd);
		if (r < 0)
			break;
		if (r == 1 && !exec_take(x))
			break;
	}
	restore_mode(x);
	if (!x->done) {
		fprintf(stderr, "shoji: exec: the connection ended before the command did\n");
		return EXEC_FAILED;
	}
	return x->status;
}

static int exec_run(const struct cli *cli, const char *name, const struct exec_opts *o)
{
	json_t *req = exec_request(o);
	int fd = agent_open(cli, name, req);
	json_decref(req);
	if (fd < 0)
		return EXEC_FAILED;
	json_t *reply = agent_reply(fd, "exec");
	if (!reply) {
		close(fd);
		return EXEC_FAILED;
	}
	json_decref(reply);
	struct exec_run *x = calloc(1, sizeof(*x));
	if (!x) {
		close(fd);
		return EXEC_FAILED;
	}
	x->fd = fd;
	x->stdin_open = true;
	x->tty = o->tty;
	signal(SIGPIPE, SIG_IGN);
	if (o->tty)
		signal(SIGWINCH, on_winch);
	raw_mode(x);
	int st = exec_loop(x);
	close(fd);
	free(x);
	return st;
}

static int exec_usage(const char *msg, const char *arg)
{
	fprintf(stderr, "shoji: exec: %s%s (usage: shoji exec VM [-t] [-e NAME=VALUE]... [-w DIR] [--] CMD ARGS...)\n",
		msg, arg ? arg : "");
	return 2;
}

int cli_exec(const struct cli *cli, int argc, char **argv)
{
	if (argc < 1 || !vmdef_name_valid(argv[0]))
		return argc < 1 ? exec_usage("needs a VM name", NULL) : exec_usage("bad VM name ", argv[0]);
	struct exec_opts o = { .env = json_array(), .argv = json_array() };
	int i = 1, st = 2;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else if (strcmp(argv[i], "-t") == 0 || strcmp(argv[i], "--tty") == 0) {
			o.tty = true;
		} else if ((strcmp(argv[i], "-e") == 0 || strcmp(argv[i], "--env") == 0) && i + 1 < argc) {
			if (!strchr(argv[++i], '=')) {
				st = exec_usage("-e wants NAME=VALUE, not ", argv[i]);
				goto out;
			}
			json_array_append_new(o.env, json_string(argv[i]));
		} else if ((strcmp(argv[i], "-w") == 0 || strcmp(argv[i], "--workdir") == 0) && i + 1 < argc) {
			o.cwd = argv[++i];
		} else {
			st = exec_usage("unknown option or missing value: ", argv[i]);
			goto out;
		}
	}
	if (i == argc) {
		st = exec_usage("no command given", NULL);
		goto out;
	}
	for (; i < argc; i++)
		json_array_append_new(o.argv, json_string(argv[i]));
	st = exec_run(cli, argv[0], &o);
out:
	json_decref(o.env);
	json_decref(o.argv);
	return st;
}

/* ---- cp ---- */

/* "VM:PATH" → name and path; false for a local path (no colon, or ./a:b). */
static bool remote_spec(const char *arg, char *name, size_t nlen, const char **path)
{
	const char *colon = strchr(arg, ':');
	if (!colon || (size_t)(colon - arg) >= nlen)
		return false;
	snprintf(name, nlen, "%.*s", (int)(colon - arg), arg);
	*path = colon + 1;
	return vmdef_name_valid(name);
}

static bool send_file(int fd, int in, uint64_t size)
{
	static uint8_t buf[AGENT_FRAME_MAX];
	uint64_t sent = 0;
	while (sent < size) {
		ssize_t r = read(in, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(stderr, "shoji: cp: the local file %s while it was read\n",
				r < 0 ? strerror(errno) : "shrank");
			return false;
		}
		if (agent_frame_send(fd, AGENT_DATA, buf, (size_t)r, FRAME_MS) < 0)
			return false; /* the agent's reply says why */
		sent += (uint64_t)r;
	}
	return agent_frame_send(fd, AGENT_DATA, NULL, 0, FRAME_MS) == 0;
}

static int cp_in(const struct cli *cli, const char *src, const char *vm, const char *dst, int mode)
{
	int in = open(src, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (in < 0 || fstat(in, &st) < 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "shoji: cp: %s: %s\n", src, in < 0 ? strerror(errno) : "not a regular file");
		if (in >= 0)
			close(in);
		return 1;
	}
	char path[PATH_MAX], copy[PATH_MAX];
	snprintf(copy, sizeof(copy), "%s", src);
	snprintf(path, sizeof(path), "%s%s", dst, dst[strlen(dst) - 1] == '/' ? basename(copy) : "");
	json_t *req = json_pack("{s:s, s:s, s:i, s:I}", "op", "write-file", "path", path, "mode",
				mode >= 0 ? mode : (int)(st.st_mode & 07777), "size", (json_int_t)st.st_size);
	int fd = agent_open(cli, vm, req);
	json_decref(req);
	json_t *reply = fd >= 0 ? agent_reply(fd, "cp") : NULL;
	int rc = 1;
	if (reply) {
		json_decref(reply);
		bool sent = send_file(fd, in, (uint64_t)st.st_size);
		reply = agent_reply(fd, "cp"); /* the final word, also after a failed send */
		rc = sent && reply ? 0 : 1;
		json_decref(reply);
	}
	if (fd >= 0)
		close(fd);
	close(in);
	return rc;
}

/* Receives DATA frames into out until the empty one; false (message printed) otherwise. */
static bool recv_file(int fd, int out, uint64_t size)
{
	static uint8_t buf[AGENT_FRAME_MAX];
	uint64_t got = 0;
	for (;;) {
		unsigned type;
		size_t len;
		int r = agent_frame_recv(fd, &type, buf, &len, FRAME_MS);
		if (r < 0 || type != AGENT_DATA) {
			fprintf(stderr, "shoji: cp: the copy broke off after %llu of %llu bytes\n",
				(unsigned long long)got, (unsigned long long)size);
			return false;
		}
		if (len == 0)
			break;
		if (!write_all(out, buf, len)) {
			fprintf(stderr, "shoji: cp: writing: %s\n", strerror(errno));
			return false;
		}
		got += len;
	}
	if (got != size)
		fprintf(stderr, "shoji: cp: got %llu bytes, the agent announced %llu\n", (unsigned long long)got,
			(unsigned long long)size);
	return got == size;
}

static int cp_out(const struct cli *cli, const char *vm, const char *src, const char *dst, int mode)
{
	char path[PATH_MAX], tmp[PATH_MAX + 16], copy[PATH_MAX];
	struct stat st;
	snprintf(copy, sizeof(copy), "%s", src);
	if (stat(dst, &st) == 0 && S_ISDIR(st.st_mode))
		snprintf(path, sizeof(path), "%s/%s", dst, basename(copy));
	else
		snprintf(path, sizeof(path), "%s", dst);
	json_t *req = json_pack("{s:s, s:s}", "op", "read-file", "path", src);
	int fd = agent_open(cli, vm, req);
	json_decref(req);
	json_t *reply = fd >= 0 ? agent_reply(fd, "cp") : NULL;
	if (!reply) {
		if (fd >= 0)
			close(fd);
		return 1;
	}
	uint64_t size = (uint64_t)json_integer_value(json_object_get(reply, "size"));
	int fmode = mode >= 0 ? mode : (int)(json_integer_value(json_object_get(reply, "mode")) & 07777);
	json_decref(reply);
	/* A temporary file beside the target, renamed at the end: a failed copy leaves no half file. */
	snprintf(tmp, sizeof(tmp), "%s.shoji-XXXXXX", path);
	int out = mkstemp(tmp);
	if (out < 0) {
		fprintf(stderr, "shoji: cp: %s: %s\n", path, strerror(errno));
		close(fd);
		return 1;
	}
	bool ok = recv_file(fd, out, size) && fchmod(out, (mode_t)fmode) == 0 && fsync(out) == 0;
	close(fd);
	if (close(out) != 0 || !ok || rename(tmp, path) != 0) {
		if (ok)
			fprintf(stderr, "shoji: cp: %s: %s\n", path, strerror(errno));
		unlink(tmp);
		return 1;
	}
	return 0;
}

static int cp_usage(const char *msg)
{
	fprintf(stderr, "shoji: cp: %s (usage: shoji cp [-m MODE] SRC DST, one of them VM:PATH)\n", msg);
	return 2;
}

int cli_cp(const struct cli *cli, int argc, char **argv)
{
	int mode = -1, i = 0;
	if (argc >= 2 && strcmp(argv[0], "-m") == 0) {
		char *end;
		long m = strtol(argv[1], &end, 8);
		if (!argv[1][0] || *end || m < 0 || m > 07777) {
			char msg[160];
			snprintf(msg, sizeof(msg), "-m %.64s: not an octal mode such as 0644", argv[1]);
			return cp_usage(msg);
		}
		mode = (int)m;
		i = 2;
	}
	if (argc - i != 2)
		return cp_usage("give a source and a destination");
	char a[VMDEF_NAME_MAX + 2], b[VMDEF_NAME_MAX + 2];
	const char *pa, *pb;
	bool ra = remote_spec(argv[i], a, sizeof(a), &pa), rb = remote_spec(argv[i + 1], b, sizeof(b), &pb);
	if (ra == rb)
		return cp_usage(ra ? "both sides are in VMs; copy through the host"
				   : "one side must be VM:PATH");
	if ((ra ? pa : pb)[0] != '/')
		return cp_usage("the path in the VM must be absolute");
	return ra ? cp_out(cli, a, pa, argv[i + 1], mode) : cp_in(cli, argv[i], b, pb, mode);
}
