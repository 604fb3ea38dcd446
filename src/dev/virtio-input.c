/*
 * virtio-input device (see virtio-input.h): the configuration space, the
 * ring between the host and the event queue, and the status queue.
 *
 * What the guest sees is what QEMU's virtio-keyboard-pci,
 * virtio-tablet-pci and virtio-mouse-pci (wheel-axis=on) show, so drivers
 * written against them work: bus BUS_VIRTUAL, vendor 0x0627 (QEMU's),
 * product 1 for the keyboard, 2 for the mouse, 3 for the tablet; no
 * property bits (QEMU sets none: a tablet is a pointer that the guest
 * moves to absolute positions, not a touch screen); the keyboard offers
 * EV_KEY, EV_REP (an empty bitmap: the guest does its own autorepeat) and
 * EV_LED (Num, Caps, Scroll); the pointers EV_KEY (left, right, middle,
 * side, extra buttons) and EV_REL (REL_WHEEL, and REL_HWHEEL, which QEMU
 * lacks), plus REL_X/REL_Y for the mouse and EV_ABS (ABS_X, ABS_Y over
 * 0 .. 32767) for the tablet. The name includes its NUL in `size`, as
 * QEMU's does. A select/subsel pair the device does not know reads as size
 * 0 with a zeroed payload (virtio 1.2, 5.8.5.2), whatever the guest wrote.
 *
 * The keyboard's keys are the ones a PC keyboard can send (the 105 keys,
 * the Japanese and Korean ones, the multimedia and F13-F24 keys), the set
 * QEMU's qcode map reaches, listed below as ranges.
 *
 * THE RING. The host's events wait in a ring of VIRTIO_INPUT_RING until
 * the guest posts buffers. Only whole frames (events up to and including
 * EV_SYN/SYN_REPORT) are delivered, and when the ring is full the frame
 * being added is dropped whole: its events already in the ring are taken
 * back and the rest is discarded up to its SYN_REPORT. Never a partial
 * frame, because the guest applies a frame as one change of state: half
 * of one would move the pointer to a position on one axis only, or press
 * a key whose modifier was lost. The newest frame goes, not the oldest,
 * because an older frame may already be half in the guest's buffers (a
 * frame may span buffers), while the open one has not been delivered at
 * all. While the driver is not running events are discarded the same way
 * (frame by frame), so a frame cut by a reset or an activation never
 * reaches the guest in part. Events the device does not advertise are
 * filtered out before any of this.
 *
 * THE GUEST IS HOSTILE. Chains are walked and bounded by vq_pop(); a broken
 * ring puts the device in DEVICE_NEEDS_RESET. An event buffer with less
 * than 8 writable bytes is returned unused (length 0) and logged, rate
 * limited, as virtio-net and virtio-vsock do with short receive buffers.
 * The status queue is served with the per-turn budget, and the host hears
 * of LED changes at most once per turn, whatever the guest floods it with.
 *
 * Locking: the transport's lock serialises the ops below (config, status,
 * the LED state); `lock` guards the ring, which virtio_input_send() fills
 * from any thread. Order: the transport's lock, then `lock`.
 */
#include "dev/virtio-input.h"

#include <endian.h>
#include <errno.h>
#include <linux/input.h> /* BUS_VIRTUAL, and the event codes */
#include <linux/virtio_input.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/iov.h"
#include "base/log.h"
#include "base/ratelimit.h"
#include "base/util.h"

#define INPUT_QUEUE_SIZE 64 /* QEMU's, for both queues */
#define INPUT_EV_BYTES   8
#define INPUT_BITMAP     128
#define INPUT_VENDOR     0x0627

struct code_range {
	uint16_t first, last;
};

