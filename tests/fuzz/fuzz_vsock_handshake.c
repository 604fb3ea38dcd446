/*
 * libFuzzer target: the host side's CONNECT handshake (src/vmm/vsock-host.c)
 * as a host program meets it. The real listener, I/O thread and device
 * model run as in the VMM, with the guest played by the simulated driver of
 * tests/unit/vsock_sim.h; each input is sent by a host program over a real
 * Unix socket connection to the VM's socket, and its outcome is checked
 * against an independent reading of the protocol (vsock-host.h):
 *
 *   byte 0   flags: bit 0 the guest refuses the connection (RST) instead of
 *            accepting it; bit 1 the bytes go in two writes (split at
 *            byte 1's value), so the line is read across wake-ups
 *   byte 1   where to split
 *   the rest what the host program sends, then it closes its writing side
 *
 * Expected, from the first 32 bytes of what it sends:
 *   - a newline within the first 32 bytes ends the line; the line must be
 *     exactly "CONNECT " and 1 to 31 decimal digits of a value up to
 *     4294967295 (no sign, space, NUL or anything else). Then the guest
 *     hears a REQUEST for that port; accepted, the program reads
 *     "OK <local port>\n" and every byte after the newline reaches the
 *     guest in order, followed by SHUTDOWN(SEND); refused, the program reads
 *     "ERR <why>\n" and EOF. Any other line: "ERR expected CONNECT <port>"
 *     and EOF, and the guest hears nothing;
 *   - 31 bytes without a newline and a 32nd that is not one:
 *     "ERR line too long" and EOF;
 *   - fewer bytes and no newline: EOF without a word.
 * Anything else, or no answer within 5 s, aborts (a finding).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "../unit/vsock_sim.h"
#include "base/log.h"
#include "vmm/iothread.h"
#include "vmm/vsock-host.h"

#define WAIT_MS 5000
#define MAX_SEND 4096

static char dir[128];
static char path[160];
static struct sim sim;
static struct iothread *io;
static struct vsock_host *host;

static _Noreturn void finding(const char *what)
{
	fprintf(stderr, "fuzz_vsock_handshake: %s\n", what);
	abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	log_set_level(LOG_LEVEL_ERROR);
	signal(SIGPIPE, SIG_IGN);
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(dir, sizeof(dir), "%.100s/vsockhs-XXXXXX", tmp);
	if (!mkdtemp(dir))
		finding("no temporary directory");
	snprintf(path, sizeof(path), "%s/v.sock", dir);
	io = iothread_create();
	host = io ? vsock_host_create(path, io) : NULL;
	if (!host)
		finding("cannot create the host side");
	struct vsock_backend be = vsock_host_backend(host);
	if (!sim_init(&sim, &be) || !vsock_host_start(host, sim.vs) || !iothread_start(io))
		finding("cannot start the device");
	return 0;
}

static void sleep_us(long us)
{
	struct timespec ts = { 0, us * 1000L };
	nanosleep(&ts, NULL);
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* ---- the guest ---- */

static void rx_fill(unsigned n)
{
	pthread_mutex_lock(&sim.vd.lock);
	unsigned out = sim_rx_outstanding(&sim);
	pthread_mutex_unlock(&sim.vd.lock);
	if (out < n)
		sim_rx_post(&sim, n - out, 8192);
}

/* The next packet to the guest within `ms`; false if none came. */
static bool rx_next(struct sim_pkt *p, long ms)
{
	long end = now_ms() + ms;
	for (;;) {
		rx_fill(16);
		pthread_mutex_lock(&sim.vd.lock);
		bool got = sim_rx_next(&sim, p);
		pthread_mutex_unlock(&sim.vd.lock);
		if (got)
			return true;
		if (now_ms() >= end)
			return false;
		sleep_us(50);
	}
}

/* ---- the host program ---- */

static int host_connect(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		finding("cannot connect to the VM's socket");
	return fd;
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* refused early: the answer says why */
		p += w;
		n -= (size_t)w;
	}
}

/* Everything the program reads up to EOF (or a reset), at most len - 1 bytes. */
static size_t read_to_eof(int fd, char *buf, size_t len)
{
	size_t got = 0;
	long end = now_ms() + WAIT_MS;
	for (;;) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		long left = end - now_ms();
		/* libFuzzer's -timeout is a SIGALRM every few seconds: an
		 * interrupted wait is not the end of it. */
		int ready = left > 0 ? poll(&pfd, 1, (int)left) : 0;
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready <= 0) {
			buf[got] = '\0';
			fprintf(stderr, "read so far: '%s'\n", buf);
			finding("the host program got no EOF within 5 s");
		}
		ssize_t n = read(fd, buf + got, len - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			break;
		if (n < 0)
			finding("read failed");
		got += (size_t)n;
		if (got == len - 1)
			finding("the host program was sent more than a short line");
	}
	buf[got] = '\0';
	return got;
}

/* ---- the protocol, read independently ---- */

enum outcome { EXPECT_SILENT_EOF, EXPECT_LONG, EXPECT_BAD, EXPECT_CONNECT };

