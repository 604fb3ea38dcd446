/*
 * Unit tests for shoji-vmm's command line (src/vmm/options.h): every
 * mistake a user can make is refused with one line that names the flag (or
 * the stray argument) it is about, and every accepted form yields the
 * documented values: defaults, sizes (a bare number is MiB), --serial modes,
 * and the --flag=value spelling. The kernel file is a real temporary file,
 * since the parser checks that it exists and is a regular file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/util.h"
#include "vmm/options.h"

#define MAX_ARGS 16

static char tmpdir[64];
static char kernel[128];
static char initrd[128];

static int make_files(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/shoji-unit-options.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(kernel, sizeof(kernel), "%s/bzImage", tmpdir);
	snprintf(initrd, sizeof(initrd), "%s/initrd.img", tmpdir);
	FILE *f = fopen(kernel, "w");
	FILE *g = fopen(initrd, "w");
	if (!f || !g)
		return -1;
	fputs("not really a kernel", f);
	fclose(f);
	fclose(g);
	return 0;
}

static int remove_files(void **state)
{
	(void)state;
	unlink(kernel);
	unlink(initrd);
	rmdir(tmpdir);
	return 0;
}

/* argv from a NULL-terminated list; getopt may permute the pointers. */
static bool parse_list(struct vmm_options *o, char *err, size_t errlen, va_list ap)
{
	char *argv[MAX_ARGS + 2] = { (char *)"shoji-vmm" };
	int argc = 1;
	const char *a;
	while ((a = va_arg(ap, const char *)) != NULL) {
		assert_true(argc <= MAX_ARGS);
		argv[argc++] = (char *)a;
	}
	argv[argc] = NULL;
	err[0] = '\0';
	return options_parse(argc, argv, o, err, errlen);
}

static bool parse(struct vmm_options *o, ...)
{
	char err[512];
	va_list ap;
	va_start(ap, o);
	bool ok = parse_list(o, err, sizeof(err), ap);
	va_end(ap);
	if (!ok)
		fail_msg("refused: %s", err);
	return ok;
}

/* Asserts refusal with a one-line message that contains `needle`. */
static void expect_error(const char *needle, ...)
{
	struct vmm_options o;
	char err[512];
	va_list ap;
	va_start(ap, needle);
	bool ok = parse_list(&o, err, sizeof(err), ap);
	va_end(ap);
	if (ok)
		fail_msg("accepted; expected an error naming '%s'", needle);
	if (!strstr(err, needle))
		fail_msg("error \"%s\" does not name '%s'", err, needle);
	if (strchr(err, '\n'))
		fail_msg("error \"%s\" is more than one line", err);
}

static void test_kernel_errors(void **state)
{
	(void)state;
	expect_error("--kernel", NULL);
	expect_error("--kernel", "--cpus", "2", "--memory", "1G", NULL);
	expect_error("--kernel", "--kernel", "/nonexistent/shoji/bzImage", NULL);
	expect_error("/nonexistent/shoji/bzImage", "--kernel", "/nonexistent/shoji/bzImage", NULL);
	expect_error("--kernel", "--kernel", tmpdir, NULL);
	expect_error("--kernel", "--kernel", "", NULL);
	expect_error("--initrd", "--kernel", kernel, "--initrd", "/nonexistent/initrd", NULL);
	expect_error("--initrd", "--kernel", kernel, "--initrd", tmpdir, NULL);
}

static void test_unknown_and_missing(void **state)
{
	(void)state;
	expect_error("--bogus", "--kernel", kernel, "--bogus", NULL);
	expect_error("--bogus", "--kernel", kernel, "--bogus=1", NULL);
	expect_error("-x", "--kernel", kernel, "-x", NULL);
	expect_error("--kernel", "--kernel", NULL);
	expect_error("--cpus", "--kernel", kernel, "--cpus", NULL);
	expect_error("--memory", "--kernel", kernel, "--memory", NULL);
	expect_error("--serial", "--kernel", kernel, "--serial", NULL);
	expect_error("--log-level", "--kernel", kernel, "--log-level", NULL);
	expect_error("--cmdline", "--kernel", kernel, "--cmdline", NULL);
	expect_error("--initrd", "--kernel", kernel, "--initrd", NULL);
}

