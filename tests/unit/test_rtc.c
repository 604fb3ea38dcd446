/*
 * Unit tests for the CMOS RTC (src/dev/rtc.h) driven by an injected clock.
 * Per the MC146818 data sheet: register B selects BCD or binary (DM, bit 2)
 * and 12 or 24 hours (bit 1; in 12-hour mode bit 7 of the hour is PM);
 * SET (bit 7) freezes the clock while the guest writes a new time, which
 * then runs on from the host clock; day of week 1 = Sunday; register D bit 7
 * says the time is valid. The century is CMOS register 0x32, the one the
 * FADT names. Time is UTC.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <time.h>

#include "dev/rtc.h"

#define SECONDS 0x00
#define MINUTES 0x02
#define HOURS   0x04
#define WEEKDAY 0x06
#define DAY     0x07
#define MONTH   0x08
#define YEAR    0x09
#define REG_A   0x0a
#define REG_B   0x0b
#define REG_D   0x0d
#define CENTURY 0x32

#define B_SET    0x80
#define B_BINARY 0x04
#define B_24H    0x02
#define HOUR_PM  0x80
#define D_VRT    0x80

static time_t fake_now;

static time_t fake_clock(void)
{
	return fake_now;
}

static time_t utc(int year, int mon, int day, int hour, int min, int sec)
{
	struct tm tm = { .tm_year = year - 1900, .tm_mon = mon - 1, .tm_mday = day,
			 .tm_hour = hour, .tm_min = min, .tm_sec = sec };
	return timegm(&tm);
}

static uint8_t rd(struct rtc *rtc, uint8_t reg)
{
	uint8_t v = 0;
	rtc_io_ops.write(rtc, 0, &reg, 1);
	rtc_io_ops.read(rtc, 1, &v, 1);
	return v;
}

static void wr(struct rtc *rtc, uint8_t reg, uint8_t v)
{
	rtc_io_ops.write(rtc, 0, &reg, 1);
	rtc_io_ops.write(rtc, 1, &v, 1);
}

static int setup(void **state)
{
	fake_now = utc(2024, 2, 29, 13, 45, 56); /* a Thursday */
	*state = rtc_create(fake_clock);
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	rtc_destroy(*state);
	return 0;
}

struct wall {
	uint8_t sec, min, hour, wday, day, month, year, century;
};

static void expect_time(struct rtc *rtc, struct wall w)
{
	struct wall got = {
		rd(rtc, SECONDS), rd(rtc, MINUTES), rd(rtc, HOURS), rd(rtc, WEEKDAY),
		rd(rtc, DAY), rd(rtc, MONTH), rd(rtc, YEAR), rd(rtc, CENTURY),
	};
	if (memcmp(&got, &w, sizeof(w)) != 0)
		fail_msg("RTC reads %02x:%02x:%02x wday %02x %02x-%02x-%02x%02x, "
			 "want %02x:%02x:%02x wday %02x %02x-%02x-%02x%02x",
			 got.hour, got.min, got.sec, got.wday, got.day, got.month, got.century,
			 got.year, w.hour, w.min, w.sec, w.wday, w.day, w.month, w.century, w.year);
}

static void test_bcd_24h(void **state)
{
	struct rtc *rtc = *state;
	wr(rtc, REG_B, B_24H);
	expect_time(rtc, (struct wall){ 0x56, 0x45, 0x13, 0x05, 0x29, 0x02, 0x24, 0x20 });
	fake_now += 3600 * 11; /* 00:45:56 next day, 1 March */
	expect_time(rtc, (struct wall){ 0x56, 0x45, 0x00, 0x06, 0x01, 0x03, 0x24, 0x20 });
}

static void test_binary_24h(void **state)
{
	struct rtc *rtc = *state;
	wr(rtc, REG_B, B_24H | B_BINARY);
	expect_time(rtc, (struct wall){ 56, 45, 13, 5, 29, 2, 24, 20 });
}