static const struct code_range keyboard_keys[] = {
	{ KEY_ESC, KEY_KPDOT },               /* the main block, keypad */
	{ KEY_ZENKAKUHANKAKU, KEY_KPJPCOMMA }, /* 102nd key, F11, F12, Japanese */
	{ KEY_KPENTER, KEY_RIGHTALT },
	{ KEY_HOME, KEY_DELETE },
	{ KEY_MUTE, KEY_KPEQUAL },
	{ KEY_PAUSE, KEY_PAUSE },
	{ KEY_KPCOMMA, KEY_COMPOSE },         /* Korean, Yen, the Windows keys, Menu */
	{ KEY_STOP, KEY_CALC },
	{ KEY_SLEEP, KEY_WAKEUP },
	{ KEY_WWW, KEY_WWW },
	{ KEY_MAIL, KEY_FORWARD },
	{ KEY_NEXTSONG, KEY_STOPCD },
	{ KEY_HOMEPAGE, KEY_REFRESH },
	{ KEY_F13, KEY_F24 },
};

static const struct code_range pointer_buttons[] = {
	{ BTN_LEFT, BTN_EXTRA }, /* left, right, middle, side, extra */
};

struct virtio_input {
	enum virtio_input_kind kind;
	struct virtio_input_host host;
	int wake_fd;                         /* eventq's: the ring has frames */

	/* What the configuration space offers, fixed at creation. */
	const char *name;
	char serial[INPUT_BITMAP + 1];
	uint8_t bits[EV_CNT][INPUT_BITMAP];  /* EV_BITS, per event type */
	uint8_t bits_size[EV_CNT];

	/* Under the transport's lock. */
	uint8_t config[VIRTIO_INPUT_CONFIG_SIZE];
	unsigned leds, leds_reported;
	struct vq_chain chain;
	struct ratelimit log_limit;

	pthread_mutex_t lock;                /* the rest */
	bool active;
	struct virtio_input_event ring[VIRTIO_INPUT_RING]; /* little-endian */
	unsigned head, count;
	unsigned open;                       /* events at the tail of an unfinished frame */
	bool host_mid_frame;                 /* the host's last event was not SYN_REPORT */
	enum { FRAME_KEEP, FRAME_DROP_IDLE, FRAME_DROP_FULL } frame;
	struct virtio_input_stats stats;
};

/* ---- the configuration space ---- */

static void bits_set(struct virtio_input *in, unsigned type, unsigned code)
{
	in->bits[type][code / 8] |= (uint8_t)(1u << (code % 8));
	if (in->bits_size[type] < code / 8 + 1)
		in->bits_size[type] = (uint8_t)(code / 8 + 1);
}

static void bits_set_ranges(struct virtio_input *in, unsigned type, const struct code_range *r,
			    size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (unsigned c = r[i].first; c <= r[i].last; c++)
			bits_set(in, type, c);
}

static bool bits_has(const struct virtio_input *in, unsigned type, unsigned code)
{
	return type < EV_CNT && code / 8 < in->bits_size[type] &&
	       (in->bits[type][code / 8] & (1u << (code % 8)));
}

static void config_setup(struct virtio_input *in)
{
	if (in->kind == VIRTIO_INPUT_KEYBOARD) {
		in->name = "Shoji Virtio Keyboard";
		bits_set_ranges(in, EV_KEY, keyboard_keys, ARRAY_SIZE(keyboard_keys));
		in->bits_size[EV_REP] = 1; /* offered, no codes */
		bits_set(in, EV_LED, LED_NUML);
		bits_set(in, EV_LED, LED_CAPSL);
		bits_set(in, EV_LED, LED_SCROLLL);
		return;
	}
	bits_set_ranges(in, EV_KEY, pointer_buttons, ARRAY_SIZE(pointer_buttons));
	bits_set(in, EV_REL, REL_HWHEEL);
	bits_set(in, EV_REL, REL_WHEEL);
	if (in->kind == VIRTIO_INPUT_MOUSE) {
		in->name = "Shoji Virtio Mouse";
		bits_set(in, EV_REL, REL_X);
		bits_set(in, EV_REL, REL_Y);
	} else {
		in->name = "Shoji Virtio Tablet";
		bits_set(in, EV_ABS, ABS_X);
		bits_set(in, EV_ABS, ABS_Y);
	}
}

/* ID_DEVIDS product: QEMU's numbering (the version is QEMU's too). */
static unsigned kind_product(enum virtio_input_kind kind)
{
	return kind == VIRTIO_INPUT_KEYBOARD ? 1 : kind == VIRTIO_INPUT_MOUSE ? 2 : 3;
}

