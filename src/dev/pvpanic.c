/* pvpanic PCI device (see pvpanic.h). */
#include "dev/pvpanic.h"

#include <string.h>

#define PVPANIC_VENDOR   0x1b36
#define PVPANIC_DEVICE   0x0011
#define PVPANIC_CLASS    0x088000 /* system peripheral, other */
#define PVPANIC_BAR_SIZE 4096
#define PVPANIC_EVENTS   (PVPANIC_EVENT_PANICKED | PVPANIC_EVENT_CRASH_LOADED)

static void pvpanic_read(void *dev, uint64_t offset, uint8_t *data, unsigned len)
{
	(void)dev;
	memset(data, 0, len);
	if (offset == 0)
		data[0] = PVPANIC_EVENTS;
}

static void pvpanic_write(void *dev, uint64_t offset, const uint8_t *data, unsigned len)
{
	struct pvpanic *pv = dev;
	if (offset != 0 || len < 1)
		return;
	/* Unknown bits are the guest's mistake, not an event. */
	uint8_t events = data[0] & PVPANIC_EVENTS;
	if (events && pv->on_event)
		pv->on_event(pv->ctx, events);
}

const struct io_ops pvpanic_io_ops = {
	.read = pvpanic_read,
	.write = pvpanic_write,
};

bool pvpanic_attach(struct pvpanic *pv, struct pci_bus *bus)
{
	static const struct pci_device_info info = {
		.vendor_id = PVPANIC_VENDOR,
		.device_id = PVPANIC_DEVICE,
		.subsystem_vendor_id = PVPANIC_VENDOR,
		.subsystem_id = PVPANIC_DEVICE,
		.class_code = PVPANIC_CLASS,
		.revision = 1,
		.name = "pvpanic",
	};
	struct pci_device *pd = pci_add_device(bus, &info, pv);
	return pd && pci_add_bar(pd, 0, PVPANIC_BAR_SIZE, &pvpanic_io_ops, pv);
}
