/*
 * virtio-input (src/dev/virtio-input.c) driven by a simulated driver in
 * this process: both queues live in real guest memory (16 MiB, no KVM) and
 * a fake transport implements the calls of dev/virtio.h, as in
 * test_virtio_net.c.
 * Covered: the configuration space of the three kinds (name, serial, devids,
 * the event bits, abs info, property bits) and hostile selects and writes;
 * events delivered in order as buffers arrive, only whole frames, frames
 * spanning buffers; the ring bound with whole-frame dropping, a frame
 * larger than the ring; events the device does not offer filtered; the
 * wake fd; LED status reaching the callback once per change, the rest of
 * the status queue ignored, a status flood; hostile event buffers (too
 * short, read-only, split, outside guest RAM); the per-turn budget; the
 * host sending from another thread while the guest takes events; reset
 * clearing queued events and cutting a frame; the pixel scaling helper.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/input.h>
#include <linux/virtio_input.h>
#include <poll.h>
#include <pthread.h>

#include "dev/virtio-input.h"
#include "dev/virtio.h"
#include "hv/mem.h"
#include "virtio_drv.h"

#define RAM_SIZE  (16u << 20)
#define QSIZE     64
#define BUF_GPA   0x400000u   /* driver buffers, 64 bytes apart */
#define BUF_STEP  0x40u

static struct guest_mem mem;
static const uint64_t ring_gpa[2] = { 0x10000, 0x40000 }; /* desc, avail +0x10000, used +0x20000 */

/* ---- the fake transport ---- */

struct virtio_dev {
	struct vq vq[2];
	unsigned interrupts[2];
	unsigned needs_reset;
	char why[128];
	unsigned later[2];
};

struct vq *virtio_queue(struct virtio_dev *vd, unsigned q)
{
	return q < 2 && vd->vq[q].enabled ? &vd->vq[q] : NULL;
}

void virtio_queue_interrupt(struct virtio_dev *vd, unsigned q)
{
	if (vq_should_interrupt(&vd->vq[q]))
		vd->interrupts[q]++;
}

void virtio_config_changed(struct virtio_dev *vd)
{
	(void)vd;
}

void virtio_needs_reset(struct virtio_dev *vd, const char *why)
{
	vd->needs_reset++;
	snprintf(vd->why, sizeof(vd->why), "%s", why);
}

void virtio_queue_notify_later(struct virtio_dev *vd, unsigned q)
{
	vd->later[q]++;
}

/* ---- the host's callback ---- */

struct leds_seen {
	unsigned calls;
	unsigned bits;
};

static void leds_cb(void *ctx, unsigned bits)
{
	struct leds_seen *l = ctx;
	l->calls++;
	l->bits = bits;
}

/* ---- the simulated driver ---- */

struct drv {
	struct virtio_dev vd;
	struct virtio_input *in;
	struct leds_seen leds;
	struct vdrv_ring ring[2];
	unsigned next_buf;
};

static uint8_t *gpa(uint64_t a, uint64_t len) { return guest_mem_ptr(&mem, a, len); }

static void drv_start(struct drv *d)
{
	for (unsigned q = 0; q < 2; q++)
		vdrv_start(&d->ring[q], &d->vd.vq[q], &mem, ring_gpa[q], QSIZE, true);
	d->next_buf = 0;
	virtio_input_ops.activate(d->in, &d->vd, virtio_input_ops.features(d->in));
}

static void drv_open(struct drv *d, enum virtio_input_kind kind, const char *serial)
{
	memset(d, 0, sizeof(*d));
	struct virtio_input_host host = { .leds = leds_cb, .ctx = &d->leds };
	d->in = virtio_input_create(kind, serial, &host);
	assert_non_null(d->in);
	drv_start(d);
}

static void drv_close(struct drv *d)
{
	virtio_input_ops.reset(d->in);
	virtio_input_destroy(d->in);
}

static void drv_publish(struct drv *d, unsigned q, const struct seg *s, unsigned n)
{
	vdrv_publish(&d->ring[q], s, n);
}

static void drv_kick(struct drv *d, unsigned q)
{
	virtio_input_ops.queue_notify(d->in, &d->vd, q, VIRTIO_ON_IO_THREAD);
}

static unsigned drv_used_count(struct drv *d, unsigned q)
{
	return vdrv_used_count(&d->ring[q]);
}

static uint32_t drv_take_used(struct drv *d, unsigned q, uint32_t *id)
{
	return vdrv_take_used(&d->ring[q], id);
}

static uint64_t drv_buf(struct drv *d)
{
	return BUF_GPA + (uint64_t)(d->next_buf++ % 4096) * BUF_STEP;
}

/* Posts n 8-byte event buffers (filled with 0xcc), no kick. */
static void drv_post_events(struct drv *d, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct seg s = { drv_buf(d), 8, true };
		memset(gpa(s.gpa, 8), 0xcc, 8);
		drv_publish(d, VIRTIO_INPUT_QUEUE_EVENT, &s, 1);
	}
}

/* Takes the next used event buffer; it must hold 8 bytes. */
static struct virtio_input_ev drv_take_event(struct drv *d)
{
	uint32_t id;
	assert_int_equal(drv_take_used(d, VIRTIO_INPUT_QUEUE_EVENT, &id), 8);
	struct virtio_input_event e;
	memcpy(&e, gpa(vdrv_desc(&d->ring[VIRTIO_INPUT_QUEUE_EVENT])[id].addr, 8), 8);
	return (struct virtio_input_ev){ le16toh(e.type), le16toh(e.code), (int32_t)le32toh(e.value) };
}

