/*
 * libFuzzer target: virtio-input (src/dev/virtio-input.c) against arbitrary
 * configuration selects and queue contents, through the real split-virtqueue
 * walker, with the host sending frames between the guest's kicks.
 *
 * Input layout:
 *   byte 0      queue size as a power of two (1 .. 64), both queues
 *   byte 1      bits 0-1 the kind (keyboard, tablet, mouse; 3 is a tablet),
 *               bit 2 INDIRECT_DESC, bit 3 EVENT_IDX
 *   bytes 2-17  8 (select, subsel) pairs the driver writes, each followed by
 *               a read of the whole configuration space
 *   byte 18     frames the host sends (each: two events, some of them not
 *               offered by the kind, and SYN_REPORT), half before the first
 *               kick and half between the kicks
 *   36 bytes    event queue's available ring: flags, idx, ring[16]
 *   36 bytes    status queue's available ring
 *   the rest    guest memory from the descriptor tables on (gpa 0x1000,
 *               event table first, status table at +0x1000), up to 0xe000
 *               bytes: descriptors, events, buffers
 * Checks: ASan for any access outside guest RAM or the device; size within
 * the payload and an unknown select all zeros; every used event buffer 0 or
 * 8 bytes and within its chain; status buffers returned with length 0;
 * never more delivered than sent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/input.h>

#include "base/log.h"
#include "dev/virtio-input.h"
#include "dev/virtio.h"
#include "hv/mem.h"
#include "fake_transport.h"

#define RAM_SIZE   (1u << 20)
#define DESC_GPA   0x1000u
#define AVAIL_GPA  0x10000u   /* event queue; status at +0x100 */
#define USED_GPA   0x11000u   /* event queue; status at +0x1000 */
#define AVAIL_IN   (4 + 2 * 16)
#define HDR_IN     19

static void leds(void *ctx, unsigned bits)
{
	(void)ctx;
	if (bits & ~((1u << LED_NUML) | (1u << LED_CAPSL) | (1u << LED_SCROLLL)))
		abort(); /* an LED the keyboard never offered */
}

static struct guest_mem mem;
static struct virtio_input *devs[3];

static void setup_once(void)
{
	log_init("fuzz-virtio-input", LOG_LEVEL_ERROR);
	if (!guest_mem_alloc(&mem, RAM_SIZE))
		abort();
	struct virtio_input_host host = { .leds = leds };
	devs[0] = virtio_input_create(VIRTIO_INPUT_KEYBOARD, "fuzz", &host);
	devs[1] = virtio_input_create(VIRTIO_INPUT_TABLET, NULL, &host);
	devs[2] = virtio_input_create(VIRTIO_INPUT_MOUSE, NULL, &host);
	if (!devs[0] || !devs[1] || !devs[2])
		abort();
}

static bool queue_start(struct vq *vq, uint16_t size, unsigned q, uint64_t f)
{
	vq_reset(vq, &mem);
	vq->size = size;
	vq->desc_gpa = DESC_GPA + q * 0x1000u;
	vq->avail_gpa = AVAIL_GPA + q * 0x100u;
	vq->used_gpa = USED_GPA + q * 0x1000u;
	vq->indirect = f & VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC_BIT);
	vq->event_idx = f & VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT);
	return vq_enable(vq);
}

static const struct virtio_input_ev host_events[] = {
	{ EV_KEY, KEY_A, 1 }, { EV_KEY, KEY_A, 0 }, { EV_KEY, BTN_LEFT, 1 },
	{ EV_ABS, ABS_X, 32767 }, { EV_ABS, ABS_Y, 0 }, { EV_REL, REL_WHEEL, -1 },
	{ EV_REL, REL_X, 5 }, { EV_LED, LED_CAPSL, 1 },
};

static uint64_t sent;

