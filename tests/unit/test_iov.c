/*
 * Unit tests for src/base/iov.h, the scatter-gather copies every virtio
 * device uses on guest chains: copies at any offset across segment
 * boundaries, empty segments, lists shorter than asked (the copy stops,
 * never runs past a segment), slices and in-place skips.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "base/iov.h"

/* Three segments of 3, 0 and 5 bytes over buf[0..8), guarded on both sides. */
static uint8_t mem[16];
static struct iovec list[3];

static void make_list(void)
{
	for (unsigned i = 0; i < sizeof(mem); i++)
		mem[i] = (uint8_t)(0xa0 + i);
	list[0] = (struct iovec){ mem + 1, 3 };
	list[1] = (struct iovec){ mem + 4, 0 };
	list[2] = (struct iovec){ mem + 4, 5 };
}

static void test_to_buf(void **state)
{
	(void)state;
	make_list();
	uint8_t out[16];
	memset(out, 0, sizeof(out));
	assert_int_equal(iov_to_buf(list, 3, 0, out, 8), 8);
	assert_memory_equal(out, mem + 1, 8);
	/* From inside the first segment across the empty one. */
	memset(out, 0, sizeof(out));
	assert_int_equal(iov_to_buf(list, 3, 2, out, 3), 3);
	assert_memory_equal(out, mem + 3, 3);
	/* Exactly at a boundary, and asking for more than is there. */
	memset(out, 0, sizeof(out));
	assert_int_equal(iov_to_buf(list, 3, 3, out, 100), 5);
	assert_memory_equal(out, mem + 4, 5);
	assert_int_equal(out[5], 0);
	/* Past the end, and from no list at all. */
	assert_int_equal(iov_to_buf(list, 3, 8, out, 4), 0);
	assert_int_equal(iov_to_buf(list, 0, 0, out, 4), 0);
}

static void test_from_buf(void **state)
{
	(void)state;
	make_list();
	const uint8_t in[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	assert_int_equal(iov_from_buf(list, 3, 1, in, 8), 7);
	assert_int_equal(mem[0], 0xa0);             /* guard before */
	assert_int_equal(mem[1], 0xa1);             /* skipped byte */
	assert_memory_equal(mem + 2, in, 7);
	assert_int_equal(mem[9], 0xa9);             /* guard after */
}

static void test_slice(void **state)
{
	(void)state;
	make_list();
	struct iovec out[3];
	unsigned n = iov_slice(list, 3, 2, 4, out);
	assert_int_equal(n, 2);
	assert_ptr_equal(out[0].iov_base, mem + 3);
	assert_int_equal(out[0].iov_len, 1);
	assert_ptr_equal(out[1].iov_base, mem + 4);
	assert_int_equal(out[1].iov_len, 3);
	/* Everything after an offset; no empty segment comes out. */
	n = iov_slice(list, 3, 1, SIZE_MAX, out);
	assert_int_equal(n, 2);
	assert_int_equal(out[0].iov_len + out[1].iov_len, 7);
	assert_int_equal(iov_slice(list, 3, 8, 1, out), 0);
}

static void test_skip(void **state)
{
	(void)state;
	make_list();
	struct iovec copy[3];
	memcpy(copy, list, sizeof(copy));
	struct iovec *iov = copy;
	unsigned n = 3;
	iov_skip(&iov, &n, 4);
	assert_int_equal(n, 1);
	assert_ptr_equal(iov->iov_base, mem + 5);
	assert_int_equal(iov->iov_len, 4);
	iov_skip(&iov, &n, 100); /* more than is left: an empty list */
	assert_int_equal(n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_to_buf),
		cmocka_unit_test(test_from_buf),
		cmocka_unit_test(test_slice),
		cmocka_unit_test(test_skip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
