/* Device address spaces (see bus.h). Few ranges: a linear scan is fastest. */
#include "dev/bus.h"

#include <string.h>

#include "base/log.h"
#include "base/util.h"

void bus_init(struct bus *bus, const char *name)
{
	memset(bus, 0, sizeof(*bus));
	bus->name = name;
}

bool bus_add(struct bus *bus, uint64_t base, uint64_t len, const struct io_ops *ops,
	     void *dev, const char *name)
{
	if (len == 0 || base + len < base || bus->count == BUS_MAX_RANGES) {
		log_error("%s bus: cannot add %s at 0x%llx+0x%llx", bus->name, name,
			  (unsigned long long)base, (unsigned long long)len);
		return false;
	}
	for (unsigned i = 0; i < bus->count; i++) {
		const struct bus_range *r = &bus->range[i];
		if (base < r->base + r->len && r->base < base + len) {
			log_error("%s bus: %s at 0x%llx overlaps %s", bus->name, name,
				  (unsigned long long)base, r->name);
			return false;
		}
	}
	bus->range[bus->count++] = (struct bus_range){ base, len, ops, dev, name };
	return true;
}

static const struct bus_range *bus_find(const struct bus *bus, uint64_t addr, unsigned len)
{
	for (unsigned i = 0; i < bus->count; i++) {
		const struct bus_range *r = &bus->range[i];
		if (addr >= r->base && range_within(addr - r->base, len, r->len))
			return r;
	}
	return NULL;
}

bool bus_read(const struct bus *bus, uint64_t addr, uint8_t *data, unsigned len)
{
	const struct bus_range *r = len >= 1 && len <= 8 ? bus_find(bus, addr, len) : NULL;
	if (!r || !r->ops->read) {
		memset(data, 0xff, len > 8 ? 8 : len);
		return false;
	}
	r->ops->read(r->dev, addr - r->base, data, len);
	return true;
}

bool bus_write(const struct bus *bus, uint64_t addr, const uint8_t *data, unsigned len)
{
	const struct bus_range *r = len >= 1 && len <= 8 ? bus_find(bus, addr, len) : NULL;
	if (!r || !r->ops->write)
		return false;
	r->ops->write(r->dev, addr - r->base, data, len);
	return true;
}