/* Fills size and payload for the select/subsel the guest wrote. */
static void config_select(struct virtio_input *in)
{
	uint8_t select = in->config[0], subsel = in->config[1];
	uint8_t *u = in->config + offsetof(struct virtio_input_config, u);
	size_t size = 0;
	memset(in->config + 2, 0, sizeof(in->config) - 2);
	switch (select) {
	case VIRTIO_INPUT_CFG_ID_NAME:
		if (subsel == 0) {
			size = strlen(in->name) + 1;
			memcpy(u, in->name, size);
		}
		break;
	case VIRTIO_INPUT_CFG_ID_SERIAL:
		if (subsel == 0) {
			size = strlen(in->serial);
			memcpy(u, in->serial, size);
		}
		break;
	case VIRTIO_INPUT_CFG_ID_DEVIDS:
		if (subsel == 0) {
			le_store(u + 0, BUS_VIRTUAL, 2);
			le_store(u + 2, INPUT_VENDOR, 2);
			le_store(u + 4, kind_product(in->kind), 2);
			le_store(u + 6, in->kind == VIRTIO_INPUT_KEYBOARD ? 1 : 2, 2);
			size = sizeof(struct virtio_input_devids);
		}
		break;
	case VIRTIO_INPUT_CFG_EV_BITS:
		if (subsel < EV_CNT && in->bits_size[subsel]) {
			size = in->bits_size[subsel];
			memcpy(u, in->bits[subsel], size);
		}
		break;
	case VIRTIO_INPUT_CFG_ABS_INFO:
		if (bits_has(in, EV_ABS, subsel)) {
			le_store(u + offsetof(struct virtio_input_absinfo, max), VIRTIO_INPUT_ABS_MAX, 4);
			size = sizeof(struct virtio_input_absinfo);
		}
		break;
	default: /* PROP_BITS (none offered), UNSET, anything else */
		break;
	}
	in->config[2] = (uint8_t)size;
}

static void input_config_read(void *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_input *in = dev;
	virtio_config_copy(in->config, sizeof(in->config), offset, data, len);
}

/* Only select and subsel are writable; writes elsewhere are ignored. */
static void input_config_write(void *dev, uint32_t offset, const uint8_t *data, uint32_t len)
{
	struct virtio_input *in = dev;
	bool changed = false;
	for (uint32_t i = 0; i < len && offset < 2 && i < 2 - offset; i++) {
		in->config[offset + i] = data[i];
		changed = true;
	}
	if (changed)
		config_select(in);
}

/* ---- the host's side of the ring ---- */

static bool is_syn_report(const struct virtio_input_ev *e)
{
	return e->type == EV_SYN && e->code == SYN_REPORT;
}

/* One event from the host; true when it finished a frame kept in the ring. */
static bool ring_add(struct virtio_input *in, const struct virtio_input_ev *e)
{
	if (!in->host_mid_frame)
		in->frame = in->active ? FRAME_KEEP : FRAME_DROP_IDLE;
	in->host_mid_frame = !is_syn_report(e);
	if (in->frame == FRAME_KEEP && in->count == VIRTIO_INPUT_RING) {
		in->count -= in->open; /* take back what of this frame is in */
		in->open = 0;
		in->frame = FRAME_DROP_FULL;
	}
	if (in->frame != FRAME_KEEP) {
		if (!in->host_mid_frame && in->frame == FRAME_DROP_FULL)
			in->stats.dropped_frames++;
		return false;
	}
	struct virtio_input_event *slot = &in->ring[(in->head + in->count) % VIRTIO_INPUT_RING];
	slot->type = htole16(e->type);
	slot->code = htole16(e->code);
	slot->value = htole32((uint32_t)e->value);
	in->count++;
	in->open++;
	if (in->host_mid_frame)
		return false;
	in->open = 0;
	return true;
}

