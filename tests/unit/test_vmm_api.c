/*
 * Unit tests for src/vmm/api.c, the VMM's control socket, on a real I/O
 * thread and a real Unix socket: ping and power-button answer {"ok":true}
 * (and the button reaches the machine's callback), pause and resume reach
 * the machine and status reports them, several requests on one
 * connection, and hostile clients (garbage, unknown op, an overlong line,
 * a NUL byte) get an error or EOF while the socket keeps serving everybody
 * else; a client past the connection bound waits and is served when a slot
 * frees; running out of descriptors does not make the I/O thread spin.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fd_starve.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmm/api.h"
#include "vmm/iothread.h"

struct fixture {
	char dir[64];
	char path[128];
	struct iothread *io;
	struct vmm_api *api;
	atomic_int presses;
	atomic_bool paused;
};

static void on_button(void *ctx)
{
	atomic_fetch_add(&((struct fixture *)ctx)->presses, 1);
}

static void on_pause(void *ctx, bool pause)
{
	atomic_store(&((struct fixture *)ctx)->paused, pause);
}

static bool is_paused(void *ctx)
{
	return atomic_load(&((struct fixture *)ctx)->paused);
}

static int setup(void **state)
{
	signal(SIGPIPE, SIG_IGN); /* as in the VMM */
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/shoji-api-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/api.sock", f->dir);
	f->io = iothread_create();
	struct vmm_api_ops ops = { .power_button = on_button, .pause = on_pause, .paused = is_paused, .ctx = f };
	f->api = vmm_api_create(f->path, f->io, &ops);
	assert_non_null(f->api);
	assert_true(iothread_start(f->io));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	iothread_destroy(f->io);
	vmm_api_destroy(f->api);
	assert_int_equal(access(f->path, F_OK), -1); /* removed at the end */
	rmdir(f->dir);
	free(f);
	return 0;
}

static int connect_to(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* One line (without newline), or "" at EOF; fails the test after 2 s. */
static void read_line(int fd, char *out, size_t len)
{
	size_t n = 0;
	while (n + 1 < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 2000) != 1)
			fail_msg("no answer within 2 s");
		ssize_t r = read(fd, out + n, 1);
		if (r <= 0 || out[n] == '\n')
			break;
		n++;
	}
	out[n] = '\0';
}

static bool at_eof(int fd)
{
	char c;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 2000) == 1 && read(fd, &c, 1) <= 0; /* EOF, or a reset when our bytes were unread */
}

static void request(int fd, const char *line, char *answer, size_t len)
{
	assert_int_equal(write(fd, line, strlen(line)), (ssize_t)strlen(line));
	read_line(fd, answer, len);
}