/* ---- configuration space helpers ---- */

static void cfg_select(struct drv *d, uint8_t select, uint8_t subsel)
{
	virtio_input_ops.config_write(d->in, 0, &select, 1);
	virtio_input_ops.config_write(d->in, 1, &subsel, 1);
}

static uint8_t cfg_size(struct drv *d)
{
	uint8_t size;
	virtio_input_ops.config_read(d->in, 2, &size, 1);
	return size;
}

static void cfg_payload(struct drv *d, uint8_t *out)
{
	virtio_input_ops.config_read(d->in, 8, out, 128);
}

static bool cfg_bit(const uint8_t *bitmap, unsigned code)
{
	return bitmap[code / 8] & (1u << (code % 8));
}

/* The bitmap EV_BITS answers for `type`; its size. */
static unsigned cfg_ev_bits(struct drv *d, unsigned type, uint8_t *bitmap)
{
	cfg_select(d, VIRTIO_INPUT_CFG_EV_BITS, (uint8_t)type);
	cfg_payload(d, bitmap);
	return cfg_size(d);
}

static const struct virtio_input_ev SYN = { EV_SYN, SYN_REPORT, 0 };

/* A tablet frame: ABS_X = x, ABS_Y = x + 1, SYN. */
static void send_abs_frame(struct drv *d, int32_t x)
{
	struct virtio_input_ev f[3] = { { EV_ABS, ABS_X, x }, { EV_ABS, ABS_Y, x + 1 }, SYN };
	virtio_input_send(d->in, f, 3);
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

/* ---- configuration space ---- */

static void test_config_keyboard(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, VIRTIO_INPUT_KEYBOARD, NULL);
	assert_int_equal(virtio_input_ops.device_id, 18);
	assert_int_equal(virtio_input_ops.config_size, sizeof(struct virtio_input_config));
	uint8_t u[128];

	cfg_select(&d, VIRTIO_INPUT_CFG_ID_NAME, 0);
	cfg_payload(&d, u);
	assert_string_equal((char *)u, "Shoji Virtio Keyboard");
	assert_int_equal(cfg_size(&d), strlen("Shoji Virtio Keyboard") + 1);

	cfg_select(&d, VIRTIO_INPUT_CFG_ID_SERIAL, 0);
	assert_int_equal(cfg_size(&d), 0); /* none given */

	cfg_select(&d, VIRTIO_INPUT_CFG_ID_DEVIDS, 0);
	assert_int_equal(cfg_size(&d), 8);
	struct virtio_input_devids ids;
	virtio_input_ops.config_read(d.in, 8, (uint8_t *)&ids, sizeof(ids));
	assert_int_equal(le16toh(ids.bustype), BUS_VIRTUAL);
	assert_int_equal(le16toh(ids.vendor), 0x0627);
	assert_int_equal(le16toh(ids.product), 1);

	cfg_select(&d, VIRTIO_INPUT_CFG_PROP_BITS, 0);
	assert_int_equal(cfg_size(&d), 0);

	unsigned n = cfg_ev_bits(&d, EV_KEY, u);
	assert_true(n > KEY_F24 / 8 && n <= 128);
	const unsigned keys[] = { KEY_ESC, KEY_A, KEY_Z, KEY_ENTER, KEY_LEFTSHIFT, KEY_F1, KEY_F12,
				  KEY_KPENTER, KEY_RIGHTCTRL, KEY_SYSRQ, KEY_RIGHTALT, KEY_HOME,
				  KEY_DELETE, KEY_PAUSE, KEY_LEFTMETA, KEY_RIGHTMETA, KEY_COMPOSE,
				  KEY_102ND, KEY_YEN, KEY_RO, KEY_MUTE, KEY_VOLUMEUP, KEY_F24 };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		assert_true(cfg_bit(u, keys[i]));
	assert_false(cfg_bit(u, KEY_RESERVED));
	assert_false(cfg_bit(u, 84)); /* no key there */
	for (unsigned i = n; i < 128; i++)
		assert_int_equal(u[i], 0);

	assert_int_equal(cfg_ev_bits(&d, EV_REP, u), 1);
	assert_int_equal(u[0], 0);
	assert_int_equal(cfg_ev_bits(&d, EV_LED, u), 1);
	assert_int_equal(u[0], (1 << LED_NUML) | (1 << LED_CAPSL) | (1 << LED_SCROLLL));
	assert_int_equal(cfg_ev_bits(&d, EV_ABS, u), 0);
	assert_int_equal(cfg_ev_bits(&d, EV_REL, u), 0);
	assert_int_equal(cfg_ev_bits(&d, EV_SYN, u), 0);
	cfg_select(&d, VIRTIO_INPUT_CFG_ABS_INFO, ABS_X);
	assert_int_equal(cfg_size(&d), 0);
	drv_close(&d);
}

