/*
 * An address space of devices (port I/O or MMIO). Ranges are registered
 * while the machine is assembled and never change while vCPUs run, so
 * dispatch needs no lock; each device locks its own state.
 */
#ifndef SHOJI_DEV_BUS_H
#define SHOJI_DEV_BUS_H

#include <stdbool.h>
#include <stdint.h>

#include "dev/dev.h"

#define BUS_MAX_RANGES 64

struct bus_range {
	uint64_t base;
	uint64_t len;
	const struct io_ops *ops;
	void *dev;
	const char *name;
};

struct bus {
	const char *name;
	unsigned count;
	struct bus_range range[BUS_MAX_RANGES];
};

void bus_init(struct bus *bus, const char *name);

/* Adds [base, base+len); refuses empty, overflowing or overlapping ranges. */
bool bus_add(struct bus *bus, uint64_t base, uint64_t len, const struct io_ops *ops,
	     void *dev, const char *name);

/*
 * Dispatches an access of len (1..8) bytes. An access that no device claims
 * whole reads as all ones and its writes are dropped; returns false then so
 * the caller can log it.
 */
bool bus_read(const struct bus *bus, uint64_t addr, uint8_t *data, unsigned len);
bool bus_write(const struct bus *bus, uint64_t addr, const uint8_t *data, unsigned len);

#endif
