/*
 * The seccomp allowlist (src/vmm/sandbox.c), each case in a forked child so
 * the filter never reaches the test runner: what a running VMM does is
 * allowed, a call outside the list ends the process with status 1 and a
 * line naming the call, and an open fails with EACCES instead (glibc's
 * malloc opens /proc/sys/vm/overcommit_memory when it first trims a thread's
 * heap: the vsock end-to-end run died of exactly that).
 *
 * Sanitizer builds do not install the filter (see sandbox_enter_with), so
 * there every case is skipped with that reason.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/exit.h"
#include "vmm/sandbox.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANDBOX_IN_THIS_BUILD 0
#else
#define SANDBOX_IN_THIS_BUILD 1
#endif

/* Runs fn in a child under the filter for `needs`; its wait status. */
static int in_sandbox(unsigned needs, int (*fn)(void))
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (!sandbox_enter_with(needs))
			_exit(100);
		_exit(fn());
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void expect_exit(int status, int code)
{
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), code);
}

static int open_proc_file(void)
{
	int fd = open("/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC);
	return fd < 0 && errno == EACCES ? 0 : 1;
}

static void test_open_fails_with_eacces(void **state)
{
	(void)state;
	if (!SANDBOX_IN_THIS_BUILD)
		skip();
	expect_exit(in_sandbox(0, open_proc_file), 0);
	expect_exit(in_sandbox(SANDBOX_VSOCK, open_proc_file), 0);
}

/* A thread fills its own malloc arena and frees it all: glibc trims that heap. */
static void *churn(void *arg)
{
	(void)arg;
	enum { N = 4096 };
	static void *blocks[N];
	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < N; i++)
			blocks[i] = malloc(256 + (size_t)(i % 7) * 64);
		for (int i = N - 1; i >= 0; i--)
			free(blocks[i]);
	}
	return NULL;
}

static int thread_heap_trim(void)
{
	pthread_t t;
	if (pthread_create(&t, NULL, churn, NULL) != 0)
		return 2;
	pthread_join(t, NULL);
	return 0;
}

static void test_thread_heap_trim_survives(void **state)
{
	(void)state;
	if (!SANDBOX_IN_THIS_BUILD)
		skip();
	expect_exit(in_sandbox(SANDBOX_VSOCK, thread_heap_trim), 0);
}

/*
 * Counting CPUs: glibc reads /sys/devices/system/cpu/online, then
 * /proc/stat, and when the sandbox refuses both opens it falls back to
 * sched_getaffinity. A guest booting from a compressed qcow2 image under
 * shojid killed its VMM with exactly that call (e2e-image).
 */
static int count_cpus(void)
{
	return sysconf(_SC_NPROCESSORS_ONLN) >= 1 && sysconf(_SC_NPROCESSORS_CONF) >= 1 ? 0 : 5;
}

static void test_counting_cpus_survives(void **state)
{
	(void)state;
	if (!SANDBOX_IN_THIS_BUILD)
		skip();
	expect_exit(in_sandbox(0, count_cpus), 0);
}

static int network_socket(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	return fd >= 0 ? 0 : 3;
}

static int unix_socket(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	return fd >= 0 ? 0 : 3;
}

static void test_call_outside_list_ends_process(void **state)
{
	(void)state;
	if (!SANDBOX_IN_THIS_BUILD)
		skip();
	/* Without a network back end no socket at all; vsock gets Unix ones only. */
	expect_exit(in_sandbox(0, unix_socket), VMM_EXIT_FAILURE);
	expect_exit(in_sandbox(SANDBOX_VSOCK, unix_socket), 0);
	expect_exit(in_sandbox(SANDBOX_VSOCK, network_socket), VMM_EXIT_FAILURE);
}

static int fork_child(void)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	return 4; /* reached only if the fork was allowed */
}

/* Threads start (clone3 falls back to clone with CLONE_THREAD); a process does not. */
static void test_threads_not_processes(void **state)
{
	(void)state;
	if (!SANDBOX_IN_THIS_BUILD)
		skip();
	expect_exit(in_sandbox(0, thread_heap_trim), 0);
	expect_exit(in_sandbox(0, fork_child), VMM_EXIT_FAILURE);
	expect_exit(in_sandbox(SANDBOX_NET_USER | SANDBOX_VSOCK, fork_child), VMM_EXIT_FAILURE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_fails_with_eacces),
		cmocka_unit_test(test_thread_heap_trim_survives),
		cmocka_unit_test(test_counting_cpus_survives),
		cmocka_unit_test(test_call_outside_list_ends_process),
		cmocka_unit_test(test_threads_not_processes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
