/*
 * The log rate limiter (src/base/ratelimit.h) and log_limited() in
 * src/base/log.h: `burst` lines at once, then one per interval/burst; an
 * idle limiter refills to `burst`, never beyond; dropped lines are counted
 * and announced in one line before the next line let through; a line below
 * the log level takes no token; threads sharing a limiter let exactly
 * `burst` lines through at one instant and lose no count.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/log.h"
#include "base/ratelimit.h"

#define SEC 1000000000ull

static void test_burst_then_steady_rate(void **state)
{
	(void)state;
	struct ratelimit rl = RATELIMIT_INIT(60, 5);
	uint64_t held = 99;
	uint64_t t0 = 1000 * SEC;
	for (int i = 0; i < 5; i++) {
		assert_true(ratelimit_pass_at(&rl, t0, &held));
		assert_int_equal(held, 0);
	}
	for (int i = 0; i < 100; i++)
		assert_false(ratelimit_pass_at(&rl, t0, &held));
	/* One token every 12 s: not yet at 11.9 s, at 12 s yes, with the count. */
	assert_false(ratelimit_pass_at(&rl, t0 + 11 * SEC + 900000000ull, &held));
	assert_true(ratelimit_pass_at(&rl, t0 + 12 * SEC, &held));
	assert_int_equal(held, 101);
	assert_false(ratelimit_pass_at(&rl, t0 + 12 * SEC, &held));
	/* The count started again after it was reported. */
	assert_true(ratelimit_pass_at(&rl, t0 + 24 * SEC, &held));
	assert_int_equal(held, 1);
}

static void test_idle_refills_to_burst_only(void **state)
{
	(void)state;
	struct ratelimit rl;
	ratelimit_init(&rl, 10, 3);
	uint64_t held, t = 5 * SEC;
	assert_true(ratelimit_pass_at(&rl, t, &held));
	/* An hour of silence buys 3 lines, not 360. */
	t += 3600 * SEC;
	unsigned passed = 0;
	for (int i = 0; i < 50; i++)
		passed += ratelimit_pass_at(&rl, t, &held);
	assert_int_equal(passed, 3);
	/* A limiter with no burst lets nothing through. */
	struct ratelimit none = RATELIMIT_INIT(10, 0);
	assert_false(ratelimit_pass_at(&none, t, &held));
}

/* ---- through the log ---- */

static int saved_stderr = -1, capture_fd = -1;

static void capture_start(void)
{
	fflush(stderr);
	capture_fd = memfd_create("stderr", MFD_CLOEXEC);
	assert_true(capture_fd >= 0);
	saved_stderr = dup(STDERR_FILENO);
	assert_true(dup2(capture_fd, STDERR_FILENO) == STDERR_FILENO);
}

/* Stops capturing; returns what was written (static buffer). */
static const char *capture_end(void)
{
	static char text[65536];
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	ssize_t n = pread(capture_fd, text, sizeof(text) - 1, 0);
	close(capture_fd);
	text[n > 0 ? n : 0] = '\0';
	return text;
}

static unsigned count_lines(const char *text)
{
	unsigned n = 0;
	for (; *text; text++)
		n += *text == '\n';
	return n;
}

static void test_log_limited_drops_and_reports(void **state)
{
	(void)state;
	struct ratelimit rl = RATELIMIT_INIT(3600, 2);
	capture_start();
	for (int i = 0; i < 1000; i++)
		log_limited(&rl, LOG_LEVEL_WARN, "guest did thing %d", i);
	const char *out = capture_end();
	assert_int_equal(count_lines(out), 2);
	assert_non_null(strstr(out, "test-ratelimit: warn: guest did thing 0\n"));
	assert_non_null(strstr(out, "guest did thing 1\n"));

	/* Time passes (the bucket is emptied by hand): the next line comes
	 * after one that says how many were dropped. */
	atomic_store(&rl.full_at_ns, 0);
	capture_start();
	log_limited(&rl, LOG_LEVEL_WARN, "guest did thing %d", 1000);
	out = capture_end();
	assert_string_equal(out, "test-ratelimit: warn: (rate limit: 998 lines like the next one "
				 "were not logged)\ntest-ratelimit: warn: guest did thing 1000\n");
}

static void test_below_level_takes_no_token(void **state)
{
	(void)state;
	struct ratelimit rl = RATELIMIT_INIT(3600, 1);
	capture_start();
	for (int i = 0; i < 10; i++)
		log_limited(&rl, LOG_LEVEL_DEBUG, "debug %d", i); /* the level is info */
	log_limited(&rl, LOG_LEVEL_WARN, "the one warning");
	const char *out = capture_end();
	assert_string_equal(out, "test-ratelimit: warn: the one warning\n");
}

/* ---- threads ---- */

#define THREADS 4
#define CALLS   20000

static struct ratelimit shared = RATELIMIT_INIT(60, 7);
static _Atomic unsigned passed_total;
static _Atomic uint64_t reported_total;

static void *hammer(void *arg)
{
	(void)arg;
	for (int i = 0; i < CALLS; i++) {
		uint64_t held;
		if (ratelimit_pass_at(&shared, 42 * SEC, &held)) {
			passed_total++;
			reported_total += held;
		}
	}
	return NULL;
}

static void test_threads_share_one_limiter(void **state)
{
	(void)state;
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, hammer, NULL), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(passed_total, 7);
	/* Every call is either let through or counted, once. */
	uint64_t held;
	assert_true(ratelimit_pass_at(&shared, 1000 * SEC, &held));
	assert_int_equal(reported_total + held, (uint64_t)THREADS * CALLS - 7);
}

int main(void)
{
	log_init("test-ratelimit", LOG_LEVEL_INFO);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_then_steady_rate),
		cmocka_unit_test(test_idle_refills_to_burst_only),
		cmocka_unit_test(test_log_limited_drops_and_reports),
		cmocka_unit_test(test_below_level_takes_no_token),
		cmocka_unit_test(test_threads_share_one_limiter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
