/*
 * The keeper (see spawn.h). Between fork and exec the daemon is
 * multi-threaded, so the keeper uses only async-signal-safe calls: no
 * malloc, no stdio, no locks; every string it needs is prepared before the
 * fork.
 */
#include "daemon/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define SPAWN_PID_WAIT_MS 5000

/* "exit 5\n" or "signal 9\n", formatted without stdio. */
static size_t format_status(char *buf, int status)
{
	const char *word = WIFSIGNALED(status) ? "signal " : "exit ";
	int v = WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status);
	size_t n = 0;
	while (*word)
		buf[n++] = *word++;
	char digits[12];
	int d = 0;
	do {
		digits[d++] = (char)('0' + v % 10);
		v /= 10;
	} while (v && d < 11);
	while (d)
		buf[n++] = digits[--d];
	buf[n++] = '\n';
	return n;
}

static void keeper_write_status(const char *path, const char *tmp, int status)
{
	char buf[32];
	size_t n = format_status(buf, status);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return;
	ssize_t w = write(fd, buf, n);
	close(fd);
	if (w == (ssize_t)n)
		rename(tmp, path);
}

/*
 * The keeper's descriptors: /dev/null in, /dev/null out, the log as
 * stderr, 3 the pipe the VMM's pid goes to the daemon on, 4 the pipe the
 * daemon says "go" on; nothing else (the pipe of the VMM's stderr comes
 * after).
 */
static void keeper_fds(int stderr_fd, int pid_fd, int go_fd)
{
	/* Moved out of 0-4 first, so no dup2 below clobbers another. */
	int null = fcntl(open("/dev/null", O_RDWR), F_DUPFD, 10);
	int err = stderr_fd >= 0 ? fcntl(stderr_fd, F_DUPFD, 10) : null;
	int pid_w = fcntl(pid_fd, F_DUPFD, 10);
	int go_r = fcntl(go_fd, F_DUPFD, 10);
	dup2(pid_w, 3);
	dup2(go_r, 4);
	dup2(err, 2);
	dup2(null, 0);
	dup2(null, 1);
	close_range(5, ~0u, 0);
}

/* Digits at *p as a pid, moving p past them; 0 if none. */
static pid_t parse_pid(const char **p, const char *end)
{
	pid_t v = 0;
	while (*p < end && **p >= '0' && **p <= '9' && v < 100000000)
		v = v * 10 + (*(*p)++ - '0');
	return v;
}

/*
 * Our own and our parent's pid as the host sees them, for a VMM that is
 * pid 1 of its own PID namespace (getpid() says 1, getppid() 0 there):
 * the host's /proc numbers them in its own namespace. "pid (comm) S ppid
 * ...", where comm may hold spaces and parentheses: the state follows the
 * last ')'. Async-signal-safe; zeros when /proc cannot be read.
 */
static void host_ids(pid_t *self, pid_t *parent)
{
	char buf[512];
	int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf)) : -1;
	if (fd >= 0)
		close(fd);
	*self = *parent = 0;
	if (n <= 0)
		return;
	const char *p = buf, *end = buf + n, *close_paren = NULL;
	*self = parse_pid(&p, end);
	for (const char *q = buf; q < end; q++)
		if (*q == ')')
			close_paren = q;
	if (!close_paren || end - close_paren < 5)
		return;
	p = close_paren + 4; /* ") S " */
	*parent = parse_pid(&p, end);
}

/*
 * The VMM's side before exec. It dies with its keeper: a VMM without one
 * has nobody to record its exit, and the daemon, seeing the keeper end,
 * would start a second VMM beside it (getppid() catches a keeper killed
 * before the prctl took effect). It then sends its own pid and waits for
 * the daemon's "go": until then it cannot exit, so the pid the daemon
 * opens a pidfd for cannot have been reaped and reused meanwhile. No "go"
 * (the daemon failed or died): no VMM that nobody supervises.
 */
static void vmm_child(char *const argv[], pid_t keeper, int stderr_w, bool pid_ns)
{
	pid_t self = 0, parent = 0;
	if (pid_ns)
		host_ids(&self, &parent);
	else
		self = getpid(), parent = getppid();
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || self <= 1 || parent != keeper)
		_exit(1);
	if (stderr_w >= 0 && dup2(stderr_w, 2) < 0)
		_exit(1);
	char go = 0;
	if (write(3, &self, sizeof(self)) != sizeof(self) || read(4, &go, 1) != 1 || go != 'g')
		_exit(1);
	close(3);
	close(4);
	execv(argv[0], argv);
	static const char msg[] = "shojid: cannot run the VMM (exec failed)\n";
	ssize_t e = write(2, msg, sizeof(msg) - 1);
	(void)e;
	_exit(127);
}

/*
 * Copies the VMM's stderr into the capped log until every writer is gone
 * (the VMM exited), so the log is complete before the status is written.
 */