static void test_config_tablet(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, VIRTIO_INPUT_TABLET, "SN-0042");
	uint8_t u[128];

	cfg_select(&d, VIRTIO_INPUT_CFG_ID_NAME, 0);
	cfg_payload(&d, u);
	assert_string_equal((char *)u, "Shoji Virtio Tablet");
	cfg_select(&d, VIRTIO_INPUT_CFG_ID_SERIAL, 0);
	cfg_payload(&d, u);
	assert_int_equal(cfg_size(&d), 7);
	assert_memory_equal(u, "SN-0042", 7);

	cfg_select(&d, VIRTIO_INPUT_CFG_ID_DEVIDS, 0);
	struct virtio_input_devids ids;
	virtio_input_ops.config_read(d.in, 8, (uint8_t *)&ids, sizeof(ids));
	assert_int_equal(le16toh(ids.bustype), BUS_VIRTUAL);
	assert_int_equal(le16toh(ids.product), 3);

	assert_int_equal(cfg_ev_bits(&d, EV_ABS, u), 1);
	assert_int_equal(u[0], (1 << ABS_X) | (1 << ABS_Y));
	assert_int_equal(cfg_ev_bits(&d, EV_REL, u), 2);
	assert_true(cfg_bit(u, REL_WHEEL) && cfg_bit(u, REL_HWHEEL));
	assert_false(cfg_bit(u, REL_X) || cfg_bit(u, REL_Y));
	unsigned n = cfg_ev_bits(&d, EV_KEY, u);
	assert_int_equal(n, BTN_LEFT / 8 + 1);
	assert_true(cfg_bit(u, BTN_LEFT) && cfg_bit(u, BTN_RIGHT) && cfg_bit(u, BTN_MIDDLE));
	assert_false(cfg_bit(u, KEY_A));
	assert_int_equal(cfg_ev_bits(&d, EV_LED, u), 0);
	assert_int_equal(cfg_ev_bits(&d, EV_REP, u), 0);
	cfg_select(&d, VIRTIO_INPUT_CFG_PROP_BITS, 0);
	assert_int_equal(cfg_size(&d), 0);

	for (unsigned axis = ABS_X; axis <= ABS_Y; axis++) {
		cfg_select(&d, VIRTIO_INPUT_CFG_ABS_INFO, (uint8_t)axis);
		assert_int_equal(cfg_size(&d), sizeof(struct virtio_input_absinfo));
		struct virtio_input_absinfo abs;
		virtio_input_ops.config_read(d.in, 8, (uint8_t *)&abs, sizeof(abs));
		assert_int_equal(le32toh(abs.min), 0);
		assert_int_equal(le32toh(abs.max), 32767);
		assert_int_equal(abs.fuzz | abs.flat | abs.res, 0);
	}
	cfg_select(&d, VIRTIO_INPUT_CFG_ABS_INFO, ABS_Z);
	assert_int_equal(cfg_size(&d), 0);
	drv_close(&d);

	/* A serial longer than the payload is cut at 128 bytes. */
	char longer[300];
	memset(longer, 's', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = 0;
	drv_open(&d, VIRTIO_INPUT_KEYBOARD, longer);
	cfg_select(&d, VIRTIO_INPUT_CFG_ID_SERIAL, 0);
	assert_int_equal(cfg_size(&d), 128);
	drv_close(&d);
}

static void test_config_mouse(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, VIRTIO_INPUT_MOUSE, NULL);
	uint8_t u[128];
	cfg_select(&d, VIRTIO_INPUT_CFG_ID_NAME, 0);
	cfg_payload(&d, u);
	assert_string_equal((char *)u, "Shoji Virtio Mouse");
	cfg_select(&d, VIRTIO_INPUT_CFG_ID_DEVIDS, 0);
	struct virtio_input_devids ids;
	virtio_input_ops.config_read(d.in, 8, (uint8_t *)&ids, sizeof(ids));
	assert_int_equal(le16toh(ids.product), 2);
	assert_int_equal(cfg_ev_bits(&d, EV_REL, u), 2);
	assert_true(cfg_bit(u, REL_X) && cfg_bit(u, REL_Y) && cfg_bit(u, REL_WHEEL) &&
		    cfg_bit(u, REL_HWHEEL));
	assert_int_equal(cfg_ev_bits(&d, EV_ABS, u), 0);
	cfg_select(&d, VIRTIO_INPUT_CFG_ABS_INFO, ABS_X);
	assert_int_equal(cfg_size(&d), 0);
	assert_int_equal(cfg_ev_bits(&d, EV_KEY, u), BTN_LEFT / 8 + 1);
	assert_true(cfg_bit(u, BTN_LEFT) && cfg_bit(u, BTN_EXTRA));

	struct virtio_input_ev f[4] = { { EV_REL, REL_X, -5 }, { EV_REL, REL_Y, 7 },
					{ EV_ABS, ABS_X, 1 }, SYN };
	virtio_input_send(d.in, f, 4);
	drv_post_events(&d, 4);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
	assert_int_equal(drv_used_count(&d, VIRTIO_INPUT_QUEUE_EVENT), 3);
	assert_int_equal(drv_take_event(&d).value, -5);
	assert_int_equal(drv_take_event(&d).value, 7);
	assert_int_equal(drv_take_event(&d).type, EV_SYN);
	drv_close(&d);

	assert_null(virtio_input_create((enum virtio_input_kind)7, NULL, NULL));
}

