/*
 * libFuzzer target: the split virtqueue walker (src/dev/virtqueue.c) against
 * arbitrary ring contents. The input is a header byte pair (queue size as a
 * power of two, feature bits) followed by the bytes that become guest memory
 * from the descriptor table on; the harness then pops, touches every byte
 * of every buffer it is handed (so ASan sees any iovec outside guest RAM),
 * and pushes, as a device would.
 */
#include <stdint.h>
#include <string.h>

#include "dev/virtqueue.h"
#include "hv/mem.h"

#define RAM_SIZE  (1u << 20)
#define DESC_GPA  0x1000u
#define AVAIL_GPA 0x10000u
#define USED_GPA  0x11000u
#define AVAIL_IN  (4 + 2 * 16)  /* avail bytes taken from the input */

static struct guest_mem mem;

static void touch(const struct vq_chain *c)
{
	volatile uint8_t sink = 0;
	for (unsigned i = 0; i < c->nr_iov; i++) {
		uint8_t *p = c->iov[i].iov_base;
		size_t n = c->iov[i].iov_len;
		sink ^= p[0];
		sink ^= p[n - 1];
		if (i >= c->nr_readable)
			p[n - 1] = 0xa5;
	}
	(void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!mem.count && !guest_mem_alloc(&mem, RAM_SIZE))
		return 0;
	if (size < 2 + AVAIL_IN)
		return 0;
	uint8_t *ram = guest_mem_ptr(&mem, 0, RAM_SIZE);
	memset(ram, 0, 0x12000);
	memcpy(ram + AVAIL_GPA, data + 2, AVAIL_IN);
	size_t body = size - 2 - AVAIL_IN < 0xf000 ? size - 2 - AVAIL_IN : 0xf000;
	memcpy(ram + DESC_GPA, data + 2 + AVAIL_IN, body);

	struct vq vq;
	vq_reset(&vq, &mem);
	vq.size = (uint16_t)(1u << (data[0] % 10)); /* 1 .. 512: the table fits below AVAIL_GPA */
	vq.indirect = data[1] & 1;
	vq.event_idx = data[1] & 2;
	vq.desc_gpa = DESC_GPA;
	vq.avail_gpa = AVAIL_GPA;
	vq.used_gpa = USED_GPA;
	if (!vq_enable(&vq))
		return 0;

	static struct vq_chain chain;
	for (int round = 0; round < 64; round++) {
		enum vq_pop_result r = vq_pop(&vq, &chain);
		if (r != VQ_CHAIN)
			break;
		touch(&chain);
		vq_push(&vq, chain.head, (uint32_t)chain.writable_len);
		vq_should_interrupt(&vq);
		vq_enable_notify(&vq, round & 1);
	}
	return 0;
}
