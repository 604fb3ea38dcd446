/*
 * Unit tests for src/hv/mem.h: the RAM layout around the MMIO hole
 * (guest_mem_plan), the e820 map the guest is given (guest_mem_e820), and
 * the bounds checks of guest_mem_ptr/read/write, which stand between every
 * guest-supplied address and host memory.
 *
 * Expectations come from layout.h: RAM never overlaps [3 GiB, 4 GiB); what
 * does not fit below the hole continues at 4 GiB; the EBDA and the ACPI
 * area are reserved; by PC convention the legacy window [EBDA, 1 MiB) is
 * not reported as RAM, every other byte of guest RAM is.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "base/util.h"
#include "hv/layout.h"
#include "hv/mem.h"

#define MAX_E820 32

static const uint64_t plan_sizes[] = { 64 * MiB, 3 * GiB, 4 * GiB, 8 * GiB };

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* Bytes of [a, a+alen) that fall inside [b, b+blen). */
static uint64_t overlap_len(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	uint64_t lo = a > b ? a : b;
	uint64_t hi = a + alen < b + blen ? a + alen : b + blen;
	return hi > lo ? hi - lo : 0;
}

static void check_plan(uint64_t size)
{
	struct guest_mem mem;
	guest_mem_plan(&mem, size);

	assert_in_range(mem.count, 1, GUEST_MEM_MAX_REGIONS);
	assert_int_equal(mem.total, size);
	uint64_t sum = 0;
	for (unsigned i = 0; i < mem.count; i++) {
		const struct mem_region *r = &mem.regions[i];
		assert_true(r->size > 0);
		assert_true(r->gpa + r->size > r->gpa);
		sum += r->size;
		if (overlaps(r->gpa, r->size, LAYOUT_MMIO_HOLE_START,
			     LAYOUT_4GIB - LAYOUT_MMIO_HOLE_START))
			fail_msg("%llu MiB: region %u [0x%llx, +0x%llx) overlaps the MMIO hole",
				 (unsigned long long)(size / MiB), i,
				 (unsigned long long)r->gpa, (unsigned long long)r->size);
		for (unsigned j = 0; j < i; j++)
			assert_false(overlaps(r->gpa, r->size, mem.regions[j].gpa,
					      mem.regions[j].size));
	}
	assert_int_equal(sum, size);

	/* RAM starts at 0 and fills up to the hole before anything goes above 4 GiB. */
	uint64_t low = size < LAYOUT_MMIO_HOLE_START ? size : LAYOUT_MMIO_HOLE_START;
	assert_int_equal(guest_mem_low_end(&mem), low);
	assert_int_equal(mem.regions[0].gpa, 0);
	assert_int_equal(mem.regions[0].size, low);
	if (size > LAYOUT_MMIO_HOLE_START) {
		assert_int_equal(mem.count, 2);
		assert_int_equal(mem.regions[1].gpa, LAYOUT_4GIB);
		assert_int_equal(mem.regions[1].size, size - LAYOUT_MMIO_HOLE_START);
	} else {
		assert_int_equal(mem.count, 1);
	}
}

static void test_plan(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(plan_sizes); i++)
		check_plan(plan_sizes[i]);
	check_plan(LAYOUT_MMIO_HOLE_START + 4 * KiB); /* one page past the hole */
	check_plan(LAYOUT_MMIO_HOLE_START - 4 * KiB);
}

static bool e820_covered(const struct e820_entry_info *e, unsigned n, uint64_t addr,
			 uint64_t len, bool want_ram)
{
	uint64_t covered = 0;
	for (unsigned i = 0; i < n; i++)
		if ((e[i].type == E820_RAM) == want_ram)
			covered += overlap_len(addr, len, e[i].addr, e[i].size);
	return covered == len;
}

