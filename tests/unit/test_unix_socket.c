/*
 * base/unix-socket.c: every listening socket is 0600, a stale socket file
 * is replaced, and a live one (or anything that is not a socket) is never
 * taken over.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/unix-socket.h"

static char dir[64], path[128];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/unixsock-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/s.sock", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	return rmdir(dir);
}

static bool answers(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	strcpy(a.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

static void test_mode_0600(void **state)
{
	(void)state;
	mode_t old = umask(0); /* whatever the umask, the socket is 0600 */
	int fd = unix_listen("test", path, 4, 0);
	umask(old);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
}

static void test_live_socket_kept(void **state)
{
	(void)state;
	int first = unix_listen("test", path, 4, 0);
	assert_true(first >= 0);
	assert_int_equal(unix_listen("test", path, 4, 0), -1);
	assert_true(answers()); /* the first listener still has its socket */
	close(first);
}

static void test_stale_socket_replaced(void **state)
{
	(void)state;
	int first = unix_listen("test", path, 4, SOCK_NONBLOCK);
	assert_true(first >= 0);
	assert_true(fcntl(first, F_GETFL) & O_NONBLOCK);
	close(first); /* its process died: the file stays */
	assert_int_equal(access(path, F_OK), 0);
	int second = unix_listen("test", path, 4, 0);
	assert_true(second >= 0);
	assert_true(answers());
	close(second);
}

static void test_not_a_socket_refused(void **state)
{
	(void)state;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "keep", 4), 4);
	close(fd);
	assert_int_equal(unix_listen("test", path, 4, 0), -1);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, 4);
}

static void test_too_long_refused(void **state)
{
	(void)state;
	char longp[200];
	memset(longp, 'x', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(unix_listen("test", longp, 4, 0), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mode_0600, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_socket_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_socket_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_socket_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_long_refused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
