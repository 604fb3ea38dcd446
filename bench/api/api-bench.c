/*
 * bench/api: shojid's API round trip and the time the daemon adds to a VM
 * start (see bench/README.md). Run by bench/api/run.sh, which starts a
 * shojid on a temporary state directory with bench/api/stamp-vmm.c as its
 * --vmm and defines the VMs.
 *
 *   rtt:   GET /v1/vms, one connection per request as `shoji` makes it
 *          (HTTP/1.0, read to EOF), against the same exchange with a
 *          trivial server on a Unix socket in this process (the floor any
 *          Unix-socket HTTP API pays).
 *   start: from just before POST /v1/vms/NAME/start is sent to the stamp
 *          the stand-in VMM writes as its first act after exec; against
 *          the same stamp after a plain posix_spawn of it from here.
 *
 * usage: api-bench SOCKET VM STAMP-VMM STAMP-FILE RTT-RUNS START-RUNS
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static _Noreturn void die(const char *what)
{
	fprintf(stderr, "api-bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int dial(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die(path);
	return fd;
}

/* One request on a new connection; the status, the body into buf. */
static int request(const char *sock, const char *method, const char *path, char *buf, size_t cap)
{
	int fd = dial(sock);
	char head[512];
	int n = snprintf(head, sizeof(head), "%s %s HTTP/1.0\r\nHost: shojid\r\nContent-Length: 0\r\n\r\n",
			 method, path);
	if (write(fd, head, (size_t)n) != n)
		die("send");
	size_t len = 0;
	ssize_t r;
	while (len + 1 < cap && (r = read(fd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)r;
	buf[len] = '\0';
	close(fd);
	int status = -1;
	if (sscanf(buf, "HTTP/%*d.%*d %d", &status) != 1)
		return -1;
	return status;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return x < y ? -1 : x > y;
}

struct stats { double median_us, p90_us, min_us; };

static struct stats summarize(long long *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_ll);
	return (struct stats){ v[n / 2] / 1000.0, v[n * 9 / 10] / 1000.0, v[0] / 1000.0 };
}

/* ---- the floor: a trivial HTTP answer over a Unix socket ---- */

static const char *canned_body;

static void *floor_server(void *arg)
{
	int lfd = *(int *)arg;
	char req[4096], resp[16384];
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		size_t len = 0;
		ssize_t r;
		while ((r = read(fd, req + len, sizeof(req) - 1 - len)) > 0) {
			len += (size_t)r;
			req[len] = '\0';
			if (strstr(req, "\r\n\r\n"))
				break;
		}
		int n = snprintf(resp, sizeof(resp),
				 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
				 strlen(canned_body), canned_body);
		if (write(fd, resp, (size_t)n) < 0)
			perror("floor write");
		close(fd);
	}
	return NULL;
}