static void check_e820(uint64_t size)
{
	struct guest_mem mem;
	guest_mem_plan(&mem, size);
	struct e820_entry_info e[MAX_E820];
	unsigned n = guest_mem_e820(&mem, e, MAX_E820);
	assert_in_range(n, 1, MAX_E820 - 1);

	uint64_t ram = 0;
	for (unsigned i = 0; i < n; i++) {
		assert_true(e[i].size > 0);
		assert_true(e[i].type == E820_RAM || e[i].type == E820_RESERVED ||
			    e[i].type == E820_ACPI);
		for (unsigned j = 0; j < i; j++)
			if (overlaps(e[i].addr, e[i].size, e[j].addr, e[j].size))
				fail_msg("%llu MiB: e820 entries %u and %u overlap",
					 (unsigned long long)(size / MiB), j, i);
		if (e[i].type != E820_RAM)
			continue;
		ram += e[i].size;
		assert_false(overlaps(e[i].addr, e[i].size, LAYOUT_MMIO_HOLE_START,
				      LAYOUT_4GIB - LAYOUT_MMIO_HOLE_START));
		/* Every byte called RAM is backed by a region. */
		uint64_t backed = 0;
		for (unsigned r = 0; r < mem.count; r++)
			backed += overlap_len(e[i].addr, e[i].size, mem.regions[r].gpa,
					      mem.regions[r].size);
		if (backed != e[i].size)
			fail_msg("%llu MiB: e820 RAM [0x%llx, +0x%llx) is not all backed",
				 (unsigned long long)(size / MiB), (unsigned long long)e[i].addr,
				 (unsigned long long)e[i].size);
	}

	/* Reserved: the EBDA and the ACPI tables' area. */
	assert_true(e820_covered(e, n, LAYOUT_EBDA_ADDR, LAYOUT_LOW_RAM_END - LAYOUT_EBDA_ADDR, false));
	assert_true(e820_covered(e, n, LAYOUT_ACPI_ADDR, LAYOUT_ACPI_MAX, false));
	/* RAM: below the EBDA, and all guest RAM from 1 MiB on. */
	assert_true(e820_covered(e, n, 0, LAYOUT_EBDA_ADDR, true));
	for (unsigned r = 0; r < mem.count; r++) {
		uint64_t start = mem.regions[r].gpa, end = start + mem.regions[r].size;
		if (start < LAYOUT_HIGH_MEM_START)
			start = LAYOUT_HIGH_MEM_START;
		if (end > start && !e820_covered(e, n, start, end - start, true))
			fail_msg("%llu MiB: RAM [0x%llx, 0x%llx) is missing from e820",
				 (unsigned long long)(size / MiB), (unsigned long long)start,
				 (unsigned long long)end);
	}
	/* Total: all of it but the legacy window [EBDA, 1 MiB). */
	assert_int_equal(ram, size - (LAYOUT_HIGH_MEM_START - LAYOUT_EBDA_ADDR));
}

static void test_e820(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(plan_sizes); i++)
		check_e820(plan_sizes[i]);
}

/* The map is cut at `max` entries; nothing is written past it. */
static void test_e820_max(void **state)
{
	(void)state;
	struct guest_mem mem;
	guest_mem_plan(&mem, 8 * GiB);
	struct e820_entry_info all[MAX_E820];
	unsigned n = guest_mem_e820(&mem, all, MAX_E820);
	assert_true(n >= 3);

	struct e820_entry_info e[MAX_E820];
	memset(e, 0xa5, sizeof(e));
	unsigned m = guest_mem_e820(&mem, e, 2);
	assert_int_equal(m, 2);
	for (unsigned i = 0; i < m; i++) {
		assert_int_equal(e[i].addr, all[i].addr);
		assert_int_equal(e[i].size, all[i].size);
		assert_int_equal(e[i].type, all[i].type);
	}
	const uint8_t *rest = (const uint8_t *)&e[2];
	for (size_t i = 0; i < sizeof(e) - 2 * sizeof(e[0]); i++)
		assert_int_equal(rest[i], 0xa5);
	assert_int_equal(guest_mem_e820(&mem, e, 0), 0);
}

/* Maps `size` of guest RAM or skips the test (address space is not RAM here). */
static bool alloc_or_skip(struct guest_mem *mem, uint64_t size)
{
	if (guest_mem_alloc(mem, size))
		return true;
	skip();
	return false;
}

static void expect_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len, const void *want)
{
	void *p = guest_mem_ptr(mem, gpa, len);
	if (p != want)
		fail_msg("guest_mem_ptr(0x%llx, 0x%llx) = %p, want %p", (unsigned long long)gpa,
			 (unsigned long long)len, p, want);
}

