/*
 * Fake machine callbacks for device tests (see src/dev/dev.h): an interrupt
 * line that records its level and every edge, and a power sink that records
 * requests. Devices may call them from any thread (a vCPU blocked in a
 * device, the console thread), so the state is atomic.
 */
#ifndef SHOJI_TESTS_FAKES_H
#define SHOJI_TESTS_FAKES_H

#include <stdatomic.h>

#include "dev/dev.h"

struct fake_irq {
	unsigned gsi;
	atomic_int level;
	atomic_uint raises;      /* 0 -> 1 transitions */
	atomic_uint calls;
	atomic_uint wrong_gsi;
};

static inline void fake_irq_set(void *ctx, unsigned gsi, int level)
{
	struct fake_irq *f = ctx;
	atomic_fetch_add(&f->calls, 1);
	if (gsi != f->gsi)
		atomic_fetch_add(&f->wrong_gsi, 1);
	if (level && !atomic_load(&f->level))
		atomic_fetch_add(&f->raises, 1);
	atomic_store(&f->level, level ? 1 : 0);
}

static inline struct irq_line fake_irq_line(struct fake_irq *f, unsigned gsi)
{
	f->gsi = gsi;
	atomic_store(&f->level, 0);
	atomic_store(&f->raises, 0);
	atomic_store(&f->calls, 0);
	atomic_store(&f->wrong_gsi, 0);
	return (struct irq_line){ .set = fake_irq_set, .ctx = f, .gsi = gsi };
}

struct fake_power {
	atomic_uint off;
	atomic_uint reset;
	atomic_uint source_missing;
};

static inline void fake_power_request(void *ctx, enum power_event ev, const char *source)
{
	struct fake_power *p = ctx;
	if (!source || !source[0])
		atomic_fetch_add(&p->source_missing, 1);
	if (ev == POWER_OFF)
		atomic_fetch_add(&p->off, 1);
	else if (ev == POWER_RESET)
		atomic_fetch_add(&p->reset, 1);
}

static inline struct power_sink fake_power_sink(struct fake_power *p)
{
	atomic_store(&p->off, 0);
	atomic_store(&p->reset, 0);
	atomic_store(&p->source_missing, 0);
	return (struct power_sink){ .request = fake_power_request, .ctx = p };
}

#endif