static void test_socket_mode(void **state)
{
	struct fixture *f = *state;
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_ping_and_power_button(void **state)
{
	struct fixture *f = *state;
	char ans[256];
	int fd = connect_to(f->path);
	request(fd, "{\"op\":\"ping\"}\n", ans, sizeof(ans));
	assert_string_equal(ans, "{\"ok\":true}");
	assert_int_equal(atomic_load(&f->presses), 0);
	request(fd, "  { \"op\" : \"power-button\" }\r\n", ans, sizeof(ans));
	assert_string_equal(ans, "{\"ok\":true}");
	assert_int_equal(atomic_load(&f->presses), 1);
	/* Two requests in one write: two answers, in order. */
	request(fd, "{\"op\":\"ping\"}\n{\"op\":\"power-button\"}\n", ans, sizeof(ans));
	assert_string_equal(ans, "{\"ok\":true}");
	read_line(fd, ans, sizeof(ans));
	assert_string_equal(ans, "{\"ok\":true}");
	assert_int_equal(atomic_load(&f->presses), 2);
	close(fd);
}

static void test_pause_resume_status(void **state)
{
	struct fixture *f = *state;
	char ans[256];
	int fd = connect_to(f->path);
	request(fd, "{\"op\":\"status\"}\n", ans, sizeof(ans));
	assert_string_equal(ans, "{\"ok\":true,\"paused\":false}");
	request(fd, "{\"op\":\"pause\"}\n", ans, sizeof(ans));
	assert_string_equal(ans, "{\"ok\":true}");
	assert_true(atomic_load(&f->paused));
	request(fd, "{\"op\":\"status\"}\n", ans, sizeof(ans));
	assert_string_equal(ans, "{\"ok\":true,\"paused\":true}");
	request(fd, "{\"op\":\"resume\"}\n", ans, sizeof(ans));
	assert_string_equal(ans, "{\"ok\":true}");
	assert_false(atomic_load(&f->paused));
	request(fd, "{\"op\":\"status\"}\n", ans, sizeof(ans));
	assert_string_equal(ans, "{\"ok\":true,\"paused\":false}");
	close(fd);
}

static void expect_refused(struct fixture *f, const char *line, size_t len)
{
	char ans[256];
	int fd = connect_to(f->path);
	assert_int_equal(write(fd, line, len), (ssize_t)len);
	read_line(fd, ans, sizeof(ans));
	if (strncmp(ans, "{\"ok\":false,\"error\":\"", 21) != 0)
		fail_msg("'%.*s' answered '%s', not an error", (int)len, line, ans);
	assert_true(at_eof(fd));
	close(fd);
	/* The socket still serves a well-behaved client. */
	fd = connect_to(f->path);
	request(fd, "{\"op\":\"ping\"}\n", ans, sizeof(ans));
	assert_string_equal(ans, "{\"ok\":true}");
	close(fd);
}

static void test_hostile_requests(void **state)
{
	struct fixture *f = *state;
	const char *bad[] = {
		"hello\n", "{}\n", "{\"op\":\"reboot\"}\n", "{\"op\":\"ping\"} x\n", "{\"op\":\"ping\",\"a\":1}\n",
		"{\"op\":\"\"}\n", "{\"op\":ping}\n", "[\"ping\"]\n", "\n", "{\"op\":\"PING\"}\n",
		"{\"op\":\"ping\"\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_refused(f, bad[i], strlen(bad[i]));
	expect_refused(f, "{\"op\":\0\"ping\"}\n", 15);
	char longline[600];
	memset(longline, 'a', sizeof(longline));
	expect_refused(f, longline, sizeof(longline));
	assert_int_equal(atomic_load(&f->presses), 0);
}

static void test_connection_bound(void **state)
{
	struct fixture *f = *state;
	int fds[VMM_API_MAX_CLIENTS + 1];
	char ans[64];
	for (int i = 0; i < VMM_API_MAX_CLIENTS; i++) {
		fds[i] = connect_to(f->path);
		request(fds[i], "{\"op\":\"ping\"}\n", ans, sizeof(ans)); /* accepted and served */
		assert_string_equal(ans, "{\"ok\":true}");
	}
	/* One more waits in the backlog: neither answered nor closed ... */
	int extra = connect_to(f->path);
	assert_int_equal(write(extra, "{\"op\":\"ping\"}\n", 14), 14);
	struct pollfd p = { .fd = extra, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 300), 0);
	/* ... until a slot frees: then it is served. */
	close(fds[0]);
	read_line(extra, ans, sizeof(ans));
	assert_string_equal(ans, "{\"ok\":true}");
	close(extra);
	for (int i = 1; i < VMM_API_MAX_CLIENTS; i++)
		close(fds[i]);
}

/* accept4 fails with EMFILE: no busy loop, no log flood, and the client is served later. */
static void test_out_of_descriptors_does_not_spin(void **state)
{
	struct fixture *f = *state;
	int client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char logpath[160];
	snprintf(logpath, sizeof(logpath), "%s/log", f->dir);
	int logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int saved_err = dup(STDERR_FILENO);
	assert_true(client >= 0 && logfd >= 0 && saved_err >= 0);
	dup2(logfd, STDERR_FILENO);
	static struct fd_starve starve;
	fd_starve_begin(&starve);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%.100s", f->path);
	assert_int_equal(connect(client, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(write(client, "{\"op\":\"ping\"}\n", 14), 14);
	usleep(50000);
	double cpu0 = cpu_seconds();
	off_t log0 = lseek(logfd, 0, SEEK_END);
	usleep(500000);
	double cpu = cpu_seconds() - cpu0;
	off_t logged = lseek(logfd, 0, SEEK_END) - log0;
	off_t total = lseek(logfd, 0, SEEK_END);
	fd_starve_end(&starve);
	dup2(saved_err, STDERR_FILENO);
	close(saved_err);
	close(logfd);
	unlink(logpath);
	if (cpu > 0.15 || logged > 0 || total == 0)
		fail_msg("out of descriptors: %.3f s of CPU, %lld log bytes in 0.5 s, %lld in all",
			 cpu, (long long)logged, (long long)total);
	char ans[64];
	read_line(client, ans, sizeof(ans));
	assert_string_equal(ans, "{\"ok\":true}");
	close(client);
}

static void test_parser(void **state)
{
	(void)state;
	char op[8];
	assert_true(vmm_api_parse("{\"op\":\"ping\"}", op, sizeof(op)));
	assert_string_equal(op, "ping");
	assert_false(vmm_api_parse("{\"op\":\"abcdefgh\"}", op, sizeof(op))); /* longer than op */
	assert_false(vmm_api_parse("", op, sizeof(op)));
	assert_false(vmm_api_parse("{\"op\":\"ping\"}}", op, sizeof(op)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_socket_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ping_and_power_button, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_resume_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_descriptors_does_not_spin, setup, teardown),
		cmocka_unit_test(test_parser),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
