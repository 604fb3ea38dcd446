/* CMOS RTC model (see rtc.h). */
#include "dev/rtc.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define CMOS_SIZE     128
#define REG_SECONDS   0x00
#define REG_MINUTES   0x02
#define REG_HOURS     0x04
#define REG_WEEKDAY   0x06
#define REG_DAY       0x07
#define REG_MONTH     0x08
#define REG_YEAR      0x09
#define REG_A         0x0a
#define REG_B         0x0b
#define REG_C         0x0c
#define REG_D         0x0d
#define REG_CENTURY   0x32

#define B_24H    0x02
#define B_BINARY 0x04
#define B_SET    0x80
#define D_VRT    0x80
#define HOUR_PM  0x80

struct rtc {
	pthread_mutex_t lock;
	time_t (*clock)(void);
	uint8_t index;
	uint8_t cmos[CMOS_SIZE];
	int64_t offset;      /* guest time minus host time, seconds */
	struct tm staged;    /* time being set while B.SET is on */
};

static time_t rtc_default_clock(void)
{
	return time(NULL);
}

/*
 * Civil date <-> days since 1970-01-01 in the proleptic Gregorian calendar
 * (the era-based method described by Howard Hinnant). Pure arithmetic: libc's
 * gmtime_r/timegm may open time zone files, which the sandbox forbids.
 */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static void seconds_to_tm(int64_t t, struct tm *tm)
{
	int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
	int64_t secs = t - days * 86400;
	int64_t y;
	unsigned m, d;
	civil_from_days(days, &y, &m, &d);
	memset(tm, 0, sizeof(*tm));
	tm->tm_year = (int)(y - 1900);
	tm->tm_mon = (int)m - 1;
	tm->tm_mday = (int)d;
	tm->tm_hour = (int)(secs / 3600);
	tm->tm_min = (int)(secs / 60 % 60);
	tm->tm_sec = (int)(secs % 60);
	tm->tm_wday = (int)((days % 7 + 11) % 7); /* 1970-01-01 was a Thursday */
}

/* Out-of-range fields (a guest may write any byte) are carried, not refused. */
static int64_t tm_to_seconds(const struct tm *tm)
{
	int64_t months = (int64_t)tm->tm_year * 12 + tm->tm_mon;
	int64_t y = 1900 + (months >= 0 ? months / 12 : (months - 11) / 12);
	unsigned m = (unsigned)(months - (y - 1900) * 12) + 1;
	int64_t days = days_from_civil(y, m, 1) + tm->tm_mday - 1;
	return days * 86400 + (int64_t)tm->tm_hour * 3600 + (int64_t)tm->tm_min * 60 + tm->tm_sec;
}

static uint8_t to_bcd(unsigned v) { return (uint8_t)(((v / 10) << 4) | (v % 10)); }
static unsigned from_bcd(uint8_t v) { return (v >> 4) * 10 + (v & 0x0f); }

static uint8_t rtc_encode(const struct rtc *rtc, unsigned v)
{
	return (rtc->cmos[REG_B] & B_BINARY) ? (uint8_t)v : to_bcd(v);
}

static unsigned rtc_decode(const struct rtc *rtc, uint8_t v)
{
	return (rtc->cmos[REG_B] & B_BINARY) ? v : from_bcd(v);
}

static void rtc_guest_tm(const struct rtc *rtc, struct tm *tm)
{
	if (rtc->cmos[REG_B] & B_SET) {
		*tm = rtc->staged;
		return;
	}
	seconds_to_tm((int64_t)rtc->clock() + rtc->offset, tm);
}

static uint8_t rtc_encode_hour(const struct rtc *rtc, int hour)
{
	if (rtc->cmos[REG_B] & B_24H)
		return rtc_encode(rtc, (unsigned)hour);
	unsigned h12 = hour % 12 ? (unsigned)hour % 12 : 12;
	return (uint8_t)(rtc_encode(rtc, h12) | (hour >= 12 ? HOUR_PM : 0));
}

static int rtc_decode_hour(const struct rtc *rtc, uint8_t v)
{
	if (rtc->cmos[REG_B] & B_24H)
		return (int)rtc_decode(rtc, v);
	int h = (int)rtc_decode(rtc, v & (uint8_t)~HOUR_PM) % 12;
	return (v & HOUR_PM) ? h + 12 : h;
}

static uint8_t rtc_read_time_reg(const struct rtc *rtc, uint8_t reg)
{
	struct tm tm;
	rtc_guest_tm(rtc, &tm);
	switch (reg) {
	case REG_SECONDS: return rtc_encode(rtc, (unsigned)tm.tm_sec);
	case REG_MINUTES: return rtc_encode(rtc, (unsigned)tm.tm_min);
	case REG_HOURS:   return rtc_encode_hour(rtc, tm.tm_hour);
	case REG_WEEKDAY: return rtc_encode(rtc, (unsigned)tm.tm_wday + 1);
	case REG_DAY:     return rtc_encode(rtc, (unsigned)tm.tm_mday);
	case REG_MONTH:   return rtc_encode(rtc, (unsigned)tm.tm_mon + 1);
	case REG_YEAR:    return rtc_encode(rtc, (unsigned)(tm.tm_year + 1900) % 100);
	default:          return rtc_encode(rtc, (unsigned)(tm.tm_year + 1900) / 100);
	}
}

