/*
 * vmm/vsock-host natively: a real Unix socket PATH in a temporary
 * directory, the real I/O thread and the real device model, with the
 * guest played by the simulated driver of vsock_sim.h. Covers the
 * CONNECT/OK handshake (bytes after the newline kept), bad commands, no
 * guest listener, the PATH_P listener and its absence, EOF for every host
 * peer on a device reset, 1000 concurrent connections, and back-pressure
 * with bounded buffering in both directions.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fd_starve.h"

#include "vmm/iothread.h"
#include "vmm/vsock-host.h"
#include "vsock_sim.h"

#define GUEST_PORT 5000u

static char dir[64];
static char path[128];
static struct sim sim;
static struct iothread *io;
static struct vsock_host *host;

/* ---- set-up ---- */

static int setup(void **state)
{
	(void)state;
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(dir, sizeof(dir), "%.40s/vsock-XXXXXX", tmp);
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/v.sock", dir);
	io = iothread_create();
	host = io ? vsock_host_create(path, io) : NULL;
	if (!host)
		return -1;
	struct vsock_backend be = vsock_host_backend(host);
	if (!sim_init(&sim, &be) || !vsock_host_start(host, sim.vs) || !iothread_start(io))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	iothread_destroy(io);
	vsock_host_detach_io(host);
	sim_fini(&sim);
	vsock_host_destroy(host);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void msleep(unsigned ms)
{
	struct timespec ts = { 0, (long)ms * 1000000L };
	nanosleep(&ts, NULL);
}

/* ---- the guest side, polled (the I/O thread fills the rx queue) ---- */

static bool rx_poll(struct sim_pkt *p, unsigned timeout_ms)
{
	for (unsigned t = 0; t <= timeout_ms; t++) {
		pthread_mutex_lock(&sim.vd.lock);
		bool got = sim_rx_next(&sim, p);
		pthread_mutex_unlock(&sim.vd.lock);
		if (got)
			return true;
		msleep(1);
	}
	return false;
}

static struct sim_pkt rx_expect(uint16_t op)
{
	struct sim_pkt p;
	assert_true(rx_poll(&p, 5000));
	assert_int_equal(p.op, op);
	return p;
}

/* Keeps at least n rx buffers posted. */
static void rx_fill(unsigned n)
{
	pthread_mutex_lock(&sim.vd.lock);
	unsigned out = sim_rx_outstanding(&sim);
	pthread_mutex_unlock(&sim.vd.lock);
	if (out < n)
		sim_rx_post(&sim, n - out, 4096);
}

/* ---- the host side ---- */

static int unix_connect(const char *p)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%.90s", p);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static int unix_listen(uint32_t port)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%.90s_%u", path, port);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 2048), 0);
	return fd;
}

