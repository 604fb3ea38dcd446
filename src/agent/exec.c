/*
 * The exec op (docs/agent.md): a command on pipes, or on a pseudo-terminal
 * in tty mode, relayed as frames. One loop per connection moves bytes both
 * ways through one buffer per direction: output is read from the command
 * only when the previous frame has gone to the host, and a frame from the
 * host is read only when the command took the previous one. So a slow host
 * stalls the command, a command that does not read stalls the host, and
 * nothing is buffered without bound.
 *
 * The command runs in a process group of its own (a session in tty mode):
 * a host that leaves takes the whole group with it (SIGKILL).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "agent/agent.h"
#include "base/log.h"

#define BASE_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define ENV_BASE 3   /* PATH, HOME, TERM */

struct exec {
	struct agent_conn *c;
	bool tty;
	pid_t pid;
	int pidfd;             /* -1: waitpid polled instead (kernel < 5.3) */
	int in_fd;             /* the command's stdin (the pty master in tty mode); -1 closed */
	int out_fd, err_fd;    /* its stdout (the master in tty mode), stderr; -1 at EOF */
	bool in_ended;         /* the host sent the empty STDIN */
	bool exited;
	int status;
	/* host -> command: one STDIN frame's bytes not yet written */
	uint8_t in_buf[AGENT_FRAME_MAX];
	size_t in_off, in_len;
	/* command -> host: one frame not yet sent (header included) */
	uint8_t out_buf[AGENT_FRAME_HEADER + AGENT_FRAME_MAX];
	size_t out_off, out_len;
};

/* ---- starting the command ---- */

/* The fixed base environment with the request's entries over it. */
static void build_env(const struct agent_request *r, const char **envp)
{
	static const char *const base[ENV_BASE] = { "PATH=" BASE_PATH, "HOME=/root", "TERM=xterm-256color" };
	size_t n = 0;
	for (size_t b = 0; b < (r->tty ? ENV_BASE : ENV_BASE - 1); b++) {
		size_t name = strcspn(base[b], "=") + 1;
		bool overridden = false;
		for (size_t i = 0; i < r->envc && !overridden; i++)
			overridden = strncmp(r->env[i], base[b], name) == 0;
		if (!overridden)
			envp[n++] = base[b];
	}
	for (size_t i = 0; i < r->envc; i++)
		envp[n++] = r->env[i];
	envp[n] = NULL;
}

/* argv[0] found on the command's PATH (or as given, with a slash): 0 or an errno. */
static int find_program(const char *prog, const char **envp, char *out, size_t len)
{
	if (strchr(prog, '/')) {
		snprintf(out, len, "%s", prog);
		return 0;
	}
	const char *path = BASE_PATH;
	for (size_t i = 0; envp[i]; i++)
		if (strncmp(envp[i], "PATH=", 5) == 0)
			path = envp[i] + 5;
	int err = ENOENT;
	for (const char *p = path; *p;) {
		size_t n = strcspn(p, ":");
		struct stat st;
		if (n > 0 && (size_t)snprintf(out, len, "%.*s/%s", (int)n, p, prog) < len &&
		    stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
			if (access(out, X_OK) == 0)
				return 0;
			err = EACCES;
		}
		p += n + (p[n] == ':');
	}
	return err;
}

/* A pseudo-terminal pair, both close-on-exec, sized rows x cols. */
static bool open_pty(int *master, int *slave, unsigned rows, unsigned cols)
{
	char name[64];
	*master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*master < 0 || grantpt(*master) < 0 || unlockpt(*master) < 0 ||
	    ptsname_r(*master, name, sizeof(name)) != 0)
		return false;
	*slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
	return *slave >= 0 && ioctl(*master, TIOCSWINSZ, &ws) == 0;
}

/* What the child reports through the close-on-exec pipe when it fails. */
struct child_failure {
	char stage;   /* 'c' chdir, 'e' execve, 's' the terminal */
	int err;
};

/*
 * In the child, between fork and execve: only async-signal-safe calls, as
 * other threads may hold locks. fds[0..2] become 0..2; never returns.
 */