static bool is_time_reg(uint8_t reg)
{
	return reg == REG_SECONDS || reg == REG_MINUTES || reg == REG_HOURS ||
	       reg == REG_WEEKDAY || reg == REG_DAY || reg == REG_MONTH ||
	       reg == REG_YEAR || reg == REG_CENTURY;
}

static uint8_t rtc_read_reg(struct rtc *rtc, uint8_t reg)
{
	if (is_time_reg(reg))
		return rtc_read_time_reg(rtc, reg);
	switch (reg) {
	case REG_A:
		return rtc->cmos[REG_A] & 0x7f; /* never "update in progress" */
	case REG_C:
		return 0;                       /* no interrupt flags: none modelled */
	case REG_D:
		return D_VRT;                   /* the clock is valid (battery good) */
	default:
		return rtc->cmos[reg];
	}
}

/* Applies a write to one field of the staged time (only while B.SET is on). */
static void rtc_stage_time_reg(struct rtc *rtc, uint8_t reg, uint8_t v)
{
	struct tm *tm = &rtc->staged;
	int year = tm->tm_year + 1900;
	switch (reg) {
	case REG_SECONDS: tm->tm_sec = (int)rtc_decode(rtc, v) % 60; break;
	case REG_MINUTES: tm->tm_min = (int)rtc_decode(rtc, v) % 60; break;
	case REG_HOURS:   tm->tm_hour = rtc_decode_hour(rtc, v) % 24; break;
	case REG_WEEKDAY: break; /* derived from the date */
	case REG_DAY:     tm->tm_mday = (int)rtc_decode(rtc, v); break;
	case REG_MONTH:   tm->tm_mon = (int)rtc_decode(rtc, v) - 1; break;
	case REG_YEAR:    tm->tm_year = year / 100 * 100 + (int)rtc_decode(rtc, v) % 100 - 1900; break;
	default:          tm->tm_year = (int)rtc_decode(rtc, v) * 100 + year % 100 - 1900; break;
	}
}

static void rtc_write_b(struct rtc *rtc, uint8_t v)
{
	bool was_set = rtc->cmos[REG_B] & B_SET;
	bool now_set = v & B_SET;
	if (!was_set && now_set)
		rtc_guest_tm(rtc, &rtc->staged);
	rtc->cmos[REG_B] = v;
	if (was_set && !now_set) {
		rtc->offset = tm_to_seconds(&rtc->staged) - (int64_t)rtc->clock();
	}
}

static void rtc_write_reg(struct rtc *rtc, uint8_t reg, uint8_t v)
{
	if (is_time_reg(reg)) {
		if (rtc->cmos[REG_B] & B_SET)
			rtc_stage_time_reg(rtc, reg, v);
		return;
	}
	switch (reg) {
	case REG_B:
		rtc_write_b(rtc, v);
		break;
	case REG_C:
	case REG_D:
		break; /* read-only */
	default:
		rtc->cmos[reg] = v;
		break;
	}
}

static void rtc_io_read(void *dev, uint64_t offset, uint8_t *data, unsigned len)
{
	struct rtc *rtc = dev;
	pthread_mutex_lock(&rtc->lock);
	for (unsigned i = 0; i < len; i++)
		data[i] = offset + i == 1 ? rtc_read_reg(rtc, rtc->index) : 0xff;
	pthread_mutex_unlock(&rtc->lock);
}

static void rtc_io_write(void *dev, uint64_t offset, const uint8_t *data, unsigned len)
{
	struct rtc *rtc = dev;
	pthread_mutex_lock(&rtc->lock);
	for (unsigned i = 0; i < len; i++) {
		if (offset + i == 0)
			rtc->index = data[i] & 0x7f; /* bit 7 is the NMI mask: ignored */
		else
			rtc_write_reg(rtc, rtc->index, data[i]);
	}
	pthread_mutex_unlock(&rtc->lock);
}

const struct io_ops rtc_io_ops = {
	.read = rtc_io_read,
	.write = rtc_io_write,
};

struct rtc *rtc_create(time_t (*clock)(void))
{
	struct rtc *rtc = calloc(1, sizeof(*rtc));
	if (!rtc)
		return NULL;
	pthread_mutex_init(&rtc->lock, NULL);
	rtc->clock = clock ? clock : rtc_default_clock;
	rtc->cmos[REG_A] = 0x26;  /* 32.768 kHz time base, 1024 Hz rate */
	rtc->cmos[REG_B] = B_24H; /* BCD, 24-hour: what PC firmware leaves */
	return rtc;
}

void rtc_destroy(struct rtc *rtc)
{
	if (!rtc)
		return;
	pthread_mutex_destroy(&rtc->lock);
	free(rtc);
}
