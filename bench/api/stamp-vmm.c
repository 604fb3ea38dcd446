/*
 * A stand-in VMM for bench/api: given to shojid as --vmm, it writes the
 * CLOCK_MONOTONIC time of its own start (ns) to $SHOJI_BENCH_STAMP, then
 * execs the real VMM named by $SHOJI_BENCH_VMM with the arguments shojid
 * gave it (or exits 0 when that is unset: the bench's plain fork/exec
 * baseline). The stamp is written to a temporary file and renamed, so a
 * reader never sees half of it.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	(void)argc;
	const char *stamp = getenv("SHOJI_BENCH_STAMP");
	if (stamp) {
		char tmp[4096], line[32];
		snprintf(tmp, sizeof(tmp), "%s.tmp", stamp);
		int n = snprintf(line, sizeof(line), "%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd >= 0) {
			ssize_t w = write(fd, line, (size_t)n);
			close(fd);
			if (w == n)
				rename(tmp, stamp);
		}
	}
	const char *vmm = getenv("SHOJI_BENCH_VMM");
	if (!vmm || !vmm[0])
		return 0;
	argv[0] = (char *)vmm;
	execv(vmm, argv);
	perror(vmm);
	return 127;
}