static _Noreturn void child(const int fds[3], bool tty, const char *cwd, const char *prog,
			    const char *const *argv, const char *const *envp, int report)
{
	struct child_failure f = { 's', 0 };
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL); /* ignored in the agent; a command expects the default */
	if (tty ? setsid() < 0 || ioctl(fds[0], TIOCSCTTY, 0) < 0 : setpgid(0, 0) < 0)
		goto fail;
	for (int i = 0; i < 3; i++)
		if (dup2(fds[i], i) < 0)
			goto fail;
	f.stage = 'c';
	if (chdir(cwd) < 0)
		goto fail;
	f.stage = 'e';
	execve(prog, (char *const *)argv, (char *const *)envp);
fail:
	f.err = errno;
	(void)!write(report, &f, sizeof(f));
	_exit(127);
}

/* Waits for the child's exec: true once the program runs; else replies why and reaps it. */
static bool exec_started(struct exec *x, const struct agent_request *r, int report)
{
	struct child_failure f;
	ssize_t n;
	do
		n = read(report, &f, sizeof(f));
	while (n < 0 && errno == EINTR);
	close(report);
	if (n != (ssize_t)sizeof(f))
		return true; /* EOF: execve closed the pipe, the program runs */
	waitpid(x->pid, NULL, 0);
	if (f.stage == 'c')
		return agent_reply_error(x->c, "%s: %s", r->cwd, strerror(f.err));
	if (f.stage == 's')
		return agent_reply_error(x->c, "cannot set up the terminal: %s", strerror(f.err));
	return agent_reply_error(x->c, "%s: %s", r->argv[0], strerror(f.err));
}

/* The fds the child gets as 0-2 and what the agent keeps; false on failure. */
static bool make_fds(struct exec *x, const struct agent_request *r, int cfd[3])
{
	if (r->tty) {
		int master, slave = -1;
		if (!open_pty(&master, &slave, r->rows, r->cols)) {
			if (master >= 0)
				close(master);
			if (slave >= 0)
				close(slave);
			return false;
		}
		cfd[0] = cfd[1] = cfd[2] = slave;
		x->out_fd = master;
		x->in_fd = dup(master);
		if (x->in_fd < 0)
			close(slave);
		return x->in_fd >= 0;
	}
	int in[2], out[2], err[2];
	if (pipe2(in, O_CLOEXEC) < 0)
		return false;
	if (pipe2(out, O_CLOEXEC) < 0) {
		close(in[0]), close(in[1]);
		return false;
	}
	if (pipe2(err, O_CLOEXEC) < 0) {
		close(in[0]), close(in[1]), close(out[0]), close(out[1]);
		return false;
	}
	cfd[0] = in[0], cfd[1] = out[1], cfd[2] = err[1];
	x->in_fd = in[1], x->out_fd = out[0], x->err_fd = err[0];
	return true;
}

static void close_child_fds(const int cfd[3])
{
	close(cfd[0]);
	if (cfd[1] != cfd[0])
		close(cfd[1]);
	if (cfd[2] != cfd[0] && cfd[2] != cfd[1])
		close(cfd[2]);
}

static bool spawn(struct exec *x, const struct agent_request *r)
{
	const char *envp[ENV_BASE + AGENT_ENV_MAX + 1];
	char prog[4096];
	build_env(r, envp);
	int e = find_program(r->argv[0], envp, prog, sizeof(prog));
	if (e)
		return agent_reply_error(x->c, "%s: %s", r->argv[0], strerror(e));
	int cfd[3], report[2];
	if (!make_fds(x, r, cfd))
		return agent_reply_error(x->c, "exec: %s: %s", r->tty ? "pseudo-terminal" : "pipes", strerror(errno));
	if (pipe2(report, O_CLOEXEC) < 0) {
		close_child_fds(cfd);
		return agent_reply_error(x->c, "exec: %s", strerror(errno));
	}
	x->pid = fork();
	if (x->pid == 0)
		child(cfd, r->tty, r->cwd, prog, r->argv, envp, report[1]);
	int fork_err = errno;
	close_child_fds(cfd);
	close(report[1]);
	if (x->pid < 0) {
		close(report[0]);
		return agent_reply_error(x->c, "exec: fork: %s", strerror(fork_err));
	}
	if (!r->tty)
		setpgid(x->pid, x->pid); /* also here: the group exists before any kill */
	return exec_started(x, r, report[0]);
}