static void keeper_copy_log(int from, struct capped_file *log)
{
	char buf[4096];
	for (;;) {
		ssize_t r = read(from, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		capped_file_write(log, buf, (size_t)r);
	}
	close(from);
}

static _Noreturn void keeper_main(char *const argv[], const char *path, const char *tmp,
				  struct capped_file *log, int pid_fd, int go_fd, bool pid_ns)
{
	setsid();
	/* Told apart from the daemon in ps and /proc (it is a fork of it). */
	prctl(PR_SET_NAME, "shojid-keeper");
	pid_t self = getpid();
	keeper_fds(log->fd, pid_fd, go_fd);
	if (log->fd >= 0)
		log->fd = 2;
	/*
	 * The VMM writes into a pipe that the keeper copies into the capped
	 * log. Without a pipe, it writes into the log file itself, uncapped,
	 * as before: a log is worth more than its bound.
	 */
	int err_pipe[2] = { -1, -1 };
	if (log->fd >= 0 && pipe2(err_pipe, O_CLOEXEC) < 0)
		err_pipe[0] = err_pipe[1] = -1;
	sigset_t none;
	sigemptyset(&none);
	signal(SIGPIPE, SIG_DFL);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/*
	 * vfork: the keeper is a copy of the whole daemon, and the child only
	 * execs (or writes one line and _exits), so copying its page tables a
	 * second time would only delay the VMM (bench/api). The child's close
	 * acts on its own descriptor table (vfork shares memory, not files).
	 * The keeper is suspended until the child execs: the child's wait for
	 * "go" keeps it so, which is harmless (it has nothing else to do).
	 */
	/* The VMM alone in a PID namespace of its own: it is pid 1 there and
	 * sees no other process. No namespace, no VMM (the daemon sees the
	 * keeper end without a pid). */
	if (pid_ns && unshare(CLONE_NEWPID) < 0)
		_exit(1);
	pid_t vmm = vfork();
	if (vmm == 0)
		vmm_child(argv, self, err_pipe[1], pid_ns);
	close(3); /* a failed vfork: the daemon reads EOF */
	close(4);
	if (err_pipe[1] >= 0)
		close(err_pipe[1]);
	if (vmm < 0)
		_exit(1);
	if (err_pipe[0] >= 0)
		keeper_copy_log(err_pipe[0], log);
	int status;
	while (waitpid(vmm, &status, 0) < 0)
		if (errno != EINTR)
			_exit(1);
	keeper_write_status(path, tmp, status);
	_exit(0);
}

/* The VMM's pid from the pipe, waiting at most SPAWN_PID_WAIT_MS; -1 if none came. */
static pid_t read_vmm_pid(int fd)
{
	pid_t vmm = -1;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t r;
	do {
		r = poll(&p, 1, SPAWN_PID_WAIT_MS) == 1 ? read(fd, &vmm, sizeof(vmm)) : 0;
	} while (r < 0 && errno == EINTR);
	return r == sizeof(vmm) && vmm > 1 ? vmm : -1;
}

bool spawn_vmm(char *const argv[], const char *status_path, const struct capped_file *log,
	       bool pid_ns, struct spawned *out)
{
	char tmp[PATH_MAX];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", status_path) >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return false;
	}
	unlink(status_path);
	int p[2], g[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return false;
	if (pipe2(g, O_CLOEXEC) < 0) {
		close(p[0]);
		close(p[1]);
		return false;
	}
	struct capped_file keeper_log = *log; /* the keeper's, prepared before the fork */
	pid_t keeper = fork();
	if (keeper == 0)
		keeper_main(argv, status_path, tmp, &keeper_log, p[1], g[0], pid_ns);
	close(p[1]);
	close(g[0]);
	if (keeper < 0) {
		close(p[0]);
		close(g[1]);
		return false;
	}
	pid_t vmm = read_vmm_pid(p[0]);
	close(p[0]);
	*out = (struct spawned){ keeper, vmm, g[1] };
	return true;
}

bool spawn_release(struct spawned *sp)
{
	bool ok = write(sp->go_fd, "g", 1) == 1;
	close(sp->go_fd);
	sp->go_fd = -1;
	return ok;
}

void spawn_abort(struct spawned *sp)
{
	if (sp->go_fd >= 0)
		close(sp->go_fd); /* the VMM child reads EOF and exits */
	sp->go_fd = -1;
	/* Our child, not reaped yet: its pid cannot name another process. */
	kill(sp->keeper, SIGKILL);
	while (waitpid(sp->keeper, NULL, 0) < 0 && errno == EINTR)
		;
}

bool spawn_read_status(const char *status_path, bool *signaled, int *value)
{
	int fd = open(status_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	char word[16];
	int v;
	bool ok = fscanf(f, "%15s %d", word, &v) == 2;
	fclose(f);
	if (!ok || (strcmp(word, "exit") != 0 && strcmp(word, "signal") != 0))
		return false;
	*signaled = strcmp(word, "signal") == 0;
	*value = v;
	return true;
}