/* Reads exactly len bytes (or up to EOF) within 5 s; returns the count. */
static size_t read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		if (poll(&pfd, 1, 5000) <= 0)
			break;
		ssize_t n = read(fd, (char *)buf + got, len - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

/* True when the peer sees EOF (or a reset) within 5 s. */
static bool sees_eof(int fd)
{
	char c;
	struct pollfd pfd = { fd, POLLIN, 0 };
	if (poll(&pfd, 1, 5000) <= 0)
		return false;
	ssize_t n = read(fd, &c, 1);
	return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* One line (without its newline) within 5 s; "" at EOF or timeout. */
static void read_line(int fd, char *out, size_t len)
{
	size_t n = 0;
	while (n + 1 < len) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		if (poll(&pfd, 1, 5000) <= 0 || read(fd, out + n, 1) != 1 || out[n] == '\n')
			break;
		n++;
	}
	out[n] = '\0';
}

/* The host program reads "ERR <why>", then EOF. */
static void expect_error(int fd, const char *why)
{
	char line[96], want[96];
	read_line(fd, line, sizeof(line));
	snprintf(want, sizeof(want), "ERR %s", why);
	assert_string_equal(line, want);
	assert_true(sees_eof(fd));
}

/* A host program's connection to the guest's port, through the handshake. */
static int host_to_guest(uint32_t port, uint32_t *local_port, const char *extra)
{
	int fd = unix_connect(path);
	char cmd[64];
	int n = snprintf(cmd, sizeof(cmd), "CONNECT %u\n%s", port, extra);
	assert_int_equal(write(fd, cmd, (size_t)n), n);
	rx_fill(4);
	struct sim_pkt p = rx_expect(VSOCK_OP_REQUEST);
	assert_int_equal(p.dst_port, port);
	*local_port = p.src_port;
	sim_tx(&sim, port, p.src_port, VSOCK_OP_RESPONSE, 0, 1 << 20, 0, NULL, 0);
	char ok[32] = { 0 };
	int m = snprintf(cmd, sizeof(cmd), "OK %u\n", p.src_port);
	assert_int_equal(read_full(fd, ok, (size_t)m), m);
	assert_string_equal(ok, cmd);
	return fd;
}

/* ---- tests ---- */

static void test_socket_is_private(void **state)
{
	(void)state;
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_connect_ok_and_data(void **state)
{
	(void)state;
	uint32_t local;
	/* Bytes written right after the command are the stream's first. */
	int fd = host_to_guest(GUEST_PORT, &local, "hello");
	rx_fill(4);
	struct sim_pkt p = rx_expect(VSOCK_OP_RW);
	assert_int_equal(p.len, 5);
	assert_memory_equal(p.data, "hello", 5);
	assert_int_equal(p.src_port, local);
	sim_tx(&sim, GUEST_PORT, local, VSOCK_OP_RW, 0, 1 << 20, 5, "world", 5);
	char buf[8] = { 0 };
	assert_int_equal(read_full(fd, buf, 5), 5);
	assert_string_equal(buf, "world");
	/* The host program closes: the guest gets SHUTDOWN(SEND). */
	close(fd);
	p = rx_expect(VSOCK_OP_SHUTDOWN);
	assert_int_equal(p.flags, VSOCK_SHUTDOWN_SEND);
}

static void test_bad_commands_refused(void **state)
{
	(void)state;
	const char *bad[] = { "HELLO\n", "CONNECT\n", "CONNECT x\n", "CONNECT 99999999999\n",
			      "CONNECT -1\n", "connect 5\n", "CONNECT 5 \n", "\n" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		int fd = unix_connect(path);
		assert_int_equal(write(fd, bad[i], strlen(bad[i])), (ssize_t)strlen(bad[i]));
		expect_error(fd, VSOCK_HOST_ERR_NOT_CONNECT);
		close(fd);
	}
	/* A NUL inside the line ends no command early (the fuzzer's finding). */
	static const char nul[] = "CONNECT 5\0junk\n";
	int nfd = unix_connect(path);
	assert_int_equal(write(nfd, nul, sizeof(nul) - 1), (ssize_t)(sizeof(nul) - 1));
	expect_error(nfd, VSOCK_HOST_ERR_NOT_CONNECT);
	close(nfd);
	/* 31 bytes without a newline are too many, whatever follows. */
	const char *lng = "CONNECT 123456789012345678901234567890\n";
	int fd = unix_connect(path);
	assert_int_equal(write(fd, lng, strlen(lng)), (ssize_t)strlen(lng));
	expect_error(fd, VSOCK_HOST_ERR_LONG_LINE);
	close(fd);
	rx_fill(4);
	struct sim_pkt p;
	assert_false(rx_poll(&p, 50)); /* the guest heard nothing */
}

/* The line parser alone, at its edges. */
static void test_parse_connect(void **state)
{
	(void)state;
	static const struct {
		const char *line;
		size_t len;
		bool ok;
		uint32_t port;
	} cases[] = {
		{ "CONNECT 5", 9, true, 5 },
		{ "CONNECT 0", 9, true, 0 },
		{ "CONNECT 007", 11, true, 7 },
		{ "CONNECT 4294967295", 18, true, 4294967295u },
		{ "CONNECT 4294967296", 18, false, 0 },
		{ "CONNECT 99999999999999999999999", 31, false, 0 },
		{ "CONNECT ", 8, false, 0 },
		{ "CONNECT", 7, false, 0 },
		{ "", 0, false, 0 },
		{ "CONNECT +5", 10, false, 0 },
		{ "CONNECT -1", 10, false, 0 },
		{ "CONNECT 5 ", 10, false, 0 },
		{ "CONNECT  5", 10, false, 0 },
		{ "CONNECT 5\r", 10, false, 0 },
		{ "CONNECT 0x10", 12, false, 0 },
		{ "connect 5", 9, false, 0 },
		{ "CONNECT 5\0junk", 14, false, 0 },
		{ "CONNECT \0", 9, false, 0 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uint32_t port = 12345;
		bool ok = vsock_host_parse_connect(cases[i].line, cases[i].len, &port);
		if (ok != cases[i].ok)
			fail_msg("case %zu: '%s' (%zu bytes) %s", i, cases[i].line, cases[i].len,
				 ok ? "accepted" : "refused");
		if (ok)
			assert_int_equal(port, cases[i].port);
	}
}

static void test_no_guest_listener(void **state)
{
	(void)state;
	int fd = unix_connect(path);
	assert_int_equal(write(fd, "CONNECT 7\n", 10), 10);
	rx_fill(4);
	struct sim_pkt p = rx_expect(VSOCK_OP_REQUEST);
	sim_tx(&sim, 7, p.src_port, VSOCK_OP_RST, 0, 0, 0, NULL, 0);
	expect_error(fd, VSOCK_WHY_REFUSED);
	close(fd);
}

static void test_guest_breaks_handshake(void **state)
{
	(void)state;
	/* The guest answers the REQUEST with data, not RESPONSE: the device resets it. */
	int fd = unix_connect(path);
	assert_int_equal(write(fd, "CONNECT 7\n", 10), 10);
	rx_fill(4);
	struct sim_pkt p = rx_expect(VSOCK_OP_REQUEST);
	sim_tx(&sim, 7, p.src_port, VSOCK_OP_RW, 0, 1 << 20, 0, "x", 1);
	expect_error(fd, VSOCK_WHY_RESET);
	rx_expect(VSOCK_OP_RST);
	close(fd);
}

static void test_guest_to_host_listener(void **state)
{
	(void)state;
	int lfd = unix_listen(6000);
	rx_fill(4);
	sim_tx(&sim, 40000, 6000, VSOCK_OP_REQUEST, 0, 1 << 20, 0, NULL, 0);
	struct sim_pkt p = rx_expect(VSOCK_OP_RESPONSE);
	assert_int_equal(p.dst_port, 40000);
	int fd = accept(lfd, NULL, NULL);
	assert_true(fd >= 0);
	sim_tx(&sim, 40000, 6000, VSOCK_OP_RW, 0, 1 << 20, 0, "ping", 4);
	char buf[8] = { 0 };
	assert_int_equal(read_full(fd, buf, 4), 4);
	assert_string_equal(buf, "ping");
	assert_int_equal(write(fd, "pong", 4), 4);
	p = rx_expect(VSOCK_OP_RW);
	assert_memory_equal(p.data, "pong", 4);
	/* The guest half-closes: the host program sees EOF, and can still answer. */
	sim_tx(&sim, 40000, 6000, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_SEND, 1 << 20, 4, NULL, 0);
	assert_true(sees_eof(fd));
	assert_int_equal(write(fd, "last", 4), 4);
	rx_fill(4);
	p = rx_expect(VSOCK_OP_RW);
	assert_memory_equal(p.data, "last", 4);
	close(fd);
	rx_expect(VSOCK_OP_RST); /* both directions done */
	close(lfd);
}

static void test_guest_to_host_no_listener(void **state)
{
	(void)state;
	rx_fill(4);
	sim_tx(&sim, 40001, 6001, VSOCK_OP_REQUEST, 0, 1 << 20, 0, NULL, 0);
	struct sim_pkt p = rx_expect(VSOCK_OP_RST);
	assert_int_equal(p.dst_port, 40001);
}

static void test_guest_to_host_waits_for_slow_accept(void **state)
{
	(void)state;
	/* A host program with the smallest backlog (one connection) that is slow to accept. */
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%.90s_%u", path, 6006u);
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(lfd, 0), 0);
	rx_fill(8);
	sim_tx(&sim, 43000, 6006, VSOCK_OP_REQUEST, 0, 1 << 20, 0, NULL, 0);
	rx_expect(VSOCK_OP_RESPONSE); /* the backlog's one place */
	/* The backlog is full: the next two wait, neither refused nor answered. */
	sim_tx(&sim, 43001, 6006, VSOCK_OP_REQUEST, 0, 1 << 20, 0, NULL, 0);
	sim_tx(&sim, 43002, 6006, VSOCK_OP_REQUEST, 0, 1 << 20, 0, NULL, 0);
	struct sim_pkt p;
	assert_false(rx_poll(&p, 300));
	/* The guest gives up on one of them. */
	sim_tx(&sim, 43002, 6006, VSOCK_OP_RST, 0, 1 << 20, 0, NULL, 0);
	/* The host program accepts: the other one is connected. */
	int first = accept(lfd, NULL, NULL);
	assert_true(first >= 0);
	p = rx_expect(VSOCK_OP_RESPONSE);
	assert_int_equal(p.dst_port, 43001);
	int second = accept(lfd, NULL, NULL);
	assert_true(second >= 0);
	sim_tx(&sim, 43001, 6006, VSOCK_OP_RW, 0, 1 << 20, 0, "hi", 2);
	char buf[4] = { 0 };
	assert_int_equal(read_full(second, buf, 2), 2);
	assert_string_equal(buf, "hi");
	assert_false(rx_poll(&p, 100)); /* nothing for the one the guest gave up on */
	struct virtio_vsock_stats st;
	virtio_vsock_get_stats(sim.vs, &st);
	assert_int_equal(st.conns, 2);
	close(first);
	close(second);
	close(lfd);
}

static void test_reset_gives_eof(void **state)
{
	(void)state;
	int lfd = unix_listen(6002);
	int fds[6];
	for (int i = 0; i < 3; i++) {
		uint32_t local;
		fds[i] = host_to_guest(GUEST_PORT + (uint32_t)i, &local, "");
		rx_fill(4);
		sim_tx(&sim, 41000 + (uint32_t)i, 6002, VSOCK_OP_REQUEST, 0, 1 << 20, 0, NULL, 0);
		rx_expect(VSOCK_OP_RESPONSE);
		fds[3 + i] = accept(lfd, NULL, NULL);
		assert_true(fds[3 + i] >= 0);
	}
	/* One more host program waits for the guest's answer when the driver goes. */
	int waiting = unix_connect(path);
	assert_int_equal(write(waiting, "CONNECT 5009\n", 13), 13);
	rx_expect(VSOCK_OP_REQUEST);
	sim_reset(&sim);
	for (int i = 0; i < 6; i++) {
		assert_true(sees_eof(fds[i]));
		close(fds[i]);
	}
	expect_error(waiting, VSOCK_WHY_NO_DRIVER);
	close(waiting);
	struct virtio_vsock_stats st;
	virtio_vsock_get_stats(sim.vs, &st);
	assert_int_equal(st.conns, 0);
	/* Without a driver, a host program is refused at once, and told why. */
	int fd = unix_connect(path);
	assert_int_equal(write(fd, "CONNECT 1\n", 10), 10);
	expect_error(fd, VSOCK_WHY_NO_DRIVER);
	close(fd);
	close(lfd);
}

static void raise_fd_limit(void)
{
	struct rlimit rl;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < 4096) {
		rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void test_thousand_connections(void **state)
{
	(void)state;
	raise_fd_limit();
	enum { N = 1000 };
	int lfd = unix_listen(6003);
	static int fds[N];
	for (uint32_t i = 0; i < N; i++) {
		rx_fill(8);
		sim_tx(&sim, 20000 + i, 6003, VSOCK_OP_REQUEST, 0, 1 << 20, 0, NULL, 0);
		struct sim_pkt p = rx_expect(VSOCK_OP_RESPONSE);
		assert_int_equal(p.dst_port, 20000 + i);
		fds[i] = accept(lfd, NULL, NULL);
		assert_true(fds[i] >= 0);
	}
	struct virtio_vsock_stats st;
	virtio_vsock_get_stats(sim.vs, &st);
	assert_int_equal(st.conns, N);
	/* Every connection carries its own bytes, both ways. */
	for (uint32_t i = 0; i < N; i++) {
		uint32_t v = i;
		sim_tx(&sim, 20000 + i, 6003, VSOCK_OP_RW, 0, 1 << 20, 0, &v, 4);
	}
	for (uint32_t i = 0; i < N; i++) {
		uint32_t v = 0;
		assert_int_equal(read_full(fds[i], &v, 4), 4);
		assert_int_equal(v, i);
		assert_int_equal(write(fds[i], &v, 4), 4);
	}
	static bool seen[N];
	for (uint32_t k = 0; k < N; k++) {
		rx_fill(64);
		struct sim_pkt p = rx_expect(VSOCK_OP_RW);
		uint32_t v;
		memcpy(&v, p.data, 4);
		assert_int_equal(p.len, 4);
		assert_int_equal(p.dst_port, 20000 + v);
		assert_false(seen[v]);
		seen[v] = true;
	}
	for (uint32_t i = 0; i < N; i++)
		close(fds[i]);
	close(lfd);
}

static void test_slow_host_reader_bounded(void **state)
{
	(void)state;
	int lfd = unix_listen(6004);
	rx_fill(8);
	uint32_t buf_alloc = VSOCK_CONN_BUF, fwd = 0, sent = 0;
	sim_tx(&sim, 42000, 6004, VSOCK_OP_REQUEST, 0, 1 << 20, 0, NULL, 0);
	struct sim_pkt p = rx_expect(VSOCK_OP_RESPONSE);
	buf_alloc = p.buf_alloc;
	int fd = accept(lfd, NULL, NULL);
	/* The guest sends what its credit allows, the host reads nothing. */
	static uint8_t chunk[16384];
	for (int round = 0; round < 200; round++) {
		uint32_t credit = buf_alloc - (sent - fwd);
		if (credit == 0) {
			struct sim_pkt c;
			if (!rx_poll(&c, 20))
				break; /* the device holds the rest: the guest waits */
			fwd = c.fwd_cnt;
			continue;
		}
		uint32_t k = credit < sizeof(chunk) ? credit : sizeof(chunk);
		memset(chunk, (uint8_t)sent, k);
		sim_tx(&sim, 42000, 6004, VSOCK_OP_RW, 0, 1 << 20, 0, chunk, k);
		sent += k;
		rx_fill(8);
	}
	struct virtio_vsock_stats st;
	virtio_vsock_get_stats(sim.vs, &st);
	assert_true(st.buffered <= VSOCK_CONN_BUF);
	assert_true(st.buffered > 0);   /* the socket is full and the device holds the rest */
	/* The reader catches up: everything arrives, the buffer empties. */
	static uint8_t all[8 << 20];
	assert_true(sent <= sizeof(all));
	assert_int_equal(read_full(fd, all, sent), sent);
	for (uint32_t i = 0; i < sent; i += sizeof(chunk))
		assert_int_equal(all[i], (uint8_t)i);
	for (int t = 0; t < 500; t++) {
		virtio_vsock_get_stats(sim.vs, &st);
		if (st.buffered == 0)
			break;
		msleep(2);
	}
	assert_int_equal(st.buffered, 0);
	close(fd);
	close(lfd);
}

static void test_slow_guest_reader_backpressure(void **state)
{
	(void)state;
	uint32_t local;
	int fd = host_to_guest(GUEST_PORT, &local, "");
	/* The guest said buf_alloc 1 MiB at RESPONSE and never reads (never
	 * raises fwd_cnt): the host writer must block once 1 MiB and the socket
	 * buffers are full, with nothing buffered in the VMM. */
	assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	static uint8_t chunk[65536];
	size_t written = 0;
	for (int t = 0; t < 2000; t++) {
		ssize_t n = write(fd, chunk, sizeof(chunk));
		if (n > 0) {
			written += (size_t)n;
		} else {
			rx_fill(256);
			msleep(1);
			struct pollfd pfd = { fd, POLLOUT, 0 };
			if (t > 100 && poll(&pfd, 1, 50) == 0)
				break;
		}
	}
	assert_true(written < (16u << 20)); /* it did block */
	uint64_t delivered = 0;
	struct sim_pkt p;
	for (;;) {
		rx_fill(256);
		if (!rx_poll(&p, 50))
			break;
		delivered += p.op == VSOCK_OP_RW ? p.len : 0;
	}
	assert_int_equal(delivered, 1u << 20); /* exactly the credit */
	struct virtio_vsock_stats st;
	virtio_vsock_get_stats(sim.vs, &st);
	assert_int_equal(st.buffered, 0);
	close(fd);
}

/* True when nothing arrives on fd (no line, no EOF) for ms milliseconds. */
static bool stays_quiet(int fd, int ms)
{
	struct pollfd pfd = { fd, POLLIN, 0 };
	return poll(&pfd, 1, ms) == 0;
}

static void test_handshake_limit_holds_not_drops(void **state)
{
	(void)state;
	/* Silent host programs fill the handshakes; the next one waits in the
	 * backlog (not closed), and is served once a slot frees. */
	int fds[VSOCK_HOST_MAX_HANDSHAKE + 1];
	for (int i = 0; i < VSOCK_HOST_MAX_HANDSHAKE; i++)
		fds[i] = unix_connect(path);
	msleep(100); /* the I/O thread takes them all */
	int extra = unix_connect(path);
	assert_int_equal(write(extra, "CONNECT 5000\n", 13), 13);
	assert_true(stays_quiet(extra, 300));
	rx_fill(4);
	struct sim_pkt p;
	assert_false(rx_poll(&p, 50)); /* its line was not read: the guest heard nothing */
	close(fds[0]);
	p = rx_expect(VSOCK_OP_REQUEST);
	assert_int_equal(p.dst_port, 5000);
	sim_tx(&sim, 5000, p.src_port, VSOCK_OP_RESPONSE, 0, 1 << 20, 0, NULL, 0);
	char line[64], want[64];
	read_line(extra, line, sizeof(line));
	snprintf(want, sizeof(want), "OK %u", p.src_port);
	assert_string_equal(line, want);
	close(extra);
	for (int i = 1; i < VSOCK_HOST_MAX_HANDSHAKE; i++)
		close(fds[i]);
}

static void test_silent_host_program_refused_in_time(void **state)
{
	(void)state;
	/* Half a line, then nothing: the place is given back, with a reason. */
	int fd = unix_connect(path);
	assert_int_equal(write(fd, "CONN", 4), 4);
	assert_true(stays_quiet(fd, VSOCK_HOST_HANDSHAKE_MS - 1000));
	expect_error(fd, VSOCK_HOST_ERR_TIMEOUT);
	close(fd);
}

/* ---- a burst against a slow I/O thread ---- */

static atomic_bool napping, nap_queued;

static void nap(void *ctx)
{
	msleep((unsigned)(uintptr_t)ctx);
	atomic_store(&nap_queued, false);
}

/*
 * Keeps the I/O thread napping 2 ms in every 3 or so, so it reads lines
 * late and slowly (one nap queued at a time: the thread runs queued calls
 * until none is left, and would never get back to its sockets).
 */
static void *staller(void *arg)
{
	(void)arg;
	while (atomic_load(&napping)) {
		if (!atomic_exchange(&nap_queued, true))
			iothread_call(io, nap, (void *)(uintptr_t)2);
		msleep(1);
	}
	return NULL;
}

enum burst_kind { BURST_OK, BURST_REFUSED, BURST_BAD_LINE, BURST_KINDS };
#define BURST_N 200

/* The guest: accepts port GUEST_PORT, refuses (RST) every other. */
static void burst_serve_guest(void)
{
	rx_fill(64);
	struct sim_pkt p;
	for (;;) {
		pthread_mutex_lock(&sim.vd.lock);
		bool got = sim_rx_next(&sim, &p);
		pthread_mutex_unlock(&sim.vd.lock);
		if (!got)
			return;
		assert_int_equal(p.op, VSOCK_OP_REQUEST);
		uint16_t op = p.dst_port == GUEST_PORT ? VSOCK_OP_RESPONSE : VSOCK_OP_RST;
		sim_tx(&sim, p.dst_port, p.src_port, op, 0, 1 << 20, 0, NULL, 0);
		rx_fill(64);
	}
}

static void test_burst_every_client_answered(void **state)
{
	(void)state;
	raise_fd_limit();
	static int fds[BURST_N];
	static char lines[BURST_N][64];
	static size_t got[BURST_N];
	static bool done[BURST_N];
	memset(got, 0, sizeof(got));
	memset(done, 0, sizeof(done));
	/* The I/O thread sleeps while all 200 connect: the backlog must hold them. */
	atomic_store(&nap_queued, true);
	iothread_call(io, nap, (void *)(uintptr_t)300);
	msleep(20);
	for (int i = 0; i < BURST_N; i++) {
		fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		snprintf(a.sun_path, sizeof(a.sun_path), "%.90s", path);
		assert_int_equal(connect(fds[i], (struct sockaddr *)&a, sizeof(a)), 0);
	}
	/* It wakes and takes what it may; the clients are slow to send their lines. */
	msleep(500);
	for (int i = 0; i < BURST_N; i++) {
		static const char *cmd[BURST_KINDS] = { "CONNECT 5000\n", "CONNECT 5001\n", "HELLO\n" };
		const char *c = cmd[i % BURST_KINDS];
		if (send(fds[i], c, strlen(c), MSG_NOSIGNAL) != (ssize_t)strlen(c))
			fail_msg("client %d was closed before it sent its line: %m", i);
	}
	atomic_store(&napping, true);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, staller, NULL), 0);
	/* Every client gets one whole line, and no client sees EOF before it. */
	int left = BURST_N;
	for (long deadline = 20000; left > 0 && deadline > 0; deadline -= 2) {
		burst_serve_guest();
		for (int i = 0; i < BURST_N; i++) {
			if (done[i])
				continue;
			ssize_t n = read(fds[i], lines[i] + got[i], 1);
			if (n < 0 && errno == EAGAIN)
				continue;
			if (n <= 0)
				fail_msg("client %d closed without an answer after '%.*s'", i, (int)got[i], lines[i]);
			if (lines[i][got[i]] == '\n') {
				lines[i][got[i]] = '\0';
				done[i] = true;
				left--;
			} else if (++got[i] == sizeof(lines[i])) {
				fail_msg("client %d: line too long", i);
			}
		}
		msleep(2);
	}
	atomic_store(&napping, false);
	pthread_join(t, NULL);
	assert_int_equal(left, 0);
	for (int i = 0; i < BURST_N; i++) {
		switch (i % BURST_KINDS) {
		case BURST_OK:
			if (strncmp(lines[i], "OK ", 3) != 0)
				fail_msg("client %d: '%s', not OK", i, lines[i]);
			break;
		case BURST_REFUSED:
			assert_string_equal(lines[i], "ERR " VSOCK_WHY_REFUSED);
			break;
		case BURST_BAD_LINE:
			assert_string_equal(lines[i], "ERR " VSOCK_HOST_ERR_NOT_CONNECT);
			break;
		}
		close(fds[i]);
	}
}

/* ---- descriptors ---- */

static unsigned open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	unsigned n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own */
}

