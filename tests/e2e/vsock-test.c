/*
 * vsock-test: the end-to-end program for virtio-vsock, built static so it
 * runs as is in the guest's busybox initramfs and on the host.
 *
 *   vsock-test server PORT                 guest: echo server on vsock PORT
 *   vsock-test server --unix PATH          host: echo server on a Unix socket
 *                                          (PATH is the VMM's SOCKET_PORT)
 *   vsock-test client CID PORT N BYTES     guest: N parallel connections to
 *                                          CID:PORT, BYTES each, echoed back
 *   vsock-test client --unix SOCKET PORT N BYTES
 *                                          host: the same through the VMM's
 *                                          socket ("CONNECT PORT\n")
 *   vsock-test source PORT                 guest: writes to every connection
 *                                          on PORT until it fails
 *   vsock-test stall --unix SOCKET PORT SECONDS
 *                                          host: connects and reads nothing
 *   vsock-test hold --unix SOCKET PORT N SECONDS
 *                                          host: N connections to an echo
 *                                          server, then waits for EOF on each
 *   vsock-test wait PORT SECONDS           guest: returns once a peer connects
 *                                          to vsock PORT (the host's "go")
 *   vsock-test knock --unix SOCKET PORT    host: connects to PORT and closes
 *
 * The client checks every byte that comes back (a pattern per connection
 * and offset), prints "PASS ..." or "FAIL ..." and exits 0 or 1. Every
 * mode has a deadline (alarm), so a hang is a failure, never a stuck test.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEADLINE_S 600

static uint8_t pattern(unsigned conn, uint64_t off)
{
	uint64_t x = (off + 1) * 0x9e3779b97f4a7c15ull ^ (uint64_t)conn * 0xbf58476d1ce4e5b9ull;
	return (uint8_t)(x >> 29);
}

static _Noreturn void die(const char *what)
{
	printf("FAIL %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static int parse_int(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < 0) {
		fprintf(stderr, "vsock-test: bad number '%s'\n", s);
		exit(2);
	}
	return (int)v;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- connecting ---- */

static int unix_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	return fd;
}

/* The VMM's handshake: "CONNECT PORT\n", then "OK <n>\n". */
static int vmm_connect(const char *sock, int port)
{
	int fd = unix_connect(sock);
	if (fd < 0)
		return -1;
	char line[64];
	int n = snprintf(line, sizeof(line), "CONNECT %d\n", port);
	if (write_all(fd, line, (size_t)n) < 0)
		return close(fd), -1;
	size_t len = 0;
	while (len < sizeof(line) - 1) {
		ssize_t r = read(fd, line + len, 1);
		if (r <= 0)
			return close(fd), -1;
		if (line[len++] == '\n')
			break;
	}
	line[len] = '\0';
	if (strncmp(line, "OK ", 3) != 0)
		return close(fd), -1;
	return fd;
}

static int vsock_connect(unsigned cid, int port)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = (unsigned)port };
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	return fd;
}

static int listen_on(const char *unix_path, int vsock_port)
{
	int fd;
	if (unix_path) {
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		snprintf(a.sun_path, sizeof(a.sun_path), "%s", unix_path);
		unlink(unix_path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
			die("bind");
	} else {
		struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
					 .svm_port = (unsigned)vsock_port };
		fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
			die("bind");
	}
	if (listen(fd, 1024) < 0)
		die("listen");
	return fd;
}

/* ---- servers ---- */

static void *echo_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	static __thread uint8_t buf[65536];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || write_all(fd, buf, (size_t)n) < 0)
			break;
	}
	shutdown(fd, SHUT_WR);
	close(fd);
	return NULL;
}

static void *source_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	static __thread uint8_t buf[65536];
	while (write_all(fd, buf, sizeof(buf)) == 0)
		;
	close(fd);
	return NULL;
}

static _Noreturn void serve(int lfd, void *(*fn)(void *))
{
	printf("READY\n");
	fflush(stdout);
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			die("accept");
		}
		pthread_t t;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&attr, 256 * 1024);
		if (pthread_create(&t, &attr, fn, (void *)(intptr_t)fd) != 0)
			close(fd);
		pthread_attr_destroy(&attr);
	}
}

