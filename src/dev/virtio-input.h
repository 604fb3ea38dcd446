/*
 * virtio-input (virtio 1.2, section 5.8): a keyboard, an absolute pointer
 * (a tablet, so the viewer needs no pointer grab) and a relative mouse,
 * from one file, presented as QEMU's virtio-keyboard-pci,
 * virtio-tablet-pci and virtio-mouse-pci present them, so Linux's
 * virtio_input driver and the virtio-win vioinput driver bind to them
 * unchanged.
 *
 * The guest side: queue 0 (eventq) takes device-writable buffers of 8
 * bytes, each filled with one evdev event; queue 1 (statusq) brings events
 * from the driver, of which only EV_LED on the keyboard means anything
 * (Num, Caps and Scroll Lock). The configuration space answers the
 * select/subsel protocol: name, serial, device ids, property bits, the
 * codes of each event type, the range of each absolute axis.
 *
 * The host side: the VMM (not yet wired; issue 19) will read the viewer's
 * input events from the display socket, turn a key into EV_KEY with its
 * evdev code and a pointer position into EV_ABS with
 * virtio_input_abs_scale(), end each frame with EV_SYN/SYN_REPORT and hand
 * them to virtio_input_send(). The device buffers them in a bounded ring
 * and delivers them as the guest posts buffers; the guest's LED changes
 * come back through the leds() callback, which the VMM will send to the
 * viewer over the same socket.
 */
#ifndef SHOJI_DEV_VIRTIO_INPUT_H
#define SHOJI_DEV_VIRTIO_INPUT_H

#include <stddef.h>
#include <stdint.h>

#include "dev/virtio.h"

#define VIRTIO_INPUT_QUEUE_EVENT  0
#define VIRTIO_INPUT_QUEUE_STATUS 1

/* Events the ring holds between the host and the guest's buffers. */
#define VIRTIO_INPUT_RING 256

/* The tablet's axes run 0 .. this (QEMU's INPUT_EVENT_ABS_MAX). */
#define VIRTIO_INPUT_ABS_MAX 32767

/* The configuration space: select, subsel, size, 5 reserved, 128 of data. */
#define VIRTIO_INPUT_CONFIG_SIZE 136

enum virtio_input_kind {
	VIRTIO_INPUT_KEYBOARD,
	VIRTIO_INPUT_TABLET,
	VIRTIO_INPUT_MOUSE,  /* relative, for guests that want one (needs a grab) */
};

/* One event as the host hands it over, in host byte order (evdev's type,
 * code and value; the device writes it little-endian for the guest). */
struct virtio_input_ev {
	uint16_t type;
	uint16_t code;
	int32_t value;
};

struct virtio_input_host {
	/*
	 * The keyboard's LEDs changed: bit LED_NUML, LED_CAPSL, LED_SCROLLL
	 * (linux/input-event-codes.h) set for each one lit. Called on the
	 * I/O thread under the transport's lock, only when the state
	 * changes; it may call virtio_input_send(). May be NULL.
	 */
	void (*leds)(void *ctx, unsigned bits);
	void *ctx;
};

struct virtio_input_stats {
	uint64_t delivered;      /* events written into guest buffers */
	uint64_t dropped_frames; /* whole frames dropped because the ring was full */
	uint64_t filtered;       /* events of a type or code the device does not offer */
	uint64_t bad_buffers;    /* event buffers under 8 writable bytes, returned empty */
	unsigned queued;         /* events in the ring now */
};

extern const struct virtio_device_ops virtio_input_ops;

struct virtio_input;

/*
 * A device of `kind`; `serial` (may be NULL: none) is what ID_SERIAL
 * answers, at most 128 bytes of it. NULL (logged) when out of memory or
 * file descriptors.
 */
struct virtio_input *virtio_input_create(enum virtio_input_kind kind, const char *serial,
					 const struct virtio_input_host *host);
void virtio_input_destroy(struct virtio_input *in);

/*
 * Queues n events for the guest. Any thread (the VMM will call it from the
 * I/O thread that reads the viewer's socket); takes the device's own lock,
 * never the transport's, and wakes the I/O thread through the event
 * queue's wake fd. Events reach the guest only as whole frames (up to and
 * including EV_SYN/SYN_REPORT); a frame may span calls. Events the device
 * does not advertise are filtered out; while the driver is not running,
 * and when the ring is full, whole frames are dropped (virtio-input.c says
 * why). Never blocks on the guest.
 */
void virtio_input_send(struct virtio_input *in, const struct virtio_input_ev *ev, size_t n);

/*
 * A pointer position in pixels, 0 .. size-1 along an axis of `size` pixels,
 * as the tablet's 0 .. VIRTIO_INPUT_ABS_MAX: 0 maps to 0 and size-1 to the
 * maximum. Positions past the edge are clamped; a size of 0 or 1 gives 0.
 */
int32_t virtio_input_abs_scale(int64_t pos, uint32_t size);

void virtio_input_get_stats(struct virtio_input *in, struct virtio_input_stats *st);

#endif