/* ---- relaying ---- */

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/*
 * The host is gone or broke the protocol: the whole group goes, also when
 * the command itself has ended and what is left is its background.
 */
static void kill_command(struct exec *x)
{
	kill(-x->pid, SIGKILL);
	if (!x->exited) {
		kill(x->pid, SIGKILL);
		waitpid(x->pid, NULL, 0);
		x->exited = true;
	}
}

static void check_exit(struct exec *x)
{
	int status = 0;
	pid_t r = x->exited ? 0 : waitpid(x->pid, &status, WNOHANG);
	/* -1 (ECHILD) cannot happen with SIGCHLD at its default; if it did,
	 * the command is gone all the same and waiting again would spin */
	if (r == x->pid || r < 0) {
		x->exited = true;
		x->status = r < 0 ? W_EXITCODE(255, 0) : status;
		close_fd(&x->pidfd);
	}
}

/* Output from fd as one pending frame of `type`; EOF is the empty frame. */
static void take_output(struct exec *x, int *fd, unsigned type)
{
	ssize_t n = read(*fd, x->out_buf + AGENT_FRAME_HEADER, AGENT_FRAME_MAX);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	/* n < 0: EIO is how a pty master says every slave is closed */
	if (n <= 0) {
		n = 0;
		close_fd(fd);
		if (x->tty)
			close_fd(&x->in_fd);
	}
	agent_frame_header(x->out_buf, type, (size_t)n);
	x->out_off = 0;
	x->out_len = AGENT_FRAME_HEADER + (size_t)n;
}

/* Sends what it can of the pending frame; false if the host is gone. */
static bool flush_output(struct exec *x)
{
	ssize_t n = send(x->c->fd, x->out_buf + x->out_off, x->out_len - x->out_off,
			 MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	x->out_off += (size_t)n;
	if (x->out_off == x->out_len)
		x->out_len = 0;
	return true;
}

/* Writes what it can of the pending STDIN bytes to the command. */
static void feed_input(struct exec *x)
{
	ssize_t n = write(x->in_fd, x->in_buf + x->in_off, x->in_len - x->in_off);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		/* the command closed its stdin (EPIPE) or the terminal is gone:
		 * what the host still sends is dropped, as a pipe would */
		close_fd(&x->in_fd);
		x->in_len = 0;
		return;
	}
	x->in_off += (size_t)n;
	if (x->in_off == x->in_len)
		x->in_len = x->in_off = 0;
}

/* The empty STDIN: the pipe closes; a terminal gets its EOF character. */
static void end_input(struct exec *x)
{
	x->in_ended = true;
	if (x->in_fd < 0)
		return;
	if (!x->tty) {
		close_fd(&x->in_fd);
		return;
	}
	struct termios t;
	x->in_buf[0] = tcgetattr(x->in_fd, &t) == 0 ? t.c_cc[VEOF] : 4;
	x->in_len = 1;
	x->in_off = 0;
}

static bool control(struct exec *x, size_t len)
{
	struct agent_control ctl;
	char err[256];
	if (!agent_control_parse(x->c->buf, len, &ctl, err, sizeof(err)))
		return agent_reply_error(x->c, "%s", err);
	if (!ctl.resize) {
		kill(-x->pid, ctl.signal);
	} else if (x->tty && x->out_fd >= 0) {
		struct winsize ws = { .ws_row = (unsigned short)ctl.rows, .ws_col = (unsigned short)ctl.cols };
		ioctl(x->out_fd, TIOCSWINSZ, &ws);
	}
	/* a size without a terminal is ignored: a host may forward every resize */
	return true;
}

/* One frame from the host; false if it left or broke the protocol. */
static bool host_frame(struct exec *x)
{
	unsigned type;
	size_t len;
	int r = agent_frame_recv(x->c->fd, &type, x->c->buf, &len, AGENT_IO_MS);
	if (r < 0) {
		if (r != -ENODATA)
			log_warn("connection %u: exec: %s", x->c->id,
				 r == -EPROTO ? "malformed frame" : strerror(-r));
		return false;
	}
	if (type == AGENT_CONTROL)
		return control(x, len);
	if (type != AGENT_STDIN)
		return agent_reply_error(x->c, "exec: %s frame not allowed here", agent_frame_type_name(type));
	if (x->in_ended)
		return agent_reply_error(x->c, "exec: STDIN after the end of input");
	if (len == 0) {
		end_input(x);
	} else if (x->in_fd >= 0) {
		memcpy(x->in_buf, x->c->buf, len);
		x->in_len = len;
		x->in_off = 0;
	}
	return true;
}