static void test_config_hostile(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, VIRTIO_INPUT_TABLET, NULL);
	uint8_t u[128], zero[128] = { 0 };

	/* Unknown selects and subsels: size 0, nothing left of the last answer. */
	const uint8_t bad[][2] = { { VIRTIO_INPUT_CFG_UNSET, 0 }, { 0x04, 0 }, { 0x13, 0 },
				   { 0xff, 0xff }, { VIRTIO_INPUT_CFG_ID_NAME, 1 },
				   { VIRTIO_INPUT_CFG_ID_DEVIDS, 0xff },
				   { VIRTIO_INPUT_CFG_EV_BITS, EV_CNT },
				   { VIRTIO_INPUT_CFG_EV_BITS, 0xff },
				   { VIRTIO_INPUT_CFG_ABS_INFO, 0xff } };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cfg_select(&d, VIRTIO_INPUT_CFG_ID_NAME, 0);
		assert_true(cfg_size(&d) > 0);
		cfg_select(&d, bad[i][0], bad[i][1]);
		assert_int_equal(cfg_size(&d), 0);
		cfg_payload(&d, u);
		assert_memory_equal(u, zero, 128);
	}

	/* Writes beyond select/subsel change nothing. */
	cfg_select(&d, VIRTIO_INPUT_CFG_ID_DEVIDS, 0);
	uint8_t junk[136];
	memset(junk, 0xa5, sizeof(junk));
	for (uint32_t off = 2; off < 136; off++)
		virtio_input_ops.config_write(d.in, off, junk, 1);
	virtio_input_ops.config_write(d.in, 2, junk, 134);
	assert_int_equal(cfg_size(&d), 8);
	uint8_t hdr[8];
	virtio_input_ops.config_read(d.in, 0, hdr, 8);
	assert_int_equal(hdr[0], VIRTIO_INPUT_CFG_ID_DEVIDS);
	assert_int_equal(hdr[1], 0);
	assert_memory_equal(hdr + 3, zero, 5);

	/* A wide write at 0 sets select and subsel and ignores the rest. */
	uint8_t wide[4] = { VIRTIO_INPUT_CFG_ABS_INFO, ABS_Y, 0x55, 0x55 };
	virtio_input_ops.config_write(d.in, 0, wide, 4);
	assert_int_equal(cfg_size(&d), sizeof(struct virtio_input_absinfo));
	/* ... and one at 1 only subsel. */
	uint8_t wide1[2] = { ABS_Z, 0x77 };
	virtio_input_ops.config_write(d.in, 1, wide1, 2);
	virtio_input_ops.config_read(d.in, 0, hdr, 3);
	assert_int_equal(hdr[0], VIRTIO_INPUT_CFG_ABS_INFO);
	assert_int_equal(hdr[1], ABS_Z);
	assert_int_equal(hdr[2], 0);

	/* Reads past the end come back as zeros. */
	memset(u, 0xee, 8);
	virtio_input_ops.config_read(d.in, 132, u, 8);
	assert_memory_equal(u, zero, 8);

	/* Reset selects nothing. */
	cfg_select(&d, VIRTIO_INPUT_CFG_ID_NAME, 0);
	virtio_input_ops.reset(d.in);
	assert_int_equal(cfg_size(&d), 0);
	drv_close(&d);
}

/* ---- the event queue ---- */

static bool wake_pending(struct drv *d)
{
	struct virtio_queue_info info = virtio_queue_info_of(&virtio_input_ops, d->in,
							     VIRTIO_INPUT_QUEUE_EVENT);
	assert_true(info.wake_fd[0] >= 0);
	struct pollfd p = { .fd = info.wake_fd[0], .events = POLLIN };
	if (poll(&p, 1, 0) != 1)
		return false;
	uint64_t v;
	assert_int_equal(read(info.wake_fd[0], &v, 8), 8);
	return true;
}

static void test_events_in_order(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, VIRTIO_INPUT_TABLET, NULL);
	assert_false(wake_pending(&d));
	send_abs_frame(&d, 100);
	send_abs_frame(&d, 200);
	assert_true(wake_pending(&d));

	/* Buffers arrive one by one; events leave in order. */
	const int32_t want[6][3] = { { EV_ABS, ABS_X, 100 }, { EV_ABS, ABS_Y, 101 }, { EV_SYN, 0, 0 },
				     { EV_ABS, ABS_X, 200 }, { EV_ABS, ABS_Y, 201 }, { EV_SYN, 0, 0 } };
	for (unsigned i = 0; i < 6; i++) {
		drv_post_events(&d, 1);
		drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
		assert_int_equal(drv_used_count(&d, VIRTIO_INPUT_QUEUE_EVENT), 1);
		struct virtio_input_ev e = drv_take_event(&d);
		assert_int_equal(e.type, want[i][0]);
		assert_int_equal(e.code, want[i][1]);
		assert_int_equal(e.value, want[i][2]);
	}
	/* A buffer and no event: it waits. */
	drv_post_events(&d, 4);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
	assert_int_equal(drv_used_count(&d, VIRTIO_INPUT_QUEUE_EVENT), 0);
	/* Buttons, wheel and a negative value through waiting buffers. */
	struct virtio_input_ev f[4] = { { EV_KEY, BTN_LEFT, 1 }, { EV_REL, REL_WHEEL, -1 },
					{ EV_REL, REL_HWHEEL, 2 }, SYN };
	virtio_input_send(d.in, f, 4);
	assert_true(wake_pending(&d));
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
	for (unsigned i = 0; i < 4; i++) {
		struct virtio_input_ev e = drv_take_event(&d);
		assert_int_equal(e.type, f[i].type);
		assert_int_equal(e.code, f[i].code);
		assert_int_equal(e.value, f[i].value);
	}
	assert_true(d.vd.interrupts[VIRTIO_INPUT_QUEUE_EVENT] > 0);
	struct virtio_input_stats st;
	virtio_input_get_stats(d.in, &st);
	assert_int_equal(st.delivered, 10);
	assert_int_equal(st.queued, 0);
	assert_int_equal(st.dropped_frames, 0);
	assert_int_equal(d.vd.needs_reset, 0);
	drv_close(&d);
}

