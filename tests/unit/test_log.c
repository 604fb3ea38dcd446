/*
 * Unit tests for src/base/log.c's line prefixes: the syslog priority when
 * stderr is the journal ($JOURNAL_STREAM names stderr's device and inode),
 * not when the variable names another stream (a child that inherited it);
 * a timestamp only when asked for and stderr is not the journal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"

static char path[64];
static int saved_stderr = -1;

/* stderr into a fresh temporary file, for the test to read back. */
static int setup(void **state)
{
	(void)state;
	snprintf(path, sizeof(path), "/tmp/shoji-log-XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	saved_stderr = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);
	unsetenv("JOURNAL_STREAM");
	log_set_timestamps(false);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	unlink(path);
	return 0;
}

static const char *output(void)
{
	static char buf[4096];
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void set_journal_stream(dev_t dev, ino_t ino)
{
	char v[64];
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)dev, (unsigned long long)ino);
	setenv("JOURNAL_STREAM", v, 1);
}

static void log_each_level(void)
{
	log_error("e %d", 1);
	log_warn("w");
	log_info("i");
	log_debug("d");
}

static void test_journal_priorities(void **state)
{
	(void)state;
	struct stat st;
	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	set_journal_stream(st.st_dev, st.st_ino);
	log_init("t", LOG_LEVEL_DEBUG);
	log_set_timestamps(true); /* the journal keeps the time: none of ours */
	log_each_level();
	assert_string_equal(output(), "<3>t: error: e 1\n<4>t: warn: w\n<6>t: info: i\n<7>t: debug: d\n");
}

static void test_plain_without_journal(void **state)
{
	(void)state;
	log_init("t", LOG_LEVEL_DEBUG);
	log_each_level();
	assert_string_equal(output(), "t: error: e 1\nt: warn: w\nt: info: i\nt: debug: d\n");
}

/* Inherited by a process whose stderr went elsewhere (a VMM's log file). */
static void test_other_stream_is_not_journal(void **state)
{
	(void)state;
	struct stat st;
	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	set_journal_stream(st.st_dev, st.st_ino + 1);
	log_init("t", LOG_LEVEL_INFO);
	log_error("x");
	setenv("JOURNAL_STREAM", "garbage", 1);
	log_init("t", LOG_LEVEL_INFO);
	log_error("y");
	assert_string_equal(output(), "t: error: x\nt: error: y\n");
}

static void test_timestamps(void **state)
{
	(void)state;
	log_init("t", LOG_LEVEL_INFO);
	log_set_timestamps(true);
	log_info("hello");
	log_set_timestamps(false);
	log_info("plain");
	const char *out = output();
	/* "2026-01-31T12:00:00.123Z t: info: hello\n" */
	assert_int_equal(strlen(out), 25 + strlen("t: info: hello\n") + strlen("t: info: plain\n"));
	assert_true(out[4] == '-' && out[7] == '-' && out[10] == 'T' && out[13] == ':' &&
		    out[16] == ':' && out[19] == '.' && out[23] == 'Z' && out[24] == ' ');
	assert_string_equal(out + 24, " t: info: hello\nt: info: plain\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_journal_priorities, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plain_without_journal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_stream_is_not_journal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timestamps, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