enum { SLOT_SOCK, SLOT_IN, SLOT_OUT, SLOT_ERR, SLOT_PID, SLOT_N };

static void poll_set(struct exec *x, struct pollfd *p)
{
	bool out_free = x->out_len == 0;
	p[SLOT_SOCK] = (struct pollfd){ x->c->fd, (short)((x->in_len == 0 ? POLLIN : 0) |
						     (out_free ? 0 : POLLOUT)), 0 };
	p[SLOT_IN] = (struct pollfd){ x->in_len ? x->in_fd : -1, POLLOUT, 0 };
	p[SLOT_OUT] = (struct pollfd){ out_free ? x->out_fd : -1, POLLIN, 0 };
	p[SLOT_ERR] = (struct pollfd){ out_free ? x->err_fd : -1, POLLIN, 0 };
	p[SLOT_PID] = (struct pollfd){ x->exited ? -1 : x->pidfd, POLLIN, 0 };
}

/* Relays until the command ended and its output is drained; false if the host left. */
static bool relay(struct exec *x)
{
	while (!x->exited || x->out_fd >= 0 || x->err_fd >= 0 || x->out_len > 0) {
		struct pollfd p[SLOT_N];
		poll_set(x, p);
		/* without a pidfd, the exit is noticed by polling waitpid */
		if (poll(p, SLOT_N, x->pidfd < 0 && !x->exited ? 100 : -1) < 0 && errno != EINTR)
			return false;
		/* a hang-up is reported even when nothing is asked: the host left */
		if (p[SLOT_SOCK].revents & (POLLHUP | POLLERR))
			return false;
		if (p[SLOT_SOCK].revents & POLLOUT && !flush_output(x))
			return false;
		if (p[SLOT_SOCK].revents & POLLIN && x->in_len == 0 && !host_frame(x))
			return false;
		if (p[SLOT_IN].revents)
			feed_input(x);
		if (p[SLOT_OUT].revents && x->out_len == 0)
			take_output(x, &x->out_fd, AGENT_STDOUT);
		if (p[SLOT_ERR].revents && x->out_len == 0)
			take_output(x, &x->err_fd, AGENT_STDERR);
		check_exit(x);
	}
	return true;
}

static void send_exit(struct exec *x)
{
	json_t *o = WIFSIGNALED(x->status) ? json_pack("{s:i}", "signal", WTERMSIG(x->status))
					   : json_pack("{s:i}", "status", WEXITSTATUS(x->status));
	agent_frame_send_json(x->c->fd, AGENT_EXIT, o, AGENT_IO_MS);
	json_decref(o);
}

void agent_op_exec(struct agent_conn *c, const struct agent_request *r)
{
	struct exec *x = calloc(1, sizeof(*x));
	if (!x) {
		agent_reply_error(c, "exec: out of memory");
		return;
	}
	*x = (struct exec){ .c = c, .tty = r->tty, .pidfd = -1, .in_fd = -1, .out_fd = -1, .err_fd = -1 };
	if (spawn(x, r)) {
		x->pidfd = (int)syscall(SYS_pidfd_open, x->pid, 0);
		fcntl(x->out_fd, F_SETFL, O_NONBLOCK);
		if (x->err_fd >= 0)
			fcntl(x->err_fd, F_SETFL, O_NONBLOCK);
		fcntl(x->in_fd, F_SETFL, O_NONBLOCK);
		if (agent_reply_ok(c, json_pack("{s:i}", "pid", (int)x->pid)) && relay(x))
			send_exit(x);
		else
			kill_command(x);
	}
	close_fd(&x->pidfd);
	close_fd(&x->in_fd);
	close_fd(&x->out_fd);
	close_fd(&x->err_fd);
	free(x);
}