static void test_only_whole_frames(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, VIRTIO_INPUT_KEYBOARD, NULL);
	drv_post_events(&d, 8);
	struct virtio_input_ev a[2] = { { EV_KEY, KEY_LEFTSHIFT, 1 }, { EV_KEY, KEY_A, 1 } };
	virtio_input_send(d.in, a, 2); /* no SYN yet */
	assert_false(wake_pending(&d));
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
	assert_int_equal(drv_used_count(&d, VIRTIO_INPUT_QUEUE_EVENT), 0);
	virtio_input_send(d.in, &SYN, 1);
	assert_true(wake_pending(&d));
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
	assert_int_equal(drv_used_count(&d, VIRTIO_INPUT_QUEUE_EVENT), 3);
	assert_int_equal(drv_take_event(&d).code, KEY_LEFTSHIFT);
	assert_int_equal(drv_take_event(&d).code, KEY_A);
	assert_int_equal(drv_take_event(&d).type, EV_SYN);

	/* A frame spanning buffers: as many as there are, the rest later. */
	struct virtio_input_ev b[5] = { { EV_KEY, KEY_B, 1 }, { EV_KEY, KEY_C, 1 },
					{ EV_KEY, KEY_D, 1 }, { EV_KEY, KEY_E, 1 }, SYN };
	virtio_input_send(d.in, b, 5);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT); /* 5 buffers were left */
	assert_int_equal(drv_used_count(&d, VIRTIO_INPUT_QUEUE_EVENT), 5);
	for (unsigned i = 0; i < 5; i++)
		assert_int_equal(drv_take_event(&d).code, b[i].code);
	virtio_input_send(d.in, b, 5);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT); /* none left */
	drv_post_events(&d, 2);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
	assert_int_equal(drv_used_count(&d, VIRTIO_INPUT_QUEUE_EVENT), 2);
	assert_int_equal(drv_take_event(&d).code, KEY_B);
	assert_int_equal(drv_take_event(&d).code, KEY_C);
	drv_post_events(&d, 8);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
	assert_int_equal(drv_used_count(&d, VIRTIO_INPUT_QUEUE_EVENT), 3);
	assert_int_equal(drv_take_event(&d).code, KEY_D);
	assert_int_equal(drv_take_event(&d).code, KEY_E);
	assert_int_equal(drv_take_event(&d).type, EV_SYN);
	drv_close(&d);
}

static void test_filtered(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, VIRTIO_INPUT_KEYBOARD, NULL);
	struct virtio_input_ev f[6] = { { EV_ABS, ABS_X, 5 },      { EV_KEY, BTN_LEFT, 1 },
					{ EV_KEY, KEY_Q, 1 },      { EV_KEY, 0xffff, 1 },
					{ 0xffff, 0xffff, 1 },     SYN };
	virtio_input_send(d.in, f, 6);
	drv_post_events(&d, 8);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
	assert_int_equal(drv_used_count(&d, VIRTIO_INPUT_QUEUE_EVENT), 2);
	assert_int_equal(drv_take_event(&d).code, KEY_Q);
	assert_int_equal(drv_take_event(&d).type, EV_SYN);
	struct virtio_input_stats st;
	virtio_input_get_stats(d.in, &st);
	assert_int_equal(st.filtered, 4);
	drv_close(&d);

	drv_open(&d, VIRTIO_INPUT_TABLET, NULL);
	struct virtio_input_ev g[3] = { { EV_KEY, KEY_A, 1 }, { EV_LED, LED_NUML, 1 }, SYN };
	virtio_input_send(d.in, g, 3);
	virtio_input_get_stats(d.in, &st);
	assert_int_equal(st.filtered, 2);
	assert_int_equal(st.queued, 1); /* the SYN alone */
	drv_close(&d);
}

/* Whole frames go when the ring is full, never a part of one. */
static void test_ring_bound_drops_whole_frames(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, VIRTIO_INPUT_TABLET, NULL);
	/* 100 frames of 3 events and no buffers: 85 fit (255), frame 85 has one
	 * event in when the ring fills and is taken back; 86..99 go. */
	for (int32_t f = 0; f < 100; f++)
		send_abs_frame(&d, f * 10);
	struct virtio_input_stats st;
	virtio_input_get_stats(d.in, &st);
	assert_int_equal(st.queued, 255);
	assert_int_equal(st.dropped_frames, 15);

	/* The guest drains the ring: whole frames 0..84 in order, then room again. */
	unsigned got = 0;
	int32_t frame = 0;
	while (got < 255) {
		drv_post_events(&d, QSIZE);
		drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
		unsigned n = drv_used_count(&d, VIRTIO_INPUT_QUEUE_EVENT);
		assert_true(n > 0);
		for (unsigned i = 0; i < n; i++, got++) {
			struct virtio_input_ev e = drv_take_event(&d);
			if (got % 3 == 0) {
				assert_int_equal(e.code, ABS_X);
				assert_int_equal(e.value, frame * 10);
			} else if (got % 3 == 1) {
				assert_int_equal(e.code, ABS_Y);
				assert_int_equal(e.value, frame * 10 + 1);
			} else {
				assert_int_equal(e.type, EV_SYN);
				frame++;
			}
		}
	}
	assert_int_equal(frame, 85);
	/* One buffer of the last batch is left: room again for new frames. */
	send_abs_frame(&d, 7777);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
	assert_int_equal(drv_take_event(&d).value, 7777);
	virtio_input_get_stats(d.in, &st);
	assert_int_equal(st.delivered, 256);
	drv_close(&d);
}

