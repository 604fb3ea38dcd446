/* Implementation of image/run.h. */
#include "image/run.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

void run_catch_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

int run_stop_signal(void)
{
	return stop_signal;
}

bool run_have(const char *prog)
{
	const char *path = getenv("PATH");
	char *copy = strdup(path ? path : "/usr/bin:/bin"), *save = NULL;
	bool found = false;
	for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d && !found;
	     d = strtok_r(NULL, ":", &save)) {
		char p[4096];
		snprintf(p, sizeof(p), "%s/%s", d, prog);
		found = access(p, X_OK) == 0;
	}
	free(copy);
	return found;
}

/* In the child: never returns. Its own process group, so a Ctrl-C at the
 * terminal reaches only shoji-img, which stops the child once, by SIGTERM
 * (mmdebstrap cleans up its mounts on it; two signals could cut that
 * short). */
static void child(char *const argv[], char *const envp[], int log_fd, int out_fd)
{
	setpgid(0, 0);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null >= 0)
		dup2(null, 0);
	if (out_fd >= 0)
		dup2(out_fd, 1);
	else if (log_fd >= 0)
		dup2(log_fd, 1);
	if (log_fd >= 0)
		dup2(log_fd, 2);
	for (size_t i = 0; envp && envp[i]; i++)
		putenv(envp[i]);
	execvp(argv[0], argv);
	dprintf(2, "%s: cannot run: %s\n", argv[0], strerror(errno));
	_exit(127);
}

static char *collect(int fd)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	for (ssize_t n = 1; buf && n > 0;) {
		if (len + 1 >= cap) {
			char *b = realloc(buf, cap *= 2);
			if (!b) {
				free(buf);
				return NULL;
			}
			buf = b;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n > 0)
			len += (size_t)n;
		else if (n < 0 && errno == EINTR && !stop_signal)
			n = 1;
	}
	if (buf)
		buf[len] = '\0';
	return buf;
}

/* The child's whole process group gets the signal, as from a terminal:
 * mmdebstrap's main process only waits for its worker, and the worker is
 * the one that unmounts and exits. One that has not ended a minute later
 * is killed (tmpdir.c unmounts what it left). */
static void stop_child(pid_t pid)
{
	if (kill(-pid, SIGTERM) < 0)
		kill(pid, SIGTERM);
	for (int i = 0; i < 600; i++) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return;
		nanosleep(&(struct timespec){ 0, 100 * 1000 * 1000 }, NULL);
	}
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static int wait_child(pid_t pid)
{
	int status;
	for (;;) {
		if (stop_signal) {
			stop_child(pid);
			return -1;
		}
		if (waitpid(pid, &status, 0) == pid)
			break;
		if (errno != EINTR)
			return -1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 256 + WTERMSIG(status);
}

int run_cmd(char *const argv[], char *const envp[], int log_fd, char **out)
{
	int p[2] = { -1, -1 };
	if (stop_signal || (out && pipe2(p, O_CLOEXEC) < 0))
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0)
		child(argv, envp, log_fd, p[1]);
	if (p[1] >= 0)
		close(p[1]);
	if (pid < 0) {
		if (p[0] >= 0)
			close(p[0]);
		return -1;
	}
	char *text = out ? collect(p[0]) : NULL;
	if (p[0] >= 0)
		close(p[0]);
	int rc = wait_child(pid);
	if (out && (rc != 0 || !text)) {
		free(text);
		text = NULL;
		rc = rc == 0 ? -1 : rc;
	}
	if (out)
		*out = text;
	return rc;
}
