/*
 * Split virtqueue (src/dev/virtqueue.h) driven by a simulated driver in
 * this process: the rings live in real guest memory (16 MiB, no KVM), the
 * driver writes descriptors and available entries as a guest would, and the
 * tests check what the device side makes of them: good chains, every
 * hostile shape the issue lists, notification suppression, index wrap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dev/virtqueue.h"
#include "hv/mem.h"

#define RAM_SIZE   (16u << 20)
#define DESC_GPA   0x10000u
#define AVAIL_GPA  0x20000u
#define USED_GPA   0x30000u
#define IND_GPA    0x40000u
#define BUF_GPA    0x100000u

static struct guest_mem mem;

/* ---- the simulated driver ---- */

static struct vring_desc *drv_desc(void) { return guest_mem_ptr(&mem, DESC_GPA, 16); }
static uint16_t *drv_avail(void) { return guest_mem_ptr(&mem, AVAIL_GPA, 4); }
static uint32_t *drv_used_ring(void) { return guest_mem_ptr(&mem, USED_GPA + 4, 8); }
static uint16_t *drv_used_hdr(void) { return guest_mem_ptr(&mem, USED_GPA, 4); }

static void drv_set(struct vring_desc *table, uint16_t i, uint64_t addr, uint32_t len,
		    uint16_t flags, uint16_t next)
{
	table[i] = (struct vring_desc){ addr, len, flags, next };
}

/* Publishes `head` in the available ring. */
static void drv_publish(struct vq *vq, uint16_t head)
{
	uint16_t *avail = drv_avail();
	avail[2 + avail[1] % vq->size] = head;
	avail[1]++;
}

static void setup_queue(struct vq *vq, uint16_t size)
{
	memset(guest_mem_ptr(&mem, 0, 1 << 20), 0, 1 << 20);
	vq_reset(vq, &mem);
	vq->size = size;
	vq->desc_gpa = DESC_GPA;
	vq->avail_gpa = AVAIL_GPA;
	vq->used_gpa = USED_GPA;
	assert_true(vq_enable(vq));
}

static struct vq_chain chain;

static void expect_broken(struct vq *vq, const char *why_part)
{
	assert_int_equal(vq_pop(vq, &chain), VQ_BROKEN);
	assert_non_null(vq->why_broken);
	if (!strstr(vq->why_broken, why_part))
		fail_msg("broken for \"%s\", expected \"%s\"", vq->why_broken, why_part);
	/* A broken queue stays broken, and the device cannot push into it. */
	assert_int_equal(vq_pop(vq, &chain), VQ_BROKEN);
	uint16_t used_before = drv_used_hdr()[1];
	vq_push(vq, 0, 0);
	assert_int_equal(drv_used_hdr()[1], used_before);
}

static int group_setup(void **state)
{
	(void)state;
	return guest_mem_alloc(&mem, RAM_SIZE) ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	guest_mem_free(&mem);
	return 0;
}

/* ---- good chains ---- */

static void test_readable_then_writable(void **state)
{
	(void)state;
	struct vq vq;
	setup_queue(&vq, 8);
	struct vring_desc *d = drv_desc();
	drv_set(d, 3, BUF_GPA, 16, VRING_DESC_F_NEXT, 5);
	drv_set(d, 5, BUF_GPA + 0x1000, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 6);
	drv_set(d, 6, BUF_GPA + 0x2000, 1, VRING_DESC_F_WRITE, 0);
	drv_publish(&vq, 3);

	assert_int_equal(vq_pop(&vq, &chain), VQ_CHAIN);
	assert_int_equal(chain.head, 3);
	assert_int_equal(chain.nr_iov, 3);
	assert_int_equal(chain.nr_readable, 1);
	assert_int_equal(chain.readable_len, 16);
	assert_int_equal(chain.writable_len, 513);
	assert_ptr_equal(chain.iov[0].iov_base, guest_mem_ptr(&mem, BUF_GPA, 16));
	assert_ptr_equal(chain.iov[1].iov_base, guest_mem_ptr(&mem, BUF_GPA + 0x1000, 512));
	assert_int_equal(chain.iov[2].iov_len, 1);
	assert_int_equal(vq_pop(&vq, &chain), VQ_EMPTY);

	vq_push(&vq, 3, 513);
	assert_int_equal(drv_used_hdr()[1], 1);
	assert_int_equal(drv_used_ring()[0], 3);
	assert_int_equal(drv_used_ring()[1], 513);
}