/* A frame longer than the ring can never be whole in it: it goes. */
static void test_frame_larger_than_ring(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, VIRTIO_INPUT_TABLET, NULL);
	send_abs_frame(&d, 1);
	for (int32_t i = 0; i < 3 * VIRTIO_INPUT_RING; i++) {
		struct virtio_input_ev e = { EV_ABS, ABS_X, i };
		virtio_input_send(d.in, &e, 1);
	}
	virtio_input_send(d.in, &SYN, 1);
	send_abs_frame(&d, 2);
	struct virtio_input_stats st;
	virtio_input_get_stats(d.in, &st);
	assert_int_equal(st.queued, 6);
	assert_int_equal(st.dropped_frames, 1);
	drv_post_events(&d, 8);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
	assert_int_equal(drv_used_count(&d, VIRTIO_INPUT_QUEUE_EVENT), 6);
	assert_int_equal(drv_take_event(&d).value, 1);
	drv_take_event(&d);
	drv_take_event(&d);
	assert_int_equal(drv_take_event(&d).value, 2);
	drv_close(&d);
}

static void test_reset_clears_and_cuts_frames(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, VIRTIO_INPUT_TABLET, NULL);
	send_abs_frame(&d, 1);
	send_abs_frame(&d, 2);
	struct virtio_input_ev half = { EV_ABS, ABS_X, 3 };
	virtio_input_send(d.in, &half, 1); /* the host is mid-frame at the reset */
	virtio_input_ops.reset(d.in);
	struct virtio_input_stats st;
	virtio_input_get_stats(d.in, &st);
	assert_int_equal(st.queued, 0);

	/* Not running: events are discarded (no driver to take them). */
	send_abs_frame(&d, 4);
	virtio_input_get_stats(d.in, &st);
	assert_int_equal(st.queued, 0);
	/* The frame before the reset is still open; it is cut here. */
	struct virtio_input_ev half2 = { EV_ABS, ABS_X, 5 };
	virtio_input_send(d.in, &half2, 1);
	drv_start(&d);
	struct virtio_input_ev rest[2] = { { EV_ABS, ABS_Y, 6 }, SYN };
	virtio_input_send(d.in, rest, 2);
	send_abs_frame(&d, 7);
	drv_post_events(&d, 8);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
	assert_int_equal(drv_used_count(&d, VIRTIO_INPUT_QUEUE_EVENT), 3);
	assert_int_equal(drv_take_event(&d).value, 7);
	assert_int_equal(drv_take_event(&d).value, 8);
	assert_int_equal(drv_take_event(&d).type, EV_SYN);
	virtio_input_get_stats(d.in, &st);
	assert_int_equal(st.dropped_frames, 0); /* no driver is not a full ring */

	/* A kick after a reset (the wake fd's late turn) touches nothing. */
	send_abs_frame(&d, 9);
	virtio_input_ops.reset(d.in);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_STATUS);
	drv_close(&d);
}

static void test_hostile_event_buffers(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, VIRTIO_INPUT_KEYBOARD, NULL);
	struct virtio_input_ev k[2] = { { EV_KEY, KEY_X, 1 }, SYN };
	virtio_input_send(d.in, k, 2);

	/* Too short, read-only, and readable + too short writable: returned empty. */
	struct seg shortw = { drv_buf(&d), 4, true };
	drv_publish(&d, VIRTIO_INPUT_QUEUE_EVENT, &shortw, 1);
	struct seg ro = { drv_buf(&d), 8, false };
	drv_publish(&d, VIRTIO_INPUT_QUEUE_EVENT, &ro, 1);
	struct seg mixed[2] = { { drv_buf(&d), 8, false }, { drv_buf(&d), 7, true } };
	drv_publish(&d, VIRTIO_INPUT_QUEUE_EVENT, mixed, 2);
	struct seg zero = { drv_buf(&d), 0, true };
	drv_publish(&d, VIRTIO_INPUT_QUEUE_EVENT, &zero, 1);
	/* An event split over two writable pieces after a readable one is fine. */
	uint64_t b = drv_buf(&d);
	memset(gpa(b, 16), 0xcc, 16);
	struct seg split[3] = { { drv_buf(&d), 8, false }, { b, 3, true }, { b + 3, 5, true } };
	drv_publish(&d, VIRTIO_INPUT_QUEUE_EVENT, split, 3);
	drv_post_events(&d, 1);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);

	assert_int_equal(drv_used_count(&d, VIRTIO_INPUT_QUEUE_EVENT), 6);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(drv_take_used(&d, VIRTIO_INPUT_QUEUE_EVENT, NULL), 0);
	assert_int_equal(drv_take_used(&d, VIRTIO_INPUT_QUEUE_EVENT, NULL), 8);
	struct virtio_input_event e;
	memcpy(&e, gpa(b, 8), 8);
	assert_int_equal(le16toh(e.type), EV_KEY);
	assert_int_equal(le16toh(e.code), KEY_X);
	assert_int_equal(le32toh(e.value), 1);
	assert_int_equal(gpa(b, 9)[8], 0xcc); /* nothing past the event */
	assert_int_equal(drv_take_event(&d).type, EV_SYN);
	struct virtio_input_stats st;
	virtio_input_get_stats(d.in, &st);
	assert_int_equal(st.bad_buffers, 4);
	assert_int_equal(d.vd.needs_reset, 0);

	/* A buffer outside guest RAM: the queue is broken, the device needs a reset. */
	virtio_input_send(d.in, k, 2);
	struct seg outside = { RAM_SIZE - 4, 8, true };
	drv_publish(&d, VIRTIO_INPUT_QUEUE_EVENT, &outside, 1);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
	assert_int_equal(d.vd.needs_reset, 1);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
	assert_int_equal(d.vd.needs_reset, 2); /* the transport logs once; we stay sane */
	virtio_input_ops.reset(d.in);
	drv_start(&d);
	struct seg huge = { 0x1000, 0xffffffffu, true };
	virtio_input_send(d.in, k, 2);
	drv_publish(&d, VIRTIO_INPUT_QUEUE_EVENT, &huge, 1);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
	assert_int_equal(d.vd.needs_reset, 3);
	drv_close(&d);
}