#define SMALL_BUDGET 12

/* The host side starts under a descriptor limit that leaves room for a few connections. */
static int setup_small_fd_limit(void **state)
{
	struct rlimit old, low;
	if (getrlimit(RLIMIT_NOFILE, &old) != 0)
		return -1;
	low = old;
	low.rlim_cur = open_fds() + VSOCK_HOST_FD_RESERVE + VSOCK_HOST_MAX_HANDSHAKE + SMALL_BUDGET;
	if (setrlimit(RLIMIT_NOFILE, &low) != 0)
		return -1;
	int r = setup(state);
	setrlimit(RLIMIT_NOFILE, &old);
	return r;
}

static void test_connections_bounded_by_fd_limit(void **state)
{
	(void)state;
	unsigned max = vsock_host_max_conns(host);
	/* What setup opened after counting (I/O thread, listener, timer) comes off the budget. */
	assert_true(max >= 2 && max <= SMALL_BUDGET);
	int lfd = unix_listen(6005);
	int fds[SMALL_BUDGET];
	for (uint32_t i = 0; i < max + 3; i++) {
		rx_fill(8);
		sim_tx(&sim, 30000 + i, 6005, VSOCK_OP_REQUEST, 0, 1 << 20, 0, NULL, 0);
		struct sim_pkt p = rx_expect(i < max ? VSOCK_OP_RESPONSE : VSOCK_OP_RST);
		assert_int_equal(p.dst_port, 30000 + i);
		if (i < max) {
			fds[i] = accept(lfd, NULL, NULL);
			assert_true(fds[i] >= 0);
		}
	}
	struct virtio_vsock_stats st;
	virtio_vsock_get_stats(sim.vs, &st);
	assert_int_equal(st.conns, max);
	/* A host program past the bound is told so. */
	int fd = unix_connect(path);
	assert_int_equal(write(fd, "CONNECT 5000\n", 13), 13);
	expect_error(fd, VSOCK_WHY_TOO_MANY);
	close(fd);
	/* One closes: the guest may connect again. */
	close(fds[0]);
	rx_expect(VSOCK_OP_SHUTDOWN);
	sim_tx(&sim, 30000, 6005, VSOCK_OP_RST, 0, 1 << 20, 0, NULL, 0);
	rx_fill(8);
	sim_tx(&sim, 31000, 6005, VSOCK_OP_REQUEST, 0, 1 << 20, 0, NULL, 0);
	rx_expect(VSOCK_OP_RESPONSE);
	fds[0] = accept(lfd, NULL, NULL);
	for (unsigned i = 0; i < max; i++)
		close(fds[i]);
	close(lfd);
}