static void test_zero_length_buffers_are_skipped(void **state)
{
	(void)state;
	struct vq vq;
	setup_queue(&vq, 4);
	struct vring_desc *d = drv_desc();
	drv_set(d, 0, BUF_GPA, 0, VRING_DESC_F_NEXT, 1);
	drv_set(d, 1, BUF_GPA, 8, 0, 0);
	drv_publish(&vq, 0);
	assert_int_equal(vq_pop(&vq, &chain), VQ_CHAIN);
	assert_int_equal(chain.nr_iov, 1);
	assert_int_equal(chain.readable_len, 8);
}

static void test_indirect_table(void **state)
{
	(void)state;
	struct vq vq;
	setup_queue(&vq, 4);
	vq.indirect = true;
	struct vring_desc *ind = guest_mem_ptr(&mem, IND_GPA, 3 * 16);
	drv_set(ind, 0, BUF_GPA, 16, VRING_DESC_F_NEXT, 2);
	drv_set(ind, 2, BUF_GPA + 0x100, 32, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
	drv_set(ind, 1, BUF_GPA + 0x200, 1, VRING_DESC_F_WRITE, 0);
	/* The WRITE flag on the descriptor naming the table is ignored. */
	drv_set(drv_desc(), 2, IND_GPA, 3 * 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE, 0);
	drv_publish(&vq, 2);
	assert_int_equal(vq_pop(&vq, &chain), VQ_CHAIN);
	assert_int_equal(chain.head, 2);
	assert_int_equal(chain.nr_iov, 3);
	assert_int_equal(chain.nr_readable, 1);
	assert_int_equal(chain.writable_len, 33);
}

/* 16-bit indices wrap: many rounds through a small queue stay consistent. */
static void test_index_wrap(void **state)
{
	(void)state;
	struct vq vq;
	setup_queue(&vq, 4);
	struct vring_desc *d = drv_desc();
	for (uint32_t round = 0; round < 70000; round++) {
		uint16_t head = (uint16_t)(round % 4);
		drv_set(d, head, BUF_GPA + head * 64u, 64, VRING_DESC_F_WRITE, 0);
		drv_publish(&vq, head);
		assert_int_equal(vq_pop(&vq, &chain), VQ_CHAIN);
		assert_int_equal(chain.head, head);
		vq_push(&vq, head, round & 63);
		uint16_t slot = (uint16_t)(round % 4);
		assert_int_equal(drv_used_ring()[2 * slot], head);
	}
	assert_int_equal(drv_used_hdr()[1], (uint16_t)70000);
	assert_int_equal(vq_pop(&vq, &chain), VQ_EMPTY);
}

/* ---- hostile drivers ---- */

static void test_loop(void **state)
{
	(void)state;
	struct vq vq;
	setup_queue(&vq, 8);
	drv_set(drv_desc(), 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	drv_set(drv_desc(), 1, BUF_GPA, 8, VRING_DESC_F_NEXT, 0);
	drv_publish(&vq, 0);
	expect_broken(&vq, "loop");
}

static void test_self_loop(void **state)
{
	(void)state;
	struct vq vq;
	setup_queue(&vq, 1);
	drv_set(drv_desc(), 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 0);
	drv_publish(&vq, 0);
	expect_broken(&vq, "loop");
}

static void test_next_outside_table(void **state)
{
	(void)state;
	struct vq vq;
	setup_queue(&vq, 8);
	drv_set(drv_desc(), 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 8); /* == size */
	drv_publish(&vq, 0);
	expect_broken(&vq, "next is outside");
}

static void test_head_outside_table(void **state)
{
	(void)state;
	struct vq vq;
	setup_queue(&vq, 8);
	drv_publish(&vq, 8);
	expect_broken(&vq, "outside the table");
}

static void test_more_available_than_queue(void **state)
{
	(void)state;
	struct vq vq;
	setup_queue(&vq, 4);
	drv_avail()[1] = 5; /* five new entries in a queue of four */
	expect_broken(&vq, "more buffers available");
}

static void test_buffers_outside_ram(void **state)
{
	(void)state;
	static const struct {
		uint64_t addr;
		uint32_t len;
	} bad[] = {
		{ RAM_SIZE, 1 },                 /* just past the end */
		{ RAM_SIZE - 8, 16 },            /* straddles the end */
		{ 0xc0000000, 4096 },            /* the MMIO hole */
		{ UINT64_MAX - 7, 16 },          /* wraps around */
		{ UINT64_MAX, UINT32_MAX },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct vq vq;
		setup_queue(&vq, 4);
		drv_set(drv_desc(), 0, bad[i].addr, bad[i].len, VRING_DESC_F_WRITE, 0);
		drv_publish(&vq, 0);
		expect_broken(&vq, "outside guest RAM");
	}
}

static void test_readable_after_writable(void **state)
{
	(void)state;
	struct vq vq;
	setup_queue(&vq, 4);
	drv_set(drv_desc(), 0, BUF_GPA, 8, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
	drv_set(drv_desc(), 1, BUF_GPA, 8, 0, 0);
	drv_publish(&vq, 0);
	expect_broken(&vq, "readable buffer after");
}

static void publish_indirect(struct vq *vq, uint32_t len, uint16_t flags)
{
	drv_set(drv_desc(), 0, IND_GPA, len, (uint16_t)(VRING_DESC_F_INDIRECT | flags), 1);
	drv_publish(vq, 0);
}

static void test_indirect_hostile(void **state)
{
	(void)state;
	struct vq vq;
	struct vring_desc *ind = guest_mem_ptr(&mem, IND_GPA, 4 * 16);

	setup_queue(&vq, 4); /* not negotiated */
	drv_set(ind, 0, BUF_GPA, 8, 0, 0);
	publish_indirect(&vq, 16, 0);
	expect_broken(&vq, "without VIRTIO_F_INDIRECT_DESC");

	setup_queue(&vq, 4);
	vq.indirect = true;
	drv_set(ind, 0, BUF_GPA, 8, 0, 0);
	publish_indirect(&vq, 16, VRING_DESC_F_NEXT);
	expect_broken(&vq, "with the NEXT flag");

	const uint32_t bad_lengths[] = { 0, 15, 24, (VQ_MAX_INDIRECT + 1) * 16 };
	for (size_t i = 0; i < sizeof(bad_lengths) / sizeof(bad_lengths[0]); i++) {
		setup_queue(&vq, 4);
		vq.indirect = true;
		publish_indirect(&vq, bad_lengths[i], 0);
		expect_broken(&vq, "indirect table length");
	}

	setup_queue(&vq, 4);
	vq.indirect = true;
	drv_set(ind, 0, IND_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	publish_indirect(&vq, 16, 0);
	expect_broken(&vq, "inside an indirect table");

	setup_queue(&vq, 4);
	vq.indirect = true;
	drv_set(ind, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	drv_set(ind, 1, BUF_GPA, 8, VRING_DESC_F_NEXT, 0);
	publish_indirect(&vq, 32, 0);
	expect_broken(&vq, "indirect chain longer");

	setup_queue(&vq, 4);
	vq.indirect = true;
	drv_set(ind, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 2);
	publish_indirect(&vq, 32, 0);
	expect_broken(&vq, "outside its table");

	setup_queue(&vq, 4);
	vq.indirect = true;
	drv_set(drv_desc(), 0, RAM_SIZE - 16, 32, VRING_DESC_F_INDIRECT, 0);
	drv_publish(&vq, 0);
	expect_broken(&vq, "indirect table outside guest RAM");
}

/* A long chain is refused before its iovec array could overflow. */
static void test_too_many_segments(void **state)
{
	(void)state;
	struct vq vq;
	setup_queue(&vq, 2048);
	struct vring_desc *d = drv_desc();
	for (uint16_t i = 0; i < 2048; i++)
		drv_set(d, i, BUF_GPA + i, 1, i + 1 < 2048 ? VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	drv_publish(&vq, 0);
	expect_broken(&vq, "too many buffers");
}

static void test_enable_rejects_bad_rings(void **state)
{
	(void)state;
	const uint16_t bad_sizes[] = { 0, 3, 6, 1000, 32767 };
	for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
		struct vq vq;
		vq_reset(&vq, &mem);
		vq.size = bad_sizes[i];
		vq.desc_gpa = DESC_GPA, vq.avail_gpa = AVAIL_GPA, vq.used_gpa = USED_GPA;
		assert_false(vq_enable(&vq));
		assert_int_equal(vq_pop(&vq, &chain), VQ_BROKEN);
	}
	const uint64_t bad_rings[][3] = {
		{ DESC_GPA + 8, AVAIL_GPA, USED_GPA },     /* descriptor table misaligned */
		{ DESC_GPA, AVAIL_GPA + 1, USED_GPA },     /* avail misaligned */
		{ DESC_GPA, AVAIL_GPA, USED_GPA + 2 },     /* used misaligned */
		{ RAM_SIZE - 16, AVAIL_GPA, USED_GPA },    /* table runs past RAM */
		{ DESC_GPA, 0xc0000000, USED_GPA },        /* in the hole */
		{ DESC_GPA, AVAIL_GPA, UINT64_MAX - 3 },   /* wraps */
	};
	for (size_t i = 0; i < sizeof(bad_rings) / sizeof(bad_rings[0]); i++) {
		struct vq vq;
		vq_reset(&vq, &mem);
		vq.size = 256;
		vq.desc_gpa = bad_rings[i][0];
		vq.avail_gpa = bad_rings[i][1];
		vq.used_gpa = bad_rings[i][2];
		assert_false(vq_enable(&vq));
	}
	struct vq vq;
	vq_reset(&vq, &mem);
	vq.size = VQ_MAX_SIZE;
	vq.desc_gpa = 0x200000, vq.avail_gpa = 0x300000, vq.used_gpa = 0x400000;
	assert_true(vq_enable(&vq));
}

/* ---- notifications ---- */

static void pop_push_one(struct vq *vq)
{
	drv_set(drv_desc(), 0, BUF_GPA, 8, VRING_DESC_F_WRITE, 0);
	drv_publish(vq, 0);
	assert_int_equal(vq_pop(vq, &chain), VQ_CHAIN);
	vq_push(vq, 0, 8);
}

static void test_interrupt_flags(void **state)
{
	(void)state;
	struct vq vq;
	setup_queue(&vq, 4);
	pop_push_one(&vq);
	assert_true(vq_should_interrupt(&vq));
	drv_avail()[0] = VRING_AVAIL_F_NO_INTERRUPT;
	pop_push_one(&vq);
	assert_false(vq_should_interrupt(&vq));
}

static void test_interrupt_event_idx(void **state)
{
	(void)state;
	struct vq vq;
	setup_queue(&vq, 8);
	vq.event_idx = true;
	uint16_t *used_event = &drv_avail()[2 + 8];

	pop_push_one(&vq);
	assert_true(vq_should_interrupt(&vq)); /* first one always */
	*used_event = 2; /* interrupt me once used idx passes 2, i.e. reaches 3 */
	pop_push_one(&vq);                     /* used idx 2 */
	assert_false(vq_should_interrupt(&vq));
	pop_push_one(&vq);                     /* used idx 3 */
	assert_true(vq_should_interrupt(&vq));
	pop_push_one(&vq);                     /* used idx 4, event still 2 */
	assert_false(vq_should_interrupt(&vq));
}

static void test_notify_suppression(void **state)
{
	(void)state;
	struct vq vq;
	setup_queue(&vq, 4);
	assert_false(vq_enable_notify(&vq, false));
	assert_int_equal(drv_used_hdr()[0], VRING_USED_F_NO_NOTIFY);
	drv_set(drv_desc(), 0, BUF_GPA, 8, 0, 0);
	drv_publish(&vq, 0);
	/* Re-enabling reports the buffer that arrived while we were not listening. */
	assert_true(vq_enable_notify(&vq, true));
	assert_int_equal(drv_used_hdr()[0], 0);

	setup_queue(&vq, 4);
	vq.event_idx = true;
	uint16_t *avail_event = (uint16_t *)&drv_used_ring()[2 * 4];
	pop_push_one(&vq);
	assert_int_equal(*avail_event, 1); /* next notification wanted for entry 1 */
	assert_false(vq_enable_notify(&vq, true));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_readable_then_writable),
		cmocka_unit_test(test_zero_length_buffers_are_skipped),
		cmocka_unit_test(test_indirect_table),
		cmocka_unit_test(test_index_wrap),
		cmocka_unit_test(test_loop),
		cmocka_unit_test(test_self_loop),
		cmocka_unit_test(test_next_outside_table),
		cmocka_unit_test(test_head_outside_table),
		cmocka_unit_test(test_more_available_than_queue),
		cmocka_unit_test(test_buffers_outside_ram),
		cmocka_unit_test(test_readable_after_writable),
		cmocka_unit_test(test_indirect_hostile),
		cmocka_unit_test(test_too_many_segments),
		cmocka_unit_test(test_enable_rejects_bad_rings),
		cmocka_unit_test(test_interrupt_flags),
		cmocka_unit_test(test_interrupt_event_idx),
		cmocka_unit_test(test_notify_suppression),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