/* At most VIRTIO_QUEUE_BUDGET buffers per turn; the rest on a later one. */
static void test_budget(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, VIRTIO_INPUT_TABLET, NULL);
	for (int32_t f = 0; f < 40; f++)
		send_abs_frame(&d, f);
	drv_post_events(&d, QSIZE);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
	assert_int_equal(drv_used_count(&d, VIRTIO_INPUT_QUEUE_EVENT), VIRTIO_QUEUE_BUDGET);
	assert_int_equal(d.vd.later[VIRTIO_INPUT_QUEUE_EVENT], 1);
	for (unsigned i = 0; i < VIRTIO_QUEUE_BUDGET; i++)
		drv_take_event(&d);
	drv_post_events(&d, QSIZE);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
	assert_int_equal(drv_used_count(&d, VIRTIO_INPUT_QUEUE_EVENT), 120 - VIRTIO_QUEUE_BUDGET);
	assert_int_equal(d.vd.later[VIRTIO_INPUT_QUEUE_EVENT], 1);
	drv_close(&d);
}

/* The host sends from its own thread while the guest takes events: every
 * frame arrives whole and in order, or is counted as dropped. */
#define RACE_FRAMES 20000

static void *race_sender(void *arg)
{
	struct drv *d = arg;
	for (int32_t f = 1; f <= RACE_FRAMES; f++)
		send_abs_frame(d, f);
	return NULL;
}

static void test_send_from_another_thread(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, VIRTIO_INPUT_TABLET, NULL);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, race_sender, &d), 0);
	unsigned got = 0, frames = 0;
	int32_t last = 0;
	unsigned posted = 0; /* buffers the device holds or has not taken */
	bool done = false;
	for (;;) {
		struct virtio_input_stats st;
		virtio_input_get_stats(d.in, &st);
		if (done && st.queued == 0)
			break;
		assert_int_equal(d.vd.needs_reset, 0);
		drv_post_events(&d, QSIZE - posted);
		posted = QSIZE;
		drv_kick(&d, VIRTIO_INPUT_QUEUE_EVENT);
		for (unsigned n = drv_used_count(&d, VIRTIO_INPUT_QUEUE_EVENT); n; n--, got++) {
			posted--;
			struct virtio_input_ev e = drv_take_event(&d);
			if (got % 3 == 0) {
				assert_int_equal(e.code, ABS_X);
				assert_true(e.value > last);
				last = e.value;
			} else if (got % 3 == 1) {
				assert_int_equal(e.code, ABS_Y);
				assert_int_equal(e.value, last + 1);
			} else {
				assert_int_equal(e.type, EV_SYN);
				frames++;
			}
		}
		if (!done && pthread_tryjoin_np(t, NULL) == 0)
			done = true;
	}
	struct virtio_input_stats st;
	virtio_input_get_stats(d.in, &st);
	assert_int_equal(got % 3, 0);
	assert_int_equal(frames + st.dropped_frames, RACE_FRAMES);
	assert_true(frames > 0);
	assert_int_equal(st.delivered, got);
	assert_int_equal(d.vd.needs_reset, 0);
	drv_close(&d);
}

/* ---- the status queue ---- */

static void post_status(struct drv *d, uint16_t type, uint16_t code, int32_t value)
{
	struct virtio_input_event e = { htole16(type), htole16(code), htole32((uint32_t)value) };
	struct seg s = { drv_buf(d), 8, false };
	memcpy(gpa(s.gpa, 8), &e, 8);
	drv_publish(d, VIRTIO_INPUT_QUEUE_STATUS, &s, 1);
}

