/* Reset control register (see reset.h). */
#include "dev/reset.h"

#define RST_CPU 0x04

static void reset_io_read(void *dev, uint64_t offset, uint8_t *data, unsigned len)
{
	struct reset_ctl *r = dev;
	for (unsigned i = 0; i < len; i++)
		data[i] = offset + i == 0 ? (uint8_t)__atomic_load_n(&r->value, __ATOMIC_RELAXED) : 0xff;
}

static void reset_io_write(void *dev, uint64_t offset, const uint8_t *data, unsigned len)
{
	struct reset_ctl *r = dev;
	if (offset != 0 || len < 1)
		return;
	__atomic_store_n(&r->value, (uint8_t)(data[0] & ~RST_CPU), __ATOMIC_RELAXED);
	if (data[0] & RST_CPU)
		power_request(&r->power, POWER_RESET, "reset register 0xcf9");
}

const struct io_ops reset_io_ops = {
	.read = reset_io_read,
	.write = reset_io_write,
};