static void test_ptr_low_only(void **state)
{
	(void)state;
	struct guest_mem mem;
	if (!alloc_or_skip(&mem, 64 * MiB))
		return;
	uint8_t *h = mem.regions[0].host;
	uint64_t end = 64 * MiB;

	expect_ptr(&mem, 0, 1, h);
	expect_ptr(&mem, 0, end, h);
	expect_ptr(&mem, end - 8, 8, h + end - 8);
	expect_ptr(&mem, end - 4, 8, NULL);       /* crosses the end of RAM */
	expect_ptr(&mem, end, 1, NULL);
	expect_ptr(&mem, 0, end + 1, NULL);
	expect_ptr(&mem, LAYOUT_4GIB, 1, NULL);   /* no RAM above the hole */
	expect_ptr(&mem, UINT64_MAX, 1, NULL);
	expect_ptr(&mem, UINT64_MAX, 2, NULL);
	expect_ptr(&mem, 8, UINT64_MAX, NULL);
	expect_ptr(&mem, 0, UINT64_MAX, NULL);

	uint8_t buf[16] = { 1, 2, 3 }, back[16];
	assert_true(guest_mem_write(&mem, end - 16, buf, 16));
	assert_true(guest_mem_read(&mem, end - 16, back, 16));
	assert_memory_equal(buf, back, 16);
	assert_false(guest_mem_write(&mem, end - 15, buf, 16));
	assert_false(guest_mem_read(&mem, end - 15, back, 16));
	guest_mem_free(&mem);
}

static void test_ptr_around_hole(void **state)
{
	(void)state;
	struct guest_mem mem;
	const uint64_t high = 4 * MiB;
	if (!alloc_or_skip(&mem, LAYOUT_MMIO_HOLE_START + high))
		return;
	assert_int_equal(mem.count, 2);
	uint8_t *lo = mem.regions[0].host, *hi = mem.regions[1].host;
	const uint64_t hole = LAYOUT_MMIO_HOLE_START, top = LAYOUT_4GIB + high;

	expect_ptr(&mem, hole - 1, 1, lo + hole - 1);
	expect_ptr(&mem, hole - 1, 2, NULL);           /* runs into the hole */
	expect_ptr(&mem, hole, 1, NULL);
	expect_ptr(&mem, LAYOUT_IOAPIC_ADDR, 4, NULL);
	expect_ptr(&mem, LAYOUT_LAPIC_ADDR, 4, NULL);
	expect_ptr(&mem, LAYOUT_4GIB - 1, 1, NULL);
	expect_ptr(&mem, LAYOUT_4GIB - 1, 2, NULL);    /* hole into high RAM */
	expect_ptr(&mem, hole - 8, LAYOUT_4GIB - hole + 16, NULL); /* spans the hole */
	expect_ptr(&mem, LAYOUT_4GIB, 1, hi);
	expect_ptr(&mem, LAYOUT_4GIB, high, hi);
	expect_ptr(&mem, top - 1, 1, hi + high - 1);
	expect_ptr(&mem, top - 1, 2, NULL);
	expect_ptr(&mem, top, 1, NULL);
	/* Lengths and addresses chosen to wrap 64-bit arithmetic. */
	expect_ptr(&mem, LAYOUT_4GIB, UINT64_MAX, NULL);
	expect_ptr(&mem, LAYOUT_4GIB + 1, UINT64_MAX - LAYOUT_4GIB, NULL);
	expect_ptr(&mem, UINT64_MAX - 7, 16, NULL);
	expect_ptr(&mem, UINT64_MAX, UINT64_MAX, NULL);
	expect_ptr(&mem, 1, UINT64_MAX, NULL);

	uint32_t v = 0x12345678;
	assert_false(guest_mem_write(&mem, hole - 2, &v, sizeof(v)));
	assert_false(guest_mem_read(&mem, LAYOUT_4GIB - 2, &v, sizeof(v)));
	assert_true(guest_mem_write(&mem, LAYOUT_4GIB, &v, sizeof(v)));
	assert_memory_equal(hi, &v, sizeof(v));
	guest_mem_free(&mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan),
		cmocka_unit_test(test_e820),
		cmocka_unit_test(test_e820_max),
		cmocka_unit_test(test_ptr_low_only),
		cmocka_unit_test(test_ptr_around_hole),
	};
	return cmocka_run_group_tests_name("hv/mem", tests, NULL, NULL);
}