void virtio_input_send(struct virtio_input *in, const struct virtio_input_ev *ev, size_t n)
{
	bool wake = false;
	pthread_mutex_lock(&in->lock);
	uint64_t dropped = in->stats.dropped_frames;
	for (size_t i = 0; i < n; i++) {
		if (!is_syn_report(&ev[i]) && !bits_has(in, ev[i].type, ev[i].code)) {
			in->stats.filtered++;
			continue;
		}
		wake |= ring_add(in, &ev[i]);
	}
	dropped = in->stats.dropped_frames - dropped;
	pthread_mutex_unlock(&in->lock);
	if (dropped)
		log_limited(&in->log_limit, LOG_LEVEL_WARN,
			    "virtio-input: event ring full (the guest takes no events); "
			    "%llu input frame(s) dropped whole",
			    (unsigned long long)dropped);
	if (wake) {
		uint64_t one = 1;
		ssize_t w = write(in->wake_fd, &one, sizeof(one));
		(void)w; /* a full eventfd counter is still readable: nothing is lost */
	}
}

int32_t virtio_input_abs_scale(int64_t pos, uint32_t size)
{
	if (size <= 1 || pos <= 0)
		return 0;
	if (pos >= size)
		pos = size - 1;
	uint64_t span = size - 1;
	return (int32_t)(((uint64_t)pos * VIRTIO_INPUT_ABS_MAX + span / 2) / span);
}

void virtio_input_get_stats(struct virtio_input *in, struct virtio_input_stats *st)
{
	pthread_mutex_lock(&in->lock);
	*st = in->stats;
	st->queued = in->count;
	pthread_mutex_unlock(&in->lock);
}

/* ---- the event queue ---- */

static void eventq_serve(struct virtio_input *in, struct virtio_dev *vd)
{
	struct vq *vq = virtio_queue(vd, VIRTIO_INPUT_QUEUE_EVENT);
	if (!vq)
		return;
	unsigned served = 0, bad = 0;
	while (in->count - in->open > 0) {
		if (served == VIRTIO_QUEUE_BUDGET) {
			virtio_queue_notify_later(vd, VIRTIO_INPUT_QUEUE_EVENT);
			break;
		}
		enum vq_pop_result r = vq_pop(vq, &in->chain);
		if (r == VQ_BROKEN) {
			virtio_needs_reset(vd, vq->why_broken ? vq->why_broken : "broken event queue");
			break;
		}
		if (r == VQ_EMPTY) {
			if (!vq_enable_notify(vq, true))
				break; /* the driver kicks when it posts more */
			continue;
		}
		served++;
		if (in->chain.writable_len < INPUT_EV_BYTES) {
			vq_push(vq, in->chain.head, 0);
			in->stats.bad_buffers++;
			bad++;
			continue;
		}
		iov_from_buf(in->chain.iov + in->chain.nr_readable,
			     in->chain.nr_iov - in->chain.nr_readable, 0, &in->ring[in->head],
			     INPUT_EV_BYTES);
		vq_push(vq, in->chain.head, INPUT_EV_BYTES);
		in->head = (in->head + 1) % VIRTIO_INPUT_RING;
		in->count--;
		in->stats.delivered++;
	}
	if (served)
		virtio_queue_interrupt(vd, VIRTIO_INPUT_QUEUE_EVENT);
	if (bad)
		log_limited(&in->log_limit, LOG_LEVEL_WARN,
			    "virtio-input: %u event buffers under %d writable bytes, returned unused",
			    bad, INPUT_EV_BYTES);
}

/* ---- the status queue ---- */

static uint32_t statusq_serve(void *ctx, struct vq_chain *c)
{
	struct virtio_input *in = ctx;
	struct virtio_input_event e;
	if (iov_to_buf(c->iov, c->nr_readable, 0, &e, sizeof(e)) < sizeof(e))
		return 0; /* nothing the device understands */
	uint16_t type = le16toh(e.type), code = le16toh(e.code);
	if (type == EV_LED && bits_has(in, EV_LED, code)) {
		if (e.value)
			in->leds |= 1u << code;
		else
			in->leds &= ~(1u << code);
	}
	return 0;
}