static void test_cpus_errors(void **state)
{
	(void)state;
	static const char *const bad[] = { "0", "255", "256", "abc", "-1", "", "1.5", "4x", " 4",
					   "0x4", "+2", "99999999999999999999999" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		expect_error("--cpus", "--kernel", kernel, "--cpus", bad[i], NULL);
	expect_error("--cpus", "--kernel", kernel, "--cpus=0", NULL);
}

static void test_memory_errors(void **state)
{
	(void)state;
	static const char *const bad[] = { "12X", "0", "16M", "31M", "1.5G", "", "-1G", "G",
					   "1 G", "2T", "99999999999999999999999",
					   "17592186044416T" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		expect_error("--memory", "--kernel", kernel, "--memory", bad[i], NULL);

	/* More than this host has (but under the absolute maximum). */
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	assert_true(pages > 0 && page > 0);
	uint64_t host_gib = (uint64_t)pages * (uint64_t)page / GiB;
	char more[32];
	snprintf(more, sizeof(more), "%lluG", (unsigned long long)host_gib + 2);
	expect_error("--memory", "--kernel", kernel, "--memory", more, NULL);
}

static void test_serial_and_log_errors(void **state)
{
	(void)state;
	static const char *const bad[] = { "bogus", "file=", "socket=", "file", "socket", "",
					   "File=/x", "tty ", "stdio" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		expect_error("--serial", "--kernel", kernel, "--serial", bad[i], NULL);
	/* sun_path holds 107 bytes and the NUL. */
	char long_socket[200] = "socket=/";
	memset(long_socket + strlen(long_socket), 's', 107);
	expect_error("--serial", "--kernel", kernel, "--serial", long_socket, NULL);

	expect_error("--log-level", "--kernel", kernel, "--log-level", "bogus", NULL);
	expect_error("--log-level", "--kernel", kernel, "--log-level", "", NULL);
	expect_error("--log-level", "--kernel", kernel, "--log-level", "trace", NULL);

	expect_error("--seccomp", "--kernel", kernel, "--seccomp", "bogus", NULL);
	expect_error("--seccomp", "--kernel", kernel, "--seccomp", "", NULL);
	expect_error("--seccomp", "--kernel", kernel, "--seccomp", NULL);
	expect_error("--seccomp", "--kernel", kernel, "--seccomp", "on", "--seccomp", "off", NULL);
}

static void test_duplicates_and_positional(void **state)
{
	(void)state;
	expect_error("--cpus", "--kernel", kernel, "--cpus", "2", "--cpus", "3", NULL);
	expect_error("--kernel", "--kernel", kernel, "--kernel", kernel, NULL);
	expect_error("--memory", "--kernel", kernel, "--memory", "1G", "--memory=2G", NULL);
	expect_error("--serial", "--kernel", kernel, "--serial", "off", "--serial", "tty", NULL);
	expect_error("--cmdline", "--kernel", kernel, "--cmdline", "a", "--cmdline", "b", NULL);
	expect_error("--log-level", "--kernel", kernel, "--log-level", "info", "--log-level",
		     "debug", NULL);
	expect_error("--initrd", "--kernel", kernel, "--initrd", initrd, "--initrd", initrd, NULL);

	expect_error("extra", "--kernel", kernel, "extra", NULL);
	expect_error("extra", "extra", "--kernel", kernel, NULL);
	expect_error(kernel, kernel, NULL);
}

static void test_defaults(void **state)
{
	(void)state;
	struct vmm_options o;
	parse(&o, "--kernel", kernel, NULL);
	assert_string_equal(o.kernel, kernel);
	assert_null(o.initrd);
	assert_string_equal(o.cmdline, VMM_DEFAULT_CMDLINE);
	assert_int_equal(o.cpus, 1);
	assert_int_equal(o.memory, VMM_DEFAULT_MEMORY);
	assert_int_equal(o.serial.kind, CONSOLE_TTY);
	assert_null(o.serial.path);
	assert_int_equal(o.log_level, LOG_LEVEL_INFO);
	assert_true(o.seccomp);
	assert_false(o.help);
	assert_false(o.version);
}

static uint64_t memory_of(const char *value)
{
	struct vmm_options o;
	parse(&o, "--kernel", kernel, "--memory", value, NULL);
	return o.memory;
}

static void test_memory_values(void **state)
{
	(void)state;
	assert_int_equal(memory_of("512"), 512 * MiB);   /* bare number: MiB */
	assert_int_equal(memory_of("32"), 32 * MiB);
	assert_int_equal(memory_of("2G"), 2 * GiB);
	assert_int_equal(memory_of("512M"), 512 * MiB);
	assert_int_equal(memory_of("32M"), VMM_MIN_MEMORY);
	assert_int_equal(memory_of("1GiB"), GiB);
	assert_int_equal(memory_of("1048576K"), GiB);
}

static void test_valid_values(void **state)
{
	(void)state;
	struct vmm_options o;
	parse(&o, "--kernel", kernel, "--initrd", initrd, "--cmdline", "console=ttyS0 quiet",
	      "--cpus", "254", "--memory", "1G", "--log-level", "debug", NULL);
	assert_string_equal(o.initrd, initrd);
	assert_string_equal(o.cmdline, "console=ttyS0 quiet");
	assert_int_equal(o.cpus, 254);
	assert_int_equal(o.memory, GiB);
	assert_int_equal(o.log_level, LOG_LEVEL_DEBUG);

	parse(&o, "--cpus", "1", "--kernel", kernel, "--log-level", "error", NULL);
	assert_int_equal(o.cpus, 1);
	assert_int_equal(o.log_level, LOG_LEVEL_ERROR);
	parse(&o, "--kernel", kernel, "--log-level", "warn", NULL);
	assert_int_equal(o.log_level, LOG_LEVEL_WARN);
	parse(&o, "--kernel", kernel, "--seccomp", "off", NULL);
	assert_false(o.seccomp);
	parse(&o, "--kernel", kernel, "--seccomp=on", NULL);
	assert_true(o.seccomp);
}

static void test_serial_values(void **state)
{
	(void)state;
	struct vmm_options o;
	parse(&o, "--kernel", kernel, "--serial", "file=/x", NULL);
	assert_int_equal(o.serial.kind, CONSOLE_FILE);
	assert_string_equal(o.serial.path, "/x");
	parse(&o, "--kernel", kernel, "--serial", "socket=/y", NULL);
	assert_int_equal(o.serial.kind, CONSOLE_SOCKET);
	assert_string_equal(o.serial.path, "/y");
	parse(&o, "--kernel", kernel, "--serial", "off", NULL);
	assert_int_equal(o.serial.kind, CONSOLE_OFF);
	parse(&o, "--kernel", kernel, "--serial", "tty", NULL);
	assert_int_equal(o.serial.kind, CONSOLE_TTY);
	char socket_107[200] = "socket=/";
	memset(socket_107 + strlen(socket_107), 's', 106);
	parse(&o, "--kernel", kernel, "--serial", socket_107, NULL);
	assert_int_equal(strlen(o.serial.path), 107);
	/* A path may itself contain '='. */
	parse(&o, "--kernel", kernel, "--serial", "file=/tmp/a=b", NULL);
	assert_string_equal(o.serial.path, "/tmp/a=b");
}

static void test_equals_form(void **state)
{
	(void)state;
	struct vmm_options o;
	char kflag[160];
	snprintf(kflag, sizeof(kflag), "--kernel=%s", kernel);
	parse(&o, kflag, "--cpus=4", "--memory=2G", "--serial=file=/tmp/out",
	      "--cmdline=console=ttyS0 root=/dev/vda", "--log-level=warn", NULL);
	assert_string_equal(o.kernel, kernel);
	assert_int_equal(o.cpus, 4);
	assert_int_equal(o.memory, 2 * GiB);
	assert_int_equal(o.serial.kind, CONSOLE_FILE);
	assert_string_equal(o.serial.path, "/tmp/out");
	assert_string_equal(o.cmdline, "console=ttyS0 root=/dev/vda");
	assert_int_equal(o.log_level, LOG_LEVEL_WARN);
}

static void test_help_version(void **state)
{
	(void)state;
	struct vmm_options o;
	parse(&o, "--help", NULL);
	assert_true(o.help);
	parse(&o, "-h", NULL);
	assert_true(o.help);
	parse(&o, "--version", NULL);
	assert_true(o.version);
	assert_false(o.help);
	parse(&o, "-V", NULL);
	assert_true(o.version);
	assert_non_null(strstr(options_usage, "--kernel"));
	assert_non_null(strstr(options_usage, "--serial"));
}

/*
 * Runs `fn` in a child process: the cases below can leave getopt's hidden
 * state pointing into a finished argv, which must not leak into the rest.
 */
static void in_child(void (*fn)(void), const char *what)
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fn();
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("%s: failed (the line above says how)", what);
}

static void child_check(bool ok, const char *what, const char *err)
{
	if (!ok) {
		fprintf(stderr, "%s: %s\n", what, err);
		_exit(1);
	}
}

/*
 * An unknown short option in a cluster ("-xV") is the one named.
 * Regression test (bug found by this test, fixed): options_parse names
 * argv[optind - 1], which inside a cluster is the previous argument.
 */
static void cluster_names_option(void)
{
	struct vmm_options o;
	char err[256] = "";
	char *argv[] = { (char *)"shoji-vmm", (char *)"--kernel", kernel, (char *)"-xV", NULL };
	bool ok = options_parse(4, argv, &o, err, sizeof(err));
	child_check(!ok, "\"-xV\" accepted", "");
	child_check(strstr(err, "-x") != NULL, "error for \"-xV\" does not name -x", err);
}

static void test_cluster_unknown(void **state)
{
	(void)state;
	in_child(cluster_names_option, "unknown option inside -xV");
}

/*
 * A refused command line does not change how the next one parses.
 * Regression test (bug found by this test, fixed): options_parse resets getopt with
 * optind = 1, which keeps glibc's position inside the old "-xV"; optind = 0
 * reinitializes it.
 */
static void parse_after_refused_cluster(void)
{
	struct vmm_options o;
	char err[256] = "";
	char *bad[] = { (char *)"shoji-vmm", (char *)"-xV", NULL };
	child_check(!options_parse(2, bad, &o, err, sizeof(err)), "\"-xV\" accepted", "");
	char *good[] = { (char *)"shoji-vmm", (char *)"--kernel", kernel, NULL };
	bool ok = options_parse(3, good, &o, err, sizeof(err));
	child_check(ok, "valid command line refused after a refused one", err);
	child_check(!o.version, "valid command line parsed with --version", "");
}

static void test_reparse_after_error(void **state)
{
	(void)state;
	in_child(parse_after_refused_cluster, "parse after a refused -xV");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kernel_errors),
		cmocka_unit_test(test_unknown_and_missing),
		cmocka_unit_test(test_cpus_errors),
		cmocka_unit_test(test_memory_errors),
		cmocka_unit_test(test_serial_and_log_errors),
		cmocka_unit_test(test_duplicates_and_positional),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_memory_values),
		cmocka_unit_test(test_valid_values),
		cmocka_unit_test(test_serial_values),
		cmocka_unit_test(test_equals_form),
		cmocka_unit_test(test_help_version),
		cmocka_unit_test(test_cluster_unknown),
		cmocka_unit_test(test_reparse_after_error),
	};
	return cmocka_run_group_tests_name("vmm/options", tests, make_files, remove_files);
}
