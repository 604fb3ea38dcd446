/*
 * pidfd system calls through syscall(): Debian 12's glibc declares no
 * wrappers for them, its kernel (6.1) has them all.
 */
#include "daemon/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

int proc_pidfd_open(pid_t pid)
{
	/* pidfds are close-on-exec by definition. */
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

bool proc_pidfd_signal(int pidfd, int sig)
{
	return pidfd >= 0 && syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) == 0;
}

bool proc_pidfd_reap(int pidfd)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	return waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG) == 0 && si.si_pid != 0;
}

uint64_t proc_start_time(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	/* p is at the space before field 3 (the state); a zombie is not a live VM. */
	p++;
	if (p[0] != ' ' || p[1] == 'Z' || p[1] == 'X')
		return 0;
	for (int field = 3; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p)
		return 0;
	return strtoull(p + 1, NULL, 10);
}