static void test_out_of_descriptors_does_not_spin(void **state)
{
	(void)state;
	enum { CLIENTS = 4 };
	int cl[CLIENTS];
	for (int i = 0; i < CLIENTS; i++)
		cl[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	/* The log goes to a file we can measure. */
	char logpath[160];
	snprintf(logpath, sizeof(logpath), "%s/log", dir);
	int logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int saved_err = dup(STDERR_FILENO);
	assert_true(logfd >= 0 && saved_err >= 0);
	dup2(logfd, STDERR_FILENO);
	/* Every descriptor the process may have is taken. */
	static struct fd_starve starve;
	fd_starve_begin(&starve);
	/* Host programs arrive: accept4 fails with EMFILE. */
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%.90s", path);
	for (int i = 0; i < CLIENTS; i++) {
		assert_int_equal(connect(cl[i], (struct sockaddr *)&a, sizeof(a)), 0);
		assert_int_equal(write(cl[i], "CONNECT 7\n", 10), 10);
	}
	msleep(50);
	double cpu0 = cpu_seconds();
	off_t log0 = lseek(logfd, 0, SEEK_END);
	msleep(500);
	double cpu = cpu_seconds() - cpu0;
	off_t logged = lseek(logfd, 0, SEEK_END) - log0;
	/* Descriptors come back: the clients waiting in the backlog are served. */
	fd_starve_end(&starve);
	dup2(saved_err, STDERR_FILENO);
	close(saved_err);
	close(logfd);
	/* It did run out (one warning, before the measured half second). */
	char text[512] = { 0 };
	int rfd = open(logpath, O_RDONLY | O_CLOEXEC);
	assert_true(read(rfd, text, sizeof(text) - 1) > 0);
	close(rfd);
	assert_non_null(strstr(text, "Too many open files"));
	/* A spinning I/O thread burns the whole half second and logs each turn. */
	if (cpu > 0.15 || logged > 0)
		fail_msg("out of descriptors: %.3f s of CPU and %lld log bytes in 0.5 s", cpu, (long long)logged);
	for (int i = 0; i < CLIENTS; i++) {
		rx_fill(8);
		struct sim_pkt p = rx_expect(VSOCK_OP_REQUEST);
		sim_tx(&sim, 7, p.src_port, VSOCK_OP_RST, 0, 0, 0, NULL, 0);
	}
	for (int i = 0; i < CLIENTS; i++) {
		expect_error(cl[i], VSOCK_WHY_REFUSED);
		close(cl[i]);
	}
}

/* ---- an echo workload, as the nested e2e runs it ---- */

/*
 * The simulated guest plays Linux's echo server: it accepts on GUEST_PORT,
 * sends back every byte within the device's credit (piggybacking its own
 * consumption, as Linux does), hands out credit as it consumes, answers
 * the host's SHUTDOWN with its own once everything is echoed, and forgets
 * a connection at RST. The host programs are threads that write ECHO_BYTES
 * in 16 KiB writes, half-close, and read the echo back to EOF; every
 * other one reads slowly, so the device buffers and drains in parts.
 */
#define ECHO_CONNS  100
#define ECHO_BYTES  (256u << 10)
#define GUEST_BUF   (256u << 10)

struct guest_conn {
	uint32_t port;               /* the host side's local port; 0: free */
	uint8_t *q;                  /* received, not yet echoed */
	uint32_t q_head, q_len;
	uint32_t tx_cnt, fwd_cnt;    /* the guest's counters */
	uint32_t dev_buf_alloc, dev_fwd_cnt;
	bool peer_eof, shut_sent;
};

static struct guest_conn gconns[ECHO_CONNS];
static atomic_int echo_finished;   /* host program threads done */

static struct guest_conn *gconn_find(uint32_t port, bool create)
{
	for (unsigned i = 0; i < ECHO_CONNS; i++)
		if (gconns[i].port == port)
			return &gconns[i];
	for (unsigned i = 0; create && i < ECHO_CONNS; i++) {
		if (gconns[i].port == 0) {
			uint8_t *q = gconns[i].q;
			gconns[i] = (struct guest_conn){ .port = port, .q = q };
			return &gconns[i];
		}
	}
	return NULL;
}

/* Echoes what the device's credit allows; the SHUTDOWN once all is out. */
static void gconn_flush(struct guest_conn *g)
{
	while (g->q_len > 0) {
		uint32_t credit = g->dev_buf_alloc - (g->tx_cnt - g->dev_fwd_cnt);
		uint32_t k = g->q_len < 16384 ? g->q_len : 16384;
		if (GUEST_BUF - g->q_head < k)
			k = GUEST_BUF - g->q_head;
		if (k > credit)
			k = credit;
		if (k == 0)
			return;
		g->tx_cnt += k;
		g->fwd_cnt += k; /* consumed as it is echoed */
		sim_tx(&sim, GUEST_PORT, g->port, VSOCK_OP_RW, 0, GUEST_BUF, g->fwd_cnt, g->q + g->q_head, k);
		g->q_head = (g->q_head + k) % GUEST_BUF;
		g->q_len -= k;
	}
	if (g->peer_eof && !g->shut_sent) {
		g->shut_sent = true;
		sim_tx(&sim, GUEST_PORT, g->port, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND,
		       GUEST_BUF, g->fwd_cnt, NULL, 0);
	}
}

static void guest_echo_packet(const struct sim_pkt *p)
{
	struct guest_conn *g = gconn_find(p->src_port, p->op == VSOCK_OP_REQUEST);
	if (!g) {
		if (p->op != VSOCK_OP_RST)
			fail_msg("guest: op %u for unknown port %u", p->op, p->src_port);
		return;
	}
	g->dev_buf_alloc = p->buf_alloc;
	g->dev_fwd_cnt = p->fwd_cnt;
	switch (p->op) {
	case VSOCK_OP_REQUEST:
		sim_tx(&sim, GUEST_PORT, g->port, VSOCK_OP_RESPONSE, 0, GUEST_BUF, 0, NULL, 0);
		break;
	case VSOCK_OP_RW:
		if (p->len > GUEST_BUF - g->q_len)
			fail_msg("guest: port %u sent beyond the credit it had", g->port);
		for (uint32_t i = 0; i < p->len; i++)
			g->q[(g->q_head + g->q_len + i) % GUEST_BUF] = p->data[i];
		g->q_len += p->len;
		break;
	case VSOCK_OP_SHUTDOWN:
		g->peer_eof = g->peer_eof || (p->flags & VSOCK_SHUTDOWN_SEND);
		break;
	case VSOCK_OP_RST:
		g->port = 0;
		return;
	}
	gconn_flush(g);
}

struct echo_client {
	int index;
	int fd;
	bool ok;
	char why[96];
};

static uint8_t echo_pattern(int conn, uint32_t off)
{
	return (uint8_t)((off * 2654435761u) >> 13 ^ (uint32_t)conn * 97u);
}

static void *echo_writer(void *arg)
{
	struct echo_client *c = arg;
	uint8_t buf[16384];
	for (uint32_t off = 0; off < ECHO_BYTES; off += sizeof(buf)) {
		for (uint32_t i = 0; i < sizeof(buf); i++)
			buf[i] = echo_pattern(c->index, off + i);
		for (size_t done = 0; done < sizeof(buf);) {
			ssize_t n = write(c->fd, buf + done, sizeof(buf) - done);
			if (n <= 0)
				return NULL;
			done += (size_t)n;
		}
	}
	shutdown(c->fd, SHUT_WR);
	return NULL;
}

static void *echo_client_main(void *arg)
{
	struct echo_client *c = arg;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%.90s", path);
	char line[32];
	if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0 || write(c->fd, "CONNECT 5000\n", 13) != 13) {
		snprintf(c->why, sizeof(c->why), "connect: %s", strerror(errno));
		atomic_fetch_add(&echo_finished, 1);
		return NULL;
	}
	read_line(c->fd, line, sizeof(line));
	if (strncmp(line, "OK ", 3) != 0) {
		snprintf(c->why, sizeof(c->why), "handshake answered '%s'", line);
		atomic_fetch_add(&echo_finished, 1);
		return NULL;
	}
	pthread_t w;
	pthread_create(&w, NULL, echo_writer, c);
	uint32_t got = 0;
	uint8_t buf[4096];
	for (;;) {
		ssize_t n = read(c->fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n && !c->why[0]; i++)
			if (buf[i] != echo_pattern(c->index, got + (uint32_t)i))
				snprintf(c->why, sizeof(c->why), "byte %u differs", got + (uint32_t)i);
		got += (uint32_t)n;
		if (c->index % 2)
			msleep(2);
	}
	pthread_join(w, NULL);
	if (!c->why[0] && got != ECHO_BYTES)
		snprintf(c->why, sizeof(c->why), "%u of %u bytes came back", got, ECHO_BYTES);
	c->ok = !c->why[0];
	atomic_fetch_add(&echo_finished, 1);
	return NULL;
}

