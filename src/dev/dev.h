/*
 * What every device model shares: the ops table through which the bus
 * reaches it, the interrupt line it raises, and the power events it may
 * request of the machine. Devices never see KVM or the machine directly;
 * the machine (vmm/) wires these callbacks, and the unit tests wire fakes.
 */
#ifndef SHOJI_DEV_DEV_H
#define SHOJI_DEV_DEV_H

#include <stdint.h>

/*
 * Accesses are 1, 2, 4 or 8 bytes at `offset` from the start of the
 * device's range; the bus guarantees offset + len is inside that range.
 */
struct io_ops {
	void (*read)(void *dev, uint64_t offset, uint8_t *data, unsigned len);
	void (*write)(void *dev, uint64_t offset, const uint8_t *data, unsigned len);
};

struct irq_line {
	void (*set)(void *ctx, unsigned gsi, int level);
	void *ctx;
	unsigned gsi;
};

static inline void irq_line_set(const struct irq_line *irq, int level)
{
	if (irq->set)
		irq->set(irq->ctx, irq->gsi, level);
}

enum power_event {
	POWER_OFF,
	POWER_RESET,
};

struct power_sink {
	void (*request)(void *ctx, enum power_event ev, const char *source);
	void *ctx;
};

static inline void power_request(const struct power_sink *sink, enum power_event ev,
				 const char *source)
{
	if (sink->request)
		sink->request(sink->ctx, ev, source);
}

#endif
