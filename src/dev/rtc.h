/*
 * The MC146818 CMOS real-time clock on ports 0x70/0x71: wall-clock time
 * for the guest (read in BCD or binary, 12 or 24 hour, as register B asks),
 * settable by the guest (kept as an offset from host time, never applied
 * to the host), and 128 bytes of CMOS memory. Alarms and periodic
 * interrupts are not modelled; the guest sees no RTC interrupt.
 */
#ifndef SHOJI_DEV_RTC_H
#define SHOJI_DEV_RTC_H

#include <stdint.h>
#include <time.h>

#include "dev/dev.h"

#define RTC_PORT_COUNT 2

struct rtc;

extern const struct io_ops rtc_io_ops;

/* `clock` returns host time in seconds; NULL means time(NULL). For tests. */
struct rtc *rtc_create(time_t (*clock)(void));
void rtc_destroy(struct rtc *rtc);

#endif