/* ---- the client ---- */

struct conn {
	unsigned index;
	int fd;
	uint64_t bytes;
	int ok;          /* 1 checked, 0 failed */
	uint32_t sum;    /* FNV-1a of what came back */
	char why[96];
};

static void *conn_writer(void *arg)
{
	struct conn *c = arg;
	uint8_t buf[16384];
	for (uint64_t off = 0; off < c->bytes;) {
		size_t k = c->bytes - off < sizeof(buf) ? (size_t)(c->bytes - off) : sizeof(buf);
		for (size_t i = 0; i < k; i++)
			buf[i] = pattern(c->index, off + i);
		if (write_all(c->fd, buf, k) < 0) {
			snprintf(c->why, sizeof(c->why), "write at %llu: %s", (unsigned long long)off,
				 strerror(errno));
			break;
		}
		off += k;
	}
	shutdown(c->fd, SHUT_WR);
	return NULL;
}

static void *conn_run(void *arg)
{
	struct conn *c = arg;
	pthread_t w;
	if (pthread_create(&w, NULL, conn_writer, c) != 0) {
		snprintf(c->why, sizeof(c->why), "cannot start a writer");
		return NULL;
	}
	uint8_t buf[16384];
	uint64_t got = 0;
	uint32_t sum = 2166136261u;
	int bad = 0;
	for (;;) {
		ssize_t n = read(c->fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			if (!bad && buf[i] != pattern(c->index, got + (uint64_t)i)) {
				bad = 1;
				snprintf(c->why, sizeof(c->why), "byte %llu differs",
					 (unsigned long long)(got + (uint64_t)i));
			}
			sum = (sum ^ buf[i]) * 16777619u;
		}
		got += (uint64_t)n;
	}
	pthread_join(w, NULL);
	if (!bad && got != c->bytes)
		snprintf(c->why, sizeof(c->why), "%llu of %llu bytes came back",
			 (unsigned long long)got, (unsigned long long)c->bytes);
	c->sum = sum;
	c->ok = !bad && got == c->bytes && c->why[0] == '\0';
	close(c->fd);
	return NULL;
}

static uint32_t expected_sum(unsigned index, uint64_t bytes)
{
	uint32_t sum = 2166136261u;
	for (uint64_t off = 0; off < bytes; off++)
		sum = (sum ^ pattern(index, off)) * 16777619u;
	return sum;
}

static int client(const char *sock, unsigned cid, int port, int n, uint64_t bytes)
{
	struct conn *c = calloc((size_t)n, sizeof(*c));
	pthread_t *t = calloc((size_t)n, sizeof(*t));
	for (int i = 0; i < n; i++) {
		c[i] = (struct conn){ .index = (unsigned)i, .bytes = bytes };
		c[i].fd = sock ? vmm_connect(sock, port) : vsock_connect(cid, port);
		if (c[i].fd < 0) {
			printf("FAIL connection %d of %d: cannot connect: %s\n", i, n, strerror(errno));
			return 1;
		}
	}
	for (int i = 0; i < n; i++)
		if (pthread_create(&t[i], NULL, conn_run, &c[i]) != 0)
			die("pthread_create");
	int failed = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		if (c[i].ok && c[i].sum != expected_sum(c[i].index, bytes))
			c[i].ok = 0, snprintf(c[i].why, sizeof(c[i].why), "checksum differs");
		if (!c[i].ok) {
			printf("FAIL connection %d: %s\n", i, c[i].why);
			failed++;
		}
	}
	if (!failed)
		printf("PASS %d connections x %llu bytes echoed, checksums exact\n", n,
		       (unsigned long long)bytes);
	return failed ? 1 : 0;
}

/* ---- the host-side helpers for the bound and reboot checks ---- */

static int stall(const char *sock, int port, int seconds)
{
	int fd = vmm_connect(sock, port);
	if (fd < 0)
		die("connect");
	printf("STALLING\n");
	fflush(stdout);
	sleep((unsigned)seconds);
	close(fd);
	printf("PASS stalled %d s\n", seconds);
	return 0;
}

