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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

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
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	ssize_t w = write(fd, buf, n);
	close(fd);
	if (w == (ssize_t)n)
		rename(tmp, path);
}

/* The keeper's standard descriptors: /dev/null in, /dev/null out, the log as stderr. */
static void keeper_fds(int stderr_fd, int pipe_fd)
{
	/* Moved out of 0-3 first, so no dup2 below clobbers another. */
	int null = fcntl(open("/dev/null", O_RDWR), F_DUPFD, 10);
	int err = stderr_fd >= 0 ? fcntl(stderr_fd, F_DUPFD, 10) : null;
	int pipe_w = fcntl(pipe_fd, F_DUPFD, 10);
	dup2(pipe_w, 3);
	dup2(err, 2);
	dup2(null, 0);
	dup2(null, 1);
	close_range(4, ~0u, 0);
}

static _Noreturn void keeper_main(char *const argv[], const char *path, const char *tmp,
				  int stderr_fd, int pipe_fd)
{
	setsid();
	/* Told apart from the daemon in ps and /proc (it is a fork of it). */
	prctl(PR_SET_NAME, "shojid-keeper");
	pid_t self = getpid();
	keeper_fds(stderr_fd, pipe_fd);
	sigset_t none;
	sigemptyset(&none);
	signal(SIGPIPE, SIG_DFL);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/*
	 * vfork: the keeper is a copy of the whole daemon, and the child only
	 * execs (or writes one line and _exits), so copying its page tables a
	 * second time would only delay the VMM (bench/api). The child's close
	 * acts on its own descriptor table (vfork shares memory, not files).
	 */
	pid_t vmm = vfork();
	if (vmm == 0) {
		/*
		 * The VMM dies with its keeper: a VMM without one has nobody
		 * to record its exit, and the daemon, seeing the keeper end,
		 * would start a second VMM beside it. getppid() catches a
		 * keeper killed before the prctl took effect.
		 */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != self)
			_exit(1);
		close(3);
		execv(argv[0], argv);
		static const char msg[] = "shojid: cannot run the VMM (exec failed)\n";
		ssize_t e = write(2, msg, sizeof(msg) - 1);
		(void)e;
		_exit(127);
	}
	ssize_t w = write(3, &vmm, sizeof(vmm));
	(void)w;
	close(3);
	if (vmm < 0)
		_exit(1);
	int status;
	while (waitpid(vmm, &status, 0) < 0)
		if (errno != EINTR)
			_exit(1);
	keeper_write_status(path, tmp, status);
	_exit(0);
}

bool spawn_vmm(char *const argv[], const char *status_path, int stderr_fd, struct spawned *out)
{
	char tmp[PATH_MAX];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", status_path) >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return false;
	}
	unlink(status_path);
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return false;
	pid_t keeper = fork();
	if (keeper == 0)
		keeper_main(argv, status_path, tmp, stderr_fd, p[1]);
	close(p[1]);
	if (keeper < 0) {
		close(p[0]);
		return false;
	}
	pid_t vmm = -1;
	ssize_t r;
	do {
		r = read(p[0], &vmm, sizeof(vmm));
	} while (r < 0 && errno == EINTR);
	close(p[0]);
	out->keeper = keeper;
	out->vmm = r == sizeof(vmm) ? vmm : -1;
	return true;
}

bool spawn_read_status(const char *status_path, bool *signaled, int *value)
{
	FILE *f = fopen(status_path, "re");
	if (!f)
		return false;
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
