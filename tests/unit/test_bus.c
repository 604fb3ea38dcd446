/*
 * Unit tests for device address spaces (src/dev/bus.h): ranges may touch
 * but never overlap; an access is dispatched only when one device claims
 * all of it (offset relative to the range), anything else reads all ones,
 * drops writes and reports false, including accesses that straddle the end
 * of a range, odd lengths and addresses near the top of the space.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "dev/bus.h"

struct probe {
	unsigned reads, writes;
	uint64_t last_offset;
	unsigned last_len;
	uint8_t last_data[8];
};

static void probe_read(void *dev, uint64_t offset, uint8_t *data, unsigned len)
{
	struct probe *p = dev;
	p->reads++;
	p->last_offset = offset;
	p->last_len = len;
	for (unsigned i = 0; i < len; i++)
		data[i] = (uint8_t)(0x10 + offset + i);
}

static void probe_write(void *dev, uint64_t offset, const uint8_t *data, unsigned len)
{
	struct probe *p = dev;
	p->writes++;
	p->last_offset = offset;
	p->last_len = len;
	memcpy(p->last_data, data, len);
}

static const struct io_ops probe_ops = { .read = probe_read, .write = probe_write };

static void test_add_overlap(void **state)
{
	(void)state;
	struct bus bus;
	struct probe a = { 0 }, b = { 0 };
	bus_init(&bus, "pio");
	assert_true(bus_add(&bus, 0x3f8, 8, &probe_ops, &a, "com1"));
	/* Overlapping: same start, inside, across either end, around. */
	assert_false(bus_add(&bus, 0x3f8, 1, &probe_ops, &b, "same start"));
	assert_false(bus_add(&bus, 0x3fa, 2, &probe_ops, &b, "inside"));
	assert_false(bus_add(&bus, 0x3f0, 9, &probe_ops, &b, "across start"));
	assert_false(bus_add(&bus, 0x3ff, 2, &probe_ops, &b, "across end"));
	assert_false(bus_add(&bus, 0x3ff, 1, &probe_ops, &b, "last byte"));
	assert_false(bus_add(&bus, 0x300, 0x200, &probe_ops, &b, "around"));
	/* Touching is fine. */
	assert_true(bus_add(&bus, 0x3f0, 8, &probe_ops, &b, "below"));
	assert_true(bus_add(&bus, 0x400, 8, &probe_ops, &b, "above"));
	/* Empty and wrapping ranges. */
	assert_false(bus_add(&bus, 0x1000, 0, &probe_ops, &b, "empty"));
	assert_false(bus_add(&bus, UINT64_MAX - 3, 8, &probe_ops, &b, "wraps"));
	assert_int_equal(bus.count, 3);
}

static void test_add_limit(void **state)
{
	(void)state;
	struct bus bus;
	struct probe p = { 0 };
	bus_init(&bus, "mmio");
	for (unsigned i = 0; i < BUS_MAX_RANGES; i++)
		assert_true(bus_add(&bus, 0x1000 * (i + 1), 0x10, &probe_ops, &p, "dev"));
	assert_false(bus_add(&bus, 0x1000000, 0x10, &probe_ops, &p, "one too many"));
	assert_int_equal(bus.count, BUS_MAX_RANGES);
}

static void test_dispatch(void **state)
{
	(void)state;
	struct bus bus;
	struct probe com = { 0 }, other = { 0 };
	bus_init(&bus, "pio");
	assert_true(bus_add(&bus, 0x3f8, 8, &probe_ops, &com, "com1"));
	assert_true(bus_add(&bus, 0x400, 8, &probe_ops, &other, "next"));

	uint8_t d[8];
	assert_true(bus_read(&bus, 0x3f8, d, 1));
	assert_int_equal(com.last_offset, 0);
	assert_int_equal(d[0], 0x10);
	assert_true(bus_read(&bus, 0x3fc, d, 4)); /* exactly to the end */
	assert_int_equal(com.last_offset, 4);
	assert_int_equal(com.last_len, 4);
	assert_true(bus_read(&bus, 0x3ff, d, 1));
	assert_int_equal(com.last_offset, 7);

	const uint8_t w[2] = { 0xab, 0xcd };
	assert_true(bus_write(&bus, 0x3fa, w, 2));
	assert_int_equal(com.last_offset, 2);
	assert_memory_equal(com.last_data, w, 2);
	assert_int_equal(com.writes, 1);
	assert_int_equal(other.reads + other.writes, 0);
}

static void expect_unclaimed_read(const struct bus *bus, uint64_t addr, unsigned len)
{
	uint8_t d[8];
	memset(d, 0x00, sizeof(d));
	if (bus_read(bus, addr, d, len))
		fail_msg("read of %u at 0x%llx was claimed", len, (unsigned long long)addr);
	for (unsigned i = 0; i < len; i++)
		assert_int_equal(d[i], 0xff);
}

static void test_unclaimed(void **state)
{
	(void)state;
	struct bus bus;
	struct probe com = { 0 }, next = { 0 };
	bus_init(&bus, "pio");
	assert_true(bus_add(&bus, 0x3f8, 8, &probe_ops, &com, "com1"));
	assert_true(bus_add(&bus, 0x400, 8, &probe_ops, &next, "next"));

	expect_unclaimed_read(&bus, 0x3ff, 2);   /* straddles com1's end into next */
	expect_unclaimed_read(&bus, 0x3fe, 4);
	expect_unclaimed_read(&bus, 0x3f6, 4);   /* straddles com1's start */
	expect_unclaimed_read(&bus, 0x3f4, 8);
	expect_unclaimed_read(&bus, 0x500, 1);   /* nothing there */
	expect_unclaimed_read(&bus, UINT64_MAX, 1);
	expect_unclaimed_read(&bus, UINT64_MAX - 1, 4);
	expect_unclaimed_read(&bus, 0x3f8, 0);   /* bad lengths */
	uint8_t d[16];
	memset(d, 0, sizeof(d));
	assert_false(bus_read(&bus, 0x3f8, d, 9));

	const uint8_t w[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	assert_false(bus_write(&bus, 0x3ff, w, 2));
	assert_false(bus_write(&bus, 0x3f6, w, 4));
	assert_false(bus_write(&bus, 0x500, w, 1));
	assert_false(bus_write(&bus, 0x3f8, w, 0));
	assert_false(bus_write(&bus, UINT64_MAX, w, 8));
	assert_int_equal(com.reads + com.writes, 0);
	assert_int_equal(next.reads + next.writes, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_overlap),
		cmocka_unit_test(test_add_limit),
		cmocka_unit_test(test_dispatch),
		cmocka_unit_test(test_unclaimed),
	};
	return cmocka_run_group_tests_name("dev/bus", tests, NULL, NULL);
}
