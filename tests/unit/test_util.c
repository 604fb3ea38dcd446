/*
 * Unit tests for src/base/util.h: parse_size and parse_uint, the parsers
 * every front end uses for user input. The header promises: binary units
 * K/M/G/T with an optional trailing "B" or "iB", and never trailing
 * garbage, signs, whitespace or overflow. Also format_size and the range
 * helper the address checks rely on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/util.h"

static void expect_size(const char *text, uint64_t want)
{
	uint64_t v = 0xdeadbeef;
	if (!parse_size(text, &v))
		fail_msg("parse_size(\"%s\") refused a valid size", text);
	if (v != want)
		fail_msg("parse_size(\"%s\") = %llu, want %llu", text,
			 (unsigned long long)v, (unsigned long long)want);
}

static void expect_bad_size(const char *text)
{
	uint64_t v = 0x1234;
	if (parse_size(text, &v))
		fail_msg("parse_size(\"%s\") accepted it as %llu", text, (unsigned long long)v);
	assert_int_equal(v, 0x1234); /* output untouched on failure */
}

static void test_parse_size_units(void **state)
{
	(void)state;
	expect_size("0", 0);
	expect_size("1048576", 1048576);
	expect_size("64K", 64 * KiB);
	expect_size("512M", 512 * MiB);
	expect_size("2G", 2 * GiB);
	expect_size("3T", 3 * (GiB << 10));
	expect_size("1B", 1);
	expect_size("16KB", 16 * KiB);
	expect_size("16KiB", 16 * KiB);
	expect_size("1MiB", MiB);
	expect_size("1GB", GiB);
	expect_size("1TiB", GiB << 10);
}

static void test_parse_size_limits(void **state)
{
	(void)state;
	expect_size("18446744073709551615", UINT64_MAX);
	expect_size("16777215T", (UINT64_C(16777215) << 40));
	expect_size("17179869183G", (UINT64_C(17179869183) << 30));
	expect_bad_size("18446744073709551616");        /* 2^64 */
	expect_bad_size("99999999999999999999999");
	expect_bad_size("16777216T");                   /* 2^24 TiB = 2^64 */
	expect_bad_size("17179869184G");                /* 2^34 GiB = 2^64 */
	expect_bad_size("18014398509481984K");          /* 2^54 KiB = 2^64 */
}

static void test_parse_size_garbage(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", "M", "G", "B", "iB", "12X", "1.5G", "1,5G", " 1G", "1G ", "1 G",
		"-1", "+1", "-1M", "0x10", "1e3", "1GG", "1GiBB", "1iB", "1Bi", "1MB ",
		"1KM", "1Gi", "1\n", "1\tM",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		expect_bad_size(bad[i]);
}

static void expect_uint(const char *text, uint64_t min, uint64_t max, uint64_t want)
{
	uint64_t v = 0xdeadbeef;
	if (!parse_uint(text, min, max, &v))
		fail_msg("parse_uint(\"%s\", %llu, %llu) refused it", text,
			 (unsigned long long)min, (unsigned long long)max);
	assert_int_equal(v, want);
}

static void expect_bad_uint(const char *text, uint64_t min, uint64_t max)
{
	uint64_t v = 0x1234;
	if (parse_uint(text, min, max, &v))
		fail_msg("parse_uint(\"%s\", %llu, %llu) accepted it as %llu", text,
			 (unsigned long long)min, (unsigned long long)max, (unsigned long long)v);
	assert_int_equal(v, 0x1234);
}

static void test_parse_uint_range(void **state)
{
	(void)state;
	expect_uint("0", 0, 10, 0);
	expect_uint("10", 0, 10, 10);
	expect_uint("1", 1, 254, 1);
	expect_uint("254", 1, 254, 254);
	expect_bad_uint("0", 1, 254);
	expect_bad_uint("255", 1, 254);
	expect_uint("18446744073709551615", 0, UINT64_MAX, UINT64_MAX);
	expect_bad_uint("18446744073709551616", 0, UINT64_MAX);
	expect_bad_uint("36893488147419103232", 0, UINT64_MAX);
}

static void test_parse_uint_garbage(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", "-1", "+1", " 1", "1 ", "1a", "a1", "abc", "0x10", "1.0", "1e2",
		"4K", "1M", "-0", "\t3",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		expect_bad_uint(bad[i], 0, UINT64_MAX);
}

static void test_format_size(void **state)
{
	(void)state;
	char buf[32];
	assert_string_equal(format_size(2 * GiB, buf, sizeof(buf)), "2 GiB");
	assert_string_equal(format_size(512 * MiB, buf, sizeof(buf)), "512 MiB");
	assert_string_equal(format_size(12345, buf, sizeof(buf)), "12345 B");
	assert_string_equal(format_size(0, buf, sizeof(buf)), "0 B");
	assert_string_equal(format_size(GiB + MiB, buf, sizeof(buf)), "1025 MiB");
}

static void test_range_within(void **state)
{
	(void)state;
	assert_true(range_within(0, 10, 10));
	assert_true(range_within(10, 0, 10));
	assert_false(range_within(1, 10, 10));
	assert_false(range_within(11, 0, 10));
	assert_false(range_within(UINT64_MAX, 2, UINT64_MAX));
	assert_false(range_within(5, UINT64_MAX, 10));
	assert_true(range_within(UINT64_MAX - 1, 1, UINT64_MAX));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size_units),
		cmocka_unit_test(test_parse_size_limits),
		cmocka_unit_test(test_parse_size_garbage),
		cmocka_unit_test(test_parse_uint_range),
		cmocka_unit_test(test_parse_uint_garbage),
		cmocka_unit_test(test_format_size),
		cmocka_unit_test(test_range_within),
	};
	return cmocka_run_group_tests_name("base/util", tests, NULL, NULL);
}
