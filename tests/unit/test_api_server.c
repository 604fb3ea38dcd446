/*
 * shojid's API server (src/daemon/api-server.c) on a real Unix socket:
 * with API_MAX_CLIENTS connections open, one more client waits in the
 * listen backlog (it is neither answered nor closed) and is served once a
 * connection closes; running out of descriptors does not make the accept
 * loop spin, and the waiting client is served once descriptors are back.
 * Only /v1/version is asked for: it needs no supervisor.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon/api.h"
#include "daemon/events.h"

struct fixture {
	char dir[64];
	char path[128];
	struct events *events;
	struct api *api;
};

static int setup(void **state)
{
	signal(SIGPIPE, SIG_IGN);
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/shoji-apisrv-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/api.sock", f->dir);
	f->events = events_create();
	assert_non_null(f->events);
	int fd = api_listen(f->path);
	assert_true(fd >= 0);
	f->api = api_start(fd, NULL, f->events);
	assert_non_null(f->api);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	api_stop(f->api);
	events_destroy(f->events);
	unlink(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static int connect_to(const char *path, int sock)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%.100s", path);
	int fd = sock >= 0 ? sock : socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static const char request[] = "GET /v1/version HTTP/1.0\r\n\r\n";

/* True when fd gets an HTTP 200 answer within 3 s. */
static bool answered_ok(int fd)
{
	char buf[64] = { 0 };
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 3000) != 1)
		return false;
	return read(fd, buf, sizeof(buf) - 1) > 0 && strncmp(buf, "HTTP/1.1 200", 12) == 0;
}

static bool stays_quiet(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, ms) == 0;
}

static void test_client_past_the_bound_waits(void **state)
{
	struct fixture *f = *state;
	static int fds[API_MAX_CLIENTS];
	for (int i = 0; i < API_MAX_CLIENTS; i++)
		fds[i] = connect_to(f->path, -1); /* idle: MHD keeps them for its timeout */
	usleep(200000);
	int extra = connect_to(f->path, -1);
	assert_int_equal(write(extra, request, strlen(request)), (ssize_t)strlen(request));
	/* Not served, and not closed either (MHD alone would close it at once). */
	if (!stays_quiet(extra, 300)) {
		char buf[128] = { 0 };
		ssize_t n = read(extra, buf, sizeof(buf) - 1);
		fail_msg("the client past the bound got %zd bytes: '%.60s'", n, buf);
	}
	close(fds[0]);
	assert_true(answered_ok(extra));
	close(extra);
	for (int i = 1; i < API_MAX_CLIENTS; i++)
		close(fds[i]);
}

static void test_out_of_descriptors_does_not_spin(void **state)
{
	struct fixture *f = *state;
	int client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int saved_err = dup(STDERR_FILENO);
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	assert_true(client >= 0 && saved_err >= 0 && devnull >= 0);
	dup2(devnull, STDERR_FILENO);
	close(devnull);
	static struct fd_starve starve;
	fd_starve_begin(&starve);
	connect_to(f->path, client);
	assert_int_equal(write(client, request, strlen(request)), (ssize_t)strlen(request));
	usleep(50000);
	double cpu0 = cpu_seconds();
	usleep(500000);
	double cpu = cpu_seconds() - cpu0;
	fd_starve_end(&starve);
	dup2(saved_err, STDERR_FILENO);
	close(saved_err);
	if (cpu > 0.15)
		fail_msg("out of descriptors: %.3f s of CPU in 0.5 s", cpu);
	assert_true(answered_ok(client));
	close(client);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_client_past_the_bound_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_descriptors_does_not_spin, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