static uint8_t hour_at(struct rtc *rtc, int hour)
{
	fake_now = utc(2024, 2, 29, hour, 30, 0);
	return rd(rtc, HOURS);
}

static void test_12h(void **state)
{
	struct rtc *rtc = *state;
	wr(rtc, REG_B, 0); /* BCD, 12-hour */
	assert_int_equal(hour_at(rtc, 0), 0x12);            /* 12 AM */
	assert_int_equal(hour_at(rtc, 1), 0x01);
	assert_int_equal(hour_at(rtc, 11), 0x11);
	assert_int_equal(hour_at(rtc, 12), HOUR_PM | 0x12); /* 12 PM */
	assert_int_equal(hour_at(rtc, 13), HOUR_PM | 0x01);
	assert_int_equal(hour_at(rtc, 23), HOUR_PM | 0x11);
	wr(rtc, REG_B, B_BINARY); /* binary, 12-hour */
	assert_int_equal(hour_at(rtc, 0), 12);
	assert_int_equal(hour_at(rtc, 10), 10);
	assert_int_equal(hour_at(rtc, 12), HOUR_PM | 12);
	assert_int_equal(hour_at(rtc, 23), HOUR_PM | 11);
	assert_int_equal(rd(rtc, MINUTES), 30);
}

/* The guest sets 2031-06-15 08:30:00 (a Sunday); it then runs with the host clock. */
static void test_set_time(void **state)
{
	struct rtc *rtc = *state;
	wr(rtc, REG_B, B_24H | B_SET);
	wr(rtc, SECONDS, 0x00);
	wr(rtc, MINUTES, 0x30);
	wr(rtc, HOURS, 0x08);
	wr(rtc, DAY, 0x15);
	wr(rtc, MONTH, 0x06);
	wr(rtc, YEAR, 0x31);
	wr(rtc, CENTURY, 0x20);
	/* While SET is on the clock does not run. */
	fake_now += 30;
	assert_int_equal(rd(rtc, MINUTES), 0x30);
	assert_int_equal(rd(rtc, SECONDS), 0x00);
	wr(rtc, REG_B, B_24H);
	expect_time(rtc, (struct wall){ 0x00, 0x30, 0x08, 0x01, 0x15, 0x06, 0x31, 0x20 });
	fake_now += 125;
	expect_time(rtc, (struct wall){ 0x05, 0x32, 0x08, 0x01, 0x15, 0x06, 0x31, 0x20 });

	/* Binary 12-hour mode: 7 PM written, 19:00 read back in 24-hour mode. */
	wr(rtc, REG_B, B_BINARY | B_SET);
	wr(rtc, HOURS, HOUR_PM | 7);
	wr(rtc, MINUTES, 0);
	wr(rtc, SECONDS, 0);
	wr(rtc, REG_B, B_BINARY | B_24H);
	assert_int_equal(rd(rtc, HOURS), 19);
	assert_int_equal(rd(rtc, DAY), 15);
	/* 12 AM written in 12-hour mode is midnight. */
	wr(rtc, REG_B, B_BINARY | B_SET);
	wr(rtc, HOURS, 12);
	wr(rtc, REG_B, B_BINARY | B_24H);
	assert_int_equal(rd(rtc, HOURS), 0);
}

/* 2099-12-31 23:59:50 + 15 s: the century register moves too. */
static void test_century_rollover(void **state)
{
	struct rtc *rtc = *state;
	wr(rtc, REG_B, B_24H | B_SET);
	wr(rtc, CENTURY, 0x20);
	wr(rtc, YEAR, 0x99);
	wr(rtc, MONTH, 0x12);
	wr(rtc, DAY, 0x31);
	wr(rtc, HOURS, 0x23);
	wr(rtc, MINUTES, 0x59);
	wr(rtc, SECONDS, 0x50);
	wr(rtc, REG_B, B_24H);
	expect_time(rtc, (struct wall){ 0x50, 0x59, 0x23, 0x05, 0x31, 0x12, 0x99, 0x20 });
	fake_now += 15;
	expect_time(rtc, (struct wall){ 0x05, 0x00, 0x00, 0x06, 0x01, 0x01, 0x00, 0x21 });
}