static long long stamp_wait(const char *stamp, long long limit_ns)
{
	long long until = now_ns() + limit_ns;
	while (now_ns() < until) {
		FILE *f = fopen(stamp, "re");
		long long v;
		if (f) {
			int ok = fscanf(f, "%lld", &v) == 1;
			fclose(f);
			if (ok)
				return v;
		}
		usleep(200);
	}
	return -1;
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: api-bench SOCKET VM STAMP-VMM STAMP-FILE RTT-RUNS START-RUNS\n");
		return 2;
	}
	const char *sock = argv[1], *vm = argv[2], *stamp_vmm = argv[3], *stamp = argv[4];
	int rtt_runs = atoi(argv[5]), start_runs = atoi(argv[6]);
	static char buf[1 << 20];

	/* Round trip of GET /v1/vms. */
	if (request(sock, "GET", "/v1/vms", buf, sizeof(buf)) != 200)
		die("GET /v1/vms did not answer 200");
	char *body = strstr(buf, "\r\n\r\n");
	canned_body = strdup(body ? body + 4 : "{}");
	long long *t = calloc((size_t)(rtt_runs > start_runs ? rtt_runs : start_runs), sizeof(*t));
	for (int i = 0; i < rtt_runs; i++) {
		long long t0 = now_ns();
		int st = request(sock, "GET", "/v1/vms", buf, sizeof(buf));
		t[i] = now_ns() - t0;
		if (st != 200)
			die("GET /v1/vms failed during the run");
	}
	struct stats api = summarize(t, rtt_runs);

	char floor_path[108];
	snprintf(floor_path, sizeof(floor_path), "%s.floor", sock);
	unlink(floor_path);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", floor_path);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 64) < 0)
		die(floor_path);
	pthread_t th;
	pthread_create(&th, NULL, floor_server, &lfd);
	for (int i = 0; i < rtt_runs; i++) {
		long long t0 = now_ns();
		request(floor_path, "GET", "/v1/vms", buf, sizeof(buf));
		t[i] = now_ns() - t0;
	}
	struct stats flo = summarize(t, rtt_runs);
	unlink(floor_path);

	/* Start: POST .../start to the stand-in VMM's first instruction. */
	char path[256], spath[256];
	snprintf(path, sizeof(path), "/v1/vms/%s/start", vm);
	snprintf(spath, sizeof(spath), "/v1/vms/%s", vm);
	long long resp_sum = 0;
	for (int i = 0; i < start_runs; i++) {
		unlink(stamp);
		long long t0 = now_ns();
		int st = request(sock, "POST", path, buf, sizeof(buf));
		resp_sum += now_ns() - t0;
		if (st != 202) {
			fprintf(stderr, "api-bench: start answered %d: %s\n", st, buf);
			return 1;
		}
		long long s = stamp_wait(stamp, 5000000000LL);
		if (s < 0) {
			fprintf(stderr, "api-bench: the stand-in VMM never stamped %s\n", stamp);
			return 1;
		}
		t[i] = s - t0;
		/* The real VMM refuses the empty kernel and exits; wait for "stopped". */
		long long until = now_ns() + 5000000000LL;
		while (now_ns() < until) {
			request(sock, "GET", spath, buf, sizeof(buf));
			if (strstr(buf, "\"state\":\"stopped\""))
				break;
			usleep(2000);
		}
		if (!strstr(buf, "\"state\":\"stopped\"")) {
			fprintf(stderr, "api-bench: %s did not stop after its start: %s\n", vm, buf);
			return 1;
		}
	}
	struct stats start = summarize(t, start_runs);

	for (int i = 0; i < start_runs; i++) {
		unlink(stamp);
		char *args[] = { (char *)stamp_vmm, NULL };
		char **env = environ;
		unsetenv("SHOJI_BENCH_VMM");
		pid_t pid;
		long long t0 = now_ns();
		if (posix_spawn(&pid, stamp_vmm, NULL, NULL, args, env) != 0)
			die("posix_spawn");
		long long s = stamp_wait(stamp, 5000000000LL);
		waitpid(pid, NULL, 0);
		if (s < 0)
			die("the plain spawn never stamped");
		t[i] = s - t0;
	}
	struct stats plain = summarize(t, start_runs);

	printf("GET /v1/vms round trip (%d runs, %zu-byte body): median %.0f us, p90 %.0f us, min %.0f us\n",
	       rtt_runs, strlen(canned_body), api.median_us, api.p90_us, api.min_us);
	printf("  same exchange with a trivial server on a Unix socket: median %.0f us (shojid/trivial %.1fx)\n",
	       flo.median_us, api.median_us / flo.median_us);
	printf("  goal < 1000 us: median/goal %.3f -> %s\n", api.median_us / 1000.0,
	       api.median_us < 1000.0 ? "met" : "MISSED");
	printf("start -> exec of the VMM (%d runs): median %.0f us, p90 %.0f us, min %.0f us (start answered in %.0f us on average)\n",
	       start_runs, start.median_us, start.p90_us, start.min_us, resp_sum / 1000.0 / start_runs);
	printf("  plain posix_spawn of the same program: median %.0f us; the daemon adds %.0f us (%.1fx)\n",
	       plain.median_us, start.median_us - plain.median_us, start.median_us / plain.median_us);
	printf("  goal < 10000 us added: added/goal %.3f -> %s\n", (start.median_us - plain.median_us) / 10000.0,
	       start.median_us - plain.median_us < 10000.0 ? "met" : "MISSED");
	return 0;
}