static void statusq_process(struct virtio_input *in, struct virtio_dev *vd)
{
	virtio_queue_serve(vd, VIRTIO_INPUT_QUEUE_STATUS, &in->chain, VIRTIO_QUEUE_BUDGET,
			   "broken status queue", statusq_serve, in);
	if (in->leds != in->leds_reported) {
		in->leds_reported = in->leds;
		if (in->host.leds)
			in->host.leds(in->host.ctx, in->leds);
	}
}

/* ---- the ops table ---- */

static uint64_t input_features(void *dev)
{
	(void)dev;
	return VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC_BIT) | VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT);
}

static void input_activate(void *dev, struct virtio_dev *vd, uint64_t features)
{
	(void)features;
	struct virtio_input *in = dev;
	(void)vd; /* queue_notify() gets it; nothing else touches the queues */
	pthread_mutex_lock(&in->lock);
	in->active = true;
	pthread_mutex_unlock(&in->lock);
}

static void input_queue_notify(void *dev, struct virtio_dev *vd, unsigned queue,
			       enum virtio_path path)
{
	(void)path; /* both queues are served on the I/O thread */
	struct virtio_input *in = dev;
	pthread_mutex_lock(&in->lock);
	bool active = in->active; /* the wake fd may call after a reset */
	if (active && queue == VIRTIO_INPUT_QUEUE_EVENT)
		eventq_serve(in, vd);
	pthread_mutex_unlock(&in->lock);
	/* Outside `lock`: leds() may call virtio_input_send(). */
	if (active && queue == VIRTIO_INPUT_QUEUE_STATUS)
		statusq_process(in, vd);
}

/* Queued events go; a frame the host is in the middle of is dropped too. */
static void input_reset(void *dev)
{
	struct virtio_input *in = dev;
	pthread_mutex_lock(&in->lock);
	in->active = false;
	in->head = in->count = in->open = 0;
	if (in->host_mid_frame)
		in->frame = FRAME_DROP_IDLE;
	pthread_mutex_unlock(&in->lock);
	in->leds = in->leds_reported = 0;
	in->config[0] = in->config[1] = 0;
	config_select(in);
}

static void input_queue_info(void *dev, unsigned queue, struct virtio_queue_info *info)
{
	struct virtio_input *in = dev;
	if (queue == VIRTIO_INPUT_QUEUE_EVENT)
		info->wake_fd[0] = in->wake_fd;
}

const struct virtio_device_ops virtio_input_ops = {
	.name = "virtio-input",
	.device_id = VIRTIO_ID_INPUT,
	.num_queues = 2,
	.queue_max_size = INPUT_QUEUE_SIZE,
	.config_size = VIRTIO_INPUT_CONFIG_SIZE,
	.features = input_features,
	.config_read = input_config_read,
	.config_write = input_config_write,
	.activate = input_activate,
	.queue_notify = input_queue_notify,
	.reset = input_reset,
	.queue_info = input_queue_info,
};

/* ---- creation ---- */

struct virtio_input *virtio_input_create(enum virtio_input_kind kind, const char *serial,
					 const struct virtio_input_host *host)
{
	if (kind != VIRTIO_INPUT_KEYBOARD && kind != VIRTIO_INPUT_TABLET &&
	    kind != VIRTIO_INPUT_MOUSE) {
		log_error("virtio-input: no device kind %d", (int)kind);
		return NULL;
	}
	struct virtio_input *in = calloc(1, sizeof(*in));
	if (!in) {
		log_error("virtio-input: out of memory");
		return NULL;
	}
	in->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (in->wake_fd < 0) {
		log_error("virtio-input: eventfd: %s", strerror(errno));
		free(in);
		return NULL;
	}
	pthread_mutex_init(&in->lock, NULL);
	ratelimit_init(&in->log_limit, 60, 5);
	in->kind = kind;
	if (host)
		in->host = *host;
	if (serial)
		snprintf(in->serial, sizeof(in->serial), "%s", serial); /* 128 at most */
	config_setup(in);
	config_select(in);
	return in;
}

void virtio_input_destroy(struct virtio_input *in)
{
	if (!in)
		return;
	close(in->wake_fd);
	pthread_mutex_destroy(&in->lock);
	free(in);
}
