/*
 * shojid's readiness message (src/daemon/notify.c): READY=1 arrives as one
 * datagram on the socket $NOTIFY_SOCKET names, a path or an abstract
 * "@name"; without $NOTIFY_SOCKET nothing is sent and that is no error; a
 * bad name or a socket nobody listens on is a failure, not a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"
#include "daemon/notify.h"

/* A datagram socket bound to addr (len bytes of it). */
static int bind_dgram(const struct sockaddr_un *addr, socklen_t len)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (const struct sockaddr *)addr, len), 0);
	return fd;
}

static void expect_datagram(int fd, const char *want)
{
	char buf[64];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	assert_int_equal(n, (ssize_t)strlen(want));
	buf[n] = '\0';
	assert_string_equal(buf, want);
}

static void test_path_socket(void **state)
{
	(void)state;
	char dir[] = "/tmp/shoji-notify-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s/notify", dir);
	int fd = bind_dgram(&a, sizeof(a));
	setenv("NOTIFY_SOCKET", a.sun_path, 1);
	assert_true(notify_send("READY=1"));
	expect_datagram(fd, "READY=1");
	assert_true(notify_send("STOPPING=1"));
	expect_datagram(fd, "STOPPING=1");
	close(fd);
	unlink(a.sun_path);
	rmdir(dir);
	unsetenv("NOTIFY_SOCKET");
}

static void test_abstract_socket(void **state)
{
	(void)state;
	char name[64];
	snprintf(name, sizeof(name), "@shoji-notify-test-%d", (int)getpid());
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	memcpy(a.sun_path, name, strlen(name));
	a.sun_path[0] = '\0';
	/* The name is exactly its bytes: a longer address would be another name. */
	int fd = bind_dgram(&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name)));
	setenv("NOTIFY_SOCKET", name, 1);
	assert_true(notify_send("READY=1"));
	expect_datagram(fd, "READY=1");
	close(fd);
	unsetenv("NOTIFY_SOCKET");
}

static void test_no_socket_is_fine(void **state)
{
	(void)state;
	unsetenv("NOTIFY_SOCKET");
	assert_true(notify_send("READY=1"));
	setenv("NOTIFY_SOCKET", "", 1);
	assert_true(notify_send("READY=1"));
	unsetenv("NOTIFY_SOCKET");
}

static void test_bad_socket_fails(void **state)
{
	(void)state;
	char longname[200];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[0] = '/';
	longname[sizeof(longname) - 1] = '\0';
	const char *bad[] = { "relative/notify", longname, "/nonexistent/shoji/notify" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("NOTIFY_SOCKET", bad[i], 1);
		assert_false(notify_send("READY=1"));
	}
	unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
	log_init("test-notify", LOG_LEVEL_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_socket),
		cmocka_unit_test(test_abstract_socket),
		cmocka_unit_test(test_no_socket_is_fine),
		cmocka_unit_test(test_bad_socket_fails),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