static int hold(const char *sock, int port, int n, int seconds)
{
	struct pollfd *p = calloc((size_t)n, sizeof(*p));
	for (int i = 0; i < n; i++) {
		p[i] = (struct pollfd){ vmm_connect(sock, port), POLLIN, 0 };
		if (p[i].fd < 0)
			die("connect");
	}
	printf("HOLDING %d\n", n);
	fflush(stdout);
	int eofs = 0;
	time_t end = time(NULL) + seconds;
	while (eofs < n && time(NULL) < end) {
		if (poll(p, (nfds_t)n, 1000) <= 0)
			continue;
		for (int i = 0; i < n; i++) {
			if (p[i].fd < 0 || !p[i].revents)
				continue;
			char buf[4096];
			ssize_t r = read(p[i].fd, buf, sizeof(buf));
			if (r <= 0) {
				close(p[i].fd);
				p[i].fd = -1;
				eofs++;
			}
		}
	}
	printf("%s %d of %d connections saw EOF\n", eofs == n ? "PASS" : "FAIL", eofs, n);
	return eofs == n ? 0 : 1;
}

/* ---- sequencing: the host tells the guest when it is done ---- */

static int wait_for_peer(int port, int seconds)
{
	int lfd = listen_on(NULL, port);
	struct pollfd p = { lfd, POLLIN, 0 };
	int n = poll(&p, 1, seconds * 1000);
	if (n <= 0) {
		printf("FAIL nobody connected to port %d within %d s\n", port, seconds);
		return 1;
	}
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		die("accept");
	close(fd);
	close(lfd);
	printf("PASS a peer connected to port %d\n", port);
	return 0;
}

static int knock(const char *sock, int port)
{
	int fd = vmm_connect(sock, port);
	if (fd < 0)
		die("connect");
	close(fd);
	printf("PASS knocked on port %d\n", port);
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: vsock-test server PORT | server --unix PATH\n"
			"       vsock-test client CID PORT N BYTES | client --unix SOCKET PORT N BYTES\n"
			"       vsock-test source PORT\n"
			"       vsock-test stall --unix SOCKET PORT SECONDS\n"
			"       vsock-test hold --unix SOCKET PORT N SECONDS\n"
			"       vsock-test wait PORT SECONDS | knock --unix SOCKET PORT\n");
	return 2;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	alarm(DEADLINE_S);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 3)
		return usage();
	const char *mode = argv[1];
	int unix_mode = strcmp(argv[2], "--unix") == 0;
	char **a = argv + 2 + unix_mode;
	int na = argc - 2 - unix_mode;
	if (strcmp(mode, "server") == 0 && na == 1)
		serve(listen_on(unix_mode ? a[0] : NULL, unix_mode ? 0 : parse_int(a[0])), echo_conn);
	if (strcmp(mode, "source") == 0 && na == 1 && !unix_mode)
		serve(listen_on(NULL, parse_int(a[0])), source_conn);
	if (strcmp(mode, "client") == 0 && unix_mode && na == 4)
		return client(a[0], 0, parse_int(a[1]), parse_int(a[2]), (uint64_t)parse_int(a[3]));
	if (strcmp(mode, "client") == 0 && !unix_mode && na == 4)
		return client(NULL, (unsigned)parse_int(a[0]), parse_int(a[1]), parse_int(a[2]),
			      (uint64_t)parse_int(a[3]));
	if (strcmp(mode, "stall") == 0 && unix_mode && na == 3)
		return stall(a[0], parse_int(a[1]), parse_int(a[2]));
	if (strcmp(mode, "hold") == 0 && unix_mode && na == 4)
		return hold(a[0], parse_int(a[1]), parse_int(a[2]), parse_int(a[3]));
	if (strcmp(mode, "wait") == 0 && !unix_mode && na == 2)
		return wait_for_peer(parse_int(a[0]), parse_int(a[1]));
	if (strcmp(mode, "knock") == 0 && unix_mode && na == 2)
		return knock(a[0], parse_int(a[1]));
	return usage();
}