static void test_status_registers(void **state)
{
	struct rtc *rtc = *state;
	assert_true(rd(rtc, REG_D) & D_VRT);
	wr(rtc, REG_D, 0);                      /* read-only */
	assert_true(rd(rtc, REG_D) & D_VRT);
	wr(rtc, REG_B, B_24H | B_BINARY);
	assert_int_equal(rd(rtc, REG_B), B_24H | B_BINARY);
	/* Bit 7 of the index port is the NMI mask, not part of the register number. */
	uint8_t idx = 0x80 | HOURS, v = 0;
	rtc_io_ops.write(rtc, 0, &idx, 1);
	rtc_io_ops.read(rtc, 1, &v, 1);
	assert_int_equal(v, 13);
}

static void test_cmos_memory(void **state)
{
	struct rtc *rtc = *state;
	for (uint8_t reg = 0x0e; reg < 0x80; reg++) {
		if (reg == CENTURY)
			continue;
		wr(rtc, reg, (uint8_t)(reg ^ 0xa5));
	}
	for (uint8_t reg = 0x0e; reg < 0x80; reg++) {
		if (reg == CENTURY)
			continue;
		assert_int_equal(rd(rtc, reg), (uint8_t)(reg ^ 0xa5));
	}
}

static uint8_t bin(struct rtc *rtc, uint8_t reg)
{
	return rd(rtc, reg);
}

/* The RTC's calendar against libc's over 1970-2299, leap years included. */
static void test_calendar_sweep(void **state)
{
	struct rtc *rtc = *state;
	wr(rtc, REG_B, B_24H | B_BINARY);
	const time_t end = utc(2299, 12, 31, 23, 59, 59);
	for (time_t t = 0; t < end; t += 86400 * 13 + 3671) {
		fake_now = t;
		struct tm tm;
		gmtime_r(&t, &tm);
		int year = tm.tm_year + 1900;
		if (bin(rtc, SECONDS) != tm.tm_sec || bin(rtc, MINUTES) != tm.tm_min ||
		    bin(rtc, HOURS) != tm.tm_hour || bin(rtc, DAY) != tm.tm_mday ||
		    bin(rtc, MONTH) != tm.tm_mon + 1 || bin(rtc, YEAR) != year % 100 ||
		    bin(rtc, CENTURY) != year / 100 || bin(rtc, WEEKDAY) != tm.tm_wday + 1)
			fail_msg("at %lld the RTC reads %u-%u-%u%u %u:%u:%u wday %u, want %d-%d-%d "
				 "%d:%d:%d wday %d", (long long)t, bin(rtc, DAY), bin(rtc, MONTH),
				 bin(rtc, CENTURY), bin(rtc, YEAR), bin(rtc, HOURS), bin(rtc, MINUTES),
				 bin(rtc, SECONDS), bin(rtc, WEEKDAY), tm.tm_mday, tm.tm_mon + 1, year,
				 tm.tm_hour, tm.tm_min, tm.tm_sec, tm.tm_wday + 1);
	}
}

static void set_date(struct rtc *rtc, int year, int mon, int day, int hour, int min, int sec)
{
	wr(rtc, REG_B, B_24H | B_BINARY | B_SET);
	wr(rtc, CENTURY, (uint8_t)(year / 100));
	wr(rtc, YEAR, (uint8_t)(year % 100));
	wr(rtc, MONTH, (uint8_t)mon);
	wr(rtc, DAY, (uint8_t)day);
	wr(rtc, HOURS, (uint8_t)hour);
	wr(rtc, MINUTES, (uint8_t)min);
	wr(rtc, SECONDS, (uint8_t)sec);
	wr(rtc, REG_B, B_24H | B_BINARY);
}