static void host_send(struct virtio_input *in, unsigned frames, unsigned seed)
{
	for (unsigned i = 0; i < frames; i++) {
		struct virtio_input_ev f[3] = {
			host_events[(seed + i) % 8], host_events[(seed + 3 * i + 1) % 8],
			{ EV_SYN, SYN_REPORT, 0 },
		};
		virtio_input_send(in, f, 3);
		sent += 3;
	}
}

static void check_config(struct virtio_input *in, uint8_t select, uint8_t subsel)
{
	virtio_input_ops.config_write(in, 0, &select, 1);
	virtio_input_ops.config_write(in, 1, &subsel, 1);
	uint8_t cfg[VIRTIO_INPUT_CONFIG_SIZE];
	virtio_input_ops.config_read(in, 0, cfg, sizeof(cfg));
	if (cfg[0] != select || cfg[1] != subsel || cfg[2] > 128)
		abort();
	for (unsigned i = 8u + cfg[2]; i < sizeof(cfg); i++)
		if (cfg[i])
			abort(); /* nothing past the answer */
}

/* Used entries of queue q: lengths `ok` allows, within the chain's bytes. */
static void check_used(struct vq *vq, bool event)
{
	if (vq->broken)
		return;
	if ((uint16_t)(vq->last_avail - vq->used_idx) > vq->size)
		abort();
	for (uint16_t i = 0; i < vq->used_idx && i < vq->size; i++) {
		uint32_t len = vq->used_ring[2 * i + 1];
		if (event ? len != 0 && len != 8 : len != 0)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!mem.count)
		setup_once();
	size_t fixed = HDR_IN + 2 * AVAIL_IN;
	if (size < fixed)
		return 0;
	uint8_t *ram = guest_mem_ptr(&mem, 0, RAM_SIZE);
	memset(ram, 0, 0x13000);
	memcpy(ram + AVAIL_GPA, data + HDR_IN, AVAIL_IN);
	memcpy(ram + AVAIL_GPA + 0x100, data + HDR_IN + AVAIL_IN, AVAIL_IN);
	size_t body = size - fixed < 0xe000 ? size - fixed : 0xe000;
	memcpy(ram + DESC_GPA, data + fixed, body);

	uint8_t mode = data[1];
	struct virtio_input *in = devs[(mode & 3) % 3];
	uint64_t f = virtio_input_ops.features(in);
	if (!(mode & 4))
		f &= ~VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC_BIT);
	if (!(mode & 8))
		f &= ~VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT);

	for (unsigned i = 0; i < 8; i++)
		check_config(in, data[2 + 2 * i], data[3 + 2 * i]);

	static struct virtio_dev vd;
	vd.needs_reset = false;
	uint16_t qsize = (uint16_t)(1u << (data[0] % 7));
	if (!queue_start(&vd.vq[0], qsize, 0, f) || !queue_start(&vd.vq[1], qsize, 1, f))
		return 0;
	struct virtio_input_stats before;
	virtio_input_get_stats(in, &before);
	sent = 0;
	virtio_input_ops.activate(in, &vd, f);
	host_send(in, data[18] / 2, data[18]);
	virtio_input_ops.queue_notify(in, &vd, VIRTIO_INPUT_QUEUE_STATUS, VIRTIO_ON_IO_THREAD);
	virtio_input_ops.queue_notify(in, &vd, VIRTIO_INPUT_QUEUE_EVENT, VIRTIO_ON_IO_THREAD);
	host_send(in, data[18] - data[18] / 2, data[0]);
	virtio_input_ops.queue_notify(in, &vd, VIRTIO_INPUT_QUEUE_EVENT, VIRTIO_ON_IO_THREAD);
	check_used(&vd.vq[0], true);
	check_used(&vd.vq[1], false);
	struct virtio_input_stats after;
	virtio_input_get_stats(in, &after);
	if (after.delivered - before.delivered > sent || after.queued > VIRTIO_INPUT_RING)
		abort();
	virtio_input_ops.reset(in);
	return 0;
}