static void test_echo_workload_completes(void **state)
{
	(void)state;
	raise_fd_limit();
	static struct echo_client cl[ECHO_CONNS];
	static pthread_t t[ECHO_CONNS];
	for (unsigned i = 0; i < ECHO_CONNS; i++) {
		gconns[i] = (struct guest_conn){ .q = gconns[i].q ? gconns[i].q : malloc(GUEST_BUF) };
		assert_non_null(gconns[i].q);
	}
	atomic_store(&echo_finished, 0);
	for (int i = 0; i < ECHO_CONNS; i++) {
		cl[i] = (struct echo_client){ .index = i, .fd = -1 };
		assert_int_equal(pthread_create(&t[i], NULL, echo_client_main, &cl[i]), 0);
	}
	/* The guest runs until every host program and guest connection is done, or a minute passes. */
	long start = (long)time(NULL);
	unsigned live = 1;
	while (live > 0 && (long)time(NULL) - start < 60) {
		rx_fill(128);
		struct sim_pkt p;
		bool any = false;
		for (;;) {
			pthread_mutex_lock(&sim.vd.lock);
			bool got = sim_rx_next(&sim, &p);
			pthread_mutex_unlock(&sim.vd.lock);
			if (!got)
				break;
			any = true;
			guest_echo_packet(&p);
			rx_fill(128);
		}
		live = ECHO_CONNS - (unsigned)atomic_load(&echo_finished);
		for (unsigned i = 0; i < ECHO_CONNS; i++)
			live += gconns[i].port != 0;
		if (!any)
			msleep(1);
	}
	struct virtio_vsock_stats st;
	virtio_vsock_get_stats(sim.vs, &st);
	for (unsigned i = 0; i < ECHO_CONNS; i++) {
		if (gconns[i].port)
			print_message("stuck: guest port %u: %u bytes to echo, credit %u, peer eof %d; "
				      "device: %u connections, %llu bytes buffered\n",
				      gconns[i].port, gconns[i].q_len,
				      gconns[i].dev_buf_alloc - (gconns[i].tx_cnt - gconns[i].dev_fwd_cnt),
				      gconns[i].peer_eof, st.conns, (unsigned long long)st.buffered);
	}
	if (live)
		fail_msg("%u host programs or guest connections still busy after 60 s",  live);
	for (int i = 0; i < ECHO_CONNS; i++) {
		pthread_join(t[i], NULL);
		if (!cl[i].ok)
			fail_msg("connection %d: %s", i, cl[i].why);
		close(cl[i].fd);
	}
	virtio_vsock_get_stats(sim.vs, &st);
	assert_int_equal(st.conns, 0);
	assert_int_equal(st.buffer_bytes, 0);
	for (unsigned i = 0; i < ECHO_CONNS; i++) {
		free(gconns[i].q);
		gconns[i].q = NULL;
	}
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* as in the VMM; a refused client's write fails instead */
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_socket_is_private),
		T(test_connect_ok_and_data),
		T(test_bad_commands_refused),
		cmocka_unit_test(test_parse_connect),
		T(test_no_guest_listener),
		T(test_guest_breaks_handshake),
		T(test_guest_to_host_listener),
		T(test_guest_to_host_no_listener),
		T(test_guest_to_host_waits_for_slow_accept),
		T(test_reset_gives_eof),
		T(test_thousand_connections),
		T(test_slow_host_reader_bounded),
		T(test_slow_guest_reader_backpressure),
		T(test_handshake_limit_holds_not_drops),
		T(test_silent_host_program_refused_in_time),
		T(test_burst_every_client_answered),
		T(test_out_of_descriptors_does_not_spin),
		T(test_echo_workload_completes),
		cmocka_unit_test_setup_teardown(test_connections_bounded_by_fd_limit,
						setup_small_fd_limit, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