/* Leap days the guest sets, and what follows them. */
static void test_set_leap_days(void **state)
{
	struct rtc *rtc = *state;
	static const struct {
		int year, mon, day;      /* set at 23:59:59 */
		int next_mon, next_day;  /* one second later */
	} cases[] = {
		{ 2000, 2, 28, 2, 29 }, { 2000, 2, 29, 3, 1 }, { 2100, 2, 28, 3, 1 },
		{ 2024, 2, 28, 2, 29 }, { 2023, 2, 28, 3, 1 }, { 1999, 12, 31, 1, 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		set_date(rtc, cases[i].year, cases[i].mon, cases[i].day, 23, 59, 59);
		assert_int_equal(bin(rtc, DAY), cases[i].day);
		fake_now += 1;
		if (bin(rtc, MONTH) != cases[i].next_mon || bin(rtc, DAY) != cases[i].next_day ||
		    bin(rtc, HOURS) != 0 || bin(rtc, SECONDS) != 0)
			fail_msg("%d-%02d-%02d 23:59:59 + 1 s reads %02u-%02u %02u:%02u:%02u",
				 cases[i].year, cases[i].mon, cases[i].day, bin(rtc, MONTH),
				 bin(rtc, DAY), bin(rtc, HOURS), bin(rtc, MINUTES), bin(rtc, SECONDS));
	}
}

/* A guest may write any byte while SET: the clock stays a valid date. */
static void test_set_garbage(void **state)
{
	struct rtc *rtc = *state;
	static const uint8_t junk[] = { 0x00, 0x13, 0x32, 0x7f, 0x99, 0xa0, 0xff };
	static const uint8_t modes[] = { B_24H, B_24H | B_BINARY, 0, B_BINARY };
	for (size_t m = 0; m < sizeof(modes); m++) {
		for (size_t i = 0; i < sizeof(junk); i++) {
			wr(rtc, REG_B, modes[m] | B_SET);
			for (uint8_t reg = SECONDS; reg <= YEAR; reg++)
				wr(rtc, reg, junk[i]);
			wr(rtc, CENTURY, junk[(i + 3) % sizeof(junk)]);
			wr(rtc, REG_B, B_24H | B_BINARY);
			fake_now += 1;
			assert_in_range(bin(rtc, SECONDS), 0, 59);
			assert_in_range(bin(rtc, MINUTES), 0, 59);
			assert_in_range(bin(rtc, HOURS), 0, 23);
			assert_in_range(bin(rtc, WEEKDAY), 1, 7);
			assert_in_range(bin(rtc, DAY), 1, 31);
			assert_in_range(bin(rtc, MONTH), 1, 12);
			assert_in_range(bin(rtc, YEAR), 0, 99);
			assert_true(rd(rtc, REG_D) & D_VRT);
		}
	}
}

/* NULL clock: host time, which is neither 0 nor far from time(NULL). */
static void test_default_clock(void **state)
{
	(void)state;
	struct rtc *rtc = rtc_create(NULL);
	assert_non_null(rtc);
	wr(rtc, REG_B, B_24H | B_BINARY);
	struct tm now;
	time_t t = time(NULL);
	gmtime_r(&t, &now);
	assert_int_equal(rd(rtc, CENTURY) * 100 + rd(rtc, YEAR), now.tm_year + 1900);
	rtc_destroy(rtc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bcd_24h, setup, teardown),
		cmocka_unit_test_setup_teardown(test_binary_24h, setup, teardown),
		cmocka_unit_test_setup_teardown(test_12h, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_century_rollover, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cmos_memory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_calendar_sweep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_leap_days, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_garbage, setup, teardown),
		cmocka_unit_test(test_default_clock),
	};
	return cmocka_run_group_tests_name("dev/rtc", tests, NULL, NULL);
}