static void test_leds(void **state)
{
	(void)state;
	struct drv d;
	drv_open(&d, VIRTIO_INPUT_KEYBOARD, NULL);
	post_status(&d, EV_LED, LED_NUML, 1);
	post_status(&d, EV_LED, LED_CAPSL, 1);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_STATUS);
	assert_int_equal(d.leds.calls, 1);
	assert_int_equal(d.leds.bits, (1 << LED_NUML) | (1 << LED_CAPSL));
	assert_int_equal(drv_used_count(&d, VIRTIO_INPUT_QUEUE_STATUS), 2);
	assert_int_equal(drv_take_used(&d, VIRTIO_INPUT_QUEUE_STATUS, NULL), 0);
	assert_int_equal(drv_take_used(&d, VIRTIO_INPUT_QUEUE_STATUS, NULL), 0);

	/* The same state again, and things the device ignores: no call. */
	post_status(&d, EV_LED, LED_NUML, 1);
	post_status(&d, EV_LED, LED_KANA, 1);   /* not offered */
	post_status(&d, EV_LED, 0xffff, 1);
	post_status(&d, EV_KEY, KEY_A, 1);
	post_status(&d, EV_SND, SND_BELL, 1);
	struct seg shortr = { drv_buf(&d), 4, false };
	drv_publish(&d, VIRTIO_INPUT_QUEUE_STATUS, &shortr, 1);
	struct seg w = { drv_buf(&d), 8, true };
	drv_publish(&d, VIRTIO_INPUT_QUEUE_STATUS, &w, 1);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_STATUS);
	assert_int_equal(d.leds.calls, 1);
	assert_int_equal(drv_used_count(&d, VIRTIO_INPUT_QUEUE_STATUS), 7);
	d.ring[VIRTIO_INPUT_QUEUE_STATUS].used_seen += 7;

	/* Caps off, Scroll on. */
	post_status(&d, EV_LED, LED_CAPSL, 0);
	post_status(&d, EV_LED, LED_SCROLLL, 1);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_STATUS);
	assert_int_equal(d.leds.calls, 2);
	assert_int_equal(d.leds.bits, (1 << LED_NUML) | (1 << LED_SCROLLL));
	d.ring[VIRTIO_INPUT_QUEUE_STATUS].used_seen += 2;

	/* A flood that toggles Caps Lock: one call per turn at most, the last state. */
	for (unsigned i = 0; i < QSIZE; i++)
		post_status(&d, EV_LED, LED_CAPSL, (int32_t)(i & 1));
	drv_kick(&d, VIRTIO_INPUT_QUEUE_STATUS);
	assert_int_equal(d.leds.calls, 3);
	assert_int_equal(d.leds.bits, (1 << LED_NUML) | (1 << LED_SCROLLL) | (1 << LED_CAPSL));
	assert_int_equal(drv_used_count(&d, VIRTIO_INPUT_QUEUE_STATUS), QSIZE);
	d.ring[VIRTIO_INPUT_QUEUE_STATUS].used_seen += QSIZE;

	/* A status buffer outside guest RAM: needs reset, no call, no crash. */
	struct seg outside = { RAM_SIZE, 8, false };
	drv_publish(&d, VIRTIO_INPUT_QUEUE_STATUS, &outside, 1);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_STATUS);
	assert_int_equal(d.vd.needs_reset, 1);
	assert_int_equal(d.leds.calls, 3);

	/* After a reset the state starts from nothing again. */
	virtio_input_ops.reset(d.in);
	drv_start(&d);
	post_status(&d, EV_LED, LED_NUML, 1);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_STATUS);
	assert_int_equal(d.leds.calls, 4);
	assert_int_equal(d.leds.bits, 1 << LED_NUML);
	drv_close(&d);

	/* The tablet has no LEDs: nothing reaches the host. */
	drv_open(&d, VIRTIO_INPUT_TABLET, NULL);
	post_status(&d, EV_LED, LED_NUML, 1);
	drv_kick(&d, VIRTIO_INPUT_QUEUE_STATUS);
	assert_int_equal(d.leds.calls, 0);
	drv_close(&d);
}

static void test_abs_scale(void **state)
{
	(void)state;
	assert_int_equal(virtio_input_abs_scale(0, 1920), 0);
	assert_int_equal(virtio_input_abs_scale(1919, 1920), 32767);
	assert_int_equal(virtio_input_abs_scale(5000, 1920), 32767);
	assert_int_equal(virtio_input_abs_scale(-3, 1920), 0);
	assert_int_equal(virtio_input_abs_scale(INT64_MIN, 1920), 0);
	assert_int_equal(virtio_input_abs_scale(INT64_MAX, 1920), 32767);
	assert_int_equal(virtio_input_abs_scale(1, 2), 32767);
	assert_int_equal(virtio_input_abs_scale(0, 0), 0);
	assert_int_equal(virtio_input_abs_scale(7, 1), 0);
	assert_int_equal(virtio_input_abs_scale(1, UINT32_MAX), 0);
	assert_int_equal(virtio_input_abs_scale(UINT32_MAX - 1, UINT32_MAX), 32767);
	/* Every pixel maps to its own value and back (what the e2e test will check). */
	for (uint32_t size = 2; size <= 4096; size = size * 3 + 1) {
		int32_t prev = -1;
		for (uint32_t p = 0; p < size; p++) {
			int32_t v = virtio_input_abs_scale(p, size);
			assert_true(v > prev && v <= 32767);
			int64_t back = ((int64_t)v * (size - 1) + 32767 / 2) / 32767;
			assert_int_equal(back, p);
			prev = v;
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_keyboard),
		cmocka_unit_test(test_config_tablet),
		cmocka_unit_test(test_config_mouse),
		cmocka_unit_test(test_config_hostile),
		cmocka_unit_test(test_events_in_order),
		cmocka_unit_test(test_only_whole_frames),
		cmocka_unit_test(test_filtered),
		cmocka_unit_test(test_ring_bound_drops_whole_frames),
		cmocka_unit_test(test_frame_larger_than_ring),
		cmocka_unit_test(test_reset_clears_and_cuts_frames),
		cmocka_unit_test(test_hostile_event_buffers),
		cmocka_unit_test(test_budget),
		cmocka_unit_test(test_send_from_another_thread),
		cmocka_unit_test(test_leds),
		cmocka_unit_test(test_abs_scale),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