static enum outcome expected(const uint8_t *d, size_t n, uint32_t *port, size_t *rest)
{
	size_t nl = 0;
	while (nl < n && nl < VSOCK_HOST_LINE_MAX && d[nl] != '\n')
		nl++;
	if (nl == VSOCK_HOST_LINE_MAX)
		return EXPECT_LONG; /* 31 bytes kept, the 32nd is not a newline */
	if (nl == n)
		return EXPECT_SILENT_EOF;
	*rest = nl + 1;
	static const char cmd[] = "CONNECT ";
	if (nl <= 8 || memcmp(d, cmd, 8) != 0)
		return EXPECT_BAD;
	uint64_t v = 0;
	for (size_t i = 8; i < nl; i++) {
		if (d[i] < '0' || d[i] > '9')
			return EXPECT_BAD;
		v = v * 10 + (uint64_t)(d[i] - '0');
		if (v > UINT32_MAX)
			return EXPECT_BAD; /* stays too big: at most 23 digits fit the line */
	}
	*port = (uint32_t)v;
	return EXPECT_CONNECT;
}

static void expect_error_line(int fd, const char *why)
{
	char got[256], want[96];
	read_to_eof(fd, got, sizeof(got));
	snprintf(want, sizeof(want), "ERR %s\n", why);
	if (strcmp(got, want) != 0) {
		fprintf(stderr, "expected '%s', the host program read '%s'\n", want, got);
		finding("wrong answer to a refused line");
	}
}

/* The guest heard nothing it should not have (checked before each input). */
static void guest_hears_nothing(void)
{
	struct sim_pkt p;
	if (rx_next(&p, 0)) {
		fprintf(stderr, "op %u to port %u\n", p.op, p.dst_port);
		finding("the guest got a packet nobody asked for");
	}
}

static void run_connect(int fd, uint32_t port, const uint8_t *rest, size_t rest_len, bool refuse)
{
	struct sim_pkt p;
	if (!rx_next(&p, WAIT_MS) || p.op != VSOCK_OP_REQUEST || p.dst_port != port) {
		fprintf(stderr, "port %u\n", port);
		finding("no REQUEST for the port the line named");
	}
	uint32_t local = p.src_port;
	if (refuse) {
		sim_tx(&sim, port, local, VSOCK_OP_RST, 0, 0, 0, NULL, 0);
		expect_error_line(fd, VSOCK_WHY_REFUSED);
		return;
	}
	sim_tx(&sim, port, local, VSOCK_OP_RESPONSE, 0, 1 << 20, 0, NULL, 0);
	static uint8_t got[MAX_SEND];
	size_t have = 0;
	bool shut = false;
	while (!shut) {
		if (!rx_next(&p, WAIT_MS))
			finding("the stream after the line never reached the guest, or no SHUTDOWN");
		if (p.dst_port != port || p.src_port != local)
			finding("a packet for another connection");
		if (p.op == VSOCK_OP_RW) {
			if (p.len > sizeof(got) - have || memcmp(p.data, rest + have, p.len) != 0)
				finding("the guest got other bytes than those after the line");
			memcpy(got + have, p.data, p.len);
			have += p.len;
		} else if (p.op == VSOCK_OP_SHUTDOWN) {
			shut = p.flags & VSOCK_SHUTDOWN_SEND;
		} else if (p.op != VSOCK_OP_CREDIT_UPDATE && p.op != VSOCK_OP_CREDIT_REQUEST) {
			fprintf(stderr, "op %u\n", p.op);
			finding("unexpected packet in an open connection");
		}
	}
	if (have != rest_len)
		finding("bytes after the line were lost");
	sim_tx(&sim, port, local, VSOCK_OP_RST, 0, 0, 0, NULL, 0);
	char line[256], want[32];
	read_to_eof(fd, line, sizeof(line));
	snprintf(want, sizeof(want), "OK %u\n", local);
	if (strcmp(line, want) != 0) {
		fprintf(stderr, "expected '%s', read '%s'\n", want, line);
		finding("wrong answer to an accepted CONNECT");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2 || size - 2 > MAX_SEND)
		return -1;
	uint8_t flags = data[0], split = data[1];
	const uint8_t *d = data + 2;
	size_t n = size - 2;
	guest_hears_nothing();
	int fd = host_connect();
	if ((flags & 2) && split < n) {
		send_all(fd, d, split);
		sleep_us(200);
		send_all(fd, d + split, n - split);
	} else {
		send_all(fd, d, n);
	}
	shutdown(fd, SHUT_WR);
	uint32_t port = 0;
	size_t rest = 0;
	char buf[256];
	switch (expected(d, n, &port, &rest)) {
	case EXPECT_SILENT_EOF:
		if (read_to_eof(fd, buf, sizeof(buf)) != 0) {
			fprintf(stderr, "read '%s'\n", buf);
			finding("a program that sent no line was answered");
		}
		break;
	case EXPECT_LONG:
		expect_error_line(fd, VSOCK_HOST_ERR_LONG_LINE);
		break;
	case EXPECT_BAD:
		expect_error_line(fd, VSOCK_HOST_ERR_NOT_CONNECT);
		break;
	case EXPECT_CONNECT:
		run_connect(fd, port, d + rest, n - rest, flags & 1);
		break;
	}
	close(fd);
	return 0;
}
